//! CVE-2019-5736 class with `CAP_SYS_PTRACE`: a container process that may ptrace passes the
//! non-dumpable check, so it can open `/proc/<pid>/exe` of a process that is still the runtime
//! (the init before its execve, the child `exec` forks into the container). It keeps that
//! handle, waits until nothing executes the binary any more (the write would fail with ETXTBSY
//! before), and reopens it for writing through `/proc/self/fd`. The runtime binary a container
//! can reach must be on a read-only mount (EROFS) or a sealed memfd, as runc's is.
//!
//! Every test runs a private copy of the runtime from a writable directory, so an attack that
//! got through would only ever change the copy; its hash is compared before and after.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use kakuri_runtime_tests::*;
use serde_json::json;

/// In the container: hold a read-only handle on /proc/$1/exe, say so, wait for the go (a fifo),
/// then try to reopen the handle for writing and append a byte; the outcome goes to /kt-result.
const ATTACK: &str = r#"
if ! exec 3</proc/$1/exe; then echo OPEN-FAILED > /kt-result; exit 0; fi
echo held > /kt-held
read go < /kt-go
{ echo -n X >> /proc/self/fd/3 && echo WROTE; } > /kt-result 2>&1
echo END >> /kt-result
"#;

/// A bundle whose process may ptrace (CAP_SYS_PTRACE in every set), with the go fifo.
fn ptrace_bundle(env: &TestEnv) -> Bundle {
    let mut b = env.bundle();
    for set in ["bounding", "effective", "permitted"] {
        let mut caps: Vec<String> = b.config()["process"]["capabilities"][set]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        caps.push("CAP_SYS_PTRACE".into());
        b.set(&format!("/process/capabilities/{set}"), json!(caps));
    }
    let fifo = b.rootfs().join("kt-go");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
    b
}

/// Waits for the attacker in `rootfs` to hold its handle (panics if it could not open it).
fn wait_held(rootfs: &Path) {
    wait_for("the attacker to hold /proc/<pid>/exe", WAIT_TIMEOUT, || {
        if let Ok(r) = std::fs::read_to_string(rootfs.join("kt-result")) {
            panic!("the attacker could not open /proc/<pid>/exe with CAP_SYS_PTRACE: {r}");
        }
        rootfs.join("kt-held").exists().then_some(())
    });
}

/// Lets the attacker in `rootfs` try its write; returns what it reports.
fn release(rootfs: &Path) -> String {
    let fifo = rootfs.join("kt-go");
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    std::fs::write(&fifo, "go\n").expect("write the go fifo");
    wait_file(&rootfs.join("kt-result"), "END")
}

/// No process runs `bin` any more (so a write open would not fail with ETXTBSY for that).
fn wait_unused(bin: &Path) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(bin).expect("stat the copy");
    wait_for(
        &format!("no process to execute {}", bin.display()),
        WAIT_TIMEOUT,
        || {
            let busy = std::fs::read_dir("/proc").ok()?.flatten().any(|e| {
                std::fs::metadata(e.path().join("exe"))
                    .is_ok_and(|x| x.dev() == m.dev() && x.ino() == m.ino())
            });
            (!busy).then_some(())
        },
    );
}

/// Every descendant of `pid` (children of all its threads, recursively).
fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            for k in kids.split_whitespace().filter_map(|k| k.parse().ok()) {
                out.push(k);
                todo.push(k);
            }
        }
    }
    out
}

fn check_refused(result: &str, copy: &Path, before: &[u8]) {
    assert!(
        !result.contains("WROTE"),
        "the write went through: {result}"
    );
    assert!(
        result.contains("Read-only file system") || result.contains("Operation not permitted"),
        "expected EROFS (read-only mount) or EPERM (sealed memfd): {result}"
    );
    assert_eq!(
        std::fs::read(copy).expect("read the copy"),
        before,
        "the runtime binary changed"
    );
}

/// The attack on the init of a container created by `bin`; returns what the attacker got.
fn attack_init(env: &TestEnv, bin: &Path) -> String {
    let mut b = ptrace_bundle(env);
    b.set_args(&["sleep", "1000"]);
    // A hook run by the runtime, without `env`: it inherits the runtime's environment.
    let env_dump = env.dir().join("hook-env");
    b.set(
        "/hooks/createRuntime",
        json!([{"path": "/bin/sh", "args": ["sh", "-c", format!("env > {}", env_dump.display())]}]),
    );
    b.write();
    let id = env.new_id();
    let bundle = b.dir().to_string_lossy().into_owned();
    let out = env
        .rt()
        .output(env.rt().cmd_of(bin, &["create", "--bundle", &bundle, &id]));
    out.ok();
    let c = env.container(&id, &out);
    let pid = c.pid();
    if !runtime_bin().ends_with("runc") {
        // Re-executed from a descriptor, the runtime keeps its name for `ps`.
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).expect("comm");
        assert_eq!(comm.trim(), "kakuri-copy", "the created init's name");
    }
    let hook_env = std::fs::read_to_string(&env_dump).expect("the hook's environment");
    assert!(hook_env.contains(ENV_MARKER), "{hook_env}");
    assert!(
        !hook_env.contains("_KAKURI"),
        "the re-exec marker leaked: {hook_env}"
    );
    env.rt()
        .output(
            env.rt()
                .cmd_of(bin, &["exec", "-d", &id, "sh", "-c", ATTACK, "sh", "1"]),
        )
        .ok();
    wait_held(&b.rootfs());
    env.rt().output(env.rt().cmd_of(bin, &["start", &id])).ok();
    wait_for("the init to run sleep", WAIT_TIMEOUT, || {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .filter(|c| c.trim() == "sleep")
    });
    wait_unused(bin);
    let result = release(&b.rootfs());
    drop(c);
    result
}

/// (a) The init of a created container, still the runtime, is opened by a process `exec`'d
/// into the container; the write is tried after `start`, once the init runs the user program.
/// Result here: EROFS ("Read-only file system": the runtime re-executed itself from a
/// read-only bind of its binary); runc 1.1.5: the same.
///
/// Checked without the defence (selfexe::protect() not called, rebuilt): "WROTE", and the copy
/// of the runtime ended with the attacker's byte.
#[test]
fn init_exe_cannot_be_reopened_for_writing() {
    let env = TestEnv::new();
    let copy = env.runtime_copy();
    let before = std::fs::read(&copy).expect("read the copy");
    let result = attack_init(&env, &copy);
    check_refused(&result, &copy, &before);
    if !runtime_bin().ends_with("runc") {
        assert!(result.contains("Read-only file system"), "{result}");
    }
    env.finish();
}

/// A mount set up for one test (bind of a directory onto itself), detached on drop.
struct TestMount(PathBuf);

impl TestMount {
    /// Binds `dir` onto itself and applies `flags` (e.g. MS_UNBINDABLE, or a read-only remount).
    fn new(dir: &Path, flags: libc::c_ulong) -> TestMount {
        use nix::mount::{mount, MsFlags};
        mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .unwrap_or_else(|e| panic!("bind {}: {e}", dir.display()));
        let m = TestMount(dir.to_path_buf());
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::from_bits_truncate(flags),
            None::<&str>,
        )
        .unwrap_or_else(|e| panic!("set flags {flags:#x} on {}: {e}", dir.display()));
        m
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The fallback, when no read-only bind of the binary can be made (here: it lives on an
/// unbindable mount, which open_tree refuses to clone): the runtime runs from a sealed memfd
/// copy; the attacker's reopened handle then cannot write (EPERM). runc 1.1.5 uses the same
/// fallback.
#[test]
fn sealed_copy_when_no_read_only_bind_can_be_made() {
    let env = TestEnv::new();
    let dir = env.dir().join("unbindable");
    std::fs::create_dir(&dir).expect("mkdir");
    let mount = TestMount::new(&dir, libc::MS_UNBINDABLE);
    let bin = dir.join("kakuri-copy");
    std::fs::copy(runtime_bin(), &bin).expect("copy the runtime binary");
    let before = std::fs::read(&bin).expect("read the copy");
    let result = attack_init(&env, &bin);
    check_refused(&result, &bin, &before);
    if !runtime_bin().ends_with("runc") {
        assert!(result.contains("Operation not permitted"), "{result}");
    }
    drop(mount);
    env.finish();
}

/// A binary already on a read-only mount is not re-executed: the init's exe is that very path.
#[test]
fn binary_on_a_read_only_mount_is_run_as_it_is() {
    let env = TestEnv::new();
    if runtime_bin().ends_with("runc") {
        println!("skipped: runc clones its binary wherever it lives (this is kakuri's shortcut)");
        env.finish();
        return;
    }
    let dir = env.dir().join("ro");
    std::fs::create_dir(&dir).expect("mkdir");
    let bin = dir.join("kakuri-copy");
    std::fs::copy(runtime_bin(), &bin).expect("copy the runtime binary");
    let mount = TestMount::new(&dir, libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY);
    let mut b = env.bundle();
    b.set_args(&["true"]);
    b.write();
    let id = env.new_id();
    let bundle = b.dir().to_string_lossy().into_owned();
    let out = env
        .rt()
        .output(env.rt().cmd_of(&bin, &["create", "--bundle", &bundle, &id]));
    out.ok();
    let c = env.container(&id, &out);
    let exe = std::fs::read_link(format!("/proc/{}/exe", c.pid())).expect("readlink");
    assert_eq!(
        exe, bin,
        "the init runs the binary from where it was started"
    );
    drop(c);
    drop(mount);
    env.finish();
}

/// The fact that would let a container with a user namespace of its own do without the
/// defence: the forked init's memory belongs to the runtime's user namespace, so the
/// container's CAP_SYS_PTRACE (over its own namespace) does not pass the non-dumpable check;
/// opening /proc/1/exe fails with EACCES whatever the binary.
#[test]
fn user_namespace_ptrace_does_not_reach_the_init() {
    let env = TestEnv::new();
    let mut b = ptrace_bundle(&env);
    b.add_user_namespace(100000, 65536);
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "grep CapEff /proc/self/status; exec 3</proc/1/exe && echo OPENED",
    ]);
    assert!(!ex.stdout.contains("OPENED"), "{ex}");
    assert!(ex.stderr.contains("Permission denied"), "{ex}");
    drop(c);
    env.finish();
}

/// (b) The child `exec` forks into a container, caught before its execve (the container is
/// paused, so the child freezes as it joins its cgroup), is opened from a second container that
/// shares the first one's pid namespace; the write is tried once the child has exec'd and the
/// runtime has exited. Result here: EROFS; runc 1.1.5: the same.
///
/// Checked without the defence (selfexe::protect() not called, rebuilt): "WROTE".
#[test]
fn exec_child_exe_cannot_be_reopened_for_writing() {
    let env = TestEnv::new();
    let copy = env.runtime_copy();
    let before = std::fs::read(&copy).expect("read the copy");
    let mut target = env.bundle();
    target.set_args(&["sleep", "1000"]);
    target.write();
    let tid = env.new_id();
    let bundle = target.dir().to_string_lossy().into_owned();
    let out = env.rt().output(
        env.rt()
            .cmd_of(&copy, &["create", "--bundle", &bundle, &tid]),
    );
    out.ok();
    let t = env.container(&tid, &out);
    env.rt()
        .output(env.rt().cmd_of(&copy, &["start", &tid]))
        .ok();
    let tpid = t.pid();
    env.rt()
        .output(env.rt().cmd_of(&copy, &["pause", &tid]))
        .ok();
    let runtime = env.rt().spawn(env.rt().cmd_of(
        &copy,
        &["exec", "--ignore-paused", "-d", &tid, "sleep", "1000"],
    ));
    // The forked child, by its pid in the target's pid namespace (the last NSpid field): the
    // first descendant of the runtime that is in a pid namespace below the host's.
    let inner: String = wait_for("exec to fork its child", WAIT_TIMEOUT, || {
        descendants(runtime.pid() as i32).into_iter().find_map(|p| {
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).ok()?;
            let nspid = status_field(&status, "NSpid")?;
            let ids: Vec<&str> = nspid.split_whitespace().collect();
            (ids.len() > 1).then(|| ids[ids.len() - 1].to_string())
        })
    });

    let mut attacker = ptrace_bundle(&env);
    attacker.remove_namespace("pid");
    attacker.add_namespace("pid", Some(Path::new(&format!("/proc/{tpid}/ns/pid"))));
    attacker.set_args(&["sh", "-c", ATTACK, "sh", &inner]);
    let a = env.create(&attacker);
    a.start();
    wait_held(&attacker.rootfs());
    env.rt()
        .output(env.rt().cmd_of(&copy, &["resume", &tid]))
        .ok();
    runtime.wait(CMD_TIMEOUT).ok();
    wait_unused(&copy);
    let result = release(&attacker.rootfs());
    check_refused(&result, &copy, &before);
    drop(a);
    drop(t);
    env.finish();
}

/// Positive control: the same handle trick against a process of a writable binary in the
/// container (a copy of busybox in /kt-w) does write to it, so the attack is real and the tests above
/// can fail.
#[test]
fn the_reopen_attack_writes_a_writable_binary() {
    let env = TestEnv::new();
    let mut b = ptrace_bundle(&env);
    b.set_args(&["sleep", "1000"]);
    let c = env.create(&b);
    c.start();
    // The handle is taken only once the process runs the copy (not the shell it forked from).
    let script = "mkdir /kt-w && cp /bin/busybox /kt-w/busybox || exit 1; \
                  /kt-w/busybox sleep 1000 & p=$!; \
                  until [ \"$(readlink /proc/$p/exe)\" = /kt-w/busybox ]; do \
                  [ -e /proc/$p ] || exit 1; done; \
                  exec 3</proc/$p/exe; kill $p; wait $p; \
                  { printf X >> /proc/self/fd/3 && echo WROTE; } 2>&1";
    let ex = env.run(&["exec", c.id(), "sh", "-c", script]);
    ex.ok();
    assert!(ex.stdout.contains("WROTE"), "{ex}");
    let bb = std::fs::read(b.rootfs().join("kt-w/busybox")).expect("read the busybox copy");
    assert_eq!(
        bb.last(),
        Some(&b'X'),
        "the copy of busybox was not written"
    );
    drop(c);
    env.finish();
}
