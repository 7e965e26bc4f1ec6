//! containerd 1.6's checkpoint and restore driving the runtime under test as the runc v2
//! shim's binary (`ctr run --runc-binary <kakuri>`, the private containerd of
//! client_containerd.rs): `ctr containers checkpoint --task` makes a checkpoint image, the
//! container is killed and removed, `ctr containers restore --live` makes it again from that
//! image and the counter goes on from the checkpointed value.
//!
//! CRIU 3.17 works only on some kernels: where `criu check` fails each test prints SKIP.
//! `runtime-tests/vm/run-criu-tests` runs this file in its Debian 6.1 guest (docs/containerd.md).

mod clients_common;

use clients_common::{client_test, run_cmd, wait_until, Harness, Kind, Output, CTR_IMAGE};
use kakuri_runtime_tests::criu_unusable;
use std::path::Path;
use std::time::Duration;

/// Tests in this file; the last one to finish stops containerd.
const TESTS: usize = clients_common::count_tests(include_str!("client_containerd_checkpoint.rs"));

/// containerd under qemu TCG is slow.
const T: Duration = Duration::from_secs(240);

fn ctr(h: &Harness, args: &[&str]) -> Output {
    let mut c = h.ctr();
    c.args(args);
    run_cmd(c, None, T)
}

fn counts(file: &Path) -> Vec<u64> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_more(file: &Path, than: usize) -> Vec<u64> {
    let mut c = Vec::new();
    wait_until(120, &format!("more than {than} counts"), || {
        c = counts(file);
        c.len() > than
    });
    c
}

/// The task's status in `ctr task ls` (RUNNING, STOPPED, PAUSED), or "" when there is none.
fn task_status(h: &Harness, id: &str) -> String {
    ctr(h, &["task", "ls"])
        .out()
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or_default()
        .to_string()
}

/// Kills and removes the task, the container and the checkpoint image whatever happened.
struct Cleanup<'a>(&'a Harness, String, String);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let (h, id, image) = (self.0, &self.1, &self.2);
        let _ = ctr(h, &["task", "kill", "-s", "KILL", id]);
        let _ = ctr(h, &["task", "rm", "-f", id]);
        let _ = ctr(h, &["container", "rm", id]);
        let _ = ctr(h, &["image", "rm", image]);
    }
}

fn kill_and_remove(h: &Harness, id: &str) {
    ctr(h, &["task", "kill", "-s", "KILL", id]).ok();
    wait_until(60, "the task to stop", || task_status(h, id) == "STOPPED");
    ctr(h, &["task", "rm", id]).ok();
    ctr(h, &["container", "rm", id]).ok();
}

/// Checkpoint with `ctr containers checkpoint --task`, kill and remove the container, restore
/// it with `ctr containers restore --live`: the counter goes on from the checkpointed value.
#[test]
fn container_checkpoint_then_restore_live_counts_on() {
    let name = "container_checkpoint_then_restore_live_counts_on";
    if let Some(why) = criu_unusable() {
        eprintln!("SKIP {name}: {}", why.lines().next().unwrap_or(""));
        return;
    }
    client_test(Kind::Containerd, TESTS, name, |h| {
        let id = h.name("ckpt");
        let image = format!("localhost/kakuri-checkpoint/{id}:1");
        let _cleanup = Cleanup(h, id.clone(), image.clone());
        let data = h.scratch("count");
        let file = data.join("count");
        let mut run = h.ctr();
        run.args(["run", "-d", "--null-io"])
            .args(h.ctr_runtime_args(&id))
            .arg("--mount")
            .arg(format!(
                "type=bind,src={},dst=/data,options=rbind:rw",
                data.display()
            ))
            .args([CTR_IMAGE, &id, "sh", "-c"])
            .arg("i=0; while :; do echo $i >> /data/count; i=$((i+1)); usleep 200000; done");
        run_cmd(run, None, T).ok();
        wait_more(&file, 5);

        ctr(h, &["container", "checkpoint", "--task", &id, &image]).ok();
        // containerd pauses the task for the checkpoint and resumes it: it keeps counting.
        let at = counts(&file).len();
        wait_more(&file, at + 3);
        assert_eq!(task_status(h, &id), "RUNNING");
        kill_and_remove(h, &id);
        let before = counts(&file);
        for (i, n) in before.iter().enumerate() {
            assert_eq!(
                *n, i as u64,
                "the count broke before the restore: {before:?}"
            );
        }

        ctr(h, &["container", "restore", "--live", &id, &image]).ok();
        wait_until(120, "the restored task to run", || {
            task_status(h, &id) == "RUNNING"
        });
        let c = wait_more(&file, before.len() + 5);
        // The restored counter writes on from its value at the checkpoint, which is at most
        // the last number written before the kill; a fresh start would write 0.
        let after = &c[before.len()..];
        let first = after[0];
        assert!(
            first > 0 && first <= *before.last().unwrap() + 1,
            "the restored task did not go on from the checkpoint: before {before:?}, after {after:?}"
        );
        for (i, n) in after.iter().enumerate() {
            assert_eq!(*n, first + i as u64, "the restored count broke: {after:?}");
        }
    });
}
