//! Resources on cgroup v1 hierarchies (V1 and Hybrid hosts), written as runc's cgroupfs driver writes them.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use kakuri_spec::oci::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::error::CgroupError;
use crate::{devices, fsutil, FsManager};

const F_MEM: &str = "linux.resources.memory";

fn need<'a>(m: &'a FsManager, controller: &str, what: &str) -> Result<&'a Path, CgroupError> {
    if let Some(e) = m.skipped_error(controller, what) {
        return Err(e);
    }
    m.v1_hierarchy(controller)
        .map(|h| h.path.as_path())
        .ok_or_else(|| CgroupError::ControllerMissing {
            what: what.to_string(),
            controller: controller.to_string(),
            detail: "is not mounted".to_string(),
        })
}

/// Apply `res` (runc's order: cpuset, devices, memory, cpu, pids, blkio, hugetlb, net_cls, net_prio, rdma).
pub(crate) fn set(m: &FsManager, res: &LinuxResources, update: bool) -> Result<(), CgroupError> {
    if let Some(u) = res.unified() {
        if !u.is_empty() {
            return Err(CgroupError::invalid(
                "linux.resources.unified",
                "cannot use unified on cgroup v1",
            ));
        }
    }
    if let Some(cpu) = res.cpu() {
        set_cpuset(m, cpu)?;
    }
    if !update {
        if let Some(rules) = res.devices() {
            let dir = need(m, "devices", "linux.resources.devices")?;
            devices::apply_v1(dir, rules)?;
            kakuri_timings::mark("cgroup device rules");
        }
    }
    if let Some(mem) = res.memory() {
        set_memory(need(m, "memory", F_MEM)?, mem)?;
    }
    if let Some(cpu) = res.cpu() {
        set_cpu(m, cpu)?;
    }
    if let Some(p) = res.pids() {
        if p.limit() != 0 {
            let dir = need(m, "pids", "linux.resources.pids.limit")?;
            let v = if p.limit() > 0 {
                p.limit().to_string()
            } else {
                "max".to_string()
            };
            fsutil::write(dir, "pids.max", &v, "linux.resources.pids.limit")?;
        }
    }
    if let Some(b) = res.block_io() {
        set_blkio(m, b)?;
    }
    if let Some(limits) = res.hugepage_limits() {
        if !limits.is_empty() {
            let dir = need(m, "hugetlb", "linux.resources.hugepageLimits")?;
            set_hugetlb_v1(dir, limits)?;
        }
    }
    if let Some(net) = res.network() {
        if let Some(id) = net.class_id() {
            if id != 0 {
                let dir = need(m, "net_cls", "linux.resources.network.classID")?;
                fsutil::write(
                    dir,
                    "net_cls.classid",
                    &id.to_string(),
                    "linux.resources.network.classID",
                )?;
            }
        }
        if let Some(prios) = net.priorities() {
            if !prios.is_empty() {
                let what = "linux.resources.network.priorities";
                let dir = need(m, "net_prio", what)?;
                for p in prios {
                    fsutil::write(
                        dir,
                        "net_prio.ifpriomap",
                        &format!("{} {}", p.name(), p.priority()),
                        what,
                    )?;
                }
            }
        }
    }
    if let Some(rdma) = res.rdma() {
        if !rdma.is_empty() {
            let dir = need(m, "rdma", "linux.resources.rdma")?;
            set_rdma(dir, rdma)?;
        }
    }
    Ok(())
}

/// A new v1 cpuset cgroup starts with empty cpus/mems and could hold no task: copy the parent's.
/// An empty parent (one that a concurrent create made but has not filled yet) is filled first, up
/// the tree, so two containers created at once under a new parent both get usable cpusets.
pub(crate) fn init_cpuset_dir(dir: &Path) -> Result<(), CgroupError> {
    let Some(parent) = dir.parent() else {
        return Ok(());
    };
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let cur = fsutil::read(dir, file, "create cgroup")?;
        if cur.trim().is_empty() {
            let mut p = fsutil::read(parent, file, "create cgroup")?;
            if p.trim().is_empty() && parent.join(file).exists() {
                init_cpuset_dir(parent)?;
                p = fsutil::read(parent, file, "create cgroup")?;
            }
            let p = p.trim();
            if !p.is_empty() {
                fsutil::write(dir, file, p, "create cgroup")?;
            }
        }
    }
    Ok(())
}

fn set_cpuset(m: &FsManager, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        let what = "linux.resources.cpu.cpus";
        fsutil::write(need(m, "cpuset", what)?, "cpuset.cpus", cpus, what)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        let what = "linux.resources.cpu.mems";
        fsutil::write(need(m, "cpuset", what)?, "cpuset.mems", mems, what)?;
    }
    Ok(())
}

fn set_memory(dir: &Path, mem: &LinuxMemory) -> Result<(), CgroupError> {
    let limit = mem.limit().unwrap_or(0);
    let mut swap = mem.swap().unwrap_or(0);
    if mem.check_before_update() == Some(true) && limit > 0 {
        fsutil::check_limit_above_usage(dir, "memory.usage_in_bytes", limit)?;
    }
    // Unlimited memory with swap unset means unlimited swap too, where the kernel accounts swap.
    if limit == -1 && swap == 0 && dir.join("memory.memsw.limit_in_bytes").exists() {
        swap = -1;
    }
    // The kernel wants memory <= memory+swap at every step: order the two writes accordingly.
    let mut swap_first = false;
    if limit != 0 && swap != 0 {
        let cur = fsutil::read_u64(dir, "memory.limit_in_bytes", "linux.resources.memory.limit")?;
        swap_first = swap == -1 || cur < swap as u64;
    }
    if swap_first {
        set_swap(dir, swap)?;
        set_mem_limit(dir, limit)?;
    } else {
        set_mem_limit(dir, limit)?;
        set_swap(dir, swap)?;
    }
    if let Some(k) = mem.kernel().filter(|k| *k != 0) {
        set_optional_kmem(
            dir,
            "memory.kmem.limit_in_bytes",
            k,
            "linux.resources.memory.kernel",
        )?;
    }
    if let Some(k) = mem.kernel_tcp().filter(|k| *k != 0) {
        set_optional_kmem(
            dir,
            "memory.kmem.tcp.limit_in_bytes",
            k,
            "linux.resources.memory.kernelTCP",
        )?;
    }
    if let Some(r) = mem.reservation().filter(|r| *r != 0) {
        fsutil::write(
            dir,
            "memory.soft_limit_in_bytes",
            &r.to_string(),
            "linux.resources.memory.reservation",
        )?;
    }
    if mem.disable_oom_killer() == Some(true) {
        fsutil::write(
            dir,
            "memory.oom_control",
            "1",
            "linux.resources.memory.disableOOMKiller",
        )?;
    }
    if let Some(s) = mem.swappiness() {
        // runc: -1 (as an unsigned value: u64::MAX) = leave the kernel default.
        if s != u64::MAX && s as i64 != -1 {
            if s > 100 {
                return Err(CgroupError::invalid(
                    "linux.resources.memory.swappiness",
                    format!("invalid memory swappiness value: {s} (valid range is 0-100)"),
                ));
            }
            fsutil::write(
                dir,
                "memory.swappiness",
                &s.to_string(),
                "linux.resources.memory.swappiness",
            )?;
        }
    }
    if let Some(h) = mem.use_hierarchy() {
        fsutil::write(
            dir,
            "memory.use_hierarchy",
            if h { "1" } else { "0" },
            "linux.resources.memory.useHierarchy",
        )?;
    }
    Ok(())
}

fn set_mem_limit(dir: &Path, limit: i64) -> Result<(), CgroupError> {
    if limit == 0 {
        return Ok(());
    }
    let what = "linux.resources.memory.limit";
    match fsutil::write(dir, "memory.limit_in_bytes", &limit.to_string(), what) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            let usage = fsutil::read_u64(dir, "memory.usage_in_bytes", what)?;
            let peak = fsutil::read_u64(dir, "memory.max_usage_in_bytes", what)?;
            Err(CgroupError::invalid(
                what,
                format!("unable to set memory limit to {limit} (current usage: {usage}, peak usage: {peak})"),
            ))
        }
        r => r,
    }
}

fn set_swap(dir: &Path, swap: i64) -> Result<(), CgroupError> {
    if swap == 0 {
        return Ok(());
    }
    fsutil::write(
        dir,
        "memory.memsw.limit_in_bytes",
        &swap.to_string(),
        "linux.resources.memory.swap",
    )
}

/// Kernel memory limits exist only on some kernels; runc ignores them where they are gone.
fn set_optional_kmem(dir: &Path, file: &str, v: i64, what: &str) -> Result<(), CgroupError> {
    match fsutil::write(dir, file, &v.to_string(), what) {
        Err(CgroupError::File { source, path, .. })
            if source.kind() == io::ErrorKind::NotFound
                || matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(524)) =>
        {
            log::warn!(
                "{what}: not supported by this kernel ({}), ignored",
                path.display()
            );
            Ok(())
        }
        r => r,
    }
}

fn set_cpu(m: &FsManager, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    let shares = cpu.shares().unwrap_or(0);
    let quota = cpu.quota().unwrap_or(0);
    let period = cpu.period().unwrap_or(0);
    let rt_runtime = cpu.realtime_runtime().unwrap_or(0);
    let rt_period = cpu.realtime_period().unwrap_or(0);
    if shares == 0
        && quota == 0
        && period == 0
        && cpu.burst().is_none()
        && cpu.idle().is_none()
        && rt_runtime == 0
        && rt_period == 0
    {
        return Ok(());
    }
    let dir = need(m, "cpu", "linux.resources.cpu")?;
    if shares != 0 {
        let what = "linux.resources.cpu.shares";
        fsutil::write(dir, "cpu.shares", &shares.to_string(), what)?;
        // The kernel clamps out-of-range values: report it like runc.
        let got = fsutil::read_u64(dir, "cpu.shares", what)?;
        if shares > got {
            return Err(CgroupError::invalid(
                what,
                format!("the maximum allowed cpu-shares is {got}"),
            ));
        } else if shares < got {
            return Err(CgroupError::invalid(
                what,
                format!("the minimum allowed cpu-shares is {got}"),
            ));
        }
    }
    // A smaller period (or bigger burst) can be refused (EINVAL) until the new quota is written: retry then.
    let mut period_later = false;
    if period != 0 {
        match fsutil::write(
            dir,
            "cpu.cfs_period_us",
            &period.to_string(),
            "linux.resources.cpu.period",
        ) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => period_later = true,
            Err(e) => return Err(e),
        }
    }
    let mut burst_later = false;
    if let Some(b) = cpu.burst() {
        match fsutil::write(
            dir,
            "cpu.cfs_burst_us",
            &b.to_string(),
            "linux.resources.cpu.burst",
        ) {
            Ok(()) => {}
            // No burst knob on this kernel: runc ignores it.
            Err(CgroupError::File { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && quota != 0 => burst_later = true,
            Err(e) => return Err(e),
        }
    }
    if quota != 0 {
        fsutil::write(
            dir,
            "cpu.cfs_quota_us",
            &quota.to_string(),
            "linux.resources.cpu.quota",
        )?;
        if period_later {
            fsutil::write(
                dir,
                "cpu.cfs_period_us",
                &period.to_string(),
                "linux.resources.cpu.period",
            )?;
        }
        if burst_later {
            let b = cpu.burst().unwrap_or(0);
            fsutil::write(
                dir,
                "cpu.cfs_burst_us",
                &b.to_string(),
                "linux.resources.cpu.burst",
            )?;
        }
    }
    if let Some(idle) = cpu.idle() {
        fsutil::write(
            dir,
            "cpu.idle",
            &idle.to_string(),
            "linux.resources.cpu.idle",
        )?;
    }
    if rt_period != 0 {
        fsutil::write(
            dir,
            "cpu.rt_period_us",
            &rt_period.to_string(),
            "linux.resources.cpu.realtimePeriod",
        )?;
    }
    if rt_runtime != 0 {
        fsutil::write(
            dir,
            "cpu.rt_runtime_us",
            &rt_runtime.to_string(),
            "linux.resources.cpu.realtimeRuntime",
        )?;
    }
    Ok(())
}

fn throttle(
    dir: &Path,
    file: &str,
    list: &Option<Vec<LinuxThrottleDevice>>,
    what: &str,
) -> Result<(), CgroupError> {
    for d in list.iter().flatten() {
        fsutil::write(
            dir,
            file,
            &format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            what,
        )?;
    }
    Ok(())
}

fn blkio_is_set(b: &LinuxBlockIo) -> bool {
    b.weight().unwrap_or(0) != 0
        || b.leaf_weight().unwrap_or(0) != 0
        || b.weight_device().as_ref().is_some_and(|v| !v.is_empty())
        || b.throttle_read_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_write_bps_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_read_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
        || b.throttle_write_iops_device()
            .as_ref()
            .is_some_and(|v| !v.is_empty())
}

fn set_blkio(m: &FsManager, b: &LinuxBlockIo) -> Result<(), CgroupError> {
    if !blkio_is_set(b) {
        return Ok(());
    }
    let dir = need(m, "blkio", "linux.resources.blockIO")?;
    // Kernels without CFQ have the BFQ files instead (runc does the same detection).
    let (weight_file, weight_dev_file) = if dir.join("blkio.weight").exists() {
        ("blkio.weight", "blkio.weight_device")
    } else if dir.join("blkio.bfq.weight").exists() {
        ("blkio.bfq.weight", "blkio.bfq.weight_device")
    } else {
        ("blkio.weight", "blkio.weight_device")
    };
    if let Some(w) = b.weight().filter(|w| *w != 0) {
        fsutil::write(
            dir,
            weight_file,
            &w.to_string(),
            "linux.resources.blockIO.weight",
        )?;
    }
    if let Some(w) = b.leaf_weight().filter(|w| *w != 0) {
        fsutil::write(
            dir,
            "blkio.leaf_weight",
            &w.to_string(),
            "linux.resources.blockIO.leafWeight",
        )?;
    }
    for wd in b.weight_device().iter().flatten() {
        if let Some(w) = wd.weight().filter(|w| *w != 0) {
            let v = format!("{}:{} {}", wd.major(), wd.minor(), w);
            fsutil::write(
                dir,
                weight_dev_file,
                &v,
                "linux.resources.blockIO.weightDevice",
            )?;
        }
        if let Some(w) = wd.leaf_weight().filter(|w| *w != 0) {
            let v = format!("{}:{} {}", wd.major(), wd.minor(), w);
            fsutil::write(
                dir,
                "blkio.leaf_weight_device",
                &v,
                "linux.resources.blockIO.weightDevice",
            )?;
        }
    }
    throttle(
        dir,
        "blkio.throttle.read_bps_device",
        b.throttle_read_bps_device(),
        "linux.resources.blockIO.throttleReadBpsDevice",
    )?;
    throttle(
        dir,
        "blkio.throttle.write_bps_device",
        b.throttle_write_bps_device(),
        "linux.resources.blockIO.throttleWriteBpsDevice",
    )?;
    throttle(
        dir,
        "blkio.throttle.read_iops_device",
        b.throttle_read_iops_device(),
        "linux.resources.blockIO.throttleReadIOPSDevice",
    )?;
    throttle(
        dir,
        "blkio.throttle.write_iops_device",
        b.throttle_write_iops_device(),
        "linux.resources.blockIO.throttleWriteIOPSDevice",
    )
}

fn set_hugetlb_v1(
    dir: &Path,
    limits: &[kakuri_spec::oci::LinuxHugepageLimit],
) -> Result<(), CgroupError> {
    let what = "linux.resources.hugepageLimits";
    let mut rsvd = true;
    for l in limits {
        let v = l.limit().to_string();
        let prefix = format!("hugetlb.{}", l.page_size());
        fsutil::write(dir, &format!("{prefix}.limit_in_bytes"), &v, what)?;
        if rsvd {
            match fsutil::write(dir, &format!("{prefix}.rsvd.limit_in_bytes"), &v, what) {
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
    Ok(())
}

/// rdma.max lines, the same on v1 and v2. Devices are written in name order (stable).
pub(crate) fn set_rdma(
    dir: &Path,
    rdma: &std::collections::HashMap<String, kakuri_spec::oci::LinuxRdma>,
) -> Result<(), CgroupError> {
    let mut names: Vec<&String> = rdma.keys().collect();
    names.sort();
    for name in names {
        let l = &rdma[name];
        let mut line = name.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        fsutil::write(
            dir,
            "rdma.max",
            &line,
            &format!("linux.resources.rdma.{name}"),
        )?;
    }
    Ok(())
}

/// Write FROZEN and wait until the kernel reports FROZEN (runc's loop: re-thaw now and then so a task stuck
/// in FREEZING gets another chance).
pub(crate) fn freeze(dir: &Path, timeout: Duration) -> Result<(), CgroupError> {
    let what = "freeze cgroup";
    let start = Instant::now();
    let mut i: u32 = 0;
    loop {
        if i % 50 == 49 {
            fsutil::write(dir, "freezer.state", "THAWED", what)?;
            std::thread::sleep(Duration::from_millis(10));
        }
        fsutil::write(dir, "freezer.state", "FROZEN", what)?;
        let state = fsutil::read(dir, "freezer.state", what)?;
        match state.trim() {
            "FROZEN" => return Ok(()),
            "FREEZING" | "THAWED" => {}
            other => {
                return Err(CgroupError::Parse {
                    path: dir.join("freezer.state"),
                    content: other.to_string(),
                    reason: "unknown freezer state".into(),
                })
            }
        }
        if start.elapsed() >= timeout {
            let _ = fsutil::write(dir, "freezer.state", "THAWED", what);
            return Err(CgroupError::FreezeTimeout {
                path: dir.to_path_buf(),
                millis: timeout.as_millis() as u64,
            });
        }
        i += 1;
        std::thread::sleep(Duration::from_micros(if i < 10 { 100 } else { 1000 }));
    }
}

/// FROZEN = frozen; FREEZING is re-read for a short while until it settles. Missing cgroup = not frozen.
pub(crate) fn is_frozen(dir: &Path) -> Result<bool, CgroupError> {
    for _ in 0..100 {
        let Some(state) = fsutil::read_opt(dir, "freezer.state", "read freezer state")? else {
            return Ok(false);
        };
        match state.trim() {
            "FROZEN" => return Ok(true),
            "THAWED" => return Ok(false),
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    Ok(false)
}
