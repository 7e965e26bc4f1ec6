//! Basic cgroup handling on the hybrid (v1 controllers + empty cgroup2) layout: membership in
//! every hierarchy, memory and pids limits, removal on delete.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::fs;
use std::path::PathBuf;

/// (controllers, mount point) of every cgroup hierarchy mounted on the host.
fn hierarchies() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for line in fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        let (pre, post) = line.split_once(" - ").unwrap();
        let mut post = post.split(' ');
        let fstype = post.next().unwrap_or("");
        let _source = post.next();
        let opts = post.next().unwrap_or("");
        let point = PathBuf::from(pre.split(' ').nth(4).unwrap());
        match fstype {
            "cgroup2" => out.push((String::new(), point)),
            "cgroup" => {
                let ctrls: Vec<&str> = opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.starts_with("relatime"))
                    .collect();
                out.push((ctrls.join(","), point));
            }
            _ => {}
        }
    }
    out
}

/// Host directories of `pid`'s cgroups, one per hierarchy line of /proc/<pid>/cgroup.
fn cgroup_dirs(pid: i32) -> Vec<(String, PathBuf)> {
    let hs = hierarchies();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mut dirs = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let _n = parts.next();
        let ctrls = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("");
        if let Some((_, point)) = hs.iter().find(|(c, _)| {
            let want: Vec<&str> = ctrls.split(',').collect();
            let have: Vec<&str> = c.split(',').collect();
            (ctrls.is_empty() && c.is_empty())
                || (!ctrls.is_empty() && want.iter().all(|w| have.contains(w)))
        }) {
            dirs.push((ctrls, point.join(path.trim_start_matches('/'))));
        }
    }
    dirs
}

#[test]
fn init_is_in_its_cgroup_in_every_hierarchy() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let cg = format!("kakuri-{}", env.id());
    b.set_cgroups_path(&cg);
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    let pid = c.pid();
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let host = fs::read_to_string("/proc/self/cgroup").unwrap();
    for host_line in host.lines() {
        let key: String = host_line.rsplit_once(':').unwrap().0.to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} line for the container: {text}"));
        assert!(
            line.ends_with(&format!("/{cg}")),
            "{key}: container not in its cgroup {cg}: {text}"
        );
    }
    for ctrl in ["memory", "pids", "cpu", "name=systemd"] {
        assert!(
            text.lines().any(|l| l
                .split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|x| x == ctrl))
                && l.ends_with(&format!("/{cg}"))),
            "{ctrl}: {text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("0::") && l.ends_with(&format!("/{cg}"))),
        "{text}"
    );
    for (ctrls, dir) in cgroup_dirs(pid) {
        let procs = fs::read_to_string(dir.join("cgroup.procs"))
            .unwrap_or_else(|e| panic!("{ctrls}: {}: {e}", dir.display()));
        assert!(
            procs.lines().any(|p| p == pid.to_string()),
            "{ctrls}: {procs}"
        );
    }
    drop(c);
    env.finish();
}

/// A new process joins its v1 cgroups itself (writing `0` to their `tasks` files), or with
/// `KAKURI_V1_SELF_JOIN=0` is moved there by the runtime (`cgroup.procs`): both ways, the init
/// and an exec'd process end up in the container's cgroup of every hierarchy, and exec's
/// `--cgroup` sub-cgroup is honoured.
#[test]
fn init_and_exec_in_every_hierarchy_either_way() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    for knob in [None, Some("0")] {
        let cg = format!("kakuri-{}-{}", env.id(), knob.unwrap_or("1"));
        b.set_cgroups_path(&cg);
        let id = env.new_id();
        b.write();
        let mut cmd = env.rt().cmd(&["--debug", "create", "--bundle"]);
        cmd.arg(b.dir()).arg(&id);
        if let Some(k) = knob {
            cmd.env("KAKURI_V1_SELF_JOIN", k);
        }
        let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
        out.ok();
        if knob.is_some() && runtime_bin().ends_with("kakuri") {
            assert!(
                out.stderr_has("KAKURI_V1_SELF_JOIN=0: v1 cgroups joined through cgroup.procs"),
                "{out}"
            );
        }
        let c = env.container(&id, &out);
        let init = fs::read_to_string(format!("/proc/{}/cgroup", c.pid())).unwrap();
        for line in init.lines() {
            assert!(line.ends_with(&format!("/{cg}")), "{knob:?}: {init}");
        }
        c.start();
        // The memory sub-cgroup must exist for exec --cgroup to use it.
        let mem = cgroup_dirs(c.pid())
            .into_iter()
            .find(|(ctrls, _)| ctrls.split(',').any(|x| x == "memory"))
            .map(|(_, d)| d)
            .expect("memory hierarchy");
        fs::create_dir(mem.join("sub")).expect("mkdir memory sub-cgroup");
        for (n, sub) in [(0, false), (1, true)] {
            // Detached, seen from the host (the container may have a cgroup namespace).
            let pid_file = env.dir().join(format!("exec-{id}-{n}.pid"));
            let pid_arg = pid_file.to_str().unwrap();
            let mut args = vec!["exec", "-d", "--pid-file", pid_arg];
            if sub {
                args.extend(["--cgroup", "memory:sub"]);
            }
            args.extend([id.as_str(), "sleep", "60"]);
            let mut exec = env.rt().cmd(&args);
            if let Some(k) = knob {
                exec.env("KAKURI_V1_SELF_JOIN", k);
            }
            let out = env.rt().output(exec);
            out.ok();
            let pid: i32 = fs::read_to_string(&pid_file)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
            // SAFETY: kill with integer arguments (the exec'd sleep, our grandchild).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            for line in text.lines() {
                let is_memory = line
                    .split(':')
                    .nth(1)
                    .is_some_and(|c| c.split(',').any(|x| x == "memory"));
                let init_line = init
                    .lines()
                    .find(|l| l.split(':').nth(1) == line.split(':').nth(1))
                    .unwrap_or_else(|| panic!("{line} not in {init}"));
                let want = if sub && is_memory {
                    format!("{init_line}/sub")
                } else {
                    init_line.to_string()
                };
                assert_eq!(line, want, "{knob:?} sub {sub}: {text}");
            }
        }
        // The killed sleep leaves the sub-cgroup once it is reaped (by the host's init).
        let t = std::time::Instant::now();
        while let Err(e) = fs::remove_dir(mem.join("sub")) {
            assert!(t.elapsed() < CMD_TIMEOUT, "rmdir memory sub-cgroup: {e}");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        c.delete(true).ok();
        drop(c);
    }
    env.finish();
}

#[test]
fn memory_and_pids_limits() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}", env.id()));
    b.set("/linux/resources/memory", json!({"limit": 67108864}));
    b.set("/linux/resources/pids", json!({"limit": 42}));
    b.set_sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; sleep 60",
    );
    let c = env.create(&b);
    let dirs = cgroup_dirs(c.pid());
    let dir_of = |ctrl: &str| {
        dirs.iter()
            .find(|(c, _)| c.split(',').any(|x| x == ctrl))
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("no {ctrl} cgroup: {dirs:?}"))
    };
    let mem = fs::read_to_string(dir_of("memory").join("memory.limit_in_bytes")).unwrap();
    assert_eq!(mem.trim(), "67108864");
    let pids = fs::read_to_string(dir_of("pids").join("pids.max")).unwrap();
    assert_eq!(pids.trim(), "42");
    c.start();
    let out = c.wait_stdout("42");
    assert_eq!(out, "67108864\n42\n", "limits seen from inside");
    drop(c);
    env.finish();
}

#[test]
fn cgroup_dirs_removed_on_delete() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}", env.id()));
    b.set("/linux/resources/pids", json!({"limit": 10}));
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    let dirs = cgroup_dirs(c.pid());
    assert!(dirs.len() >= 9, "a cgroup in every hierarchy: {dirs:?}");
    for (_, d) in &dirs {
        assert!(
            d.is_dir(),
            "{} exists while the container lives",
            d.display()
        );
    }
    c.start();
    c.delete(true).ok();
    for (_, d) in &dirs {
        assert!(!d.exists(), "{} left after delete", d.display());
    }
    drop(c);
    env.finish();
}
