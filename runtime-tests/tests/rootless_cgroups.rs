//! Rootless cgroups on a pure cgroup v2 host (the qemu guest of runtime-tests/vm, through
//! `runtime-tests/vm/run-v2-tests`): the unprivileged user `kakuri-rl` (made by
//! `runtime-tests/setup-rootless-user`) owns a delegated subtree, made here as systemd's
//! `Delegate=yes` makes one (the directory, and the files the kernel lists in
//! /sys/kernel/cgroup/delegate, chowned to the user), and its commands start in a leaf of that
//! subtree (a process may only move processes within a subtree it is in: the delegation
//! containment rule of cgroup-v2.rst). Then memory, pids and cpu limits apply, with a relative
//! and an absolute `linux.cgroupsPath`, are seen from the host and from inside the container,
//! `update`, `pause`/`resume`, `exec`, `ps` work, and `delete` removes the cgroup. Without
//! delegation, limits fail with runc's reason and leave nothing, while no limits and no path
//! still run (the cgroup is left out). Every check is made on the runtime under test and on
//! runc 1.1 (`/usr/sbin/runc`), whose rootless fs2 manager is the reference.
//!
//! On a host that is not pure cgroup v2 (this project's hybrid host) each test prints
//! `SKIP <name>: ...` and passes; `run-v2-tests` sets `KAKURI_REQUIRE_V2=1`, under which a
//! missing cgroup v2 is a failure instead.

use kakuri_runtime_tests::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The unprivileged user of these tests.
const USER: &str = "kakuri-rl";
const RUNC: &str = "/usr/sbin/runc";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// True on a pure cgroup v2 host; otherwise prints the SKIP line (or fails under
/// `KAKURI_REQUIRE_V2`, as set by run-v2-tests).
fn pure_v2(name: &str) -> bool {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        return true;
    }
    assert!(
        std::env::var_os("KAKURI_REQUIRE_V2").is_none(),
        "{name}: KAKURI_REQUIRE_V2 is set but {CGROUP_ROOT} is not a pure cgroup v2 mount"
    );
    eprintln!("SKIP {name}: needs a pure cgroup v2 host (runs in the v2 guest via run-v2-tests)");
    false
}

/// The runtime under test, then runc (once if they are the same binary).
fn runtimes() -> Vec<PathBuf> {
    let mut v = vec![runtime_bin().to_path_buf()];
    if runtime_bin() != Path::new(RUNC) && Path::new(RUNC).exists() {
        v.push(PathBuf::from(RUNC));
    }
    v
}

/// A cgroup subtree for the test user: `/sys/fs/cgroup/<test id>-deleg` and the leaf
/// `<test id>-shell` below it, where the user's commands start. `owned`: chowned to the user
/// as systemd's `Delegate=yes` does; otherwise left to root (no delegation). Removed on drop,
/// killing whatever is still in it.
struct Subtree {
    dir: PathBuf,
    leaf: PathBuf,
}

impl Subtree {
    fn new(env: &TestEnv, owned: bool) -> Subtree {
        let u = env.rt().user().expect("an env as_user").clone();
        let dir = Path::new(CGROUP_ROOT).join(format!("{}-deleg", env.id()));
        let leaf = dir.join(format!("{}-shell", env.id()));
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let t = Subtree { dir, leaf };
        fs::create_dir(&t.leaf).unwrap_or_else(|e| panic!("mkdir {}: {e}", t.leaf.display()));
        if owned {
            // What systemd chowns for Delegate=yes: the directory and the files the kernel
            // says are safe to delegate (cgroup.procs, cgroup.threads, cgroup.subtree_control,
            // memory.oom.group, memory.reclaim on 6.x), those that exist.
            let listed = fs::read_to_string("/sys/kernel/cgroup/delegate").unwrap_or_else(|_| {
                "cgroup.procs\ncgroup.threads\ncgroup.subtree_control\n".into()
            });
            for d in [&t.dir, &t.leaf] {
                let mut paths = vec![d.clone()];
                paths.extend(
                    listed
                        .split_whitespace()
                        .map(|f| d.join(f))
                        .filter(|p| p.exists()),
                );
                for p in paths {
                    std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid))
                        .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
                }
            }
        }
        t
    }

    /// The cgroup directories below the subtree other than the leaf, deepest first.
    fn others(&self) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            for e in fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                    out.push(e.path());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &mut out);
        out.retain(|p| p != &self.leaf);
        out
    }

    /// Remove the subtree (best effort); the directories that could not be removed.
    fn remove_all(&self) -> Vec<PathBuf> {
        if !self.dir.exists() {
            return Vec::new();
        }
        let _ = fs::write(self.dir.join("cgroup.kill"), "1");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut left = self.others();
            left.push(self.leaf.clone());
            left.push(self.dir.clone());
            left.retain(|d| fs::remove_dir(d).is_err() && d.exists());
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Remove the subtree; it must hold nothing but the leaf by now.
    #[track_caller]
    fn finish(self) {
        let others = self.others();
        let left = self.remove_all();
        assert!(others.is_empty(), "cgroups left in the subtree: {others:?}");
        assert!(left.is_empty(), "cannot remove {left:?}");
    }

    /// A path relative to the cgroup2 root ("/kt-1-2-deleg/x").
    fn inner(&self, name: &str) -> String {
        format!(
            "/{}/{name}",
            self.dir.strip_prefix(CGROUP_ROOT).unwrap().display()
        )
    }
}

impl Drop for Subtree {
    fn drop(&mut self) {
        let _ = self.remove_all();
    }
}

/// An env running `bin` as the test user, its commands starting in the leaf of a new subtree.
fn setup(bin: &Path, owned: bool) -> (TestEnv, Subtree) {
    let env = TestEnv::with_runtime(bin).as_user(USER);
    let sub = Subtree::new(&env, owned);
    let env = env.in_cgroup(&sub.leaf);
    (env, sub)
}

/// The config of `spec --rootless` (run as the user, in its own directory) with the test
/// defaults: the bundle of the rootless tests.
fn rootless_bundle(env: &TestEnv) -> Bundle {
    let dir = env.dir().join(format!("spec-{}", unique_id()));
    fs::create_dir(&dir).expect("mkdir spec dir");
    let u = env.rt().user().unwrap().clone();
    std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid)).expect("chown spec dir");
    let mut cmd = Command::new(runtime_bin());
    cmd.args(["spec", "--rootless", "--bundle"]).arg(&dir);
    u.apply(&mut cmd);
    let out = cmd.output().expect("run spec --rootless");
    assert!(
        out.status.success(),
        "spec --rootless: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = read_json(&dir.join("config.json"));
    let mut b = env.bundle();
    let keep_env = b.config()["process"]["env"].clone();
    let mut cfg = spec;
    cfg["process"]["env"] = keep_env;
    cfg["process"]["terminal"] = json!(false);
    cfg["root"] = json!({"path": "rootfs", "readonly": false});
    *b.config_mut() = cfg;
    b.set_args(&["true"]);
    b
}

const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 42;

fn limits() -> Value {
    json!({"memory": {"limit": MEMORY}, "pids": {"limit": PIDS},
           "cpu": {"quota": 50000, "period": 100000}})
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.join(file).display()))
        .trim()
        .to_string()
}

fn name_of(bin: &Path) -> String {
    bin.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn limits_update_pause_exec_and_delete_in_a_delegated_subtree() {
    if !pure_v2("limits_update_pause_exec_and_delete_in_a_delegated_subtree") {
        return;
    }
    let mut inside = Vec::new();
    for bin in runtimes() {
        let name = name_of(&bin);
        let (env, sub) = setup(&bin, true);
        let mut b = rootless_bundle(&env);
        b.config_mut()["linux"]["resources"] = limits();
        // Relative: under the parent of the runtime's own cgroup (the leaf), as runc on v2.
        let rel = format!("c-{}", unique_id());
        b.set_cgroups_path(&rel);
        b.set_sh("sleep 600");
        let c = env.create(&b);
        let cg = sub.dir.join(&rel);
        assert!(cg.is_dir(), "{name}: no cgroup {}", cg.display());
        assert_eq!(
            fs::metadata(&cg).unwrap().uid(),
            env.rt().user().unwrap().uid
        );
        assert_eq!(read(&cg, "memory.max"), MEMORY.to_string(), "{name}");
        assert_eq!(read(&cg, "pids.max"), PIDS.to_string(), "{name}");
        assert_eq!(read(&cg, "cpu.max"), "50000 100000", "{name}");
        let own = fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
        assert_eq!(own.trim(), format!("0::{}", sub.inner(&rel)), "{name}");
        c.start();
        c.wait_status("running");
        // Inside: the container's cgroup at /sys/fs/cgroup, and exec joins it.
        let out = env.run(&[
            "exec",
            c.id(),
            "sh",
            "-c",
            "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max",
        ]);
        out.ok();
        inside.push((name.clone(), out.stdout.clone()));
        assert_eq!(
            out.stdout,
            format!("0::/\n{MEMORY}\n{PIDS}\n50000 100000\n"),
            "{name}"
        );
        // update as the user.
        env.run(&[
            "update",
            "--memory",
            "134217728",
            "--pids-limit",
            "50",
            "--cpu-quota",
            "20000",
            c.id(),
        ])
        .ok();
        assert_eq!(read(&cg, "memory.max"), "134217728", "{name}");
        assert_eq!(read(&cg, "pids.max"), "50", "{name}");
        assert_eq!(read(&cg, "cpu.max"), "20000 100000", "{name}");
        // The limit holds: more processes than pids.max cannot be made (the shell may give
        // up at the first fork refused; the short sleeps end by themselves either way).
        env.run(&["update", "--pids-limit", "3", c.id()]).ok();
        let out = env.run(&[
            "exec",
            c.id(),
            "sh",
            "-c",
            "for i in 1 2 3 4 5; do sleep 2 & done 2>/dev/null; wait; echo done",
        ]);
        assert!(
            out.stdout.contains("done") || !out.success(),
            "{name}: {out}"
        );
        let events = read(&cg, "pids.events");
        assert!(
            events
                .lines()
                .any(|l| l.starts_with("max ") && l != "max 0"),
            "{name}: pids.max was never hit: {events}"
        );
        env.run(&["update", "--pids-limit", "50", c.id()]).ok();
        // ps lists the init.
        let out = env.run(&["ps", "--format", "json", c.id()]);
        out.ok();
        let pids: Vec<i64> = serde_json::from_str(out.stdout.trim()).expect("ps json");
        assert!(pids.contains(&(c.pid() as i64)), "{name}: {pids:?}");
        // pause/resume through the delegated cgroup.freeze.
        c.cmd("pause", &[]).ok();
        assert_eq!(c.status(), "paused", "{name}");
        assert_eq!(read(&cg, "cgroup.freeze"), "1", "{name}");
        c.cmd("resume", &[]).ok();
        assert_eq!(c.status(), "running", "{name}");
        assert_eq!(read(&cg, "cgroup.freeze"), "0", "{name}");
        c.kill("KILL").ok();
        c.wait_status("stopped");
        c.delete(false).ok();
        assert!(!cg.exists(), "{name}: delete left {}", cg.display());
        drop(c);
        sub.finish();
        env.finish();
    }
    if inside.len() == 2 {
        assert_eq!(inside[0].1, inside[1].1, "kakuri vs runc: {inside:?}");
    }
}

#[test]
fn absolute_path_inside_the_delegated_subtree() {
    if !pure_v2("absolute_path_inside_the_delegated_subtree") {
        return;
    }
    let mut outputs = Vec::new();
    for bin in runtimes() {
        let name = name_of(&bin);
        let (env, sub) = setup(&bin, true);
        let mut b = rootless_bundle(&env);
        b.config_mut()["linux"]["resources"] = limits();
        let abs = sub.inner(&format!("abs-{}", unique_id()));
        b.set_cgroups_path(&abs);
        b.set_sh(
            "cat /proc/self/cgroup /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; \
             echo 1 2>/dev/null >/sys/fs/cgroup/memory.max && echo writable || echo read-only",
        );
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        assert_eq!(
            out.stdout,
            format!("0::/\n{MEMORY}\n{PIDS}\nread-only\n"),
            "{name}"
        );
        outputs.push(out.stdout.clone());
        let cg = Path::new(CGROUP_ROOT).join(abs.trim_start_matches('/'));
        assert!(!cg.exists(), "{name}: run left {}", cg.display());
        sub.finish();
        env.finish();
    }
    if outputs.len() == 2 {
        assert_eq!(outputs[0], outputs[1], "kakuri vs runc");
    }
}

/// No delegation: the user's commands start in a subtree that root owns.
#[test]
fn without_delegation_limits_fail_saying_why_and_no_limits_still_run() {
    if !pure_v2("without_delegation_limits_fail_saying_why_and_no_limits_still_run") {
        return;
    }
    for bin in runtimes() {
        let name = name_of(&bin);
        let (env, sub) = setup(&bin, false);
        let state_left = |id: &str| env.rt().root().join(id).exists();
        // Limits, no path: the directory cannot be made, and runc's fs2 says why.
        let mut b = rootless_bundle(&env);
        b.config_mut()["linux"]["resources"] = limits();
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        out.fails_with(&format!(
            "rootless needs no limits + no cgrouppath when no permission is granted for cgroups: mkdir {}: permission denied",
            sub.dir.join(&id).display()
        ));
        assert!(!state_left(&id), "{name}: state left");
        assert!(sub.others().is_empty(), "{name}: {:?}", sub.others());
        // No limits, no path: runs without a cgroup of its own (it stays in the leaf), and
        // /sys/fs/cgroup inside is masked by an empty read-only tmpfs.
        let mut b = rootless_bundle(&env);
        b.set_sh(
            "echo ran; grep ' /sys/fs/cgroup ' /proc/self/mountinfo | tail -n 1 | sed 's/.* - //' | cut -d' ' -f1; \
             ls /sys/fs/cgroup | wc -l; touch /sys/fs/cgroup/x 2>/dev/null || echo read-only",
        );
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        assert_eq!(out.stdout, "ran\ntmpfs\n0\nread-only\n", "{name}");
        assert!(sub.others().is_empty(), "{name}: {:?}", sub.others());
        // A path, relative or absolute, must be usable: permission denied, even without limits.
        for path in [format!("rel-{}", unique_id()), sub.inner("abs")] {
            let mut b = rootless_bundle(&env);
            b.set_cgroups_path(&path);
            let id = env.new_id();
            let dir = if path.starts_with('/') {
                Path::new(CGROUP_ROOT).join(path.trim_start_matches('/'))
            } else {
                sub.dir.join(&path)
            };
            env.create_raw(&b, &id, &[])
                .fails_with(&format!("mkdir {}: permission denied", dir.display()));
            assert!(!state_left(&id), "{name}: state left");
        }
        assert!(sub.others().is_empty(), "{name}: {:?}", sub.others());
        sub.finish();
        env.finish();
    }
}
