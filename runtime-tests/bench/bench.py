#!/usr/bin/env python3
"""kakuri benchmark harness (standard library only).

Runs the same busybox bundle through kakuri, runc and crun, alternating the runtimes
on every iteration, and prints median/min/max wall time per container plus the ratios
against crun and runc, peak RSS of each runtime command and the binary sizes.

Normally started through ./run, which puts this process into a private mount namespace
(unshare --mount --propagation private). Inside that namespace the hybrid cgroup2 mount
at /sys/fs/cgroup/unified is replaced by an empty tmpfs, because crun refuses a hybrid
cgroup layout; every runtime is measured in the same namespace so the comparison is fair.
Nothing here changes the host's mount table or cgroup layout.
"""

import argparse
import concurrent.futures
import ctypes
import datetime
import json
import os
import platform
import random
import re
import secrets
import select
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_KAKURI = REPO / "target" / "release" / "kakuri"
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = CGROUP_ROOT / "unified"
FLOOR_ARGV = ["unshare", "-m", "-p", "-u", "-i", "-n", "-f", "--mount-proc", "/bin/true"]
FLOOR_NAME = "unshare-floor"
ALL_SCENARIOS = ["run", "lifecycle", "exec", "state-kill-delete", "concurrent", "list", "phases"]
# Not part of the default set: traces one `run` per runtime instead of timing it.
EXTRA_SCENARIOS = ["strace"]
RUNTIME_ORDER = ["kakuri", "crun", "runc"]
# --cgroup-driver systemd: the scenarios whose containers get their own cgroupsPath.
SYSTEMD_SCENARIOS = ["run", "lifecycle"]
# systemd driver: cgroupsPath "slice:prefix:name"; the unit is <prefix>-<name>.scope.
SYSTEMD_SLICE = "system.slice"
SYSTEMD_PREFIX = "kakuri-bench"
CALL_TIMEOUT_S = 120.0
EXIT_TIMEOUT_S = 60.0
POOL_SIZE = 8
PR_SET_CHILD_SUBREAPER = 36

# Set when the user interrupts (Ctrl-C, SIGTERM, SIGHUP): workers stop starting new work.
STOP = threading.Event()


class BenchError(Exception):
    """A runtime command failed or the environment is unusable; the message says which."""


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Runner:
    """Spawns runtime commands with identical overhead for every runtime.

    Every command gets stdin from /dev/null and stdout+stderr into a per-thread log file
    (a file, not a pipe: container processes inherit these descriptors and may outlive
    the command). Children run in their own session so a terminal Ctrl-C reaches only the
    harness, which lets the command in flight finish and then cleans up.
    """

    def __init__(self, workdir, time_bin):
        self.logdir = workdir / "logs"
        self.logdir.mkdir()
        self.devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        self.local = threading.local()
        self.time_bin = time_bin
        self.rss_dir = workdir / "rss"
        self.rss_dir.mkdir()
        self.counter = 0
        self.lock = threading.Lock()

    def _log_path(self):
        path = getattr(self.local, "log_path", None)
        if path is None:
            path = self.logdir / f"thread-{threading.get_ident()}.log"
            self.local.log_path = path
        return path

    def close(self):
        os.close(self.devnull)

    def last_output(self):
        """Output of this thread's last command."""
        return self._log_path().read_text(errors="replace")

    def call(self, argv, timeout=CALL_TIMEOUT_S, rss=False, env=None):
        """Run argv to completion. Returns (exit code, elapsed ns, output, peak RSS KiB or None).
        `env`: variables added to the harness's environment for this command only.

        The clock brackets only process creation, the command itself and its reaping.
        """
        log_path = self._log_path()
        rss_path = None
        if rss:
            with self.lock:
                self.counter += 1
                rss_path = self.rss_dir / f"rss-{self.counter}"
            argv = [self.time_bin, "-f", "%M", "-o", str(rss_path)] + list(argv)
        full_env = None if env is None else {**os.environ, **env}
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            start = time.perf_counter_ns()
            proc = subprocess.Popen(
                argv, stdin=self.devnull, stdout=fd, stderr=fd, start_new_session=True,
                env=full_env,
            )
            rc = wait_popen(proc, timeout, argv)
            elapsed = time.perf_counter_ns() - start
        finally:
            os.close(fd)
        output = log_path.read_text(errors="replace").strip() if rc != 0 else ""
        peak = None
        if rss_path is not None:
            peak = parse_time_output(rss_path, argv)
        return rc, elapsed, output, peak


def parse_time_output(path, argv):
    try:
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as err:
        raise BenchError(f"/usr/bin/time wrote no report for {' '.join(argv)}: {err}") from err
    # With a non-zero exit /usr/bin/time prepends "Command exited with non-zero status N".
    try:
        return int(lines[-1])
    except (IndexError, ValueError) as err:
        raise BenchError(f"unexpected /usr/bin/time output {lines!r} for {' '.join(argv)}") from err


def poll_fd(fd, timeout_s):
    """Wait until fd is readable; True if it became readable before timeout_s.

    A Ctrl-C arriving meanwhile is remembered and re-raised once the wait is over, so a
    runtime command is never abandoned half-way.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    interrupted = False
    ready = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            if poller.poll(remaining * 1000.0):
                ready = True
                break
        except KeyboardInterrupt:
            interrupted = True
            STOP.set()
    return ready, interrupted


def wait_popen(proc, timeout_s, argv):
    """Block (no polling loop) until proc exits; kill its process group after timeout_s."""
    pidfd = os.pidfd_open(proc.pid)
    try:
        ready, interrupted = poll_fd(pidfd, timeout_s)
    finally:
        os.close(pidfd)
    if not ready:
        # The child leads its own session/process group (start_new_session=True).
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise BenchError(f"timed out after {timeout_s:.0f}s: {' '.join(map(str, argv))}")
    rc = proc.wait()
    if interrupted:
        raise KeyboardInterrupt
    return rc


def wait_exit(pid, what, timeout_s=EXIT_TIMEOUT_S):
    """Wait for a container process (not started by us directly) to exit and reap it.

    The harness is a child subreaper, so container processes whose runtime command has
    exited are re-parented to it; they are reaped here. A process that is not our child
    (possible with other runtimes) is only waited for.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, interrupted = poll_fd(pidfd, timeout_s)
    finally:
        os.close(pidfd)
    if not ready:
        raise BenchError(f"{what}: process {pid} did not exit within {timeout_s:.0f}s")
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    if interrupted:
        raise KeyboardInterrupt


def reap_orphans():
    """Reap exited re-parented processes (only called when no command is in flight)."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def become_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise BenchError(f"prctl(PR_SET_CHILD_SUBREAPER) failed: {os.strerror(err)}")


# --------------------------------------------------------------------------- runtimes


class Runtime:
    def __init__(self, name, path, root, floor=False, systemd=False):
        self.name = name
        self.path = str(path)
        self.root = root
        self.floor = floor
        # Global flag before the subcommand; runc, crun and kakuri all spell it this way.
        self.globals = ["--systemd-cgroup"] if systemd else []
        self.live = set()  # container ids that may exist in self.root
        self.lock = threading.Lock()

    def argv(self, *args):
        return [self.path, *self.globals, "--root", str(self.root), *map(str, args)]

    def track(self, cid):
        with self.lock:
            self.live.add(cid)

    def untrack(self, cid):
        with self.lock:
            self.live.discard(cid)


class Bench:
    def __init__(self, args, workdir, runner, runtimes, prefix):
        self.args = args
        self.workdir = workdir
        self.runner = runner
        self.runtimes = runtimes  # OCI runtimes plus the floor (last)
        self.prefix = prefix
        self.seq = 0
        self.seq_lock = threading.Lock()
        self.bundle_true = workdir / "bundle"
        self.bundle_sleep = workdir / "bundle-sleep"
        self.pid_dir = workdir / "pids"
        self.pid_dir.mkdir()
        # results[(scenario, runtime)] = list of ns; failures[(scenario, runtime)] = message
        self.results = {}
        self.failures = {}
        self.rss = {}  # (runtime, command) -> KiB
        self.notes = []
        self.strace = {}  # runtime -> strace_summary()
        # kakuri's timelines (KAKURI_TIMINGS) per command: [(wall ns, timeline dict)]
        self.phases = {}
        self.rng = random.Random(args.seed)

    def order(self, runtimes):
        """This iteration's runtime order: every runtime once, shuffled, so that on average
        each runtime follows each other one equally often (a fixed rotation would, e.g.,
        always put the same runtime right after runc and its asynchronous clean-up)."""
        order = list(runtimes)
        self.rng.shuffle(order)
        return order

    def settle(self):
        """Untimed pause between two timed commands (--settle)."""
        if self.args.settle > 0:
            time.sleep(self.args.settle / 1000.0)

    @property
    def oci(self):
        return [rt for rt in self.runtimes if not rt.floor]

    def new_id(self, rt):
        with self.seq_lock:
            self.seq += 1
            return f"{self.prefix}-{rt.name}-{self.seq}"

    def pid_file(self, cid):
        return self.pid_dir / f"{cid}.pid"

    def bundle_for(self, cid, base):
        """The bundle for container `cid`: `base` itself with the cgroupfs driver; with the
        systemd driver a per-container copy of base's config.json (same absolute rootfs)
        with linux.cgroupsPath "system.slice:kakuri-bench:<cid>". Written before the timed
        command starts, so it is not measured."""
        if self.args.cgroup_driver != "systemd":
            return base
        config = json.loads((base / "config.json").read_text())
        config.setdefault("linux", {})["cgroupsPath"] = f"{SYSTEMD_SLICE}:{SYSTEMD_PREFIX}:{cid}"
        bundle = self.workdir / "bundles" / cid
        bundle.mkdir(parents=True)
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    # ----------------------------------------------------------------- primitives

    def do(self, rt, *args, rss_key=None, timeout=CALL_TIMEOUT_S, env=None):
        """Run one runtime subcommand; raise BenchError naming the container on failure."""
        if STOP.is_set():
            raise KeyboardInterrupt
        rc, elapsed, output, peak = self.runner.call(
            rt.argv(*args), timeout=timeout, rss=rss_key is not None, env=env
        )
        if rc != 0:
            raise BenchError(
                f"{rt.name} {' '.join(map(str, args))} exited with {rc}: {output or '(no output)'}"
            )
        if rss_key is not None:
            self.rss[(rt.name, rss_key)] = peak
        return elapsed

    def read_pid(self, rt, cid):
        path = self.pid_file(cid)
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError) as err:
            raise BenchError(f"{rt.name}: cannot read pid file {path} of {cid}: {err}") from err

    def list_ids(self, rt):
        """(exit code, our container ids shown by `list --quiet`)."""
        rc, _, _, _ = self.runner.call(rt.argv("list", "--quiet"), timeout=60)
        text = self.runner.last_output()
        return rc, [ln.strip() for ln in text.splitlines() if ln.startswith(self.prefix)]

    def lifecycle(self, rt, rss=False, env=None, walls=None):
        """create + start + wait for exit + delete of /bin/true; returns elapsed ns.
        `walls` (a dict) receives the wall time of each command."""
        cid = self.new_id(rt)
        rt.track(cid)
        walls = {} if walls is None else walls
        bundle = self.bundle_for(cid, self.bundle_true)
        start = time.perf_counter_ns()
        walls["create"] = self.do(
            rt,
            "create",
            "--bundle",
            bundle,
            "--pid-file",
            self.pid_file(cid),
            cid,
            rss_key="create" if rss else None,
            env=env,
        )
        pid = self.read_pid(rt, cid)
        walls["start"] = self.do(rt, "start", cid, rss_key="start" if rss else None, env=env)
        wait_exit(pid, f"{rt.name} container {cid}")
        walls["delete"] = self.do(rt, "delete", cid, rss_key="delete" if rss else None,
                                  env=env)
        elapsed = time.perf_counter_ns() - start
        rt.untrack(cid)
        return elapsed

    def start_sleeper(self, rt):
        """A detached container running `sleep`; returns (id, pid)."""
        cid = self.new_id(rt)
        rt.track(cid)
        self.do(
            rt,
            "run",
            "--detach",
            "--bundle",
            self.bundle_for(cid, self.bundle_sleep),
            "--pid-file",
            self.pid_file(cid),
            cid,
        )
        return cid, self.read_pid(rt, cid)

    def stop_container(self, rt, cid, pid):
        self.do(rt, "kill", cid, "KILL")
        wait_exit(pid, f"{rt.name} container {cid}")
        self.do(rt, "delete", cid)
        rt.untrack(cid)

    # ----------------------------------------------------------------- driver

    def alternate(self, scenario, rows, runtimes, iterations, one, label=None):
        """Warm up each runtime once, then run `iterations` rounds of `one(rt, rss)`, each
        runtime once per round in a shuffled order; finally one untimed round under
        /usr/bin/time for the peak RSS."""
        label = label or scenario
        for row in rows:
            for rt in runtimes:
                self.results.setdefault((row, rt.name), [])
        failed = {}
        for rt in runtimes:
            try:
                one(rt, False)
            except BenchError as err:
                failed[rt.name] = str(err)
        for _ in range(iterations):
            for rt in self.order(runtimes):
                if rt.name in failed:
                    continue
                self.settle()
                try:
                    samples = one(rt, False)
                except BenchError as err:
                    failed[rt.name] = str(err)
                    continue
                for row, ns in samples.items():
                    self.results[(row, rt.name)].append(ns)
        for rt in runtimes:
            if rt.name in failed:
                continue
            try:
                one(rt, True)
            except BenchError as err:
                failed[rt.name] = f"under /usr/bin/time: {err}"
        for name, msg in failed.items():
            log(f"{label}: {name} FAILED: {msg}")
            for row in rows:
                self.failures[(row, name)] = msg
        reap_orphans()

    # ----------------------------------------------------------------- scenarios

    def scenario_run(self):
        n = self.args.iterations
        log(f"run: {n} x `run` of /bin/true per runtime, plus the unshare floor")

        def one(rt, rss):
            if rt.floor:
                rc, elapsed, output, peak = self.runner.call(FLOOR_ARGV, rss=rss)
                if rc != 0:
                    raise BenchError(f"{' '.join(FLOOR_ARGV)} exited with {rc}: {output}")
                if rss:
                    self.rss[(rt.name, "run")] = peak
                return {"run": elapsed}
            cid = self.new_id(rt)
            rt.track(cid)
            bundle = self.bundle_for(cid, self.bundle_true)
            elapsed = self.do(rt, "run", "--bundle", bundle, cid,
                              rss_key="run" if rss else None)
            rt.untrack(cid)
            return {"run": elapsed}

        self.alternate("run", ["run"], self.runtimes, n, one)

    def scenario_lifecycle(self):
        n = self.args.iterations
        log(f"lifecycle: {n} x create+start+wait+delete of /bin/true per runtime")
        self.alternate(
            "lifecycle", ["lifecycle"], self.oci, n,
            lambda rt, rss: {"lifecycle": self.lifecycle(rt, rss)},
        )

    def scenario_exec(self):
        n = self.args.iterations
        log(f"exec: {n} x `exec <id> /bin/true` into a running container per runtime")
        sleepers = {}
        ready = []
        try:
            for rt in self.oci:
                try:
                    sleepers[rt.name] = self.start_sleeper(rt)
                    ready.append(rt)
                except BenchError as err:
                    log(f"exec: {rt.name} FAILED to start the target container: {err}")
                    self.failures[("exec", rt.name)] = str(err)

            def one(rt, rss):
                cid, _ = sleepers[rt.name]
                return {"exec": self.do(rt, "exec", cid, "/bin/true",
                                        rss_key="exec" if rss else None)}

            if ready:
                self.alternate("exec", ["exec"], ready, n, one)
        finally:
            for name, (cid, pid) in sleepers.items():
                rt = next(r for r in self.oci if r.name == name)
                try:
                    self.stop_container(rt, cid, pid)
                except BenchError as err:
                    log(f"exec: stopping {cid} failed (cleanup will force-delete it): {err}")

    def scenario_phases(self):
        """kakuri only, untimed against the others: N x run, create/start/delete and exec
        with KAKURI_TIMINGS=<file>; report() prints the median of every phase next to the
        median wall time of the same commands."""
        rt = next((r for r in self.oci if r.name == "kakuri"), None)
        if rt is None:
            log("phases: kakuri is not among the runtimes: skipped")
            return
        n = self.args.iterations
        log(f"phases: {n} x run, create/start/delete and exec of kakuri with KAKURI_TIMINGS")
        out = self.workdir / "phases.jsonl"
        env = {"KAKURI_TIMINGS": str(out)}
        walls = []  # [(command, wall ns)] in the order the lines are appended

        def take():
            lines = out.read_text().splitlines() if out.exists() else []
            if len(lines) != len(walls):
                raise BenchError(f"phases: {len(walls)} commands but {len(lines)} timelines "
                                 f"in {out}")
            for (cmd, wall), line in zip(walls, lines):
                t = json.loads(line)
                if t.get("command") != cmd:
                    raise BenchError(f"phases: expected a {cmd} timeline, got {line[:80]}")
                self.phases.setdefault(cmd, []).append((wall, t))
            walls.clear()
            out.unlink(missing_ok=True)

        try:
            cid, spid = self.start_sleeper(rt)
            try:
                for _ in range(n):
                    self.settle()
                    c = self.new_id(rt)
                    rt.track(c)
                    walls.append(("run", self.do(rt, "run", "--bundle", self.bundle_true, c,
                                                 env=env)))
                    rt.untrack(c)
                    self.settle()
                    w = {}
                    self.lifecycle(rt, env=env, walls=w)
                    walls.extend((k, w[k]) for k in ("create", "start", "delete"))
                    self.settle()
                    walls.append(("exec", self.do(rt, "exec", cid, "/bin/true", env=env)))
                    take()
            finally:
                self.stop_container(rt, cid, spid)
        except BenchError as err:
            log(f"phases: kakuri FAILED: {err}")
            self.failures[("phases", "kakuri")] = str(err)
        reap_orphans()

    def scenario_state_kill_delete(self):
        n = self.args.iterations
        log(f"state/kill/delete: {n} x (create, start, [state], [kill KILL], wait, [delete])")

        def one(rt, rss):
            cid = self.new_id(rt)
            rt.track(cid)
            self.do(rt, "create", "--bundle", self.bundle_sleep, "--pid-file",
                    self.pid_file(cid), cid)
            pid = self.read_pid(rt, cid)
            self.do(rt, "start", cid)
            t_state = self.do(rt, "state", cid, rss_key="state" if rss else None)
            t_kill = self.do(rt, "kill", cid, "KILL", rss_key="kill" if rss else None)
            wait_exit(pid, f"{rt.name} container {cid}")
            t_delete = self.do(rt, "delete", cid, rss_key="delete-stopped" if rss else None)
            rt.untrack(cid)
            return {"state": t_state, "kill": t_kill, "delete": t_delete}

        self.alternate("state-kill-delete", ["state", "kill", "delete"], self.oci, n, one)

    def pool_map(self, fn, items):
        """Run fn over items on POOL_SIZE threads; returns the list of BenchError messages."""
        errors = []
        with concurrent.futures.ThreadPoolExecutor(max_workers=POOL_SIZE) as pool:
            futures = [pool.submit(fn, item) for item in items]
            try:
                for fut in concurrent.futures.as_completed(futures):
                    err = fut.exception()
                    if err is None:
                        continue
                    if isinstance(err, BenchError):
                        errors.append(str(err))
                    elif isinstance(err, KeyboardInterrupt):
                        STOP.set()
                    else:
                        raise err
            except KeyboardInterrupt:
                STOP.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        if STOP.is_set():
            raise KeyboardInterrupt
        return errors

    def scenario_concurrent(self):
        count, rounds = self.args.concurrent, self.args.concurrent_rounds
        row = f"concurrent {count}x (ms/batch)"
        log(f"concurrent: {rounds} round(s) of {count} create+start+wait+delete, "
            f"{POOL_SIZE} at a time, per runtime")
        runtimes = self.oci
        for rt in runtimes:
            self.results.setdefault((row, rt.name), [])
        failed = {}
        for r in range(rounds):
            for rt in self.order(runtimes):
                if rt.name in failed:
                    continue
                self.settle()
                start = time.perf_counter_ns()
                errors = self.pool_map(lambda _i, rt=rt: self.lifecycle(rt), range(count))
                elapsed = time.perf_counter_ns() - start
                reap_orphans()
                if errors:
                    failed[rt.name] = (f"{len(errors)}/{count} lifecycles failed in round "
                                       f"{r + 1}; first: {errors[0]}")
                    continue
                self.results[(row, rt.name)].append(elapsed)
        for name, msg in failed.items():
            log(f"concurrent: {name} FAILED: {msg}")
            self.failures[(row, name)] = msg
        if not failed:
            self.notes.append(f"concurrent: all {rounds}x{count} lifecycles succeeded "
                              f"for every runtime.")

    def scenario_strace(self):
        """One `run` of /bin/true per runtime under `strace -f -tt -y`, summarised."""
        strace = shutil.which("strace")
        if strace is None:
            raise BenchError("the strace scenario needs strace (apt-get install strace)")
        log("strace: one `run` of /bin/true per runtime under strace -f -tt -y")
        self.strace = {}
        for rt in self.runtimes:
            trace = self.workdir / f"strace-{rt.name}.log"
            if rt.floor:
                argv = FLOOR_ARGV
            else:
                cid = self.new_id(rt)
                rt.track(cid)
                argv = rt.argv("run", "--bundle", self.bundle_true, cid)
            rc, _, output, _ = self.runner.call(
                [strace, "-f", "-tt", "-y", "-s", "256", "-o", str(trace)] + argv)
            if rc != 0:
                msg = f"exited with {rc} under strace: {output}"
                log(f"strace: {rt.name} FAILED: {msg}")
                self.failures[("strace", rt.name)] = msg
                continue
            if not rt.floor:
                rt.untrack(cid)
            self.strace[rt.name] = strace_summary(trace, "/bin/true")
            if self.args.keep_traces:
                dest = Path(self.args.keep_traces)
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(trace, dest / trace.name)
        reap_orphans()

    def scenario_list(self):
        count, n = self.args.list_size, self.args.iterations
        row = f"list ({count} containers)"
        log(f"list: populating {count} stopped containers per runtime "
            f"(`run --detach` of /bin/true, {POOL_SIZE} at a time)")
        populated = []
        created = {}
        try:
            for rt in self.oci:
                ids = []
                created[rt.name] = ids

                def make(_i, rt=rt, ids=ids):
                    cid = self.new_id(rt)
                    rt.track(cid)
                    ids.append(cid)
                    self.do(rt, "run", "--detach", "--bundle", self.bundle_true,
                            "--pid-file", self.pid_file(cid), cid)
                    wait_exit(self.read_pid(rt, cid), f"{rt.name} container {cid}")

                start = time.monotonic()
                errors = self.pool_map(make, range(count))
                reap_orphans()
                if errors:
                    msg = f"{len(errors)}/{count} `run --detach` failed; first: {errors[0]}"
                    log(f"list: {rt.name} FAILED to populate: {msg}")
                    self.failures[(row, rt.name)] = msg
                    continue
                rc, listed = self.list_ids(rt)
                if rc != 0 or len(listed) != count:
                    msg = (f"`list --quiet` returned {rc} and {len(listed)} of our ids, "
                           f"expected {count}")
                    log(f"list: {rt.name} FAILED: {msg}")
                    self.failures[(row, rt.name)] = msg
                    continue
                log(f"list: {rt.name}: {count} stopped containers in "
                    f"{time.monotonic() - start:.1f}s, `list --quiet` shows all of them")
                populated.append(rt)
            if populated:
                self.alternate(
                    row, [row], populated, n,
                    lambda rt, rss: {row: self.do(rt, "list", rss_key="list" if rss else None)},
                    label="list",
                )
        finally:
            for rt in self.oci:
                ids = created.get(rt.name, [])
                if not ids:
                    continue
                log(f"list: deleting {len(ids)} {rt.name} containers")

                def remove(cid, rt=rt):
                    self.do(rt, "delete", "--force", cid)
                    rt.untrack(cid)

                errors = self.pool_map(remove, list(ids))
                if errors:
                    log(f"list: {len(errors)} deletes failed (cleanup retries): {errors[0]}")


# --------------------------------------------------------------------------- strace

STRACE_LINE = re.compile(r"^(\d+)\s+(\d\d):(\d\d):(\d\d\.\d+)\s+(.*)$")
STRACE_CALL = re.compile(r"^(\w+)\((.*)\)\s+=\s+(\S+)")
STRACE_UNFINISHED = re.compile(r"^(\w+)\((.*?)\s*<unfinished \.\.\.>$")
STRACE_RESUMED = re.compile(r"^<\.\.\. (\w+) resumed>(.*)$")
MOUNT_CALLS = {"mount", "umount2", "pivot_root", "open_tree", "move_mount", "fsopen",
               "fsmount", "fsconfig", "mount_setattr"}
WRITE_CALLS = {"write", "pwrite64", "writev", "pwritev", "pwritev2"}
OPEN_CALLS = {"open", "openat", "openat2"}


def in_cgroupfs(name, args):
    """Whether a path syscall's target is under /sys/fs/cgroup of the runtime's own view
    (not the container rootfs's sys/fs/cgroup mount points)."""
    parts = args.split(", ")
    if name.endswith("at") and len(parts) > 1:
        dirfd, path = parts[0], parts[1]
        if path.startswith('"/'):
            return path.startswith('"/sys/fs/cgroup/')
        return "</sys/fs/cgroup/" in dirfd
    return parts[0].startswith('"/sys/fs/cgroup/')


def strace_summary(path, container_cmd):
    """Counts and phase times from an `strace -f -tt -y` log of one runtime command."""
    pending = {}
    calls = []  # (pid, seconds, name, args, ret)
    exits = {}
    first = last = None
    with open(path, errors="replace") as fh:
        for line in fh:
            m = STRACE_LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid = int(m.group(1))
            ts = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
            body = m.group(5)
            first = ts if first is None else first
            last = ts
            if body.startswith("+++ "):
                exits.setdefault(pid, ts)
                continue
            if body.startswith("---"):
                continue
            um = STRACE_UNFINISHED.match(body)
            if um:
                pending[pid] = (um.group(1), ts, um.group(2))
                continue
            rm = STRACE_RESUMED.match(body)
            if rm:
                name, start, head = pending.pop(pid, (rm.group(1), ts, ""))
                cm = STRACE_CALL.match(f"{name}({head}{rm.group(2)}")
                if cm:
                    calls.append((pid, start, cm.group(1), cm.group(2), cm.group(3)))
                continue
            cm = STRACE_CALL.match(body)
            if cm:
                calls.append((pid, ts, cm.group(1), cm.group(2), cm.group(3)))
    if first is None:
        raise BenchError(f"{path}: no strace output")

    def ok(ret):
        return not ret.startswith("-")

    def positive(ret):
        return ret.isdigit() and int(ret) > 0

    out = {key: 0 for key in ("syscalls", "processes", "threads", "execs", "ns calls",
                              "mounts", "cgroup mkdir", "cgroup writes", "cgroup rmdir",
                              "files opened")}
    exec_ts = exec_pid = None
    for pid, ts, name, args, ret in calls:
        out["syscalls"] += 1
        if name in ("clone", "clone3", "fork", "vfork") and positive(ret):
            out["threads" if "CLONE_THREAD" in args else "processes"] += 1
            if "CLONE_NEW" in args:
                out["ns calls"] += 1
        elif name in ("execve", "execveat") and ret == "0":
            out["execs"] += 1
            if exec_ts is None and args.startswith(f'"{container_cmd}"'):
                exec_ts, exec_pid = ts, pid
        elif name in ("unshare", "setns") and ok(ret):
            out["ns calls"] += 1
        elif name in MOUNT_CALLS and ok(ret):
            out["mounts"] += 1
        elif name in ("mkdir", "mkdirat") and in_cgroupfs(name, args) and ok(ret):
            out["cgroup mkdir"] += 1
        elif name in WRITE_CALLS and args.split(",", 1)[0].find("</sys/fs/cgroup/") > 0 \
                and ok(ret):
            out["cgroup writes"] += 1
        elif name in ("rmdir", "unlinkat") and in_cgroupfs(name, args) and ok(ret) and (
                name == "rmdir" or "AT_REMOVEDIR" in args):
            out["cgroup rmdir"] += 1
        if name in OPEN_CALLS and ok(ret):
            out["files opened"] += 1

    def ms(a, b):
        return f"{(b - a) * 1000:.1f}" if a is not None and b is not None else "-"

    container_exit = exits.get(exec_pid)
    out["ms: start -> container exec"] = ms(first, exec_ts)
    out["ms: container exec -> exit"] = ms(exec_ts, container_exit)
    out["ms: container exit -> runtime exit"] = ms(container_exit, last)
    out["ms: total (under strace)"] = ms(first, last)
    return out


# --------------------------------------------------------------------------- environment


def in_private_mount_ns():
    """True when this process left the mount namespace ./run was started in."""
    outer = os.environ.get("KAKURI_BENCH_OUTER_MNTNS")
    return bool(outer) and os.readlink("/proc/self/ns/mnt") != outer


TMPFS_SOURCE = "kakuri-bench"


def mountinfo():
    """[(mount point, fstype, source, optional fields, super options)] from
    /proc/self/mountinfo."""
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            left, right = line.split(" - ", 1)
            fields = left.split()
            fstype, source, options = right.split()[:3]
            out.append((fields[4], fstype, source, fields[6:], options))
    return out


def uncached_9p(path):
    """A warning when the binary at `path` is on a 9p mount without a page cache (a guest's
    shared work directory): each page it faults in is then read from the host, which times
    the 9p transport, not the runtime (a kakuri binary there made `state` 20x slower in the v2
    guest). None otherwise."""
    real = os.path.realpath(path)
    best = None
    for mnt, fstype, _, _, options in mountinfo():
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and (best is None or len(mnt) >= len(best[0])):
            best = (mnt, fstype, options)
    if best is None or best[1] != "9p":
        return None
    mnt, _, options = best
    cache = [o for o in options.split(",") if o.startswith("cache=")]
    if cache and cache[0] not in ("cache=none", "cache=0"):
        return None
    return (f"{real} is on a 9p mount without a page cache ({mnt}); its page faults are "
            "9p reads: copy the binary elsewhere")


def drop_private_unified():
    """Unmount the tmpfs prepare_cgroup_view put on /sys/fs/cgroup/unified (ours only),
    discarding whatever runtimes wrote into it."""
    for mnt, fstype, source, _, _ in reversed(mountinfo()):
        if mnt == str(UNIFIED) and fstype == "tmpfs" and source == TMPFS_SOURCE:
            subprocess.run(["umount", str(UNIFIED)], check=True)
            return


def prepare_cgroup_view(workdir):
    """Inside our private mount namespace, hide the hybrid cgroup2 mount from runtimes."""
    if not in_private_mount_ns():
        raise BenchError("not in a private mount namespace; start the harness with "
                         "runtime-tests/bench/run (it uses unshare --mount)")
    for mnt, _, _, optional, _ in mountinfo():
        if any(opt.startswith("shared:") for opt in optional):
            raise BenchError(f"mount {mnt} is shared with another namespace; refusing to "
                             "change mounts (expected unshare --propagation private)")
    mounts = {mnt: fstype for mnt, fstype, _, _, _ in mountinfo()}
    if mounts.get(str(UNIFIED)) == "cgroup2":
        subprocess.run(["umount", str(UNIFIED)], check=True)
        # The directory below the mount lives on the host's /sys/fs/cgroup tmpfs; a private
        # tmpfs on top keeps anything a runtime writes there inside this namespace.
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=755", TMPFS_SOURCE,
                        str(UNIFIED)], check=True)
        return ("cgroup2 at /sys/fs/cgroup/unified unmounted and replaced by an empty tmpfs "
                "in the harness's private mount namespace (host unchanged)")
    return "no cgroup2 mount at /sys/fs/cgroup/unified; cgroup view left as is"


def make_bundle(workdir, spec_tool):
    rootfs = workdir / "rootfs"
    bindir = rootfs / "bin"
    for d in ("bin", "proc", "sys", "dev", "tmp", "etc"):
        (rootfs / d).mkdir(parents=True)
    busybox = shutil.which("busybox")
    if busybox is None:
        raise BenchError("busybox not found (apt-get install busybox-static)")
    if elf_info(busybox)["dynamic"]:
        raise BenchError(f"{busybox} is dynamically linked; install busybox-static")
    shutil.copy2(busybox, bindir / "busybox")
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox" and "/" not in applet:
            os.symlink("busybox", bindir / applet)

    spec_dir = workdir / "spec"
    spec_dir.mkdir()
    subprocess.run([spec_tool, "spec"], cwd=spec_dir, check=True, capture_output=True)
    config = json.loads((spec_dir / "config.json").read_text())
    shutil.rmtree(spec_dir)
    config["root"]["path"] = str(rootfs)
    config["process"]["terminal"] = False
    for name, args in (("bundle", ["/bin/true"]), ("bundle-sleep", ["/bin/sleep", "3600"])):
        bundle = workdir / name
        bundle.mkdir()
        config["process"]["args"] = args
        (bundle / "config.json").write_text(json.dumps(config, indent=2))
    return rootfs


def elf_info(path):
    """{'stripped': bool, 'dynamic': bool} from the ELF headers (64-bit little-endian)."""
    with open(path, "rb") as fh:
        ident = fh.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise BenchError(f"{path}: not a 64-bit little-endian ELF file")
        (e_phoff, e_shoff) = struct.unpack_from("<QQ", ident, 32)
        (e_phentsize, e_phnum, e_shentsize, e_shnum) = struct.unpack_from("<HHHH", ident, 54)
        dynamic = False
        fh.seek(e_phoff)
        for _ in range(e_phnum):
            ph = fh.read(e_phentsize)
            if struct.unpack_from("<I", ph, 0)[0] == 3:  # PT_INTERP
                dynamic = True
        stripped = True
        fh.seek(e_shoff)
        for _ in range(e_shnum):
            sh = fh.read(e_shentsize)
            if len(sh) >= 8 and struct.unpack_from("<I", sh, 4)[0] == 2:  # SHT_SYMTAB
                stripped = False
    return {"stripped": stripped, "dynamic": dynamic}


def version_line(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"unknown ({err})"
    lines = [ln.strip() for ln in (out.stdout or out.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "unknown"


def machine_info():
    model = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "cpu": model,
        "memory": f"{mem_kib / 1048576:.1f} GiB",
    }


def loadavg():
    with open("/proc/loadavg") as fh:
        return " ".join(fh.read().split()[:3])


def ensure_time_bin():
    path = "/usr/bin/time"
    if os.access(path, os.X_OK):
        return path
    log("/usr/bin/time missing: apt-get install -y time")
    subprocess.run(["apt-get", "install", "-y", "time"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not os.access(path, os.X_OK):
        raise BenchError("/usr/bin/time is missing and `apt-get install -y time` failed")
    return path


def resolve_kakuri(args):
    """Path of the kakuri binary, building it if it is the default path and missing."""
    path = Path(args.kakuri) if args.kakuri else DEFAULT_KAKURI
    if path.exists():
        return path
    if args.kakuri:
        raise BenchError(f"--kakuri {path}: no such file")
    cargo = shutil.which("cargo")
    if cargo is None or args.no_build:
        raise BenchError(f"{path} is missing (build it with `cargo build --release -p kakuri`)")
    log(f"{path} missing: cargo build --release -p kakuri (target dir {REPO / 'target'})")
    env = dict(os.environ, CARGO_TARGET_DIR=str(REPO / "target"))
    res = subprocess.run([cargo, "build", "--release", "-p", "kakuri"], cwd=REPO, env=env)
    if res.returncode != 0 or not path.exists():
        raise BenchError(f"`cargo build --release -p kakuri` failed (exit {res.returncode})")
    return path


# --------------------------------------------------------------------------- output


def fmt_ms(ns):
    return f"{ns / 1e6:.2f}"


def build_rows(bench):
    """Rows [scenario, runtime, median, min, max, vs crun, vs runc] in display order."""
    rows = []
    scenarios = []
    for scenario, _ in list(bench.results) + list(bench.failures):
        if scenario not in scenarios:
            scenarios.append(scenario)
    medians = {}
    for (scenario, name), samples in bench.results.items():
        if samples and (scenario, name) not in bench.failures:
            medians[(scenario, name)] = statistics.median(samples)
    names = [rt.name for rt in bench.runtimes]
    for scenario in scenarios:
        for name in names:
            key = (scenario, name)
            if key not in bench.results and key not in bench.failures:
                continue
            if key in bench.failures:
                rows.append([scenario, name, "FAILED", "-", "-", "-", "-"])
                continue
            samples = bench.results[key]
            if not samples:
                continue
            med = medians[key]
            ratios = []
            for ref in ("crun", "runc"):
                ref_med = medians.get((scenario, ref))
                ratios.append(f"{med / ref_med:.2f}" if ref_med else "-")
            rows.append([scenario, name, fmt_ms(med), fmt_ms(min(samples)),
                         fmt_ms(max(samples)), *ratios])
    return rows


RESULT_HEADER = ["scenario", "runtime", "median ms", "min ms", "max ms", "vs crun", "vs runc"]


def text_table(header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(row):
        return "  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip()

    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def rss_rows(bench):
    commands = []
    for (_, cmd) in bench.rss:
        if cmd not in commands:
            commands.append(cmd)
    rows = []
    for rt in bench.runtimes:
        values = [bench.rss.get((rt.name, cmd)) for cmd in commands]
        if all(v is None for v in values):
            continue
        peak = max(v for v in values if v is not None)
        rows.append([rt.name] + [str(v) if v is not None else "-" for v in values] + [str(peak)])
    return ["runtime"] + commands + ["max"], rows


def binary_rows(bench):
    rows = []
    sizes = {}
    for rt in bench.runtimes:
        path = rt.path if not rt.floor else shutil.which("unshare")
        real = os.path.realpath(path)
        info = elf_info(real)
        size = os.stat(real).st_size
        sizes[rt.name] = size
        rows.append([rt.name, real, str(size), f"{size / 1048576:.2f}",
                     "yes" if info["stripped"] else "no",
                     "dynamic" if info["dynamic"] else "static"])
    for row in rows:
        for ref in ("crun", "runc"):
            row.append(f"{sizes[row[0]] / sizes[ref]:.2f}" if ref in sizes else "-")
    header = ["binary", "path", "bytes", "MiB", "stripped", "linking", "vs crun", "vs runc"]
    return header, rows


def goal_rows(bench):
    """kakuri against the goals of issue 17 (information only, never asserted)."""
    names = {rt.name for rt in bench.runtimes}
    if "kakuri" not in names:
        return []
    medians = {}
    for (scenario, name), samples in bench.results.items():
        if samples and (scenario, name) not in bench.failures:
            medians[(scenario, name)] = statistics.median(samples)

    def ratio(scenario, ref):
        k, r = medians.get((scenario, "kakuri")), medians.get((scenario, ref))
        return k / r if k is not None and r else None

    rows = []

    def add(goal, value, limit, shown):
        if value is None:
            rows.append([goal, "-", "n/a (not measured or failed)"])
        else:
            rows.append([goal, shown, "yes" if value <= limit else "NO"])

    for scenario, limit in (("run", 0.6), ("lifecycle", 0.6), ("exec", 0.5),
                            ("state", 0.5), ("kill", 0.5), ("delete", 0.5)):
        value = ratio(scenario, "crun")
        add(f"{scenario}: kakuri/crun <= {limit}", value, limit,
            f"{value:.2f}" if value is not None else "")
    for scenario in dict.fromkeys(scenario for scenario, _ in medians):
        if scenario.startswith("list ("):
            value = ratio(scenario, "crun")
            add(f"{scenario}: kakuri/crun <= 0.5", value, 0.5,
                f"{value:.2f}" if value is not None else "")
            ms = medians.get((scenario, "kakuri"))
            add(f"{scenario}: kakuri median <= 10 ms", None if ms is None else ms / 1e6,
                10.0, f"{ms / 1e6:.1f} ms" if ms is not None else "")
        elif scenario.startswith("concurrent "):
            value = ratio(scenario, "crun")
            add(f"{scenario}: all succeed, kakuri/crun <= 0.7", value, 0.7,
                f"{value:.2f}" if value is not None else "")
    peaks = {}
    for (name, _), kib in bench.rss.items():
        if kib is not None:
            peaks[name] = max(kib, peaks.get(name, 0))
    if "kakuri" in peaks and "crun" in peaks:
        add("peak RSS: kakuri <= crun", peaks["kakuri"] / peaks["crun"], 1.0,
            f"{peaks['kakuri']} KiB vs {peaks['crun']} KiB")
    return rows


GOAL_HEADER = ["goal (issue 17)", "measured", "met"]


PHASE_HEADER = ["command", "process", "phase", "median at ms", "median ms", "share"]


def phase_rows(bench):
    """Median per phase of kakuri's timelines (scenario `phases`), per command, in median
    start order; each command ends with its timeline total, the harness's wall time and
    what lies outside the timeline (kakuri's own execve and dynamic loading, the exit)."""
    rows = []
    for cmd in ("run", "create", "start", "delete", "exec"):
        runs = bench.phases.get(cmd)
        if not runs:
            continue
        per = {}  # (process, phase, occurrence) -> ([start ns], [ns])
        order = []
        for _, t in runs:
            seen = {}
            for p in t["phases"]:
                k = (p["process"], p["phase"])
                seen[k] = seen.get(k, 0) + 1
                key = (*k, seen[k])
                if key not in per:
                    per[key] = ([], [])
                    order.append(key)
                per[key][0].append(p["start_ns"])
                per[key][1].append(p["ns"])
        total = statistics.median(t["total_ns"] for _, t in runs)
        wall = statistics.median(w for w, _ in runs)
        keyed = sorted(order, key=lambda k: statistics.median(per[k][0]))
        for process, phase, nth in keyed:
            starts, took = per[(process, phase, nth)]
            # A phase seen in only some runs (a rare retry, say) is shown with its count.
            name = phase if len(took) == len(runs) else f"{phase} ({len(took)}/{len(runs)} runs)"
            med = statistics.median(took)
            rows.append([cmd, process, name, fmt_ms(statistics.median(starts)), fmt_ms(med),
                         f"{100 * med / wall:.0f}%" if wall else "-"])
        rows.append([cmd, "", "timeline total (main() to the report)", "", fmt_ms(total),
                     f"{100 * total / wall:.0f}%" if wall else "-"])
        rows.append([cmd, "", "wall time seen by the harness (timings on)", "",
                     fmt_ms(wall), "100%"])
        rows.append([cmd, "", "outside the timeline: fork+execve, ld.so, exit, reaping", "",
                     fmt_ms(max(0, wall - total)), f"{100 * max(0, wall - total) / wall:.0f}%"
                     if wall else "-"])
    return rows


def strace_rows(bench):
    names = [rt.name for rt in bench.runtimes if rt.name in bench.strace]
    if not names:
        return None, []
    metrics = list(next(iter(bench.strace.values())))
    rows = [[metric] + [str(bench.strace[n][metric]) for n in names] for metric in metrics]
    return ["one `run` of /bin/true"] + names, rows


def report(bench, meta):
    rows = build_rows(bench)
    st_header, st_rows = strace_rows(bench)
    rss_header, rss = rss_rows(bench)
    bin_header, bins = binary_rows(bench)
    text = ["", f"cgroup driver: {bench.args.cgroup_driver}"]
    if rows:
        text += ["", "Wall time per container (runtime lifecycle), lower is better; "
                 "concurrent rows are the wall time of the whole batch:",
                 text_table(RESULT_HEADER, rows)]
    if rss:
        text += ["", "Peak RSS in KiB (one invocation of each command under "
                 "/usr/bin/time -f %M):", text_table(rss_header, rss)]
    text += ["", "Binaries:", text_table(bin_header, bins)]
    goals = goal_rows(bench)
    if goals:
        text += ["", "kakuri against the goals (one run; information, not an assertion):",
                 text_table(GOAL_HEADER, goals)]
    phases = phase_rows(bench)
    if phases:
        text += ["", f"kakuri phases (median of {bench.args.iterations} timelines per command, "
                 "KAKURI_TIMINGS; concurrent phases of the runtime and the init overlap, so "
                 "shares add up to more than the total):",
                 text_table(PHASE_HEADER, phases)]
    if st_rows:
        text += ["", "strace -f of one `run` (processes exclude threads; ns calls = unshare, "
                 "setns and clone with CLONE_NEW*):",
                 text_table(st_header, st_rows)]
    if bench.failures:
        text += ["", "Failures:"]
        text += [f"  {s} / {n}: {m}" for (s, n), m in bench.failures.items()]
    print("\n".join(text), flush=True)

    if bench.args.markdown:
        md = [
            f"### Results ({meta['date']})",
            "",
            f"- command: `{meta['command']}`",
            f"- machine: {meta['machine']['nproc']} CPUs ({meta['machine']['cpu']}), "
            f"{meta['machine']['memory']} RAM, kernel {meta['machine']['kernel']}",
            f"- load average (1/5/15 min): {meta['load']}",
        ]
        md += [f"- {name}: {ver}" for name, ver in meta["versions"].items()]
        md += [f"- {note}" for note in meta["notes"] + bench.notes]
        md += [
            f"- iterations: {bench.args.iterations} per scenario and runtime (after one warm-up); "
            "every iteration runs each runtime once, in an order shuffled per iteration "
            f"(seed {bench.args.seed}), {bench.args.settle:g} ms untimed pause before each; "
            f"harness total {meta['elapsed']:.0f} s",
        ]
        if rows:
            md += ["", "Wall time in ms per container; `concurrent` rows are ms per batch.", "",
                   md_table(RESULT_HEADER, rows)]
        if rss:
            md += ["", "Peak RSS (KiB) of one invocation of each command "
                   "(`/usr/bin/time -f %M`):", "", md_table(rss_header, rss)]
        md += ["", "Binary sizes:", "", md_table(bin_header, bins)]
        if goals:
            md += ["", "kakuri against the goals (one run; information, not an assertion):",
                   "", md_table(GOAL_HEADER, goals)]
        if phases:
            md += ["", f"kakuri phases (median of {bench.args.iterations} timelines per "
                   "command, `KAKURI_TIMINGS`):", "", md_table(PHASE_HEADER, phases)]
        if st_rows:
            md += ["", "`strace -f -tt -y` of one `run` (processes exclude threads; ns calls = "
                   "unshare, setns and clone with CLONE_NEW*):", "",
                   md_table(st_header, st_rows)]
        if bench.failures:
            md += ["", "Failures:", ""]
            md += [f"- {s} / {n}: {m.splitlines()[0] if m else m}"
                   for (s, n), m in bench.failures.items()]
        Path(bench.args.markdown).write_text("\n".join(md) + "\n")
        log(f"markdown written to {bench.args.markdown}")


# --------------------------------------------------------------------------- cleanup


def cgroup_leftovers(prefix):
    found = []
    if not CGROUP_ROOT.is_dir():
        return found
    for hierarchy in CGROUP_ROOT.iterdir():
        if not hierarchy.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(hierarchy):
            depth = len(Path(dirpath).relative_to(hierarchy).parts)
            if depth >= 4:
                dirnames[:] = []
                continue
            for d in dirnames:
                if prefix in d:
                    found.append(Path(dirpath) / d)
    return found


def systemd_scopes(prefix):
    """Units of ours that systemd still knows (any state), e.g. kakuri-bench-<id>.scope."""
    out = subprocess.run(["systemctl", "list-units", "--type=scope", "--all", "--plain",
                          "--no-legend"], capture_output=True, text=True)
    return [ln.split()[0] for ln in out.stdout.splitlines() if ln.split() and prefix in ln]


def remove_cgroup(path):
    """rmdir a leftover cgroup of ours (children first), killing our processes still in it."""
    for dirpath, dirnames, _ in os.walk(path, topdown=False):
        procs = Path(dirpath) / "cgroup.procs"
        if procs.exists():
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for _ in range(20):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)
                reap_orphans()


def cleanup(bench, workdir, prefix):
    """Delete every container we may have created, remove roots, temp dirs and cgroups."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    STOP.clear()  # allow the cleanup commands themselves
    log("cleanup: deleting leftover containers, roots, bundle and cgroups")
    problems = []
    if bench is not None:
        for rt in bench.oci:
            ids = set(rt.live)
            if rt.root.is_dir():
                rc, listed = bench.list_ids(rt)
                if rc == 0:
                    ids.update(listed)
            if ids:
                log(f"cleanup: force-deleting {len(ids)} leftover {rt.name} container(s)")
            for cid in sorted(ids):
                try:
                    rc, _, out, _ = bench.runner.call(rt.argv("delete", "--force", cid),
                                                      timeout=60)
                except BenchError as err:
                    rc, out = -1, str(err)
                # A failed delete matters only if the runtime kept state for the id (every
                # runtime here keeps <root>/<id>); cgroups and processes are checked below.
                if rc != 0 and (rt.root / cid).exists():
                    problems.append(f"{rt.name} delete --force {cid}: {out or '(no output)'}")
        reap_orphans()
        bench.runner.close()
    try:
        drop_private_unified()
    except (OSError, subprocess.CalledProcessError) as err:
        problems.append(f"cannot unmount the private tmpfs on {UNIFIED}: {err}")
    for path in cgroup_leftovers(prefix):
        remove_cgroup(path)
    reap_orphans()
    left = cgroup_leftovers(prefix)
    if left:
        problems.append(f"cgroup directories left: {', '.join(map(str, left))}")
    if bench is not None and bench.args.cgroup_driver == "systemd":
        units = systemd_scopes(prefix)
        if units:
            problems.append(f"systemd scopes left: {', '.join(units)}")
            subprocess.run(["systemctl", "stop", *units], capture_output=True)
            subprocess.run(["systemctl", "reset-failed", *units], capture_output=True)
    shutil.rmtree(workdir, ignore_errors=True)
    if workdir.exists():
        problems.append(f"could not remove {workdir}")
    for p in problems:
        log(f"cleanup problem: {p}")
    if not problems:
        log("cleanup: all containers deleted, roots, bundle and cgroups removed")
    return not problems


# --------------------------------------------------------------------------- main


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="runtime-tests/bench/run",
        description="Benchmark kakuri against runc and crun (alternating runtimes) on a "
        "busybox bundle; prints median/min/max ms per container and ratios.",
    )
    p.add_argument("--runtimes", help="comma-separated subset of kakuri,runc,crun "
                   "(default: all found)")
    p.add_argument("--iterations", type=int, default=None, help="iterations per scenario "
                   "and runtime (default 20, --quick 3)")
    p.add_argument("--scenarios", help="comma-separated subset of " + ",".join(ALL_SCENARIOS)
                   + " (default: all of these), or strace: one `run` per runtime under "
                   "strace -f, summarised (processes, execs, mounts, cgroup writes, phases)")
    p.add_argument("--kakuri", help=f"kakuri binary (default {DEFAULT_KAKURI}; built with "
                   "cargo if that is missing)")
    p.add_argument("--no-build", action="store_true", help="never run cargo")
    p.add_argument("--no-floor", action="store_true",
                   help="skip the `unshare ... /bin/true` floor in the run scenario")
    p.add_argument("--quick", action="store_true", help="fast smoke run: 3 iterations, "
                   "list with 50 containers, one concurrent round of 16")
    p.add_argument("--list-size", type=int, default=None,
                   help="stopped containers per runtime for `list` (default 1000)")
    p.add_argument("--concurrent", type=int, default=None,
                   help="containers per concurrent batch (default 100)")
    p.add_argument("--concurrent-rounds", type=int, default=None,
                   help="concurrent batches per runtime (default 3)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the per-iteration shuffle of the runtime order (default 1)")
    p.add_argument("--cgroup-driver", choices=["cgroupfs", "systemd"], default="cgroupfs",
                   help="systemd: pass --systemd-cgroup to every runtime and give each "
                   f"container cgroupsPath {SYSTEMD_SLICE}:{SYSTEMD_PREFIX}:<id> (scenarios "
                   f"{', '.join(SYSTEMD_SCENARIOS)}; needs systemd as PID 1, e.g. in the "
                   "systemd guest: runtime-tests/bench/run-in-sdguest)")
    p.add_argument("--settle", type=float, default=10.0, metavar="MS",
                   help="untimed pause before each timed iteration, so that one runtime's "
                   "asynchronous clean-up does not land on the next one (default 10 ms)")
    p.add_argument("--markdown", help="also write the results as markdown to this file")
    p.add_argument("--keep-traces", metavar="DIR",
                   help="strace scenario: copy the raw strace logs into DIR")
    args = p.parse_args(argv)

    def pick(value, normal, quick):
        return value if value is not None else (quick if args.quick else normal)

    args.iterations = pick(args.iterations, 20, 3)
    args.list_size = pick(args.list_size, 1000, 50)
    args.concurrent = pick(args.concurrent, 100, 16)
    args.concurrent_rounds = pick(args.concurrent_rounds, 3, 1)
    for name in ("iterations", "list_size", "concurrent", "concurrent_rounds"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.settle < 0:
        p.error("--settle must not be negative")
    args.scenario_list = ALL_SCENARIOS if not args.scenarios else \
        [s.strip() for s in args.scenarios.split(",") if s.strip()]
    known = ALL_SCENARIOS + EXTRA_SCENARIOS
    unknown = [s for s in args.scenario_list if s not in known]
    if unknown:
        p.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.cgroup_driver == "systemd":
        if not args.scenarios:
            args.scenario_list = list(SYSTEMD_SCENARIOS)
        other = [s for s in args.scenario_list if s not in SYSTEMD_SCENARIOS]
        if other:
            p.error(f"--cgroup-driver systemd supports the scenarios "
                    f"{', '.join(SYSTEMD_SCENARIOS)}, not {', '.join(other)}")
    if args.runtimes:
        args.runtime_list = [r.strip() for r in args.runtimes.split(",") if r.strip()]
        bad = [r for r in args.runtime_list if r not in RUNTIME_ORDER]
        if bad:
            p.error(f"unknown runtime(s) {', '.join(bad)}; choose from kakuri,runc,crun")
    else:
        args.runtime_list = None
    return args


def find_runtimes(args):
    """[(name, path)] in display order; explicit requests must be usable."""
    wanted = args.runtime_list or RUNTIME_ORDER
    found = []
    for name in RUNTIME_ORDER:
        if name not in wanted:
            continue
        try:
            if name == "kakuri":
                path = resolve_kakuri(args)
            else:
                path = shutil.which(name)
                if path is None:
                    raise BenchError(f"{name} not found in PATH")
        except BenchError as err:
            if args.runtime_list:
                raise
            log(f"skipping {name}: {err}")
            continue
        found.append((name, Path(path)))
    if not found:
        raise BenchError("no runtime to benchmark")
    return found


def check_systemd_scope(bench, rt):
    """With the systemd driver, a running container's init must sit in the scope its
    cgroupsPath names (<prefix>-<id>.scope): proof that the runtime used the driver."""
    cid, pid = bench.start_sleeper(rt)
    try:
        cgroups = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError as err:
        raise BenchError(f"{rt.name}: cannot read /proc/{pid}/cgroup of {cid}: {err}") from err
    finally:
        bench.stop_container(rt, cid, pid)
    unit = f"{SYSTEMD_PREFIX}-{cid}.scope"
    if f"/{SYSTEMD_SLICE}/{unit}" not in cgroups:
        raise BenchError(f"{rt.name}: container {cid} is not in {SYSTEMD_SLICE}/{unit}: "
                         f"{cgroups.strip()}")
    log(f"preflight: {rt.name}: container init in {SYSTEMD_SLICE}/{unit}")


def preflight(bench, explicit):
    """One `run` of /bin/true per runtime (and the floor); an unusable runtime is dropped,
    or is an error when it was asked for by name (`explicit`)."""
    usable = []
    for rt in bench.runtimes:
        if rt.floor:
            rc, _, out, _ = bench.runner.call(FLOOR_ARGV)
            ok, msg = rc == 0, out
        else:
            cid = bench.new_id(rt)
            rt.track(cid)
            try:
                bench.do(rt, "run", "--bundle", bench.bundle_for(cid, bench.bundle_true), cid)
                rt.untrack(cid)
                ok, msg = True, ""
                if bench.args.cgroup_driver == "systemd":
                    check_systemd_scope(bench, rt)
            except BenchError as err:
                ok, msg = False, str(err)
        if ok:
            log(f"preflight: {rt.name}: `run` of /bin/true exits 0 in this namespace")
            usable.append(rt)
        elif rt.name in explicit:
            raise BenchError(f"preflight: {rt.name} cannot run the bundle: {msg}")
        else:
            log(f"preflight: dropping {rt.name}: {msg}")
    return usable


def main(argv):
    args = parse_args(argv)
    if not in_private_mount_ns():
        raise BenchError("not in a private mount namespace: start the harness with "
                         "runtime-tests/bench/run (it uses unshare --mount)")

    def on_signal(signum, _frame):
        STOP.set()
        raise KeyboardInterrupt

    # Installed explicitly: a shell starts background jobs with SIGINT ignored.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    started = time.monotonic()
    load_before = loadavg()
    become_subreaper()
    time_bin = ensure_time_bin()
    found = find_runtimes(args)
    prefix = f"kakuri-bench-{secrets.token_hex(3)}"
    workdir = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    bench = None
    ok = False
    try:
        notes = [prepare_cgroup_view(workdir)]
        if args.cgroup_driver == "systemd":
            if not Path("/run/systemd/system").is_dir():
                raise BenchError("--cgroup-driver systemd needs systemd as PID 1 "
                                 "(/run/systemd/system missing); use "
                                 "runtime-tests/bench/run-in-sdguest")
            notes.append("cgroup driver: systemd (`--systemd-cgroup` for every runtime, "
                         f"cgroupsPath {SYSTEMD_SLICE}:{SYSTEMD_PREFIX}:<id>, one bundle "
                         "directory per container written before its timed command)")
        else:
            notes.append("cgroup driver: cgroupfs (runtime default, no cgroupsPath)")
        for name, path in found:
            warning = uncached_9p(path)
            if warning:
                log(f"WARNING: {name}: {warning}")
                notes.append(f"WARNING: {name}: {warning}")
        spec_tool = shutil.which("runc") or next(str(p) for _, p in found)
        make_bundle(workdir, spec_tool)
        notes.append(f"bundle: busybox-static rootfs, config.json from `{Path(spec_tool).name} "
                     "spec` with args [/bin/true] (or [/bin/sleep, 3600] where a running "
                     "container is needed), terminal false")
        runner = Runner(workdir, time_bin)
        runtimes = []
        for name, path in found:
            root = workdir / f"root-{name}"
            root.mkdir(mode=0o700)
            runtimes.append(Runtime(name, path, root,
                                    systemd=args.cgroup_driver == "systemd"))
        wants_floor = "run" in args.scenario_list or "strace" in args.scenario_list
        if wants_floor and not args.no_floor:
            runtimes.append(Runtime(FLOOR_NAME, shutil.which("unshare"), None, floor=True))
        bench = Bench(args, workdir, runner, runtimes, prefix)
        explicit = set(args.runtime_list or []) | ({"kakuri"} if args.kakuri else set())
        bench.runtimes = preflight(bench, explicit)
        if not bench.oci:
            raise BenchError("no OCI runtime passed the preflight")
        notes.append("preflight: `run` of /bin/true exited 0 for "
                     + ", ".join(rt.name for rt in bench.runtimes)
                     + " inside that namespace")
        versions = {rt.name: version_line(rt.path) for rt in bench.oci}
        for scenario in ALL_SCENARIOS + EXTRA_SCENARIOS:
            if scenario in args.scenario_list:
                getattr(bench, "scenario_" + scenario.replace("-", "_"))()
        meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "runtime-tests/bench/run " + " ".join(argv),
            "machine": machine_info(),
            "versions": versions,
            "notes": notes,
            "elapsed": time.monotonic() - started,
            "load": f"{load_before} at start, {loadavg()} at end",
        }
        report(bench, meta)
        ok = not bench.failures
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
    finally:
        clean = cleanup(bench, workdir, prefix)
    log(f"total {time.monotonic() - started:.0f}s")
    return 0 if ok and clean else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as err:
        print(f"bench: {err}", file=sys.stderr)
        sys.exit(1)
