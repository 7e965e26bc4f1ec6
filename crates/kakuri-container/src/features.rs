//! The `features` document (runtime-spec features.md): what this build of kakuri implements.

use serde_json::{json, Value};

/// `linux.memoryPolicy.mode` values applied (all of runtime-spec 1.3's).
const MPOL_MODES: [&str; 7] = [
    "MPOL_DEFAULT",
    "MPOL_BIND",
    "MPOL_INTERLEAVE",
    "MPOL_WEIGHTED_INTERLEAVE",
    "MPOL_PREFERRED",
    "MPOL_PREFERRED_MANY",
    "MPOL_LOCAL",
];

/// `linux.memoryPolicy.flags` values applied (all of runtime-spec 1.3's).
const MPOL_FLAGS: [&str; 3] = [
    "MPOL_F_NUMA_BALANCING",
    "MPOL_F_RELATIVE_NODES",
    "MPOL_F_STATIC_NODES",
];

/// Build the features document. Only what kakuri really does is listed.
pub fn features() -> Value {
    let seccomp_actions: Vec<Value> = kakuri_seccomp::supported_actions()
        .into_iter()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    let archs: Vec<Value> = kakuri_seccomp::supported_archs()
        .into_iter()
        .map(|a| serde_json::to_value(a).unwrap_or(Value::Null))
        .collect();
    let caps: Vec<String> = caps::all()
        .into_iter()
        .map(|c| c.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": kakuri_spec::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": kakuri_isolate::mountopts::KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": true},
            "seccomp": {
                "enabled": true,
                "actions": seccomp_actions,
                "operators": kakuri_seccomp::supported_operators(),
                "archs": archs,
                "knownFlags": kakuri_seccomp::known_flags(),
                "supportedFlags": kakuri_seccomp::supported_flags()
            },
            // Both are applied where the host has the LSM (refused where it has not).
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            // Applied where resctrl is mounted (refused where not).
            "intelRdt": {"enabled": true, "schemata": true, "monitoring": true},
            "memoryPolicy": {"modes": MPOL_MODES, "flags": MPOL_FLAGS},
            "mountExtensions": {"idmap": {"enabled": kakuri_isolate::idmap::supported()}},
            "netDevices": {"enabled": true}
        },
        "annotations": {
            "io.github.seccomp.libseccomp.version": kakuri_seccomp::libseccomp_version_string(),
            "org.opencontainers.runc.checkpoint.enabled": "true",
            "org.kakuri.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// The version of the libseccomp kakuri runs with ("2.5.4"), for `kakuri --version`.
pub fn libseccomp_version() -> String {
    kakuri_seccomp::libseccomp_version_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kakuri_spec::oci;

    fn spec(j: Value) -> oci::Spec {
        serde_json::from_value(j).expect("spec")
    }

    /// What `features` lists is what create accepts, and what it does not list is refused.
    #[test]
    fn features_match_what_create_accepts() {
        let f = features();
        let l = &f["linux"];
        // Every listed memory policy mode and flag is turned into a set_mempolicy call.
        for m in l["memoryPolicy"]["modes"].as_array().unwrap() {
            let needs_none = matches!(m.as_str(), Some("MPOL_DEFAULT" | "MPOL_LOCAL"));
            let j = if needs_none {
                json!({"mode": m})
            } else {
                json!({"mode": m, "nodes": "0"})
            };
            let p: oci::LinuxMemoryPolicy = serde_json::from_value(j).unwrap();
            kakuri_isolate::process::mem_policy(&p).unwrap_or_else(|e| panic!("{m}: {e}"));
        }
        for fl in l["memoryPolicy"]["flags"].as_array().unwrap() {
            let j = json!({"mode": "MPOL_BIND", "nodes": "0", "flags": [fl]});
            let p: oci::LinuxMemoryPolicy = serde_json::from_value(j).unwrap();
            kakuri_isolate::process::mem_policy(&p).unwrap_or_else(|e| panic!("{fl}: {e}"));
        }
        // A mode the spec library knows but features does not list would be a gap.
        assert!(
            serde_json::from_value::<oci::LinuxMemoryPolicy>(json!({"mode": "MPOL_X"})).is_err()
        );
        // intelRdt: enabled, with schemata and monitoring, which the plan takes (refused only
        // where resctrl is not mounted).
        assert_eq!(
            l["intelRdt"],
            json!({"enabled": true, "schemata": true, "monitoring": true})
        );
        let r: oci::LinuxIntelRdt =
            serde_json::from_value(json!({"schemata": ["L3:0=f"], "enableMonitoring": true}))
                .unwrap();
        let p = crate::resctrl::plan(&r, "c", Some(std::path::Path::new("/r"))).unwrap();
        assert_eq!(p.schemata, "L3:0=f\n");
        assert!(p.monitor.is_some());
        let e = crate::resctrl::plan(&r, "c", None).unwrap_err();
        assert!(
            e.starts_with("linux.intelRdt: resctrl is not mounted"),
            "{e}"
        );
        // Other platforms' sections: refused.
        let s = spec(json!({"ociVersion": "1.3.0", "windows": {"layerFolders": []}}));
        assert!(crate::create::refuse_unsupported(&s).is_err());
        // netDevices: enabled, planned (the refusal without a netns is the only one here).
        assert_eq!(l["netDevices"]["enabled"], json!(true));
        let devs =
            std::collections::HashMap::from([("lo".to_string(), oci::LinuxNetDevice::default())]);
        kakuri_isolate::netdev::plan(&devs, true, false).expect("lo can be planned");
        // Namespaces: each listed one maps to a clone flag.
        for n in l["namespaces"].as_array().unwrap() {
            let t: oci::LinuxNamespaceType = serde_json::from_value(n.clone()).unwrap();
            assert_ne!(kakuri_isolate::ns_flag(t), 0, "{n}");
        }
        // Every listed mount option is one kakuri handles (not passed on as filesystem data).
        for o in f["mountOptions"].as_array().unwrap() {
            let o = o.as_str().unwrap();
            let parsed = kakuri_isolate::mountopts::parse(&[o.to_string()]);
            assert_eq!(parsed.data, "", "mount option {o} is not handled");
        }
    }
}
