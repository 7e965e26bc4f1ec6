//! The rootfs of a container that has no mount namespace of its own.
//!
//! When `linux.namespaces` has no `mount` entry, runtime-spec says the container inherits the
//! runtime's mount namespace. Its rootfs, its `mounts`, devices and masked paths are then made
//! in that namespace, where everyone sees them. kakuri keeps them contained and removable:
//!
//! - before the clone, the runtime bind-mounts the rootfs onto itself and makes that bind
//!   private (or gives it `linux.rootfsPropagation`), so the container's mounts below it do not
//!   propagate to other mount namespaces;
//! - the container's init mounts under that bind and `chroot`s into it (pivot_root would change
//!   the root of every process of the namespace);
//! - `delete` (and a failed `create`) detaches the bind, which takes every mount under it along.
//!
//! The bind is recognised by its parent: the state records the id of the mount that held the
//! rootfs path *before* the bind (written before the bind is made, so a `create` killed at any
//! point can still be cleaned up), and only a mount on the rootfs path whose parent is that
//! mount is detached. A user's own mount on the rootfs (an overlay from containerd, say) is
//! never touched.

use std::path::Path;

use kakuri_spec::os_error;

use crate::sys;

/// The id of the mount `path` resolves to (`statx(STATX_MNT_ID)`, as in /proc/self/mountinfo).
pub fn mount_id(path: &Path) -> std::io::Result<u64> {
    let c = sys::cstr(path)?;
    // SAFETY: statx is plain data; all-zero is a valid value.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a valid out pointer for the duration of the call.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_STATX_SYNC_AS_STAT,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        // Linux < 5.8.
        return Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(stx.stx_mnt_id)
}

/// The parent mount id of mount `id` in this process's mount namespace.
fn parent_of(id: u64) -> std::io::Result<Option<u64>> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().find_map(|l| {
        let mut f = l.split(' ');
        let me: u64 = f.next()?.parse().ok()?;
        let parent: u64 = f.next()?.parse().ok()?;
        (me == id).then_some(parent)
    }))
}

/// Whether mount `id` of this process's mount namespace is shared (`shared:N` in mountinfo).
fn mount_is_shared(id: u64) -> std::io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().any(|l| {
        let fields = l.split(" - ").next().unwrap_or("");
        fields.split(' ').next().and_then(|f| f.parse::<u64>().ok()) == Some(id)
            && fields.split(' ').skip(6).any(|f| f.starts_with("shared:"))
    }))
}

/// Before the bind: the id of the mount that holds `rootfs` now (what the state records).
pub fn holder(rootfs: &Path) -> Result<u64, String> {
    mount_id(rootfs).map_err(|e| {
        format!(
            "linux.namespaces: no mount namespace: find the mount of rootfs {rootfs:?}: {}",
            os_error(&e)
        )
    })
}

/// Bind the rootfs onto itself, recursively, with `propagation` (default: rprivate).
pub fn bind(rootfs: &Path, propagation: Option<libc::c_ulong>) -> Result<(), String> {
    sys::mount(
        Some(rootfs),
        rootfs,
        None,
        libc::MS_BIND | libc::MS_REC,
        None,
    )
    .map_err(|e| format!("bind rootfs {rootfs:?}: {}", os_error(&e)))?;
    let prop = propagation.unwrap_or(libc::MS_PRIVATE | libc::MS_REC);
    if let Err(e) = sys::mount(None, rootfs, None, prop, None) {
        let _ = sys::umount2(rootfs, libc::MNT_DETACH);
        return Err(format!(
            "linux.rootfsPropagation: on the rootfs bind {rootfs:?}: {}",
            os_error(&e)
        ));
    }
    Ok(())
}

/// Detach kakuri's bind of `rootfs` (and every mount under it) if it is still there: the mount
/// at `rootfs` whose parent is `holder`. Returns whether something was unmounted.
pub fn release(rootfs: &Path, holder: u64) -> Result<bool, String> {
    let top = match mount_id(rootfs) {
        Ok(id) => id,
        // The rootfs is gone, or not reachable from this mount namespace: nothing of ours.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(false),
        Err(e) => {
            return Err(format!(
                "find the mount of rootfs {rootfs:?}: {}",
                os_error(&e)
            ))
        }
    };
    if top == holder {
        return Ok(false);
    }
    let parent = parent_of(top).map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    if parent != Some(holder) {
        log::debug!("the mount on {rootfs:?} is not kakuri's rootfs bind: left alone");
        return Ok(false);
    }
    // An unmount propagates to the peers of the unmounted mount's parent. A mount of the
    // container can be such a parent: an rbind of a volume that sits on a shared host mount is
    // a peer of that mount, and detaching it with the tree would unmount the host's own
    // submounts of the volume. Made private first, the mounts under the bind take nothing
    // along; the bind itself still leaves the peers of its holder (its parent). A bind that
    // is shared (rootfsPropagation shared/rshared) propagated the container's mounts out, and
    // only the propagated unmount takes those copies away again: it is left as it is.
    let shared = mount_is_shared(top).map_err(|e| format!("read /proc/self/mountinfo: {e}"))?;
    if !shared {
        sys::mount(None, rootfs, None, libc::MS_PRIVATE | libc::MS_REC, None)
            .map_err(|e| format!("make rootfs bind {rootfs:?} private: {}", os_error(&e)))?;
    }
    sys::umount2(rootfs, libc::MNT_DETACH)
        .map_err(|e| format!("unmount rootfs bind {rootfs:?}: {}", os_error(&e)))?;
    Ok(true)
}
