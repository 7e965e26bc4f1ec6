//! A per-phase timeline of one kakuri command (`--timings`, `KAKURI_TIMINGS`, `--debug`).
//!
//! Each [`mark`] ends a phase of the calling process: the phase ran from the previous mark of
//! that process (or from the start of the command) until now. A forked container init or exec'd
//! process inherits the timeline, calls [`child`] and sends what it recorded to the runtime
//! ([`unsent`] / [`absorb`]); the timestamps are raw `CLOCK_MONOTONIC` nanoseconds, which every
//! process on the host shares (a new time namespace with a monotonic offset would shift them:
//! kakuri never sets one unless the config asks).
//!
//! Off (the default) it costs one relaxed atomic load per mark: no allocation, no system call,
//! no page of the record buffer touched (it sits in `.bss`). On, a mark is one vDSO clock read
//! and a copy into a fixed buffer of [`CAPACITY`] records; marks beyond it are counted, not
//! kept.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How many phases one command keeps (a `run` of a typical config records about 60).
pub const CAPACITY: usize = 256;
/// Longest phase name kept (longer names are cut at a character boundary).
const NAME_MAX: usize = 46;
/// The environment variable that carries the timeline across the runtime's re-execution of
/// itself from a read-only view of its binary (removed at once by the re-executed process).
pub const CARRY_ENV: &str = "_KAKURI_TIMINGS_CARRY";
/// Marks the timeline frame an init writes into the exec status fifo ahead of any error text.
pub const FRAME_MAGIC: &[u8] = b"\0KAKURI-TIMINGS\0";

static ENABLED: AtomicBool = AtomicBool::new(false);
static LINE: Mutex<Timeline> = Mutex::new(Timeline::new());

/// Which process recorded a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Process {
    /// The kakuri command itself.
    Runtime = 0,
    /// A container's init (from the clone to the execve of the user program).
    Init = 1,
    /// The process of `kakuri exec` (from the fork to its execve).
    Exec = 2,
    /// The intermediate process of a container that joins a user namespace by path.
    Intermediate = 3,
}

impl Process {
    pub fn name(self) -> &'static str {
        match self {
            Process::Runtime => "kakuri",
            Process::Init => "init",
            Process::Exec => "exec",
            Process::Intermediate => "intermediate",
        }
    }

    fn from_u8(b: u8) -> Option<Process> {
        Some(match b {
            0 => Process::Runtime,
            1 => Process::Init,
            2 => Process::Exec,
            3 => Process::Intermediate,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy)]
struct Rec {
    process: u8,
    len: u8,
    name: [u8; NAME_MAX],
    start: u64,
    end: u64,
}

const EMPTY: Rec = Rec {
    process: 0,
    len: 0,
    name: [0; NAME_MAX],
    start: 0,
    end: 0,
};

struct Timeline {
    origin: u64,
    last: u64,
    process: Process,
    len: usize,
    /// Records before this index were sent to the runtime already (or are the runtime's own,
    /// inherited by a child).
    sent: usize,
    dropped: usize,
    recs: [Rec; CAPACITY],
}

impl Timeline {
    const fn new() -> Timeline {
        Timeline {
            origin: 0,
            last: 0,
            process: Process::Runtime,
            len: 0,
            sent: 0,
            dropped: 0,
            recs: [EMPTY; CAPACITY],
        }
    }

    fn push(&mut self, process: Process, parts: &[&str], start: u64, end: u64) {
        if self.len == CAPACITY {
            self.dropped += 1;
            return;
        }
        let r = &mut self.recs[self.len];
        r.process = process as u8;
        r.start = start;
        r.end = end;
        let mut n = 0;
        'parts: for p in parts {
            for (i, c) in p.char_indices() {
                let w = c.len_utf8();
                if n + w > NAME_MAX {
                    break 'parts;
                }
                r.name[n..n + w].copy_from_slice(&p.as_bytes()[i..i + w]);
                n += w;
            }
        }
        r.len = n as u8;
        self.len += 1;
    }
}

fn line() -> MutexGuard<'static, Timeline> {
    // Nothing panics while holding the lock; a poisoned lock still holds valid data.
    LINE.lock().unwrap_or_else(|e| e.into_inner())
}

/// `CLOCK_MONOTONIC` in nanoseconds (a vDSO call: no system call with the usual clock sources).
pub fn now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Whether the timeline is on.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Turn the timeline on; `origin` is when the command started (a [`now`] taken first thing in
/// `main`). A timeline carried across the runtime's re-execution ([`carry`]) is taken back,
/// its origin kept, and the re-execution shows as one phase.
pub fn enable(origin: u64) {
    let mut t = line();
    if enabled() {
        return;
    }
    t.origin = origin;
    t.last = origin;
    if let Some(carried) = std::env::var_os(CARRY_ENV) {
        std::env::remove_var(CARRY_ENV);
        if let Some(bytes) = carried.to_str().and_then(unhex) {
            if bytes.len() >= 16 {
                let first = u64::from_le_bytes(bytes[0..8].try_into().unwrap_or_default());
                let last = u64::from_le_bytes(bytes[8..16].try_into().unwrap_or_default());
                decode_into(&mut t, &bytes[16..]);
                t.origin = first;
                t.push(
                    Process::Runtime,
                    &["re-exec from the read-only binary"],
                    last,
                    origin,
                );
            }
        }
    }
    ENABLED.store(true, Ordering::Relaxed);
}

/// End the current phase of this process, named `name`.
#[inline]
pub fn mark(name: &str) {
    if enabled() {
        record(&[name]);
    }
}

/// [`mark`] with a name made of `parts` (no allocation: `["mount ", "/proc"]`).
#[inline]
pub fn mark_parts(parts: &[&str]) {
    if enabled() {
        record(parts);
    }
}

#[cold]
fn record(parts: &[&str]) {
    let end = now();
    let mut t = line();
    let (start, process) = (t.last, t.process);
    t.push(process, parts, start, end);
    t.last = end;
}

/// In a process just forked from the runtime: from here on marks belong to `p`; the first one
/// measures from the runtime's last mark before the fork.
pub fn child(p: Process) {
    if !enabled() {
        return;
    }
    let mut t = line();
    t.process = p;
    t.sent = t.len;
}

fn encode(recs: &[Rec], out: &mut Vec<u8>) {
    for r in recs {
        out.push(r.process);
        out.extend_from_slice(&r.start.to_le_bytes());
        out.extend_from_slice(&r.end.to_le_bytes());
        out.push(r.len);
        out.extend_from_slice(&r.name[..r.len as usize]);
    }
}

fn decode_into(t: &mut Timeline, mut b: &[u8]) {
    while b.len() >= 18 {
        let Some(process) = Process::from_u8(b[0]) else {
            return;
        };
        let start = u64::from_le_bytes(b[1..9].try_into().unwrap_or_default());
        let end = u64::from_le_bytes(b[9..17].try_into().unwrap_or_default());
        let n = b[17] as usize;
        let Some(name) = b.get(18..18 + n) else {
            return;
        };
        let name = String::from_utf8_lossy(name);
        t.push(process, &[&name], start, end);
        b = &b[18 + n..];
    }
}

/// This process's records not yet handed over, encoded for [`absorb`]; `None` when off or
/// when there are none.
pub fn unsent() -> Option<Vec<u8>> {
    if !enabled() {
        return None;
    }
    let mut t = line();
    let own = t.process as u8;
    let mut out = Vec::new();
    let (from, to) = (t.sent, t.len);
    let mine: Vec<Rec> = t.recs[from..to]
        .iter()
        .filter(|r| r.process == own)
        .copied()
        .collect();
    encode(&mine, &mut out);
    t.sent = to;
    (!out.is_empty()).then_some(out)
}

/// [`unsent`] framed for the exec status fifo: [`FRAME_MAGIC`], a 4-byte length, the records.
pub fn unsent_frame() -> Option<Vec<u8>> {
    let body = unsent()?;
    let mut out = FRAME_MAGIC.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

/// Split a leading timeline frame off what an init wrote into the exec status fifo: (the
/// records, the rest: an error text or nothing). Whatever the timeline's state here: a
/// `start` without timings drops the frame of a `create` that had them.
pub fn split_frame(buf: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let Some(rest) = buf.strip_prefix(FRAME_MAGIC) else {
        return (None, buf);
    };
    let Some(len) = rest.get(..4) else {
        return (None, &[]);
    };
    let n = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
    match rest.get(4..4 + n) {
        Some(body) => (Some(body), &rest[4 + n..]),
        None => (None, &[]),
    }
}

/// Take in records a child process sent (see [`unsent`]).
pub fn absorb(bytes: &[u8]) {
    if !enabled() {
        return;
    }
    let mut t = line();
    decode_into(&mut t, bytes);
    let len = t.len;
    t.sent = len;
}

/// The `KEY=VALUE` environment entry that carries the timeline across an `execve` of the
/// runtime itself; `None` when off.
pub fn carry() -> Option<String> {
    if !enabled() {
        return None;
    }
    let t = line();
    let mut b = Vec::with_capacity(16 + t.len * 40);
    b.extend_from_slice(&t.origin.to_le_bytes());
    b.extend_from_slice(&now().to_le_bytes());
    encode(&t.recs[..t.len], &mut b);
    let mut s = String::with_capacity(CARRY_ENV.len() + 1 + b.len() * 2);
    s.push_str(CARRY_ENV);
    s.push('=');
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    Some(s)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// One phase of a finished timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub process: &'static str,
    pub name: String,
    /// From the start of the command, in nanoseconds.
    pub start_ns: u64,
    pub ns: u64,
}

/// The timeline of a command, in start order.
#[derive(Debug, Clone)]
pub struct Report {
    pub phases: Vec<Phase>,
    /// From the start of the command (its first `main` instruction) to the report.
    pub total_ns: u64,
    /// Marks that did not fit ([`CAPACITY`]).
    pub dropped: usize,
}

/// The timeline so far (with its total up to now); `None` when off.
pub fn report() -> Option<Report> {
    if !enabled() {
        return None;
    }
    let end = now();
    let t = line();
    let mut phases: Vec<Phase> = t.recs[..t.len]
        .iter()
        .map(|r| {
            let mut name = String::from_utf8_lossy(&r.name[..r.len as usize]).into_owned();
            // An init's wait for `start` began in the `create` command.
            if r.start < t.origin {
                name.push_str(" (began before this command)");
            }
            Phase {
                process: Process::from_u8(r.process).map_or("?", Process::name),
                name,
                start_ns: r.start.saturating_sub(t.origin),
                ns: r.end.saturating_sub(r.start),
            }
        })
        .collect();
    phases.sort_by_key(|p| (p.start_ns, p.start_ns + p.ns));
    Some(Report {
        phases,
        total_ns: end.saturating_sub(t.origin),
        dropped: t.dropped,
    })
}

fn ms(ns: u64) -> String {
    format!("{}.{:03}", ns / 1_000_000, (ns / 1_000) % 1_000)
}

fn json_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl Report {
    /// A table for people: start and length of each phase in milliseconds.
    pub fn text(&self, command: &str) -> String {
        let mut s = format!(
            "kakuri timings: {command} (pid {}), {} ms in all\n",
            std::process::id(),
            ms(self.total_ns)
        );
        let _ = writeln!(
            s,
            "{:>10} {:>10}  {:<12} phase",
            "start ms", "took ms", "process"
        );
        for p in &self.phases {
            let _ = writeln!(
                s,
                "{:>10} {:>10}  {:<12} {}",
                ms(p.start_ns),
                ms(p.ns),
                p.process,
                p.name
            );
        }
        if self.dropped > 0 {
            let _ = writeln!(s, "({} more phases not kept)", self.dropped);
        }
        s
    }

    /// One JSON object on one line (what `KAKURI_TIMINGS=/path` appends and the benchmark
    /// reads): `{"command":..,"pid":..,"total_ns":..,"dropped":..,"phases":[{"process":..,
    /// "phase":..,"start_ns":..,"ns":..}]}`.
    pub fn json(&self, command: &str) -> String {
        let mut s = String::from("{\"command\":");
        json_str(command, &mut s);
        let _ = write!(
            s,
            ",\"pid\":{},\"total_ns\":{},\"dropped\":{},\"phases\":[",
            std::process::id(),
            self.total_ns,
            self.dropped
        );
        for (i, p) in self.phases.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str("{\"process\":");
            json_str(p.process, &mut s);
            s.push_str(",\"phase\":");
            json_str(&p.name, &mut s);
            let _ = write!(s, ",\"start_ns\":{},\"ns\":{}}}", p.start_ns, p.ns);
        }
        s.push_str("]}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The timeline is process-global: the tests that turn it on run in one test function.

    #[test]
    fn off_records_nothing_then_on_records_in_order() {
        // Off: marks are dropped, nothing is encoded or reported.
        mark("nothing");
        mark_parts(&["no", "thing"]);
        assert!(!enabled());
        assert!(report().is_none());
        assert!(unsent().is_none());
        assert!(carry().is_none());
        assert_eq!(line().len, 0, "a mark while off must not record");

        let t0 = now();
        enable(t0);
        mark("parse");
        mark_parts(&["mount ", "/proc"]);
        let long = "x".repeat(100);
        mark(&long);
        let r = report().expect("on");
        let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names[..2], ["parse", "mount /proc"]);
        assert_eq!(names[2].len(), NAME_MAX);
        assert!(r.phases.iter().all(|p| p.process == "kakuri"));
        // Consecutive: each phase starts where the previous one ended.
        for w in r.phases.windows(2) {
            assert_eq!(w[0].start_ns + w[0].ns, w[1].start_ns);
        }
        assert!(r.total_ns >= r.phases[2].start_ns + r.phases[2].ns);

        // A child's records travel as bytes and come back under its name.
        let before = line().len;
        child(Process::Init);
        mark("pivot_root");
        let bytes = unsent().expect("the child's record");
        assert!(unsent().is_none(), "sent once");
        {
            let mut t = line();
            t.len = before;
            t.process = Process::Runtime;
        }
        absorb(&bytes);
        let r = report().unwrap();
        let p = r.phases.iter().find(|p| p.name == "pivot_root").unwrap();
        assert_eq!(p.process, "init");

        // The exec status frame comes off an error text and leaves it intact.
        child(Process::Init);
        mark("exec");
        let mut buf = unsent_frame().unwrap();
        buf.extend_from_slice(b"exec failed");
        let (body, rest) = split_frame(&buf);
        assert!(body.is_some_and(|b| !b.is_empty()));
        assert_eq!(rest, b"exec failed");
        assert_eq!(split_frame(b"plain error"), (None, &b"plain error"[..]));

        // The carried timeline round-trips.
        let c = carry().unwrap();
        let hex = c.strip_prefix(&format!("{CARRY_ENV}=")).unwrap();
        assert!(unhex(hex).is_some_and(|b| b.len() > 16));

        // JSON is one line with escaped names.
        {
            let mut t = line();
            t.process = Process::Runtime;
        }
        mark("quote \" and \\ and \n");
        let j = report().unwrap().json("run");
        assert!(!j.contains('\n'));
        assert!(j.contains(r#""phase":"quote \" and \\ and \u000a""#), "{j}");
        assert!(j.starts_with(r#"{"command":"run","pid":"#));
        let text = report().unwrap().text("run");
        assert!(text.contains("mount /proc"));

        // Past the capacity marks are counted, not kept.
        for _ in 0..CAPACITY {
            mark("filler");
        }
        let r = report().unwrap();
        assert_eq!(r.phases.len(), CAPACITY);
        assert!(r.dropped > 0);
    }
}
