//! The systemd cgroup driver (`--systemd-cgroup`, cgroupsPath `slice:prefix:name`): a transient
//! scope per container, limits as unit properties and in the cgroup files, the other commands
//! working on the scope's cgroup, and delete stopping the unit.
//!
//! These tests need systemd as PID 1 (run them in runtime-tests/vm/sdguest, v2 and hybrid).
//! Without it they print `SKIP <test>: <why>` and pass, unless KAKURI_SYSTEMD_TESTS_REQUIRED=1.
//! With KAKURI_BIN=/usr/sbin/runc they check runc itself (the control). The checkpoint/restore
//! test also needs CRIU (see `checkpoint_restore_in_the_scope`).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakuri_runtime_tests::*;
use serde_json::{json, Value};

const SD: &str = "--systemd-cgroup";

/// Whether systemd runs as PID 1; prints the SKIP line when not (and fails when required).
fn systemd_or_skip(test: &str) -> bool {
    if Path::new("/run/systemd/system").is_dir() {
        return true;
    }
    let why = "systemd is not PID 1 here (no /run/systemd/system); run in runtime-tests/vm/sdguest";
    assert!(
        std::env::var("KAKURI_SYSTEMD_TESTS_REQUIRED").as_deref() != Ok("1"),
        "{test}: {why}, and KAKURI_SYSTEMD_TESTS_REQUIRED=1"
    );
    eprintln!("SKIP {test}: {why}");
    false
}

fn is_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

fn is_runc() -> bool {
    runtime_bin()
        .file_name()
        .is_some_and(|n| n.to_string_lossy().contains("runc"))
}

fn systemctl(args: &[&str]) -> (bool, String) {
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .expect("run systemctl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// `systemctl show -p NAME --value UNIT`.
fn unit_prop(unit: &str, name: &str) -> String {
    systemctl(&["show", "-p", name, "--value", unit])
        .1
        .trim()
        .to_string()
}

/// Whether systemd still lists the unit (any state).
fn unit_listed(unit: &str) -> bool {
    let (_, out) = systemctl(&["list-units", "--all", "--no-legend", "--plain", unit]);
    out.lines()
        .any(|l| l.split_whitespace().next() == Some(unit))
}

/// The cgroup directory of `pid` for `controller` ("memory", "pids", "cpu", "freezer"; any on
/// v2), from /proc/<pid>/cgroup.
fn cgroup_dir(pid: i32, controller: &str) -> PathBuf {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/pid/cgroup");
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if is_v2() && ctrls.is_empty() {
            return PathBuf::from(format!("/sys/fs/cgroup{path}"));
        }
        if ctrls.split(',').any(|c| c == controller) {
            return PathBuf::from(format!("/sys/fs/cgroup/{ctrls}{path}"));
        }
    }
    panic!("no {controller} cgroup for pid {pid} in {text}")
}

fn read_trim(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// A bundle running `sleep` with the given cgroupsPath (None: no cgroupsPath).
fn sleeper(env: &TestEnv, cgroups_path: Option<&str>) -> Bundle {
    let mut b = env.bundle();
    b.set_args(&["sleep", "1000"]);
    match cgroups_path {
        Some(p) => {
            b.set_cgroups_path(p);
        }
        None => {
            b.remove("/linux/cgroupsPath");
        }
    }
    b
}

fn sd(env: &TestEnv, args: &[&str]) -> CmdOutput {
    let mut all = vec![SD];
    all.extend_from_slice(args);
    env.run(&all)
}

/// `--systemd-cgroup create --bundle B ID`.
fn sd_create(env: &TestEnv, b: &Bundle, id: &str) -> CmdOutput {
    env.track(id);
    b.write();
    sd(env, &["create", "--bundle", b.dir().to_str().unwrap(), id])
}

fn started(env: &TestEnv, b: &Bundle, id: &str) -> i32 {
    sd_create(env, b, id).ok();
    sd(env, &["start", id]).ok();
    state_pid(env, id)
}

fn state_pid(env: &TestEnv, id: &str) -> i32 {
    let v: Value = serde_json::from_str(&sd(env, &["state", id]).ok().stdout).unwrap();
    v["pid"].as_i64().expect("pid") as i32
}

fn status(env: &TestEnv, id: &str) -> String {
    let v: Value = serde_json::from_str(&sd(env, &["state", id]).ok().stdout).unwrap();
    v["status"].as_str().unwrap().to_string()
}

fn wait_status(env: &TestEnv, id: &str, want: &str) {
    wait_for(&format!("{id} to be {want}"), WAIT_TIMEOUT, || {
        (status(env, id) == want).then_some(())
    });
}

/// Stops the slices a test made (runc leaves them too), whatever happened.
struct Slices(Vec<String>);

impl Drop for Slices {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = systemctl(&["stop", s]);
        }
    }
}

#[test]
fn scope_with_limits_and_every_command() {
    if !systemd_or_skip("scope_with_limits_and_every_command") {
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    let unit = format!("kakuri-{id}.scope");
    let mut b = sleeper(&env, Some(&format!("system.slice:kakuri:{id}")));
    b.set(
        "/linux/resources",
        json!({
            "memory": {"limit": 67108864},
            "pids": {"limit": 50},
            "cpu": {"shares": 512, "quota": 20000, "period": 100000}
        }),
    );
    let pid = started(&env, &b, &id);

    // The unit: an active scope in system.slice, delegated, holding the init.
    assert_eq!(unit_prop(&unit, "ActiveState"), "active");
    assert_eq!(unit_prop(&unit, "Delegate"), "yes");
    assert_eq!(unit_prop(&unit, "Slice"), "system.slice");
    let cg = unit_prop(&unit, "ControlGroup");
    assert_eq!(cg, format!("/system.slice/{unit}"));
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.lines().any(|l| l.ends_with(&cg)),
        "init {pid} is not in {cg}: {own}"
    );

    // The limits, in the files.
    if is_v2() {
        let d = cgroup_dir(pid, "");
        assert_eq!(d, Path::new("/sys/fs/cgroup").join(&cg[1..]));
        assert_eq!(read_trim(&d.join("memory.max")), "67108864");
        assert_eq!(read_trim(&d.join("pids.max")), "50");
        assert_eq!(read_trim(&d.join("cpu.max")), "20000 100000");
        // runc's shares -> weight: 1 + (512-2)*9999/262142 = 20.
        assert_eq!(read_trim(&d.join("cpu.weight")), "20");
        assert_eq!(unit_prop(&unit, "MemoryMax"), "67108864");
    } else {
        assert!(cgroup_dir(pid, "memory").ends_with(&cg[1..]));
        assert_eq!(
            read_trim(&cgroup_dir(pid, "memory").join("memory.limit_in_bytes")),
            "67108864"
        );
        assert_eq!(read_trim(&cgroup_dir(pid, "pids").join("pids.max")), "50");
        let cpu = cgroup_dir(pid, "cpu");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "20000");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
        assert_eq!(unit_prop(&unit, "MemoryLimit"), "67108864");
    }
    assert_eq!(unit_prop(&unit, "TasksMax"), "50");
    assert_eq!(unit_prop(&unit, "CPUQuotaPerSecUSec"), "200ms");

    // update: the unit and the files.
    sd(
        &env,
        &["update", "--memory", "134217728", "--pids-limit", "60", &id],
    )
    .ok();
    assert_eq!(unit_prop(&unit, "TasksMax"), "60");
    if is_v2() {
        assert_eq!(unit_prop(&unit, "MemoryMax"), "134217728");
        assert_eq!(
            read_trim(&cgroup_dir(pid, "").join("memory.max")),
            "134217728"
        );
        assert_eq!(read_trim(&cgroup_dir(pid, "").join("pids.max")), "60");
    } else {
        assert_eq!(unit_prop(&unit, "MemoryLimit"), "134217728");
        assert_eq!(
            read_trim(&cgroup_dir(pid, "memory").join("memory.limit_in_bytes")),
            "134217728"
        );
        assert_eq!(read_trim(&cgroup_dir(pid, "pids").join("pids.max")), "60");
    }

    // pause / resume.
    sd(&env, &["pause", &id]).ok();
    assert_eq!(status(&env, &id), "paused");
    let frozen = if is_v2() {
        read_trim(&cgroup_dir(pid, "").join("cgroup.freeze")) == "1"
    } else {
        read_trim(&cgroup_dir(pid, "freezer").join("freezer.state")) == "FROZEN"
    };
    assert!(frozen, "the scope's cgroup is not frozen while paused");
    sd(&env, &["resume", &id]).ok();
    assert_eq!(status(&env, &id), "running");

    // ps lists the init.
    let ps = sd(&env, &["ps", "--format", "json", &id]);
    let pids: Vec<i32> = serde_json::from_str(&ps.ok().stdout).unwrap();
    assert!(pids.contains(&pid), "ps {pids:?} lacks {pid}");

    // events --stats: pids and memory of the scope.
    let ev = sd(&env, &["events", "--stats", &id]);
    let v: Value = serde_json::from_str(ev.ok().stdout.trim()).unwrap();
    assert_eq!(v["type"], "stats", "{v}");
    assert!(
        v["data"]["pids"]["current"].as_u64().unwrap_or(0) >= 1,
        "{v}"
    );
    assert!(
        v["data"]["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );

    // kill --all, then delete: the unit and the cgroup directories go.
    sd(&env, &["kill", "--all", &id, "KILL"]).ok();
    wait_status(&env, &id, "stopped");
    sd(&env, &["delete", &id]).ok();
    assert!(!unit_listed(&unit), "{unit} still listed after delete");
    assert!(
        !Path::new("/sys/fs/cgroup").join(&cg[1..]).exists()
            && !Path::new("/sys/fs/cgroup/memory").join(&cg[1..]).exists()
            && !Path::new("/sys/fs/cgroup/pids").join(&cg[1..]).exists(),
        "cgroup directories of {cg} left"
    );
    env.finish();
}

#[test]
fn nested_slice_is_created() {
    if !systemd_or_skip("nested_slice_is_created") {
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    // Slice names: letters and digits, '-' separates the levels.
    let top = format!("kt{}", std::process::id());
    let slice = format!("{top}-inner.slice");
    let _slices = Slices(vec![slice.clone(), format!("{top}.slice")]);
    let b = sleeper(&env, Some(&format!("{slice}:pre:{id}")));
    let pid = started(&env, &b, &id);
    let unit = format!("pre-{id}.scope");
    let cg = unit_prop(&unit, "ControlGroup");
    assert_eq!(cg, format!("/{top}.slice/{slice}/{unit}"));
    assert_eq!(unit_prop(&slice, "ActiveState"), "active");
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.lines().any(|l| l.ends_with(&cg)), "{own}");
    sd(&env, &["delete", "--force", &id]).ok();
    assert!(!unit_listed(&unit));
    env.finish();
}

#[test]
fn empty_cgroups_path_defaults() {
    if !systemd_or_skip("empty_cgroups_path_defaults") {
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    let b = sleeper(&env, None);
    let pid = started(&env, &b, &id);
    // runc's defaults: prefix "runc", the id as name, system.slice.
    let unit = format!("runc-{id}.scope");
    assert_eq!(unit_prop(&unit, "ActiveState"), "active");
    assert_eq!(unit_prop(&unit, "Slice"), "system.slice");
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(own.contains(&format!("/system.slice/{unit}")), "{own}");
    sd(&env, &["delete", "--force", &id]).ok();
    assert!(!unit_listed(&unit));
    env.finish();
}

#[test]
fn annotations_become_unit_properties() {
    if !systemd_or_skip("annotations_become_unit_properties") {
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    let mut b = sleeper(&env, Some(&format!("system.slice:kakuri:{id}")));
    b.set_annotation("org.systemd.property.TimeoutStopUSec", "uint64 123456789");
    b.set_annotation("org.systemd.property.CollectMode", "'inactive-or-failed'");
    // ...Sec: converted to ...USec (seconds to microseconds).
    b.set_annotation("org.systemd.property.RuntimeMaxSec", "uint64 3600");
    started(&env, &b, &id);
    let unit = format!("kakuri-{id}.scope");
    assert_eq!(unit_prop(&unit, "TimeoutStopUSec"), "2min 3.456789s");
    assert_eq!(unit_prop(&unit, "CollectMode"), "inactive-or-failed");
    assert_eq!(unit_prop(&unit, "RuntimeMaxUSec"), "1h");
    sd(&env, &["delete", "--force", &id]).ok();
    assert!(!unit_listed(&unit));
    env.finish();
}

#[test]
fn delete_after_unit_stopped_behind_our_back() {
    if !systemd_or_skip("delete_after_unit_stopped_behind_our_back") {
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    let b = sleeper(&env, Some(&format!("system.slice:kakuri:{id}")));
    started(&env, &b, &id);
    let unit = format!("kakuri-{id}.scope");
    // systemd kills the scope's processes and drops the unit.
    let (ok, out) = systemctl(&["stop", &unit]);
    assert!(ok, "systemctl stop {unit}: {out}");
    wait_status(&env, &id, "stopped");
    sd(&env, &["delete", &id]).ok();
    if is_runc() {
        // runc leaves the scope systemd stopped as a "failed" record (no reset-failed); kakuri
        // clears it. Either way nothing runs.
        assert_ne!(unit_prop(&unit, "ActiveState"), "active");
        let _ = systemctl(&["reset-failed", &unit]);
    }
    assert!(!unit_listed(&unit), "{unit} still listed after delete");
    let st = sd(&env, &["state", &id]);
    assert!(!st.success(), "state of a deleted container: {st}");
    env.finish();
}

#[test]
fn bad_path_or_property_leaves_nothing() {
    if !systemd_or_skip("bad_path_or_property_leaves_nothing") {
        return;
    }
    let env = TestEnv::new();
    // Not "slice:prefix:name".
    let id = env.new_id();
    let b = sleeper(&env, Some("/not/systemd/form"));
    let out = sd_create(&env, &b, &id);
    out.fails_with("slice:prefix:name");
    // An invalid slice name.
    let id2 = env.new_id();
    let b = sleeper(&env, Some(&format!("a--b.slice:kakuri:{id2}")));
    sd_create(&env, &b, &id2).fails_with("invalid slice name");
    // A property name runc refuses before systemd sees it.
    let id3 = env.new_id();
    let mut b = sleeper(&env, Some(&format!("system.slice:kakuri:{id3}")));
    b.set_annotation("org.systemd.property.Bad1", "true");
    sd_create(&env, &b, &id3).fails_with("name incorrect");
    // A property systemd refuses: create fails after the clone, and undoes everything.
    let id4 = env.new_id();
    let mut b = sleeper(&env, Some(&format!("system.slice:kakuri:{id4}")));
    b.set_annotation("org.systemd.property.NoSuchPropertyHere", "'x'");
    let out = sd_create(&env, &b, &id4);
    assert!(
        !out.success(),
        "create with an unknown unit property: {out}"
    );
    assert!(
        out.stderr_has("NoSuchPropertyHere"),
        "the error does not name the property: {out}"
    );
    for (id, prefix) in [
        (&id, "kakuri"),
        (&id2, "kakuri"),
        (&id3, "kakuri"),
        (&id4, "kakuri"),
    ] {
        let unit = format!("{prefix}-{id}.scope");
        assert!(!unit_listed(&unit), "{unit} left");
        assert!(!sd(&env, &["state", id]).success(), "state of {id} left");
    }
    // env.finish() checks for cgroup directories and processes named after the ids.
    env.finish();
}

#[test]
fn features_report_systemd() {
    let env = TestEnv::new();
    let out = env.run(&["features"]);
    let v: Value = serde_json::from_str(&out.ok().stdout).unwrap();
    assert_eq!(v["linux"]["cgroup"]["systemd"], true, "{v}");
    // Rootless through the user's own systemd instance (systemd_user.rs); runc 1.1 says so too.
    assert_eq!(v["linux"]["cgroup"]["systemdUser"], true, "{v}");
    env.finish();
}

/// A `cgroup` mount (as docker's and podman's specs have) under the driver, with and without a
/// cgroup namespace: the container starts and its /sys/fs/cgroup shows its own cgroup (pid 1 in
/// cgroup.procs, of the memory and name=systemd hierarchies on v1/hybrid). Without a cgroup
/// namespace the runtime binds the scope's directories, which exist only once the unit is
/// started: kakuri once bound them before that and failed on hybrid with ENOENT.
#[test]
fn cgroup_mount_shows_own_scope() {
    if !systemd_or_skip("cgroup_mount_shows_own_scope") {
        return;
    }
    let env = TestEnv::new();
    let files: &[&str] = if is_v2() {
        &["/sys/fs/cgroup/cgroup.procs"]
    } else {
        &[
            "/sys/fs/cgroup/memory/cgroup.procs",
            "/sys/fs/cgroup/systemd/cgroup.procs",
        ]
    };
    for cgroupns in [false, true] {
        let id = env.new_id();
        let mut b = env.bundle();
        if let Some(ms) = b.config_mut()["mounts"].as_array_mut() {
            ms.retain(|m| m["destination"] != "/sys/fs/cgroup");
        }
        b.add_mount(
            json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
        );
        if cgroupns {
            b.add_namespace("cgroup", None);
        } else {
            b.remove_namespace("cgroup");
        }
        let script = files
            .iter()
            .map(|f| format!("echo \"{f}: $(cat {f} | tr '\\n' ' ')\""))
            .collect::<Vec<_>>()
            .join("; ");
        b.set_sh(&script);
        b.set_cgroups_path(&format!("system.slice:kt:{id}"));
        env.track(&id);
        b.write();
        let out = sd(&env, &["run", "--bundle", b.dir().to_str().unwrap(), &id]);
        out.ok();
        for f in files {
            let line = out
                .stdout
                .lines()
                .find(|l| l.starts_with(&format!("{f}:")))
                .unwrap_or_else(|| panic!("cgroupns {cgroupns}: no {f} in {:?}", out.stdout));
            if is_v2() && !cgroupns {
                // runc mounts a fresh cgroup2 here, which without a cgroup namespace shows the
                // host's root (other namespaces' pids as 0): only that it mounted is common.
                continue;
            }
            assert!(
                line.split_whitespace().skip(1).any(|p| p == "1"),
                "cgroupns {cgroupns}: {line}: the container's pid 1 is not in its own cgroup"
            );
        }
        assert!(!unit_listed(&format!("kt-{id}.scope")));
    }
    env.finish();
}

/// The counter's numbers (one a line in the rootfs' /tmp/count).
fn counts(b: &Bundle) -> Vec<u64> {
    fs::read_to_string(b.rootfs().join("tmp/count"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn wait_counts(b: &Bundle, more_than: usize) -> Vec<u64> {
    wait_for(
        &format!("more than {more_than} counts"),
        WAIT_TIMEOUT * 4,
        || {
            let c = counts(b);
            (c.len() > more_than).then_some(c)
        },
    )
}

/// `--systemd-cgroup <args>` with the container's stdio on /dev/null (CRIU can dump only files
/// it finds in the container's mounts) and the runtime's errors in a --log file.
fn sd_quiet(env: &TestEnv, name: &str, args: &[&str]) -> CmdOutput {
    let log = env.dir().join(format!("{name}.log"));
    let mut all = vec!["--log", log.to_str().unwrap(), SD];
    all.extend_from_slice(args);
    let status = env
        .rt()
        .cmd(&all)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run the runtime");
    CmdOutput {
        cmdline: all.join(" "),
        code: status.code(),
        signal: None,
        stdout: String::new(),
        stderr: fs::read_to_string(&log).unwrap_or_default(),
        stdout_path: PathBuf::from("/dev/null"),
        stderr_path: log,
    }
}

/// The limits of the restored container in the scope's cgroup files (64 MiB, 50 pids).
fn assert_limits(pid: i32, cg: &str) {
    if is_v2() {
        let d = cgroup_dir(pid, "");
        assert_eq!(d, Path::new("/sys/fs/cgroup").join(&cg[1..]));
        assert_eq!(read_trim(&d.join("memory.max")), "67108864");
        assert_eq!(read_trim(&d.join("pids.max")), "50");
    } else {
        let mem = cgroup_dir(pid, "memory");
        assert!(mem.ends_with(&cg[1..]), "{} is not {cg}", mem.display());
        assert_eq!(read_trim(&mem.join("memory.limit_in_bytes")), "67108864");
        let pids = cgroup_dir(pid, "pids");
        assert!(pids.ends_with(&cg[1..]), "{} is not {cg}", pids.display());
        assert_eq!(read_trim(&pids.join("pids.max")), "50");
    }
}

/// checkpoint + restore under the driver (podman's default cgroup manager on systemd hosts):
/// the restored counter goes on counting, in the container's scope, started again for the
/// restore and holding the restored init (`systemctl status`), with the limits in its cgroup
/// files; delete stops it. Needs CRIU as well as systemd: SKIP where `criu check` fails, unless
/// KAKURI_SYSTEMD_CRIU_REQUIRED=1 (runtime-tests/vm/run-systemd-tests sets it: its guest boots
/// Debian's 6.1 kernel with the modules CRIU 3.17 needs, see vm/sdsetup).
#[test]
fn checkpoint_restore_in_the_scope() {
    if !systemd_or_skip("checkpoint_restore_in_the_scope") {
        return;
    }
    if let Some(why) = criu_unusable() {
        assert!(
            std::env::var("KAKURI_SYSTEMD_CRIU_REQUIRED").as_deref() != Ok("1"),
            "checkpoint_restore_in_the_scope: {why}, and KAKURI_SYSTEMD_CRIU_REQUIRED=1"
        );
        eprintln!("SKIP checkpoint_restore_in_the_scope: {why}");
        return;
    }
    let env = TestEnv::new();
    let id = env.new_id();
    let unit = format!("kakuri-{id}.scope");
    let cg = format!("/system.slice/{unit}");
    let mut b = env.bundle();
    b.set_sh("i=0; while :; do i=$((i+1)); echo $i >> /tmp/count; sleep 0.05; done");
    b.set_cgroups_path(&format!("system.slice:kakuri:{id}"));
    b.set(
        "/linux/resources",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}}),
    );
    // A unit property from the annotations, which restore must pass on as create does.
    b.set_annotation("org.systemd.property.CollectMode", "'inactive-or-failed'");
    b.write();
    let dir = b.dir().to_str().unwrap().to_string();
    sd_quiet(&env, "run", &["run", "--detach", "--bundle", &dir, &id]).ok();
    let pid = state_pid(&env, &id);
    assert_limits(pid, &cg);
    wait_counts(&b, 3);

    let img = env.dir().join("img");
    let img = img.to_str().unwrap();
    sd_quiet(
        &env,
        "checkpoint",
        &["checkpoint", "--image-path", img, &id],
    )
    .ok();
    // The container is gone, and with it its unit.
    assert_ne!(sd(&env, &["state", &id]).code, Some(0), "{id} still exists");
    assert!(!unit_listed(&unit), "{unit} still listed after checkpoint");
    let before = counts(&b);

    sd_quiet(
        &env,
        "restore",
        &[
            "restore",
            "--detach",
            "--image-path",
            img,
            "--bundle",
            &dir,
            &id,
        ],
    )
    .ok();
    assert_eq!(status(&env, &id), "running");
    let pid = state_pid(&env, &id);
    // The unit is started again and holds the restored init.
    assert_eq!(unit_prop(&unit, "ActiveState"), "active");
    assert_eq!(unit_prop(&unit, "ControlGroup"), cg);
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(
        own.lines().any(|l| l.ends_with(&cg)),
        "restored init {pid} is not in {cg}: {own}"
    );
    let (_, st) = systemctl(&["status", "--no-pager", "--full", &unit]);
    assert!(
        st.lines().any(|l| l
            .trim_start_matches(|c: char| !c.is_ascii_digit())
            .split_whitespace()
            .next()
            == Some(pid.to_string().as_str())),
        "systemctl status {unit} does not show the restored init {pid}:\n{st}"
    );
    assert_limits(pid, &cg);
    assert_eq!(unit_prop(&unit, "TasksMax"), "50");
    assert_eq!(unit_prop(&unit, "CollectMode"), "inactive-or-failed");
    // It goes on counting from where it was: one run of numbers.
    let after = wait_counts(&b, before.len() + 3);
    let expect: Vec<u64> = (1..=after.len() as u64).collect();
    assert_eq!(after, expect, "counting did not continue");

    sd(&env, &["delete", "--force", &id]).ok();
    assert!(!unit_listed(&unit), "{unit} still listed after delete");
    assert!(
        !Path::new("/sys/fs/cgroup").join(&cg[1..]).exists()
            && !Path::new("/sys/fs/cgroup/memory").join(&cg[1..]).exists()
            && !Path::new("/sys/fs/cgroup/pids").join(&cg[1..]).exists(),
        "cgroup directories of {cg} left"
    );
    env.finish();
}
