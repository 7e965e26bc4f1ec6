//! Rootless containers under the systemd user manager: `--systemd-cgroup` run by an
//! unprivileged user talks to that user's own systemd instance (`user@UID.service`) over its
//! session bus, the container gets a transient scope in the instance's `user.slice` with
//! `Delegate=yes`, and memory and pids limits apply (as unit properties and in the delegated
//! cgroup). Then rootless podman with `cgroup_manager = "systemd"`, whose `--memory` and
//! `--pids-limit` need exactly that. Every check is made on the runtime under test and on runc
//! (`/usr/sbin/runc`, whose systemd user driver is the reference).
//!
//! Needs systemd as PID 1 on cgroup v2 and the user of `runtime-tests/setup-rootless-user`
//! (`kakuri-rl`): run in the systemd guest (`runtime-tests/vm/sdguest --cgroup v2`, through
//! `runtime-tests/vm/run-systemd-tests`), whose image delegates `cpu cpuset io memory pids` to
//! `user@.service` (runtime-tests/vm/sdinit). The tests start `user@UID.service` themselves (what
//! `loginctl enable-linger` would keep running) and leave it running. Elsewhere they print
//! `SKIP <test>: <why>` and pass, unless KAKURI_SYSTEMD_TESTS_REQUIRED=1.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakuri_runtime_tests::*;
use serde_json::{json, Value};

const USER: &str = "kakuri-rl";
const RUNC: &str = "/usr/sbin/runc";
const MEMORY: u64 = 64 << 20;
const PIDS: u64 = 32;

/// The test user's ids and the runtime dir of its systemd instance, started if need be; None
/// (after the SKIP line) where these tests cannot run.
fn user_manager(test: &str) -> Option<(u32, u32, PathBuf)> {
    let required = std::env::var("KAKURI_SYSTEMD_TESTS_REQUIRED").as_deref() == Ok("1");
    let skip = |why: String| {
        assert!(
            !required,
            "{test}: {why}, and KAKURI_SYSTEMD_TESTS_REQUIRED=1"
        );
        eprintln!("SKIP {test}: {why}");
        None
    };
    if !Path::new("/run/systemd/system").is_dir() {
        return skip("systemd is not PID 1 here; run in runtime-tests/vm/sdguest".into());
    }
    if !Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return skip("the systemd user driver needs cgroup v2 (sdguest --cgroup v2)".into());
    }
    let out = Command::new("id").args(["-u", USER]).output().unwrap();
    if !out.status.success() {
        return skip(format!(
            "no user {USER}: run runtime-tests/setup-rootless-user"
        ));
    }
    let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let out = Command::new("id").args(["-g", USER]).output().unwrap();
    let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    // What lingering does at boot: the user's manager runs without a login.
    let out = Command::new("systemctl")
        .args(["start", &format!("user@{uid}.service")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{test}: systemctl start user@{uid}.service: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = PathBuf::from(format!("/run/user/{uid}"));
    wait_for("the user's session bus", WAIT_TIMEOUT, || {
        run_dir.join("bus").exists().then_some(())
    });
    Some((uid, gid, run_dir))
}

/// The runtime under test, then runc (once if they are the same binary).
fn runtimes() -> Vec<PathBuf> {
    let mut v = vec![runtime_bin().to_path_buf()];
    if runtime_bin() != Path::new(RUNC) && Path::new(RUNC).exists() {
        v.push(PathBuf::from(RUNC));
    }
    v
}

fn name_of(bin: &Path) -> String {
    bin.file_name().unwrap().to_string_lossy().into_owned()
}

/// A command as the test user, in its systemd session (XDG_RUNTIME_DIR of user@UID.service, so
/// its bus is found there; DBUS_SESSION_BUS_ADDRESS left out).
fn as_user(mut cmd: Command, uid: u32, gid: u32, run_dir: &Path) -> Command {
    cmd.uid(uid)
        .gid(gid)
        .env("USER", USER)
        .env("LOGNAME", USER)
        .env("XDG_RUNTIME_DIR", run_dir)
        .env_remove("DBUS_SESSION_BUS_ADDRESS");
    cmd
}

struct Ctx {
    env: TestEnv,
    run_dir: PathBuf,
}

impl Ctx {
    fn new(bin: &Path, test: &str) -> Option<Ctx> {
        let (_, _, run_dir) = user_manager(test)?;
        let env = TestEnv::with_runtime(bin).as_user(USER);
        Some(Ctx { env, run_dir })
    }

    /// `<runtime> --root R --systemd-cgroup <args>` as the user, in its session.
    fn sd(&self, args: &[&str]) -> CmdOutput {
        let mut all = vec!["--systemd-cgroup"];
        all.extend_from_slice(args);
        let mut c = self.env.rt().cmd(&all);
        c.env("XDG_RUNTIME_DIR", &self.run_dir)
            .env_remove("DBUS_SESSION_BUS_ADDRESS");
        self.env.rt().output(c)
    }

    /// `systemctl --user <args>` as the user.
    fn systemctl(&self, args: &[&str]) -> CmdOutput {
        let u = self.env.rt().user().unwrap();
        let mut c = Command::new("systemctl");
        c.arg("--user").args(args);
        let c = as_user(c, u.uid, u.gid, &self.run_dir);
        self.env.rt().output(c)
    }

    fn unit_prop(&self, unit: &str, name: &str) -> String {
        self.systemctl(&["show", "-p", name, "--value", unit])
            .stdout
            .trim()
            .to_string()
    }

    /// Whether the user manager lists the unit (any state).
    fn unit_listed(&self, unit: &str) -> bool {
        let out = self.systemctl(&[
            "list-units",
            "--all",
            "--no-legend",
            "--plain",
            "--type=scope",
        ]);
        out.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(unit))
    }

    /// The config of `spec --rootless` (run as the user) running `args`.
    fn bundle(&self, args: &[&str]) -> Bundle {
        let u = self.env.rt().user().unwrap().clone();
        let dir = self.env.dir().join(format!("spec-{}", unique_id()));
        fs::create_dir(&dir).unwrap();
        std::os::unix::fs::chown(&dir, Some(u.uid), Some(u.gid)).unwrap();
        let mut cmd = Command::new(runtime_bin());
        cmd.args(["spec", "--rootless", "--bundle"]).arg(&dir);
        u.apply(&mut cmd);
        let out = cmd.output().expect("run spec --rootless");
        assert!(
            out.status.success(),
            "spec --rootless: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let spec = read_json(&dir.join("config.json"));
        let mut b = self.env.bundle();
        let keep_env = b.config()["process"]["env"].clone();
        let mut cfg = spec;
        cfg["process"]["env"] = keep_env;
        cfg["process"]["terminal"] = json!(false);
        cfg["root"] = json!({"path": "rootfs", "readonly": false});
        *b.config_mut() = cfg;
        b.set_args(args);
        b
    }

    fn state(&self, id: &str) -> Value {
        let out = self.sd(&["state", id]);
        out.ok();
        serde_json::from_str(&out.stdout).expect("state json")
    }
}

/// Deletes the container (as the user, in its session) whatever happens to the test.
struct Gone<'a>(&'a Ctx, String);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let _ = self.0.sd(&["delete", "--force", &self.1]);
    }
}

fn read(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

#[test]
fn user_scope_limits_update_pause_and_delete() {
    let test = "user_scope_limits_update_pause_and_delete";
    let mut inside = Vec::new();
    for bin in runtimes() {
        let name = name_of(&bin);
        let Some(cx) = Ctx::new(&bin, test) else {
            return;
        };
        let uid = cx.env.rt().user().unwrap().uid;
        let id = cx.env.new_id();
        let mut b = cx.bundle(&["sleep", "1000"]);
        // No cgroupsPath: runc's user-mode default, user.slice of the user's manager.
        b.remove("/linux/cgroupsPath");
        b.config_mut()["linux"]["resources"] =
            json!({"memory": {"limit": MEMORY}, "pids": {"limit": PIDS}});
        b.write();
        let _gone = Gone(&cx, id.clone());
        cx.sd(&["create", "--bundle", b.dir().to_str().unwrap(), &id])
            .ok();
        cx.sd(&["start", &id]).ok();
        let pid = cx.state(&id)["pid"].as_i64().unwrap();
        let unit = format!("runc-{id}.scope");
        let rel = format!("/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/{unit}");
        let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert_eq!(own.trim(), format!("0::{rel}"), "{name}");
        let cg = PathBuf::from(format!("/sys/fs/cgroup{rel}"));
        assert_eq!(read(&cg.join("memory.max")), MEMORY.to_string(), "{name}");
        assert_eq!(read(&cg.join("pids.max")), PIDS.to_string(), "{name}");
        // The scope is the user manager's, delegated, holding the init, with the limits as
        // properties.
        let status = cx.systemctl(&["status", "--no-pager", &unit]);
        assert!(
            status.stdout.contains("active (running)") && status.stdout.contains(&pid.to_string()),
            "{name}: {status}"
        );
        assert_eq!(cx.unit_prop(&unit, "Delegate"), "yes", "{name}");
        assert_eq!(
            cx.unit_prop(&unit, "MemoryMax"),
            MEMORY.to_string(),
            "{name}"
        );
        assert_eq!(cx.unit_prop(&unit, "TasksMax"), PIDS.to_string(), "{name}");
        // Inside: the container's own cgroup (cgroup namespace) with the limits.
        let out = cx.sd(&[
            "exec",
            &id,
            "cat",
            "/proc/self/cgroup",
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/pids.max",
        ]);
        out.ok();
        let (own, limits) = out.stdout.split_once('\n').unwrap_or_default();
        assert_eq!(limits, format!("{MEMORY}\n{PIDS}\n"), "{name}: {out}");
        // The exec'd process joins the scope although this test runs the user's commands
        // from a cgroup the user does not own (kakuri-run.service): the user manager moves it
        // (AttachProcessesToUnit). runc 1.1 ignores the refused write in rootless mode and
        // leaves the process where it was (current runc asks systemd, as kakuri).
        if name != "runc" {
            assert_eq!(own, "0::/", "{name}: {out}");
        }
        inside.push((name.clone(), limits.to_string()));
        // update: the unit's properties and the files.
        cx.sd(&["update", "--memory", "134217728", "--pids-limit", "40", &id])
            .ok();
        assert_eq!(read(&cg.join("memory.max")), "134217728", "{name}");
        assert_eq!(read(&cg.join("pids.max")), "40", "{name}");
        assert_eq!(cx.unit_prop(&unit, "MemoryMax"), "134217728", "{name}");
        assert_eq!(cx.unit_prop(&unit, "TasksMax"), "40", "{name}");
        // pause/resume through the scope's cgroup.freeze.
        cx.sd(&["pause", &id]).ok();
        assert_eq!(cx.state(&id)["status"], "paused", "{name}");
        assert_eq!(read(&cg.join("cgroup.freeze")), "1", "{name}");
        cx.sd(&["resume", &id]).ok();
        assert_eq!(cx.state(&id)["status"], "running", "{name}");
        assert_eq!(read(&cg.join("cgroup.freeze")), "0", "{name}");
        cx.sd(&["kill", &id, "KILL"]).ok();
        wait_for(&format!("{name}: {id} stopped"), WAIT_TIMEOUT, || {
            (cx.state(&id)["status"] == "stopped").then_some(())
        });
        cx.sd(&["delete", &id]).ok();
        assert!(
            !cx.unit_listed(&unit),
            "{name}: delete left the unit {unit}"
        );
        assert!(!cg.exists(), "{name}: delete left {}", cg.display());
        drop(_gone);
        cx.env.finish();
    }
    if inside.len() == 2 {
        assert_eq!(inside[0].1, inside[1].1, "kakuri vs runc: {inside:?}");
    }
}

/// A cgroupsPath naming another slice of the user manager, and `run` (create, start, wait,
/// delete in one).
#[test]
fn user_slice_from_cgroups_path_and_run() {
    let test = "user_slice_from_cgroups_path_and_run";
    for bin in runtimes() {
        let name = name_of(&bin);
        let Some(cx) = Ctx::new(&bin, test) else {
            return;
        };
        let uid = cx.env.rt().user().unwrap().uid;
        let id = cx.env.new_id();
        // No '-' in the name: the slice's parent is the manager's root, nothing else is made.
        let slice = format!("kt_{}.slice", id.replace('-', "_"));
        let mut b = cx.bundle(&[
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; exit 3",
        ]);
        b.set_cgroups_path(&format!("{slice}:kakuri:{id}"));
        b.config_mut()["linux"]["resources"] =
            json!({"memory": {"limit": MEMORY}, "pids": {"limit": PIDS}});
        b.write();
        let _gone = Gone(&cx, id.clone());
        let out = cx.sd(&["run", "--bundle", b.dir().to_str().unwrap(), &id]);
        assert_eq!(out.code, Some(3), "{name}: {out}");
        assert_eq!(out.stdout, format!("{MEMORY}\n{PIDS}\n"), "{name}: {out}");
        let unit = format!("kakuri-{id}.scope");
        assert!(!cx.unit_listed(&unit), "{name}: run left the unit {unit}");
        let sl = format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service/{slice}");
        let left: Vec<_> = fs::read_dir(&sl)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "{name}: left in {sl}: {left:?}");
        // The slice itself is the user manager's (stopped when empty by systemd, or here).
        let _ = cx.systemctl(&["stop", &slice]);
        drop(_gone);
        cx.env.finish();
    }
}

/// A limit on a controller the user manager was not given (hugetlb: the guest delegates
/// `cpu cpuset io memory pids`) is refused before anything is made, with the reason.
#[test]
fn undelegated_controller_is_refused_with_the_reason() {
    let test = "undelegated_controller_is_refused_with_the_reason";
    let bin = runtime_bin().to_path_buf();
    if bin == Path::new(RUNC) {
        eprintln!(
            "SKIP {test}: checks kakuri's own error (runc writes the file and fails on ENOENT)"
        );
        return;
    }
    let Some(cx) = Ctx::new(&bin, test) else {
        return;
    };
    let uid = cx.env.rt().user().unwrap().uid;
    let mgr = format!("/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service");
    let have = read(&Path::new(&mgr).join("cgroup.controllers"));
    for c in ["memory", "pids", "cpu", "io", "cpuset"] {
        assert!(
            have.split_whitespace().any(|x| x == c),
            "{c} is not delegated to user@{uid}.service ({have}): the guest's drop-in is missing"
        );
    }
    if have.split_whitespace().any(|x| x == "hugetlb") {
        eprintln!("SKIP {test}: hugetlb is delegated here ({have})");
        return;
    }
    let id = cx.env.new_id();
    let mut b = cx.bundle(&["true"]);
    b.config_mut()["linux"]["resources"] = json!({
        "memory": {"limit": MEMORY},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]
    });
    b.write();
    let _gone = Gone(&cx, id.clone());
    let out = cx.sd(&["run", "--bundle", b.dir().to_str().unwrap(), &id]);
    assert!(!out.success(), "{out}");
    for needle in [
        "linux.resources.hugepageLimits: the hugetlb controller is not delegated",
        "user@",
        "Delegate=",
    ] {
        assert!(out.stderr.contains(needle), "no {needle:?} in: {out}");
    }
    assert!(!cx.unit_listed(&format!("runc-{id}.scope")));
    drop(_gone);
    cx.env.finish();
}

/// A user manager that is not there: the error says what was looked for.
#[test]
fn no_user_manager_is_a_clear_error() {
    let test = "no_user_manager_is_a_clear_error";
    let bin = runtime_bin().to_path_buf();
    if bin == Path::new(RUNC) {
        eprintln!("SKIP {test}: checks kakuri's own error");
        return;
    }
    let Some(cx) = Ctx::new(&bin, test) else {
        return;
    };
    let id = cx.env.new_id();
    let b = cx.bundle(&["true"]);
    b.write();
    // The env's own XDG_RUNTIME_DIR (an empty dir of the test): no bus there.
    let mut c = cx.env.rt().cmd(&[
        "--systemd-cgroup",
        "run",
        "--bundle",
        b.dir().to_str().unwrap(),
        &id,
    ]);
    c.env_remove("DBUS_SESSION_BUS_ADDRESS");
    let out = cx.env.rt().output(c);
    assert!(!out.success(), "{out}");
    assert!(
        out.stderr.contains("systemd user manager") && out.stderr.contains("/bus"),
        "{out}"
    );
    cx.env.finish();
}

// ---------------------------------------------------------------- rootless podman

/// A private rootless podman of the test user with `cgroup_manager = "systemd"`.
struct Podman {
    dir: PathBuf,
    uid: u32,
    gid: u32,
    run_dir: PathBuf,
    runtime: PathBuf,
}

impl Podman {
    fn new(env: &TestEnv, runtime: &Path, run_dir: &Path) -> Podman {
        let u = env.rt().user().unwrap().clone();
        let dir = env.dir().join(format!("podman-{}", name_of(runtime)));
        for d in ["", "home", "libpod-tmp", "image-tmp"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let d = dir.display();
        fs::write(
            dir.join("containers.conf"),
            format!(
                "[containers]\nlog_driver = \"k8s-file\"\nnetns = \"none\"\n\
                 [engine]\ncgroup_manager = \"systemd\"\nevents_logger = \"file\"\n\
                 events_logfile_path = \"{d}/events.log\"\ntmp_dir = \"{d}/libpod-tmp\"\n\
                 static_dir = \"{d}/storage/libpod\"\nvolume_path = \"{d}/storage/volumes\"\n\
                 image_copy_tmp_dir = \"{d}/image-tmp\"\n\
                 runtime_supports_json = [\"kakuri\", \"{}\", \"crun\", \"runc\"]\n",
                name_of(runtime)
            ),
        )
        .unwrap();
        fs::write(
            dir.join("storage.conf"),
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{d}/storage\"\nrunroot = \"{d}/runroot\"\n"),
        )
        .unwrap();
        fs::write(
            dir.join("registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .unwrap();
        let out = Command::new("chown")
            .args(["-R", &format!("{}:{}", u.uid, u.gid)])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(out.status.success());
        Podman {
            dir,
            uid: u.uid,
            gid: u.gid,
            run_dir: run_dir.to_path_buf(),
            runtime: runtime.to_path_buf(),
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("podman");
        c.env("HOME", self.dir.join("home"))
            .env("CONTAINERS_CONF", self.dir.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.dir.join("storage.conf"))
            .env(
                "CONTAINERS_REGISTRIES_CONF",
                self.dir.join("registries.conf"),
            )
            .arg("--runtime")
            .arg(&self.runtime)
            .args(args)
            .current_dir(&self.dir);
        as_user(c, self.uid, self.gid, &self.run_dir)
    }

    fn run(&self, env: &TestEnv, args: &[&str]) -> CmdOutput {
        env.rt().output(self.cmd(args))
    }
}

/// The user manager's `podman-pause-*.scope` units (rootless podman's holder of its user
/// namespace, which outlives the podman command).
fn pause_scopes(cx: &Ctx) -> Vec<String> {
    cx.systemctl(&[
        "list-units",
        "--all",
        "--no-legend",
        "--plain",
        "--type=scope",
    ])
    .stdout
    .lines()
    .filter_map(|l| l.split_whitespace().next())
    .filter(|u| u.starts_with("podman-pause-"))
    .map(str::to_string)
    .collect()
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Storage made by the user in its user namespace: removed from inside it.
        let mut c = self.cmd(&["unshare", "rm", "-rf", "storage", "runroot"]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let _ = c.status();
    }
}

/// The image the client suites use (runtime-tests/clients/build-image), as a tarball the user
/// can read.
fn image_tar(env: &TestEnv) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("KAKURI_CLIENT_IMAGE_DIR")?);
    let dst = env.dir().join("rootfs.tar");
    fs::copy(dir.join("rootfs.tar"), &dst).ok()?;
    let u = env.rt().user().unwrap();
    std::os::unix::fs::chown(&dst, Some(u.uid), Some(u.gid)).ok()?;
    Some(dst)
}

#[test]
fn rootless_podman_memory_and_pids_limits() {
    let test = "rootless_podman_memory_and_pids_limits";
    let mut inside = Vec::new();
    for bin in runtimes() {
        let name = name_of(&bin);
        let Some(cx) = Ctx::new(&bin, test) else {
            return;
        };
        let Some(tar) = image_tar(&cx.env) else {
            let why = "KAKURI_CLIENT_IMAGE_DIR (runtime-tests/clients/build-image) is not set";
            assert!(
                std::env::var("KAKURI_SYSTEMD_TESTS_REQUIRED").as_deref() != Ok("1"),
                "{test}: {why}"
            );
            eprintln!("SKIP {test}: {why}");
            return;
        };
        let pause_before = pause_scopes(&cx);
        let p = Podman::new(&cx.env, &bin, &cx.run_dir);
        let image = "localhost/kakuri-sduser:latest";
        let out = p.run(&cx.env, &["import", tar.to_str().unwrap(), image]);
        out.ok();
        let ctr = format!("kt-{}", cx.env.id());
        let out = p.run(
            &cx.env,
            &[
                "run",
                "-d",
                "--name",
                &ctr,
                "--network",
                "none",
                "--memory",
                "64m",
                "--pids-limit",
                "32",
                image,
                "sleep",
                "1000",
            ],
        );
        out.ok();
        let full = out.stdout.trim().to_string();
        let unit = format!("libpod-{full}.scope");
        let listed = cx.unit_listed(&unit);
        let limits = p.run(
            &cx.env,
            &[
                "exec",
                &ctr,
                "cat",
                "/proc/self/cgroup",
                "/sys/fs/cgroup/memory.max",
                "/sys/fs/cgroup/pids.max",
            ],
        );
        let mem_prop = cx.unit_prop(&unit, "MemoryMax");
        let rm = p.run(&cx.env, &["rm", "-f", "-t", "0", &ctr]);
        let gone = !cx.unit_listed(&unit);
        drop(p);
        // This podman's pause process goes with its scope.
        for u in pause_scopes(&cx) {
            if !pause_before.contains(&u) {
                cx.systemctl(&["stop", &u]).ok();
            }
        }
        assert!(
            listed,
            "{name}: no user scope {unit} while the container ran"
        );
        limits.ok();
        assert_eq!(
            limits.stdout,
            format!("0::/\n{MEMORY}\n{PIDS}\n"),
            "{name}: {limits}"
        );
        assert_eq!(mem_prop, MEMORY.to_string(), "{name}");
        rm.ok();
        assert!(gone, "{name}: podman rm left the unit {unit}");
        inside.push((name, limits.stdout.clone()));
        cx.env.finish();
    }
    if inside.len() == 2 {
        assert_eq!(inside[0].1, inside[1].1, "kakuri vs runc: {inside:?}");
    }
}
