//! Records the git commit for `kakuri --version` ("commit: ..."), when built from a checkout.
use std::process::Command;

fn main() {
    let commit = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=KAKURI_COMMIT={commit}");
    // Rebuild when HEAD moves (the files exist only in a checkout).
    for f in ["../../.git/HEAD", "../../.git/refs/heads"] {
        if std::path::Path::new(f).exists() {
            println!("cargo:rerun-if-changed={f}");
        }
    }
    println!("cargo:rerun-if-env-changed=KAKURI_COMMIT");
}
