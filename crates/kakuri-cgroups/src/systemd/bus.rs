//! The only D-Bus code of kakuri: a blocking, single-threaded libdbus connection (the `dbus`
//! crate, libdbus built in statically) to systemd's manager object, to start, change and stop
//! the container's transient unit.
//!
//! The connection goes to the system bus, as runc's (go-systemd) does; as root without a bus,
//! to systemd's private socket. In user mode (a rootless caller: [`super::user_mode`]) it goes to
//! the caller's own systemd instance (`user@UID.service`) over the session bus
//! (`$DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`, as runc's user driver), or, without
//! one, over that instance's private socket (`$XDG_RUNTIME_DIR/systemd/private`). That
//! connection is kakuri's own small client ([`RawConn`]; the messages are still built and
//! parsed by libdbus): libdbus always claims the caller's uid in its EXTERNAL authentication,
//! which inside a user namespace (rootless podman runs the runtime as uid 0 in one) is not the
//! uid the bus sees, so the bus refuses it. [`RawConn`] sends EXTERNAL without an identity, and
//! the bus takes the one the kernel reports for the socket (what sd-bus clients such as busctl
//! do; runc instead asks `busctl --user status` for the uid and claims it). (Private socket first saves the dbus-daemon hop and the Hello
//! round trip, but under systemd 252 a fresh private connection made while a scope was
//! emptying often got no answer to its first call within the 25 s timeout.) A job (start, stop) is waited for
//! through its JobRemoved signal, as runc does, for at most [`JOB_TIMEOUT`].

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dbus::arg::{IterAppend, RefArg, Variant};
use dbus::channel::{BusType, Channel};
use dbus::message::MessageType;
use dbus::strings::Path as ObjPath;
use dbus::Message;

use super::{Property, Value};
use crate::error::CgroupError;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PRIVATE_SOCKET: &str = "unix:path=/run/systemd/private";
/// How long one method call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(25);
/// How long a start or stop job may take (runc: 30 s).
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to systemd.
pub(crate) struct Systemd {
    link: Link,
    /// Through a bus (dbus-daemon), not systemd's private socket.
    bus: bool,
}

/// The transport of a [`Systemd`] connection.
enum Link {
    /// libdbus: the system bus or the system manager's private socket.
    Lib(Channel),
    /// kakuri's own client: the user manager.
    Raw(RefCell<RawConn>),
}

fn err(op: &str, unit: &str, e: impl std::fmt::Display) -> CgroupError {
    CgroupError::Systemd {
        op: op.to_string(),
        unit: unit.to_string(),
        reason: e.to_string(),
    }
}

fn dbus_text(e: &dbus::Error) -> String {
    match (e.name(), e.message()) {
        (Some(n), Some(m)) => format!("{n}: {m}"),
        (Some(n), None) => n.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "D-Bus error".into(),
    }
}

fn to_refarg(v: &Value) -> Box<dyn RefArg> {
    match v {
        Value::Bool(b) => Box::new(*b),
        Value::Byte(n) => Box::new(*n),
        Value::I16(n) => Box::new(*n),
        Value::U16(n) => Box::new(*n),
        Value::I32(n) => Box::new(*n),
        Value::U32(n) => Box::new(*n),
        Value::I64(n) => Box::new(*n),
        Value::U64(n) => Box::new(*n),
        Value::F64(n) => Box::new(*n),
        Value::Str(s) => Box::new(s.clone()),
        Value::ObjPath(s) => Box::new(ObjPath::from(s.clone())),
        Value::Bytes(b) => Box::new(b.clone()),
        Value::U32s(v) => Box::new(v.clone()),
        Value::Strs(v) => Box::new(v.clone()),
        Value::StrPairs(v) => Box::new(v.clone()),
    }
}

type DbusProps = Vec<(String, Variant<Box<dyn RefArg>>)>;

fn dbus_props(props: &[Property]) -> DbusProps {
    props
        .iter()
        .map(|(n, v)| (n.clone(), Variant(to_refarg(v))))
        .collect()
}

impl Systemd {
    /// Connect: the system bus (as runc, through go-systemd), else, as root, systemd's private
    /// socket.
    pub(crate) fn connect() -> Result<Systemd, CgroupError> {
        match Channel::get_private(BusType::System) {
            Ok(ch) => {
                log::debug!("systemd: connected to the system bus");
                Ok(Systemd {
                    link: Link::Lib(ch),
                    bus: true,
                })
            }
            // SAFETY: geteuid cannot fail.
            Err(e) if unsafe { libc::geteuid() } == 0 => {
                log::debug!(
                    "system bus: {}; trying systemd's private socket",
                    dbus_text(&e)
                );
                let ch = Channel::open_private(PRIVATE_SOCKET)
                    .map_err(|e| err("connect to", "systemd", dbus_text(&e)))?;
                Ok(Systemd {
                    link: Link::Lib(ch),
                    bus: false,
                })
            }
            Err(e) => Err(err("connect to", "systemd", dbus_text(&e))),
        }
    }

    /// Connect to the caller's own systemd instance (user mode): the session bus
    /// (`$DBUS_SESSION_BUS_ADDRESS`, else `$XDG_RUNTIME_DIR/bus`), else the instance's private
    /// socket `$XDG_RUNTIME_DIR/systemd/private`. The error says what was looked for.
    pub(crate) fn connect_user() -> Result<Systemd, CgroupError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let targets = user_targets(
            env("DBUS_SESSION_BUS_ADDRESS").as_deref(),
            env("XDG_RUNTIME_DIR").as_deref(),
            &|p| p.exists(),
        )
        .map_err(|e| err("connect to", "the systemd user manager", e))?;
        let mut failures = Vec::new();
        for (target, bus) in &targets {
            match RawConn::open(target, *bus) {
                Ok(c) => {
                    log::debug!("systemd: connected to the user manager at {target}");
                    return Ok(Systemd {
                        link: Link::Raw(RefCell::new(c)),
                        bus: *bus,
                    });
                }
                Err(e) => failures.push(format!("{target}: {e}")),
            }
        }
        Err(err(
            "connect to",
            "the systemd user manager",
            format!(
                "{} (is the user manager running? `loginctl enable-linger $USER`, see docs/rootless.md)",
                failures.join("; ")
            ),
        ))
    }

    /// The manager's own cgroup (`ControlGroup`; for a user manager
    /// `/user.slice/user-UID.slice/user@UID.service`), where its slices live.
    pub(crate) fn manager_cgroup(&self) -> Result<String, CgroupError> {
        let mut msg =
            Message::new_method_call(DEST, PATH, "org.freedesktop.DBus.Properties", "Get")
                .map_err(|e| err("query", "the manager", e))?;
        IterAppend::new(&mut msg).append(MANAGER);
        IterAppend::new(&mut msg).append("ControlGroup");
        let reply = self
            .send(msg)
            .map_err(|e| err("query ControlGroup of", "the manager", dbus_text(&e)))?;
        let v: Variant<String> = reply
            .read1()
            .map_err(|e| err("query ControlGroup of", "the manager", e))?;
        Ok(v.0)
    }

    /// Send `msg` and wait for its reply (an error reply is an error).
    fn send(&self, msg: Message) -> Result<Message, dbus::Error> {
        match &self.link {
            Link::Lib(ch) => ch.send_with_reply_and_block(msg, CALL_TIMEOUT),
            Link::Raw(c) => c.borrow_mut().call(msg, CALL_TIMEOUT),
        }
    }

    /// The next message that is not a reply (a signal), waiting at most `timeout`.
    fn next_message(&self, timeout: Duration) -> Result<Option<Message>, dbus::Error> {
        match &self.link {
            Link::Lib(ch) => ch.blocking_pop_message(timeout),
            Link::Raw(c) => c.borrow_mut().pop(timeout),
        }
    }

    fn call(
        &self,
        member: &str,
        append: impl FnOnce(&mut IterAppend),
    ) -> Result<Message, dbus::Error> {
        let mut msg = Message::new_method_call(DEST, PATH, MANAGER, member)
            .map_err(|e| dbus::Error::new_failed(&e))?;
        append(&mut IterAppend::new(&mut msg));
        let t = Instant::now();
        let r = self.send(msg);
        log::debug!(
            "systemd: {member}: {:?} in {:?}",
            r.as_ref().map(drop).map_err(dbus_text),
            t.elapsed()
        );
        r
    }

    /// Ask systemd to send JobRemoved signals to this connection: needed on a bus only
    /// (systemd sends its signals to every direct connection of its private socket).
    fn subscribe(&self) -> Result<(), dbus::Error> {
        if self.bus {
            // On the bus, a match rule routes the signal to us.
            let mut m = Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "AddMatch",
            )
            .map_err(|e| dbus::Error::new_failed(&e))?;
            IterAppend::new(&mut m).append(format!(
                "type='signal',sender='{DEST}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
            ));
            let t = Instant::now();
            let r = self.send(m);
            log::debug!(
                "systemd: AddMatch: {:?} in {:?}",
                r.as_ref().map(drop).map_err(dbus_text),
                t.elapsed()
            );
            r?;
            self.call("Subscribe", |_| {})?;
        }
        Ok(())
    }

    /// Wait for the JobRemoved signal of `job`; returns its result ("done", "failed", ...).
    fn wait_job(&self, job: &ObjPath) -> Result<String, String> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "timed out after {}s waiting for job {job}",
                    JOB_TIMEOUT.as_secs()
                ));
            }
            let Some(msg) = self.next_message(left).map_err(|e| dbus_text(&e))? else {
                continue;
            };
            if msg.msg_type() != MessageType::Signal
                || msg.member().as_deref() != Some("JobRemoved")
            {
                continue;
            }
            if let Ok((_id, path, _unit, result)) = msg.read4::<u32, ObjPath, String, String>() {
                if path == *job {
                    return Ok(result);
                }
            }
        }
    }

    /// StartTransientUnit with `props`, waiting for the job. A unit that exists already is
    /// used as it is (runc).
    pub(crate) fn start_unit(&self, unit: &str, props: &[Property]) -> Result<(), CgroupError> {
        self.subscribe()
            .map_err(|e| err("subscribe to", unit, dbus_text(&e)))?;
        let reply = self.call("StartTransientUnit", |a| {
            a.append(unit);
            a.append("replace");
            a.append(dbus_props(props));
            a.append(Vec::<(String, DbusProps)>::new());
        });
        let reply = match reply {
            Ok(r) => r,
            Err(e) if e.name() == Some("org.freedesktop.systemd1.UnitExists") => {
                log::debug!("unit {unit} exists already: using it");
                return Ok(());
            }
            Err(e) => return Err(err("start", unit, dbus_text(&e))),
        };
        let job: ObjPath = reply
            .read1()
            .map_err(|e| err("start", unit, format!("bad reply: {e}")))?;
        match self.wait_job(&job) {
            Ok(r) if r == "done" => Ok(()),
            Ok(r) => {
                self.reset_failed(unit);
                Err(err("start", unit, format!("the job finished with {r:?}")))
            }
            Err(e) => {
                self.reset_failed(unit);
                Err(err("start", unit, e))
            }
        }
    }

    /// StopUnit, waiting for the job. A unit systemd does not know (any more) is fine.
    pub(crate) fn stop_unit(&self, unit: &str) -> Result<(), CgroupError> {
        self.subscribe()
            .map_err(|e| err("subscribe to", unit, dbus_text(&e)))?;
        let reply = match self.call("StopUnit", |a| {
            a.append(unit);
            a.append("replace");
        }) {
            Ok(r) => r,
            Err(e) if e.name() == Some("org.freedesktop.systemd1.NoSuchUnit") => return Ok(()),
            Err(e) => return Err(err("stop", unit, dbus_text(&e))),
        };
        let job: ObjPath = reply
            .read1()
            .map_err(|e| err("stop", unit, format!("bad reply: {e}")))?;
        match self.wait_job(&job) {
            Ok(r) if r == "done" => {}
            Ok(r) => log::warn!("error removing unit `{unit}`: got `{r}`. Continuing..."),
            Err(e) => return Err(err("stop", unit, e)),
        }
        // A scope whose processes were killed may be left "failed": forget it.
        self.reset_failed(unit);
        Ok(())
    }

    /// SetUnitProperties (runtime) for `update`.
    pub(crate) fn set_properties(&self, unit: &str, props: &[Property]) -> Result<(), CgroupError> {
        if props.is_empty() {
            return Ok(());
        }
        self.call("SetUnitProperties", |a| {
            a.append(unit);
            a.append(true);
            a.append(dbus_props(props));
        })
        .map(drop)
        .map_err(|e| err("set properties of", unit, dbus_text(&e)))
    }

    /// AttachProcessesToUnit: move `pid` into `subcgroup` ("/" for the unit's own cgroup) of
    /// `unit`. A user manager that may not move the process itself asks the system manager.
    pub(crate) fn attach(&self, unit: &str, subcgroup: &str, pid: u32) -> Result<(), CgroupError> {
        self.call("AttachProcessesToUnit", |a| {
            a.append(unit);
            a.append(subcgroup);
            a.append(vec![pid]);
        })
        .map(drop)
        .map_err(|e| err(&format!("attach process {pid} to"), unit, dbus_text(&e)))
    }

    fn reset_failed(&self, unit: &str) {
        if let Err(e) = self.call("ResetFailedUnit", |a| a.append(unit)) {
            if e.name() != Some("org.freedesktop.systemd1.NoSuchUnit") {
                log::debug!("reset-failed {unit}: {}", dbus_text(&e));
            }
        }
    }
}

/// Where a user manager may be reached.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Target {
    /// A socket path.
    Path(PathBuf),
    /// A Linux abstract socket name (`unix:abstract=`).
    Abstract(Vec<u8>),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Path(p) => write!(f, "unix:path={}", p.display()),
            Target::Abstract(n) => write!(f, "unix:abstract={}", String::from_utf8_lossy(n)),
        }
    }
}

/// The sockets to try for the user manager, each with whether it is a bus (else systemd's
/// private socket): the unix entries of `session_address` (`DBUS_SESSION_BUS_ADDRESS`), else
/// `<runtime_dir>/bus`, else `<runtime_dir>/systemd/private`, the last two if they `exist`.
pub(crate) fn user_targets(
    session_address: Option<&str>,
    runtime_dir: Option<&str>,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Vec<(Target, bool)>, String> {
    if let Some(addr) = session_address {
        let targets: Vec<(Target, bool)> =
            parse_address(addr).into_iter().map(|t| (t, true)).collect();
        if targets.is_empty() {
            return Err(format!(
                "DBUS_SESSION_BUS_ADDRESS={addr:?} has no unix:path= or unix:abstract= entry"
            ));
        }
        return Ok(targets);
    }
    let Some(dir) = runtime_dir else {
        return Err("neither DBUS_SESSION_BUS_ADDRESS nor XDG_RUNTIME_DIR is set: no session bus to reach the user's systemd instance".into());
    };
    let bus = Path::new(dir).join("bus");
    let private = Path::new(dir).join("systemd/private");
    let mut out = Vec::new();
    if exists(&bus) {
        out.push((Target::Path(bus.clone()), true));
    }
    if exists(&private) {
        out.push((Target::Path(private.clone()), false));
    }
    if out.is_empty() {
        return Err(format!(
            "DBUS_SESSION_BUS_ADDRESS is not set and neither {} nor {} exists: the user's systemd instance (user@UID.service) is not running (`loginctl enable-linger $USER`) or has no session bus (Debian: dbus-user-session)",
            bus.display(),
            private.display()
        ));
    }
    Ok(out)
}

/// The unix socket entries of a D-Bus address list (`unix:path=/run/user/1000/bus;...`), with
/// `%xx` escapes decoded. Other transports are skipped.
pub(crate) fn parse_address(addr: &str) -> Vec<Target> {
    let mut out = Vec::new();
    for entry in addr.split(';') {
        let Some(params) = entry.trim().strip_prefix("unix:") else {
            continue;
        };
        for kv in params.split(',') {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let v = unescape(v);
            match k {
                "path" => out.push(Target::Path(PathBuf::from(
                    String::from_utf8_lossy(&v).into_owned(),
                ))),
                "abstract" => out.push(Target::Abstract(v)),
                _ => {}
            }
        }
    }
    out
}

fn unescape(v: &str) -> Vec<u8> {
    let b = v.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = (b[i] == b'%')
            .then(|| b.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(x) => {
                out.push(x);
                i += 3;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// A D-Bus connection of kakuri's own on a unix socket (user mode; see the module comment):
/// EXTERNAL authentication without an identity, then libdbus's marshalling over a plain
/// blocking socket. Replies are matched by serial; other messages (signals) are queued.
pub(crate) struct RawConn {
    sock: UnixStream,
    /// Bytes read and not yet parsed into a message.
    buf: Vec<u8>,
    serial: u32,
    queue: VecDeque<Message>,
}

impl RawConn {
    /// Connect, authenticate and, on a bus, say Hello.
    fn open(target: &Target, bus: bool) -> Result<RawConn, String> {
        let sock = match target {
            Target::Path(p) => UnixStream::connect(p).map_err(|e| e.to_string())?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)
                    .map_err(|e| e.to_string())?;
                UnixStream::connect_addr(&addr).map_err(|e| e.to_string())?
            }
        };
        let mut c = RawConn {
            sock,
            buf: Vec::new(),
            serial: 0,
            queue: VecDeque::new(),
        };
        c.auth(Instant::now() + CALL_TIMEOUT)?;
        if bus {
            let hello = Message::new_method_call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
            )?;
            c.call(hello, CALL_TIMEOUT)
                .map_err(|e| format!("Hello: {}", dbus_text(&e)))?;
        }
        Ok(c)
    }

    /// SASL EXTERNAL with an empty authorization identity: the server uses the uid the kernel
    /// gives for the socket (SO_PEERCRED), which is right inside a user namespace too.
    fn auth(&mut self, deadline: Instant) -> Result<(), String> {
        self.sock
            .write_all(b"\0AUTH EXTERNAL\r\n")
            .map_err(|e| format!("authenticate: {e}"))?;
        loop {
            let line = self.read_line(deadline)?;
            if line == "DATA" || line.starts_with("DATA ") {
                // The server asks for the identity: none (take the socket's credentials).
                self.sock
                    .write_all(b"DATA\r\n")
                    .map_err(|e| format!("authenticate: {e}"))?;
            } else if line.starts_with("OK") {
                self.sock
                    .write_all(b"BEGIN\r\n")
                    .map_err(|e| format!("authenticate: {e}"))?;
                return Ok(());
            } else {
                return Err(format!(
                    "authentication (EXTERNAL, uid of the socket) refused: {line:?}"
                ));
            }
        }
    }

    /// One line of the authentication exchange, without its CR LF.
    fn read_line(&mut self, deadline: Instant) -> Result<String, String> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..i]).into_owned();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.buf.len() > 4096 {
                return Err("authenticate: overlong line from the server".into());
            }
            if !self
                .fill(deadline)
                .map_err(|e| format!("authenticate: {e}"))?
            {
                return Err("authenticate: no answer from the server".into());
            }
        }
    }

    /// Read what the socket has into the buffer, waiting until `deadline`; false on timeout.
    fn fill(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        self.sock
            .set_read_timeout(Some(left))
            .map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 8192];
        match self.sock.read(&mut chunk) {
            Ok(0) => Err("the connection was closed".into()),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(true)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                Ok(!deadline.saturating_duration_since(Instant::now()).is_zero())
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next whole message from the socket, or None at `deadline`.
    fn read_message(&mut self, deadline: Instant) -> Result<Option<Message>, dbus::Error> {
        loop {
            if self.buf.len() >= 16 {
                let need = Message::demarshal_bytes_needed(&self.buf)
                    .map_err(|()| dbus::Error::new_failed("D-Bus protocol error (bad header)"))?;
                if self.buf.len() >= need {
                    let msg = Message::demarshal(&self.buf[..need])?;
                    self.buf.drain(..need);
                    return Ok(Some(msg));
                }
            }
            match self.fill(deadline) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err(dbus::Error::new_failed(&e)),
            }
        }
    }

    /// Send `msg`; its serial.
    fn send(&mut self, mut msg: Message) -> Result<u32, dbus::Error> {
        self.serial += 1;
        msg.set_serial(self.serial);
        let mut bytes = Vec::new();
        msg.marshal(|b| {
            bytes.extend_from_slice(b);
            Ok::<(), ()>(())
        })
        .map_err(|()| dbus::Error::new_failed("cannot marshal a D-Bus message"))?;
        self.sock
            .write_all(&bytes)
            .map_err(|e| dbus::Error::new_failed(&e.to_string()))?;
        Ok(self.serial)
    }

    /// Send `msg` and wait for its reply; an error reply is an error.
    fn call(&mut self, msg: Message, timeout: Duration) -> Result<Message, dbus::Error> {
        let serial = self.send(msg)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_message(deadline)? {
                None => {
                    return Err(dbus::Error::new_custom(
                        "org.freedesktop.DBus.Error.NoReply",
                        &format!("no reply within {}s", timeout.as_secs()),
                    ))
                }
                Some(mut m) if m.get_reply_serial() == Some(serial) => {
                    m.as_result()?;
                    return Ok(m);
                }
                Some(m) => self.queue.push_back(m),
            }
        }
    }

    /// The next queued or incoming message, waiting at most `timeout`.
    fn pop(&mut self, timeout: Duration) -> Result<Option<Message>, dbus::Error> {
        if let Some(m) = self.queue.pop_front() {
            return Ok(Some(m));
        }
        self.read_message(Instant::now() + timeout)
    }
}
