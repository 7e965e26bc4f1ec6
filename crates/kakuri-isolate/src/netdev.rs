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

/// Move each device into the network namespace of process `pid` (host pid), renamed.
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
    for (seq, d) in devs.iter().enumerate() {
        let field = format!("linux.netDevices[{:?}]", d.host_name);
        let index = index_of(&d.host_name).map_err(|e| {
            format!(
                "{field}: no device {:?} on the host: {}",
                d.host_name,
                os_error(&e)
            )
        })?;
        let msg = newlink_move(seq as u32 + 1, index, &d.name, ns.as_raw_fd());
        request(&sock, &msg).map_err(|e| {
            format!(
                "{field}: move {:?} into the container's network namespace as {:?}: {}",
                d.host_name,
                d.name,
                os_error(&e)
            )
        })?;
    }
    Ok(())
}

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

/// `RTM_NEWLINK` for link `index` with `IFLA_IFNAME` and `IFLA_NET_NS_FD`, asking for an ack.
fn newlink_move(seq: u32, index: u32, name: &str, ns_fd: i32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    // struct nlmsghdr: len (patched below), type, flags, seq, pid.
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&libc::RTM_NEWLINK.to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // struct ifinfomsg: family, pad, type, index, flags, change.
    m.push(libc::AF_UNSPEC as u8);
    m.push(0);
    m.extend_from_slice(&0u16.to_ne_bytes());
    m.extend_from_slice(&(index as i32).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    let mut n = name.as_bytes().to_vec();
    n.push(0);
    push_attr(&mut m, libc::IFLA_IFNAME, &n);
    push_attr(&mut m, libc::IFLA_NET_NS_FD, &(ns_fd as u32).to_ne_bytes());
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// Send one request and read its ack (`NLMSG_ERROR`, error 0 on success).
fn request(sock: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: `msg` is valid for its length; the socket is a netlink socket (kernel is the
    // default destination of an unbound, unconnected netlink socket's send).
    let r = unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let seq = u32::from_ne_bytes(msg[8..12].try_into().expect("4 bytes"));
    let mut buf = vec![0u8; 8192];
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
        let mut off = 0usize;
        let n = n as usize;
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
            if typ == libc::NLMSG_ERROR as u16 && mseq == seq && len >= 20 {
                let err = i32::from_ne_bytes(buf[off + 16..off + 20].try_into().expect("4"));
                return if err == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(-err))
                };
            }
            off += (len + 3) & !3;
        }
    }
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
