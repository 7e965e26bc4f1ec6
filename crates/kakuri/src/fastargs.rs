//! The command line of the short commands (`state`, `list`, `kill`, `delete`, `start`) and of
//! `create`, `run` and `exec` read without clap.
//!
//! clap builds the definition of every command and option before it parses anything: about
//! 0.3 ms of a `state` that takes 0.5 ms from `main` to its exit (`--timings`, quiet machine),
//! and the heap and code pages that go with it (0.4 ms of a `run`). These commands are what
//! clients such as containerd and podman call most often, with a handful of fixed options
//! (`create --bundle B --pid-file P [--console-socket S] ID`, `exec --process F --detach
//! --pid-file P ID`, `exec ID CMD...`), so [`parse`] reads exactly those forms and gives up
//! (`None`) on anything else: `--help`, `--version`, an unknown or repeated option, `--`, a
//! value that looks like an option, an `=`-less short option cluster, an option between
//! `exec`'s id and its command, anything that is not UTF-8. clap then parses the same
//! arguments as always, with its errors and help texts. What [`parse`] accepts it gives
//! exactly the value clap gives (the tests compare both on many command lines).

use std::path::PathBuf;

use super::{Cli, Cmd, CreateArgs, ExecArgs};

/// The global options of [`Cli`] that take a value, by long name.
const GLOBAL_VALUES: &[&str] = &["root", "log", "log-format", "criu"];
/// The global flags of [`Cli`] that clap accepts anywhere on the line.
const GLOBAL_FLAGS: &[&str] = &["debug", "timings", "systemd-cgroup"];

/// The parsed line, or `None` when clap must parse it.
pub(crate) fn parse(args: &[std::ffi::OsString]) -> Option<Cli> {
    let mut args = args.iter().map(|a| a.to_str());
    let mut cli = Cli {
        version: false,
        debug: false,
        timings: false,
        log: None,
        log_format: String::from("text"),
        root: None,
        criu: None,
        systemd_cgroup: false,
        rootless: None,
        cmd: None,
    };
    let mut seen: Vec<&str> = Vec::new();
    // Before the command: global options and --rootless (which clap takes only here).
    let name = loop {
        let a = args.next()??;
        if !a.starts_with('-') {
            break a;
        }
        let (key, inline) = long(a)?;
        if key == "rootless" {
            once(&mut seen, key)?;
            cli.rootless = Some(value(inline, &mut args)?.to_string());
        } else {
            global(&mut cli, &mut seen, key, inline, &mut args)?;
        }
    };
    let mut positional: Vec<&str> = Vec::new();
    let mut format: Option<&str> = None;
    let (mut quiet, mut all, mut force) = (false, false, false);
    let creates = name == "create" || name == "run";
    let mut create = CreateArgs {
        id: String::new(),
        bundle: PathBuf::from("."),
        console_socket: None,
        pid_file: None,
        no_pivot: false,
        no_new_keyring: false,
        preserve_fds: 0,
    };
    let (mut detach, mut keep, mut no_subreaper) = (false, false, false);
    // clap's defaults for every field (none, empty, false, 0).
    let mut exec = ExecArgs::default();
    while let Some(a) = args.next() {
        let a = a?;
        if name == "exec" && !positional.is_empty() {
            // exec's command starts after the id and takes every word after it as it is
            // (clap's trailing_var_arg). An option between the id and the command, or `--`
            // anywhere, is left to clap.
            if a == "--" || (exec.command.is_empty() && a.starts_with('-')) {
                return None;
            }
            exec.command.push(a.to_string());
            continue;
        }
        if !a.starts_with('-') {
            positional.push(a);
            continue;
        }
        // The command's own options, then the global ones.
        match (name, a) {
            ("list", "-q" | "--quiet") => flag(&mut seen, "quiet", &mut quiet)?,
            ("list", "-f") => {
                once(&mut seen, "format")?;
                format = Some(value(None, &mut args)?);
            }
            ("kill", "-a" | "--all") => flag(&mut seen, "all", &mut all)?,
            ("delete", "-f" | "--force") => flag(&mut seen, "force", &mut force)?,
            ("create" | "run", "-b") => {
                once(&mut seen, "bundle")?;
                create.bundle = PathBuf::from(value(None, &mut args)?);
            }
            ("run", "-d" | "--detach") => flag(&mut seen, "detach", &mut detach)?,
            ("run", "--keep") => flag(&mut seen, "keep", &mut keep)?,
            ("run", "--no-subreaper") => flag(&mut seen, "no-subreaper", &mut no_subreaper)?,
            ("exec", "-d" | "--detach") => flag(&mut seen, "detach", &mut exec.detach)?,
            ("exec", "-t" | "--tty") => flag(&mut seen, "tty", &mut exec.tty)?,
            ("exec", "--no-new-privs") => flag(&mut seen, "no-new-privs", &mut exec.no_new_privs)?,
            ("exec", "--ignore-paused") => {
                flag(&mut seen, "ignore-paused", &mut exec.ignore_paused)?
            }
            ("exec", "-p") => {
                once(&mut seen, "process")?;
                exec.process = Some(PathBuf::from(value(None, &mut args)?));
            }
            ("create" | "run", "--no-pivot") => flag(&mut seen, "no-pivot", &mut create.no_pivot)?,
            ("create" | "run", "--no-new-keyring") => {
                flag(&mut seen, "no-new-keyring", &mut create.no_new_keyring)?
            }
            _ => {
                let (key, inline) = long(a)?;
                if name == "list" && key == "format" {
                    once(&mut seen, key)?;
                    format = Some(value(inline, &mut args)?);
                } else if creates && matches!(key, "bundle" | "console-socket" | "pid-file") {
                    once(&mut seen, key)?;
                    let v = PathBuf::from(value(inline, &mut args)?);
                    match key {
                        "bundle" => create.bundle = v,
                        "console-socket" => create.console_socket = Some(v),
                        _ => create.pid_file = Some(v),
                    }
                } else if name == "exec"
                    && matches!(key, "process" | "console-socket" | "pid-file" | "cwd")
                {
                    once(&mut seen, key)?;
                    let v = Some(PathBuf::from(value(inline, &mut args)?));
                    match key {
                        "process" => exec.process = v,
                        "console-socket" => exec.console_socket = v,
                        "pid-file" => exec.pid_file = v,
                        _ => exec.cwd = v,
                    }
                } else if (creates || name == "exec") && key == "preserve-fds" {
                    once(&mut seen, key)?;
                    let v = value(inline, &mut args)?;
                    // Plain decimal digits only; clap's own reading of anything else stands.
                    if !v.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let n = v.parse().ok()?;
                    if name == "exec" {
                        exec.preserve_fds = n;
                    } else {
                        create.preserve_fds = n;
                    }
                } else {
                    global(&mut cli, &mut seen, key, inline, &mut args)?;
                }
            }
        }
    }
    let mut pos = positional.into_iter();
    let id = |p: Option<&str>| p.map(str::to_string);
    cli.cmd = Some(match name {
        "state" => Cmd::State {
            id: id(pos.next())?,
        },
        "start" => Cmd::Start {
            id: id(pos.next())?,
        },
        "delete" => Cmd::Delete {
            id: id(pos.next())?,
            force,
        },
        "kill" => Cmd::Kill {
            id: id(pos.next())?,
            signal: pos.next().unwrap_or("SIGTERM").to_string(),
            all,
        },
        "create" => {
            create.id = id(pos.next())?;
            Cmd::Create(create)
        }
        "run" => {
            create.id = id(pos.next())?;
            Cmd::Run {
                create,
                detach,
                keep,
                no_subreaper,
            }
        }
        "exec" => {
            exec.id = id(pos.next())?;
            Cmd::Exec(Box::new(exec))
        }
        "list" => Cmd::List {
            format: match format.unwrap_or("table") {
                f @ ("table" | "json") => f.to_string(),
                _ => return None,
            },
            quiet,
        },
        _ => return None,
    });
    // Nothing left over (clap: "unexpected argument").
    if pos.next().is_some() {
        return None;
    }
    Some(cli)
}

/// `--name` or `--name=value`: the name and the inline value. Short options are not read
/// here (apart from the commands' own, matched whole).
fn long(a: &str) -> Option<(&str, Option<&str>)> {
    let rest = a.strip_prefix("--")?;
    match rest.split_once('=') {
        Some((k, v)) => Some((k, Some(v))),
        None => Some((rest, None)),
    }
}

/// The value of an option: inline (`--x=v`) or the next argument, which must not look like
/// an option (clap's rules there are its own) and must not be empty.
fn value<'a>(
    inline: Option<&'a str>,
    args: &mut impl Iterator<Item = Option<&'a str>>,
) -> Option<&'a str> {
    let v = match inline {
        Some(v) => v,
        None => args.next()??,
    };
    (!v.is_empty() && !v.starts_with('-')).then_some(v)
}

/// Each option at most once (clap refuses most repeats).
fn once<'a>(seen: &mut Vec<&'a str>, key: &'a str) -> Option<()> {
    if seen.contains(&key) {
        return None;
    }
    seen.push(key);
    Some(())
}

fn flag<'a>(seen: &mut Vec<&'a str>, key: &'a str, to: &mut bool) -> Option<()> {
    once(seen, key)?;
    *to = true;
    Some(())
}

fn global<'a>(
    cli: &mut Cli,
    seen: &mut Vec<&'a str>,
    key: &'a str,
    inline: Option<&'a str>,
    args: &mut impl Iterator<Item = Option<&'a str>>,
) -> Option<()> {
    if GLOBAL_FLAGS.contains(&key) {
        if inline.is_some() {
            return None;
        }
        once(seen, key)?;
        match key {
            "debug" => cli.debug = true,
            "timings" => cli.timings = true,
            _ => cli.systemd_cgroup = true,
        }
        return Some(());
    }
    if !GLOBAL_VALUES.contains(&key) {
        return None;
    }
    once(seen, key)?;
    let v = value(inline, args)?;
    match key {
        "root" => cli.root = Some(PathBuf::from(v)),
        "log" => cli.log = Some(PathBuf::from(v)),
        "criu" => cli.criu = Some(PathBuf::from(v)),
        _ if v == "text" || v == "json" => cli.log_format = v.to_string(),
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    fn check(line: &str) -> bool {
        let argv: Vec<std::ffi::OsString> = line.split_whitespace().map(Into::into).collect();
        let fast = super::parse(&argv);
        let clap = super::super::Cli::try_parse_from(std::iter::once("kakuri".into()).chain(argv));
        match fast {
            Some(f) => {
                let c = clap.unwrap_or_else(|e| panic!("{line}: clap refuses it: {e}"));
                assert_eq!(format!("{f:?}"), format!("{c:?}"), "{line}");
                true
            }
            None => false,
        }
    }

    #[test]
    fn same_as_clap() {
        for line in [
            "state x",
            "--root /r state x",
            "--root=/r state x",
            "state --root /r x",
            "state x --root /r",
            "--debug --log /l --log-format json state x",
            "--log-format=json --timings state x --systemd-cgroup",
            "--rootless true --root /r state x",
            "--criu /c start x",
            "list",
            "list -q",
            "list --quiet",
            "list -f json",
            "list --format json",
            "list --format=json",
            "list -f table -q --root /r",
            "--root /r list --format json --quiet",
            "kill x",
            "kill x KILL",
            "kill x 9 --all",
            "kill -a x SIGKILL",
            "kill --all x TERM --root /r",
            "delete x",
            "delete -f x",
            "delete x --force",
            "delete --force --root=/tmp/r x",
            "start x",
            "--systemd-cgroup --root /r delete x",
            "create x",
            "create -b /b x",
            "create --bundle /b x",
            "create --bundle=/b --pid-file=/p x",
            "--root /r --log /l --log-format json create --bundle /b --pid-file /p x",
            "create --bundle /b --pid-file /p --console-socket /s x",
            "create x --bundle /b",
            "create --no-pivot --no-new-keyring --preserve-fds 2 -b /b x",
            "create --preserve-fds=0 x",
            "--systemd-cgroup --root /r create --bundle /b --pid-file /p x",
            "run x",
            "run -d -b /b x",
            "run --detach --keep --no-subreaper x",
            "run --bundle /b --pid-file /p --console-socket /s --detach x",
            "--debug run --no-pivot x --root /r",
            "exec x",
            "exec x true",
            "exec x sh -c true",
            "exec x ls -la --color",
            "exec x sh -c echo --root /r",
            "exec -t x sh",
            "exec --tty --detach x sh",
            "exec -d -p /p x",
            "exec --process /p --detach --pid-file /f x",
            "--root /r --log /l --log-format json exec --process /p --detach --pid-file /f x",
            "exec --process=/p --detach --pid-file=/f --console-socket /s --tty x",
            "exec --pid-file /f --process /p -d --console-socket /s x",
            "exec --preserve-fds 1 --process /p x",
            "exec --cwd /tmp --no-new-privs --ignore-paused x pwd",
            "exec --root /r x true",
            "--systemd-cgroup exec x true",
        ] {
            assert!(check(line), "{line}: expected the fast path");
        }
    }

    #[test]
    fn leaves_the_rest_to_clap() {
        for line in [
            "",
            "--help",
            "state --help",
            "-h state x",
            "--version",
            "-v",
            "state",
            "state x y",
            "state -- x",
            "state -x",
            "state --nope x",
            "--root state x",
            "--root= state x",
            "--root /a --root /b state x",
            "--debug --debug state x",
            "--debug=true state x",
            "--log-format xml state x",
            "state x --rootless true",
            "list -f yaml",
            "list -fjson",
            "list -qf json",
            "list x",
            "list -f",
            "list -q -q",
            "kill x KILL extra",
            "kill x -9",
            "kill -aa x",
            "delete -ff x",
            "delete x --all",
            "create",
            "run",
            "create x y",
            "create -bx x",
            "create -b",
            "create --bundle",
            "create --bundle= x",
            "create -b /a -b /b x",
            "create -b /a --bundle /b x",
            "create --preserve-fds x x",
            "create --preserve-fds -1 x",
            "create --preserve-fds +1 x",
            "create --preserve-fds 99999999999 x",
            "create --detach x",
            "create --keep x",
            "create -d x",
            "run -dx",
            "run -d -d x",
            "run --keep=true x",
            "run --help",
            "create --pid-file -p x",
            "exec",
            "exec -- x true",
            "exec x -- true",
            "exec x env -- true",
            "exec x -t sh",
            "exec x --root /r true",
            "exec -p x",
            "exec -p /a --process /b x",
            "exec -d -d x",
            "exec -dt x sh",
            "exec --detach=true x",
            "exec -e A=1 x env",
            "exec --env A=1 x env",
            "exec -u 1 x id",
            "exec --cap CAP_KILL x true",
            "exec --cgroup x:y x true",
            "exec --preserve-fds -1 x true",
            "exec --bundle /b x true",
            "exec --keep x true",
            "features",
            "stat x",
        ] {
            assert!(!check(line), "{line}: expected clap to parse it");
        }
    }
}
