//! `state.json` as the commands that only read it load it: `state <id>` and `list` over a root
//! holding one container whose state.json is the input. Nothing is started, signalled or
//! removed by these two commands.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const ID: &str = "fuzzed";

/// A private runtime root for this process, made once.
fn root() -> &'static PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("kakuri-fuzz-state-{}", std::process::id()));
        std::fs::create_dir_all(root.join(ID)).expect("make the fuzz root");
        root
    })
}

fuzz_target!(|data: &[u8]| {
    let root = root();
    std::fs::write(root.join(ID).join("state.json"), data).expect("write state.json");
    let rt = kakuri_container::Runtime::new(root.clone());
    match rt.state(ID) {
        // A stopped container reports pid 0, as runc does.
        Ok(out) => assert!(out.status != "stopped" || out.pid == 0, "{out:?}"),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    if let Ok(list) = rt.list() {
        assert!(list.len() <= 1, "one state dir, {} entries", list.len());
    }
    if let Ok(st) = kakuri_container::state::load_state(&root.join(ID)) {
        // What kakuri loads, it can write back and load again.
        let again = serde_json::to_vec(&st).expect("a loaded state serialises");
        let back: kakuri_container::State =
            serde_json::from_slice(&again).expect("a saved state loads");
        assert_eq!(back.id, st.id);
        assert_eq!(back.pid, st.pid);
    }
});
