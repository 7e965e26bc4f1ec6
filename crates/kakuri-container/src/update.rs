//! `update`: change the cgroup resources of a live container, as runc's `update` does.
//!
//! The new resources come either as a `linux.resources` JSON object (a file, or stdin for
//! go-runc / Docker / containerd, which send every field with zero for "leave alone") or as
//! runc's per-field flags ([`UpdateFlags`]). Only what runc's update can change is applied:
//! memory limit/reservation/swap, cpu shares/quota/period/burst/realtime/cpus/mems/idle, blockIO
//! weights and throttles, pids limit and unified; devices and the other fields are left alone.

use kakuri_cgroups::CgroupManager;
use kakuri_spec::oci::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use crate::{Error, Runtime, Status};

/// runc's per-field `update` flags, as given on the command line (unparsed text, `None` when
/// the flag was not given).
#[derive(Debug, Default, Clone)]
pub struct UpdateFlags {
    pub blkio_weight: Option<String>,
    pub cpu_period: Option<String>,
    pub cpu_quota: Option<String>,
    pub cpu_burst: Option<String>,
    pub cpu_share: Option<String>,
    pub cpu_rt_period: Option<String>,
    pub cpu_rt_runtime: Option<String>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub cpu_idle: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub memory_swap: Option<String>,
    pub kernel_memory: Option<String>,
    pub kernel_memory_tcp: Option<String>,
    pub pids_limit: Option<i64>,
    pub l3_cache_schema: Option<String>,
    pub mem_bw_schema: Option<String>,
}

/// Where the resources of an update come from.
#[derive(Debug, Clone)]
pub enum UpdateSource {
    /// `--resources FILE` (`-` is stdin; see [`UpdateSource::from_arg`]).
    File(std::path::PathBuf),
    /// `--resources -`.
    Stdin,
    /// The per-field flags.
    Flags(Box<UpdateFlags>),
}

impl UpdateSource {
    /// The value of `--resources` (`-` = stdin), or the flags when it is absent or empty.
    pub fn from_arg(resources: Option<&str>, flags: UpdateFlags) -> UpdateSource {
        match resources {
            Some("-") => UpdateSource::Stdin,
            Some(f) if !f.is_empty() => UpdateSource::File(f.into()),
            _ => UpdateSource::Flags(Box::new(flags)),
        }
    }
}

/// Parse a size as Docker's `units.RAMInBytes` (what runc's memory flags use): a decimal number
/// with an optional binary unit `k`/`m`/`g`/`t`/`p` (1024-based), optionally followed by `i`
/// and/or `b`, with an optional space: "512m", "1.5g", "64 MiB", "1024".
pub fn ram_in_bytes(s: &str) -> Result<i64, String> {
    let bad = || format!("invalid size: '{s}'");
    let lower = s.to_ascii_lowercase();
    let num_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, rest) = lower.split_at(num_end);
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    if num.is_empty() || !num.starts_with(|c: char| c.is_ascii_digit()) || num.ends_with('.') {
        return Err(bad());
    }
    let mut chars = rest.chars().peekable();
    let mult: f64 = match chars.peek() {
        Some('k') => 1024f64,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        _ => 1.0,
    };
    if mult != 1.0 {
        chars.next();
    }
    if chars.peek() == Some(&'i') {
        chars.next();
    }
    if chars.peek() == Some(&'b') {
        chars.next();
    }
    if chars.next().is_some() {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    let bytes = value * mult;
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

fn parse_u64(flag: &str, v: &str) -> Result<u64, Error> {
    v.parse::<u64>().map_err(|e| {
        Error::msg(format!(
            "invalid value for {flag}: parsing {v:?}: {}",
            go_num_error(&e.to_string())
        ))
    })
}

fn parse_i64(flag: &str, v: &str) -> Result<i64, Error> {
    v.parse::<i64>().map_err(|e| {
        Error::msg(format!(
            "invalid value for {flag}: parsing {v:?}: {}",
            go_num_error(&e.to_string())
        ))
    })
}

/// Go's strconv wording for a number that does not parse.
fn go_num_error(rust: &str) -> &'static str {
    if rust.contains("too large") || rust.contains("too small") {
        "value out of range"
    } else {
        "invalid syntax"
    }
}

/// `update --l3-cache-schema/--mem-bw-schema`: runc's text where resctrl is not mounted; where
/// it is, kakuri applies `linux.intelRdt` at create but does not change a group afterwards.
fn rdt_update_refused(runc_text: &str) -> String {
    match crate::resctrl::mount_point() {
        None => format!("{runc_text} (resctrl is not mounted)"),
        Some(_) => format!(
            "{runc_text}: kakuri update does not change resctrl groups (linux.intelRdt is applied at create only)"
        ),
    }
}

/// A memory flag: "-1" (unlimited) or a size.
fn parse_mem(flag: &str, v: &str) -> Result<i64, Error> {
    if v == "-1" {
        return Ok(-1);
    }
    ram_in_bytes(v).map_err(|e| Error::msg(format!("invalid value for {flag}: {e}")))
}

impl UpdateFlags {
    /// The resources the flags ask for, converted as runc's update converts them.
    pub fn resources(&self) -> Result<LinuxResources, Error> {
        if self
            .l3_cache_schema
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            return Err(Error::msg(rdt_update_refused(
                "Intel RDT/CAT: l3 cache schema is not enabled",
            )));
        }
        if self.mem_bw_schema.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(Error::msg(rdt_update_refused(
                "Intel RDT/MBA: memory bandwidth schema is not enabled",
            )));
        }
        let given = |o: &Option<String>| o.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);

        let mut blkio = LinuxBlockIo::default();
        if let Some(v) = given(&self.blkio_weight) {
            let w = parse_i64("blkio-weight", &v)?;
            if w != 0 {
                // runc converts the int flag to uint16 unchecked: refuse what would wrap instead.
                let w = u16::try_from(w).map_err(|_| {
                    Error::msg(format!(
                        "invalid value for blkio-weight: {w} (valid range is 10-1000)"
                    ))
                })?;
                blkio.set_weight(Some(w));
            }
        }

        let mut cpu = LinuxCpu::default();
        cpu.set_cpus(given(&self.cpuset_cpus));
        cpu.set_mems(given(&self.cpuset_mems));
        if let Some(v) = given(&self.cpu_idle) {
            let idle = v.parse::<i64>().map_err(|e| {
                Error::msg(format!(
                    "invalid value for cpu-idle: parsing {v:?}: {}",
                    go_num_error(&e.to_string())
                ))
            })?;
            cpu.set_idle(Some(idle));
        }
        if let Some(v) = given(&self.cpu_burst) {
            cpu.set_burst(Some(parse_u64("cpu-burst", &v)?));
        }
        if let Some(v) = given(&self.cpu_period) {
            cpu.set_period(Some(parse_u64("cpu-period", &v)?));
        }
        if let Some(v) = given(&self.cpu_rt_period) {
            cpu.set_realtime_period(Some(parse_u64("cpu-rt-period", &v)?));
        }
        if let Some(v) = given(&self.cpu_share) {
            cpu.set_shares(Some(parse_u64("cpu-share", &v)?));
        }
        if let Some(v) = given(&self.cpu_quota) {
            cpu.set_quota(Some(parse_i64("cpu-quota", &v)?));
        }
        if let Some(v) = given(&self.cpu_rt_runtime) {
            cpu.set_realtime_runtime(Some(parse_i64("cpu-rt-runtime", &v)?));
        }

        let mut mem = LinuxMemory::default();
        if let Some(v) = given(&self.memory) {
            mem.set_limit(Some(parse_mem("memory", &v)?));
        }
        if let Some(v) = given(&self.memory_swap) {
            mem.set_swap(Some(parse_mem("memory-swap", &v)?));
        }
        if let Some(v) = given(&self.kernel_memory) {
            mem.set_kernel(Some(parse_mem("kernel-memory", &v)?));
        }
        if let Some(v) = given(&self.kernel_memory_tcp) {
            mem.set_kernel_tcp(Some(parse_mem("kernel-memory-tcp", &v)?));
        }
        if let Some(v) = given(&self.memory_reservation) {
            mem.set_reservation(Some(parse_mem("memory-reservation", &v)?));
        }

        let mut res = LinuxResources::default();
        res.set_block_io(Some(blkio));
        res.set_cpu(Some(cpu));
        res.set_memory(Some(mem));
        if let Some(limit) = self.pids_limit {
            let mut p = LinuxPids::default();
            p.set_limit(limit);
            res.set_pids(Some(p));
        }
        Ok(res)
    }
}

/// Parse a `linux.resources` JSON object (`what` names its origin for errors).
pub fn parse_resources(text: &[u8], what: &str) -> Result<LinuxResources, Error> {
    let mut de = serde_json::Deserializer::from_slice(text);
    let res: LinuxResources = serde::Deserialize::deserialize(&mut de)
        .map_err(|e| Error::msg(format!("decode resources from {what}: {e}")))?;
    Ok(res)
}

/// Read the resources of an update from its source.
pub fn read_resources(src: &UpdateSource) -> Result<LinuxResources, Error> {
    match src {
        UpdateSource::Flags(f) => f.resources(),
        UpdateSource::Stdin => {
            let buf = kakuri_spec::input::read_bounded(std::io::stdin())
                .map_err(|e| Error::io("read resources from stdin", e))?;
            parse_resources(&buf, "stdin")
        }
        UpdateSource::File(p) => {
            let buf = kakuri_spec::input::read_file_bounded(p)
                .map_err(|e| Error::io(format!("open {}", p.display()), e))?;
            parse_resources(&buf, &p.display().to_string())
        }
    }
}

fn has_ignored_value(mem: &LinuxMemory) -> Vec<&'static str> {
    let mut v = Vec::new();
    if mem.swappiness().is_some_and(|s| s != 0 && s != u64::MAX) {
        v.push("memory.swappiness");
    }
    if mem.disable_oom_killer() == Some(true) {
        v.push("memory.disableOOMKiller");
    }
    if mem.use_hierarchy().is_some() {
        v.push("memory.useHierarchy");
    }
    v
}

/// Keep only what runc's update applies; say what is dropped. Kernel memory limits are dropped
/// with runc's warning.
pub fn updatable(res: &LinuxResources) -> LinuxResources {
    let mut out = LinuxResources::default();
    if let Some(m) = res.memory() {
        if m.kernel().is_some() || m.kernel_tcp().is_some() {
            log::warn!("Kernel memory settings are ignored and will be removed");
        }
        for f in has_ignored_value(m) {
            log::warn!("update: linux.resources.{f} cannot be changed by update; ignored");
        }
        let mut mem = LinuxMemory::default();
        mem.set_limit(m.limit());
        mem.set_reservation(m.reservation());
        mem.set_swap(m.swap());
        mem.set_check_before_update(m.check_before_update());
        // runc: unlimited memory with no swap given must not fail on "swap without a limit".
        if mem.limit() == Some(-1) && mem.swap().is_none() {
            mem.set_swap(Some(0));
        }
        out.set_memory(Some(mem));
    }
    if let Some(c) = res.cpu() {
        out.set_cpu(Some(c.clone()));
    }
    if let Some(b) = res.block_io() {
        out.set_block_io(Some(b.clone()));
    }
    if let Some(p) = res.pids() {
        out.set_pids(Some(*p));
    }
    if let Some(u) = res.unified() {
        out.set_unified(Some(u.clone()));
    }
    if res.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        log::debug!("update: linux.resources.devices cannot be changed by update; ignored");
    }
    for (name, set) in [
        (
            "hugepageLimits",
            res.hugepage_limits()
                .as_ref()
                .is_some_and(|v| !v.is_empty()),
        ),
        ("network", res.network().is_some()),
        ("rdma", res.rdma().as_ref().is_some_and(|v| !v.is_empty())),
    ] {
        if set {
            log::warn!("update: linux.resources.{name} cannot be changed by update; ignored");
        }
    }
    out
}

impl Runtime {
    /// `update ID`: write new resource limits into the cgroup of a created, running or paused
    /// container. Unset and zero values leave the current setting alone.
    pub fn update(&self, id: &str, res: &LinuxResources) -> Result<(), Error> {
        let (_dir, st, status) = self.open(id)?;
        if status == Status::Stopped {
            return Err(Error::NotRunning);
        }
        let res = updatable(res);
        st.cgroup
            .update(&res)
            .map_err(|e| Error::msg(format!("update resources of container {id}: {e}")))
    }

    /// [`Runtime::update`] with the resources read from `src`. The container is checked first,
    /// so an unknown id is reported before a bad resources file.
    pub fn update_from(&self, id: &str, src: &UpdateSource) -> Result<(), Error> {
        drop(self.open(id)?);
        let res = read_resources(src)?;
        self.update(id, &res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(ram_in_bytes("1024").unwrap(), 1024);
        assert_eq!(ram_in_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(ram_in_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(ram_in_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(ram_in_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(ram_in_bytes("64 MiB").unwrap(), 64 << 20);
        assert_eq!(ram_in_bytes("10kb").unwrap(), 10 << 10);
        assert_eq!(ram_in_bytes("2KB").unwrap(), 2048);
        for bad in ["", "m", "-1", "12x", "1.", ".5", "5 m b", "1mm", "1bi"] {
            assert!(ram_in_bytes(bad).is_err(), "{bad:?} must be refused");
        }
    }

    #[test]
    fn flags_convert_like_runc() {
        let f = UpdateFlags {
            memory: Some("64m".into()),
            memory_swap: Some("-1".into()),
            memory_reservation: Some("32m".into()),
            cpu_share: Some("512".into()),
            cpu_quota: Some("-1".into()),
            cpu_period: Some("100000".into()),
            cpuset_cpus: Some("0".into()),
            blkio_weight: Some("300".into()),
            pids_limit: Some(42),
            ..Default::default()
        };
        let r = f.resources().unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(-1));
        assert_eq!(m.reservation(), Some(32 << 20));
        let c = r.cpu().as_ref().unwrap();
        assert_eq!(c.shares(), Some(512));
        assert_eq!(c.quota(), Some(-1));
        assert_eq!(c.period(), Some(100000));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(c.mems(), &None);
        assert_eq!(r.block_io().as_ref().unwrap().weight(), Some(300));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 42);
    }

    #[test]
    fn flag_errors_name_the_flag() {
        let e = UpdateFlags {
            cpu_period: Some("abc".into()),
            ..Default::default()
        }
        .resources()
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid value for cpu-period: parsing \"abc\": invalid syntax"
        );
        let e = UpdateFlags {
            memory: Some("lots".into()),
            ..Default::default()
        }
        .resources()
        .unwrap_err()
        .to_string();
        assert_eq!(e, "invalid value for memory: invalid size: 'lots'");
        let e = UpdateFlags {
            l3_cache_schema: Some("L3:0=ff".into()),
            ..Default::default()
        }
        .resources()
        .unwrap_err()
        .to_string();
        assert!(e.contains("Intel RDT/CAT"), "{e}");
    }

    #[test]
    fn docker_zeros_parse_and_only_updatable_fields_remain() {
        let json = br#"{"memory":{"limit":0,"reservation":0,"swap":0,"kernel":0,"kernelTCP":0},
            "cpu":{"shares":0,"quota":0,"period":0,"realtimeRuntime":0,"realtimePeriod":0,"cpus":"","mems":""},
            "blockIO":{"weight":0},"pids":{"limit":0},
            "devices":[{"allow":false,"access":"rwm"}],"hugepageLimits":[{"pageSize":"2MB","limit":0}]}"#;
        let r = parse_resources(json, "stdin").unwrap();
        let u = updatable(&r);
        assert!(u.devices().is_none());
        assert!(u.hugepage_limits().is_none());
        let m = u.memory().as_ref().unwrap();
        assert_eq!(m.kernel(), None);
        assert_eq!(m.limit(), Some(0));
        assert_eq!(u.pids().as_ref().unwrap().limit(), 0);
        let e = parse_resources(b"{\"memory\":{\"limit\":\"x\"}}", "r.json")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("decode resources from r.json: "), "{e}");
    }

    #[test]
    fn unlimited_memory_gets_swap_left_alone() {
        let f = UpdateFlags {
            memory: Some("-1".into()),
            ..Default::default()
        };
        let u = updatable(&f.resources().unwrap());
        assert_eq!(u.memory().as_ref().unwrap().swap(), Some(0));
    }
}
