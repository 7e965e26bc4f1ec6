//! A client of CRIU's RPC ("swrk") protocol, as runc drives CRIU: `criu swrk <fd>` is started
//! with one end of a `SOCK_SEQPACKET` socket pair, and each datagram on it is one protobuf
//! message (a request from us, a response or notification from CRIU).
//!
//! The messages are encoded and decoded by hand for the handful of fields kakuri uses (field
//! numbers and types as CRIU's protocol defines them), so no protobuf crate and no code
//! generation is needed, and commands other than checkpoint/restore pay nothing.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// Request types (CRIU's `criu_req_type`).
pub const DUMP: u64 = 1;
pub const RESTORE: u64 = 2;
pub const PRE_DUMP: u64 = 4;
pub const NOTIFY: u64 = 6;
pub const FEATURE_CHECK: u64 = 9;
pub const VERSION: u64 = 10;

/// CRIU's `criu_cg_mode` values that runc's `--manage-cgroups-mode` takes.
pub fn cg_mode(s: &str) -> Option<u64> {
    match s {
        "soft" => Some(3),
        "full" => Some(4),
        "strict" => Some(5),
        // runc 1.2's addition: CRIU leaves cgroups alone.
        "ignore" => Some(0),
        _ => None,
    }
}

/// A protobuf encoder (proto2 wire format: varints and length-delimited fields only).
#[derive(Default, Clone, Debug)]
pub struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.0.push(b);
                return;
            }
            self.0.push(b | 0x80);
        }
    }
    /// An integer field (int32/uint32/enum/bool: wire type 0; negative int32 sign-extended).
    pub fn int(&mut self, field: u32, v: i64) -> &mut Self {
        self.varint(u64::from(field) << 3);
        self.varint(v as u64);
        self
    }
    pub fn flag(&mut self, field: u32, v: bool) -> &mut Self {
        self.int(field, i64::from(v))
    }
    pub fn bytes(&mut self, field: u32, b: &[u8]) -> &mut Self {
        self.varint((u64::from(field) << 3) | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(&mut self, field: u32, s: &str) -> &mut Self {
        self.bytes(field, s.as_bytes())
    }
    pub fn msg(&mut self, field: u32, m: &Msg) -> &mut Self {
        self.bytes(field, &m.0)
    }
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// One decoded field: a varint or a length-delimited payload.
#[derive(Debug, Clone, Copy)]
pub enum Field<'a> {
    Int(u64),
    Bytes(&'a [u8]),
}

fn read_varint(b: &[u8], i: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i).ok_or("truncated varint")?;
        *i += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

/// The fields of one message, in order.
pub fn decode(b: &[u8]) -> Result<Vec<(u32, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let key = read_varint(b, &mut i)?;
        let field = (key >> 3) as u32;
        match key & 7 {
            0 => out.push((field, Field::Int(read_varint(b, &mut i)?))),
            1 => i += 8,
            5 => i += 4,
            2 => {
                let n = read_varint(b, &mut i)? as usize;
                let end = i.checked_add(n).filter(|e| *e <= b.len());
                let end = end.ok_or("truncated field")?;
                out.push((field, Field::Bytes(&b[i..end])));
                i = end;
            }
            t => return Err(format!("unsupported wire type {t}")),
        }
    }
    Ok(out)
}

/// CRIU's response (`criu_resp`), the fields kakuri reads.
#[derive(Debug, Default)]
pub struct Response {
    pub typ: u64,
    pub success: bool,
    pub cr_errno: Option<i64>,
    pub cr_errmsg: Option<String>,
    pub restored_pid: Option<i32>,
    pub notify_script: Option<String>,
    pub notify_pid: Option<i32>,
    pub version: Option<(i64, i64, i64)>,
    /// `features.lazy_pages` of a FEATURE_CHECK response.
    pub lazy_pages: Option<bool>,
}

impl Response {
    pub fn parse(b: &[u8]) -> Result<Response, String> {
        let mut r = Response::default();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        for (f, v) in decode(b)? {
            match (f, v) {
                (1, Field::Int(t)) => r.typ = t,
                (2, Field::Int(s)) => r.success = s != 0,
                (7, Field::Int(e)) => r.cr_errno = Some(e as i32 as i64),
                (9, Field::Bytes(s)) => r.cr_errmsg = Some(text(s)),
                (4, Field::Bytes(m)) => {
                    for (f, v) in decode(m)? {
                        if let (1, Field::Int(p)) = (f, v) {
                            r.restored_pid = Some(p as i32);
                        }
                    }
                }
                (5, Field::Bytes(m)) => {
                    for (f, v) in decode(m)? {
                        match (f, v) {
                            (1, Field::Bytes(s)) => r.notify_script = Some(text(s)),
                            (2, Field::Int(p)) => r.notify_pid = Some(p as i32),
                            _ => {}
                        }
                    }
                }
                (10, Field::Bytes(m)) => {
                    let mut v = (0, 0, 0);
                    for (f, x) in decode(m)? {
                        if let Field::Int(n) = x {
                            match f {
                                1 => v.0 = n as i64,
                                2 => v.1 = n as i64,
                                4 => v.2 = n as i64,
                                _ => {}
                            }
                        }
                    }
                    r.version = Some(v);
                }
                (8, Field::Bytes(m)) => {
                    for (f, v) in decode(m)? {
                        if let (2, Field::Int(b)) = (f, v) {
                            r.lazy_pages = Some(b != 0);
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(r)
    }
}

/// A running `criu swrk` and our end of its socket.
pub struct Swrk {
    pub child: Child,
    sock: OwnedFd,
}

/// Make `fd` survive execve (CRIU reads the fds it is given by number).
pub fn inheritable(fd: RawFd) -> Result<(), String> {
    nix::fcntl::fcntl(
        fd,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .map(|_| ())
    .map_err(|e| format!("fcntl: {e}"))
}

impl Swrk {
    /// Start `criu swrk`. `inherit` are fds (ours, made inheritable here) CRIU must see under the
    /// same numbers; they are closed again in this process by the caller.
    pub fn start(criu: &Path, inherit: &[RawFd], stdio_inherit: bool) -> Result<Swrk, String> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| format!("socketpair: {e}"))?;
        inheritable(theirs.as_raw_fd())?;
        for fd in inherit {
            inheritable(*fd)?;
        }
        let mut cmd = Command::new(criu);
        cmd.arg("swrk").arg(theirs.as_raw_fd().to_string());
        if !stdio_inherit {
            cmd.stdin(Stdio::null());
        }
        let child = cmd.spawn().map_err(|e| {
            format!(
                "exec {}: {} (is CRIU installed? see --criu)",
                criu.display(),
                kakuri_spec::os_error(&e)
            )
        })?;
        drop(theirs);
        Ok(Swrk { child, sock: ours })
    }

    pub fn send(&self, m: &Msg) -> Result<(), String> {
        nix::sys::socket::send(
            self.sock.as_raw_fd(),
            m.as_bytes(),
            nix::sys::socket::MsgFlags::empty(),
        )
        .map(|_| ())
        .map_err(|e| format!("send to criu: {e}"))
    }

    /// The next response, and a file descriptor passed with it (orphan-pts-master).
    pub fn recv(&self) -> Result<(Response, Option<OwnedFd>), String> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        use std::os::fd::FromRawFd;
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([RawFd; 1]);
        let (n, fd) = {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                self.sock.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(|e| format!("receive from criu: {e}"))?;
            let mut fd = None;
            for c in msg.cmsgs().map_err(|e| format!("receive from criu: {e}"))? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: the kernel has just installed this fd for us; nobody else owns it.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd)
        };
        if n == 0 {
            return Err("criu closed the connection unexpectedly".into());
        }
        if n == buf.len() {
            return Err("criu's response is too large".into());
        }
        Ok((Response::parse(&buf[..n])?, fd))
    }

    /// Stop talking and reap CRIU; its exit status.
    pub fn finish(mut self) -> std::io::Result<std::process::ExitStatus> {
        let _ =
            nix::sys::socket::shutdown(self.sock.as_raw_fd(), nix::sys::socket::Shutdown::Write);
        self.child.wait()
    }
}

/// Asks CRIU whether it can do lazy pages (FEATURE_CHECK, as runc does before a lazy dump):
/// `Ok(())`, or CRIU's reason it cannot.
pub fn check_lazy_pages(criu: &Path) -> Result<(), String> {
    let mut feat = Msg::default();
    feat.flag(2, true);
    let mut req = Msg::default();
    // criu_req.features is field 5 (criu_resp.features, read back, is field 8).
    req.int(1, FEATURE_CHECK as i64).msg(5, &feat);
    let swrk = Swrk::start(criu, &[], false)?;
    swrk.send(&req)?;
    let got = swrk.recv();
    let _ = swrk.finish();
    let (resp, _) = got?;
    if resp.typ != FEATURE_CHECK {
        return Err(format!(
            "unexpected response type {} to FEATURE_CHECK",
            resp.typ
        ));
    }
    match resp.lazy_pages {
        Some(true) => Ok(()),
        _ => {
            // CRIU's own words on what the kernel lacks.
            let why = Command::new(criu)
                .args(["check", "--feature", "uffd-noncoop"])
                .stdin(Stdio::null())
                .output()
                .map(|o| {
                    let mut t = String::from_utf8_lossy(&o.stdout).into_owned();
                    t.push_str(&String::from_utf8_lossy(&o.stderr));
                    t.trim().replace('\n', "; ")
                })
                .unwrap_or_default();
            Err(format!(
                "CRIU reports no lazy-pages support (userfaultfd with non-cooperative events); \
                 `criu check --feature uffd-noncoop`: {why}"
            ))
        }
    }
}

/// The last error lines of a CRIU log (its own reason for failing).
pub fn log_errors(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("Error (") || l.starts_with("Error"))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let start = lines.len().saturating_sub(6);
    Some(lines[start..].join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut inner = Msg::default();
        inner.str(1, "post-restore").int(2, 4242);
        let mut m = Msg::default();
        m.int(1, NOTIFY as i64)
            .flag(2, true)
            .msg(5, &inner)
            .int(7, -5);
        let r = Response::parse(m.as_bytes()).unwrap();
        assert_eq!(r.typ, NOTIFY);
        assert!(r.success);
        assert_eq!(r.notify_script.as_deref(), Some("post-restore"));
        assert_eq!(r.notify_pid, Some(4242));
        assert_eq!(r.cr_errno, Some(-5));
        assert_eq!(r.lazy_pages, None);
    }

    #[test]
    fn feature_check_response() {
        let mut feat = Msg::default();
        feat.flag(2, true);
        let mut m = Msg::default();
        m.int(1, FEATURE_CHECK as i64).flag(2, true).msg(8, &feat);
        let r = Response::parse(m.as_bytes()).unwrap();
        assert_eq!(r.typ, FEATURE_CHECK);
        assert_eq!(r.lazy_pages, Some(true));
    }

    #[test]
    fn varint_bytes() {
        let mut m = Msg::default();
        m.int(1, 300);
        assert_eq!(m.as_bytes(), &[0x08, 0xac, 0x02]);
        assert!(decode(&[0x08, 0xac]).is_err());
    }
}
