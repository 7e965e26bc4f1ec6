//! `kakuri check`: what this host can do for containers, and whether a bundle can run on it.
//!
//! Host probes try the call where that is the only honest answer (clone3 into a cgroup,
//! idmapping a detached tmpfs, opening a pidfd); the bundle check reads the config as `create`
//! does, finds `process.args[0]` inside the rootfs (symlinks resolved with the rootfs as root,
//! never out of it), compares its ELF machine with the host's (and looks for a binfmt_misc
//! handler), checks its dynamic loader, and lists what the config asks for that the host lacks.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kakuri_isolate::sys;
use kakuri_spec::{oci, os_error};
use serde::Serialize;

/// How a finding bears on running containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Info,
    Warn,
    /// The bundle cannot run here (bundle checks), or a feature is missing (host probes).
    Fail,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub check: String,
    pub level: Level,
    pub detail: String,
}

fn finding(check: &str, level: Level, detail: impl Into<String>) -> Finding {
    Finding {
        check: check.to_string(),
        level,
        detail: detail.into(),
    }
}

/// One binfmt_misc handler (`/proc/sys/fs/binfmt_misc/<name>`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Binfmt {
    pub name: String,
    pub enabled: bool,
    pub interpreter: String,
    pub flags: String,
    pub offset: usize,
    /// Hex, as the kernel prints it; empty for an extension handler.
    pub magic: String,
    pub mask: String,
}

impl Binfmt {
    /// Parse the kernel's text for one handler.
    pub fn parse(name: &str, text: &str) -> Binfmt {
        let mut b = Binfmt {
            name: name.to_string(),
            enabled: false,
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: String::new(),
            mask: String::new(),
        };
        for line in text.lines() {
            let (k, v) = line.split_once([' ', ':']).unwrap_or((line, ""));
            let v = v.trim();
            match k {
                "enabled" => b.enabled = true,
                "interpreter" => b.interpreter = v.to_string(),
                "flags" => b.flags = v.to_string(),
                "offset" => b.offset = v.parse().unwrap_or(0),
                "magic" => b.magic = v.to_string(),
                "mask" => b.mask = v.to_string(),
                _ => {}
            }
        }
        b
    }

    /// Whether this handler's magic (under its mask) matches a file starting with `head`.
    pub fn matches(&self, head: &[u8]) -> bool {
        let (Some(magic), mask) = (unhex(&self.magic), unhex(&self.mask)) else {
            return false;
        };
        if magic.is_empty() || head.len() < self.offset + magic.len() {
            return false;
        }
        magic.iter().enumerate().all(|(i, m)| {
            let k = mask
                .as_ref()
                .and_then(|k| k.get(i))
                .copied()
                .unwrap_or(0xff);
            head[self.offset + i] & k == m & k
        })
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() || s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The binfmt_misc handlers, or None when binfmt_misc is not mounted.
pub fn binfmt_handlers() -> Option<Vec<Binfmt>> {
    if !Path::new(BINFMT_DIR).join("status").exists() {
        return None;
    }
    let mut v: Vec<Binfmt> = std::fs::read_dir(BINFMT_DIR)
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some(Binfmt::parse(&name, &text))
        })
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    Some(v)
}

/// An ELF header's facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Elf {
    pub class64: bool,
    pub little_endian: bool,
    pub machine: u16,
    /// PT_INTERP: the dynamic loader, if any.
    pub interp: Option<String>,
}

/// A name for an ELF `e_machine` and class, as `uname -m` would say it.
pub fn machine_name(machine: u16, class64: bool) -> String {
    match (machine, class64) {
        (3, _) => "i386".into(),
        (62, true) => "x86_64".into(),
        (62, false) => "x32".into(),
        (40, _) => "arm".into(),
        (183, _) => "aarch64".into(),
        (243, true) => "riscv64".into(),
        (243, false) => "riscv32".into(),
        (8, true) => "mips64".into(),
        (8, false) => "mips".into(),
        (20, _) => "ppc".into(),
        (21, _) => "ppc64".into(),
        (22, true) => "s390x".into(),
        (22, false) => "s390".into(),
        (258, _) => "loongarch64".into(),
        (m, _) => format!("ELF machine {m}"),
    }
}

/// The ELF machine and class of this host's own binaries.
pub fn host_machine() -> (u16, bool) {
    let m = nix::sys::utsname::uname()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    match m.as_str() {
        "x86_64" => (62, true),
        "aarch64" => (183, true),
        "riscv64" => (243, true),
        "ppc64le" | "ppc64" => (21, true),
        "s390x" => (22, true),
        "loongarch64" => (258, true),
        "i686" | "i386" => (3, false),
        m if m.starts_with("arm") => (40, false),
        _ => (0, true),
    }
}

/// Parse an ELF header (and PT_INTERP) from `f`. `Ok(None)`: not an ELF file.
pub fn read_elf(f: &File) -> std::io::Result<Option<Elf>> {
    let mut h = [0u8; 64];
    let n = f.read_at(&mut h, 0)?;
    if n < 52 || h[..4] != *b"\x7fELF" {
        return Ok(None);
    }
    let class64 = h[4] == 2;
    let le = h[5] == 1;
    if class64 && n < 64 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1]];
        if le {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        }
    };
    let u32_at = |b: &[u8], o: usize| {
        let a = [b[o], b[o + 1], b[o + 2], b[o + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let u64_at = |b: &[u8], o: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(&b[o..o + 8]);
        if le {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        }
    };
    let machine = u16_at(&h, 18);
    let (phoff, phentsize, phnum) = if class64 {
        (u64_at(&h, 32), u16_at(&h, 54), u16_at(&h, 56))
    } else {
        (u64::from(u32_at(&h, 28)), u16_at(&h, 42), u16_at(&h, 44))
    };
    let mut interp = None;
    let min = if class64 { 56 } else { 32 };
    if usize::from(phentsize) >= min && phnum > 0 && phnum < 4096 {
        let mut ph = vec![0u8; usize::from(phentsize) * usize::from(phnum)];
        if f.read_exact_at(&mut ph, phoff).is_ok() {
            for e in ph.chunks(usize::from(phentsize)) {
                if u32_at(e, 0) != 3 {
                    continue;
                }
                let (off, size) = if class64 {
                    (u64_at(e, 8), u64_at(e, 32))
                } else {
                    (u64::from(u32_at(e, 4)), u64::from(u32_at(e, 16)))
                };
                if size == 0 || size > 4096 {
                    break;
                }
                let mut s = vec![0u8; size as usize];
                f.read_exact_at(&mut s, off)?;
                let end = s.iter().position(|c| *c == 0).unwrap_or(s.len());
                interp = Some(String::from_utf8_lossy(&s[..end]).into_owned());
                break;
            }
        }
    }
    Ok(Some(Elf {
        class64,
        little_endian: le,
        machine,
        interp,
    }))
}

/// A file of the rootfs opened by its path inside it: symlinks are resolved with the rootfs
/// as the root (`openat2(RESOLVE_IN_ROOT)`), so nothing outside it is ever reached.
fn open_in_rootfs(root: &OwnedFd, path: &str) -> std::io::Result<(File, String)> {
    let fd = sys::openat_in_root(root.as_fd(), Path::new(path), libc::O_RDONLY)?;
    let file = File::from(fd);
    // Where it resolved to, as a path inside the rootfs.
    let real = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let inside = real
        .strip_prefix(base.trim_end_matches('/'))
        .map(|s| {
            if s.is_empty() {
                "/".to_string()
            } else {
                s.to_string()
            }
        })
        .unwrap_or(real.clone());
    Ok((file, inside))
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host side: kernel, features kakuri uses, cgroups, capabilities, LSMs, CRIU, binfmt.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub kernel: String,
    pub machine: String,
    pub namespaces: BTreeMap<String, bool>,
    pub features: Vec<Finding>,
    pub cgroup: CgroupReport,
    pub capabilities: CapReport,
    pub lsms: Vec<String>,
    pub criu: Finding,
    /// None: binfmt_misc is not mounted.
    pub binfmt_misc: Option<Vec<Binfmt>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CgroupReport {
    /// "v1", "hybrid" or "v2".
    pub layout: String,
    /// v1 hierarchies mounted: controller -> mount point.
    pub v1_controllers: BTreeMap<String, String>,
    pub v2_mount: Option<String>,
    /// Controllers the cgroup2 root offers.
    pub v2_controllers: Vec<String>,
    /// This process's cgroup2 path and what it delegates to its children.
    pub v2_own: Option<String>,
    pub v2_subtree_control: Vec<String>,
    /// Whether this process can make a cgroup2 child of its own cgroup.
    pub v2_delegated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapReport {
    pub effective: Vec<String>,
    /// Capabilities the kernel knows that are missing from the bounding set.
    pub bounding_missing: Vec<String>,
}

/// One mountinfo line's mount point, fs type and super options.
struct MountInfo {
    mount_point: String,
    fstype: String,
    super_opts: String,
}

fn mountinfo() -> Vec<MountInfo> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let mount_point = a.split(' ').nth(4)?.replace("\\040", " ");
            let mut b = b.split(' ');
            let fstype = b.next()?.to_string();
            let _source = b.next();
            let super_opts = b.next().unwrap_or("").to_string();
            Some(MountInfo {
                mount_point,
                fstype,
                super_opts,
            })
        })
        .collect()
}

fn cgroup_report() -> CgroupReport {
    const V1_KNOWN: &[&str] = &[
        "cpuset",
        "cpu",
        "cpuacct",
        "blkio",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "perf_event",
        "net_prio",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    ];
    let mut v1 = BTreeMap::new();
    let mut v2_mount = None;
    for m in mountinfo() {
        match m.fstype.as_str() {
            "cgroup" => {
                for o in m.super_opts.split(',') {
                    if V1_KNOWN.contains(&o) || o.starts_with("name=") {
                        v1.entry(o.to_string()).or_insert(m.mount_point.clone());
                    }
                }
            }
            // The host's: /sys/fs/cgroup or /sys/fs/cgroup/unified first.
            "cgroup2"
                if v2_mount.is_none()
                    || m.mount_point == "/sys/fs/cgroup"
                    || m.mount_point == "/sys/fs/cgroup/unified" =>
            {
                v2_mount = Some(m.mount_point.clone());
            }
            _ => {}
        }
    }
    let words = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let v2_controllers = v2_mount
        .as_deref()
        .map(|m| words(&Path::new(m).join("cgroup.controllers")))
        .unwrap_or_default();
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string));
    let own_dir = match (&v2_mount, &own) {
        (Some(m), Some(o)) => Some(Path::new(m).join(o.trim_start_matches('/'))),
        _ => None,
    };
    let v2_subtree_control = own_dir
        .as_deref()
        .map(|d| words(&d.join("cgroup.subtree_control")))
        .unwrap_or_default();
    let v2_delegated = own_dir
        .as_deref()
        .is_some_and(|d| nix::unistd::access(d, nix::unistd::AccessFlags::W_OK).is_ok());
    let layout = match (v1.is_empty(), &v2_mount) {
        (true, Some(_)) => "v2",
        (false, Some(_)) => "hybrid",
        (false, None) => "v1",
        (true, None) => "none",
    };
    CgroupReport {
        layout: layout.to_string(),
        v1_controllers: v1,
        v2_mount,
        v2_controllers,
        v2_own: own,
        v2_subtree_control,
        v2_delegated,
    }
}

/// Try clone3(CLONE_INTO_CGROUP) into a fresh cgroup2 child of this process's cgroup.
fn probe_clone_into_cgroup(cg: &CgroupReport) -> Finding {
    const NAME: &str = "clone3 CLONE_INTO_CGROUP";
    let (Some(m), Some(own)) = (&cg.v2_mount, &cg.v2_own) else {
        return finding(NAME, Level::Warn, "no cgroup2 mount: cannot probe");
    };
    let dir = Path::new(m)
        .join(own.trim_start_matches('/'))
        .join(format!("kakuri-check-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir(&dir) {
        return finding(
            NAME,
            Level::Warn,
            format!(
                "cannot make a probe cgroup {}: {}",
                dir.display(),
                os_error(&e)
            ),
        );
    }
    let r = (|| {
        let cgfd = File::open(&dir)?;
        // SAFETY: `check` runs single-threaded; the child only calls _exit.
        let pid = unsafe { sys::clone3_into_cgroup(cgfd.as_fd()) }?;
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        Ok::<(), std::io::Error>(())
    })();
    let _ = std::fs::remove_dir(&dir);
    match r {
        Ok(()) => finding(
            NAME,
            Level::Ok,
            format!("a child started in {}", dir.display()),
        ),
        Err(e) => finding(NAME, Level::Fail, os_error(&e)),
    }
}

/// Idmap a detached tmpfs with a throw-away user namespace.
fn probe_idmap_tmpfs() -> Finding {
    const NAME: &str = "idmapped mounts (tmpfs)";
    if !kakuri_isolate::idmap::supported() {
        return finding(NAME, Level::Fail, "no mount_setattr(2) in this kernel");
    }
    let r = (|| {
        let fs = sys::fsmount_new(c"tmpfs", 0)
            .map_err(|e| format!("fsmount tmpfs: {}", os_error(&e)))?;
        idmap_probe(&fs)
    })();
    match r {
        Ok(()) => finding(
            NAME,
            Level::Ok,
            "mount_setattr(MOUNT_ATTR_IDMAP) works on tmpfs",
        ),
        Err(e) => finding(NAME, Level::Fail, e),
    }
}

fn probe_userns() -> Option<OwnedFd> {
    let map = |h: u32| {
        oci::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(h)
            .size(65536u32)
            .build()
            .expect("static mapping")
    };
    kakuri_isolate::idmap::userns_with_maps(&[map(100_000)], &[map(100_000)]).ok()
}

/// Idmap the detached mount `tree` with a probe user namespace.
fn idmap_probe(tree: &OwnedFd) -> Result<(), String> {
    let ns = probe_userns().ok_or("cannot make a user namespace for the probe")?;
    sys::mount_setattr_idmap(tree.as_fd(), false, ns.as_fd())
        .map_err(|e| format!("mount_setattr(MOUNT_ATTR_IDMAP): {}", os_error(&e)))
}

/// Whether the filesystem holding `path` can be idmapped (an `open_tree` clone of it, idmapped).
pub fn idmap_on(path: &Path) -> Result<(), String> {
    let tree = sys::open_tree_clone(path, false)
        .map_err(|e| format!("open_tree({}): {}", path.display(), os_error(&e)))?;
    idmap_probe(&tree)
}

/// The filesystem type of the mount holding `path` (the longest mount point that is a prefix
/// of it, in mountinfo).
fn fs_type_at(path: &str) -> String {
    let within = |mp: &str| {
        path == mp || mp == "/" || path.strip_prefix(mp).is_some_and(|r| r.starts_with('/'))
    };
    mountinfo()
        .into_iter()
        .filter(|m| within(&m.mount_point))
        .max_by_key(|m| m.mount_point.len())
        .map(|m| m.fstype)
        .unwrap_or_else(|| "?".into())
}

fn probe_userns_allowed() -> Finding {
    const NAME: &str = "user namespaces";
    let max = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if max == Some(0) {
        return finding(NAME, Level::Fail, "user.max_user_namespaces is 0");
    }
    match probe_userns() {
        Some(_) => {
            let unpriv = std::fs::read_to_string("/proc/sys/kernel/unprivileged_userns_clone")
                .map(|s| s.trim() == "1")
                .unwrap_or(true);
            finding(
                NAME,
                Level::Ok,
                format!(
                    "created one (max {}); unprivileged users {}",
                    max.map_or("?".into(), |m| m.to_string()),
                    if unpriv {
                        "allowed"
                    } else {
                        "not allowed (kernel.unprivileged_userns_clone=0)"
                    }
                ),
            )
        }
        None => finding(NAME, Level::Fail, "clone(CLONE_NEWUSER) failed"),
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn probe_criu() -> Finding {
    let Some(bin) = which("criu") else {
        return finding(
            "criu",
            Level::Info,
            "not installed (checkpoint/restore unavailable)",
        );
    };
    match std::process::Command::new(&bin).arg("check").output() {
        Ok(o) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
            let last: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = last[last.len().saturating_sub(3)..].join("; ");
            if o.status.success() {
                finding(
                    "criu",
                    Level::Ok,
                    format!("{}: criu check: {tail}", bin.display()),
                )
            } else {
                finding(
                    "criu",
                    Level::Warn,
                    format!(
                        "{}: criu check failed ({}): {tail}",
                        bin.display(),
                        o.status
                    ),
                )
            }
        }
        Err(e) => finding(
            "criu",
            Level::Warn,
            format!("{}: {}", bin.display(), os_error(&e)),
        ),
    }
}

const NAMESPACES: [(&str, &str); 8] = [
    ("cgroup", "cgroup"),
    ("ipc", "ipc"),
    ("mount", "mnt"),
    ("network", "net"),
    ("pid", "pid"),
    ("time", "time"),
    ("user", "user"),
    ("uts", "uts"),
];

/// Probe the host.
pub fn host() -> HostReport {
    let uts = nix::sys::utsname::uname().ok();
    let kernel = uts
        .as_ref()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let machine = uts
        .as_ref()
        .map(|u| u.machine().to_string_lossy().into_owned())
        .unwrap_or_default();
    let namespaces = NAMESPACES
        .iter()
        .map(|(spec, file)| {
            (
                spec.to_string(),
                Path::new("/proc/self/ns").join(file).exists(),
            )
        })
        .collect();
    let cgroup = cgroup_report();
    let mut features = vec![probe_userns_allowed()];
    features.push(if Path::new("/proc/self/ns/time").exists() {
        finding("time namespace", Level::Ok, "/proc/self/ns/time exists")
    } else {
        finding(
            "time namespace",
            Level::Fail,
            "no time namespaces (Linux < 5.6)",
        )
    });
    features.push(match sys::pidfd_open(std::process::id() as i32) {
        Ok(_) => finding("pidfd", Level::Ok, "pidfd_open works"),
        Err(e) => finding(
            "pidfd",
            Level::Fail,
            format!("pidfd_open: {}", os_error(&e)),
        ),
    });
    features.push(probe_clone_into_cgroup(&cgroup));
    features.push(
        match File::open("/")
            .and_then(|f| sys::openat_in_root(f.as_fd(), Path::new("."), libc::O_PATH).map(drop))
        {
            Ok(()) => finding("openat2", Level::Ok, "RESOLVE_IN_ROOT works"),
            Err(e) => finding("openat2", Level::Fail, os_error(&e)),
        },
    );
    features.push(if kakuri_isolate::idmap::supported() {
        finding("mount_setattr", Level::Ok, "present")
    } else {
        finding("mount_setattr", Level::Fail, "absent (Linux < 5.12)")
    });
    features.push(probe_idmap_tmpfs());
    // Per filesystem: those of the usual places for images and volumes, once each.
    let mut seen = Vec::new();
    for p in ["/", "/var/lib", "/tmp", "/run", "/home", "/srv"] {
        let Ok(st) = nix::sys::stat::stat(p) else {
            continue;
        };
        if seen.contains(&st.st_dev) {
            continue;
        }
        seen.push(st.st_dev);
        let name = format!("idmapped mounts ({} at {p})", fs_type_at(p));
        features.push(match idmap_on(Path::new(p)) {
            Ok(()) => finding(&name, Level::Ok, "mount_setattr(MOUNT_ATTR_IDMAP) works"),
            Err(e) => finding(&name, Level::Warn, e),
        });
    }
    let actions: Vec<String> = kakuri_seccomp::supported_actions()
        .into_iter()
        .map(|a| a.to_string())
        .collect();
    features.push(finding(
        "seccomp",
        if actions.is_empty() {
            Level::Fail
        } else {
            Level::Ok
        },
        format!(
            "actions: {}; flags: {}",
            actions.join(" "),
            kakuri_seccomp::supported_flags().join(" ")
        ),
    ));
    features.push(if actions.iter().any(|a| a == "SCMP_ACT_NOTIFY") {
        finding("seccomp notify", Level::Ok, "SCMP_ACT_NOTIFY available")
    } else {
        finding(
            "seccomp notify",
            Level::Fail,
            "SCMP_ACT_NOTIFY not available",
        )
    });
    features.push(match crate::resctrl::mount_point() {
        Some(m) => finding("resctrl", Level::Ok, format!("mounted at {}", m.display())),
        None => finding(
            "resctrl",
            Level::Info,
            "not mounted (linux.intelRdt is refused)",
        ),
    });
    let capset = |s| {
        caps::read(None, s)
            .map(|c| {
                c.into_iter()
                    .map(|c| c.to_string())
                    .collect::<std::collections::BTreeSet<_>>()
            })
            .unwrap_or_default()
    };
    let bounding = capset(caps::CapSet::Bounding);
    let capabilities = CapReport {
        effective: capset(caps::CapSet::Effective).into_iter().collect(),
        bounding_missing: caps::runtime::procfs_all_supported(None)
            .unwrap_or_else(|_| caps::all())
            .into_iter()
            .map(|c| c.to_string())
            .filter(|c| !bounding.contains(c))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let lsms = match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(s) => s.trim().split(',').map(str::to_string).collect(),
        Err(_) => {
            let mut v = Vec::new();
            if kakuri_isolate::lsm::apparmor_enabled() {
                v.push("apparmor".to_string());
            }
            if kakuri_isolate::lsm::selinux_enabled() {
                v.push("selinux".to_string());
            }
            v
        }
    };
    HostReport {
        kernel,
        machine,
        namespaces,
        features,
        cgroup,
        capabilities,
        lsms,
        criu: probe_criu(),
        binfmt_misc: binfmt_handlers(),
    }
}

/// The bundle side.
#[derive(Debug, Clone, Serialize)]
pub struct BundleReport {
    pub bundle: PathBuf,
    /// False when any finding is `fail`.
    pub runnable: bool,
    pub findings: Vec<Finding>,
}

/// Check the bundle at `dir` against `host`.
pub fn bundle(dir: &Path, host: &HostReport) -> BundleReport {
    let mut f = Vec::new();
    check_bundle(dir, host, &mut f);
    BundleReport {
        bundle: std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf()),
        runnable: !f.iter().any(|x| x.level == Level::Fail),
        findings: f,
    }
}

fn check_bundle(dir: &Path, host: &HostReport, out: &mut Vec<Finding>) {
    let b = match kakuri_spec::load_bundle(dir) {
        Ok(b) => {
            out.push(finding(
                "config",
                Level::Ok,
                format!("{} is valid", b.dir.join("config.json").display()),
            ));
            b
        }
        Err(e) => {
            out.push(finding("config", Level::Fail, e.to_string()));
            return;
        }
    };
    let spec = &b.spec;
    if let Err(e) = crate::create::refuse_unsupported(spec) {
        out.push(finding("config", Level::Fail, e));
    }
    let root = match File::open(&b.rootfs).and_then(|f| {
        if f.metadata()?.is_dir() {
            Ok(f)
        } else {
            Err(std::io::Error::from_raw_os_error(libc::ENOTDIR))
        }
    }) {
        Ok(f) => {
            out.push(finding(
                "rootfs",
                Level::Ok,
                format!("{}", b.rootfs.display()),
            ));
            OwnedFd::from(f)
        }
        Err(e) => {
            out.push(finding(
                "rootfs",
                Level::Fail,
                format!("root.path {}: {}", b.rootfs.display(), os_error(&e)),
            ));
            return;
        }
    };
    match spec.process() {
        Some(p) => check_program(&root, p, host, out),
        None => out.push(finding(
            "process",
            Level::Fail,
            "process: a container needs a process to run",
        )),
    }
    check_requested_features(spec, &b.dir, host, out);
}

/// `process.args[0]`: found on the container's PATH, executable, of this host's machine (or
/// with a binfmt_misc handler), its loader present.
fn check_program(root: &OwnedFd, p: &oci::Process, host: &HostReport, out: &mut Vec<Finding>) {
    let Some(arg0) = p
        .args()
        .as_ref()
        .and_then(|a| a.first())
        .filter(|a| !a.is_empty())
    else {
        out.push(finding(
            "process.args",
            Level::Fail,
            "process.args: empty, nothing to run",
        ));
        return;
    };
    let path_var = p
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH="))
        .map(str::to_string);
    let candidates: Vec<String> = if arg0.contains('/') {
        let base = p.cwd().to_string_lossy().into_owned();
        vec![if arg0.starts_with('/') {
            arg0.clone()
        } else {
            format!("{base}/{arg0}")
        }]
    } else {
        path_var
            .as_deref()
            .unwrap_or(DEFAULT_PATH)
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{arg0}", d.trim_end_matches('/')))
            .collect()
    };
    let found = candidates.iter().find_map(|c| {
        let (f, real) = open_in_rootfs(root, c).ok()?;
        let m = f.metadata().ok()?;
        (m.is_file() && m.permissions().mode() & 0o111 != 0).then_some((c.clone(), f, real))
    });
    let Some((path, file, real)) = found else {
        let where_ = if arg0.contains('/') {
            "in the rootfs".to_string()
        } else {
            format!("on PATH {}", path_var.as_deref().unwrap_or(DEFAULT_PATH))
        };
        out.push(finding(
            "process.args[0]",
            Level::Fail,
            format!("{arg0:?}: no executable file {where_} inside the rootfs (symlinks are resolved inside the rootfs)"),
        ));
        return;
    };
    let shown = if real != path {
        format!("{path} (-> {real})")
    } else {
        path.clone()
    };
    out.push(finding(
        "process.args[0]",
        Level::Ok,
        format!("{arg0:?} is {shown}"),
    ));
    check_executable(root, &file, &shown, host, out, 0);
}

fn check_executable(
    root: &OwnedFd,
    file: &File,
    shown: &str,
    host: &HostReport,
    out: &mut Vec<Finding>,
    depth: u32,
) {
    let mut head = [0u8; 256];
    let n = file.read_at(&mut head, 0).unwrap_or(0);
    let head = &head[..n];
    if head.starts_with(b"#!") {
        let line = head[2..].split(|c| *c == b'\n').next().unwrap_or(&[]);
        let line = String::from_utf8_lossy(line);
        let interp = line.split_whitespace().next().unwrap_or("").to_string();
        if interp.is_empty() || depth > 3 {
            out.push(finding(
                "interpreter",
                Level::Fail,
                format!("{shown}: bad #! line"),
            ));
            return;
        }
        match open_in_rootfs(root, &interp) {
            Ok((f, real)) => {
                out.push(finding(
                    "interpreter",
                    Level::Ok,
                    format!("{shown} is a script for {interp}"),
                ));
                let s = if real != interp {
                    format!("{interp} (-> {real})")
                } else {
                    interp
                };
                check_executable(root, &f, &s, host, out, depth + 1);
            }
            Err(e) => out.push(finding(
                "interpreter",
                Level::Fail,
                format!(
                    "{shown} is a script for {interp}, which is not in the rootfs: {}",
                    os_error(&e)
                ),
            )),
        }
        return;
    }
    let elf = match read_elf(file) {
        Ok(Some(e)) => e,
        Ok(None) => {
            out.push(finding(
                "elf",
                Level::Fail,
                format!("{shown}: neither an ELF file nor a #! script (exec format error)"),
            ));
            return;
        }
        Err(e) => {
            out.push(finding(
                "elf",
                Level::Fail,
                format!("{shown}: {}", os_error(&e)),
            ));
            return;
        }
    };
    let (hm, h64) = host_machine();
    let name = machine_name(elf.machine, elf.class64);
    let bits = if elf.class64 { 64 } else { 32 };
    if (elf.machine, elf.class64) == (hm, h64) {
        out.push(finding(
            "elf",
            Level::Ok,
            format!("{shown}: {name} ({bits}-bit), as the host"),
        ));
    } else if (hm, elf.machine, elf.class64) == (62, 3, false)
        || (hm, elf.machine, elf.class64) == (183, 40, false)
    {
        out.push(finding(
            "elf",
            Level::Warn,
            format!("{shown}: 32-bit {name} binary on {} host: runs only if the kernel has 32-bit compat (IA32_EMULATION/COMPAT)", host.machine),
        ));
    } else {
        let handler = host
            .binfmt_misc
            .iter()
            .flatten()
            .find(|b| b.enabled && b.matches(head));
        match handler {
            Some(b) if b.flags.contains('F') => out.push(finding(
                "elf",
                Level::Warn,
                format!("{shown}: {name} binary on {} host: runs under binfmt_misc handler {:?} ({}, preloaded with flag F)", host.machine, b.name, b.interpreter),
            )),
            Some(b) => {
                let inside = open_in_rootfs(root, &b.interpreter).is_ok();
                out.push(finding(
                    "elf",
                    if inside { Level::Warn } else { Level::Fail },
                    format!(
                        "{shown}: {name} binary on {} host: binfmt_misc handler {:?} needs {} inside the container (no flag F){}",
                        host.machine,
                        b.name,
                        b.interpreter,
                        if inside { ", and the rootfs has it" } else { ", which the rootfs lacks" }
                    ),
                ))
            }
            None => out.push(finding(
                "elf",
                Level::Fail,
                format!(
                    "{shown}: {name} binary on {} host, and no binfmt_misc handler for it{} (exec format error)",
                    host.machine,
                    if host.binfmt_misc.is_none() { " (binfmt_misc is not mounted)" } else { "" }
                ),
            )),
        }
    }
    match &elf.interp {
        None => out.push(finding("loader", Level::Ok, format!("{shown}: statically linked (no PT_INTERP)"))),
        Some(l) => match open_in_rootfs(root, l) {
            Ok((lf, real)) => {
                let shown_l = if &real != l { format!("{l} (-> {real})") } else { l.clone() };
                match read_elf(&lf) {
                    Ok(Some(le)) if (le.machine, le.class64) == (elf.machine, elf.class64) => {
                        out.push(finding("loader", Level::Ok, format!("{shown}: loader {shown_l} present")))
                    }
                    Ok(Some(le)) => out.push(finding(
                        "loader",
                        Level::Fail,
                        format!("{shown}: loader {shown_l} is {}, not {name}", machine_name(le.machine, le.class64)),
                    )),
                    _ => out.push(finding("loader", Level::Fail, format!("{shown}: loader {shown_l} is not an ELF file"))),
                }
            }
            Err(e) => out.push(finding(
                "loader",
                Level::Fail,
                format!("{shown}: dynamic loader {l} is missing from the rootfs: {} (the exec would fail with \"no such file or directory\")", os_error(&e)),
            )),
        },
    }
}

/// What the config asks for that this host lacks.
fn check_requested_features(
    spec: &oci::Spec,
    bundle: &Path,
    host: &HostReport,
    out: &mut Vec<Finding>,
) {
    let Some(linux) = spec.linux() else { return };
    let before = out.len();
    let file_of = |t: oci::LinuxNamespaceType| -> String {
        serde_json::to_value(t)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    };
    for n in linux.namespaces().iter().flatten() {
        let kind = file_of(n.typ());
        if !host.namespaces.get(&kind).copied().unwrap_or(false) {
            out.push(finding(
                "linux.namespaces",
                Level::Fail,
                format!("{kind} namespaces: this kernel has none"),
            ));
        }
        if n.typ() == oci::LinuxNamespaceType::User && n.path().is_none() {
            if let Some(f) = host
                .features
                .iter()
                .find(|f| f.check == "user namespaces" && f.level == Level::Fail)
            {
                out.push(finding(
                    "linux.namespaces",
                    Level::Fail,
                    format!("user namespace: {}", f.detail),
                ));
            }
        }
    }
    // Resources: each needs its controller.
    if let Some(r) = linux.resources() {
        let cg = &host.cgroup;
        let v2 = cg.layout == "v2";
        let mut need: Vec<(&str, &str)> = Vec::new();
        if r.memory().is_some() {
            need.push(("linux.resources.memory", "memory"));
        }
        if let Some(c) = r.cpu() {
            if c.shares().is_some()
                || c.quota().is_some()
                || c.period().is_some()
                || c.burst().is_some()
                || c.idle().is_some()
                || c.realtime_runtime().is_some()
            {
                need.push(("linux.resources.cpu", "cpu"));
            }
            if c.cpus().is_some() || c.mems().is_some() {
                need.push(("linux.resources.cpu.cpus/mems", "cpuset"));
            }
        }
        if r.pids().is_some() {
            need.push(("linux.resources.pids", "pids"));
        }
        if r.block_io().is_some() {
            need.push(("linux.resources.blockIO", if v2 { "io" } else { "blkio" }));
        }
        if r.hugepage_limits().as_ref().is_some_and(|h| !h.is_empty()) {
            need.push(("linux.resources.hugepageLimits", "hugetlb"));
        }
        if r.rdma().as_ref().is_some_and(|h| !h.is_empty()) {
            need.push(("linux.resources.rdma", "rdma"));
        }
        if !v2 {
            if let Some(n) = r.network() {
                if n.class_id().is_some() {
                    need.push(("linux.resources.network.classID", "net_cls"));
                }
                if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
                    need.push(("linux.resources.network.priorities", "net_prio"));
                }
            }
            if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
                out.push(finding(
                    "linux.resources.unified",
                    Level::Fail,
                    format!("needs cgroup v2; this host's cgroups are {}", cg.layout),
                ));
            }
        }
        for (field, ctl) in need {
            let have = if v2 {
                cg.v2_controllers.iter().any(|c| c == ctl)
            } else {
                cg.v1_controllers.contains_key(ctl)
            };
            if !have {
                out.push(finding(
                    field,
                    Level::Fail,
                    format!(
                        "the {ctl} controller is not available ({} cgroups)",
                        cg.layout
                    ),
                ));
            }
        }
    }
    // Idmapped mounts: tried on the source's filesystem.
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let opts = m.options().as_deref().unwrap_or(&[]);
        let wants =
            opts.iter().any(|o| o == "idmap" || o == "ridmap") || m.uid_mappings().is_some();
        if !wants {
            continue;
        }
        let Some(src) = m.source() else { continue };
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        if let Err(e) = idmap_on(&src) {
            out.push(finding(
                &format!("mounts[{i}]"),
                Level::Fail,
                format!("idmapped mount of {}: {e}", src.display()),
            ));
        }
    }
    if let Some(s) = linux.seccomp() {
        let supported = kakuri_seccomp::supported_flags();
        for fl in s.flags().iter().flatten() {
            let name = serde_json::to_value(fl)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if !supported.contains(&name) {
                out.push(finding(
                    "linux.seccomp.flags",
                    Level::Fail,
                    format!("{name}: not supported by this kernel"),
                ));
            }
        }
        if let Err(e) = kakuri_seccomp::compile(s) {
            out.push(finding("linux.seccomp", Level::Fail, e.to_string()));
        }
    }
    if let Some(m) = linux.memory_policy() {
        match kakuri_isolate::process::mem_policy(m) {
            Err(e) => out.push(finding("linux.memoryPolicy", Level::Fail, e)),
            Ok(_) => {
                let online =
                    std::fs::read_to_string("/sys/devices/system/node/online").unwrap_or_default();
                let have = kakuri_isolate::process::parse_cpu_list(online.trim(), "nodes")
                    .unwrap_or_default();
                if let Some(n) = m.nodes().as_deref().filter(|s| !s.trim().is_empty()) {
                    let want = kakuri_isolate::process::parse_cpu_list(n.trim(), "nodes")
                        .unwrap_or_default();
                    let missing: Vec<String> = want
                        .iter()
                        .filter(|x| !have.contains(x))
                        .map(|x| x.to_string())
                        .collect();
                    if !missing.is_empty() {
                        out.push(finding(
                            "linux.memoryPolicy.nodes",
                            Level::Fail,
                            format!(
                                "node(s) {} not online here (online: {})",
                                missing.join(","),
                                online.trim()
                            ),
                        ));
                    }
                }
            }
        }
    }
    if let Some(r) = linux.intel_rdt() {
        // The container id is not known here; the group name only matters for a closID.
        let root = crate::resctrl::mount_point();
        if let Err(e) = crate::resctrl::plan(r, "check", root.as_deref()) {
            out.push(finding("linux.intelRdt", Level::Fail, e));
        }
    }
    if let Some(p) = linux.personality() {
        if let Err(e) = kakuri_isolate::process::personality(p) {
            out.push(finding("linux.personality", Level::Fail, e));
        }
    }
    if let Some(d) = linux.net_devices() {
        let has_netns = linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == oci::LinuxNamespaceType::Network);
        // SAFETY: geteuid cannot fail.
        let rootless = unsafe { libc::geteuid() } != 0;
        if let Err(e) = kakuri_isolate::netdev::plan(d, has_netns, rootless) {
            out.push(finding("linux.netDevices", Level::Fail, e));
        }
    }
    if let Some(p) = spec.process() {
        if let Err(e) = kakuri_isolate::lsm::check_available(
            p.apparmor_profile().as_deref(),
            p.selinux_label().as_deref(),
        ) {
            out.push(finding("process", Level::Fail, e));
        }
    }
    if out.len() == before {
        out.push(finding(
            "features",
            Level::Ok,
            "the host has every feature the config asks for",
        ));
    }
}

/// Human-readable report.
pub fn render_text(host: &HostReport, bundle: Option<&BundleReport>) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let tag = |l: Level| match l {
        Level::Ok => "ok  ",
        Level::Info => "info",
        Level::Warn => "WARN",
        Level::Fail => "FAIL",
    };
    let _ = writeln!(s, "host: Linux {} {}", host.kernel, host.machine);
    let ns: Vec<String> = host
        .namespaces
        .iter()
        .map(|(k, v)| {
            if *v {
                k.clone()
            } else {
                format!("{k}(missing)")
            }
        })
        .collect();
    let _ = writeln!(s, "  namespaces: {}", ns.join(" "));
    for f in &host.features {
        let _ = writeln!(s, "  [{}] {}: {}", tag(f.level), f.check, f.detail);
    }
    let cg = &host.cgroup;
    let _ = writeln!(s, "  cgroups: {}", cg.layout);
    if !cg.v1_controllers.is_empty() {
        let v: Vec<&str> = cg.v1_controllers.keys().map(String::as_str).collect();
        let _ = writeln!(s, "    v1 controllers: {}", v.join(" "));
    }
    if let Some(m) = &cg.v2_mount {
        let _ = writeln!(
            s,
            "    cgroup2 at {m}: controllers [{}]; own cgroup {} delegates [{}]{}",
            cg.v2_controllers.join(" "),
            cg.v2_own.as_deref().unwrap_or("?"),
            cg.v2_subtree_control.join(" "),
            if cg.v2_delegated {
                ", writable"
            } else {
                ", not writable"
            }
        );
    }
    let _ = writeln!(
        s,
        "  capabilities: {} effective; missing from the bounding set: {}",
        host.capabilities.effective.len(),
        if host.capabilities.bounding_missing.is_empty() {
            "none".to_string()
        } else {
            host.capabilities.bounding_missing.join(" ")
        }
    );
    let _ = writeln!(
        s,
        "  LSMs: {}",
        if host.lsms.is_empty() {
            "none".to_string()
        } else {
            host.lsms.join(",")
        }
    );
    let _ = writeln!(s, "  [{}] criu: {}", tag(host.criu.level), host.criu.detail);
    match &host.binfmt_misc {
        None => {
            let _ = writeln!(s, "  binfmt_misc: not mounted");
        }
        Some(v) if v.is_empty() => {
            let _ = writeln!(s, "  binfmt_misc: no handlers");
        }
        Some(v) => {
            for b in v {
                let _ = writeln!(
                    s,
                    "  binfmt_misc {}: {} {} flags {}",
                    b.name,
                    if b.enabled { "enabled" } else { "disabled" },
                    b.interpreter,
                    b.flags
                );
            }
        }
    }
    if let Some(b) = bundle {
        let _ = writeln!(s, "bundle: {}", b.bundle.display());
        for f in &b.findings {
            let _ = writeln!(s, "  [{}] {}: {}", tag(f.level), f.check, f.detail);
        }
        let _ = writeln!(
            s,
            "{}",
            if b.runnable {
                "the bundle can run on this host"
            } else {
                "the bundle cannot run on this host"
            }
        );
    }
    s
}

/// JSON report: `{"host": ..., "bundle": ...}`.
pub fn render_json(host: &HostReport, bundle: Option<&BundleReport>) -> String {
    let v = serde_json::json!({"host": host, "bundle": bundle});
    serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binfmt_entry_matches_aarch64_elf() {
        let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let b = Binfmt::parse("qemu-aarch64", text);
        assert!(b.enabled);
        assert_eq!(b.interpreter, "/usr/bin/qemu-aarch64-static");
        assert_eq!(b.flags, "OCF");
        let mut head = vec![0u8; 64];
        head[..20].copy_from_slice(&[
            0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 183, 0,
        ]);
        assert!(b.matches(&head));
        head[18] = 62;
        assert!(!b.matches(&head));
    }

    /// A 32-bit big-endian ELF with PT_INTERP (an old MIPS-style layout): class, byte order,
    /// machine and loader read.
    #[test]
    fn elf32_big_endian_with_interp() {
        let interp = b"/lib/ld.so.1\0";
        let mut h = vec![0u8; 52];
        h[..7].copy_from_slice(&[0x7f, b'E', b'L', b'F', 1, 2, 1]);
        h[16..18].copy_from_slice(&2u16.to_be_bytes());
        h[18..20].copy_from_slice(&8u16.to_be_bytes());
        h[28..32].copy_from_slice(&52u32.to_be_bytes()); // e_phoff
        h[42..44].copy_from_slice(&32u16.to_be_bytes()); // e_phentsize
        h[44..46].copy_from_slice(&1u16.to_be_bytes()); // e_phnum
        let mut ph = vec![0u8; 32];
        ph[..4].copy_from_slice(&3u32.to_be_bytes());
        ph[4..8].copy_from_slice(&84u32.to_be_bytes()); // p_offset
        ph[16..20].copy_from_slice(&(interp.len() as u32).to_be_bytes()); // p_filesz
        h.extend_from_slice(&ph);
        h.extend_from_slice(interp);
        let path = std::env::temp_dir().join(format!("kakuri-elf32-{}", std::process::id()));
        std::fs::write(&path, &h).unwrap();
        let e = read_elf(&File::open(&path).unwrap()).unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            e,
            Elf {
                class64: false,
                little_endian: false,
                machine: 8,
                interp: Some("/lib/ld.so.1".into()),
            }
        );
        assert_eq!(machine_name(e.machine, e.class64), "mips");
        // Not ELF at all.
        let path = std::env::temp_dir().join(format!("kakuri-notelf-{}", std::process::id()));
        std::fs::write(&path, b"#!/bin/sh\n").unwrap();
        assert_eq!(read_elf(&File::open(&path).unwrap()).unwrap(), None);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn machine_names() {
        assert_eq!(machine_name(183, true), "aarch64");
        assert_eq!(machine_name(62, true), "x86_64");
        assert_eq!(machine_name(3, false), "i386");
    }
}
