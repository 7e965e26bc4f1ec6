//! End-to-end tests of kakuri under Docker Engine 20.10 (Debian's docker.io): a private dockerd
//! with its own containerd, data root, exec root, socket and pidfile, no iptables and no bridge,
//! kakuri registered both with `--add-runtime kakuri=<bin>` and in daemon.json (`kakuri-json`,
//! the default runtime). Images come from `docker import` of a busybox-static tarball.
//!
//! Run: `KAKURI_BIN=/usr/sbin/runc cargo test -p kakuri-runtime-tests --test client_docker`
//! (as root, after `runtime-tests/clients/setup`). See docs/docker.md.

mod clients_common;

use clients_common::{client_test, read_trim, Harness, Kind, IMAGE};
use std::time::Duration;

clients_common::dockerlike_scenarios!(
    Kind::Docker;
    output_and_exit_code,
    killed_exit_code,
    stdin_interactive,
    exec_output_code_user_cwd_env_stdin,
    top_lists_processes,
    stop_trapped_sigterm_then_rm_leaves_nothing,
    terminal_run,
    terminal_exec,
    pause_unpause_freezer,
    stats_report_memory,
    update_memory_and_cpu_shares,
    memory_and_pids_limits_inside,
    env_user_groups,
    read_only_rootfs_and_tmpfs,
    bind_mounts_rw_ro,
    capabilities_add_drop,
    hostname,
    kill_with_signal,
    restart_gets_new_pid,
    seccomp_default_and_unconfined,
    no_new_privileges,
    masked_and_readonly_paths,
    missing_binary_127,
    not_executable_126,
    ten_megabytes_of_output,
    endless_writer_ends_at_head,
    privileged,
);

/// Tests in this file; the last one to finish stops dockerd and checks that nothing is left.
/// (The scenarios' tests come from `dockerlike_scenarios!`, whose attribute is not in this file.)
const TESTS: usize = SCENARIOS + clients_common::count_tests(include_str!("client_docker.rs"));

fn docker(h: &Harness, args: &[&str]) -> clients_common::Output {
    let mut c = h.docker();
    c.args(args);
    clients_common::run_cmd(c, None, Duration::from_secs(90))
}

/// `--init` puts Docker's init (tini, /usr/bin/docker-init) in front of the command as pid 1.
#[test]
fn init_process() {
    client_test(Kind::Docker, TESTS, "init_process", |h| {
        let out = docker(
            h,
            &[
                "run",
                "--rm",
                "--runtime",
                "kakuri",
                "--network",
                "none",
                "--init",
                IMAGE,
                "sh",
                "-c",
                "cat /proc/1/comm; echo $$; exit 7",
            ],
        );
        out.expect_code(7);
        let text = out.out();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"docker-init"), "{}", out.describe());
        assert_ne!(
            lines.get(1),
            Some(&"1"),
            "sh is pid 1 despite --init: {}",
            out.describe()
        );
    });
}

/// Without `--runtime`, daemon.json's `default-runtime` (the `kakuri-json` entry of its
/// "runtimes" map) runs the container: the shim is given kakuri as its BinaryName.
#[test]
fn daemon_json_runtime_is_default() {
    client_test(Kind::Docker, TESTS, "daemon_json_runtime_is_default", |h| {
        let name = h.name("default-rt");
        docker(
            h,
            &[
                "run",
                "-d",
                "--name",
                &name,
                "--network",
                "none",
                IMAGE,
                "sleep",
                "1000",
            ],
        )
        .ok();
        let runtime = docker(
            h,
            &["inspect", "--format", "{{.HostConfig.Runtime}}", &name],
        );
        let id = docker(h, &["inspect", "--format", "{{.Id}}", &name]).ok();
        let binary = h.shim_binary_name(id.trim());
        let info = docker(h, &["info", "--format", "{{json .Runtimes}}"]);
        let pid = docker(h, &["inspect", "--format", "{{.State.Pid}}", &name]).ok();
        let comm = read_trim(std::path::Path::new(&format!("/proc/{}/comm", pid.trim())));
        docker(h, &["rm", "-f", &name]).ok();
        assert_eq!(runtime.ok().trim(), "kakuri-json");
        let runtimes: serde_json::Value = serde_json::from_str(&info.ok()).unwrap_or_else(|e| {
            panic!(
                "docker info Runtimes is not JSON ({e}): {}",
                info.describe()
            )
        });
        for name in ["kakuri", "kakuri-json"] {
            assert_eq!(
                runtimes[name]["path"].as_str(),
                Some(h.kakuri.to_string_lossy().as_ref()),
                "docker info does not list runtime {name}: {runtimes}"
            );
        }
        assert_eq!(
            binary.as_deref(),
            Some(h.kakuri.to_string_lossy().as_ref()),
            "the shim does not run the runtime under test"
        );
        assert_eq!(comm, "sleep");
    });
}
