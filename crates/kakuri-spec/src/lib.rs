//! Loading and validation of an OCI bundle's `config.json`.
//!
//! The rest of kakuri works on [`oci::Spec`] (re-exported from the `oci-spec` crate). This crate is
//! the only place that reads `config.json`, and it does so once per command: [`load_bundle`] parses
//! the file, names the JSON path of the first field that does not fit the schema, and then
//! [`validate`] checks what the schema alone cannot (versions, paths, namespace combinations).

use std::fmt;
use std::path::{Path, PathBuf};

pub use oci_spec::runtime as oci;

mod default;
pub mod input;
mod validate;
pub use default::default_config;
pub use validate::{validate, ValidationError};

/// The runtime-spec version this runtime implements (and writes in `state`).
pub const OCI_VERSION: &str = "1.3.0";

/// An error loading a bundle: which file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {bundle}: {}", os_error(source))]
    Bundle {
        bundle: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("open {path}: {}", os_error(source))]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {msg}")]
    Syntax { path: PathBuf, msg: String },
    #[error("{path}: not a JSON object (it is {kind}): a config is one object")]
    NotObject { path: PathBuf, kind: &'static str },
    #[error("{path}: field {field}: {msg}")]
    Field {
        path: PathBuf,
        field: String,
        msg: String,
    },
    #[error("{path}: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: ValidationError,
    },
}

/// A loaded bundle: its absolute directory, the parsed config and the absolute rootfs path.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub spec: oci::Spec,
    pub rootfs: PathBuf,
}

impl fmt::Display for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dir.display())
    }
}

/// Parse a `config.json` from bytes, reporting the JSON path of a field that does not fit.
///
/// Capability names kakuri does not know are dropped with a warning (see
/// [`from_json_dropping_unknown_caps`]).
pub fn parse_config(path: &Path, bytes: &[u8]) -> Result<oci::Spec, SpecError> {
    if let Some(kind) = input::non_object_kind(bytes) {
        return Err(SpecError::NotObject {
            path: path.to_path_buf(),
            kind,
        });
    }
    if let Some(field) = input::find_nul(bytes, &["annotations"]) {
        return Err(SpecError::Invalid {
            path: path.to_path_buf(),
            source: ValidationError {
                field,
                msg: "contains a NUL byte".into(),
            },
        });
    }
    // runtime-spec 1.3's `freebsd` section is unknown to the spec library, which would drop it
    // unseen: refused by name like the other platforms' (kakuri-container).
    if contains(bytes, b"\"freebsd\"") {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| SpecError::Syntax {
                path: path.to_path_buf(),
                msg: e.to_string(),
            })?;
        if v.get("freebsd").is_some_and(|f| !f.is_null()) {
            return Err(SpecError::Invalid {
                path: path.to_path_buf(),
                source: ValidationError {
                    field: "freebsd".into(),
                    msg: "a section for another platform; kakuri runs Linux containers only".into(),
                },
            });
        }
    }
    from_json_dropping_unknown_caps(bytes, "/process/capabilities").map_err(|e| {
        if e.inner.is_syntax() || e.inner.is_eof() || e.path == "." {
            SpecError::Syntax {
                path: path.to_path_buf(),
                msg: e.inner.to_string(),
            }
        } else {
            SpecError::Field {
                path: path.to_path_buf(),
                field: e.path,
                msg: e.inner.to_string(),
            }
        }
    })
}

/// A JSON document that does not fit its type: the path of the field (`.` for the document
/// itself) and serde_json's error.
#[derive(Debug)]
pub struct JsonError {
    pub path: String,
    pub inner: serde_json::Error,
}

impl JsonError {
    fn whole(inner: serde_json::Error) -> Self {
        JsonError {
            path: ".".into(),
            inner,
        }
    }
}

impl From<serde_path_to_error::Error<serde_json::Error>> for JsonError {
    fn from(e: serde_path_to_error::Error<serde_json::Error>) -> Self {
        JsonError {
            path: e.path().to_string(),
            inner: e.into_inner(),
        }
    }
}

/// Deserialize `T` from JSON, reporting the path of a field that does not fit. runtime-spec
/// 1.3: a capability "which cannot be mapped to a relevant kernel interface ... MUST be logged
/// as a warning" and runtimes "SHOULD NOT fail": names in the capability sets at the JSON
/// pointer `caps` that are not capabilities are dropped with runc's warning ("ignoring unknown
/// or unavailable capabilities: [...]"). The common case, every name known, parses once.
pub fn from_json_dropping_unknown_caps<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    caps: &str,
) -> Result<T, JsonError> {
    // The spec library's names for two scheduler flags differ from runtime-spec's: rewrite the
    // spec's names first (rare: only when the bytes mention them).
    let fixed;
    let bytes = if SPEC_SCHED_FLAGS
        .iter()
        .any(|(spec, _)| contains(bytes, spec.as_bytes()))
    {
        let sched = format!(
            "{}scheduler/flags",
            caps.strip_suffix("capabilities").unwrap_or("/")
        );
        let mut value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(JsonError::whole)?;
        if let Some(serde_json::Value::Array(flags)) = value.pointer_mut(&sched) {
            for f in flags.iter_mut() {
                if let Some((_, lib)) = SPEC_SCHED_FLAGS.iter().find(|(s, _)| f == s) {
                    *f = serde_json::Value::from(*lib);
                }
            }
        }
        fixed = serde_json::to_vec(&value).map_err(JsonError::whole)?;
        &fixed[..]
    } else {
        bytes
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let in_caps = |e: &serde_path_to_error::Error<serde_json::Error>| {
        let prefix = format!("{}.", caps.trim_start_matches('/').replace('/', "."));
        e.path().to_string().starts_with(&prefix)
    };
    match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => {
            de.end().map_err(JsonError::whole)?;
            Ok(v)
        }
        Err(e) if in_caps(&e) => {
            let mut value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(JsonError::whole)?;
            let dropped = drop_unknown_caps(value.pointer_mut(caps));
            if !dropped.is_empty() {
                log::warn!(
                    "ignoring unknown or unavailable capabilities: [{}]",
                    dropped.join(" ")
                );
            }
            Ok(serde_path_to_error::deserialize(value)?)
        }
        Err(e) => Err(e.into()),
    }
}

/// runtime-spec 1.3's names of `process.scheduler.flags` that oci-spec 0.10 spells otherwise
/// (its `LinuxSchedulerFlag` derives them with SCREAMING_SNAKE_CASE: `SchedResetOnFork` gives
/// `SCHED_RESET_ON_FORK`, `SchedFlagDLOverrun` gives `SCHED_FLAG_D_L_OVERRUN`), with the
/// library's name. The other five flags match.
const SPEC_SCHED_FLAGS: [(&str, &str); 2] = [
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Remove from each capability set of a `capabilities` object the names that are not
/// capabilities; returns them (sorted, once each).
fn drop_unknown_caps(caps: Option<&mut serde_json::Value>) -> Vec<String> {
    let mut dropped = Vec::new();
    let Some(serde_json::Value::Object(sets)) = caps else {
        return dropped;
    };
    for set in sets.values_mut() {
        if let serde_json::Value::Array(names) = set {
            names.retain(|n| {
                // Only names: anything else is left for the typed parse to reject.
                let known =
                    !n.is_string() || serde_json::from_value::<oci::Capability>(n.clone()).is_ok();
                if !known {
                    dropped.push(n.as_str().map_or_else(|| n.to_string(), str::to_string));
                }
                known
            });
        }
    }
    dropped.sort();
    dropped.dedup();
    dropped
}

/// Load `<bundle>/config.json`, check it against the schema and [`validate`] it.
///
/// `bundle` may be relative; the returned [`Bundle`] holds absolute paths, as `state` reports them.
pub fn load_bundle(bundle: &Path) -> Result<Bundle, SpecError> {
    let dir = std::path::absolute(bundle)
        .and_then(|p| std::fs::canonicalize(&p).or(Ok(p)))
        .map_err(|source| SpecError::Bundle {
            bundle: bundle.to_path_buf(),
            source,
        })?;
    let config_path = dir.join("config.json");
    let bytes = input::read_file_bounded(&config_path).map_err(|source| SpecError::Open {
        path: config_path.clone(),
        source,
    })?;
    let spec = parse_config(&config_path, &bytes)?;
    validate(&spec, &dir).map_err(|source| SpecError::Invalid {
        path: config_path.clone(),
        source,
    })?;
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let rootfs = if root.is_absolute() {
        root
    } else {
        dir.join(root)
    };
    Ok(Bundle {
        dir,
        config_path,
        spec,
        rootfs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_type_names_the_field() {
        let json = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}}"#;
        let err = parse_config(Path::new("/b/config.json"), json).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("process.user.uid"), "{msg}");
        assert!(msg.contains("/b/config.json"), "{msg}");
    }

    #[test]
    fn malformed_json_is_a_syntax_error() {
        let err = parse_config(Path::new("c.json"), b"{\"ociVersion\": ").unwrap_err();
        assert!(matches!(err, SpecError::Syntax { .. }), "{err}");
        let err = parse_config(Path::new("c.json"), b"{} trailing").unwrap_err();
        assert!(matches!(err, SpecError::Syntax { .. }), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_dropped_not_fatal() {
        let json = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
            "capabilities":{"bounding":["CAP_KILL","CAP_UNKNOWN"],"effective":["UNKNOWN_CAP","CAP_CHOWN"],"ambient":["CAP_UNKNOWN"]}}}"#;
        let spec = parse_config(Path::new("c.json"), json).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .as_ref()
            .unwrap();
        let names = |s: &Option<oci::Capabilities>| {
            let mut v: Vec<String> = s.iter().flatten().map(|c| c.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(caps.bounding()), ["KILL"]);
        assert_eq!(names(caps.effective()), ["CHOWN"]);
        assert!(names(caps.ambient()).is_empty());
        // Only names are dropped: a value of the wrong type still names its field.
        let json = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0},
            "capabilities":{"bounding":[7]}}}"#;
        let err = parse_config(Path::new("c.json"), json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("process.capabilities.bounding[0]"), "{err}");
    }

    #[test]
    fn non_object_and_nul_are_named() {
        let e = parse_config(Path::new("/b/config.json"), b"[]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/b/config.json: not a JSON object (it is an array): a config is one object"
        );
        let json = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh","a\u0000"],"user":{"uid":0,"gid":0}}}"#;
        let e = parse_config(Path::new("/b/config.json"), json).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/b/config.json: process.args[1]: contains a NUL byte"
        );
    }

    #[test]
    fn minimal_config_parses() {
        let json = br#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}}"#;
        let spec = parse_config(Path::new("c.json"), json).unwrap();
        assert_eq!(spec.version(), "1.0.2");
    }
}

/// An OS error in the wording runc (Go) uses — "no such file or directory", not
/// "No such file or directory (os error 2)" — because clients match these texts.
pub fn os_error(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            // SAFETY: strerror returns a pointer to a static (or thread-local) NUL-terminated
            // string that stays valid until the next strerror call on this thread; it is copied
            // at once.
            let s = unsafe { std::ffi::CStr::from_ptr(libc_strerror(n)) }
                .to_string_lossy()
                .into_owned();
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_lowercase().chain(c).collect(),
                None => s,
            }
        }
        None => e.to_string(),
    }
}

extern "C" {
    #[link_name = "strerror"]
    fn libc_strerror(n: i32) -> *const std::ffi::c_char;
}

#[cfg(test)]
mod os_error_tests {
    #[test]
    fn go_wording() {
        let e = std::io::Error::from_raw_os_error(2);
        assert_eq!(super::os_error(&e), "no such file or directory");
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(super::os_error(&e), "permission denied");
    }
}

#[cfg(test)]
mod sched_flag_tests {
    use super::*;

    /// runtime-spec's flag names parse (oci-spec 0.10 alone rejects two of them), in a config
    /// and in an `exec --process` document, and map to the library's variants.
    #[test]
    fn spec_names_of_scheduler_flags() {
        let all = r#"["SCHED_FLAG_RESET_ON_FORK","SCHED_FLAG_RECLAIM","SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY","SCHED_FLAG_KEEP_PARAMS","SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX"]"#;
        let process = format!(
            r#"{{"cwd":"/","args":["sh"],"user":{{"uid":0,"gid":0}},
                "scheduler":{{"policy":"SCHED_OTHER","flags":{all}}}}}"#
        );
        let p: oci::Process = from_json_dropping_unknown_caps(process.as_bytes(), "/capabilities")
            .unwrap_or_else(|e| panic!("{} {}", e.path, e.inner));
        let flags = p.scheduler().as_ref().unwrap().flags().clone().unwrap();
        use oci::LinuxSchedulerFlag as F;
        assert_eq!(flags[0], F::SchedResetOnFork);
        assert_eq!(flags[2], F::SchedFlagDLOverrun);
        assert_eq!(flags.len(), 7);
        let config = format!(r#"{{"ociVersion":"1.3.0","process":{process}}}"#);
        let s = parse_config(Path::new("config.json"), config.as_bytes()).unwrap();
        assert_eq!(s.process().as_ref().unwrap().scheduler(), p.scheduler());
        // An annotation holding the same text is left alone.
        let config =
            r#"{"ociVersion":"1.3.0","annotations":{"a":"SCHED_FLAG_DL_OVERRUN"}}"#.to_string();
        let s = parse_config(Path::new("config.json"), config.as_bytes()).unwrap();
        assert_eq!(
            s.annotations().as_ref().unwrap()["a"],
            "SCHED_FLAG_DL_OVERRUN"
        );
    }
}
