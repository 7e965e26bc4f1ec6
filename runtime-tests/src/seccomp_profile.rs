//! podman's default seccomp profile (/usr/share/containers/seccomp.json, Debian package
//! golang-github-containers-common), converted to `linux.seccomp` the way podman does. Shared by
//! kakuri-seccomp's profile test and the seccomp integration tests.

use serde_json::{json, Value};

/// Where Debian's golang-github-containers-common installs the profile.
pub const PODMAN_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// podman's default_capabilities (containers.conf); CAP_AUDIT_WRITE is not among them.
pub const PODMAN_CAPS: [&str; 11] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_NET_BIND_SERVICE",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// The strings of a JSON array (nothing for anything else).
pub fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The running kernel's (major, minor): "6.1.0-13-amd64" -> (6, 1).
pub fn kernel_version() -> (u64, u64) {
    let u = nix::sys::utsname::uname().expect("uname");
    let r = u.release().to_string_lossy().into_owned();
    let mut it = r.split(|c: char| !c.is_ascii_digit());
    let major = it
        .next()
        .and_then(|p| p.parse().ok())
        .expect("kernel major");
    let minor = it
        .next()
        .and_then(|p| p.parse().ok())
        .expect("kernel minor");
    (major, minor)
}

/// The moby/containers-common profile format to `linux.seccomp` for an amd64 container with
/// `caps`, as podman converts it: archMap gives the architectures, and each syscall entry is
/// kept when its includes (arches, caps, minKernel) hold and its excludes (arches, caps) do not.
pub fn moby_to_oci(profile: &Value, caps: &[&str]) -> Value {
    let kernel = kernel_version();
    let mut architectures = Vec::new();
    for entry in profile["archMap"].as_array().expect("archMap") {
        if entry["architecture"] == "SCMP_ARCH_X86_64" {
            architectures.push(entry["architecture"].clone());
            architectures.extend(
                entry["subArchitectures"]
                    .as_array()
                    .expect("subArchitectures")
                    .iter()
                    .cloned(),
            );
        }
    }
    let mut syscalls = Vec::new();
    for call in profile["syscalls"].as_array().expect("syscalls") {
        let (inc, exc) = (&call["includes"], &call["excludes"]);
        let arches = strings(&inc["arches"]);
        if !arches.is_empty() && !arches.contains(&"amd64") {
            continue;
        }
        if strings(&inc["caps"]).iter().any(|c| !caps.contains(c)) {
            continue;
        }
        if let Some(min) = inc["minKernel"].as_str() {
            let mut it = min.split('.').map(|p| p.parse::<u64>().expect("minKernel"));
            if kernel < (it.next().unwrap_or(0), it.next().unwrap_or(0)) {
                continue;
            }
        }
        if strings(&exc["arches"]).contains(&"amd64")
            || strings(&exc["caps"]).iter().any(|c| caps.contains(c))
        {
            continue;
        }
        let mut out = json!({"names": call["names"], "action": call["action"]});
        if let Some(e) = call.get("errnoRet") {
            out["errnoRet"] = e.clone();
        }
        if let Some(a) = call.get("args").filter(|a| !a.is_null()) {
            out["args"] = a.clone();
        }
        syscalls.push(out);
    }
    let mut s = json!({
        "defaultAction": profile["defaultAction"],
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(e) = profile.get("defaultErrnoRet") {
        s["defaultErrnoRet"] = e.clone();
    }
    s
}

/// podman's default profile as `linux.seccomp` for [`PODMAN_CAPS`]; panics with the package to
/// install if the profile is missing.
pub fn podman_seccomp() -> Value {
    let raw = std::fs::read(PODMAN_PROFILE).unwrap_or_else(|e| {
        panic!(
            "{PODMAN_PROFILE}: {e} (install it with: apt-get install --no-install-recommends golang-github-containers-common)"
        )
    });
    moby_to_oci(
        &serde_json::from_slice(&raw).expect("podman profile is JSON"),
        &PODMAN_CAPS,
    )
}
