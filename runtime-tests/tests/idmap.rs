//! Idmapped bind mounts: `idmap`/`ridmap` and per-mount `uidMappings`/`gidMappings`
//! (runtime-spec 1.2), with and without a container user namespace.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The filesystem of the test dir must support idmapped mounts (ext4, tmpfs, xfs, btrfs do on
/// 6.x kernels). When it does not, say why and return false.
fn idmap_works(env: &TestEnv) -> bool {
    let probe = env.dir().join("idmap-probe");
    std::fs::create_dir_all(&probe).unwrap();
    let mut b = env.bundle();
    b.set_sh("true");
    b.add_mount(json!({
        "destination": "/probe", "type": "bind", "source": probe, "options": ["bind"],
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]
    }));
    let (_, out) = env.run_container(&b, &[]);
    if out.success() {
        return true;
    }
    assert!(
        out.stderr.contains("mount_setattr(MOUNT_ATTR_IDMAP)"),
        "idmap probe failed for another reason: {out}"
    );
    eprintln!(
        "SKIP: the filesystem of {} cannot be idmapped here: {}",
        env.dir().display(),
        out.stderr
    );
    false
}

fn source_dir(env: &TestEnv, name: &str) -> PathBuf {
    let d = env.dir().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn owned_file(dir: &Path, name: &str, uid: u32, gid: u32) {
    let p = dir.join(name);
    std::fs::write(&p, "x").unwrap();
    std::os::unix::fs::chown(&p, Some(uid), Some(gid)).unwrap();
}

fn owner(p: &Path) -> (u32, u32) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
    (m.uid(), m.gid())
}

fn maps(c: u32, h: u32, s: u32) -> serde_json::Value {
    json!([{"containerID": c, "hostID": h, "size": s}])
}

#[test]
fn idmapped_bind_without_user_namespace() {
    let env = TestEnv::new();
    if !idmap_works(&env) {
        env.finish();
        return;
    }
    let src = source_dir(&env, "src");
    owned_file(&src, "host1000", 1000, 1001);
    // Root inside may write there: the directory's owner is mapped through the mount.
    std::os::unix::fs::chown(&src, Some(1000), Some(1001)).unwrap();
    let mut b = env.bundle();
    // On-disk 1000 is seen as 0 through the mount (runtime-spec: mappings from the source
    // file system to the mount), and what uid 0 creates is stored as 1000.
    b.add_mount(json!({
        "destination": "/data", "type": "bind", "source": src, "options": ["bind", "idmap"],
        "uidMappings": maps(1000, 0, 1), "gidMappings": maps(1001, 0, 1)
    }));
    b.set_sh("stat -c %u:%g /data/host1000; touch /data/made-inside; id -u");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["0:0", "0"],
        "{out}"
    );
    assert_eq!(owner(&src.join("made-inside")), (1000, 1001));
    env.finish();
}

#[test]
fn idmapped_bind_in_user_namespace() {
    let env = TestEnv::new();
    if !idmap_works(&env) {
        env.finish();
        return;
    }
    // Own mappings, unlike the container's: a user namespace made for the mount.
    let own = source_dir(&env, "own");
    owned_file(&own, "host1000", 1000, 1000);
    std::os::unix::fs::chown(&own, Some(1000), Some(1000)).unwrap();
    // No mappings: the container's user namespace (0 -> 231072).
    let ctr = source_dir(&env, "ctr");
    owned_file(&ctr, "host0", 0, 0);
    // The container's mappings given explicitly: its own user namespace again.
    let same = source_dir(&env, "same");
    owned_file(&same, "host5", 5, 6);
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    // The rootfs belongs to the host's root: the mount points must exist already.
    for d in ["own", "ctr", "same"] {
        std::fs::create_dir(b.rootfs().join(d)).unwrap();
    }
    b.add_mount(json!({
        "destination": "/own", "type": "bind", "source": own, "options": ["bind", "idmap"],
        "uidMappings": maps(1000, 231072, 1), "gidMappings": maps(1000, 231072, 1)
    }));
    b.add_mount(json!({
        "destination": "/ctr", "type": "bind", "source": ctr, "options": ["rbind", "idmap"]
    }));
    b.add_mount(json!({
        "destination": "/same", "type": "bind", "source": same, "options": ["bind", "idmap"],
        "uidMappings": maps(0, 231072, 65536), "gidMappings": maps(0, 231072, 65536)
    }));
    b.set_sh(
        "stat -c %u:%g /own/host1000 /ctr/host0 /same/host5; \
         touch /own/new /ctr/new /same/new; echo done",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["0:0", "0:0", "5:6", "done"],
        "{out}"
    );
    assert_eq!(owner(&own.join("new")), (1000, 1000));
    assert_eq!(owner(&ctr.join("new")), (0, 0));
    assert_eq!(owner(&same.join("new")), (0, 0));
    env.finish();
}

/// A tmpfs mounted on a directory of the test, unmounted on drop.
struct Submount(PathBuf);

impl Submount {
    fn new(at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(at)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs on {}", at.display());
        Submount(at.to_path_buf())
    }
}

impl Drop for Submount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn ridmap_applies_to_submounts_idmap_does_not() {
    let env = TestEnv::new();
    if !idmap_works(&env) {
        env.finish();
        return;
    }
    let src = source_dir(&env, "tree");
    owned_file(&src, "top", 1000, 1000);
    {
        let sub = Submount::new(&src.join("sub"));
        owned_file(&sub.0, "inner", 1000, 1000);
        let mut b = env.bundle();
        for (dst, opt) in [("/r", "ridmap"), ("/i", "idmap")] {
            b.add_mount(json!({
                "destination": dst, "type": "bind", "source": src, "options": ["rbind", opt],
                "uidMappings": maps(1000, 0, 1), "gidMappings": maps(1000, 0, 1)
            }));
        }
        b.set_sh("stat -c %u /r/top /r/sub/inner /i/top /i/sub/inner");
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        assert_eq!(
            out.stdout.lines().collect::<Vec<_>>(),
            ["0", "0", "0", "1000"],
            "{out}"
        );
    }
    env.finish();
}

#[test]
fn bad_idmap_configs_are_refused_naming_the_field() {
    let env = TestEnv::new();
    let src = source_dir(&env, "src");
    let bind = |extra: serde_json::Value| {
        let mut m = json!({"destination": "/data", "type": "bind", "source": src,
                           "options": ["bind", "idmap"]});
        for (k, v) in extra.as_object().unwrap() {
            m[k] = v.clone();
        }
        m
    };
    let cases: Vec<(serde_json::Value, bool, &str)> = vec![
        (
            bind(json!({"uidMappings": maps(0, 1000, 1)})),
            false,
            "mounts[1].gidMappings: required together with mounts[1].uidMappings",
        ),
        (
            bind(json!({})),
            false,
            "mounts[1].uidMappings: an idmapped mount needs uidMappings and gidMappings when the container has no user namespace",
        ),
        (
            bind(json!({"uidMappings": json!([
                {"containerID": 0, "hostID": 1000, "size": 10},
                {"containerID": 5, "hostID": 3000, "size": 10}]),
                "gidMappings": maps(0, 1000, 1)})),
            true,
            "mounts[1].uidMappings[1]: containerID range overlaps mounts[1].uidMappings[0]",
        ),
        (
            bind(json!({"uidMappings": maps(0, 1000, 1), "gidMappings": maps(0, 1000, 0)})),
            false,
            "mounts[1].gidMappings[0].size: must be at least 1",
        ),
        (
            json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                   "options": ["idmap"]}),
            true,
            "mounts[1].options: idmapped mounts",
        ),
    ];
    for (mount, userns, want) in cases {
        let mut b = env.bundle();
        b.remove("/mounts");
        b.add_mount(json!({"destination": "/proc", "type": "proc", "source": "proc"}));
        b.add_mount(mount);
        if userns {
            b.add_user_namespace(231072, 65536);
        }
        let id = env.new_id();
        env.create_raw(&b, &id, &[]).fails_with(want);
        env.assert_no_leaks();
    }
    env.finish();
}

#[test]
fn a_filesystem_without_idmap_support_is_named() {
    let env = TestEnv::new();
    // sysfs does not support idmapped mounts.
    let mut b = env.bundle();
    b.add_mount(json!({
        "destination": "/k", "type": "bind", "source": "/sys/kernel", "options": ["bind"],
        "uidMappings": maps(0, 1000, 1), "gidMappings": maps(0, 1000, 1)
    }));
    let n = b.config()["mounts"].as_array().unwrap().len() - 1;
    let id = env.new_id();
    env.create_raw(&b, &id, &[]).fails_with(&format!(
        "mounts[{n}]: idmapped mount of \"/sys/kernel\" on \"/k\": mount_setattr(MOUNT_ATTR_IDMAP)"
    ));
    env.assert_no_leaks();
    env.finish();
}

#[test]
fn features_report_idmap() {
    let env = TestEnv::new();
    let out = env.run(&["features"]);
    out.ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["linux"]["mountExtensions"]["idmap"]["enabled"],
        json!(true)
    );
    let opts = v["mountOptions"].as_array().unwrap();
    assert!(opts.contains(&json!("idmap")) && opts.contains(&json!("ridmap")));
    env.finish();
}
