//! What a container process sees of its filesystem and network set-up, where kakuri must match
//! runc: the loopback interface, the working directory, a read-only /dev, tmpfs modes, a mount
//! on "/", `--no-pivot` and the mount table. Every test also passes with
//! `KAKURI_BIN=/usr/sbin/runc`.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::process::{Child, Command, Stdio};

/// A host process holding a namespace made with `unshare(1)`; killed and reaped on drop.
struct NsHolder(Child);

impl NsHolder {
    /// `unshare <flags> sleep 600`, once its namespace exists (polled through /proc).
    fn new(env: &TestEnv, flags: &[&str], kind: &str) -> NsHolder {
        let child = Command::new("unshare")
            .args(flags)
            .args(["sleep", "600"])
            .env(ENV_MARKER, env.id())
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare");
        let h = NsHolder(child);
        let pid = h.0.id().to_string();
        let own = ns_link("self", kind);
        wait_for(
            &format!("unshare to make its {kind} namespace"),
            WAIT_TIMEOUT,
            || {
                let l = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok()?;
                (l.to_string_lossy() != own).then_some(())
            },
        );
        h
    }

    fn ns_path(&self, kind: &str) -> String {
        format!("/proc/{}/ns/{kind}", self.0.id())
    }
}

impl Drop for NsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// 1. loopback

/// A new network namespace gets `lo` up (runc's "loopback" network): flags, operstate, and a TCP
/// exchange over 127.0.0.1 (busybox httpd and wget; the client retries until the server listens). Also in a new user
/// namespace, which then owns the network namespace.
#[test]
fn loopback_is_up_in_a_new_network_namespace() {
    let env = TestEnv::new();
    for userns in [false, true] {
        let mut b = env.bundle();
        if userns {
            b.add_user_namespace(231072, 65536);
        }
        b.set_sh(
            "cat /sys/class/net/lo/flags /sys/class/net/lo/operstate
             mkdir /tmp/www; echo hello-lo > /tmp/www/f
             httpd -f -p 127.0.0.1:5555 -h /tmp/www & l=$!
             i=0
             until got=$(wget -q -O - http://127.0.0.1:5555/f 2>/dev/null); do
                 i=$((i+1)); [ $i -gt 300 ] && break; usleep 10000
             done
             kill $l
             echo got=$got",
        );
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        let mut lines = out.stdout.lines();
        let flags = lines.next().unwrap_or_default();
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("lo flags {flags:?}: {e}: {out}"));
        assert_eq!(
            flags & 0x1,
            0x1,
            "IFF_UP not set on lo (userns {userns}): {out}"
        );
        // A loopback device that is up reports "unknown" (it has no carrier of its own).
        assert_eq!(lines.next(), Some("unknown"), "userns {userns}: {out}");
        assert!(
            out.stdout.contains("got=hello-lo"),
            "no exchange over lo (userns {userns}): {out}"
        );
    }
    env.finish();
}

/// A joined network namespace is left as it is: its `lo`, down, stays down (runc brings up
/// `lo` only in a namespace it makes).
#[test]
fn loopback_of_a_joined_network_namespace_is_left_alone() {
    let env = TestEnv::new();
    let holder = NsHolder::new(&env, &["--net"], "net");
    let mut b = env.bundle();
    b.add_namespace(
        "network",
        Some(std::path::Path::new(&holder.ns_path("net"))),
    );
    b.set_sh("cat /sys/class/net/lo/flags");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    let flags = out.stdout.trim();
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16)
        .unwrap_or_else(|e| panic!("lo flags {flags:?}: {e}: {out}"));
    assert_eq!(
        flags & 0x1,
        0,
        "lo of the joined namespace was brought up: {out}"
    );
    drop(holder);
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. working directory and privileges

/// runc enters `process.cwd` before it drops to the process user: a cwd only root may enter
/// (/root, mode 0700) works for uid 42, for the init and for `exec`. A missing cwd is created.
#[test]
fn cwd_is_entered_before_the_user_changes() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    std::fs::set_permissions(
        b.rootfs().join("root"),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod rootfs/root");
    b.set_user(42, 42, &[]);
    b.set_cwd("/root");
    b.set_sh(
        "echo uid=$(id -u) pwd=$(pwd); ls . >/dev/null 2>&1 || echo cannot-list; echo end; sleep 60",
    );
    let c = env.create(&b);
    c.start();
    // All of it: the listing's verdict comes after the first line.
    let out = c.wait_stdout("end");
    assert!(out.contains("uid=42 pwd=/root"), "{out}");
    // The directory itself stays closed to the user: only entering it went through as root.
    assert!(out.contains("cannot-list"), "{out}");
    let exec = env.run(&["exec", "--user", "42:42", "--cwd", "/root", c.id(), "pwd"]);
    exec.ok();
    assert_eq!(exec.stdout.trim(), "/root", "{exec}");
    drop(c);

    let mut b = env.bundle();
    b.set_user(42, 42, &[]);
    b.set_cwd("/new/dir");
    b.set_sh("pwd; stat -c %u:%a /new/dir");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "/new/dir\n0:755\n", "{out}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 4. tmpfs mode

/// A tmpfs without "mode=" takes the mode of the directory it covers (0750, and 1750 with the
/// sticky bit); over a directory that does not exist yet it keeps tmpfs's default, 1777.
#[test]
fn tmpfs_takes_the_mode_of_the_directory_it_covers() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::new();
    let mut b = env.bundle();
    for (dir, mode) in [("m750", 0o750), ("m1750", 0o1750)] {
        let p = b.rootfs().join(dir);
        std::fs::create_dir(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    for dest in ["/m750", "/m1750", "/missing"] {
        b.add_mount(
            json!({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "size=1m"]}),
        );
    }
    b.set_sh("stat -c %a /m750 /m1750 /missing; grep -c ' /m750 .* - tmpfs ' /proc/self/mountinfo");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, "750\n1750\n1777\n1\n", "{out}");
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. read-only /dev

/// The default spec's /dev tmpfs with "ro" added: /dev is mounted read-write for the devices,
/// devpts and the console, then remounted read-only (a per-mount flag: the tmpfs itself stays
/// rw, as under runc).
#[test]
fn readonly_dev_tmpfs_is_set_up_then_made_read_only() {
    let env = TestEnv::new();
    for terminal in [false, true] {
        let mut b = env.bundle();
        let mounts = b.config_mut()["mounts"].as_array_mut().expect("mounts");
        let dev = mounts
            .iter_mut()
            .find(|m| m["destination"] == "/dev")
            .expect("the default spec mounts /dev");
        dev["options"]
            .as_array_mut()
            .expect("options")
            .push(json!("ro"));
        b.set_terminal(terminal);
        b.set_sh(
            "stat -c '%F %t:%T' /dev/null /dev/zero; test -c /dev/pts/ptmx && echo pts-ok
             touch /dev/x 2>&1; grep ' /dev ' /proc/self/mountinfo | cut -d' ' -f6-",
        );
        let (id, out) = if terminal {
            b.write();
            let sock = ConsoleSocket::bind(&b.dir().join("console.sock"));
            let id = env.new_id();
            let spawned = env.rt().spawn_in(
                env.rt().cmd(&[
                    "run",
                    "-d",
                    "--bundle",
                    b.dir().to_str().expect("utf-8 path"),
                    "--console-socket",
                    sock.path().to_str().expect("utf-8 path"),
                    &id,
                ]),
                b.dir(),
            );
            let (master, _) = sock.receive_master(WAIT_TIMEOUT);
            let text = read_pty_until(&master, "tmpfs", WAIT_TIMEOUT);
            let out = spawned.wait(CMD_TIMEOUT);
            (id, (out, text))
        } else {
            let (id, out) = env.run_container(&b, &[]);
            let text = out.stdout.clone();
            (id, (out, text))
        };
        let (out, text) = out;
        out.ok();
        assert!(
            text.contains("character special file 1:3")
                && text.contains("character special file 1:5")
                && text.contains("pts-ok"),
            "{id} (terminal {terminal}): {text}\n{out}"
        );
        assert!(
            text.contains("Read-only file system"),
            "{id}: {text}\n{out}"
        );
        assert!(
            text.contains("ro,nosuid - tmpfs tmpfs rw,"),
            "{id}: /dev must be a read-only mount of a rw tmpfs: {text}\n{out}"
        );
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 6. a mount on "/"

/// A mount whose destination is "/" becomes the container's root, as under runc (its later
/// mounts and pivot_root resolve the rootfs path to the top mount): the process sees it, the
/// mounts that follow it land on it, and root.readonly makes it read-only — with and without
/// pivot_root. Nothing writable is left stacked over the root.
#[test]
fn a_mount_on_slash_becomes_the_root_and_root_readonly_holds() {
    let env = TestEnv::new();
    for extra in [&[][..], &["--no-pivot"][..]] {
        let mut b = env.bundle();
        let alt = b.dir().join("alt");
        link_tree(&b.rootfs(), &alt);
        std::fs::write(alt.join("ALT-MARKER"), "x").expect("write marker");
        b.set_readonly_root(true);
        let mounts = b.config_mut()["mounts"].as_array_mut().expect("mounts");
        mounts.insert(
            0,
            json!({"destination": "/", "type": "bind", "source": alt, "options": ["rbind"]}),
        );
        b.set_sh(
            "test -e /ALT-MARKER && echo alt-is-root
             touch /rootwrite 2>&1
             awk '$5 == \"/\" { print $6 }' /proc/self/mountinfo
             awk '$5 == \"/proc\" { print \"proc\" }' /proc/self/mountinfo",
        );
        let (_, out) = env.run_container(&b, extra);
        out.ok();
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.first(), Some(&"alt-is-root"), "{extra:?}: {out}");
        assert!(
            out.stdout.contains("Read-only file system"),
            "{extra:?}: {out}"
        );
        assert!(!alt.join("rootwrite").exists() && !b.rootfs().join("rootwrite").exists());
        // One mount on "/", read-only; /proc mounted once, on it.
        let roots: Vec<&&str> = lines.iter().filter(|l| l.starts_with("r")).collect();
        assert_eq!(roots.len(), 1, "{extra:?}: mounts on /: {out}");
        assert!(
            roots[0].starts_with("ro,") || *roots[0] == "ro",
            "{extra:?}: {out}"
        );
        assert_eq!(
            lines.iter().filter(|l| **l == "proc").count(),
            1,
            "{extra:?}: {out}"
        );
    }
    env.finish();
}

/// Without a mount namespace of its own a mount on "/" would cover the rootfs in the
/// runtime's namespace: refused (runc fails such a config too), and nothing is left.
#[test]
fn a_mount_on_slash_without_a_mount_namespace_is_refused() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let alt = b.dir().join("alt");
    link_tree(&b.rootfs(), &alt);
    b.remove_namespace("mount");
    b.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .insert(
            0,
            json!({"destination": "/", "type": "bind", "source": alt, "options": ["rbind"]}),
        );
    let (_, out) = env.run_container(&b, &[]);
    assert!(!out.success(), "{out}");
    if !env.rt().bin().ends_with("runc") {
        assert!(
            out.stderr_has("mounts[0].destination: a mount on \\\"/\\\" needs a mount namespace"),
            "{out}"
        );
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// 5. --no-pivot

/// The nested attack: a new user, mount, pid and network namespace, then fresh proc and sysfs
/// mounts. "in-userns" shows the namespaces were made, so a refused mount is the kernel's
/// mount_too_revealing check and not a failed unshare.
const NESTED_MOUNTS: &str = "unshare -Urmpfn sh -c 'echo in-userns
    mount -t proc proc /mnt && echo PROC-MOUNTED
    mount -t sysfs sysfs /mnt && echo SYSFS-MOUNTED'; echo done";

/// Without pivot_root the old root stays in the container's mount namespace; a full host proc
/// or sysfs there lets a process in a nested user namespace mount a fresh, unmasked one. runc's
/// msMoveRoot detaches those before the move; so must kakuri: the nested mounts fail for an
/// unprivileged user, for root with CAP_SYS_ADMIN and in a user namespace (where the host's
/// mounts are locked and get covered), and the container's mount table is the
/// same as with pivot_root. Positive control: the same nested mount works on this kernel where
/// a full proc is visible (a fresh user+mount namespace of the test, on the host).
#[test]
fn no_pivot_hides_host_proc_and_sysfs_from_nested_user_namespaces() {
    let env = TestEnv::new();
    let target = env.dir().join("procmnt");
    std::fs::create_dir(&target).expect("mkdir");
    let control = Command::new("unshare")
        .args(["-Urmpf", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t proc proc {} && echo PROC-MOUNTED",
            target.display()
        ))
        .env(ENV_MARKER, env.id())
        .stdin(Stdio::null())
        .output()
        .expect("run unshare");
    let control_out = String::from_utf8_lossy(&control.stdout);
    assert!(
        control_out.contains("PROC-MOUNTED"),
        "positive control: a nested user namespace cannot mount proc on this host even with a \
         full proc visible, so the attack below proves nothing: {control:?}"
    );

    let mut tables = Vec::new();
    for extra in [&["--no-pivot"][..], &[][..]] {
        for (root, userns) in [(false, false), (true, false), (false, true)] {
            let mut b = env.bundle();
            if userns {
                // The host's mounts are locked in the container's mount namespace: they
                // cannot be unmounted there and are covered instead.
                b.add_user_namespace(231072, 65536);
            }
            if root {
                for set in ["bounding", "effective", "permitted"] {
                    let caps = b.config_mut()["process"]["capabilities"][set]
                        .as_array_mut()
                        .expect("capability set");
                    caps.push(json!("CAP_SYS_ADMIN"));
                    caps.push(json!("CAP_SETFCAP"));
                }
            } else {
                b.set_user(1000, 1000, &[]);
            }
            b.set_sh(&format!(
                "{NESTED_MOUNTS}; echo ===; cut -d' ' -f4- /proc/self/mountinfo"
            ));
            let (_, out) = env.run_container(&b, extra);
            out.ok();
            let (attack, table) = out.stdout.split_once("===\n").expect("separator");
            assert!(
                attack.contains("in-userns") && attack.contains("done"),
                "{extra:?} root={root} userns={userns}: the nested namespaces were not made: {out}"
            );
            assert!(
                !attack.contains("PROC-MOUNTED") && !attack.contains("SYSFS-MOUNTED"),
                "{extra:?} root={root} userns={userns}: a nested user namespace mounted proc/sysfs: {out}"
            );
            tables.push(mount_points_and_types(table));
        }
    }
    // --no-pivot lists the same mounts as pivot_root: no host mount.
    for i in 0..3 {
        assert_eq!(
            tables[i],
            tables[i + 3],
            "mount points and types with --no-pivot vs pivot_root (case {i})"
        );
    }
    // The host's own proc and sysfs are untouched (the unmounts did not propagate).
    assert!(std::path::Path::new("/proc/self/mountinfo").exists());
    assert!(std::path::Path::new("/sys/kernel").exists());
    env.finish();
}

/// Mount point and filesystem type of every line of `cut -d' ' -f4- mountinfo` output.
fn mount_points_and_types(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .map(|l| {
            let point = l.split(' ').nth(1).unwrap_or_default();
            let fstype = l.split(" - ").nth(1).unwrap_or_default().split(' ').next();
            format!("{point} {}", fstype.unwrap_or_default())
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 7. the mount table

/// `cut -d' ' -f4-` of mountinfo with the bundle path and the container id replaced and peer
/// group numbers dropped: root, mount point, options, propagation tags, type, source, super
/// options — in mount order.
fn normalised_mountinfo(text: &str, bundle: &std::path::Path, id: &str) -> Vec<String> {
    let bundle = bundle.to_string_lossy();
    text.lines()
        .map(|l| {
            let l = l.replace(bundle.as_ref(), "<bundle>").replace(id, "<id>");
            let (left, right) = l.split_once(" - ").unwrap_or((&l, ""));
            let mut f: Vec<String> = left.split(' ').skip(3).map(str::to_string).collect();
            for tag in f.iter_mut().skip(3) {
                if let Some((name, _)) = tag.split_once(':') {
                    *tag = name.to_string();
                }
            }
            format!("{} - {right}", f.join(" "))
        })
        .collect()
}

/// The container of the default spec (read-only root), with and without a user namespace, has
/// the mount table runc gives the same bundle: same mounts in the same order, same options,
/// super options and propagation (on cgroup v1: the tmpfs on /sys/fs/cgroup stays rw, the
/// named systemd hierarchy has source "systemd", no v2 hierarchy under it; default devices
/// bound from the host in runc's order).
#[test]
fn default_spec_mount_table_matches_runc() {
    let runc = std::path::Path::new("/usr/sbin/runc");
    if !runc.is_file() {
        println!("skipped: /usr/sbin/runc is not installed, there is nothing to compare with");
        return;
    }
    let env = TestEnv::new();
    for userns in [false, true] {
        let mut b = env.bundle();
        b.set_readonly_root(true);
        if userns {
            b.add_user_namespace(231072, 65536);
        }
        b.set_args(&["cat", "/proc/self/mountinfo"]);
        let (id, out) = env.run_container(&b, &[]);
        out.ok();
        let ours = normalised_mountinfo(&out.stdout, b.dir(), &id);
        let rid = env.new_id();
        let mut cmd = Command::new(runc);
        cmd.arg("--root").arg(env.dir().join("runc-root"));
        cmd.args(["run", "--bundle"]).arg(b.dir()).arg(&rid);
        cmd.env(ENV_MARKER, env.id()).stdin(Stdio::null());
        let rout = env.rt().output(cmd);
        rout.ok();
        let theirs = normalised_mountinfo(&rout.stdout, b.dir(), &rid);
        assert_eq!(
            ours.join("\n"),
            theirs.join("\n"),
            "mount table vs runc's (userns {userns}); left: {}, right: runc",
            env.rt().bin().display()
        );
    }
    env.finish();
}

// ---------------------------------------------------------------------------------------------
// namespaces made in a joined user namespace

/// A container that joins a user namespace (and its pid namespace) by path gets its new mount,
/// network, UTS and IPC namespaces owned by that user namespace, as under runc (whose nsexec
/// joins first and unshares after): its hostname is set, `lo` brought up, its mounts made. Made by
/// the clone instead, they belonged to the runtime's user namespace and sethostname failed.
#[test]
fn new_namespaces_belong_to_a_joined_user_namespace() {
    let env = TestEnv::new();
    let mut b1 = env.bundle();
    b1.add_user_namespace(231072, 65536);
    b1.set_args(&["sleep", "60"]);
    let first = env.create(&b1);
    let pid = first.pid();

    let mut b2 = env.bundle();
    b2.remove_namespace("pid");
    b2.add_namespace(
        "user",
        Some(std::path::Path::new(&format!("/proc/{pid}/ns/user"))),
    );
    b2.add_namespace(
        "pid",
        Some(std::path::Path::new(&format!("/proc/{pid}/ns/pid"))),
    );
    // runc 1.1 wants the mappings even for a joined user namespace; they are the joined one's.
    let map = json!([{"containerID": 0, "hostID": 231072, "size": 65536}]);
    b2.set("/linux/uidMappings", map.clone());
    b2.set("/linux/gidMappings", map);
    b2.set_hostname("joined-userns");
    b2.set_sh("hostname; cat /sys/class/net/lo/operstate; cat /proc/self/uid_map");
    let (_, out) = env.run_container(&b2, &[]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines.first(), Some(&"joined-userns"), "{out}");
    assert_eq!(lines.get(1), Some(&"unknown"), "lo is not up: {out}");
    assert!(
        lines
            .get(2)
            .is_some_and(|l| l.split_whitespace().eq(["0", "231072", "65536"])),
        "{out}"
    );
    drop(first);
    env.finish();
}

/// A tmpfs mounted by the test on the host; unmounted on drop.
struct HostTmpfs(std::path::PathBuf);

impl HostTmpfs {
    fn new(dir: std::path::PathBuf, options: &str) -> HostTmpfs {
        std::fs::create_dir_all(&dir).expect("mkdir");
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(&dir)
            .status()
            .expect("run mount");
        assert!(st.success(), "mount tmpfs on {}", dir.display());
        HostTmpfs(dir)
    }
}

impl Drop for HostTmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// A bind from `mounts[]` is remounted with the flags its options ask for, as runc does
/// ("mount --bind -o ..."): a nosuid,nodev,noatime source bound "ro" is "ro,noatime" inside
/// (the atime mode is kept), and bound without flags it keeps all of its own.
#[test]
fn bind_mount_options_replace_the_source_flags() {
    let env = TestEnv::new();
    let src = HostTmpfs::new(env.dir().join("src"), "nosuid,nodev,noatime,size=1m");
    let mut b = env.bundle();
    b.add_bind(&src.0, "/mnt", true, true);
    b.add_bind(&src.0, "/run", false, true);
    b.set_sh("awk '$5 == \"/mnt\" || $5 == \"/run\" { print $5, $6 }' /proc/self/mountinfo");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(
        out.stdout, "/mnt ro,noatime\n/run rw,nosuid,nodev,noatime\n",
        "{out}"
    );
    drop(src);
    env.finish();
}
