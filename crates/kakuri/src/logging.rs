//! Logging set-up: `log` records go to stderr or the `--log` file, as logrus-style text
//! (`time="..." level=error msg="..."`, what runc writes) or one JSON object per line
//! (`{"level":"error","msg":"...","time":"..."}`, what containerd and podman parse).

use std::io::Write;
use std::path::Path;

use kakuri_container::Error;

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

/// The `--log` file. A write that fails (a full disk, `/dev/full`) is reported once on stderr,
/// as runc (logrus) does, and the command goes on with its own exit code.
struct LogFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    reported: bool,
}

impl LogFile {
    fn report(&mut self, e: &std::io::Error) {
        if !self.reported {
            self.reported = true;
            super::output::stderr_line(&format!(
                "kakuri: failed to write to log file {}: {}",
                self.path.display(),
                kakuri_spec::os_error(e)
            ));
        }
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.file.write_all(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                self.report(&e);
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Set up logging; returns true when the log goes to a file (then errors are also printed
/// plainly on stderr). A `--log` file that cannot be opened is an error (runc's text:
/// `open FILE: ...`); the logger then writes to stderr so that the error can be logged.
pub fn init(file: Option<&Path>, json: bool, debug: bool) -> Result<bool, Error> {
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
    let mut result = Ok(false);
    if let Some(p) = file {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
        {
            Ok(file) => {
                b.target(env_logger::Target::Pipe(Box::new(LogFile {
                    file,
                    path: p.to_path_buf(),
                    reported: false,
                })));
                result = Ok(true);
            }
            Err(e) => {
                result = Err(Error::msg(format!(
                    "open {}: {}",
                    p.display(),
                    kakuri_spec::os_error(&e)
                )))
            }
        }
    }
    let _ = b.try_init();
    result
}
