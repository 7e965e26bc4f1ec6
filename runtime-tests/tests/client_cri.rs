//! Kubernetes' path to kakuri: containerd 1.6's CRI plugin with kakuri as a RuntimeClass
//! handler, driven by this test the way a kubelet drives it (CRI `runtime.v1` over containerd's
//! unix socket, streaming exec/attach over the streaming server's websocket protocol).
//!
//! A private containerd (templates/containerd-k8s.toml) has two handlers, `kakuri` (the runtime
//! under test, through the runc v2 shim's BinaryName) and `runc`; every scenario runs once with
//! each and the observations (states, exit codes, reasons, exec and log output) must be equal.
//! Pods get addresses on a private CNI bridge (Debian's containernetworking-plugins: bridge,
//! host-local, loopback); images are built locally (busybox-static, a pause program) and
//! imported into the `k8s.io` namespace. Cgroups: the cgroupfs driver, pods under
//! `/<run>/kubepods/burstable/pod<uid>` as a kubelet with `--cgroup-root=/<run>` places them.
//!
//! Run: `cargo test -p kakuri-runtime-tests --test client_cri` (as root, after
//! `runtime-tests/clients/setup`). See docs/kubernetes.md.

mod clients_common;
mod cri_driver;

use clients_common::{cgroup_dir, client_test, read_trim, Harness, Kind, CTR_IMAGE, PAUSE_IMAGE};
use cri_driver::bench;
use cri_driver::v1 as cri;
use cri_driver::ws;
use cri_driver::{Cri, KUBELET_MASKED_PATHS, KUBELET_READONLY_PATHS};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Tests in this file; the last one to finish stops containerd and checks nothing is left.
const TESTS: usize = clients_common::count_tests(include_str!("client_cri.rs"));
/// The RuntimeClass handlers every scenario runs with (templates/containerd-k8s.toml).
const HANDLERS: [&str; 2] = ["kakuri", "runc"];
const POD_NAMESPACE: &str = "kakuri-test";
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

// NamespaceMode and states of the CRI API, by value.
const NS_POD: i32 = cri::NamespaceMode::Pod as i32;
const NS_CONTAINER: i32 = cri::NamespaceMode::Container as i32;
const NS_NODE: i32 = cri::NamespaceMode::Node as i32;
const CONTAINER_CREATED: i32 = cri::ContainerState::ContainerCreated as i32;
const CONTAINER_RUNNING: i32 = cri::ContainerState::ContainerRunning as i32;
const CONTAINER_EXITED: i32 = cri::ContainerState::ContainerExited as i32;

/// What a scenario saw, compared between the handlers.
type Observed = BTreeMap<String, String>;

fn cri_client(h: &Harness) -> &'static Cri {
    static CRI: OnceLock<Cri> = OnceLock::new();
    CRI.get_or_init(|| {
        Cri::connect(&h.containerd_sock()).unwrap_or_else(|e| panic!("CRI client: {e}"))
    })
}

/// Runs `scenario` with each handler and requires the same observations from both.
fn test(name: &str, scenario: impl Fn(&Harness, &Cri, &str, &mut Observed)) {
    client_test(Kind::Cri, TESTS, name, |h| {
        let cri = cri_client(h);
        let mut seen: Vec<(&str, Observed)> = Vec::new();
        let mut failed = None;
        // Every handler runs even when one fails, so that the report (and the conformance
        // table in docs/conformance.md made from it) shows both.
        for handler in HANDLERS {
            let mut obs = Observed::new();
            let result = catch_unwind(AssertUnwindSafe(|| scenario(h, cri, handler, &mut obs)));
            let verdict = match &result {
                Ok(()) => "pass".to_string(),
                Err(p) => format!("FAIL: {}", panic_text(p.as_ref())),
            };
            report_line(name, handler, &obs, &verdict);
            if let Err(p) = result {
                failed.get_or_insert(p);
            }
            seen.push((handler, obs));
        }
        if let Some(p) = failed {
            resume_unwind(p);
        }
        if std::env::var_os("KAKURI_CRI_SHOW").is_some() {
            for (handler, obs) in &seen {
                clients_common::note(&format!("{name} [{handler}]: {obs:#?}"));
            }
        }
        let (k, r) = (&seen[0], &seen[1]);
        let keys: std::collections::BTreeSet<&String> = k.1.keys().chain(r.1.keys()).collect();
        let differ: Vec<String> = keys
            .into_iter()
            .filter(|key| k.1.get(*key) != r.1.get(*key))
            .map(|key| {
                format!(
                    "  {key}: {}={:?} {}={:?}",
                    k.0,
                    k.1.get(key),
                    r.0,
                    r.1.get(key)
                )
            })
            .collect();
        assert!(
            differ.is_empty(),
            "{name}: the handlers differ:\n{}",
            differ.join("\n")
        );
    });
}

/// The text of a panic payload (the assertion message).
fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// With `KAKURI_CRI_REPORT=FILE`: appends one JSON line per scenario and handler (verdict,
/// the observations compared between the handlers) — the source of the table in
/// docs/conformance.md.
fn report_line(scenario: &str, handler: &str, obs: &Observed, verdict: &str) {
    let Some(path) = std::env::var_os("KAKURI_CRI_REPORT").filter(|p| !p.is_empty()) else {
        return;
    };
    let line = serde_json::json!({
        "scenario": scenario,
        "handler": handler,
        "verdict": verdict,
        "observations": obs.keys().collect::<Vec<_>>(),
    });
    let mut f = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", PathBuf::from(&path).display()));
    writeln!(f, "{line}").expect("report line");
}

fn record(obs: &mut Observed, key: &str, value: impl ToString) {
    obs.insert(key.to_string(), value.to_string());
}

#[track_caller]
fn ok<T>(what: &str, r: Result<T, tonic::Status>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {} {}", e.code(), e.message()))
}

/// A pod the way the kubelet sets one up: its directories (logs, etc-hosts, volumes) under the
/// run's `kubelet/` directory, its sandbox through RunPodSandbox with the handler, and its
/// containers; stopped and removed on drop.
struct Pod<'a> {
    cri: &'a Cri,
    handler: &'a str,
    uid: String,
    id: String,
    config: cri::PodSandboxConfig,
    /// `kubelet/pods/<uid>`: etc-hosts and volumes.
    dir: PathBuf,
    containers: Vec<(String, String)>,
    /// Stopped and removed already ([`Pod::remove_timed`]): nothing left for drop.
    removed: bool,
}

impl<'a> Pod<'a> {
    fn new(
        h: &'a Harness,
        cri: &'a Cri,
        handler: &'a str,
        name: &str,
        customize: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> Pod<'a> {
        Pod::new_timed(h, cri, handler, name, customize).0
    }

    /// [`Pod::new`], and how long RunPodSandbox took.
    fn new_timed(
        h: &'a Harness,
        cri: &'a Cri,
        handler: &'a str,
        name: &str,
        customize: impl FnOnce(&mut cri::PodSandboxConfig),
    ) -> (Pod<'a>, Duration) {
        let uid = h.name(&format!("{name}-{handler}"));
        let dir = h.dir.join("kubelet/pods").join(&uid);
        let log_dir = h
            .dir
            .join("kubelet/logs")
            .join(format!("{POD_NAMESPACE}_{name}_{uid}"));
        fs::create_dir_all(&log_dir).expect("pod log dir");
        fs::create_dir_all(dir.join("volumes")).expect("pod dir");
        let labels: HashMap<String, String> = [
            ("io.kubernetes.pod.name", name),
            ("io.kubernetes.pod.namespace", POD_NAMESPACE),
            ("io.kubernetes.pod.uid", &uid),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut config = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.into(),
                uid: uid.clone(),
                namespace: POD_NAMESPACE.into(),
                attempt: 0,
            }),
            hostname: name.into(),
            log_directory: log_dir.to_string_lossy().into_owned(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![format!("{POD_NAMESPACE}.svc.cluster.local")],
                options: vec!["ndots:5".into()],
            }),
            labels,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: format!("/{}/kubepods/burstable/pod{uid}", h.cgroup_parent),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: NS_POD,
                        pid: NS_CONTAINER,
                        ipc: NS_POD,
                        ..Default::default()
                    }),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        customize(&mut config);
        let host_network = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == NS_NODE);
        if host_network {
            // The kubelet sets no hostname for a hostNetwork pod: it has the node's UTS
            // namespace (runc and kakuri refuse a hostname without a private one).
            config.hostname.clear();
        }
        let t = Instant::now();
        let id = ok(
            &format!("RunPodSandbox {name} ({handler})"),
            cri.run_pod_sandbox(&config, handler),
        );
        let run_sandbox = t.elapsed();
        let pod = Pod {
            cri,
            handler,
            uid,
            id,
            config,
            dir,
            containers: Vec::new(),
            removed: false,
        };
        // The kubelet's etc-hosts file, written once the pod has its address.
        let ip = pod.ip();
        let hosts = format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost\n{}\t{name}\n",
            if ip.is_empty() { "127.0.1.1" } else { &ip }
        );
        fs::write(pod.dir.join("etc-hosts"), hosts).expect("etc-hosts");
        (pod, run_sandbox)
    }

    fn status(&self) -> cri::PodSandboxStatus {
        ok(
            "PodSandboxStatus",
            self.cri.pod_sandbox_status(&self.id, false),
        )
        .status
        .unwrap_or_default()
    }

    /// The pause process on the host (from the verbose sandbox status).
    fn sandbox_pid(&self) -> u32 {
        let v = ok(
            "PodSandboxStatus verbose",
            self.cri.pod_sandbox_status(&self.id, true),
        );
        let info: serde_json::Value =
            serde_json::from_str(v.info.get("info").map(String::as_str).unwrap_or("{}"))
                .unwrap_or_default();
        info["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no sandbox pid in {info}")) as u32
    }

    fn ip(&self) -> String {
        self.status().network.map(|n| n.ip).unwrap_or_default()
    }

    fn host_network(&self) -> bool {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .is_some_and(|n| n.network == NS_NODE)
    }

    /// A container config as the kubelet builds it for `argv` in this pod.
    fn container_config(&self, name: &str, argv: &[&str]) -> cri::ContainerConfig {
        let ns = self
            .config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone());
        let mut mounts = Vec::new();
        if !self.host_network() {
            mounts.push(cri::Mount {
                container_path: "/etc/hosts".into(),
                host_path: self.dir.join("etc-hosts").to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        fs::create_dir_all(PathBuf::from(&self.config.log_directory).join(name))
            .expect("container log dir");
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: name.into(),
                attempt: 0,
            }),
            image: Some(cri_driver::image_spec(CTR_IMAGE)),
            command: argv.iter().map(|s| s.to_string()).collect(),
            envs: vec![cri::KeyValue {
                key: "KAKURI_POD".into(),
                value: self
                    .config
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .unwrap_or_default(),
            }],
            mounts,
            labels: [("io.kubernetes.container.name".to_string(), name.to_string())]
                .into_iter()
                .collect(),
            log_path: format!("{name}/0.log"),
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 102,
                    oom_score_adj: 969,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: ns,
                    masked_paths: KUBELET_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
                    readonly_paths: KUBELET_READONLY_PATHS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }

    /// CreateContainer with the kubelet's config for `argv`, changed by `customize`.
    fn create(
        &mut self,
        name: &str,
        argv: &[&str],
        customize: impl FnOnce(&mut cri::ContainerConfig),
    ) -> String {
        let mut config = self.container_config(name, argv);
        customize(&mut config);
        let id = ok(
            &format!("CreateContainer {name} ({})", self.handler),
            self.cri.create_container(&self.id, &config, &self.config),
        );
        self.containers.push((name.to_string(), id.clone()));
        id
    }

    /// CreateContainer + StartContainer.
    fn run(
        &mut self,
        name: &str,
        argv: &[&str],
        customize: impl FnOnce(&mut cri::ContainerConfig),
    ) -> String {
        let id = self.create(name, argv, customize);
        ok(
            &format!("StartContainer {name} ({})", self.handler),
            self.cri.start_container(&id),
        );
        id
    }

    /// `sh -c SCRIPT` in a new running container.
    fn run_sh(&mut self, name: &str, script: &str) -> String {
        self.run(name, &["sh", "-c", script], |_| {})
    }

    fn container_status(&self, id: &str) -> cri::ContainerStatus {
        ok("ContainerStatus", self.cri.container_status(id))
    }

    /// Polls ContainerStatus until the container has exited.
    fn wait_exited(&self, id: &str, secs: u64) -> cri::ContainerStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.container_status(id);
            if s.state == CONTAINER_EXITED {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "container {id} ({}) still not exited after {secs} s: {s:?}",
                self.handler
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The container's process on the host (from the verbose status).
    fn pid(&self, id: &str) -> u32 {
        let info = ok("ContainerStatus verbose", self.cri.container_info(id));
        info["pid"]
            .as_u64()
            .unwrap_or_else(|| panic!("no pid in the verbose status: {info}")) as u32
    }

    fn log_path(&self, name: &str) -> PathBuf {
        PathBuf::from(&self.config.log_directory).join(format!("{name}/0.log"))
    }

    /// The container's log file: (stream, content) per line, each line checked for the CRI
    /// format `<RFC 3339 nano timestamp> <stdout|stderr> <F|P> <content>`.
    fn log(&self, name: &str) -> Vec<(String, String)> {
        parse_cri_log(&fs::read_to_string(self.log_path(name)).unwrap_or_default())
    }

    /// Waits until the log holds `needle` on some line.
    fn wait_log(&self, name: &str, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.log(name).iter().any(|(_, l)| l.contains(needle)) {
            assert!(
                Instant::now() < deadline,
                "{name} ({}): no {needle:?} in its log after 30 s: {:?}",
                self.handler,
                self.log(name)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// ExecSync `sh -c SCRIPT`: (stdout, stderr, exit code).
    fn exec(&self, id: &str, script: &str) -> (String, String, i32) {
        let r = ok(
            &format!("ExecSync {script:?} ({})", self.handler),
            self.cri.exec_sync(id, &["sh", "-c", script], 30),
        );
        (
            String::from_utf8_lossy(&r.stdout).into_owned(),
            String::from_utf8_lossy(&r.stderr).into_owned(),
            r.exit_code,
        )
    }

    /// ExecSync that must exit 0; its stdout.
    #[track_caller]
    fn exec_ok(&self, id: &str, script: &str) -> String {
        let (out, err, code) = self.exec(id, script);
        assert_eq!(
            code, 0,
            "ExecSync {script:?} ({}): exit {code}, stdout {out:?}, stderr {err:?}",
            self.handler
        );
        out
    }

    /// The kubelet's teardown, each call required to succeed: StopContainer (grace period
    /// `grace_secs`) of every container and StopPodSandbox, then RemoveContainer of each and
    /// RemovePodSandbox. Returns how long the stops and the removals took.
    fn remove_timed(&mut self, grace_secs: i64) -> (Duration, Duration) {
        let t = Instant::now();
        for (name, id) in &self.containers {
            ok(
                &format!("StopContainer {name} ({})", self.handler),
                self.cri.stop_container(id, grace_secs),
            );
        }
        ok("StopPodSandbox", self.cri.stop_pod_sandbox(&self.id));
        let stop = t.elapsed();
        let t = Instant::now();
        for (name, id) in &self.containers {
            ok(
                &format!("RemoveContainer {name} ({})", self.handler),
                self.cri.remove_container(id),
            );
        }
        ok("RemovePodSandbox", self.cri.remove_pod_sandbox(&self.id));
        self.removed = true;
        (stop, t.elapsed())
    }
}

impl Drop for Pod<'_> {
    fn drop(&mut self) {
        if self.removed {
            return;
        }
        // The kubelet's teardown order: containers, then the sandbox.
        for (_, id) in &self.containers {
            let _ = self.cri.stop_container(id, 0);
            let _ = self.cri.remove_container(id);
        }
        let _ = self.cri.stop_pod_sandbox(&self.id);
        let _ = self.cri.remove_pod_sandbox(&self.id);
    }
}

fn unconfined() -> cri::SecurityProfile {
    cri::SecurityProfile {
        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
        ..Default::default()
    }
}

/// Splits a CRI log into (stream, content), asserting the format of every line.
fn parse_cri_log(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|line| {
            let mut parts = line.splitn(4, ' ');
            let (ts, stream, tag) = (parts.next(), parts.next(), parts.next());
            let content = parts.next().unwrap_or("");
            let ts = ts.unwrap_or("");
            assert!(
                ts.len() >= 20
                    && ts.as_bytes()[4] == b'-'
                    && ts.as_bytes()[10] == b'T'
                    && (ts.ends_with('Z') || ts.contains('+')),
                "log line without an RFC 3339 timestamp: {line:?}"
            );
            assert!(
                matches!(stream, Some("stdout") | Some("stderr")),
                "log line without a stream: {line:?}"
            );
            assert!(
                matches!(tag, Some("F") | Some("P")),
                "log line without a F/P tag: {line:?}"
            );
            (stream.unwrap_or("").to_string(), content.to_string())
        })
        .collect()
}

/// Cgroup path (relative to the v1 hierarchy's root) of `pid` for `controller`.
fn cgroup_path(pid: u32, controller: &str) -> String {
    cgroup_dir(pid, controller)
        .strip_prefix(format!("/sys/fs/cgroup/{controller}"))
        .map(|p| format!("/{}", p.display()))
        .unwrap_or_default()
}

// ------------------------------------------------------------------------------- scenarios

/// The kubelet's sequence for one pod: Version, ImageStatus, RunPodSandbox, PodSandboxStatus,
/// CreateContainer, StartContainer, ContainerStatus, ContainerStats, PodSandboxStats,
/// UpdateContainerResources, StopContainer with a grace period, StopPodSandbox,
/// RemoveContainer, RemovePodSandbox; logs in the CRI format; the kubepods cgroup layout.
#[test]
fn kubelet_pod_lifecycle() {
    test("kubelet_pod_lifecycle", |h, cri, handler, obs| {
        let v = ok("Version", cri.version());
        assert_eq!(v.runtime_name, "containerd", "{v:?}");
        assert_eq!(v.runtime_api_version, "v1", "{v:?}");
        for image in [CTR_IMAGE, PAUSE_IMAGE] {
            let st = ok("ImageStatus", cri.image_status(image));
            assert!(
                st.image.is_some(),
                "image {image} is not known to CRI: {st:?}"
            );
        }
        let mut pod = Pod::new(h, cri, handler, "lifecycle", |_| {});
        let st = pod.status();
        record(obs, "sandbox.state", st.state);
        assert_eq!(
            st.state,
            cri::PodSandboxState::SandboxReady as i32,
            "{st:?}"
        );
        assert_eq!(st.runtime_handler, handler, "{st:?}");
        let ip = pod.ip();
        let prefix = h.cni_subnet.trim_end_matches("0/24");
        assert!(
            ip.starts_with(prefix),
            "pod address {ip:?} is not in the CNI subnet {}",
            h.cni_subnet
        );
        // The shim runs the handler's binary: the sandbox is kakuri's (or runc's) container.
        let root = h.dir.join(format!("{handler}-root/k8s.io/{}", pod.id));
        assert!(
            root.join("state.json").exists(),
            "no {} state for the sandbox in {}",
            handler,
            root.display()
        );

        let script = "trap 'echo got-term; exit 0' TERM; echo started; echo to-stderr >&2; \
                      while true; do sleep 1000 & wait; done";
        let id = pod.create("app", &["sh", "-c", script], |_| {});
        let s = pod.container_status(&id);
        record(obs, "created.state", s.state);
        assert_eq!(s.state, CONTAINER_CREATED, "{s:?}");
        ok("StartContainer", cri.start_container(&id));
        let s = pod.container_status(&id);
        record(obs, "started.state", s.state);
        assert_eq!(s.state, CONTAINER_RUNNING, "{s:?}");
        assert!(s.started_at > 0, "{s:?}");
        pod.wait_log("app", "to-stderr");
        let mut log = pod.log("app");
        // stdout and stderr are separate pipes, copied to the log independently: their
        // relative order is not the runtime's.
        log.sort();
        record(obs, "log", format!("{log:?}"));
        assert!(
            log.contains(&("stdout".into(), "started".into()))
                && log.contains(&("stderr".into(), "to-stderr".into())),
            "{log:?}"
        );

        // Cgroups as the kubelet asked: the pod's cgroup under kubepods, each container below.
        let pid = pod.pid(&id);
        let pod_cgroup = format!("/{}/kubepods/burstable/pod{}", h.cgroup_parent, pod.uid);
        let sandbox_pid = pod.sandbox_pid();
        for controller in ["memory", "cpu", "pids"] {
            assert_eq!(
                cgroup_path(pid, controller),
                format!("{pod_cgroup}/{id}"),
                "{controller} cgroup of the container ({handler})"
            );
            assert_eq!(
                cgroup_path(sandbox_pid, controller),
                format!("{pod_cgroup}/{}", pod.id),
                "{controller} cgroup of the sandbox ({handler})"
            );
        }
        let cpu = cgroup_dir(pid, "cpu");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "102");

        // Stats through the shim.
        let stats = ok("ContainerStats", cri.container_stats(&id));
        let mem = stats
            .memory
            .as_ref()
            .and_then(|m| m.working_set_bytes.as_ref())
            .map(|v| v.value)
            .unwrap_or(0);
        assert!(mem > 0, "no working set in {stats:?}");
        assert!(
            stats
                .cpu
                .as_ref()
                .and_then(|c| c.usage_core_nano_seconds.as_ref())
                .is_some(),
            "no CPU usage in {stats:?}"
        );
        record(
            obs,
            "stats.container",
            stats.attributes.map(|a| a.id == id).unwrap_or(false),
        );
        match cri.pod_sandbox_stats(&pod.id) {
            Ok(ps) => {
                let linux = ps.linux.unwrap_or_default();
                record(obs, "podstats.containers", linux.containers.len());
                assert!(linux.memory.is_some(), "pod stats without memory");
            }
            Err(e) => record(obs, "podstats.error", e.code()),
        }

        // UpdateContainerResources reaches the cgroup (the shim runs `<runtime> update`).
        ok(
            "UpdateContainerResources",
            cri.update_container_resources(
                &id,
                cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota: 50_000,
                    cpu_shares: 256,
                    memory_limit_in_bytes: 200 << 20,
                    oom_score_adj: 969,
                    ..Default::default()
                },
            ),
        );
        let memory = cgroup_dir(pid, "memory");
        record(
            obs,
            "update.memory",
            read_trim(&memory.join("memory.limit_in_bytes")),
        );
        record(
            obs,
            "update.quota",
            read_trim(&cpu.join("cpu.cfs_quota_us")),
        );
        record(obs, "update.shares", read_trim(&cpu.join("cpu.shares")));
        assert_eq!(
            read_trim(&memory.join("memory.limit_in_bytes")),
            "209715200"
        );
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
        let s = pod.container_status(&id);
        assert_eq!(
            s.resources
                .and_then(|r| r.linux)
                .map(|l| l.memory_limit_in_bytes),
            Some(200 << 20),
            "ContainerStatus does not report the new limit"
        );

        // StopContainer: SIGTERM within the grace period, the trap exits 0.
        ok("StopContainer", cri.stop_container(&id, 10));
        let s = pod.container_status(&id);
        record(obs, "stopped.state", s.state);
        record(obs, "stopped.exit", s.exit_code);
        record(obs, "stopped.reason", &s.reason);
        assert_eq!(
            (s.state, s.exit_code, s.reason.as_str()),
            (CONTAINER_EXITED, 0, "Completed")
        );
        pod.wait_log("app", "got-term");

        ok("StopPodSandbox", cri.stop_pod_sandbox(&pod.id));
        let st = pod.status();
        record(obs, "sandbox.stopped", st.state);
        assert_eq!(st.state, cri::PodSandboxState::SandboxNotready as i32);
        ok("RemoveContainer", cri.remove_container(&id));
        ok("RemovePodSandbox", cri.remove_pod_sandbox(&pod.id));
        let left = ok("ListPodSandbox", cri.list_pod_sandboxes());
        assert!(
            !left.iter().any(|p| p.id == pod.id),
            "sandbox still listed after RemovePodSandbox"
        );
        assert!(!root.exists(), "{handler} state left in {}", root.display());
        // The runtime removed the container's and the sandbox's cgroups (the pod's own
        // cgroup is the kubelet's to remove, as with runc).
        for controller in ["memory", "cpu", "pids"] {
            let pod_dir = PathBuf::from("/sys/fs/cgroup")
                .join(controller)
                .join(pod_cgroup.trim_start_matches('/'));
            for leaf in [&id, &pod.id] {
                let dir = pod_dir.join(leaf);
                assert!(!dir.exists(), "cgroup {} left ({handler})", dir.display());
            }
        }
    });
}

/// A container that ignores SIGTERM is killed when the grace period ends.
#[test]
fn stop_grace_period_expires() {
    test("stop_grace_period_expires", |h, cri, handler, obs| {
        let mut pod = Pod::new(h, cri, handler, "grace", |_| {});
        let id = pod.run_sh(
            "stubborn",
            "trap '' TERM; echo ready; while true; do sleep 1; done",
        );
        pod.wait_log("stubborn", "ready");
        let start = Instant::now();
        ok("StopContainer", cri.stop_container(&id, 2));
        let took = start.elapsed();
        let s = pod.container_status(&id);
        record(obs, "exit", s.exit_code);
        record(obs, "reason", &s.reason);
        assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"), "{s:?}");
        assert!(
            took >= Duration::from_secs(2),
            "killed before the grace period: {took:?}"
        );
    });
}

/// ExecSync (as a liveness probe does it) and Exec over the streaming server's websocket,
/// with stdin, without and with a terminal.
#[test]
fn exec_sync_and_streaming_exec() {
    test("exec_sync_and_streaming_exec", |h, cri, handler, obs| {
        let mut pod = Pod::new(h, cri, handler, "exec", |_| {});
        let id = pod.run_sh("app", "touch /tmp/healthy; exec sleep 1000");
        let (out, err, code) = pod.exec(&id, "echo out; echo err >&2; exit 3");
        record(obs, "execsync", format!("{out:?} {err:?} {code}"));
        assert_eq!((out.as_str(), err.as_str(), code), ("out\n", "err\n", 3));
        // Liveness: healthy, then not.
        let probe = |pod: &Pod| pod.exec(&id, "cat /tmp/healthy").2;
        record(obs, "probe.healthy", probe(&pod));
        pod.exec_ok(&id, "rm /tmp/healthy");
        record(obs, "probe.unhealthy", probe(&pod));
        assert_eq!(probe(&pod), 1);
        // A probe that outlives its timeout.
        let t = Instant::now();
        let r = cri.exec_sync(&id, &["sleep", "30"], 1);
        record(
            obs,
            "probe.timeout",
            format!(
                "{:?}",
                r.as_ref().map(|r| r.exit_code).map_err(|e| e.code())
            ),
        );
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "ExecSync timeout ignored"
        );
        let s = pod.container_status(&id);
        assert_eq!(
            s.state, CONTAINER_RUNNING,
            "a probe timeout hurt the container: {s:?}"
        );

        // Streaming exec, no tty: stdin in, stdout and stderr apart, exit code in the status.
        let url = ok(
            "Exec",
            cri.exec(cri::ExecRequest {
                container_id: id.clone(),
                cmd: [
                    "sh",
                    "-c",
                    "read line; echo got:$line; echo to-err >&2; exit 7",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect(),
                stdin: true,
                stdout: true,
                stderr: true,
                tty: false,
            }),
        );
        let mut conn = ws::Conn::open(&url, STREAM_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(conn.protocol, ws::PROTOCOL);
        conn.send(0, b"hello\n").expect("stdin");
        let s = conn
            .run(Instant::now() + STREAM_TIMEOUT, |_, _| Ok(false))
            .unwrap_or_else(|e| panic!("exec stream ({handler}): {e}"));
        record(obs, "exec.stdout", s.out());
        record(obs, "exec.stderr", String::from_utf8_lossy(&s.stderr));
        record(obs, "exec.exit", format!("{:?}", s.exit_code()));
        assert_eq!(s.out(), "got:hello\n", "{s:?}");
        assert_eq!(s.stderr, b"to-err\n", "{s:?}");
        assert_eq!(s.exit_code(), Some(7), "{s:?}");

        // With a terminal: the process sees a pty; output comes on stdout with CRLF.
        let url = ok(
            "Exec tty",
            cri.exec(cri::ExecRequest {
                container_id: id.clone(),
                cmd: ["sh", "-c", "tty"].iter().map(|s| s.to_string()).collect(),
                stdin: true,
                stdout: true,
                stderr: false,
                tty: true,
            }),
        );
        let mut conn = ws::Conn::open(&url, STREAM_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
        conn.send(4, br#"{"Width":91,"Height":17}"#)
            .expect("resize");
        let s = conn
            .run(Instant::now() + STREAM_TIMEOUT, |_, _| Ok(false))
            .unwrap_or_else(|e| panic!("tty exec stream ({handler}): {e}"));
        let out = s.out().replace("\r\n", "\n");
        record(obs, "tty.exit", format!("{:?}", s.exit_code()));
        assert!(out.starts_with("/dev/pts/"), "{s:?}");
        assert_eq!(s.exit_code(), Some(0), "{s:?}");
    });
}

/// Attach to a container's stdin/stdout through the streaming server; log lines appear in
/// the CRI log; ReopenContainerLog after the kubelet rotated the file.
#[test]
fn attach_and_log_reopen() {
    test("attach_and_log_reopen", |h, cri, handler, obs| {
        let mut pod = Pod::new(h, cri, handler, "attach", |_| {});
        let id = pod.run(
            "echo",
            &[
                "sh",
                "-c",
                "echo ready; while read -r l; do echo attach:$l; done; echo stdin-closed",
            ],
            |c| c.stdin = true,
        );
        pod.wait_log("echo", "ready");
        let attach = |word: &str| {
            let url = ok(
                "Attach",
                cri.attach(cri::AttachRequest {
                    container_id: id.clone(),
                    stdin: true,
                    tty: false,
                    stdout: true,
                    stderr: true,
                }),
            );
            let mut conn = ws::Conn::open(&url, STREAM_TIMEOUT).unwrap_or_else(|e| panic!("{e}"));
            conn.send(0, format!("{word}\n").as_bytes()).expect("stdin");
            let want = format!("attach:{word}\n");
            conn.run(Instant::now() + STREAM_TIMEOUT, |_, s| {
                Ok(s.out().contains(&want))
            })
            .unwrap_or_else(|e| panic!("attach stream ({handler}): {e}"))
        };
        let s = attach("one");
        record(obs, "attach.out", s.out());
        assert_eq!(s.out(), "attach:one\n", "{s:?}");
        pod.wait_log("echo", "attach:one");

        // Rotation: the kubelet renames the file, then asks for a reopen.
        let log = pod.log_path("echo");
        let rotated = log.with_extension("log.rotated");
        fs::rename(&log, &rotated).expect("rotate log");
        ok("ReopenContainerLog", cri.reopen_container_log(&id));
        let s = attach("two");
        assert_eq!(s.out(), "attach:two\n", "{s:?}");
        pod.wait_log("echo", "attach:two");
        let new: Vec<String> = pod.log("echo").into_iter().map(|(_, l)| l).collect();
        let old: Vec<String> = parse_cri_log(&fs::read_to_string(&rotated).unwrap_or_default())
            .into_iter()
            .map(|(_, l)| l)
            .collect();
        record(obs, "log.new", format!("{new:?}"));
        record(obs, "log.old", format!("{old:?}"));
        assert_eq!(new, ["attach:two"]);
        assert_eq!(old, ["ready", "attach:one"]);
        let s = pod.container_status(&id);
        assert_eq!(s.state, CONTAINER_RUNNING, "{s:?}");
    });
}

/// A container killed by its memory limit is reported `OOMKilled` (the shim's OOM event).
#[test]
fn memory_limit_oom_killed() {
    test("memory_limit_oom_killed", |h, cri, handler, obs| {
        let mut pod = Pod::new(h, cri, handler, "oom", |_| {});
        let id = pod.run(
            "hog",
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
            |c| {
                if let Some(r) = c.linux.as_mut().and_then(|l| l.resources.as_mut()) {
                    r.memory_limit_in_bytes = 32 << 20;
                }
            },
        );
        let s = pod.wait_exited(&id, 60);
        record(obs, "exit", s.exit_code);
        record(obs, "reason", &s.reason);
        assert_eq!(
            (s.exit_code, s.reason.as_str()),
            (137, "OOMKilled"),
            "{s:?}"
        );
    });
}

/// Kubernetes pods: two containers sharing the sandbox's network, IPC and UTS namespaces; an
/// init container that runs to completion first; `shareProcessNamespace`.
#[test]
fn shared_namespaces_and_init_container() {
    test(
        "shared_namespaces_and_init_container",
        |h, cri, handler, obs| {
            let mut pod = Pod::new(h, cri, handler, "shared", |_| {});
            // Init container: runs to completion before the app containers are created.
            let init = pod.run_sh("init", "echo init-ran; exit 0");
            let s = pod.wait_exited(&init, 30);
            record(obs, "init", format!("{} {}", s.exit_code, s.reason));
            assert_eq!((s.exit_code, s.reason.as_str()), (0, "Completed"), "{s:?}");
            pod.wait_log("init", "init-ran");

            let a = pod.run_sh("a", "exec sleep 1000");
            let b = pod.run_sh("b", "exec sleep 1000");
            let pa = pod.pid(&a);
            let pb = pod.pid(&b);
            let sandbox_pid = pod.sandbox_pid();
            let ns = |pid: u32, n: &str| fs::read_link(format!("/proc/{pid}/ns/{n}")).ok();
            for n in ["net", "ipc", "uts"] {
                assert_eq!(
                    ns(pa, n),
                    ns(sandbox_pid, n),
                    "{n} of container a ({handler})"
                );
                assert_eq!(
                    ns(pb, n),
                    ns(sandbox_pid, n),
                    "{n} of container b ({handler})"
                );
            }
            assert_ne!(
                ns(pa, "pid"),
                ns(pb, "pid"),
                "pid namespace shared without shareProcessNamespace"
            );
            assert_ne!(ns(pa, "mnt"), ns(pb, "mnt"));
            record(obs, "hostname", pod.exec_ok(&b, "hostname"));
            // IPC: the sandbox's /dev/shm is the pod's; what a puts there b reads.
            pod.exec_ok(&a, "echo from-a > /dev/shm/kakuri");
            let shm = pod.exec_ok(&b, "cat /dev/shm/kakuri");
            record(obs, "ipc.shm", shm.trim());
            assert_eq!(shm.trim(), "from-a", "/dev/shm is not shared in the pod");
            // Network: one loopback, b reaches a's listener on localhost.
            pod.exec_ok(
                &a,
                "nc -l -p 8080 -e echo from-a </dev/null >/dev/null 2>&1 & sleep 0.01",
            );
            let mut got = String::new();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && !got.contains("from-a") {
                got = pod.exec(&b, "nc -w 2 127.0.0.1 8080 </dev/null").0;
            }
            record(obs, "localhost", got.trim());
            assert_eq!(got.trim(), "from-a");
            drop(pod);

            // shareProcessNamespace: every container and the pause process in one PID namespace.
            let mut pod = Pod::new(h, cri, handler, "sharedpid", |c| {
                if let Some(n) = c
                    .linux
                    .as_mut()
                    .and_then(|l| l.security_context.as_mut())
                    .and_then(|s| s.namespace_options.as_mut())
                {
                    n.pid = NS_POD;
                }
            });
            let a = pod.run_sh("a", "exec sleep 1001");
            let b = pod.run_sh("b", "exec sleep 1002");
            let ps = pod.exec_ok(&b, "ps -o pid,args");
            let pause = ps
                .lines()
                .find(|l| l.contains("/pause"))
                .unwrap_or("")
                .trim()
                .to_string();
            record(obs, "sharedpid.pause", &pause);
            assert!(
                pause.starts_with("1 "),
                "pause is not PID 1 of the pod: {ps}"
            );
            assert!(
                ps.contains("sleep 1001") && ps.contains("sleep 1002"),
                "{ps}"
            );
            assert_eq!(ns(pod.pid(&a), "pid"), ns(pod.pid(&b), "pid"));
            record(
                obs,
                "sharedpid.count",
                ps.lines().filter(|l| l.contains("sleep 100")).count(),
            );
        },
    );
}

fn sc(c: &mut cri::ContainerConfig) -> &mut cri::LinuxContainerSecurityContext {
    c.linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .expect("the kubelet's config has a security context")
}

/// Security contexts: readOnlyRootFilesystem, runAsUser/runAsGroup (runAsNonRoot is the
/// kubelet's own check of that uid), added and dropped capabilities, allowPrivilegeEscalation
/// false, seccomp RuntimeDefault and Localhost, and the kubelet's masked/read-only paths.
#[test]
fn security_contexts() {
    test("security_contexts", |h, cri, handler, obs| {
        let mut pod = Pod::new(h, cri, handler, "security", |_| {});
        // readOnlyRootFilesystem + runAsUser/runAsGroup + no_new_privs + caps.
        let id = pod.run("restricted", &["sleep", "1000"], |c| {
            let s = sc(c);
            s.readonly_rootfs = true;
            s.run_as_user = Some(cri::Int64Value { value: 1000 });
            s.run_as_group = Some(cri::Int64Value { value: 2001 });
            s.no_new_privs = true;
            s.capabilities = Some(cri::Capability {
                add_capabilities: vec!["NET_ADMIN".into()],
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            });
        });
        let out = pod.exec_ok(
            &id,
            "id -u; id -g; touch /rootfs-write 2>/dev/null; echo rootfs=$?; \
             grep -E '^(CapBnd|CapEff|CapPrm|NoNewPrivs|Seccomp):' /proc/self/status",
        );
        record(obs, "restricted", &out);
        assert!(out.starts_with("1000\n2001\nrootfs=1\n"), "{out}");
        // NET_ADMIN only (bit 12), in the bounding set; a non-root process has no effective caps.
        assert!(out.contains("CapBnd:\t0000000000001000"), "{out}");
        assert!(out.contains("CapEff:\t0000000000000000"), "{out}");
        assert!(out.contains("NoNewPrivs:\t1"), "{out}");

        // Root with the default set minus CHOWN, plus SYS_TIME.
        let id = pod.run("caps", &["sleep", "1000"], |c| {
            sc(c).capabilities = Some(cri::Capability {
                add_capabilities: vec!["SYS_TIME".into()],
                drop_capabilities: vec!["CHOWN".into()],
                ..Default::default()
            });
        });
        let out = pod.exec_ok(
            &id,
            "grep CapEff /proc/self/status; chown 1 /tmp; echo chown=$?",
        );
        record(obs, "caps", &out);
        let eff = u64::from_str_radix(out.split_whitespace().nth(1).unwrap_or(""), 16).unwrap_or(0);
        assert_eq!(eff & 1, 0, "CAP_CHOWN not dropped: {out}");
        assert_ne!(eff & (1 << 25), 0, "CAP_SYS_TIME not added: {out}");
        assert!(out.contains("chown=1"), "{out}");

        // seccomp RuntimeDefault: filter mode, and a syscall the default profile refuses.
        let id = pod.run("seccomp-default", &["sleep", "1000"], |c| {
            sc(c).seccomp = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::RuntimeDefault as i32,
                ..Default::default()
            });
        });
        let out = pod.exec_ok(
            &id,
            "grep Seccomp: /proc/self/status; unshare -U true 2>/dev/null; echo unshare=$?",
        );
        record(obs, "seccomp.default", &out);
        assert!(
            out.contains("Seccomp:\t2") && !out.contains("unshare=0"),
            "{out}"
        );

        // seccomp Localhost: a profile file on the node that refuses mkdir(at) with EPERM.
        let profile = h.dir.join(format!("seccomp-{handler}.json"));
        fs::write(
            &profile,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#,
        )
        .expect("profile");
        let id = pod.run("seccomp-local", &["sleep", "1000"], |c| {
            sc(c).seccomp = Some(cri::SecurityProfile {
                profile_type: cri::security_profile::ProfileType::Localhost as i32,
                localhost_ref: profile.to_string_lossy().into_owned(),
            });
        });
        let (out, err, code) = pod.exec(&id, "mkdir /tmp/x && echo made");
        record(obs, "seccomp.localhost", format!("{out:?} {code}"));
        assert!(
            code != 0 && err.contains("not permitted"),
            "{out:?} {err:?} {code}"
        );

        // The kubelet's masked and read-only paths.
        let id = pod.run("masked", &["sleep", "1000"], |_| {});
        let out = pod.exec_ok(
            &id,
            "echo keys=$(wc -c < /proc/keys); echo firmware=$(ls -A /sys/firmware | wc -l); \
             echo x > /proc/sys/kernel/domainname 2>/dev/null; echo sysw=$?; \
             grep -E ' /proc/(sys|bus|fs|irq|sysrq-trigger) ' /proc/self/mountinfo | \
             awk '{print $5, substr($6,1,2)}'",
        );
        record(obs, "masked", &out);
        assert!(
            out.contains("keys=0\n") && out.contains("firmware=0\n"),
            "{out}"
        );
        assert!(!out.contains("sysw=0"), "{out}");
        for p in [
            "/proc/sys ro",
            "/proc/sysrq-trigger ro",
            "/proc/bus ro",
            "/proc/irq ro",
        ] {
            if PathBuf::from(p.split(' ').next().unwrap_or("")).exists() {
                assert!(out.contains(p), "{p} missing: {out}");
            }
        }
    });
}

/// hostNetwork and hostPID pods; emptyDir and hostPath volumes; the kubelet's /etc/hosts and
/// containerd's /etc/resolv.conf (from the pod's DNS config); pods talking over the CNI bridge.
#[test]
fn host_namespaces_volumes_and_network() {
    test(
        "host_namespaces_volumes_and_network",
        |h, cri, handler, obs| {
            let host_ns = |n: &str| fs::read_link(format!("/proc/self/ns/{n}")).ok();
            let mut pod = Pod::new(h, cri, handler, "hostns", |c| {
                if let Some(n) = c
                    .linux
                    .as_mut()
                    .and_then(|l| l.security_context.as_mut())
                    .and_then(|s| s.namespace_options.as_mut())
                {
                    n.network = NS_NODE;
                    n.pid = NS_NODE;
                }
            });
            let id = pod.run_sh("app", "exec sleep 1000");
            let pid = pod.pid(&id);
            let ns = |n: &str| fs::read_link(format!("/proc/{pid}/ns/{n}")).ok();
            assert_eq!(ns("net"), host_ns("net"), "hostNetwork ({handler})");
            assert_eq!(ns("pid"), host_ns("pid"), "hostPID ({handler})");
            assert_ne!(ns("mnt"), host_ns("mnt"));
            let out = pod.exec_ok(&id, "test -d /proc/1/ && cat /proc/1/comm");
            record(obs, "hostpid.init", out.trim() != "sleep");
            drop(pod);

            // Volumes and DNS files.
            let mut pod = Pod::new(h, cri, handler, "volumes", |_| {});
            let empty = pod.dir.join("volumes/kubernetes.io~empty-dir/cache");
            fs::create_dir_all(&empty).expect("emptyDir");
            let host = h.scratch("hostpath");
            fs::write(host.join("from-host"), "host-data\n").expect("hostPath file");
            let vols = |c: &mut cri::ContainerConfig| {
                c.mounts.push(cri::Mount {
                    container_path: "/cache".into(),
                    host_path: empty.to_string_lossy().into_owned(),
                    ..Default::default()
                });
                c.mounts.push(cri::Mount {
                    container_path: "/host".into(),
                    host_path: host.to_string_lossy().into_owned(),
                    readonly: true,
                    ..Default::default()
                });
            };
            let writer = pod.run(
                "writer",
                &["sh", "-c", "echo shared > /cache/f; exec sleep 1000"],
                vols,
            );
            let reader = pod.run("reader", &["sleep", "1000"], vols);
            let _ = writer;
            let deadline = Instant::now() + Duration::from_secs(15);
            let mut seen = String::new();
            while Instant::now() < deadline && seen != "shared\n" {
                seen = pod.exec(&reader, "cat /cache/f 2>/dev/null").0;
            }
            record(obs, "emptydir", &seen);
            assert_eq!(seen, "shared\n");
            let out = pod.exec_ok(
                &reader,
                "cat /host/from-host; touch /host/x 2>/dev/null; echo rw=$?",
            );
            record(obs, "hostpath", &out);
            assert_eq!(out, "host-data\nrw=1\n");
            let hosts = pod.exec_ok(&reader, "cat /etc/hosts");
            assert!(
                hosts.contains("Kubernetes-managed hosts file") && hosts.contains("\tvolumes\n"),
                "{hosts}"
            );
            let resolv = pod.exec_ok(&reader, "cat /etc/resolv.conf");
            record(obs, "resolv", &resolv);
            assert!(
                resolv.contains("nameserver 10.96.0.10")
                    && resolv.contains(&format!("search {POD_NAMESPACE}.svc.cluster.local"))
                    && resolv.contains("options ndots:5"),
                "{resolv}"
            );
            record(obs, "hostname", pod.exec_ok(&reader, "hostname"));

            // Two pods on the node talk over the CNI bridge.
            let mut server = Pod::new(h, cri, handler, "server", |_| {});
            server.run_sh(
                "srv",
                "while true; do echo pong | nc -l -p 8080 >/dev/null; done",
            );
            let ip = server.ip();
            let mut got = String::new();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && got.trim() != "pong" {
                got = pod
                    .exec(&reader, &format!("nc -w 2 {ip} 8080 </dev/null"))
                    .0;
            }
            record(obs, "pod-to-pod", got.trim());
            assert_eq!(
                got.trim(),
                "pong",
                "pod volumes could not reach pod server at {ip}"
            );
            let own = pod.exec_ok(&reader, "ip -4 -o addr show eth0 | awk '{print $4}'");
            assert!(
                own.trim().starts_with(&pod.ip()),
                "eth0 {own:?} vs status {}",
                pod.ip()
            );
        },
    );
}

// ------------------------------------------------------------------------------- benchmark

/// One kubelet-style pod, timed step by step (cri_driver::bench::STEPS): RunPodSandbox,
/// PodSandboxStatus for the address and the pod's etc-hosts, CreateContainer, StartContainer,
/// ContainerStatus until RUNNING, an ExecSync probe, StopContainer + StopPodSandbox,
/// RemoveContainer + RemovePodSandbox.
fn bench_pod(h: &Harness, cri: &Cri, handler: &str, mode: &'static str) -> bench::Sample {
    let t0 = Instant::now();
    let (mut pod, run_sandbox) = Pod::new_timed(h, cri, handler, "bench", |_| {});
    let sandbox_status = t0.elapsed() - run_sandbox;
    // A container that ends on SIGTERM (a shell as PID 1 ignores it otherwise).
    let script = "trap 'exit 0' TERM; while true; do sleep 1000 & wait; done";
    let t = Instant::now();
    let id = pod.create("app", &["sh", "-c", script], |_| {});
    let create = t.elapsed();
    let t = Instant::now();
    ok("StartContainer", cri.start_container(&id));
    let start = t.elapsed();
    let t = Instant::now();
    let deadline = t + Duration::from_secs(60);
    loop {
        let s = pod.container_status(&id);
        if s.state == CONTAINER_RUNNING {
            break;
        }
        assert!(
            s.state == CONTAINER_CREATED && Instant::now() < deadline,
            "benchmark pod ({handler}): container not RUNNING: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let running = t.elapsed();
    let pod_start = t0.elapsed();
    let t = Instant::now();
    let out = pod.exec_ok(&id, "echo ready");
    let exec = t.elapsed();
    assert_eq!(out, "ready\n", "ExecSync ({handler})");
    let (stop, remove) = pod.remove_timed(30);
    let lifecycle = t0.elapsed();
    bench::Sample {
        handler: handler.into(),
        mode,
        steps: [
            run_sandbox,
            sandbox_status,
            create,
            start,
            running,
            pod_start,
            exec,
            stop,
            remove,
            lifecycle,
        ],
    }
}

/// The pod start benchmark of `runtime-tests/bench/run cri-pods` (docs/performance.md): pods
/// through their whole kubelet lifecycle (create → ready → exec → stop → remove) with each
/// handler, first one after the other (`KAKURI_CRI_BENCH_PODS` per handler, the handlers
/// interleaved and their order alternating), then `KAKURI_CRI_BENCH_CONCURRENT` at once
/// (`KAKURI_CRI_BENCH_ROUNDS` batches per handler, alternating). It prints the figures and
/// the kakuri/runc ratios, and writes them as JSON to `KAKURI_CRI_BENCH_JSON` and as markdown
/// to `KAKURI_CRI_BENCH_MD` when set. With the defaults (2 pods each way) this is the smoke
/// check that keeps the benchmark working: it checks the report's shape and that every pod
/// went through every step, never a duration.
#[test]
fn pod_start_benchmark() {
    client_test(Kind::Cri, TESTS, "pod_start_benchmark", |h| {
        let cri = cri_client(h);
        let params = bench::Params::from_env();
        let order = |i: usize| {
            if i % 2 == 0 {
                HANDLERS
            } else {
                [HANDLERS[1], HANDLERS[0]]
            }
        };
        let mut samples = Vec::new();
        let mut batches = Vec::new();
        for i in 0..params.sequential {
            for handler in order(i) {
                samples.push(bench_pod(h, cri, handler, "sequential"));
            }
        }
        for handler in HANDLERS {
            let lifecycle = bench::step("lifecycle");
            batches.push(bench::Batch {
                handler: handler.into(),
                mode: "sequential",
                pods: params.sequential,
                wall: samples
                    .iter()
                    .filter(|s| s.handler == handler)
                    .map(|s| s.steps[lifecycle])
                    .sum(),
            });
        }
        for round in 0..params.rounds {
            for handler in order(round) {
                let t = Instant::now();
                let batch: Vec<bench::Sample> = std::thread::scope(|s| {
                    let pods: Vec<_> = (0..params.concurrent)
                        .map(|_| s.spawn(move || bench_pod(h, cri, handler, "concurrent")))
                        .collect();
                    pods.into_iter()
                        .map(|p| p.join().unwrap_or_else(|e| resume_unwind(e)))
                        .collect()
                });
                batches.push(bench::Batch {
                    handler: handler.into(),
                    mode: "concurrent",
                    pods: params.concurrent,
                    wall: t.elapsed(),
                });
                samples.extend(batch);
            }
        }
        let report = bench::Report {
            handlers: HANDLERS.iter().map(|s| s.to_string()).collect(),
            params,
            samples,
            batches,
        };
        let table = report.markdown();
        clients_common::note(&format!(
            "CRI pod benchmark ({params:?}, runtime {}):\n{table}",
            h.kakuri.display()
        ));
        if let Some(p) = std::env::var_os("KAKURI_CRI_BENCH_MD").filter(|p| !p.is_empty()) {
            fs::write(&p, &table).expect("KAKURI_CRI_BENCH_MD");
        }
        if let Some(p) = std::env::var_os("KAKURI_CRI_BENCH_JSON").filter(|p| !p.is_empty()) {
            let json = serde_json::to_string_pretty(&report.json()).expect("json");
            fs::write(&p, json).expect("KAKURI_CRI_BENCH_JSON");
        }

        // The report's shape (never its durations): every pod of every handler and mode is
        // there with every step measured, and the table has a row per figure.
        for handler in HANDLERS {
            for (mode, n) in [
                ("sequential", params.sequential),
                ("concurrent", params.concurrent * params.rounds),
            ] {
                let pods: Vec<_> = report
                    .samples
                    .iter()
                    .filter(|s| s.handler == handler && s.mode == mode)
                    .collect();
                assert_eq!(pods.len(), n, "{mode} pods of {handler}");
                assert!(
                    pods.iter().all(|s| s.steps.iter().all(|d| !d.is_zero())),
                    "a step of a {mode} {handler} pod was not measured: {pods:?}"
                );
            }
        }
        let json = report.json();
        assert_eq!(
            json["samples"].as_array().map(Vec::len),
            Some(report.samples.len())
        );
        assert_eq!(
            table.lines().count(),
            2 + json["rows"].as_array().map(Vec::len).unwrap_or(0),
            "{table}"
        );
        assert!(
            table.contains("| sequential: pod start median |")
                && table.contains("| concurrent: pod start p90 |"),
            "{table}"
        );
    });
}
