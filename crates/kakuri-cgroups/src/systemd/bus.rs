//! The only D-Bus code of kakuri: a blocking, single-threaded libdbus connection (the `dbus`
//! crate, libdbus built in statically) to systemd's manager object, to start, change and stop
//! the container's transient unit.
//!
//! The connection goes to the system bus, as runc's (go-systemd) does; as root without a bus,
//! to systemd's private socket. (Private socket first saves the dbus-daemon hop and the Hello
//! round trip, but under systemd 252 a fresh private connection made while a scope was
//! emptying often got no answer to its first call within the 25 s timeout.) A job (start, stop) is waited for
//! through its JobRemoved signal, as runc does, for at most [`JOB_TIMEOUT`].

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
    ch: Channel,
    /// Through the system bus (dbus-daemon), not systemd's private socket.
    bus: bool,
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
                Ok(Systemd { ch, bus: true })
            }
            // SAFETY: geteuid cannot fail.
            Err(e) if unsafe { libc::geteuid() } == 0 => {
                log::debug!(
                    "system bus: {}; trying systemd's private socket",
                    dbus_text(&e)
                );
                let ch = Channel::open_private(PRIVATE_SOCKET)
                    .map_err(|e| err("connect to", "systemd", dbus_text(&e)))?;
                Ok(Systemd { ch, bus: false })
            }
            Err(e) => Err(err("connect to", "systemd", dbus_text(&e))),
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
        let r = self.ch.send_with_reply_and_block(msg, CALL_TIMEOUT);
        log::debug!(
            "systemd: {member}: {:?} in {:?}",
            r.as_ref().map(drop).map_err(dbus_text),
            t.elapsed()
        );
        r
    }

    /// Ask systemd to send JobRemoved signals to this connection: needed on the bus only
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
            let r = self.ch.send_with_reply_and_block(m, CALL_TIMEOUT);
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
            let Some(msg) = self
                .ch
                .blocking_pop_message(left)
                .map_err(|e| dbus_text(&e))?
            else {
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

    fn reset_failed(&self, unit: &str) {
        if let Err(e) = self.call("ResetFailedUnit", |a| a.append(unit)) {
            if e.name() != Some("org.freedesktop.systemd1.NoSuchUnit") {
                log::debug!("reset-failed {unit}: {}", dbus_text(&e));
            }
        }
    }
}
