//! Containers without a mount namespace of their own (no `mount` entry in `linux.namespaces`):
//! runtime-spec says they inherit the runtime's (runtime-tools' `linux_ns_itype`). Their mounts
//! are made under a private bind of the rootfs in kakuri's mount namespace, the init enters the
//! rootfs with chroot, and `delete` — or a failed or killed `create` — leaves no mount behind,
//! not even in mount namespaces the rootfs's parent mount propagates to.

use kakuri_runtime_tests::*;
use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Mount points at or under `dir` in this process's mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .expect("read mountinfo")
        .lines()
        .filter(|l| {
            l.split(' ')
                .nth(4)
                .is_some_and(|p| Path::new(p).starts_with(dir))
        })
        .map(String::from)
        .collect()
}

fn sh(cmd: &str) {
    let st = Command::new("sh")
        .args(["-c", cmd])
        .status()
        .expect("run sh");
    assert!(st.success(), "{cmd}: {st}");
}

/// A bundle whose config has no mount namespace and a marker file in its rootfs.
fn shared_bundle(env: &TestEnv) -> Bundle {
    let mut b = env.bundle();
    b.remove_namespace("mount");
    fs::write(b.rootfs().join("marker"), "inside\n").expect("write marker");
    b
}

#[test]
fn container_shares_the_runtimes_mount_namespace_and_delete_removes_its_mounts() {
    let env = TestEnv::new();
    let mut b = shared_bundle(&env);
    fs::write(b.rootfs().join("etc/secret"), "secret\n").expect("write secret");
    b.set_readonly_root(true);
    b.set_masked_paths(&["/etc/secret"]);
    b.set_sh(
        "readlink /proc/self/ns/mnt; cat /marker; cat /etc/secret; \
         touch /new 2>/dev/null || echo read-only; echo ready; exec sleep 600",
    );
    let c = env.create(&b);
    let rootfs = b.rootfs();
    // Made in this (the runtime's) mount namespace, under the rootfs.
    let during = mounts_under(&rootfs);
    assert!(
        during
            .iter()
            .any(|l| l.split(' ').nth(4) == Some(rootfs.join("proc").to_str().unwrap())),
        "no proc mount under the rootfs while the container exists: {during:#?}"
    );
    c.start();
    let out = c.wait_stdout("ready");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], ns_link("self", "mnt"), "{out}");
    assert_eq!(&lines[1..], ["inside", "read-only", "ready"], "{out}");
    // exec enters the container's root too, although there is no mount namespace to join.
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        &format!(
            "cat /marker; test -e {} && echo host-visible || echo contained",
            env.dir().display()
        ),
    ]);
    ex.ok();
    assert_eq!(ex.stdout, "inside\ncontained\n", "{ex}");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    // Mounts stay until delete (the container may be inspected while stopped) ...
    assert!(!mounts_under(&rootfs).is_empty());
    c.delete(false).ok();
    // ... and delete removes every one of them.
    assert_eq!(mounts_under(&rootfs), Vec::<String>::new());
    // The rootfs itself is untouched and writable again from the host.
    assert_eq!(
        fs::read_to_string(rootfs.join("marker")).unwrap(),
        "inside\n"
    );
    fs::write(rootfs.join("new"), "x").expect("rootfs writable after delete");
    env.finish();
}

/// Unmounts (lazily) what the propagation test mounted, on every exit path.
struct Unmount(Vec<PathBuf>);

impl Drop for Unmount {
    fn drop(&mut self) {
        for p in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

/// The rootfs sits on a shared mount with a peer (as on a systemd host, where `/` is shared
/// with other mount namespaces): the bind of the rootfs propagates to the peer, the container's
/// mounts under it must not, and after delete the peer has nothing left either.
#[test]
fn container_mounts_do_not_propagate_to_peers_and_leave_nothing_there() {
    let env = TestEnv::new();
    let shared = env.dir().join("shared");
    let peer = env.dir().join("peer");
    fs::create_dir(&shared).unwrap();
    fs::create_dir(&peer).unwrap();
    let _guard = Unmount(vec![shared.clone(), peer.clone()]);
    sh(&format!(
        "mount -t tmpfs tmpfs {0} && mount --make-shared {0} && mount --bind {0} {1}",
        shared.display(),
        peer.display()
    ));
    let mut b = shared_bundle(&env);
    let rootfs = shared.join("rootfs");
    link_tree(&b.rootfs(), &rootfs);
    b.set("/root/path", json!(rootfs));
    b.set_sh("echo ready; exec sleep 600");
    let c = env.create(&b);
    c.start();
    c.wait_stdout("ready");
    let in_peer = peer.join("rootfs");
    let peer_mounts = mounts_under(&in_peer);
    assert_eq!(
        peer_mounts.len(),
        1,
        "only the rootfs bind itself may reach the peer: {peer_mounts:#?}"
    );
    assert!(mounts_under(&rootfs).len() > 1);
    c.delete(true).ok();
    assert_eq!(mounts_under(&rootfs), Vec::<String>::new());
    assert_eq!(mounts_under(&in_peer), Vec::<String>::new());
    drop(c);
    drop(_guard);
    env.finish();
}

#[test]
fn failed_create_without_mount_namespace_leaves_nothing() {
    let env = TestEnv::new();
    // One failure while mounting, one after every mount is made (the executable lookup), and
    // a user namespace, which cannot mount in kakuri's mount namespace: refused up front.
    let mut bad_mount = shared_bundle(&env);
    bad_mount.add_mount(json!({"destination": "/data", "type": "nosuchfs", "source": "none"}));
    let mut bad_exe = shared_bundle(&env);
    bad_exe.set_args(&["/no/such/program"]);
    let mut user_ns = shared_bundle(&env);
    user_ns.add_user_namespace(100000, 65536);
    for (b, needle) in [
        (&bad_mount, "at \"/data\""),
        (&bad_exe, "/no/such/program"),
        (
            &user_ns,
            "linux.namespaces: a container in a user namespace needs a mount namespace",
        ),
    ] {
        let id = env.new_id();
        let out = env.create_raw(b, &id, &[]);
        out.fails_with(needle);
        assert_eq!(mounts_under(&b.rootfs()), Vec::<String>::new(), "{out}");
        env.run(&["state", &id]).fails_with("does not exist");
    }
    env.finish();
}

#[test]
fn killed_create_without_mount_namespace_is_cleaned_up_by_delete() {
    let env = TestEnv::new();
    let mut b = shared_bundle(&env);
    let flag = env.dir().join("hook.started");
    let hook = env.dir().join("hook.sh");
    b.write_script(
        &hook,
        &format!("#!/bin/sh\necho $$ > {}\nexec sleep 600\n", flag.display()),
    );
    // createRuntime hooks run once the init has made its mounts.
    b.add_hook(
        "createRuntime",
        hook.to_str().unwrap(),
        &["hook.sh"],
        &[],
        None,
    );
    b.write();
    let id = env.new_id();
    let create = env.rt().spawn_in(
        env.rt()
            .cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &id]),
        b.dir(),
    );
    let hook_pid: i32 = wait_for("the hook to start", WAIT_TIMEOUT, || {
        fs::read_to_string(&flag).ok()?.trim().parse().ok()
    });
    assert!(mounts_under(&b.rootfs()).len() > 1);
    // SAFETY: kill with integer arguments on the create process we spawned.
    unsafe { libc::kill(create.pid() as i32, libc::SIGKILL) };
    assert!(!create.wait(CMD_TIMEOUT).success());
    // The hook is the user's program, killed here so that it leaves nothing either.
    // SAFETY: kill with integer arguments on the hook's pid, which it wrote itself.
    unsafe { libc::kill(hook_pid, libc::SIGKILL) };
    env.run(&["delete", "--force", &id]).ok();
    assert_eq!(mounts_under(&b.rootfs()), Vec::<String>::new());
    env.finish();
}

#[test]
fn joining_the_runtimes_own_mount_namespace_is_sharing_it() {
    let env = TestEnv::new();
    let mut b = shared_bundle(&env);
    let own = format!("/proc/{}/ns/mnt", std::process::id());
    b.add_namespace("mount", Some(Path::new(&own)));
    b.set_sh("cat /marker; readlink /proc/self/ns/mnt");
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert_eq!(out.stdout, format!("inside\n{}\n", ns_link("self", "mnt")));
    // The runtime's own root was not pivoted away.
    assert!(Path::new("/proc/self/mountinfo").exists());
    assert!(env.dir().exists());
    assert_eq!(mounts_under(&b.rootfs()), Vec::<String>::new());
    env.finish();
}
