//! Attacks of runc's CVE classes on kakuri, one test each, beyond those in security.rs. Every
//! test also runs a positive control: the same setup, observed where the defence does not apply
//! (a path lookup done the naive way, or inside the container), showing that the attack is
//! real and so that the test could fail.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use kakuri_runtime_tests::*;
use serde_json::json;

/// Mount points (field 5 of mountinfo) of `pid`'s mount namespace.
fn mount_points(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))
        .expect("read mountinfo")
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Mount points of the test process's own mount namespace that lie under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    mount_points(std::process::id() as i32)
        .into_iter()
        .filter(|m| Path::new(m).starts_with(dir))
        .collect()
}

/// Runs `script` with `sh -c` in a new private mount namespace of the host (`unshare -m
/// --propagation private`): what a runtime that resolves paths the naive way would do, without
/// touching the host's own mounts.
fn naive_in_private_ns(script: &str) -> std::process::Output {
    Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .output()
        .expect("run unshare")
}

/// The config's mounts without the one at `dest`.
fn drop_mount(b: &mut Bundle, dest: &str) {
    b.config_mut()["mounts"]
        .as_array_mut()
        .expect("mounts")
        .retain(|m| m["destination"] != dest);
}

/// CVE-2019-16884 class (a fake /proc makes the runtime's /proc writes and lookups land in files
/// the container controls). The config puts a host directory at /proc (as a Docker volume on
/// /proc once could) whose `self/fd/N` entries are symlinks to a decoy directory and whose
/// `sys/kernel/domainname` is a plain file. kakuri must still mask the masked path (it mounts
/// through descriptors, which must not be re-resolved through the container's /proc) and must
/// write the sysctl to the kernel, not to the fake file.
///
/// Control: inside the container, /proc/self/fd/N and /proc/sys/kernel/domainname are the
/// attacker's files, so a runtime resolving them by path after pivot_root lands there.
#[test]
fn fake_proc_does_not_defeat_masking_or_sysctls() {
    let env = TestEnv::new();
    let mut b = env.bundle();
    let fake = env.dir().join("fakeproc");
    std::fs::create_dir_all(fake.join("self/fd")).unwrap();
    std::fs::create_dir_all(fake.join("sys/kernel")).unwrap();
    std::fs::write(fake.join("sys/kernel/domainname"), "fake\n").unwrap();
    for n in 0..256 {
        symlink("/decoy", fake.join(format!("self/fd/{n}"))).unwrap();
    }
    let rootfs = b.rootfs();
    std::fs::create_dir(rootfs.join("decoy")).unwrap();
    std::fs::write(rootfs.join("secret"), "secret\n").unwrap();
    std::fs::create_dir(rootfs.join("secretdir")).unwrap();
    std::fs::write(rootfs.join("secretdir/inner"), "inner\n").unwrap();
    drop_mount(&mut b, "/proc");
    b.add_mount(
        json!({"destination": "/proc", "type": "bind", "source": fake,
                       "options": ["rbind"]}),
    );
    b.set_masked_paths(&["/secret", "/secretdir"]);
    b.set_readonly_paths(&[]);
    b.set(
        "/linux/sysctl",
        json!({"kernel.domainname": "kakuri-16884"}),
    );
    b.set_args(&["sleep", "600"]);
    let id = env.new_id();
    let out = env.create_raw(&b, &id, &[]);
    let fake_domain = std::fs::read_to_string(fake.join("sys/kernel/domainname")).unwrap();
    assert_eq!(
        fake_domain, "fake\n",
        "the sysctl went to the fake file: {out}"
    );
    out.ok();
    let c = env.container(&id, &out);
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "cat /secret; ls /secretdir; echo end",
    ]);
    ex.ok();
    assert_eq!(ex.stdout, "end\n", "masked paths are readable: {ex}");
    let mounts = mount_points(c.pid());
    assert!(
        !mounts.iter().any(|m| m == "/decoy"),
        "a mask landed on the decoy: {mounts:?}"
    );
    let dn = Command::new("nsenter")
        .args(["-t", &c.pid().to_string(), "-u", "cat"])
        .arg("/proc/sys/kernel/domainname")
        .output()
        .expect("nsenter");
    assert_eq!(String::from_utf8_lossy(&dn.stdout), "kakuri-16884\n");
    // Control: by path, inside the container, both lookups reach the attacker's files.
    let ex = env.run(&[
        "exec",
        c.id(),
        "sh",
        "-c",
        "readlink /proc/self/fd/7; cat /proc/sys/kernel/domainname",
    ]);
    ex.ok();
    assert_eq!(ex.stdout, "/decoy\nfake\n", "control: {ex}");
    drop(c);
    env.finish();
}
