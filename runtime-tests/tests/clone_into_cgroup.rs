//! The container init (and an exec'd process) is cloned straight into its cgroup2 directory
//! (`clone3` + `CLONE_INTO_CGROUP`) where the kernel has it, instead of being forked in the
//! runtime's cgroup and moved through `cgroup.procs`.
//!
//! "From its first instruction" is made observable with the pids controller (pure cgroup v2,
//! the guest of runtime-tests/vm): the runtime runs in a cgroup of its own whose `pids.max` is
//! 1, so a fork charged to the runtime's cgroup fails with EAGAIN, while a clone into the
//! container's cgroup (elsewhere in the tree) is charged there and succeeds. With
//! `KAKURI_CLONE_INTO_CGROUP=0` (the fallback: plain clone, then cgroup.procs) the same create
//! and exec fail, which shows the test can tell the two apart (runc, a Go program, cannot
//! even start its threads under that limit). The fallback itself is shown working on every
//! host, and on the hybrid host (v1 controllers + an empty cgroup2) the unified hierarchy is
//! the one cloned into, the v1 ones still written.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakuri_runtime_tests::*;

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn is_runc() -> bool {
    runtime_bin().ends_with("runc")
}

/// A cgroup for the runtime process itself, with `pids.max` 1; removed on drop.
struct RuntimeCgroup {
    dir: PathBuf,
}

impl RuntimeCgroup {
    fn new(name: &str) -> RuntimeCgroup {
        let dir = Path::new("/sys/fs/cgroup").join(name);
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let cg = RuntimeCgroup { dir };
        std::fs::write(cg.dir.join("pids.max"), "1").expect("write pids.max");
        cg
    }

    /// Make `cmd` move itself into this cgroup before it execs the runtime.
    fn enter(&self, cmd: &mut Command) {
        let procs = CString::new(self.dir.join("cgroup.procs").to_str().unwrap()).unwrap();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // calls (open, write, close) on a path prepared before the fork; it allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let e = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(e);
                }
                Ok(())
            });
        }
    }
}

impl Drop for RuntimeCgroup {
    fn drop(&mut self) {
        // The runtime processes that were in it have exited; rmdir may see them leaving.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// The cgroup2 line of `/proc/<pid>/cgroup` ("/kt-..." path).
fn cgroup2_of(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("read /proc/pid/cgroup")
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .unwrap_or_default()
}

fn create_cmd(env: &TestEnv, b: &Bundle, id: &str) -> Command {
    b.write();
    let mut cmd = env.rt().cmd(&["--debug", "create", "--bundle"]);
    cmd.arg(b.dir()).arg(id);
    cmd
}

#[test]
fn init_and_exec_start_in_the_container_cgroup() {
    if !v2() {
        eprintln!(
            "SKIP init_and_exec_start_in_the_container_cgroup: needs the pids controller on a \
             pure cgroup v2 host (runtime-tests/vm/run-v2-tests runs it; the hybrid host has \
             an empty cgroup2)"
        );
        return;
    }
    let env = TestEnv::new();
    let rt_cg = RuntimeCgroup::new(&format!("{}-runtime", env.id()));
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    let id = env.new_id();
    b.set_cgroups_path(&format!("/{id}"));

    let mut cmd = create_cmd(&env, &b, &id);
    rt_cg.enter(&mut cmd);
    let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
    if is_runc() {
        // runc cannot even start its Go threads under pids.max 1 (nor would it place its init
        // early: runc 1.1.5 moves it through cgroup.procs).
        assert!(!out.success(), "{out}");
        drop(rt_cg);
        env.finish();
        return;
    }
    out.ok();
    assert!(
        out.stderr_has("child started in its cgroup2 directory (CLONE_INTO_CGROUP)"),
        "{out}"
    );
    let c = env.container(&id, &out);
    assert_eq!(cgroup2_of(c.pid()), format!("/{id}"));

    // An exec'd process too (runc main does this for exec).
    let mut exec = env
        .rt()
        .cmd(&["--debug", "exec", &id, "sh", "-c", "cat /proc/self/cgroup"]);
    rt_cg.enter(&mut exec);
    let out = env.rt().output(exec);
    out.ok();
    assert!(out.stdout.starts_with("0::/"), "{out}");
    assert!(out.stderr_has("CLONE_INTO_CGROUP"), "{out}");
    // With the fallback the exec'd process is forked in the runtime's cgroup: refused.
    let mut exec = env.rt().cmd(&["exec", &id, "true"]);
    exec.env("KAKURI_CLONE_INTO_CGROUP", "0");
    rt_cg.enter(&mut exec);
    let out = env.rt().output(exec);
    assert_eq!(out.code, Some(255), "{out}");
    assert!(
        out.stderr
            .to_lowercase()
            .contains("resource temporarily unavailable"),
        "{out}"
    );
    c.delete(true).ok();
    drop(c);

    // The fallback for the init: refused the same way, and nothing left behind.
    let id2 = env.new_id();
    b.set_cgroups_path(&format!("/{id2}"));
    let mut cmd = create_cmd(&env, &b, &id2);
    cmd.env("KAKURI_CLONE_INTO_CGROUP", "0");
    rt_cg.enter(&mut cmd);
    let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stderr
            .to_lowercase()
            .contains("resource temporarily unavailable"),
        "{out}"
    );
    assert!(!Path::new("/sys/fs/cgroup").join(&id2).exists());
    drop(rt_cg);
    env.finish();
}

#[test]
fn fallback_places_through_cgroup_procs() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    for (knob, log) in [
        (
            None,
            "child started in its cgroup2 directory (CLONE_INTO_CGROUP)",
        ),
        (
            Some("0"),
            "KAKURI_CLONE_INTO_CGROUP=0: plain clone, then cgroup.procs",
        ),
    ] {
        let id = env.new_id();
        b.set_cgroups_path(&format!("/{id}"));
        let mut cmd = create_cmd(&env, &b, &id);
        if let Some(k) = knob {
            cmd.env("KAKURI_CLONE_INTO_CGROUP", k);
        }
        let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
        out.ok();
        let c = env.container(&id, &out);
        if !is_runc() {
            assert!(out.stderr_has(log), "{out}");
        }
        assert_eq!(cgroup2_of(c.pid()), format!("/{id}"));
        if !v2() {
            // Every v1 hierarchy of the hybrid host holds the init too.
            let dirs = cgroup_dirs_of(c.pid());
            assert!(dirs.len() > 1, "{dirs:?}");
            for (hier, dir) in &dirs {
                assert!(dir.ends_with(&id), "{hier}: {}", dir.display());
            }
        }
        c.start();
        let out = env.run(&["exec", &id, "true"]);
        out.ok();
        c.delete(true).ok();
        drop(c);
    }
    env.finish();
}
