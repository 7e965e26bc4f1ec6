//! `kakuri check`: the host report (namespaces, cgroup layout, probes) and the bundle
//! preflight (args[0] on the rootfs PATH, its ELF machine and loader, requested features the
//! host lacks), in text and JSON, with exit status 1 for a bundle that cannot run here.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kakuri_runtime_tests::*;
use serde_json::{json, Value};

/// A minimal ELF64 little-endian executable header for `machine`, with a PT_INTERP program
/// header naming `interp` when given. Not runnable: only its headers matter to `check`.
fn craft_elf(machine: u16, interp: Option<&str>) -> Vec<u8> {
    let mut h = vec![0u8; 64];
    h[..4].copy_from_slice(b"\x7fELF");
    h[4] = 2; // ELFCLASS64
    h[5] = 1; // little-endian
    h[6] = 1; // EV_CURRENT
    h[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    h[18..20].copy_from_slice(&machine.to_le_bytes());
    h[20..24].copy_from_slice(&1u32.to_le_bytes());
    h[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    if let Some(i) = interp {
        h[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        h[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        h[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&3u32.to_le_bytes()); // PT_INTERP
        ph[8..16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        ph[32..40].copy_from_slice(&(i.len() as u64 + 1).to_le_bytes()); // p_filesz
        h.extend_from_slice(&ph);
        h.extend_from_slice(i.as_bytes());
        h.push(0);
    }
    h
}

fn write_exec(path: &Path, bytes: &[u8]) {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `check --bundle <b> --format json`: the exit code and the parsed report.
fn check_json(env: &TestEnv, b: &Bundle) -> (Option<i32>, Value) {
    b.write();
    let out = env.run(&[
        "check",
        "--bundle",
        b.dir().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("check --format json is not JSON ({e}): {out}"));
    (out.code, v)
}

/// The bundle findings of `check` named `name` with level `level`, as "detail" strings.
fn details(v: &Value, name: &str, level: &str) -> Vec<String> {
    v["bundle"]["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["check"] == name && f["level"] == level)
        .map(|f| f["detail"].as_str().unwrap_or("").to_string())
        .collect()
}

fn host_is_x86_64() -> bool {
    std::env::consts::ARCH == "x86_64"
}

#[test]
fn host_report_text_and_json() {
    let env = TestEnv::new();
    let out = env.run(&["check"]);
    out.ok();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let v1 = mounts.lines().any(|l| l.contains(" - cgroup "));
    let v2 = mounts.lines().any(|l| l.contains(" - cgroup2 "));
    let layout = match (v1, v2) {
        (true, true) => "hybrid",
        (true, false) => "v1",
        _ => "v2",
    };
    assert!(
        out.stdout.contains(&format!("cgroups: {layout}\n")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("namespaces: cgroup ipc mount network pid time user uts"),
        "{}",
        out.stdout
    );
    let out = env.run(&["check", "--format", "json"]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["host"]["cgroup"]["layout"], json!(layout));
    assert_eq!(v["bundle"], Value::Null);
    let ns = v["host"]["namespaces"].as_object().expect("namespaces");
    assert_eq!(ns.len(), 8, "{ns:?}");
    for k in ["mount", "user", "pid", "network"] {
        assert_eq!(ns[k], json!(true), "{k}");
    }
    let features: Vec<&str> = v["host"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["check"].as_str())
        .collect();
    for f in [
        "user namespaces",
        "pidfd",
        "clone3 CLONE_INTO_CGROUP",
        "openat2",
        "seccomp notify",
        "idmapped mounts (tmpfs)",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    // This kernel has all of them (6.x); each says ok.
    for f in v["host"]["features"].as_array().unwrap() {
        if ["pidfd", "openat2", "clone3 CLONE_INTO_CGROUP"].contains(&f["check"].as_str().unwrap())
        {
            assert_eq!(f["level"], json!("ok"), "{f}");
        }
    }
    assert!(v["host"]["criu"]["detail"].is_string());
    if layout != "v2" {
        assert!(!v["host"]["cgroup"]["v1_controllers"]
            .as_object()
            .unwrap()
            .is_empty());
    }
    // The clone3 probe cgroup is gone.
    let own = std::fs::read_dir("/sys/fs/cgroup/unified")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("kakuri-check-"));
    assert!(!own, "a kakuri-check- probe cgroup was left");
    env.finish();
}

#[test]
fn busybox_bundle_passes() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sh", "-c", "true"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(v["bundle"]["runnable"], json!(true));
    assert_eq!(
        details(&v, "process.args[0]", "ok"),
        ["\"sh\" is /bin/sh (-> /bin/busybox)"],
        "{v:#}"
    );
    assert_eq!(details(&v, "loader", "ok").len(), 1, "{v:#}");
    assert!(details(&v, "elf", "ok")[0].contains("as the host"), "{v:#}");
    // Text: says so.
    let out = env.run(&["check", "--bundle", b.dir().to_str().unwrap()]);
    out.ok();
    assert!(
        out.stdout.contains("the bundle can run on this host"),
        "{}",
        out.stdout
    );
    env.finish();
}

#[test]
fn aarch64_binary_on_this_host() {
    let env = TestEnv::new();
    if !host_is_x86_64() {
        eprintln!("SKIP aarch64_binary_on_this_host: the test expects an x86_64 host");
        env.finish();
        return;
    }
    let mut b = env.bundle();
    write_exec(&b.rootfs().join("usr/bin/armprog"), &craft_elf(183, None));
    b.set_args(&["armprog"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["bundle"]["runnable"], json!(false));
    let binfmt_handles_it = v["host"]["binfmt_misc"].as_array().is_some_and(|a| {
        a.iter()
            .any(|h| h["interpreter"].as_str().unwrap_or("").contains("aarch64"))
    });
    let fail = details(&v, "elf", "fail");
    if binfmt_handles_it {
        eprintln!("SKIP aarch64_binary_on_this_host (no-handler part): a binfmt_misc handler for aarch64 exists");
    } else {
        assert_eq!(fail.len(), 1, "{v:#}");
        assert!(
            fail[0].contains("aarch64 binary on x86_64 host"),
            "{}",
            fail[0]
        );
        assert!(fail[0].contains("no binfmt_misc handler"), "{}", fail[0]);
    }
    // Text output, exit status 1.
    let out = env.run(&["check", "--bundle", b.dir().to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("aarch64 binary on x86_64 host"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("the bundle cannot run on this host"),
        "{}",
        out.stdout
    );
    env.finish();
}

#[test]
fn missing_program_and_escaping_symlink() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["nosuchprogram"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1));
    let fail = details(&v, "process.args[0]", "fail");
    assert!(
        fail[0].starts_with("\"nosuchprogram\": no executable file on PATH"),
        "{fail:?}"
    );
    // A symlink in the rootfs that points out of it (relative with .., and absolute) to a
    // program the host has and the rootfs has not: resolved inside the rootfs, not found.
    let host_prog = ["/usr/bin/bash", "/bin/bash", "/usr/bin/env"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("a host program");
    assert!(!b.rootfs().join(host_prog.trim_start_matches('/')).exists());
    let up = format!("../../../../../../../../../../..{host_prog}");
    std::os::unix::fs::symlink(&up, b.rootfs().join("bin/escape-rel")).unwrap();
    std::os::unix::fs::symlink(host_prog, b.rootfs().join("bin/escape-abs")).unwrap();
    for prog in ["escape-rel", "escape-abs"] {
        b.set_args(&[prog]);
        let (code, v) = check_json(&env, &b);
        assert_eq!(code, Some(1), "{prog}: {v:#}");
        let fail = details(&v, "process.args[0]", "fail");
        assert_eq!(fail.len(), 1, "{prog}: {v:#}");
        assert!(
            details(&v, "elf", "ok").is_empty(),
            "{prog} was followed out of the rootfs: {v:#}"
        );
    }
    env.finish();
}

#[test]
fn dynamic_binary_needs_its_loader() {
    let env = TestEnv::new();
    if !host_is_x86_64() {
        eprintln!("SKIP dynamic_binary_needs_its_loader: the test expects an x86_64 host");
        env.finish();
        return;
    }
    let mut b = env.bundle();
    let loader = "/lib64/ld-linux-x86-64.so.2";
    write_exec(
        &b.rootfs().join("usr/local/bin/dynprog"),
        &craft_elf(62, Some(loader)),
    );
    b.set_args(&["dynprog"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    let fail = details(&v, "loader", "fail");
    assert_eq!(fail.len(), 1, "{v:#}");
    assert!(
        fail[0].contains(&format!(
            "dynamic loader {loader} is missing from the rootfs"
        )),
        "{}",
        fail[0]
    );
    // With the loader (any x86_64 ELF will do for the check), it passes.
    write_exec(
        &b.rootfs().join(loader.trim_start_matches('/')),
        &craft_elf(62, None),
    );
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(details(&v, "loader", "ok").len(), 1, "{v:#}");
    // An aarch64 loader for an x86_64 program is wrong.
    write_exec(
        &b.rootfs().join(loader.trim_start_matches('/')),
        &craft_elf(183, None),
    );
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        details(&v, "loader", "fail")[0].contains("is aarch64, not x86_64"),
        "{v:#}"
    );
    env.finish();
}

#[test]
fn requested_features_the_host_lacks() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/linux/intelRdt", json!({"closID": "x"}));
    b.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "63"}),
    );
    b.set("/linux/netDevices", json!({"kknosuchdev1": {}}));
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .contains(" - resctrl ");
    if resctrl {
        eprintln!("SKIP requested_features_the_host_lacks (intelRdt part): resctrl is mounted");
    } else {
        let f = details(&v, "linux.intelRdt", "fail");
        assert!(
            f[0].starts_with("linux.intelRdt: resctrl is not mounted"),
            "{v:#}"
        );
    }
    let online = std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
    if online.trim() == "0" {
        let f = details(&v, "linux.memoryPolicy.nodes", "fail");
        assert!(f[0].contains("node(s) 63 not online"), "{v:#}");
    } else {
        eprintln!("SKIP requested_features_the_host_lacks (node part): NUMA nodes {online}");
    }
    assert!(
        details(&v, "linux.netDevices", "fail")[0].contains("no device \"kknosuchdev1\""),
        "{v:#}"
    );
    // A controller this host does not mount: net_cls for network.classID (v1/hybrid).
    let layout = v["host"]["cgroup"]["layout"].as_str().unwrap().to_string();
    let has_net_cls = v["host"]["cgroup"]["v1_controllers"]
        .get("net_cls")
        .is_some();
    let mut b = env.bundle();
    b.set("/linux/resources/network", json!({"classID": 1048577}));
    let (code, v) = check_json(&env, &b);
    if layout == "v2" || has_net_cls {
        eprintln!("SKIP requested_features_the_host_lacks (controller part): net_cls is mounted or the host is v2");
        assert_eq!(code, Some(0), "{v:#}");
    } else {
        assert_eq!(code, Some(1), "{v:#}");
        let f = details(&v, "linux.resources.network.classID", "fail");
        assert!(
            f[0].contains("the net_cls controller is not available (hybrid cgroups)")
                || f[0].contains("(v1 cgroups)"),
            "{v:#}"
        );
    }
    // unified on a v1/hybrid host.
    if layout != "v2" {
        let mut b = env.bundle();
        b.set("/linux/resources/unified", json!({"pids.max": "10"}));
        let (code, v) = check_json(&env, &b);
        assert_eq!(code, Some(1), "{v:#}");
        assert!(
            details(&v, "linux.resources.unified", "fail")[0].contains("needs cgroup v2"),
            "{v:#}"
        );
    }
    // A bad config: named, exit 1.
    let mut b = env.bundle();
    b.set("/process/user/uid", json!("root"));
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1));
    assert!(
        details(&v, "config", "fail")[0].contains("process.user.uid"),
        "{v:#}"
    );
    env.finish();
}

/// In the pure cgroup v2 guest: `check` says "v2" with the root's controllers, the bundle
/// checks give the same verdicts there (a busybox bundle runnable, Debian's arm64
/// busybox-static not), and the v1-only resources a config asks for are named in a warning
/// (runc leaves them unapplied silently there). Run by this host, the test boots the guest;
/// run inside it (runtime-tests/vm/run-v2-tests), where the host is already pure cgroup v2, it
/// runs the same commands directly.
#[test]
fn v2_guest_layout_and_v1_only_fields_warned() {
    let env = TestEnv::new();
    let in_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !in_v2 {
        if let Err(why) = kakuri_runtime_tests::vm::available() {
            eprintln!("SKIP v2_guest_layout_and_v1_only_fields_warned: {why}");
            env.finish();
            return;
        }
    }
    let mut b = env.bundle();
    b.set(
        "/linux/resources/memory",
        json!({"swappiness": 10, "limit": 67108864}),
    );
    b.set_args(&["true"]);
    b.write();
    let arm64 = match arm64_packages() {
        Ok(dir) if host_is_x86_64() => {
            let mut a = foreign_bundle(&env, &dir, &["busybox-static"], &[("bin/sh", "busybox")]);
            a.set_args(&["sh", "-c", "true"]);
            a.write();
            Some(a)
        }
        Ok(_) => {
            eprintln!(
                "SKIP v2_guest_layout_and_v1_only_fields_warned (arm64 part): not an x86_64 host"
            );
            None
        }
        Err(why) => {
            eprintln!("SKIP v2_guest_layout_and_v1_only_fields_warned (arm64 part): {why}");
            None
        }
    };
    let id = env.new_id();
    let bin = runtime_bin().display().to_string();
    // The state root in the guest's own /run (9p, the work dir, has no FIFOs).
    let root = Path::new("/run").join(format!("kakuri-{id}"));
    let mut script = format!(
        "{bin} check --format json > check.json; \
         {bin} check --bundle {b} --format json > bundle.json; echo $? > bundle.rc; \
         {bin} --root {} run --bundle {b} {id} > run.out 2> run.err; echo $? > run.rc",
        root.display(),
        b = b.dir().display()
    );
    if let Some(a) = &arm64 {
        script.push_str(&format!(
            "; {bin} check --bundle {} > arm64.txt; echo $? > arm64.rc",
            a.dir().display()
        ));
    }
    if in_v2 {
        let out = std::process::Command::new("sh")
            .args(["-c", &script])
            .current_dir(env.dir())
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        env.run(&["--root", root.to_str().unwrap(), "delete", "--force", &id]);
        let _ = std::fs::remove_dir_all(&root);
    } else {
        let out = kakuri_runtime_tests::vm::v2guest(&["sh", "-c", &script], Some(env.dir()))
            .expect("v2guest");
        assert!(out.status.success(), "guest: {out:?}");
    }
    let read = |f: &str| std::fs::read_to_string(env.dir().join(f)).unwrap_or_default();
    let v: Value = serde_json::from_str(&read("check.json")).expect("check.json");
    assert_eq!(v["host"]["cgroup"]["layout"], json!("v2"), "{v:#}");
    let ctl = v["host"]["cgroup"]["v2_controllers"].as_array().unwrap();
    assert!(ctl.iter().any(|c| c == "memory"), "{v:#}");
    let bv: Value = serde_json::from_str(&read("bundle.json")).expect("bundle.json");
    assert_eq!(read("bundle.rc").trim(), "0", "{bv:#}");
    assert_eq!(bv["bundle"]["runnable"], json!(true), "{bv:#}");
    assert_eq!(bv["host"]["cgroup"]["layout"], json!("v2"), "{bv:#}");
    assert_eq!(read("run.rc").trim(), "0", "{}", read("run.err"));
    assert!(
        read("run.err").contains(
            "linux.resources.memory.swappiness: cgroup v2 has no interface for it; not applied"
        ),
        "{}",
        read("run.err")
    );
    if arm64.is_some() {
        let text = read("arm64.txt");
        assert_eq!(read("arm64.rc").trim(), "1", "{text}");
        assert!(
            text.contains("  cgroups: v2\n")
                && text.contains("aarch64 binary on x86_64 host")
                && text.contains("the bundle cannot run on this host"),
            "{text}"
        );
    }
    env.finish();
}

/// An idmapped mount is tried on its source's filesystem: procfs cannot be idmapped, the
/// test's own directory (this host's /tmp) can.
#[test]
fn idmapped_mount_sources_probed() {
    let env = TestEnv::new();
    let maps = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    let mut b = env.bundle();
    let n = b.config()["mounts"].as_array().map_or(0, Vec::len);
    let ok_src = env.dir().join("vol");
    std::fs::create_dir_all(&ok_src).unwrap();
    b.add_mount(
        json!({"destination": "/mnt/vol", "type": "bind", "source": ok_src,
        "options": ["bind", "idmap"], "uidMappings": maps, "gidMappings": maps}),
    );
    let (code, v) = check_json(&env, &b);
    // The probe of the filesystem holding /tmp (its own, or /'s) says whether it can be.
    let probe = |suffix: &str| {
        v["host"]["features"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["check"].as_str().is_some_and(|c| c.ends_with(suffix)))
            .map(|f| f["level"] == "ok")
    };
    let tmp_ok = probe(" at /tmp)")
        .or_else(|| probe(" at /)"))
        .unwrap_or(false);
    let vol_findings = details(&v, &format!("mounts[{n}]"), "fail");
    if tmp_ok {
        assert_eq!(code, Some(0), "{v:#}");
        assert!(vol_findings.is_empty(), "{v:#}");
    } else {
        eprintln!("SKIP idmapped_mount_sources_probed (good part): /tmp cannot be idmapped here");
        assert_eq!(vol_findings.len(), 1, "{v:#}");
    }
    b.add_mount(
        json!({"destination": "/mnt/p", "type": "bind", "source": "/proc",
        "options": ["rbind", "idmap"], "uidMappings": maps, "gidMappings": maps}),
    );
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    let f = details(&v, &format!("mounts[{}]", n + 1), "fail");
    assert_eq!(f.len(), 1, "{v:#}");
    assert!(
        f[0].starts_with(
            "idmapped mount of /proc: mount_setattr(MOUNT_ATTR_IDMAP): invalid argument"
        ),
        "{}",
        f[0]
    );
    env.finish();
}

/// Where runtime-tests/fetch-foreign-busybox unpacked Debian's arm64 packages
/// (busybox-static, hello, libc6), or why they are not there.
fn arm64_packages() -> Result<std::path::PathBuf, String> {
    let cache = std::env::var_os("KAKURI_TEST_CACHE").map_or_else(
        || "/var/cache/kakuri-tests".into(),
        std::path::PathBuf::from,
    );
    let dir = cache.join("arm64");
    if dir.join("ok").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{} has no unpacked arm64 packages (runtime-tests/fetch-foreign-busybox fetches them; \
             setup-host runs it)",
            dir.display()
        ))
    }
}

/// A bundle whose rootfs is exactly the unpacked packages `pkgs` (under `arm64`), nothing of
/// the host's busybox template, with `links` (name, target) added as symlinks.
fn foreign_bundle(env: &TestEnv, arm64: &Path, pkgs: &[&str], links: &[(&str, &str)]) -> Bundle {
    let b = env.bundle();
    let rootfs = b.rootfs();
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::create_dir(&rootfs).unwrap();
    for p in pkgs {
        for e in std::fs::read_dir(arm64.join(p)).unwrap() {
            let e = e.unwrap();
            let dst = rootfs.join(e.file_name());
            if e.file_type().unwrap().is_dir() && dst.is_dir() {
                // Two packages with the same top directory (usr/): merge one level down (a
                // deeper clash, such as usr/share/doc, keeps the first package's).
                for f in std::fs::read_dir(e.path()).unwrap() {
                    let f = f.unwrap();
                    let d = dst.join(f.file_name());
                    if !d.exists() {
                        link_tree(&f.path(), &d);
                    }
                }
            } else if !dst.exists() {
                link_tree(&e.path(), &dst);
            }
        }
    }
    for (name, target) in links {
        std::os::unix::fs::symlink(target, rootfs.join(name)).unwrap();
    }
    b
}

/// The binfmt_misc handlers `check` reported whose interpreter is a qemu for aarch64.
fn aarch64_handlers(v: &Value) -> Vec<String> {
    v["host"]["binfmt_misc"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| {
            h["enabled"] == json!(true)
                && h["interpreter"].as_str().unwrap_or("").contains("aarch64")
        })
        .map(|h| h["name"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Debian's real arm64 busybox-static (busybox-static:arm64, unpacked without installing) as
/// a rootfs on an x86_64 host: the verdict is "cannot run", exit 1, naming the architectures;
/// the same layout with the host's own busybox-static passes. With no aarch64 binfmt_misc
/// handler, `run` confirms the verdict: the exec fails.
#[test]
fn real_arm64_busybox_static_bundle() {
    let env = TestEnv::new();
    if !host_is_x86_64() {
        eprintln!("SKIP real_arm64_busybox_static_bundle: the test expects an x86_64 host");
        env.finish();
        return;
    }
    let arm64 = match arm64_packages() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIP real_arm64_busybox_static_bundle: {why}");
            env.finish();
            return;
        }
    };
    let mut b = foreign_bundle(&env, &arm64, &["busybox-static"], &[("bin/sh", "busybox")]);
    b.set_args(&["sh", "-c", "true"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["bundle"]["runnable"], json!(false), "{v:#}");
    assert_eq!(
        details(&v, "process.args[0]", "ok"),
        ["\"sh\" is /bin/sh (-> /bin/busybox)"],
        "{v:#}"
    );
    assert_eq!(
        details(&v, "loader", "ok"),
        ["/bin/sh (-> /bin/busybox): statically linked (no PT_INTERP)"],
        "{v:#}"
    );
    let handlers = aarch64_handlers(&v);
    let elf: Vec<String> = v["bundle"]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "elf")
        .map(|f| {
            format!(
                "{} {}",
                f["level"].as_str().unwrap(),
                f["detail"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(elf.len(), 1, "{v:#}");
    assert!(
        elf[0].contains("aarch64 binary on x86_64 host"),
        "{}",
        elf[0]
    );
    if handlers.is_empty() {
        eprintln!(
            "SKIP real_arm64_busybox_static_bundle (handler part): no aarch64 binfmt_misc \
             handler is registered on this host (binfmt_misc {}), and the test registers none",
            if v["host"]["binfmt_misc"].is_null() {
                "is not mounted"
            } else {
                "has none for aarch64"
            }
        );
        assert_eq!(
            elf[0],
            format!(
                "fail /bin/sh (-> /bin/busybox): aarch64 binary on x86_64 host, and no binfmt_misc \
                 handler for it{} (exec format error)",
                if v["host"]["binfmt_misc"].is_null() { " (binfmt_misc is not mounted)" } else { "" }
            )
        );
        // The verdict holds: running it fails at the exec.
        let (id, out) = env.run_container(&b, &[]);
        assert!(!out.success(), "{id} ran: {out}");
        assert!(out.stderr.contains("exec format error"), "{out}");
        env.run(&["delete", "--force", &id]);
    } else {
        // A registered qemu-aarch64 handler (registered by someone else) runs it, with flag F
        // (warn), or needs its interpreter in the rootfs, which this one lacks (fail).
        assert!(
            elf[0].contains("binfmt_misc handler"),
            "handlers {handlers:?}: {}",
            elf[0]
        );
    }
    // Text output, exit status 1.
    let out = env.run(&["check", "--bundle", b.dir().to_str().unwrap()]);
    assert_eq!(out.code, Some(1), "{out}");
    assert!(
        out.stdout.contains("aarch64 binary on x86_64 host")
            && out.stdout.contains("the bundle cannot run on this host"),
        "{}",
        out.stdout
    );

    // The host's own busybox-static in the same layout (only bin/busybox and bin/sh): passes.
    let mut h = env.bundle();
    let rootfs = h.rootfs();
    std::fs::remove_dir_all(&rootfs).unwrap();
    std::fs::create_dir_all(rootfs.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    h.set_args(&["sh", "-c", "true"]);
    let (code, v) = check_json(&env, &h);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(
        details(&v, "elf", "ok"),
        ["/bin/sh (-> /bin/busybox): x86_64 (64-bit), as the host"],
        "{v:#}"
    );
    let out = env.run(&["check", "--bundle", h.dir().to_str().unwrap()]);
    assert_eq!(out.code, Some(0), "{out}");
    assert!(
        out.stdout.contains("the bundle can run on this host"),
        "{}",
        out.stdout
    );
    env.finish();
}

/// Debian's dynamically linked arm64 `hello`: without libc6:arm64 in the rootfs its loader
/// /lib/ld-linux-aarch64.so.1 is missing (fail); with it the loader is found through its
/// symlink and is aarch64 as the program (ok), while the architecture still fails here.
#[test]
fn real_arm64_dynamic_program_and_its_loader() {
    let env = TestEnv::new();
    if !host_is_x86_64() {
        eprintln!(
            "SKIP real_arm64_dynamic_program_and_its_loader: the test expects an x86_64 host"
        );
        env.finish();
        return;
    }
    let arm64 = match arm64_packages() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIP real_arm64_dynamic_program_and_its_loader: {why}");
            env.finish();
            return;
        }
    };
    let mut b = foreign_bundle(&env, &arm64, &["hello"], &[]);
    b.set_args(&["hello"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(
        details(&v, "process.args[0]", "ok"),
        ["\"hello\" is /usr/bin/hello"],
        "{v:#}"
    );
    let fail = details(&v, "loader", "fail");
    assert_eq!(fail.len(), 1, "{v:#}");
    assert!(
        fail[0].starts_with(
            "/usr/bin/hello: dynamic loader /lib/ld-linux-aarch64.so.1 is missing from the rootfs"
        ),
        "{}",
        fail[0]
    );
    assert!(
        details(&v, "elf", "fail")
            .iter()
            .chain(details(&v, "elf", "warn").iter())
            .any(|d| d.contains("aarch64 binary on x86_64 host")),
        "{v:#}"
    );

    let mut b = foreign_bundle(&env, &arm64, &["hello", "libc6"], &[]);
    b.set_args(&["hello"]);
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(
        details(&v, "loader", "ok"),
        ["/usr/bin/hello: loader /lib/ld-linux-aarch64.so.1 (-> /lib/aarch64-linux-gnu/ld-linux-aarch64.so.1) present"],
        "{v:#}"
    );
    assert!(details(&v, "loader", "fail").is_empty(), "{v:#}");
    // The x86_64 loader of this host in its place: the wrong architecture.
    let l = b
        .rootfs()
        .join("lib/aarch64-linux-gnu/ld-linux-aarch64.so.1");
    std::fs::remove_file(&l).unwrap();
    std::fs::copy(
        std::fs::canonicalize("/lib64/ld-linux-x86-64.so.2").unwrap(),
        &l,
    )
    .unwrap();
    let (code, v) = check_json(&env, &b);
    assert_eq!(code, Some(1), "{v:#}");
    assert!(
        details(&v, "loader", "fail")[0].ends_with("is x86_64, not aarch64"),
        "{v:#}"
    );
    env.finish();
}
