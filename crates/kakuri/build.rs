//! What `kakuri --version` says about the build, as runc's `version` does:
//!
//! - `KAKURI_VERSION`: `$KAKURI_VERSION` when set (the release job sets it from the tag);
//!   else, in a git checkout, the tag `vX.Y.Z` that HEAD is exactly on (without the `v`), or
//!   the crate version with `+dev` when HEAD is on no release tag; else (a source tarball)
//!   the crate version.
//! - `KAKURI_COMMIT`: `$KAKURI_COMMIT` when set; else `git rev-parse HEAD` in a checkout; else
//!   the commit `git archive` wrote into `COMMIT` (export-subst, see .gitattributes); else
//!   "unknown".
//! - `KAKURI_RUSTC`: the compiler's version ("1.95.0"), runc's `go:` line.
use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let pkg = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let in_git = git(&["rev-parse", "--is-inside-work-tree"]).is_some_and(|s| s == "true");

    let version = std::env::var("KAKURI_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .or_else(|| {
            git(&["describe", "--tags", "--exact-match", "--match", "v[0-9]*"])
                .map(|t| t.trim_start_matches('v').to_string())
        })
        .unwrap_or_else(|| {
            if in_git {
                format!("{pkg}+dev")
            } else {
                pkg.clone()
            }
        });

    let commit = std::env::var("KAKURI_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "HEAD"]).filter(|_| in_git))
        .or_else(|| {
            // `git archive` replaces the placeholder with the commit (export-subst).
            std::fs::read_to_string("COMMIT")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty() && !s.contains('$'))
        })
        .unwrap_or_else(|| "unknown".to_string());

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| "unknown".to_string());

    println!("cargo:rustc-env=KAKURI_VERSION={version}");
    println!("cargo:rustc-env=KAKURI_COMMIT={commit}");
    println!("cargo:rustc-env=KAKURI_RUSTC={rustc_version}");
    println!("cargo:rerun-if-env-changed=KAKURI_VERSION");
    println!("cargo:rerun-if-env-changed=KAKURI_COMMIT");
    println!("cargo:rerun-if-changed=COMMIT");
    // Rebuild when HEAD moves or a tag is made. In a worktree HEAD lives in the worktree's own
    // git dir and the refs in the common one.
    if in_git {
        let dirs: Vec<PathBuf> = [
            git(&["rev-parse", "--absolute-git-dir"]),
            git(&["rev-parse", "--git-common-dir"]),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::from)
        .collect();
        for d in &dirs {
            for f in ["HEAD", "refs/heads", "refs/tags", "packed-refs"] {
                let p: PathBuf = Path::new(d).join(f);
                if p.exists() {
                    println!("cargo:rerun-if-changed={}", p.display());
                }
            }
        }
    }
}
