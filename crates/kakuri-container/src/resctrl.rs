//! `linux.intelRdt`: a resctrl group (Intel RDT / AMD QoS) for the container, as runc does.
//!
//! The group is `<resctrl>/<closID>` (shared, possibly made by someone else) or
//! `<resctrl>/<container id>`; its `schemata` gets `l3CacheSchema`, `memBwSchema` and each
//! `schemata` line; the init's pid goes to its `tasks` (the container's processes inherit it);
//! with `enableMonitoring` a monitoring group `mon_groups/<container id>` gets the pid too.
//! `delete` removes what kakuri made: the group when it has no closID and was made here, else
//! only the monitoring group. Without a mounted resctrl the field is refused by `create`.

use std::path::{Path, PathBuf};

use kakuri_spec::{oci, os_error};
use serde::{Deserialize, Serialize};

/// Where resctrl is mounted (the first `resctrl` mount of mountinfo), if it is.
pub fn mount_point() -> Option<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    text.lines().find_map(|l| {
        let (a, b) = l.split_once(" - ")?;
        if b.split(' ').next() != Some("resctrl") {
            return None;
        }
        Some(PathBuf::from(a.split(' ').nth(4)?.replace("\\040", " ")))
    })
}

/// What `create` will do, checked before anything is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub group: PathBuf,
    /// A `closID` was given: the group may be shared and is never removed by kakuri.
    pub shared: bool,
    /// The lines for `schemata`, joined (empty: leave the group's schemata alone).
    pub schemata: String,
    pub monitor: Option<PathBuf>,
}

/// Check `linux.intelRdt` against the resctrl mounted at `root` (None: not mounted).
pub fn plan(rdt: &oci::LinuxIntelRdt, id: &str, root: Option<&Path>) -> Result<Plan, String> {
    let Some(root) = root else {
        return Err("linux.intelRdt: resctrl is not mounted (Intel RDT needs the resctrl filesystem, mounted at /sys/fs/resctrl, and a CPU with RDT)".into());
    };
    let clos = rdt.clos_id().as_deref().filter(|c| !c.is_empty());
    if let Some(c) = clos {
        if c == "." || c == ".." || c.contains('/') || c.contains('\n') {
            return Err(format!(
                "linux.intelRdt.closID: {c:?} is not a resctrl group name"
            ));
        }
    }
    let group = root.join(clos.unwrap_or(id));
    let mut lines: Vec<&str> = Vec::new();
    for (field, v) in [
        ("l3CacheSchema", rdt.l3_cache_schema().as_deref()),
        ("memBwSchema", rdt.mem_bw_schema().as_deref()),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            if v.contains('\n') {
                return Err(format!("linux.intelRdt.{field}: one line expected"));
            }
            lines.push(v);
        }
    }
    for (i, v) in rdt.schemata().iter().flatten().enumerate() {
        if v.contains('\n') {
            return Err(format!("linux.intelRdt.schemata[{i}]: one line expected"));
        }
        if !v.is_empty() {
            lines.push(v);
        }
    }
    // runc's rule: a closID alone names a group someone made beforehand.
    if clos.is_some() && lines.is_empty() && !group.is_dir() {
        return Err(format!(
            "linux.intelRdt.closID: the group {} does not exist (it must be made beforehand when no schemata are given)",
            group.display()
        ));
    }
    let schemata = lines.iter().map(|l| format!("{l}\n")).collect();
    let monitor = rdt
        .enable_monitoring()
        .unwrap_or(false)
        .then(|| group.join("mon_groups").join(id));
    Ok(Plan {
        group,
        shared: clos.is_some(),
        schemata,
        monitor,
    })
}

/// What was made, kept in the container's state for `delete`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Made {
    /// The group, when kakuri made it and may remove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<PathBuf>,
}

impl Made {
    /// Remove what kakuri made (a resctrl group can be removed with its files; its tasks go
    /// back to the default group).
    pub fn remove(&self) -> Result<(), String> {
        for d in self.monitor.iter().chain(self.group.iter()) {
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("remove {}: {}", d.display(), os_error(&e))),
            }
        }
        Ok(())
    }
}

/// The kernel's explanation of the last failed resctrl write, if it has one.
fn last_cmd_status(group: &Path) -> String {
    group
        .ancestors()
        .map(|a| a.join("info/last_cmd_status"))
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| format!(" (last_cmd_status: {})", s.trim()))
        .unwrap_or_default()
}

/// Make the group, write its schemata, put `pid` in it (and in the monitoring group). On
/// failure what was made is removed. `made` is filled as things are made, so that a caller
/// can undo them after a later failure.
pub fn apply(p: &Plan, pid: i32, made: &mut Made) -> Result<(), String> {
    let fail = |what: String, e: &std::io::Error| {
        format!(
            "linux.intelRdt: {what}: {}{}",
            os_error(e),
            last_cmd_status(&p.group)
        )
    };
    match std::fs::create_dir(&p.group) {
        Ok(()) if !p.shared => made.group = Some(p.group.clone()),
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(fail(format!("make {}", p.group.display()), &e)),
    }
    if !p.schemata.is_empty() {
        std::fs::write(p.group.join("schemata"), &p.schemata).map_err(|e| {
            fail(
                format!(
                    "write {:?} to {}/schemata",
                    p.schemata.trim_end(),
                    p.group.display()
                ),
                &e,
            )
        })?;
    }
    std::fs::write(p.group.join("tasks"), pid.to_string())
        .map_err(|e| fail(format!("add pid {pid} to {}/tasks", p.group.display()), &e))?;
    if let Some(m) = &p.monitor {
        match std::fs::create_dir(m) {
            Ok(()) => made.monitor = Some(m.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(fail(format!("make {}", m.display()), &e)),
        }
        std::fs::write(m.join("tasks"), pid.to_string())
            .map_err(|e| fail(format!("add pid {pid} to {}/tasks", m.display()), &e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rdt(j: serde_json::Value) -> oci::LinuxIntelRdt {
        serde_json::from_value(j).unwrap()
    }

    #[test]
    fn refused_without_resctrl() {
        let e = plan(&rdt(serde_json::json!({})), "c1", None).unwrap_err();
        assert!(
            e.starts_with("linux.intelRdt: resctrl is not mounted"),
            "{e}"
        );
    }

    /// On a directory standing in for resctrl: the group, its schemata and tasks, the
    /// monitoring group; a shared closID group is never recorded for removal.
    #[test]
    fn group_schemata_tasks_and_monitoring() {
        let root = std::env::temp_dir().join(format!("kakuri-resctrl-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let r = rdt(
            serde_json::json!({"l3CacheSchema": "L3:0=f", "memBwSchema": "MB:0=50",
            "schemata": ["L2:0=3"], "enableMonitoring": true}),
        );
        let p = plan(&r, "c1", Some(&root)).unwrap();
        assert_eq!(p.group, root.join("c1"));
        assert!(!p.shared);
        std::fs::create_dir_all(root.join("c1")).unwrap();
        std::fs::remove_dir(root.join("c1")).unwrap();
        // mon_groups exists in a real group; here it is made by hand once the group exists.
        let mut made = Made::default();
        let e = apply(&p, 42, &mut made).unwrap_err();
        assert!(e.contains("mon_groups"), "{e}");
        assert_eq!(made.group.as_deref(), Some(root.join("c1").as_path()));
        std::fs::create_dir(root.join("c1/mon_groups")).unwrap();
        apply(&p, 42, &mut made).unwrap();
        let read = |f: &str| std::fs::read_to_string(root.join(f)).unwrap();
        assert_eq!(read("c1/schemata"), "L3:0=f\nMB:0=50\nL2:0=3\n");
        assert_eq!(read("c1/tasks"), "42");
        assert_eq!(read("c1/mon_groups/c1/tasks"), "42");
        assert_eq!(
            made.monitor.as_deref(),
            Some(root.join("c1/mon_groups/c1").as_path())
        );
        // A closID alone names a group that must exist.
        let e = plan(
            &rdt(serde_json::json!({"closID": "shared"})),
            "c2",
            Some(&root),
        )
        .unwrap_err();
        assert!(e.starts_with("linux.intelRdt.closID: the group"), "{e}");
        std::fs::create_dir(root.join("shared")).unwrap();
        let p = plan(
            &rdt(serde_json::json!({"closID": "shared"})),
            "c2",
            Some(&root),
        )
        .unwrap();
        let mut made = Made::default();
        apply(&p, 43, &mut made).unwrap();
        assert_eq!(made, Made::default());
        assert_eq!(read("shared/tasks"), "43");
        let e = plan(
            &rdt(serde_json::json!({"closID": "../x"})),
            "c3",
            Some(&root),
        )
        .unwrap_err();
        assert!(e.contains("not a resctrl group name"), "{e}");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
