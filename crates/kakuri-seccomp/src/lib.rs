//! seccomp filters for kakuri: `linux.seccomp` of runtime-spec 1.3.0, with runc's semantics.
//!
//! The work is split the way a container start needs it:
//!
//! * [`compile`] runs in the runtime parent before anything is forked. It checks every field,
//!   builds the rules with libseccomp and exports the BPF program, so a bad profile fails
//!   `create` with an error naming the entry (`linux.seccomp.syscalls[3].names[0]: ...`).
//! * [`Filter::load`] runs in the container process as the last step before execve. It is a
//!   single seccomp(2) call on the precompiled program: no libseccomp, no allocation.
//! * [`send_listener_fd`] hands the SCMP_ACT_NOTIFY listener to the seccomp agent at
//!   `linux.seccomp.listenerPath`, the way runc does.
//!
//! runc behaviours kept on purpose: unknown syscall names are skipped (logged at debug); a
//! rule whose action equals the default action is skipped; `errnoRet` defaults to EPERM for
//! SCMP_ACT_ERRNO and SCMP_ACT_TRACE; when one rule has several conditions on the same
//! argument index, each condition becomes a rule of its own (an OR), otherwise all conditions
//! of a rule must hold (an AND); rulesets of more than 32 syscalls use libseccomp's binary-tree
//! layout; SCMP_ACT_NOTIFY may be neither the default action nor used for `write`; and, when
//! the default action is not permissive, syscall numbers above the largest one the profile
//! names return ENOSYS for each listed architecture (runc's -ENOSYS stub, see `enosys.rs`), so
//! programs probing newer syscalls fall back instead of failing with EPERM.
//!
//! Unlike runc, SECCOMP_FILTER_FLAG_TSYNC is passed to the kernel (with TSYNC_ESRCH when a
//! listener is requested) and SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV is honoured when a rule
//! uses SCMP_ACT_NOTIFY (it has no meaning, and is dropped, otherwise).

use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_spec::oci::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};
use libseccomp::{ScmpAction, ScmpArgCompare, ScmpFilterContext, ScmpSyscall};
use nix::errno::Errno;

mod enosys;
mod json;
mod kernel;
mod names;

pub use json::{check_json, profile_from_json};

/// The kernel's limit on the length of one BPF program (BPF_MAXINSNS).
pub const MAX_INSTRUCTIONS: usize = 4096;

/// The errno returned by SCMP_ACT_ERRNO and SCMP_ACT_TRACE when no errnoRet is given (runc's).
pub const DEFAULT_ERRNO_RET: u32 = libc::EPERM as u32;

/// The largest errnoRet a filter can carry: SECCOMP_RET_DATA is 16 bits wide.
const MAX_ERRNO_RET: u32 = 0xffff;

/// Syscall arguments are numbered 0 to 5.
const SYSCALL_ARGS: usize = 6;

/// Above this many syscall names runc asks libseccomp for a binary-tree filter.
const OPTIMIZE_ABOVE: usize = 32;

/// An error building, loading or handing over a seccomp filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A field of linux.seccomp that cannot be honoured; `field` is its JSON path.
    #[error("{field}: {msg}")]
    Invalid { field: String, msg: String },
    /// libseccomp refused an entry; `field` is the JSON path of that entry.
    #[error("{field}: {msg}: {source}")]
    Libseccomp {
        field: String,
        msg: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    /// Exporting the compiled program from libseccomp failed.
    #[error("linux.seccomp: export the compiled filter: {0}")]
    Export(#[source] std::io::Error),
    /// The kernel refused the filter at load time.
    #[error("load seccomp filter: {errno}{hint}")]
    Load { errno: Errno, hint: &'static str },
    /// Handing the notify listener to the seccomp agent failed.
    #[error("send seccomp fd to {path}: {what}: {source}")]
    Send {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

fn invalid(field: impl Into<String>, msg: impl Into<String>) -> SeccompError {
    SeccompError::Invalid {
        field: field.into(),
        msg: msg.into(),
    }
}

/// A compiled seccomp program, ready to be installed by [`Filter::load`].
#[derive(Clone)]
pub struct Filter {
    program: Vec<libc::sock_filter>,
    flags: libc::c_ulong,
    notify: bool,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("instructions", &self.program.len())
            .field("flags", &format_args!("{:#x}", self.flags))
            .field("notify", &self.notify)
            .finish()
    }
}

impl Filter {
    /// Install the filter on the calling thread (and, with SECCOMP_FILTER_FLAG_TSYNC, on all
    /// threads of the process).
    ///
    /// Called in the container process as the very last step before execve. It does not
    /// touch no_new_privs: without it the caller must still hold CAP_SYS_ADMIN, so a process
    /// that drops capabilities and does not set noNewPrivileges has to load the filter
    /// before the drop (as runc does). Returns the notify listener fd when the filter has an
    /// SCMP_ACT_NOTIFY rule. Does not allocate.
    pub fn load(&self) -> Result<Option<OwnedFd>, SeccompError> {
        kernel::set_mode_filter(&self.program, self.flags).map_err(|errno| SeccompError::Load {
            errno,
            hint: load_hint(errno),
        })
    }

    /// Whether [`Filter::load`] returns a listener fd (some rule uses SCMP_ACT_NOTIFY).
    pub fn needs_notify(&self) -> bool {
        self.notify
    }

    /// The number of BPF instructions of the compiled program.
    pub fn instruction_count(&self) -> usize {
        self.program.len()
    }

    /// The seccomp(2) flags [`Filter::load`] passes to the kernel.
    pub fn kernel_flags(&self) -> libc::c_ulong {
        self.flags
    }
}

fn load_hint(errno: Errno) -> &'static str {
    match errno {
        Errno::EACCES => " (the process has neither no_new_privs set nor CAP_SYS_ADMIN)",
        Errno::EINVAL => " (the kernel rejected the filter flags or the program)",
        Errno::ENOMEM => " (the filter chain of this process is too long)",
        Errno::ESRCH => " (another thread of the process has a different filter)",
        _ => "",
    }
}

/// The libseccomp action for an OCI action and its optional errnoRet (runc's getAction).
fn scmp_action(
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    errno_field: &dyn Fn() -> String,
) -> Result<ScmpAction, SeccompError> {
    let errno = || -> Result<u32, SeccompError> {
        let value = errno_ret.unwrap_or(DEFAULT_ERRNO_RET);
        if value > MAX_ERRNO_RET {
            return Err(invalid(
                errno_field(),
                format!("errno {value} does not fit the 16-bit seccomp return data (at most {MAX_ERRNO_RET})"),
            ));
        }
        Ok(value)
    };
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        // Both values fit in 16 bits: `errno` checked them.
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno()? as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno()? as u16),
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn libseccomp_version() -> String {
    match libseccomp::ScmpVersion::current() {
        Ok(v) => format!("{}.{}.{}", v.major, v.minor, v.micro),
        Err(_) => "(unknown version)".to_string(),
    }
}

/// Checks the kernel supports an action, remembering answers (there are nine actions).
struct ActionCheck {
    known: Vec<(LinuxSeccompAction, bool)>,
}

impl ActionCheck {
    fn check(
        &mut self,
        action: LinuxSeccompAction,
        field: &dyn Fn() -> String,
    ) -> Result<(), SeccompError> {
        let ok = match self.known.iter().find(|(a, _)| *a == action) {
            Some((_, ok)) => *ok,
            None => {
                let ok = kernel::action_available(names::action_ret(action));
                self.known.push((action, ok));
                ok
            }
        };
        if ok {
            Ok(())
        } else {
            Err(invalid(
                field(),
                format!(
                    "action {} is not supported by the running kernel",
                    names::action_name(action)
                ),
            ))
        }
    }
}

/// Build the filter described by `linux.seccomp`.
///
/// Runs in the runtime parent before the container process is forked, so every error is
/// reported at `create` time with nothing started. Unknown syscall names are skipped (logged
/// at debug), as runc does; an action, architecture or flag that libseccomp or the running
/// kernel cannot honour, an argument index above 5, an errnoRet above 65535, an empty
/// syscall name, SCMP_ACT_NOTIFY as default action or on `write`, and SCMP_ACT_NOTIFY
/// without `listenerPath` are errors naming the entry.
pub fn compile(seccomp: &LinuxSeccomp) -> Result<Filter, SeccompError> {
    let mut actions = ActionCheck { known: Vec::new() };
    let default = seccomp.default_action();
    if default == LinuxSeccompAction::ScmpActNotify {
        return Err(invalid(
            "linux.seccomp.defaultAction",
            "SCMP_ACT_NOTIFY cannot be used as default action",
        ));
    }
    actions.check(default, &|| "linux.seccomp.defaultAction".to_string())?;
    let default_act = scmp_action(default, seccomp.default_errno_ret(), &|| {
        "linux.seccomp.defaultErrnoRet".to_string()
    })?;

    let mut ctx =
        ScmpFilterContext::new(default_act).map_err(|source| SeccompError::Libseccomp {
            field: "linux.seccomp.defaultAction".to_string(),
            msg: format!("create a filter with {}", names::action_name(default)),
            source,
        })?;
    // no_new_privs belongs to process.noNewPrivileges, not to the filter.
    ctx.set_ctl_nnp(false)
        .map_err(|source| SeccompError::Libseccomp {
            field: "linux.seccomp".to_string(),
            msg: "clear the filter's no_new_privs attribute".to_string(),
            source,
        })?;

    for (i, arch) in seccomp.architectures().iter().flatten().enumerate() {
        let (name, scmp) = names::arch_entry(*arch);
        ctx.add_arch(scmp)
            .map_err(|source| SeccompError::Libseccomp {
                field: format!("linux.seccomp.architectures[{i}]"),
                msg: format!(
                    "architecture {name} is not supported by libseccomp {}",
                    libseccomp_version()
                ),
                source,
            })?;
    }

    let syscalls = seccomp.syscalls().as_deref().unwrap_or_default();
    let notify_rule = syscalls
        .iter()
        .position(|s| s.action() == LinuxSeccompAction::ScmpActNotify && !s.names().is_empty());

    let mut flags: libc::c_ulong = 0;
    let mut wait_killable = false;
    for (i, flag) in seccomp.flags().iter().flatten().enumerate() {
        let (name, bit) = names::flag_entry(*flag);
        // The kernel only takes WAIT_KILLABLE_RECV together with NEW_LISTENER.
        let probe = if *flag == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv {
            bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        } else {
            bit
        };
        if !kernel::flags_supported(probe) {
            return Err(invalid(
                format!("linux.seccomp.flags[{i}]"),
                format!("flag {name} is not supported by the running kernel"),
            ));
        }
        if *flag == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv {
            wait_killable = true;
        } else {
            flags |= bit;
        }
    }
    if let Some(i) = notify_rule {
        if seccomp
            .listener_path()
            .as_deref()
            .is_none_or(|p| p.as_os_str().is_empty())
        {
            return Err(invalid(
                "linux.seccomp.listenerPath",
                format!(
                    "seccomp listenerPath is not set (linux.seccomp.syscalls[{i}] uses SCMP_ACT_NOTIFY)"
                ),
            ));
        }
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        if wait_killable {
            flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
        }
        // The kernel takes TSYNC with a listener only if told to report a failed sync as ESRCH.
        if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
            flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
        }
    } else if wait_killable {
        log::debug!(
            "seccomp flag SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV ignored: no SCMP_ACT_NOTIFY rule"
        );
    }
    if !kernel::flags_supported(flags) {
        return Err(invalid(
            "linux.seccomp.flags",
            format!("the running kernel rejects the combined filter flags {flags:#x}"),
        ));
    }

    let name_count: usize = syscalls.iter().map(|s| s.names().len()).sum();
    if name_count > OPTIMIZE_ABOVE {
        if let Err(e) = ctx.set_ctl_optimize(2) {
            log::debug!("seccomp binary tree optimization not available: {e}");
        }
    }

    for (i, call) in syscalls.iter().enumerate() {
        let action = call.action();
        actions.check(action, &|| format!("linux.seccomp.syscalls[{i}].action"))?;
        let act = scmp_action(action, call.errno_ret(), &|| {
            format!("linux.seccomp.syscalls[{i}].errnoRet")
        })?;
        if call.errno_ret().is_some()
            && !matches!(
                action,
                LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
            )
        {
            log::debug!(
                "linux.seccomp.syscalls[{i}].errnoRet ignored: action {} takes no errno",
                names::action_name(action)
            );
        }

        let args = call.args().as_deref().unwrap_or_default();
        let mut per_index = [0usize; SYSCALL_ARGS];
        let mut conditions = Vec::with_capacity(args.len());
        for (k, arg) in args.iter().enumerate() {
            let index = arg.index();
            if index >= SYSCALL_ARGS {
                return Err(invalid(
                    format!("linux.seccomp.syscalls[{i}].args[{k}].index"),
                    format!("argument index {index} out of range (syscall arguments are 0 to 5)"),
                ));
            }
            per_index[index] += 1;
            // SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo. Other operators compare with value.
            let datum = if arg.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                arg.value_two().unwrap_or(0)
            } else {
                arg.value()
            };
            conditions.push(ScmpArgCompare::new(
                index as u32,
                names::compare_op(arg.op(), arg.value()),
                datum,
            ));
        }
        // runc: several conditions on one argument cannot be ANDed meaningfully, so then every
        // condition becomes a rule of its own.
        let one_rule_per_condition = per_index.iter().any(|&n| n > 1);

        for (j, name) in call.names().iter().enumerate() {
            let field = || format!("linux.seccomp.syscalls[{i}].names[{j}]");
            if name.is_empty() {
                return Err(invalid(field(), "empty string is not a valid syscall"));
            }
            if action == LinuxSeccompAction::ScmpActNotify && name == "write" {
                return Err(invalid(
                    field(),
                    "SCMP_ACT_NOTIFY cannot be used for the write syscall",
                ));
            }
            if act == default_act {
                // Redundant with the default action; libseccomp would reject it.
                continue;
            }
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                log::debug!("unknown seccomp syscall {name:?} ignored ({})", field());
                continue;
            };
            let added = if conditions.is_empty() {
                ctx.add_rule(act, nr).map(drop)
            } else if one_rule_per_condition {
                conditions
                    .iter()
                    .try_for_each(|c| ctx.add_rule_conditional(act, nr, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, nr, &conditions).map(drop)
            };
            added.map_err(|source| SeccompError::Libseccomp {
                field: field(),
                msg: format!("add a rule for syscall {name}"),
                source,
            })?;
        }
    }

    let mut program = enosys::stub(seccomp);
    program.extend(export(&ctx)?);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(invalid(
            "linux.seccomp",
            format!(
                "the compiled filter has {} instructions, more than the kernel limit of {MAX_INSTRUCTIONS}",
                program.len()
            ),
        ));
    }
    Ok(Filter {
        program,
        flags,
        notify: notify_rule.is_some(),
    })
}

/// Export the BPF program libseccomp generates for `ctx`.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use nix::sys::memfd::{memfd_create, MemFdCreateFlag};

    let memfd = memfd_create(c"kakuri-seccomp", MemFdCreateFlag::MFD_CLOEXEC)
        .map_err(|e| SeccompError::Export(e.into()))?;
    ctx.export_bpf(&memfd)
        .map_err(|e| SeccompError::Export(std::io::Error::other(e)))?;
    let mut file = File::from(memfd);
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(SeccompError::Export)?;
    const INSN: usize = std::mem::size_of::<libc::sock_filter>();
    if bytes.is_empty() || bytes.len() % INSN != 0 {
        return Err(SeccompError::Export(std::io::Error::other(format!(
            "libseccomp exported {} bytes, not a whole number of {INSN}-byte instructions",
            bytes.len()
        ))));
    }
    Ok(bytes
        .chunks_exact(INSN)
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect())
}

/// Send the notify listener `fd` to the seccomp agent listening at `listener_path`.
///
/// As runc does and runtime-spec requires: one new AF_UNIX SOCK_STREAM connection, one
/// message whose data is `state_json` (the container process state, built by the caller with
/// `"fds": ["seccompFd"]`) and whose SCM_RIGHTS control message carries exactly `fd`; the
/// connection is then closed.
pub fn send_listener_fd(
    listener_path: &Path,
    state_json: &[u8],
    fd: BorrowedFd,
) -> Result<(), SeccompError> {
    use nix::sys::socket::{send, sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::unix::net::UnixStream;

    let fail = |what: &'static str, source: std::io::Error| SeccompError::Send {
        path: listener_path.to_path_buf(),
        what,
        source,
    };
    if state_json.is_empty() {
        // A stream socket drops control data sent with no bytes.
        return Err(fail(
            "empty container process state",
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    }
    let stream =
        UnixStream::connect(listener_path).map_err(|e| fail("connect to the seccomp agent", e))?;
    let fds = [fd.as_raw_fd()];
    let cmsgs = [ControlMessage::ScmRights(&fds)];
    let iov = [IoSlice::new(state_json)];
    let mut sent = loop {
        match sendmsg::<()>(
            stream.as_raw_fd(),
            &iov,
            &cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(fail("sendmsg", e.into())),
        }
    };
    // A stream socket may take the data in parts; the fd went with the first part.
    while sent < state_json.len() {
        match send(
            stream.as_raw_fd(),
            &state_json[sent..],
            MsgFlags::MSG_NOSIGNAL,
        ) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(fail("send", e.into())),
        }
    }
    Ok(())
}

/// The actions the running kernel supports, for `features` (linux.seccomp.actions).
pub fn supported_actions() -> Vec<LinuxSeccompAction> {
    names::ACTIONS
        .iter()
        .filter(|(_, _, ret)| kernel::action_available(*ret))
        .map(|(a, _, _)| *a)
        .collect()
}

/// The architectures the linked libseccomp can add to a filter, for `features`.
pub fn supported_archs() -> Vec<Arch> {
    let Ok(mut ctx) = ScmpFilterContext::new(ScmpAction::Allow) else {
        return Vec::new();
    };
    names::ARCHES
        .iter()
        .filter(|(_, _, scmp)| ctx.add_arch(*scmp).is_ok())
        .map(|(a, _, _)| *a)
        .collect()
}

/// Every filter flag this runtime knows, for `features` (linux.seccomp.knownFlags).
pub fn known_flags() -> Vec<String> {
    names::FLAGS.iter().map(|(_, n, _)| n.to_string()).collect()
}

/// The filter flags the running kernel accepts, for `features` (linux.seccomp.supportedFlags).
pub fn supported_flags() -> Vec<String> {
    names::FLAGS
        .iter()
        .filter(|(f, _, bit)| {
            let probe = if *f == LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv {
                bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
            } else {
                *bit
            };
            kernel::flags_supported(probe)
        })
        .map(|(_, n, _)| n.to_string())
        .collect()
}

/// Every argument operator, for `features` (linux.seccomp.operators).
pub fn supported_operators() -> Vec<String> {
    names::OPERATORS
        .iter()
        .map(|(_, n)| n.to_string())
        .collect()
}

/// The version of the linked libseccomp ("2.5.4"), for the `features` annotations.
pub fn libseccomp_version_string() -> String {
    libseccomp_version()
}
