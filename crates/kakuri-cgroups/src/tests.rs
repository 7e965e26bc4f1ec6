//! Unit tests: mountinfo / path logic, and the v2 code paths against a fake cgroup2 tree in a temp dir
//! (every write is also recorded in order by fsutil::WRITES).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::devices::{Emulator, Program};
use crate::system::{clean_path, SystemInfo};

const HYBRID_MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

const HYBRID_CGROUP: &str = "\
9:name=systemd:/
8:pids:/
7:blkio:/
6:freezer:/
5:devices:/
4:memory:/process_api/abc
3:cpuset:/
2:cpuacct:/
1:cpu:/
0::/
";

static N: AtomicUsize = AtomicUsize::new(0);

/// A temp directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "kakuri-cgtest-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

fn take_writes() -> Vec<(PathBuf, String)> {
    fsutil::WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
}

/// Writes as (file name, value).
fn names(w: &[(PathBuf, String)]) -> Vec<(String, String)> {
    w.iter()
        .map(|(p, v)| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                v.clone(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[test]
fn detects_hybrid_and_resolves_paths_like_runc() {
    let sys =
        SystemInfo::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP, Path::new("/sys/fs/cgroup")).unwrap();
    assert_eq!(sys.mode, Mode::Hybrid);
    assert_eq!(sys.v1.len(), 9);
    assert_eq!(
        sys.unified.as_ref().unwrap().mount_point,
        Path::new("/sys/fs/cgroup/unified")
    );

    let m = FsManager::with_system(&sys, None, "ctr1").unwrap();
    assert_eq!(m.mode(), Mode::Hybrid);
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/ctr1")
    );
    assert_eq!(m.path("cpu").unwrap(), Path::new("/sys/fs/cgroup/cpu/ctr1"));
    assert_eq!(
        m.path("name=systemd").unwrap(),
        Path::new("/sys/fs/cgroup/systemd/ctr1")
    );
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/unified/ctr1")
    );

    let m = FsManager::with_system(&sys, Some("/a/../b/c/"), "ignored").unwrap();
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/b/c")
    );
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/unified/b/c")
    );

    // A relative path cannot climb out of the runtime's cgroup.
    let m = FsManager::with_system(&sys, Some("../../x"), "ignored").unwrap();
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/x")
    );

    // Serialized into state.json and back.
    let json = serde_json::to_string(&Manager::Fs(m.clone())).unwrap();
    let back: Manager = serde_json::from_str(&json).unwrap();
    assert_eq!(back.all_paths(), m.all_paths());
    assert_eq!(back.mode(), Mode::Hybrid);

    let mounts = m.mounts();
    assert_eq!(mounts.len(), 10);
    assert_eq!(mounts[9].mount_point_name, "unified");
    assert_eq!(mounts[8].options, "none,name=systemd");
}

#[test]
fn detects_v1_v2_comounts_duplicates_and_escapes() {
    let v1 = "\
1 0 0:1 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
2 0 0:1 / /mnt/again rw - cgroup cgroup rw,cpuacct,cpu
3 0 0:2 / /sys/fs/cgroup/name\\040with\\040space rw - cgroup cgroup rw,memory
4 0 0:3 / /sys/fs/cgroup/foo rw - cgroup cgroup rw,name=foo
";
    let sys = SystemInfo::parse(
        v1,
        "2:cpu,cpuacct:/x\n1:memory:/y\n",
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    assert_eq!(sys.mode, Mode::V1);
    assert_eq!(sys.v1.len(), 2, "{:?}", sys.v1);
    assert_eq!(sys.v1[0].controllers, vec!["cpu", "cpuacct"]);
    assert_eq!(
        sys.v1[1].mount_point,
        Path::new("/sys/fs/cgroup/name with space")
    );
    let m = FsManager::with_system(&sys, Some("c"), "id").unwrap();
    assert_eq!(
        m.path("cpuacct").unwrap(),
        Path::new("/sys/fs/cgroup/cpu,cpuacct/x/c")
    );
    assert_eq!(m.mounts()[0].mount_point_name, "cpu,cpuacct");
    assert_eq!(m.mounts()[0].options, "cpu,cpuacct");
    assert!(m.unified_path().is_none());

    let v2 = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
    let sys = SystemInfo::parse(
        v2,
        "0::/user.slice/user-0.slice/session-1.scope\n",
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    assert_eq!(sys.mode, Mode::V2);
    // Relative: under the parent of the own cgroup, as runc's fs2 driver.
    let m = FsManager::with_system(&sys, None, "ctr").unwrap();
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/user.slice/user-0.slice/ctr")
    );
    assert_eq!(m.mounts()[0].mount_point_name, "");
    assert_eq!(m.mounts()[0].fs_type, "cgroup2");
    let m = FsManager::with_system(&sys, Some("/machine/ctr"), "x").unwrap();
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/machine/ctr")
    );

    // A v2 host with a legacy name=systemd hierarchy mounted for old software is still a v2 host.
    let v2_legacy =
        format!("{v2}40 30 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n");
    let sys = SystemInfo::parse(
        &v2_legacy,
        "1:name=systemd:/\n0::/a/b\n",
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    assert_eq!(sys.mode, Mode::V2);
    let m = FsManager::with_system(&sys, Some("/c"), "x").unwrap();
    assert_eq!(m.all_paths(), vec![Path::new("/sys/fs/cgroup/c")]);

    // A mount of a sub-tree (inside a container): own paths are relative to the mount root.
    let nested = "5 0 0:9 /docker/abc /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    let sys = SystemInfo::parse(
        nested,
        "4:memory:/docker/abc/sub\n",
        Path::new("/sys/fs/cgroup"),
    )
    .unwrap();
    let m = FsManager::with_system(&sys, Some("k"), "x").unwrap();
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/sub/k")
    );

    assert!(matches!(
        SystemInfo::parse(
            "1 0 0:1 / / rw - ext4 /dev/vda rw\n",
            "",
            Path::new("/sys/fs/cgroup")
        ),
        Err(CgroupError::NoCgroupFs(_))
    ));
}

#[test]
fn clean_path_matches_runc() {
    assert_eq!(clean_path(""), "");
    assert_eq!(clean_path("../../a/b"), "a/b");
    assert_eq!(clean_path("a/./b//c/"), "a/b/c");
    assert_eq!(clean_path("/a/../../b"), "/b");
    assert_eq!(clean_path("a/../.."), ".");
    assert_eq!(clean_path("/"), "/");
}

/// A fake v2 host: `root` plays /sys/fs/cgroup with the given controllers; the runtime lives in
/// /user.slice/session.scope.
fn fake_v2(root: &Path) -> SystemInfo {
    fs::write(
        root.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma\n",
    )
    .unwrap();
    fs::write(root.join("cgroup.subtree_control"), "").unwrap();
    let mi = format!("30 23 0:26 / {} rw - cgroup2 cgroup2 rw\n", root.display());
    SystemInfo::parse(&mi, "0::/user.slice/session.scope\n", root).unwrap()
}

/// Make the control files of a v2 cgroup directory (the kernel would create them).
fn touch(dir: &Path, files: &[&str]) {
    for f in files {
        fs::write(dir.join(f), "").unwrap();
    }
}

#[test]
fn v2_create_enables_controllers_in_every_ancestor() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let m = FsManager::with_system(&sys, Some("/a/b/ctr"), "x").unwrap();
    take_writes();
    m.create().unwrap();
    let leaf = t.0.join("a/b/ctr");
    assert!(leaf.is_dir());
    let w = take_writes();
    let want = "+cpuset +cpu +io +memory +hugetlb +pids +rdma";
    // The root's subtree_control exists in the fake tree; the new a/ and a/b/ have none (a real kernel
    // creates it), so only the root write succeeds here, and the rest was attempted.
    assert_eq!(
        w,
        vec![(t.0.join("cgroup.subtree_control"), want.to_string())]
    );
    assert_eq!(
        fs::read_to_string(t.0.join("cgroup.subtree_control")).unwrap(),
        want
    );

    // With the files in place, every ancestor gets the controllers, the leaf does not.
    touch(&t.0.join("a"), &["cgroup.subtree_control", "cgroup.procs"]);
    touch(
        &t.0.join("a/b"),
        &["cgroup.subtree_control", "cgroup.procs"],
    );
    touch(&leaf, &["cgroup.procs"]);
    m.create().unwrap();
    let w = take_writes();
    assert_eq!(
        w.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(),
        vec![
            t.0.join("cgroup.subtree_control"),
            t.0.join("a/cgroup.subtree_control"),
            t.0.join("a/b/cgroup.subtree_control")
        ]
    );
    // An existing cgroup with a process belongs to someone else.
    fs::write(leaf.join("cgroup.procs"), "4242\n").unwrap();
    assert!(matches!(m.create(), Err(CgroupError::Occupied(p)) if p == leaf));
    assert_eq!(m.pids().unwrap(), vec![4242]);
}

#[test]
fn v2_resources_are_written_as_runc_writes_them() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let m = FsManager::with_system(&sys, Some("/ctr"), "x").unwrap();
    m.create().unwrap();
    let d = t.0.join("ctr");
    touch(
        &d,
        &[
            "cgroup.controllers",
            "pids.max",
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "io.weight",
            "io.max",
            "cpu.weight",
            "cpu.max",
            "cpu.max.burst",
            "cpu.idle",
            "cpuset.cpus",
            "cpuset.mems",
            "hugetlb.2MB.max",
            "hugetlb.2MB.rsvd.max",
            "hugetlb.1GB.max",
            "rdma.max",
            "memory.high",
        ],
    );
    fs::write(
        d.join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids rdma",
    )
    .unwrap();
    take_writes();
    m.apply(&res(r#"{
        "pids": {"limit": 100},
        "memory": {"limit": 104857600, "swap": 209715200, "reservation": 52428800,
                   "swappiness": 5, "disableOOMKiller": true, "kernel": 1, "kernelTCP": 1},
        "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                    "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 200}]},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 10000, "idle": 0,
                "cpus": "0-1", "mems": "0"},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}, {"pageSize": "1GB", "limit": 0}],
        "rdma": {"mlx5_1": {"hcaHandles": 3}, "mlx4_0": {"hcaHandles": 1, "hcaObjects": 1000}},
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 500}]},
        "unified": {"memory.high": "94371840"}
    }"#))
    .unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[
            ("pids.max", "100"),
            // memory+swap 200M - memory 100M.
            ("memory.swap.max", "104857600"),
            ("memory.max", "104857600"),
            ("memory.low", "52428800"),
            // No io.bfq.weight: converted 1 + (500-10)*9999/990.
            ("io.weight", "4950"),
            ("io.max", "8:0 rbps=1048576"),
            ("io.max", "8:0 wbps=2097152"),
            ("io.max", "8:16 riops=100"),
            ("io.max", "8:16 wiops=200"),
            // shares 1024 -> 1 + (1022*9999)/262142 = 39.
            ("cpu.weight", "39"),
            ("cpu.idle", "0"),
            ("cpu.max.burst", "10000"),
            ("cpu.max", "50000 100000"),
            ("cpuset.cpus", "0-1"),
            ("cpuset.mems", "0"),
            ("hugetlb.2MB.max", "4194304"),
            ("hugetlb.2MB.rsvd.max", "4194304"),
            ("hugetlb.1GB.max", "0"),
            ("rdma.max", "mlx4_0 hca_handle=1 hca_object=1000"),
            ("rdma.max", "mlx5_1 hca_handle=3"),
            ("memory.high", "94371840"),
        ])
    );

    // Absent resources: no work at all.
    m.apply(&LinuxResources::default()).unwrap();
    m.apply(&res(
        r#"{"memory": {}, "cpu": {}, "blockIO": {}, "pids": {"limit": 0}}"#,
    ))
    .unwrap();
    assert!(take_writes().is_empty());

    // Quota only -> "max period"? No: quota -1 means unlimited, with the period kept.
    m.update(&res(
        r#"{"cpu": {"quota": -1, "period": 250000}, "memory": {"limit": -1}}"#,
    ))
    .unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[
            ("memory.swap.max", "max"),
            ("memory.max", "max"),
            ("cpu.max", "max 250000")
        ])
    );
    // memory == memory+swap: swap off.
    m.update(&res(r#"{"memory": {"limit": 1048576, "swap": 1048576}}"#))
        .unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[("memory.swap.max", "0"), ("memory.max", "1048576")])
    );

    // update with a new period only: cpu.max takes both numbers, the quota in force is kept (apply,
    // with nothing stored, still means "no quota").
    fs::write(d.join("cpu.max"), "30000 100000\n").unwrap();
    m.update(&res(r#"{"cpu": {"period": 50000}}"#)).unwrap();
    assert_eq!(names(&take_writes()), pairs(&[("cpu.max", "30000 50000")]));
    m.apply(&res(r#"{"cpu": {"period": 50000}}"#)).unwrap();
    assert_eq!(names(&take_writes()), pairs(&[("cpu.max", "max 50000")]));

    // update with only memory+swap: the swap part is relative to the limit in force.
    fs::write(d.join("memory.max"), "1048576\n").unwrap();
    m.update(&res(r#"{"memory": {"swap": 3145728}}"#)).unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[("memory.swap.max", "2097152")])
    );
    fs::write(d.join("memory.max"), "max\n").unwrap();
    let e = m
        .update(&res(r#"{"memory": {"swap": 3145728}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.memory.swap: unable to set swap limit without memory limit"
    );

    // BFQ present with per-device weights: unconverted weights go there.
    fs::write(d.join("io.bfq.weight"), "default 100\n").unwrap();
    m.apply(&res(
        r#"{"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}}"#,
    ))
    .unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[("io.bfq.weight", "300"), ("io.bfq.weight", "8:0 50")])
    );
}

#[test]
fn v2_errors_name_field_file_and_controller() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let m = FsManager::with_system(&sys, Some("/ctr"), "x").unwrap();
    m.create().unwrap();
    let d = t.0.join("ctr");
    // No memory files: the memory controller is not enabled for the cgroup.
    let e = m
        .apply(&res(r#"{"memory": {"limit": 1048576}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "linux.resources.memory.limit: the memory controller is not enabled in {}/cgroup.controllers",
            d.display()
        )
    );
    let e = m
        .apply(&res(r#"{"memory": {"limit": 100, "swap": 50}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.memory.swap: memory+swap limit should be >= memory limit"
    );
    let e = m.apply(&res(r#"{"memory": {"swap": 50}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.memory.swap: unable to set swap limit without memory limit"
    );
    let e = m
        .apply(&res(r#"{"cpu": {"realtimeRuntime": 1000}}"#))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.resources.cpu.realtimeRuntime:"),
        "{e}"
    );
    let e = m.apply(&res(r#"{"unified": {"../x": "1"}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.unified[\"../x\"]: must be a file name (no slashes)"
    );
    let e = m.apply(&res(r#"{"unified": {"nodot": "1"}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.unified[\"nodot\"]: must be in the form CONTROLLER.PARAMETER"
    );
    fs::write(d.join("cgroup.controllers"), "cpu").unwrap();
    let e = m
        .apply(&res(r#"{"unified": {"misc.max": "1"}}"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "linux.resources.unified[\"misc.max\"]: the misc controller is not available in {}/cgroup.controllers",
            d.display()
        )
    );
    let e = m
        .apply(&res(r#"{"rdma": {"mlx": {"hcaHandles": 1}}}"#))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.resources.rdma: the rdma controller is not enabled"),
        "{e}"
    );
    // A threaded cgroup (its parent holds processes) cannot have domain controllers.
    fs::write(d.join("cgroup.type"), "threaded\n").unwrap();
    let e = m.apply(&res(r#"{"pids": {"limit": 5}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "linux.resources.pids.limit: the pids controller cannot be used in {}: the cgroup is \"threaded\" \
             (its parent holds processes or is threaded)",
            d.display()
        )
    );
    fs::write(d.join("cgroup.type"), "domain invalid\n").unwrap();
    take_writes();
    v2::fix_invalid_domain(&d).unwrap();
    assert_eq!(names(&take_writes()), pairs(&[("cgroup.type", "threaded")]));

    // The container crate's example message: a kernel error carries field, file and errno text.
    let e = CgroupError::file(
        "linux.resources.memory.limit",
        "write",
        PathBuf::from("/sys/fs/cgroup/memory/x/memory.limit_in_bytes"),
        std::io::Error::from_raw_os_error(libc::EBUSY),
    );
    assert_eq!(
        e.to_string(),
        "linux.resources.memory.limit: write /sys/fs/cgroup/memory/x/memory.limit_in_bytes: device or resource busy"
    );
}

#[test]
fn v2_freeze_waits_for_frozen_event_and_stats_parse() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let m = FsManager::with_system(&sys, Some("/ctr"), "x").unwrap();
    m.create().unwrap();
    let d = t.0.join("ctr");
    touch(&d, &["cgroup.freeze"]);
    fs::write(d.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    fs::write(d.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    let e = v2::freeze(&d, std::time::Duration::from_millis(30)).unwrap_err();
    assert!(matches!(e, CgroupError::FreezeTimeout { .. }));
    // The timeout thawed it again.
    assert_eq!(fs::read_to_string(d.join("cgroup.freeze")).unwrap(), "0");

    fs::write(d.join("pids.current"), "3\n").unwrap();
    fs::write(d.join("pids.max"), "max\n").unwrap();
    fs::write(
        d.join("cpu.stat"),
        "usage_usec 2000\nuser_usec 1500\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 7\n",
    )
    .unwrap();
    fs::write(d.join("memory.current"), "4096\n").unwrap();
    fs::write(d.join("memory.max"), "8192\n").unwrap();
    fs::write(d.join("memory.peak"), "5000\n").unwrap();
    fs::write(d.join("memory.swap.current"), "100\n").unwrap();
    fs::write(d.join("memory.swap.max"), "max\n").unwrap();
    fs::write(
        d.join("memory.events"),
        "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
    )
    .unwrap();
    fs::write(d.join("memory.stat"), "anon 10\nfile 20\n").unwrap();
    fs::write(
        d.join("io.stat"),
        "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
    )
    .unwrap();
    fs::write(d.join("hugetlb.2MB.current"), "0\n").unwrap();
    fs::write(d.join("hugetlb.2MB.events"), "max 3\n").unwrap();
    fs::write(d.join("hugetlb.2MB.rsvd.current"), "0\n").unwrap();
    let s = m.stats().unwrap();
    let j = serde_json::to_value(&s).unwrap();
    assert_eq!(j["pids"], serde_json::json!({"current": 3}));
    assert_eq!(
        j["cpu"]["usage"],
        serde_json::json!({"total": 2000000, "kernel": 500000, "user": 1500000})
    );
    assert_eq!(
        j["cpu"]["throttling"],
        serde_json::json!({"periods": 10, "throttledPeriods": 2, "throttledTime": 7000})
    );
    assert_eq!(j["memory"]["cache"], 20);
    assert_eq!(
        j["memory"]["usage"],
        serde_json::json!({"limit": 8192, "usage": 4096, "max": 5000, "failcnt": 4})
    );
    assert_eq!(
        j["memory"]["swap"],
        serde_json::json!({"limit": u64::MAX, "usage": 4196, "failcnt": 0})
    );
    assert_eq!(
        j["memory"]["raw"],
        serde_json::json!({"anon": 10, "file": 20})
    );
    assert_eq!(
        j["blkio"]["ioServiceBytesRecursive"],
        serde_json::json!([{"major": 8, "op": "Read", "value": 10}, {"major": 8, "op": "Write", "value": 20}])
    );
    assert_eq!(j["hugetlb"], serde_json::json!({"2MB": {"failcnt": 3}}));
    assert_eq!(j["intel_rdt"], serde_json::json!({}));
    assert_eq!(j["network_interfaces"], serde_json::Value::Null);
}

fn rules(json: &str) -> Vec<kakuri_spec::oci::LinuxDeviceCgroup> {
    serde_json::from_str(json).unwrap()
}

/// runc's default device list after a deny-all rule (the container crate passes this).
const DEFAULT_RULES: &str = r#"[
    {"allow": false, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": true, "type": "c", "major": 136, "access": "rwm"},
    {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "w"},
    {"allow": false, "type": "c", "major": 5, "minor": 2, "access": "m"},
    {"allow": true, "type": "b", "minor": 1, "access": "r"}
]"#;

const C: u32 = 2;
const B: u32 = 1;
const R: u32 = devices::ACC_READ as u32;
const W: u32 = devices::ACC_WRITE as u32;
const M: u32 = devices::ACC_MKNOD as u32;

#[test]
fn device_rules_replay_like_runc_and_the_program_agrees() {
    let emu = Emulator::from_rules(&rules(DEFAULT_RULES)).unwrap();
    assert!(!emu.default_allow);
    let text: Vec<String> = emu
        .exceptions
        .iter()
        .map(|(m, b)| devices::rule_text(m, *b))
        .collect();
    assert_eq!(
        text,
        vec![
            "b *:1 r",
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:2 rw",
            "c 10:200 rwm",
            "c 136:* rwm"
        ]
    );
    let p = Program::generate(&emu);
    let cases = [
        (C, R | W, 1, 3, 1),
        (C, M, 1, 3, 1),
        (C, R, 1, 4, 0),
        (C, R | W, 5, 2, 1),
        (C, M, 5, 2, 0),
        (C, R | W | M, 5, 2, 0),
        (C, R, 136, 7, 1),
        (B, R, 136, 7, 0),
        (B, R, 8, 1, 1),
        (B, W, 8, 1, 0),
        (B, R, 8, 0, 0),
        (C, R, 10, 200, 1),
    ];
    for (t, a, ma, mi, want) in cases {
        assert_eq!(p.run(t, a, ma, mi), want, "type {t} access {a} {ma}:{mi}");
    }

    // Allow-all then deny some: default allow with deny exceptions.
    let emu = Emulator::from_rules(&rules(
        r#"[{"allow": true, "access": "rwm"}, {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "rw"}]"#,
    ))
    .unwrap();
    assert!(emu.default_allow);
    let p = Program::generate(&emu);
    assert_eq!(p.run(C, R, 1, 5), 0);
    assert_eq!(p.run(C, M, 1, 5), 1);
    assert_eq!(p.run(C, R, 1, 3), 1);
    assert_eq!(p.run(B, R | W, 8, 0), 1);

    // A later "a" rule resets everything before it; no rules at all = deny everything.
    let emu = Emulator::from_rules(&rules(
        r#"[{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}, {"allow": false, "type": "a", "access": "r"}]"#,
    ))
    .unwrap();
    assert_eq!(emu, Emulator::default());
    let p = Program::generate(&emu);
    assert_eq!(p.run(C, R, 1, 3), 0);
    assert_eq!(p.insns.len(), 8);

    // "u" is a char device; "p" cannot be expressed.
    let emu = Emulator::from_rules(&rules(
        r#"[{"allow": true, "type": "u", "major": 4, "minor": 1, "access": "r"}]"#,
    ))
    .unwrap();
    assert_eq!(
        devices::rule_text(emu.exceptions.keys().next().unwrap(), 2),
        "c 4:1 r"
    );
    let e = Emulator::from_rules(&rules(r#"[{"allow": true, "type": "p", "access": "r"}]"#))
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("linux.resources.devices[0]: type \"p\""),
        "{e}"
    );
    let e = Emulator::from_rules(&rules(r#"[{"allow": false}]"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.devices[0]: the access field cannot be empty"
    );
    // Letters other than r, w, m are ignored, as runc ignores them; repeats are harmless.
    let emu = Emulator::from_rules(&rules(
        r#"[{"allow": true, "type": "c", "major": 1, "minor": 11, "access": "wwa"}]"#,
    ))
    .unwrap();
    assert_eq!(
        devices::rule_text(
            emu.exceptions.keys().next().unwrap(),
            emu.exceptions[emu.exceptions.keys().next().unwrap()]
        ),
        "c 1:11 w"
    );
    let p = Program::generate(&emu);
    assert_eq!(p.run(C, W, 1, 11), 1);
    assert_eq!(p.run(C, R, 1, 11), 0);
    let e = Emulator::from_rules(&rules(r#"[{"allow": true, "type": "c", "access": "x"}]"#))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.devices[0]: access \"x\" names none of r, w, m"
    );
    // A device node the config lists adds no rule of its own: after deny-all, c 1:11 is
    // denied to the program unless a rule allows it.
    let p = Program::generate(&Emulator::from_rules(&rules(DEFAULT_RULES)).unwrap());
    assert_eq!(p.run(C, W, 1, 11), 0);
    assert_eq!(p.run(C, M, 1, 11), 0);
    // Punching a hole into a wildcard exception is refused (cgroup v1 would ignore it silently).
    let e = Emulator::from_rules(&rules(
        r#"[{"allow": true, "type": "c", "major": 136, "access": "rwm"}, {"allow": false, "type": "c", "major": 136, "minor": 2, "access": "w"}]"#,
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.devices[1]: cannot punch a hole in the wildcard rule \"c 136:* rwm\" (the device cgroup cannot express it)"
    );
}

/// The generated program passes the kernel verifier and filters real device opens, on the cgroup2
/// hierarchy of this host (hybrid: /sys/fs/cgroup/unified; v2: /sys/fs/cgroup).
#[test]
fn device_program_loads_attaches_and_filters_on_real_cgroup2() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not running: loading BPF programs needs root");
        return;
    }
    let sys = system::system().unwrap();
    let Some(u) = &sys.unified else {
        eprintln!("not running: no cgroup2 hierarchy is mounted on this host");
        return;
    };
    let dir = u.mount_point.join(format!(
        "kakuri-test-bpf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    fs::create_dir(&dir).unwrap();
    struct Cleanup(PathBuf, Option<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            if let Some(c) = &mut self.1 {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = fs::remove_dir(&self.0);
        }
    }
    let mut cleanup = Cleanup(dir.clone(), None);
    let emu = Emulator::from_rules(&rules(DEFAULT_RULES)).unwrap();
    bpf::replace_device_program(&dir, &Program::generate(&emu)).unwrap();
    let cg = fs::File::open(&dir).unwrap();
    let (ids, _) = bpf::query(&cg).unwrap();
    assert_eq!(ids.len(), 1);
    // Replacing attaches the new program and detaches the old one.
    bpf::replace_device_program(&dir, &Program::generate(&emu)).unwrap();
    let (ids2, flags) = bpf::query(&cg).unwrap();
    assert_eq!(ids2.len(), 1);
    assert_ne!(ids2[0], ids[0]);
    assert_eq!(flags, 2, "attached with BPF_F_ALLOW_MULTI");

    // A shell in the cgroup opens device nodes made here through child processes (head): allowed are
    // c 1:3, c 1:5 and block devices with minor 1 for reading; c 1:11 (kmsg) and b 7:0 are denied, as is
    // writing b 7:1. An open the program lets through may still fail in the driver (no loop device on
    // the machine: ENXIO), so what is checked is whether it failed with EPERM.
    let nodes = PathBuf::from(format!(
        "/dev/kakuri-test-bpf-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    struct RmNodes(PathBuf);
    impl Drop for RmNodes {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fs::create_dir(&nodes).unwrap();
    let _rm_nodes = RmNodes(nodes.clone());
    for (name, kind, major, minor) in [
        ("null", libc::S_IFCHR, 1, 3),
        ("zero", libc::S_IFCHR, 1, 5),
        ("kmsg", libc::S_IFCHR, 1, 11),
        ("loop0", libc::S_IFBLK, 7, 0),
        ("loop1", libc::S_IFBLK, 7, 1),
    ] {
        nix::sys::stat::mknod(
            &nodes.join(name),
            nix::sys::stat::SFlag::from_bits_truncate(kind),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        )
        .unwrap();
    }
    let script = format!(
        "D={}; read _ ; for n in null zero kmsg loop0 loop1; do \
           if e=$(head -c0 $D/$n 2>&1); then echo \"$n r:pass\"; else case \"$e\" in \
             *'not permitted'*) echo \"$n r:EPERM\";; *) echo \"$n r:pass\";; esac; fi; done; \
         if e=$( (echo >>$D/loop1) 2>&1 ); then echo 'loop1 w:pass'; else case \"$e\" in \
           *'not permitted'*) echo 'loop1 w:EPERM';; *) echo 'loop1 w:pass';; esac; fi; echo done",
        nodes.display()
    );
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    cleanup.1 = Some(child);
    let child = cleanup.1.as_mut().unwrap();
    fsutil::write_raw(&dir.join("cgroup.procs"), &child.id().to_string()).unwrap();
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let mut out = String::new();
    {
        use std::io::Read;
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
    }
    assert!(child.wait().unwrap().success());
    cleanup.1 = None;
    assert_eq!(
        out,
        "null r:pass\nzero r:pass\nkmsg r:EPERM\nloop0 r:EPERM\nloop1 r:pass\nloop1 w:EPERM\ndone\n"
    );
}

/// A fake v1 host with the controllers this machine lacks (hugetlb, net_cls, net_prio, rdma) plus blkio
/// and cpuacct for stats; each hierarchy is a directory under `root`.
fn fake_v1(root: &Path) -> SystemInfo {
    let mut mi = String::new();
    let mut own = String::new();
    for (i, c) in ["hugetlb", "net_cls,net_prio", "rdma", "blkio", "cpuacct"]
        .iter()
        .enumerate()
    {
        let dir = root.join(c);
        fs::create_dir_all(&dir).unwrap();
        mi.push_str(&format!(
            "{} 1 0:{} / {} rw - cgroup cgroup rw,{c}\n",
            50 + i,
            50 + i,
            dir.display()
        ));
        own.push_str(&format!("{}:{c}:/\n", i + 1));
    }
    SystemInfo::parse(&mi, &own, root).unwrap()
}

#[test]
fn v1_controllers_missing_on_this_host_are_written_like_runc() {
    let t = TempDir::new();
    let sys = fake_v1(&t.0);
    assert_eq!(sys.mode, Mode::V1);
    let m = FsManager::with_system(&sys, Some("/ctr"), "x").unwrap();
    m.create().unwrap();
    let hug = t.0.join("hugetlb/ctr");
    touch(
        &hug,
        &["hugetlb.2MB.limit_in_bytes", "hugetlb.1GB.limit_in_bytes"],
    );
    let net = t.0.join("net_cls,net_prio/ctr");
    touch(&net, &["net_cls.classid", "net_prio.ifpriomap"]);
    touch(&t.0.join("rdma/ctr"), &["rdma.max"]);
    take_writes();
    m.apply(&res(r#"{
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}, {"pageSize": "1GB", "limit": 0}],
        "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}, {"name": "lo", "priority": 1}]},
        "rdma": {"mlx5_0": {"hcaObjects": 7}}
    }"#))
    .unwrap();
    assert_eq!(
        names(&take_writes()),
        pairs(&[
            ("hugetlb.2MB.limit_in_bytes", "2097152"),
            // No rsvd file on this (fake) kernel: skipped from then on, as runc.
            ("hugetlb.1GB.limit_in_bytes", "0"),
            ("net_cls.classid", "1048577"),
            ("net_prio.ifpriomap", "eth0 5"),
            ("net_prio.ifpriomap", "lo 1"),
            ("rdma.max", "mlx5_0 hca_object=7"),
        ])
    );
    assert_eq!(m.mounts()[1].mount_point_name, "net_cls,net_prio");
    assert_eq!(m.mounts()[1].options, "net_cls,net_prio");
    // Memory is not mounted on this fake host.
    let e = m.apply(&res(r#"{"memory": {"limit": 1}}"#)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "linux.resources.memory: the memory controller is not mounted"
    );

    // Stats: BFQ blkio counters and cpuacct (user/system ticks -> ns).
    let blk = t.0.join("blkio/ctr");
    fs::write(
        blk.join("blkio.bfq.io_service_bytes_recursive"),
        "254:0 Read 4096\n254:0 Write 8192\nTotal 12288\n",
    )
    .unwrap();
    fs::write(
        blk.join("blkio.bfq.io_serviced_recursive"),
        "254:0 Read 1\n254:0 Write 2\nTotal 3\n",
    )
    .unwrap();
    let acct = t.0.join("cpuacct/ctr");
    fs::write(acct.join("cpuacct.usage"), "123456\n").unwrap();
    fs::write(acct.join("cpuacct.usage_percpu"), "100000 23456 \n").unwrap();
    fs::write(acct.join("cpuacct.stat"), "user 3\nsystem 1\n").unwrap();
    let s = m.stats().unwrap();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap() as u64;
    assert_eq!(s.cpu.usage.total, 123456);
    assert_eq!(s.cpu.usage.percpu, vec![100000, 23456]);
    assert_eq!(s.cpu.usage.user, 3 * 1_000_000_000 / hz);
    assert_eq!(s.cpu.usage.kernel, 1_000_000_000 / hz);
    let j = serde_json::to_value(&s.blkio).unwrap();
    assert_eq!(
        j,
        serde_json::json!({
            "ioServiceBytesRecursive": [{"major": 254, "op": "Read", "value": 4096}, {"major": 254, "op": "Write", "value": 8192}],
            "ioServicedRecursive": [{"major": 254, "op": "Read", "value": 1}, {"major": 254, "op": "Write", "value": 2}]
        })
    );
    assert_eq!(stats::parse_list("0-2,5"), vec![0, 1, 2, 5]);
}

/// The v2 code paths that need no controller, for real: this hybrid host's cgroup2 hierarchy
/// (/sys/fs/cgroup/unified, no controllers bound) is used as if it were a v2 host's /sys/fs/cgroup.
#[test]
fn v2_paths_on_the_real_cgroup2_hierarchy() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not running: creating cgroups needs root");
        return;
    }
    let host = system::system().unwrap();
    let Some(u) = host.unified.clone() else {
        eprintln!("not running: no cgroup2 hierarchy is mounted on this host");
        return;
    };
    let root = u.mount_point.clone();
    let mi = format!("41 31 0:38 / {} rw - cgroup2 cgroup2 rw\n", root.display());
    let sys = SystemInfo::parse(&mi, "0::/\n", &root).unwrap();
    assert_eq!(sys.mode, Mode::V2);
    let top = format!(
        "kakuri-test-v2-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let m = FsManager::with_system(&sys, Some(&format!("/{top}/ctr")), "x").unwrap();
    struct Cleanup(FsManager, PathBuf, Vec<std::process::Child>);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = self.0.thaw();
            for c in &mut self.2 {
                let _ = c.kill();
                let _ = c.wait();
            }
            let _ = self.0.destroy();
            let _ = fs::remove_dir(&self.1);
        }
    }
    let mut g = Cleanup(m.clone(), root.join(&top), Vec::new());
    m.create().unwrap();
    let dir = root.join(&top).join("ctr");
    assert!(dir.is_dir());

    let spawn = |script: &str| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let c = spawn(
        "read _; for d in /dev/null /dev/kmsg; do head -c0 $d 2>/dev/null && echo $d; done; \
         i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; echo done; read _",
    );
    let pid = c.id() as i32;
    g.2.push(c);
    m.add_task(pid).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);

    // Devices through the eBPF program, unified keys written as given.
    m.apply(&res(r#"{
        "devices": [{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}],
        "unified": {"cgroup.max.descendants": "5", "cgroup.max.depth": "2"}
    }"#))
    .unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.max.descendants"))
            .unwrap()
            .trim(),
        "5"
    );
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.max.depth"))
            .unwrap()
            .trim(),
        "2"
    );
    // A hybrid host's cgroup2 hierarchy has no memory controller: a clear error. On a real v2 host
    // (the qemu guest) the controller is enabled down to the container cgroup and the limit applies.
    let root_ctrls = fs::read_to_string(root.join("cgroup.controllers")).unwrap();
    let mem = m.apply(&res(r#"{"memory": {"limit": 1048576}}"#));
    if root_ctrls.split_whitespace().any(|c| c == "memory") {
        mem.unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("memory.max")).unwrap().trim(),
            "1048576"
        );
    } else {
        assert_eq!(
            mem.unwrap_err().to_string(),
            format!(
                "linux.resources.memory.limit: the memory controller is not enabled in {}",
                dir.join("cgroup.controllers").display()
            )
        );
    }
    {
        use std::io::{BufRead, Write};
        let c = &mut g.2[0];
        c.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        let mut lines = Vec::new();
        for _ in 0..2 {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            lines.push(l.trim().to_string());
        }
        assert_eq!(lines, vec!["/dev/null", "done"]);
    }
    // CPU time is accounted in cpu.stat, which cgroup2 always has.
    let s = m.stats().unwrap();
    assert!(s.cpu.usage.total > 0, "{s:?}");

    // Freeze / thaw through cgroup.freeze.
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    assert!(fs::read_to_string(dir.join("cgroup.events"))
        .unwrap()
        .contains("frozen 1"));
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());

    // SIGTERM: freeze, signal, thaw.
    m.kill_all(libc::SIGTERM).unwrap();
    let st = g.2[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
    g.2.clear();
    assert!(!m.is_frozen().unwrap());

    // SIGKILL through cgroup.kill, also for processes in a sub-cgroup.
    let c = spawn("exec sleep 1000");
    let pid = c.id() as i32;
    g.2.push(c);
    fs::create_dir(dir.join("sub")).unwrap();
    fsutil::write_raw(&dir.join("sub/cgroup.procs"), &pid.to_string()).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);
    m.kill_all(libc::SIGKILL).unwrap();
    let st = g.2[0].wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGKILL)
    );
    g.2.clear();
    m.destroy().unwrap();
    assert!(!dir.exists());
}

#[test]
fn systemd_driver_paths_hybrid() {
    let sys =
        SystemInfo::parse(HYBRID_MOUNTINFO, HYBRID_CGROUP, Path::new("/sys/fs/cgroup")).unwrap();
    // systemd's own cgroup (init.scope) is dropped: slices live at the root of each hierarchy.
    let proc1 = "4:memory:/init.scope\n9:name=systemd:/init.scope\n0::/init.scope\n";
    let m = Manager::Systemd(
        SystemdManager::with_system(&sys, proc1, Some("a-b.slice:pre:ctr"), "id", None).unwrap(),
    );
    assert!(m.is_systemd());
    assert_eq!(m.unit_name(), Some("pre-ctr.scope"));
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/a.slice/a-b.slice/pre-ctr.scope")
    );
    assert_eq!(
        m.path("name=systemd").unwrap(),
        Path::new("/sys/fs/cgroup/systemd/a.slice/a-b.slice/pre-ctr.scope")
    );
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/unified/a.slice/a-b.slice/pre-ctr.scope")
    );
    // The unit survives the state.json round trip; the annotation properties do not need to.
    let back: Manager = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
    assert_eq!(back.unit_name(), Some("pre-ctr.scope"));
    assert_eq!(back.all_paths(), m.all_paths());
    // create() makes nothing under the driver: the unit does, with the init's pid.
    m.create().unwrap();
    let e = SystemdManager::with_system(&sys, proc1, Some("bad:pre:ctr"), "id", None)
        .unwrap_err()
        .to_string();
    assert_eq!(e, "linux.cgroupsPath: invalid slice name: bad");
}

#[test]
fn systemd_driver_paths_v2_default() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let m = SystemdManager::with_system(&sys, "", None, "c1", None).unwrap();
    assert_eq!(m.mode(), Mode::V2);
    assert_eq!(
        m.unified_path().unwrap(),
        t.0.join("system.slice/runc-c1.scope")
    );
    assert_eq!(m.all_paths().len(), 1);
}

/// The manager as kakuri wrote it into state.json before the drivers were two types (one
/// `Manager` struct, the systemd driver an optional `systemd` field): printed by that version.
const OLD_FS_HYBRID: &str = r#"{"mode":"Hybrid","v1":[{"controllers":["cpu"],"mount_point":"/sys/fs/cgroup/cpu","path":"/sys/fs/cgroup/cpu/ctr1"},{"controllers":["cpuacct"],"mount_point":"/sys/fs/cgroup/cpuacct","path":"/sys/fs/cgroup/cpuacct/ctr1"},{"controllers":["cpuset"],"mount_point":"/sys/fs/cgroup/cpuset","path":"/sys/fs/cgroup/cpuset/ctr1"},{"controllers":["memory"],"mount_point":"/sys/fs/cgroup/memory","path":"/sys/fs/cgroup/memory/process_api/abc/ctr1"},{"controllers":["devices"],"mount_point":"/sys/fs/cgroup/devices","path":"/sys/fs/cgroup/devices/ctr1"},{"controllers":["freezer"],"mount_point":"/sys/fs/cgroup/freezer","path":"/sys/fs/cgroup/freezer/ctr1"},{"controllers":["blkio"],"mount_point":"/sys/fs/cgroup/blkio","path":"/sys/fs/cgroup/blkio/ctr1"},{"controllers":["pids"],"mount_point":"/sys/fs/cgroup/pids","path":"/sys/fs/cgroup/pids/ctr1"},{"controllers":["name=systemd"],"mount_point":"/sys/fs/cgroup/systemd","path":"/sys/fs/cgroup/systemd/ctr1"}],"unified":{"mount_point":"/sys/fs/cgroup/unified","path":"/sys/fs/cgroup/unified/ctr1"}}"#;
const OLD_SD_HYBRID: &str = r#"{"mode":"Hybrid","v1":[{"controllers":["cpu"],"mount_point":"/sys/fs/cgroup/cpu","path":"/sys/fs/cgroup/cpu/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["cpuacct"],"mount_point":"/sys/fs/cgroup/cpuacct","path":"/sys/fs/cgroup/cpuacct/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["cpuset"],"mount_point":"/sys/fs/cgroup/cpuset","path":"/sys/fs/cgroup/cpuset/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["memory"],"mount_point":"/sys/fs/cgroup/memory","path":"/sys/fs/cgroup/memory/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["devices"],"mount_point":"/sys/fs/cgroup/devices","path":"/sys/fs/cgroup/devices/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["freezer"],"mount_point":"/sys/fs/cgroup/freezer","path":"/sys/fs/cgroup/freezer/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["blkio"],"mount_point":"/sys/fs/cgroup/blkio","path":"/sys/fs/cgroup/blkio/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["pids"],"mount_point":"/sys/fs/cgroup/pids","path":"/sys/fs/cgroup/pids/a.slice/a-b.slice/pre-ctr.scope"},{"controllers":["name=systemd"],"mount_point":"/sys/fs/cgroup/systemd","path":"/sys/fs/cgroup/systemd/a.slice/a-b.slice/pre-ctr.scope"}],"unified":{"mount_point":"/sys/fs/cgroup/unified","path":"/sys/fs/cgroup/unified/a.slice/a-b.slice/pre-ctr.scope"},"systemd":{"name":"pre-ctr.scope","slice":"a-b.slice","container":"ctr"}}"#;
const OLD_SD_V2: &str = r#"{"mode":"V2","unified":{"mount_point":"/sys/fs/cgroup","path":"/sys/fs/cgroup/system.slice/runc-c1.scope"},"systemd":{"name":"runc-c1.scope","slice":"system.slice","container":"c1"}}"#;
/// Rootless on v2 with the cgroup2 directory left out (the `skipped` field).
const OLD_FS_V2_SKIPPED: &str = r#"{"mode":"V2","skipped":["unified"]}"#;

#[test]
fn state_of_the_previous_version_loads_as_the_same_driver() {
    // The format did not change: each loads as its driver and is written back byte for byte,
    // so state.json is readable by the previous version too.
    for (old, systemd) in [
        (OLD_FS_HYBRID, false),
        (OLD_SD_HYBRID, true),
        (OLD_SD_V2, true),
        (OLD_FS_V2_SKIPPED, false),
    ] {
        let m: Manager = serde_json::from_str(old).unwrap();
        assert_eq!(m.is_systemd(), systemd, "{old}");
        assert_eq!(serde_json::to_string(&m).unwrap(), old);
    }

    let m: Manager = serde_json::from_str(OLD_FS_HYBRID).unwrap();
    assert!(matches!(m, Manager::Fs(_)));
    assert_eq!(m.mode(), Mode::Hybrid);
    assert_eq!(m.all_paths().len(), 10);
    assert_eq!(
        m.path("memory").unwrap(),
        Path::new("/sys/fs/cgroup/memory/process_api/abc/ctr1")
    );
    assert_eq!(
        m.clone_into_dir().unwrap(),
        Path::new("/sys/fs/cgroup/unified/ctr1")
    );

    let m: Manager = serde_json::from_str(OLD_SD_HYBRID).unwrap();
    assert_eq!(m.unit_name(), Some("pre-ctr.scope"));
    assert_eq!(
        m.unified_path().unwrap(),
        Path::new("/sys/fs/cgroup/unified/a.slice/a-b.slice/pre-ctr.scope")
    );
    // No directory before the unit: the init cannot be cloned into one.
    assert_eq!(m.clone_into_dir(), None);
    let Manager::Systemd(sd) = &m else {
        unreachable!()
    };
    assert_eq!(sd.unit.slice, "a-b.slice");
    assert_eq!(sd.unit.container, "ctr");

    let m: Manager = serde_json::from_str(OLD_SD_V2).unwrap();
    assert_eq!(m.mode(), Mode::V2);
    assert_eq!(m.unit_name(), Some("runc-c1.scope"));
    assert_eq!(
        m.dirs(),
        vec![(
            &[][..],
            Path::new("/sys/fs/cgroup/system.slice/runc-c1.scope")
        )]
    );

    // A rootless container without a cgroup: nothing to list, freeze is refused in runc's words.
    let m: Manager = serde_json::from_str(OLD_FS_V2_SKIPPED).unwrap();
    assert!(m.all_paths().is_empty());
    assert_eq!(m.pids().unwrap(), Vec::<i32>::new());
    assert!(m
        .freeze()
        .unwrap_err()
        .to_string()
        .contains("cgroups not configured for container"));
}

#[test]
fn drivers_differ_only_where_the_unit_makes_the_cgroup() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    // cgroupfs: the directory is made before the init and the limits go in at once.
    let fs = Manager::Fs(FsManager::with_system(&sys, Some("/ctr"), "x").unwrap());
    fs.create().unwrap();
    assert!(t.0.join("ctr").is_dir());
    assert_eq!(fs.clone_into_dir(), Some(t.0.join("ctr").as_path()));
    // systemd: create and the limits before the init do nothing (the unit makes the
    // directory with the init's pid).
    let sd = Manager::Systemd(
        SystemdManager::with_system(&sys, "", Some("x.slice:p:c"), "c", None).unwrap(),
    );
    sd.create().unwrap();
    let res: LinuxResources = serde_json::from_str(r#"{"pids":{"limit":5}}"#).unwrap();
    sd.apply_before_init(&res).unwrap();
    assert!(!t.0.join("x.slice").exists());
    assert_eq!(sd.clone_into_dir(), None);
    fs.destroy().unwrap();
}

#[test]
fn systemd_driver_paths_v2_user_mode() {
    let t = TempDir::new();
    let sys = fake_v2(&t.0);
    let mgr = "/user.slice/user-1001.slice/user@1001.service";
    // runc's user-mode default slice: user.slice of the user manager.
    let m = Manager::Systemd(SystemdManager::with_system(&sys, "", None, "c1", Some(mgr)).unwrap());
    assert_eq!(
        m.unified_path().unwrap(),
        t.0.join("user.slice/user-1001.slice/user@1001.service/user.slice/runc-c1.scope")
    );
    // podman's cgroupsPath for a rootless container.
    let m = Manager::Systemd(
        SystemdManager::with_system(&sys, "", Some("user.slice:libpod:abc"), "abc", Some(mgr))
            .unwrap(),
    );
    assert_eq!(
        m.unified_path().unwrap(),
        t.0.join("user.slice/user-1001.slice/user@1001.service/user.slice/libpod-abc.scope")
    );
    // The state keeps the user manager, so later commands talk to the same instance.
    let json = serde_json::to_string(&m).unwrap();
    let back: Manager = serde_json::from_str(&json).unwrap();
    assert_eq!(user_manager_of(&back), Some(mgr));
    // A state written before user mode existed is the system manager's.
    let m = Manager::Systemd(SystemdManager::with_system(&sys, "", None, "c1", None).unwrap());
    let json = serde_json::to_string(&m).unwrap();
    assert!(!json.contains("user_manager"), "{json}");
    let back: Manager = serde_json::from_str(&json).unwrap();
    assert!(user_manager_of(&back).is_none());
}

fn user_manager_of(m: &Manager) -> Option<&str> {
    let Manager::Systemd(sd) = m else {
        panic!("not the systemd driver: {m:?}")
    };
    sd.unit.user_manager.as_deref()
}
