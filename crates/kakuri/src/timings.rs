//! Where the per-phase timeline of a command goes (see the `kakuri-timings` crate and
//! docs/cli.md "Timings"):
//!
//! - `--timings`, or `KAKURI_TIMINGS=1`: a table on stderr when the command ends;
//! - `KAKURI_TIMINGS=json`: one JSON object per command on stderr;
//! - `KAKURI_TIMINGS=/absolute/file`: that JSON line appended to the file (what the benchmark
//!   uses; the caller's stderr stays untouched);
//! - `--debug`: one debug log line per phase (to `--log` when given).
//!
//! Unset (and without `--timings`/`--debug`), nothing is recorded.

use std::io::Write;
use std::path::PathBuf;

/// The environment switch.
pub const ENV: &str = "KAKURI_TIMINGS";

/// Where the timeline of this command goes.
#[derive(Debug, Default)]
pub struct Sinks {
    text: bool,
    json: bool,
    file: Option<PathBuf>,
    log: bool,
}

/// Decide from the flags and `KAKURI_TIMINGS`; turn the timeline on (from `origin`, the first
/// instant of `main`) when anything wants it.
pub fn start(origin: u64, flag: bool, debug: bool) -> Sinks {
    let mut s = Sinks {
        text: flag,
        log: debug,
        ..Sinks::default()
    };
    if let Some(v) = std::env::var_os(ENV) {
        match v.to_str().unwrap_or("") {
            "" | "0" => {}
            "json" => s.json = true,
            p if p.starts_with('/') => s.file = Some(PathBuf::from(p)),
            _ => s.text = true,
        }
    }
    if s.text || s.json || s.file.is_some() || s.log {
        kakuri_timings::enable(origin);
        kakuri_timings::mark("parse arguments");
    }
    s
}

/// The command's name for the report: `run`, `create`, ... (the subcommand's variant name).
pub fn command_name(cmd: &impl std::fmt::Debug) -> String {
    let d = format!("{cmd:?}");
    d.split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Hand the timeline to every sink (best effort: a sink that fails does not change the
/// command's outcome).
pub fn finish(s: &Sinks, command: &str) {
    let Some(r) = kakuri_timings::report() else {
        return;
    };
    if s.log {
        for p in &r.phases {
            log::debug!(
                "timing: {} {}: {:.3} ms (at {:.3} ms)",
                p.process,
                p.name,
                p.ns as f64 / 1e6,
                p.start_ns as f64 / 1e6
            );
        }
        log::debug!("timing: {command} took {:.3} ms", r.total_ns as f64 / 1e6);
    }
    if s.text {
        let _ = std::io::stderr()
            .lock()
            .write_all(r.text(command).as_bytes());
    }
    if s.json {
        super::output::stderr_line(&r.json(command));
    }
    if let Some(path) = &s.file {
        let line = r.json(command) + "\n";
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = r {
            super::output::stderr_line(&format!(
                "kakuri: {ENV}: write {}: {}",
                path.display(),
                kakuri_spec::os_error(&e)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_names() {
        #[derive(Debug)]
        #[allow(dead_code)]
        enum C {
            Run { id: String },
            State { id: String },
            List,
        }
        assert_eq!(super::command_name(&C::Run { id: "x".into() }), "run");
        assert_eq!(super::command_name(&C::State { id: "y".into() }), "state");
        assert_eq!(super::command_name(&C::List), "list");
    }
}
