//! The container's root filesystem: mounts, devices, the console, pivot_root, masked and
//! read-only paths.
//!
//! Every path inside the rootfs is opened through `openat2(RESOLVE_IN_ROOT)` from a descriptor of
//! the rootfs, and mounts land on `/proc/self/fd/N` of that verified descriptor: a symlink in the
//! rootfs (or one swapped in while we work) cannot send a mount to the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use kakuri_spec::os_error;

use crate::mountopts::{self, MountOptions};
use crate::procfs::ProcRoot;
use crate::sys;
use crate::{CgroupMountSource, DevicePlan, InitPlan, MountPlan, Placement};

pub(crate) type R<T> = Result<T, String>;

fn fdpath(fd: BorrowedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// The path relative to the container root, with `.`/`..`/root components normalised away the
/// way a lookup under RESOLVE_IN_ROOT treats them.
fn rel(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Open `path` inside the root `root` (O_PATH unless `flags` says otherwise).
pub(crate) fn open_in(
    root: BorrowedFd,
    path: &Path,
    flags: libc::c_int,
) -> std::io::Result<OwnedFd> {
    let r = rel(path);
    let p = if r.as_os_str().is_empty() {
        Path::new(".")
    } else {
        r.as_path()
    };
    sys::openat_in_root(root, p, flags)
}

/// The parent directory of `path` inside `root` (created if missing) and the last component:
/// what a `*at` call needs to make `path` without following anything out of the root.
fn parent_and_name(root: BorrowedFd, path: &Path) -> std::io::Result<(OwnedFd, CString)> {
    let r = rel(path);
    let parent = r.parent().unwrap_or(Path::new(""));
    let name = r
        .file_name()
        .ok_or_else(|| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let pfd = mkdir_all(root, parent)?;
    let cname = CString::new(name.as_bytes()).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    Ok((pfd, cname))
}

/// Make `path` inside `root` with `make(parent_fd, name)` unless something is there already
/// (EEXIST is fine: a concurrent or earlier creation), and return an O_PATH fd of it.
///
/// A dangling symlink in the way is followed the way a lookup in the root would follow it (an
/// absolute target starts at the container root, `..` stops there), and its target is made:
/// runc and crun do the same, and images carry such links (e.g. /etc/mtab → ../proc/...).
fn make_in(
    root: BorrowedFd,
    path: &Path,
    open_flags: libc::c_int,
    make: &dyn Fn(&OwnedFd, &CString) -> libc::c_int,
) -> std::io::Result<OwnedFd> {
    // Linux's limit on symlinks followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut path = rel(path);
    for _ in 0..=MAX_LINKS {
        match open_in(root, &path, open_flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let (pfd, cname) = parent_and_name(root, &path)?;
        if make(&pfd, &cname) == 0 {
            return open_in(root, &path, open_flags);
        }
        let e = std::io::Error::last_os_error();
        if !matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ELOOP)) {
            return Err(e);
        }
        match nix::fcntl::readlinkat(Some(pfd.as_raw_fd()), cname.as_c_str()) {
            Ok(target) => {
                let target = Path::new(&target);
                path = if target.is_absolute() {
                    rel(target)
                } else {
                    rel(&path.parent().unwrap_or(Path::new("")).join(target))
                };
            }
            // Not a symlink: something was made there meanwhile.
            Err(_) if e.raw_os_error() == Some(libc::EEXIST) => {
                return open_in(root, &path, open_flags)
            }
            Err(_) => return Err(e),
        }
    }
    Err(std::io::Error::from_raw_os_error(libc::ELOOP))
}

/// Create directory `path` and its parents inside `root`, returning an O_PATH fd of it.
pub(crate) fn mkdir_all(root: BorrowedFd, path: &Path) -> std::io::Result<OwnedFd> {
    make_in(
        root,
        path,
        libc::O_PATH | libc::O_DIRECTORY,
        &|pfd, name| {
            // SAFETY: mkdirat with a valid dir fd and a single NUL-terminated path component.
            unsafe { libc::mkdirat(pfd.as_raw_fd(), name.as_ptr(), 0o755) }
        },
    )
}

/// Create an empty file at `path` inside `root` (parents included) unless something is there,
/// returning an O_PATH fd of what is there.
fn mkfile_all(root: BorrowedFd, path: &Path) -> std::io::Result<OwnedFd> {
    make_in(root, path, libc::O_PATH, &|pfd, name| {
        // SAFETY: openat with a valid dir fd and a single path component; the new fd is
        // closed at once.
        let fd = unsafe {
            libc::openat(
                pfd.as_raw_fd(),
                name.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                0o644,
            )
        };
        if fd >= 0 {
            // SAFETY: we own the fd just opened.
            unsafe { libc::close(fd) };
            0
        } else {
            -1
        }
    })
}

/// The `MS_*` flags a mount already has that a bind remount must keep (the kernel refuses to
/// clear locked nosuid/nodev/noexec/atime flags in a user namespace).
fn current_flags(target: &Path) -> libc::c_ulong {
    match nix::sys::statvfs::statvfs(target) {
        Ok(s) => {
            use nix::sys::statvfs::FsFlags as F;
            let f = s.flags();
            let mut m = 0;
            for (st, ms) in [
                (F::ST_RDONLY, libc::MS_RDONLY),
                (F::ST_NOSUID, libc::MS_NOSUID),
                (F::ST_NODEV, libc::MS_NODEV),
                (F::ST_NOEXEC, libc::MS_NOEXEC),
                (F::ST_NOATIME, libc::MS_NOATIME),
                (F::ST_NODIRATIME, libc::MS_NODIRATIME),
                (F::ST_RELATIME, libc::MS_RELATIME),
            ] {
                if f.contains(st) {
                    m |= ms;
                }
            }
            // Neither relatime nor noatime is strictatime; a remount without MS_STRICTATIME
            // would make it relatime.
            if m & (libc::MS_NOATIME | libc::MS_RELATIME) == 0 {
                m |= libc::MS_STRICTATIME;
            }
            m
        }
        Err(_) => 0,
    }
}

const REMOUNTABLE: libc::c_ulong = libc::MS_RDONLY
    | libc::MS_NOSUID
    | libc::MS_NODEV
    | libc::MS_NOEXEC
    | libc::MS_NOATIME
    | libc::MS_NODIRATIME
    | libc::MS_RELATIME
    | libc::MS_STRICTATIME;

/// Remount the bind mount at `target` with `o`'s flags, keeping what it had unless `o` clears it.
fn bind_remount(target: &Path, o: &MountOptions) -> std::io::Result<()> {
    const ATIME: libc::c_ulong = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
    let want = o.flags & REMOUNTABLE;
    let mut have = current_flags(target) & !o.cleared;
    // One atime mode: the one asked for, else the one the mount has.
    if want & ATIME != 0 {
        have &= !ATIME;
    }
    let flags = (have | want) & REMOUNTABLE;
    sys::mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | flags,
        None,
    )
}

/// The remount of a bind from `mounts[]`, as runc does it ("mount --bind -o ..."): the mount
/// gets only the flags its options ask for, so a nosuid source bound "ro" becomes "ro" (the
/// kernel keeps the atime mode when none is asked). Where that fails because the source's
/// flags are locked (a mount from a more privileged user namespace), they are kept — unless an
/// option clears one of them or asks for another atime mode, which cannot be honoured.
fn bind_remount_requested(target: &Path, o: &MountOptions) -> std::io::Result<()> {
    const LOCKABLE: libc::c_ulong = libc::MS_RDONLY
        | libc::MS_NODEV
        | libc::MS_NOEXEC
        | libc::MS_NOSUID
        | libc::MS_NOATIME
        | libc::MS_RELATIME
        | libc::MS_STRICTATIME
        | libc::MS_NODIRATIME;
    const ATIME: libc::c_ulong = libc::MS_NOATIME | libc::MS_RELATIME | libc::MS_STRICTATIME;
    let want = o.flags & REMOUNTABLE;
    let first = sys::mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | want,
        None,
    );
    let Err(e) = first else {
        return Ok(());
    };
    if e.raw_os_error() != Some(libc::EPERM) {
        return Err(e);
    }
    let have = current_flags(target);
    if have & o.cleared & LOCKABLE != 0 || (want & ATIME != 0 && want & ATIME != have & ATIME) {
        return Err(e);
    }
    sys::mount(
        None,
        target,
        None,
        libc::MS_BIND | libc::MS_REMOUNT | want | (have & LOCKABLE),
        None,
    )
}

fn mount_err(m: &MountPlan, e: &std::io::Error) -> String {
    format!(
        "error mounting {:?} to rootfs at {:?}: {}",
        m.source.as_deref().unwrap_or(Path::new(&m.fstype)),
        m.destination,
        os_error(e)
    )
}

fn is_dir_source(src: &Path) -> bool {
    std::fs::metadata(src).map(|m| m.is_dir()).unwrap_or(true)
}

/// For a container in a user namespace: open every bind source now, in the runtime, as
/// detached mount trees (`open_tree`). The init resolves paths with the namespace's root, which
/// the host's permissions may stop on the way to a source (a parent directory with mode 0700,
/// say) where runc and crun, which open sources on the host side too, succeed.
/// Outside a user namespace (`all` false) only the sources of idmapped mounts are opened.
pub fn open_bind_sources(mounts: &[MountPlan], all: bool) -> R<Vec<(usize, OwnedFd)>> {
    let mut out = Vec::new();
    for (i, m) in mounts.iter().enumerate() {
        if !m.options.is_bind() || m.fstype == "cgroup" || m.fstype == "cgroup2" {
            continue;
        }
        if !all && m.idmap.is_none() {
            continue;
        }
        let Some(src) = m.source.as_deref() else {
            continue;
        };
        match sys::open_tree_clone(src, m.options.flags & libc::MS_REC != 0) {
            Ok(tree) => out.push((i, tree)),
            // An unprivileged runtime (rootless) may not clone mounts of its own mount
            // namespace: the init binds the source by path inside the user namespace, as runc
            // does (the source's flags are then locked and kept). An idmapped mount needs the
            // copy: its error stands.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && m.idmap.is_none() => {}
            Err(e) => return Err(mount_err(m, &e)),
        }
    }
    Ok(out)
}

/// Do one mount of the config's `mounts` inside the rootfs; `tree` is its source opened by the
/// runtime, if it was.
fn do_mount(
    root: BorrowedFd,
    m: &MountPlan,
    tree: Option<&OwnedFd>,
    plan: &InitPlan,
    placement: &Placement,
) -> R<()> {
    let o = &m.options;
    if m.fstype == "cgroup" || m.fstype == "cgroup2" {
        // In a cgroup namespace the mount shows the namespace's root, made once the process is
        // in its cgroups; without one, the host's directories are bound, and under the systemd
        // driver those exist only once the unit is started (the parent's placement, which runc
        // also finishes before the init mounts anything). Wait for the placement either way.
        placement.ensure()?;
        return mount_cgroups(root, m, plan);
    }
    let bind = o.is_bind();
    if m.fstype == "proc" || m.fstype == "sysfs" {
        check_ordinary_directory(root, m)?;
    }
    let source_is_dir = match tree {
        Some(t) => nix::sys::stat::fstat(t.as_raw_fd())
            .map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
            .unwrap_or(true),
        None => m.source.as_deref().is_none_or(is_dir_source),
    };
    // A tmpfs takes the mode of the directory it covers unless its options give one (runc
    // puts "mode=" of the destination first; a later "mode=" in the options wins).
    let mut data = o.data.clone();
    if m.fstype == "tmpfs" && !bind {
        if let Ok(fd) = open_in(root, &m.destination, libc::O_PATH) {
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|e| mount_err(m, &std::io::Error::from(e)))?;
            let mode = format!("mode={:04o}", st.st_mode & 0o7777);
            data = if data.is_empty() {
                mode
            } else {
                format!("{mode},{data}")
            };
        }
    }
    let target = if bind && !source_is_dir {
        mkfile_all(root, &m.destination)
    } else {
        mkdir_all(root, &m.destination)
    }
    .map_err(|e| mount_err(m, &e))?;
    let tpath = fdpath(target.as_fd());
    if bind {
        let src = m
            .source
            .as_deref()
            .ok_or_else(|| format!("mount {:?}: a bind mount needs a source", m.destination))?;
        match tree {
            Some(t) => sys::move_mount_to(t.as_fd(), target.as_fd()),
            None => sys::mount(
                Some(src),
                &tpath,
                None,
                libc::MS_BIND | (o.flags & libc::MS_REC),
                None,
            ),
        }
        .map_err(|e| mount_err(m, &e))?;
        // Re-open: the new fd resolves to the root of the mount just made.
        let mounted = open_in(root, &m.destination, libc::O_PATH).map_err(|e| mount_err(m, &e))?;
        let mpath = fdpath(mounted.as_fd());
        if o.flags & REMOUNTABLE != 0 || o.cleared & REMOUNTABLE != 0 {
            // In a user namespace the source's flags would be locked under runc (its bind is
            // made inside the namespace) and kept; kakuri's bind comes from the runtime with
            // open_tree and is not locked, so they are kept explicitly.
            if plan.in_new_userns {
                bind_remount(&mpath, o)
            } else {
                bind_remount_requested(&mpath, o)
            }
            .map_err(|e| mount_err(m, &e))?;
        }
        finish_mount(&mounted, m)?;
    } else {
        let src = m.source.as_deref().unwrap_or(Path::new(&m.fstype));
        let mut flags = o.flags & !(libc::MS_BIND | libc::MS_REC);
        // A tmpfs and /dev are mounted read-write, so devices and the console can be made on
        // /dev, and made read-only by finalize() after the pivot, as runc does.
        if ro_later(m) {
            flags &= !libc::MS_RDONLY;
        }
        // tmpcopyup: the directory under the new tmpfs, kept open to copy from once covered.
        let below = if m.fstype == "tmpfs" && o.tmpcopyup {
            Some(
                nix::fcntl::open(
                    &tpath,
                    nix::fcntl::OFlag::O_RDONLY
                        | nix::fcntl::OFlag::O_DIRECTORY
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                // SAFETY: open returned a fresh descriptor that nothing else owns.
                .map(|fd| unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
                .map_err(|e| mount_err(m, &std::io::Error::from(e)))?,
            )
        } else {
            None
        };
        let r = sys::mount(Some(src), &tpath, Some(&m.fstype), flags, Some(&data));
        match r {
            Ok(()) => {}
            // In a user namespace that does not own the network namespace, sysfs cannot be
            // mounted; fall back to a recursive bind of the host's, as runc does.
            Err(e) if m.fstype == "sysfs" && e.raw_os_error() == Some(libc::EPERM) => {
                sys::mount(
                    Some(Path::new("/sys")),
                    &tpath,
                    None,
                    libc::MS_BIND | libc::MS_REC,
                    None,
                )
                .map_err(|e| mount_err(m, &e))?;
                let mounted =
                    open_in(root, &m.destination, libc::O_PATH).map_err(|e| mount_err(m, &e))?;
                bind_remount(&fdpath(mounted.as_fd()), o).map_err(|e| mount_err(m, &e))?;
            }
            Err(e) => return Err(mount_err(m, &e)),
        }
        let mounted = open_in(root, &m.destination, libc::O_PATH).map_err(|e| mount_err(m, &e))?;
        if let Some(below) = below {
            let top = open_in(root, &m.destination, libc::O_RDONLY | libc::O_DIRECTORY)
                .map_err(|e| mount_err(m, &e))?;
            copy_up(&below, &top)
                .map_err(|e| format!("mount {:?}: tmpcopyup: {}", m.destination, os_error(&e)))?;
        }
        finish_mount(&mounted, m)?;
    }
    Ok(())
}

/// `tmpcopyup`: copy the tree of `src` (the directory a new tmpfs covers) into `dst` (the
/// tmpfs), keeping modes, owners, symlinks and device nodes, as runc does. Every name is
/// opened relative to its parent's descriptor without following symlinks.
fn copy_up(src: &OwnedFd, dst: &OwnedFd) -> std::io::Result<()> {
    use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
    use nix::sys::stat::{fchmod, fstatat, mkdirat, mknodat, Mode, SFlag};
    use nix::unistd::{fchown, fchownat, symlinkat, Gid, Uid};
    let to_io = std::io::Error::from;
    let own = |fd: RawFd| {
        // SAFETY: `fd` was just returned by openat and is owned by nobody else.
        unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    };
    // Ownership the kernel cannot represent (unmapped in a user namespace) is left as is.
    let chown_ok = |r: nix::Result<()>| match r {
        Err(nix::errno::Errno::EINVAL) | Ok(()) => Ok(()),
        Err(e) => Err(to_io(e)),
    };
    let dup = nix::unistd::dup(src.as_raw_fd()).map_err(to_io)?;
    let mut dir = nix::dir::Dir::from_fd(dup).map_err(to_io)?;
    for entry in dir.iter() {
        let entry = entry.map_err(to_io)?;
        let name = entry.file_name();
        if name.to_bytes() == b"." || name.to_bytes() == b".." {
            continue;
        }
        let st =
            fstatat(Some(src.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(to_io)?;
        let kind = st.st_mode & libc::S_IFMT;
        let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
        let (uid, gid) = (
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
        );
        let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match kind {
            libc::S_IFDIR => {
                mkdirat(Some(dst.as_raw_fd()), name, Mode::from_bits_truncate(0o700))
                    .map_err(to_io)?;
                let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow;
                let s =
                    own(openat(Some(src.as_raw_fd()), name, flags, Mode::empty()).map_err(to_io)?);
                let d =
                    own(openat(Some(dst.as_raw_fd()), name, flags, Mode::empty()).map_err(to_io)?);
                copy_up(&s, &d)?;
                chown_ok(fchown(d.as_raw_fd(), uid, gid))?;
                fchmod(d.as_raw_fd(), perm).map_err(to_io)?;
            }
            libc::S_IFREG => {
                let s = own(openat(
                    Some(src.as_raw_fd()),
                    name,
                    OFlag::O_RDONLY | nofollow,
                    Mode::empty(),
                )
                .map_err(to_io)?);
                let d = own(openat(
                    Some(dst.as_raw_fd()),
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(to_io)?);
                std::io::copy(
                    &mut std::fs::File::from(s),
                    &mut std::fs::File::from(d.try_clone()?),
                )?;
                chown_ok(fchown(d.as_raw_fd(), uid, gid))?;
                fchmod(d.as_raw_fd(), perm).map_err(to_io)?;
            }
            libc::S_IFLNK => {
                let target = readlinkat(Some(src.as_raw_fd()), name).map_err(to_io)?;
                symlinkat(target.as_os_str(), Some(dst.as_raw_fd()), name).map_err(to_io)?;
                chown_ok(fchownat(
                    Some(dst.as_raw_fd()),
                    name,
                    uid,
                    gid,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ))?;
            }
            _ => {
                mknodat(
                    Some(dst.as_raw_fd()),
                    name,
                    SFlag::from_bits_truncate(kind),
                    perm,
                    st.st_rdev,
                )
                .map_err(to_io)?;
                chown_ok(fchownat(
                    Some(dst.as_raw_fd()),
                    name,
                    uid,
                    gid,
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                ))?;
            }
        }
    }
    Ok(())
}

/// A mount asked read-only that is mounted read-write first and remounted read-only by
/// [`finalize`]: a tmpfs, and whatever is mounted on /dev other than a bind (runc's rule).
pub(crate) fn ro_later(m: &MountPlan) -> bool {
    m.options.flags & libc::MS_RDONLY != 0
        && !m.options.is_bind()
        && (m.fstype == "tmpfs" || rel(&m.destination) == Path::new("dev"))
}

/// procfs and sysfs go only on a directory, never through a symlink (the final component is
/// not followed) or onto a file: a rootfs whose /proc is a link elsewhere would otherwise get
/// procfs where maskedPaths and readonlyPaths do not look. runc refuses the same way, with
/// this wording.
fn check_ordinary_directory(root: BorrowedFd, m: &MountPlan) -> R<()> {
    let fd = match open_in(root, &m.destination, libc::O_PATH | libc::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(mount_err(m, &e)),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd())
        .map_err(|e| mount_err(m, &std::io::Error::from(e)))?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        return Ok(());
    }
    Err(format!(
        "error mounting {:?} to rootfs at {:?}: filesystem {:?} must be mounted on ordinary directory",
        m.source.as_deref().unwrap_or(Path::new(&m.fstype)),
        m.destination,
        m.fstype
    ))
}

/// Propagation and recursive attributes, which apply to a mount once it exists.
fn finish_mount(mounted: &OwnedFd, m: &MountPlan) -> R<()> {
    let o = &m.options;
    let p = fdpath(mounted.as_fd());
    for prop in &o.propagation {
        sys::mount(None, &p, None, *prop, None).map_err(|e| mount_err(m, &e))?;
    }
    if o.rec_attr_set != 0 || o.rec_attr_clr != 0 {
        sys::mount_setattr(mounted.as_fd(), true, o.rec_attr_set, o.rec_attr_clr, 0)
            .map_err(|e| mount_err(m, &e))?;
    }
    Ok(())
}

/// A `cgroup` mount: on cgroup v2 the container's cgroup2 (its own if it has a cgroup namespace);
/// on v1/hybrid a tmpfs with one directory per hierarchy, as runc lays it out.
fn mount_cgroups(root: BorrowedFd, m: &MountPlan, plan: &InitPlan) -> R<()> {
    let o = &m.options;
    let flags = o.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_RELATIME);
    let ro = o.flags & libc::MS_RDONLY != 0;
    let target = mkdir_all(root, &m.destination).map_err(|e| mount_err(m, &e))?;
    if plan.cgroup_mounts.is_empty() && host_is_cgroup2() {
        // No cgroup of the container on a cgroup v2 host (rootless, its directory left out for
        // lack of permission): runc masks the destination with an empty read-only tmpfs
        // (mountCgroupV2's ENOENT fallback), which hides the host's hierarchy that the
        // rootless `rbind` of /sys would show there.
        return sys::mount(
            Some(Path::new("tmpfs")),
            &fdpath(target.as_fd()),
            Some("tmpfs"),
            libc::MS_RDONLY,
            None,
        )
        .map_err(|e| mount_err(m, &e));
    }
    let one = |dir: &Path, src: &CgroupMountSource| -> R<()> {
        let t = mkdir_all(root, dir).map_err(|e| mount_err(m, &e))?;
        let tp = fdpath(t.as_fd());
        let mut bind = !plan.new_cgroupns;
        if plan.new_cgroupns {
            // runc's source names: "systemd" for the named systemd hierarchy.
            let source = Path::new(if src.fs_type == "cgroup2" {
                "cgroup2"
            } else if src.name == "systemd" {
                "systemd"
            } else {
                "cgroup"
            });
            let data = (src.fs_type == "cgroup").then_some(src.options.as_str());
            match sys::mount(
                Some(source),
                &tp,
                Some(src.fs_type),
                flags | if ro { libc::MS_RDONLY } else { 0 },
                data,
            ) {
                Ok(()) => {}
                // As runc's mountCgroupV2: cgroup2 cannot be mounted here (EBUSY: the
                // destination is already the root of a cgroup2 mount, e.g. under the `rbind`
                // of /sys of a rootless spec; EPERM: no rights over the cgroup namespace), so
                // the container's own cgroup directory is bound instead, which shows what the
                // namespace's root would.
                Err(e)
                    if src.fs_type == "cgroup2"
                        && matches!(e.raw_os_error(), Some(libc::EBUSY | libc::EPERM)) =>
                {
                    log::debug!("mount cgroup2 at {:?}: {e}; binding instead", m.destination);
                    bind = true;
                }
                Err(e) => return Err(mount_err(m, &e)),
            }
        }
        if bind {
            sys::mount(Some(&src.host_path), &tp, None, libc::MS_BIND, None)
                .map_err(|e| mount_err(m, &e))?;
            let mounted = open_in(root, dir, libc::O_PATH).map_err(|e| mount_err(m, &e))?;
            let mo = MountOptions {
                flags: flags | if ro { libc::MS_RDONLY } else { 0 },
                ..Default::default()
            };
            bind_remount(&fdpath(mounted.as_fd()), &mo).map_err(|e| mount_err(m, &e))?;
        }
        Ok(())
    };
    let v2_only = plan.cgroup_mounts.len() == 1 && plan.cgroup_mounts[0].fs_type == "cgroup2";
    if v2_only || m.fstype == "cgroup2" {
        if let Some(src) = plan.cgroup_mounts.iter().find(|c| c.fs_type == "cgroup2") {
            one(&m.destination, src)?;
        }
        return Ok(());
    }
    // As runc lays out v1: a tmpfs that stays read-write ("ro" applies to the hierarchies),
    // one directory per v1 hierarchy; the v2 hierarchy of a hybrid host is not mounted.
    sys::mount(
        Some(Path::new("tmpfs")),
        &fdpath(target.as_fd()),
        Some("tmpfs"),
        flags,
        Some("mode=755"),
    )
    .map_err(|e| mount_err(m, &e))?;
    for src in plan.cgroup_mounts.iter().filter(|c| c.fs_type == "cgroup") {
        one(&m.destination.join(&src.name), src)?;
    }
    Ok(())
}

/// The host's /sys/fs/cgroup is a cgroup2 filesystem (a pure cgroup v2 host), as runc's
/// IsCgroup2UnifiedMode decides it.
fn host_is_cgroup2() -> bool {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    std::fs::File::open("/sys/fs/cgroup")
        .and_then(|f| sys::fs_magic(f.as_fd()))
        .is_ok_and(|magic| magic == CGROUP2_SUPER_MAGIC)
}

/// The devices every container gets, as runc creates them and in its order (which shows in
/// the mount table when they are bound from the host): (name, major, minor).
const DEFAULT_DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("random", 1, 8),
    ("full", 1, 7),
    ("tty", 5, 0),
    ("zero", 1, 5),
    ("urandom", 1, 9),
];

/// True if this process is in a user namespace other than the initial one (its uid map is not
/// the full identity range), as runc's `userns.RunningInUserNS`.
fn running_in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|t| t.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

fn create_device(root: BorrowedFd, d: &DevicePlan, bind_host: &std::cell::Cell<bool>) -> R<()> {
    let err = |e: std::io::Error| format!("create device {:?}: {}", d.path, os_error(&e));
    let (pfd, cname) = parent_and_name(root, &d.path).map_err(err)?;
    let name = Path::new(std::ffi::OsStr::from_bytes(cname.as_bytes()));
    // A device node may not be left from an earlier image layer with other numbers.
    // SAFETY: unlinkat on a valid dir fd with one path component; failure (ENOENT) is fine.
    unsafe { libc::unlinkat(pfd.as_raw_fd(), cname.as_ptr(), 0) };
    let bind = || {
        let f = mkfile_all(root, &d.path).map_err(err)?;
        sys::mount(Some(&d.path), &fdpath(f.as_fd()), None, libc::MS_BIND, None).map_err(err)
    };
    if bind_host.get() {
        return bind();
    }
    let dev = libc::makedev(d.major as u32, d.minor as u32);
    match sys::mknodat(pfd.as_fd(), Path::new(name), d.kind | d.mode, dev) {
        Ok(()) => {}
        // The runtime itself runs in a user namespace (rootless podman's): no mknod there,
        // devices are bound from the host, as runc does. Asked only on a refusal.
        Err(e) if e.raw_os_error() == Some(libc::EPERM) && running_in_user_namespace() => {
            bind_host.set(true);
            return bind();
        }
        Err(e) => return Err(err(e)),
    }
    // SAFETY: fchownat on a valid dir fd with one NUL-terminated component, not following links.
    let rc = unsafe {
        libc::fchownat(
            pfd.as_raw_fd(),
            cname.as_ptr(),
            d.uid,
            d.gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // mknod applies the umask: set the mode exactly.
    // SAFETY: fchmodat on a valid dir fd with one component.
    unsafe { libc::fchmodat(pfd.as_raw_fd(), cname.as_ptr(), d.mode & 0o7777, 0) };
    Ok(())
}

fn create_devices(root: BorrowedFd, plan: &InitPlan) -> R<()> {
    let bind_host = std::cell::Cell::new(plan.in_new_userns);
    if plan.default_devices {
        for (name, major, minor) in DEFAULT_DEVICES {
            let d = DevicePlan {
                path: PathBuf::from("/dev").join(name),
                kind: libc::S_IFCHR,
                major: major as i64,
                minor: minor as i64,
                mode: 0o666,
                uid: 0,
                gid: 0,
            };
            if plan.devices.iter().any(|x| x.path == d.path) {
                continue;
            }
            create_device(root, &d, &bind_host)?;
        }
        let dev = mkdir_all(root, Path::new("/dev")).map_err(|e| format!("/dev: {e}"))?;
        let mut links = vec![
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            ("ptmx", "pts/ptmx"),
        ];
        if Path::new("/proc/kcore").exists() {
            links.push(("core", "/proc/kcore"));
        }
        for (name, target) in links {
            let n = CString::new(name).unwrap_or_default();
            let t = CString::new(target).unwrap_or_default();
            if name == "ptmx" {
                // SAFETY: one component under a valid dir fd; ENOENT is fine.
                unsafe { libc::unlinkat(dev.as_raw_fd(), n.as_ptr(), 0) };
            }
            // SAFETY: NUL-terminated strings and a valid dir fd.
            let rc = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EEXIST) {
                    return Err(format!("symlink /dev/{name}: {}", os_error(&e)));
                }
            }
        }
    }
    for d in &plan.devices {
        create_device(root, d, &bind_host)?;
    }
    Ok(())
}

/// The pty of a container with `process.terminal`: made in the container's own devpts, with the
/// slave bound onto /dev/console. Returns (master, slave).
fn setup_console(root: BorrowedFd, size: Option<(u16, u16)>) -> R<(OwnedFd, OwnedFd)> {
    let master = open_in(
        root,
        Path::new("/dev/pts/ptmx"),
        libc::O_RDWR | libc::O_NOCTTY,
    )
    .map_err(|e| format!("open the container's /dev/pts/ptmx: {}", os_error(&e)))?;
    sys::unlockpt(master.as_fd()).map_err(|e| format!("unlockpt: {}", os_error(&e)))?;
    if let Some((rows, cols)) = size {
        sys::set_winsize(master.as_fd(), rows, cols)
            .map_err(|e| format!("set the console size: {}", os_error(&e)))?;
    }
    let slave = sys::pty_peer(
        master.as_fd(),
        libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
    )
    .map_err(|e| format!("open pty peer: {}", os_error(&e)))?;
    let console = mkfile_all(root, Path::new("/dev/console"))
        .map_err(|e| format!("create /dev/console: {}", os_error(&e)))?;
    sys::mount(
        Some(&fdpath(slave.as_fd())),
        &fdpath(console.as_fd()),
        None,
        libc::MS_BIND,
        None,
    )
    .map_err(|e| format!("bind the console onto /dev/console: {}", os_error(&e)))?;
    Ok((master, slave))
}

/// The mount point of the mount that holds `path` (longest matching mount point in
/// /proc/self/mountinfo; octal escapes such as `\040` decoded).
fn mount_point_of(path: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut best = PathBuf::from("/");
    for line in info.lines() {
        let Some(raw) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = unescape_mountinfo(raw);
        if path.starts_with(&mp) && mp.as_os_str().len() > best.as_os_str().len() {
            best = mp;
        }
    }
    best
}

/// A path field of /proc/self/mountinfo, its octal escapes (`\\040`...) decoded.
fn unescape_mountinfo(raw: &str) -> PathBuf {
    let mut bytes = Vec::with_capacity(raw.len());
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            if let Ok(v) = u8::from_str_radix(&raw[i + 1..i + 4], 8) {
                bytes.push(v);
                i += 4;
                continue;
            }
        }
        bytes.push(b[i]);
        i += 1;
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&bytes))
}

/// `--no-pivot`: the old root stays in the container's mount namespace under the moved rootfs,
/// and with it the host's full procfs and sysfs mounts. The kernel lets a process in a nested
/// user namespace mount a fresh, unmasked proc (or sysfs) when a full one is visible in its mount
/// namespace (`mount_too_revealing`), so, as runc's msMoveRoot does, every full (root "/") proc
/// and sysfs mount outside the rootfs is detached (made rslave first, so the unmount does not
/// reach the host), or covered with a tmpfs where it cannot be unmounted.
fn hide_host_proc_and_sys(rootfs: &Path) -> R<()> {
    let rootfs = std::fs::canonicalize(rootfs).unwrap_or_else(|_| rootfs.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| format!("read /proc/self/mountinfo: {}", os_error(&e)))?;
    let mut points = Vec::new();
    for line in info.lines() {
        let (left, right) = line.split_once(" - ").unwrap_or((line, ""));
        let f: Vec<&str> = left.split(' ').collect();
        let fstype = right.split(' ').next().unwrap_or("");
        if f.len() < 5 || f[3] != "/" || !matches!(fstype, "proc" | "sysfs") {
            continue;
        }
        let mp = unescape_mountinfo(f[4]);
        if !mp.starts_with(&rootfs) {
            points.push(mp);
        }
    }
    // In reverse mount order, so a mount on top of another goes first. A mount point no longer
    // reachable (ENOENT: something above it went already) is skipped.
    for p in points.iter().rev() {
        let err = |e: std::io::Error| {
            format!("hide {p:?} before the move of the rootfs: {}", os_error(&e))
        };
        match sys::mount(None, p, None, libc::MS_SLAVE | libc::MS_REC, None) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err(e)),
        }
        match sys::umount2(p, libc::MNT_DETACH) {
            Ok(()) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::EPERM)) => {
                sys::mount(Some(Path::new("tmpfs")), p, Some("tmpfs"), 0, None).map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

/// In the container's own mount namespace: the propagation of `/` (rslave unless configured)
/// and the rootfs bound onto itself, as pivot_root needs it.
fn isolate_root(plan: &InitPlan) -> R<()> {
    let prop = plan
        .root_propagation
        .unwrap_or(libc::MS_SLAVE | libc::MS_REC);
    // An unbindable tree cannot be the source of the rootfs bind below: until the pivot it is
    // private (which unbindable implies); finalize() applies the configured propagation.
    let prop = if prop & libc::MS_UNBINDABLE != 0 {
        (prop & !libc::MS_UNBINDABLE) | libc::MS_PRIVATE
    } else {
        prop
    };
    sys::mount(None, Path::new("/"), None, prop, None)
        .map_err(|e| format!("make / {prop:#x}: {}", os_error(&e)))?;
    // pivot_root refuses a new root whose parent mount is shared: make that one mount private
    // (only in this mount namespace); the configured propagation is applied again after pivot.
    // A shared parent is left by a shared propagation, and by a non-recursive one when the
    // host's mount there is shared.
    let parent = plan.rootfs.parent().unwrap_or(Path::new("/"));
    let mp = mount_point_of(parent);
    if prop & libc::MS_SHARED != 0 || mount_is_shared(&mp) {
        sys::mount(None, &mp, None, libc::MS_PRIVATE, None)
            .map_err(|e| format!("make {mp:?} private: {}", os_error(&e)))?;
    }
    // pivot_root needs the new root to be a mount point whose parent is not shared.
    sys::mount(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| format!("bind rootfs {:?}: {}", plan.rootfs, os_error(&e)))?;
    Ok(())
}

/// Whether the topmost mount at mount point `mp` is shared (a `shared:N` field in mountinfo).
fn mount_is_shared(mp: &Path) -> bool {
    // mountinfo escapes these four bytes in paths as octal.
    let mut raw = String::new();
    for c in mp.to_string_lossy().chars() {
        match c {
            ' ' => raw.push_str("\\040"),
            '\t' => raw.push_str("\\011"),
            '\n' => raw.push_str("\\012"),
            '\\' => raw.push_str("\\134"),
            c => raw.push(c),
        }
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    info.lines()
        .rfind(|l| l.split(' ').nth(4) == Some(raw.as_str()))
        .is_some_and(|l| {
            let optional = l.split(" - ").next().unwrap_or("");
            optional
                .split(' ')
                .skip(6)
                .any(|f| f.starts_with("shared:"))
        })
}

/// Everything up to (not including) pivot_root. Returns the console (master, slave) if any.
pub(crate) fn prepare(
    plan: &InitPlan,
    placement: &Placement,
) -> R<(OwnedFd, Option<(OwnedFd, OwnedFd)>)> {
    // In the runtime's mount namespace nothing outside the rootfs is touched: the runtime has
    // bound the rootfs onto itself with its propagation already.
    if !plan.shared_mountns {
        isolate_root(plan)?;
        kakuri_timings::mark("private root, rootfs bind");
    }
    let open_root = || {
        let root = nix::fcntl::open(
            &plan.rootfs,
            nix::fcntl::OFlag::O_PATH
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("open rootfs {:?}: {e}", plan.rootfs))?;
        // SAFETY: nix returned a fresh descriptor we now own.
        Ok::<OwnedFd, String>(unsafe { std::os::fd::FromRawFd::from_raw_fd(root) })
    };
    let mut root = open_root()?;
    for (i, m) in plan.mounts.iter().enumerate() {
        let tree = plan
            .bind_sources
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, fd)| fd);
        do_mount(root.as_fd(), m, tree, plan, placement)?;
        kakuri_timings::mark_parts(&["mount ", m.destination.to_str().unwrap_or("?")]);
        // A mount on "/" is stacked on the rootfs and becomes the container's root, as under
        // runc (whose later mounts and pivot_root resolve the rootfs path to the top mount):
        // what follows goes on it, pivot_root makes it the root, and root.readonly applies to
        // it. Without a new mount namespace such a mount is refused before the clone.
        if rel(&m.destination).as_os_str().is_empty() {
            root = open_root()?;
        }
    }
    create_devices(root.as_fd(), plan)?;
    kakuri_timings::mark("device nodes");
    let console = if plan.process.terminal {
        let c = setup_console(root.as_fd(), plan.process.console_size)?;
        kakuri_timings::mark("console");
        Some(c)
    } else {
        None
    };
    Ok((root, console))
}

/// Switch to the rootfs: pivot_root (or, with `--no-pivot`, a move mount and chroot). In the
/// runtime's mount namespace only chroot: pivot_root would move every process of the namespace
/// whose root is the old one, and a move of the rootfs bind would be visible to all of them.
pub(crate) fn pivot(plan: &InitPlan, root: &OwnedFd) -> R<()> {
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| format!("chdir rootfs: {e}"))?;
    if plan.shared_mountns {
        nix::unistd::chroot(".").map_err(|e| format!("chroot rootfs: {e}"))?;
    } else if plan.no_pivot {
        hide_host_proc_and_sys(&plan.rootfs)?;
        sys::mount(
            Some(&plan.rootfs),
            Path::new("/"),
            None,
            libc::MS_MOVE,
            None,
        )
        .map_err(|e| format!("move rootfs to /: {}", os_error(&e)))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    } else {
        let dot = Path::new(".");
        sys::pivot_root(dot, dot).map_err(|e| format!("pivot_root: {}", os_error(&e)))?;
        // Keep the old root's unmount from reaching the host, then drop it.
        sys::mount(None, dot, None, libc::MS_SLAVE | libc::MS_REC, None)
            .map_err(|e| format!("make old root rslave: {}", os_error(&e)))?;
        sys::umount2(dot, libc::MNT_DETACH)
            .map_err(|e| format!("unmount old root: {}", os_error(&e)))?;
    }
    nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// After pivot: masked and read-only paths, a read-only root, the final root propagation.
///
/// The mounts of masked and read-only paths go through descriptors, named as
/// `thread-self/fd/N` relative to `proc` (a verified procfs taken before any container mount,
/// made the cwd meanwhile), never as `/proc/self/fd/N`: after pivot_root that path is looked
/// up in the container's /proc, which the config may have replaced with files of its own
/// whose `self/fd/N` lead elsewhere (CVE-2019-16884 class), and the masks would land there.
/// The process's root directory, `O_PATH` (after pivot_root or chroot: the container's).
fn open_root() -> R<OwnedFd> {
    let root = nix::fcntl::open(
        "/",
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open /: {e}"))?;
    // SAFETY: fresh descriptor from nix.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(root) })
}

pub(crate) fn finalize(plan: &InitPlan, proc: Option<&ProcRoot>) -> R<()> {
    let root = open_root()?;
    let fdpath = |fd: BorrowedFd| match proc {
        Some(_) => PathBuf::from(format!("thread-self/fd/{}", fd.as_raw_fd())),
        None => fdpath(fd),
    };
    if let Some(proc) = proc {
        nix::unistd::fchdir(proc.fd().as_raw_fd())
            .map_err(|e| format!("chdir to the procfs handle: {e}"))?;
    } else if !plan.readonly_paths.is_empty() || !plan.masked_paths.is_empty() {
        return Err("masked or read-only paths without a verified procfs handle".into());
    }
    for m in plan.mounts.iter().filter(|m| ro_later(m)) {
        let fd =
            open_in(root.as_fd(), &m.destination, libc::O_PATH).map_err(|e| mount_err(m, &e))?;
        let o = MountOptions {
            flags: (m.options.flags & REMOUNTABLE) | libc::MS_RDONLY,
            ..Default::default()
        };
        bind_remount(&fdpath(fd.as_fd()), &o).map_err(|e| mount_err(m, &e))?;
    }
    kakuri_timings::mark("read-only remounts");
    for p in &plan.readonly_paths {
        let fd = match open_in(root.as_fd(), p, libc::O_PATH) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(format!("readonly path {p:?}: {}", os_error(&e))),
        };
        sys::mount(
            Some(&fdpath(fd.as_fd())),
            &fdpath(fd.as_fd()),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| format!("readonly path {p:?}: {}", os_error(&e)))?;
        let m = open_in(root.as_fd(), p, libc::O_PATH)
            .map_err(|e| format!("readonly path {p:?}: {}", os_error(&e)))?;
        let o = MountOptions {
            flags: libc::MS_RDONLY,
            ..Default::default()
        };
        bind_remount(&fdpath(m.as_fd()), &o)
            .map_err(|e| format!("readonly path {p:?}: {}", os_error(&e)))?;
    }
    if !plan.masked_paths.is_empty() {
        let null = verified_dev_null(root.as_fd())?;
        for p in &plan.masked_paths {
            let fd = match open_in(root.as_fd(), p, libc::O_PATH) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(format!("masked path {p:?}: {}", os_error(&e))),
            };
            let st = nix::sys::stat::fstat(fd.as_raw_fd())
                .map_err(|e| format!("masked path {p:?}: {e}"))?;
            let target = fdpath(fd.as_fd());
            let r = if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                sys::mount(
                    Some(Path::new("tmpfs")),
                    &target,
                    Some("tmpfs"),
                    libc::MS_RDONLY,
                    None,
                )
            } else {
                sys::mount(
                    Some(&fdpath(null.as_fd())),
                    &target,
                    None,
                    libc::MS_BIND,
                    None,
                )
            };
            r.map_err(|e| format!("masked path {p:?}: {}", os_error(&e)))?;
        }
    }
    kakuri_timings::mark("readonlyPaths, maskedPaths");
    nix::unistd::fchdir(root.as_raw_fd()).map_err(|e| format!("chdir /: {e}"))?;
    if plan.root_readonly {
        let o = MountOptions {
            flags: libc::MS_RDONLY,
            ..Default::default()
        };
        bind_remount(Path::new("/"), &o)
            .map_err(|e| format!("make the root read-only: {}", os_error(&e)))?;
        kakuri_timings::mark("read-only root");
    }
    if let Some(p) = plan.root_propagation.filter(|_| !plan.shared_mountns) {
        sys::mount(None, Path::new("/"), None, p, None)
            .map_err(|e| format!("rootfsPropagation: {}", os_error(&e)))?;
    }
    Ok(())
}

/// /dev/null of the container, checked to be the real null device before anything is masked with
/// it (a container could have put another file there).
fn verified_dev_null(root: BorrowedFd) -> R<OwnedFd> {
    let fd = open_in(root, Path::new("/dev/null"), libc::O_PATH)
        .map_err(|e| format!("open /dev/null to mask paths: {}", os_error(&e)))?;
    let st = nix::sys::stat::fstat(fd.as_raw_fd()).map_err(|e| format!("stat /dev/null: {e}"))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != libc::makedev(1, 3) {
        return Err("/dev/null in the container is not the null device (1:3): refusing to mask paths with it".into());
    }
    Ok(fd)
}

/// After the root change, stdio that is a null device (a caller's `/dev/null`, often opened
/// read-only) is replaced by the container's own /dev/null opened read-write, as runc does when
/// it sets up /dev itself: the process sees the same `lrwx /dev/null` as under runc. The
/// container's node is opened in-root without following links and checked to be 1:3.
pub(crate) fn reopen_dev_null() -> R<()> {
    let root = open_root()?;
    let null_rdev = libc::makedev(1, 3);
    let is_null = |fd: RawFd| {
        nix::sys::stat::fstat(fd)
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null_rdev)
    };
    if !(0..3).any(is_null) {
        return Ok(());
    }
    let checked = verified_dev_null(root.as_fd())?;
    let null = open_in(
        root.as_fd(),
        Path::new("/dev/null"),
        libc::O_RDWR | libc::O_NOFOLLOW,
    )
    // runc's wording.
    .map_err(|e| {
        format!(
            "error reopening /dev/null inside container: open /dev/null: {}",
            os_error(&e)
        )
    })?;
    let same = |a: RawFd, b: RawFd| match (nix::sys::stat::fstat(a), nix::sys::stat::fstat(b)) {
        (Ok(x), Ok(y)) => x.st_dev == y.st_dev && x.st_ino == y.st_ino,
        _ => false,
    };
    if !same(checked.as_raw_fd(), null.as_raw_fd()) {
        return Err("/dev/null in the container changed while it was reopened".into());
    }
    for fd in (0..3).filter(|fd| is_null(*fd)) {
        nix::unistd::dup2(null.as_raw_fd(), fd)
            .map_err(|e| format!("reopen /dev/null as fd {fd}: {e}"))?;
    }
    Ok(())
}

/// Without a mount namespace of its own, a mount on "/" would cover the rootfs in the
/// runtime's mount namespace, over kakuri's rootfs bind, where `delete` does not look for it
/// ([`crate::hostmount`]): refused.
pub fn refuse_root_mounts(mounts: &[MountPlan]) -> R<()> {
    match mounts
        .iter()
        .position(|m| rel(&m.destination).as_os_str().is_empty())
    {
        Some(i) => Err(format!(
            "mounts[{i}].destination: a mount on \"/\" needs a mount namespace of its own"
        )),
        None => Ok(()),
    }
}

/// Parse the mounts of a spec into plans (before forking, so errors come early).
pub fn mount_plans(mounts: &[kakuri_spec::oci::Mount], bundle: &Path) -> R<Vec<MountPlan>> {
    let mut out = Vec::with_capacity(mounts.len());
    for (i, m) in mounts.iter().enumerate() {
        let options = mountopts::parse(m.options().as_deref().unwrap_or(&[]));
        let fstype = m.typ().clone().unwrap_or_default();
        let mut options = options;
        if fstype == "bind" {
            options.flags |= libc::MS_BIND;
        }
        let idmap = crate::idmap::parse(i, m, &options)?;
        let source = m.source().as_ref().map(|s| {
            if options.is_bind() && s.is_relative() {
                bundle.join(s)
            } else {
                s.clone()
            }
        });
        if options.is_bind() {
            match &source {
                None => return Err(format!("mounts[{i}].source: a bind mount needs a source")),
                Some(s) => {
                    if let Err(e) = std::fs::symlink_metadata(s) {
                        return Err(format!("mounts[{i}].source: {s:?}: {}", os_error(&e)));
                    }
                }
            }
        } else if fstype.is_empty() {
            return Err(format!(
                "mounts[{i}].type: required for a mount that is not a bind mount ({:?})",
                m.destination()
            ));
        }
        if !m.destination().is_absolute() {
            return Err(format!(
                "mounts[{i}].destination: {:?} is not an absolute path",
                m.destination()
            ));
        }
        out.push(MountPlan {
            destination: m.destination().clone(),
            source,
            fstype,
            options,
            idmap,
        });
    }
    Ok(out)
}
