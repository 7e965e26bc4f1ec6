use std::collections::HashMap;

use kakuri_spec::oci::LinuxResources;

use super::*;

fn res(json: &str) -> LinuxResources {
    serde_json::from_str(json).unwrap()
}

fn find<'a>(props: &'a [Property], name: &str) -> Option<&'a Value> {
    props.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

#[test]
fn cgroups_path_parts_and_defaults() {
    assert_eq!(
        parse_cgroups_path(Some("system.slice:docker:abc"), "id").unwrap(),
        ("system.slice".into(), "docker".into(), "abc".into())
    );
    // Empty: runc's defaults (prefix "runc", the id as name, the slice chosen later).
    assert_eq!(
        parse_cgroups_path(Some(""), "id1").unwrap(),
        (String::new(), "runc".into(), "id1".into())
    );
    assert_eq!(
        parse_cgroups_path(None, "id1").unwrap().1,
        "runc".to_string()
    );
    for bad in ["/a/b", "a:b", "a:b:c:d"] {
        let e = parse_cgroups_path(Some(bad), "id").unwrap_err().to_string();
        assert!(e.starts_with("linux.cgroupsPath: "), "{e}");
        assert!(e.contains("slice:prefix:name"), "{e}");
    }
    let (u, p) = Unit::resolve(None, "c1", None).unwrap();
    assert_eq!(u.name, "runc-c1.scope");
    assert_eq!(u.slice, "system.slice");
    assert_eq!(p, "/system.slice");
    let (u, p) = Unit::resolve(Some("a-b.slice:pre:n"), "c1", None).unwrap();
    assert_eq!(u.name, "pre-n.scope");
    assert_eq!(u.container, "n");
    assert_eq!(p, "/a.slice/a-b.slice");
    // Empty slice part: the default slice.
    assert_eq!(
        Unit::resolve(Some(":p:n"), "c", None).unwrap().0.slice,
        "system.slice"
    );
    // A slice given as the name is the unit (runc).
    assert_eq!(
        Unit::resolve(Some("system.slice:p:x.slice"), "c", None)
            .unwrap()
            .0
            .name,
        "x.slice"
    );
}

#[test]
fn bad_unit_names_are_refused() {
    for bad in [
        "system.slice:p:",
        "system.slice:p:a/b",
        "system.slice:p q:n",
    ] {
        let e = Unit::resolve(Some(bad), "c", None).unwrap_err().to_string();
        assert!(e.starts_with("linux.cgroupsPath: "), "{bad}: {e}");
    }
}

#[test]
fn slice_expansion() {
    assert_eq!(
        expand_slice("a-b-c.slice").unwrap(),
        "/a.slice/a-b.slice/a-b-c.slice"
    );
    assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
    assert_eq!(expand_slice("-.slice").unwrap(), "/");
    for bad in [
        "a--b.slice",
        "-a.slice",
        "a-.slice",
        ".slice",
        "a.scope",
        "a/b.slice",
        "system",
    ] {
        let e = expand_slice(bad).unwrap_err().to_string();
        assert_eq!(e, format!("linux.cgroupsPath: invalid slice name: {bad}"));
    }
}

#[test]
fn base_properties_of_a_scope() {
    let (u, _) = Unit::resolve(Some("k.slice:pre:ctr"), "id", None).unwrap();
    let p = u.base_properties(42, Mode::V2);
    assert_eq!(
        find(&p, "Description"),
        Some(&Value::Str("libcontainer container ctr".into()))
    );
    assert_eq!(find(&p, "Slice"), Some(&Value::Str("k.slice".into())));
    assert_eq!(find(&p, "Delegate"), Some(&Value::Bool(true)));
    assert_eq!(find(&p, "PIDs"), Some(&Value::U32s(vec![42])));
    assert_eq!(find(&p, "IOAccounting"), Some(&Value::Bool(true)));
    assert_eq!(find(&p, "DefaultDependencies"), Some(&Value::Bool(false)));
    let p1 = u.base_properties(42, Mode::Hybrid);
    assert_eq!(find(&p1, "BlockIOAccounting"), Some(&Value::Bool(true)));
    assert!(find(&p1, "IOAccounting").is_none());
}

#[test]
fn cpu_quota_and_period() {
    let mut p = Vec::new();
    cpu_quota_properties(50_000, 100_000, &mut p);
    assert_eq!(find(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(100_000)));
    assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
    // 12345 µs per 100 ms = 123450 µs/s: rounded up to whole 10 ms.
    let mut p = Vec::new();
    cpu_quota_properties(12_345, 0, &mut p);
    assert!(find(&p, "CPUQuotaPeriodUSec").is_none());
    assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(130_000)));
    // Period only, or quota -1: no limit.
    let mut p = Vec::new();
    cpu_quota_properties(-1, 50_000, &mut p);
    assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(u64::MAX)));
    let mut p = Vec::new();
    cpu_quota_properties(0, 0, &mut p);
    assert!(p.is_empty());
}

#[test]
fn resources_to_properties_v2() {
    let r = res(r#"{
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200},
        "cpu": {"shares": 1024, "quota": 20000, "period": 100000, "cpus": "0-2,7", "mems": "0"},
        "pids": {"limit": 99},
        "blockIO": {"weight": 500}
    }"#);
    let p = resource_properties(&r, Mode::V2, false).unwrap();
    assert_eq!(find(&p, "MemoryMax"), Some(&Value::U64(104_857_600)));
    assert_eq!(find(&p, "MemoryLow"), Some(&Value::U64(52_428_800)));
    // swap on v2 is memory+swap minus memory.
    assert_eq!(find(&p, "MemorySwapMax"), Some(&Value::U64(104_857_600)));
    // runc's shares -> weight: 1 + (1024-2)*9999/262142 = 39.
    assert_eq!(find(&p, "CPUWeight"), Some(&Value::U64(39)));
    assert!(find(&p, "CPUShares").is_none());
    assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(200_000)));
    assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(99)));
    assert_eq!(
        find(&p, "AllowedCPUs"),
        Some(&Value::Bytes(vec![0b1000_0111]))
    );
    assert_eq!(find(&p, "AllowedMemoryNodes"), Some(&Value::Bytes(vec![1])));
    // systemd has no v2 blkio weight property runc sets: the file is written directly.
    assert!(find(&p, "IOWeight").is_none() && find(&p, "BlockIOWeight").is_none());
}

#[test]
fn resources_to_properties_v1_and_unlimited() {
    let r = res(r#"{
        "memory": {"limit": -1, "swap": -1},
        "cpu": {"shares": 512},
        "pids": {"limit": -1},
        "blockIO": {"weight": 300}
    }"#);
    let p = resource_properties(&r, Mode::Hybrid, false).unwrap();
    assert_eq!(find(&p, "MemoryLimit"), Some(&Value::U64(u64::MAX)));
    assert!(find(&p, "MemoryMax").is_none() && find(&p, "MemorySwapMax").is_none());
    assert_eq!(find(&p, "CPUShares"), Some(&Value::U64(512)));
    assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(u64::MAX)));
    assert_eq!(find(&p, "BlockIOWeight"), Some(&Value::U64(300)));
    let p = resource_properties(&r, Mode::V2, false).unwrap();
    assert_eq!(find(&p, "MemoryMax"), Some(&Value::U64(u64::MAX)));
    assert_eq!(find(&p, "MemorySwapMax"), Some(&Value::U64(u64::MAX)));
    // Nothing set: no properties (update leaves everything alone).
    assert!(resource_properties(&res("{}"), Mode::V2, false)
        .unwrap()
        .is_empty());
    // Swap below memory is refused, naming the field.
    let e = resource_properties(
        &res(r#"{"memory": {"limit": 200, "swap": 100}}"#),
        Mode::V2,
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("linux.resources.memory.swap: "), "{e}");
}

#[test]
fn cpuset_bitmask() {
    assert_eq!(range_to_bits("0").unwrap(), vec![1]);
    assert_eq!(range_to_bits("0-7").unwrap(), vec![0xff]);
    assert_eq!(range_to_bits("8").unwrap(), vec![0, 1]);
    assert_eq!(range_to_bits(" 1 , 3-4,").unwrap(), vec![0b11010]);
    assert_eq!(range_to_bits("0,63").unwrap(), {
        let mut v = vec![0u8; 8];
        v[0] = 1;
        v[7] = 0x80;
        v
    });
    for bad in ["", "3-1", "x", "1-"] {
        assert!(range_to_bits(bad).is_err(), "{bad}");
    }
    let e = resource_properties(&res(r#"{"cpu": {"cpus": "2-1"}}"#), Mode::V2, false)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linux.resources.cpu.cpus: "), "{e}");
}

#[test]
fn unified_entries_become_properties() {
    let r = res(
        r#"{"unified": {"memory.high": "max", "pids.max": "10", "cpu.max": "50000 100000", "io.weight": "100"}}"#,
    );
    let p = resource_properties(&r, Mode::V2, false).unwrap();
    assert_eq!(find(&p, "MemoryHigh"), Some(&Value::U64(u64::MAX)));
    assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(10)));
    assert_eq!(find(&p, "CPUQuotaPerSecUSec"), Some(&Value::U64(500_000)));
    assert_eq!(p.len(), 4, "{p:?}");
}

fn rule(allow: bool, typ: &str, major: Option<i64>, minor: Option<i64>, access: &str) -> String {
    let n = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or("null".into());
    format!(
        r#"{{"allow": {allow}, "type": "{typ}", "major": {}, "minor": {}, "access": "{access}"}}"#,
        n(major),
        n(minor)
    )
}

fn rules(list: &[String]) -> Vec<kakuri_spec::oci::LinuxDeviceCgroup> {
    serde_json::from_str(&format!("[{}]", list.join(","))).unwrap()
}

const PROC_DEVICES: &str =
    "Character devices:\n  1 mem\n  5 /dev/tty\n136 pts\n\nBlock devices:\n  8 sd\n";

#[test]
fn device_allow_list() {
    let r = rules(&[
        rule(false, "a", None, None, "rwm"),
        rule(true, "c", Some(1), Some(3), "rwm"),
        rule(true, "c", Some(136), None, "rw"),
        rule(true, "b", None, None, "m"),
        rule(true, "c", None, Some(5), "r"),
        rule(true, "c", Some(1), Some(99), "r"),
        rule(true, "c", Some(250), None, "r"),
    ]);
    let exists = |p: &Path| p == Path::new("/dev/char/1:3");
    let p = device_properties(&r, PROC_DEVICES, &exists).unwrap();
    assert_eq!(p[0], prop("DevicePolicy", Value::Str("strict".into())));
    assert_eq!(p[1], prop("DeviceAllow", Value::StrPairs(vec![])));
    let Value::StrPairs(list) = &p[2].1 else {
        panic!("{p:?}")
    };
    let mut list = list.clone();
    list.sort();
    // *:5 (no systemd form), 1:99 (no such device) and 250:* (no group) are left to the files.
    assert_eq!(
        list,
        vec![
            ("/dev/char/1:3".to_string(), "rwm".to_string()),
            ("block-*".to_string(), "m".to_string()),
            ("char-pts".to_string(), "rw".to_string()),
        ]
    );
    // Allow-all: policy auto, no list.
    let p =
        device_properties(&rules(&[rule(true, "a", None, None, "rwm")]), "", &|_| true).unwrap();
    assert_eq!(p[0], prop("DevicePolicy", Value::Str("auto".into())));
    assert_eq!(p.len(), 2);
    // A deny list systemd cannot express: strict and empty (the files carry the real rules).
    let p = device_properties(
        &rules(&[
            rule(true, "a", None, None, "rwm"),
            rule(false, "c", Some(1), Some(3), "rwm"),
        ]),
        "",
        &|_| true,
    )
    .unwrap();
    assert_eq!(p[0], prop("DevicePolicy", Value::Str("strict".into())));
    assert_eq!(p[1], prop("DeviceAllow", Value::StrPairs(vec![])));
    assert_eq!(p.len(), 2);
}

fn ann(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn annotations_pass_through() {
    let p = annotation_properties(&ann(&[
        ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
        ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
        ("org.systemd.property.RuntimeMaxSec", "7"),
        ("org.systemd.property.CPUQuotaPeriodSec", "0.5"),
        ("org.systemd.property.Wants", "['a.service', \"b.service\"]"),
        ("org.systemd.property.IOAccounting", "false"),
        ("org.systemd.property.TasksMax", "@t 77"),
        ("com.example.other", "x"),
    ]))
    .unwrap();
    assert_eq!(
        find(&p, "CollectMode"),
        Some(&Value::Str("inactive-or-failed".into()))
    );
    assert_eq!(find(&p, "TimeoutStopUSec"), Some(&Value::U64(123_456_789)));
    // ...Sec with a lowercase letter before it: ...USec in microseconds.
    assert_eq!(find(&p, "RuntimeMaxUSec"), Some(&Value::U64(7_000_000)));
    assert_eq!(find(&p, "CPUQuotaPeriodUSec"), Some(&Value::U64(500_000)));
    assert_eq!(
        find(&p, "Wants"),
        Some(&Value::Strs(vec!["a.service".into(), "b.service".into()]))
    );
    assert_eq!(find(&p, "IOAccounting"), Some(&Value::Bool(false)));
    assert_eq!(find(&p, "TasksMax"), Some(&Value::U64(77)));
    assert_eq!(p.len(), 7);
}

#[test]
fn bad_annotations_are_refused() {
    for (k, v, why) in [
        ("org.systemd.property.Ab", "1", "too short"),
        ("org.systemd.property.Foo1", "1", "non-alphabetic"),
        ("org.systemd.property.Foo_Bar", "1", "non-alphabetic"),
        (
            "org.systemd.property.Foo",
            "'unterminated",
            "value parse error",
        ),
        ("org.systemd.property.Foo", "uint64 -1", "value parse error"),
        ("org.systemd.property.Foo", "notavalue", "value parse error"),
        ("org.systemd.property.TimeoutSec", "'x'", "not a number"),
    ] {
        let e = annotation_properties(&ann(&[(k, v)]))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with(&format!("annotations[\"{k}\"]: ")), "{e}");
        assert!(e.contains(why), "{k}={v}: {e}");
    }
}

#[test]
fn gvariant_values() {
    use gvariant::parse;
    assert_eq!(parse("42").unwrap(), Value::I32(42));
    assert_eq!(parse("-5").unwrap(), Value::I32(-5));
    assert_eq!(parse("5000000000").unwrap(), Value::I64(5_000_000_000));
    assert_eq!(parse("uint32 0x10").unwrap(), Value::U32(16));
    assert_eq!(parse("byte 255").unwrap(), Value::Byte(255));
    assert_eq!(parse("@u 3").unwrap(), Value::U32(3));
    assert_eq!(parse("1.5").unwrap(), Value::F64(1.5));
    assert_eq!(parse(" 'a\\'b' ").unwrap(), Value::Str("a'b".into()));
    assert_eq!(
        parse("objectpath '/x'").unwrap(),
        Value::ObjPath("/x".into())
    );
    assert_eq!(parse("@as []").unwrap(), Value::Strs(vec![]));
    assert_eq!(parse("[uint32 1, 2]").unwrap(), Value::U32s(vec![1, 2]));
    assert!(parse("byte 256").is_err());
    assert!(parse("1 2").is_err());
    assert!(parse("[1, 'a']").is_err());
    assert!(parse("").is_err());
}

#[test]
fn init_cgroup_base_per_hierarchy() {
    let proc1 =
        "12:memory:/init.scope\n11:cpu,cpuacct:/\n1:name=systemd:/init.scope\n0::/init.scope\n";
    assert_eq!(init_cgroup_base(proc1, Some("memory")), "");
    assert_eq!(init_cgroup_base(proc1, Some("cpuacct")), "");
    assert_eq!(init_cgroup_base(proc1, None), "");
    let nested = "5:pids:/machine.slice/x.scope/init.scope\n";
    assert_eq!(
        init_cgroup_base(nested, Some("pids")),
        "/machine.slice/x.scope"
    );
    assert_eq!(
        join(
            Path::new("/sys/fs/cgroup/pids"),
            &["", "/a.slice/a-b.slice", "p-n.scope"]
        ),
        PathBuf::from("/sys/fs/cgroup/pids/a.slice/a-b.slice/p-n.scope")
    );
}

#[test]
fn user_mode_decision() {
    let initial = "         0          0 4294967295\n";
    // Real root: the system manager.
    assert!(!user_mode(0, Some(initial)));
    assert!(!user_mode(0, None));
    // An unprivileged caller.
    assert!(user_mode(1001, Some(initial)));
    // uid 0 of rootless podman's user namespace (0 -> 1001, then the subordinate ids).
    let podman = "         0       1001          1\n         1     300000      65536\n";
    assert!(user_mode(0, Some(podman)));
    assert_eq!(host_uid(podman, 0), Some(1001));
    assert_eq!(host_uid(podman, 5), Some(300004));
    assert_eq!(host_uid(podman, 65537), None);
    // A user namespace whose uid 0 is the host's root: still the system manager (runc asks
    // the bus for its owner uid and gets 0 there).
    assert!(!user_mode(0, Some("0 0 1\n")));
}

#[test]
fn user_mode_default_slice() {
    let mgr = "/user.slice/user-1001.slice/user@1001.service";
    let (u, p) = Unit::resolve(None, "c1", Some(mgr)).unwrap();
    assert_eq!(u.slice, "user.slice");
    assert_eq!(p, "/user.slice");
    assert!(u.is_user());
    let (u, p) = Unit::resolve(Some("a-b.slice:pre:n"), "c1", Some(mgr)).unwrap();
    assert_eq!(
        (u.slice.as_str(), p.as_str()),
        ("a-b.slice", "/a.slice/a-b.slice")
    );
    assert_eq!(u.user_manager.as_deref(), Some(mgr));
}

#[test]
fn session_bus_addresses() {
    use bus::{parse_address, user_targets, Target};
    assert_eq!(
        parse_address("unix:path=/run/user/1001/bus"),
        vec![Target::Path("/run/user/1001/bus".into())]
    );
    assert_eq!(
        parse_address("tcp:host=x,port=1;unix:abstract=/tmp/dbus-x%2cy,guid=ab;unix:path=/a%20b"),
        vec![
            Target::Abstract(b"/tmp/dbus-x,y".to_vec()),
            Target::Path("/a b".into())
        ]
    );
    // A bad escape is kept as it is.
    assert_eq!(
        parse_address("unix:path=/a%zz%4"),
        vec![Target::Path("/a%zz%4".into())]
    );
    let none = |_: &std::path::Path| false;
    let all = |_: &std::path::Path| true;
    // DBUS_SESSION_BUS_ADDRESS wins and is a bus.
    assert_eq!(
        user_targets(Some("unix:path=/b"), Some("/run/user/1"), &all).unwrap(),
        vec![(Target::Path("/b".into()), true)]
    );
    let e = user_targets(Some("tcp:host=x"), None, &all).unwrap_err();
    assert!(e.contains("no unix:path="), "{e}");
    // Else $XDG_RUNTIME_DIR/bus, then the user manager's private socket (no bus).
    assert_eq!(
        user_targets(None, Some("/run/user/1"), &all).unwrap(),
        vec![
            (Target::Path("/run/user/1/bus".into()), true),
            (Target::Path("/run/user/1/systemd/private".into()), false)
        ]
    );
    let e = user_targets(None, Some("/run/user/1"), &none).unwrap_err();
    assert!(
        e.contains("/run/user/1/bus") && e.contains("enable-linger"),
        "{e}"
    );
    let e = user_targets(None, None, &all).unwrap_err();
    assert!(e.contains("XDG_RUNTIME_DIR"), "{e}");
}

#[test]
fn controllers_a_user_manager_must_have() {
    let r = res(r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32},
                   "devices": [{"allow": false, "access": "rwm"}]}"#);
    let need: Vec<&str> = needed_controllers(&r).iter().map(|(c, _)| *c).collect();
    assert_eq!(need, ["pids", "memory"]);
    let r = res(
        r#"{"cpu": {"quota": 50000, "cpus": "0"}, "blockIO": {"weight": 100},
                   "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                   "unified": {"memory.high": "1M", "cgroup.freeze": "0", "misc.max": "x 1"}}"#,
    );
    let need: Vec<&str> = needed_controllers(&r).iter().map(|(c, _)| *c).collect();
    assert_eq!(need, ["io", "cpu", "cpuset", "hugetlb", "memory", "misc"]);
    // Zero values ask for nothing.
    let r = res(r#"{"memory": {"limit": 0}, "pids": {"limit": 0}, "cpu": {}}"#);
    assert!(needed_controllers(&r).is_empty());

    // systemd 252's default Delegate= for user@.service.
    let file = std::path::Path::new("/sys/fs/cgroup/u/cgroup.controllers");
    let r = res(r#"{"memory": {"limit": 67108864}, "pids": {"limit": 32}}"#);
    check_delegated(&r, "cpu memory pids\n", file).unwrap();
    let r = res(r#"{"pids": {"limit": 32}, "blockIO": {"weight": 100},
                   "cpu": {"cpus": "0"}}"#);
    let e = check_delegated(&r, "cpu memory pids\n", file)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("linux.resources.blockIO: the io controller is not delegated"),
        "{e}"
    );
    assert!(e.contains("missing: io cpuset"), "{e}");
    assert!(e.contains("Delegate=cpu cpuset io memory pids"), "{e}");
    assert!(e.contains("/sys/fs/cgroup/u/cgroup.controllers"), "{e}");
}
