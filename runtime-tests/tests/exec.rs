//! `kakuri exec`: every option of runc's exec on real containers, exit codes, stdin, the tty,
//! paused and stopped containers, sub-cgroups, and the process spec's scheduling settings
//! (scheduler, ioPriority, execCPUAffinity) for exec and for the init.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Stdio;

use kakuri_runtime_tests::*;
use serde_json::json;

/// A created and started container running `sleep 1000`.
fn running<'a>(env: &'a TestEnv, b: &mut Bundle) -> Container<'a> {
    b.set_args(&["sleep", "1000"]);
    let c = env.create(b);
    c.start();
    c
}

#[test]
fn env_cwd_user_and_groups() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_env("FOO=from-config");
    let c = running(&env, &mut b);
    let out = env.run(&[
        "exec",
        "--env",
        "FOO=bar",
        "--env",
        "BAR=two words",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1001",
        "--additional-gids",
        "10",
        "--additional-gids",
        "20",
        c.id(),
        "sh",
        "-c",
        "echo \"$FOO|$BAR\"; pwd; id -u; id -g; grep ^Groups: /proc/self/status",
    ]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..4],
        ["bar|two words", "/tmp", "1000", "1001"],
        "{out}"
    );
    let groups = status_field(&out.stdout, "Groups").unwrap_or_default();
    assert_eq!(line_set(&groups), line_set("10 20"), "{out}");
    // -u uid alone keeps the config's gid (0).
    let out = env.run(&["exec", "-u", "1234", c.id(), "id", "-g"]);
    out.ok();
    assert_eq!(out.stdout, "0\n");
    drop(c);
    env.finish();
}

#[test]
fn exit_codes_and_stdin() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    env.run(&["exec", c.id(), "sh", "-c", "exit 7"]).code_is(7);
    env.run(&["exec", c.id(), "true"]).code_is(0);
    // Killed by a signal: 128 + signal, as runc.
    env.run(&["exec", c.id(), "sh", "-c", "kill -9 $$"])
        .code_is(137);
    // A runtime failure (nothing to exec) is 255.
    let out = env.run(&["exec", c.id(), "/no/such/program"]);
    out.code_is(255);
    assert!(out.stderr_has("no such file or directory"), "{out}");
    let out = env.run(&["exec", "kakuri-no-such-container", "true"]);
    out.code_is(255);
    // stdin reaches the process.
    let input = env.dir().join("stdin.txt");
    std::fs::write(&input, "hello through stdin\n").expect("write stdin");
    let mut cmd = env.rt().cmd(&["exec", c.id(), "cat"]);
    cmd.stdin(Stdio::from(std::fs::File::open(&input).expect("open")));
    let out = env.rt().output(cmd);
    out.ok();
    assert_eq!(out.stdout, "hello through stdin\n");
    drop(c);
    env.finish();
}

#[test]
fn process_file_caps_no_new_privs_and_cap_flag() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    // The container itself without no_new_privs, so that --no-new-privs is what sets it.
    b.set("/process/noNewPrivileges", json!(false));
    let c = running(&env, &mut b);
    let pf = env.dir().join("process.json");
    std::fs::write(
        &pf,
        json!({
            "terminal": false,
            "user": {"uid": 0, "gid": 0, "umask": 0o077},
            "args": ["sh", "-c", "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status; umask; echo $PF; ulimit -n; ulimit -Hn"],
            "env": ["PATH=/bin:/usr/bin", "PF=from-file"],
            "cwd": "/",
            "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"]},
            "noNewPrivileges": true,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456}]
        })
        .to_string(),
    )
    .expect("write process.json");
    let out = env.run(&["exec", "--process", &pf.to_string_lossy(), c.id()]);
    out.ok();
    assert_eq!(
        status_field(&out.stdout, "CapEff").as_deref(),
        Some(cap_mask(&["CAP_KILL"]).as_str()),
        "{out}"
    );
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs").as_deref(),
        Some("1")
    );
    assert!(out.stdout.ends_with("0077\nfrom-file\n123\n456\n"), "{out}");
    // --cap adds to the container's sets; --no-new-privs sets the flag.
    let out = env.run(&[
        "exec",
        "--cap",
        "CAP_SYS_ADMIN",
        "--no-new-privs",
        c.id(),
        "grep",
        "-E",
        "^(CapEff|NoNewPrivs):",
        "/proc/self/status",
    ]);
    out.ok();
    let eff = u64::from_str_radix(&status_field(&out.stdout, "CapEff").unwrap(), 16).unwrap();
    assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN added: {out}");
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs").as_deref(),
        Some("1")
    );
    let out = env.run(&["exec", c.id(), "grep", "^NoNewPrivs:", "/proc/self/status"]);
    assert_eq!(
        status_field(&out.stdout, "NoNewPrivs").as_deref(),
        Some("0")
    );
    drop(c);
    env.finish();
}

#[test]
fn preserve_fds_detach_and_pid_file() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    let (r, w) = pipe();
    let mut wf = std::fs::File::from(w);
    wf.write_all(b"via fd 3\n").expect("write pipe");
    drop(wf);
    let mut cmd = env
        .rt()
        .cmd(&["exec", "--preserve-fds", "1", c.id(), "sh", "-c", "cat <&3"]);
    pass_fd(&mut cmd, r.as_raw_fd(), 3);
    let out = env.rt().output(cmd);
    out.ok();
    assert_eq!(out.stdout, "via fd 3\n");
    // Without --preserve-fds the descriptor is not passed.
    let mut cmd = env.rt().cmd(&["exec", c.id(), "sh", "-c", "cat <&3"]);
    pass_fd(&mut cmd, r.as_raw_fd(), 3);
    let out = env.rt().output(cmd);
    assert!(!out.success(), "{out}");

    let pid_file = env.dir().join("exec.pid");
    let out = env.run(&[
        "exec",
        "-d",
        "--pid-file",
        &pid_file.to_string_lossy(),
        c.id(),
        "sleep",
        "1000",
    ]);
    out.ok();
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    assert!(process_alive(pid));
    let init = c.pid();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap(),
        std::fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap(),
        "the exec'd process is in the container's cgroups"
    );
    for ns in ["pid", "mnt", "net", "ipc", "uts"] {
        assert_eq!(
            ns_link(&pid.to_string(), ns),
            ns_link(&init.to_string(), ns)
        );
    }
    drop(c);
    wait_for("the detached process to die", WAIT_TIMEOUT, || {
        (!process_alive(pid)).then_some(())
    });
    env.finish();
}

#[test]
fn sub_cgroup() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    let name = format!("kakuri-sub-{}", env.id());
    let cgroups = cgroup_dirs_of(c.pid());
    assert!(cgroups.iter().any(|(h, _)| h == "pids"), "{cgroups:?}");
    let pids_only = |(h, _): &&(String, PathBuf)| h == "pids";
    let result = std::panic::catch_unwind(|| {
        // `ctrl:name` needs the sub-cgroup only in that hierarchy.
        let pids_sub = cgroups.iter().find(pids_only).unwrap().1.join(&name);
        std::fs::create_dir(&pids_sub).expect("mkdir pids sub-cgroup");
        let out = env.run(&[
            "exec",
            "--cgroup",
            &format!("pids:{name}"),
            c.id(),
            "cat",
            "/proc/self/cgroup",
        ]);
        out.ok();
        for line in out.stdout.lines() {
            assert_eq!(
                line.split(':').nth(1) == Some("pids"),
                line.ends_with(&name),
                "{out}"
            );
        }
        // A plain name needs it everywhere, as runc.
        let out = env.run(&["exec", "--cgroup", &name, c.id(), "true"]);
        out.code_is(255);
        assert!(
            out.stderr_has(&name),
            "the error names the sub-cgroup: {out}"
        );
        for (h, dir) in cgroups.iter().filter(|x| !pids_only(x)) {
            std::fs::create_dir(dir.join(&name)).expect("mkdir sub-cgroup");
            if h == "cpuset" {
                // A v1 cpuset takes no task before it has CPUs and memory nodes.
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = std::fs::read_to_string(dir.join(f)).expect("read cpuset");
                    std::fs::write(dir.join(&name).join(f), v.trim()).expect("write cpuset");
                }
            }
        }
        let out = env.run(&[
            "exec",
            "--cgroup",
            &name,
            c.id(),
            "cat",
            "/proc/self/cgroup",
        ]);
        out.ok();
        assert!(
            out.stdout.lines().all(|l| l.ends_with(&name)),
            "every hierarchy: {out}"
        );
    });
    for (_, dir) in &cgroups {
        let _ = std::fs::remove_dir(dir.join(&name));
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
    drop(c);
    env.finish();
}

#[test]
fn tty_through_console_socket() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    let sock = ConsoleSocket::bind(&env.dir().join("console.sock"));
    let out = env.run(&[
        "exec",
        "-t",
        "-d",
        "--console-socket",
        &sock.path().to_string_lossy(),
        c.id(),
        "sh",
        "-c",
        "tty; echo tty-ok; sleep 5",
    ]);
    out.ok();
    let (master, _) = sock.receive_master(WAIT_TIMEOUT);
    let text = read_pty_until(&master, "tty-ok", WAIT_TIMEOUT);
    assert!(text.contains("/dev/pts/"), "{text}");
    // -t with -d needs a console socket.
    let out = env.run(&["exec", "-t", "-d", c.id(), "true"]);
    out.code_is(255);
    assert!(out.stderr_has("cannot allocate tty"), "{out}");
    drop(c);
    env.finish();
}

#[test]
fn paused_and_stopped_containers() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    c.cmd("pause", &[]).ok();
    let out = env.run(&["exec", c.id(), "true"]);
    out.code_is(255);
    assert!(
        out.stderr_has("cannot exec in a paused container (use --ignore-paused to override)"),
        "{out}"
    );
    // --ignore-paused: the process joins the frozen cgroup and runs once the container resumes.
    let cmd = env.rt().cmd(&[
        "exec",
        "--ignore-paused",
        c.id(),
        "sh",
        "-c",
        "echo ran-after-resume",
    ]);
    let pending = env.rt().spawn(cmd);
    // The new process is in the (frozen) cgroup next to the init: it cannot run until resume.
    wait_for(
        "the exec'd process to join the frozen cgroup",
        WAIT_TIMEOUT,
        || {
            let out = c.cmd("ps", &["--format", "json"]);
            let pids: Vec<i32> = serde_json::from_str(out.stdout.trim()).unwrap_or_default();
            (pids.len() == 2).then_some(())
        },
    );
    assert!(
        process_alive(pending.pid() as i32),
        "exec returned while the container was still paused"
    );
    c.cmd("resume", &[]).ok();
    let out = pending.wait(CMD_TIMEOUT);
    out.ok();
    assert_eq!(out.stdout, "ran-after-resume\n", "{out}");
    env.run(&["exec", c.id(), "true"]).ok();
    drop(c);

    let mut b = env.bundle();
    b.set_args(&["true"]);
    let c = env.create(&b);
    c.start();
    c.wait_status("stopped");
    let out = env.run(&["exec", c.id(), "true"]);
    out.code_is(255);
    assert!(
        out.stderr_has("cannot exec in a stopped container"),
        "{out}"
    );
    drop(c);
    env.finish();
}

/// Field 19 (nice) and 41 (policy) of /proc/self/stat, printed by the container.
const SCHED_SCRIPT: &str = "s=$(cat /proc/self/stat); s=${s##*) }; set -- $s; \
                            echo nice=${17} policy=${39}; ionice; \
                            grep ^Cpus_allowed_list: /proc/self/status";

#[test]
fn scheduler_io_priority_and_cpu_affinity() {
    let env = TestEnv::new();
    // The init: scheduler and ioPriority (execCPUAffinity is for exec only).
    let mut b = env.bundle();
    b.set(
        "/process/scheduler",
        json!({"policy": "SCHED_BATCH", "nice": 7}),
    );
    b.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_BE", "priority": 6}),
    );
    b.set_sh(SCHED_SCRIPT);
    let (_, out) = env.run_container(&b, &[]);
    out.ok();
    assert!(out.stdout.starts_with("nice=7 policy=3\n"), "{out}");
    assert!(out.stdout.contains("best-effort: prio 6"), "{out}");

    // exec with a process.json: SCHED_IDLE, idle I/O class, CPU affinity.
    let mut b = env.bundle();
    let c = running(&env, &mut b);
    let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
    let last = ncpu - 1;
    let pf = env.dir().join("process.json");
    std::fs::write(
        &pf,
        json!({
            "user": {"uid": 0, "gid": 0},
            "args": ["sh", "-c", SCHED_SCRIPT],
            "env": ["PATH=/bin:/usr/bin"],
            "cwd": "/",
            "scheduler": {"policy": "SCHED_IDLE"},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 0},
            "execCPUAffinity": {"initial": "0", "final": last.to_string()}
        })
        .to_string(),
    )
    .expect("write process.json");
    let out = env.run(&["exec", "--process", &pf.to_string_lossy(), c.id()]);
    out.ok();
    // No nice value is set: the process keeps the one it inherits (the test's own).
    // SAFETY: getpriority only reads this process's nice value.
    let own_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    assert!(
        out.stdout
            .starts_with(&format!("nice={own_nice} policy=5\n")),
        "{out}"
    );
    assert!(out.stdout.contains("idle"), "{out}");
    assert_eq!(
        status_field(&out.stdout, "Cpus_allowed_list").as_deref(),
        Some(last.to_string().as_str()),
        "{out}"
    );
    // Bad values are errors naming the field.
    std::fs::write(
        &pf,
        json!({"user": {"uid": 0, "gid": 0}, "args": ["true"], "cwd": "/",
               "scheduler": {"policy": "SCHED_FIFO", "priority": 0}})
        .to_string(),
    )
    .expect("write process.json");
    let out = env.run(&["exec", "--process", &pf.to_string_lossy(), c.id()]);
    out.code_is(255);
    assert!(out.stderr_has("process.scheduler.priority"), "{out}");
    drop(c);
    env.finish();
}

#[test]
fn joins_the_user_namespace_first() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.add_user_namespace(231072, 65536);
    let c = running(&env, &mut b);
    let out = env.run(&[
        "exec",
        "-u",
        "1000:1000",
        c.id(),
        "sh",
        "-c",
        "id -u; cat /proc/self/uid_map; sleep 1",
    ]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1000", "{out}");
    let map: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(map, ["0", "231072", "65536"], "{out}");
    drop(c);
    env.finish();
}
