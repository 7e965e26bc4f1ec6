//! Resources on the cgroup v2 hierarchy, written as runc's fs2 driver writes them (with its v1 -> v2
//! conversions for cpu shares, blkio weights and memory+swap).

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kakuri_spec::oci::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::error::CgroupError;
use crate::{bpf, devices, fsutil, v1};

/// Enable every controller the hierarchy root offers in cgroup.subtree_control of each ancestor of `path`
/// (from the mount point down to the parent of `path`), so `path` gets their files.
pub(crate) fn enable_controllers(mount_point: &Path, path: &Path) -> Result<(), CgroupError> {
    let what = "create cgroup";
    let available = fsutil::read(mount_point, "cgroup.controllers", what)?;
    let ctrls: Vec<&str> = available.split_whitespace().collect();
    if ctrls.is_empty() {
        return Ok(());
    }
    let all = ctrls
        .iter()
        .map(|c| format!("+{c}"))
        .collect::<Vec<_>>()
        .join(" ");
    let Ok(rel) = path.strip_prefix(mount_point) else {
        return Ok(());
    };
    let mut cur = mount_point.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, comp) in comps.iter().enumerate() {
        let file = cur.join("cgroup.subtree_control");
        if fsutil::write_raw(&file, &all).is_err() {
            // Some controller cannot be enabled here (e.g. threaded subtree): enable what can be, the
            // resources that need a missing one fail later with a precise error.
            for c in &ctrls {
                let _ = fsutil::write_raw(&file, &format!("+{c}"));
            }
        }
        if i + 1 < comps.len() {
            cur.push(comp);
        }
    }
    Ok(())
}

/// A v2 write whose ENOENT means the controller is not enabled for the cgroup.
fn write_ctrl(dir: &Path, file: &str, value: &str, what: &str) -> Result<(), CgroupError> {
    match fsutil::write(dir, file, value, what) {
        Err(CgroupError::File { source, .. })
            if source.kind() == io::ErrorKind::NotFound && dir.exists() =>
        {
            let controller = file.split('.').next().unwrap_or(file).to_string();
            Err(missing_controller(dir, what, controller))
        }
        r => r,
    }
}

/// The error for a controller file that is not there: a threaded cgroup cannot have domain controllers at
/// all; otherwise the controller is not enabled for it.
fn missing_controller(dir: &Path, what: &str, controller: String) -> CgroupError {
    let cg_type = std::fs::read_to_string(dir.join("cgroup.type")).unwrap_or_default();
    let detail = match cg_type.trim() {
        t @ ("threaded" | "domain threaded" | "domain invalid") => format!(
            "cannot be used in {}: the cgroup is {t:?} (its parent holds processes or is threaded)",
            dir.display()
        ),
        _ => format!(
            "is not enabled in {}",
            dir.join("cgroup.controllers").display()
        ),
    };
    CgroupError::ControllerMissing {
        what: what.to_string(),
        controller,
        detail,
    }
}

/// A cgroup created below a cgroup that holds processes is "domain invalid" and could hold no process:
/// make it threaded, as runc does (domain controllers then fail with a clear error in apply).
pub(crate) fn fix_invalid_domain(dir: &Path) -> Result<(), CgroupError> {
    if let Some(t) = fsutil::read_opt(dir, "cgroup.type", "create cgroup")? {
        if t.trim() == "domain invalid" {
            fsutil::write(dir, "cgroup.type", "threaded", "create cgroup")?;
        }
    }
    Ok(())
}

/// runc's shares -> cpu.weight conversion: [2, 262144] -> [1, 10000].
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.saturating_sub(2)) * 9999 / 262142
}

/// runc's blkio weight -> io.weight conversion: [10, 1000] -> [1, 10000].
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    1 + (weight as u64).saturating_sub(10) * 9999 / 990
}

/// memory.swap.max from the OCI memory+swap value (runc's conversion).
pub fn memory_swap_to_v2(swap: i64, memory: i64) -> Result<i64, String> {
    if memory == -1 && swap == 0 {
        return Ok(-1);
    }
    if swap == -1 || swap == 0 {
        return Ok(swap);
    }
    if memory == 0 || memory == -1 {
        return Err("unable to set swap limit without memory limit".into());
    }
    if memory < 0 {
        return Err(format!("invalid memory value: {memory}"));
    }
    if swap < memory {
        return Err("memory+swap limit should be >= memory limit".into());
    }
    Ok(swap - memory)
}

/// 0 = unset (""), -1 = "max".
fn num(v: i64) -> String {
    match v {
        0 => String::new(),
        -1 => "max".into(),
        n => n.to_string(),
    }
}

/// Apply `res` in runc's order: pids, memory, io, cpu, cpuset, devices, hugetlb, rdma, unified.
pub(crate) fn set(dir: &Path, res: &LinuxResources, update: bool) -> Result<(), CgroupError> {
    if let Some(p) = res.pids() {
        if p.limit() != 0 {
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".into()
            };
            write_ctrl(dir, "pids.max", &v, "linux.resources.pids.limit")?;
        }
    }
    if let Some(m) = res.memory() {
        set_memory(dir, m, update)?;
    }
    if let Some(b) = res.block_io() {
        set_io(dir, b)?;
    }
    if let Some(c) = res.cpu() {
        set_cpu(dir, c, update)?;
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            write_ctrl(dir, "cpuset.cpus", cpus, "linux.resources.cpu.cpus")?;
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            write_ctrl(dir, "cpuset.mems", mems, "linux.resources.cpu.mems")?;
        }
    }
    if !update {
        if let Some(rules) = res.devices() {
            let emu = devices::Emulator::from_rules(rules)?;
            let prog = devices::Program::generate(&emu);
            bpf::replace_device_program(dir, &prog)?;
        }
    }
    if let Some(limits) = res.hugepage_limits() {
        let what = "linux.resources.hugepageLimits";
        let mut rsvd = true;
        for l in limits {
            let v = l.limit().to_string();
            let prefix = format!("hugetlb.{}", l.page_size());
            write_ctrl(dir, &format!("{prefix}.max"), &v, what)?;
            if rsvd {
                match fsutil::write(dir, &format!("{prefix}.rsvd.max"), &v, what) {
                    Ok(()) => {}
                    Err(CgroupError::File { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        rsvd = false
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    if let Some(rdma) = res.rdma() {
        if !rdma.is_empty() {
            if !dir.join("rdma.max").exists() {
                return Err(CgroupError::ControllerMissing {
                    what: "linux.resources.rdma".into(),
                    controller: "rdma".into(),
                    detail: format!(
                        "is not enabled in {}",
                        dir.join("cgroup.controllers").display()
                    ),
                });
            }
            v1::set_rdma(dir, rdma)?;
        }
    }
    if let Some(u) = res.unified() {
        set_unified(dir, u)?;
    }
    // linux.resources.network and the v1-only memory knobs (swappiness, disableOOMKiller, kernel*) have no
    // cgroup v2 files; runc ignores them there, and so do we.
    Ok(())
}

fn set_memory(dir: &Path, m: &LinuxMemory, update: bool) -> Result<(), CgroupError> {
    let limit = m.limit().unwrap_or(0);
    let swap_in = m.swap().unwrap_or(0);
    let reservation = m.reservation().unwrap_or(0);
    if limit == 0 && swap_in == 0 && reservation == 0 {
        return Ok(());
    }
    if m.check_before_update() == Some(true) && limit > 0 {
        fsutil::check_limit_above_usage(dir, "memory.current", limit)?;
    }
    // `update` with a new memory+swap but no new memory limit: the swap part is computed from the limit in
    // force (runc's update merges the stored limit the same way).
    let base = if update && limit == 0 && swap_in > 0 {
        let cur = fsutil::read_u64(dir, "memory.max", "linux.resources.memory.swap")?;
        if cur == u64::MAX {
            -1
        } else {
            cur as i64
        }
    } else {
        limit
    };
    let swap = memory_swap_to_v2(swap_in, base)
        .map_err(|r| CgroupError::invalid("linux.resources.memory.swap", r))?;
    let mut swap_str = num(swap);
    if swap_str.is_empty() && swap == 0 && swap_in > 0 {
        // memory == memory+swap: no swap at all.
        swap_str = "0".into();
    }
    if !swap_str.is_empty() {
        match fsutil::write(
            dir,
            "memory.swap.max",
            &swap_str,
            "linux.resources.memory.swap",
        ) {
            Ok(()) => {}
            // No swap accounting: "max" and "0" are what the kernel does anyway (runc ignores this too).
            Err(CgroupError::File { source, .. })
                if source.kind() == io::ErrorKind::NotFound
                    && (swap_str == "max" || swap_str == "0") => {}
            Err(CgroupError::File { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(CgroupError::ControllerMissing {
                    what: "linux.resources.memory.swap".into(),
                    controller: "memory".into(),
                    detail: format!(
                        "has no swap accounting for {} (no memory.swap.max)",
                        dir.display()
                    ),
                })
            }
            Err(e) => return Err(e),
        }
    }
    let l = num(limit);
    if !l.is_empty() {
        write_ctrl(dir, "memory.max", &l, "linux.resources.memory.limit")?;
    }
    let r = num(reservation);
    if !r.is_empty() {
        write_ctrl(dir, "memory.low", &r, "linux.resources.memory.reservation")?;
    }
    Ok(())
}

fn set_cpu(dir: &Path, c: &LinuxCpu, update: bool) -> Result<(), CgroupError> {
    if c.realtime_runtime().unwrap_or(0) != 0 || c.realtime_period().unwrap_or(0) != 0 {
        return Err(CgroupError::invalid(
            "linux.resources.cpu.realtimeRuntime",
            "realtime scheduling limits are not supported on cgroup v2",
        ));
    }
    let weight = cpu_shares_to_weight(c.shares().unwrap_or(0));
    let quota = c.quota().unwrap_or(0);
    let period = c.period().unwrap_or(0);
    if weight == 0 && quota == 0 && period == 0 && c.idle().is_none() && c.burst().is_none() {
        return Ok(());
    }
    if weight != 0 {
        write_ctrl(
            dir,
            "cpu.weight",
            &weight.to_string(),
            "linux.resources.cpu.shares",
        )?;
    }
    if let Some(idle) = c.idle() {
        write_ctrl(
            dir,
            "cpu.idle",
            &idle.to_string(),
            "linux.resources.cpu.idle",
        )?;
    }
    let mut burst_later = false;
    if let Some(b) = c.burst() {
        match write_ctrl(
            dir,
            "cpu.max.burst",
            &b.to_string(),
            "linux.resources.cpu.burst",
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => burst_later = true,
            Err(e) => return Err(e),
        }
    }
    if quota != 0 || period != 0 {
        let mut v = if quota > 0 {
            quota.to_string()
        } else if update && quota == 0 {
            // `update` with a new period only: cpu.max takes both numbers, keep the quota in force
            // (runc's update keeps the stored quota the same way).
            let cur = fsutil::read(dir, "cpu.max", "linux.resources.cpu.period")?;
            cur.split_whitespace().next().unwrap_or("max").to_string()
        } else {
            "max".to_string()
        };
        if period != 0 {
            v.push_str(&format!(" {period}"));
        }
        write_ctrl(dir, "cpu.max", &v, "linux.resources.cpu.quota")?;
        if burst_later {
            let b = c.burst().unwrap_or(0);
            write_ctrl(
                dir,
                "cpu.max.burst",
                &b.to_string(),
                "linux.resources.cpu.burst",
            )?;
        }
    }
    Ok(())
}

fn io_max(
    dir: &Path,
    list: &Option<Vec<LinuxThrottleDevice>>,
    key: &str,
    what: &str,
) -> Result<(), CgroupError> {
    for d in list.iter().flatten() {
        write_ctrl(
            dir,
            "io.max",
            &format!("{}:{} {}={}", d.major(), d.minor(), key, d.rate()),
            what,
        )?;
    }
    Ok(())
}

fn set_io(dir: &Path, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    let weight = b.weight().unwrap_or(0);
    let wdevs = b.weight_device().as_deref().unwrap_or(&[]);
    if weight != 0 || !wdevs.is_empty() {
        // BFQ takes the v1 weights unconverted; without it, io.weight gets the converted value. Kernels whose
        // io.bfq.weight reads back more than one number ("default 100") take per-device weights there too.
        let bfq = fsutil::read_opt(dir, "io.bfq.weight", "linux.resources.blockIO.weight")?;
        if weight != 0 {
            match &bfq {
                Some(_) => fsutil::write(
                    dir,
                    "io.bfq.weight",
                    &weight.to_string(),
                    "linux.resources.blockIO.weight",
                )?,
                None => write_ctrl(
                    dir,
                    "io.weight",
                    &blkio_weight_to_io_weight(weight).to_string(),
                    "linux.resources.blockIO.weight",
                )?,
            }
        }
        if bfq
            .as_deref()
            .is_some_and(|c| c.trim().parse::<i64>().is_err())
        {
            for wd in wdevs {
                if let Some(w) = wd.weight().filter(|w| *w != 0) {
                    fsutil::write(
                        dir,
                        "io.bfq.weight",
                        &format!("{}:{} {}", wd.major(), wd.minor(), w),
                        "linux.resources.blockIO.weightDevice",
                    )?;
                }
            }
        }
    }
    io_max(
        dir,
        b.throttle_read_bps_device(),
        "rbps",
        "linux.resources.blockIO.throttleReadBpsDevice",
    )?;
    io_max(
        dir,
        b.throttle_write_bps_device(),
        "wbps",
        "linux.resources.blockIO.throttleWriteBpsDevice",
    )?;
    io_max(
        dir,
        b.throttle_read_iops_device(),
        "riops",
        "linux.resources.blockIO.throttleReadIOPSDevice",
    )?;
    io_max(
        dir,
        b.throttle_write_iops_device(),
        "wiops",
        "linux.resources.blockIO.throttleWriteIOPSDevice",
    )
}

/// Raw cgroup v2 keys. A key must be a plain "controller.parameter" file name; a missing file is reported
/// as a missing controller.
fn set_unified(dir: &Path, u: &HashMap<String, String>) -> Result<(), CgroupError> {
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    for k in keys {
        let what = format!("linux.resources.unified[{k:?}]");
        if k.contains('/') || k == "." || k == ".." || k.is_empty() {
            return Err(CgroupError::invalid(
                what,
                "must be a file name (no slashes)",
            ));
        }
        let Some((ctrl, _)) = k.split_once('.') else {
            return Err(CgroupError::invalid(
                what,
                "must be in the form CONTROLLER.PARAMETER",
            ));
        };
        let path = dir.join(k);
        // Multi-line values are written one line per write, as the kernel parses one entry per write.
        for line in u[k].split('\n').filter(|l| !l.is_empty()) {
            if let Err(e) = fsutil::write_raw(&path, line) {
                if e.kind() == io::ErrorKind::NotFound
                    || e.kind() == io::ErrorKind::PermissionDenied
                {
                    let available =
                        fsutil::read(dir, "cgroup.controllers", &what).unwrap_or_default();
                    if ctrl != "cgroup" && !available.split_whitespace().any(|c| c == ctrl) {
                        return Err(CgroupError::ControllerMissing {
                            what,
                            controller: ctrl.to_string(),
                            detail: format!(
                                "is not available in {}",
                                dir.join("cgroup.controllers").display()
                            ),
                        });
                    }
                }
                return Err(CgroupError::file(what, "write", path, e));
            }
        }
    }
    Ok(())
}

/// Write cgroup.freeze=1 and wait for cgroup.events to say "frozen 1".
pub(crate) fn freeze(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let what = "freeze cgroup";
    fsutil::write(dir, "cgroup.freeze", "1", what)?;
    let start = Instant::now();
    let mut delay = Duration::from_micros(100);
    loop {
        let events = fsutil::read(dir, "cgroup.events", what)?;
        if events.lines().any(|l| l.trim() == "frozen 1") {
            return Ok(());
        }
        if start.elapsed() >= timeout {
            let _ = fsutil::write(dir, "cgroup.freeze", "0", what);
            return Err(CgroupError::FreezeTimeout {
                path: PathBuf::from(dir),
                millis: timeout.as_millis() as u64,
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(10));
    }
}
