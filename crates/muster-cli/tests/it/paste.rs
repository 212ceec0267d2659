//! The command lines muster prints for pasting on another machine work as pasted: a server on a
//! second loopback address with `--public-url` naming it prints, for `token create`, `workers
//! create` and `enrollment enable --generate`, a line that a shell runs as it is and that brings
//! a worker into the fleet.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::harness::{STARTUP, Server, ServerOpts, muster_bin};

/// A pasted command running in a shell of its own (its own process group, ended with the test).
struct Pasted {
    child: Child,
    log: PathBuf,
}

impl Pasted {
    /// Runs `line` with `sh -c`, as a user pasting it would, in a fresh home (so a fresh default
    /// state dir) with `muster` on the `PATH` and no `MUSTER_*` variable from the test's own.
    fn run(line: &str, home: &Path) -> Self {
        std::fs::create_dir_all(home).expect("home");
        let bin_dir = Path::new(muster_bin()).parent().expect("bin dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = home.join("pasted.log");
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(line);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MUSTER_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", home)
            .env("XDG_DATA_HOME", home.join("xdg-data"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(home.join("pasted.err")).expect("log"))
            .process_group(0);
        Self {
            child: cmd.spawn().expect("run sh"),
            log,
        }
    }
}

impl Drop for Pasted {
    fn drop(&mut self) {
        // The shell and the worker it started: the whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
        let _ = &self.log;
    }
}

/// The line of `output` a user would paste: the command line that starts with `start`.
fn command_line<'a>(output: &'a str, start: &str) -> &'a str {
    output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(start) && l.contains("muster worker"))
        .unwrap_or_else(|| panic!("no line starting with `{start}` in:\n{output}"))
}

/// A free port on `ip`, for a server that must know its URL before it starts.
fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn printed_commands_name_the_public_url_and_work_as_pasted() {
    let ip = "127.0.0.3";
    let port = free_port(ip);
    let public = format!("https://{ip}:{port}");
    let server = Server::start(ServerOpts {
        listen: Some(format!("{ip}:{port}")),
        env: vec![("MUSTER_PUBLIC_URL".into(), public.clone())],
        ..ServerOpts::default()
    });
    let fingerprint = server.fingerprint();
    let expect_complete = |line: &str| {
        assert!(line.contains(&format!("--url {public}")), "{line}");
        assert!(
            line.contains(&format!("--ca-fingerprint {fingerprint}")),
            "{line}"
        );
    };

    let out = server.cli_ok(&["token", "create", "pasted-t", "--duration", "1h"]);
    let line = command_line(&out, "muster worker");
    expect_complete(line);
    let _token_worker = Pasted::run(line, &server.path("home-token"));
    server.wait_status("pasted-t", "connected", STARTUP);

    let out = server.cli_ok(&["workers", "create", "pasted-p"]);
    let line = command_line(&out, "MUSTER_WORKER_ID=");
    expect_complete(line);
    let _precreated = Pasted::run(line, &server.path("home-precreated"));
    server.wait_status("pasted-p", "connected", STARTUP);

    let out = server.cli_ok(&["enrollment", "enable", "--generate"]);
    let line = command_line(&out, "MUSTER_AUTO_ENROLLMENT_KEY=");
    expect_complete(line);
    let host = String::from_utf8(
        Command::new("hostname")
            .arg("-s")
            .output()
            .expect("hostname")
            .stdout,
    )
    .expect("utf-8")
    .trim()
    .to_lowercase();
    let _secret_worker = Pasted::run(line, &server.path("home-secret"));
    server.wait_status(&host, "connected", STARTUP);

    // A rotated secret comes with its complete line too.
    let out = server.cli_ok(&["enrollment", "rotate", "--generate"]);
    expect_complete(command_line(&out, "MUSTER_AUTO_ENROLLMENT_KEY="));
}

#[test]
fn a_public_url_that_is_not_a_url_is_refused_at_start() {
    let home = tempfile::tempdir().expect("temp");
    let out = crate::harness::muster(home.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--public-url",
            "muster.example.com",
        ])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`--public-url` `muster.example.com` is not a server URL"),
        "{stderr}"
    );
    assert!(stderr.contains("hint:"), "{stderr}");
}
