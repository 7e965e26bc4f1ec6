//! `exec`: run a new process inside a running container, as runc does.

use std::cell::Cell;
use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::str::FromStr;

use kakuri_isolate::exec::ExecPlan;
use kakuri_isolate::{ParentSteps, ProcessPlan};
use kakuri_spec::oci;

use crate::create::Init;
use crate::state::Status;
use crate::{Error, Runtime};

/// Options of `exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    /// A full process.json; otherwise the container's process with the fields below changed.
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<String>,
    /// `uid[:gid]`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub preserve_fds: u32,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// A sub-cgroup of the container's cgroup to put the process in.
    pub cgroup: Option<String>,
    pub ignore_paused: bool,
    /// `--apparmor`: the AppArmor profile of the process.
    pub apparmor: Option<String>,
    /// `--process-label`: the SELinux label of the process.
    pub process_label: Option<String>,
}

fn parse_user(s: &str) -> Result<(u32, Option<u32>), Error> {
    let bad = || Error::msg(format!("invalid --user {s:?}: want uid[:gid] (numbers)"));
    match s.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}

/// Set or replace `KEY=value` entries of an environment.
fn merge_env(base: &mut Vec<String>, extra: &[String]) {
    for kv in extra {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        base.retain(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) != key);
        base.push(kv.clone());
    }
}

/// The process spec of an exec: `--process` as given, or the container's own with the options.
fn exec_process(o: &ExecOptions, base: Option<&oci::Process>) -> Result<oci::Process, Error> {
    if let Some(f) = &o.process_file {
        let bytes = kakuri_spec::input::read_file_bounded(f)
            .map_err(|e| Error::io(format!("read {}", f.display()), e))?;
        if let Some(kind) = kakuri_spec::input::non_object_kind(&bytes) {
            return Err(Error::msg(format!(
                "{}: not a JSON object (it is {kind}): a process is one object",
                f.display()
            )));
        }
        if let Some(field) = kakuri_spec::input::find_nul(&bytes, &[]) {
            return Err(Error::msg(format!(
                "{}: {field}: contains a NUL byte",
                f.display()
            )));
        }
        let p: oci::Process = kakuri_spec::from_json_dropping_unknown_caps(&bytes, "/capabilities")
            .map_err(|e| Error::msg(format!("{}: field {}: {}", f.display(), e.path, e.inner)))?;
        if !p.cwd().is_absolute() {
            // runc's text, and where the cwd came from.
            return Err(Error::msg(format!(
                "Cwd must be an absolute path (cwd {:?} in {})",
                p.cwd(),
                f.display()
            )));
        }
        return Ok(p);
    }
    if o.args.is_empty() {
        return Err(Error::msg("exec: no command given (and no --process)"));
    }
    let mut p = base.cloned().unwrap_or_default();
    p.set_args(Some(o.args.clone()));
    p.set_terminal(Some(o.tty));
    let mut env = p.env().clone().unwrap_or_default();
    merge_env(&mut env, &o.env);
    p.set_env(Some(env));
    if let Some(c) = &o.cwd {
        if !c.is_absolute() {
            return Err(Error::msg(format!(
                "Cwd must be an absolute path (--cwd {c:?})"
            )));
        }
        p.set_cwd(c.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &o.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !o.additional_gids.is_empty() {
        user.set_additional_gids(Some(o.additional_gids.clone()));
    }
    p.set_user(user);
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if o.apparmor.is_some() {
        p.set_apparmor_profile(o.apparmor.clone());
    }
    if o.process_label.is_some() {
        p.set_selinux_label(o.process_label.clone());
    }
    if !o.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let mut add = HashSet::new();
        let mut unknown = Vec::new();
        for c in &o.caps {
            let name = c.strip_prefix("CAP_").unwrap_or(c);
            match oci::Capability::from_str(name) {
                Ok(cap) => {
                    add.insert(cap);
                }
                // runtime-spec 1.3: warn, do not fail (runc does the same).
                Err(_) => unknown.push(c.as_str()),
            }
        }
        if !unknown.is_empty() {
            log::warn!(
                "ignoring unknown or unavailable capabilities: [{}]",
                unknown.join(" ")
            );
        }
        let with = |s: &Option<oci::Capabilities>| {
            let mut s = s.clone().unwrap_or_default();
            s.extend(add.iter().copied());
            Some(s)
        };
        caps.set_bounding(with(caps.bounding()));
        caps.set_effective(with(caps.effective()));
        caps.set_permitted(with(caps.permitted()));
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

struct ExecParent<'a> {
    cgroup: &'a kakuri_cgroups::Manager,
    sub: Option<&'a str>,
    state: &'a crate::State,
    status: &'static str,
}

impl ParentSteps for ExecParent<'_> {
    fn placed(&mut self, pid: i32) -> Result<(), String> {
        match self.sub {
            None => self.cgroup.add_task(pid).map_err(|e| e.to_string()),
            Some(sub) => {
                // `--cgroup name` or `--cgroup controller[,controller]:name`: the process goes
                // to the container's cgroups, then to the sub-cgroup of the hierarchies named.
                self.cgroup.add_task(pid).map_err(|e| e.to_string())?;
                let (ctrls, name) = match sub.split_once(':') {
                    Some((c, n)) => (c.split(',').filter(|c| !c.is_empty()).collect(), n),
                    None => (Vec::new(), sub),
                };
                if name.is_empty() || name.split('/').any(|c| c == "..") {
                    return Err(format!("--cgroup {sub}: invalid sub-cgroup name"));
                }
                // As runc: the sub-cgroup must exist in every hierarchy selected (all of them
                // without a controller list).
                let all = self.cgroup.all_paths();
                let v2 = all.len() == 1;
                let mut done = false;
                for p in &all {
                    if !ctrls.is_empty() && !v2 {
                        // v1 paths are /sys/fs/cgroup/<controllers>/...
                        let hier = p
                            .strip_prefix("/sys/fs/cgroup")
                            .ok()
                            .and_then(|r| r.components().next())
                            .map(|c| c.as_os_str().to_string_lossy().into_owned())
                            .unwrap_or_default();
                        if !hier.split(',').any(|h| ctrls.contains(&h)) {
                            continue;
                        }
                    }
                    let dir = p.join(name);
                    if !dir.is_dir() {
                        return Err(format!(
                            "--cgroup {sub}: no such sub-cgroup {}",
                            dir.display()
                        ));
                    }
                    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|e| {
                        format!(
                            "--cgroup {sub}: {}: {}",
                            dir.display(),
                            kakuri_spec::os_error(&e)
                        )
                    })?;
                    done = true;
                }
                if !done {
                    return Err(format!(
                        "--cgroup {sub}: no hierarchy of the container matches"
                    ));
                }
                Ok(())
            }
        }
    }

    fn create_runtime(&mut self, _pid: i32) -> Result<(), String> {
        Ok(())
    }

    fn seccomp_listener(&mut self, pid: i32, listener: OwnedFd) -> Result<(), String> {
        crate::create::send_seccomp_listener(self.state, self.status, pid, self.state.pid, listener)
    }
}

impl Runtime {
    /// `exec`: returns the process's exit code (or 0 when detached).
    pub fn exec(&self, o: &ExecOptions) -> Result<i32, Error> {
        // As for create: the child forked into the container runs from a read-only binary.
        kakuri_isolate::selfexe::protect().map_err(Error::msg)?;
        crate::create::check_preserve_fds(o.preserve_fds)?;
        let (dir, st, status) = self.open(&o.id)?;
        match status {
            Status::Running | Status::Created => {}
            Status::Paused if o.ignore_paused => {}
            Status::Paused => {
                return Err(Error::msg(
                    "cannot exec in a paused container (use --ignore-paused to override)",
                ))
            }
            Status::Stopped | Status::Creating => {
                return Err(Error::msg("cannot exec in a stopped container"))
            }
        }
        // In a paused container the new process is frozen as soon as it joins the cgroup, so
        // this exec only finishes after `resume`, which must be able to take the lock.
        let dir = if status == Status::Paused {
            drop(dir);
            None
        } else {
            Some(dir)
        };
        let spec = exec_process(o, st.process.as_ref())?;
        let mut plan_proc = ProcessPlan::from_spec(&spec).map_err(Error::msg)?;
        if !st.namespaces.iter().any(|n| n == "user") {
            if let Some(c) = plan_proc.caps.as_mut() {
                c.drop_ungrantable();
            }
        }
        kakuri_isolate::lsm::check_available(
            plan_proc.apparmor_profile.as_deref(),
            plan_proc.selinux_label.as_deref(),
        )
        .map_err(Error::msg)?;
        if plan_proc.terminal && o.detach && o.console_socket.is_none() {
            return Err(Error::msg(
                "cannot allocate tty if kakuri will detach without setting console socket",
            ));
        }
        if !plan_proc.terminal && o.console_socket.is_some() {
            return Err(Error::msg(
                "cannot use console socket if kakuri will not detach or allocate tty",
            ));
        }
        let seccomp = st
            .seccomp
            .as_ref()
            .map(kakuri_seccomp::compile)
            .transpose()
            .map_err(|e| Error::msg(e.to_string()))?;
        let mut ours: Option<UnixStream> = None;
        let console_socket = match &o.console_socket {
            Some(p) if plan_proc.terminal => {
                Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
                    Error::io(format!("connect to --console-socket {}", p.display()), e)
                })?))
            }
            None if plan_proc.terminal => {
                let (a, b) = UnixStream::pair().map_err(|e| Error::io("socketpair", e))?;
                ours = Some(a);
                Some(OwnedFd::from(b))
            }
            _ => None,
        };
        // Exactly the container's namespaces: an empty list is a container that shares all of
        // the runtime's (without "mnt" the process is chrooted into the init's root instead).
        let plan = ExecPlan {
            init_pid: st.pid,
            namespaces: st.namespaces.clone(),
            process: plan_proc,
            console_socket,
            preserve_fds: o.preserve_fds,
            close_in_child: dir.iter().map(|d| d.lock_fd()).collect(),
        };
        let init = Init {
            state: &st,
            hooks: None,
            seccomp,
            host_pid: Cell::new(0),
        };
        let mut parent = ExecParent {
            cgroup: &st.cgroup,
            sub: o.cgroup.as_deref(),
            state: &st,
            status: status.as_str(),
        };
        kakuri_isolate::make_non_dumpable().map_err(Error::msg)?;
        let pid = kakuri_isolate::exec::spawn_exec(&plan, &init, &mut parent).map_err(|e| {
            Error::msg(format!(
                "exec failed: unable to start container process: {e}"
            ))
        })?;
        drop(plan);
        // The container lock is not held while the process runs.
        drop(dir);
        if let Some(pf) = &o.pid_file {
            crate::create::write_pid_file(pf, pid)?;
        }
        if o.detach {
            return Ok(0);
        }
        let master = match ours {
            Some(sock) => {
                Some(crate::run::recv_fd(&sock).map_err(|e| Error::io("receive the console", e))?)
            }
            None => None,
        };
        crate::run::wait_forwarding(pid, master.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_replaces_keys() {
        let mut e = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        merge_env(&mut e, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(e, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("bob").is_err());
    }
}
