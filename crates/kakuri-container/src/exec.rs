//! `exec`: run a new process inside a running container, as runc does.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kakuri_cgroups::CgroupManager;
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
    /// `--cgroup` arguments: sub-cgroups of the container's cgroup to put the process in.
    pub cgroup: Vec<String>,
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
        let bytes = with_default_user(bytes);
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

/// runc reads `--process` into a Go struct, so a missing `user` is uid 0, gid 0. Insert that
/// right after the opening brace (line numbers in later errors stay those of the file).
fn with_default_user(bytes: Vec<u8>) -> Vec<u8> {
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(&bytes) else {
        return bytes;
    };
    if top.contains_key("user") {
        return bytes;
    }
    let Some(brace) = bytes.iter().position(|b| *b == b'{') else {
        return bytes;
    };
    let user: &[u8] = if top.is_empty() {
        br#""user":{"uid":0,"gid":0}"#
    } else {
        br#""user":{"uid":0,"gid":0},"#
    };
    let mut out = Vec::with_capacity(bytes.len() + user.len());
    out.extend_from_slice(&bytes[..=brace]);
    out.extend_from_slice(user);
    out.extend_from_slice(&bytes[brace + 1..]);
    out
}

/// `--cgroup` arguments, read as runc's `getSubCgroupPaths`: `NAME` alone (only when given
/// once) for every hierarchy, or `CONTROLLER[,CONTROLLER]:NAME` (repeatable). Key "" means
/// every hierarchy.
fn sub_cgroups(args: &[String]) -> Result<BTreeMap<String, String>, Error> {
    let mut out = BTreeMap::new();
    for a in args {
        let parts: Vec<&str> = a.splitn(3, ':').collect();
        match parts.as_slice() {
            [name] => {
                if args.len() != 1 {
                    return Err(Error::msg(format!(
                        "exec failed: invalid --cgroup argument: {a} (missing <controller>: prefix)"
                    )));
                }
                out.insert(String::new(), name.to_string());
            }
            [ctrls, name] => {
                for c in ctrls.split(',') {
                    out.insert(c.to_string(), name.to_string());
                }
            }
            _ => {
                return Err(Error::msg(format!(
                    "exec failed: invalid --cgroup argument: {a}"
                )))
            }
        }
    }
    Ok(out)
}

/// `base` joined with the sub-cgroup `sub` as Go's path.Join would, refusing a result outside
/// `base` (runc: "NAME is not a sub cgroup path").
fn sub_cgroup_dir(base: &Path, sub: &str) -> Result<PathBuf, String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in sub.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(format!("{sub} is not a sub cgroup path"));
                }
            }
            c => parts.push(c),
        }
    }
    Ok(parts.iter().fold(base.to_path_buf(), |p, c| p.join(c)))
}

/// Where the exec'd process goes in each hierarchy of the container: its cgroup, or the
/// sub-cgroup `--cgroup` names for that hierarchy (all of them for a bare NAME).
fn exec_cgroup_dirs(
    cgroup: &impl kakuri_cgroups::CgroupManager,
    subs: &BTreeMap<String, String>,
) -> Result<Vec<PathBuf>, String> {
    let dirs = cgroup.dirs();
    if let Some(sub) = subs.get("") {
        return dirs
            .iter()
            .map(|(_, base)| sub_cgroup_dir(base, sub))
            .collect();
    }
    for ctrl in subs.keys() {
        if !dirs.iter().any(|(ctrls, _)| ctrls.contains(ctrl)) {
            return Err(format!("unknown controller {ctrl} in SubCgroupPaths"));
        }
    }
    let mut out = Vec::with_capacity(dirs.len());
    for (ctrls, base) in dirs {
        let mut named = ctrls.iter().filter_map(|c| subs.get(c).map(|s| (c, s)));
        let dir = match named.next() {
            None => base.to_path_buf(),
            Some((c1, sub)) => {
                // Controllers of one hierarchy share one directory.
                if let Some((c2, other)) = named.find(|(_, s)| *s != sub) {
                    return Err(format!(
                        "--cgroup: {c1} and {c2} are in one hierarchy ({}) but name different sub-cgroups ({sub:?}, {other:?})",
                        base.display()
                    ));
                }
                sub_cgroup_dir(base, sub)?
            }
        };
        out.push(dir);
    }
    Ok(out)
}

struct ExecParent<'a> {
    /// The cgroup directories to put the process in, one per hierarchy.
    cgroup_dirs: Vec<PathBuf>,
    /// Which of them is the cgroup2 one, if any.
    cgroup2: Option<usize>,
    state: &'a crate::State,
    status: &'static str,
}

impl ParentSteps for ExecParent<'_> {
    fn placed(&mut self, pid: i32, in_cgroup2: bool, v1_joined: bool) -> Result<(), String> {
        for (i, dir) in self.cgroup_dirs.iter().enumerate() {
            if in_cgroup2 && Some(i) == self.cgroup2 {
                // Cloned into it (CLONE_INTO_CGROUP).
                continue;
            }
            if v1_joined && Some(i) != self.cgroup2 {
                // Joined by the process itself (its `tasks` file).
                continue;
            }
            self.state
                .cgroup
                .add_exec_task(pid, dir)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
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
        let cgroup_dirs = exec_cgroup_dirs(&st.cgroup, &sub_cgroups(&o.cgroup)?).map_err(|e| {
            Error::msg(format!(
                "exec failed: unable to start container process: {e}"
            ))
        })?;
        // exec_cgroup_dirs follows the order of dirs(): the hierarchy without v1 controllers
        // is the cgroup2 one.
        let cgroup2 = st.cgroup.dirs().iter().position(|(c, _)| c.is_empty());
        let spec = exec_process(o, st.process.as_ref())?;
        let mut plan_proc = ProcessPlan::from_spec(&spec).map_err(Error::msg)?;
        plan_proc
            .set_linux(st.personality.as_ref(), st.memory_policy.as_ref())
            .map_err(Error::msg)?;
        if !st.namespaces.iter().any(|n| n == "user") {
            if let Some(c) = plan_proc.caps.as_mut() {
                self.settle_caps(c).map_err(|e| {
                    Error::msg(format!(
                        "exec failed: unable to start container process: {e}"
                    ))
                })?;
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
        if seccomp.is_some() {
            kakuri_timings::mark("seccomp compile");
        }
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
            cgroup2_dir: cgroup2
                .and_then(|i| cgroup_dirs.get(i))
                .and_then(|d| crate::create::open_cgroup2_dir(d)),
            // The systemd driver's directories are the unit's: written through like any other.
            // The freezer's last: in a paused container the process stops as it joins that one.
            cgroup_v1_tasks: {
                let ctrls = st.cgroup.dirs();
                let freezer = |i: usize| {
                    ctrls
                        .get(i)
                        .is_some_and(|(c, _)| c.iter().any(|c| c == "freezer"))
                };
                let mut v1: Vec<usize> = (0..cgroup_dirs.len())
                    .filter(|i| Some(*i) != cgroup2)
                    .collect();
                v1.sort_by_key(|i| freezer(*i));
                kakuri_isolate::open_v1_tasks(v1.iter().map(|i| cgroup_dirs[*i].as_path()))
            },
        };
        let init = Init {
            state: &st,
            hooks: None,
            seccomp,
            host_pid: Cell::new(0),
        };
        let mut parent = ExecParent {
            cgroup_dirs,
            cgroup2,
            state: &st,
            status: status.as_str(),
        };
        kakuri_isolate::make_non_dumpable().map_err(Error::msg)?;
        let mut oom = crate::events::OomWatch::new(&st.cgroup);
        kakuri_timings::mark("exec plan, OOM watch");
        let pid = kakuri_isolate::exec::spawn_exec(&plan, &init, &mut parent).map_err(|e| {
            // runc's words: an OOM kill in the container's cgroup meanwhile might be the cause.
            let e = if oom.as_mut().is_some_and(|w| w.poll() > 0) {
                format!("{e} (possibly OOM-killed)")
            } else {
                e.to_string()
            };
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
        let code = crate::run::wait_forwarding(pid, master.as_ref(), None);
        kakuri_timings::mark("wait: the process exits");
        code
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
    fn process_file_user_defaults_to_root() {
        let p = |s: &str| String::from_utf8(with_default_user(s.as_bytes().to_vec())).unwrap();
        assert_eq!(
            p(" {\"args\":[\"id\"]}"),
            " {\"user\":{\"uid\":0,\"gid\":0},\"args\":[\"id\"]}"
        );
        assert_eq!(p("{}"), "{\"user\":{\"uid\":0,\"gid\":0}}");
        let given = "{\"user\":{\"uid\":5,\"gid\":6}}";
        assert_eq!(p(given), given);
        assert_eq!(p("[1]"), "[1]");
    }

    #[test]
    fn cgroup_arguments_as_runc() {
        let v = |a: &[&str]| sub_cgroups(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let m = v(&["foo"]).unwrap();
        assert_eq!(m.get(""), Some(&"foo".to_string()));
        let m = v(&["cpu,memory:a", "pids:b/c"]).unwrap();
        assert_eq!(m.len(), 3);
        assert_eq!(m["cpu"], "a");
        assert_eq!(m["memory"], "a");
        assert_eq!(m["pids"], "b/c");
        let e = v(&["a", "pids:b"]).unwrap_err().to_string();
        assert!(e.ends_with("invalid --cgroup argument: a (missing <controller>: prefix)"));
        let e = v(&["a:b:c"]).unwrap_err().to_string();
        assert!(e.ends_with("invalid --cgroup argument: a:b:c"), "{e}");
        let base = Path::new("/sys/fs/cgroup/pids/ct");
        assert_eq!(sub_cgroup_dir(base, "x/../y").unwrap(), base.join("y"));
        assert_eq!(sub_cgroup_dir(base, "/abs").unwrap(), base.join("abs"));
        assert!(sub_cgroup_dir(base, "../x").is_err());
    }

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("bob").is_err());
    }
}
