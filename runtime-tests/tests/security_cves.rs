//! Attacks of runc's CVE classes on kakuri, one test each, beyond those in security.rs. Every
//! test also runs a positive control: the same setup, observed where the defence does not apply
//! (a path lookup done the naive way, or inside the container), showing that the attack is
//! real and so that the test could fail.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakuri_runtime_tests::*;
use serde_json::json;

/// Mount points (field 5 of mountinfo) of `pid`'s mount namespace.
fn mount_points(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Mount points of the test process's own mount namespace that lie under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    mount_points(std::process::id() as i32)
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Runs `script` with `sh -c` in a new private mount namespace of the host (`unshare -m
/// --propagation private`): what a runtime that resolves paths the naive way would do, without
/// touching the host's own mounts.
fn naive_in_private_ns(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .output()
        .expect("run unshare")
}

/// The config's mounts without the one at `dest`.
fn drop_mount(b: &mut Bundle, dest: &str) {
    b.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| m["destination"] != dest);
}

/// CVE-2019-16884 class (a fake /proc makes the runtime's /proc writes and lookups land in files
/// the container controls). The config puts a host directory at /proc (as a Docker volume on
/// /proc once could) whose `self/fd/N` entries are symlinks to a decoy directory and whose
/// `sys/kernel/domainname` is a plain file. kakuri must still mask the masked path (it mounts
/// through descriptors, which must not be re-resolved through the container's /proc) and must
/// write the sysctl to the kernel, not to the fake file.
///
/// Control: inside the container, /proc/self/fd/N and /proc/sys/kernel/domainname are the
/// attacker's files, so a runtime resolving them by path after pivot_root lands there. This
/// test found the masks going through the container's /proc (masked file and directory
/// readable); with sysctls written by path (rebuilt) the fake file got the value.
#[test]
fn fake_proc_does_not_defeat_masking_or_sysctls() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let fake = env.dir().join("fakeproc");
    std::fs::create_dir_all(fake.join("self/fd")).unwrap();
    std::fs::create_dir_all(fake.join("sys/kernel")).unwrap();
    std::fs::write(fake.join("sys/kernel/domainname"), "fake\n").unwrap();
    for n in 0..256 {
        symlink("/decoy", fake.join(format!("self/fd/{n}"))).unwrap();
    }
    let rootfs = b.rootfs();
    std::fs::create_dir(rootfs.join("decoy")).unwrap();
    std::fs::write(rootfs.join("secret"), "secret\n").unwrap();
    std::fs::create_dir(rootfs.join("secretdir")).unwrap();
    std::fs::write(rootfs.join("secretdir/inner"), "inner\n").unwrap();
    drop_mount(&mut b, "/proc");
    b.add_mount(
        json!({"destination": "/proc", "type": "bind", "source": fake,
                       "options": ["rbind"]}),
    );
    b.set_masked_paths(&["/secret", "/secretdir"]);
    b.set_readonly_paths(&[]);
    b.set(
        "/linux/sysctl",
        json!({"kernel.domainname": "kakuri-16884"}),
    );
    b.set_args(&["sleep", "600"]);
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &[]);
    let fake_domain = std::fs::read_to_string(fake.join("sys/kernel/domainname")).unwrap();
    assert_eq!(
        fake_domain, "fake\n",
        "the sysctl went to the fake file: {out}"
    );
    if !out.success() {
        // runc refuses anything but procfs on /proc; kakuri may do the same one day.
        out.fails_with("cannot be mounted because it is not of type proc");
        println!("the runtime refused the fake /proc: no control to run");
        env.finish();
        return;
    }
    let c = env.container(&id, &out);
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "cat /secret; ls /secretdir; echo end",
    ]);
    ex.ok();
    assert_eq!(ex.stdout, "end\n", "masked paths are readable: {ex}");
    let mounts = mount_points(c.pid());
    assert!(
        !mounts.iter().any(|m| m == "/decoy"),
        "a mask landed on the decoy: {mounts:?}"
    );
    let dn = Command::new("nsenter")
        .args(["-t", &c.pid().to_string(), "-u", "cat"])
        .arg("/proc/sys/kernel/domainname")
        .output()
        .expect("nsenter");
    assert_eq!(String::from_utf8_lossy(&dn.stdout), "kakuri-16884\n");
    // Control: by path, inside the container, both lookups reach the attacker's files.
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "readlink /proc/self/fd/7; cat /proc/sys/kernel/domainname",
    ]);
    ex.ok();
    assert_eq!(ex.stdout, "/decoy\nfake\n", "control: {ex}");
    drop(c);
    env.finish();
}

/// CVE-2021-30465 class (a mount destination swapped for a symlink while the runtime mounts).
/// Container A shares a host directory ("volume") with container B and swaps `dst` in it
/// between a directory, nothing and a symlink, as fast as it can. Meanwhile B is created again
/// and again with the volume at /vol and a tmpfs at /vol/dst. The symlink names the host path
/// of a directory of B's own rootfs (`/escape`): a runtime that follows it by path would mount
/// the tmpfs there, visibly in B. kakuri resolves every destination with RESOLVE_IN_ROOT, so
/// the symlink leads to `<that host path>` *inside* B's rootfs, and /escape never gets a mount.
///
/// The rounds go on until B met the symlink at least 3 times (its tmpfs landed on the in-root
/// target of the link, or its create failed) and the directory at least once, so the race was
/// really run.
///
/// Control: the same static symlink, mounted on by path in a private mount namespace of the
/// host, puts the tmpfs on B's /escape. Checked without the defence (the tmpfs mounted on the
/// destination by path, rebuilt): round 4 had the tmpfs on /escape.
#[test]
fn mount_destination_swapped_for_a_symlink_during_create() {
    let env = TestEnv::new();
    let vol = env.dir().join("volume");
    std::fs::create_dir(&vol).unwrap();
    let mut b = env.bundle();
    let escape = b.rootfs().join("escape");
    std::fs::create_dir(&escape).unwrap();
    std::fs::write(escape.join("real"), "real\n").unwrap();
    b.add_bind(&vol, "/vol", false, false);
    b.add_mount(
        json!({"destination": "/vol/dst", "type": "tmpfs", "source": "tmpfs",
                       "options": ["size=1234k"]}),
    );
    b.set_args(&["sleep", "600"]);

    // Control first, with the symlink in place and nothing racing.
    symlink(&escape, vol.join("dst")).unwrap();
    let script = format!(
        "mkdir -p {root}/vol && mount --bind {vol} {root}/vol && mount -t tmpfs -o size=1234k tmpfs {root}/vol/dst \
         && grep -q ' {esc} ' /proc/self/mountinfo && echo ESCAPED",
        vol = vol.display(),
        root = b.rootfs().display(),
        esc = escape.display()
    );
    let ctl = naive_in_private_ns(&script);
    assert_eq!(
        String::from_utf8_lossy(&ctl.stdout),
        "ESCAPED\n",
        "control: a path-based mount follows the symlink: {ctl:?}"
    );
    std::fs::remove_file(vol.join("dst")).unwrap();

    let mut racer = env.bundle();
    racer.add_bind(&vol, "/vol", false, false);
    racer.set_sh(&format!(
        "echo racing; while [ ! -e /vol/stop ]; do rm -rf /vol/dst; mkdir /vol/dst; \
         rm -rf /vol/dst; ln -s {} /vol/dst; stat /vol/dst; \
         done >/dev/null 2>&1; echo stopped",
        escape.display()
    ));
    let a = env.create(&racer);
    a.start();
    a.wait_stdout("racing");

    // on_dir counts the tmpfs found on /vol/dst or already gone: the racer's `rm -rf` of the
    // directory detaches a mount on it in every namespace.
    let (mut in_root, mut on_dir, mut failed) = (0, 0, 0);
    let link_target = format!("/{}", escape.strip_prefix("/").unwrap().display());
    for round in 0..300 {
        if in_root + failed >= 3 && on_dir >= 1 {
            break;
        }
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        if !out.success() {
            failed += 1;
            continue;
        }
        let c = env.container(&id, &out);
        let mounts = mount_points(c.pid());
        assert!(
            !mounts.iter().any(|m| m == "/escape"),
            "round {round}: the tmpfs went through the symlink onto /escape: {mounts:?}"
        );
        if mounts.contains(&link_target) {
            in_root += 1;
        } else {
            on_dir += 1;
        }
        drop(c);
    }
    std::fs::write(vol.join("stop"), "").unwrap();
    a.wait_stdout("stopped");
    eprintln!("B met: the directory (or nothing) {on_dir} times, the symlink {in_root}, a failed create {failed}");
    assert!(
        in_root + failed >= 3 && on_dir >= 1,
        "the race did not hit both states (dir {on_dir}, in-root {in_root}, failed {failed})"
    );
    assert_eq!(
        std::fs::read_to_string(escape.join("real")).unwrap(),
        "real\n"
    );
    drop(a);
    env.finish();
}

/// A shell loop, run in the container, that tries every descriptor number 3..=63 as a way out:
/// lists what each /proc/self/fd/N is and whether `/proc/self/fd/N/<../ x 30><marker path>`
/// reads the host's marker file.
fn fd_escape_script(marker: &Path) -> String {
    let up = "../".repeat(30);
    let rel = marker.strip_prefix("/").unwrap().display();
    format!(
        "for n in $(seq 3 63); do \
           [ -e /proc/self/fd/$n ] && echo \"fd $n -> $(readlink /proc/self/fd/$n)\"; \
           cat /proc/self/fd/$n/{up}{rel} 2>/dev/null; \
           (cd /proc/self/fd/$n/../../.. 2>/dev/null && cat ./{up}{rel} 2>/dev/null); \
         done; echo scanned"
    )
}

/// CVE-2024-21626 class (a runtime directory descriptor left open in the container gives the
/// host's filesystem through /proc/self/fd/N/..). In the init (`run`) and in an `exec`'d
/// process, every descriptor 3..63 is tried as a way to the host: no host directory is open,
/// so the host's marker file is never read. `exec --cwd /proc/self/fd/N/../../..` is refused
/// or stays in the container.
///
/// Control: a host directory handed in on purpose (`--preserve-fds 1`) is exactly such a
/// descriptor, and the same script reads the marker through it. Checked with runc's bug put
/// back (an `O_DIRECTORY` descriptor of /sys/fs/cgroup opened without close-on-exec before the
/// clone, and close_range skipped, rebuilt): fd 7 led to the host marker.
#[test]
fn no_host_directory_through_proc_self_fd() {
    let env = TestEnv::new();
    let marker = env.dir().join("host-marker");
    std::fs::write(&marker, "HOST-MARKER\n").unwrap();
    let mut b = env.bundle();
    b.set_sh(&fd_escape_script(&marker));
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.ends_with("scanned\n"), "{out}");
    assert!(
        !out.stdout.contains("HOST-MARKER"),
        "init reached the host: {out}"
    );

    // Control: the same scan with a host directory preserved as fd 3.
    let dirfd = std::fs::File::open(env.dir()).expect("open host dir");
    let id = env.new_id();
    let mut cmd = env.rt().cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        &b.dir().to_string_lossy(),
        &id,
    ]);
    pass_fd(&mut cmd, std::os::fd::AsRawFd::as_raw_fd(&dirfd), 3);
    let ctl = env.rt().output(cmd);
    ctl.ok();
    assert!(
        ctl.stdout.contains("HOST-MARKER"),
        "control: a host directory fd must lead to the host: {ctl}"
    );

    b.set_args(&["sleep", "600"]);
    let c = env.create(&b);
    c.start();
    let ex = env.run(&["exec", c.id(), "sh", "-c", &fd_escape_script(&marker)]);
    ex.ok();
    assert!(ex.stdout.ends_with("scanned\n"), "{ex}");
    assert!(
        !ex.stdout.contains("HOST-MARKER"),
        "exec reached the host: {ex}"
    );
    let up = "../".repeat(30);
    let rel = marker.strip_prefix("/").unwrap().display().to_string();
    for n in 3..=9 {
        let cwd = format!("/proc/self/fd/{n}/../../..");
        let ex = env.run(&[
            "exec",
            "--cwd",
            &cwd,
            c.id(),
            "sh",
            "-c",
            &format!("cat ./{up}{rel} 2>/dev/null; echo done"),
        ]);
        assert!(!ex.stdout.contains("HOST-MARKER"), "exec --cwd {cwd}: {ex}");
    }
    drop(c);
    env.finish();
}

/// A copy of the bundle's /dev setup for attacks through /dev: the config binds a host
/// directory on /dev (the runtime then makes no device nodes there; a volume shared with
/// another container is the same), keeping devpts, shm and mqueue on top.
fn bind_dev_from(b: &mut Bundle, hostdev: &Path) {
    let mounts = b.config_mut()["mounts"].as_array_mut().expect("mounts");
    mounts.retain(|m| m["destination"] != "/dev");
    mounts.insert(
        1,
        json!({"destination": "/dev", "type": "bind", "source": hostdev, "options": ["rbind"]}),
    );
}

/// Puts the host's core_pattern back when dropped.
struct RestoreCorePattern(String);

impl Drop for RestoreCorePattern {
    fn drop(&mut self) {
        let path = "/proc/sys/kernel/core_pattern";
        if std::fs::read_to_string(path).ok().as_deref() != Some(self.0.as_str()) {
            let _ = std::fs::write(path, self.0.trim_end());
        }
    }
}

/// CVE-2025-31133 class (/dev/null swapped for a symlink, so that masking binds another file —
/// e.g. /proc/sys/kernel/core_pattern, writable — over the masked path). Here the container's
/// /dev/null is a symlink to /proc/sys/kernel/core_pattern, and, in a second case, to a host
/// file by its absolute host path. kakuri checks what it masks with (a 1:3 character device)
/// and refuses; core_pattern and the host file keep their contents and nothing is masked with
/// them.
///
/// Control: in a container with the same /dev and no masked paths, /dev/null *is*
/// core_pattern: a runtime binding "/dev/null" by path would bind that file. runc
/// 1.1.5+ds1-1+deb12u1 fails this test (it masks with the symlink's target).
#[test]
fn masking_with_a_dev_null_symlink_is_refused() {
    let env = TestEnv::new();
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    // A vulnerable runtime (Debian's runc 1.1.5, run with KAKURI_BIN) does write the host's
    // core_pattern here: put it back whatever happens, before the assertions report it.
    let _restore = RestoreCorePattern(core_pattern.clone());
    let host_file = env.dir().join("host-file");
    std::fs::write(&host_file, "host\n").unwrap();
    for target in [
        Path::new("/proc/sys/kernel/core_pattern"),
        host_file.as_path(),
    ] {
        let mut b = env.bundle();
        let hostdev = env.dir().join(format!("dev-{}", env.new_id()));
        std::fs::create_dir(&hostdev).unwrap();
        symlink(target, hostdev.join("null")).unwrap();
        bind_dev_from(&mut b, &hostdev);
        b.set_masked_paths(&["/proc/kcore", "/proc/sysrq-trigger", "/proc/timer_list"]);
        b.set_readonly_paths(&[]);
        b.set_sh("echo pwned > /proc/sysrq-trigger; echo pwned > /proc/timer_list");
        let (_, out) = env.run_container(&b, &[]);
        assert!(!out.success(), "{target:?}: {out}");
        assert!(
            out.stderr_has("is not the null device")
                || out.stderr_has("open /dev/null to mask paths"),
            "{target:?}: {out}"
        );
        assert_eq!(
            std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
            core_pattern
        );
        assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
    }

    // Control.
    let mut b = env.bundle();
    let hostdev = env.dir().join("dev-control");
    std::fs::create_dir(&hostdev).unwrap();
    symlink("/proc/sys/kernel/core_pattern", hostdev.join("null")).unwrap();
    bind_dev_from(&mut b, &hostdev);
    b.set_masked_paths(&[]);
    b.set_sh("cat /dev/null");
    let (_, ctl) = env.run_container(&b, &[]);
    ctl.ok();
    assert_eq!(
        ctl.stdout, core_pattern,
        "control: /dev/null is core_pattern"
    );
    env.finish();
}

/// Lazily unmounts what a test mounted on the host, on every exit path.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// CVE-2025-52565 class (/dev/console made a symlink, so that the console bind lands on a file
/// of the attacker's choosing). The image's /dev/console is a symlink to a host file by its
/// absolute host path (and, in a second case, with enough `..` to climb out of the rootfs).
/// The console is set up before pivot_root, so a path-based bind would cover the host file in
/// the container's mount namespace, and with `rootfsPropagation: rshared` on the host too: the
/// host file sits on a shared mount here. kakuri resolves the target inside the rootfs. The
/// container gets its console, and the host file is neither changed nor covered on the host.
///
/// Checked without the defence (the bind made on `<rootfs fd path>/dev/console`, rebuilt):
/// the host saw a devpts mount on the file. Control: a bind on the same path, done by path in
/// a private mount namespace of the host, lands on the host file.
#[test]
fn console_symlink_does_not_reach_the_host() {
    let env = TestEnv::new();
    let shared = env.dir().join("shared");
    std::fs::create_dir(&shared).unwrap();
    let unmount = Unmount(shared.clone());
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mount -t tmpfs tmpfs {0} && mount --make-shared {0}",
            shared.display()
        ))
        .status()
        .unwrap();
    assert!(st.success());
    let host_file = shared.join("host-console-target");
    std::fs::write(&host_file, "host\n").unwrap();
    let rel = format!(
        "{}{}",
        "../".repeat(30),
        host_file.strip_prefix("/").unwrap().display()
    );
    for target in [host_file.to_string_lossy().into_owned(), rel] {
        let mut b = env.bundle();
        // The image's own /dev (no tmpfs over it), where the runtime makes its nodes.
        drop_mount(&mut b, "/dev");
        symlink(&target, b.rootfs().join("dev/console")).unwrap();
        b.set("/linux/rootfsPropagation", json!("rshared"));
        b.set_terminal(true);
        b.set_sh("tty; echo console-done");
        b.write();
        let sock = ConsoleSocket::bind(&env.dir().join(format!("c-{}.sock", env.new_id())));
        let id = env.new_id();
        let out = env.create_raw(
            &b,
            &id,
            &["--console-socket", sock.path().to_str().unwrap()],
        );
        let on_host: Vec<String> = host_mounts_under(env.dir())
            .into_iter()
            .filter(|m| Path::new(m) != shared)
            .collect();
        assert!(
            on_host.is_empty(),
            "{target}: a mount reached the host: {on_host:?}"
        );
        if !out.success() {
            // Refusing the symlink (runc cannot create /dev/console through it after
            // pivot_root) is safe too, as long as nothing reached the host.
            assert!(out.stderr_has("/dev/console"), "{target}: {out}");
            assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
            println!("{target}: the runtime refused the /dev/console symlink");
            continue;
        }
        let c = env.container(&id, &out);
        let (master, _) = sock.receive_master(CMD_TIMEOUT);
        c.start();
        let text = read_pty_until(&master, "console-done", WAIT_TIMEOUT);
        assert!(text.contains("/dev/pts/0"), "{target}: {text:?}");
        assert_eq!(std::fs::read_to_string(&host_file).unwrap(), "host\n");
        drop(c);
    }

    // Control.
    let hostdev = env.dir().join("dev-control");
    std::fs::create_dir(&hostdev).unwrap();
    symlink(&host_file, hostdev.join("console")).unwrap();
    let ctl = naive_in_private_ns(&format!(
        "mount --bind /dev/null {}/console && grep -q ' {} ' /proc/self/mountinfo && echo REACHED",
        hostdev.display(),
        host_file.display()
    ));
    assert_eq!(
        String::from_utf8_lossy(&ctl.stdout),
        "REACHED\n",
        "control: {ctl:?}"
    );
    drop(unmount);
    env.finish();
}

/// CVE-2025-52881 class (a procfs write redirected to another procfs file by a mount: a check
/// that the file written is on procfs does not help). The config binds
/// /proc/<pid>/oom_score_adj of a host process over /proc/sys/kernel/domainname and sets the
/// sysctl kernel.domainname. kakuri writes sysctls through a private procfs handle resolving
/// beneath its root without crossing mounts: the container's UTS namespace gets the value and
/// the host process's oom_score_adj is untouched.
///
/// Control: a write to the same path from inside the container changes the host process's
/// oom_score_adj. Checked without the defence (sysctls written by path after pivot_root,
/// rebuilt): the host process's oom_score_adj became 123.
#[test]
fn sysctl_write_is_not_redirected_to_another_procfs_file() {
    let env = TestEnv::new();
    let mut victim = Command::new("sleep")
        .arg("600")
        .env(ENV_MARKER, env.id())
        .spawn()
        .expect("spawn sleep");
    let adj = format!("/proc/{}/oom_score_adj", victim.id());
    let before = std::fs::read_to_string(&adj).unwrap();
    let mut b = env.bundle();
    b.add_bind(Path::new(&adj), "/proc/sys/kernel/domainname", false, false);
    b.set("/linux/sysctl", json!({"kernel.domainname": "123"}));
    b.set_readonly_paths(&[]);
    b.set_args(&["sleep", "600"]);
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &[]);
    assert_eq!(
        std::fs::read_to_string(&adj).unwrap(),
        before,
        "the sysctl was redirected"
    );
    if !out.success() {
        // runc refuses (most) mounts inside /proc; kakuri may do the same one day.
        out.fails_with("cannot be mounted because it is inside /proc");
        println!("the runtime refused the mount inside /proc: no control to run");
        let _ = victim.kill();
        let _ = victim.wait();
        env.finish();
        return;
    }
    let c = env.container(&id, &out);
    let dn = Command::new("nsenter")
        .args([
            "-t",
            &c.pid().to_string(),
            "-u",
            "cat",
            "/proc/sys/kernel/domainname",
        ])
        .output()
        .expect("nsenter");
    assert_eq!(String::from_utf8_lossy(&dn.stdout), "123\n");
    // Control.
    c.start();
    env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "echo 321 > /proc/sys/kernel/domainname",
    ])
    .ok();
    assert_eq!(
        std::fs::read_to_string(&adj).unwrap(),
        "321\n",
        "control: a write by path lands in the other procfs file"
    );
    drop(c);
    let _ = victim.kill();
    let _ = victim.wait();
    env.finish();
}

/// CVE-2026-41579 class (a /dev symlink in the image makes the runtime's /dev set-up — device
/// nodes, the /dev/fd, /dev/ptmx ... symlinks, the removal of an old ptmx — work on host
/// paths, since it runs before pivot_root). The image's /dev is a symlink to a host directory
/// by its absolute host path, and the config has no /dev mount of its own, so the runtime
/// makes its nodes and links in the image's /dev. kakuri makes them inside the rootfs: the host
/// directory stays empty, and the container has its devices.
///
/// Control: making the /dev/fd link by path, as a path-based runtime would, puts it in the
/// host directory. runc 1.1.5+ds1-1+deb12u1 fails this test (fd, stdin, stdout, stderr made
/// in the host directory).
#[test]
fn dev_symlink_in_the_image_does_not_reach_the_host() {
    let env = TestEnv::new();
    let hostdev = env.dir().join("host-dev");
    std::fs::create_dir(&hostdev).unwrap();
    std::fs::write(hostdev.join("ptmx"), "host ptmx\n").unwrap();
    let mut b = env.bundle();
    let dev = b.rootfs().join("dev");
    std::fs::remove_dir(&dev).unwrap();
    symlink(&hostdev, &dev).unwrap();
    drop_mount(&mut b, "/dev");
    b.set_sh("ls /dev/null /dev/zero /dev/fd/ >/dev/null && echo devices-ok");
    let (_, out) = env.run_container(&b, &[]);
    let mut names: Vec<String> = std::fs::read_dir(&hostdev)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["ptmx"],
        "the runtime worked in the host directory: {out}"
    );
    assert_eq!(
        std::fs::read_to_string(hostdev.join("ptmx")).unwrap(),
        "host ptmx\n"
    );
    out.ok();
    assert_eq!(out.stdout, "devices-ok\n", "{out}");
    // Control.
    symlink("/proc/self/fd", dev.join("fd")).unwrap();
    assert!(
        std::fs::symlink_metadata(hostdev.join("fd")).is_ok(),
        "control: a path-based link lands in the host directory"
    );
    env.finish();
}
