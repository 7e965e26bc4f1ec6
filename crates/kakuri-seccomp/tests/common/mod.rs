//! Helpers shared by the integration tests: build a profile from JSON and run code under a
//! filter in a forked child, reporting back through a pipe and the exit status.

#![allow(dead_code)]

use std::os::fd::{AsRawFd, OwnedFd};

use kakuri_seccomp::Filter;
use kakuri_spec::oci::LinuxSeccomp;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult};

/// Parse a linux.seccomp object given as a JSON value.
pub fn profile(value: serde_json::Value) -> LinuxSeccomp {
    kakuri_seccomp::profile_from_json(value.to_string().as_bytes()).expect("test profile parses")
}

/// Parse and compile.
pub fn compile(value: serde_json::Value) -> Filter {
    kakuri_seccomp::compile(&profile(value)).expect("test profile compiles")
}

/// The result of a raw syscall: its return value, or the errno it failed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sys {
    Ok(i64),
    Err(i32),
}

/// A raw syscall, without libc wrappers (so the filter sees exactly these arguments).
pub fn raw(nr: libc::c_long, args: [u64; 3]) -> Sys {
    // SAFETY: the tests only pass syscalls whose arguments are plain integers or pointers to
    // NUL-terminated static strings, so the kernel reads no invalid memory.
    let ret = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if ret < 0 {
        Sys::Err(nix::errno::Errno::last_raw())
    } else {
        Sys::Ok(ret)
    }
}

/// What happened to the child.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The child ran to the end; these are the syscall results it reported.
    Reported(Vec<Sys>),
    /// The child exited with this code before reporting (see the EXIT_* codes).
    Exited(i32),
    /// The child was killed by this signal.
    Killed(Signal),
}

/// Exit code of a child whose `Filter::load` failed.
pub const EXIT_LOAD_FAILED: i32 = 90;
/// Exit code of a child that caught SIGSYS with si_code SYS_SECCOMP.
pub const EXIT_CAUGHT_SIGSYS: i32 = 91;

const MAX_RESULTS: usize = 8;

/// The syscall results a child reports, in a fixed buffer (the child must not allocate: the
/// filter under test may block brk/mmap, and the harness is multi-threaded).
pub struct Report {
    results: [Sys; MAX_RESULTS],
    len: usize,
}

impl Report {
    pub fn push(&mut self, r: Sys) {
        if self.len < MAX_RESULTS {
            self.results[self.len] = r;
            self.len += 1;
        }
    }
}

extern "C" fn on_sigsys(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(if code == 1 { EXIT_CAUGHT_SIGSYS } else { 92 }) }
}

/// Fork; in the child, optionally install a SIGSYS handler, load `filter`, run `body` and
/// report its syscall results. The child only makes raw syscalls after the fork (the test
/// harness is multi-threaded), and never dumps core.
pub fn run_under(filter: &Filter, catch_sigsys: bool, body: fn(&mut Report)) -> Outcome {
    let (rd, wr) = pipe().expect("pipe");
    // SAFETY: the child only makes async-signal-safe calls (raw syscalls, write, _exit);
    // `body` functions are written under that rule as well and do not allocate.
    match unsafe { fork() }.expect("fork") {
        ForkResult::Child => {
            drop(rd);
            child(filter, catch_sigsys, body, wr)
        }
        ForkResult::Parent { child } => {
            drop(wr);
            let mut buf = [0u8; 16 * MAX_RESULTS + 8];
            let mut len = 0;
            loop {
                match nix::unistd::read(rd.as_raw_fd(), &mut buf[len..]) {
                    Ok(0) => break,
                    Ok(n) => len += n,
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => panic!("read from child: {e}"),
                }
            }
            let status = waitpid(child, None).expect("waitpid");
            match status {
                WaitStatus::Exited(_, 0) => {
                    assert!(len >= 8, "child exited 0 without a report");
                    let count = u64::from_ne_bytes(buf[..8].try_into().unwrap()) as usize;
                    assert_eq!(len, 8 + 16 * count, "short report from child");
                    let results = (0..count)
                        .map(|i| {
                            let at = 8 + 16 * i;
                            let tag = i64::from_ne_bytes(buf[at..at + 8].try_into().unwrap());
                            let val = i64::from_ne_bytes(buf[at + 8..at + 16].try_into().unwrap());
                            if tag == 0 {
                                Sys::Ok(val)
                            } else {
                                Sys::Err(val as i32)
                            }
                        })
                        .collect();
                    Outcome::Reported(results)
                }
                WaitStatus::Exited(_, code) => Outcome::Exited(code),
                WaitStatus::Signaled(_, sig, _) => Outcome::Killed(sig),
                other => panic!("unexpected child status {other:?}"),
            }
        }
    }
}

fn child(filter: &Filter, catch_sigsys: bool, body: fn(&mut Report), wr: OwnedFd) -> ! {
    // SAFETY: all calls below are raw syscalls on valid stack data, then _exit.
    unsafe {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        libc::setrlimit(libc::RLIMIT_CORE, &no_core);
        if catch_sigsys {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigsys as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut());
        }
    }
    if filter.load().is_err() {
        // SAFETY: _exit is always safe.
        unsafe { libc::_exit(EXIT_LOAD_FAILED) }
    }
    let mut report = Report {
        results: [Sys::Ok(0); MAX_RESULTS],
        len: 0,
    };
    body(&mut report);
    let mut buf = [0u8; 16 * MAX_RESULTS + 8];
    let count = report.len;
    buf[..8].copy_from_slice(&(count as u64).to_ne_bytes());
    for (i, r) in report.results[..count].iter().enumerate() {
        let (tag, val) = match *r {
            Sys::Ok(v) => (0i64, v),
            Sys::Err(e) => (1i64, i64::from(e)),
        };
        let at = 8 + 16 * i;
        buf[at..at + 8].copy_from_slice(&tag.to_ne_bytes());
        buf[at + 8..at + 16].copy_from_slice(&val.to_ne_bytes());
    }
    let len = 8 + 16 * count;
    // SAFETY: `buf` is valid for `len` bytes; _exit ends the child without running atexit
    // handlers of the parent's copy.
    unsafe {
        libc::write(wr.as_raw_fd(), buf.as_ptr().cast(), len);
        libc::_exit(0)
    }
}

/// A path whose parent does not exist: a create there fails with ENOENT when allowed.
pub const MISSING: &[u8] = b"/kakuri-seccomp-test-missing-dir/x\0";

pub fn missing_path() -> u64 {
    MISSING.as_ptr() as u64
}
