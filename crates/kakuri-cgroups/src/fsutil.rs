//! Small helpers to read and write cgroup control files with errors that name the spec field and the file.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::CgroupError;

#[cfg(test)]
thread_local! {
    /// Every successful write of this thread, in order (unit tests check what was written and in which
    /// order; a fake cgroup tree keeps only the last value of a file).
    pub(crate) static WRITES: std::cell::RefCell<Vec<(std::path::PathBuf, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Write `value` to `dir/file` in one write(2) (cgroup files take one value per write).
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    write_once(path, value)?;
    #[cfg(test)]
    WRITES.with(|w| w.borrow_mut().push((path.to_path_buf(), value.to_string())));
    Ok(())
}

fn write_once(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// Write `value` to `dir/file`; the error names `what` (spec field or operation) and the file.
pub(crate) fn write(dir: &Path, file: &str, value: &str, what: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    log::debug!("cgroup write {} = {:?}", path.display(), value);
    write_raw(&path, value).map_err(|e| CgroupError::file(what, "write", path, e))
}

/// Read `dir/file` as a string.
pub(crate) fn read(dir: &Path, file: &str, what: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    fs::read_to_string(&path).map_err(|e| CgroupError::file(what, "read", path, e))
}

/// Read `dir/file`, `None` if it does not exist.
pub(crate) fn read_opt(dir: &Path, file: &str, what: &str) -> Result<Option<String>, CgroupError> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CgroupError::file(what, "read", path, e)),
    }
}

/// Parse a single unsigned number ("max" reads as u64::MAX).
pub(crate) fn parse_u64(path: &Path, s: &str) -> Result<u64, CgroupError> {
    let t = s.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse::<u64>().map_err(|e| CgroupError::Parse {
        path: path.to_path_buf(),
        content: t.to_string(),
        reason: e.to_string(),
    })
}

/// Read `dir/file` as one unsigned number.
/// `linux.resources.memory.checkBeforeUpdate`: refuse a memory `limit` below the current usage
/// read from `usage_file` (`memory.usage_in_bytes` on v1, `memory.current` on v2).
pub(crate) fn check_limit_above_usage(
    dir: &Path,
    usage_file: &str,
    limit: i64,
) -> Result<(), CgroupError> {
    let usage = read_u64(dir, usage_file, "linux.resources.memory.checkBeforeUpdate")?;
    if usage >= limit as u64 {
        return Err(CgroupError::invalid(
            "linux.resources.memory.limit",
            format!("rejecting memory limit {limit} below usage {usage}"),
        ));
    }
    Ok(())
}

pub(crate) fn read_u64(dir: &Path, file: &str, what: &str) -> Result<u64, CgroupError> {
    let s = read(dir, file, what)?;
    parse_u64(&dir.join(file), &s)
}

/// Create `path` and any missing parents below `stop` (the hierarchy's mount point, which must exist).
/// Every directory created is appended to `created`, outermost first. Returns whether `path` itself was
/// created (false = it existed).
pub(crate) fn mkdir_p(path: &Path, created: &mut Vec<PathBuf>) -> io::Result<bool> {
    match fs::create_dir(path) {
        Ok(()) => {
            created.push(path.to_path_buf());
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let parent = path.parent().ok_or(e)?;
            mkdir_p(parent, created)?;
            match fs::create_dir(path) {
                Ok(()) => {
                    created.push(path.to_path_buf());
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// Read the pids in `dir/cgroup.procs` and in every descendant cgroup.
pub(crate) fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<(), CgroupError> {
    let procs = dir.join("cgroup.procs");
    let text = match fs::read_to_string(&procs) {
        Ok(t) => t,
        Err(e) => return Err(CgroupError::file("list processes", "read", procs, e)),
    };
    for line in text.lines() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let pid = l.parse::<i32>().map_err(|e| CgroupError::Parse {
            path: procs.clone(),
            content: l.to_string(),
            reason: e.to_string(),
        })?;
        out.push(pid);
    }
    let entries = fs::read_dir(dir)
        .map_err(|e| CgroupError::file("list processes", "read", dir.to_path_buf(), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| CgroupError::file("list processes", "read", dir.to_path_buf(), e))?;
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir {
            match collect_pids(&entry.path(), out) {
                Ok(()) => {}
                // A child cgroup removed while we walk is not an error.
                Err(CgroupError::File { source, .. })
                    if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// rmdir `dir` and every cgroup below it, deepest first. Missing directories are fine.
pub(crate) fn remove_tree(dir: &Path) -> io::Result<()> {
    // Usually there is nothing below: one rmdir, without listing the directory (which makes
    // the kernel generate an entry for each of its control files). A cgroup with children
    // (or processes) refuses with EBUSY; then the walk.
    match fs::remove_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(_) => {}
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            remove_tree(&entry.path())?;
        }
    }
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
