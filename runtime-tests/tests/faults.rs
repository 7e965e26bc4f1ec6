//! Fault injection: a `create` killed with SIGKILL part-way leaves nothing that `delete --force`
//! cannot remove — no cgroup, no mount, no process, no state.

use kakuri_runtime_tests::*;
use std::path::Path;
use std::time::Duration;

/// Kill `create` with SIGKILL while the hook of `kind` runs, then delete and check for leftovers.
fn kill_create_during(kind: &str) {
    let env = TestEnv::new();
    let mut b = env.bundle();
    b.set_sh("echo should-not-run");
    let flag = env.dir().join(format!("{kind}.started"));
    let done = env.dir().join(format!("{kind}.done"));
    // createContainer hooks run inside the container's mount namespace, before pivot_root:
    // host paths are still visible there.
    let hook = env.dir().join("hook.sh");
    b.write_script(
        &hook,
        &format!(
            "#!/bin/sh\ntouch {}\nsleep 2\ntouch {}\n",
            flag.display(),
            done.display()
        ),
    );
    b.add_hook(kind, hook.to_str().unwrap(), &["hook.sh"], &[], None);
    b.write();
    let id = env.new_id();
    env.track(&id);
    let create = env.rt().spawn_in(
        env.rt()
            .cmd(&["create", "--bundle", b.dir().to_str().unwrap(), &id]),
        b.dir(),
    );
    wait_for("the hook to start", WAIT_TIMEOUT, || {
        flag.exists().then_some(())
    });
    // SAFETY: kill with integer arguments on the create process we spawned.
    unsafe { libc::kill(create.pid() as i32, libc::SIGKILL) };
    let out = create.wait(CMD_TIMEOUT);
    assert!(!out.success(), "create was killed: {out}");

    // What a killed create left is a container in state "creating" ...
    let st = env.run(&["state", &id]);
    st.ok();
    assert!(st.stdout.contains("\"creating\""), "{st}");
    // ... whose init died with its runtime (parent-death signal), and which delete removes.
    env.run(&["delete", "--force", &id]).ok();
    env.run(&["state", &id]).fails_with("does not exist");
    if kind == "createContainer" {
        // It ran in the container's pid namespace, which ended with the init: killed too. Once
        // no process of the test is left, the hook can no longer finish.
        wait_for("the in-container hook to be gone", WAIT_TIMEOUT, || {
            scan_leaks(&|_: &str| false, &[], Some(env.id()))
                .is_empty()
                .then_some(())
        });
        assert!(
            !done.exists(),
            "the in-container hook outlived its container"
        );
    } else {
        // A host-side hook is the user's program: let it finish before looking for leftovers.
        wait_for("the hook to finish", Duration::from_secs(10), || {
            done.exists().then_some(())
        });
    }
    assert!(Path::new(&flag).exists());
    env.finish();
}

#[test]
fn sigkill_during_create_runtime_hooks_leaves_nothing() {
    // The runtime process is killed after the cgroups exist and the init is cloned.
    kill_create_during("createRuntime");
}

#[test]
fn sigkill_during_create_container_hooks_leaves_nothing() {
    // The runtime is killed while the init has mounted the rootfs in its namespace.
    kill_create_during("createContainer");
}
