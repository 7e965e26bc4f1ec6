//! config.json as `create` handles it before anything is started: parse (naming the bad field),
//! validate, then plan the process, the mounts and the seccomp filter. Any panic, abort, leak
//! past libFuzzer's limit or runaway allocation is a bug. A config that parses must also
//! serialise back to JSON that parses (state.json keeps parts of it).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("/kakuri-fuzz/bundle/config.json");
    // A bundle directory that does not exist: relative bind sources resolve to nothing.
    let bundle = Path::new("/kakuri-fuzz/bundle");
    let spec = match kakuri_spec::parse_config(path, data) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let again = serde_json::to_vec(&spec).expect("a parsed config serialises");
    if let Err(e) = kakuri_spec::parse_config(path, &again) {
        panic!("a parsed config does not parse again: {e}");
    }
    if let Err(e) = kakuri_spec::validate(&spec, bundle) {
        let _ = e.to_string();
        return;
    }
    if let Some(p) = spec.process() {
        let _ = kakuri_isolate::ProcessPlan::from_spec(p);
    }
    let _ = kakuri_isolate::rootfs::mount_plans(spec.mounts().as_deref().unwrap_or(&[]), bundle);
    if let Some(sc) = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        if let Ok(f) = kakuri_seccomp::compile(sc) {
            let _ = (f.instruction_count(), f.needs_notify(), f.kernel_flags());
        }
    }
});
