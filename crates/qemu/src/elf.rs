//! The static ELF image QEMU runs: no libc, no code of its own beyond a
//! stub page, and zero-filled segments for everything the machine uses.

use cranelift_exn::isa::Endianness;

use crate::arch::QemuArch;

/// ELF program-header flags.
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;

/// One `PT_LOAD` segment: `size` zero bytes at `address` (the first one
/// also maps the file's first `file_size` bytes).
pub(crate) struct Segment {
    pub address: u64,
    pub size: u64,
    pub readable: bool,
    pub writable: bool,
    pub executable: bool,
}

const HEADER_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;

/// Little- or big-endian field writer.
struct Writer {
    bytes: Vec<u8>,
    big: bool,
}

impl Writer {
    fn u8(&mut self, v: u8) {
        self.bytes.push(v);
    }
    /// Append a field given in both byte orders, in the file's.
    fn field<const N: usize>(&mut self, big: [u8; N], little: [u8; N]) {
        self.bytes
            .extend_from_slice(if self.big { &big } else { &little });
    }
    fn u16(&mut self, v: u16) {
        self.field(v.to_be_bytes(), v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.field(v.to_be_bytes(), v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.field(v.to_be_bytes(), v.to_le_bytes());
    }
}

/// An `ET_EXEC` image for `arch` whose first segment maps the file itself
/// (`stub` at file offset `stub_offset`, the rest of the file the ELF
/// headers) and whose other segments are zero-filled; execution starts at
/// `entry`.
pub(crate) fn image(
    arch: &QemuArch,
    segments: &[Segment],
    stub: &[u8],
    stub_offset: usize,
    entry: u64,
) -> Vec<u8> {
    let big = arch.arch.endianness() == Endianness::Big;
    let mut w = Writer {
        bytes: Vec::new(),
        big,
    };
    // e_ident: magic, ELFCLASS64, data encoding, EV_CURRENT, System V ABI.
    w.bytes.extend_from_slice(b"\x7fELF");
    w.u8(2);
    w.u8(if big { 2 } else { 1 });
    w.u8(1);
    w.bytes.resize(16, 0);
    w.u16(2); // ET_EXEC
    w.u16(arch.elf_machine);
    w.u32(1); // EV_CURRENT
    w.u64(entry);
    w.u64(HEADER_SIZE as u64); // e_phoff
    w.u64(0); // e_shoff
    w.u32(arch.elf_flags);
    w.u16(HEADER_SIZE as u16);
    w.u16(PHDR_SIZE as u16);
    w.u16(segments.len() as u16);
    w.u16(64); // e_shentsize
    w.u16(0); // e_shnum
    w.u16(0); // e_shstrndx
    let file_size = (stub_offset + stub.len()) as u64;
    for (i, segment) in segments.iter().enumerate() {
        let flags = if segment.readable { PF_R } else { 0 }
            | if segment.writable { PF_W } else { 0 }
            | if segment.executable { PF_X } else { 0 };
        w.u32(1); // PT_LOAD
        w.u32(flags);
        w.u64(0); // p_offset: page-congruent with every address used
        w.u64(segment.address);
        w.u64(segment.address);
        w.u64(if i == 0 { file_size } else { 0 });
        w.u64(segment.size);
        w.u64(0x1000);
    }
    // The caller's constants leave a page for the headers.
    debug_assert!(w.bytes.len() <= stub_offset, "ELF headers overlap the stub");
    w.bytes.resize(stub_offset, 0);
    w.bytes.extend_from_slice(stub);
    w.bytes
}
