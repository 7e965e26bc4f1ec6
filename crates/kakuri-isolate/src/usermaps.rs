//! Writing the id maps of a new user namespace from the runtime, as runc does: the maps are
//! written directly (root, or an unprivileged caller mapping only its own id); when the kernel
//! refuses (EPERM), `newuidmap`/`newgidmap` (shadow's setuid helpers, with the ranges of
//! `/etc/subuid` and `/etc/subgid`) write them. An unprivileged caller's own single gid
//! mapping needs `setgroups` denied first: the kernel requires it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kakuri_spec::oci::LinuxIdMapping;
use kakuri_spec::os_error;

/// Which map: names of the /proc file, the helper, the subordinate-id file and the field.
#[derive(Clone, Copy)]
pub(crate) struct Kind {
    file: &'static str,
    helper: &'static str,
    subid: &'static str,
    field: &'static str,
}

pub(crate) const UID: Kind = Kind {
    file: "uid_map",
    helper: "newuidmap",
    subid: "/etc/subuid",
    field: "linux.uidMappings",
};
pub(crate) const GID: Kind = Kind {
    file: "gid_map",
    helper: "newgidmap",
    subid: "/etc/subgid",
    field: "linux.gidMappings",
};

fn text(maps: &[LinuxIdMapping]) -> String {
    maps.iter()
        .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
        .collect()
}

/// Write `maps` into `/proc/<pid>/<kind.file>`.
pub(crate) fn write(pid: i32, kind: Kind, maps: &[LinuxIdMapping]) -> Result<(), String> {
    if maps.is_empty() {
        return Ok(());
    }
    let p = format!("/proc/{pid}/{}", kind.file);
    let direct = || std::fs::write(&p, text(maps));
    let e = match direct() {
        Ok(()) => return Ok(()),
        Err(e) => e,
    };
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(format!("write {p}: {}", os_error(&e)));
    }
    // SAFETY: getegid cannot fail.
    let own_gid = unsafe { libc::getegid() };
    if kind.file == "gid_map"
        && maps.len() == 1
        && maps[0].size() == 1
        && maps[0].host_id() == own_gid
    {
        let sg = format!("/proc/{pid}/setgroups");
        std::fs::write(&sg, "deny").map_err(|e| format!("write {sg}: {}", os_error(&e)))?;
        return direct().map_err(|e| format!("write {p}: {}", os_error(&e)));
    }
    helper(pid, kind, maps, &p, &e)
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Run newuidmap/newgidmap; its failure is reported with what /etc/subuid (subgid) offers.
fn helper(
    pid: i32,
    kind: Kind,
    maps: &[LinuxIdMapping],
    proc_file: &str,
    direct: &std::io::Error,
) -> Result<(), String> {
    let ranges = maps
        .iter()
        .map(|m| {
            format!(
                "{}-{}",
                m.host_id(),
                u64::from(m.host_id()) + u64::from(m.size()) - 1
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let Some(bin) = find_in_path(kind.helper) else {
        return Err(format!(
            "{}: write {proc_file}: {} and {} is not installed (package uidmap): host ids {ranges} need it",
            kind.field,
            os_error(direct),
            kind.helper
        ));
    };
    let mut cmd = Command::new(&bin);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.arg(m.container_id().to_string())
            .arg(m.host_id().to_string())
            .arg(m.size().to_string());
    }
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .env_clear()
        .output()
        .map_err(|e| format!("{}: run {}: {}", kind.field, bin.display(), os_error(&e)))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr).trim().to_string();
    Err(format!(
        "{}: {} {pid} failed ({}): {said}; {}",
        kind.field,
        bin.display(),
        out.status,
        subid_hint(kind, &ranges)
    ))
}

/// What the subordinate-id file says about the caller.
fn subid_hint(kind: Kind, ranges: &str) -> String {
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let name = user_name(uid);
    let content = std::fs::read_to_string(kind.subid);
    let mine: Vec<String> = match &content {
        Ok(c) => c
            .lines()
            .filter_map(|l| {
                let mut f = l.split(':');
                let who = f.next()?;
                (who == uid.to_string() || Some(who) == name.as_deref())
                    .then(|| l.trim().to_string())
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    let who = name.unwrap_or_else(|| uid.to_string());
    match content {
        Err(e) => format!(
            "{} cannot be read ({}): the host ids {ranges} need a range there for {who}",
            kind.subid,
            os_error(&e)
        ),
        Ok(_) if mine.is_empty() => format!(
            "{} has no range for {who}: the host ids {ranges} need one (usermod --add-sub{}ids)",
            kind.subid,
            if kind.file == "uid_map" { "u" } else { "g" }
        ),
        Ok(_) => format!(
            "host ids {ranges} must lie in {who}'s ranges of {}: {}",
            kind.subid,
            mine.join(" ")
        ),
    }
}

fn user_name(uid: u32) -> Option<String> {
    let passwd = std::fs::read_to_string(Path::new("/etc/passwd")).ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2] == uid.to_string()).then(|| f[0].to_string())
    })
}
