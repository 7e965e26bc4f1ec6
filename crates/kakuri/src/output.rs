//! Everything the binary prints goes through here, so that no write can panic.
//!
//! stdout: a write to a pipe whose reader is gone (`EPIPE`; Rust ignores SIGPIPE) ends the
//! command at once and quietly with [`EXIT_BROKEN_PIPE`]; any other write error (`ENOSPC` on
//! `/dev/full`, `EIO`) is the command's error, worded as runc's (`write /dev/stdout: ...`).
//! stderr: best effort; when stderr itself is gone there is nobody left to tell.

use std::io::Write;

use kakuri_container::Error;
use kakuri_spec::os_error;

/// Exit code when stdout is a pipe nobody reads any more: 128 + SIGPIPE, the status a shell
/// reports for runc, which dies of SIGPIPE there. Documented in docs/cli.md.
pub const EXIT_BROKEN_PIPE: u8 = 141;

/// Write `bytes` to stdout and flush.
pub fn stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) => Err(stdout_error(e)),
    }
}

/// What a failed write to stdout means: a broken pipe ends the process (see the module doc);
/// anything else becomes runc's error text.
pub fn stdout_error(e: std::io::Error) -> Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        broken_pipe();
    }
    Error::msg(format!("write /dev/stdout: {}", os_error(&e)))
}

/// End the process quietly because stdout's reader has gone.
pub fn broken_pipe() -> ! {
    std::process::exit(i32::from(EXIT_BROKEN_PIPE))
}

/// One line on stderr, best effort.
pub fn stderr_line(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{text}");
}

/// Escape JSON text as Go's encoding/json does by default (runc's `list -f json`, `state`):
/// `<`, `>`, `&`, U+2028 and U+2029 become `\u` escapes. In JSON text these characters can
/// only occur inside strings, where the escape means the same character.
pub fn go_html_escape(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_like_go() {
        assert_eq!(
            super::go_html_escape(r#"{"a":"<b>&c\u2028"}"#),
            r#"{"a":"\u003cb\u003e\u0026c\u2028"}"#
        );
        assert_eq!(
            super::go_html_escape("{\"a\":\"x\u{2029}\"}"),
            r#"{"a":"x\u2029"}"#
        );
    }
}
