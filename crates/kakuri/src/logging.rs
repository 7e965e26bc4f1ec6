//! Logging set-up: `log` records go to stderr or the `--log` file, as logrus-style text
//! (`time="..." level=error msg="..."`, what runc writes) or one JSON object per line
//! (`{"level":"error","msg":"...","time":"..."}`, what containerd and podman parse).

use std::io::Write;
use std::path::Path;

/// The current time as RFC 3339 UTC with seconds, as logrus prints it.
fn now() -> String {
    let t = kakuri_container::state::now_rfc3339();
    // "YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ" -> "YYYY-MM-DDTHH:MM:SSZ"
    format!("{}Z", &t[..19])
}

fn level_name(l: log::Level) -> &'static str {
    match l {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Quote a message as logrus does in text format.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// Set up logging; returns true when the log goes to a file (then errors are also printed
/// plainly on stderr).
pub fn init(file: Option<&Path>, json: bool, debug: bool) -> bool {
    let mut b = env_logger::Builder::new();
    b.filter_level(if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    });
    b.format(move |buf, rec| {
        let msg = rec.args().to_string();
        if json {
            let line = serde_json::json!({
                "level": level_name(rec.level()),
                "msg": msg,
                "time": now(),
            });
            writeln!(buf, "{line}")
        } else {
            writeln!(
                buf,
                "time=\"{}\" level={} msg={}",
                now(),
                level_name(rec.level()),
                quote(&msg)
            )
        }
    });
    let mut to_file = false;
    if let Some(p) = file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(f) => {
                b.target(env_logger::Target::Pipe(Box::new(f)));
                to_file = true;
            }
            Err(e) => eprintln!(
                "kakuri: cannot open log file {}: {}; logging to stderr",
                p.display(),
                kakuri_spec::os_error(&e)
            ),
        }
    }
    let _ = b.try_init();
    to_file
}
