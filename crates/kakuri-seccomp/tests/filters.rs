//! Filters loaded for real in forked children: each test observes what the kernel does with
//! the compiled program.

mod common;

use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// Syscalls a child needs to report and exit under a default-deny filter.
const REPORTING: [&str; 4] = ["write", "exit_group", "exit", "rt_sigreturn"];

fn mkdirat_missing() -> Sys {
    raw(
        libc::SYS_mkdirat,
        [libc::AT_FDCWD as u64, missing_path(), 0o755],
    )
}

#[test]
fn errno_defaults_to_eperm() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(mkdirat_missing());
        r.push(raw(libc::SYS_getpid, [0; 3]));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert_eq!(res[0], Sys::Err(libc::EPERM));
    assert!(matches!(res[1], Sys::Ok(pid) if pid > 0), "{res:?}");
}

#[test]
fn errno_ret_is_returned() {
    // Without a filter the call fails with ENOENT; the filter must turn it into EBADFD (77).
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EBADFD}]
    }));
    let out = run_under(&filter, false, |r| r.push(mkdirat_missing()));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::EBADFD)]));

    let unfiltered = compile(json!({"defaultAction": "SCMP_ACT_ALLOW"}));
    let out = run_under(&unfiltered, false, |r| r.push(mkdirat_missing()));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::ENOENT)]));
}

#[test]
fn default_errno_ret_and_allow_list() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": libc::EXDEV,
        "syscalls": [{"names": REPORTING, "action": "SCMP_ACT_ALLOW"},
                     {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_getpid, [0; 3]));
        r.push(raw(libc::SYS_getppid, [0; 3]));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert!(matches!(res[0], Sys::Ok(pid) if pid > 0), "{res:?}");
    assert_eq!(res[1], Sys::Err(libc::EXDEV));
}

#[test]
fn kill_process_kills_with_sigsys() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_KILL_PROCESS"}]
    }));
    // Even with a SIGSYS handler installed the process dies: the kill is not a signal it can
    // catch.
    let out = run_under(&filter, true, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
    assert_eq!(out, Outcome::Killed(Signal::SIGSYS));
}

#[test]
fn kill_and_kill_thread_kill_a_single_threaded_process() {
    for action in ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"] {
        let filter = compile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["getppid"], "action": action}]
        }));
        let out = run_under(&filter, true, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
        assert_eq!(out, Outcome::Killed(Signal::SIGSYS), "{action}");
    }
}

#[test]
fn trap_delivers_a_catchable_sigsys() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRAP"}]
    }));
    // With a handler: the handler sees si_code SYS_SECCOMP and exits with its code.
    let out = run_under(&filter, true, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
    assert_eq!(out, Outcome::Exited(EXIT_CAUGHT_SIGSYS));
    // Without a handler: SIGSYS's default action ends the process.
    let out = run_under(&filter, false, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
    assert_eq!(out, Outcome::Killed(Signal::SIGSYS));
}

#[test]
fn log_allows_the_call() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG"],
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]
    }));
    assert_ne!(filter.kernel_flags() & libc::SECCOMP_FILTER_FLAG_LOG, 0);
    let out = run_under(&filter, false, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
    assert_eq!(
        out,
        Outcome::Reported(vec![Sys::Ok(i64::from(std::process::id()))])
    );
}

#[test]
fn trace_without_tracer_fails_with_enosys() {
    // seccomp(2): with no tracer attached, SECCOMP_RET_TRACE makes the call fail with ENOSYS.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRACE"}]
    }));
    let out = run_under(&filter, false, |r| r.push(raw(libc::SYS_getppid, [0; 3])));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::ENOSYS)]));
}

#[test]
fn argument_condition_allows_one_value() {
    // Docker's pattern: personality is allowed only for listed personas.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": REPORTING, "action": "SCMP_ACT_ALLOW"},
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 0xffff_ffffu64, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 0, 0]));
        r.push(raw(libc::SYS_personality, [0x0008, 0, 0]));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert!(matches!(res[0], Sys::Ok(_)), "query persona: {res:?}");
    assert_eq!(res[1], Sys::Err(libc::EPERM), "set persona: {res:?}");
}

#[test]
fn other_operators() {
    // NE, LT, LE, GE, GT on personality's arguments, each rule with its own errno; the calls
    // are chosen so that no call matches two rules.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 101,
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LT"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 102,
             "args": [{"index": 0, "value": 10, "op": "SCMP_CMP_LE"},
                      {"index": 1, "value": 7, "op": "SCMP_CMP_NE"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 103,
             "args": [{"index": 0, "value": 1000, "op": "SCMP_CMP_GT"}]},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 104,
             "args": [{"index": 1, "value": 500, "op": "SCMP_CMP_GE"}]}
        ]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_personality, [5, 7, 0])); // LT 10 -> 101 (LE needs arg1 != 7)
        r.push(raw(libc::SYS_personality, [10, 0, 0])); // LE 10 and arg1 != 7 -> 102
        r.push(raw(libc::SYS_personality, [10, 7, 0])); // LE 10 but arg1 == 7 -> allowed
        r.push(raw(libc::SYS_personality, [2000, 0, 0])); // GT 1000 -> 103
        r.push(raw(libc::SYS_personality, [20, 600, 0])); // arg1 GE 500 -> 104
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 0, 0])); // GT 1000 too
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert_eq!(res[0], Sys::Err(101));
    assert_eq!(res[1], Sys::Err(102));
    assert!(matches!(res[2], Sys::Ok(_)), "{res:?}");
    assert_eq!(res[3], Sys::Err(103));
    assert_eq!(res[4], Sys::Err(104));
    assert_eq!(res[5], Sys::Err(103));
}

#[test]
fn masked_eq_tests_the_masked_bits() {
    // (flags & O_ACCMODE) == O_WRONLY: write-only opens are refused, read and read-write opens
    // go through (and fail with ENOENT on the missing path). value is the mask, valueTwo the
    // expected masked value.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["openat"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EROFS,
                      "args": [{"index": 2, "value": libc::O_ACCMODE, "valueTwo": libc::O_WRONLY,
                                "op": "SCMP_CMP_MASKED_EQ"}]}]
    }));
    let out = run_under(&filter, false, |r| {
        let at = libc::AT_FDCWD as u64;
        let path = missing_path();
        r.push(raw(libc::SYS_openat, [at, path, libc::O_WRONLY as u64]));
        r.push(raw(libc::SYS_openat, [at, path, libc::O_RDONLY as u64]));
        r.push(raw(
            libc::SYS_openat,
            [at, path, (libc::O_RDWR | libc::O_CREAT) as u64],
        ));
        r.push(raw(
            libc::SYS_openat,
            [
                at,
                path,
                (libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL) as u64,
            ],
        ));
    });
    assert_eq!(
        out,
        Outcome::Reported(vec![
            Sys::Err(libc::EROFS),
            Sys::Err(libc::ENOENT),
            Sys::Err(libc::ENOENT),
            Sys::Err(libc::EROFS)
        ])
    );
}

#[test]
fn conditions_on_different_arguments_are_anded() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                               {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]}]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 5, 0]));
        r.push(raw(libc::SYS_personality, [8, 5, 0]));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert!(matches!(res[0], Sys::Ok(_)), "only arg1 matches: {res:?}");
    assert_eq!(res[1], Sys::Err(libc::EPERM));
}

#[test]
fn same_index_conditions_become_separate_rules() {
    // runc: when one argument index appears twice, every condition (including the one on
    // another index) is a rule of its own, so any single match triggers the action.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                               {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"},
                               {"index": 1, "value": 5, "op": "SCMP_CMP_EQ"}]}]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_personality, [8, 0, 0]));
        r.push(raw(libc::SYS_personality, [0x20000, 0, 0]));
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 5, 0]));
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 0, 0]));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert_eq!(res[0], Sys::Err(libc::EPERM));
    assert_eq!(res[1], Sys::Err(libc::EPERM));
    assert_eq!(
        res[2],
        Sys::Err(libc::EPERM),
        "index-1 condition alone: {res:?}"
    );
    assert!(matches!(res[3], Sys::Ok(_)), "{res:?}");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["kakuri_no_such_syscall", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let out = run_under(&filter, false, |r| r.push(mkdirat_missing()));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::EPERM)]));
}

#[test]
fn rules_equal_to_the_default_are_skipped() {
    // libseccomp refuses a rule whose action is the default action; runc drops such rules.
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": REPORTING, "action": "SCMP_ACT_ALLOW"},
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getuid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM},
            {"names": ["getgid"], "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EACCES}
        ]
    }));
    let out = run_under(&filter, false, |r| {
        r.push(raw(libc::SYS_getppid, [0; 3]));
        r.push(raw(libc::SYS_getuid, [0; 3]));
        r.push(raw(libc::SYS_getgid, [0; 3]));
    });
    assert_eq!(
        out,
        Outcome::Reported(vec![
            Sys::Err(libc::EPERM),
            Sys::Err(libc::EPERM),
            Sys::Err(libc::EACCES)
        ])
    );
}

#[test]
fn enosys_stub_for_syscalls_newer_than_the_profile() {
    // The profile names syscalls up to exit_group (231 on x86_64). Above that, calls get
    // ENOSYS (as if the kernel did not know them) instead of the default EPERM.
    let profile = |arches: serde_json::Value| {
        compile(json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": arches,
            "syscalls": [{"names": REPORTING, "action": "SCMP_ACT_ALLOW"},
                         {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"}]
        }))
    };
    fn body(r: &mut Report) {
        r.push(raw(libc::SYS_mkdir, [missing_path(), 0o755, 0])); // 83
        r.push(mkdirat_missing()); // 258
        r.push(raw(1000, [0; 3])); // no such syscall
        r.push(raw(libc::SYS_getpid, [0; 3]));
    }
    let with_stub = profile(json!([
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32"
    ]));
    let Outcome::Reported(res) = run_under(&with_stub, false, body) else {
        panic!("child did not report")
    };
    assert_eq!(
        &res[..3],
        &[
            Sys::Err(libc::EPERM),
            Sys::Err(libc::ENOSYS),
            Sys::Err(libc::ENOSYS)
        ]
    );
    assert!(matches!(res[3], Sys::Ok(_)), "{res:?}");

    // runc adds the stub only for listed architectures: none listed, no stub.
    let without = profile(json!([]));
    assert!(without.instruction_count() < with_stub.instruction_count());
    let Outcome::Reported(res) = run_under(&without, false, body) else {
        panic!("child did not report")
    };
    assert_eq!(
        &res[..3],
        &[
            Sys::Err(libc::EPERM),
            Sys::Err(libc::EPERM),
            Sys::Err(libc::EPERM)
        ]
    );
}

#[test]
fn no_enosys_stub_for_permissive_defaults() {
    for default in ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG"] {
        let filter = compile(json!({
            "defaultAction": default,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO"}]
        }));
        // mkdirat (258) is above getpid (39) but must reach the kernel: ENOENT.
        let out = run_under(&filter, false, |r| r.push(mkdirat_missing()));
        assert_eq!(
            out,
            Outcome::Reported(vec![Sys::Err(libc::ENOENT)]),
            "{default}"
        );
    }
}

#[test]
fn all_flags_load() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // No notify rule: WAIT_KILLABLE_RECV has no meaning and is not passed (the kernel would
    // refuse it without a listener).
    assert_eq!(
        filter.kernel_flags(),
        libc::SECCOMP_FILTER_FLAG_TSYNC
            | libc::SECCOMP_FILTER_FLAG_LOG
            | libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW
    );
    assert!(!filter.needs_notify());
    let out = run_under(&filter, false, |r| r.push(mkdirat_missing()));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::EPERM)]));
}

#[test]
fn extra_architectures_compile_and_load() {
    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_NATIVE"],
        "syscalls": [{"names": ["mkdirat", "socketcall"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let out = run_under(&filter, false, |r| r.push(mkdirat_missing()));
    assert_eq!(out, Outcome::Reported(vec![Sys::Err(libc::EPERM)]));
}

/// Clear CAP_SYS_ADMIN from the effective set of the calling thread (raw capget/capset).
fn drop_cap_sys_admin() -> bool {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    const CAP_SYS_ADMIN: u32 = 21;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and a two-element data array are what capget/capset take for version 3.
    unsafe {
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) != 0 {
            return false;
        }
        data[0].effective &= !(1 << CAP_SYS_ADMIN);
        libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) == 0
    }
}

#[test]
fn load_needs_no_new_privs_or_cap_sys_admin() {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, ForkResult};

    let filter = compile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]
    }));
    // 0: loaded; 1: EACCES with the hint; 2: other error; 3: could not drop the capability.
    let run = |set_nnp: bool| -> i32 {
        // SAFETY: the child makes raw syscalls only and ends with _exit.
        match unsafe { fork() }.expect("fork") {
            ForkResult::Child => {
                let code = if !drop_cap_sys_admin() {
                    3
                } else {
                    if set_nnp {
                        // SAFETY: prctl with integer arguments.
                        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                    }
                    match filter.load() {
                        Ok(_) => 0,
                        Err(kakuri_seccomp::SeccompError::Load {
                            errno: nix::errno::Errno::EACCES,
                            hint,
                        }) if hint.contains("no_new_privs") => 1,
                        Err(_) => 2,
                    }
                };
                // SAFETY: _exit ends the child without unwinding into the harness.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => code,
                other => panic!("child: {other:?}"),
            },
        }
    };
    assert_eq!(
        run(false),
        1,
        "without no_new_privs and CAP_SYS_ADMIN: EACCES"
    );
    assert_eq!(
        run(true),
        0,
        "with no_new_privs the filter loads unprivileged"
    );
}
