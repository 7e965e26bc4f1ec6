//! `kakuri-docgen OUTDIR`: kakuri's man pages and shell completions, generated from the CLI
//! definition itself (the clap types of main.rs, compiled in here unchanged), so that they
//! can never describe options the binary does not have.
//!
//! Writes `OUTDIR/man8/kakuri.8` and one `kakuri-COMMAND.8` per command (section 8, as runc's
//! pages), and `OUTDIR/completions/{kakuri.bash,_kakuri,kakuri.fish}`.
//! Built only with `--features docgen` (packaging/build-deb runs it).

// The whole binary's source comes along; only its CLI types are used here.
#[allow(dead_code, unused_imports)]
#[path = "../main.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn write(
    path: &Path,
    render: impl FnOnce(&mut Vec<u8>) -> std::io::Result<()>,
) -> Result<(), String> {
    let mut buf = Vec::new();
    render(&mut buf).map_err(|e| format!("render {}: {e}", path.display()))?;
    std::fs::write(path, buf).map_err(|e| format!("write {}: {e}", path.display()))
}

/// `SOURCE_DATE_EPOCH` (reproducible builds) as YYYY-MM-DD, if set.
fn source_date() -> Option<String> {
    let secs: i64 = std::env::var("SOURCE_DATE_EPOCH")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    Some(format!("{y:04}-{m:02}-{d:02}"))
}

fn man(cmd: clap::Command, path: &Path) -> Result<(), String> {
    let mut m = clap_mangen::Man::new(cmd)
        .section("8")
        .manual("kakuri manual");
    if let Some(d) = source_date() {
        m = m.date(d);
    }
    write(path, |b| m.render(b))
}

fn run(out: &Path) -> Result<(), String> {
    let version = env!("KAKURI_VERSION");
    let mut top = cli::Cli::command().version(version).after_long_help(
        "Each command has a page of its own: kakuri-create(8), kakuri-run(8), ... \
             Documentation: /usr/share/doc/kakuri (the project's docs/ directory).",
    );
    top.build();
    let man_dir = out.join("man8");
    let comp_dir = out.join("completions");
    for d in [&man_dir, &comp_dir] {
        std::fs::create_dir_all(d).map_err(|e| format!("create {}: {e}", d.display()))?;
    }
    man(top.clone(), &man_dir.join("kakuri.8"))?;
    for sub in top.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("kakuri-{}", sub.get_name());
        let page = sub
            .clone()
            .name(name.clone())
            .bin_name(format!("kakuri {}", sub.get_name()))
            .version(version);
        man(page, &man_dir.join(format!("{name}.8")))?;
    }
    for (shell, file) in [
        (Shell::Bash, "kakuri.bash"),
        (Shell::Zsh, "_kakuri"),
        (Shell::Fish, "kakuri.fish"),
    ] {
        let mut cmd = top.clone();
        write(&comp_dir.join(file), |b| {
            clap_complete::generate(shell, &mut cmd, "kakuri", b);
            Ok(())
        })?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: kakuri-docgen OUTDIR");
        return ExitCode::from(2);
    };
    match run(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kakuri-docgen: {e}");
            ExitCode::FAILURE
        }
    }
}
