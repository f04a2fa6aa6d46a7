//! How our fault handler leaves for the entry trampoline's handler.
//!
//! Everywhere: rewrite the interrupted context and return; the kernel's
//! `rt_sigreturn` then resumes there. That system call is most of what a
//! trap costs beyond the fault itself (it reloads the whole register and
//! vector state from the signal frame), and on x86_64 the handler can do
//! without it: when the kernel invoked *our* disposition directly, the
//! signal mask in force is already the interrupted code's (`SA_NODEFER`,
//! empty `sa_mask`), and the host's call of the entry trampoline treats
//! every register as clobbered, so jumping to the handler record — with the
//! x87 and SSE control words the interrupted code had — leaves the thread
//! as `rt_sigreturn` would in all that the entry's caller can observe
//! (vector registers come back in their initial state rather than as they
//! were, which that call allows; user shadow stacks, which this crate's
//! resumes do not support anyway, are not unwound). Otherwise (another
//! handler called or tail-called ours, the alternate stack is
//! `SS_AUTODISARM`, protection keys are on) the handler returns as
//! everywhere else. Our disposition names a restorer of our own, which is
//! how a frame the kernel built for it is told apart; code that saves it
//! and puts it back through glibc's `sigaction` names glibc's instead, and
//! the next trap installs ours again.

#[cfg(target_arch = "x86_64")]
pub(super) use x86_64::{forget_foreign, handler, init, set_our_action};

#[cfg(not(target_arch = "x86_64"))]
pub(super) use portable::{forget_foreign, handler, init, set_our_action};

/// The rewrite-and-return exit only.
#[cfg(not(target_arch = "x86_64"))]
mod portable {
    use super::super::{OUR_FLAGS, deliver, forward};

    /// The address our dispositions point at.
    pub(in super::super) fn handler() -> usize {
        on_signal as *const () as usize
    }

    /// Nothing to find out.
    pub(in super::super) fn init() {}

    /// Nothing to forget.
    pub(in super::super) fn forget_foreign() {}

    /// Install our disposition for `signal`; the previous one into `old`
    /// unless null. 0, or -1 with `errno` set.
    ///
    /// # Safety
    /// `old` is null or valid for writes.
    pub(in super::super) unsafe fn set_our_action(
        signal: libc::c_int,
        old: *mut libc::sigaction,
    ) -> libc::c_int {
        // SAFETY: a zeroed sigaction filled with a valid handler, flags and
        // an empty mask; `old` per our caller.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler();
            action.sa_flags = OUR_FLAGS;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, old)
        }
    }

    extern "C" fn on_signal(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        uc: *mut libc::c_void,
    ) {
        // SAFETY: the kernel's pointers; we resume where `deliver` says.
        match unsafe { deliver(signal, info, uc) } {
            // SAFETY: as above.
            Some(resume) => unsafe { super::super::context::redirect(uc.cast(), resume) },
            None => forward(signal, info, uc),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86_64 {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

    use super::super::{OUR_FLAGS, Resume, context, deliver, forward};

    /// The address our dispositions point at: [`entry`].
    pub(in super::super) fn handler() -> usize {
        entry as *const () as usize
    }

    /// `sa_flags` bit: `sa_restorer` is set (the kernel's ABI; glibc sets
    /// it, with its own restorer, on every `sigaction`).
    const SA_RESTORER: u64 = 0x0400_0000;

    /// `ss_flags` bit of an alternate stack the kernel disarms while a
    /// handler runs on it and re-arms at `rt_sigreturn`.
    const SS_AUTODISARM: libc::c_int = 1 << 31;

    /// Whether the direct exit may be used at all (set by [`init`]).
    static DIRECT: AtomicBool = AtomicBool::new(false);

    /// Where protection keys are enabled, the offset of the PKRU register
    /// in a signal frame's XSAVE image (CPUID.(EAX=0DH,ECX=9).EBX), else 0.
    /// The kernel runs the handler with its default PKRU and only
    /// `rt_sigreturn` puts the interrupted code's back: the direct exit is
    /// taken only when the two are the same value (as in every thread that
    /// never changed its protection keys).
    static PKRU_OFFSET: AtomicU32 = AtomicU32::new(0);

    /// `magic1` of the software-reserved bytes of an FXSAVE image that an
    /// XSAVE image extends (`FP_XSTATE_MAGIC1`, asm/sigcontext.h).
    const FP_XSTATE_MAGIC1: u32 = 0x4650_5853;
    /// The PKRU state component (XSAVE feature bit).
    const XFEATURE_PKRU: u64 = 1 << 9;

    /// Signals (bit `n`: signal `n`) whose disposition a trap that could
    /// not leave directly found to be another handler's: not queried again
    /// until [`forget_foreign`].
    static FOREIGN: AtomicU64 = AtomicU64::new(0);

    /// At each installation: query dispositions again.
    pub(in super::super) fn forget_foreign() {
        FOREIGN.store(0, Ordering::Relaxed);
    }

    /// Once, before the first installation: whether the CPU has protection
    /// keys enabled (CPUID.7.0:ECX.OSPKE), and where a signal frame keeps
    /// PKRU if so.
    pub(in super::super) fn init() {
        // CPUID exists on every x86_64 CPU; leaves 7 and 0DH are read only
        // when the maximum leaf reaches them.
        use std::arch::x86_64::__cpuid_count;
        let max_leaf = __cpuid_count(0, 0).eax;
        let ospke = max_leaf >= 7 && __cpuid_count(7, 0).ecx & (1 << 4) != 0;
        let pkru_offset = if ospke && max_leaf >= 0xd {
            __cpuid_count(0xd, 9).ebx
        } else {
            0
        };
        PKRU_OFFSET.store(pkru_offset, Ordering::Relaxed);
        DIRECT.store(!ospke || pkru_offset != 0, Ordering::Relaxed);
    }

    /// Whether leaving the handler directly keeps the interrupted code's
    /// PKRU: without protection keys, or when the signal frame's saved
    /// PKRU equals the handler's.
    ///
    /// # Safety
    /// `uc` is the kernel's ucontext of the signal being handled.
    unsafe fn keeps_pkru(uc: *const libc::ucontext_t) -> bool {
        let offset = PKRU_OFFSET.load(Ordering::Relaxed) as usize;
        if offset == 0 {
            return true;
        }
        // SAFETY: `fpregs` is null or points at the frame's FXSAVE image,
        // extended by an XSAVE image of `xstate_size` bytes when the
        // software-reserved bytes (offset 464) carry the magic; the PKRU
        // word is read only inside it.
        unsafe {
            let image = (*uc).uc_mcontext.fpregs as *const u8;
            if image.is_null() {
                return false;
            }
            let u32_at = |at: usize| image.add(at).cast::<u32>().read_unaligned();
            let u64_at = |at: usize| image.add(at).cast::<u64>().read_unaligned();
            let (magic, features, size) = (u32_at(464), u64_at(472), u32_at(480) as usize);
            if magic != FP_XSTATE_MAGIC1 || features & XFEATURE_PKRU == 0 || offset + 4 > size {
                return false;
            }
            // A component left out of XSTATE_BV (the header at 512) is in
            // its initial state: PKRU 0.
            let saved = if u64_at(512) & XFEATURE_PKRU != 0 {
                u32_at(offset)
            } else {
                0
            };
            saved == read_pkru()
        }
    }

    /// The PKRU register (only where protection keys are enabled: `rdpkru`
    /// is undefined otherwise).
    fn read_pkru() -> u32 {
        let pkru: u32;
        // SAFETY: OSPKE is set (our callers check); `rdpkru` reads PKRU
        // into eax and zeroes edx, with ecx 0.
        unsafe {
            std::arch::asm!(
                "rdpkru",
                in("ecx") 0,
                out("eax") pkru,
                out("edx") _,
                options(nomem, nostack, preserves_flags),
            );
        }
        pkru
    }

    /// `struct sigaction` as the x86_64 kernel's `rt_sigaction` reads it.
    #[repr(C)]
    #[derive(Default)]
    struct KernelSigaction {
        handler: usize,
        flags: u64,
        restorer: usize,
        mask: u64,
    }

    /// The `rt_sigaction` system call: install `new` for `signal` if given,
    /// and return the disposition it had; `None` (with `errno` set) if the
    /// kernel refused.
    fn kernel_sigaction(
        signal: libc::c_int,
        new: Option<&KernelSigaction>,
    ) -> Option<KernelSigaction> {
        let mut previous = KernelSigaction::default();
        let new = new.map_or(std::ptr::null(), |n| n as *const KernelSigaction);
        // SAFETY: valid kernel structures (or null for no change); 8 is the
        // kernel's sigset size.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                new,
                &mut previous as *mut KernelSigaction,
                8usize,
            )
        };
        (rc == 0).then_some(previous)
    }

    unsafe extern "C" {
        /// [`RESTORER`]'s code (defined below).
        fn cranelift_exn_restore_rt();
    }

    // The restorer our dispositions name: `rt_sigreturn`, in the bytes of
    // glibc's `__restore_rt` (`mov rax, 15; syscall`), which unwinders and
    // debuggers recognise as a signal frame's return address; behind a
    // `nop`, as in glibc, so that an unwinder looking up the address minus
    // one finds no other function's unwind information. A restorer of our
    // own tells a frame the kernel built for our disposition from one built
    // for another handler that then called ours.
    std::arch::global_asm!(
        ".pushsection .text.cranelift_exn_restore_rt,\"ax\",@progbits",
        ".p2align 4",
        "nop",
        ".globl cranelift_exn_restore_rt",
        ".hidden cranelift_exn_restore_rt",
        ".type cranelift_exn_restore_rt,@function",
        "cranelift_exn_restore_rt:",
        ".byte 0x48, 0xc7, 0xc0, 0x0f, 0x00, 0x00, 0x00",
        ".byte 0x0f, 0x05",
        ".size cranelift_exn_restore_rt, . - cranelift_exn_restore_rt",
        ".popsection",
    );

    /// The address of `cranelift_exn_restore_rt`.
    fn restorer() -> usize {
        cranelift_exn_restore_rt as *const () as usize
    }

    /// Install our disposition for `signal` (with our restorer, hence the
    /// system call rather than glibc's `sigaction`); the previous one into
    /// `old` unless null. 0, or -1 with `errno` set.
    ///
    /// # Safety
    /// `old` is null or valid for writes.
    pub(in super::super) unsafe fn set_our_action(
        signal: libc::c_int,
        old: *mut libc::sigaction,
    ) -> libc::c_int {
        let new = KernelSigaction {
            handler: handler(),
            flags: OUR_FLAGS as u64 | SA_RESTORER,
            restorer: restorer(),
            mask: 0,
        };
        let Some(previous) = kernel_sigaction(signal, Some(&new)) else {
            return -1;
        };
        if !old.is_null() {
            // SAFETY: `old` is valid for writes (our caller's contract); a
            // zeroed sigaction is an empty one, and glibc's sigset_t starts
            // with the kernel's 64 signal bits.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = previous.handler;
                action.sa_flags = previous.flags as libc::c_int;
                action.sa_restorer =
                    std::mem::transmute::<usize, Option<extern "C" fn()>>(previous.restorer);
                (&raw mut action.sa_mask).cast::<u64>().write(previous.mask);
                old.write(action);
            }
        }
        0
    }

    /// Our disposition's handler: hands the handler proper the stack
    /// pointer it was entered with, where the kernel's signal frame starts
    /// (its return address, then the `ucontext`) when the kernel called it.
    #[unsafe(naked)]
    unsafe extern "C" fn entry(
        _signal: libc::c_int,
        _info: *mut libc::siginfo_t,
        _uc: *mut libc::c_void,
    ) {
        std::arch::naked_asm!("mov rcx, rsp", "jmp {handler}", handler = sym on_signal)
    }

    extern "C" fn on_signal(
        signal: libc::c_int,
        info: *mut libc::siginfo_t,
        uc: *mut libc::c_void,
        frame: *const usize,
    ) {
        // SAFETY: the kernel's pointers; we resume where `deliver` says.
        let Some(resume) = (unsafe { deliver(signal, info, uc) }) else {
            forward(signal, info, uc);
            return;
        };
        let uc = uc.cast::<libc::ucontext_t>();
        // SAFETY: `frame` is the stack pointer `entry` was called with: the
        // word there is its return address. The ucontext is the kernel's.
        let at_frame = DIRECT.load(Ordering::Relaxed) && frame as usize + 8 == uc as usize;
        let ours = at_frame && unsafe { frame.read() } == restorer();
        let direct = ours
            && unsafe { (*uc).uc_stack.ss_flags } & SS_AUTODISARM == 0
            && unsafe { keeps_pkru(uc) };
        if at_frame && !ours {
            name_our_restorer_again(signal);
        }
        if direct {
            // SAFETY: the kernel called our disposition with this frame:
            // the mask in force is the interrupted code's, and `resume`
            // is the live entry's handler record.
            unsafe { leave(resume, uc) }
        }
        // SAFETY: as above.
        unsafe { context::redirect(uc, resume) }
    }

    /// After a trap whose frame names another restorer: if the disposition
    /// is ours all the same — saved and put back through glibc's
    /// `sigaction`, which names glibc's restorer — install it again with
    /// ours, so that the next traps leave directly. Otherwise remember that
    /// the signal has another handler (which called ours), so that the
    /// query is not repeated. (As in `adopt_changed_disposition`, a
    /// disposition installed by another thread between the query and the
    /// installation would be replaced.)
    fn name_our_restorer_again(signal: libc::c_int) {
        let bit = 1u64 << (signal as u32 % 64);
        if FOREIGN.load(Ordering::Relaxed) & bit != 0 {
            return;
        }
        if let Some(current) = kernel_sigaction(signal, None)
            && current.handler == handler()
            && current.flags & !SA_RESTORER == OUR_FLAGS as u64
            && current.mask == 0
        {
            // SAFETY: no previous action asked for.
            unsafe { set_our_action(signal, std::ptr::null_mut()) };
        } else {
            FOREIGN.fetch_or(bit, Ordering::Relaxed);
        }
    }

    /// Resume at `to` as `rt_sigreturn` would after `context::redirect`:
    /// the interrupted code's x87 and SSE control words back (the kernel
    /// gave the handler the default ones; both are callee-saved in the
    /// System V ABI), `rsp`, `rbp`, zero payload registers `rax` and `rdx`;
    /// every other register is clobbered on the trampoline's edge.
    ///
    /// # Safety
    /// `uc` is the kernel's ucontext of a signal frame built for our
    /// disposition, with the interrupted code's signal mask in force and
    /// the alternate stack armed; `to` is a live entry's handler record.
    unsafe fn leave(to: Resume, uc: *mut libc::ucontext_t) -> ! {
        // SAFETY: `fpregs` points at the frame's FXSAVE image (x87 control
        // word at offset 0, MXCSR at 24) or is null; the jump is the
        // trampoline's contract.
        unsafe {
            let fpregs = (*uc).uc_mcontext.fpregs as usize;
            std::arch::asm!(
                "test r8, r8",
                "jz 2f",
                "fldcw word ptr [r8]",
                "ldmxcsr dword ptr [r8 + 24]",
                "2:",
                "mov rsp, rsi",
                "mov rbp, rdi",
                "xor eax, eax",
                "xor edx, edx",
                "jmp rcx",
                in("rcx") to.pc,
                in("rsi") to.sp,
                in("rdi") to.fp,
                in("r8") fpregs,
                options(noreturn),
            )
        }
    }
}
