//! The systemd cgroup driver (`--systemd-cgroup`), with runc's behaviour: `linux.cgroupsPath` is
//! `slice:prefix:name`, the container gets a transient scope unit `<prefix>-<name>.scope` in that
//! slice (made over D-Bus with the init's pid, `Delegate=yes`, and the resources systemd can
//! express as unit properties); everything else is written to the scope's cgroup files by the
//! cgroupfs logic of this crate, which also does freeze, stats, pids and kill on those paths.
//!
//! A rootless caller (an unprivileged user, or uid 0 in a user namespace whose uid 0 is not the
//! host's root: rootless podman) gets the user mode of runc's driver: the caller's own systemd
//! instance (`user@UID.service`) over the session bus, the scope in that instance's slices
//! (`user.slice` by default) under its cgroup, cgroup v2 only, no device rules (a user manager
//! cannot install them; the user namespace already keeps the container from host devices), and
//! limits only for controllers delegated to that instance ([`check_delegated`]).
//!
//! This file is pure (no D-Bus) apart from [`user_manager_cgroup`]: path parsing, slice
//! expansion, resource and annotation to property conversion. [`bus`] is the only place that
//! talks to systemd.

pub(crate) mod bus;
pub(crate) mod gvariant;
pub(crate) mod manager;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use kakuri_spec::oci::LinuxResources;
use serde::{Deserialize, Serialize};

use crate::devices::{DevType, Emulator};
use crate::error::CgroupError;
use crate::system::Mode;

/// A value of a unit property, in the D-Bus type systemd expects for it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Bool(bool),
    Byte(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    ObjPath(String),
    /// `ay` (AllowedCPUs, AllowedMemoryNodes).
    Bytes(Vec<u8>),
    /// `au` (PIDs).
    U32s(Vec<u32>),
    /// `as`.
    Strs(Vec<String>),
    /// `a(ss)` (DeviceAllow).
    StrPairs(Vec<(String, String)>),
}

/// One unit property.
pub(crate) type Property = (String, Value);

fn prop(name: &str, v: Value) -> Property {
    (name.to_string(), v)
}

/// The unit of a container under the systemd driver. Stored in state.json with the manager.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Unit {
    /// `<prefix>-<name>.scope` (or a `.slice` name given as the name, as runc allows).
    pub name: String,
    /// The slice the unit goes in (`system.slice`).
    pub slice: String,
    /// The name part of cgroupsPath (the unit's Description names it).
    #[serde(default)]
    pub container: String,
    /// Properties from `org.systemd.property.*` annotations: used when the unit is started only.
    #[serde(skip)]
    pub extra: Vec<Property>,
    /// User mode: the cgroup of the caller's systemd instance
    /// (`/user.slice/user-UID.slice/user@UID.service`), whose bus every command of this
    /// container talks to. `None`: the system manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_manager: Option<String>,
}

const PATH_FIELD: &str = "linux.cgroupsPath";

/// The parts of a cgroupsPath under the systemd driver: (slice, prefix, name). An empty path is
/// runc's default: the slice is chosen by the driver, the prefix is "runc", the name the id.
pub(crate) fn parse_cgroups_path(
    path: Option<&str>,
    container_id: &str,
) -> Result<(String, String, String), CgroupError> {
    let p = path.unwrap_or("");
    if p.is_empty() {
        return Ok((String::new(), "runc".into(), container_id.to_string()));
    }
    let parts: Vec<&str> = p.split(':').collect();
    if parts.len() != 3 {
        return Err(CgroupError::invalid(
            PATH_FIELD,
            format!("expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {p:?} instead"),
        ));
    }
    Ok((parts[0].into(), parts[1].into(), parts[2].into()))
}

/// The cgroup path of a slice: `a-b-c.slice` lives at `/a.slice/a-b.slice/a-b-c.slice`;
/// `-.slice` is the root.
pub(crate) fn expand_slice(slice: &str) -> Result<String, CgroupError> {
    let bad = || CgroupError::invalid(PATH_FIELD, format!("invalid slice name: {slice}"));
    let Some(stem) = slice.strip_suffix(".slice") else {
        return Err(bad());
    };
    if slice.contains('/') || stem.is_empty() {
        return Err(bad());
    }
    if stem == "-" {
        return Ok("/".into());
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for part in stem.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        path.push('/');
        path.push_str(&prefix);
        path.push_str(part);
        path.push_str(".slice");
        prefix.push_str(part);
        prefix.push('-');
    }
    Ok(path)
}

/// Characters systemd accepts in a unit name (besides the type suffix).
fn valid_unit_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b))
}

/// The unit name: a scope `<prefix>-<name>.scope` unless the name is a slice (runc).
pub(crate) fn unit_name(prefix: &str, name: &str) -> Result<String, CgroupError> {
    if name.is_empty() {
        return Err(CgroupError::invalid(
            PATH_FIELD,
            "the name part of \"slice:prefix:name\" is empty",
        ));
    }
    let unit = if name.ends_with(".slice") {
        name.to_string()
    } else {
        format!("{prefix}-{name}.scope")
    };
    // systemd's limit for unit names (UNIT_NAME_MAX).
    if !valid_unit_chars(&unit) || unit.len() > 255 {
        return Err(CgroupError::invalid(
            PATH_FIELD,
            format!("{unit:?} is not a valid systemd unit name"),
        ));
    }
    Ok(unit)
}

impl Unit {
    /// Resolve the unit from cgroupsPath; `slice` is the expanded slice path (below the user
    /// manager's cgroup in user mode: `user_manager`).
    pub(crate) fn resolve(
        cgroups_path: Option<&str>,
        container_id: &str,
        user_manager: Option<&str>,
    ) -> Result<(Unit, String), CgroupError> {
        let (slice, prefix, name) = parse_cgroups_path(cgroups_path, container_id)?;
        let slice = match (slice.is_empty(), user_manager) {
            (false, _) => slice,
            // runc's defaults.
            (true, None) => "system.slice".to_string(),
            (true, Some(_)) => "user.slice".to_string(),
        };
        let expanded = expand_slice(&slice)?;
        let unit = unit_name(&prefix, &name)?;
        Ok((
            Unit {
                name: unit,
                slice,
                container: name,
                extra: Vec::new(),
                user_manager: user_manager.map(str::to_string),
            },
            expanded,
        ))
    }

    /// A connection to the manager of this unit: the system's, or the caller's own (user mode).
    pub(crate) fn connect(&self) -> Result<bus::Systemd, CgroupError> {
        if self.user_manager.is_some() {
            bus::Systemd::connect_user()
        } else {
            bus::Systemd::connect()
        }
    }

    /// User mode: the user manager runs the unit.
    pub(crate) fn is_user(&self) -> bool {
        self.user_manager.is_some()
    }

    fn is_slice(&self) -> bool {
        self.name.ends_with(".slice")
    }

    /// The properties a new unit gets, before the resources and the annotations (runc's set).
    pub(crate) fn base_properties(&self, pid: u32, mode: Mode) -> Vec<Property> {
        let mut p = vec![prop(
            "Description",
            Value::Str(format!("libcontainer container {}", self.container)),
        )];
        if self.is_slice() {
            p.push(prop("Wants", Value::Strs(vec![self.slice.clone()])));
        } else {
            p.push(prop("Slice", Value::Str(self.slice.clone())));
            p.push(prop("Delegate", Value::Bool(true)));
        }
        p.push(prop("PIDs", Value::U32s(vec![pid])));
        let io = if mode == Mode::V2 {
            "IOAccounting"
        } else {
            "BlockIOAccounting"
        };
        for a in ["MemoryAccounting", "CPUAccounting", io, "TasksAccounting"] {
            p.push(prop(a, Value::Bool(true)));
        }
        p.push(prop("DefaultDependencies", Value::Bool(false)));
        p
    }
}

/// The host uid of `id` of this process's user namespace, from its `/proc/self/uid_map`.
pub(crate) fn host_uid(uid_map: &str, id: u32) -> Option<u32> {
    uid_map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect();
        let [inside, outside, count] = f[..] else {
            return None;
        };
        let id = u64::from(id);
        (inside <= id && id < inside + count)
            .then(|| u32::try_from(outside + (id - inside)).ok())
            .flatten()
    })
}

/// Whether the driver works in user mode, as runc's `--rootless auto` decides it for the
/// systemd driver: an unprivileged caller does; uid 0 does when it is not the host's root (uid 0
/// of a user namespace that maps it to another uid, as rootless podman runs the runtime).
/// `uid_map` is `/proc/self/uid_map` (None: no user namespaces).
pub(crate) fn user_mode(euid: u32, uid_map: Option<&str>) -> bool {
    euid != 0
        || uid_map
            .and_then(|m| host_uid(m, euid))
            .is_some_and(|h| h != 0)
}

/// User mode: the cgroup of the caller's own systemd instance (asked over its bus), where
/// the container's unit goes; None for the system manager. User mode needs cgroup v2, as
/// runc's: a user manager has no v1 hierarchies of its own to delegate.
pub(crate) fn user_manager_cgroup(mode: Mode) -> Result<Option<String>, CgroupError> {
    // SAFETY: geteuid cannot fail.
    let euid = unsafe { libc::geteuid() };
    let uid_map = std::fs::read_to_string("/proc/self/uid_map").ok();
    if !user_mode(euid, uid_map.as_deref()) {
        return Ok(None);
    }
    if mode != Mode::V2 {
        return Err(CgroupError::invalid(
            "--systemd-cgroup",
            "cannot use the rootless systemd cgroup driver (the user's systemd instance) on cgroup v1: it needs a cgroup v2 host",
        ));
    }
    let cg = bus::Systemd::connect_user()?.manager_cgroup()?;
    if cg.is_empty() || !cg.starts_with('/') {
        return Err(CgroupError::invalid(
            "--systemd-cgroup",
            format!(
                "the user's systemd instance reports no cgroup of its own (ControlGroup={cg:?})"
            ),
        ));
    }
    log::debug!("systemd: user manager in cgroup {cg}");
    Ok(Some(cg))
}

/// The cgroup v2 controllers `res` needs, each with the field asking for it, in runc's order
/// of writing. Device rules are left out (user mode does not apply them).
pub(crate) fn needed_controllers(res: &LinuxResources) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    let mut need = |c: &'static str, field: &str| {
        if !out.iter().any(|(x, _)| *x == c) {
            out.push((c, field.to_string()));
        }
    };
    if res.pids().as_ref().is_some_and(|p| p.limit() != 0) {
        need("pids", "linux.resources.pids.limit");
    }
    if let Some(m) = res.memory() {
        if m.limit().unwrap_or(0) != 0
            || m.swap().unwrap_or(0) != 0
            || m.reservation().unwrap_or(0) != 0
        {
            need("memory", "linux.resources.memory");
        }
    }
    if let Some(b) = res.block_io() {
        let len = |n: Option<usize>| n.unwrap_or(0) > 0;
        if b.weight().unwrap_or(0) != 0
            || len(b.weight_device().as_ref().map(Vec::len))
            || len(b.throttle_read_bps_device().as_ref().map(Vec::len))
            || len(b.throttle_write_bps_device().as_ref().map(Vec::len))
            || len(b.throttle_read_iops_device().as_ref().map(Vec::len))
            || len(b.throttle_write_iops_device().as_ref().map(Vec::len))
        {
            need("io", "linux.resources.blockIO");
        }
    }
    if let Some(c) = res.cpu() {
        if c.shares().unwrap_or(0) != 0
            || c.quota().unwrap_or(0) != 0
            || c.period().unwrap_or(0) != 0
            || c.idle().is_some()
            || c.burst().is_some()
        {
            need("cpu", "linux.resources.cpu");
        }
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
        if set(c.cpus()) || set(c.mems()) {
            need("cpuset", "linux.resources.cpu.cpus/mems");
        }
    }
    if res
        .hugepage_limits()
        .as_ref()
        .is_some_and(|l| !l.is_empty())
    {
        need("hugetlb", "linux.resources.hugepageLimits");
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        need("rdma", "linux.resources.rdma");
    }
    if let Some(u) = res.unified() {
        let mut keys: Vec<&String> = u.keys().collect();
        keys.sort();
        for k in keys {
            let c = k.split('.').next().unwrap_or("");
            if let Some(c) = [
                "cpu", "cpuset", "io", "memory", "pids", "hugetlb", "rdma", "misc",
            ]
            .into_iter()
            .find(|x| *x == c)
            {
                need(c, &format!("linux.resources.unified.{k}"));
            }
        }
    }
    out
}

/// User mode: every controller `res` needs must be delegated to the user manager, i.e. listed
/// in its cgroup's `cgroup.controllers` (`available`, read from `file`); otherwise the error
/// names the controller, what asked for it and how to delegate it.
pub(crate) fn check_delegated(
    res: &LinuxResources,
    available: &str,
    file: &Path,
) -> Result<(), CgroupError> {
    let have: Vec<&str> = available.split_whitespace().collect();
    let missing: Vec<(&str, String)> = needed_controllers(res)
        .into_iter()
        .filter(|(c, _)| !have.contains(c))
        .collect();
    let Some((first, field)) = missing.first() else {
        return Ok(());
    };
    let names: Vec<&str> = missing.iter().map(|(c, _)| *c).collect();
    Err(CgroupError::ControllerMissing {
        what: field.clone(),
        controller: first.to_string(),
        detail: format!(
            "is not delegated to the user's systemd instance ({} lists {:?}; missing: {}): add a drop-in for user@.service with `[Service] Delegate=cpu cpuset io memory pids`, then restart the user manager (see docs/rootless.md)",
            file.display(),
            available.trim(),
            names.join(" ")
        ),
    })
}

/// systemd's USEC_INFINITY.
const INFINITY: u64 = u64::MAX;
/// The kernel's default CFS period (µs).
const DEFAULT_PERIOD: u64 = 100_000;

/// CPUQuotaPeriodUSec and CPUQuotaPerSecUSec for a quota and period (0 = unset). systemd keeps
/// the quota as a percentage of a CPU, so a quota that is not a whole number of 10 ms per second
/// is rounded up (the cgroup files get the exact value afterwards).
pub(crate) fn cpu_quota_properties(quota: i64, period: u64, out: &mut Vec<Property>) {
    if period != 0 {
        out.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
    }
    if quota != 0 || period != 0 {
        let mut per_sec = INFINITY;
        if quota > 0 {
            let period = if period == 0 { DEFAULT_PERIOD } else { period };
            per_sec = (quota as u64).saturating_mul(1_000_000) / period;
            if per_sec % 10_000 != 0 {
                per_sec = (per_sec / 10_000 + 1) * 10_000;
            }
        }
        out.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
    }
}

/// A cpuset list ("0-2,7") as the bitmask systemd takes for AllowedCPUs/AllowedMemoryNodes:
/// byte 0 holds CPUs 0-7 (bit n = CPU n), no trailing zero bytes.
pub(crate) fn range_to_bits(list: &str) -> Result<Vec<u8>, String> {
    let mut bits: Vec<u8> = Vec::new();
    let mut set = |n: u32| {
        let byte = (n / 8) as usize;
        if bits.len() <= byte {
            bits.resize(byte + 1, 0);
        }
        bits[byte] |= 1 << (n % 8);
    };
    let num = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("{s:?} is not a number"))
    };
    for r in list.split(',') {
        let r = r.trim();
        if r.is_empty() {
            continue;
        }
        match r.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("invalid range: {r}"));
                }
                if b - a > 1 << 16 {
                    return Err(format!("range too large: {r}"));
                }
                for n in a..=b {
                    set(n);
                }
            }
            None => set(num(r)?),
        }
    }
    while bits.last() == Some(&0) {
        bits.pop();
    }
    if bits.is_empty() {
        return Err("empty value".into());
    }
    Ok(bits)
}

/// The device properties: DevicePolicy=strict with the allow list the rules come to, or
/// DevicePolicy=auto and no list when everything is allowed. What systemd cannot express (deny
/// lists, `*:n` rules, devices without a /dev/char or /dev/block entry) is left to the cgroupfs
/// rules that are applied afterwards, as runc does.
pub(crate) fn device_properties(
    rules: &[kakuri_spec::oci::LinuxDeviceCgroup],
    proc_devices: &str,
    exists: &dyn Fn(&Path) -> bool,
) -> Result<Vec<Property>, CgroupError> {
    let emu = Emulator::from_rules(rules)?;
    if emu.default_allow {
        if emu.exceptions.is_empty() {
            return Ok(vec![
                prop("DevicePolicy", Value::Str("auto".into())),
                prop("DeviceAllow", Value::StrPairs(Vec::new())),
            ]);
        }
        log::warn!(
            "systemd doesn't support blacklist device rules -- applying temporary deny-all rule"
        );
        return Ok(vec![
            prop("DevicePolicy", Value::Str("strict".into())),
            prop("DeviceAllow", Value::StrPairs(Vec::new())),
        ]);
    }
    let mut allow = Vec::new();
    for (m, bits) in &emu.exceptions {
        let perms: String = [
            (crate::devices::ACC_READ, 'r'),
            (crate::devices::ACC_WRITE, 'w'),
            (crate::devices::ACC_MKNOD, 'm'),
        ]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| c)
        .collect();
        let (kind, dir) = match m.typ {
            DevType::Char => ("char", "/dev/char"),
            DevType::Block => ("block", "/dev/block"),
        };
        let path = match (m.major, m.minor) {
            (None, None) => format!("{kind}-*"),
            (None, Some(_)) => {
                log::warn!("systemd doesn't support '*:n' device rules -- rule left to the cgroup files: {m:?}");
                continue;
            }
            (Some(major), None) => match device_group(proc_devices, m.typ, major) {
                Some(g) => format!("{kind}-{g}"),
                None => {
                    log::warn!("no device group for {kind} major {major} in /proc/devices -- rule left to the cgroup files");
                    continue;
                }
            },
            (Some(major), Some(minor)) => {
                let p = format!("{dir}/{major}:{minor}");
                if !exists(Path::new(&p)) && !exists(&Path::new("/sys").join(&p[1..])) {
                    log::warn!("skipping device {p} for systemd: it does not exist");
                    continue;
                }
                p
            }
        };
        allow.push((path, perms));
    }
    Ok(vec![
        prop("DevicePolicy", Value::Str("strict".into())),
        prop("DeviceAllow", Value::StrPairs(Vec::new())),
        prop("DeviceAllow", Value::StrPairs(allow)),
    ])
}

/// The name of the device group (second column of /proc/devices) of a major number.
fn device_group(proc_devices: &str, typ: DevType, major: u32) -> Option<String> {
    let mut cur = None;
    for line in proc_devices.lines() {
        match line.trim() {
            "Character devices:" => cur = Some(DevType::Char),
            "Block devices:" => cur = Some(DevType::Block),
            "" => {}
            l if cur == Some(typ) => {
                let mut f = l.split_whitespace();
                if f.next().and_then(|n| n.parse::<u32>().ok()) == Some(major) {
                    return f.next().map(str::to_string);
                }
            }
            _ => {}
        }
    }
    None
}

/// The unit properties for `res` (runc's genV1/genV2ResourcesProperties). `with_devices` is
/// false for `update`, which leaves the device rules alone.
pub(crate) fn resource_properties(
    res: &LinuxResources,
    mode: Mode,
    with_devices: bool,
) -> Result<Vec<Property>, CgroupError> {
    let mut out = Vec::new();
    if with_devices {
        if let Some(rules) = res.devices() {
            let proc_devices = std::fs::read_to_string("/proc/devices").unwrap_or_default();
            out.extend(device_properties(rules, &proc_devices, &|p| p.exists())?);
        }
    }
    let v2 = mode == Mode::V2;
    if let Some(m) = res.memory() {
        let limit = m.limit().unwrap_or(0);
        if limit != 0 {
            let name = if v2 { "MemoryMax" } else { "MemoryLimit" };
            out.push(prop(name, Value::U64(limit as u64)));
        }
        if v2 {
            let low = m.reservation().unwrap_or(0);
            if low != 0 {
                out.push(prop("MemoryLow", Value::U64(low as u64)));
            }
            let swap = crate::v2::memory_swap_to_v2(m.swap().unwrap_or(0), limit)
                .map_err(|r| CgroupError::invalid("linux.resources.memory.swap", r))?;
            if swap != 0 {
                out.push(prop("MemorySwapMax", Value::U64(swap as u64)));
            }
        }
    }
    if let Some(c) = res.cpu() {
        let shares = c.shares().unwrap_or(0);
        if shares != 0 {
            if v2 {
                let w = crate::v2::cpu_shares_to_weight(shares);
                out.push(prop("CPUWeight", Value::U64(w)));
            } else {
                out.push(prop("CPUShares", Value::U64(shares)));
            }
        }
        cpu_quota_properties(c.quota().unwrap_or(0), c.period().unwrap_or(0), &mut out);
    }
    if !v2 {
        if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()) {
            if w != 0 {
                out.push(prop("BlockIOWeight", Value::U64(u64::from(w))));
            }
        }
    }
    if let Some(p) = res.pids() {
        let l = p.limit();
        if l > 0 || l == -1 {
            out.push(prop("TasksMax", Value::U64(l as u64)));
        }
    }
    if let Some(c) = res.cpu() {
        for (list, name, field) in [
            (c.cpus(), "AllowedCPUs", "linux.resources.cpu.cpus"),
            (c.mems(), "AllowedMemoryNodes", "linux.resources.cpu.mems"),
        ] {
            if let Some(l) = list.as_deref().filter(|s| !s.is_empty()) {
                let bits = range_to_bits(l)
                    .map_err(|r| CgroupError::invalid(field, format!("{l:?}: {r}")))?;
                out.push(prop(name, Value::Bytes(bits)));
            }
        }
    }
    if v2 {
        if let Some(u) = res.unified() {
            out.extend(unified_properties(u)?);
        }
    }
    Ok(out)
}

/// linux.resources.unified entries systemd has properties for (the files are written anyway).
fn unified_properties(u: &HashMap<String, String>) -> Result<Vec<Property>, CgroupError> {
    let mut keys: Vec<&String> = u.keys().collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let v = u[k].trim();
        let what = format!("linux.resources.unified.{k}");
        let bad = || CgroupError::invalid(&what, format!("value {v:?} cannot be converted"));
        let max_or_num = |v: &str| -> Result<u64, CgroupError> {
            if v == "max" {
                Ok(INFINITY)
            } else {
                v.parse().map_err(|_| bad())
            }
        };
        match k.as_str() {
            "cpu.max" => {
                let f: Vec<&str> = v.split_whitespace().collect();
                if f.is_empty() || f.len() > 2 {
                    return Err(bad());
                }
                let quota = if f[0] == "max" {
                    0
                } else {
                    f[0].parse::<i64>().map_err(|_| bad())?
                };
                let period = match f.get(1) {
                    Some(p) => p.parse::<u64>().map_err(|_| bad())?,
                    None => DEFAULT_PERIOD,
                };
                cpu_quota_properties(quota, period, &mut out);
            }
            "cpu.weight" => out.push(prop("CPUWeight", Value::U64(v.parse().map_err(|_| bad())?))),
            "cpuset.cpus" | "cpuset.mems" => {
                let bits = range_to_bits(v).map_err(|r| CgroupError::invalid(&what, r))?;
                let name = if k == "cpuset.cpus" {
                    "AllowedCPUs"
                } else {
                    "AllowedMemoryNodes"
                };
                out.push(prop(name, Value::Bytes(bits)));
            }
            "memory.high" | "memory.low" | "memory.min" | "memory.max" | "memory.swap.max" => {
                let name = match k.as_str() {
                    "memory.high" => "MemoryHigh",
                    "memory.low" => "MemoryLow",
                    "memory.min" => "MemoryMin",
                    "memory.max" => "MemoryMax",
                    _ => "MemorySwapMax",
                };
                out.push(prop(name, Value::U64(max_or_num(v)?)));
            }
            "pids.max" => out.push(prop("TasksMax", Value::U64(max_or_num(v)?))),
            _ => log::debug!(
                "unified resource {k:?} has no systemd property; written to the cgroup file only"
            ),
        }
    }
    Ok(out)
}

const ANNOTATION_PREFIX: &str = "org.systemd.property.";

/// Unit properties from `org.systemd.property.<Name>` annotations (values in GVariant text
/// form, as runc). A name must be at least 3 ASCII letters; `...Sec` names (lowercase letter
/// before "Sec") become `...USec` with the value in microseconds.
pub(crate) fn annotation_properties(
    annotations: &HashMap<String, String>,
) -> Result<Vec<Property>, CgroupError> {
    let mut keys: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with(ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for k in keys {
        let v = &annotations[k];
        let mut name = k[ANNOTATION_PREFIX.len()..].to_string();
        let what = format!("annotations[{k:?}]");
        if name.len() < 3 {
            return Err(CgroupError::invalid(
                what,
                format!("annotation {k} name incorrect: too short"),
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_alphabetic()) {
            return Err(CgroupError::invalid(
                what,
                format!("annotation {k} name incorrect: contains non-alphabetic character"),
            ));
        }
        let mut value = gvariant::parse(v).map_err(|e| {
            CgroupError::invalid(&what, format!("annotation {k}={v} value parse error: {e}"))
        })?;
        if let Some(stem) = name.strip_suffix("Sec") {
            if stem
                .as_bytes()
                .last()
                .is_some_and(|c| c.is_ascii_lowercase())
            {
                value = sec_to_usec(&value).ok_or_else(|| {
                    CgroupError::invalid(
                        &what,
                        format!("annotation {k}={v} value parse error: not a number"),
                    )
                })?;
                name = format!("{stem}USec");
            }
        }
        out.push((name, value));
    }
    Ok(out)
}

fn sec_to_usec(v: &Value) -> Option<Value> {
    const M: u64 = 1_000_000;
    let us = match *v {
        Value::Byte(n) => u64::from(n) * M,
        Value::I16(n) => (n as u64).wrapping_mul(M),
        Value::U16(n) => u64::from(n) * M,
        Value::I32(n) => (n as u64).wrapping_mul(M),
        Value::U32(n) => u64::from(n) * M,
        Value::I64(n) => (n as u64).wrapping_mul(M),
        Value::U64(n) => n.wrapping_mul(M),
        Value::F64(f) => (f * M as f64) as u64,
        _ => return None,
    };
    Some(Value::U64(us))
}

/// The init's cgroup per v1 hierarchy (`/proc/1/cgroup`), without a trailing `init.scope`: where
/// systemd's slices live in that hierarchy.
pub(crate) fn init_cgroup_base(proc1_cgroup: &str, controller: Option<&str>) -> String {
    for line in proc1_cgroup.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let hit = match controller {
            None => ctrls.is_empty(),
            Some(c) => ctrls.split(',').any(|x| x == c),
        };
        if hit {
            let p = path.strip_suffix("init.scope").unwrap_or(path);
            return p.trim_end_matches('/').to_string();
        }
    }
    String::new()
}

/// `base/inner` for cgroup paths given as '/'-separated strings.
pub(crate) fn join(base: &Path, parts: &[&str]) -> PathBuf {
    let mut p = base.to_path_buf();
    for part in parts {
        for c in part.split('/').filter(|c| !c.is_empty() && *c != ".") {
            p.push(c);
        }
    }
    p
}

#[cfg(test)]
mod tests;
