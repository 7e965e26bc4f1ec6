//! Profiles that must be refused at compile time, with messages naming the entry; and the
//! `features` lists.

mod common;

use kakuri_seccomp::{compile, profile_from_json};
use kakuri_spec::oci::{Arch, LinuxSeccompAction};
use serde_json::json;

fn compile_err(value: serde_json::Value) -> String {
    compile(&common::profile(value))
        .expect_err("profile must be refused")
        .to_string()
}

#[test]
fn unknown_action_is_rejected_naming_the_field() {
    let json = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["close"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["open"], "action": "SCMP_ACT_FOO"}
        ]
    });
    let err = profile_from_json(json.to_string().as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "linux.seccomp.syscalls[3].action: unknown action \"SCMP_ACT_FOO\""
    );
}

#[test]
fn argument_index_out_of_range() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                      {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}
        ]
    }));
    assert!(
        msg.starts_with("linux.seccomp.syscalls[1].args[1].index: argument index 6 out of range"),
        "{msg}"
    );
}

#[test]
fn notify_restrictions() {
    let msg =
        compile_err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/a.sock"}));
    assert_eq!(
        msg,
        "linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be used as default action"
    );
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/a.sock",
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write syscall"
    );
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"},
                     {"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.listenerPath: seccomp listenerPath is not set (linux.seccomp.syscalls[1] uses SCMP_ACT_NOTIFY)"
    );
}

#[test]
fn errno_ret_out_of_range() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]
    }));
    assert!(
        msg.starts_with("linux.seccomp.syscalls[0].errnoRet: errno 70000"),
        "{msg}"
    );
    let msg = compile_err(json!({"defaultAction": "SCMP_ACT_TRACE", "defaultErrnoRet": 65536}));
    assert!(
        msg.starts_with("linux.seccomp.defaultErrnoRet: errno 65536"),
        "{msg}"
    );
}

#[test]
fn empty_syscall_name() {
    let msg = compile_err(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]
    }));
    assert_eq!(
        msg,
        "linux.seccomp.syscalls[0].names[1]: empty string is not a valid syscall"
    );
}

#[test]
fn architecture_the_library_lacks() {
    // libseccomp 2.5 has no SuperH support, 2.6 has: either way the answer must agree with
    // supported_archs().
    let supported = kakuri_seccomp::supported_archs();
    let result = compile(&common::profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_SH"]
    })));
    if supported.contains(&Arch::ScmpArchSh) {
        result.expect("SCMP_ARCH_SH is supported by this libseccomp");
    } else {
        let msg = result.expect_err("SCMP_ARCH_SH is unsupported").to_string();
        assert!(
            msg.starts_with("linux.seccomp.architectures[1]: architecture SCMP_ARCH_SH is not supported by libseccomp "),
            "{msg}"
        );
    }
}

#[test]
fn features_lists() {
    // Kernel 6.x and libseccomp 2.5+ support every action and flag of runtime-spec 1.3.0.
    let actions = kakuri_seccomp::supported_actions();
    assert_eq!(actions.len(), 9, "{actions:?}");
    assert!(actions.contains(&LinuxSeccompAction::ScmpActNotify));
    let flags = kakuri_seccomp::supported_flags();
    assert_eq!(flags, kakuri_seccomp::known_flags());
    assert!(flags.contains(&"SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV".to_string()));
    assert_eq!(kakuri_seccomp::supported_operators().len(), 7);
    let archs = kakuri_seccomp::supported_archs();
    for arch in [
        Arch::ScmpArchNative,
        Arch::ScmpArchX86_64,
        Arch::ScmpArchX86,
        Arch::ScmpArchX32,
        Arch::ScmpArchAarch64,
    ] {
        assert!(archs.contains(&arch), "{arch:?} missing from {archs:?}");
    }
    let version = kakuri_seccomp::libseccomp_version_string();
    assert!(version.starts_with("2."), "{version}");
}
