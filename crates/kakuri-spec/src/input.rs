//! Limits on what kakuri reads from its callers: the size of a JSON input, and NUL bytes in
//! strings that become C strings (arguments, environment, paths) for the kernel.

use std::io::Read;
use std::path::Path;

/// The most kakuri reads of one JSON input (config.json, an `exec --process` file, an `update`
/// resources file, state.json): 32 MiB. Real configs are kilobytes; the largest fields they
/// carry are bounded far lower (the arguments and environment of one execve: ARG_MAX, 2 MiB
/// with the default 8 MiB stack limit; Kubernetes annotations: 256 KiB in all; a seccomp
/// profile of every syscall: about 50 KiB). A file beyond this is not a config (a symlink to
/// /dev/zero, say): reading it whole would only exhaust memory.
pub const MAX_JSON_BYTES: u64 = 32 << 20;

/// Read all of `r`, failing once it gives more than [`MAX_JSON_BYTES`].
pub fn read_bounded(r: impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    r.take(MAX_JSON_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_JSON_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB, the most kakuri reads of a JSON file",
                MAX_JSON_BYTES >> 20
            ),
        ));
    }
    Ok(buf)
}

/// Read the file at `path` whole, up to [`MAX_JSON_BYTES`].
pub fn read_file_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    read_bounded(std::fs::File::open(path)?)
}

/// What a valid JSON document that is not an object is ("an array", "a string" ...), for an
/// input that must be an object; `None` for an object or for something that is not JSON at
/// all (the typed parse reports its syntax error).
pub fn non_object_kind(bytes: &[u8]) -> Option<&'static str> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first == b'{' {
        return None;
    }
    use serde_json::Value;
    Some(match serde_json::from_slice::<Value>(bytes).ok()? {
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Bool(_) => "a boolean",
        Value::Null => "null",
        Value::Object(_) => return None,
    })
}

/// The JSON path (`process.args[1]`, `linux.sysctl["kernel.x"]`) of the first string, key or
/// value, of the document `bytes` that holds a NUL byte, outside the top-level fields `skip`.
/// Such a string cannot reach the kernel as a C string. `None` also when `bytes` is not JSON
/// (the typed parse reports that).
pub fn find_nul(bytes: &[u8], skip: &[&str]) -> Option<String> {
    // JSON can only carry a NUL as the escape \u0000; without one the walk is skipped.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    walk(&v, &mut String::new(), skip, true)
}

fn key_segment(path: &mut String, k: &str) {
    if !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(k);
    } else {
        path.push_str(&format!("[{}]", serde_json::Value::from(k)));
    }
}

fn walk(v: &serde_json::Value, path: &mut String, skip: &[&str], top: bool) -> Option<String> {
    use serde_json::Value;
    match v {
        Value::String(s) if s.contains('\0') => Some(path.clone()),
        Value::Array(a) => a.iter().enumerate().find_map(|(i, x)| {
            let len = path.len();
            path.push_str(&format!("[{i}]"));
            let r = walk(x, path, skip, false);
            path.truncate(len);
            r
        }),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            if top && skip.contains(&k.as_str()) {
                return None;
            }
            let len = path.len();
            key_segment(path, k);
            let r = if k.contains('\0') {
                Some(format!("{path} (the key)"))
            } else {
                walk(x, path, skip, false)
            };
            path.truncate(len);
            r
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_are_found_with_their_path() {
        let f = |j: &str| find_nul(j.as_bytes(), &["annotations"]);
        assert_eq!(
            f(r#"{"process":{"args":["sh","a\u0000b"]}}"#).as_deref(),
            Some("process.args[1]")
        );
        assert_eq!(
            f(r#"{"process":{"env":["A=\u0000"]}}"#).as_deref(),
            Some("process.env[0]")
        );
        assert_eq!(
            f(r#"{"linux":{"sysctl":{"kernel.x":"1\u0000"}}}"#).as_deref(),
            Some(r#"linux.sysctl["kernel.x"]"#)
        );
        assert_eq!(
            f(r#"{"hooks":{"prestart":[{"path":"/bin/\u0000sh"}]}}"#).as_deref(),
            Some("hooks.prestart[0].path")
        );
        assert_eq!(
            f(r#"{"linux":{"sysctl":{"a\u0000":"1"}}}"#).as_deref(),
            Some(r#"linux.sysctl["a\u0000"] (the key)"#)
        );
        // Annotations never reach the kernel: runc takes a NUL there, so does kakuri.
        assert_eq!(f(r#"{"annotations":{"a":"\u0000"}}"#), None);
        // An escaped backslash before "u0000" is text, not a NUL.
        assert_eq!(f(r#"{"process":{"args":["\\u0000"]}}"#), None);
        assert_eq!(f(r#"{"process":{"args":["sh"]}}"#), None);
        assert_eq!(f("not json \\u0000"), None);
    }

    #[test]
    fn non_objects_are_named() {
        assert_eq!(non_object_kind(b" [1, 2]"), Some("an array"));
        assert_eq!(non_object_kind(b"null"), Some("null"));
        assert_eq!(non_object_kind(b"\"x\""), Some("a string"));
        assert_eq!(non_object_kind(b" {}"), None);
        assert_eq!(non_object_kind(b"[1,"), None);
        assert_eq!(non_object_kind(b""), None);
    }

    #[test]
    fn reads_are_bounded() {
        let ok = read_bounded(std::io::repeat(b' ').take(MAX_JSON_BYTES)).unwrap();
        assert_eq!(ok.len() as u64, MAX_JSON_BYTES);
        let e = read_bounded(std::io::repeat(0)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "larger than 32 MiB, the most kakuri reads of a JSON file"
        );
    }
}
