//! Idmapped bind mounts (`mounts[i].options` `idmap`/`ridmap`, `mounts[i].uidMappings` and
//! `gidMappings`, runtime-spec 1.2).
//!
//! The source of such a mount is opened by the runtime before the clone as a detached copy
//! (`open_tree(OPEN_TREE_CLONE)`, with `AT_RECURSIVE` for an `rbind`, as for every bind source
//! of a container in a user namespace) and given the id mapping of a user namespace with
//! `mount_setattr(MOUNT_ATTR_IDMAP)` (`AT_RECURSIVE` for `ridmap`: every mount of the copy,
//! else only its top). The init then only attaches it with `move_mount`. Which user namespace:
//!
//! - the mount's mappings are the container's (or it gives none and the container has a new
//!   user namespace): the container's own, once the runtime has written its id maps and before
//!   the init goes on. No extra process;
//! - it gives none and the container joins a user namespace by path: that one;
//! - other mappings: a user namespace made for them by a short-lived child of the runtime
//!   (cloned with `CLONE_NEWUSER`, its maps written, its namespace opened, then killed and
//!   reaped; the mount keeps the namespace alive). One per distinct mapping per `create`.
//!
//! Without a container user namespace mappings are required (runtime-spec: an error MUST be
//! returned otherwise).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_spec::oci::{self, LinuxIdMapping};
use kakuri_spec::os_error;

use crate::sys;
use crate::MountPlan;

type R<T> = Result<T, String>;

/// The id mapping of one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapPlan {
    /// `ridmap`: every mount of an `rbind` is idmapped, not only the top one.
    pub recursive: bool,
    pub userns: IdmapUserns,
}

/// Which user namespace gives a mount its id mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdmapUserns {
    /// One made for the mount with these uid and gid mappings.
    Maps(Vec<LinuxIdMapping>, Vec<LinuxIdMapping>),
    /// The container's new user namespace.
    Container,
    /// The user namespace the container joins by path.
    Path(PathBuf),
}

/// The container's user namespace, as far as idmapped mounts care.
pub enum ContainerUserns<'a> {
    None,
    New {
        uid: &'a [LinuxIdMapping],
        gid: &'a [LinuxIdMapping],
    },
    Joined(&'a Path),
}

/// Check one list of mappings: not empty, no empty or overflowing range, no overlap (the
/// kernel refuses all of these when the map is written, with only `EINVAL`), at most 340 lines.
pub fn check_maps(field: &str, maps: &[LinuxIdMapping]) -> R<()> {
    if maps.is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if maps.len() > 340 {
        return Err(format!(
            "{field}: {} ranges, the kernel takes at most 340",
            maps.len()
        ));
    }
    let end = |start: u32, size: u32| u64::from(start) + u64::from(size);
    for (j, m) in maps.iter().enumerate() {
        if m.size() == 0 {
            return Err(format!("{field}[{j}].size: must be at least 1"));
        }
        for (what, start) in [("containerID", m.container_id()), ("hostID", m.host_id())] {
            if end(start, m.size()) > 1 << 32 {
                return Err(format!(
                    "{field}[{j}]: {what} {start} + size {} goes past the last id 4294967295",
                    m.size()
                ));
            }
        }
        for (k, o) in maps.iter().enumerate().take(j) {
            for (what, a, b) in [
                ("containerID", m.container_id(), o.container_id()),
                ("hostID", m.host_id(), o.host_id()),
            ] {
                if u64::from(a) < end(b, o.size()) && u64::from(b) < end(a, m.size()) {
                    return Err(format!("{field}[{j}]: {what} range overlaps {field}[{k}]"));
                }
            }
        }
    }
    Ok(())
}

/// The id mapping asked for mount `i`, checked on its own (see [`resolve`] for what depends on
/// the container's user namespace). Mappings without `idmap`/`ridmap` idmap the mount too, as
/// with runc.
pub fn parse(i: usize, m: &oci::Mount, options: &crate::MountOptions) -> R<Option<IdmapPlan>> {
    let uid = m.uid_mappings().as_ref();
    let gid = m.gid_mappings().as_ref();
    if !options.idmap && uid.is_none() && gid.is_none() {
        return Ok(None);
    }
    if !options.is_bind() {
        return Err(format!(
            "mounts[{i}].options: idmapped mounts (\"idmap\", \"ridmap\", uidMappings, gidMappings) are only supported for bind mounts"
        ));
    }
    let userns = match (uid, gid) {
        (None, None) => IdmapUserns::Container,
        (Some(_), None) => {
            return Err(format!(
                "mounts[{i}].gidMappings: required together with mounts[{i}].uidMappings"
            ))
        }
        (None, Some(_)) => {
            return Err(format!(
                "mounts[{i}].uidMappings: required together with mounts[{i}].gidMappings"
            ))
        }
        (Some(u), Some(g)) => {
            check_maps(&format!("mounts[{i}].uidMappings"), u)?;
            check_maps(&format!("mounts[{i}].gidMappings"), g)?;
            IdmapUserns::Maps(u.clone(), g.clone())
        }
    };
    Ok(Some(IdmapPlan {
        recursive: options.ridmap,
        userns,
    }))
}

/// Settle which user namespace idmaps each mount, given the container's: a mount without
/// mappings takes the container's (an error without one), and one whose mappings are the
/// container's uses that namespace instead of a new one.
pub fn resolve(mounts: &mut [MountPlan], ctr: &ContainerUserns) -> R<()> {
    for (i, m) in mounts.iter_mut().enumerate() {
        let Some(idmap) = m.idmap.as_mut() else {
            continue;
        };
        match (&idmap.userns, ctr) {
            (IdmapUserns::Container, ContainerUserns::None) => {
                return Err(format!(
                    "mounts[{i}].uidMappings: an idmapped mount needs uidMappings and gidMappings when the container has no user namespace"
                ))
            }
            (IdmapUserns::Container, ContainerUserns::Joined(p)) => {
                idmap.userns = IdmapUserns::Path(p.to_path_buf())
            }
            (IdmapUserns::Maps(u, g), ContainerUserns::New { uid, gid })
                if u.as_slice() == *uid && g.as_slice() == *gid =>
            {
                idmap.userns = IdmapUserns::Container
            }
            _ => {}
        }
    }
    Ok(())
}

fn setattr_err(i: usize, m: &MountPlan, e: &std::io::Error) -> String {
    let hint = if e.raw_os_error() == Some(libc::EINVAL) {
        " (the filesystem of the source does not support idmapped mounts on this kernel?)"
    } else {
        ""
    };
    format!(
        "mounts[{i}]: idmapped mount of {:?} on {:?}: mount_setattr(MOUNT_ATTR_IDMAP): {}{hint}",
        m.source.as_deref().unwrap_or(Path::new("")),
        m.destination,
        os_error(e)
    )
}

fn tree_of<'a>(trees: &'a [(usize, OwnedFd)], i: usize) -> R<BorrowedFd<'a>> {
    trees
        .iter()
        .find(|(j, _)| *j == i)
        .map(|(_, fd)| fd.as_fd())
        .ok_or_else(|| format!("mounts[{i}]: idmapped mount source was not opened"))
}

/// Before the clone: idmap the mounts whose user namespace is not the container's new one.
pub fn apply_before_clone(mounts: &[MountPlan], trees: &[(usize, OwnedFd)]) -> R<()> {
    let mut made: Vec<(&IdmapUserns, OwnedFd)> = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        let Some(idmap) = &m.idmap else { continue };
        let tree = tree_of(trees, i)?;
        let userns = match &idmap.userns {
            IdmapUserns::Container => continue,
            IdmapUserns::Path(p) => std::fs::File::open(p)
                .map(OwnedFd::from)
                .map_err(|e| format!("mounts[{i}]: open user namespace {p:?}: {}", os_error(&e)))?,
            IdmapUserns::Maps(u, g) => match made.iter().find(|(k, _)| *k == &idmap.userns) {
                Some((_, fd)) => fd
                    .try_clone()
                    .map_err(|e| format!("mounts[{i}]: {}", os_error(&e)))?,
                None => {
                    let fd = userns_with_maps(u, g).map_err(|e| {
                        format!("mounts[{i}]: user namespace for the idmapped mount: {e}")
                    })?;
                    let copy = fd
                        .try_clone()
                        .map_err(|e| format!("mounts[{i}]: {}", os_error(&e)))?;
                    made.push((&idmap.userns, fd));
                    copy
                }
            },
        };
        sys::mount_setattr_idmap(tree, idmap.recursive, userns.as_fd())
            .map_err(|e| setattr_err(i, m, &e))?;
    }
    Ok(())
}

/// After the clone, once the id maps of the container's new user namespace are written and
/// before the init goes on: idmap the mounts that take that namespace.
pub fn apply_container(mounts: &[MountPlan], trees: &[(usize, OwnedFd)], pid: i32) -> R<()> {
    let mut userns: Option<OwnedFd> = None;
    for (i, m) in mounts.iter().enumerate() {
        let Some(idmap) = &m.idmap else { continue };
        if idmap.userns != IdmapUserns::Container {
            continue;
        }
        let tree = tree_of(trees, i)?;
        if userns.is_none() {
            let p = format!("/proc/{pid}/ns/user");
            userns = Some(
                std::fs::File::open(&p)
                    .map(OwnedFd::from)
                    .map_err(|e| format!("mounts[{i}]: open {p}: {}", os_error(&e)))?,
            );
        }
        if let Some(ns) = &userns {
            sys::mount_setattr_idmap(tree, idmap.recursive, ns.as_fd())
                .map_err(|e| setattr_err(i, m, &e))?;
        }
    }
    Ok(())
}

/// A user namespace with exactly these mappings: a child cloned into a new user namespace
/// waits (it does nothing else) while the runtime writes its maps and opens its namespace, and
/// is then killed and reaped. The descriptor keeps the namespace.
pub fn userns_with_maps(uid: &[LinuxIdMapping], gid: &[LinuxIdMapping]) -> R<OwnedFd> {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: kakuri is single-threaded while it creates a container (the contract of
    // `crate::spawn`, which runs after this in the same process).
    let forked = unsafe { sys::fork_clone(libc::CLONE_NEWUSER) }
        .map_err(|e| format!("clone(CLONE_NEWUSER): {}", os_error(&e)))?;
    let pid = match forked {
        sys::Forked::Child => {
            // Die with the runtime (and if it is already gone, now).
            let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong);
            if nix::unistd::getppid().as_raw() != parent {
                sys::exit_now(0);
            }
            loop {
                // SAFETY: pause(2) only waits for a signal; the parent kills this process.
                unsafe { libc::pause() };
            }
        }
        sys::Forked::Parent(pid) => pid,
    };
    let fmt = |m: &[LinuxIdMapping]| {
        m.iter()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    let r = (|| {
        for (file, maps) in [("uid_map", uid), ("gid_map", gid)] {
            let p = format!("/proc/{pid}/{file}");
            std::fs::write(&p, fmt(maps)).map_err(|e| format!("write {p}: {}", os_error(&e)))?;
        }
        let p = format!("/proc/{pid}/ns/user");
        std::fs::File::open(&p)
            .map(OwnedFd::from)
            .map_err(|e| format!("open {p}: {}", os_error(&e)))
    })();
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    r
}

/// Whether this kernel has `mount_setattr(2)` (Linux 5.12), which idmapped mounts need; for
/// `features`. Whether a given filesystem supports them is only known when it is tried.
pub fn supported() -> bool {
    // An invalid descriptor and no attributes: EBADF where the call exists, ENOSYS where not.
    // SAFETY: a NULL attribute pointer with size 0 and an empty path; the kernel rejects the
    // descriptor -1 before reading anything.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    !(r == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        oci::LinuxIdMappingBuilder::default()
            .container_id(c)
            .host_id(h)
            .size(s)
            .build()
            .unwrap()
    }

    #[test]
    fn maps_checked() {
        assert!(check_maps("f", &[m(0, 1000, 10), m(10, 2000, 5)]).is_ok());
        assert!(check_maps("f", &[])
            .unwrap_err()
            .contains("f: must not be empty"));
        assert!(check_maps("f", &[m(0, 0, 0)])
            .unwrap_err()
            .contains("f[0].size"));
        assert!(check_maps("f", &[m(0, 1000, 10), m(5, 3000, 10)])
            .unwrap_err()
            .contains("f[1]: containerID range overlaps f[0]"));
        assert!(check_maps("f", &[m(0, 1000, 10), m(20, 1009, 1)])
            .unwrap_err()
            .contains("f[1]: hostID range overlaps f[0]"));
        assert!(check_maps("f", &[m(u32::MAX, 0, 2)])
            .unwrap_err()
            .contains("goes past"));
    }
}
