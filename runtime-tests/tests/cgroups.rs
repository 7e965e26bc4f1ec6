//! cgroup resources of real containers, on a hybrid host (v1 controllers + empty cgroup2) and on a
//! pure cgroup v2 host (the qemu guest of runtime-tests/vm): every linux.resources field the host
//! can apply is read back from the host's cgroup files AND from inside the container (its
//! /sys/fs/cgroup mount); plus pause/resume, update (file, stdin, flags), ps, events, kill --all
//! and delete --force, each test ending with the leak check of every hierarchy.
//!
//! The expected file names and values depend on the layout (`v2()`: /sys/fs/cgroup/cgroup.controllers
//! exists). Values inside the container are read through a probe: the container's init polls
//! /tmp/q in its rootfs for shell snippets and writes their output next to them.

use kakuri_runtime_tests::seccomp_profile::kernel_version;
use kakuri_runtime_tests::*;
use serde_json::{json, Value};
use std::cell::Cell;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The guest is about 10x slower than the host.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Controllers of v1 hierarchies and the cgroup2 mount: (super options or "" for cgroup2, mount point).
fn mounts() -> Vec<(Vec<String>, PathBuf)> {
    let mut out = Vec::new();
    for line in fs::read_to_string("/proc/self/mountinfo")
        .expect("read /proc/self/mountinfo")
        .lines()
    {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let post: Vec<&str> = post.split(' ').collect();
        let point = PathBuf::from(pre.split(' ').nth(4).unwrap_or(""));
        match post.first() {
            Some(&"cgroup2") => out.push((Vec::new(), point)),
            Some(&"cgroup") => {
                let opts = post.get(2).copied().unwrap_or("");
                out.push((opts.split(',').map(str::to_string).collect(), point));
            }
            _ => {}
        }
    }
    out
}

/// True if the host can use `controller` (v2: listed in the root's cgroup.controllers; v1: mounted).
fn have_controller(controller: &str) -> bool {
    if v2() {
        fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .unwrap_or_default()
            .split_whitespace()
            .any(|c| c == controller)
    } else {
        mounts()
            .iter()
            .any(|(opts, _)| opts.iter().any(|o| o == controller))
    }
}

/// The cgroup of a container process, as the host sees it.
struct Cg {
    /// (v1 controllers or empty for cgroup2, mount point, cgroup dir)
    dirs: Vec<(Vec<String>, PathBuf, PathBuf)>,
}

impl Cg {
    fn of(pid: i32) -> Cg {
        let ms = mounts();
        let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .unwrap_or_else(|e| panic!("read /proc/{pid}/cgroup: {e}"));
        let mut dirs = Vec::new();
        for line in text.lines() {
            let mut parts = line.splitn(3, ':');
            let _ = parts.next();
            let ctrls: Vec<String> = parts
                .next()
                .unwrap_or("")
                .split(',')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
            let path = parts.next().unwrap_or("").trim_start_matches('/');
            let found = ms.iter().find(|(opts, _)| {
                if ctrls.is_empty() {
                    opts.is_empty()
                } else {
                    ctrls.iter().all(|c| opts.contains(c))
                }
            });
            if let Some((_, point)) = found {
                dirs.push((ctrls, point.clone(), point.join(path)));
            }
        }
        Cg { dirs }
    }

    /// (mount point, cgroup dir) holding `controller` (on v2: the only directory).
    fn hierarchy(&self, controller: &str) -> (&Path, &Path) {
        let found = if v2() {
            self.dirs.iter().find(|(c, _, _)| c.is_empty())
        } else {
            self.dirs
                .iter()
                .find(|(c, _, _)| c.iter().any(|x| x == controller))
        };
        let (_, point, dir) =
            found.unwrap_or_else(|| panic!("no {controller} cgroup in {:?}", self.dirs));
        (point, dir)
    }

    fn host_file(&self, controller: &str, file: &str) -> PathBuf {
        self.hierarchy(controller).1.join(file)
    }

    /// The host file's content, trimmed.
    #[track_caller]
    fn read(&self, controller: &str, file: &str) -> String {
        let p = self.host_file(controller, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
            .trim()
            .to_string()
    }

    /// The same file as the container sees it under its /sys/fs/cgroup.
    fn inside_path(&self, controller: &str, file: &str) -> String {
        if v2() {
            return format!("/sys/fs/cgroup/{file}");
        }
        let (point, _) = self.hierarchy(controller);
        let name = point
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        format!("/sys/fs/cgroup/{name}/{file}")
    }

    fn all_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|(_, _, d)| d.clone()).collect()
    }
}

/// The init script of a probed container: runs every /tmp/q/N.sh it finds, output to N.out.
const PROBE_LOOP: &str = "mkdir -p /tmp/q; while :; do for f in /tmp/q/*.sh; do \
    [ -e \"$f\" ] || continue; n=${f%.sh}; sh \"$f\" >$n.tmp 2>&1; mv $n.tmp $n.out; rm -f \"$f\"; \
    done; usleep 50000; done";

/// Runs shell snippets inside a container started with [`PROBE_LOOP`].
struct Probe {
    dir: PathBuf,
    n: Cell<usize>,
}

impl Probe {
    fn new(b: &Bundle) -> Probe {
        let dir = b.rootfs().join("tmp/q");
        fs::create_dir_all(&dir).expect("mkdir rootfs/tmp/q");
        Probe {
            dir,
            n: Cell::new(0),
        }
    }

    /// The output of `script` run by the container.
    #[track_caller]
    fn run(&self, script: &str) -> String {
        let n = self.n.get() + 1;
        self.n.set(n);
        let part = self.dir.join(format!("{n}.part"));
        fs::write(&part, script).expect("write probe script");
        fs::rename(&part, self.dir.join(format!("{n}.sh"))).expect("rename probe script");
        let out = self.dir.join(format!("{n}.out"));
        let text = wait_for(
            &format!("the container to run probe {script:?}"),
            PROBE_TIMEOUT,
            || fs::read_to_string(&out).ok(),
        );
        let _ = fs::remove_file(&out);
        text
    }

    /// `cat` of one file inside the container, trimmed.
    #[track_caller]
    fn cat(&self, path: &str) -> String {
        self.run(&format!("cat {path}")).trim().to_string()
    }
}

/// A bundle with its own cgroup path and the probe loop as init.
fn probed_bundle(env: &TestEnv, tag: &str) -> Bundle {
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}-{tag}", env.id()));
    b.set_sh(PROBE_LOOP);
    b
}

/// Creates and starts a container; returns it with its probe and its cgroup.
fn start_probed<'a>(env: &'a TestEnv, b: &Bundle) -> (Container<'a>, Probe, Cg) {
    let probe = Probe::new(b);
    let c = env.create(b);
    let cg = Cg::of(c.pid());
    c.start();
    assert_eq!(probe.run("echo up").trim(), "up", "probe answers");
    (c, probe, cg)
}

/// Asserts a cgroup file has `want`, on the host and inside the container.
#[track_caller]
fn check(cg: &Cg, probe: &Probe, controller: &str, file: &str, want: &str) {
    assert_eq!(
        cg.read(controller, file),
        want,
        "host {}",
        cg.host_file(controller, file).display()
    );
    assert_eq!(
        probe.cat(&cg.inside_path(controller, file)),
        want,
        "inside {}",
        cg.inside_path(controller, file)
    );
}

/// runc's conversion of cpu shares to cgroup v2 cpu.weight.
fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + ((shares - 2) * 9999) / 262142
    }
}

const MIB: i64 = 1 << 20;

#[test]
fn memory_limit_reservation_swap_swappiness_oom_killer() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "mem");
    let memsw = v2() || Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let mut mem = json!({"limit": 64 * MIB, "reservation": 32 * MIB});
    if memsw {
        mem["swap"] = json!(96 * MIB);
    } else {
        println!("no swap accounting (memory.memsw.*) on this host: memory.swap not tested");
    }
    if !v2() {
        mem["swappiness"] = json!(30);
        mem["disableOOMKiller"] = json!(true);
    }
    b.set("/linux/resources/memory", mem);
    let (c, probe, cg) = start_probed(&env, &b);
    if v2() {
        check(&cg, &probe, "memory", "memory.max", &(64 * MIB).to_string());
        check(&cg, &probe, "memory", "memory.low", &(32 * MIB).to_string());
        // v2 swap.max is the swap part alone: memory+swap minus memory.
        check(
            &cg,
            &probe,
            "memory",
            "memory.swap.max",
            &(32 * MIB).to_string(),
        );
    } else {
        check(
            &cg,
            &probe,
            "memory",
            "memory.limit_in_bytes",
            &(64 * MIB).to_string(),
        );
        check(
            &cg,
            &probe,
            "memory",
            "memory.soft_limit_in_bytes",
            &(32 * MIB).to_string(),
        );
        if memsw {
            check(
                &cg,
                &probe,
                "memory",
                "memory.memsw.limit_in_bytes",
                &(96 * MIB).to_string(),
            );
        }
        check(&cg, &probe, "memory", "memory.swappiness", "30");
        let oom = cg.read("memory", "memory.oom_control");
        assert!(
            oom.contains("oom_kill_disable 1"),
            "host memory.oom_control: {oom}"
        );
        let inside = probe.cat(&cg.inside_path("memory", "memory.oom_control"));
        assert!(
            inside.contains("oom_kill_disable 1"),
            "inside memory.oom_control: {inside}"
        );
    }
    drop(c);
    env.finish();
}

#[test]
fn v1_only_memory_knobs() {
    let env = TestEnv::new();
    if !v2() {
        // The v1 side of these knobs is checked by memory_limit_reservation_swap_swappiness_oom_killer.
        println!("hybrid host: swappiness/disableOOMKiller are applied (see the memory test), nothing to check here");
        let mut b = probed_bundle(&env, "knobs");
        b.set("/linux/resources/memory", json!({"swappiness": 101}));
        let id = env.new_id();
        env.create_raw(&b, &id, &[])
            .fails_with("linux.resources.memory.swappiness");
        env.finish();
        return;
    }
    let mut b = probed_bundle(&env, "knobs");
    b.set(
        "/linux/resources/memory",
        json!({"limit": 64 * MIB, "swappiness": 30, "disableOOMKiller": true}),
    );
    let (c, probe, cg) = start_probed(&env, &b);
    check(&cg, &probe, "memory", "memory.max", &(64 * MIB).to_string());
    drop(c);
    env.finish();
}

#[test]
fn cpu_shares_quota_period_burst_cpus_mems() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "cpu");
    let mut cpu =
        json!({"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"});
    // CFS burst came with Linux 5.14.
    let burst = kernel_version() >= (5, 14);
    if burst {
        cpu["burst"] = json!(10000);
    } else {
        println!("kernel older than 5.14: no CFS burst to check");
    }
    b.set("/linux/resources/cpu", cpu);
    let (c, probe, cg) = start_probed(&env, &b);
    if v2() {
        check(
            &cg,
            &probe,
            "cpu",
            "cpu.weight",
            &shares_to_weight(512).to_string(),
        );
        check(&cg, &probe, "cpu", "cpu.max", "50000 100000");
        if burst {
            check(&cg, &probe, "cpu", "cpu.max.burst", "10000");
        }
    } else {
        check(&cg, &probe, "cpu", "cpu.shares", "512");
        check(&cg, &probe, "cpu", "cpu.cfs_quota_us", "50000");
        check(&cg, &probe, "cpu", "cpu.cfs_period_us", "100000");
        if burst {
            check(&cg, &probe, "cpu", "cpu.cfs_burst_us", "10000");
        }
    }
    check(&cg, &probe, "cpuset", "cpuset.cpus", "0");
    check(&cg, &probe, "cpuset", "cpuset.mems", "0");
    // The kernel enforces the cpuset: the init may only run on CPU 0.
    let allowed = probe.run("grep Cpus_allowed_list /proc/self/status");
    assert!(allowed.trim().ends_with("\t0"), "inside: {allowed}");
    drop(c);
    env.finish();
}

#[test]
fn cpu_idle() {
    let env = TestEnv::new();
    if kernel_version() < (5, 15) {
        // SCHED_IDLE groups came with Linux 5.15; the v2 guest's kernel has them.
        println!("SKIP cpu_idle: the kernel is older than 5.15 (no cpu.idle)");
        env.finish();
        return;
    }
    let mut b = probed_bundle(&env, "idle");
    b.set("/linux/resources/cpu", json!({"idle": 1}));
    let (c, probe, cg) = start_probed(&env, &b);
    check(&cg, &probe, "cpu", "cpu.idle", "1");
    drop(c);
    env.finish();
}

#[test]
fn pids_limit() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "pids");
    b.set("/linux/resources/pids", json!({"limit": 42}));
    let (c, probe, cg) = start_probed(&env, &b);
    check(&cg, &probe, "pids", "pids.max", "42");
    drop(c);
    env.finish();
}

/// A real (not loop/ram/zram) block device: (name, "major:minor").
fn real_block_device() -> Option<(String, String)> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !(n.starts_with("loop") || n.starts_with("ram") || n.starts_with("zram")))
        .collect();
    names.sort();
    let name = names.into_iter().next()?;
    let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?;
    Some((name, dev.trim().to_string()))
}

#[test]
fn block_io_throttles() {
    let env = TestEnv::new();
    let Some((name, dev)) = real_block_device() else {
        println!("SKIP block_io_throttles: no real block device in /sys/block on this machine");
        env.finish();
        return;
    };
    let (major, minor) = dev.split_once(':').expect("major:minor");
    let (major, minor): (i64, i64) = (major.parse().unwrap(), minor.parse().unwrap());
    let mut b = probed_bundle(&env, "blkio");
    let d = |rate: u64| json!([{"major": major, "minor": minor, "rate": rate}]);
    b.set(
        "/linux/resources/blockIO",
        json!({
            "throttleReadBpsDevice": d(1048576),
            "throttleWriteBpsDevice": d(2097152),
            "throttleReadIOPSDevice": d(100),
            "throttleWriteIOPSDevice": d(200),
        }),
    );
    let (c, probe, cg) = start_probed(&env, &b);
    println!("throttling {name} ({dev})");
    if v2() {
        let want = format!("{dev} rbps=1048576 wbps=2097152 riops=100 wiops=200");
        let host = cg.read("io", "io.max");
        assert!(host.lines().any(|l| l == want), "host io.max: {host}");
        let inside = probe.cat("/sys/fs/cgroup/io.max");
        assert!(inside.lines().any(|l| l == want), "inside io.max: {inside}");
    } else {
        for (file, v) in [
            ("blkio.throttle.read_bps_device", 1048576),
            ("blkio.throttle.write_bps_device", 2097152),
            ("blkio.throttle.read_iops_device", 100),
            ("blkio.throttle.write_iops_device", 200),
        ] {
            check(&cg, &probe, "blkio", file, &format!("{dev} {v}"));
        }
    }
    drop(c);
    env.finish();
}

#[test]
fn block_io_weight() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "bweight");
    b.set("/linux/resources/blockIO", json!({"weight": 500}));
    let root = if v2() {
        PathBuf::from("/sys/fs/cgroup")
    } else {
        PathBuf::from("/sys/fs/cgroup/blkio")
    };
    // What the kernel offers for a weight in a child cgroup (the root has no weight files).
    let probe_dir = root.join(format!("kakuri-{}-wprobe", env.id()));
    fs::create_dir(&probe_dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", probe_dir.display()));
    let files: Vec<String> = fs::read_dir(&probe_dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    fs::remove_dir(&probe_dir).unwrap_or_else(|e| panic!("rmdir {}: {e}", probe_dir.display()));
    let has = |f: &str| files.iter().any(|x| x == f);
    if v2() {
        let (file, want) = if has("io.bfq.weight") {
            ("io.bfq.weight", "default 500".to_string())
        } else if has("io.weight") {
            // runc: 1 + (weight - 10) * 9999 / 990
            (
                "io.weight",
                format!("default {}", 1 + (500 - 10) * 9999 / 990),
            )
        } else {
            println!("no io.weight/io.bfq.weight: checking the error");
            let id = env.new_id();
            env.create_raw(&b, &id, &[])
                .fails_with("linux.resources.blockIO.weight");
            env.finish();
            return;
        };
        let (c, probe, cg) = start_probed(&env, &b);
        check(&cg, &probe, "io", file, &want);
        drop(c);
    } else if has("blkio.weight") || has("blkio.bfq.weight") {
        let file = if has("blkio.weight") {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        let (c, probe, cg) = start_probed(&env, &b);
        let host = cg.read("blkio", file);
        assert!(
            host == "500" || host.contains("default 500"),
            "host {file}: {host}"
        );
        let inside = probe.cat(&cg.inside_path("blkio", file));
        assert_eq!(inside, host, "inside {file}");
        drop(c);
    } else {
        // No CFQ and BFQ not in use: the kernel has no weight file; the error must say so.
        println!("this kernel's blkio hierarchy has no weight file: checking the error");
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        out.fails_with("linux.resources.blockIO.weight");
        assert!(
            out.stderr_has("blkio.weight"),
            "error names the file: {out}"
        );
    }
    env.finish();
}

/// A bundle whose init may mknod, with `extra` device cgroup rules after the spec's own.
fn devices_bundle(env: &TestEnv, tag: &str, extra: &[Value]) -> Bundle {
    let mut b = probed_bundle(env, tag);
    let mut devs = b.config()["linux"]["resources"]["devices"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    devs.extend(extra.iter().cloned());
    b.set("/linux/resources/devices", Value::Array(devs));
    for set in ["bounding", "effective", "permitted"] {
        let mut caps: Vec<String> = b.config()["process"]["capabilities"][set]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        caps.push("CAP_MKNOD".into());
        let refs: Vec<&str> = caps.iter().map(String::as_str).collect();
        b.set_caps(set, &refs);
    }
    b
}

/// mknod a /dev/kmsg node (c 1:11, not in the default allow list) in the container's /dev and
/// write a line to it; prints the shell's error and `rc=N`.
const WRITE_KMSG: &str =
    "mknod /dev/kakuri-kmsg c 1 11 && echo kakuri-devices-test > /dev/kakuri-kmsg; echo rc=$?";

#[test]
fn devices_cgroup_denies_and_allows() {
    let env = TestEnv::new();
    let kmsg_w = json!({"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"});
    let null_deny = json!({"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"});

    // 1. No rule for c 1:11: the node can be made (mknod is allowed for every device, as runc)
    //    but not opened. A user rule denying writes to /dev/null is overridden by the default
    //    rules that runc appends after the user's (runc's AllowedDevices).
    let b = devices_bundle(&env, "devdeny", &[null_deny]);
    let (c, probe, cg) = start_probed(&env, &b);
    let w = probe.run(WRITE_KMSG);
    assert!(
        w.contains("Operation not permitted") && w.contains("rc=1"),
        "write to c 1:11 inside: {w}"
    );
    let n = probe.run("echo x > /dev/null; echo rc=$?; head -c 3 /dev/zero | wc -c");
    assert_eq!(n, "rc=0\n3\n", "/dev/null and /dev/zero stay usable");
    if v2() {
        println!("cgroup v2: device rules are an eBPF program (no host file to read back)");
    } else {
        let list = cg.read("devices", "devices.list");
        assert!(
            !list.lines().any(|l| l.starts_with("c 1:11 ")),
            "devices.list: {list}"
        );
        assert!(
            list.lines().any(|l| l == "c 1:3 rwm"),
            "devices.list: {list}"
        );
    }
    drop(c);

    // 2. With a rule allowing writes to c 1:11, the same write goes through: the denial above
    //    was the device cgroup's.
    let b = devices_bundle(&env, "devallow", &[kmsg_w]);
    let (c, probe, cg) = start_probed(&env, &b);
    let w = probe.run(WRITE_KMSG);
    assert_eq!(w.trim(), "rc=0", "write to c 1:11 with an allow rule: {w}");
    if !v2() {
        let list = cg.read("devices", "devices.list");
        assert!(
            list.lines().any(|l| l == "c 1:11 w"),
            "devices.list: {list}"
        );
    }
    drop(c);
    env.finish();
}

#[test]
fn hugepage_limits() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "huge");
    b.set(
        "/linux/resources/hugepageLimits",
        json!([{"pageSize": "2MB", "limit": 4 * MIB}]),
    );
    if !have_controller("hugetlb") {
        println!("no hugetlb controller: checking the error");
        let id = env.new_id();
        env.create_raw(&b, &id, &[])
            .fails_with("linux.resources.hugepageLimits: the hugetlb controller is not");
        env.finish();
        return;
    }
    let (c, probe, cg) = start_probed(&env, &b);
    let file = if v2() {
        "hugetlb.2MB.max"
    } else {
        "hugetlb.2MB.limit_in_bytes"
    };
    check(&cg, &probe, "hugetlb", file, &(4 * MIB).to_string());
    drop(c);
    env.finish();
}

#[test]
fn network_class_id() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "netcls");
    b.set("/linux/resources/network", json!({"classID": 1048577}));
    if v2() {
        // cgroup v2 has no net_cls: runc ignores the field there, and so must kakuri.
        println!("cgroup v2: network.classID is ignored; checking the container still runs");
        let (c, probe, _cg) = start_probed(&env, &b);
        assert!(!Path::new("/sys/fs/cgroup/net_cls.classid").exists());
        assert_eq!(probe.run("echo ok").trim(), "ok");
        drop(c);
    } else if have_controller("net_cls") {
        let (c, probe, cg) = start_probed(&env, &b);
        check(&cg, &probe, "net_cls", "net_cls.classid", "1048577");
        drop(c);
    } else {
        println!("no net_cls hierarchy: checking the error");
        let id = env.new_id();
        env.create_raw(&b, &id, &[])
            .fails_with("linux.resources.network.classID: the net_cls controller is not mounted");
    }
    env.finish();
}

#[test]
fn rdma_limits() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "rdma");
    let rdma_dev = fs::read_dir("/sys/class/infiniband")
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned());
    let name = rdma_dev
        .clone()
        .unwrap_or_else(|| "kakuri-no-such-hca".into());
    b.set(
        "/linux/resources/rdma",
        json!({ name.clone(): {"hcaHandles": 2, "hcaObjects": 100} }),
    );
    let id = env.new_id();
    if !have_controller("rdma") {
        println!("no rdma controller: checking the error");
        env.create_raw(&b, &id, &[])
            .fails_with("linux.resources.rdma: the rdma controller is not");
    } else if rdma_dev.is_none() {
        // The controller exists but the machine has no RDMA device: the kernel refuses the limit
        // and the error must name the field and the device.
        println!("rdma controller but no RDMA device: checking the error");
        env.create_raw(&b, &id, &[])
            .fails_with(&format!("linux.resources.rdma.{name}"));
    } else {
        let out = env.create_raw(&b, &id, &[]);
        out.ok();
        let c = env.container(&id, &out);
        let cg = Cg::of(c.pid());
        let max = cg.read("rdma", "rdma.max");
        assert!(
            max.contains(&format!("{name} hca_handle=2 hca_object=100")),
            "rdma.max: {max}"
        );
        drop(c);
    }
    env.finish();
}

#[test]
fn pause_and_resume() {
    let env = TestEnv::new();
    let b = probed_bundle(&env, "pause");
    let (c, probe, cg) = start_probed(&env, &b);
    c.cmd("pause", &[]).ok();
    assert_eq!(c.status(), "paused");
    if v2() {
        assert_eq!(cg.read("cpu", "cgroup.freeze"), "1");
        let ev = cg.read("cpu", "cgroup.events");
        assert!(ev.lines().any(|l| l == "frozen 1"), "cgroup.events: {ev}");
    } else {
        assert_eq!(cg.read("freezer", "freezer.state"), "FROZEN");
    }
    // A frozen init does not run the probe.
    let part = probe.dir.join("frozen.part");
    fs::write(&part, "echo thawed").unwrap();
    fs::rename(&part, probe.dir.join("frozen.sh")).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !probe.dir.join("frozen.out").exists(),
        "a paused container ran a command"
    );
    c.cmd("pause", &[]).fails_with("container already paused");
    c.cmd("resume", &[]).ok();
    assert_eq!(c.status(), "running");
    if v2() {
        assert_eq!(cg.read("cpu", "cgroup.freeze"), "0");
    } else {
        assert_eq!(cg.read("freezer", "freezer.state"), "THAWED");
    }
    wait_file(&probe.dir.join("frozen.out"), "thawed");
    c.cmd("resume", &[]).fails_with("container not paused");
    drop(c);
    env.finish();
}

/// Memory, pids and cpu values of `cg`: (memory limit, pids max, cpu shares or weight).
fn mem_pids_cpu(cg: &Cg, probe: &Probe) -> (String, String, String) {
    let files = if v2() {
        ["memory.max", "pids.max", "cpu.weight"]
    } else {
        ["memory.limit_in_bytes", "pids.max", "cpu.shares"]
    };
    let ctrls = ["memory", "pids", "cpu"];
    let host: Vec<String> = ctrls
        .iter()
        .zip(files)
        .map(|(c, f)| cg.read(c, f))
        .collect();
    let inside: Vec<String> = ctrls
        .iter()
        .zip(files)
        .map(|(c, f)| probe.cat(&cg.inside_path(c, f)))
        .collect();
    assert_eq!(host, inside, "host and inside agree on {files:?}");
    (host[0].clone(), host[1].clone(), host[2].clone())
}

fn cpu_value(shares: u64) -> String {
    if v2() {
        shares_to_weight(shares).to_string()
    } else {
        shares.to_string()
    }
}

fn bundle_for_update(env: &TestEnv, tag: &str) -> Bundle {
    let mut b = probed_bundle(env, tag);
    b.set("/linux/resources/memory", json!({"limit": 64 * MIB}));
    b.set("/linux/resources/pids", json!({"limit": 20}));
    b.set("/linux/resources/cpu", json!({"shares": 512}));
    b
}

#[test]
fn update_from_file() {
    let env = TestEnv::new();
    let b = bundle_for_update(&env, "updfile");
    let (c, probe, cg) = start_probed(&env, &b);
    assert_eq!(
        mem_pids_cpu(&cg, &probe),
        ((64 * MIB).to_string(), "20".into(), cpu_value(512))
    );
    let file = env.dir().join("resources.json");
    fs::write(
        &file,
        json!({"memory": {"limit": 128 * MIB}, "pids": {"limit": 30}, "cpu": {"shares": 1024}})
            .to_string(),
    )
    .unwrap();
    // podman's spelling: --resources=FILE
    c.cmd("update", &[&format!("--resources={}", file.display())])
        .ok();
    assert_eq!(
        mem_pids_cpu(&cg, &probe),
        ((128 * MIB).to_string(), "30".into(), cpu_value(1024))
    );
    // -r FILE, and a file that is not JSON
    fs::write(&file, "{\"memory\": ").unwrap();
    c.cmd("update", &["-r", file.to_str().unwrap()])
        .fails_with("decode resources from");
    c.cmd("update", &["-r", "/nonexistent/kakuri-res.json"])
        .fails_with("/nonexistent/kakuri-res.json");
    drop(c);
    env.finish();
}

#[test]
fn update_from_stdin_with_zeros() {
    let env = TestEnv::new();
    let b = bundle_for_update(&env, "updstdin");
    let (c, probe, cg) = start_probed(&env, &b);
    // What go-runc / Docker send: every field, zero for "leave alone".
    let res = json!({
        "memory": {"limit": 96 * MIB, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0},
        "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimeRuntime": 0, "realtimePeriod": 0, "cpus": "", "mems": ""},
        "blockIO": {"weight": 0},
        "pids": {"limit": 0}
    });
    let file = env.dir().join("stdin.json");
    fs::write(&file, res.to_string()).unwrap();
    let mut cmd = env.rt().cmd(&["update", "--resources", "-", c.id()]);
    cmd.stdin(fs::File::open(&file).unwrap());
    env.rt().output(cmd).ok();
    assert_eq!(
        mem_pids_cpu(&cg, &probe),
        ((96 * MIB).to_string(), "20".into(), cpu_value(512)),
        "only the memory limit changed"
    );
    drop(c);
    env.finish();
}

#[test]
fn update_with_flags() {
    let env = TestEnv::new();
    let mut b = bundle_for_update(&env, "updflags");
    b.set(
        "/linux/resources/cpu",
        json!({"shares": 512, "quota": 20000, "period": 100000}),
    );
    let (c, probe, cg) = start_probed(&env, &b);
    c.cmd(
        "update",
        &[
            "--memory",
            "80m",
            "--memory-reservation",
            "40m",
            "--cpu-share",
            "256",
            "--cpu-quota",
            "30000",
            "--cpu-period",
            "60000",
            "--pids-limit",
            "25",
            "--cpuset-cpus",
            "0",
        ],
    )
    .ok();
    assert_eq!(
        mem_pids_cpu(&cg, &probe),
        ((80 * MIB).to_string(), "25".into(), cpu_value(256))
    );
    check(&cg, &probe, "cpuset", "cpuset.cpus", "0");
    let quota_period = || {
        if v2() {
            cg.read("cpu", "cpu.max")
        } else {
            format!(
                "{} {}",
                cg.read("cpu", "cpu.cfs_quota_us"),
                cg.read("cpu", "cpu.cfs_period_us")
            )
        }
    };
    assert_eq!(quota_period(), "30000 60000");
    if v2() {
        check(&cg, &probe, "memory", "memory.low", &(40 * MIB).to_string());
    } else {
        check(
            &cg,
            &probe,
            "memory",
            "memory.soft_limit_in_bytes",
            &(40 * MIB).to_string(),
        );
    }
    // A new period alone keeps the quota; a new quota alone keeps the period.
    c.cmd("update", &["--cpu-period", "50000"]).ok();
    assert_eq!(quota_period(), "30000 50000");
    c.cmd("update", &["--cpu-quota", "25000"]).ok();
    assert_eq!(quota_period(), "25000 50000");
    // -1: no limit
    c.cmd("update", &["--pids-limit", "-1"]).ok();
    check(&cg, &probe, "pids", "pids.max", "max");
    // errors
    c.cmd("update", &["--memory", "lots"])
        .fails_with("invalid value for memory: invalid size: 'lots'");
    c.cmd("update", &["--cpu-period", "x"])
        .fails_with("invalid value for cpu-period");
    c.cmd("update", &["--l3-cache-schema", "L3:0=f"])
        .fails_with("Intel RDT/CAT: l3 cache schema is not enabled");
    c.cmd("update", &["--mem-bw-schema", "MB:0=50"])
        .fails_with("Intel RDT/MBA: memory bandwidth schema is not enabled");
    assert_eq!(
        cg.read("pids", "pids.max"),
        "max",
        "failed updates changed nothing"
    );
    env.run(&["update", "--memory", "64m", "kt-no-such-container"])
        .fails_with("does not exist");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.cmd("update", &["--memory", "64m"])
        .fails_with("container not running");
    drop(c);
    env.finish();
}

#[test]
fn ps_json_lists_host_pids() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}-ps", env.id()));
    b.set_sh("sleep 60 & exec sleep 61");
    let c = env.create(&b);
    c.start();
    let init = c.pid();
    let pids = wait_for("two processes in the container", WAIT_TIMEOUT, || {
        let out = c.cmd("ps", &["--format", "json"]);
        out.ok();
        let v: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("ps --format json is not JSON ({e}): {out}"));
        let arr = v
            .as_array()
            .unwrap_or_else(|| panic!("not a bare array: {out}"))
            .clone();
        (arr.len() == 2).then_some(arr)
    });
    let pids: Vec<i64> = pids
        .iter()
        .map(|p| p.as_i64().expect("pids are numbers"))
        .collect();
    assert!(pids.contains(&(init as i64)), "init {init} in {pids:?}");
    // Host pids: each is in the container's cgroup, and each becomes one of the two sleeps (the
    // shell's forked child may not have exec'd `sleep 60` yet when ps lists it).
    let cg = format!("kakuri-{}-ps", env.id());
    for p in &pids {
        let cgroup = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        assert!(
            cgroup.contains(&cg),
            "host pid {p} is not in the container's cgroup {cg}: {cgroup}"
        );
        wait_for(&format!("host pid {p} to exec sleep"), WAIT_TIMEOUT, || {
            let cmdline = fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default();
            cmdline.starts_with("sleep").then_some(())
        });
    }
    drop(c);
    env.finish();
}

#[test]
fn events_stats_json() {
    let env = TestEnv::new();
    let mut b = probed_bundle(&env, "stats");
    b.set("/linux/resources/memory", json!({"limit": 64 * MIB}));
    b.set("/linux/resources/pids", json!({"limit": 50}));
    let (c, _probe, _cg) = start_probed(&env, &b);
    let out = c.cmd("events", &["--stats"]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one event: {out}");
    let ev: Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(ev["type"], "stats", "{ev}");
    assert_eq!(ev["id"], c.id(), "{ev}");
    let d = &ev["data"];
    for k in [
        "cpu",
        "cpuset",
        "memory",
        "pids",
        "blkio",
        "hugetlb",
        "intel_rdt",
    ] {
        assert!(d.get(k).is_some(), "data lacks {k}: {ev}");
    }
    assert!(
        d.get("network_interfaces").is_some(),
        "network_interfaces present (null): {ev}"
    );
    let usage = d["memory"]["usage"]["usage"].as_u64().unwrap_or(0);
    assert!(usage > 0, "memory usage > 0: {ev}");
    assert_eq!(
        d["memory"]["usage"]["limit"].as_u64(),
        Some(64 * MIB as u64),
        "{ev}"
    );
    assert!(d["memory"]["usage"].get("failcnt").is_some(), "{ev}");
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{ev}");
    assert_eq!(d["pids"]["limit"].as_u64(), Some(50), "{ev}");
    assert!(
        d["cpu"]["usage"]["total"].as_u64().unwrap_or(0) > 0,
        "cpu time used: {ev}"
    );
    assert!(
        d["cpu"]["usage"].get("kernel").is_some() && d["cpu"]["usage"].get("user").is_some(),
        "{ev}"
    );
    assert!(
        d["memory"]["raw"]
            .as_object()
            .is_some_and(|m| !m.is_empty()),
        "memory.stat: {ev}"
    );
    // Errors as runc.
    c.cmd("events", &["--stats", "--interval", "0s"])
        .fails_with("duration interval must be greater than 0");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.cmd("events", &["--stats"])
        .fails_with(&format!("container with id {} is not running", c.id()));
    drop(c);
    env.finish();
}

#[test]
fn events_stream_reports_stats_and_oom_until_exit() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}-oom", env.id()));
    // No swap, so the hog is killed rather than swapped out.
    b.set(
        "/linux/resources/memory",
        json!({"limit": 32 * MIB, "swap": 32 * MIB}),
    );
    let go = b.rootfs().join("tmp/go");
    b.set_sh("while [ ! -e /tmp/go ]; do usleep 50000; done; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 2");
    let c = env.create(&b);
    c.start();
    let events = env
        .rt()
        .spawn(env.rt().cmd(&["events", "--interval", "300ms", c.id()]));
    // The first stats event shows the watcher runs; then trigger the OOM.
    let first_stats = wait_for("a first stats event", PROBE_TIMEOUT, || {
        let out = events_stdout(&env);
        out.contains("\"type\":\"stats\"").then_some(out)
    });
    assert!(first_stats.starts_with('{'), "{first_stats}");
    fs::File::create(&go).unwrap().flush().unwrap();
    let out = events.wait(PROBE_TIMEOUT + Duration::from_secs(30));
    out.ok();
    let evs: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("line {l:?} is not JSON ({e})")))
        .collect();
    assert!(evs.iter().all(|e| e["id"] == c.id()), "{}", out.stdout);
    assert!(
        evs.iter()
            .any(|e| e["type"] == "oom" && e.get("data").is_none()),
        "an oom event: {}",
        out.stdout
    );
    assert!(
        evs.iter().filter(|e| e["type"] == "stats").count() >= 1,
        "{}",
        out.stdout
    );
    assert_eq!(
        c.status(),
        "stopped",
        "events ends when the container stops"
    );
    drop(c);
    env.finish();
}

/// stdout of the most recent spawned runtime command of `env` (cmd-N.out in its dir).
fn events_stdout(env: &TestEnv) -> String {
    let mut best: Option<(usize, PathBuf)> = None;
    for e in fs::read_dir(env.dir()).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("cmd-")
            .and_then(|r| r.strip_suffix(".out"))
        {
            if let Ok(n) = n.parse::<usize>() {
                if best.as_ref().is_none_or(|(b, _)| n > *b) {
                    best = Some((n, e.path()));
                }
            }
        }
    }
    best.and_then(|(_, p)| fs::read_to_string(p).ok())
        .unwrap_or_default()
}

#[test]
fn kill_all_signals_every_process() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}-killall", env.id()));
    b.set_sh("sleep 100 & sleep 101 & wait");
    let c = env.create(&b);
    c.start();
    let pids: Vec<i32> = wait_for("three processes", WAIT_TIMEOUT, || {
        let out = c.cmd("ps", &["--format", "json"]);
        let v: Vec<i32> = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
        (v.len() == 3).then_some(v)
    });
    env.run(&["kill", "--all", c.id(), "KILL"]).ok();
    c.wait_status("stopped");
    wait_for("every container process to be gone", WAIT_TIMEOUT, || {
        pids.iter().all(|p| !process_alive(*p)).then_some(())
    });
    drop(c);
    env.finish();
}

#[test]
fn delete_force_of_paused_container() {
    let env = TestEnv::new();
    let b = probed_bundle(&env, "delpaused");
    let (c, _probe, cg) = start_probed(&env, &b);
    let pid = c.pid();
    c.cmd("pause", &[]).ok();
    assert_eq!(c.status(), "paused");
    c.delete(false).fails_with("cannot delete container");
    c.delete(true).ok();
    assert!(!process_alive(pid), "init {pid} is gone");
    for d in cg.all_dirs() {
        assert!(!d.exists(), "{} left after delete --force", d.display());
    }
    env.run(&["state", c.id()]).fails_with("does not exist");
    drop(c);
    env.finish();
}
