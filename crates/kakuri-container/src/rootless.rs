//! Is kakuri rootless? The answers runc 1.1 gives (`shouldUseRootlessCgroupManager`,
//! `shouldHonorXDGRuntimeDir`, `userns.RunningInUserNS`), computed lazily so that a root caller
//! in the initial user namespace reads no file unless a cgroup operation was refused.

use std::cell::OnceCell;
use std::path::PathBuf;

/// The global `--rootless` option.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootlessMode {
    /// `auto` (the default): rootless when the effective uid is not 0, or when running in a
    /// user namespace (which the cgroupfs driver cannot know to own the cgroups of).
    #[default]
    Auto,
    True,
    False,
}

impl RootlessMode {
    /// Parse runc's values: `true`, `false`, `auto` (Go's strconv.ParseBool spellings too).
    pub fn parse(s: &str) -> Result<RootlessMode, String> {
        match s {
            "auto" => Ok(RootlessMode::Auto),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(RootlessMode::True),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(RootlessMode::False),
            _ => Err(format!(
                "invalid value {s:?} for option --rootless: want true, false or auto"
            )),
        }
    }
}

/// True if this process runs in a user namespace other than the initial one: its uid map is
/// not the single full range `0 0 4294967295`. A missing file (no user namespaces in the
/// kernel) means the initial one.
pub fn in_user_namespace() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(text) => !is_initial_map(&text),
        Err(_) => false,
    }
}

fn is_initial_map(text: &str) -> bool {
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .filter(|f: &Vec<&str>| !f.is_empty())
        .collect();
    lines.len() == 1 && lines[0] == ["0", "0", "4294967295"]
}

fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The cached decision "use the rootless cgroup manager" (permission errors on cgroups that
/// were not asked for by path are ignored, device rules are not written).
#[derive(Clone, Debug, Default)]
pub struct Rootless {
    pub mode: RootlessMode,
    cgroups: OnceCell<bool>,
}

impl Rootless {
    pub fn new(mode: RootlessMode) -> Rootless {
        Rootless {
            mode,
            cgroups: OnceCell::new(),
        }
    }

    /// runc's `shouldUseRootlessCgroupManager` for the cgroupfs driver. Reads
    /// `/proc/self/uid_map` only for uid 0 in `auto` mode, and only the first time.
    pub fn cgroups(&self) -> bool {
        *self.cgroups.get_or_init(|| match self.mode {
            RootlessMode::True => true,
            RootlessMode::False => false,
            RootlessMode::Auto => euid() != 0 || in_user_namespace(),
        })
    }
}

/// runc's default `--root` choice: `$XDG_RUNTIME_DIR/<name>` when that variable is set and the
/// caller is not uid 0, or is uid 0 in a user namespace with `USER` unset or not `root`
/// (rootless podman's case); otherwise `None` (the caller uses `/run/<name>`).
pub fn xdg_root(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty())?;
    let honor = euid() != 0
        || (std::env::var_os("USER").is_none_or(|u| u != "root") && in_user_namespace());
    honor.then(|| PathBuf::from(dir).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_map() {
        assert!(is_initial_map("         0          0 4294967295\n"));
        assert!(!is_initial_map("         0       1000          1\n"));
        assert!(!is_initial_map(
            "0 0 4294967295\n0 0 1\n" // never written by a kernel, but not the initial map
        ));
        assert!(!is_initial_map(""));
    }

    #[test]
    fn parse_mode() {
        assert_eq!(RootlessMode::parse("auto"), Ok(RootlessMode::Auto));
        assert_eq!(RootlessMode::parse("true"), Ok(RootlessMode::True));
        assert_eq!(RootlessMode::parse("0"), Ok(RootlessMode::False));
        assert!(RootlessMode::parse("maybe")
            .unwrap_err()
            .contains("--rootless"));
    }

    #[test]
    fn explicit_modes_read_nothing() {
        assert!(Rootless::new(RootlessMode::True).cgroups());
        assert!(!Rootless::new(RootlessMode::False).cgroups());
    }
}
