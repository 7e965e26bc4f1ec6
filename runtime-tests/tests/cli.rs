//! Command-line contract: global options, version, spec, list, features, option syntax.

use kakuri_runtime_tests::*;
use serde_json::Value;
use std::fs;

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect()
}

#[test]
fn version_output_shape() {
    let env = TestEnv::new();
    for flag in ["-v", "--version"] {
        let out = env.rt().output(env.rt().bare_cmd(&[flag]));
        out.ok();
        let mut lines = out.stdout.lines();
        let first = lines.next().unwrap_or_default();
        let words: Vec<&str> = first.split_whitespace().collect();
        assert!(
            words.len() == 3 && words[1] == "version" && !words[2].is_empty(),
            "first line must be `<name> version X`: {out}"
        );
        assert!(
            out.stdout.lines().any(|l| l.starts_with("commit:")),
            "no commit: line: {out}"
        );
        assert!(
            out.stdout.lines().any(|l| l.starts_with("spec: 1.")),
            "no spec: 1.x line: {out}"
        );
        // runc names its Go and libseccomp versions; kakuri its rustc and libseccomp.
        if words[0] == "kakuri" {
            let line = |key: &str| {
                out.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .unwrap_or_else(|| panic!("no {key} line: {out}"))
                    .to_string()
            };
            let dotted = |v: &str| {
                v.split('.').count() >= 3 && v.split('.').all(|p| p.parse::<u32>().is_ok())
            };
            assert!(dotted(&line("rustc: ")), "rustc: X.Y.Z expected: {out}");
            assert!(
                dotted(&line("libseccomp: ")),
                "libseccomp: X.Y.Z expected: {out}"
            );
            let commit = line("commit: ");
            assert!(
                commit == "unknown" || commit.chars().all(|c| c.is_ascii_hexdigit()),
                "commit: a hash: {out}"
            );
        }
    }
    env.finish();
}

#[test]
fn global_root_option_both_forms() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    b.write();
    let id = env.new_id();
    let root = env.rt().root().to_str().unwrap().to_string();
    // --root=value form for create, --root value form (the wrapper's) for list.
    let out = env.rt().output(env.rt().bare_cmd(&[
        &format!("--root={root}"),
        "create",
        &format!("--bundle={}", b.dir().display()),
        &id,
    ]));
    out.ok();
    let c = env.container(&id, &out);
    assert!(env.rt().root().is_dir(), "--root dir was created");
    let listed = env.run(&["list", "--quiet"]);
    listed.ok();
    assert_eq!(listed.stdout.trim(), id, "{listed}");
    // Another root does not see the container.
    let other = env.dir().join("other-root");
    let out =
        env.rt().output(
            env.rt()
                .bare_cmd(&["--root", other.to_str().unwrap(), "list", "-q"]),
        );
    out.ok();
    assert!(!out.stdout.contains(&id), "{out}");
    drop(c);
    env.finish();
}

#[test]
fn log_file_json_failing_command() {
    let env = TestEnv::new();
    let log = env.dir().join("log.json");
    let id = env.new_id();
    let out = env.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "state",
        &id,
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    let lines = json_lines(&fs::read_to_string(&log).expect("log file written"));
    for l in &lines {
        for key in ["level", "msg", "time"] {
            assert!(l.get(key).is_some(), "log line lacks {key}: {l}");
        }
    }
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "error").collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {lines:?}");
    let msg = errors[0]["msg"].as_str().unwrap();
    assert!(msg.contains("does not exist"), "{msg}");
    assert!(
        out.stderr_has(msg),
        "stderr must carry the same message {msg:?}: {out}"
    );
    env.finish();
}

#[test]
fn log_equals_form_and_text_format() {
    let env = TestEnv::new();
    let log = env.dir().join("log.txt");
    let id = env.new_id();
    let out = env.run(&[
        &format!("--log={}", log.display()),
        "--log-format=text",
        "kill",
        &id,
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    let text = fs::read_to_string(&log).expect("log file written");
    let errors: Vec<&str> = text.lines().filter(|l| l.contains("level=error")).collect();
    assert_eq!(errors.len(), 1, "{text}");
    assert!(errors[0].contains("msg="), "{text}");
    assert!(
        !text.trim_start().starts_with('{'),
        "text format is not JSON: {text}"
    );
    env.finish();
}

#[test]
fn debug_adds_debug_lines() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["true"]);
    b.write();
    let quiet_log = env.dir().join("quiet.json");
    let debug_log = env.dir().join("debug.json");
    for (log, debug) in [(&quiet_log, false), (&debug_log, true)] {
        let id = env.new_id();
        let mut args = vec![
            "--log".to_string(),
            log.display().to_string(),
            "--log-format".to_string(),
            "json".to_string(),
        ];
        if debug {
            args.push("--debug".to_string());
        }
        args.extend([
            "run".to_string(),
            "--bundle".to_string(),
            b.dir().display().to_string(),
            id,
        ]);
        env.run(&args).ok();
    }
    let quiet = json_lines(&fs::read_to_string(&quiet_log).unwrap_or_default());
    assert!(
        quiet.iter().all(|l| l["level"] != "debug"),
        "no debug lines without --debug: {quiet:?}"
    );
    let debug = json_lines(&fs::read_to_string(&debug_log).expect("debug log written"));
    assert!(
        debug.iter().any(|l| l["level"] == "debug"),
        "--debug writes debug lines: {debug:?}"
    );
    env.finish();
}

fn check_spec(config: &Value) {
    assert!(
        config["ociVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("1."),
        "{config}"
    );
    assert_eq!(config["root"]["path"], "rootfs");
    assert!(config["process"]["args"].is_array());
    assert!(config["process"]["cwd"].is_string());
    assert!(config["mounts"].is_array());
    assert!(config["linux"]["namespaces"].is_array());
}

#[test]
fn spec_writes_valid_config() {
    let env = TestEnv::new();
    let dir = env.dir().join("spec-default");
    fs::create_dir(&dir).unwrap();
    let mut cmd = env.rt().bare_cmd(&["spec"]);
    cmd.current_dir(&dir);
    env.rt().output(cmd).ok();
    check_spec(&read_json(&dir.join("config.json")));
    // A second spec refuses to overwrite.
    let mut cmd = env.rt().bare_cmd(&["spec"]);
    cmd.current_dir(&dir);
    let again = env.rt().output(cmd);
    assert_eq!(again.code, Some(1), "{again}");
    assert!(again.stderr_has("config.json"), "{again}");

    let dir2 = env.dir().join("spec-bundle");
    fs::create_dir(&dir2).unwrap();
    env.rt()
        .output(env.rt().bare_cmd(&[
            &format!("--root={}", env.rt().root().display()),
            "spec",
            "--bundle",
            dir2.to_str().unwrap(),
        ]))
        .ok();
    check_spec(&read_json(&dir2.join("config.json")));

    let dir3 = env.dir().join("spec-rootless");
    fs::create_dir(&dir3).unwrap();
    env.rt()
        .output(env.rt().bare_cmd(&[
            "spec",
            "--rootless",
            &format!("--bundle={}", dir3.display()),
        ]))
        .ok();
    let rootless = read_json(&dir3.join("config.json"));
    check_spec(&rootless);
    let ns = rootless["linux"]["namespaces"].as_array().unwrap();
    assert!(
        ns.iter().any(|n| n["type"] == "user"),
        "rootless spec has a user ns: {rootless}"
    );
    assert!(
        rootless["linux"]["uidMappings"]
            .as_array()
            .is_some_and(|m| !m.is_empty()),
        "{rootless}"
    );
    env.finish();
}

#[test]
fn list_formats() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    let c1 = env.create(&b);
    let c2 = env.create(&b);
    c2.start();

    let table = env.run(&["list"]);
    table.ok();
    let header: Vec<&str> = table
        .stdout
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "{table}"
    );
    for (c, status) in [(&c1, "created"), (&c2, "running")] {
        let row = table
            .stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(c.id()))
            .unwrap_or_else(|| panic!("no row for {}: {table}", c.id()));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[1], c.pid().to_string(), "{row}");
        assert_eq!(cols[2], status, "{row}");
        assert_eq!(cols[3], b.dir().to_str().unwrap(), "{row}");
    }

    let js = env.run(&["list", "--format", "json"]);
    js.ok();
    let arr: Value = serde_json::from_str(&js.stdout).expect("list json");
    let arr = arr.as_array().expect("list --format json is an array");
    assert_eq!(arr.len(), 2, "{js}");
    for item in arr {
        for key in ["id", "pid", "status", "bundle", "created", "owner"] {
            assert!(item.get(key).is_some(), "list item lacks {key}: {item}");
        }
    }
    let js2 = env.run(&["list", "--format=json"]);
    js2.ok();
    assert!(serde_json::from_str::<Value>(&js2.stdout).is_ok(), "{js2}");

    let quiet = env.run(&["list", "--quiet"]);
    quiet.ok();
    let ids = line_set(&quiet.stdout);
    let expected = line_set(&format!("{} {}", c1.id(), c2.id()));
    assert_eq!(ids, expected, "{quiet}");
    drop(c1);
    drop(c2);
    env.finish();
}

#[test]
fn features_json() {
    let env = TestEnv::new();
    let out = env.run(&["features"]);
    out.ok();
    let f: Value = serde_json::from_str(&out.stdout).expect("features prints JSON");
    for key in ["ociVersionMin", "ociVersionMax"] {
        assert!(
            f[key].as_str().is_some_and(|v| v.starts_with("1.")),
            "{key}: {f}"
        );
    }
    let hooks: Vec<&str> = f["hooks"]
        .as_array()
        .expect("hooks array")
        .iter()
        .filter_map(|h| h.as_str())
        .collect();
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(hooks.contains(&h), "features.hooks lacks {h}: {f}");
    }
    let opts = f["mountOptions"].as_array().expect("mountOptions array");
    for o in ["bind", "rbind", "ro", "nosuid"] {
        assert!(opts.iter().any(|v| v == o), "mountOptions lacks {o}");
    }
    let ns: Vec<&str> = f["linux"]["namespaces"]
        .as_array()
        .expect("linux.namespaces")
        .iter()
        .filter_map(|n| n.as_str())
        .collect();
    for n in ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"] {
        assert!(ns.contains(&n), "linux.namespaces lacks {n}: {f}");
    }
    assert!(f["linux"]["capabilities"].is_array(), "{f}");
    env.finish();
}

#[test]
fn create_start_state_with_equals_options() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo eq-form; sleep 60");
    b.write();
    let id = env.new_id();
    let pid_file = env.dir().join("eq.pid");
    let out = env.run(&[
        "create",
        &format!("--bundle={}", b.dir().display()),
        &format!("--pid-file={}", pid_file.display()),
        &id,
    ]);
    out.ok();
    let c = env.container(&id, &out);
    assert!(pid_file.is_file());
    c.start();
    c.wait_stdout("eq-form");
    env.run(&["kill", &id, "KILL"]).ok();
    c.wait_status("stopped");
    env.run(&["delete", &id]).ok();
    drop(c);
    env.finish();
}

/// Failures raised inside the container's init or an exec'd process (not in the CLI itself)
/// still leave exactly one line in a `--log` file: podman reads that file as ONE JSON object.
#[test]
fn log_file_has_one_object_for_failures_inside_the_container() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&["no-such-program-kakuri"]);
    let log = env.dir().join("create.json");
    let id = env.new_id();
    env.track(&id);
    b.write();
    let out = env.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        b.dir().to_str().unwrap(),
        &id,
    ]);
    assert_eq!(out.code, Some(1), "{out}");
    let text = fs::read_to_string(&log).expect("log written");
    let v: Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("the log must be one JSON object ({e}): {text}"));
    assert_eq!(v["level"], "error", "{v}");
    assert!(
        v["msg"]
            .as_str()
            .unwrap_or("")
            .contains("executable file not found in $PATH"),
        "{v}"
    );

    // The same for an exec whose AppArmor profile this host cannot apply.
    let mut b = env.bundle();
    b.set_args(&["sleep", "60"]);
    let c = env.create(&b);
    c.start();
    let log = env.dir().join("exec.json");
    let out = env.run(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "exec",
        "--apparmor",
        "kakuri-test-profile",
        c.id(),
        "true",
    ]);
    if std::path::Path::new("/sys/kernel/security/apparmor").exists() {
        println!("SKIP exec part: this host has AppArmor, so the profile could apply");
    } else {
        assert_eq!(out.code, Some(255), "{out}");
        let text = fs::read_to_string(&log).expect("log written");
        let v: Value = serde_json::from_str(text.trim())
            .unwrap_or_else(|e| panic!("the log must be one JSON object ({e}): {text}"));
        assert!(v["msg"].as_str().unwrap_or("").contains("apparmor"), "{v}");
    }
    drop(c);
    env.finish();
}
