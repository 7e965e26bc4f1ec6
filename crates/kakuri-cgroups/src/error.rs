//! Error type of the cgroup manager. Every message names the resource (spec field) or operation and the
//! cgroup file involved.

use std::io;
use std::path::PathBuf;

/// Errors returned by [`crate::Manager`].
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A D-Bus call to systemd (systemd cgroup driver) failed.
    #[error("systemd: {op} unit {unit:?}: {reason}")]
    Systemd {
        op: String,
        unit: String,
        reason: String,
    },

    /// No cgroup filesystem is mounted at all.
    #[error("no cgroup filesystem is mounted (checked {0})")]
    NoCgroupFs(PathBuf),

    /// A system file (/proc/self/mountinfo, /proc/self/cgroup) could not be read or parsed.
    #[error("{path}: {reason}")]
    System { path: PathBuf, reason: String },

    /// Reading or writing a cgroup file failed. `what` is the spec field (`linux.resources.memory.limit`) or
    /// the operation (`create cgroup`), `op` is `write`, `read`, `mkdir`, `rmdir`, ...
    #[error("{what}: {op} {path}: {}", errno_text(.source))]
    File {
        what: String,
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The controller a resource needs is not available.
    #[error("{what}: the {controller} controller {detail}")]
    ControllerMissing {
        what: String,
        controller: String,
        detail: String,
    },

    /// A value in linux.resources is invalid or cannot be expressed on this host.
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },

    /// The cgroup exists and already has processes in it.
    #[error("cgroup {0} already holds processes: it belongs to another container")]
    Occupied(PathBuf),

    /// A file of the cgroup has unexpected content.
    #[error("{path}: cannot parse {content:?}: {reason}")]
    Parse {
        path: PathBuf,
        content: String,
        reason: String,
    },

    /// Freezing the cgroup did not finish in time.
    #[error("freeze {path}: the cgroup did not reach the frozen state within {millis} ms")]
    FreezeTimeout { path: PathBuf, millis: u64 },

    /// Loading or attaching the eBPF device program failed.
    #[error("linux.resources.devices: {op} the eBPF device program for {path}: {}{log}", errno_text(.source))]
    Bpf {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
        log: String,
    },
}

/// The text of an OS error as Go prints it (`device or resource busy`), so kakuri's messages read like
/// runc's; other errors print as they are.
pub(crate) fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => {
            // std formats OS errors as "<strerror> (os error N)".
            let full = io::Error::from_raw_os_error(code).to_string();
            let text = full
                .strip_suffix(&format!(" (os error {code})"))
                .unwrap_or(&full);
            let mut chars = text.chars();
            match chars.next() {
                Some(first) => first.to_lowercase().chain(chars).collect(),
                None => format!("errno {code}"),
            }
        }
        None => e.to_string(),
    }
}

impl CgroupError {
    pub(crate) fn file(
        what: impl Into<String>,
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    ) -> Self {
        CgroupError::File {
            what: what.into(),
            op,
            path,
            source,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Self {
        CgroupError::Invalid {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A permission error in runc's loose sense (EPERM, EACCES, EROFS): what the rootless
    /// cgroup manager may ignore.
    pub fn is_permission(&self) -> bool {
        matches!(
            self.raw_os_error(),
            Some(libc::EPERM | libc::EACCES | libc::EROFS)
        )
    }

    /// The error is about `linux.resources.devices` (rules or the eBPF program), which the
    /// rootless cgroup manager ignores as runc does.
    pub fn is_devices(&self) -> bool {
        match self {
            CgroupError::Bpf { .. } => true,
            CgroupError::File { what, .. }
            | CgroupError::ControllerMissing { what, .. }
            | CgroupError::Invalid { what, .. } => what.starts_with("linux.resources.devices"),
            _ => false,
        }
    }

    /// The failed operation alone, as Go's os.PathError prints it (`mkdir <path>: permission
    /// denied`), without what it was for; other errors as they print.
    pub(crate) fn os_cause(&self) -> String {
        match self {
            CgroupError::File {
                op, path, source, ..
            } => format!("{op} {}: {}", path.display(), errno_text(source)),
            e => e.to_string(),
        }
    }

    /// The errno of the underlying I/O error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            CgroupError::File { source, .. } | CgroupError::Bpf { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}
