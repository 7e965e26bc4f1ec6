//! podman 4.3's `container checkpoint` / `container restore` driving the runtime under test
//! (`podman --runtime <kakuri>`, root podman with the private configuration of
//! client_podman.rs): in place, with `--leave-running`, `--tcp-established`, `--export` and
//! `--import` (into a new container, also under another `--name`). The containers count on
//! their stdout; `podman logs` must show one unbroken run of numbers across every checkpoint.
//!
//! CRIU 3.17 works only on some kernels: where `criu check` fails each test prints SKIP.
//! `runtime-tests/vm/run-criu-tests` runs this file in its Debian 6.1 guest (docs/checkpoint.md).
//! Run: `KAKURI_BIN=/usr/sbin/runc cargo test -p kakuri-runtime-tests --test client_podman_checkpoint`.

mod clients_common;

use clients_common::{client_test, run_cmd, wait_until, Harness, Kind, Output, IMAGE};
use kakuri_runtime_tests::criu_unusable;
use std::time::Duration;

/// Tests in this file; the last one to finish tears the private podman down.
const TESTS: usize = clients_common::count_tests(include_str!("client_podman_checkpoint.rs"));

/// podman under qemu TCG is slow: a checkpoint with an export takes tens of seconds there.
const T: Duration = Duration::from_secs(240);

/// Counts on stdout, one number a line from 0, every 0.2 s.
const COUNTER: &str = "i=0; while :; do echo $i; i=$((i+1)); usleep 200000; done";

/// Counts through a TCP connection inside the container: the numbers go to a busybox `nc`
/// client, the `nc -l` server in the same container writes what it receives to stdout. The
/// counting shows in the log only while that connection lives. The server's stdin is a pipe
/// that never ends: busybox `nc` quits at the end of its stdin.
const TCP_COUNTER: &str = "sleep 1000000 | nc -l -p 9000 & sleep 1; \
     i=0; while :; do echo $i; i=$((i+1)); usleep 200000; done | nc 127.0.0.1 9000";

fn is_runc() -> bool {
    clients_common::kakuri_bin()
        .file_name()
        .is_some_and(|n| n == "runc")
}

fn checkpoint_test(name: &str, body: impl FnOnce(&Harness)) {
    if let Some(why) = criu_unusable() {
        eprintln!("SKIP {name}: {}", why.lines().next().unwrap_or(""));
        return;
    }
    client_test(Kind::Podman, TESTS, name, body);
}

fn podman(h: &Harness, args: &[&str]) -> Output {
    let mut c = h.podman();
    c.args(args);
    run_cmd(c, None, T)
}

/// The numbers of `podman logs NAME`.
fn counts(h: &Harness, name: &str) -> Vec<u64> {
    podman(h, &["logs", name])
        .out()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until the log of `name` goes past `past`; returns the numbers.
fn wait_past(h: &Harness, name: &str, past: u64) -> Vec<u64> {
    let mut last = Vec::new();
    wait_until(120, &format!("{name} to count past {past}"), || {
        last = counts(h, name);
        last.last().is_some_and(|n| *n > past)
    });
    last
}

/// Panics unless `c` is 0, 1, 2, ... without a gap or a restart.
#[track_caller]
fn assert_unbroken(what: &str, c: &[u64]) {
    assert!(!c.is_empty(), "{what}: no numbers in the log");
    for (i, n) in c.iter().enumerate() {
        assert_eq!(
            *n, i as u64,
            "{what}: the count broke at line {i} (a restart or a lost stretch): {c:?}"
        );
    }
}

/// Panics unless `c` is the log of a copy made from a `--leave-running` export: the exported
/// log 0..=M (which may run past the checkpoint: the original counted on until the export),
/// then the copy's own count going on from S with 1 <= S <= M + 1, not from 0.
#[track_caller]
fn assert_copy_counts_on(what: &str, c: &[u64]) {
    let split = (1..c.len())
        .find(|&i| c[i] != c[i - 1] + 1)
        .unwrap_or(c.len());
    let (exported, own) = c.split_at(split);
    assert_unbroken(&format!("{what} (the exported log)"), exported);
    if let Some(&s) = own.first() {
        let m = *exported.last().unwrap();
        assert!(
            s >= 1 && s <= m + 1,
            "{what}: the copy started counting at {s}, the export ended at {m}: {c:?}"
        );
        for (i, n) in own.iter().enumerate() {
            assert_eq!(*n, s + i as u64, "{what}: the copy's count broke: {own:?}");
        }
    }
}

/// The status podman shows for `name` (`Up ...`, `Exited ...`).
fn status(h: &Harness, name: &str) -> String {
    podman(
        h,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("name=^{name}$"),
            "--format",
            "{{.Status}}",
        ],
    )
    .out()
    .trim()
    .to_string()
}

/// Removes the containers whatever happened (force, no grace period).
struct Cleanup<'a>(&'a Harness, Vec<String>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for n in &self.1 {
            let _ = podman(self.0, &["rm", "-f", "-t", "0", n]);
        }
    }
}

/// `podman container checkpoint` stops the container (the runtime dumps and deletes it);
/// `podman container restore` brings the same container back and it counts on from where
/// it stopped. Then a checkpoint with `--leave-running` keeps it counting, and one with
/// `--leave-running --export A` is restored twice with `--import A --name COPY`: two new
/// containers that count on from the checkpoint, the original still counting.
#[test]
fn checkpoint_restore_in_place_counts_on() {
    checkpoint_test("checkpoint_restore_in_place_counts_on", |h| {
        let name = h.name("ckpt");
        let copy1 = h.name("copy");
        let copy2 = h.name("copy");
        let _cleanup = Cleanup(h, vec![name.clone(), copy1.clone(), copy2.clone()]);
        let mut run = h.cli_run(&["-d", "--name", &name]);
        run.args([IMAGE, "sh", "-c", COUNTER]);
        run_cmd(run, None, T).ok();
        wait_past(h, &name, 5);

        podman(h, &["container", "checkpoint", &name]).ok();
        let st = status(h, &name);
        assert!(st.starts_with("Exited"), "after checkpoint: {st}");
        let at_checkpoint = counts(h, &name);
        assert_unbroken("before the restore", &at_checkpoint);
        let last = *at_checkpoint.last().unwrap();
        // Stopped: nothing more is written.
        std::thread::sleep(Duration::from_secs(1));
        assert_eq!(counts(h, &name), at_checkpoint, "counting after checkpoint");

        podman(h, &["container", "restore", &name]).ok();
        let st = status(h, &name);
        assert!(st.starts_with("Up"), "after restore: {st}");
        let c = wait_past(h, &name, last + 5);
        assert_unbroken("after the restore", &c);

        // --leave-running: podman 4.3 passes it to the runtime twice.
        podman(h, &["container", "checkpoint", "--leave-running", &name]).ok();
        let st = status(h, &name);
        assert!(
            st.starts_with("Up"),
            "after checkpoint --leave-running: {st}"
        );
        let now = *counts(h, &name).last().unwrap();
        let c = wait_past(h, &name, now + 5);
        assert_unbroken("after checkpoint --leave-running", &c);

        // --export with --leave-running, then two copies with --import --name: each a new
        // container that counts on from the checkpoint while the original keeps counting.
        let archive = h.scratch("archive").join("copy.tar.gz");
        let archive = archive.to_str().unwrap();
        podman(
            h,
            &[
                "container",
                "checkpoint",
                "--leave-running",
                "--export",
                archive,
                &name,
            ],
        )
        .ok();
        for copy in [&copy1, &copy2] {
            podman(
                h,
                &["container", "restore", "--import", archive, "--name", copy],
            )
            .ok();
            let st = status(h, copy);
            assert!(st.starts_with("Up"), "{copy} after restore --import: {st}");
            let from = counts(h, copy).len();
            let mut c = Vec::new();
            wait_until(120, &format!("{copy} to count on"), || {
                c = counts(h, copy);
                c.len() > from + 5
            });
            assert_copy_counts_on(copy, &c);
        }
        let now = *counts(h, &name).last().unwrap();
        let c = wait_past(h, &name, now + 3);
        assert_unbroken("the original after the copies", &c);
    });
}

/// A container whose count runs through a TCP connection inside it:
/// - a checkpoint without `--tcp-established` fails (CRIU refuses the connection) and the
///   container keeps counting;
/// - `checkpoint --leave-running --tcp-established` keeps it counting;
/// - `checkpoint --tcp-established --export A`, `rm`, `restore --import A --tcp-established`
///   makes it again from the archive under its own name, counting on over the restored
///   connection. (podman 4.3 refuses `--tcp-established` with `--name`, so a TCP container
///   cannot be copied under another name.) kakuri brings `lo` up in the network namespace
///   CRIU makes; runc 1.1 does not, and that restore fails with it.
#[test]
fn tcp_established_checkpoint_export_rm_import() {
    checkpoint_test("tcp_established_checkpoint_export_rm_import", |h| {
        let name = h.name("tcp");
        let _cleanup = Cleanup(h, vec![name.clone()]);
        let archive = h.scratch("archive").join("moved.tar.gz");
        let archive = archive.to_str().unwrap();
        let mut run = h.cli_run(&["-d", "--name", &name]);
        run.args([IMAGE, "sh", "-c", TCP_COUNTER]);
        run_cmd(run, None, T).ok();
        wait_past(h, &name, 5);

        let refused = podman(h, &["container", "checkpoint", &name]);
        assert_ne!(refused.code, Some(0), "{}", refused.describe());
        let st = status(h, &name);
        assert!(st.starts_with("Up"), "after the refused checkpoint: {st}");
        let now = *counts(h, &name).last().unwrap();
        wait_past(h, &name, now + 3);

        podman(
            h,
            &[
                "container",
                "checkpoint",
                "--leave-running",
                "--tcp-established",
                &name,
            ],
        )
        .ok();
        let st = status(h, &name);
        assert!(
            st.starts_with("Up"),
            "after checkpoint --leave-running: {st}"
        );
        let now = *counts(h, &name).last().unwrap();
        let c = wait_past(h, &name, now + 3);
        assert_unbroken("after checkpoint --leave-running --tcp-established", &c);

        podman(
            h,
            &[
                "container",
                "checkpoint",
                "--tcp-established",
                "--export",
                archive,
                &name,
            ],
        )
        .ok();
        let last = *counts(h, &name).last().unwrap();
        podman(h, &["rm", &name]).ok();
        let restored = podman(
            h,
            &[
                "container",
                "restore",
                "--import",
                archive,
                "--tcp-established",
            ],
        );
        if is_runc() {
            // runc 1.1 leaves `lo` down in the network namespace CRIU makes (empty_ns), and
            // CRIU cannot connect the restored socket back: "Network is unreachable".
            assert_ne!(restored.code, Some(0), "{}", restored.describe());
            eprintln!(
                "runc: restore --import --tcp-established fails as expected: {}",
                restored.stderr.lines().next().unwrap_or("")
            );
            return;
        }
        restored.ok();
        let st = status(h, &name);
        assert!(st.starts_with("Up"), "after restore --import: {st}");
        let c = wait_past(h, &name, last + 5);
        assert_unbroken("restored from its export", &c);
    });
}
