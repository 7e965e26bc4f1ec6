//! Hardening: each test tries an attack of a known runc CVE class on a real container and shows
//! that it fails. How each test was checked to fail without its defence is noted on the test.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use kakuri_runtime_tests::*;
use serde_json::json;

/// CVE-2019-5736 class. A process that gets into a container while its init is still the
/// forked kakuri (here: `exec` into a created container; a startContainer hook or an early
/// joiner is the same case) tries to reach the kakuri binary through /proc/<init>/exe: read
/// it, open it read-write (the first step of overwriting it once kakuri exits), list the init's
/// descriptors. The init is non-dumpable until execve, so all fail.
///
/// Checked without the defence (make_non_dumpable() turned into a no-op, rebuilt): readlink,
/// reading the whole binary, following the init's fd links, reading its environ and its root
/// all succeeded (the read-write open itself failed with ETXTBSY while the init runs it, but
/// an O_PATH handle kept for later is exactly how the original exploit proceeds).
#[test]
fn kakuri_binary_not_reachable_through_init_proc_exe() {
    let env = TestEnv::new();
    let copy = env.runtime_copy();
    let mut b = env.bundle();
    b.set_args(&["true"]);
    let id = env.new_id();
    b.write();
    let out = env.rt().output(env.rt().cmd_of(
        &copy,
        &["create", "--bundle", &b.dir().to_string_lossy(), &id],
    ));
    out.ok();
    let c = env.container(&id, &out);
    let pid = c.pid();
    // The same file, seen through a read-only bind of it (security_exe.rs).
    use std::os::unix::fs::MetadataExt;
    let exe = std::fs::metadata(format!("/proc/{pid}/exe")).expect("host sees the init's exe");
    let file = std::fs::metadata(&copy).expect("stat the copy");
    assert_eq!(
        (exe.dev(), exe.ino()),
        (file.dev(), file.ino()),
        "the created init is still the runtime"
    );
    let script = "readlink /proc/1/exe >/dev/null 2>&1 && echo READLINK-OK; \
                  cat /proc/1/exe >/dev/null 2>&1 && echo READ-OK; \
                  (exec 3<>/proc/1/exe) 2>/dev/null && echo WRITE-OPEN-OK; \
                  readlink /proc/1/fd/0 >/dev/null 2>&1 && echo FD-LINK-OK; \
                  cat /proc/1/environ >/dev/null 2>&1 && echo ENVIRON-OK; \
                  ls /proc/1/root/ >/dev/null 2>&1 && echo ROOT-OK; \
                  echo done";
    let ex = env.run(&["exec", c.id(), "sh", "-c", script]);
    ex.ok();
    assert_eq!(ex.stdout, "done\n", "{ex}");
    // The exec'd process itself was non-dumpable until its execve, then dumpable again.
    let ex = env.run(&["exec", c.id(), "sh", "-c", "readlink /proc/self/exe"]);
    ex.ok();
    assert_eq!(ex.stdout, "/bin/busybox\n", "{ex}");
    let before = std::fs::read(&copy).expect("read copy");
    assert_eq!(before, std::fs::read(runtime_bin()).expect("read runtime"));
    drop(c);
    env.finish();
}

/// process.apparmorProfile and process.selinuxLabel on a host without the LSM: refused as runc
/// refuses them, before anything is started, and nothing is left behind.
#[test]
fn lsm_labels_without_the_lsm_are_refused() {
    let aa = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'));
    let se = Path::new("/sys/fs/selinux/enforce").exists();
    if aa || se {
        eprintln!("skipped: this host has AppArmor ({aa}) or SELinux ({se}); the refusal path does not apply");
        return;
    }
    let env = TestEnv::new();
    for (field, value, needle) in [
        (
            "/process/apparmorProfile",
            "kakuri-profile",
            "unable to apply apparmor profile",
        ),
        (
            "/process/selinuxLabel",
            "system_u:system_r:container_t:s0",
            "selinux label is specified in config, but selinux is disabled or not supported",
        ),
    ] {
        let mut b = env.bundle();
        b.set(field, json!(value));
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        assert!(!out.success(), "{out}");
        assert!(out.stderr_has(needle), "{out}");
        assert!(!env.rt().root().join(&id).exists(), "state left for {id}");
    }
    env.finish();
}

/// CVE-2024-21626 class, part 1: no descriptor of the runtime (sync channel, exec fifo, state
/// lock, console socket, procfs handle) is open in the container's process, for the init after
/// `start` and for an exec'd process.
///
/// Checked without the defence (sync channel without SOCK_CLOEXEC and cloexec_from() skipped,
/// rebuilt): the init had 7 descriptors instead of 4.
#[test]
fn no_runtime_descriptor_reaches_the_container() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // busybox ls opens /proc/self/fd itself: 0, 1, 2 and that one.
    b.set_sh("ls /proc/self/fd | wc -l; sleep 1000");
    b.set("/linux/sysctl", json!({"kernel.domainname": "kakuri-fd"}));
    let c = env.create(&b);
    c.start();
    let out = c.wait_stdout("\n");
    assert_eq!(out.trim(), "4", "init's descriptors: {out}");
    let ex = env.run(&["exec", c.id(), "ls", "-l", "/proc/self/fd"]);
    ex.ok();
    assert_eq!(
        ex.stdout.lines().filter(|l| l.starts_with('l')).count(),
        4,
        "exec'd process's descriptors: {ex}"
    );
    drop(c);
    env.finish();
}

/// CVE-2024-21626 class, part 2: a process.cwd that resolves outside the rootfs through a
/// descriptor (/proc/self/fd/N) is refused, for `run` and for `exec --cwd`. The strongest form
/// hands the runtime a host directory descriptor (--preserve-fds): the chdir itself succeeds,
/// and only the check that the cwd is reachable from the container root stops it.
///
/// Checked without the defence (check_cwd_inside_root() skipped, rebuilt): the preserve-fds
/// case ran the process ("INSIDE" printed) with its cwd in the host directory.
#[test]
fn cwd_outside_the_rootfs_is_refused() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("pwd; echo INSIDE");
    for n in 3..=9 {
        b.set_cwd(&format!("/proc/self/fd/{n}"));
        let (_, out) = env.run_container(&b, &[]);
        assert!(!out.success(), "cwd fd {n}: {out}");
        assert!(!out.stdout.contains("INSIDE"), "cwd fd {n}: {out}");
    }
    // A host directory as fd 3, preserved into the container.
    let host_dir = env.dir().join("host-secret");
    std::fs::create_dir(&host_dir).expect("mkdir");
    let dirfd: OwnedFd = std::fs::File::open(&host_dir)
        .expect("open host dir")
        .into();
    b.set_cwd("/proc/self/fd/3");
    let id = env.new_id();
    b.write();
    let mut cmd = env.rt().cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        &b.dir().to_string_lossy(),
        &id,
    ]);
    pass_fd(&mut cmd, dirfd.as_raw_fd(), 3);
    let out = env.rt().output(cmd);
    assert!(!out.success(), "{out}");
    assert!(!out.stdout.contains("INSIDE"), "{out}");
    assert!(
        out.stderr_has(
            "current working directory is outside of container mount namespace root -- possible container breakout detected"
        ),
        "{out}"
    );

    // exec --cwd through a descriptor, and with a host directory preserved.
    b.set_cwd("/");
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    for n in 3..=9 {
        let cwd = format!("/proc/self/fd/{n}");
        let ex = env.run(&[
            "exec",
            "--cwd",
            &cwd,
            c.id(),
            "sh",
            "-c",
            "pwd; echo INSIDE",
        ]);
        assert!(!ex.success(), "exec cwd fd {n}: {ex}");
        assert_eq!(ex.code, Some(255), "runtime failure code: {ex}");
        assert!(!ex.stdout.contains("INSIDE"), "{ex}");
    }
    let mut cmd = env.rt().cmd(&[
        "exec",
        "--preserve-fds",
        "1",
        "--cwd",
        "/proc/self/fd/3",
        c.id(),
        "sh",
        "-c",
        "pwd; echo INSIDE",
    ]);
    pass_fd(&mut cmd, dirfd.as_raw_fd(), 3);
    let ex = env.rt().output(cmd);
    assert!(!ex.success(), "{ex}");
    assert!(!ex.stdout.contains("INSIDE"), "{ex}");
    assert!(
        ex.stderr_has("possible container breakout detected"),
        "{ex}"
    );
    drop(c);
    env.finish();
}

/// CVE-2021-30465 class: mount destinations that are symlinks leading out of the rootfs
/// (absolute, and relative with enough `..`) are resolved inside the rootfs, and the mount
/// lands there: inside the container the destination is the new tmpfs, and the host directory
/// the symlinks name gets nothing.
///
/// Checked without the defence: a plain-path mount through the same absolute symlink (mount(8)
/// in a private mount namespace, `unshare -m`) put the tmpfs on the host directory instead.
#[test]
fn mount_destination_symlinks_stay_in_the_rootfs() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let host = env.dir().join("host-target");
    std::fs::create_dir(&host).expect("mkdir host target");
    std::fs::write(host.join("host-file"), "host").expect("write host file");
    let rootfs = b.rootfs();
    // The same path exists inside the rootfs (an image can have anything): a lookup that
    // stays in the rootfs finds it there.
    let inside = rootfs.join(host.strip_prefix("/").expect("absolute"));
    std::fs::create_dir_all(&inside).expect("mkdir in rootfs");
    std::os::unix::fs::symlink(&host, rootfs.join("abs-escape")).expect("symlink");
    let up = "../".repeat(20);
    let rel_target = format!("{up}{}", host.to_string_lossy().trim_start_matches('/'));
    std::os::unix::fs::symlink(&rel_target, rootfs.join("rel-escape")).expect("symlink");
    for d in ["/abs-escape", "/rel-escape"] {
        b.add_mount(json!({"destination": d, "type": "tmpfs", "source": "tmpfs",
                           "options": ["size=1m"]}));
    }
    b.set_sh(
        "for d in /abs-escape /rel-escape; do stat -f -c %T $d/; ls $d; done; \
         touch /abs-escape/from-container",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "tmpfs\ntmpfs\n", "{out}");
    // The host directory is untouched; the in-rootfs directories were created instead.
    let mut names: Vec<String> = std::fs::read_dir(&host)
        .expect("read host dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["host-file"]);
    assert!(
        !inside.join("from-container").exists(),
        "the write went to the tmpfs"
    );
    env.finish();
}

/// CVE-2025-31133 class: /dev/null is what masks paths (bind-mounted over them). A config (or a
/// race) that makes the container's /dev/null something else — here a host file bound over it
/// — must not turn masked paths into that file.
///
/// Checked without the defence (verified_dev_null()'s device check skipped, rebuilt): the
/// container was created with the host file bound over /proc/kcore.
#[test]
fn masking_refuses_a_fake_dev_null() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // /dev bound from a host directory whose "null" is a regular file: the runtime then
    // creates no device nodes of its own, and /dev/null is that file.
    let fakedev = env.dir().join("fakedev");
    std::fs::create_dir(&fakedev).expect("mkdir fakedev");
    let fake = fakedev.join("null");
    std::fs::write(&fake, "host file").expect("write fake");
    let mounts = b.config_mut()["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["destination"] != "/dev");
    mounts.insert(
        1,
        json!({"destination": "/dev", "type": "bind", "source": fakedev, "options": ["rbind"]}),
    );
    b.set_masked_paths(&["/proc/kcore"]);
    b.set_sh("echo pwned > /proc/kcore");
    let (_, out) = env.run_container(&b, &[]);
    assert!(!out.success(), "{out}");
    assert!(out.stderr_has("is not the null device"), "{out}");
    assert_eq!(std::fs::read_to_string(&fake).unwrap(), "host file");
    env.finish();
}

/// CVE-2025-52881 class: a sysctl write must reach the kernel, not whatever file is mounted
/// over /proc/sys/<key> in the container. Here the config binds a host file over
/// /proc/sys/kernel/domainname and sets kernel.domainname: the host file stays untouched and
/// the container's UTS namespace has the sysctl value (written through the private procfs
/// handle; read from the host through the container's UTS namespace).
///
/// Checked without the defence (sysctls written to /proc/sys/... by path after pivot_root, as
/// before, rebuilt): the write went to the bound file and the name stayed unset.
#[test]
fn sysctl_write_is_not_redirected_by_a_mount() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let decoy = env.dir().join("decoy");
    std::fs::write(&decoy, "original").expect("write decoy");
    b.add_bind(&decoy, "/proc/sys/kernel/domainname", false, false);
    b.set(
        "/linux/sysctl",
        json!({"kernel.domainname": "kakuri-sysctl"}),
    );
    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    let out = std::process::Command::new("nsenter")
        .args([
            "-t",
            &c.pid().to_string(),
            "-u",
            "cat",
            "/proc/sys/kernel/domainname",
        ])
        .output()
        .expect("run nsenter");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kakuri-sysctl\n");
    assert_eq!(std::fs::read_to_string(&decoy).unwrap(), "original");
    drop(c);
    env.finish();
}

/// The procfs handle also works for a container with its own user namespace (where the kernel
/// may refuse a new procfs instance and the init's /proc, opened before any container mount,
/// is used): the sysctl arrives.
#[test]
fn sysctl_in_a_user_namespace() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    // A network sysctl: the kernel lets the namespace's root write those (not kernel.*).
    b.set("/linux/sysctl", json!({"net.ipv4.ip_forward": "1"}));
    b.set_args(&["cat", "/proc/sys/net/ipv4/ip_forward"]);
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "1\n");
    env.finish();
}

/// process.oomScoreAdj is written by the runtime for the init through a verified procfs
/// handle: the value arrives (the handle is the real procfs, not a path).
#[test]
fn oom_score_adj_through_procfs_handle() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/process/oomScoreAdj", json!(345));
    b.set_args(&["cat", "/proc/self/oom_score_adj"]);
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "345\n");
    env.finish();
}

/// CVE-2025-52565 class: the console must be made without path lookups that a container could
/// redirect. The pty master comes from the container's own devpts (opened through the verified
/// rootfs fd) and its peer from TIOCGPTPEER on the master — never an open of a
/// `/dev/pts/N` path or of `/dev/console`, which the container's image could have made a
/// symlink. Checked on the runtime's own system calls (strace of `create`).
#[test]
fn console_peer_comes_from_tiocgptpeer_not_a_path() {
    if std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_err()
    {
        // setup-host installs strace; without it the calls cannot be observed.
        println!("SKIP: strace is not installed");
        return;
    }
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_terminal(true);
    b.set_sh("tty; echo console-done");
    b.write();
    let sock = ConsoleSocket::bind(&env.dir().join("console.sock"));
    let id = env.new_id();
    env.track(&id);
    let trace = env.dir().join("create.strace");
    let mut cmd = std::process::Command::new("strace");
    cmd.args(["-f", "-qq", "-e", "trace=open,openat,openat2,ioctl", "-o"])
        .arg(&trace)
        .arg(env.rt().bin())
        .arg("--root")
        .arg(env.rt().root())
        .args(["create", "--bundle"])
        .arg(b.dir())
        .args(["--console-socket", sock.path().to_str().unwrap()])
        .arg(&id);
    // strace follows the init too, so it ends only when the container does: start the
    // container while it runs.
    let traced = env.rt().spawn_in(cmd, b.dir());
    let (master, _) = sock.receive_master(CMD_TIMEOUT);
    wait_for("the container to be created", WAIT_TIMEOUT, || {
        env.run(&["state", &id])
            .stdout
            .contains("\"created\"")
            .then_some(())
    });
    env.run(&["start", &id]).ok();
    let text = read_pty_until(&master, "console-done", WAIT_TIMEOUT);
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    let out = traced.wait(CMD_TIMEOUT);
    out.ok();
    let c = env.container(&id, &out);
    let calls = std::fs::read_to_string(&trace).unwrap();
    assert!(
        calls.contains("TIOCGPTPEER"),
        "the peer must come from TIOCGPTPEER:\n{calls}"
    );
    for line in calls.lines() {
        let opens_path = line.contains("open");
        assert!(
            !(opens_path && (line.contains("\"/dev/pts/0\"") || line.contains("/dev/console\""))),
            "the runtime opened a console path: {line}"
        );
    }
    drop(c);
    env.finish();
}

/// procfs and sysfs are mounted only on real directories: a rootfs whose /proc or /sys is a
/// symlink (to a directory of its own, or to its own host path) is refused with runc's error,
/// instead of getting procfs somewhere maskedPaths do not cover. youki's prohibit_symlink
/// tests check this against runc.
#[test]
fn proc_and_sys_must_be_ordinary_directories() {
    let env = TestEnv::new();
    for (dir, target) in [("proc", None), ("sys", Some("tmp"))] {
        let b = env.bundle();
        let rootfs = b.rootfs();
        let link = rootfs.join(dir);
        let _ = std::fs::remove_dir(&link);
        let _ = std::fs::remove_file(&link);
        match target {
            Some(t) => std::os::unix::fs::symlink(t, &link).unwrap(),
            // Its own absolute host path: inside the root that is a dangling link.
            None => std::os::unix::fs::symlink(&link, &link).unwrap(),
        }
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        let fstype = if dir == "proc" { "proc" } else { "sysfs" };
        out.fails_with(&format!(
            "to rootfs at \"/{dir}\": filesystem \"{fstype}\" must be mounted on ordinary directory"
        ));
        env.run(&["state", &id]).fails_with("does not exist");
    }
    env.finish();
}
