//! runc's own bundle — the config.json `runc spec` writes, unchanged but for the test marker —
//! runs under kakuri, with its interactive terminal (process.terminal: true) through a real pty.

use kakuri_runtime_tests::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn runc_spec_bundle_runs_interactively() {
    let runc = std::path::Path::new("/usr/sbin/runc");
    if !runc.exists() {
        // setup-host installs runc; without it there is no runc bundle to take.
        println!("SKIP: runc is not installed, so `runc spec` cannot make the bundle");
        return;
    }
    let env = TestEnv::new();
    let mut b = env.bundle();
    let tmp = env.dir().join("runc-spec");
    std::fs::create_dir(&tmp).unwrap();
    let out = Command::new(runc)
        .args(["spec", "--bundle"])
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(out.status.success(), "runc spec: {out:?}");
    let mut cfg = read_json(&tmp.join("config.json"));
    // Keep the marker that lets the suite find leftovers; everything else is runc's.
    let env_list = cfg["process"]["env"].as_array_mut().unwrap();
    env_list.push(format!("{ENV_MARKER}={}", env.id()).into());
    assert_eq!(
        cfg["process"]["terminal"], true,
        "runc's default is a terminal"
    );
    assert_eq!(cfg["root"]["readonly"], true);
    *b.config_mut() = cfg;
    b.write();

    let id = env.new_id();
    env.track(&id);
    let cmdline = format!(
        "{} --root {} run --bundle {} {}",
        env.rt().bin().display(),
        env.rt().root().display(),
        b.dir().display(),
        id
    );
    // `script` gives the runtime a real terminal on its stdin/stdout, as a user's shell would.
    let mut child = Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env(ENV_MARKER, env.id())
        .spawn()
        .expect("script (util-linux) must be installed");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    // The interactive shell prints its prompt once it reads the terminal.
    wait_for(
        "the container shell's prompt",
        Duration::from_secs(20),
        || {
            String::from_utf8_lossy(&seen.lock().unwrap())
                .contains("# ")
                .then_some(())
        },
    );
    stdin
        .write_all(b"echo in-$(hostname)-pid$$-$(tty); touch /ro-test || echo ro-ok; exit 5\n")
        .unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    assert!(
        text.contains("in-runc-pid1-/dev/pts/0"),
        "the shell runs as PID 1 on the container's own pty with runc's hostname: {text}"
    );
    assert!(
        text.contains("ro-ok"),
        "runc's bundle has a read-only root: {text}"
    );
    assert_eq!(status.code(), Some(5), "exit code propagates: {text}");
    env.finish();
}
