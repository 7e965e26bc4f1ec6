//! `checkpoint` and `restore` through CRIU (see [`crate::criu`]), with runc's options and
//! behaviour: the container's bind mounts, masked paths, devices and cgroup v1 binds are told to
//! CRIU as external mounts, namespaces joined by path as external or joined namespaces, the
//! cgroup is made again and CRIU is placed in it before it restores the processes.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_cgroups::{CgroupManager, Manager};
use kakuri_spec::oci::{self, LinuxNamespaceType};

use crate::criu::{self, Msg, Swrk};
use crate::state::{self, ContainerDir, State, Status};
use crate::{hooks, Error, HookState, Runtime};

/// runc's file of the init's stdio (what `/proc/<pid>/fd/{0,1,2}` were) in the image directory.
const DESCRIPTORS: &str = "descriptors.json";

/// Options of `checkpoint` and `restore` (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct CriuOptions {
    pub criu: Option<PathBuf>,
    pub image_path: Option<PathBuf>,
    pub work_path: Option<PathBuf>,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub pre_dump: bool,
    pub lazy_pages: bool,
    pub auto_dedup: bool,
    pub status_fd: Option<i32>,
    pub page_server: Option<String>,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    // restore only
    pub bundle: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
}

impl CriuOptions {
    fn criu_path(&self) -> PathBuf {
        self.criu.clone().unwrap_or_else(|| PathBuf::from("criu"))
    }

    /// runc's checks, done before anything is touched: the image path (made if missing), and
    /// `--parent-path` relative to it and an existing directory.
    fn image_dir(&self) -> Result<PathBuf, Error> {
        let img = match &self.image_path {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ => std::env::current_dir()
                .map_err(|e| Error::io("getwd", e))?
                .join("checkpoint"),
        };
        std::fs::create_dir_all(&img)
            .map_err(|e| Error::io(format!("mkdir {}", img.display()), e))?;
        if let Some(parent) = &self.parent_path {
            if parent.is_absolute() {
                return Err(Error::msg("--parent-path must be relative"));
            }
            let real = img.join(parent);
            match std::fs::metadata(&real) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(Error::msg(format!(
                        "invalid --parent-path: stat {}: not a directory",
                        real.display()
                    )))
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("invalid --parent-path: stat {}", real.display()),
                        e,
                    ))
                }
            }
        }
        Ok(img)
    }

    /// `--empty-ns`: runc always leaves the network namespace to CRIU empty (it does not manage
    /// network devices) and accepts only `network`.
    fn empty_ns_mask(&self) -> Result<i64, Error> {
        let mut mask = i64::from(libc::CLONE_NEWNET);
        for ns in &self.empty_ns {
            match ns.as_str() {
                "network" => mask |= i64::from(libc::CLONE_NEWNET),
                other => return Err(Error::msg(format!("namespace {other:?} is not supported"))),
            }
        }
        Ok(mask)
    }

    fn cg_mode(&self) -> Result<Option<u64>, Error> {
        match self.manage_cgroups_mode.as_deref() {
            None | Some("") => Ok(None),
            Some(m) => criu::cg_mode(m)
                .map(Some)
                .ok_or_else(|| Error::msg("Invalid manage cgroups mode")),
        }
    }

    /// `--page-server ADDRESS:PORT` as CRIU's `criu_page_server_info`, checked as runc does.
    fn page_server_msg(&self) -> Result<Option<Msg>, Error> {
        let Some(p) = self.page_server.as_deref().filter(|p| !p.is_empty()) else {
            return Ok(None);
        };
        let usage = || Error::msg("Use --page-server ADDRESS:PORT to specify page server");
        let (addr, port) = p.rsplit_once(':').ok_or_else(usage)?;
        let addr = addr.trim_start_matches('[').trim_end_matches(']');
        if addr.is_empty() || port.is_empty() {
            return Err(usage());
        }
        let port: u16 = port
            .parse()
            .map_err(|_| Error::msg(format!("--page-server: invalid port number {port:?}")))?;
        let mut m = Msg::default();
        m.str(1, addr).int(2, i64::from(port));
        Ok(Some(m))
    }

    /// `--lazy-pages` on checkpoint: CRIU must have it (FEATURE_CHECK), and `--status-fd`
    /// must be a writable descriptor. Returns the status fd, if one was given.
    fn check_lazy_dump(&self) -> Result<Option<i32>, Error> {
        if !self.lazy_pages {
            if self.status_fd.is_some() {
                return Err(Error::msg("--status-fd is only used with --lazy-pages"));
            }
            return Ok(None);
        }
        criu::check_lazy_pages(&self.criu_path())
            .map_err(|e| Error::msg(format!("--lazy-pages: {e}")))?;
        let Some(fd) = self.status_fd else {
            return Ok(None);
        };
        let flags = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL)
            .map_err(|e| Error::msg(format!("invalid --status-fd argument {fd}: {e}")))?;
        if flags & libc::O_ACCMODE == libc::O_RDONLY {
            return Err(Error::msg(format!(
                "invalid --status-fd argument {fd}: not writable"
            )));
        }
        Ok(Some(fd))
    }
}

/// Writes the `\0` that tells the caller of `--status-fd` that CRIU's page server is ready
/// (CRIU 3.15+ says so with the `status-ready` notification), and closes the fd.
fn signal_status_fd(fd: &mut Option<i32>) {
    if let Some(f) = fd.take() {
        // SAFETY: `f` is the caller's --status-fd, checked open and writable; it is ours to
        // write to and close, and nothing else in this process uses it.
        unsafe {
            let zero = [0u8; 1];
            if libc::write(f, zero.as_ptr().cast(), 1) != 1 {
                log::warn!(
                    "write \\0 to --status-fd {f}: {}",
                    std::io::Error::last_os_error()
                );
            }
            libc::close(f);
        }
    }
}

fn open_dir(p: &Path) -> Result<OwnedFd, Error> {
    std::fs::File::open(p)
        .map(OwnedFd::from)
        .map_err(|e| Error::io(format!("open {}", p.display()), e))
}

/// A container path as CRIU names it (relative to the rootfs, starting with `/`, no `..`).
fn ct_path(p: &Path) -> String {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.display().to_string()
}

fn ext_mnt(key: &str, val: &str) -> Msg {
    let mut m = Msg::default();
    m.str(1, key).str(2, val);
    m
}

fn is_bind(m: &oci::Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// Devices kakuri makes in every container (runc's default device list).
const DEFAULT_DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/random",
    "/dev/full",
    "/dev/tty",
    "/dev/zero",
    "/dev/urandom",
];

fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// CRIU's key for an external namespace: `extRootNetNS`, `extRootPidNS`.
fn ext_ns_key(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Pid => "extRootPidNS",
        _ => "extRootNetNS",
    }
}

/// The options every request shares.
fn common_opts(o: &CriuOptions, img: &OwnedFd, work: Option<&OwnedFd>, log: &str) -> Msg {
    let mut m = Msg::default();
    m.int(1, i64::from(img.as_raw_fd()))
        .int(9, 4)
        .str(10, log)
        .flag(24, true) // manage_cgroups
        .flag(12, true) // notify_scripts
        .flag(7, o.shell_job)
        .flag(5, o.tcp_established)
        .flag(4, o.ext_unix_sk)
        .flag(8, o.file_locks)
        .flag(50, true) // orphan_pts_master
        .flag(16, o.auto_dedup);
    if let Some(w) = work {
        m.int(17, i64::from(w.as_raw_fd()));
    }
    m
}

/// Config file CRIU reads after the RPC options (runc's `org.criu.config` annotation).
fn config_file(m: &mut Msg, annotations: &std::collections::HashMap<String, String>) {
    match annotations.get("org.criu.config") {
        Some(f) if !f.is_empty() => {
            m.str(51, f);
        }
        Some(_) => {}
        None => {
            m.str(51, "/etc/criu/runc.conf");
        }
    }
}

/// The next message from CRIU; a broken connection is reported with the errors of CRIU's log.
fn recv_from_criu(swrk: &Swrk, log: &Path) -> Result<(criu::Response, Option<OwnedFd>), Error> {
    swrk.recv().map_err(|mut msg| {
        if let Some(r) = criu::log_errors(log) {
            msg.push_str(&format!("\n{r}"));
        }
        Error::msg(msg)
    })
}

fn criu_failed(kind: &str, resp: &criu::Response, log: &Path) -> Error {
    let mut msg = format!(
        "criu failed: type {kind} errno {}",
        resp.cr_errno.unwrap_or(0)
    );
    if let Some(e) = resp.cr_errmsg.as_deref().filter(|s| !s.is_empty()) {
        msg.push_str(&format!(": {e}"));
    }
    if let Some(reason) = criu::log_errors(log) {
        msg.push_str(&format!("\n{reason}"));
    }
    msg.push_str(&format!("\nlog file: {}", log.display()));
    Error::msg(msg)
}

fn work_dir(o: &CriuOptions) -> Result<Option<(PathBuf, OwnedFd)>, Error> {
    match &o.work_path {
        Some(w) if !w.as_os_str().is_empty() => {
            match std::fs::create_dir(w) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("mkdir {}", w.display()), e)),
            }
            Ok(Some((w.clone(), open_dir(w)?)))
        }
        _ => Ok(None),
    }
}

/// The init's stdio as `/proc/<pid>/fd/N` links read (runc's descriptors.json).
fn descriptors(pid: i32) -> Vec<String> {
    (0..3)
        .map(|i| {
            std::fs::read_link(format!("/proc/{pid}/fd/{i}"))
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        })
        .collect()
}

fn cgroup_freezer(cg: &impl CgroupManager) -> Option<PathBuf> {
    cg.path("freezer")
        .map(Path::to_path_buf)
        .or_else(|| match cg.mode() {
            kakuri_cgroups::Mode::V2 => cg.unified_path().map(Path::to_path_buf),
            _ => None,
        })
}

/// External mounts: bind mounts, cgroup v1 binds, masked files and device nodes, as runc
/// lists them. `val` gives the value for a mount (dump: the key itself, restore: the source).
fn ext_mounts(spec: &oci::Spec, st: &State, masked_files: &[String], restore: bool) -> Vec<Msg> {
    let mut out = Vec::new();
    let linux = spec.linux().clone().unwrap_or_default();
    let has_cgroupns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Cgroup);
    for m in spec.mounts().iter().flatten() {
        let key = ct_path(m.destination());
        if is_bind(m) {
            let val = if restore {
                m.source()
                    .as_ref()
                    .map(|s| {
                        if s.is_absolute() {
                            s.clone()
                        } else {
                            st.bundle.join(s)
                        }
                    })
                    .map(|s| s.display().to_string())
                    .unwrap_or_default()
            } else {
                key.clone()
            };
            out.push(ext_mnt(&key, &val));
        } else if m.typ().as_deref() == Some("cgroup")
            && st.cgroup.mode() != kakuri_cgroups::Mode::V2
            && !has_cgroupns
        {
            for c in st.cgroup.mounts() {
                let k = ct_path(&m.destination().join(&c.mount_point_name));
                let v = if restore {
                    c.host_path.display().to_string()
                } else {
                    k.clone()
                };
                out.push(ext_mnt(&k, &v));
            }
        }
    }
    if restore {
        if !linux.masked_paths().clone().unwrap_or_default().is_empty() {
            out.push(ext_mnt("/dev/null", "/dev/null"));
        }
    } else {
        for p in masked_files {
            out.push(ext_mnt(p, "/dev/null"));
        }
    }
    let mut devs: Vec<String> = DEFAULT_DEVICES.iter().map(|s| s.to_string()).collect();
    for d in linux.devices().iter().flatten() {
        devs.push(ct_path(d.path()));
    }
    for d in devs {
        out.push(ext_mnt(&d, &d));
    }
    out
}

impl Runtime {
    /// `kakuri checkpoint`.
    pub fn checkpoint(&self, id: &str, o: &CriuOptions) -> Result<(), Error> {
        let dir = ContainerDir::open(&self.root, id)?;
        let st = dir.load()?;
        let status = state::status(&dir.path, &st);
        if matches!(status, Status::Created | Status::Stopped | Status::Creating) {
            return Err(Error::msg(format!(
                "Container cannot be checkpointed in {status} state"
            )));
        }
        let cg_mode = o.cg_mode()?;
        let empty_ns = o.empty_ns_mask()?;
        let page_server = o.page_server_msg()?;
        let mut status_fd = o.check_lazy_dump()?;
        let img = o.image_dir()?;
        let bundle = kakuri_spec::load_bundle(&st.bundle).map_err(|e| {
            Error::msg(format!(
                "read the bundle of {id} ({}): {e}",
                st.bundle.display()
            ))
        })?;
        let spec = &bundle.spec;
        let img_fd = open_dir(&img)?;
        let work = work_dir(o)?;
        let log_dir = work.as_ref().map_or(img.clone(), |w| w.0.clone());
        let log = log_dir.join("dump.log");
        let mut m = common_opts(o, &img_fd, work.as_ref().map(|w| &w.1), "dump.log");
        m.int(2, i64::from(st.pid))
            .str(13, &st.rootfs.display().to_string())
            .flag(3, o.leave_running)
            .flag(48, o.lazy_pages)
            .int(38, empty_ns);
        if let Some(ps) = &page_server {
            m.msg(11, ps);
        }
        config_file(&mut m, &st.annotations);
        let linux = spec.linux().clone().unwrap_or_default();
        for n in linux.namespaces().iter().flatten() {
            if let (LinuxNamespaceType::Network | LinuxNamespaceType::Pid, Some(p)) =
                (n.typ(), n.path())
            {
                use std::os::unix::fs::MetadataExt;
                let ino = std::fs::metadata(p)
                    .map_err(|e| Error::io(format!("stat {}", p.display()), e))?
                    .ino();
                m.str(
                    37,
                    &format!("{}[{ino}]:{}", ns_name(n.typ()), ext_ns_key(n.typ())),
                );
            }
        }
        if let Some(f) = cgroup_freezer(&st.cgroup) {
            m.str(44, &f.display().to_string());
        }
        if let Some(p) = &o.parent_path {
            m.str(14, &p.display().to_string()).flag(15, true);
        }
        if let Some(mode) = cg_mode {
            m.int(34, mode as i64);
        }
        if !o.pre_dump {
            let mut masked = Vec::new();
            for p in linux.masked_paths().iter().flatten() {
                let full = format!("/proc/{}/root{p}", st.pid);
                if std::fs::metadata(&full).is_ok_and(|md| !md.is_dir()) {
                    masked.push(p.clone());
                }
            }
            for e in ext_mounts(spec, &st, &masked, false) {
                m.msg(23, &e);
            }
            let fds = serde_json::to_vec(&descriptors(st.pid)).unwrap_or_default();
            let p = img.join(DESCRIPTORS);
            std::fs::write(&p, fds).map_err(|e| Error::io(format!("write {}", p.display()), e))?;
        }
        let kind = if o.pre_dump { "PRE_DUMP" } else { "DUMP" };
        let mut req = Msg::default();
        req.int(
            1,
            if o.pre_dump {
                criu::PRE_DUMP
            } else {
                criu::DUMP
            } as i64,
        )
        .msg(2, &m);
        let swrk = Swrk::start(&o.criu_path(), &[], false).map_err(Error::msg)?;
        swrk.send(&req).map_err(Error::msg)?;
        loop {
            let (resp, _fd) = recv_from_criu(&swrk, &log)?;
            if !resp.success {
                let _ = swrk.finish();
                return Err(criu_failed(kind, &resp, &log));
            }
            if resp.typ == criu::NOTIFY {
                match resp.notify_script.as_deref() {
                    Some("post-dump") => {
                        let _ = std::fs::File::create(dir.path.join("checkpoint"));
                    }
                    // --lazy-pages: the pages are dumped and the page server listens.
                    Some("status-ready") => signal_status_fd(&mut status_fd),
                    _ => {}
                }
                let mut ack = Msg::default();
                ack.int(1, criu::NOTIFY as i64).flag(3, true);
                swrk.send(&ack).map_err(Error::msg)?;
                continue;
            }
            break;
        }
        let status = swrk.finish().map_err(|e| Error::io("wait for criu", e))?;
        if !status.success() && !o.pre_dump {
            return Err(Error::msg(format!(
                "criu failed: {status}\nlog file: {}",
                log.display()
            )));
        }
        if !(o.leave_running || o.pre_dump) {
            drop(dir);
            // runc destroys the container after a checkpoint that stops it.
            self.delete(id, true)?;
        }
        Ok(())
    }

    /// `kakuri restore`: the container is made again from the bundle, its processes from the
    /// images. Returns the exit code of the restored init (0 with `--detach`).
    pub fn restore(&self, id: &str, o: &CriuOptions) -> Result<i32, Error> {
        state::check_id(id)?;
        let empty_ns = o.empty_ns_mask()?;
        let cg_mode = o.cg_mode()?;
        if o.page_server.as_deref().is_some_and(|p| !p.is_empty()) || o.status_fd.is_some() {
            return Err(Error::msg(
                "--page-server and --status-fd are checkpoint options (restore --lazy-pages reads \
                 the pages from a `criu lazy-pages` daemon)",
            ));
        }
        if o.lsm_profile.is_some() || o.lsm_mount_context.is_some() {
            return Err(Error::msg(
                "--lsm-profile and --lsm-mount-context are not supported by kakuri (no LSM on the hosts it supports restore on)",
            ));
        }
        let img = o.image_dir()?;
        let bundle_dir = o.bundle.clone().unwrap_or_else(|| PathBuf::from("."));
        let bundle =
            kakuri_spec::load_bundle(&bundle_dir).map_err(|e| Error::msg(e.to_string()))?;
        let spec = &bundle.spec;
        let linux = spec.linux().clone().unwrap_or_default();
        if linux.intel_rdt().is_some() {
            return Err(Error::msg(
                "linux.intelRdt: restore cannot recreate the container's resctrl group (CRIU's \
                 images do not describe it); remove intelRdt from config.json to restore",
            ));
        }
        let terminal = spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false);
        if terminal && o.console_socket.is_none() {
            return Err(Error::msg(
                "cannot allocate tty if kakuri will detach without setting console socket",
            ));
        }
        let console = match &o.console_socket {
            Some(p) => Some(OwnedFd::from(
                std::os::unix::net::UnixStream::connect(p).map_err(|e| {
                    Error::io(format!("connect to --console-socket {}", p.display()), e)
                })?,
            )),
            None => None,
        };
        let fds_path = img.join(DESCRIPTORS);
        let fds: Vec<String> = std::fs::read(&fds_path)
            .map_err(|e| Error::io(format!("open {}", fds_path.display()), e))
            .and_then(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| Error::msg(format!("{}: {e}", fds_path.display())))
            })?;
        let mut cgroup = Manager::new(
            linux.cgroups_path().as_ref().and_then(|p| p.to_str()),
            id,
            self.systemd_cgroup,
        )
        .map_err(|e| Error::msg(e.to_string()))?;
        // As create: the systemd driver's unit properties from the annotations, and the
        // resources it cannot express refused before anything exists.
        cgroup
            .set_unit_annotations(&spec.annotations().clone().unwrap_or_default())
            .map_err(|e| Error::msg(e.to_string()))?;
        if let Some(r) = linux.resources() {
            cgroup
                .check_resources(r)
                .map_err(|e| Error::msg(e.to_string()))?;
        }
        let mut st = State {
            id: id.to_string(),
            pid: 0,
            start_time: 0,
            bundle: bundle.dir.clone(),
            rootfs: bundle.rootfs.clone(),
            created: String::new(),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            cgroup: cgroup.clone(),
            hooks: spec.hooks().clone(),
            namespaces: linux
                .namespaces()
                .iter()
                .flatten()
                .map(|n| crate::create::spec_ns_name(n.typ()).to_string())
                .collect(),
            use_systemd: self.systemd_cgroup,
            // SAFETY: geteuid cannot fail.
            owner_uid: Some(unsafe { libc::geteuid() }),
            process: spec.process().clone(),
            seccomp: linux.seccomp().clone(),
            rootfs_mount_holder: None,
            shared_cgroup: false,
            // A resctrl group is not recreated on restore (CRIU does not describe it).
            intel_rdt: None,
            personality: linux.personality().clone(),
            memory_policy: linux.memory_policy().clone(),
        };
        let mut guard = RestoreUndo {
            rt: self,
            id,
            dir: Some(ContainerDir::create(&self.root, id)?),
        };
        let dir = guard.dir.as_ref().expect("state dir");
        dir.save(&st)?;
        cgroup.create().map_err(|e| Error::msg(e.to_string()))?;
        // The config's device rules and runc's defaults, as create sets them: CRIU (placed in
        // the cgroup below) makes the device nodes of the container's /dev tmpfs.
        let mut resources = linux.resources().clone().unwrap_or_default();
        let mut rules = resources.devices().clone().unwrap_or_default();
        let dev_paths: Vec<&Path> = linux
            .devices()
            .iter()
            .flatten()
            .map(|d| d.path().as_path())
            .collect();
        rules.extend(crate::create::default_device_rules(&dev_paths));
        resources.set_devices(Some(rules));
        // Where the cgroup exists before a process is placed (cgroupfs) the limits are set now;
        // the systemd driver's unit is started with CRIU's pid below, which sets them.
        cgroup
            .apply_before_init(&resources)
            .map_err(|e| Error::msg(e.to_string()))?;

        // CRIU wants the root to be a mount point whose parent is not overmounted. It is made
        // outside the state dir (under a name no container id can have), so that removing a
        // state dir can never reach into the rootfs through it.
        let root = self.root.join("criu@restore").join(id);
        std::fs::create_dir_all(&root)
            .map_err(|e| Error::io(format!("mkdir {}", root.display()), e))?;
        let root_mount = BindMount::new(&bundle.rootfs, &root)?;
        // Mount points of bind mounts that are not on a tmpfs CRIU restores itself.
        let tmpfs: Vec<PathBuf> = spec
            .mounts()
            .iter()
            .flatten()
            .filter(|m| m.typ().as_deref() == Some("tmpfs"))
            .map(|m| m.destination().clone())
            .collect();
        for m in spec.mounts().iter().flatten() {
            let d = m.destination();
            if tmpfs.iter().any(|t| d != t && d.starts_with(t))
                || m.typ().as_deref() == Some("cgroup")
            {
                continue;
            }
            let target = bundle.rootfs.join(ct_path(d).trim_start_matches('/'));
            if is_bind(m) {
                let src = m.source().clone().unwrap_or_default();
                let src = if src.is_absolute() {
                    src
                } else {
                    bundle.dir.join(src)
                };
                if std::fs::metadata(&src).is_ok_and(|md| !md.is_dir()) {
                    if let Some(p) = target.parent() {
                        let _ = std::fs::create_dir_all(p);
                    }
                    if !target.exists() {
                        let _ = std::fs::File::create(&target);
                    }
                    continue;
                }
            }
            let _ = std::fs::create_dir_all(&target);
        }

        let work = work_dir(o)?;
        let log_dir = work.as_ref().map_or(img.clone(), |w| w.0.clone());
        let log = log_dir.join("restore.log");
        let img_fd = open_dir(&img)?;
        let mut m = common_opts(o, &img_fd, work.as_ref().map(|w| &w.1), "restore.log");
        m.flag(6, true) // evasive_devices
            .flag(26, true) // rst_sibling
            .flag(48, o.lazy_pages)
            .str(13, &root.display().to_string())
            .int(38, empty_ns);
        config_file(&mut m, &st.annotations);
        let mut inherit: Vec<OwnedFd> = Vec::new();
        for n in linux.namespaces().iter().flatten() {
            let Some(p) = n.path() else { continue };
            match n.typ() {
                LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                    let f = std::fs::File::open(p)
                        .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
                    let fd = OwnedFd::from(f);
                    let mut inh = Msg::default();
                    inh.str(1, ext_ns_key(n.typ()))
                        .int(2, i64::from(fd.as_raw_fd()));
                    m.msg(27, &inh);
                    inherit.push(fd);
                }
                LinuxNamespaceType::Cgroup => {
                    return Err(Error::msg(
                        "linux.namespaces: CRIU cannot join a cgroup namespace by path",
                    ))
                }
                t => {
                    let mut j = Msg::default();
                    j.str(1, ns_name(t)).str(2, &p.display().to_string());
                    m.msg(39, &j);
                }
            }
        }
        for e in ext_mounts(spec, &st, &[], true) {
            m.msg(23, &e);
        }
        if let Some(mode) = cg_mode {
            m.int(34, mode as i64);
        }
        for (i, s) in fds.iter().enumerate() {
            if s.contains("pipe:") {
                let mut inh = Msg::default();
                inh.str(1, s).int(2, i as i64);
                m.msg(27, &inh);
            }
        }
        if cgroup.mode() == kakuri_cgroups::Mode::V2 {
            // cgroup v2: the container's cgroup is CRIU's root for every controller, so a
            // restore under another id (podman's `--import --name`, a lazy copy) goes into its
            // own cgroup rather than the one the images name.
            if let Some(p) = cgroup.unified_path() {
                let rel = p.strip_prefix("/sys/fs/cgroup").unwrap_or(p);
                let mut r = Msg::default();
                r.str(2, &Path::new("/").join(rel).display().to_string());
                m.msg(25, &r);
            }
        } else {
            // cgroup v1: where each controller's cgroup is, as runc tells CRIU.
            for (ctrls, path) in cgroup.dirs() {
                for c in ctrls {
                    let mut r = Msg::default();
                    r.str(1, c).str(2, &cgroup_rel(path));
                    m.msg(25, &r);
                }
            }
        }
        // A network namespace of its own (no path): CRIU makes it empty (runc's empty_ns), with
        // `lo` down, and create would have brought `lo` up. It is brought up when CRIU has made
        // the namespaces, before it restores sockets that use it (a TCP connection over
        // 127.0.0.1 restored with --tcp-established connects back through it).
        let new_netns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none());
        let mut req = Msg::default();
        req.int(1, criu::RESTORE as i64).msg(2, &m);
        let raw: Vec<i32> = inherit.iter().map(|f| f.as_raw_fd()).collect();
        let swrk = Swrk::start(&o.criu_path(), &raw, true).map_err(Error::msg)?;
        drop(inherit);
        // CRIU restores the processes into the cgroup it runs in: it is placed there as an init
        // would be (runc applies its cgroup manager to CRIU's pid the same way). cgroupfs moves
        // it into the directories made above; the systemd driver starts the container's unit
        // with CRIU in it and then writes the limits into the unit's directories.
        cgroup
            .place_init(swrk.child.id() as i32, false, &resources)
            .map_err(|e| Error::msg(e.to_string()))?;
        swrk.send(&req).map_err(Error::msg)?;
        let mut pid = 0;
        loop {
            let (resp, fd) = recv_from_criu(&swrk, &log)?;
            if !resp.success {
                let _ = swrk.finish();
                return Err(criu_failed("RESTORE", &resp, &log));
            }
            if resp.typ != criu::NOTIFY {
                if let Some(p) = resp.restored_pid {
                    pid = p;
                }
                break;
            }
            match resp.notify_script.as_deref() {
                Some("setup-namespaces") => {
                    if new_netns {
                        if let Some(p) = resp.notify_pid {
                            loopback_up(p)?;
                        }
                    }
                    if let Some(h) = st.hooks.clone() {
                        let json = HookState::of(&st, "created", resp.notify_pid).json();
                        let ctx = hooks::HookContext::default();
                        if let Some(hs) = h.prestart() {
                            hooks::run("prestart", hs, &json, ctx).map_err(Error::msg)?;
                        }
                        if let Some(hs) = h.create_runtime() {
                            hooks::run("createRuntime", hs, &json, ctx).map_err(Error::msg)?;
                        }
                    }
                }
                Some("post-restore") => {
                    if let Some(p) = resp.notify_pid {
                        pid = p;
                        let (start, _) = kakuri_isolate::sys::proc_start_time(p)
                            .map_err(|e| Error::io(format!("read /proc/{p}/stat"), e))?;
                        st.pid = p;
                        st.start_time = start;
                        st.created = state::now_rfc3339();
                        dir.save(&st)?;
                    }
                }
                Some("orphan-pts-master") => {
                    if let (Some(master), Some(sock)) = (fd, console.as_ref()) {
                        kakuri_isolate::send_fd(sock, &master, "/dev/ptmx")
                            .map_err(|e| Error::io("send the console to --console-socket", e))?;
                    }
                }
                _ => {}
            }
            let mut ack = Msg::default();
            ack.int(1, criu::NOTIFY as i64).flag(3, true);
            swrk.send(&ack).map_err(Error::msg)?;
        }
        let status = swrk.finish().map_err(|e| Error::io("wait for criu", e))?;
        drop(root_mount);
        if !status.success() {
            return Err(Error::msg(format!(
                "criu failed: {status}\nlog file: {}",
                log.display()
            )));
        }
        if pid <= 0 {
            return Err(Error::msg("criu restored no process"));
        }
        if st.pid != pid {
            let (start, _) = kakuri_isolate::sys::proc_start_time(pid)
                .map_err(|e| Error::io(format!("read /proc/{pid}/stat"), e))?;
            st.pid = pid;
            st.start_time = start;
            st.created = state::now_rfc3339();
            dir.save(&st)?;
        }
        if let Some(pf) = &o.pid_file {
            crate::create::write_pid_file(pf, pid)?;
        }
        let _ = std::fs::remove_file(dir.path.join("checkpoint"));
        guard.dir = None;
        if o.detach {
            return Ok(0);
        }
        // The restored init is our child (rst_sibling): wait for it as `run` does.
        let code = match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, c)) => c,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, s, _)) => 128 + s as i32,
            _ => 255,
        };
        self.delete(id, true)?;
        Ok(code)
    }
}

/// Brings `lo` up in the network namespace of `pid`, from a thread of its own (setns of a
/// network namespace moves only the calling thread).
fn loopback_up(pid: i32) -> Result<(), Error> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| Error::io(format!("open /proc/{pid}/ns/net"), e))?;
    std::thread::spawn(move || -> std::io::Result<()> {
        use std::os::fd::AsFd;
        kakuri_isolate::sys::setns(ns.as_fd(), libc::CLONE_NEWNET)?;
        kakuri_isolate::sys::link_up("lo")
    })
    .join()
    .map_err(|_| Error::msg("bring up lo in the restored network namespace: thread panicked"))?
    .map_err(|e| Error::io("bring up lo in the restored network namespace", e))
}

/// A cgroup v1 directory as a path from its hierarchy's root (CRIU's cg_root).
fn cgroup_rel(p: &Path) -> String {
    let s = p.display().to_string();
    let rest = s.strip_prefix("/sys/fs/cgroup/").unwrap_or(&s);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

/// The rootfs bound at CRIU's root, unmounted again when dropped.
struct BindMount(PathBuf);

impl BindMount {
    fn new(src: &Path, dst: &Path) -> Result<BindMount, Error> {
        nix::mount::mount(
            Some(src),
            dst,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| Error::msg(format!("bind {} to {}: {e}", src.display(), dst.display())))?;
        Ok(BindMount(dst.to_path_buf()))
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir(&self.0);
        // The shared parent goes when no other restore uses it.
        if let Some(p) = self.0.parent() {
            let _ = std::fs::remove_dir(p);
        }
    }
}

/// Removes what a failed restore made (state, cgroup).
struct RestoreUndo<'a> {
    rt: &'a Runtime,
    id: &'a str,
    /// Held (locked) while the restore runs; None once it succeeded.
    dir: Option<ContainerDir>,
}

impl Drop for RestoreUndo<'_> {
    fn drop(&mut self) {
        if let Some(d) = self.dir.take() {
            // Unlock first: delete takes the lock itself.
            drop(d);
            if let Err(e) = self.rt.delete(self.id, true) {
                log::warn!("clean up after a failed restore of {}: {e}", self.id);
            }
        }
    }
}
