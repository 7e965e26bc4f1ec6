//! The container process's own settings: user and groups, capabilities, rlimits, umask, the
//! executable lookup, and the final `execve`. Shared by a container's init and by `exec`.

use std::ffi::CString;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kakuri_spec::{oci, os_error};

use crate::sys;

/// The five capability sets, as bit masks (bit N = capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

/// One `setrlimit` to make.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// Everything about the process to exec, resolved from the spec's `process` before forking.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: Option<CapSets>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub terminal: bool,
    pub oom_score_adj: Option<i32>,
}

fn cap_mask(set: &Option<oci::Capabilities>, field: &str) -> Result<u64, String> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        match caps::Capability::from_str(&name) {
            Ok(cap) => m |= cap.bitmask(),
            Err(_) => return Err(format!("{field}: unknown capability {name:?}")),
        }
    }
    Ok(m)
}

fn rlimit_resource(t: oci::PosixRlimitType) -> libc::__rlimit_resource_t {
    use oci::PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

impl ProcessPlan {
    /// Build the plan from a spec `process`; errors name the field.
    pub fn from_spec(p: &oci::Process) -> Result<ProcessPlan, String> {
        let caps = match p.capabilities() {
            None => None,
            Some(c) => Some(CapSets {
                bounding: cap_mask(c.bounding(), "process.capabilities.bounding")?,
                effective: cap_mask(c.effective(), "process.capabilities.effective")?,
                permitted: cap_mask(c.permitted(), "process.capabilities.permitted")?,
                inheritable: cap_mask(c.inheritable(), "process.capabilities.inheritable")?,
                ambient: cap_mask(c.ambient(), "process.capabilities.ambient")?,
            }),
        };
        let rlimits = p
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Rlimit {
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
            .collect();
        let u = p.user();
        Ok(ProcessPlan {
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
            umask: u.umask(),
            caps,
            rlimits,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            oom_score_adj: p.oom_score_adj(),
        })
    }

    /// The value of `PATH` in the process environment.
    fn path_var(&self) -> Option<&str> {
        self.env.iter().rev().find_map(|e| e.strip_prefix("PATH="))
    }

    /// Find the executable as Go's `exec.LookPath` does, with runc's error texts (clients match
    /// them to choose exit codes 126/127).
    pub fn resolve_executable(&self) -> Result<PathBuf, String> {
        let name = &self.args[0];
        if name.contains('/') {
            let p = Path::new(name);
            check_executable(p).map_err(|e| format!("exec: {name:?}: {}", os_error(&e)))?;
            return Ok(p.to_path_buf());
        }
        let path = self.path_var().unwrap_or("");
        let mut first_err: Option<io::Error> = None;
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let cand = Path::new(dir).join(name);
            match check_executable(&cand) {
                Ok(()) => return Ok(cand),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && first_err.is_none() => {
                    first_err = Some(e)
                }
                Err(_) => {}
            }
        }
        match first_err {
            Some(e) => Err(format!("exec: {name:?}: {}", os_error(&e))),
            None => Err(format!(
                "exec: {name:?}: executable file not found in $PATH"
            )),
        }
    }

    /// Apply rlimits (before privileges are dropped, since raising a hard limit needs them).
    pub fn apply_rlimits(&self) -> Result<(), String> {
        for r in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            // SAFETY: setrlimit reads a valid rlimit struct.
            if unsafe { libc::setrlimit(r.resource, &lim) } != 0 {
                return Err(format!(
                    "error setting rlimit type {}: {}",
                    r.resource,
                    io::Error::last_os_error()
                ));
            }
        }
        Ok(())
    }

    /// Switch to the process's user and groups and set its capability sets, in the order that
    /// keeps the needed privileges until the end: bounding set, then ids (with keep-caps), then the
    /// other sets.
    pub fn apply_credentials(&self, setgroups_allowed: bool) -> Result<(), String> {
        if let Some(c) = &self.caps {
            let last = last_cap();
            for i in 0..=last {
                if c.bounding & (1u64 << i) == 0 {
                    sys::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong)
                        .map_err(|e| format!("drop capability {i} from the bounding set: {e}"))?;
                }
            }
            sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|e| format!("keep caps: {e}"))?;
        }
        if setgroups_allowed {
            sys::setgroups(&self.additional_gids)
                .map_err(|e| format!("setgroups {:?}: {e}", self.additional_gids))?;
        }
        sys::setresgid(self.gid).map_err(|e| format!("setgid {}: {e}", self.gid))?;
        sys::setresuid(self.uid).map_err(|e| format!("setuid {}: {e}", self.uid))?;
        if let Some(c) = &self.caps {
            capset(c.effective, c.permitted, c.inheritable)
                .map_err(|e| format!("apply capabilities: {e}"))?;
            // SAFETY: integer-only prctl.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
            }
            for i in 0..=last_cap() {
                if c.ambient & (1u64 << i) != 0 {
                    // SAFETY: integer-only prctl.
                    let r = unsafe {
                        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, i, 0, 0)
                    };
                    if r != 0 {
                        // runc ignores ambient capabilities the kernel refuses (not in
                        // permitted and inheritable): only log.
                        log::debug!(
                            "could not raise ambient capability {i}: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
            }
            sys::prctl(libc::PR_SET_KEEPCAPS, 0).map_err(|e| format!("clear keep caps: {e}"))?;
        }
        Ok(())
    }

    /// The final step: exec the program with the process env. Returns only on error.
    pub fn exec(&self, path: &Path) -> String {
        let to_c = |s: &str| CString::new(s).unwrap_or_default();
        let argv: Vec<CString> = self.args.iter().map(|a| to_c(a)).collect();
        let envp: Vec<CString> = self.env.iter().map(|a| to_c(a)).collect();
        let p = to_c(&path.to_string_lossy());
        let e = sys::execve(&p, &argv, &envp);
        format!("exec {:?}: {e}", self.args[0])
    }
}

fn check_executable(p: &Path) -> io::Result<()> {
    let md = std::fs::metadata(p)?;
    if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// `capset(2)` with version 3 (64-bit) capability sets.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let hdr = Header {
        version: V3,
        pid: 0,
    };
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        Data {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        Data {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and two data structs laid out as the kernel's v3 ABI expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], path: &str) -> ProcessPlan {
        ProcessPlan {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![format!("PATH={path}")],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            umask: None,
            caps: None,
            rlimits: vec![],
            no_new_privileges: false,
            terminal: false,
            oom_score_adj: None,
        }
    }

    #[test]
    fn lookup_errors_use_runc_wording() {
        let e = plan(&["no-such-prog-kakuri"], "/usr/bin:/bin")
            .resolve_executable()
            .unwrap_err();
        assert_eq!(
            e,
            "exec: \"no-such-prog-kakuri\": executable file not found in $PATH"
        );
        let e = plan(&["/no/such/file"], "/bin")
            .resolve_executable()
            .unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let e = plan(&["/etc/hostname"], "/bin")
            .resolve_executable()
            .unwrap_err();
        assert!(e.contains("permission denied"), "{e}");
        assert_eq!(
            plan(&["sh"], "/nonexistent:/bin")
                .resolve_executable()
                .unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn capability_names_map_to_bits() {
        let mut set = oci::Capabilities::new();
        set.insert(oci::Capability::Chown);
        set.insert(oci::Capability::SysAdmin);
        let m = cap_mask(&Some(set), "x").unwrap();
        assert_eq!(m, (1 << 0) | (1 << 21));
    }
}
