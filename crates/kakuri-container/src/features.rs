//! The `features` document (runtime-spec features.md): what this build of kakuri implements.

use serde_json::{json, Value};

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
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": seccomp_actions,
                "operators": kakuri_seccomp::supported_operators(),
                "archs": archs,
                "knownFlags": kakuri_seccomp::known_flags(),
                "supportedFlags": kakuri_seccomp::supported_flags()
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": kakuri_isolate::idmap::supported()}}
        },
        "annotations": {
            "io.github.seccomp.libseccomp.version": kakuri_seccomp::libseccomp_version_string(),
            "org.opencontainers.runc.checkpoint.enabled": "false",
            "org.kakuri.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// The version of the libseccomp kakuri runs with ("2.5.4"), for `kakuri --version`.
pub fn libseccomp_version() -> String {
    kakuri_seccomp::libseccomp_version_string()
}
