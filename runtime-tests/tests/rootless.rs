//! Rootless: kakuri run by an unprivileged user (`kakuri-rl`, made by
//! `runtime-tests/setup-rootless-user`, which `setup-host` runs), compared with runc 1.1 run by
//! the same user where both can. Covers the default state root under `$XDG_RUNTIME_DIR`, the
//! lifecycle, `exec`, a terminal through `--console-socket`, mounts, cgroups left out (and
//! limits refused) as runc's rootless cgroup manager does, the device rules skipped, id maps of
//! several ranges through newuidmap/newgidmap, and `spec --rootless`.

use kakuri_runtime_tests::*;
use serde_json::{json, Value};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// The unprivileged user of these tests.
const USER: &str = "kakuri-rl";
const RUNC: &str = "/usr/sbin/runc";

fn user_env() -> TestEnv {
    TestEnv::new().as_user(USER)
}

fn runc_env() -> TestEnv {
    TestEnv::with_runtime(Path::new(RUNC)).as_user(USER)
}

/// `spec --rootless` as the user, into a fresh directory of the test.
fn rootless_spec(env: &TestEnv, bin: &Path, name: &str) -> Value {
    let dir = env.dir().join(format!("{name}-{}", unique_id()));
    fs::create_dir(&dir).expect("mkdir spec dir");
    let u = env.rt().user().expect("a rootless env");
    std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid)).expect("chown spec dir");
    let mut cmd = Command::new(bin);
    cmd.args(["spec", "--rootless", "--bundle"]).arg(&dir);
    u.apply(&mut cmd);
    let out = cmd.output().expect("run spec --rootless");
    assert!(
        out.status.success(),
        "{} spec --rootless: {}",
        bin.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    read_json(&dir.join("config.json"))
}

/// A bundle made from kakuri's `spec --rootless` (as the user), with the test defaults.
fn rootless_bundle(env: &TestEnv, spec: &Value) -> Bundle {
    let mut b = env.bundle();
    let keep_env = b.config()["process"]["env"].clone();
    let mut cfg = spec.clone();
    cfg["process"]["env"] = keep_env;
    cfg["process"]["terminal"] = json!(false);
    cfg["root"] = json!({"path": "rootfs", "readonly": false});
    *b.config_mut() = cfg;
    b.set_args(&["true"]);
    b
}

fn kakuri_spec(env: &TestEnv) -> Value {
    rootless_spec(env, runtime_bin(), "spec-kakuri")
}

/// What a process reports about its identity and mappings.
const ID_REPORT: &str = "echo uid_map=$(cat /proc/self/uid_map); echo gid_map=$(cat /proc/self/gid_map); echo id=$(id -u):$(id -g); echo setgroups=$(cat /proc/self/setgroups)";

fn normalized_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn lifecycle_create_start_exec_kill_delete_as_an_unprivileged_user() {
    let env = user_env();
    let spec = kakuri_spec(&env);
    let mut b = rootless_bundle(&env, &spec);
    b.set_sh("echo ready > /tmp/ready; sleep 60");
    let c = env.create(&b);
    assert_eq!(c.status(), "created");
    let uid = env.rt().user().unwrap().uid;
    // The state lives in the user's --root, owned by the user.
    let st = fs::metadata(env.rt().root().join(c.id())).expect("state dir");
    assert_eq!(st.uid(), uid);
    c.start();
    c.wait_status("running");
    let st = c.state();
    assert_eq!(st["status"], "running");
    let pid = c.pid();
    let map = fs::read_to_string(format!("/proc/{pid}/uid_map")).expect("uid_map of the init");
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", &uid.to_string(), "1"]
    );
    // exec joins the user namespace first (through an intermediate process: an unprivileged
    // runtime may not join the container's pid namespace itself).
    let out = env.run(&["exec", c.id(), "sh", "-c", ID_REPORT]);
    out.ok();
    let lines = normalized_lines(&out.stdout);
    assert!(lines.contains(&format!("uid_map= 0 {uid} 1")), "{lines:?}");
    assert!(lines.contains(&"id=0:0".to_string()), "{lines:?}");
    assert!(lines.contains(&"setgroups=deny".to_string()), "{lines:?}");
    env.run(&["exec", c.id(), "sh", "-c", "exit 7"]).code_is(7);
    let out = env.run(&["exec", c.id(), "cat", "/tmp/ready"]);
    assert_eq!(out.ok().stdout, "ready\n");
    // No freezer cgroup of its own: pause is refused with runc's reason.
    c.cmd("pause", &[])
        .fails_with("cannot toggle freezer: cgroups not configured for container");
    assert_eq!(c.status(), "running");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.delete(false).ok();
    assert!(!env.rt().root().join(c.id()).exists());
    drop(c);
    env.finish();
}

#[test]
fn default_root_is_xdg_runtime_dir_for_kakuri_as_for_runc() {
    for (bin, name) in [(runtime_bin(), "kakuri"), (Path::new(RUNC), "runc")] {
        let env = TestEnv::with_runtime(bin).as_user(USER);
        let spec = kakuri_spec(&env);
        let b = rootless_bundle(&env, &spec);
        b.write();
        let id = env.new_id();
        let mut create = env.rt().bare_cmd(&["create", "--bundle"]);
        create.arg(b.dir()).arg(&id);
        env.rt().output(create).ok();
        let root = env.rt().user().unwrap().xdg_runtime_dir.join(name);
        let meta = fs::metadata(&root);
        let state_there = root.join(&id).is_dir();
        let mut del = env.rt().bare_cmd(&["delete", "--force"]);
        del.arg(&id);
        let deleted = env.rt().output(del);
        if root.join(&id).exists() || !deleted.success() {
            // Whatever went wrong, leave nothing: delete it in whichever root it went to.
            let xdg = &env.rt().user().unwrap().xdg_runtime_dir;
            for dir in fs::read_dir(xdg).into_iter().flatten().flatten() {
                let mut del = env.rt().bare_cmd(&["--root"]);
                del.arg(dir.path()).args(["delete", "--force"]).arg(&id);
                let _ = env.rt().output(del);
            }
        }
        let meta = meta.unwrap_or_else(|e| panic!("{name}: {root:?}: {e}"));
        assert_eq!(
            meta.permissions().mode() & 0o7777,
            0o1700,
            "{name}: {root:?}"
        );
        assert!(state_there, "{name}: no state in {root:?}");
        deleted.ok();
        assert!(!root.join(&id).exists(), "{name}: state left in {root:?}");
        env.finish();
    }
}

#[test]
fn root_caller_keeps_run_kakuri_whatever_xdg_runtime_dir_says() {
    let env = TestEnv::new();
    let xdg = env.dir().join("xdg-root");
    fs::create_dir(&xdg).unwrap();
    let mut cmd = env.rt().bare_cmd(&["list", "-q"]);
    cmd.env("XDG_RUNTIME_DIR", &xdg).env("USER", "root");
    env.rt().output(cmd).ok();
    assert!(
        !xdg.join("kakuri").exists(),
        "root in the initial user namespace must use /run/kakuri"
    );
    env.finish();
}

#[test]
fn run_with_a_terminal_through_the_console_socket() {
    let env = user_env();
    let spec = kakuri_spec(&env);
    let mut b = rootless_bundle(&env, &spec);
    b.set_terminal(true);
    b.set_sh("echo tty=$(tty); echo term-done; sleep 60");
    let sock_path = env.dir().join("console.sock");
    let sock = ConsoleSocket::bind(&sock_path);
    let u = env.rt().user().unwrap();
    std::os::unix::fs::chown(&sock_path, Some(u.uid), Some(u.gid)).unwrap();
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &["--console-socket", sock_path.to_str().unwrap()]);
    out.ok();
    let c = env.container(&id, &out);
    let (master, _) = sock.receive_master(CMD_TIMEOUT);
    c.start();
    let text = read_pty_until(&master, "term-done", WAIT_TIMEOUT);
    assert!(text.contains("tty=/dev/pts/0"), "{text:?}");
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.delete(false).ok();
    drop(c);
    env.finish();
}

#[test]
fn mounts_bind_tmpfs_mqueue_sysfs_devpts_and_devices_in_the_user_namespace() {
    let env = user_env();
    let spec = kakuri_spec(&env);
    let mut b = rootless_bundle(&env, &spec);
    let u = env.rt().user().unwrap().clone();
    let data = env.dir().join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join("in"), "from-host\n").unwrap();
    std::os::unix::fs::chown(&data, Some(u.uid), Some(u.gid)).unwrap();
    b.add_bind(&data, "/data", false, false);
    b.add_bind(&data, "/data-ro", true, false);
    b.add_mount(
        json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "size=1m"]}),
    );
    // A real sysfs needs the network namespace's owner: kakuri falls back to a bind, as runc.
    for m in b.config_mut()["mounts"].as_array_mut().unwrap() {
        if m["destination"] == "/sys" {
            *m = json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                        "options": ["nosuid", "noexec", "nodev", "ro"]});
        }
    }
    // Device nodes cannot be made in a user namespace: they are bound from the host.
    b.config_mut()["linux"]["devices"] = json!([{"path": "/dev/kmsg", "type": "c",
        "major": 1, "minor": 11, "fileMode": 420, "uid": 0, "gid": 0}]);
    // Device rules need privileges: the rootless cgroup manager skips them, as runc's.
    b.config_mut()["linux"]["resources"] = json!({"devices": [{"allow": false, "access": "rwm"}]});
    b.set_sh(
        "cat /data/in; echo written > /data/out; \
         echo x > /data-ro/no 2>/dev/null || echo ro-refused; \
         echo t > /scratch/t && echo tmpfs-ok; \
         grep -q ' /dev/mqueue mqueue ' /proc/mounts && echo mqueue-ok; \
         grep -q ' /dev/pts devpts ' /proc/mounts && echo devpts-ok; \
         test -d /sys/kernel && echo sysfs-ok; \
         test -c /dev/kmsg && grep -q ' /dev/kmsg ' /proc/mounts && echo devnode-ok",
    );
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    for want in [
        "from-host",
        "ro-refused",
        "tmpfs-ok",
        "mqueue-ok",
        "devpts-ok",
        "sysfs-ok",
        "devnode-ok",
    ] {
        assert!(out.stdout.lines().any(|l| l == want), "{want}: {out}");
    }
    let written = fs::metadata(data.join("out")).expect("/data/out written through the bind");
    assert_eq!(
        written.uid(),
        u.uid,
        "container root is the user on the host"
    );
    env.finish();
}

#[test]
fn cgroups_are_left_out_and_limits_refused_as_by_runc() {
    let kakuri = user_env();
    let runc = runc_env();
    for env in [&kakuri, &runc] {
        let spec = kakuri_spec(env);
        let name = env.rt().bin().display().to_string();
        // No limits, no path: runs without a cgroup of its own (the leak check sees none).
        let mut b = rootless_bundle(env, &spec);
        b.set_sh("cat /proc/self/cgroup");
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        // A limit cannot be honoured: the error says why, nothing is left behind.
        let mut b = rootless_bundle(env, &spec);
        b.config_mut()["linux"]["resources"] = json!({"memory": {"limit": 67108864}});
        let id = env.new_id();
        env.create_raw(&b, &id, &[])
            .fails_with("cannot set memory limit: container could not join or create cgroup");
        assert!(!env.rt().root().join(&id).exists(), "{name}: state left");
        // An explicit cgroupsPath must be usable: a permission error is fatal.
        let mut b = rootless_bundle(env, &spec);
        b.set_cgroups_path(&format!("/{}", env.id()));
        let id = env.new_id();
        env.create_raw(&b, &id, &[]).fails_with("permission denied");
        assert!(!env.rt().root().join(&id).exists(), "{name}: state left");
    }
    // --rootless false: cgroup errors are not ignored.
    let spec = kakuri_spec(&kakuri);
    let b = rootless_bundle(&kakuri, &spec);
    b.write();
    let id = kakuri.new_id();
    let mut cmd = kakuri.rt().bare_cmd(&["--rootless", "false", "--root"]);
    cmd.arg(kakuri.rt().root())
        .args(["create", "--bundle"])
        .arg(b.dir())
        .arg(&id);
    kakuri
        .rt()
        .output(cmd)
        .fails_with("create cgroup: mkdir /sys/fs/cgroup/");
    kakuri
        .run(&["--rootless", "maybe", "list"])
        .fails_with("--rootless");
    kakuri.finish();
    runc.finish();
}

/// The subordinate ranges of the test user, from /etc/subuid or /etc/subgid.
fn subid_range(file: &str) -> (u32, u32) {
    let text = fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == USER).then(|| (f[1].parse().unwrap(), f[2].parse().unwrap()))
        })
        .unwrap_or_else(|| {
            panic!("{file} has no range for {USER}: run runtime-tests/setup-rootless-user")
        })
}

#[test]
fn several_ranges_go_through_newuidmap_as_with_runc() {
    let (sub_uid, _) = subid_range("/etc/subuid");
    let (sub_gid, _) = subid_range("/etc/subgid");
    let mut reports = Vec::new();
    for env in [user_env(), runc_env()] {
        let spec = kakuri_spec(&env);
        let u = env.rt().user().unwrap().clone();
        let mut b = rootless_bundle(&env, &spec);
        b.config_mut()["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": u.uid, "size": 1},
            {"containerID": 1, "hostID": sub_uid, "size": 65536}]);
        b.config_mut()["linux"]["gidMappings"] = json!([
            {"containerID": 0, "hostID": u.gid, "size": 1},
            {"containerID": 1, "hostID": sub_gid, "size": 65536}]);
        b.set_user(1000, 1000, &[]);
        b.set_sh(ID_REPORT);
        let (_, out) = env.run_container(&b, &[]);
        out.ok();
        reports.push(normalized_lines(&out.stdout));
        env.finish();
    }
    let want_uid = format!("uid_map= 0 {} 1 1 {sub_uid} 65536", reports_user_uid());
    assert!(reports[0].contains(&want_uid), "{:?}", reports[0]);
    assert!(
        reports[0].contains(&"id=1000:1000".to_string()),
        "{:?}",
        reports[0]
    );
    assert_eq!(reports[0], reports[1], "kakuri vs runc");
}

fn reports_user_uid() -> u32 {
    let out = Command::new("id").args(["-u", USER]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
fn a_range_outside_etc_subuid_is_refused_naming_the_file_and_range() {
    let env = user_env();
    let spec = kakuri_spec(&env);
    let u = env.rt().user().unwrap().clone();
    let (sub_uid, count) = subid_range("/etc/subuid");
    let outside = sub_uid + count + 1000;
    let mut b = rootless_bundle(&env, &spec);
    b.config_mut()["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": u.uid, "size": 1},
        {"containerID": 1, "hostID": outside, "size": 10}]);
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &[]);
    out.fails_with("linux.uidMappings");
    assert!(out.stderr_has("/etc/subuid"), "{out}");
    assert!(
        out.stderr_has(&format!("{outside}-{}", outside + 9)),
        "{out}"
    );
    assert!(!env.rt().root().join(&id).exists(), "state left");
    env.finish();
}

#[test]
fn spec_rootless_is_runcs_template() {
    let env = user_env();
    let ours = kakuri_spec(&env);
    let theirs = rootless_spec(&env, Path::new(RUNC), "spec-runc");
    let u = env.rt().user().unwrap();
    // Accepted differences: the hostname, the spec version, and kakuri's default cgroup
    // namespace (also in its non-rootless template).
    let ns = |v: &Value| {
        let mut n: Vec<String> = v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap().to_string())
            .filter(|t| t != "cgroup")
            .collect();
        n.sort();
        n
    };
    assert_eq!(ns(&ours), ns(&theirs));
    assert!(!ns(&ours).contains(&"network".to_string()));
    for key in ["process", "root", "mounts"] {
        assert_eq!(ours[key], theirs[key], "{key}");
    }
    for key in [
        "uidMappings",
        "gidMappings",
        "maskedPaths",
        "readonlyPaths",
        "resources",
    ] {
        assert_eq!(ours["linux"][key], theirs["linux"][key], "linux.{key}");
    }
    assert_eq!(
        ours["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": u.uid, "size": 1}])
    );
    env.finish();
}

/// Rootless podman's case: kakuri runs as uid 0 of a user namespace it was started in (here
/// `unshare --map-root-user`), and the container asks for no user namespace of its own: the
/// state goes to `$XDG_RUNTIME_DIR/kakuri`, cgroups are left out, and device nodes are bound
/// from the host (no mknod in a user namespace), as runc does.
#[test]
fn uid_0_in_a_user_namespace_without_a_new_one_for_the_container() {
    for (bin, name) in [(runtime_bin(), "kakuri"), (Path::new(RUNC), "runc")] {
        let env = TestEnv::with_runtime(bin).as_user(USER);
        let spec = kakuri_spec(&env);
        let mut b = rootless_bundle(&env, &spec);
        b.remove_namespace("user");
        b.remove("/linux/uidMappings");
        b.remove("/linux/gidMappings");
        b.set_sh("id -u; test -c /dev/null && echo > /dev/null && echo devices-ok");
        b.write();
        let id = env.new_id();
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "--"]).arg(bin);
        cmd.args(["run", "--bundle"]).arg(b.dir()).arg(&id);
        cmd.env(ENV_MARKER, env.id());
        env.rt().user().unwrap().apply(&mut cmd);
        let out = env.rt().output(cmd);
        out.ok();
        assert_eq!(out.stdout, "0\ndevices-ok\n", "{name}: {out}");
        let root = env.rt().user().unwrap().xdg_runtime_dir.join(name);
        assert!(root.is_dir(), "{name}: no default root {root:?}");
        assert!(!root.join(&id).exists(), "{name}: state left");
        env.finish();
    }
}

/// What needs CAP_SYS_RESOURCE fails clearly, as under runc (which fails too), and leaves
/// nothing: an oom_score_adj below the caller's, a hard rlimit above the caller's.
#[test]
fn oom_score_adj_and_rlimits_beyond_the_callers_fail_clearly() {
    for bin in [runtime_bin(), Path::new(RUNC)] {
        let env = TestEnv::with_runtime(bin).as_user(USER);
        let spec = kakuri_spec(&env);
        let own: i32 = fs::read_to_string("/proc/self/oom_score_adj")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let mut b = rootless_bundle(&env, &spec);
        b.set("/process/oomScoreAdj", json!(own - 100));
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        assert!(!out.success(), "{out}");
        if bin == runtime_bin() {
            out.fails_with("process.oomScoreAdj");
            assert!(out.stderr_has("below the caller's"), "{out}");
        }
        assert!(!env.rt().root().join(&id).exists(), "state left");
        let mut b = rootless_bundle(&env, &spec);
        b.set_rlimit("RLIMIT_NOFILE", 1024, u64::from(u32::MAX));
        let id = env.new_id();
        let out = env.create_raw(&b, &id, &[]);
        out.fails_with("error setting rlimit type 7");
        if bin == runtime_bin() {
            assert!(out.stderr_has("CAP_SYS_RESOURCE"), "{out}");
        }
        assert!(!env.rt().root().join(&id).exists(), "state left");
        env.finish();
    }
}

/// Id maps of two ranges (the user as root, then its subordinate ids), as `several_ranges_*`.
fn map_two_ranges(b: &mut Bundle, u: &RunAs) {
    let (sub_uid, _) = subid_range("/etc/subuid");
    let (sub_gid, _) = subid_range("/etc/subgid");
    b.config_mut()["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": u.uid, "size": 1},
        {"containerID": 1, "hostID": sub_uid, "size": 65536}]);
    b.config_mut()["linux"]["gidMappings"] = json!([
        {"containerID": 0, "hostID": u.gid, "size": 1},
        {"containerID": 1, "hostID": sub_gid, "size": 65536}]);
}

/// `exec --user` to an id of the subordinate range, and `exec -t` through a console socket,
/// as the user: what kakuri and runc report must be the same.
#[test]
fn exec_as_another_user_and_with_a_terminal_over_several_ranges() {
    let (sub_uid, _) = subid_range("/etc/subuid");
    let mut reports = Vec::new();
    for bin in [runtime_bin(), Path::new(RUNC)] {
        let env = TestEnv::with_runtime(bin).as_user(USER);
        let name = bin.display().to_string();
        let spec = kakuri_spec(&env);
        let u = env.rt().user().unwrap().clone();
        let mut b = rootless_bundle(&env, &spec);
        map_two_ranges(&mut b, &u);
        b.set_args(&["sleep", "600"]);
        let c = env.create(&b);
        c.start();
        c.wait_status("running");
        let out = env.run(&[
            "exec",
            "--user",
            "1000:1000",
            c.id(),
            "sh",
            "-c",
            "id -u; id -g; cat /proc/self/uid_map; echo x > /tmp/by-1000",
        ]);
        out.ok();
        let lines = normalized_lines(&out.stdout);
        assert_eq!(lines[..2], ["1000", "1000"], "{name}: {out}");
        // The file it wrote is owned on the host by the matching subordinate id.
        let file = b.rootfs().join("tmp/by-1000");
        assert_eq!(
            fs::metadata(&file).expect("file written by exec").uid(),
            sub_uid + 999,
            "{name}"
        );
        fs::remove_file(&file).unwrap();
        reports.push(lines);
        let sock_path = env.dir().join(format!("exec-{}.sock", unique_id()));
        let sock = ConsoleSocket::bind(&sock_path);
        std::os::unix::fs::chown(&sock_path, Some(u.uid), Some(u.gid)).unwrap();
        env.run(&[
            "exec",
            "-t",
            "-d",
            "--console-socket",
            sock_path.to_str().unwrap(),
            c.id(),
            "sh",
            "-c",
            "tty; id -u; echo exec-tty-ok; sleep 30",
        ])
        .ok();
        let (master, _) = sock.receive_master(CMD_TIMEOUT);
        let text = read_pty_until(&master, "exec-tty-ok", WAIT_TIMEOUT);
        assert!(text.contains("/dev/pts/"), "{name}: {text:?}");
        c.kill("KILL").ok();
        c.wait_status("stopped");
        c.delete(false).ok();
        drop(c);
        env.finish();
    }
    assert_eq!(reports[0], reports[1], "kakuri vs runc");
}

/// A user namespace of several ranges together with new pid, mount, ipc, uts and network
/// namespaces (which the rootless template leaves out): each is new, and the container sees
/// its hostname, only a loopback interface and itself as pid 1, under kakuri as under runc.
#[test]
fn new_pid_mount_ipc_uts_and_network_namespaces_in_the_user_namespace() {
    let mut reports = Vec::new();
    for bin in [runtime_bin(), Path::new(RUNC)] {
        let env = TestEnv::with_runtime(bin).as_user(USER);
        let name = bin.display().to_string();
        let spec = kakuri_spec(&env);
        let u = env.rt().user().unwrap().clone();
        let mut b = rootless_bundle(&env, &spec);
        map_two_ranges(&mut b, &u);
        b.add_namespace("network", None);
        b.set_hostname("rootless-ns");
        b.set_sh(
            "hostname; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo pid=$$; \
             echo ns-ready; sleep 600",
        );
        let c = env.create(&b);
        let pid = c.pid().to_string();
        for ns in ["user", "pid", "mnt", "ipc", "uts", "net"] {
            assert_ne!(ns_link(&pid, ns), ns_link("self", ns), "{name}: {ns}");
        }
        c.start();
        let out = c.wait_stdout("ns-ready");
        reports.push(out.clone());
        assert_eq!(out, "rootless-ns\nlo\npid=1\nns-ready\n", "{name}");
        c.kill("KILL").ok();
        c.wait_status("stopped");
        c.delete(false).ok();
        drop(c);
        env.finish();
    }
    assert_eq!(reports[0], reports[1], "kakuri vs runc");
}

/// A time namespace with offsets, rootless: an unprivileged runtime may not make one for
/// itself, so the init makes it inside the container's user namespace and enters it at its
/// execve. runc 1.1.5 knows no time namespace (it fails this test: `namespace {"time" ""}
/// does not exist`); runc 1.2 makes it the same way.
#[test]
fn time_namespace_offsets_rootless() {
    if !Path::new("/proc/self/ns/time").exists() {
        println!("SKIP time_namespace_offsets_rootless: no time namespaces in this kernel");
        return;
    }
    let env = user_env();
    let spec = kakuri_spec(&env);
    let mut b = rootless_bundle(&env, &spec);
    b.add_namespace("time", None);
    b.set(
        "/linux/timeOffsets",
        json!({"monotonic": {"secs": 86400, "nanosecs": 0},
               "boottime": {"secs": 172800, "nanosecs": 0}}),
    );
    b.set_sh("cat /proc/self/timens_offsets; cut -d. -f1 /proc/uptime; echo time-ready; sleep 600");
    let c = env.create(&b);
    c.start();
    let out = c.wait_stdout("time-ready");
    let lines = normalized_lines(&out);
    assert!(lines.contains(&"monotonic 86400 0".to_string()), "{out}");
    assert!(lines.contains(&"boottime 172800 0".to_string()), "{out}");
    let uptime: u64 = lines[2].parse().expect("uptime seconds");
    let host_uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        uptime >= 172800 + host_uptime as u64 - 60,
        "boottime offset not applied: {uptime} vs host {host_uptime}"
    );
    // The init is in it (not just its children), and exec joins it.
    let pid = c.pid().to_string();
    assert_ne!(ns_link(&pid, "time"), ns_link("self", "time"));
    let out = env.run(&["exec", c.id(), "cat", "/proc/self/timens_offsets"]);
    out.ok();
    assert!(
        normalized_lines(&out.stdout).contains(&"boottime 172800 0".to_string()),
        "{out}"
    );
    c.kill("KILL").ok();
    c.wait_status("stopped");
    c.delete(false).ok();
    drop(c);
    env.finish();
}
