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
pub fn parse_config(path: &Path, bytes: &[u8]) -> Result<oci::Spec, SpecError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let spec: oci::Spec = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() || field == "." {
            SpecError::Syntax {
                path: path.to_path_buf(),
                msg: inner.to_string(),
            }
        } else {
            SpecError::Field {
                path: path.to_path_buf(),
                field,
                msg: inner.to_string(),
            }
        }
    })?;
    de.end().map_err(|e| SpecError::Syntax {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    Ok(spec)
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
    let bytes = std::fs::read(&config_path).map_err(|source| SpecError::Open {
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
