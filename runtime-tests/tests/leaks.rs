//! Runs last (test target `zz_leaks`: cargo runs test targets in name order): scans the
//! machine for anything any earlier test binary of the suite left behind — mounts, cgroup
//! dirs, processes and temp dirs named after `kt-<pid>-...` ids whose test process is gone.

use kakuri_runtime_tests::*;

#[test]
fn nothing_left_by_the_suite() {
    require_root();
    let leaks = suite_leaks();
    assert!(leaks.is_empty(), "the test suite left: {leaks:#?}");

    // The scanner itself must be able to fail: plant a temp dir named like the dir of a test
    // process that is gone, and expect it to be reported.
    let mut dead = 4_000_000; // above the kernel's maximum pid_max: never a live pid
    while process_alive(dead) {
        dead += 1;
    }
    let dir = std::env::temp_dir().join(format!("kakuri-{ID_PREFIX}{dead}-1"));
    std::fs::create_dir_all(&dir).unwrap();
    let found = suite_leaks();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        found.iter().any(|l| l.contains(&dir.display().to_string())),
        "planted leftover not found: {found:#?}"
    );
}
