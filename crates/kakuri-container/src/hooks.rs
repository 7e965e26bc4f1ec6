//! OCI hooks: each runs as its own process with the container state JSON on stdin, its own args
//! and env, and an optional timeout after which it is killed and counts as failed.
//!
//! Hooks are started with [`kakuri_isolate::sys::spawn_program`] (a raw fork and `execve`,
//! every signal reset to its default action and unblocked), not with `std::process::Command`:
//! the in-container hooks are started by the container's init, which was itself made by a raw
//! `clone` and may already run under the container's seccomp filter, where glibc's
//! `posix_spawn` is unsafe or fails (see `spawn_program`).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;

use kakuri_isolate::sys;
use kakuri_spec::oci::Hook;
use kakuri_spec::os_error;

/// Where a hook runs and what it inherits.
#[derive(Clone, Copy, Default)]
pub struct HookContext<'a> {
    /// The environment of a hook without `env` (None: this process's environment).
    pub default_env: Option<&'a [String]>,
    /// The working directory (None: this process's).
    pub cwd: Option<&'a Path>,
}

/// Run every one of `hooks` in order whatever the others do, logging each failure as a warning
/// (poststop: the spec has the remaining hooks and the lifecycle continue as if a failed hook
/// had succeeded).
pub fn run_warn(kind: &str, hooks: &[Hook], state_json: &[u8], ctx: HookContext) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_one(h, state_json, ctx) {
            log::warn!("error running {kind} hook #{i}: {e}");
        }
    }
    kakuri_timings::mark_parts(&["hooks ", kind]);
}

/// Run `hooks` (of kind `kind`, for messages) in order; the first failure stops them.
pub fn run(kind: &str, hooks: &[Hook], state_json: &[u8], ctx: HookContext) -> Result<(), String> {
    for (i, h) in hooks.iter().enumerate() {
        run_one(h, state_json, ctx).map_err(|e| format!("error running {kind} hook #{i}: {e}"))?;
    }
    kakuri_timings::mark_parts(&["hooks ", kind]);
    Ok(())
}

/// A pipe already holding `data`, its write end closed: the hook reads the state and then
/// end-of-file, and this process never writes to a pipe whose reader may be gone (a hook that
/// does not read its stdin cannot block it or, with SIGPIPE at its default, kill it).
fn stdin_pipe(data: &[u8]) -> std::io::Result<OwnedFd> {
    let (r, w) = sys::pipe_cloexec()?;
    if data.len() > 65536 {
        // Room for all of it (rounded up by the kernel; root may exceed pipe-max-size).
        nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(data.len() as i32),
        )?;
    }
    nix::fcntl::fcntl(
        w.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )?;
    let mut f = std::fs::File::from(w);
    std::io::Write::write_all(&mut f, data)?;
    Ok(r)
}

fn wait_exit(pid: libc::pid_t) -> std::io::Result<nix::sys::wait::WaitStatus> {
    loop {
        match nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None) {
            Err(nix::errno::Errno::EINTR) => continue,
            r => return r.map_err(std::io::Error::from),
        }
    }
}

fn run_one(h: &Hook, state_json: &[u8], ctx: HookContext) -> Result<(), String> {
    use nix::sys::wait::WaitStatus;
    let path = h.path();
    let args = h.args().clone().unwrap_or_default();
    let argv = if args.is_empty() {
        vec![path.to_string_lossy().into_owned()]
    } else {
        args
    };
    // A hook with `env` gets exactly that; one without inherits the environment of the process
    // that runs it (`default_env` for the container's init), as with runc and crun.
    let env: Vec<OsString> = match h.env().as_deref().or(ctx.default_env) {
        Some(e) => e.iter().map(OsString::from).collect(),
        None => std::env::vars_os()
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                kv
            })
            .collect(),
    };
    let fail = |e: std::io::Error| format!("{}: {}", path.display(), os_error(&e));
    let prog = sys::Program::new(path, &argv, &env, ctx.cwd).map_err(fail)?;
    let stdin = stdin_pipe(state_json).map_err(|e| format!("stdin pipe: {}", os_error(&e)))?;
    let pid = sys::spawn_program(&prog, stdin.as_fd()).map_err(fail)?;
    drop(stdin);
    let status = match h.timeout() {
        Some(t) if t > 0 => {
            let pidfd = sys::pidfd_open(pid).map_err(fail)?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(t as u64);
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                let mut fds = [nix::poll::PollFd::new(
                    pidfd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
                match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms)) {
                    Ok(n) if n > 0 => break wait_exit(pid).map_err(fail)?,
                    Ok(_) if left.is_zero() => {
                        let _ = sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL);
                        let _ = wait_exit(pid);
                        return Err(format!("{}: timed out after {t} seconds", path.display()));
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(fail(e.into())),
                }
            }
        }
        _ => wait_exit(pid).map_err(fail)?,
    };
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => Err(format!("{}: exit status {code}", path.display())),
        WaitStatus::Signaled(_, sig, _) => Err(format!(
            "{}: killed by signal {}",
            path.display(),
            sig as i32
        )),
        other => Err(format!("{}: {other:?}", path.display())),
    }
}
