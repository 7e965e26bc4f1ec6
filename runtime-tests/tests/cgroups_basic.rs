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
