//! Differential tests: the same bundle runs under runc (`/usr/sbin/runc`, with its own `--root`)
//! and under the runtime under test, and what the process sees from inside must be the same:
//! signal dispositions and mask, capabilities, no_new_privs, seccomp, session and process group,
//! ids and groups, umask, cwd, rlimits, open fds, tty owner and size, environment, hostname, the
//! state of `lo`, and the mount table (normalised: no ids, devices or host paths).
//!
//! Each test is one configuration (root or uid 1000, with or without a user namespace, with or
//! without podman's default seccomp profile, a read-only root, a cwd only root may enter) probed
//! in six ways: `run` in the foreground, `run -d` (stdio inherited), `run` with a terminal
//! (`-d --console-socket`, as shims do), `exec`, `exec -t` and `exec -p`. A mode that fails on
//! one side shows its error instead. Every differing key is
//! printed in one table (mode, key, runc's value, the runtime's value), then the test fails unless
//! each difference is listed in [`ACCEPTED`] with its reason.

use kakuri_runtime_tests::seccomp_profile::podman_seccomp;
use kakuri_runtime_tests::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

const RUNC: &str = "/usr/sbin/runc";

/// Prints the process's view as sections (`#name` lines). Raw sections are normalised by
/// [`parse_report`]; `#kv` holds ready `key=value` lines. The fd list comes first, as a plain
/// command with neither pipe nor redirection, so the shell holds only what the runtime gave it.
const PROBE: &str = r#"p=$$
echo '#fds'; ls -l /proc/$p/fd
echo '#status'; cat /proc/$p/status
echo '#stat'; cat /proc/$p/stat
echo '#limits'; cat /proc/$p/limits
echo '#mountinfo'; cat /proc/$p/mountinfo
echo '#env'; env
echo '#kv'
echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "umask=$(umask)"
echo "cwd=$(readlink /proc/$p/cwd)"
echo "stdio_owner=$(stat -L -c '%u:%g' /proc/$p/fd/0 /proc/$p/fd/1 /proc/$p/fd/2 | tr '\n' ' ')"
echo "hostname=$(hostname)"
if t=$(tty); then
  echo "tty=$t"
  echo "tty_owner=$(stat -c '%u:%g %a' "$t")"
  echo "stty_size=$(stty size 2>&1)"
else
  echo "tty=none"
fi
echo "lo_operstate=$(cat /sys/class/net/lo/operstate 2>&1)"
echo "lo_flags=$(cat /sys/class/net/lo/flags 2>&1)"
echo '#end'
"#;

/// Differences known and accepted: (mode or "*", key or key prefix ending in '*', reason).
const ACCEPTED: &[(&str, &str, &str)] = &[
    (
        "run",
        "fd.*",
        "foreground run without a terminal: runc interposes pipes and copies, the runtime passes \
         its own stdio (as both do for run -d and create)",
    ),
    ("exec", "fd.*", "foreground exec without a terminal: as for run"),
    ("exec -p", "fd.*", "foreground exec without a terminal: as for run"),
    (
        "run",
        "stdio_owner",
        "runc's pipes are new (and chowned to the user); the runtime's stdio are the caller's files",
    ),
    ("exec", "stdio_owner", "as for run"),
    ("exec -p", "stdio_owner", "as for run"),
];

const STATUS_KEYS: [&str; 11] = [
    "SigIgn",
    "SigBlk",
    "SigCgt",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

/// A `pid`-relative name for a pid field of /proc/<pid>/stat.
fn relative(v: &str, pid: &str, pgrp: &str) -> String {
    match v {
        _ if v == pid => "self".into(),
        "0" | "1" | "-1" => v.into(),
        _ if v == pgrp => "pgrp".into(),
        _ => "other".into(),
    }
}

/// A host path in the test's directory (the runtime's stdout file, say) differs per run.
fn normalise_target(t: &str) -> String {
    if t.contains("/kakuri-kt-") {
        return "<test file>".into();
    }
    for kind in ["pipe", "socket"] {
        if t.starts_with(&format!("{kind}:[")) {
            return kind.into();
        }
    }
    t.into()
}

/// The probe's output as sorted key=value pairs.
fn parse_report(raw: &str) -> BTreeMap<String, String> {
    let text = raw.replace("\r\n", "\n");
    let mut out = BTreeMap::new();
    let mut section = String::new();
    let mut seen_end = false;
    let mut mounts: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        if let Some(s) = line.strip_prefix('#') {
            if !s.contains(' ') && !s.is_empty() {
                section = s.to_string();
                seen_end |= s == "end";
                continue;
            }
        }
        match section.as_str() {
            "fds" => {
                let Some((left, target)) = line.split_once(" -> ") else {
                    continue;
                };
                let fields: Vec<&str> = left.split_whitespace().collect();
                let (Some(perm), Some(fd)) = (fields.first(), fields.last()) else {
                    continue;
                };
                out.insert(
                    format!("fd.{fd}"),
                    format!("{perm} {}", normalise_target(target)),
                );
            }
            "status" => {
                if let Some((k, v)) = line.split_once(':') {
                    if STATUS_KEYS.contains(&k) || k == "Umask" {
                        out.insert(format!("status.{k}"), v.trim().to_string());
                    }
                }
            }
            "stat" => {
                let Some((head, rest)) = line.rsplit_once(") ") else {
                    continue;
                };
                let pid = head.split_whitespace().next().unwrap_or("");
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() < 6 {
                    continue;
                }
                let pgrp = f[2];
                out.insert(
                    "stat.pid".into(),
                    if pid == "1" { "1" } else { "not 1" }.into(),
                );
                out.insert("stat.ppid".into(), relative(f[1], pid, pgrp));
                out.insert("stat.pgrp".into(), relative(f[2], pid, ""));
                out.insert("stat.session".into(), relative(f[3], pid, pgrp));
                let tty: u64 = f[4].parse().unwrap_or(0);
                out.insert(
                    "stat.tty_nr".into(),
                    if tty == 0 {
                        "none".into()
                    } else {
                        format!(
                            "{}:{}",
                            (tty >> 8) & 0xfff,
                            (tty & 0xff) | ((tty >> 12) & 0xfff00)
                        )
                    },
                );
                out.insert("stat.tpgid".into(), relative(f[5], pid, pgrp));
            }
            "limits" => {
                if line.starts_with("Limit") || line.len() < 26 {
                    continue;
                }
                let (name, vals) = line.split_at(26);
                let name = name.trim().replace(' ', "_");
                let vals: Vec<&str> = vals.split_whitespace().collect();
                out.insert(format!("limit.{name}"), vals.join(" "));
            }
            "mountinfo" => {
                // id parent major:minor root mount-point options [optional...] - type source super
                let Some((left, right)) = line.split_once(" - ") else {
                    continue;
                };
                let l: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                if l.len() < 6 || r.len() < 3 {
                    continue;
                }
                let tags: Vec<&str> = l[6..]
                    .iter()
                    .map(|t| t.split(':').next().unwrap_or(t))
                    .collect();
                let n = mounts.entry(l[4].to_string()).or_default();
                *n += 1;
                let key = if *n == 1 {
                    format!("mount.{}", l[4])
                } else {
                    format!("mount.{}#{n}", l[4])
                };
                out.insert(
                    key,
                    format!(
                        "{} opts={} super={} prop=[{}]",
                        r[0],
                        l[5],
                        r[2],
                        tags.join(" ")
                    ),
                );
            }
            "env" => {
                if let Some((k, v)) = line.split_once('=') {
                    let v = if k == ENV_MARKER { "<test id>" } else { v };
                    out.insert(format!("env.{k}"), v.to_string());
                }
            }
            "kv" => {
                if let Some((k, v)) = line.split_once('=') {
                    out.insert(k.to_string(), v.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(seen_end, "the probe did not finish:\n{raw}");
    out
}

/// One configuration's reports per mode, from one runtime.
type Reports = BTreeMap<&'static str, BTreeMap<String, String>>;

fn probe_args() -> Vec<&'static str> {
    vec!["sh", "-c", PROBE]
}

/// The report of a mode whose command failed: its error, so the table shows it against the
/// other runtime's report.
fn failed(out: &CmdOutput) -> BTreeMap<String, String> {
    let last = out
        .stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(no error text)");
    BTreeMap::from([(
        "failed".to_string(),
        format!("exit {:?}: {}", out.code, unescape_log(last)),
    )])
}

/// Runs the six probes of one configuration under `env`'s runtime.
fn probe_all(env: &TestEnv, configure: &dyn Fn(&mut Bundle)) -> Reports {
    let mut reports = Reports::new();
    let bundle = |args: &[&str], terminal: bool| {
        let mut b = env.bundle();
        b.set_hostname("diff");
        configure(&mut b);
        b.set_args(args);
        b.set_terminal(terminal);
        b
    };

    // run, in the foreground, stdio passed through.
    let b = bundle(&probe_args(), false);
    let (_, out) = env.run_container(&b, &[]);
    let report = if out.success() {
        parse_report(&out.stdout)
    } else {
        failed(&out)
    };
    reports.insert("run", report);

    // run -d: stdio inherited by the container (what shims do without a terminal).
    let b = bundle(&probe_args(), false);
    b.write();
    let id = env.new_id();
    let out = env.run(&["run", "-d", "--bundle", b.dir().to_str().unwrap(), &id]);
    let c = env.container(&id, &out);
    let report = if out.success() {
        parse_report(&c.wait_stdout("#end"))
    } else {
        failed(&out)
    };
    reports.insert("run -d", report);
    drop(c);

    // run with a terminal: detached, the pty master through --console-socket.
    let b = bundle(&probe_args(), true);
    b.write();
    let sock = ConsoleSocket::bind(&env.dir().join("run-t.sock"));
    let id = env.new_id();
    let out = env.run(&[
        "run",
        "-d",
        "--console-socket",
        sock.path().to_str().unwrap(),
        "--bundle",
        b.dir().to_str().unwrap(),
        &id,
    ]);
    let c = env.container(&id, &out);
    let report = if out.success() {
        let (master, _) = sock.receive_master(CMD_TIMEOUT);
        parse_report(&read_pty_until(&master, "#end", WAIT_TIMEOUT))
    } else {
        failed(&out)
    };
    reports.insert("run -t", report);
    drop(c);

    // exec into a running container: plain, -t and -p.
    let sleeper = bundle(&["sleep", "1000"], false);
    let id = env.new_id();
    let out = env.create_raw(&sleeper, &id, &[]);
    let c = env.container(&id, &out);
    if !out.success() {
        for mode in ["exec", "exec -t", "exec -p"] {
            reports.insert(mode, failed(&out));
        }
        return reports;
    }
    c.start();
    let mut exec = vec!["exec", c.id()];
    exec.extend(probe_args());
    let out = env.run(&exec);
    let report = if out.success() {
        parse_report(&out.stdout)
    } else {
        failed(&out)
    };
    reports.insert("exec", report);

    let sock = ConsoleSocket::bind(&env.dir().join("exec-t.sock"));
    let mut exec_t = vec![
        "exec",
        "-t",
        "-d",
        "--console-socket",
        sock.path().to_str().unwrap(),
        c.id(),
    ];
    exec_t.extend(probe_args());
    let out = env.run(&exec_t);
    let report = if out.success() {
        let (master, _) = sock.receive_master(CMD_TIMEOUT);
        parse_report(&read_pty_until(&master, "#end", WAIT_TIMEOUT))
    } else {
        failed(&out)
    };
    reports.insert("exec -t", report);

    let mut process = sleeper.config()["process"].clone();
    process["args"] = json!(probe_args());
    process["terminal"] = json!(false);
    let pfile = env.dir().join("process.json");
    std::fs::write(&pfile, process.to_string()).unwrap();
    let out = env.run(&["exec", "-p", pfile.to_str().unwrap(), c.id()]);
    let report = if out.success() {
        parse_report(&out.stdout)
    } else {
        failed(&out)
    };
    reports.insert("exec -p", report);
    drop(c);
    reports
}

fn accepted(mode: &str, key: &str) -> Option<&'static str> {
    ACCEPTED.iter().find_map(|(m, k, why)| {
        let mode_ok = *m == "*" || *m == mode;
        let key_ok = match k.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == *k,
        };
        (mode_ok && key_ok).then_some(*why)
    })
}

/// Prints the table of differing keys, then fails on any that is not accepted.
fn compare(config: &str, runc: &Reports, ours: &Reports) {
    let mut rows = Vec::new();
    let mut unaccepted = 0;
    for (mode, a) in runc {
        let b = &ours[mode];
        // A mode that failed on one side: its error is the one difference worth showing.
        if a.contains_key("failed") || b.contains_key("failed") {
            let side = |r: &BTreeMap<String, String>| match r.get("failed") {
                Some(e) => e.clone(),
                None => "(ran)".to_string(),
            };
            if side(a) != side(b) {
                let why = accepted(mode, "failed");
                unaccepted += usize::from(why.is_none());
                rows.push((*mode, "failed".to_string(), side(a), side(b), why));
            }
            continue;
        }
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let (va, vb) = (a.get(k), b.get(k));
            if va == vb {
                continue;
            }
            let why = accepted(mode, k);
            if why.is_none() {
                unaccepted += 1;
            }
            rows.push((
                *mode,
                k.clone(),
                va.cloned().unwrap_or_else(|| "(absent)".into()),
                vb.cloned().unwrap_or_else(|| "(absent)".into()),
                why,
            ));
        }
    }
    // One string, so that tests running in parallel do not interleave their tables.
    let mut table = format!(
        "differences in {config} (mode | key | runc | {}):\n",
        runtime_bin().display()
    );
    for (mode, k, va, vb, why) in &rows {
        let note = why
            .map(|w| format!("   [accepted: {w}]"))
            .unwrap_or_default();
        table += &format!("  {mode:8} | {k:28} | {va} | {vb}{note}\n");
    }
    if !rows.is_empty() && unaccepted == 0 {
        // Only accepted differences: shown, and the test passes.
        println!("{table}");
    }
    assert!(
        unaccepted == 0,
        "{config}: {unaccepted} difference(s) from runc not accepted\n{table}"
    );
}

fn differential(config: &str, configure: &dyn Fn(&mut Bundle)) {
    if !Path::new(RUNC).is_file() {
        // setup-host installs runc; without it there is nothing to compare with.
        println!("SKIP {config}: {RUNC} is not installed");
        return;
    }
    let runc_env = TestEnv::with_runtime(Path::new(RUNC));
    let runc = probe_all(&runc_env, configure);
    runc_env.finish();
    let env = TestEnv::new();
    let ours = probe_all(&env, configure);
    env.finish();
    compare(config, &runc, &ours);
}

fn user(b: &mut Bundle) {
    b.set_user(1000, 1000, &[10, 5]);
    b.set_cwd("/home/user");
}

#[test]
fn root() {
    differential("root", &|_| {});
}

/// Also with a read-only root (the root tests keep it writable).
#[test]
fn non_root_user_read_only_root() {
    differential("uid 1000, read-only root", &|b| {
        b.set_readonly_root(true);
        user(b);
    });
}

/// A cwd only root may enter (mode 0700), for uid 1000: runc changes directory before it
/// changes user (and again after), so the process starts there.
#[test]
fn cwd_only_root_may_enter_non_root_user() {
    differential("cwd /root (0700), uid 1000", &|b| {
        user(b);
        let root = b.rootfs().join("root");
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        b.set_cwd("/root");
    });
}

#[test]
fn user_namespace_root() {
    differential("userns, root", &|b| {
        b.add_user_namespace(100000, 65536);
    });
}

#[test]
fn user_namespace_non_root_user() {
    differential("userns, uid 1000", &|b| {
        b.add_user_namespace(100000, 65536);
        user(b);
    });
}

#[test]
fn seccomp_root() {
    differential("seccomp, root", &|b| {
        b.set("/linux/seccomp", podman_seccomp());
    });
}

#[test]
fn seccomp_non_root_user() {
    differential("seccomp, uid 1000", &|b| {
        b.set("/linux/seccomp", podman_seccomp());
        user(b);
    });
}

#[test]
fn report_parsing() {
    let raw = "#fds\nlrwx------ 1 0 0 64 Dec  7 14:00 0 -> /dev/null\r\n\
        l-wx------ 1 0 0 64 Dec  7 14:00 1 -> /tmp/kakuri-kt-1-2/bundle-1/cmd-3.out\n\
        l-wx------ 1 0 0 64 Dec  7 14:00 2 -> pipe:[1234]\n\
        #status\nSigIgn:\t0000000000001000\nName:\tsh\n\
        #stat\n7 (s h) S 0 7 7 34816 7 4194560\n\
        #limits\nLimit                     Soft Limit           Hard Limit           Units     \n\
        Max open files            1024                 4096                 files     \n\
        #mountinfo\n\
        1 0 254:0 /x / rw,relatime master:3 - ext4 /dev/vda rw\n\
        2 1 0:5 / /dev rw,nosuid shared:4 - tmpfs tmpfs rw,mode=755\n\
        3 1 0:6 / /dev rw - tmpfs tmpfs rw\n\
        #env\nKAKURI_TEST_ID=kt-1-2\nA=b=c\n#kv\nuid=0\n#end\n";
    let r = parse_report(raw);
    let want: BTreeMap<String, String> = [
        ("fd.0", "lrwx------ /dev/null"),
        ("fd.1", "l-wx------ <test file>"),
        ("fd.2", "l-wx------ pipe"),
        ("status.SigIgn", "0000000000001000"),
        ("stat.pid", "not 1"),
        ("stat.ppid", "0"),
        ("stat.pgrp", "self"),
        ("stat.session", "self"),
        ("stat.tty_nr", "136:0"),
        ("stat.tpgid", "self"),
        ("limit.Max_open_files", "1024 4096 files"),
        ("mount./", "ext4 opts=rw,relatime super=rw prop=[master]"),
        (
            "mount./dev",
            "tmpfs opts=rw,nosuid super=rw,mode=755 prop=[shared]",
        ),
        ("mount./dev#2", "tmpfs opts=rw super=rw prop=[]"),
        ("env.KAKURI_TEST_ID", "<test id>"),
        ("env.A", "b=c"),
        ("uid", "0"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(r, want);
}
