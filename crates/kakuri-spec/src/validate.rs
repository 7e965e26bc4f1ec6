//! Checks on a parsed config that the JSON schema alone does not make.

use std::collections::HashSet;
use std::path::Path;

use crate::oci::{LinuxNamespaceType, Spec};

/// A config that parses but cannot be run; the message names the spec field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {msg}")]
pub struct ValidationError {
    pub field: String,
    pub msg: String,
}

fn err(field: impl Into<String>, msg: impl Into<String>) -> ValidationError {
    ValidationError {
        field: field.into(),
        msg: msg.into(),
    }
}

/// Newest minor version of runtime-spec 1.x this runtime accepts.
const MAX_MINOR: u64 = 3;

fn check_version(v: &str) -> Result<(), ValidationError> {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    let nums: Option<Vec<u64>> = if parts.len() == 3 {
        parts.iter().map(|p| p.parse().ok()).collect()
    } else {
        None
    };
    let Some(nums) = nums else {
        return Err(err(
            "ociVersion",
            format!("{v:?} is not a SemVer version (MAJOR.MINOR.PATCH)"),
        ));
    };
    if nums[0] != 1 || nums[1] > MAX_MINOR {
        return Err(err(
            "ociVersion",
            format!("unsupported version {v:?}: kakuri supports 1.0.0 to 1.{MAX_MINOR}.x"),
        ));
    }
    Ok(())
}

fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

/// Validate a parsed config for the bundle directory `bundle`.
pub fn validate(spec: &Spec, _bundle: &Path) -> Result<(), ValidationError> {
    check_version(spec.version())?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| err("root", "is required"))?;
    if root.path().as_os_str().is_empty() {
        return Err(err("root.path", "is required"));
    }
    if let Some(p) = spec.process() {
        match p.args() {
            Some(a) if !a.is_empty() && !a[0].is_empty() => {}
            _ => return Err(err("process.args", "must name the program to run")),
        }
        if !p.cwd().is_absolute() {
            return Err(err(
                "process.cwd",
                format!("{:?} is not an absolute path", p.cwd()),
            ));
        }
        if let Some(rl) = p.rlimits() {
            let mut seen = HashSet::new();
            for (i, r) in rl.iter().enumerate() {
                if !seen.insert(format!("{:?}", r.typ())) {
                    return Err(err(
                        format!("process.rlimits[{i}].type"),
                        format!("duplicate rlimit {:?}", r.typ()),
                    ));
                }
                if r.soft() > r.hard() {
                    return Err(err(
                        format!("process.rlimits[{i}]"),
                        format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
                    ));
                }
            }
        }
        for (i, e) in p.env().iter().flatten().enumerate() {
            if !e.contains('=') {
                return Err(err(
                    format!("process.env[{i}]"),
                    format!("{e:?} is not of the form KEY=value"),
                ));
            }
        }
    }
    if let Some(h) = spec.hooks() {
        let kinds = [
            ("prestart", h.prestart()),
            ("createRuntime", h.create_runtime()),
            ("createContainer", h.create_container()),
            ("startContainer", h.start_container()),
            ("poststart", h.poststart()),
            ("poststop", h.poststop()),
        ];
        for (kind, hooks) in kinds {
            for (i, hook) in hooks.iter().flatten().enumerate() {
                // runtime-spec: "timeout ... MUST be greater than zero".
                if let Some(t) = hook.timeout().filter(|t| *t <= 0) {
                    return Err(err(
                        format!("hooks.{kind}[{i}].timeout"),
                        format!("{t} is not greater than zero"),
                    ));
                }
            }
        }
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination().as_os_str().is_empty() {
            return Err(err(format!("mounts[{i}].destination"), "is required"));
        }
    }
    let linux = spec.linux().as_ref();
    let mut kinds = HashSet::new();
    let mut has = |t: LinuxNamespaceType| -> bool {
        linux
            .and_then(|l| l.namespaces().as_ref())
            .is_some_and(|ns| ns.iter().any(|n| n.typ() == t))
    };
    if let Some(nss) = linux.and_then(|l| l.namespaces().as_ref()) {
        for (i, n) in nss.iter().enumerate() {
            if !kinds.insert(n.typ()) {
                return Err(err(
                    format!("linux.namespaces[{i}]"),
                    format!("namespace type {:?} listed twice", ns_name(n.typ())),
                ));
            }
            if let Some(path) = n.path() {
                if !path.is_absolute() {
                    return Err(err(
                        format!("linux.namespaces[{i}].path"),
                        format!("{path:?} is not an absolute path"),
                    ));
                }
            }
        }
    }
    if let Some(l) = linux {
        let has_maps = l.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || l.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if has_maps && !has(LinuxNamespaceType::User) {
            return Err(err(
                "linux.uidMappings",
                "id mappings need a user namespace in linux.namespaces",
            ));
        }
        if let Some(nss) = l.namespaces() {
            if let Some(u) = nss.iter().find(|n| n.typ() == LinuxNamespaceType::User) {
                if u.path().is_none() && !has_maps {
                    return Err(err(
                        "linux.uidMappings",
                        "a new user namespace needs linux.uidMappings and linux.gidMappings",
                    ));
                }
            }
        }
        // runtime-spec: "The values MUST be absolute paths in the container namespace."
        for (field, paths) in [
            ("linux.maskedPaths", l.masked_paths()),
            ("linux.readonlyPaths", l.readonly_paths()),
        ] {
            for (i, p) in paths.iter().flatten().enumerate() {
                if !p.starts_with('/') {
                    return Err(err(
                        format!("{field}[{i}]"),
                        format!("{p:?} is not an absolute path"),
                    ));
                }
            }
        }
        if let Some(sysctl) = l.sysctl() {
            for key in sysctl.keys() {
                check_sysctl(key, &mut has)?;
            }
        }
        if let Some(offs) = l.time_offsets() {
            if !offs.is_empty() && !has(LinuxNamespaceType::Time) {
                return Err(err(
                    "linux.timeOffsets",
                    "time offsets need a time namespace in linux.namespaces",
                ));
            }
        }
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(err(
            "hostname",
            "unable to set hostname without a private UTS namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return Err(err(
            "domainname",
            "unable to set domainname without a private UTS namespace",
        ));
    }
    Ok(())
}

/// The sysctls a container may set, as runc allows them: each only with its own namespace.
fn check_sysctl(
    key: &str,
    has: &mut impl FnMut(LinuxNamespaceType) -> bool,
) -> Result<(), ValidationError> {
    let field = || format!("linux.sysctl[{key:?}]");
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    const IPC2: [&str; 2] = ["kernel.shmmni", "kernel.shm_rmid_forced"];
    if IPC.contains(&key) || IPC2.contains(&key) || key.starts_with("fs.mqueue.") {
        if !has(LinuxNamespaceType::Ipc) {
            return Err(err(
                field(),
                "sysctl is in the IPC namespace, but the container has none of its own",
            ));
        }
        return Ok(());
    }
    if key.starts_with("net.") {
        if !has(LinuxNamespaceType::Network) {
            return Err(err(
                field(),
                "sysctl is in the network namespace, but the container has none of its own",
            ));
        }
        return Ok(());
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        if !has(LinuxNamespaceType::Uts) {
            return Err(err(
                field(),
                "sysctl is in the UTS namespace, but the container has none of its own",
            ));
        }
        // As runc: the hostname has its own field (which would overwrite or be overwritten by
        // the sysctl); the domain name's field came later, and the sysctl stays allowed.
        if key == "kernel.hostname" {
            return Err(err(
                field(),
                "sysctl is not allowed as it conflicts with the OCI \"hostname\" field",
            ));
        }
        return Ok(());
    }
    Err(err(
        field(),
        "sysctl is not in a separate kernel namespace and cannot be set for a container",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert!(check_version("1.0.2").is_ok());
        assert!(check_version("1.3.0").is_ok());
        assert!(check_version("1.2.0-rc.1").is_ok());
        assert!(check_version("1.0.2-dev").is_ok());
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("1.9.0").is_err());
        assert!(check_version("one").is_err());
        assert!(check_version("").is_err());
    }

    #[test]
    fn sysctl_needs_namespace() {
        let mut none = |_| false;
        let mut all = |_| true;
        assert!(check_sysctl("net.ipv4.ip_forward", &mut none).is_err());
        assert!(check_sysctl("net.ipv4.ip_forward", &mut all).is_ok());
        assert!(check_sysctl("kernel.msgmax", &mut all).is_ok());
        assert!(check_sysctl("vm.swappiness", &mut all).is_err());
        // runc: kernel.hostname conflicts with the hostname field; kernel.domainname is allowed.
        let e = check_sysctl("kernel.hostname", &mut all)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("conflicts with the OCI \"hostname\" field"),
            "{e}"
        );
        assert!(check_sysctl("kernel.domainname", &mut all).is_ok());
    }
}
