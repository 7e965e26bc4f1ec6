//! What a created container holds of its caller: only stdio and the `--preserve-fds`
//! descriptors. An engine that waits for EOF on a pipe it gave `create` (containerd's shim,
//! podman's conmon) must get it when `create` exits, not when the container is started, and
//! the runtime's state lock must not stay held by a container waiting for `start`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use kakuri_runtime_tests::*;

/// "pipe:[inode]" of one end of a pipe, as /proc/<pid>/fd shows it.
fn pipe_link(fd: &OwnedFd) -> String {
    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("readlink own fd")
        .to_string_lossy()
        .into_owned()
}

/// The targets of every descriptor of `pid`.
fn fd_links(pid: i32) -> Vec<(u32, String)> {
    let mut v: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/fd: {e}"))
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().parse().ok()?;
            let l = std::fs::read_link(e.path()).ok()?;
            Some((n, l.to_string_lossy().into_owned()))
        })
        .collect();
    v.sort();
    v
}

/// Whether the read end `r` sees end-of-file (every write end closed) within `timeout`.
fn hangs_up(r: &OwnedFd, timeout: Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis() as i32).expect("timeout");
    match poll(&mut fds, ms) {
        Ok(0) => false,
        Ok(_) => fds[0]
            .revents()
            .is_some_and(|f| f.contains(PollFlags::POLLHUP)),
        Err(e) => panic!("poll: {e}"),
    }
}

/// What arrives on the read end `r` within `timeout` (one read once it is readable).
fn read_within(r: &OwnedFd, timeout: Duration) -> String {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(r.as_fd(), PollFlags::POLLIN)];
    let ms = PollTimeout::try_from(timeout.as_millis() as i32).expect("timeout");
    if poll(&mut fds, ms).expect("poll") == 0 {
        return String::new();
    }
    let mut buf = [0u8; 256];
    let n = nix::unistd::read(r.as_raw_fd(), &mut buf).expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Whether the state directory of `id` can be locked right now (nobody holds its lock).
fn state_dir_unlocked(env: &TestEnv, id: &str) -> bool {
    let dir = std::fs::File::open(env.rt().root().join(id)).expect("open the state dir");
    // SAFETY: flock on a descriptor we own; LOCK_NB never blocks.
    let rc = unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    rc == 0
}

/// `create --preserve-fds 1` given a pipe as fd 3 (preserved) and another as fd 4 (not): while
/// the container waits for `start`, its init holds fd 3 (the positive control: a held write end
/// is seen, so the check can fail) and not fd 4, whose reader gets EOF as soon as `create`
/// exits; the state lock is free. After `start` the program has fd 3 and not fd 4.
///
/// Checked without the defence (the init only marked inherited descriptors close-on-exec, as
/// before this test): the reader of fd 4 saw no EOF while the container was created, and the
/// init listed the pipe among its descriptors. runc 1.1.5 passes
/// (`KAKURI_BIN=/usr/sbin/runc`).
#[test]
fn created_container_holds_only_stdio_and_preserved_fds() {
    let env = TestEnv::new();
    for verb in ["create", "run"] {
        let mut b = env.bundle();
        b.set_sh(
            "echo preserved >&3; if [ -e /proc/self/fd/4 ]; then echo HAS-FD4; else echo NO-FD4; fi; sleep 1000",
        );
        b.write();
        let (kept_r, kept_w) = pipe();
        let (extra_r, extra_w) = pipe();
        let id = env.new_id();
        env.track(&id);
        let bundle = b.dir().to_string_lossy().into_owned();
        let mut args = vec![verb, "--bundle", &bundle, "--preserve-fds", "1"];
        if verb == "run" {
            args.push("--detach");
        }
        args.push(&id);
        let mut cmd = env.rt().cmd(&args);
        pass_fd(&mut cmd, kept_w.as_raw_fd(), 3);
        pass_fd(&mut cmd, extra_w.as_raw_fd(), 4);
        let out = env.rt().spawn_in(cmd, b.dir()).wait(CMD_TIMEOUT);
        out.ok();
        let c = env.container(&id, &out);
        let (kept_link, extra_link) = (pipe_link(&kept_w), pipe_link(&extra_w));
        drop(kept_w);
        drop(extra_w);
        if verb == "create" {
            let pid = c.pid();
            let links = fd_links(pid);
            assert!(
                links.iter().any(|(n, l)| *n == 3 && *l == kept_link),
                "the created init lost its preserved fd 3: {links:?}"
            );
            assert!(
                !links.iter().any(|(_, l)| *l == extra_link),
                "the created init holds the caller's fd 4 ({extra_link}): {links:?}"
            );
            let dir = env.rt().root().join(&id);
            assert!(
                !links
                    .iter()
                    .any(|(_, l)| std::path::Path::new(l) == dir.as_path()),
                "the created init holds the state directory: {links:?}"
            );
            assert!(
                state_dir_unlocked(&env, &id),
                "the state lock of {id} is held while it is created"
            );
            assert!(
                hangs_up(&extra_r, WAIT_TIMEOUT),
                "no EOF on the caller's pipe (fd 4) while the container is created"
            );
            // Positive control: the preserved pipe's writer is held, and that is seen.
            assert!(
                !hangs_up(&kept_r, Duration::from_millis(200)),
                "the preserved fd 3 was closed in the created init"
            );
            c.start();
        } else {
            assert!(
                hangs_up(&extra_r, WAIT_TIMEOUT),
                "no EOF on the caller's pipe (fd 4) after run --detach"
            );
        }
        let stdout = c.wait_stdout("FD4");
        assert!(stdout.contains("NO-FD4"), "{verb}: {stdout}");
        let got = read_within(&kept_r, WAIT_TIMEOUT);
        assert_eq!(
            got, "preserved\n",
            "{verb}: what the container wrote to fd 3"
        );
        drop(c);
    }
    env.finish();
}
