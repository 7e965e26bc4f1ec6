//! Root filesystem and mounts: pivot_root, read-only root, propagation, bind/tmpfs/special
//! mounts, devices, masked and read-only paths.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::fs;

/// The mountinfo line whose mount point is `point` (last one wins), as seen inside.
fn mountinfo_line<'a>(mountinfo: &'a str, point: &str) -> &'a str {
    mountinfo
        .lines()
        .rfind(|l| l.split(' ').nth(4) == Some(point))
        .unwrap_or_else(|| panic!("no mount at {point} in:\n{mountinfo}"))
}

#[test]
fn pivot_root_hides_host_paths() {
    let env = TestEnv::new();
    let marker = env.dir().join("host-only-file");
    fs::write(&marker, "x").unwrap();
    let script = format!(
        "ls /; test -e {} && echo LEAK-testdir; test -e /work && echo LEAK-work; true",
        marker.display()
    );
    for extra in [&[][..], &["--no-pivot"][..]] {
        let mut b = env.bundle();
        b.set_sh(&script);
        let (_, out) = env.run_container(&b, extra);
        out.ok();
        assert!(
            !out.stdout.contains("LEAK"),
            "host paths visible ({extra:?}): {out}"
        );
        let names = line_set(&out.stdout);
        assert!(names.contains("bin") && names.contains("proc"), "{out}");
    }
    env.finish();
}

#[test]
fn readonly_root() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_readonly_root(true);
    b.set_sh("touch /kakuri-rofile 2>&1; echo rc=$?; touch /tmp/x 2>&1; echo tmp-rc=$?");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    assert!(out.stdout.contains("rc=1"), "{out}");
    assert!(!b.rootfs().join("kakuri-rofile").exists());
    env.finish();
}

/// Runs a container with `rootfsPropagation: prop` and checks the optional fields of its
/// root mount (None: no propagation tag, Some(tag): a field starting with tag).
fn check_rootfs_propagation(prop: &str, expect: Option<&str>) {
    // The host's mounts are private here, which would make "slave" indistinguishable from
    // "private"; so the runtime runs in a private mount namespace (unshare -m) whose mounts
    // are all shared. The host's mount table is not touched.
    let env = TestEnv::new();
    {
        let mut b = env.bundle();
        b.set("/linux/rootfsPropagation", json!(prop));
        b.set_sh("cat /proc/self/mountinfo");
        b.write();
        let id = env.new_id();
        let mut cmd = std::process::Command::new("unshare");
        cmd.args(["-m", "--propagation", "shared"]);
        cmd.arg(env.rt().bin());
        cmd.arg("--root").arg(env.rt().root());
        cmd.args(["run", "--bundle"]).arg(b.dir()).arg(&id);
        cmd.env(ENV_MARKER, env.id());
        cmd.stdin(std::process::Stdio::null());
        let out = env.rt().output(cmd);
        out.ok();
        let root = mountinfo_line(&out.stdout, "/");
        let optional: Vec<&str> = root
            .split(" - ")
            .next()
            .unwrap()
            .split(' ')
            .skip(6)
            .collect();
        match expect {
            None => assert!(optional.is_empty(), "{prop}: root mount {root}"),
            Some(tag) => assert!(
                optional.iter().any(|o| o.starts_with(tag)),
                "{prop}: root mount must carry {tag}: {root}"
            ),
        }
    }
    env.finish();
}

#[test]
fn rootfs_propagation_private() {
    check_rootfs_propagation("private", None);
}

#[test]
fn rootfs_propagation_slave() {
    check_rootfs_propagation("slave", Some("master:"));
}

#[test]
fn rootfs_propagation_shared() {
    // runc 1.1.5 leaves the container's root mount private with "shared" (it makes the rootfs
    // parent private for pivot_root and never re-applies the propagation): it fails this test.
    check_rootfs_propagation("shared", Some("shared:"));
}

#[test]
fn bind_mounts_rw_and_ro() {
    let env = TestEnv::new();
    let rw = env.dir().join("rw-src");
    let ro = env.dir().join("ro-src");
    fs::create_dir(&rw).unwrap();
    fs::create_dir(&ro).unwrap();
    fs::write(rw.join("in.txt"), "from-host-rw").unwrap();
    fs::write(ro.join("in.txt"), "from-host-ro").unwrap();
    let mut b = env.bundle();
    b.add_bind(&rw, "/mnt/rw", false, false);
    b.add_bind(&ro, "/mnt/ro", true, false);
    b.set_sh(
        "cat /mnt/rw/in.txt; echo; cat /mnt/ro/in.txt; echo; echo written > /mnt/rw/out.txt; \
         { echo x > /mnt/ro/out.txt; } 2>&1 || echo ro-write-failed; touch /mnt/ro/t 2>&1; true",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.contains("from-host-rw\nfrom-host-ro"), "{out}");
    assert!(out.stdout.contains("ro-write-failed"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    assert_eq!(fs::read_to_string(rw.join("out.txt")).unwrap(), "written\n");
    assert!(!ro.join("out.txt").exists());
    env.finish();
}

#[test]
fn rbind_includes_submounts_bind_does_not() {
    // The submount is made in a private mount namespace (unshare -m) in which the runtime runs,
    // so the host's mount table is never touched.
    let env = TestEnv::new();
    let src = env.dir().join("tree");
    fs::create_dir_all(src.join("sub")).unwrap();
    let mut b = env.bundle();
    b.add_bind(&src, "/mnt/bind", false, false);
    b.add_bind(&src, "/mnt/rbind", false, true);
    b.set_sh("cat /mnt/rbind/sub/f 2>&1; ls /mnt/bind/sub | wc -l");
    b.write();
    let id = env.new_id();
    let script = format!(
        "mount -t tmpfs kakuri-{id} {sub} && echo in-submount > {sub}/f && \
         exec {bin} --root {root} run --bundle {bundle} {id}",
        sub = src.join("sub").display(),
        bin = env.rt().bin().display(),
        root = env.rt().root().display(),
        bundle = b.dir().display(),
    );
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script]);
    cmd.env(ENV_MARKER, env.id());
    cmd.stdin(std::process::Stdio::null());
    let out = env.rt().output(cmd);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["in-submount", "0"], "{out}");
    env.finish();
}

#[test]
fn tmpfs_with_size_and_mode() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_mount(json!({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "size=1m", "mode=750"]
    }));
    b.set_sh("stat -c %a /scratch; grep ' /scratch ' /proc/mounts; df -k /scratch | tail -n 1");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "750", "{out}");
    assert!(lines[1].starts_with("tmpfs /scratch tmpfs "), "{out}");
    assert!(
        lines[1].contains("size=1024k") && lines[1].contains("mode=750"),
        "{out}"
    );
    assert!(
        lines[1].contains("nosuid") && lines[1].contains("nodev"),
        "{out}"
    );
    assert_eq!(lines[2].split_whitespace().nth(1), Some("1024"), "{out}");
    env.finish();
}

#[test]
fn special_filesystems_are_mounted() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("cat /proc/mounts");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    for (point, fstype) in [
        ("/proc", "proc"),
        ("/sys", "sysfs"),
        ("/dev", "tmpfs"),
        ("/dev/pts", "devpts"),
        ("/dev/shm", "tmpfs"),
        ("/dev/mqueue", "mqueue"),
    ] {
        assert!(
            out.stdout.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.get(1) == Some(&point) && f.get(2) == Some(&fstype)
            }),
            "no {fstype} at {point}: {out}"
        );
    }
    // sysfs is read-only as the default spec asks.
    let sys = out
        .stdout
        .lines()
        .find(|l| l.split(' ').nth(1) == Some("/sys"))
        .unwrap();
    assert!(
        sys.split(' ').nth(3).unwrap().split(',').any(|o| o == "ro"),
        "{sys}"
    );
    env.finish();
}

#[test]
fn cgroup_mount_shows_own_cgroup() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_cgroups_path(&format!("kakuri-{}", env.id()));
    b.set("/linux/resources/pids", json!({"limit": 77}));
    b.set_sh(
        "grep ' /sys/fs/cgroup' /proc/mounts | cut -d' ' -f2,3; cat /sys/fs/cgroup/pids/pids.max",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.contains("/sys/fs/cgroup/pids cgroup"), "{out}");
    assert!(out.stdout.contains("/sys/fs/cgroup/memory cgroup"), "{out}");
    assert_eq!(
        out.stdout.lines().last(),
        Some("77"),
        "own pids cgroup visible: {out}"
    );
    env.finish();
}

#[test]
fn default_devices_and_symlinks() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh(
        "for d in null zero full random urandom tty; do stat -c '%n %F %t %T %a' /dev/$d; done; \
         for l in fd stdin stdout stderr ptmx; do echo \"/dev/$l -> $(readlink /dev/$l)\"; done; \
         head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    for (dev, major, minor) in [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ] {
        let expected = format!("/dev/{dev} character special file {major:x} {minor:x} 666");
        assert!(
            out.stdout.lines().any(|l| l == expected),
            "want {expected:?}: {out}"
        );
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let expected = format!("/dev/{link} -> {target}");
        assert!(
            out.stdout.lines().any(|l| l == expected),
            "want {expected:?}: {out}"
        );
    }
    assert!(out.stdout.contains("4\nnull-ok"), "{out}");
    env.finish();
}

#[test]
fn linux_devices_are_created() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set(
        "/linux/devices",
        json!([{"path": "/dev/kakuri-null", "type": "c", "major": 1, "minor": 3,
                "fileMode": 0o640, "uid": 1000, "gid": 10}]),
    );
    // Owner 1000 may write to the 0640 node (root without CAP_DAC_OVERRIDE may not).
    b.set_user(1000, 10, &[]);
    b.set(
        "/linux/resources/devices",
        json!([{"allow": false, "access": "rwm"},
               {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]),
    );
    b.set_sh(
        "stat -c '%F %t %T %a %u %g' /dev/kakuri-null; echo hi > /dev/kakuri-null && echo write-ok",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(
        out.stdout, "character special file 1 3 640 1000 10\nwrite-ok\n",
        "{out}"
    );
    env.finish();
}

#[test]
fn masked_paths() {
    // /proc/kcore is the classic example; kernels without CONFIG_PROC_KCORE (like the test VM)
    // lack it, so the first masked file that exists on the host is used.
    let file = ["/proc/kcore", "/proc/timer_list"]
        .into_iter()
        .find(|f| fs::metadata(f).is_ok())
        .expect("the host has /proc/kcore or /proc/timer_list");
    let host_len = fs::read(file).map(|d| d.len()).unwrap_or(0);
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_masked_paths(&[file, "/sys/firmware", "/proc/kakuri-does-not-exist"]);
    b.set_sh(&format!(
        "echo file=$(wc -c < {file}); echo firmware=$(ls -A /sys/firmware | wc -l); \
         test -e /proc/kakuri-does-not-exist || echo nonexistent-skipped"
    ));
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(
        out.stdout.contains("file=0\n"),
        "{file} must read empty: {out}"
    );
    assert!(out.stdout.contains("firmware=0\n"), "{out}");
    assert!(out.stdout.contains("nonexistent-skipped"), "{out}");
    // Sanity: both are non-empty on the host, so the emptiness comes from masking.
    assert!(host_len > 0, "{file} is empty on the host too");
    assert!(
        fs::read_dir("/sys/firmware")
            .map(|d| d.count())
            .unwrap_or(0)
            > 0
    );
    env.finish();
}

#[test]
fn readonly_paths() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_readonly_paths(&["/proc/sys", "/proc/kakuri-does-not-exist"]);
    b.set_sh(
        "{ echo 1 > /proc/sys/net/ipv4/ip_forward; } 2>&1 || echo write-failed; \
         cat /proc/sys/net/ipv4/ip_forward; grep ' /proc/sys ' /proc/mounts",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.contains("write-failed"), "{out}");
    assert!(out.stdout.contains("Read-only file system"), "{out}");
    let line = out.stdout.lines().last().unwrap();
    assert!(
        line.split(' ')
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{out}"
    );
    env.finish();
}

/// A mount destination that is a dangling symlink in the image is followed inside the rootfs
/// and its target created there, as runc and crun do (crun's suite checks it): relative
/// targets from the link's directory, absolute ones from the container root, `..` stopping at
/// the root. Nothing is created on the host.
#[test]
fn dangling_symlink_destinations_are_created_inside_the_rootfs() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let src = env.dir().join("src.txt");
    fs::write(&src, "bound").unwrap();
    let rootfs = b.rootfs();
    std::os::unix::fs::symlink("../foo/bar/not/here", rootfs.join("etc/not-existing")).unwrap();
    // An absolute target that tries to climb out: it lands under the container root.
    let outside = env.dir().join("escaped");
    let climb = format!("/../../../..{}", outside.display());
    std::os::unix::fs::symlink(&climb, rootfs.join("etc/escape")).unwrap();
    // A dangling directory link in the middle of a destination.
    std::os::unix::fs::symlink("/made/by/link", rootfs.join("linkdir")).unwrap();
    b.add_bind(&src, "/etc/not-existing", true, false);
    b.add_bind(&src, "/etc/escape", true, false);
    b.add_mount(json!({"destination": "/linkdir/sub", "type": "tmpfs", "source": "tmpfs"}));
    b.set_sh(
        "cat /foo/bar/not/here; echo; cat /etc/escape; echo; \
         grep -c ' /foo/bar/not/here ' /proc/self/mountinfo; \
         awk '$5 == \"/made/by/link/sub\" { print $9 }' /proc/self/mountinfo",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "bound\nbound\n1\ntmpfs\n", "{out}");
    assert!(!outside.exists(), "a mount target was created on the host");
    assert!(rootfs.join(outside.strip_prefix("/").unwrap()).exists());
    env.finish();
}

/// In a user namespace, bind sources are opened by the runtime (host root) before the clone:
/// a source under a directory only the host's root may enter (mode 000 here) is still mounted,
/// directly and through a symlink, as with runc and crun. The container's root (host uid
/// 100000) could not reach it by path.
#[test]
fn user_namespace_bind_sources_behind_closed_directories() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let closed = env.dir().join("closed");
    fs::create_dir(&closed).unwrap();
    fs::write(closed.join("file"), "behind-a-closed-door").unwrap();
    fs::create_dir(closed.join("dir")).unwrap();
    fs::write(closed.join("dir/inner"), "inner").unwrap();
    std::os::unix::fs::symlink(closed.join("file"), closed.join("link")).unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o000)).unwrap();
    let mut b = env.bundle();
    b.add_user_namespace(100000, 65536);
    // The rootfs belongs to the host's root, not to the mapped ids: the mount points must
    // exist already (the namespace's root could not create them).
    let mnt = b.rootfs().join("mnt");
    fs::write(mnt.join("file"), "").unwrap();
    fs::write(mnt.join("link"), "").unwrap();
    fs::create_dir(mnt.join("dir")).unwrap();
    b.add_bind(&closed.join("file"), "/mnt/file", true, false);
    b.add_bind(&closed.join("link"), "/mnt/link", true, false);
    b.add_bind(&closed.join("dir"), "/mnt/dir", false, true);
    b.set_sh("cat /mnt/file; echo; cat /mnt/link; echo; cat /mnt/dir/inner");
    let (_, out) = env.run_container(&b, &[]);
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).unwrap();
    out.ok();
    assert_eq!(
        out.stdout, "behind-a-closed-door\nbehind-a-closed-door\ninner",
        "{out}"
    );
    env.finish();
}
