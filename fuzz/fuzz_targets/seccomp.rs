//! A standalone seccomp profile (the `linux.seccomp` object): JSON checks, typed parse, and
//! compilation to a BPF program with libseccomp. Nothing is loaded into the kernel.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let profile = match kakuri_seccomp::profile_from_json(data) {
        Ok(p) => p,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    match kakuri_seccomp::compile(&profile) {
        Ok(f) => {
            // The program ends in a return: an empty program cannot be loaded.
            assert!(f.instruction_count() > 0, "empty BPF program");
            let _ = (f.needs_notify(), f.kernel_flags());
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
