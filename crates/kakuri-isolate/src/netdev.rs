//! `linux.netDevices`: host network links moved (and renamed) into the container's network
//! namespace by the runtime once the init exists, with one `RTM_NEWLINK` each (move and rename
//! in the same request, as runc does, so the new name never clashes on the host).
//!
//! Nothing is moved back on `delete`: runtime-spec leaves that to the kernel, which returns a
//! physical device to the host's namespace when the container's namespace goes away and
//! destroys a virtual one (veth, dummy, ...), as with runc. A failed `create` kills the init,
//! so its namespace goes away the same way.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kakuri_spec::{oci, os_error};

/// One device to move: its name on the host and in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    pub host_name: String,
    pub name: String,
}

/// runc's rule for a link name: 1 to 15 bytes (IFNAMSIZ with its NUL), not `.`/`..`, no `/`,
/// `:` or space.
fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() < libc::IFNAMSIZ
        && n != "."
        && n != ".."
        && !n.contains(['/', ':', ' '])
}

/// Check `linux.netDevices` before anything is made: names valid, a network namespace other
/// than the runtime's (`has_netns`), not rootless, and each device present on the host.
pub fn plan(
    devs: &std::collections::HashMap<String, oci::LinuxNetDevice>,
    has_netns: bool,
    rootless: bool,
) -> Result<Vec<NetDevice>, String> {
    if devs.is_empty() {
        return Ok(Vec::new());
    }
    if !has_netns {
        return Err(
            "linux.netDevices: unable to move network devices without a network namespace of the container's own (add a \"network\" namespace)".into(),
        );
    }
    if rootless {
        return Err(
            "linux.netDevices: network devices are not supported for rootless containers".into(),
        );
    }
    let mut out: Vec<NetDevice> = Vec::new();
    for (host, d) in devs {
        let field = format!("linux.netDevices[{host:?}]");
        if !valid_name(host) {
            return Err(format!("{field}: invalid network device name {host:?}"));
        }
        let name = d
            .name()
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| host.clone());
        if !valid_name(&name) {
            return Err(format!(
                "{field}.name: invalid network device name {name:?}"
            ));
        }
        if out.iter().any(|o| o.name == name) {
            return Err(format!("{field}.name: {name:?} is given to two devices"));
        }
        index_of(host)
            .map_err(|e| format!("{field}: no device {host:?} on the host: {}", os_error(&e)))?;
        out.push(NetDevice {
            host_name: host.clone(),
            name,
        });
    }
    out.sort_by(|a, b| a.host_name.cmp(&b.host_name));
    Ok(out)
}

fn index_of(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `c` is a NUL-terminated string valid for the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(i)
}

/// Move each device into the network namespace of process `pid` (host pid), renamed, as
/// runc main does: the link is set down, moved and renamed in one request, its permanent
/// global addresses (which the move flushes) are added again in the container's namespace,
/// and it is set up there.
pub fn move_into(pid: i32, devs: &[NetDevice]) -> Result<(), String> {
    if devs.is_empty() {
        return Ok(());
    }
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
        format!(
            "linux.netDevices: open /proc/{pid}/ns/net: {}",
            os_error(&e)
        )
    })?;
    let sock = route_socket()
        .map_err(|e| format!("linux.netDevices: netlink socket: {}", os_error(&e)))?;
    let mut seq = 0u32;
    let mut next = || {
        seq += 1;
        seq
    };
    let mut readd: Vec<(&NetDevice, Vec<Addr>)> = Vec::new();
    for d in devs {
        let field = format!("linux.netDevices[{:?}]", d.host_name);
        let fail = |what: &str, e: io::Error| format!("{field}: {what}: {}", os_error(&e));
        let index = index_of(&d.host_name)
            .map_err(|e| fail(&format!("no device {:?} on the host", d.host_name), e))?;
        let addrs = addresses(&sock, next(), index).map_err(|e| fail("list its addresses", e))?;
        request(&sock, &setlink(next(), index, false)).map_err(|e| fail("set it down", e))?;
        request(&sock, &newlink_move(next(), index, &d.name, ns.as_raw_fd())).map_err(|e| {
            fail(
                &format!(
                    "move {:?} into the container's network namespace as {:?}",
                    d.host_name, d.name
                ),
                e,
            )
        })?;
        readd.push((d, addrs));
    }
    // The rest is done from inside the container's namespace (a netlink socket belongs to the
    // namespace it was made in), and the runtime goes back to its own at once.
    let own = std::fs::File::open("/proc/self/ns/net")
        .map_err(|e| format!("linux.netDevices: open /proc/self/ns/net: {}", os_error(&e)))?;
    crate::sys::setns(std::os::fd::AsFd::as_fd(&ns), libc::CLONE_NEWNET)
        .map_err(|e| format!("linux.netDevices: setns: {}", os_error(&e)))?;
    let r = (|| {
        let inner = route_socket()
            .map_err(|e| format!("linux.netDevices: netlink socket: {}", os_error(&e)))?;
        for (d, addrs) in &readd {
            let field = format!("linux.netDevices[{:?}]", d.host_name);
            let fail = |what: &str, e: io::Error| format!("{field}: {what}: {}", os_error(&e));
            let index = index_of(&d.name)
                .map_err(|e| fail(&format!("{:?} in the container", d.name), e))?;
            for a in addrs {
                request(&inner, &a.newaddr(next(), index))
                    .map_err(|e| fail(&format!("add address {}", a.show()), e))?;
            }
            request(&inner, &setlink(next(), index, true))
                .map_err(|e| fail(&format!("set {:?} up", d.name), e))?;
        }
        Ok(())
    })();
    crate::sys::setns(std::os::fd::AsFd::as_fd(&own), libc::CLONE_NEWNET).map_err(|e| {
        format!(
            "linux.netDevices: return to the runtime's network namespace: {}",
            os_error(&e)
        )
    })?;
    r
}

/// A permanent, global address of a link (what runc main carries over).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Addr {
    family: u8,
    prefix: u8,
    addr: Vec<u8>,
}

impl Addr {
    fn show(&self) -> String {
        let ip: Option<std::net::IpAddr> = match self.addr.len() {
            4 => <[u8; 4]>::try_from(&self.addr[..]).ok().map(Into::into),
            16 => <[u8; 16]>::try_from(&self.addr[..]).ok().map(Into::into),
            _ => None,
        };
        ip.map_or_else(|| "?".into(), |ip| format!("{ip}/{}", self.prefix))
    }

    /// `RTM_NEWADDR` of this address on link `index`, with IFA_LOCAL/IFA_ADDRESS and, for
    /// IPv4 with a prefix below 31, the broadcast address (as the netlink library runc uses).
    fn newaddr(&self, seq: u32, index: u32) -> Vec<u8> {
        let mut body = vec![self.family, self.prefix, 0, 0];
        body.extend_from_slice(&index.to_ne_bytes());
        push_attr(&mut body, IFA_LOCAL, &self.addr);
        push_attr(&mut body, IFA_ADDRESS, &self.addr);
        if self.addr.len() == 4 && self.prefix < 31 {
            let ip = u32::from_be_bytes(self.addr[..4].try_into().expect("4 bytes"));
            let host = u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0);
            push_attr(&mut body, IFA_BROADCAST, &(ip | host).to_be_bytes());
        }
        let flags = libc::NLM_F_REQUEST | libc::NLM_F_ACK | libc::NLM_F_CREATE | libc::NLM_F_EXCL;
        nlmsg(libc::RTM_NEWADDR, flags as u16, seq, &body)
    }
}

const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const IFA_FLAGS: u16 = 8;
const IFA_F_PERMANENT: u32 = 0x80;

fn route_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn push_attr(buf: &mut Vec<u8>, typ: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&typ.to_ne_bytes());
    buf.extend_from_slice(payload);
    while buf.len() % 4 != 0 {
        buf.push(0);
    }
}

/// A netlink message: header, then `body` (already padded).
fn nlmsg(typ: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&typ.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// `struct ifinfomsg` for link `index` with these flags and change mask.
fn ifinfo(index: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0];
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&(index as i32).to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

const REQ_ACK: u16 = (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;

/// `RTM_NEWLINK` setting link `index` up or down.
fn setlink(seq: u32, index: u32, up: bool) -> Vec<u8> {
    let iff_up = libc::IFF_UP as u32;
    let body = ifinfo(index, if up { iff_up } else { 0 }, iff_up);
    nlmsg(libc::RTM_NEWLINK, REQ_ACK, seq, &body)
}

/// `RTM_NEWLINK` for link `index` with `IFLA_IFNAME` and `IFLA_NET_NS_FD`.
fn newlink_move(seq: u32, index: u32, name: &str, ns_fd: i32) -> Vec<u8> {
    let mut body = ifinfo(index, 0, 0);
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    push_attr(&mut body, libc::IFLA_IFNAME, &n);
    push_attr(
        &mut body,
        libc::IFLA_NET_NS_FD,
        &(ns_fd as u32).to_ne_bytes(),
    );
    nlmsg(libc::RTM_NEWLINK, REQ_ACK, seq, &body)
}

fn send(sock: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: `msg` is valid for its length; an unbound netlink socket sends to the kernel.
    let r = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Read replies to `seq`, giving each message's type and payload to `f`, until an ack
/// (`NLMSG_ERROR`) or `NLMSG_DONE`.
fn replies(sock: &OwnedFd, seq: u32, mut f: impl FnMut(u16, &[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        let n = n as usize;
        let mut off = 0usize;
        while off + 16 <= n {
            let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4")) as usize;
            let typ = u16::from_ne_bytes(buf[off + 4..off + 6].try_into().expect("2"));
            let mseq = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().expect("4"));
            if len < 16 || off + len > n {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short netlink message",
                ));
            }
            if mseq == seq {
                if typ == libc::NLMSG_ERROR as u16 && len >= 20 {
                    let err = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4"));
                    return if err == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-err))
                    };
                }
                if typ == libc::NLMSG_DONE as u16 {
                    return Ok(());
                }
                f(typ, &buf[off + 16..off + len]);
            }
            off += (len + 3) & !3;
        }
    }
}

/// Send one request and wait for its ack.
fn request(sock: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    send(sock, msg)?;
    let seq = u32::from_ne_bytes(msg[8..12].try_into().expect("4 bytes"));
    replies(sock, seq, |_, _| {})
}

/// The permanent, global-scope addresses of link `index`.
fn addresses(sock: &OwnedFd, seq: u32, index: u32) -> io::Result<Vec<Addr>> {
    let body = [libc::AF_UNSPEC as u8, 0, 0, 0, 0, 0, 0, 0];
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    send(sock, &nlmsg(libc::RTM_GETADDR, flags, seq, &body))?;
    let mut out = Vec::new();
    replies(sock, seq, |typ, p| {
        if let Some(a) = parse_addr(typ, p, index) {
            out.push(a);
        }
    })?;
    Ok(out)
}

/// An `RTM_NEWADDR` payload (ifaddrmsg and attributes), if it is a permanent global address
/// of link `index`.
fn parse_addr(typ: u16, p: &[u8], index: u32) -> Option<Addr> {
    if typ != libc::RTM_NEWADDR || p.len() < 8 {
        return None;
    }
    let (family, prefix, flags8, scope) = (p[0], p[1], p[2], p[3]);
    let idx = u32::from_ne_bytes(p[4..8].try_into().ok()?);
    if idx != index || scope != 0 {
        return None;
    }
    let mut flags = u32::from(flags8);
    let (mut local, mut address) = (None, None);
    let mut off = 8;
    while off + 4 <= p.len() {
        let len = usize::from(u16::from_ne_bytes(p[off..off + 2].try_into().ok()?));
        let typ = u16::from_ne_bytes(p[off + 2..off + 4].try_into().ok()?);
        if len < 4 || off + len > p.len() {
            break;
        }
        let v = &p[off + 4..off + len];
        match typ {
            IFA_LOCAL => local = Some(v.to_vec()),
            IFA_ADDRESS => address = Some(v.to_vec()),
            IFA_FLAGS if v.len() >= 4 => flags = u32::from_ne_bytes(v[..4].try_into().ok()?),
            _ => {}
        }
        off += (len + 3) & !3;
    }
    if flags & IFA_F_PERMANENT == 0 {
        return None;
    }
    Some(Addr {
        family,
        prefix,
        addr: local.or(address)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("eth0"));
        assert!(valid_name("a23456789012345"));
        assert!(!valid_name("a234567890123456"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(".."));
        assert!(!valid_name(""));
    }

    #[test]
    fn addresses_parsed_and_rebuilt() {
        // ifaddrmsg: AF_INET, /24, no flags, scope universe, index 7; IFA_LOCAL, IFA_FLAGS.
        let mut p = vec![libc::AF_INET as u8, 24, 0, 0];
        p.extend_from_slice(&7u32.to_ne_bytes());
        push_attr(&mut p, IFA_LOCAL, &[10, 1, 2, 3]);
        push_attr(&mut p, IFA_FLAGS, &IFA_F_PERMANENT.to_ne_bytes());
        let a = parse_addr(libc::RTM_NEWADDR, &p, 7).expect("permanent global address");
        assert_eq!(a.show(), "10.1.2.3/24");
        assert!(parse_addr(libc::RTM_NEWADDR, &p, 8).is_none());
        // Not permanent (a dynamic address): left behind, as runc.
        let mut q = p[..8].to_vec();
        push_attr(&mut q, IFA_LOCAL, &[10, 1, 2, 3]);
        assert!(parse_addr(libc::RTM_NEWADDR, &q, 7).is_none());
        // Link scope: left behind.
        let mut r = p.clone();
        r[3] = 253;
        assert!(parse_addr(libc::RTM_NEWADDR, &r, 7).is_none());
        let m = a.newaddr(5, 9);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), libc::RTM_NEWADDR);
        assert_eq!(u32::from_ne_bytes(m[20..24].try_into().unwrap()), 9);
        // The broadcast address comes last.
        assert_eq!(&m[m.len() - 4..], &[10, 1, 2, 255]);
    }

    #[test]
    fn refused_without_netns() {
        let mut m = std::collections::HashMap::new();
        m.insert("lo".to_string(), oci::LinuxNetDevice::default());
        let e = plan(&m, false, false).unwrap_err();
        assert!(e.starts_with("linux.netDevices: "), "{e}");
        let e = plan(&m, true, true).unwrap_err();
        assert!(e.contains("rootless"), "{e}");
        m.clear();
        m.insert(
            "kakuri-nonexistent0".chars().take(15).collect(),
            oci::LinuxNetDevice::default(),
        );
        let e = plan(&m, true, false).unwrap_err();
        assert!(e.contains("no device"), "{e}");
    }
}
