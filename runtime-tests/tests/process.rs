//! The container process: args, env, cwd, user, umask, capabilities, rlimits,
//! noNewPrivileges, oomScoreAdj, sysctl, session keyring.

use kakuri_runtime_tests::*;
use serde_json::json;

fn run_ok(env: &TestEnv, b: &Bundle, extra: &[&str]) -> String {
    let (_, out) = env.run_container(b, extra);
    out.ok();
    out.stdout
}

#[test]
fn args_env_and_cwd() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_args(&[
        "sh",
        "-c",
        "echo \"[$0][$1][$2]\"; echo \"FOO=$FOO\"; pwd; env | grep -c '^BAR=two words$'",
        "zero",
        "one",
        "two words",
    ]);
    b.set_env(&["FOO=bar", "BAR=two words"]);
    b.set_cwd("/home/user");
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "[zero][one][two words]\nFOO=bar\n/home/user\n1\n");
    env.finish();
}

#[test]
fn user_uid_gid_and_additional_gids() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_user(1000, 1000, &[10, 5]);
    b.set_sh("grep -E '^(Uid|Gid|Groups):' /proc/self/status; id -u; id -g");
    let out = run_ok(&env, &b, &[]);
    assert_eq!(
        status_field(&out, "Uid").as_deref(),
        Some("1000\t1000\t1000\t1000"),
        "{out}"
    );
    assert_eq!(
        status_field(&out, "Gid").as_deref(),
        Some("1000\t1000\t1000\t1000"),
        "{out}"
    );
    let groups = status_field(&out, "Groups").unwrap_or_default();
    assert_eq!(line_set(&groups), line_set("5 10"), "{out}");
    assert!(out.ends_with("1000\n1000\n"), "{out}");
    env.finish();
}

#[test]
fn umask_is_applied() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/process/user/umask", json!(0o027));
    b.set_sh("umask; touch /tmp/f; stat -c %a /tmp/f");
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "0027\n640\n");
    env.finish();
}

fn cap_lines(out: &str) -> [String; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]
        .map(|k| status_field(out, k).unwrap_or_else(|| panic!("no {k} in {out}")))
}

#[test]
fn capability_sets_non_root() {
    // For a non-root user without file capabilities, execve keeps inheritable and bounding
    // and sets permitted = effective = ambient: choose a config where all five survive exec.
    let env = TestEnv::new();
    let mut b = env.bundle();
    let bounding = [
        "CAP_CHOWN",
        "CAP_KILL",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETUID",
        "CAP_NET_RAW",
    ];
    let inheritable = ["CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"];
    let amb = ["CAP_KILL", "CAP_NET_BIND_SERVICE"];
    b.set_user(1000, 1000, &[]);
    b.set_caps("bounding", &bounding);
    b.set_caps("inheritable", &inheritable);
    b.set_caps("permitted", &amb);
    b.set_caps("effective", &amb);
    b.set_caps("ambient", &amb);
    b.set("/process/noNewPrivileges", json!(false));
    b.set_sh("grep ^Cap /proc/self/status");
    let out = run_ok(&env, &b, &[]);
    let [inh, prm, eff, bnd, ambient] = cap_lines(&out);
    assert_eq!(inh, cap_mask(&inheritable), "CapInh: {out}");
    assert_eq!(prm, cap_mask(&amb), "CapPrm: {out}");
    assert_eq!(eff, cap_mask(&amb), "CapEff: {out}");
    assert_eq!(bnd, cap_mask(&bounding), "CapBnd: {out}");
    assert_eq!(ambient, cap_mask(&amb), "CapAmb: {out}");
    env.finish();
}

#[test]
fn capability_sets_root() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let set = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_SYS_ADMIN"];
    for kind in ["bounding", "permitted", "effective"] {
        b.set_caps(kind, &set);
    }
    b.set_caps("inheritable", &["CAP_KILL"]);
    b.set_caps("ambient", &[]);
    b.set_sh("grep ^Cap /proc/self/status");
    let out = run_ok(&env, &b, &[]);
    let [inh, prm, eff, bnd, ambient] = cap_lines(&out);
    assert_eq!(inh, cap_mask(&["CAP_KILL"]), "{out}");
    assert_eq!(prm, cap_mask(&set), "{out}");
    assert_eq!(eff, cap_mask(&set), "{out}");
    assert_eq!(bnd, cap_mask(&set), "{out}");
    assert_eq!(ambient, cap_mask(&[]), "{out}");
    env.finish();
}

/// runtime-spec 1.3: a capability that cannot be mapped to the kernel is logged as a warning,
/// and the runtime should not fail (runc and crun ignore it too; crun's test suite checks it).
/// Unknown names in the config and in `exec --cap` are dropped with runc's warning.
#[test]
fn unknown_capabilities_are_ignored_with_a_warning() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    for kind in [
        "bounding",
        "permitted",
        "effective",
        "inheritable",
        "ambient",
    ] {
        b.set_caps(kind, &["CAP_KILL", "CAP_UNKNOWN", "UNKNOWN_CAP"]);
    }
    b.set_sh("grep ^CapEff /proc/self/status; exec sleep 600");
    let c = env.create(&b);
    let warning = "ignoring unknown or unavailable capabilities: [CAP_UNKNOWN UNKNOWN_CAP]";
    assert!(c.stderr().contains(warning), "{}", c.stderr());
    c.start();
    let out = c.wait_stdout("CapEff");
    assert!(out.contains(&cap_mask(&["CAP_KILL"])), "{out}");
    let ex = env.run(&["exec", "--cap", "CAP_NOT_A_CAP", c.id(), "true"]);
    ex.ok();
    assert!(
        ex.stderr_has("ignoring unknown or unavailable capabilities: [CAP_NOT_A_CAP]"),
        "{ex}"
    );
    drop(c);
    env.finish();
}

/// Capabilities the runtime cannot grant (outside its own bounding set, as on a nested host)
/// fail `create` and `exec` as in runc ("unable to apply caps: operation not permitted"),
/// leaving nothing behind; `KAKURI_DROP_UNGRANTABLE_CAPS=1` drops them with a warning instead.
/// kakuri runs here with CAP_SYS_NICE taken out of its bounding set (setpriv) and is asked for
/// it, by the config and by `exec --cap`. The control: without setpriv the same config runs
/// with CAP_SYS_NICE, so the failure is the missing bounding capability.
#[test]
fn capabilities_outside_the_runtimes_bounding_set_fail_as_runc() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    for kind in ["bounding", "permitted", "effective"] {
        b.set_caps(kind, &["CAP_KILL", "CAP_SYS_NICE"]);
    }
    b.set_caps("inheritable", &[]);
    b.set_caps("ambient", &[]);
    b.set_sh("grep ^Cap /proc/self/status; exec sleep 600");
    b.write();
    let restricted = |args: &[&str], drop_mode: bool| {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--bounding-set", "-sys_nice"])
            .arg(env.rt().bin())
            .arg("--root")
            .arg(env.rt().root())
            .args(args)
            .env(ENV_MARKER, env.id())
            .stdin(std::process::Stdio::null());
        if drop_mode {
            cmd.env("KAKURI_DROP_UNGRANTABLE_CAPS", "1");
        }
        env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT)
    };
    let refused = "unable to apply caps: operation not permitted";
    let bundle = b.dir().to_str().unwrap().to_string();

    // runc's behaviour by default: create fails and leaves nothing.
    let id = env.new_id();
    let out = restricted(&["create", "--bundle", &bundle, &id], false);
    out.fails_with(refused);
    assert!(!env.rt().root().join(&id).exists(), "state left: {out}");

    // The control: with CAP_SYS_NICE in the runtime's bounding set the container has it.
    let c = env.create(&b);
    c.start();
    let text = c.wait_stdout("CapAmb");
    let [_, _, eff, _, _] = cap_lines(&text);
    assert_eq!(eff, cap_mask(&["CAP_KILL", "CAP_SYS_NICE"]), "{text}");
    drop(c);

    // Explicit compatibility mode: dropped, with a warning naming them and the switch.
    let warning = "dropping capabilities the runtime cannot grant (not in its bounding set; KAKURI_DROP_UNGRANTABLE_CAPS=1): [CAP_SYS_NICE]";
    let id = env.new_id();
    let out = restricted(&["create", "--bundle", &bundle, &id], true);
    out.ok();
    assert!(out.stderr_has(warning), "{out}");
    let c = env.container(&id, &out);
    c.start();
    let text = c.wait_stdout("CapAmb");
    let [_, prm, eff, bnd, _] = cap_lines(&text);
    let kill = cap_mask(&["CAP_KILL"]);
    assert_eq!(
        (prm.as_str(), eff.as_str(), bnd.as_str()),
        (kill.as_str(), kill.as_str(), kill.as_str()),
        "{text}"
    );
    // exec --cap: refused as runc (exit 255), or dropped in the compatibility mode.
    let ex = restricted(&["exec", "--cap", "CAP_SYS_NICE", &id, "true"], false);
    ex.code_is(255);
    assert!(
        ex.stderr_has(&format!(
            "exec failed: unable to start container process: {refused}"
        )),
        "{ex}"
    );
    let ex = restricted(&["exec", "--cap", "CAP_SYS_NICE", &id, "true"], true);
    ex.ok();
    assert!(ex.stderr_has(warning), "{ex}");
    drop(c);

    // Only in the bounding set: capset cannot fail for it and runc runs the container; kakuri
    // says it is left out.
    let mut b2 = env.bundle();
    b2.set_caps("bounding", &["CAP_KILL", "CAP_SYS_NICE"]);
    for kind in ["permitted", "effective", "inheritable", "ambient"] {
        b2.set_caps(kind, &["CAP_KILL"]);
    }
    b2.set_args(&["sleep", "600"]);
    b2.write();
    let id = env.new_id();
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--bounding-set", "-sys_nice"])
        .arg(env.rt().bin())
        .arg("--root")
        .arg(env.rt().root())
        .args(["create", "--bundle", b2.dir().to_str().unwrap(), &id])
        .env(ENV_MARKER, env.id())
        .stdin(std::process::Stdio::null());
    let out = env.rt().spawn_in(cmd, b2.dir()).wait(CMD_TIMEOUT);
    out.ok();
    assert!(
        out.stderr_has("leaving out capabilities the runtime does not have (not in its bounding set) from the bounding and ambient sets: [CAP_SYS_NICE]"),
        "{out}"
    );
    drop(env.container(&id, &out));
    env.finish();
}

#[test]
fn rlimits_soft_and_hard() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_rlimit("RLIMIT_NOFILE", 512, 1000);
    b.set_rlimit("RLIMIT_NPROC", 300, 400);
    b.set_sh("ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu");
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "512\n1000\n300\n400\n");
    env.finish();
}

#[test]
fn no_new_privileges() {
    let env = TestEnv::new();
    for (nnp, expect) in [(true, "1"), (false, "0")] {
        let mut b = env.bundle();
        b.set("/process/noNewPrivileges", json!(nnp));
        b.set_sh("grep ^NoNewPrivs: /proc/self/status");
        let out = run_ok(&env, &b, &[]);
        assert_eq!(
            status_field(&out, "NoNewPrivs").as_deref(),
            Some(expect),
            "{out}"
        );
    }
    env.finish();
}

#[test]
fn oom_score_adj() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set("/process/oomScoreAdj", json!(123));
    b.set_sh("cat /proc/self/oom_score_adj");
    assert_eq!(run_ok(&env, &b, &[]), "123\n");
    env.finish();
}

#[test]
fn sysctl_is_applied() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set(
        "/linux/sysctl",
        json!({"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}),
    );
    b.set_sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax");
    assert_eq!(run_ok(&env, &b, &[]), "1\n123456789\n");
    // The host's values are untouched (new net and ipc namespaces).
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax")
            .unwrap()
            .trim(),
        "123456789"
    );
    env.finish();
}

#[test]
fn session_keyring() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // /proc/keys is masked by the default spec; unmask it to look at the keyrings.
    b.set_masked_paths(&[]);
    b.set_sh("grep -c ' keyring *_ses' /proc/keys; cat /proc/keys");
    let (id, out) = env.run_container(&b, &[]);
    out.ok();
    let named = format!("_ses.{id}:");
    assert!(
        out.stdout.contains(&named),
        "a new session keyring named after the container: {out}"
    );

    let (id2, out2) = env.run_container(&b, &["--no-new-keyring"]);
    out2.ok();
    assert!(
        !out2.stdout.contains(&format!("_ses.{id2}")),
        "--no-new-keyring keeps the caller's session keyring: {out2}"
    );
    env.finish();
}

#[test]
fn home_comes_from_passwd_unless_set() {
    // runc sets HOME from the container's /etc/passwd when the process env has none.
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo \"HOME=$HOME\"");
    b.set_user(1000, 1000, &[]);
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "HOME=/home/user\n", "uid 1000's home from /etc/passwd");
    b.set_user(4242, 4242, &[]);
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "HOME=/\n", "a uid without a passwd entry gets /");
    b.set_user(1000, 1000, &[]);
    b.add_env("HOME=/custom");
    let out = run_ok(&env, &b, &[]);
    assert_eq!(out, "HOME=/custom\n", "a HOME in the env is kept");
    env.finish();
}
