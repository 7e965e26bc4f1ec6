//! End-to-end tests of kakuri under podman 4.3 + conmon: private storage root, runroot and
//! tmp dir through its own containers.conf and storage.conf (vfs driver), cgroupfs manager,
//! file events logger, file locks, `--network none`, `podman --runtime <kakuri>`; kakuri is
//! also configured by name in `[engine.runtimes]` and listed in runtime_supports_json.
//! Images come from `podman import` of a busybox-static tarball.
//!
//! Run: `KAKURI_BIN=/usr/sbin/runc cargo test -p kakuri-runtime-tests --test client_podman`
//! (as root, after `runtime-tests/clients/setup`). See docs/podman.md.

mod clients_common;

use clients_common::{client_test, pids_with_cmdline, run_cmd, wait_until, Kind, IMAGE};
use std::process::Command;
use std::time::Duration;

clients_common::dockerlike_scenarios!(
    Kind::Podman;
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

/// Tests in this file; the last one to finish removes everything and checks nothing is left.
/// (The scenarios' tests come from `dockerlike_scenarios!`, whose attribute is not in this file.)
const TESTS: usize = SCENARIOS + clients_common::count_tests(include_str!("client_podman.rs"));

/// The runtime configured by name (`runtime = "kakuri"` and `[engine.runtimes] kakuri = [..]`
/// in containers.conf) runs containers without `--runtime`, and because the name is listed in
/// runtime_supports_json podman hands `--log-format=json` to it (seen on conmon's command line).
#[test]
fn configured_runtime_name_and_json_log_format() {
    client_test(
        Kind::Podman,
        TESTS,
        "configured_runtime_name_and_json_log_format",
        |h| {
            let name = h.name("by-name");
            let podman = || {
                let mut c = Command::new("podman");
                c.env("CONTAINERS_CONF", h.dir.join("containers.conf"))
                    .env("CONTAINERS_STORAGE_CONF", h.dir.join("storage.conf"))
                    .env("CONTAINERS_REGISTRIES_CONF", h.dir.join("registries.conf"));
                c
            };
            let t = Duration::from_secs(90);
            let mut run = podman();
            run.args(["run", "-d", "--name", &name, "--network", "none"])
                .arg(format!("--cgroup-parent={}", h.cgroup_parent_arg()))
                .args([IMAGE, "sleep", "1000"]);
            let started = run_cmd(run, None, t);
            let mut inspect = podman();
            inspect.args(["inspect", "--format", "{{.OCIRuntime}} {{.Id}}", &name]);
            let inspected = run_cmd(inspect, None, t);
            let conmon: Vec<String> = pids_with_cmdline(&name)
                .into_iter()
                .filter_map(|p| std::fs::read(format!("/proc/{p}/cmdline")).ok())
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .filter(|c| c.contains("conmon"))
                .collect();
            let mut rm = podman();
            rm.args(["rm", "-f", "-t", "0", &name]);
            let removed = run_cmd(rm, None, t);
            started.ok();
            let text = inspected.ok();
            assert!(
                text.starts_with("kakuri "),
                "OCIRuntime: {}",
                inspected.describe()
            );
            assert_eq!(
                conmon.len(),
                1,
                "one conmon expected for {name}: {conmon:?}"
            );
            assert!(
                conmon[0].contains("--log-format=json")
                    && conmon[0].contains(&h.kakuri.to_string_lossy().to_string()),
                "conmon is not told to run kakuri with --log-format=json: {}",
                conmon[0]
            );
            removed.ok();
        },
    );
}

/// `podman run --sdnotify=container` with a notify socket the test owns (as systemd's for a
/// `Type=notify` unit): the container's READY, sent only once the test opens a gate, reaches
/// that socket through kakuri's pass-through (and conmon's relay).
#[test]
fn sdnotify_container_relays_ready() {
    client_test(
        Kind::Podman,
        TESTS,
        "sdnotify_container_relays_ready",
        |h| {
            use std::os::unix::net::UnixDatagram;
            let helper = h.scratch("sdnotify-bin");
            kakuri_runtime_tests::build_sdnotify(&helper.join("sdnotify"), &h.dir);
            let gate = h.scratch("sdnotify-gate");
            let sock_path = h.scratch("sdnotify-sock").join("notify.sock");
            let sock = UnixDatagram::bind(&sock_path).expect("bind the notify socket");
            sock.set_read_timeout(Some(Duration::from_millis(200)))
                .expect("timeout");
            let name = h.name("sdnotify");
            let mut run = h.podman();
            run.env("NOTIFY_SOCKET", &sock_path)
            .args(["run", "-d", "--sdnotify=container", "--name", &name])
            .args(["--network", "none"])
            .arg(format!("--cgroup-parent=/{}", h.cgroup_parent))
            .arg("-v")
            .arg(format!("{}:/helper:ro", helper.display()))
            .arg("-v")
            .arg(format!("{}:/gate", gate.display()))
            .args([
                IMAGE,
                "sh",
                "-c",
                "echo $NOTIFY_SOCKET > /gate/env; while [ ! -e /gate/go ]; do usleep 10000; done; \
                 /helper/sdnotify READY=1 && touch /gate/sent; exec sleep 1000",
            ]);
            let t = Duration::from_secs(90);
            let started = run_cmd(run, None, t);
            let mut got: Vec<String> = Vec::new();
            let mut buf = [0u8; 4096];
            let mut recv = |got: &mut Vec<String>| {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
                }
            };
            let ready = |got: &[String]| got.iter().any(|m| m == "READY=1");
            // The container is up (it wrote its NOTIFY_SOCKET), the gate is closed: no READY.
            wait_until(30, "the container to start", || gate.join("env").exists());
            let end = std::time::Instant::now() + Duration::from_millis(500);
            while std::time::Instant::now() < end {
                recv(&mut got);
            }
            let before = got.clone();
            std::fs::write(gate.join("go"), "").expect("open the gate");
            let end = std::time::Instant::now() + Duration::from_secs(30);
            while !ready(&got) && std::time::Instant::now() < end {
                recv(&mut got);
            }
            let env_seen = std::fs::read_to_string(gate.join("env")).unwrap_or_default();
            let mut rm = h.podman();
            rm.args(["rm", "-f", "-t", "0", &name]);
            let removed = run_cmd(rm, None, t);
            started.ok();
            removed.ok();
            assert!(
                !ready(&before),
                "READY before the container sent it: {before:?}"
            );
            assert!(ready(&got), "no READY=1 reached the socket: {got:?}");
            assert_eq!(env_seen.trim(), "/run/notify/notify.sock");
        },
    );
}
