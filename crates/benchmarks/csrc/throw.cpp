// C++ comparison point: throw in the innermost of `depth` frames, catch at
// the top (DWARF unwinding through the Itanium C++ ABI).
#include <cstdint>

#if defined(__clang__)
#define FRAME __attribute__((noinline))
#else
#define FRAME __attribute__((noinline, noipa))
#endif

namespace {

struct BenchException {
    int64_t payload;
};

FRAME int64_t cxx_rec(int64_t depth, int64_t payload);
int64_t (*volatile cxx_next)(int64_t, int64_t) = cxx_rec;

FRAME int64_t cxx_rec(int64_t depth, int64_t payload) {
    if (depth <= 1) {
        throw BenchException{payload};
    }
    // Work after the call: every frame stays on the stack.
    return cxx_next(depth - 1, payload) + 1;
}

}  // namespace

// Returns the payload of the exception thrown `depth` frames below.
extern "C" int64_t exn_bench_cxx_throw(int64_t depth, int64_t payload) {
    try {
        return -cxx_next(depth, payload);
    } catch (const BenchException &e) {
        return e.payload;
    }
}
