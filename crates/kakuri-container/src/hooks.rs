//! OCI hooks: each runs as its own process with the container state JSON on stdin, its own args
//! and env, and an optional timeout after which it is killed and counts as failed.

use std::io::Write;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kakuri_spec::oci::Hook;
use kakuri_spec::os_error;

/// Run every one of `hooks` in order whatever the others do, logging each failure as a warning:
/// for poststart and poststop hooks the spec has the remaining hooks and the lifecycle continue
/// as if a failed hook had succeeded.
pub fn run_warn(kind: &str, hooks: &[Hook], state_json: &[u8]) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, state_json, None) {
            log::warn!("error running {kind} hook #{i}: {e}");
        }
    }
}

/// Run `hooks` (of kind `kind`, for messages) in order; the first failure stops them. A hook
/// without `env` inherits this process's environment.
pub fn run(kind: &str, hooks: &[Hook], state_json: &[u8]) -> Result<(), String> {
    run_in(kind, hooks, state_json, None)
}

/// [`run`] for hooks run by the container's init (createContainer, startContainer): a hook
/// without `env` gets the container process's `env`, which is the init's environment in runc
/// (the init itself runs with none of the runtime's).
pub fn run_in_container(
    kind: &str,
    hooks: &[Hook],
    state_json: &[u8],
    process_env: &[String],
) -> Result<(), String> {
    run_in(kind, hooks, state_json, Some(process_env))
}

fn run_in(
    kind: &str,
    hooks: &[Hook],
    state_json: &[u8],
    default_env: Option<&[String]>,
) -> Result<(), String> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state_json, default_env)
            .map_err(|e| format!("error running {kind} hook #{i}: {e}"))?;
    }
    Ok(())
}

fn run_one(h: &Hook, state_json: &[u8], default_env: Option<&[String]>) -> Result<(), String> {
    let path = h.path();
    let args = h.args().clone().unwrap_or_default();
    let mut cmd = Command::new(path);
    if let Some(a0) = args.first() {
        cmd.arg0(a0);
    }
    cmd.args(args.iter().skip(1));
    // A hook with `env` gets exactly that; one without inherits the environment of the process
    // that runs it (`default_env` for the container's init), as with runc and crun.
    if let Some(env) = h.env().as_deref().or(default_env) {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("{}: {}", path.display(), os_error(&e)))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json);
    }
    let status = match h.timeout() {
        Some(t) if t > 0 => {
            let deadline = Instant::now() + Duration::from_secs(t as u64);
            loop {
                if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                    break st;
                }
                if Instant::now() >= deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("{}: timed out after {t} seconds", path.display()));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        _ => child.wait().map_err(|e| e.to_string())?,
    };
    if status.success() {
        Ok(())
    } else if let Some(sig) = status.signal() {
        Err(format!("{}: killed by signal {sig}", path.display()))
    } else {
        Err(format!(
            "{}: exit status {}",
            path.display(),
            status.code().unwrap_or(-1)
        ))
    }
}
