//! What the host offers: the cgroup mounts (from /proc/self/mountinfo) and the runtime's own cgroups (from
//! /proc/self/cgroup). Both files are parsed once per process.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::CgroupError;

/// The cgroup layout of the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// cgroup v1 hierarchies plus a cgroup2 mount (usually /sys/fs/cgroup/unified) without controllers.
    Hybrid,
    /// The single cgroup2 hierarchy at /sys/fs/cgroup.
    V2,
}

/// v1 controllers runc joins (plus the named hierarchies name=systemd and misc).
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "blkio",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// One mounted v1 hierarchy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Controllers bound to the hierarchy, e.g. ["cpu", "cpuacct"] or ["name=systemd"].
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    /// The mount's root inside the hierarchy (field 4 of mountinfo), "/" normally.
    pub root: String,
}

/// The cgroup2 mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct V2Mount {
    pub mount_point: PathBuf,
    pub root: String,
}

/// Parsed cgroup information of the host.
#[derive(Clone, Debug)]
pub(crate) struct SystemInfo {
    pub mode: Mode,
    pub v1: Vec<V1Mount>,
    pub unified: Option<V2Mount>,
    /// Lines of /proc/self/cgroup: (controller list, path). The v2 line has an empty list.
    pub own: Vec<(Vec<String>, String)>,
}

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUP: &str = "/proc/self/cgroup";
pub(crate) const CGROUP_ROOT: &str = "/sys/fs/cgroup";

static SYSTEM: OnceLock<Result<SystemInfo, String>> = OnceLock::new();

/// The host's cgroup information, parsed on first use.
pub(crate) fn system() -> Result<&'static SystemInfo, CgroupError> {
    let r = SYSTEM.get_or_init(|| {
        let mountinfo =
            std::fs::read_to_string(MOUNTINFO).map_err(|e| format!("{MOUNTINFO}: {e}"))?;
        let cgroup =
            std::fs::read_to_string(PROC_CGROUP).map_err(|e| format!("{PROC_CGROUP}: {e}"))?;
        SystemInfo::parse(&mountinfo, &cgroup, Path::new(CGROUP_ROOT)).map_err(|e| e.to_string())
    });
    r.as_ref().map_err(|reason| CgroupError::System {
        path: PathBuf::from(MOUNTINFO),
        reason: reason.clone(),
    })
}

/// Undo mountinfo's octal escapes (`\040` = space).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl SystemInfo {
    /// Parse mountinfo and /proc/self/cgroup text. `cgroup_root` is where the cgroup2 mount of a v2 host
    /// lives (/sys/fs/cgroup); a cgroup2 mount there or at `cgroup_root`/unified is preferred over others.
    pub(crate) fn parse(
        mountinfo: &str,
        proc_cgroup: &str,
        cgroup_root: &Path,
    ) -> Result<SystemInfo, CgroupError> {
        let mut v1: Vec<V1Mount> = Vec::new();
        let mut v2: Vec<V2Mount> = Vec::new();
        for line in mountinfo.lines() {
            // id parent major:minor root mount_point options [optional...] - fstype source super_options
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mut rf = right.split(' ');
            let fstype = rf.next().unwrap_or("");
            if fstype != "cgroup" && fstype != "cgroup2" {
                continue;
            }
            let _source = rf.next();
            let super_opts = rf.next().unwrap_or("");
            let lf: Vec<&str> = left.split(' ').collect();
            if lf.len() < 5 {
                return Err(CgroupError::System {
                    path: PathBuf::from(MOUNTINFO),
                    reason: format!("malformed line {line:?}"),
                });
            }
            let root = unescape(lf[3]);
            let mount_point = PathBuf::from(unescape(lf[4]));
            if fstype == "cgroup2" {
                v2.push(V2Mount { mount_point, root });
                continue;
            }
            let controllers: Vec<String> = super_opts
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect();
            let useful = controllers
                .iter()
                .any(|c| c == "name=systemd" || V1_CONTROLLERS.contains(&c.as_str()));
            if !useful {
                continue;
            }
            // The same hierarchy may be mounted several times (bind mounts): keep the first.
            let mut key = controllers.clone();
            key.sort();
            if v1.iter().any(|m| {
                let mut k = m.controllers.clone();
                k.sort();
                k == key
            }) {
                continue;
            }
            v1.push(V1Mount {
                controllers,
                mount_point,
                root,
            });
        }
        let unified_dir = cgroup_root.join("unified");
        let unified = v2
            .iter()
            .position(|m| m.mount_point == cgroup_root)
            .or_else(|| v2.iter().position(|m| m.mount_point == unified_dir))
            .or(if v2.is_empty() { None } else { Some(0) })
            .map(|i| v2[i].clone());
        // /sys/fs/cgroup itself being cgroup2 means a unified host (what runc checks with statfs), even if
        // some named v1 hierarchy is mounted elsewhere for old software: those are not used then.
        let unified_at_root = unified
            .as_ref()
            .is_some_and(|u| u.mount_point == cgroup_root);
        let mode = match (unified_at_root, v1.is_empty(), unified.is_some()) {
            (true, _, _) => Mode::V2,
            (false, false, true) => Mode::Hybrid,
            (false, false, false) => Mode::V1,
            (false, true, true) => Mode::V2,
            (false, true, false) => return Err(CgroupError::NoCgroupFs(PathBuf::from(MOUNTINFO))),
        };
        if mode == Mode::V2 {
            v1.clear();
        }
        let mut own = Vec::new();
        for line in proc_cgroup.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let list = if ctrls.is_empty() {
                Vec::new()
            } else {
                ctrls.split(',').map(str::to_string).collect()
            };
            own.push((list, path.to_string()));
        }
        Ok(SystemInfo {
            mode,
            v1,
            unified,
            own,
        })
    }

    /// The runtime's own cgroup in the v1 hierarchy holding `controller` (`None` = not listed).
    pub(crate) fn own_v1(&self, controller: &str) -> Option<&str> {
        self.own
            .iter()
            .find(|(list, _)| list.iter().any(|c| c == controller))
            .map(|(_, p)| p.as_str())
    }

    /// The runtime's own cgroup in the v2 hierarchy.
    pub(crate) fn own_v2(&self) -> Option<&str> {
        self.own
            .iter()
            .find(|(list, _)| list.is_empty())
            .map(|(_, p)| p.as_str())
    }
}

/// Go's filepath.Clean for '/'-separated paths.
pub(crate) fn clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !abs {
                    parts.push("..");
                }
            }
            c => parts.push(c),
        }
    }
    let joined = parts.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

/// runc's utils.CleanPath: clean, and make a relative path unable to escape upwards.
pub(crate) fn clean_path(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let c = clean(p);
    if c.starts_with('/') {
        return c;
    }
    let rooted = clean(&format!("/{c}"));
    let rel = rooted.trim_start_matches('/');
    if rel.is_empty() {
        ".".to_string()
    } else {
        rel.to_string()
    }
}

/// `cgroup` expressed relative to the mount's `root` (for mounts of a sub-tree, e.g. inside a container).
pub(crate) fn relative_to_root<'a>(cgroup: &'a str, root: &str) -> &'a str {
    if root == "/" || root.is_empty() {
        return cgroup.trim_start_matches('/');
    }
    match cgroup.strip_prefix(root) {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => rest.trim_start_matches('/'),
        _ => cgroup.trim_start_matches('/'),
    }
}

/// Join `inner` (already cleaned; "." = the base itself) to `base`.
pub(crate) fn join_inner(base: &Path, inner: &str) -> PathBuf {
    let rel = inner.trim_start_matches('/');
    if rel.is_empty() || rel == "." {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}
