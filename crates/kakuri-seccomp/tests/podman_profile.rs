//! podman's default seccomp profile (/usr/share/containers/seccomp.json, Debian package
//! golang-github-containers-common): converted to linux.seccomp the way podman does for an
//! x86_64 container with podman's default capabilities, loaded for real, and timed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use kakuri_runtime_tests::seccomp_profile::podman_seccomp;
use kakuri_spec::oci::LinuxSeccomp;

fn podman_profile() -> LinuxSeccomp {
    kakuri_seccomp::profile_from_json(podman_seccomp().to_string().as_bytes())
        .expect("converted podman profile parses as linux.seccomp")
}

#[test]
fn podman_default_profile_blocks_and_allows() {
    let seccomp = podman_profile();
    assert_eq!(
        seccomp.default_errno_ret(),
        Some(libc::ENOSYS as u32),
        "podman's profile answers unlisted syscalls with ENOSYS"
    );
    let filter = kakuri_seccomp::compile(&seccomp).expect("podman profile compiles");
    assert!(!filter.needs_notify());

    let out = run_under(&filter, false, |r| {
        // Allowed.
        r.push(raw(libc::SYS_getpid, [0; 3]));
        // kexec_load: explicitly refused with EPERM.
        r.push(raw(libc::SYS_kexec_load, [0; 3]));
        // add_key: not in the profile, so the default action (ENOSYS).
        r.push(raw(libc::SYS_add_key, [0; 3]));
        // socket(AF_NETLINK, SOCK_RAW, NETLINK_AUDIT): EINVAL without CAP_AUDIT_WRITE
        // (two conditions on different arguments: both must hold).
        r.push(raw(
            libc::SYS_socket,
            [
                libc::AF_NETLINK as u64,
                libc::SOCK_RAW as u64,
                libc::NETLINK_AUDIT as u64,
            ],
        ));
        // personality: only listed personas are allowed.
        r.push(raw(libc::SYS_personality, [0xffff_ffff, 0, 0]));
        r.push(raw(libc::SYS_personality, [0x0040_0000, 0, 0])); // READ_IMPLIES_EXEC
                                                                 // mkdirat is allowed and reaches the kernel (ENOENT).
        r.push(raw(
            libc::SYS_mkdirat,
            [libc::AT_FDCWD as u64, missing_path(), 0o755],
        ));
    });
    let Outcome::Reported(res) = out else {
        panic!("child did not report: {out:?}")
    };
    assert!(matches!(res[0], Sys::Ok(pid) if pid > 0), "getpid: {res:?}");
    assert_eq!(res[1], Sys::Err(libc::EPERM), "kexec_load");
    assert_eq!(res[2], Sys::Err(libc::ENOSYS), "add_key");
    assert_eq!(res[3], Sys::Err(libc::EINVAL), "netlink audit socket");
    assert!(matches!(res[4], Sys::Ok(_)), "personality query: {res:?}");
    assert_eq!(
        res[5],
        Sys::Err(libc::ENOSYS),
        "personality READ_IMPLIES_EXEC"
    );
    assert_eq!(res[6], Sys::Err(libc::ENOENT), "mkdirat");
}

/// CPU time of the calling thread: unlike wall time, barely moved by other load on the machine.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill in.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn podman_default_profile_compile_time() {
    const RUNS: usize = 50;
    let seccomp = podman_profile();
    let names: usize = seccomp
        .syscalls()
        .iter()
        .flatten()
        .map(|s| s.names().len())
        .sum();
    let mut wall = Vec::with_capacity(RUNS);
    let mut cpu = Vec::with_capacity(RUNS);
    let mut instructions = 0;
    for _ in 0..RUNS {
        let (start, start_cpu) = (Instant::now(), thread_cpu_time());
        let filter = kakuri_seccomp::compile(&seccomp).expect("compile");
        wall.push(start.elapsed());
        cpu.push(thread_cpu_time() - start_cpu);
        instructions = filter.instruction_count();
    }
    wall.sort();
    cpu.sort();
    let median = |v: &[Duration]| v[v.len() / 2];
    println!(
        "compile() of podman's default profile ({} rules, {names} names, 3 architectures, \
         {instructions} BPF instructions), {RUNS} runs: wall median {:?} (min {:?}, max {:?}); \
         thread CPU median {:?} (min {:?}, max {:?})",
        seccomp.syscalls().as_ref().map_or(0, Vec::len),
        median(&wall),
        wall[0],
        wall[RUNS - 1],
        median(&cpu),
        cpu[0],
        cpu[RUNS - 1],
    );
    assert!(instructions > 100, "{instructions} instructions");
    // Generous bound (debug build, shared 2-core machine): compile must not take seconds.
    assert!(
        median(&cpu) < Duration::from_millis(500),
        "CPU median {:?}",
        median(&cpu)
    );
}
