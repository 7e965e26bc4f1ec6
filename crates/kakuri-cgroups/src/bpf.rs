//! Loading and attaching the cgroup v2 device program with the bpf(2) syscall (no libbpf).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::devices::{Insn, Program};
use crate::error::CgroupError;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// union bpf_attr, large enough for the commands used here (the kernel zero-fills the rest).
#[repr(C, align(8))]
struct Attr([u8; 128]);

impl Default for Attr {
    fn default() -> Self {
        Attr([0; 128])
    }
}

impl Attr {
    fn u32_at(&mut self, off: usize, v: u32) {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn u64_at(&mut self, off: usize, v: u64) {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.0[off..off + 4].try_into().expect("4 bytes"))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, writable 128-byte union bpf_attr buffer that lives for the whole call; the
    // pointers stored inside it (instructions, license, log, id array) are kept alive by the callers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>(),
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_from(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this new file descriptor to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

/// Load `prog` into the kernel. On a verifier error the verifier log is returned with the error.
pub(crate) fn load(prog: &Program) -> Result<OwnedFd, (io::Error, String)> {
    let license = CString::new("Apache").expect("no NUL");
    let insns: &[Insn] = &prog.insns;
    let mut attr = Attr::default();
    attr.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE);
    attr.u32_at(4, insns.len() as u32);
    attr.u64_at(8, insns.as_ptr() as u64);
    attr.u64_at(16, license.as_ptr() as u64);
    attr.0[48..48 + 13].copy_from_slice(b"kakuri_device");
    attr.u32_at(68, BPF_CGROUP_DEVICE);
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd_from(fd)),
        Err(e) => {
            // Retry with a verifier log to explain the failure.
            let mut log = vec![0u8; 64 * 1024];
            let mut attr = Attr::default();
            attr.u32_at(0, BPF_PROG_TYPE_CGROUP_DEVICE);
            attr.u32_at(4, insns.len() as u32);
            attr.u64_at(8, insns.as_ptr() as u64);
            attr.u64_at(16, license.as_ptr() as u64);
            attr.u32_at(24, 1);
            attr.u32_at(28, log.len() as u32);
            attr.u64_at(32, log.as_mut_ptr() as u64);
            attr.u32_at(68, BPF_CGROUP_DEVICE);
            let _ = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
        }
    }
}

/// Ids and attach flags of the device programs attached to the cgroup open at `cg`.
pub(crate) fn query(cg: &File) -> io::Result<(Vec<u32>, u32)> {
    let mut ids = vec![0u32; 64];
    let mut attr = Attr::default();
    attr.u32_at(0, cg.as_raw_fd() as u32);
    attr.u32_at(4, BPF_CGROUP_DEVICE);
    attr.u64_at(16, ids.as_mut_ptr() as u64);
    attr.u32_at(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut attr)?;
    let flags = attr.get_u32(12);
    let cnt = attr.get_u32(24) as usize;
    ids.truncate(cnt.min(64));
    Ok((ids, flags))
}

fn open_cgroup(dir: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
}

/// Attach `prog` to the cgroup `dir` as its device filter, replacing the device programs attached before
/// (they are detached only after the new one is in place, so there is no window without a filter).
pub(crate) fn replace_device_program(dir: &Path, prog: &Program) -> Result<(), CgroupError> {
    let err = |op: &'static str, e: io::Error| CgroupError::Bpf {
        op,
        path: dir.to_path_buf(),
        source: e,
        log: String::new(),
    };
    let cg = open_cgroup(dir).map_err(|e| err("open the cgroup for", e))?;
    let (old, old_flags) = query(&cg).map_err(|e| err("query", e))?;
    let fd = load(prog).map_err(|(e, log)| CgroupError::Bpf {
        op: "load",
        path: dir.to_path_buf(),
        source: e,
        log: if log.is_empty() {
            log
        } else {
            format!(" (verifier: {log})")
        },
    })?;
    // A program attached without ALLOW_MULTI is replaced by attaching with the same (no) flags.
    let exclusive = !old.is_empty() && old_flags & BPF_F_ALLOW_MULTI == 0;
    let mut attr = Attr::default();
    attr.u32_at(0, cg.as_raw_fd() as u32);
    attr.u32_at(4, fd.as_raw_fd() as u32);
    attr.u32_at(8, BPF_CGROUP_DEVICE);
    attr.u32_at(12, if exclusive { 0 } else { BPF_F_ALLOW_MULTI });
    bpf(BPF_PROG_ATTACH, &mut attr).map_err(|e| err("attach", e))?;
    if exclusive {
        return Ok(());
    }
    for id in old {
        let mut a = Attr::default();
        a.u32_at(0, id);
        let old_fd = match bpf(BPF_PROG_GET_FD_BY_ID, &mut a) {
            Ok(fd) => fd_from(fd),
            // Already gone.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
            Err(e) => return Err(err("get the old", e)),
        };
        let mut d = Attr::default();
        d.u32_at(0, cg.as_raw_fd() as u32);
        d.u32_at(4, old_fd.as_raw_fd() as u32);
        d.u32_at(8, BPF_CGROUP_DEVICE);
        match bpf(BPF_PROG_DETACH, &mut d) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(err("detach the old", e)),
        }
    }
    Ok(())
}
