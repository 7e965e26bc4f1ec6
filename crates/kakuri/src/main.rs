//! kakuri: an OCI container runtime with runc's command line.
//!
//! This binary only parses the command line, sets up logging, calls `kakuri-container` and prints
//! the result. Errors are logged once at level "error" (to `--log` in the chosen format) and, when
//! the log goes to a file, also printed plainly on stderr; the exit code is 1.

mod cgroup_cmds;
mod fastargs;
mod logging;
mod output;
mod timings;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kakuri_container::rootless::RootlessMode;
use kakuri_container::{CreateOptions, Error, Runtime};

#[derive(Parser, Debug)]
#[command(
    name = "kakuri",
    about = "kakuri (隔離) runs OCI containers: an OCI runtime with runc's command line",
    disable_version_flag = true
)]
pub(crate) struct Cli {
    /// Print the version
    #[arg(short = 'v', long = "version", global = false)]
    version: bool,
    /// Enable debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// Print a per-phase timeline of the command on stderr when it ends (also KAKURI_TIMINGS)
    #[arg(long, global = true)]
    timings: bool,
    /// Write the log to this file instead of stderr
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log format: text or json
    #[arg(long = "log-format", global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Directory for container state (default /run/kakuri, or $XDG_RUNTIME_DIR/kakuri when not root)
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Path to the criu binary used by checkpoint and restore (default: criu in $PATH)
    #[arg(long, global = true, value_name = "PATH")]
    criu: Option<PathBuf>,
    /// Use the systemd cgroup driver: linux.cgroupsPath is slice:prefix:name, a transient scope
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Ignore cgroup permission errors: true, false or auto (auto: when not uid 0, or in a
    /// user namespace). Before the command, as runc's global options.
    #[arg(long, value_name = "true|false|auto")]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Args, Debug, Clone)]
struct CreateArgs {
    /// Container id
    id: String,
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket to send the pty master to (with process.terminal)
    #[arg(long = "console-socket", value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Write the init's pid to this file
    #[arg(long = "pid-file", value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (move the rootfs and chroot)
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N more file descriptors (from 3 on) to the container
    #[arg(long = "preserve-fds", default_value_t = 0, value_name = "N")]
    preserve_fds: u32,
}

impl CreateArgs {
    fn options(&self) -> CreateOptions {
        CreateOptions {
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(Args, Debug, Clone, Default)]
struct ExecArgs {
    /// Container id
    id: String,
    /// The command and its arguments (unless --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
    /// A process.json with the whole process spec
    #[arg(short = 'p', long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    tty: bool,
    /// Unix socket to send the pty master to
    #[arg(long = "console-socket", value_name = "PATH")]
    console_socket: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=value); repeatable
    #[arg(short = 'e', long = "env")]
    env: Vec<String>,
    /// uid[:gid] to run as
    #[arg(short = 'u', long)]
    user: Option<String>,
    /// Additional gids; repeatable
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability; repeatable
    #[arg(short = 'c', long = "cap")]
    cap: Vec<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// AppArmor profile (refused on a host without AppArmor, as runc does)
    #[arg(long)]
    apparmor: Option<String>,
    /// SELinux process label (refused on a host without SELinux, as runc does)
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Pass N more file descriptors (from 3 on)
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Detach from the process
    #[arg(short = 'd', long)]
    detach: bool,
    /// Write the process's pid to this file
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Put the process in a sub-cgroup of the container: NAME, or CONTROLLER[,CONTROLLER]:NAME
    /// (repeatable)
    #[arg(long, value_name = "[CONTROLLER:]NAME")]
    cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
}

/// Options checkpoint and restore share (runc's names).
#[derive(Args, Debug, Clone)]
struct CriuArgs {
    /// Container id
    id: String,
    /// Directory of the CRIU image files (default: ./checkpoint)
    #[arg(long = "image-path", value_name = "DIR")]
    image_path: Option<PathBuf>,
    /// Directory for CRIU's work files and logs
    #[arg(long = "work-path", value_name = "DIR")]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Lazy migration: checkpoint serves the memory pages from a page server (with --page-server), restore gets them through userfaultfd from a `criu lazy-pages` daemon
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// cgroups mode: soft (default), full, strict or ignore
    #[arg(long = "manage-cgroups-mode", value_name = "MODE")]
    manage_cgroups_mode: Option<String>,
    /// Create a namespace but do not restore its properties (only "network")
    #[arg(long = "empty-ns", value_name = "NS")]
    empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
}

impl CriuArgs {
    fn options(&self, criu: Option<PathBuf>) -> kakuri_container::checkpoint::CriuOptions {
        kakuri_container::checkpoint::CriuOptions {
            criu,
            image_path: self.image_path.clone(),
            work_path: self.work_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            lazy_pages: self.lazy_pages,
            manage_cgroups_mode: self.manage_cgroups_mode.clone(),
            empty_ns: self.empty_ns.clone(),
            auto_dedup: self.auto_dedup,
            ..Default::default()
        }
    }
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Checkpoint a running container with CRIU
    // A flag given twice counts once, as with runc: podman 4.3 passes `--leave-running` twice
    // for `podman container checkpoint --leave-running`.
    #[command(args_override_self = true)]
    Checkpoint {
        #[command(flatten)]
        c: CriuArgs,
        /// Images of a previous pre-dump, relative to --image-path
        #[arg(long = "parent-path", value_name = "DIR")]
        parent_path: Option<PathBuf>,
        /// Leave the container running after checkpointing
        #[arg(long = "leave-running")]
        leave_running: bool,
        /// Dump the memory only and leave the container running
        #[arg(long = "pre-dump")]
        pre_dump: bool,
        /// CRIU writes \0 to this fd when lazy pages are ready (with --lazy-pages)
        #[arg(long = "status-fd", value_name = "FD")]
        status_fd: Option<i32>,
        /// ADDRESS:PORT of the page server: a `criu page-server` receiving the pages, or with --lazy-pages the one CRIU runs
        #[arg(long = "page-server", value_name = "ADDRESS:PORT")]
        page_server: Option<String>,
    },
    /// Restore a container from a checkpoint made by `checkpoint`
    #[command(args_override_self = true)]
    Restore {
        #[command(flatten)]
        c: CriuArgs,
        /// Path to the bundle directory
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
        /// Detach from the restored process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Write the restored init's pid to this file
        #[arg(long = "pid-file", value_name = "FILE")]
        pid_file: Option<PathBuf>,
        /// Unix socket to send the pty master to
        #[arg(long = "console-socket", value_name = "PATH")]
        console_socket: Option<PathBuf>,
        /// Accepted for runc compatibility
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
        /// Accepted for runc compatibility (CRIU sets the root up)
        #[arg(long = "no-pivot")]
        no_pivot: bool,
        /// LSM profile for the restored processes (refused: not supported)
        #[arg(long = "lsm-profile")]
        lsm_profile: Option<String>,
        /// LSM mount context (refused: not supported)
        #[arg(long = "lsm-mount-context")]
        lsm_mount_context: Option<String>,
    },
    /// Create a container from a bundle; it waits for `start`
    Create(CreateArgs),
    /// Start the user process of a created container
    Start { id: String },
    /// Print the state of a container as JSON
    State { id: String },
    /// Send a signal (default SIGTERM) to the container's init
    Kill {
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
        /// Send the signal to every process of the container
        #[arg(short = 'a', long)]
        all: bool,
    },
    /// Delete a container and everything it holds
    Delete {
        id: String,
        /// Kill the container first if it is running
        #[arg(short = 'f', long)]
        force: bool,
    },
    /// Create and start a container; wait for it unless --detach
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Detach from the container's process
        #[arg(short = 'd', long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
        /// Accepted for runc compatibility (kakuri does not become a subreaper)
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// List containers
    List {
        /// Output format: table or json
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Print only the ids
        #[arg(short = 'q', long)]
        quiet: bool,
    },
    /// Pause every process of a container (cgroup freezer)
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// List the processes of a container
    Ps {
        id: String,
        /// Output format: table or json
        #[arg(short = 'f', long, default_value = "table", value_parser = ["table", "json"])]
        format: String,
        /// Options passed to ps(1) for the table format
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Run a new process inside a running container
    Exec(Box<ExecArgs>),
    /// Write a default config.json
    Spec {
        /// Bundle directory to write config.json into
        #[arg(short = 'b', long, default_value = ".")]
        bundle: PathBuf,
        /// A config for rootless containers
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features document (runtime-spec features.md)
    Features,
    /// Report what this host can do for containers and, with --bundle, whether that bundle
    /// can run here (exit status 1 when it cannot)
    Check {
        /// Bundle directory to check against this host
        #[arg(short = 'b', long)]
        bundle: Option<PathBuf>,
        /// Output format
        #[arg(short = 'f', long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// Update the resource limits of a container
    Update(Box<cgroup_cmds::UpdateArgs>),
    /// Print container events: resource statistics and OOM notifications
    Events(cgroup_cmds::EventsArgs),
}

/// The state root when `--root` is not given: `$XDG_RUNTIME_DIR/kakuri` for a rootless caller
/// (made here, mode 0700 with the sticky bit so that the XDG clean-up leaves it alone, as runc
/// does), else `/run/kakuri`.
fn default_root() -> Result<PathBuf, Error> {
    let Some(dir) = kakuri_container::rootless::xdg_root("kakuri") else {
        return Ok(PathBuf::from("/run/kakuri"));
    };
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let hint = |what: &str, e: std::io::Error| {
        Error::io(
            format!(
                "{what} {} (the path in $XDG_RUNTIME_DIR must be writable by the user)",
                dir.display()
            ),
            e,
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| hint("create root directory", e))?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1700))
        .map_err(|e| hint("chmod", e))?;
    Ok(dir)
}

/// runc's `--version` lines, with the Rust compiler where runc names Go's (build.rs).
fn print_version() -> Outcome {
    let text = format!(
        "kakuri version {}\ncommit: {}\nspec: {}\nrustc: {}\nlibseccomp: {}\n",
        // option_env!: the fuzz crate compiles this file without kakuri's build.rs.
        option_env!("KAKURI_VERSION").unwrap_or(env!("CARGO_PKG_VERSION")),
        option_env!("KAKURI_COMMIT").unwrap_or("unknown"),
        kakuri_spec::OCI_VERSION,
        option_env!("KAKURI_RUSTC").unwrap_or("unknown"),
        kakuri_container::features::libseccomp_version()
    );
    output::stdout(text.as_bytes()).map(|()| 0)
}

/// containerd's go-runc passes `-no-subreaper` (one dash) to `restore`, which runc's flag
/// library takes as `--no-subreaper`; clap does not, so that one spelling is rewritten when the
/// command is `restore`.
fn go_runc_args(
    args: impl Iterator<Item = std::ffi::OsString>,
) -> (Vec<std::ffi::OsString>, usize) {
    let mut out: Vec<std::ffi::OsString> = args.collect();
    // The command: the first word that is neither an option nor the value of a global option.
    let mut i = 1;
    while i < out.len() {
        let a = out[i].to_string_lossy();
        if !a.starts_with('-') {
            break;
        }
        let takes_value = ["--root", "--log", "--log-format", "--criu", "--rootless"];
        i += if takes_value.contains(&a.as_ref()) {
            2
        } else {
            1
        };
    }
    if out.get(i).is_some_and(|c| c == "restore") {
        for a in &mut out[i + 1..] {
            if a == "-no-subreaper" {
                *a = "--no-subreaper".into();
            }
        }
    }
    (out, i)
}

/// `create`, `run` and `exec` re-execute the runtime from a read-only view of its binary
/// (`kakuri_container::protect_runtime_binary`). Done here, before clap parses anything, the
/// arguments are parsed once instead of in both processes (0.4–0.6 ms of a `run`). Whether a
/// command needs it is read from the command word found the way [`go_runc_args`] finds it; a
/// word misread here costs at most a re-execution that was not needed, or leaves it to the
/// command, which protects itself first. A failure is left to the command to report, with the
/// log set up.
fn protect_early(args: &[std::ffi::OsString], cmd: usize, t0: u64) {
    if !args
        .get(cmd)
        .is_some_and(|c| c == "create" || c == "run" || c == "exec")
    {
        return;
    }
    // The timeline must be on before the re-execution to show it, decided the same way in
    // both processes (the flags before the command word, or the environment switch).
    let flag = args[1..cmd]
        .iter()
        .any(|a| a == "--timings" || a == "--debug");
    let env = std::env::var_os(timings::ENV).is_some_and(|v| !v.is_empty() && v != "0");
    if flag || env {
        kakuri_timings::enable(t0);
        kakuri_timings::mark("find the command");
    }
    let _ = kakuri_container::protect_runtime_binary();
}

/// What a command produced: an exit code, or an error to report.
type Outcome = Result<u8, Error>;

fn main() -> ExitCode {
    // The timeline's origin: a vDSO clock read, no system call (kept only when timings are on).
    let t0 = kakuri_timings::now();
    let (args, cmd_at) = go_runc_args(std::env::args_os());
    protect_early(&args, cmd_at, t0);
    // The short commands' usual lines without clap (see fastargs); everything else with it.
    let fast = fastargs::parse(&args[1..]);
    let mut cli = match fast.map_or_else(|| Cli::try_parse_from(&args), Ok) {
        Ok(c) => c,
        // Usage errors go to stderr (exit 1); --help and the like to stdout (exit 0).
        Err(e) if e.use_stderr() => {
            output::stderr_line(e.render().to_string().trim_end());
            return ExitCode::from(1);
        }
        Err(e) => {
            let _ = logging::init(None, false, false);
            let text = e.render().to_string();
            return finish(None, output::stdout(text.as_bytes()).map(|()| 0), false);
        }
    };
    let json = cli.log_format == "json";
    if cli.version || cli.cmd.is_none() {
        // Like runc, neither --version nor the help opens --log.
        let _ = logging::init(None, json, cli.debug);
    }
    if cli.version {
        return finish(None, print_version(), false);
    }
    let Some(cmd) = cli.cmd.take() else {
        use clap::CommandFactory;
        let help = Cli::command().render_help().to_string();
        return finish(None, output::stdout(help.as_bytes()).map(|()| 0), false);
    };
    let sinks = timings::start(t0, cli.timings, cli.debug);
    let command = if kakuri_timings::enabled() {
        timings::command_name(&cmd)
    } else {
        String::new()
    };
    let log_to_file = match logging::init(cli.log.as_deref(), json, cli.debug) {
        Ok(to_file) => to_file,
        // runc: "open FILE: ...", exit 1. The log then goes to stderr, in the chosen format.
        Err(e) => return finish(None, Err(e), false),
    };
    let mode = match cli.rootless.as_deref().map(RootlessMode::parse).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return finish(None, Err(Error::msg(e)), log_to_file),
    };
    let root = match cli.root.clone() {
        Some(r) => r,
        // Neither `spec` nor `features` uses the state root: nothing is made for them.
        None if matches!(cmd, Cmd::Spec { .. } | Cmd::Features | Cmd::Check { .. }) => {
            PathBuf::from("/run/kakuri")
        }
        None => match default_root() {
            Ok(r) => r,
            Err(e) => return finish(None, Err(e), log_to_file),
        },
    };
    let mut rt = Runtime::new(root);
    rt.rootless = kakuri_container::rootless::Rootless::new(mode);
    rt.systemd_cgroup = cli.systemd_cgroup;
    rt.notify_socket = kakuri_container::notify::host_socket_from_env();
    rt.drop_ungrantable_caps =
        std::env::var_os(kakuri_container::DROP_UNGRANTABLE_CAPS_ENV).is_some_and(|v| v == "1");
    let (prefix, outcome) = dispatch(&rt, cmd, cli.criu.clone());
    let code = finish(prefix, outcome, log_to_file);
    timings::finish(&sinks, &command);
    code
}

/// Report the outcome of a command: its exit code, or its error logged once (and printed
/// plainly on stderr too when the log goes to a file).
fn finish(prefix: Option<&str>, outcome: Outcome, log_to_file: bool) -> ExitCode {
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = match prefix {
                // exec's errors carry runc's own "exec failed:" wording.
                Some("exec") | None => e.to_string(),
                Some(p) => format!("kakuri {p} failed: {e}"),
            };
            log::error!("{msg}");
            if log_to_file {
                output::stderr_line(&msg);
            }
            // runc's exec reports its own failures with 255, apart from the process's codes.
            ExitCode::from(if prefix == Some("exec") { 255 } else { 1 })
        }
    }
}

fn dispatch(rt: &Runtime, cmd: Cmd, criu: Option<PathBuf>) -> (Option<&'static str>, Outcome) {
    match cmd {
        Cmd::Checkpoint {
            c,
            parent_path,
            leave_running,
            pre_dump,
            status_fd,
            page_server,
        } => {
            let mut o = c.options(criu);
            o.parent_path = parent_path;
            o.leave_running = leave_running;
            o.pre_dump = pre_dump;
            o.status_fd = status_fd.filter(|f| *f != -1);
            o.page_server = page_server;
            (None, rt.checkpoint(&c.id, &o).map(|_| 0))
        }
        Cmd::Restore {
            c,
            bundle,
            detach,
            pid_file,
            console_socket,
            no_subreaper: _,
            no_pivot: _,
            lsm_profile,
            lsm_mount_context,
        } => {
            let mut o = c.options(criu);
            o.bundle = bundle;
            o.detach = detach;
            o.pid_file = pid_file;
            o.console_socket = console_socket;
            o.lsm_profile = lsm_profile.filter(|s| !s.is_empty());
            o.lsm_mount_context = lsm_mount_context.filter(|s| !s.is_empty());
            (None, rt.restore(&c.id, &o).map(|c| c.clamp(0, 255) as u8))
        }
        Cmd::Create(a) => (Some("create"), rt.create(&a.options()).map(|_| 0)),
        Cmd::Run {
            create,
            detach,
            keep,
            no_subreaper: _,
        } => (
            Some("run"),
            rt.run(&create.options(), detach, keep)
                .map(|c| c.clamp(0, 255) as u8),
        ),
        Cmd::Start { id } => (None, rt.start(&id).map(|_| 0)),
        // runc writes the state without a final newline.
        Cmd::State { id } => (
            None,
            rt.state(&id).and_then(|s| print_json(&s, true, false)),
        ),
        Cmd::Kill { id, signal, all } => (None, rt.kill_named(&id, &signal, all).map(|_| 0)),
        Cmd::Delete { id, force } => (None, rt.delete(&id, force).map(|_| 0)),
        Cmd::List { format, quiet } => (None, list(rt, &format, quiet)),
        Cmd::Pause { id } => (None, rt.pause(&id).map(|_| 0)),
        Cmd::Resume { id } => (None, rt.resume(&id).map(|_| 0)),
        Cmd::Ps {
            id,
            format,
            ps_args,
        } => (None, ps(rt, &id, &format, &ps_args)),
        Cmd::Spec { bundle, rootless } => (None, spec(&bundle, rootless)),
        Cmd::Exec(a) => {
            let o = kakuri_container::ExecOptions {
                id: a.id.clone(),
                process_file: a.process.clone(),
                args: a.command.clone(),
                tty: a.tty,
                console_socket: a.console_socket.clone(),
                cwd: a.cwd.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                preserve_fds: a.preserve_fds,
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                cgroup: a.cgroup.clone(),
                ignore_paused: a.ignore_paused,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
            };
            (Some("exec"), rt.exec(&o).map(|c| c.clamp(0, 255) as u8))
        }
        Cmd::Update(a) => (None, cgroup_cmds::update(rt, &a)),
        Cmd::Events(a) => (None, cgroup_cmds::events(rt, &a)),
        Cmd::Features => (
            None,
            print_json(&kakuri_container::features::features(), true, true),
        ),
        Cmd::Check { bundle, format } => (None, check(bundle.as_deref(), &format)),
    }
}

/// `check`: the report on stdout; exit status 1 when the bundle cannot run on this host.
fn check(bundle: Option<&std::path::Path>, format: &str) -> Outcome {
    use kakuri_container::check;
    let host = check::host();
    let b = bundle.map(|d| check::bundle(d, &host));
    let text = if format == "json" {
        check::render_json(&host, b.as_ref())
    } else {
        check::render_text(&host, b.as_ref())
    };
    std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())
        .map_err(|e| Error::io("write the report", e))?;
    Ok(u8::from(b.is_some_and(|b| !b.runnable)))
}

fn print_json<T: serde::Serialize + ?Sized>(v: &T, pretty: bool, newline: bool) -> Outcome {
    let s = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    }
    .map_err(|e| Error::msg(format!("encode JSON: {e}")))?;
    let end = if newline { "\n" } else { "" };
    output::stdout(format!("{}{end}", output::go_html_escape(&s)).as_bytes()).map(|()| 0)
}

/// `list`'s table as Go's tabwriter makes it for runc (minwidth 12, tabwidth 1, padding 3):
/// every column but the last padded with spaces to the widest cell + 3, at least 12.
fn table(rows: &[[&str; 6]]) -> String {
    let mut width = [0usize; 6];
    let mut total = 0;
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            let n = c.chars().count();
            *w = (*w).max(n + 3).max(12);
            total += n;
        }
    }
    let mut out = String::with_capacity(total + rows.len() * (width.iter().sum::<usize>() + 1));
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            out.push_str(c);
            if i + 1 < r.len() {
                out.extend(std::iter::repeat_n(' ', width[i] - c.chars().count()));
            }
        }
        out.push('\n');
    }
    out
}

fn list(rt: &Runtime, format: &str, quiet: bool) -> Outcome {
    let entries = rt.list()?;
    if quiet {
        let mut text = String::with_capacity(entries.iter().map(|e| e.id.len() + 1).sum());
        for e in &entries {
            text.push_str(&e.id);
            text.push('\n');
        }
        return output::stdout(text.as_bytes()).map(|()| 0);
    }
    if format == "json" {
        // runc prints `null` for no containers, and the keys in its struct's order.
        return if entries.is_empty() {
            output::stdout(b"null\n").map(|()| 0)
        } else {
            print_json(&entries, false, true)
        };
    }
    let pids: Vec<String> = entries.iter().map(|e| e.pid.to_string()).collect();
    let bundles: Vec<std::borrow::Cow<str>> =
        entries.iter().map(|e| e.bundle.to_string_lossy()).collect();
    let mut rows = Vec::with_capacity(entries.len() + 1);
    rows.push(["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]);
    for ((e, pid), bundle) in entries.iter().zip(&pids).zip(&bundles) {
        rows.push([&e.id, pid, e.status, bundle, &e.created, &e.owner]);
    }
    output::stdout(table(&rows).as_bytes()).map(|()| 0)
}

fn ps(rt: &Runtime, id: &str, format: &str, ps_args: &[String]) -> Outcome {
    let pids = rt.pids(id)?;
    if format == "json" {
        return print_json(&pids, false, true);
    }
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let output = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::io("run ps", e))?;
    if !output.status.success() {
        return Err(Error::msg(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or("");
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::msg("couldn't find PID field in ps output"))?;
    let mut out = format!("{header}\n");
    for l in lines {
        let pid: Option<i32> = l
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            out.push_str(l);
            out.push('\n');
        }
    }
    output::stdout(out.as_bytes()).map(|()| 0)
}

fn spec(bundle: &std::path::Path, rootless: bool) -> Outcome {
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::msg("File config.json exists. Remove it first"));
    }
    // SAFETY: getters of the process's ids cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    let cfg = kakuri_spec::default_config(rootless, uid, gid);
    let text = serde_json::to_string_pretty(&cfg).unwrap_or_default();
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(path.display(), e))?;
    Ok(0)
}
