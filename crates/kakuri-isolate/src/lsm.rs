//! AppArmor profiles and SELinux process labels (`process.apparmorProfile`,
//! `process.selinuxLabel`).
//!
//! On a host with the LSM, the label is set for the next execve by writing
//! `/proc/<pid>/attr/...` through a verified procfs handle (see [`crate::procfs`]), never
//! through the container's /proc by path. On a host without it, kakuri does what runc does:
//! a requested profile or label is an error (runc 1.1: "unable to apply apparmor profile" from
//! the init, "selinux label is specified in config, but selinux is disabled or not supported"
//! from validation); here both are reported before anything is started, and logged.

use std::os::fd::AsFd;

use kakuri_spec::os_error;

use crate::procfs::ProcRoot;
use crate::sys;

/// `SELINUX_MAGIC` of `<linux/magic.h>`.
const SELINUX_MAGIC: i64 = 0xf97c_ff8c;

/// Whether AppArmor is enabled on this host (the module says so and securityfs shows it).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.starts_with('Y'))
        && std::path::Path::new("/sys/kernel/security/apparmor").is_dir()
}

/// Whether SELinux is enabled on this host (selinuxfs is mounted at /sys/fs/selinux).
pub fn selinux_enabled() -> bool {
    std::fs::File::open("/sys/fs/selinux")
        .ok()
        .and_then(|f| sys::fs_magic(f.as_fd()).ok())
        == Some(SELINUX_MAGIC)
}

/// Refuse (as runc does) a profile or label this host cannot apply; logged as well, since a
/// client may only show the exit code.
pub fn check_available(apparmor: Option<&str>, selinux: Option<&str>) -> Result<(), String> {
    if let Some(p) = apparmor.filter(|p| !p.is_empty()) {
        if !apparmor_enabled() {
            let e = format!(
                "unable to apply apparmor profile: apparmor is not enabled on this host (process.apparmorProfile {p:?})"
            );
            log::debug!("{e}");
            return Err(e);
        }
    }
    if let Some(l) = selinux.filter(|l| !l.is_empty()) {
        if !selinux_enabled() {
            let e = format!(
                "selinux label is specified in config, but selinux is disabled or not supported (process.selinuxLabel {l:?})"
            );
            log::debug!("{e}");
            return Err(e);
        }
    }
    Ok(())
}

/// In the container process, just before its credentials change: set the AppArmor profile and
/// SELinux label that the kernel applies at the next execve.
pub fn apply_exec_labels(apparmor: Option<&str>, selinux: Option<&str>) -> Result<(), String> {
    let apparmor = apparmor.filter(|p| !p.is_empty());
    let selinux = selinux.filter(|l| !l.is_empty());
    if apparmor.is_none() && selinux.is_none() {
        return Ok(());
    }
    // A private procfs of our own pid namespace, so our pid there is getpid().
    let proc = ProcRoot::open().map_err(|e| format!("set LSM labels: {e}"))?;
    let pid = std::process::id();
    if let Some(p) = apparmor {
        // The AppArmor-specific directory first (stacked LSMs), then the shared file.
        let value = format!("exec {p}");
        let r = proc
            .write(&format!("{pid}/attr/apparmor/exec"), value.as_bytes())
            .or_else(|_| proc.write(&format!("{pid}/attr/exec"), value.as_bytes()));
        r.map_err(|e| {
            format!(
                "unable to apply apparmor profile: apparmor failed to apply profile {p:?}: {}",
                os_error(&e)
            )
        })?;
    }
    if let Some(l) = selinux {
        proc.write(&format!("{pid}/attr/exec"), l.as_bytes())
            .map_err(|e| format!("set SELinux exec label {l:?}: {}", os_error(&e)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_lsm_is_an_error_naming_the_field() {
        if apparmor_enabled() || selinux_enabled() {
            eprintln!("skipped: this host has AppArmor or SELinux");
            return;
        }
        assert!(check_available(None, Some("")).is_ok());
        let e = check_available(Some("kakuri-x"), None).unwrap_err();
        assert!(e.contains("process.apparmorProfile"), "{e}");
        let e = check_available(None, Some("system_u:system_r:container_t:s0")).unwrap_err();
        assert!(e.starts_with("selinux label is specified in config"), "{e}");
    }
}
