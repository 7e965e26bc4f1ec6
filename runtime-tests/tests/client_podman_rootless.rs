//! Rootless podman 4.3 with kakuri: the podman suite's scenarios that make sense without root,
//! run by the unprivileged user of `runtime-tests/setup-rootless-user` (podman in its own user
//! namespace, kakuri as uid 0 there, no cgroups on this cgroup v1 host), plus logs and named
//! volumes. Same harness as client_podman.rs (`Kind::PodmanRootless`: podman runs as the user
//! with HOME and XDG_RUNTIME_DIR in the run's directory).
//!
//! Run: `KAKURI_BIN=/usr/sbin/runc cargo test -p kakuri-runtime-tests --test client_podman_rootless`
//! (as root, after `runtime-tests/setup-host`). See docs/podman.md and docs/rootless.md.

mod clients_common;

use clients_common::{client_test, run_cmd, Kind, IMAGE};
use std::time::Duration;

// Left out: pause/unpause, stats, update, memory/pids limits (podman refuses resource limits
// and the freezer for rootless containers on cgroup v1, whatever the runtime) and privileged
// (host devices an unprivileged user may not open).
clients_common::dockerlike_scenarios!(
    Kind::PodmanRootless;
    output_and_exit_code,
    killed_exit_code,
    stdin_interactive,
    exec_output_code_user_cwd_env_stdin,
    top_lists_processes,
    stop_trapped_sigterm_then_rm_leaves_nothing,
    terminal_run,
    terminal_exec,
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
);

/// Tests in this file; the last one to finish removes everything and checks nothing is left.
const TESTS: usize =
    SCENARIOS + clients_common::count_tests(include_str!("client_podman_rootless.rs"));

const T: Duration = Duration::from_secs(90);

/// `podman logs` of a detached container, after it stopped.
#[test]
fn logs_of_a_detached_container() {
    client_test(
        Kind::PodmanRootless,
        TESTS,
        "logs_of_a_detached_container",
        |h| {
            let name = h.name("logs");
            let run = h.cli_run(&[
                "-d",
                "--name",
                &name,
                IMAGE,
                "sh",
                "-c",
                "echo one; echo two >&2",
            ]);
            run_cmd(run, None, T).ok();
            let mut wait = h.cli();
            wait.args(["wait", &name]);
            let waited = run_cmd(wait, None, T);
            let mut logs = h.cli();
            logs.args(["logs", &name]);
            let out = run_cmd(logs, None, T);
            let mut rm = h.cli();
            rm.args(["rm", "-f", &name]);
            let removed = run_cmd(rm, None, T);
            assert_eq!(waited.ok().trim(), "0", "{}", waited.describe());
            assert_eq!(out.ok(), "one\n", "{}", out.describe());
            assert!(out.stderr.contains("two"), "{}", out.describe());
            removed.ok();
        },
    );
}

/// A named volume written by one container is read by the next, then removed.
#[test]
fn named_volume_between_containers() {
    client_test(
        Kind::PodmanRootless,
        TESTS,
        "named_volume_between_containers",
        |h| {
            let vol = h.name("vol");
            let mut create = h.cli();
            create.args(["volume", "create", &vol]);
            run_cmd(create, None, T).ok();
            let mount = format!("{vol}:/data");
            let write = h.cli_run(&[
                "--rm",
                "-v",
                &mount,
                IMAGE,
                "sh",
                "-c",
                "echo kept > /data/f",
            ]);
            let written = run_cmd(write, None, T);
            let read = h.cli_run(&["--rm", "-v", &mount, IMAGE, "cat", "/data/f"]);
            let got = run_cmd(read, None, T);
            let mut rm = h.cli();
            rm.args(["volume", "rm", &vol]);
            let removed = run_cmd(rm, None, T);
            written.ok();
            assert_eq!(got.ok(), "kept\n", "{}", got.describe());
            removed.ok();
        },
    );
}
