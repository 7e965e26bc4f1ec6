//! Runs commands inside a pure cgroup v2 Linux guest, for tests that must see a host without
//! cgroup v1 (this machine is hybrid and stays so), or inside a Debian 12 guest with systemd as
//! PID 1 (cgroup v2 or hybrid), for the systemd cgroup driver.
//!
//! The guest is booted by `runtime-tests/vm/v2guest` (qemu TCG, microvm, a Debian kernel with
//! `cgroup_no_v1=all`); `runtime-tests/vm/setup` prepares it once. The guest sees the host's `/`
//! read-only under an in-memory overlay, so binaries built on the host run there unchanged, and
//! the work dir writable at the same path. It is about ten times slower than the host: use it
//! for behaviour, not timings. See `runtime-tests/vm/README.md`.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// One guest at a time per test process: each wants two vCPUs, and the CI machines have two
/// cores, so parallel guests only slow each other down towards their timeout.
static GUEST: Mutex<()> = Mutex::new(());

/// The directory holding the `setup` and `v2guest` scripts.
pub fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vm")
}

fn v2guest_script() -> PathBuf {
    script_dir().join("v2guest")
}

fn sdguest_script() -> PathBuf {
    script_dir().join("sdguest")
}

/// The cgroup layout of the systemd guest (`runtime-tests/vm/sdguest --cgroup ...`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdMode {
    /// systemd's default: the unified hierarchy alone.
    V2,
    /// `systemd.unified_cgroup_hierarchy=0`: v1 controllers plus cgroup2 at
    /// `/sys/fs/cgroup/unified`.
    Hybrid,
}

impl SdMode {
    /// The value of `sdguest --cgroup`.
    pub fn as_str(self) -> &'static str {
        match self {
            SdMode::V2 => "v2",
            SdMode::Hybrid => "hybrid",
        }
    }
}

/// Says whether the guest can be booted here, and if not why (for a test to print when it
/// skips): no qemu or no kernel/initramfs (run `runtime-tests/vm/setup`), or a stale cache.
pub fn available() -> Result<(), String> {
    check(v2guest_script(), &[])
}

/// Like [`available`], for the systemd guest (prepared by `runtime-tests/vm/sdsetup`).
pub fn sdguest_available(mode: SdMode) -> Result<(), String> {
    check(sdguest_script(), &["--cgroup", mode.as_str()])
}

fn check(script: PathBuf, args: &[&str]) -> Result<(), String> {
    if !cfg!(target_arch = "x86_64") {
        return Err("the qemu guests are x86_64 only".to_string());
    }
    let out = Command::new(&script)
        .args(args)
        .arg("--check")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        Err(if why.is_empty() {
            format!("{} --check failed with {}", script.display(), out.status)
        } else {
            why
        })
    }
}

/// Boots the guest, runs `cmd` (program and arguments, looked up in the guest's `PATH`) as
/// root with `workdir` (default: a fresh temporary directory) as its current directory, and
/// returns its exit status, stdout and stderr. Calls from one process run one guest at a time.
///
/// Exit code 124 means the guest timed out (600 s), 125 that it failed before running the
/// command; both come with an explanation on stderr.
pub fn v2guest(cmd: &[&str], workdir: Option<&Path>) -> io::Result<Output> {
    run_guest(v2guest_script(), &[], cmd, workdir)
}

/// Like [`v2guest`], in the Debian 12 guest with systemd as PID 1 and the cgroup layout `mode`
/// (`runtime-tests/vm/sdguest`): the command runs in `kakuri-run.service` once the boot is
/// finished (`systemctl is-system-running` says `running`).
pub fn sdguest(mode: SdMode, cmd: &[&str], workdir: Option<&Path>) -> io::Result<Output> {
    run_guest(sdguest_script(), &["--cgroup", mode.as_str()], cmd, workdir)
}

fn run_guest(
    script: PathBuf,
    args: &[&str],
    cmd: &[&str],
    workdir: Option<&Path>,
) -> io::Result<Output> {
    if cmd.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "vm: empty guest command",
        ));
    }
    let mut command = Command::new(&script);
    command.args(args);
    if let Some(dir) = workdir {
        command.arg("--workdir").arg(dir);
    }
    command.arg("--").args(cmd);
    // A test that panicked while holding the lock leaves nothing behind that matters here.
    let _one_at_a_time = GUEST
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    command
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", script.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Returns false (after saying why) when the guest cannot be booted on this machine.
    fn guest_or_skip(test: &str) -> bool {
        match available() {
            Ok(()) => true,
            Err(why) => {
                eprintln!("SKIP {test}: no cgroup v2 guest: {why}");
                false
            }
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// A host directory named kakuri-vm-<what>-<pid>, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(what: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!("kakuri-vm-{what}-{}", std::process::id()));
            fs::create_dir(&dir).unwrap();
            TempDir(dir.canonicalize().unwrap())
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            if let Err(e) = fs::remove_dir_all(&self.0) {
                eprintln!("cannot remove {}: {e}", self.0.display());
            }
        }
    }

    fn in_path(program: &str) -> Option<PathBuf> {
        std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join(program))
            .find(|p| p.is_file())
    }

    #[test]
    fn empty_command_is_rejected() {
        let err = v2guest(&[], None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err = sdguest(SdMode::Hybrid, &[], None).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    /// systemd is PID 1 and finished booting, with the cgroup layout asked for, and a
    /// transient scope started over D-Bus shows up and is gone once its process exits.
    fn systemd_guest_boots(mode: SdMode, test: &str) {
        if let Err(why) = sdguest_available(mode) {
            eprintln!("SKIP {test}: no systemd guest: {why}");
            return;
        }
        let dir = TempDir::new(&format!("sd-{}", mode.as_str()));
        let script = "systemctl is-system-running; echo ==; cat /proc/1/comm; echo ==; \
                      stat -fc %T /sys/fs/cgroup; stat -fc %T /sys/fs/cgroup/unified 2>/dev/null; \
                      test -d /sys/fs/cgroup/memory && echo memory-v1; echo ==; \
                      systemd-run --scope --unit=kakuri-vm-probe.scope sh -c \
                      'systemctl is-active kakuri-vm-probe.scope; cat /proc/self/cgroup | tail -n 1'; \
                      echo ==; for i in $(seq 100); do \
                      u=$(systemctl list-units --type=scope --all --no-legend --plain kakuri-vm-probe.scope); \
                      [ -z \"$u\" ] && break; sleep 0.1; done; echo \"$u\"; \
                      echo ==; echo made > made-in-guest";
        let out = sdguest(mode, &["sh", "-c", script], Some(&dir.0)).unwrap();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{:?}\n{stdout}\n{}",
            out.status,
            text(&out.stderr)
        );
        let parts: Vec<&str> = stdout.split("==\n").collect();
        assert_eq!(parts.len(), 6, "{stdout}");
        assert_eq!(parts[0].trim(), "running", "{stdout}");
        assert_eq!(parts[1].trim(), "systemd", "{stdout}");
        let layout: Vec<&str> = parts[2].split_whitespace().collect();
        match mode {
            SdMode::V2 => assert_eq!(layout, ["cgroup2fs"], "{stdout}"),
            SdMode::Hybrid => assert_eq!(layout, ["tmpfs", "cgroup2fs", "memory-v1"], "{stdout}"),
        }
        let scope: Vec<&str> = parts[3].lines().collect();
        assert_eq!(scope.first(), Some(&"active"), "{stdout}");
        assert_eq!(
            scope.get(1),
            Some(&"0::/system.slice/kakuri-vm-probe.scope"),
            "{stdout}"
        );
        assert_eq!(parts[4].trim(), "", "scope left behind: {stdout}");
        assert_eq!(
            fs::read_to_string(dir.0.join("made-in-guest")).unwrap(),
            "made\n"
        );
    }

    #[test]
    fn systemd_guest_boots_v2() {
        systemd_guest_boots(SdMode::V2, "systemd_guest_boots_v2");
    }

    #[test]
    fn systemd_guest_boots_hybrid() {
        systemd_guest_boots(SdMode::Hybrid, "systemd_guest_boots_hybrid");
    }

    #[test]
    fn guest_has_cgroup2_only_and_container_mounts() {
        if !guest_or_skip("guest_has_cgroup2_only_and_container_mounts") {
            return;
        }
        let script = "cat /proc/self/mountinfo; echo ==; cat /sys/fs/cgroup/cgroup.subtree_control; \
                      echo ==; mkdir /sys/fs/cgroup/kakuri-t && echo $$ > /sys/fs/cgroup/kakuri-t/cgroup.procs \
                      && cat /proc/self/cgroup";
        let out = v2guest(&["sh", "-c", script], None).unwrap();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{:?}\n{stdout}\n{}",
            out.status,
            text(&out.stderr)
        );
        let parts: Vec<&str> = stdout.split("==\n").collect();
        assert_eq!(parts.len(), 3, "{stdout}");
        // mountinfo: "... mountpoint options [optional fields] - fstype source superoptions"
        let mounts: Vec<(String, String)> = parts[0]
            .lines()
            .filter_map(|l| {
                let point = l.split(' ').nth(4)?;
                let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
                Some((point.to_string(), fstype.to_string()))
            })
            .collect();
        let has = |point: &str, fstype: &str| mounts.iter().any(|(p, t)| p == point && t == fstype);
        assert!(has("/sys/fs/cgroup", "cgroup2"), "{stdout}");
        assert!(
            !mounts.iter().any(|(_, t)| t == "cgroup"),
            "cgroup v1 mounted: {stdout}"
        );
        // /tmp is the overlay's (host files visible, writes in memory); /run a tmpfs.
        assert!(has("/run", "tmpfs"), "{stdout}");
        assert!(
            !has("/tmp", "9p"),
            "/tmp must not be the read-only 9p share: {stdout}"
        );
        assert!(
            has("/dev/pts", "devpts") && has("/dev/shm", "tmpfs"),
            "{stdout}"
        );
        assert!(has("/", "overlay"), "{stdout}");
        let controllers: Vec<&str> = parts[1].split_whitespace().collect();
        for c in ["cpu", "cpuset", "io", "memory", "pids"] {
            assert!(controllers.contains(&c), "{c} not delegated: {}", parts[1]);
        }
        assert_eq!(parts[2].trim(), "0::/kakuri-t");
    }

    #[test]
    fn streams_exit_code_workdir_and_large_output() {
        if !guest_or_skip("streams_exit_code_workdir_and_large_output") {
            return;
        }
        let dir = TempDir::new("streams");
        // 200000 lines (1.3 MB) must arrive whole.
        let script = "pwd; seq 1 200000; echo to-stderr >&2; echo written > made-in-guest; exit 7";
        let out = v2guest(&["sh", "-c", script], Some(&dir.0)).unwrap();
        let made = fs::read_to_string(dir.0.join("made-in-guest"));
        let stdout = text(&out.stdout);
        assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
        let lines: Vec<&str> = stdout.lines().collect();
        assert_eq!(lines.len(), 200_001);
        assert_eq!(Path::new(lines[0]), dir.0);
        assert_eq!(lines[200_000], "200000");
        assert_eq!(text(&out.stderr).trim(), "to-stderr");
        assert_eq!(made.unwrap(), "written\n");
    }

    /// This test binary, built on the host, run inside the guest on one ignored test below.
    #[test]
    fn host_built_binary_runs_in_guest() {
        if !guest_or_skip("host_built_binary_runs_in_guest") {
            return;
        }
        let exe = std::env::current_exe().unwrap();
        let exe = exe.to_str().unwrap();
        // Test names are module paths without the crate name.
        let module = module_path!().split_once("::").unwrap().1;
        let probe = format!("{module}::probe_inside_guest");
        let out = v2guest(&[exe, "--exact", &probe, "--ignored", "--nocapture"], None).unwrap();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{:?}\n{stdout}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert!(stdout.contains("kakuri-vm probe: cgroup2 only"), "{stdout}");
        assert!(stdout.contains("1 passed"), "{stdout}");
    }

    #[test]
    #[ignore = "meant for the cgroup v2 guest: run there by host_built_binary_runs_in_guest"]
    fn probe_inside_guest() {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let fstypes: Vec<(&str, &str)> = mountinfo
            .lines()
            .filter_map(|l| {
                Some((
                    l.split(' ').nth(4)?,
                    l.split(" - ").nth(1)?.split(' ').next()?,
                ))
            })
            .collect();
        assert!(
            fstypes.contains(&("/sys/fs/cgroup", "cgroup2")),
            "{mountinfo}"
        );
        assert!(!fstypes.iter().any(|(_, t)| *t == "cgroup"), "{mountinfo}");
        let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap();
        assert_eq!(cgroup, "0::/\n");
        println!("kakuri-vm probe: cgroup2 only");
    }

    /// Debian's runc runs a busybox container with memory and pids limits in the guest.
    #[test]
    fn runc_runs_a_limited_container_in_guest() {
        let test = "runc_runs_a_limited_container_in_guest";
        if !guest_or_skip(test) {
            return;
        }
        let Some(runc) = in_path("runc") else {
            eprintln!("SKIP {test}: runc is not installed");
            return;
        };
        let busybox = Path::new("/bin/busybox");
        if !busybox.is_file() {
            eprintln!(
                "SKIP {test}: {} (busybox-static) is missing",
                busybox.display()
            );
            return;
        }
        let dir = TempDir::new("runc");
        fs::create_dir_all(dir.0.join("rootfs/bin")).unwrap();
        fs::copy(busybox, dir.0.join("rootfs/bin/busybox")).unwrap();
        let spec = Command::new(&runc)
            .arg("spec")
            .arg("--bundle")
            .arg(&dir.0)
            .output()
            .unwrap();
        assert!(spec.status.success(), "runc spec: {}", text(&spec.stderr));
        let config_path = dir.0.join("config.json");
        let mut config: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&config_path).unwrap()).unwrap();
        let id = format!("kakuri-vm-{}", std::process::id());
        config["process"]["terminal"] = false.into();
        config["process"]["args"] = serde_json::json!([
            "/bin/busybox",
            "cat",
            "/proc/self/cgroup",
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/pids.max"
        ]);
        let linux = &mut config["linux"];
        linux["cgroupsPath"] = format!("/{id}").into();
        linux["resources"]["memory"] = serde_json::json!({ "limit": 64 << 20 });
        linux["resources"]["pids"] = serde_json::json!({ "limit": 32 });
        linux["namespaces"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({ "type": "cgroup" }));
        fs::write(&config_path, config.to_string()).unwrap();

        let bundle = dir.0.to_str().unwrap();
        let script = format!(
            "runc run --bundle {bundle} {id}; rc=$?; test -e /sys/fs/cgroup/{id} && echo leaked; exit $rc"
        );
        let out = v2guest(&["sh", "-c", &script], Some(&dir.0)).unwrap();
        let stdout = text(&out.stdout);
        assert!(
            out.status.success(),
            "{:?}\n{stdout}\n{}",
            out.status,
            text(&out.stderr)
        );
        assert_eq!(stdout, format!("0::/\n{}\n32\n", 64 << 20));
    }
}
