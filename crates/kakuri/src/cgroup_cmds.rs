//! The cgroup commands `update` and `events`, with runc's flags.
//!
//! Wiring in main.rs (`mod cgroup_cmds;` next to `mod logging;`):
//!
//! In `enum Cmd`:
//! ```text
//!     /// Update the resource limits of a container
//!     Update(Box<cgroup_cmds::UpdateArgs>),
//!     /// Print container events: resource statistics and OOM notifications
//!     Events(cgroup_cmds::EventsArgs),
//! ```
//! In `dispatch()`:
//! ```text
//!         Cmd::Update(a) => (None, cgroup_cmds::update(rt, &a)),
//!         Cmd::Events(a) => (None, cgroup_cmds::events(rt, &a)),
//! ```

use std::io::Write;

use clap::Args;
use kakuri_container::events::{self, Event};
use kakuri_container::update::{UpdateFlags, UpdateSource};
use kakuri_container::{Error, Runtime};

/// `kakuri update [flags] ID`.
#[derive(Args, Debug, Clone)]
pub struct UpdateArgs {
    /// Container id
    pub id: String,
    /// File with a linux.resources JSON object to apply, or '-' for stdin; the other flags
    /// are then ignored
    #[arg(short = 'r', long, value_name = "FILE")]
    pub resources: Option<String>,
    /// Block IO weight (10-1000)
    #[arg(long = "blkio-weight", value_name = "N", allow_hyphen_values = true)]
    pub blkio_weight: Option<String>,
    /// CPU CFS period in microseconds (0: the system default)
    #[arg(long = "cpu-period", value_name = "US")]
    pub cpu_period: Option<String>,
    /// CPU CFS quota in microseconds per period (-1: no limit)
    #[arg(long = "cpu-quota", value_name = "US", allow_hyphen_values = true)]
    pub cpu_quota: Option<String>,
    /// CPU CFS burst in microseconds
    #[arg(long = "cpu-burst", value_name = "US")]
    pub cpu_burst: Option<String>,
    /// CPU shares (relative weight against other containers)
    #[arg(long = "cpu-share", value_name = "N")]
    pub cpu_share: Option<String>,
    /// CPU realtime period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "US")]
    pub cpu_rt_period: Option<String>,
    /// CPU realtime runtime in microseconds per period
    #[arg(long = "cpu-rt-runtime", value_name = "US", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<String>,
    /// CPUs the container may use ("0-2,4")
    #[arg(long = "cpuset-cpus", value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes the container may use
    #[arg(long = "cpuset-mems", value_name = "LIST")]
    pub cpuset_mems: Option<String>,
    /// SCHED_IDLE for the cgroup: 1, or 0 for the default
    #[arg(long = "cpu-idle", value_name = "0|1")]
    pub cpu_idle: Option<String>,
    /// Memory limit in bytes, or with a unit ("512m"); -1: no limit
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory: Option<String>,
    /// Memory soft limit in bytes, or with a unit
    #[arg(
        long = "memory-reservation",
        value_name = "SIZE",
        allow_hyphen_values = true
    )]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit in bytes, or with a unit; -1: unlimited swap
    #[arg(long = "memory-swap", value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Obsolete and ignored (a warning is printed)
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    pub kernel_memory: Option<String>,
    /// Obsolete and ignored (a warning is printed)
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    pub kernel_memory_tcp: Option<String>,
    /// Maximum number of pids in the container (-1: no limit)
    #[arg(long = "pids-limit", value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported: an error)
    #[arg(long = "l3-cache-schema", value_name = "SCHEMA")]
    pub l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported: an error)
    #[arg(long = "mem-bw-schema", value_name = "SCHEMA")]
    pub mem_bw_schema: Option<String>,
}

impl UpdateArgs {
    fn flags(&self) -> UpdateFlags {
        UpdateFlags {
            blkio_weight: self.blkio_weight.clone(),
            cpu_period: self.cpu_period.clone(),
            cpu_quota: self.cpu_quota.clone(),
            cpu_burst: self.cpu_burst.clone(),
            cpu_share: self.cpu_share.clone(),
            cpu_rt_period: self.cpu_rt_period.clone(),
            cpu_rt_runtime: self.cpu_rt_runtime.clone(),
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            cpu_idle: self.cpu_idle.clone(),
            memory: self.memory.clone(),
            memory_reservation: self.memory_reservation.clone(),
            memory_swap: self.memory_swap.clone(),
            kernel_memory: self.kernel_memory.clone(),
            kernel_memory_tcp: self.kernel_memory_tcp.clone(),
            pids_limit: self.pids_limit,
            l3_cache_schema: self.l3_cache_schema.clone(),
            mem_bw_schema: self.mem_bw_schema.clone(),
        }
    }
}

/// `kakuri events [--stats] [--interval D] ID`.
#[derive(Args, Debug, Clone)]
pub struct EventsArgs {
    /// Container id
    pub id: String,
    /// Print the container's stats once and exit
    #[arg(long)]
    pub stats: bool,
    /// Stats collection interval (a Go duration: 5s, 500ms, 1m)
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = events::parse_duration)]
    pub interval: std::time::Duration,
}

/// Run `update`.
pub fn update(rt: &Runtime, a: &UpdateArgs) -> Result<u8, Error> {
    let src = UpdateSource::from_arg(a.resources.as_deref(), a.flags());
    rt.update_from(&a.id, &src)?;
    Ok(0)
}

/// Run `events`: JSON events on stdout, one per line.
pub fn events(rt: &Runtime, a: &EventsArgs) -> Result<u8, Error> {
    // runc's order of checks: the container exists, the interval is valid, it is not stopped.
    rt.state(&a.id)?;
    events::check_interval(a.interval)?;
    if a.stats {
        let s = rt.stats(&a.id)?;
        let ev = Event {
            kind: "stats",
            id: &a.id,
            data: Some(s),
        };
        return super::output::stdout(ev.line().as_bytes()).map(|()| 0);
    }
    rt.events(&a.id, a.interval, &mut |ev| {
        let mut out = std::io::stdout().lock();
        match out
            .write_all(ev.line().as_bytes())
            .and_then(|()| out.flush())
        {
            // The reader has gone: end quietly (crate::output), as for every other command.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => super::output::broken_pipe(),
            r => r,
        }
    })?;
    Ok(0)
}
