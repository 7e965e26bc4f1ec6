//! The command line as kakuri's binary parses it: `Cli` of crates/kakuri/src/main.rs, compiled
//! here as a module (nothing of it runs but the clap parser and its error rendering). The input
//! is split into arguments at NUL bytes; arguments need not be UTF-8.
#![no_main]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

use clap::Parser;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code, unused_imports)]
#[path = "../../crates/kakuri/src/main.rs"]
mod kakuri_main;

fuzz_target!(|data: &[u8]| {
    let mut args: Vec<OsString> = vec!["kakuri".into()];
    if !data.is_empty() {
        args.extend(
            data.split(|b| *b == 0)
                .map(|a| OsString::from_vec(a.to_vec())),
        );
    }
    match kakuri_main::Cli::try_parse_from(args) {
        Ok(cli) => {
            let _ = format!("{cli:?}");
        }
        Err(e) => {
            let _ = e.render().to_string();
        }
    }
});
