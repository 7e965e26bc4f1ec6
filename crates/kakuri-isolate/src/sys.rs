//! Thin wrappers over the Linux system calls that neither `std` nor `nix` cover.
//!
//! Every `unsafe` block of the isolate crate that talks to the kernel directly lives here, each with
//! its own `SAFETY:` note, so the rest of the crate is safe Rust.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

fn cvt(r: libc::c_long) -> io::Result<libc::c_long> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

pub(crate) fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// Outcome of [`fork_clone`]: which side of the fork we are on.
pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// `clone(2)` with fork semantics (no new stack: the child continues on a copy of the caller's).
///
/// `flags` may carry `CLONE_NEW*` namespace flags; `SIGCHLD` is always added so the parent can
/// wait for the child.
///
/// # Safety
/// The caller must be single-threaded (as after `fork`, only async-signal-safe work is sound in
/// the child of a multi-threaded process). kakuri starts no threads before it creates containers.
pub unsafe fn fork_clone(flags: libc::c_int) -> io::Result<Forked> {
    // SAFETY: raw clone without CLONE_VM and with a NULL stack behaves like fork(2): the child gets
    // a copy-on-write copy of the address space and resumes here; the caller guarantees that the
    // process is single-threaded.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_int>(),
            std::ptr::null_mut::<libc::c_int>(),
            0 as libc::c_ulong,
        )
    };
    match cvt(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `clone3(2)`'s `CLONE_INTO_CGROUP` (Linux 5.7): the child starts in the cgroup2 directory
/// given by descriptor.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// The kernel's `struct clone_args` (size `CLONE_ARGS_SIZE_VER2`, 88 bytes: the version with
/// the `cgroup` field).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// [`fork_clone`] through `clone3(2)` with `CLONE_INTO_CGROUP`: the child runs in the cgroup2
/// directory `cgroup` (open `O_PATH|O_DIRECTORY`) from its first instruction, and nobody has
/// to move it there. Kernels without `clone3` or the flag, a seccomp filter that refuses
/// `clone3`, a directory that cannot take processes (threaded, domain-invalid, one with
/// controllers enabled for its children: EOPNOTSUPP, EBUSY) or that the caller may not write
/// to all fail here with an errno; the caller then falls back to [`fork_clone`] and
/// `cgroup.procs`. (A frozen directory takes the child, which stops at once.)
///
/// # Safety
/// As [`fork_clone`]: the caller must be single-threaded.
pub unsafe fn fork_clone_into_cgroup(flags: libc::c_int, cgroup: BorrowedFd) -> io::Result<Forked> {
    let args = CloneArgs {
        flags: u64::from(flags as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: clone3 without CLONE_VM and with no stack behaves like fork(2), as the raw clone
    // of fork_clone: the child gets a copy-on-write copy of the address space and returns here
    // with 0. `args` is a properly initialised clone_args of the size passed, alive for the
    // call; the caller guarantees the process is single-threaded.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match cvt(r)? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid as libc::pid_t)),
    }
}

/// `pivot_root(2)`.
pub fn pivot_root(new_root: &Path, put_old: &Path) -> io::Result<()> {
    let a = cstr(new_root)?;
    let b = cstr(put_old)?;
    // SAFETY: both arguments are valid NUL-terminated strings that outlive the call.
    cvt(unsafe { libc::syscall(libc::SYS_pivot_root, a.as_ptr(), b.as_ptr()) }).map(|_| ())
}

/// `openat2(2)` resolving `path` as if `dir` were the root (`RESOLVE_IN_ROOT`), never following
/// magic links: a symlink inside a container's rootfs cannot lead out of it.
pub fn openat_in_root(dir: BorrowedFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir,
        path,
        flags,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS,
    )
}

/// `openat2(2)` of `path` under `dir` with `flags` (plus O_CLOEXEC) and the `resolve` flags.
fn openat2(dir: BorrowedFd, path: &Path, flags: libc::c_int, resolve: u64) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = resolve;
    // SAFETY: `how` is a properly initialised open_how of the size we pass; `p` is NUL-terminated.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            p.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    })?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Mark every descriptor from `first` up as close-on-exec (`close_range(2)`).
pub fn cloexec_from(first: u32) -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes descriptor flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    })
    .map(|_| ())
}

/// Close every descriptor from `first` up except those in `keep` (`close_range(2)` over the
/// gaps between them).
pub fn close_from_except(first: u32, keep: &[RawFd]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&fd| u32::try_from(fd).ok())
        .filter(|&fd| fd >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut lo = first;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > lo {
            let hi = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range on descriptors this process owns and no Rust object uses
            // (the caller lists in `keep` every descriptor it still needs).
            cvt(unsafe { libc::syscall(libc::SYS_close_range, lo, hi, 0) })?;
        }
        if k == u32::MAX {
            break;
        }
        lo = k + 1;
    }
    Ok(())
}

/// `execveat(fd, "", argv, envp, AT_EMPTY_PATH)`: execute the file `fd` refers to. Returns only
/// on failure.
pub fn execveat_empty(fd: BorrowedFd, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    let empty = c"";
    // SAFETY: NULL-terminated arrays of pointers to NUL-terminated strings that outlive the
    // call, an empty path and a valid descriptor.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            empty.as_ptr(),
            a.as_ptr(),
            e.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    io::Error::last_os_error()
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with integer arguments.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: libc::c_int) -> io::Result<()> {
    // SAFETY: NULL siginfo is allowed; the fd is valid for the duration of the call.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(|_| ())
}

/// Join (or create, with `name` = None) a session keyring: `keyctl(KEYCTL_JOIN_SESSION_KEYRING)`.
pub fn join_session_keyring(name: Option<&CStr>) -> io::Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let ptr = name.map_or(std::ptr::null(), |n| n.as_ptr());
    // SAFETY: the name pointer is NULL or a NUL-terminated string valid for the call.
    cvt(unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, ptr) }).map(|_| ())
}

/// `mount(2)` onto a target given as a path (which may be a `/proc/self/fd/N` magic link).
pub fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = source.map(cstr).transpose()?;
    let tgt = cstr(target)?;
    let fst = fstype
        .map(|s| CString::new(s).map_err(|_| io::ErrorKind::InvalidInput))
        .transpose()?;
    let dat = data
        .filter(|d| !d.is_empty())
        .map(|s| CString::new(s).map_err(|_| io::ErrorKind::InvalidInput))
        .transpose()?;
    // SAFETY: every pointer is NULL or a NUL-terminated string that outlives the call.
    let r = unsafe {
        libc::mount(
            src.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            tgt.as_ptr(),
            fst.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            dat.as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr() as *const libc::c_void),
        )
    };
    cvt(r as libc::c_long).map(|_| ())
}

/// `umount2(2)`.
pub fn umount2(target: &Path, flags: libc::c_int) -> io::Result<()> {
    let t = cstr(target)?;
    // SAFETY: NUL-terminated path valid for the call.
    cvt(unsafe { libc::umount2(t.as_ptr(), flags) } as libc::c_long).map(|_| ())
}

/// `mount_setattr(2)` on an fd (AT_EMPTY_PATH), optionally recursive.
pub fn mount_setattr(
    fd: BorrowedFd,
    recursive: bool,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
) -> io::Result<()> {
    setattr(fd, recursive, attr_set, attr_clr, propagation, 0)
}

/// `mount_setattr(2)` with `MOUNT_ATTR_IDMAP`: give the detached mount `fd` (and, if
/// `recursive`, every mount under it) the id mapping of the user namespace `userns`.
pub fn mount_setattr_idmap(fd: BorrowedFd, recursive: bool, userns: BorrowedFd) -> io::Result<()> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    setattr(
        fd,
        recursive,
        MOUNT_ATTR_IDMAP,
        0,
        0,
        userns.as_raw_fd() as u64,
    )
}

fn setattr(
    fd: BorrowedFd,
    recursive: bool,
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation,
        userns_fd,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    let empty = c"";
    // SAFETY: `attr` is a mount_attr of the size we pass; the path is an empty C string.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    })
    .map(|_| ())
}

/// Start time of a process in clock ticks since boot (field 22 of `/proc/<pid>/stat`) and its state
/// letter, used to tell a container's init from a later process that reused its pid.
pub fn proc_start_time(pid: libc::pid_t) -> io::Result<(u64, char)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    let rest = s
        .rfind(')')
        .map(|i| &s[i + 2..])
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first().and_then(|f| f.chars().next()).unwrap_or('?');
    let start = fields
        .get(19)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad /proc stat"))?;
    Ok((start, state))
}

/// The pty peer of a master, opened without any path lookup (`TIOCGPTPEER`).
pub fn pty_peer(master: BorrowedFd, flags: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: ioctl on a valid fd with an integer argument.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Unlock a pty master (`TIOCSPTLCK` with 0).
pub fn unlockpt(master: BorrowedFd) -> io::Result<()> {
    let zero: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer we pass, valid for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &zero) };
    cvt(r as libc::c_long).map(|_| ())
}

/// Make `fd` the controlling terminal of the calling session (`TIOCSCTTY`).
pub fn set_controlling_tty(fd: BorrowedFd) -> io::Result<()> {
    // SAFETY: ioctl with an integer argument on a valid fd.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    cvt(r as libc::c_long).map(|_| ())
}

/// Set the window size of a terminal.
pub fn set_winsize(fd: BorrowedFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    cvt(r as libc::c_long).map(|_| ())
}

/// Read a terminal's window size.
pub fn get_winsize(fd: BorrowedFd) -> io::Result<(u16, u16)> {
    // SAFETY: winsize is plain data; zeroed is a valid value.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize to the pointer, valid for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    cvt(r as libc::c_long).map(|_| (ws.ws_row, ws.ws_col))
}

/// `execve(2)`: replaces the process image; returns only on error.
pub fn execve(path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
    let mut a: Vec<*const libc::c_char> = argv.iter().map(|s| s.as_ptr()).collect();
    a.push(std::ptr::null());
    let mut e: Vec<*const libc::c_char> = envp.iter().map(|s| s.as_ptr()).collect();
    e.push(std::ptr::null());
    // SAFETY: argv/envp are NULL-terminated arrays of NUL-terminated strings kept alive by the
    // borrowed vectors for the duration of the call.
    unsafe { libc::execve(path.as_ptr(), a.as_ptr(), e.as_ptr()) };
    io::Error::last_os_error()
}

/// Bring network interface `name` up (`SIOCGIFFLAGS`, then `SIOCSIFFLAGS` with `IFF_UP` added)
/// in the caller's network namespace.
pub fn link_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket(2) call; the descriptor is owned below.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    cvt(s as libc::c_long)?;
    // SAFETY: socket returned a new descriptor that nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    // SAFETY: ifreq is plain data (a name and a union of integers/addresses); all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() || name.as_bytes().contains(&0) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name and writes the flags member of `req`,
    // a valid ifreq for the duration of the call.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) };
    cvt(r as libc::c_long)?;
    // SAFETY: the kernel filled the flags member of the union just above.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    if flags & libc::IFF_UP as libc::c_short != 0 {
        return Ok(());
    }
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    let r = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) };
    cvt(r as libc::c_long).map(|_| ())
}

/// `setns(2)` on a namespace fd.
pub fn setns(fd: BorrowedFd, nstype: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall on a valid fd.
    let r = unsafe { libc::setns(fd.as_raw_fd(), nstype) };
    cvt(r as libc::c_long).map(|_| ())
}

/// `unshare(2)`.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: plain syscall with integer argument.
    let r = unsafe { libc::unshare(flags) };
    cvt(r as libc::c_long).map(|_| ())
}

/// `prctl(2)` with integer arguments.
pub fn prctl(option: libc::c_int, arg2: libc::c_ulong) -> io::Result<libc::c_int> {
    // SAFETY: the options kakuri uses take only integer arguments.
    let r = unsafe { libc::prctl(option, arg2, 0 as libc::c_ulong, 0 as libc::c_ulong, 0) };
    cvt(r as libc::c_long).map(|r| r as libc::c_int)
}

/// `setresuid`/`setresgid`/`setgroups` as raw syscalls: they act on the calling thread, which is the
/// whole process here (single-threaded), without glibc's cross-thread broadcast machinery.
pub fn setresgid(gid: u32) -> io::Result<()> {
    // SAFETY: integer syscall.
    cvt(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) }).map(|_| ())
}

/// See [`setresgid`].
pub fn setresuid(uid: u32) -> io::Result<()> {
    // SAFETY: integer syscall.
    cvt(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) }).map(|_| ())
}

/// See [`setresgid`].
pub fn setgroups(groups: &[u32]) -> io::Result<()> {
    // SAFETY: the pointer and length describe a valid slice of gid_t-sized values.
    cvt(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) }).map(|_| ())
}

/// `mknod(2)` relative to a directory fd.
pub fn mknodat(dir: BorrowedFd, name: &Path, mode: u32, dev: u64) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: NUL-terminated name, valid dir fd.
    let r = unsafe { libc::mknodat(dir.as_raw_fd(), n.as_ptr(), mode, dev as libc::dev_t) };
    cvt(r as libc::c_long).map(|_| ())
}

/// `_exit(2)`: leave a forked child without running the parent's atexit handlers or destructors.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// `struct sched_attr` of `sched_setattr(2)` (SCHED_ATTR_SIZE_VER1, with the utilization clamps).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
    pub util_min: u32,
    pub util_max: u32,
}

/// `sched_setattr(2)` for the calling thread.
pub fn sched_setattr(attr: &SchedAttr) -> io::Result<()> {
    let mut a = *attr;
    a.size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: `a` is a sched_attr of the size it declares, valid for the call.
    cvt(unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) }).map(|_| ())
}

/// `set_mempolicy(mode, nodemask, maxnode)` for the calling thread (the whole process: it is
/// single-threaded here).
pub fn set_mempolicy(mode: libc::c_int, nodemask: &[u64]) -> io::Result<()> {
    let ptr = if nodemask.is_empty() {
        std::ptr::null()
    } else {
        nodemask.as_ptr()
    };
    // The kernel reads maxnode - 1 bits (as numactl passes it).
    let maxnode = nodemask.len() as libc::c_ulong * 64 + 1;
    // SAFETY: `ptr` is null or points to `nodemask`, which holds the maxnode - 1 bits read.
    cvt(unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) }).map(|_| ())
}

/// `clone3(2)` with `CLONE_INTO_CGROUP`: a child that starts in the cgroup2 directory `cgroup`
/// and exits at once (a probe of the feature); returns its pid, to be reaped by the caller.
///
/// # Safety
/// The calling process must be single-threaded (the child of a multi-threaded process may only
/// call async-signal-safe functions; this one calls `_exit` only).
pub unsafe fn clone3_into_cgroup(cgroup: BorrowedFd) -> io::Result<libc::pid_t> {
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: `args` is a clone_args of the size given; without a stack the child runs on a
    // copy of this one, as after fork, and only calls _exit (the caller is single-threaded).
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r == 0 {
        // SAFETY: _exit is async-signal-safe and ends the child here.
        unsafe { libc::_exit(0) };
    }
    cvt(r).map(|p| p as libc::pid_t)
}

/// `personality(persona)` for the calling process.
pub fn personality(persona: libc::c_ulong) -> io::Result<()> {
    // SAFETY: personality takes a plain value; it returns the previous persona or -1.
    let r = unsafe { libc::personality(persona) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioprio_set(IOPRIO_WHO_PROCESS, 0, ioprio)` for the calling process.
pub fn ioprio_set(ioprio: i32) -> io::Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    // SAFETY: integer syscall.
    cvt(unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, ioprio) }).map(|_| ())
}

/// `sched_setaffinity(2)` of `pid` (0: the caller) to the given CPUs.
pub fn sched_setaffinity(pid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        if c >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: `c` is below CPU_SETSIZE (checked above), so the bit lies inside `set`.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: a valid cpu_set_t of the size we pass.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    cvt(r as libc::c_long).map(|_| ())
}

/// A new, detached procfs instance (`fsopen` + `fsmount`): nothing can be mounted over it.
pub fn fsmount_proc() -> io::Result<OwnedFd> {
    // MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC; read-write, since sysctl and
    // oom_score_adj are written through it.
    fsmount_new(c"proc", 0x2 | 0x4 | 0x8)
}

/// A new, detached instance of filesystem `name` (`fsopen` + `fsmount`) with the
/// `MOUNT_ATTR_*` flags `attrs`; it goes away with its last descriptor.
pub fn fsmount_new(name: &std::ffi::CStr, attrs: libc::c_uint) -> io::Result<OwnedFd> {
    const FSOPEN_CLOEXEC: libc::c_uint = 1;
    const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
    const FSMOUNT_CLOEXEC: libc::c_uint = 1;
    // SAFETY: NUL-terminated name, integer flags.
    let fs = cvt(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    // SAFETY: fsopen returned a fresh descriptor that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fs as RawFd) };
    // SAFETY: CMD_CREATE takes NULL key and value.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    })?;
    // SAFETY: integer arguments on a valid fs-context descriptor.
    let m =
        cvt(unsafe { libc::syscall(libc::SYS_fsmount, fs.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })?;
    // SAFETY: fsmount returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(m as RawFd) })
}

/// `open_tree(2)` with `OPEN_TREE_CLONE`: a detached bind mount of `path` (and of the mounts
/// under it with `recursive`), resolved with this process's credentials, to be attached later
/// with [`move_mount_to`], possibly from another mount or user namespace.
pub fn open_tree_clone(path: &Path, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    const AT_RECURSIVE: libc::c_uint = 0x8000;
    let p = cstr(path)?;
    let flags = OPEN_TREE_CLONE
        | libc::O_CLOEXEC as libc::c_uint
        | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a NUL-terminated path valid for the call and integer flags.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), flags) })?;
    // SAFETY: open_tree returned a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `move_mount(2)`: attach the detached mount `tree` onto the file or directory `target`
/// refers to.
pub fn move_mount_to(tree: BorrowedFd, target: BorrowedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    let empty = c"";
    // SAFETY: two valid descriptors with empty NUL-terminated paths, and integer flags.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    })
    .map(|_| ())
}

/// `fstatfs(2)`: the filesystem magic number of the file behind `fd`.
pub fn fs_magic(fd: BorrowedFd) -> io::Result<i64> {
    // SAFETY: statfs is plain data; all-zero is valid.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and pointer to a statfs for the call.
    cvt(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) } as libc::c_long)?;
    Ok(st.f_type as i64)
}

/// `openat2(2)` of `path` strictly beneath `dir`: no symlinks, no magic links, no mount
/// crossings, no `..` escape.
pub fn openat_beneath(dir: BorrowedFd, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    openat2(
        dir,
        path,
        flags,
        libc::RESOLVE_BENEATH
            | libc::RESOLVE_NO_MAGICLINKS
            | libc::RESOLVE_NO_SYMLINKS
            | libc::RESOLVE_NO_XDEV,
    )
}

/// The kernel's `struct sigaction` for `rt_sigaction(2)` (x86_64 and aarch64 layout: handler,
/// flags, restorer, mask).
#[repr(C)]
struct KernelSigaction {
    handler: libc::c_ulong,
    flags: libc::c_ulong,
    restorer: libc::c_ulong,
    mask: u64,
}

/// Give every signal its default action and unblock them all, with raw system calls only (so it
/// is sound in a child made by a raw `clone`, whose libc state is the parent's): what a new
/// program must start with. Without it a container process would inherit what the runtime
/// ignores (Rust's std ignores SIGPIPE) or blocks, and what its caller ignored; glibc's own
/// `sigaction` cannot reset its two internal signals (32, 33), which `posix_spawn` leaves
/// ignored in the programs it starts. SIGKILL and SIGSTOP cannot be changed and are skipped.
pub fn reset_signals() -> io::Result<()> {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL as libc::c_ulong,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a valid kernel sigaction struct of the size passed; the old action is not
        // asked for. SIG_DFL needs no restorer.
        cvt(unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &dfl as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        })?;
    }
    let empty: u64 = 0;
    // SAFETY: an 8-byte signal set, as the size argument says; the old mask is not asked for.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    })
    .map(|_| ())
}

/// `pipe2(2)` with `O_CLOEXEC`: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as libc::c_long)?;
    // SAFETY: the kernel just returned these two fresh descriptors; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A program to start with [`spawn_program`]: everything `execve` needs, built before the fork.
pub struct Program {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: Option<CString>,
}

impl Program {
    /// `path` with `argv` (argv[0] included) and exactly the environment `envp`; the child
    /// changes to `cwd` first when given.
    pub fn new(
        path: &Path,
        argv: &[String],
        envp: &[std::ffi::OsString],
        cwd: Option<&Path>,
    ) -> io::Result<Program> {
        let c = |s: &str| {
            CString::new(s).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, "argument contains a NUL byte")
            })
        };
        Ok(Program {
            path: cstr(path)?,
            argv: argv.iter().map(|a| c(a)).collect::<io::Result<_>>()?,
            envp: envp
                .iter()
                .map(|a| {
                    CString::new(a.as_bytes()).map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::InvalidInput,
                            "environment contains a NUL byte",
                        )
                    })
                })
                .collect::<io::Result<_>>()?,
            cwd: cwd.map(cstr).transpose()?,
        })
    }
}

/// Start `prog` with `stdin` as its standard input (stdout and stderr are this process's), its
/// signals reset ([`reset_signals`]), and return its pid once it has exec'd; a failed `chdir` or
/// `execve` is returned as the error.
///
/// The child is made by a raw `clone` (a fork) and makes only raw system calls before
/// `execve`: no glibc function runs in it, so it neither depends on glibc's per-thread state
/// (stale in a process that was itself made by a raw `clone`, such as a container's init) nor
/// on `clone3`, which `posix_spawn` tries first and a seccomp profile may refuse with an error
/// glibc does not fall back from. The caller must be single-threaded.
pub fn spawn_program(prog: &Program, stdin: BorrowedFd) -> io::Result<libc::pid_t> {
    let mut argv: Vec<*const libc::c_char> = prog.argv.iter().map(|s| s.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = prog.envp.iter().map(|s| s.as_ptr()).collect();
    envp.push(std::ptr::null());
    let (err_r, err_w) = pipe_cloexec()?;
    // SAFETY: kakuri is single-threaded (the documented contract of this function).
    match unsafe { fork_clone(0) }? {
        Forked::Child => {
            // Only raw system calls from here: see above. Each failure reports (step, errno).
            let fail = |step: u8| -> ! {
                let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
                let mut msg = [0u8; 5];
                msg[0] = step;
                msg[1..].copy_from_slice(&errno.to_ne_bytes());
                // SAFETY: writes 5 bytes of a local buffer to our pipe end, then exits without
                // running anything of the parent's (no atexit handlers, no destructors).
                unsafe {
                    libc::syscall(libc::SYS_write, err_w.as_raw_fd(), msg.as_ptr(), msg.len());
                    libc::syscall(libc::SYS_exit_group, 127);
                }
                unreachable!("exit_group returned")
            };
            let fd = stdin.as_raw_fd();
            let r = if fd == 0 {
                // SAFETY: fcntl on descriptor 0 with integer arguments.
                unsafe { libc::syscall(libc::SYS_fcntl, 0, libc::F_SETFD, 0) }
            } else {
                // SAFETY: dup3 of a descriptor the caller lent us onto 0, integer arguments.
                unsafe { libc::syscall(libc::SYS_dup3, fd, 0, 0) }
            };
            if r < 0 {
                fail(1);
            }
            if reset_signals().is_err() {
                fail(2);
            }
            if let Some(cwd) = &prog.cwd {
                // SAFETY: a NUL-terminated path of this (copied) address space, made before
                // the fork.
                if unsafe { libc::syscall(libc::SYS_chdir, cwd.as_ptr()) } < 0 {
                    fail(3);
                }
            }
            // SAFETY: path, argv and envp are NUL-terminated strings and NULL-terminated
            // pointer arrays built before the fork; execve only returns on error.
            unsafe {
                libc::syscall(
                    libc::SYS_execve,
                    prog.path.as_ptr(),
                    argv.as_ptr(),
                    envp.as_ptr(),
                )
            };
            fail(4)
        }
        Forked::Parent(pid) => {
            drop(err_w);
            let mut msg = [0u8; 5];
            let mut got = 0;
            while got < msg.len() {
                // SAFETY: reads into the rest of a local buffer.
                let n = unsafe {
                    libc::read(
                        err_r.as_raw_fd(),
                        msg[got..].as_mut_ptr().cast(),
                        msg.len() - got,
                    )
                };
                match n {
                    0 => break,
                    n if n > 0 => got += n as usize,
                    _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
                    _ => break,
                }
            }
            if got == 0 {
                return Ok(pid);
            }
            // The child failed before exec and has exited: reap it.
            let mut status = 0;
            // SAFETY: waits for our own child, writing its status into a local.
            while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
            let errno = i32::from_ne_bytes([msg[1], msg[2], msg[3], msg[4]]);
            let e = io::Error::from_raw_os_error(errno);
            Err(match msg[0] {
                3 => io::Error::new(e.kind(), format!("chdir: {}", kakuri_spec::os_error(&e))),
                4 => e,
                _ => io::Error::new(
                    e.kind(),
                    format!("prepare the process: {}", kakuri_spec::os_error(&e)),
                ),
            })
        }
    }
}
