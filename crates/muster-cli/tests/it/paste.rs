//! The command lines muster prints for pasting on another machine work as pasted: a server with
//! `--public-url` naming the address others reach it by prints, for `token create`, `workers
//! create` and `enrollment enable --generate`, a line that a shell runs as it is and that brings
//! a worker into the fleet. Pasted on a second loopback address, and in a network namespace of
//! its own joined to the server's by a veth pair (another host, as far as the network goes;
//! skipped, saying why, where namespaces cannot be made).

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
    /// state dir) with `muster` on the `PATH` and no `MUSTER_*` variable from the test's own;
    /// inside network namespace `netns` when one is given.
    fn run(line: &str, home: &Path, netns: Option<&str>) -> Self {
        std::fs::create_dir_all(home).expect("home");
        let bin_dir = Path::new(muster_bin()).parent().expect("bin dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let log = home.join("pasted.log");
        // `ip netns exec` enters the namespace and execs the shell: one process group still.
        let mut cmd = match netns {
            Some(ns) => {
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", ns, "sh"]);
                cmd
            }
            None => Command::new("sh"),
        };
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
    paste_each_printed_command("127.0.0.3", None);
}

/// The same from another network namespace: the pasted commands run where only the veth
/// address reaches the server (not its loopback), as on another host.
#[test]
fn printed_commands_work_as_pasted_in_another_network_namespace() {
    let Some(net) = Netns::create() else { return };
    paste_each_printed_command(&net.host_ip, Some(&net.name));
}

/// Starts a server on `ip` with `--public-url` naming it, and pastes each printed command line
/// into a shell (in network namespace `netns`, when given): each must bring its worker in.
fn paste_each_printed_command(ip: &str, netns: Option<&str>) {
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
    let _token_worker = Pasted::run(line, &server.path("home-token"), netns);
    server.wait_status("pasted-t", "connected", STARTUP);

    let out = server.cli_ok(&["workers", "create", "pasted-p"]);
    let line = command_line(&out, "MUSTER_WORKER_ID=");
    expect_complete(line);
    let _precreated = Pasted::run(line, &server.path("home-precreated"), netns);
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
    let _secret_worker = Pasted::run(line, &server.path("home-secret"), netns);
    let shown = server.wait_status(&host, "connected", STARTUP);
    if netns.is_some() {
        // It came from the namespace's side of the veth, not from this host's loopback.
        let from = shown["remote_addr"].as_str().unwrap_or_default().to_owned();
        assert!(
            !from.starts_with("127.") && from != ip && !from.is_empty(),
            "connected from `{from}`"
        );
    }

    // A rotated secret comes with its complete line too.
    let out = server.cli_ok(&["enrollment", "rotate", "--generate"]);
    expect_complete(command_line(&out, "MUSTER_AUTO_ENROLLMENT_KEY="));
}

/// A network namespace joined to this one by a veth pair on a small private subnet of its own,
/// both deleted when the test ends (deleting the namespace deletes its end of the pair, and
/// with it the other).
struct Netns {
    name: String,
    host_link: String,
    /// This side's address: the server listens on it.
    host_ip: String,
}

impl Netns {
    /// `None`, having said why, where namespaces cannot be made (not root, no `ip`, a
    /// container without the privilege).
    fn create() -> Option<Self> {
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        // A /30 of 10.200.0.0/13 picked at random, so parallel runs do not meet.
        let (b, c) = (200 + rand::random::<u8>() % 8, rand::random::<u8>());
        let d = (rand::random::<u8>() % 64) * 4;
        let net = Self {
            name: format!("muster-it-{tag}"),
            host_link: format!("mh{tag}"),
            host_ip: format!("10.{b}.{c}.{}", d + 1),
        };
        let peer_link = format!("mp{tag}");
        let peer_ip = format!("10.{b}.{c}.{}", d + 2);
        let ip = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("ip")
                .args(args)
                .output()
                .map_err(|e| format!("cannot run `ip`: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "`ip {}`: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            }
        };
        if let Err(why) = ip(&["netns", "add", &net.name]) {
            eprintln!("skipped: cannot make a network namespace ({why}); this test needs root");
            return None;
        }
        let ns = net.name.clone();
        let host_cidr = format!("{}/30", net.host_ip);
        let peer_cidr = format!("{peer_ip}/30");
        let steps: [Vec<&str>; 7] = [
            vec![
                "link",
                "add",
                &net.host_link,
                "type",
                "veth",
                "peer",
                "name",
                &peer_link,
            ],
            vec!["link", "set", &peer_link, "netns", &ns],
            vec!["addr", "add", &host_cidr, "dev", &net.host_link],
            vec!["link", "set", &net.host_link, "up"],
            vec!["-n", &ns, "addr", "add", &peer_cidr, "dev", &peer_link],
            vec!["-n", &ns, "link", "set", &peer_link, "up"],
            vec!["-n", &ns, "link", "set", "lo", "up"],
        ];
        for step in &steps {
            if let Err(why) = ip(step) {
                // `net` goes out of scope here and cleans up what was made.
                eprintln!("skipped: cannot join a network namespace to this one ({why})");
                return None;
            }
        }
        Some(net)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_link])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
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
