//! `mounts[].options` → mount(2) flags, propagation, data and mount_setattr(2) attributes.
//! The input is split into options at NUL and comma bytes (an option never holds either).
#![no_main]

use kakuri_isolate::mountopts;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options: Vec<String> = data
        .split(|b| *b == 0 || *b == b',')
        .map(|o| String::from_utf8_lossy(o).into_owned())
        .collect();
    let o = mountopts::parse(&options);
    // An option either sets or clears a flag: never both.
    assert_eq!(o.flags & o.cleared, 0, "{options:?} -> {o:?}");
    let props = options
        .iter()
        .filter(|s| {
            matches!(
                s.as_str(),
                "private"
                    | "rprivate"
                    | "shared"
                    | "rshared"
                    | "slave"
                    | "rslave"
                    | "unbindable"
                    | "runbindable"
            )
        })
        .count();
    assert_eq!(o.propagation.len(), props, "{options:?} -> {o:?}");
    // Data holds exactly the options kakuri does not know, in order.
    let unknown: Vec<&str> = options
        .iter()
        .map(String::as_str)
        .filter(|s| !mountopts::KNOWN_OPTIONS.contains(s) && !matches!(*s, "idmap" | "ridmap"))
        .collect();
    assert_eq!(o.data, unknown.join(","), "{options:?} -> {o:?}");
    let plain = [o.is_bind(), o.is_recursive_bind()];
    assert!(!plain[1] || plain[0]);
});
