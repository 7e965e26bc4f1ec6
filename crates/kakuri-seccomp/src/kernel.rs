//! Direct seccomp(2) calls: loading a compiled program and probing what the kernel supports.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;

/// Install `program` on the calling thread with seccomp(SECCOMP_SET_MODE_FILTER, flags).
///
/// Returns the listener fd when `flags` holds SECCOMP_FILTER_FLAG_NEW_LISTENER. Performs no
/// allocation: it is called between fork and execve.
pub(crate) fn set_mode_filter(
    program: &[libc::sock_filter],
    flags: libc::c_ulong,
) -> Result<Option<OwnedFd>, Errno> {
    let len = u16::try_from(program.len()).map_err(|_| Errno::EINVAL)?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `prog` points at `len` valid sock_filter entries that outlive the call; the
    // kernel copies them before returning and does not keep the pointer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(Errno::last());
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(ret).map_err(|_| Errno::EBADF)?;
        // SAFETY: with SECCOMP_FILTER_FLAG_NEW_LISTENER the kernel returns a new file
        // descriptor that nothing else owns.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    } else {
        Ok(None)
    }
}

/// Whether the running kernel knows the `SECCOMP_RET_*` action `ret` (SECCOMP_GET_ACTION_AVAIL).
pub(crate) fn action_available(ret: u32) -> bool {
    let action: u32 = ret;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL reads one u32 through the pointer, which is valid for
    // the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL,
            0 as libc::c_uint,
            &action as *const u32,
        )
    };
    rc == 0
}

/// Whether the running kernel accepts the filter flags `bits`.
///
/// seccomp(SECCOMP_SET_MODE_FILTER) checks the flags before it reads the program, so a NULL
/// program fails with EFAULT when the flags are known and with EINVAL when they are not;
/// nothing is installed either way.
pub(crate) fn flags_supported(bits: libc::c_ulong) -> bool {
    // SAFETY: a NULL program pointer makes the kernel fail the copy with EFAULT; no memory of
    // this process is read or written.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            bits,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    rc < 0 && Errno::last() == Errno::EFAULT
}
