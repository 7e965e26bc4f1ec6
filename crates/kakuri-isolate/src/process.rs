//! The container process's own settings: user and groups, capabilities, rlimits, umask, the
//! executable lookup, and the final `execve`. Shared by a container's init and by `exec`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use kakuri_spec::{oci, os_error};

use crate::sys;

/// The five capability sets, as bit masks (bit N = capability N).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

impl CapSets {
    /// The capabilities asked for, in any set, that this process cannot grant: those missing
    /// from its own bounding set (or unknown to the kernel). A process that stays in the
    /// runtime's user namespace can hold no others. (In a new or joined user namespace every
    /// capability of that namespace can be granted: do not ask there.)
    pub fn ungrantable(&self) -> u64 {
        let asked =
            self.bounding | self.effective | self.permitted | self.inheritable | self.ambient;
        // Only the capabilities asked for are looked up (one prctl each, on the start path).
        let mut missing = 0u64;
        for i in (0..64u64).filter(|i| asked & (1 << i) != 0) {
            // 0: not in the bounding set; EINVAL: a capability this kernel does not know.
            if !matches!(sys::prctl(libc::PR_CAPBSET_READ, i as libc::c_ulong), Ok(1)) {
                missing |= 1 << i;
            }
        }
        missing
    }

    /// Of `missing`, those `capset(2)` would refuse (`EPERM`): in the effective, permitted or
    /// inheritable set. The bounding and ambient sets can only lose capabilities, so one the
    /// process lacks there is just left out (runc does not fail for those).
    pub fn refused_by_capset(&self, missing: u64) -> u64 {
        missing & (self.effective | self.permitted | self.inheritable)
    }

    /// Take `mask` out of every set.
    pub fn remove(&mut self, mask: u64) {
        for set in [
            &mut self.bounding,
            &mut self.effective,
            &mut self.permitted,
            &mut self.inheritable,
            &mut self.ambient,
        ] {
            *set &= !mask;
        }
    }
}

/// The names of the capabilities in `mask`: `CAP_SYS_RESOURCE CAP_SYS_NICE`.
pub fn cap_names(mask: u64) -> String {
    (0..64u8)
        .filter(|i| mask & (1u64 << i) != 0)
        .map(|i| {
            caps::all()
                .into_iter()
                .find(|c| c.index() == i)
                .map_or_else(|| format!("capability {i}"), |c| c.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One `setrlimit` to make.
#[derive(Debug, Clone, Copy)]
pub struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

/// Everything about the process to exec, resolved from the spec's `process` before forking.
#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: Option<CapSets>,
    pub rlimits: Vec<Rlimit>,
    pub no_new_privileges: bool,
    pub terminal: bool,
    /// `process.consoleSize` as (rows, columns), when both are non-zero (as runc).
    pub console_size: Option<(u16, u16)>,
    pub oom_score_adj: Option<i32>,
    /// `process.scheduler`, for `sched_setattr(2)`.
    pub scheduler: Option<sys::SchedAttr>,
    /// `process.ioPriority`, as an `ioprio_set(2)` value.
    pub io_priority: Option<i32>,
    /// `process.execCPUAffinity.initial` (exec only): CPUs of the runtime before the process
    /// joins the container's cgroup.
    pub affinity_initial: Option<Vec<usize>>,
    /// `process.execCPUAffinity.final` (exec only): CPUs of the process once in the cgroup.
    pub affinity_final: Option<Vec<usize>>,
    /// `process.apparmorProfile`.
    pub apparmor_profile: Option<String>,
    /// `process.selinuxLabel`.
    pub selinux_label: Option<String>,
    /// `linux.personality`, as a `personality(2)` value (set with [`ProcessPlan::set_linux`]).
    pub personality: Option<libc::c_ulong>,
    /// `linux.memoryPolicy`, for `set_mempolicy(2)` (set with [`ProcessPlan::set_linux`]).
    pub mem_policy: Option<MemPolicy>,
}

/// A `set_mempolicy(2)` call: mode with its flags, and the node mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemPolicy {
    pub mode: libc::c_int,
    /// One bit per node, 64 nodes a word.
    pub nodemask: Vec<u64>,
}

/// `linux.memoryPolicy` as runtime-spec 1.3 defines it: a mode, a node list in cpuset format
/// ("0-3,7") and flags; the node count is checked per mode as runc does.
pub fn mem_policy(m: &oci::LinuxMemoryPolicy) -> Result<MemPolicy, String> {
    use oci::MemoryPolicyFlagType as F;
    use oci::MemoryPolicyModeType as M;
    let mode = match m.mode() {
        M::MpolDefault => 0,
        M::MpolPreferred => 1,
        M::MpolBind => 2,
        M::MpolInterleave => 3,
        M::MpolLocal => 4,
        M::MpolPreferredMany => 5,
        M::MpolWeightedInterleave => 6,
    };
    let nodes = match m
        .nodes()
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => Vec::new(),
        Some(s) => {
            // The kernel's MAX_NUMNODES is at most 1024, as CPU_SETSIZE bounds the CPU list.
            parse_cpu_list(s, "linux.memoryPolicy.nodes").map_err(|_| {
                format!("linux.memoryPolicy.nodes: invalid node list {s:?} (nodes 0 to 1023, e.g. \"0-3,7\")")
            })?
        }
    };
    match m.mode() {
        M::MpolDefault | M::MpolLocal if !nodes.is_empty() => {
            return Err(format!(
                "linux.memoryPolicy.nodes: mode {} takes no nodes (got {})",
                m.mode(),
                nodes.len()
            ))
        }
        M::MpolBind | M::MpolInterleave | M::MpolPreferredMany | M::MpolWeightedInterleave
            if nodes.is_empty() =>
        {
            return Err(format!(
                "linux.memoryPolicy.nodes: mode {} needs at least one node",
                m.mode()
            ))
        }
        _ => {}
    }
    let mut flags = 0;
    for f in m.flags().iter().flatten() {
        flags |= match f {
            F::MpolFNumaBalancing => 1 << 13,
            F::MpolFRelativeNodes => 1 << 14,
            F::MpolFStaticNodes => 1 << 15,
        };
    }
    let mut nodemask = vec![0u64; nodes.iter().max().map_or(0, |n| n / 64 + 1)];
    for n in nodes {
        nodemask[n / 64] |= 1 << (n % 64);
    }
    Ok(MemPolicy {
        mode: mode | flags,
        nodemask,
    })
}

/// `linux.personality` as a `personality(2)` value: runtime-spec 1.3 defines the domains
/// `LINUX` and `LINUX32` and no flags. runc warns about and drops flags; kakuri refuses them,
/// since nothing would apply them.
pub fn personality(p: &oci::LinuxPersonality) -> Result<libc::c_ulong, String> {
    if let Some(f) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(format!(
            "linux.personality.flags: runtime-spec 1.3 defines no personality flags, none can be applied (got {f:?})"
        ));
    }
    Ok(match p.domain() {
        oci::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    })
}

/// Parse a CPU list ("0-3,7") of `process.execCPUAffinity`.
pub fn parse_cpu_list(s: &str, field: &str) -> Result<Vec<usize>, String> {
    let bad = || format!("{field}: invalid CPU list {s:?}");
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: usize = a.trim().parse().map_err(|_| bad())?;
        let b: usize = b.trim().parse().map_err(|_| bad())?;
        if a > b || b >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

fn sched_attr(s: &oci::Scheduler) -> Result<sys::SchedAttr, String> {
    use oci::LinuxSchedulerFlag as F;
    use oci::LinuxSchedulerPolicy as P;
    let policy = match s.policy() {
        P::SchedOther => libc::SCHED_OTHER,
        P::SchedFifo => libc::SCHED_FIFO,
        P::SchedRr => libc::SCHED_RR,
        P::SchedBatch => libc::SCHED_BATCH,
        P::SchedIdle => libc::SCHED_IDLE,
        P::SchedDeadline => 6,
        P::SchedIso => {
            return Err("process.scheduler.policy: SCHED_ISO is not supported by Linux".into())
        }
    } as u32;
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(format!(
            "process.scheduler.nice: {nice} is out of range (-20 to 19)"
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(s.policy(), P::SchedFifo | P::SchedRr);
    if realtime && !(1..=99).contains(&priority) {
        return Err(format!(
            "process.scheduler.priority: {priority} is out of range for {} (1 to 99)",
            s.policy()
        ));
    }
    if !realtime && priority != 0 {
        return Err(format!(
            "process.scheduler.priority: must be 0 for {} (got {priority})",
            s.policy()
        ));
    }
    let deadline = *s.policy() == P::SchedDeadline;
    if !deadline && (s.runtime().is_some() || s.deadline().is_some() || s.period().is_some()) {
        return Err(format!(
            "process.scheduler: runtime, deadline and period are only for SCHED_DEADLINE, not {}",
            s.policy()
        ));
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SchedResetOnFork => 0x01,
            F::SchedFlagReclaim => 0x02,
            F::SchedFlagDLOverrun => 0x04,
            F::SchedFlagKeepPolicy => 0x08,
            F::SchedFlagKeepParams => 0x10,
            F::SchedFlagUtilClampMin => 0x20,
            F::SchedFlagUtilClampMax => 0x40,
        };
    }
    Ok(sys::SchedAttr {
        size: 0,
        policy,
        flags,
        nice,
        priority: priority as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
        util_min: 0,
        util_max: 1024,
    })
}

fn io_priority(p: &oci::LinuxIOPriority) -> Result<i32, String> {
    use oci::IOPriorityClass as C;
    let class = match p.class() {
        C::IoprioClassRt => 1,
        C::IoprioClassBe => 2,
        C::IoprioClassIdle => 3,
    };
    let prio = p.priority();
    if !(0..=7).contains(&prio) {
        return Err(format!(
            "process.ioPriority.priority: {prio} is out of range (0 to 7)"
        ));
    }
    Ok((class << 13) | prio as i32)
}

fn cap_mask(set: &Option<oci::Capabilities>, field: &str) -> Result<u64, String> {
    let mut m = 0u64;
    for c in set.iter().flatten() {
        let name = format!("CAP_{c}");
        match caps::Capability::from_str(&name) {
            Ok(cap) => m |= cap.bitmask(),
            Err(_) => return Err(format!("{field}: unknown capability {name:?}")),
        }
    }
    Ok(m)
}

fn rlimit_resource(t: oci::PosixRlimitType) -> libc::__rlimit_resource_t {
    use oci::PosixRlimitType as T;
    match t {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    }
}

/// `process.consoleSize`: (rows, columns) when both are non-zero, as runc applies it.
fn console_size(p: &oci::Process) -> Result<Option<(u16, u16)>, String> {
    let Some(b) = p.console_size() else {
        return Ok(None);
    };
    let dim = |v: u64, f: &str| {
        u16::try_from(v).map_err(|_| format!("process.consoleSize.{f}: {v} is larger than 65535"))
    };
    let (rows, cols) = (dim(b.height(), "height")?, dim(b.width(), "width")?);
    Ok((rows != 0 && cols != 0).then_some((rows, cols)))
}

impl ProcessPlan {
    /// Build the plan from a spec `process`; errors name the field.
    pub fn from_spec(p: &oci::Process) -> Result<ProcessPlan, String> {
        let caps = match p.capabilities() {
            None => None,
            Some(c) => Some(CapSets {
                bounding: cap_mask(c.bounding(), "process.capabilities.bounding")?,
                effective: cap_mask(c.effective(), "process.capabilities.effective")?,
                permitted: cap_mask(c.permitted(), "process.capabilities.permitted")?,
                inheritable: cap_mask(c.inheritable(), "process.capabilities.inheritable")?,
                ambient: cap_mask(c.ambient(), "process.capabilities.ambient")?,
            }),
        };
        let rlimits = p
            .rlimits()
            .iter()
            .flatten()
            .map(|r| Rlimit {
                resource: rlimit_resource(r.typ()),
                soft: r.soft(),
                hard: r.hard(),
            })
            .collect();
        let u = p.user();
        let scheduler = p.scheduler().as_ref().map(sched_attr).transpose()?;
        let io_priority = p.io_priority().as_ref().map(io_priority).transpose()?;
        let aff = p.exec_cpu_affinity().as_ref();
        let cpus = |v: Option<&String>, field: &str| {
            v.filter(|s| !s.trim().is_empty())
                .map(|s| parse_cpu_list(s, field))
                .transpose()
        };
        let affinity_initial = cpus(
            aff.and_then(|a| a.initial().as_ref()),
            "process.execCPUAffinity.initial",
        )?;
        let affinity_final = cpus(
            aff.and_then(|a| a.cpu_affinity_final().as_ref()),
            "process.execCPUAffinity.final",
        )?;
        Ok(ProcessPlan {
            args: p.args().clone().unwrap_or_default(),
            env: p.env().clone().unwrap_or_default(),
            cwd: p.cwd().clone(),
            uid: u.uid(),
            gid: u.gid(),
            additional_gids: u.additional_gids().clone().unwrap_or_default(),
            umask: u.umask(),
            caps,
            rlimits,
            no_new_privileges: p.no_new_privileges().unwrap_or(false),
            terminal: p.terminal().unwrap_or(false),
            console_size: console_size(p)?,
            oom_score_adj: p.oom_score_adj(),
            scheduler,
            io_priority,
            affinity_initial,
            affinity_final,
            apparmor_profile: p.apparmor_profile().clone().filter(|s| !s.is_empty()),
            selinux_label: p.selinux_label().clone().filter(|s| !s.is_empty()),
            personality: None,
            mem_policy: None,
        })
    }

    /// Take `linux.personality` and `linux.memoryPolicy` (applied to the init and to every
    /// exec'd process, as runc does).
    pub fn set_linux(
        &mut self,
        pers: Option<&oci::LinuxPersonality>,
        mpol: Option<&oci::LinuxMemoryPolicy>,
    ) -> Result<(), String> {
        self.personality = pers.map(personality).transpose()?;
        self.mem_policy = mpol.map(mem_policy).transpose()?;
        Ok(())
    }

    /// Apply `linux.memoryPolicy` and `linux.personality` to the calling process.
    pub fn apply_personality_and_mempolicy(&self) -> Result<(), String> {
        if let Some(m) = &self.mem_policy {
            sys::set_mempolicy(m.mode, &m.nodemask)
                .map_err(|e| format!("linux.memoryPolicy: set_mempolicy: {}", os_error(&e)))?;
        }
        if let Some(p) = self.personality {
            sys::personality(p)
                .map_err(|e| format!("linux.personality: personality({p:#x}): {}", os_error(&e)))?;
        }
        Ok(())
    }

    /// Apply `process.scheduler` and `process.ioPriority` to the calling process (while it
    /// still has its privileges: real-time policies and negative nice values need them).
    pub fn apply_scheduling(&self) -> Result<(), String> {
        if let Some(a) = &self.scheduler {
            sys::sched_setattr(a)
                .map_err(|e| format!("process.scheduler: sched_setattr: {}", os_error(&e)))?;
        }
        if let Some(p) = self.io_priority {
            sys::ioprio_set(p)
                .map_err(|e| format!("process.ioPriority: ioprio_set: {}", os_error(&e)))?;
        }
        Ok(())
    }

    /// The value of `PATH` in the process environment.
    fn path_var(&self) -> Option<&str> {
        self.env.iter().rev().find_map(|e| e.strip_prefix("PATH="))
    }

    /// Find the executable as Go's `exec.LookPath` does, with runc's error texts (clients match
    /// them to choose exit codes 126/127).
    pub fn resolve_executable(&self) -> Result<PathBuf, String> {
        let name = &self.args[0];
        if name.contains('/') {
            let p = Path::new(name);
            check_executable(p).map_err(|e| format!("exec: {name:?}: {}", os_error(&e)))?;
            return Ok(p.to_path_buf());
        }
        let path = self.path_var().unwrap_or("");
        let mut first_err: Option<io::Error> = None;
        for dir in path.split(':') {
            let dir = if dir.is_empty() { "." } else { dir };
            let cand = Path::new(dir).join(name);
            match check_executable(&cand) {
                Ok(()) => return Ok(cand),
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && first_err.is_none() => {
                    first_err = Some(e)
                }
                Err(_) => {}
            }
        }
        match first_err {
            Some(e) => Err(format!("exec: {name:?}: {}", os_error(&e))),
            None => Err(format!(
                "exec: {name:?}: executable file not found in $PATH"
            )),
        }
    }

    /// Apply rlimits (before privileges are dropped, since raising a hard limit needs them).
    pub fn apply_rlimits(&self) -> Result<(), String> {
        for r in &self.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            // SAFETY: setrlimit reads a valid rlimit struct.
            if unsafe { libc::setrlimit(r.resource, &lim) } != 0 {
                let e = io::Error::last_os_error();
                let mut cur = libc::rlimit {
                    rlim_cur: 0,
                    rlim_max: 0,
                };
                // Without CAP_SYS_RESOURCE (rootless) a hard limit can only be lowered: say so.
                // SAFETY: getrlimit writes into a valid rlimit struct.
                let hint = if e.raw_os_error() == Some(libc::EPERM)
                    && unsafe { libc::getrlimit(r.resource, &mut cur) } == 0
                    && r.hard > cur.rlim_max
                {
                    format!(
                        " (hard limit {} is above the caller's {}: raising it needs CAP_SYS_RESOURCE)",
                        r.hard, cur.rlim_max
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "error setting rlimit type {}: {e}{hint}",
                    r.resource
                ));
            }
        }
        Ok(())
    }

    /// Switch to the process's user and groups and set its capability sets, in the order that
    /// keeps the needed privileges until the end: bounding set, then ids (with keep-caps), then the
    /// other sets.
    pub fn apply_credentials(&self, setgroups_allowed: bool) -> Result<(), String> {
        if let Some(c) = &self.caps {
            let last = last_cap();
            for i in 0..=last {
                if c.bounding & (1u64 << i) == 0 {
                    sys::prctl(libc::PR_CAPBSET_DROP, i as libc::c_ulong)
                        .map_err(|e| format!("drop capability {i} from the bounding set: {e}"))?;
                }
            }
            sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(|e| format!("keep caps: {e}"))?;
        }
        if setgroups_allowed {
            match sys::setgroups(&self.additional_gids) {
                Ok(()) => {}
                // A user namespace with setgroups denied (the runtime's own, as under
                // `unshare --map-root-user`): runc leaves the groups alone there too.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) && crate::setgroups_denied() => {}
                Err(e) => return Err(format!("setgroups {:?}: {e}", self.additional_gids)),
            }
        }
        sys::setresgid(self.gid).map_err(|e| format!("setgid {}: {e}", self.gid))?;
        sys::setresuid(self.uid).map_err(|e| format!("setuid {}: {e}", self.uid))?;
        if let Some(c) = &self.caps {
            capset(c.effective, c.permitted, c.inheritable)
                .map_err(|e| format!("apply capabilities: {e}"))?;
            // SAFETY: integer-only prctl.
            unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_CLEAR_ALL,
                    0,
                    0,
                    0,
                );
            }
            for i in 0..=last_cap() {
                if c.ambient & (1u64 << i) != 0 {
                    // SAFETY: integer-only prctl.
                    let r = unsafe {
                        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_RAISE, i, 0, 0)
                    };
                    if r != 0 {
                        // runc ignores ambient capabilities the kernel refuses (not in
                        // permitted and inheritable): only log.
                        log::debug!(
                            "could not raise ambient capability {i}: {}",
                            io::Error::last_os_error()
                        );
                    }
                }
            }
            sys::prctl(libc::PR_SET_KEEPCAPS, 0).map_err(|e| format!("clear keep caps: {e}"))?;
        }
        Ok(())
    }

    /// Give the process's user the terminal or the stdio it will use, as runc does before it
    /// changes user: the owner becomes `uid` (the group is left as it is: devpts may impose
    /// one), unless the descriptor already belongs to `uid` or is the container's /dev/null.
    /// EINVAL, EPERM and EROFS (an id not mapped in the user namespace, an owner we may not
    /// change, a read-only /dev) leave the descriptor untouched.
    pub fn give_stdio_to_user(&self, console: Option<BorrowedFd>) -> Result<(), String> {
        let null_rdev = nix::sys::stat::stat("/dev/null")
            .map_err(|e| format!("stat /dev/null: {e}"))?
            .st_rdev;
        let fds: Vec<RawFd> = match console {
            Some(c) => vec![c.as_raw_fd()],
            None => vec![0, 1, 2],
        };
        for fd in fds {
            let st = match nix::sys::stat::fstat(fd) {
                Ok(st) => st,
                // A closed stdio descriptor: nothing to give.
                Err(nix::errno::Errno::EBADF) => continue,
                Err(e) => return Err(format!("fstat stdio fd {fd}: {e}")),
            };
            if st.st_uid == self.uid || st.st_rdev == null_rdev {
                continue;
            }
            // SAFETY: fchown on a descriptor number with plain integer ids; the group is left
            // unchanged (-1).
            let r = unsafe { libc::fchown(fd, self.uid, u32::MAX) };
            if r != 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINVAL | libc::EPERM | libc::EROFS) => continue,
                    _ => return Err(format!("chown stdio fd {fd} to uid {}: {e}", self.uid)),
                }
            }
        }
        Ok(())
    }

    /// Everything the final execve needs, built while the process may still read files (the
    /// container's /etc/passwd for HOME) and allocate freely: after the seccomp filter only the
    /// execve itself is left.
    pub fn prepare_exec(&self, path: &Path) -> Result<Execve, String> {
        // The config's strings were checked for NUL bytes when it was loaded; one here (from
        // /etc/passwd, say) is still an error naming where it came from, never an empty string.
        let to_c = |s: &str, what: &dyn Fn() -> String| {
            CString::new(s).map_err(|_| format!("{}: contains a NUL byte", what()))
        };
        let argv = (self.args.iter().enumerate())
            .map(|(i, a)| to_c(a, &|| format!("process.args[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut envp = (self.env.iter().enumerate())
            .map(|(i, e)| to_c(e, &|| format!("process.env[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        // As runc: without HOME in the process env, it is the user's home from the container's
        // /etc/passwd ("/" when the uid has no entry).
        if !self.env.iter().any(|e| e.starts_with("HOME=")) {
            let home = format!("HOME={}", home_of(self.uid));
            envp.push(to_c(&home, &|| "HOME from /etc/passwd".into())?);
        }
        let path = to_c(&path.to_string_lossy(), &|| format!("executable {path:?}"))?;
        Ok(Execve {
            path,
            argv,
            envp,
            name: self.args[0].clone(),
        })
    }
}

/// A prepared final `execve` ([`ProcessPlan::prepare_exec`]).
pub struct Execve {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    name: String,
}

impl Execve {
    /// Exec the program. Returns only on error.
    pub fn exec(&self) -> String {
        let e = sys::execve(&self.path, &self.argv, &self.envp);
        format!("exec {:?}: {}", self.name, os_error(&e))
    }
}

/// The home directory of `uid` in the (container's) /etc/passwd, or "/".
fn home_of(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd_home(&passwd, uid).unwrap_or_else(|| "/".to_string())
}

fn passwd_home(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty())
            .then(|| f[5].to_string())
    })
}

fn check_executable(p: &Path) -> io::Result<()> {
    let md = std::fs::metadata(p)?;
    if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    Ok(())
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// `capset(2)` with version 3 (64-bit) capability sets.
fn capset(effective: u64, permitted: u64, inheritable: u64) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let hdr = Header {
        version: V3,
        pid: 0,
    };
    let lo = |v: u64| v as u32;
    let hi = |v: u64| (v >> 32) as u32;
    let data = [
        Data {
            effective: lo(effective),
            permitted: lo(permitted),
            inheritable: lo(inheritable),
        },
        Data {
            effective: hi(effective),
            permitted: hi(permitted),
            inheritable: hi(inheritable),
        },
    ];
    // SAFETY: header and two data structs laid out as the kernel's v3 ABI expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], path: &str) -> ProcessPlan {
        ProcessPlan {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec![format!("PATH={path}")],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            umask: None,
            caps: None,
            rlimits: vec![],
            no_new_privileges: false,
            terminal: false,
            console_size: None,
            oom_score_adj: None,
            scheduler: None,
            io_priority: None,
            affinity_initial: None,
            affinity_final: None,
            apparmor_profile: None,
            selinux_label: None,
            personality: None,
            mem_policy: None,
        }
    }

    #[test]
    fn memory_policies() {
        let m = |j: &str| mem_policy(&serde_json::from_str(j).unwrap());
        let b =
            m(r#"{"mode":"MPOL_BIND","nodes":"0-1,65","flags":["MPOL_F_STATIC_NODES"]}"#).unwrap();
        assert_eq!(b.mode, 2 | 1 << 15);
        assert_eq!(b.nodemask, [0b11, 0b10]);
        let e = m(r#"{"mode":"MPOL_BIND"}"#).unwrap_err();
        assert!(
            e.starts_with("linux.memoryPolicy.nodes: mode MPOL_BIND needs"),
            "{e}"
        );
        let e = m(r#"{"mode":"MPOL_LOCAL","nodes":"0"}"#).unwrap_err();
        assert!(e.contains("takes no nodes"), "{e}");
        let e = m(r#"{"mode":"MPOL_INTERLEAVE","nodes":"0-x"}"#).unwrap_err();
        assert!(
            e.starts_with("linux.memoryPolicy.nodes: invalid node list"),
            "{e}"
        );
        let e = m(r#"{"mode":"MPOL_INTERLEAVE","nodes":"2000"}"#).unwrap_err();
        assert!(e.contains("nodes 0 to 1023"), "{e}");
        assert_eq!(
            m(r#"{"mode":"MPOL_PREFERRED"}"#).unwrap().nodemask,
            Vec::<u64>::new()
        );
    }

    #[test]
    fn personalities() {
        let p = |j: &str| personality(&serde_json::from_str(j).unwrap());
        assert_eq!(p(r#"{"domain":"LINUX32"}"#).unwrap(), 8);
        assert_eq!(p(r#"{"domain":"LINUX","flags":[]}"#).unwrap(), 0);
        let e = p(r#"{"domain":"LINUX","flags":["ADDR_NO_RANDOMIZE"]}"#).unwrap_err();
        assert!(e.starts_with("linux.personality.flags: "), "{e}");
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,7", "f").unwrap(), [0, 1, 2, 3, 7]);
        assert_eq!(parse_cpu_list("1", "f").unwrap(), [1]);
        let e = parse_cpu_list("3-1", "process.execCPUAffinity.final").unwrap_err();
        assert!(e.starts_with("process.execCPUAffinity.final: "), "{e}");
        assert!(parse_cpu_list("x", "f").is_err());
    }

    #[test]
    fn scheduler_fields_are_checked() {
        let s: oci::Scheduler =
            serde_json::from_str(r#"{"policy":"SCHED_FIFO","priority":0}"#).unwrap();
        let e = sched_attr(&s).unwrap_err();
        assert!(e.starts_with("process.scheduler.priority"), "{e}");
        let s: oci::Scheduler =
            serde_json::from_str(r#"{"policy":"SCHED_BATCH","nice":5}"#).unwrap();
        let a = sched_attr(&s).unwrap();
        assert_eq!((a.policy, a.nice), (libc::SCHED_BATCH as u32, 5));
        let p: oci::LinuxIOPriority =
            serde_json::from_str(r#"{"class":"IOPRIO_CLASS_IDLE","priority":0}"#).unwrap();
        assert_eq!(io_priority(&p).unwrap(), 3 << 13);
    }

    #[test]
    fn lookup_errors_use_runc_wording() {
        let e = plan(&["no-such-prog-kakuri"], "/usr/bin:/bin")
            .resolve_executable()
            .unwrap_err();
        assert_eq!(
            e,
            "exec: \"no-such-prog-kakuri\": executable file not found in $PATH"
        );
        let e = plan(&["/no/such/file"], "/bin")
            .resolve_executable()
            .unwrap_err();
        assert!(e.contains("no such file or directory"), "{e}");
        let f = std::env::temp_dir().join(format!("kakuri-noexec-{}", std::process::id()));
        std::fs::write(&f, "not a program").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = plan(&[f.to_str().unwrap()], "/bin")
            .resolve_executable()
            .unwrap_err();
        std::fs::remove_file(&f).unwrap();
        assert!(e.contains("permission denied"), "{e}");
        assert_eq!(
            plan(&["sh"], "/nonexistent:/bin")
                .resolve_executable()
                .unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn home_from_passwd() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nkakuri:x:1000:1000::/home/kakuri:/bin/sh\nbad\n";
        assert_eq!(passwd_home(pw, 1000).as_deref(), Some("/home/kakuri"));
        assert_eq!(passwd_home(pw, 0).as_deref(), Some("/root"));
        assert_eq!(passwd_home(pw, 5), None);
    }

    #[test]
    fn capability_names_map_to_bits() {
        let mut set = oci::Capabilities::new();
        set.insert(oci::Capability::Chown);
        set.insert(oci::Capability::SysAdmin);
        let m = cap_mask(&Some(set), "x").unwrap();
        assert_eq!(m, (1 << 0) | (1 << 21));
    }
}
