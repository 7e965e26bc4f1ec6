//! `events`: resource statistics and OOM notifications of a container, in runc's event JSON
//! (`{"type":"stats","id":ID,"data":{...}}` / `{"type":"oom","id":ID}`, one object per line).
//!
//! Without `--stats`, the container is watched until its init exits: a stats event every
//! interval, and an oom event whenever the memory cgroup reports a new OOM (cgroup v1:
//! `memory.oom_control` `oom_kill` count or `under_oom` becoming 1; cgroup v2: `memory.events`
//! `oom_kill` count). The cgroup files are polled every [`POLL`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kakuri_cgroups::{CgroupManager, Mode, Stats};
use serde::Serialize;

use crate::{state, Error, Runtime, State, Status};

/// How often OOM counters and the init's liveness are checked while watching.
pub const POLL: Duration = Duration::from_millis(100);

/// One line of `events` output.
#[derive(Debug, Serialize)]
pub struct Event<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Stats>,
}

impl Event<'_> {
    /// The event as one JSON line (with the newline).
    pub fn line(&self) -> String {
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

/// Where the OOM counters of a container's memory cgroup are read.
#[derive(Debug)]
enum OomSource {
    /// cgroup v1 `memory.oom_control`.
    V1(PathBuf),
    /// cgroup v2 `memory.events`.
    V2(PathBuf),
}

/// Counts OOM events of one memory cgroup between two reads.
#[derive(Debug)]
pub struct OomWatch {
    source: OomSource,
    kills: u64,
    under_oom: bool,
}

/// `key value` lines of a cgroup file.
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

impl OomWatch {
    /// The watch for the memory cgroup of `cg`, or `None` when no memory controller is there.
    pub fn new(cg: &impl CgroupManager) -> Option<OomWatch> {
        let source = match cg.mode() {
            Mode::V2 => OomSource::V2(cg.unified_path()?.join("memory.events")),
            Mode::V1 | Mode::Hybrid => OomSource::V1(cg.path("memory")?.join("memory.oom_control")),
        };
        let mut w = OomWatch {
            source,
            kills: 0,
            under_oom: false,
        };
        // The baseline: OOMs that happened before the watch started are not reported.
        w.poll();
        Some(w)
    }

    /// The number of new OOM events since the last call. A cgroup that is gone has none.
    pub fn poll(&mut self) -> u64 {
        let (path, v1) = match &self.source {
            OomSource::V1(p) => (p, true),
            OomSource::V2(p) => (p, false),
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return 0;
        };
        let kills = keyed_value(&text, "oom_kill").unwrap_or(0);
        let mut new = kills.saturating_sub(self.kills);
        self.kills = kills;
        if v1 {
            // With the OOM killer disabled nothing is killed: the cgroup just sits under OOM.
            let under = keyed_value(&text, "under_oom") == Some(1);
            if under && !self.under_oom && new == 0 {
                new = 1;
            }
            self.under_oom = under;
        }
        new
    }
}

fn not_running(id: &str) -> Error {
    Error::msg(format!("container with id {id} is not running"))
}

/// Check the interval as runc does.
pub fn check_interval(interval: Duration) -> Result<(), Error> {
    if interval.is_zero() {
        return Err(Error::msg("duration interval must be greater than 0"));
    }
    Ok(())
}

/// Parse a Go duration ("5s", "100ms", "1m30s", "1.5h", "0"), as runc's `--interval` takes it.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("time: invalid duration {s:?}");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let s2 = s.strip_prefix('+').unwrap_or(s);
    let mut rest = s2;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("time: missing unit in duration {s:?}"))?;
        let (num, tail) = rest.split_at(n_end);
        if num.is_empty() || num == "." {
            return Err(bad());
        }
        let value: f64 = num.parse().map_err(|_| bad())?;
        let u_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(u_end);
        let nanos = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(format!("time: unknown unit {unit:?} in duration {s:?}")),
        };
        total += value * nanos;
        rest = next;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(total as u64))
}

impl Runtime {
    /// The container's state, or runc's error if it is stopped.
    fn live_state(&self, id: &str) -> Result<State, Error> {
        let (_dir, st, status) = self.open(id)?;
        if status == Status::Stopped {
            return Err(not_running(id));
        }
        Ok(st)
    }

    /// `events --stats ID`: the resource usage of a live container.
    pub fn stats(&self, id: &str) -> Result<Stats, Error> {
        let st = self.live_state(id)?;
        st.cgroup
            .stats()
            .map_err(|e| Error::msg(format!("stats of container {id}: {e}")))
    }

    /// `events ID`: call `emit` with a stats event every `interval` and an oom event for every
    /// OOM, until the container's init has exited (or `emit` fails, e.g. a closed stdout).
    /// The container is not kept locked while watching.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        emit: &mut dyn FnMut(&Event) -> std::io::Result<()>,
    ) -> Result<(), Error> {
        check_interval(interval)?;
        let st = self.live_state(id)?;
        let mut oom = OomWatch::new(&st.cgroup);
        let mut next_stats = Instant::now() + interval;
        let out_err = |e: std::io::Error| Error::io("write event", e);
        loop {
            let alive = state::init_alive(&st);
            // Read the OOM counters even when the init just died: an OOM kill of the init is
            // counted before it is gone, and must still be reported.
            if let Some(w) = oom.as_mut() {
                for _ in 0..w.poll() {
                    let ev = Event {
                        kind: "oom",
                        id,
                        data: None,
                    };
                    match emit(&ev) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                        Err(e) => return Err(out_err(e)),
                    }
                }
            }
            if !alive {
                return Ok(());
            }
            let now = Instant::now();
            if now >= next_stats {
                next_stats += interval;
                if next_stats < now {
                    next_stats = now + interval;
                }
                match st.cgroup.stats() {
                    Ok(s) => {
                        let ev = Event {
                            kind: "stats",
                            id,
                            data: Some(s),
                        };
                        match emit(&ev) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                            Err(e) => return Err(out_err(e)),
                        }
                    }
                    // runc logs a failed collection and keeps going.
                    Err(e) => log::error!("stats of container {id}: {e}"),
                }
            }
            let wait = next_stats
                .saturating_duration_since(Instant::now())
                .min(POLL);
            std::thread::sleep(wait);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("100ms").unwrap(), Duration::from_millis(100));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "5", "s", "-1s", "5x", "1..5s", ".s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} must be refused");
        }
        assert!(check_interval(Duration::ZERO).is_err());
    }

    #[test]
    fn event_lines_have_runc_shape() {
        let ev = Event {
            kind: "oom",
            id: "c1",
            data: None,
        };
        assert_eq!(ev.line(), "{\"type\":\"oom\",\"id\":\"c1\"}\n");
        let ev = Event {
            kind: "stats",
            id: "c1",
            data: Some(Stats::default()),
        };
        let v: serde_json::Value = serde_json::from_str(&ev.line()).unwrap();
        assert_eq!(v["type"], "stats");
        for k in [
            "cpu",
            "cpuset",
            "memory",
            "pids",
            "blkio",
            "hugetlb",
            "intel_rdt",
        ] {
            assert!(v["data"].get(k).is_some(), "data lacks {k}: {v}");
        }
        assert!(v["data"]["network_interfaces"].is_null());
    }

    #[test]
    fn oom_counters() {
        let dir = std::env::temp_dir().join(format!("kakuri-oomwatch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("memory.oom_control");
        std::fs::write(&f, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        let mut w = OomWatch {
            source: OomSource::V1(f.clone()),
            kills: 0,
            under_oom: false,
        };
        assert_eq!(w.poll(), 2);
        assert_eq!(w.poll(), 0);
        std::fs::write(&f, "oom_kill_disable 1\nunder_oom 1\noom_kill 2\n").unwrap();
        assert_eq!(w.poll(), 1, "entering under_oom is one event");
        assert_eq!(w.poll(), 0, "staying under_oom is not");
        let g = dir.join("memory.events");
        std::fs::write(&g, "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n").unwrap();
        let mut w2 = OomWatch {
            source: OomSource::V2(g.clone()),
            kills: 1,
            under_oom: false,
        };
        assert_eq!(w2.poll(), 0);
        std::fs::write(&g, "low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n").unwrap();
        assert_eq!(w2.poll(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(w2.poll(), 0, "a removed cgroup has no new events");
    }
}
