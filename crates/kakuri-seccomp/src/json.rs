//! Reading a linux.seccomp object from JSON with runc-style messages naming the bad entry.
//!
//! `config.json` is parsed by kakuri-spec into `oci-spec` types, where an unknown action is
//! already a parse error. These functions give the seccomp-specific wording for the same
//! mistakes (`linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`) and read
//! standalone profiles (a file holding just the linux.seccomp object).

use kakuri_spec::oci::LinuxSeccomp;
use serde_json::{Map, Value};

use crate::{invalid, names, SeccompError};

/// Check the enumerated values and required fields of a raw linux.seccomp object.
///
/// `prefix` is the JSON path of `seccomp` in error messages, normally `"linux.seccomp"`.
/// Type errors of other fields are left to the typed parse ([`profile_from_json`]).
pub fn check_json(seccomp: &Value, prefix: &str) -> Result<(), SeccompError> {
    let obj = seccomp
        .as_object()
        .ok_or_else(|| invalid(prefix, "must be an object"))?;
    let action_names: Vec<&str> = names::ACTIONS.iter().map(|e| e.1).collect();
    let arch_names: Vec<&str> = names::ARCHES.iter().map(|e| e.1).collect();
    let flag_names: Vec<&str> = names::FLAGS.iter().map(|e| e.1).collect();
    let op_names: Vec<&str> = names::OPERATORS.iter().map(|e| e.1).collect();

    one_of(obj, "defaultAction", prefix, "action", &action_names)?;
    list_of(obj, "architectures", prefix, "architecture", &arch_names)?;
    list_of(obj, "flags", prefix, "flag", &flag_names)?;
    let Some(syscalls) = obj.get("syscalls") else {
        return Ok(());
    };
    let Some(syscalls) = syscalls.as_array() else {
        return if syscalls.is_null() {
            Ok(())
        } else {
            Err(invalid(format!("{prefix}.syscalls"), "must be an array"))
        };
    };
    for (i, call) in syscalls.iter().enumerate() {
        let at = format!("{prefix}.syscalls[{i}]");
        let call = call
            .as_object()
            .ok_or_else(|| invalid(&at, "must be an object"))?;
        match call.get("names") {
            None => return Err(invalid(format!("{at}.names"), "required field is missing")),
            Some(Value::Array(list)) => {
                for (j, name) in list.iter().enumerate() {
                    if !name.is_string() {
                        return Err(invalid(
                            format!("{at}.names[{j}]"),
                            format!("syscall name must be a string, not {name}"),
                        ));
                    }
                }
            }
            Some(other) => {
                return Err(invalid(
                    format!("{at}.names"),
                    format!("must be an array of syscall names, not {other}"),
                ))
            }
        }
        one_of(call, "action", &at, "action", &action_names)?;
        let Some(args) = call.get("args") else {
            continue;
        };
        let Some(args) = args.as_array() else {
            if args.is_null() {
                continue;
            }
            return Err(invalid(format!("{at}.args"), "must be an array"));
        };
        for (k, arg) in args.iter().enumerate() {
            let at = format!("{at}.args[{k}]");
            let arg = arg
                .as_object()
                .ok_or_else(|| invalid(&at, "must be an object"))?;
            for field in ["index", "value"] {
                if !arg.contains_key(field) {
                    return Err(invalid(
                        format!("{at}.{field}"),
                        "required field is missing",
                    ));
                }
            }
            one_of(arg, "op", &at, "operator", &op_names)?;
        }
    }
    Ok(())
}

/// A required field whose value must be one of `known`.
fn one_of(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    what: &str,
    known: &[&str],
) -> Result<(), SeccompError> {
    match obj.get(key) {
        None => Err(invalid(
            format!("{prefix}.{key}"),
            "required field is missing",
        )),
        Some(value) => check_name(value, &format!("{prefix}.{key}"), what, known),
    }
}

fn list_of(
    obj: &Map<String, Value>,
    key: &str,
    prefix: &str,
    what: &str,
    known: &[&str],
) -> Result<(), SeccompError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_name(v, &format!("{prefix}.{key}[{i}]"), what, known)),
        Some(other) => Err(invalid(
            format!("{prefix}.{key}"),
            format!("must be an array, not {other}"),
        )),
    }
}

fn check_name(value: &Value, field: &str, what: &str, known: &[&str]) -> Result<(), SeccompError> {
    match value.as_str() {
        Some(s) if known.contains(&s) => Ok(()),
        Some(s) => Err(invalid(field, format!("unknown {what} {s:?}"))),
        None => Err(invalid(
            field,
            format!("{what} must be a string, not {value}"),
        )),
    }
}

/// Parse a linux.seccomp object (a standalone profile) from JSON.
///
/// Errors name the field as `linux.seccomp.<path>`: first the checks of [`check_json`], then
/// whatever the typed parse rejects (wrong types, numbers out of range).
pub fn profile_from_json(bytes: &[u8]) -> Result<LinuxSeccomp, SeccompError> {
    const PREFIX: &str = "linux.seccomp";
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| invalid(PREFIX, format!("invalid JSON: {e}")))?;
    check_json(&value, PREFIX)?;
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            PREFIX.to_string()
        } else {
            format!("{PREFIX}.{path}")
        };
        invalid(field, e.into_inner().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> String {
        profile_from_json(json.as_bytes())
            .expect_err("profile must be rejected")
            .to_string()
    }

    #[test]
    fn names_the_unknown_action() {
        let json = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["a"],"action":"SCMP_ACT_ERRNO"},{"names":["b"],"action":"SCMP_ACT_LOG"},
            {"names":["c"],"action":"SCMP_ACT_TRAP"},{"names":["d"],"action":"SCMP_ACT_FOO"}]}"#;
        assert_eq!(
            err(json),
            "linux.seccomp.syscalls[3].action: unknown action \"SCMP_ACT_FOO\""
        );
    }

    #[test]
    fn names_other_unknown_values() {
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_BAR"}"#),
            "linux.seccomp.defaultAction: unknown action \"SCMP_ACT_BAR\""
        );
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_VAX"]}"#
            ),
            "linux.seccomp.architectures[1]: unknown architecture \"SCMP_ARCH_VAX\""
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_NOPE"]}"#),
            "linux.seccomp.flags[0]: unknown flag \"SECCOMP_FILTER_FLAG_NOPE\""
        );
        assert_eq!(
            err(
                r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_APPROX"}]}]}"#
            ),
            "linux.seccomp.syscalls[0].args[0].op: unknown operator \"SCMP_CMP_APPROX\""
        );
        assert_eq!(
            err(r#"{"syscalls":[]}"#),
            "linux.seccomp.defaultAction: required field is missing"
        );
        assert_eq!(
            err(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"action":"SCMP_ACT_ERRNO"}]}"#),
            "linux.seccomp.syscalls[0].names: required field is missing"
        );
    }

    #[test]
    fn type_errors_name_the_path() {
        let e = err(r#"{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":"EPERM"}"#);
        assert!(e.starts_with("linux.seccomp.defaultErrnoRet: "), "{e}");
        let e = err(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_LOG","args":[{"index":-1,"value":1,"op":"SCMP_CMP_EQ"}]}]}"#,
        );
        assert!(
            e.starts_with("linux.seccomp.syscalls[0].args[0].index: "),
            "{e}"
        );
    }

    #[test]
    fn accepts_every_known_value() {
        let mut syscalls = Vec::new();
        for (_, action, _) in names::ACTIONS {
            for (_, op) in names::OPERATORS {
                syscalls.push(serde_json::json!({
                    "names": ["getpid"], "action": action, "errnoRet": 3,
                    "args": [{"index": 1, "value": 2, "valueTwo": 3, "op": op}]
                }));
            }
        }
        let profile = serde_json::json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 38,
            "architectures": names::ARCHES.iter().map(|e| e.1).collect::<Vec<_>>(),
            "flags": names::FLAGS.iter().map(|e| e.1).collect::<Vec<_>>(),
            "listenerPath": "/run/agent.sock",
            "listenerMetadata": "meta",
            "syscalls": syscalls,
        });
        let parsed = profile_from_json(profile.to_string().as_bytes()).expect("valid profile");
        assert_eq!(parsed.syscalls().as_ref().map(Vec::len), Some(9 * 7));
        assert_eq!(parsed.default_errno_ret(), Some(38));
        assert_eq!(parsed.architectures().as_ref().map(Vec::len), Some(24));
    }
}
