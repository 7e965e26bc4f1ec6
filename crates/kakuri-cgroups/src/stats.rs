//! Container resource usage in the JSON shape of runc's `events --stats` "data" object (runc 1.1 field
//! names and omission rules).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::error::CgroupError;
use crate::{fsutil, FsManager};

fn zero(v: &u64) -> bool {
    *v == 0
}

/// `events --stats` data.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    pub hugetlb: BTreeMap<String, Hugetlb>,
    pub intel_rdt: IntelRdt,
    /// Always null: network statistics are not collected from cgroups (runc prints null too).
    pub network_interfaces: Option<Vec<()>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "zero")]
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioQueueRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_queued_recursive: Vec<BlkioEntry>,
    #[serde(
        rename = "ioServiceTimeRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioWaitTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_wait_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioMergedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_merged_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioTimeRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_time_recursive: Vec<BlkioEntry>,
    #[serde(rename = "sectorsRecursive", skip_serializing_if = "Vec::is_empty")]
    pub sectors_recursive: Vec<BlkioEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "zero")]
    pub current: u64,
    #[serde(skip_serializing_if = "zero")]
    pub limit: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "zero")]
    pub throttled_periods: u64,
    #[serde(rename = "throttledTime", skip_serializing_if = "zero")]
    pub throttled_time: u64,
}

/// CPU time in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    #[serde(skip_serializing_if = "zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CpuSet {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cpus: Vec<u16>,
    pub cpu_exclusive: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mems: Vec<u16>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "zero")]
    pub cache: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

/// Intel RDT is not a cgroup resource; kakuri reports it empty (`{}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct IntelRdt {}

const WHAT: &str = "collect cgroup stats";

/// Read an optional number file: missing = 0, "max" = u64::MAX.
fn opt_u64(dir: &Path, file: &str) -> Result<u64, CgroupError> {
    match fsutil::read_opt(dir, file, WHAT)? {
        Some(s) => fsutil::parse_u64(&dir.join(file), &s),
        None => Ok(0),
    }
}

/// "key value" lines into a map (values that are not numbers are skipped).
fn keyed(dir: &Path, file: &str) -> Result<BTreeMap<String, u64>, CgroupError> {
    let mut m = BTreeMap::new();
    if let Some(s) = fsutil::read_opt(dir, file, WHAT)? {
        for line in s.lines() {
            let mut it = line.split_whitespace();
            if let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Ok(n) = v.parse::<u64>() {
                    m.insert(k.to_string(), n);
                }
            }
        }
    }
    Ok(m)
}

fn number_list(dir: &Path, file: &str) -> Result<Vec<u64>, CgroupError> {
    Ok(fsutil::read_opt(dir, file, WHAT)?
        .map(|s| {
            s.split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default())
}

/// "0-2,5" -> [0, 1, 2, 5].
pub(crate) fn parse_list(s: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u16>(), b.parse::<u16>()) {
                    out.extend(a..=b);
                }
            }
            None => {
                if let Ok(a) = part.parse::<u16>() {
                    out.push(a);
                }
            }
        }
    }
    out
}

/// v1 blkio lines "8:0 Read 4096" (the "Total" line is skipped).
fn blkio_entries(dir: &Path, file: &str) -> Result<Option<Vec<BlkioEntry>>, CgroupError> {
    let Some(s) = fsutil::read_opt(dir, file, WHAT)? else {
        return Ok(None);
    };
    let mut v = Vec::new();
    for line in s.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (dev, op, val) = match f.as_slice() {
            [dev, op, val] => (*dev, *op, *val),
            [dev, val] if dev.contains(':') => (*dev, "", *val),
            _ => continue,
        };
        let Some((ma, mi)) = dev.split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) = (ma.parse(), mi.parse(), val.parse()) else {
            continue;
        };
        v.push(BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value,
        });
    }
    Ok(Some(v))
}

fn v1_memory_entry(dir: &Path, prefix: &str) -> Result<MemoryEntry, CgroupError> {
    let f = |name: &str| {
        if prefix.is_empty() {
            format!("memory.{name}")
        } else {
            format!("memory.{prefix}.{name}")
        }
    };
    Ok(MemoryEntry {
        limit: opt_u64(dir, &f("limit_in_bytes"))?,
        usage: opt_u64(dir, &f("usage_in_bytes"))?,
        max: opt_u64(dir, &f("max_usage_in_bytes"))?,
        failcnt: opt_u64(dir, &f("failcnt"))?,
    })
}

/// Stats from the v1 hierarchies that are mounted.
pub(crate) fn v1_stats(m: &FsManager) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    let dir = |c: &str| m.v1_hierarchy(c).map(|h| h.path.as_path());
    if let Some(d) = dir("cpuacct") {
        s.cpu.usage.total = opt_u64(d, "cpuacct.usage")?;
        s.cpu.usage.percpu = number_list(d, "cpuacct.usage_percpu")?;
        s.cpu.usage.percpu_kernel = number_list(d, "cpuacct.usage_percpu_sys")?;
        s.cpu.usage.percpu_user = number_list(d, "cpuacct.usage_percpu_user")?;
        let st = keyed(d, "cpuacct.stat")?;
        // cpuacct.stat counts clock ticks.
        let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .unwrap_or(100);
        let hz = if hz > 0 { hz as u64 } else { 100 };
        s.cpu.usage.user = st.get("user").copied().unwrap_or(0) * 1_000_000_000 / hz;
        s.cpu.usage.kernel = st.get("system").copied().unwrap_or(0) * 1_000_000_000 / hz;
    }
    if let Some(d) = dir("cpu") {
        let st = keyed(d, "cpu.stat")?;
        s.cpu.throttling = Throttling {
            periods: st.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: st.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: st.get("throttled_time").copied().unwrap_or(0),
        };
    }
    if let Some(d) = dir("cpuset") {
        let text = |f: &str| -> Result<String, CgroupError> {
            Ok(fsutil::read_opt(d, f, WHAT)?.unwrap_or_default())
        };
        s.cpuset.cpus = parse_list(&text("cpuset.cpus")?);
        s.cpuset.mems = parse_list(&text("cpuset.mems")?);
        s.cpuset.cpu_exclusive = opt_u64(d, "cpuset.cpu_exclusive")?;
        s.cpuset.mem_exclusive = opt_u64(d, "cpuset.mem_exclusive")?;
        s.cpuset.mem_hardwall = opt_u64(d, "cpuset.mem_hardwall")?;
        s.cpuset.memory_migrate = opt_u64(d, "cpuset.memory_migrate")?;
        s.cpuset.memory_spread_page = opt_u64(d, "cpuset.memory_spread_page")?;
        s.cpuset.memory_spread_slab = opt_u64(d, "cpuset.memory_spread_slab")?;
        s.cpuset.memory_pressure = opt_u64(d, "cpuset.memory_pressure")?;
        s.cpuset.sched_load_balance = opt_u64(d, "cpuset.sched_load_balance")?;
        s.cpuset.sched_relax_domain_level = text("cpuset.sched_relax_domain_level")?
            .trim()
            .parse()
            .unwrap_or(0);
    }
    if let Some(d) = dir("memory") {
        s.memory.raw = keyed(d, "memory.stat")?;
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.usage = v1_memory_entry(d, "")?;
        s.memory.swap = v1_memory_entry(d, "memsw")?;
        s.memory.kernel = v1_memory_entry(d, "kmem")?;
        s.memory.kernel_tcp = v1_memory_entry(d, "kmem.tcp")?;
    }
    if let Some(d) = dir("pids") {
        s.pids.current = opt_u64(d, "pids.current")?;
        let max = opt_u64(d, "pids.max")?;
        s.pids.limit = if max == u64::MAX { 0 } else { max };
    }
    if let Some(d) = dir("blkio") {
        // BFQ (no CFQ on this kernel), else CFQ, else the throttling counters.
        for (bytes, ios) in [
            (
                "blkio.bfq.io_service_bytes_recursive",
                "blkio.bfq.io_serviced_recursive",
            ),
            (
                "blkio.io_service_bytes_recursive",
                "blkio.io_serviced_recursive",
            ),
            (
                "blkio.throttle.io_service_bytes_recursive",
                "blkio.throttle.io_serviced_recursive",
            ),
        ] {
            if let Some(b) = blkio_entries(d, bytes)? {
                s.blkio.io_service_bytes_recursive = b;
                s.blkio.io_serviced_recursive = blkio_entries(d, ios)?.unwrap_or_default();
                break;
            }
        }
    }
    if let Some(d) = dir("hugetlb") {
        for size in hugetlb_sizes(d, ".limit_in_bytes")? {
            let p = format!("hugetlb.{size}");
            s.hugetlb.insert(
                size.clone(),
                Hugetlb {
                    usage: opt_u64(d, &format!("{p}.usage_in_bytes"))?,
                    max: opt_u64(d, &format!("{p}.max_usage_in_bytes"))?,
                    failcnt: opt_u64(d, &format!("{p}.failcnt"))?,
                },
            );
        }
    }
    Ok(s)
}

/// Page sizes with a `hugetlb.<size><suffix>` file (reservation files excluded).
fn hugetlb_sizes(dir: &Path, suffix: &str) -> Result<Vec<String>, CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(CgroupError::file(WHAT, "read", dir.to_path_buf(), e)),
    };
    let mut out = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(size) = name
            .strip_prefix("hugetlb.")
            .and_then(|r| r.strip_suffix(suffix))
        {
            if !size.contains('.') {
                out.push(size.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Stats from the cgroup v2 directory, converted to the v1-shaped fields as runc does.
pub(crate) fn v2_stats(d: &Path) -> Result<Stats, CgroupError> {
    let mut s = Stats::default();
    s.pids.current = opt_u64(d, "pids.current")?;
    let pmax = opt_u64(d, "pids.max")?;
    s.pids.limit = if pmax == u64::MAX { 0 } else { pmax };

    let cpu = keyed(d, "cpu.stat")?;
    let g = |k: &str| cpu.get(k).copied().unwrap_or(0);
    s.cpu.usage.total = g("usage_usec") * 1000;
    s.cpu.usage.user = g("user_usec") * 1000;
    s.cpu.usage.kernel = g("system_usec") * 1000;
    s.cpu.throttling = Throttling {
        periods: g("nr_periods"),
        throttled_periods: g("nr_throttled"),
        throttled_time: g("throttled_usec") * 1000,
    };

    if d.join("memory.current").exists() {
        s.memory.raw = keyed(d, "memory.stat")?;
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        let events = keyed(d, "memory.events")?;
        s.memory.usage = MemoryEntry {
            usage: opt_u64(d, "memory.current")?,
            limit: opt_u64(d, "memory.max")?,
            max: opt_u64(d, "memory.peak")?,
            failcnt: events.get("max").copied().unwrap_or(0),
        };
        // cgroup v1 reports swap as memory+swap: do the same.
        let swap_usage = opt_u64(d, "memory.swap.current")?;
        let swap_max = opt_u64(d, "memory.swap.max")?;
        s.memory.swap = MemoryEntry {
            usage: swap_usage + s.memory.usage.usage,
            limit: if swap_max == u64::MAX || s.memory.usage.limit == u64::MAX {
                u64::MAX
            } else {
                swap_max + s.memory.usage.limit
            },
            max: 0,
            failcnt: 0,
        };
    }

    if let Some(io_stat) = fsutil::read_opt(d, "io.stat", WHAT)? {
        for line in io_stat.lines() {
            let mut it = line.split_whitespace();
            let Some((ma, mi)) = it.next().and_then(|dev| dev.split_once(':')) else {
                continue;
            };
            let (Ok(major), Ok(minor)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
                continue;
            };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else {
                    continue;
                };
                let Ok(value) = v.parse::<u64>() else {
                    continue;
                };
                let (list, op) = match k {
                    "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                    "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                    "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                    "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                    _ => continue,
                };
                list.push(BlkioEntry {
                    major,
                    minor,
                    op: op.to_string(),
                    value,
                });
            }
        }
    }

    for size in hugetlb_sizes(d, ".current")? {
        let p = format!("hugetlb.{size}");
        let ev = keyed(d, &format!("{p}.events"))?;
        s.hugetlb.insert(
            size.clone(),
            Hugetlb {
                usage: opt_u64(d, &format!("{p}.current"))?,
                max: 0,
                failcnt: ev.get("max").copied().unwrap_or(0),
            },
        );
    }
    Ok(s)
}
