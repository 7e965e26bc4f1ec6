//! A new process in a running container (`exec`).
//!
//! The parent enters the container's pid (and time) namespace for its children only, forks once,
//! and goes back; the child joins the container's other namespaces (user first, mount last),
//! waits until the parent has put it in the container's cgroup, then applies the process spec
//! and execs. One fork, no re-exec, as for `create`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use kakuri_spec::os_error;

use crate::channel::{Channel, Msg};
use crate::process::ProcessPlan;
use crate::{sys, InitSteps, ParentSteps};

/// Everything an exec'd process needs, resolved before the fork.
#[derive(Debug)]
pub struct ExecPlan {
    /// The container's init (host pid): its `/proc/<pid>/ns/*` are joined.
    pub init_pid: i32,
    /// Namespace kinds to join ("user", "mnt", "pid", ...), as `/proc/<pid>/ns` names.
    pub namespaces: Vec<String>,
    pub process: ProcessPlan,
    pub console_socket: Option<OwnedFd>,
    pub preserve_fds: u32,
    /// Descriptors of the runtime the child must not keep.
    pub close_in_child: Vec<std::os::fd::RawFd>,
    /// The cgroup2 directory the process goes to (`O_PATH|O_DIRECTORY`): it is cloned straight
    /// into it where the kernel can (see [`crate::clone_child`]).
    pub cgroup2_dir: Option<OwnedFd>,
    /// The `tasks` files of the v1 cgroups the process goes to ([`crate::open_v1_tasks`]): it
    /// joins them itself; empty when the runtime places it through `cgroup.procs`.
    pub cgroup_v1_tasks: Vec<(PathBuf, OwnedFd)>,
}

fn flag_of(name: &str) -> libc::c_int {
    match name {
        "user" => libc::CLONE_NEWUSER,
        "mnt" => libc::CLONE_NEWNS,
        "pid" => libc::CLONE_NEWPID,
        "net" => libc::CLONE_NEWNET,
        "ipc" => libc::CLONE_NEWIPC,
        "uts" => libc::CLONE_NEWUTS,
        "cgroup" => libc::CLONE_NEWCGROUP,
        "time" => libc::CLONE_NEWTIME,
        _ => 0,
    }
}

fn open(path: &Path) -> Result<OwnedFd, String> {
    std::fs::File::open(path)
        .map(OwnedFd::from)
        .map_err(|e| format!("open {}: {}", path.display(), os_error(&e)))
}

/// Fork the exec'd process into the container; returns its host pid once it is about to exec.
pub fn spawn_exec(
    plan: &ExecPlan,
    steps: &dyn InitSteps,
    parent: &mut dyn ParentSteps,
) -> Result<i32, String> {
    let ns_path = |n: &str| PathBuf::from(format!("/proc/{}/ns/{n}", plan.init_pid));
    // Open every namespace first: the init could exit while we work.
    let mut fds: Vec<(String, OwnedFd)> = Vec::new();
    for n in &plan.namespaces {
        if flag_of(n) == 0 {
            continue;
        }
        // Only namespaces that differ from ours are joined (setns to one's own user namespace
        // fails with EINVAL).
        let theirs = ns_path(n);
        let ours = PathBuf::from(format!("/proc/self/ns/{n}"));
        let same = match (std::fs::metadata(&theirs), std::fs::metadata(&ours)) {
            (Ok(a), Ok(b)) => {
                use std::os::unix::fs::MetadataExt;
                a.ino() == b.ino() && a.dev() == b.dev()
            }
            (Err(e), _) => return Err(format!("open {}: {}", theirs.display(), os_error(&e))),
            _ => false,
        };
        if !same {
            fds.push((n.clone(), open(&theirs)?));
        }
    }
    // A container without a mount namespace of its own shares ours: the process enters its
    // root with chroot instead (the init's root, a bind of the rootfs in this namespace).
    let root = if plan.namespaces.iter().any(|n| n == "mnt") {
        None
    } else {
        Some(open(&PathBuf::from(format!(
            "/proc/{}/root",
            plan.init_pid
        )))?)
    };
    kakuri_timings::mark("open the container's namespaces");
    let (pch, cch) = Channel::pair().map_err(|e| format!("socketpair: {e}"))?;
    // pid and time namespaces apply to children: the parent enters them around the fork.
    let mut restore: Vec<(OwnedFd, libc::c_int)> = Vec::new();
    let undo = |restore: &mut Vec<(OwnedFd, libc::c_int)>| {
        for (fd, flag) in restore.drain(..).rev() {
            let _ = sys::setns(fd.as_fd(), flag);
        }
    };
    // An unprivileged runtime may not join the pid and time namespaces of a container in a
    // user namespace: only a process in that user namespace may. The child then joins it and
    // those namespaces, and forks the process (see `intermediate`).
    let joins_user = fds.iter().any(|(n, _)| n == "user");
    let mut via_intermediate = false;
    for (n, fd) in &fds {
        if n == "pid" || n == "time" {
            let own = open(Path::new(&format!("/proc/self/ns/{n}_for_children")))?;
            match sys::setns(fd.as_fd(), flag_of(n)) {
                Ok(()) => restore.push((own, flag_of(n))),
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && joins_user => {
                    undo(&mut restore);
                    via_intermediate = true;
                    break;
                }
                Err(e) => {
                    undo(&mut restore);
                    return Err(format!(
                        "join the container's {n} namespace: {}",
                        os_error(&e)
                    ));
                }
            }
        }
    }
    if via_intermediate {
        // The process is a grandchild: it must come back to the runtime when the
        // intermediate exits, so that the runtime can wait for it.
        sys::prctl(libc::PR_SET_CHILD_SUBREAPER, 1)
            .map_err(|e| format!("become a child subreaper: {e}"))?;
    }
    // execCPUAffinity.initial: the runtime runs there when it forks, so the child starts there
    // before it joins the container's cgroup.
    if let Some(cpus) = &plan.process.affinity_initial {
        if let Err(e) = sys::sched_setaffinity(0, cpus) {
            undo(&mut restore);
            return Err(format!(
                "process.execCPUAffinity.initial: sched_setaffinity: {}",
                os_error(&e)
            ));
        }
    }
    let (pid_rd, pid_wr) = if via_intermediate {
        let (r, w) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    // The process joins its v1 cgroups itself, except behind an intermediate (see `spawn`).
    let self_join = !via_intermediate && !plan.cgroup_v1_tasks.is_empty();
    // SAFETY: kakuri is single-threaded (see `spawn`).
    let forked = unsafe { crate::clone_child(0, plan.cgroup2_dir.as_ref().map(|f| f.as_fd())) };
    let in_cgroup2 = matches!(forked, Ok((_, true)));
    let forked = forked.map(|(f, _)| f);
    if !matches!(forked, Ok(sys::Forked::Child)) {
        undo(&mut restore);
    }
    let pid = match forked.map_err(|e| format!("fork: {}", os_error(&e)))? {
        sys::Forked::Child => {
            kakuri_timings::child(if pid_wr.is_some() {
                kakuri_timings::Process::Intermediate
            } else {
                kakuri_timings::Process::Exec
            });
            drop(pch);
            drop(restore);
            drop(pid_rd);
            if self_join {
                if let Err(e) = crate::join_v1_cgroups(&plan.cgroup_v1_tasks) {
                    let _ = cch.send(&Msg::Error(e));
                    sys::exit_now(255);
                }
            }
            let cg = plan.cgroup2_dir.as_ref().map(|f| f.as_raw_fd());
            for fd in plan.close_in_child.iter().chain(cg.iter()) {
                // SAFETY: the parent's descriptors (the state lock, the cgroup directory),
                // unused by this child, which never returns to drop their owners.
                unsafe { libc::close(*fd) };
            }
            let r = match pid_wr {
                Some(w) => intermediate(&fds, w)
                    .and_then(|()| exec_main(plan, &fds, root.as_ref(), &cch, steps, true)),
                None => exec_main(plan, &fds, root.as_ref(), &cch, steps, false),
            };
            let err = match r {
                Ok(never) => match never {},
                Err(e) => e,
            };
            if cch.send(&Msg::Error(err.clone())).is_err() {
                // Best effort: a write error must not panic (its stderr may be a closed pipe).
                use std::io::Write as _;
                let _ = writeln!(std::io::stderr(), "kakuri exec: {err}");
            }
            sys::exit_now(255);
        }
        sys::Forked::Parent(pid) => pid,
    };
    kakuri_timings::mark("fork");
    drop(cch);
    drop(fds);
    drop(root);
    drop(pid_wr);
    let pid = match pid_rd {
        None => pid,
        Some(rd) => {
            // The intermediate writes the process's pid and exits; its exit hands the process
            // to this runtime (a subreaper).
            let mut buf = [0u8; 4];
            let n = std::io::Read::read(&mut std::fs::File::from(rd), &mut buf).unwrap_or(0);
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
            if n != 4 {
                return Err(match pch.recv() {
                    Ok(Some(Msg::Error(e))) => e,
                    _ => "the intermediate exec process exited during setup".into(),
                });
            }
            i32::from_ne_bytes(buf)
        }
    };
    let result = (|| {
        parent.placed(pid, in_cgroup2, self_join)?;
        if !self_join {
            kakuri_timings::mark("cgroup.procs");
        }
        pch.send(&Msg::Go).map_err(|e| format!("sync: {e}"))?;
        // After Ready the process loads its filter (with noNewPrivileges) and execs: its end
        // of the channel is close-on-exec, so end-of-file then means it has exec'd (or died
        // without a word); an error before that still comes as a message.
        let mut ready = false;
        loop {
            let got = pch.recv_with_fd().map_err(|e| format!("sync: {e}"))?;
            if kakuri_timings::enabled() {
                crate::wait_mark("process", got.as_ref().map(|(m, _)| m));
            }
            match got {
                Some((Msg::Timeline(t), _)) => kakuri_timings::absorb(&t),
                Some((Msg::SeccompFd, fd)) if !ready => {
                    crate::handle_seccomp_fd(&pch, pid, fd, parent)?;
                }
                Some((Msg::Ready, _)) if !ready => ready = true,
                Some((Msg::Error(e), _)) => return Err(e),
                Some((m, _)) => return Err(format!("unexpected message: {m:?}")),
                None if ready => return Ok(()),
                None => return Err("the exec'd process exited during setup".into()),
            }
        }
    })();
    match result {
        Ok(()) => Ok(pid),
        Err(e) => {
            let p = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(p, None);
            Err(e)
        }
    }
}

/// In the intermediate child (unprivileged runtime, container in a user namespace): join the
/// user namespace (becoming root there), then the pid and time namespaces for the children,
/// fork the process, report its pid on `pid_wr` and exit. Returns in the process.
fn intermediate(fds: &[(String, OwnedFd)], pid_wr: OwnedFd) -> Result<(), String> {
    let join = |name: &str| -> Result<(), String> {
        for (n, fd) in fds.iter().filter(|(n, _)| n == name) {
            sys::setns(fd.as_fd(), flag_of(n))
                .map_err(|e| format!("join the container's {n} namespace: {}", os_error(&e)))?;
        }
        Ok(())
    };
    crate::make_non_dumpable()?;
    join("user")?;
    sys::setresgid(0).map_err(|e| format!("setgid 0: {e}"))?;
    sys::setresuid(0).map_err(|e| format!("setuid 0: {e}"))?;
    join("pid")?;
    join("time")?;
    // SAFETY: single-threaded: this child of the single-threaded runtime started no thread.
    match unsafe { sys::fork_clone(0) }.map_err(|e| format!("fork: {}", os_error(&e)))? {
        sys::Forked::Child => {
            kakuri_timings::child(kakuri_timings::Process::Exec);
            drop(pid_wr);
            Ok(())
        }
        sys::Forked::Parent(pid) => {
            let _ = std::io::Write::write_all(&mut std::fs::File::from(pid_wr), &pid.to_ne_bytes());
            sys::exit_now(0)
        }
    }
}

/// The exec'd process. `reparented_to`: it was forked by an intermediate and belongs to the
/// runtime (a subreaper) once the intermediate is gone; its user namespace is joined already.
fn exec_main(
    plan: &ExecPlan,
    fds: &[(String, OwnedFd)],
    root: Option<&OwnedFd>,
    ch: &Channel,
    steps: &dyn InitSteps,
    reparented_to: bool,
) -> Result<std::convert::Infallible, String> {
    let death_signal = || {
        sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
            .map_err(|e| format!("set parent death signal: {e}"))
    };
    // With an intermediate, the parent's death is the intermediate's planned exit: the death
    // signal is set once the runtime (which sends Go after reaping it) is the parent.
    if !reparented_to {
        death_signal()?;
    }
    // Before anything of the container can see this process (CVE-2019-5736 class).
    crate::make_non_dumpable()?;
    kakuri_timings::mark("death signal, non-dumpable");
    match ch.recv().map_err(|e| format!("sync: {e}"))? {
        Some(Msg::Go) => {}
        _ => sys::exit_now(255),
    }
    kakuri_timings::mark("wait: Go (in the cgroup)");
    if reparented_to {
        // (The runtime is outside this pid namespace: getppid says 0. Had it died before this,
        // the channel tells: the next message to it fails and the process exits.)
        death_signal()?;
    }
    // In the container's cgroup now: execCPUAffinity.final.
    if let Some(cpus) = &plan.process.affinity_final {
        sys::sched_setaffinity(0, cpus).map_err(|e| {
            format!(
                "process.execCPUAffinity.final: sched_setaffinity: {}",
                os_error(&e)
            )
        })?;
    }
    // User namespace first (it grants the rights to join the others), mount namespace last (it
    // changes our root and cwd).
    let order = |n: &str| match n {
        "user" => 0,
        "mnt" => 2,
        _ => 1,
    };
    let mut sorted: Vec<&(String, OwnedFd)> = fds
        .iter()
        .filter(|(n, _)| n != "pid" && n != "time")
        .filter(|(n, _)| !reparented_to || n != "user")
        .collect();
    sorted.sort_by_key(|(n, _)| order(n));
    for (n, fd) in sorted {
        sys::setns(fd.as_fd(), flag_of(n))
            .map_err(|e| format!("join the container's {n} namespace: {}", os_error(&e)))?;
        if n == "user" {
            sys::setresgid(0).map_err(|e| format!("setgid 0: {e}"))?;
            sys::setresuid(0).map_err(|e| format!("setuid 0: {e}"))?;
        }
    }
    if let Some(r) = root {
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(r))
            .map_err(|e| format!("chdir to the container's root: {e}"))?;
        nix::unistd::chroot(".").map_err(|e| format!("chroot to the container's root: {e}"))?;
    }
    kakuri_timings::mark("join the container's namespaces");
    let proc = &plan.process;
    let slave = if proc.terminal {
        let master = nix::fcntl::open(
            "/dev/pts/ptmx",
            nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_NOCTTY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| format!("open the container's /dev/pts/ptmx: {e}"))?;
        // SAFETY: fresh descriptor from open.
        let master: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(master) };
        sys::unlockpt(master.as_fd()).map_err(|e| format!("unlockpt: {}", os_error(&e)))?;
        if let Some((rows, cols)) = proc.console_size {
            sys::set_winsize(master.as_fd(), rows, cols)
                .map_err(|e| format!("set the console size: {}", os_error(&e)))?;
        }
        let slave = sys::pty_peer(
            master.as_fd(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
        .map_err(|e| format!("open pty peer: {}", os_error(&e)))?;
        if let Some(sock) = &plan.console_socket {
            crate::send_fd(sock, &master, "/dev/ptmx")
                .map_err(|e| format!("send the console to --console-socket: {e}"))?;
        }
        Some(slave)
    } else {
        None
    };
    // In a joined user namespace whose setgroups is denied (rootless), the additional gids
    // are left alone, as for the init.
    let setgroups_ok = !fds.iter().any(|(n, _)| n == "user") || !crate::setgroups_denied();
    let fin = crate::finish_process(proc, slave, plan.preserve_fds, setgroups_ok, steps, ch)?;
    // The runtime waits for the end of the channel (close-on-exec) or an error after Ready.
    if fin.seccomp_last {
        steps.load_seccomp()?;
    }
    Err(fin.exec.exec())
}
