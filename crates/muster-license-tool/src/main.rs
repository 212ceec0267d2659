//! `muster-license`: the issuer's tool. It makes issuer key pairs, signs licenses with the
//! secret half, and inspects a license the way a server would. It is not part of the `muster`
//! binary: an operator of a fleet never needs it, and its secret keys never go near a server.
//!
//! ```text
//! muster-license keygen --out acme-issuer        # acme-issuer.key (owner-only), acme-issuer.pub
//! muster-license sign --key acme-issuer.key --licensee "ACME Corp" --max-workers 50 --expires-in 365d
//! muster-license inspect --issuer-key acme-issuer.pub license.txt
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use muster_core::Timestamp;
use muster_license::{IssuerSecret, Issuers, Terms};

#[derive(Debug, Parser)]
#[command(
    name = "muster-license",
    version,
    about = "Make issuer keys, sign muster licenses, inspect them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make an issuer key pair: PREFIX.key (secret, owner-only) and PREFIX.pub (public).
    Keygen {
        /// Path and file name prefix of the two files.
        #[arg(long, value_name = "PREFIX")]
        out: PathBuf,
    },
    /// Sign a license and print it on stdout.
    Sign {
        /// The issuer's secret key file (`k4.secret.…`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Who the license is for.
        #[arg(long)]
        licensee: String,
        /// External workers allowed; without it, no limit.
        #[arg(long)]
        max_workers: Option<u64>,
        /// Valid for this long from its issue time (`365d`).
        #[arg(long, value_name = "DURATION", conflicts_with = "expires_at")]
        expires_in: Option<String>,
        /// Valid until this time (RFC 3339).
        #[arg(long, value_name = "TIME")]
        expires_at: Option<String>,
        /// Issue time (RFC 3339); now by default.
        #[arg(long, value_name = "TIME")]
        issued_at: Option<String>,
        /// The license's id; a random one by default.
        #[arg(long)]
        id: Option<String>,
    },
    /// Verify a license against issuer keys and print its terms as JSON.
    Inspect {
        /// A trusted issuer's public key file (repeatable); muster's own key is always trusted.
        #[arg(long = "issuer-key", value_name = "FILE")]
        issuer_keys: Vec<PathBuf>,
        /// The license file; `-` or nothing reads standard input.
        file: Option<PathBuf>,
    },
}

/// A failure: one line and a hint, as `muster` prints them.
struct Failure {
    message: String,
    hint: &'static str,
}

fn fail(message: impl Into<String>, hint: &'static str) -> Failure {
    Failure {
        message: message.into(),
        hint,
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}; hint: {}", failure.message, failure.hint);
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Keygen { out } => keygen(&out),
        Command::Sign {
            key,
            licensee,
            max_workers,
            expires_in,
            expires_at,
            issued_at,
            id,
        } => {
            let secret = IssuerSecret::parse(&read(&key)?)
                .map_err(|e| fail(e.to_string(), "pass the `.key` file `keygen` wrote"))?;
            let issued_at = match issued_at {
                Some(text) => time(&text)?,
                None => now(),
            };
            let expires_at = match (expires_in, expires_at) {
                (Some(duration), None) => {
                    let duration = muster_core::parse_duration(&duration)
                        .map_err(|e| fail(e.to_string(), "for example `--expires-in 365d`"))?;
                    issued_at.saturating_add(duration)
                }
                (None, Some(text)) => time(&text)?,
                _ => {
                    return Err(fail(
                        "a license needs an expiry",
                        "pass `--expires-in 365d` or `--expires-at 2027-01-01T00:00:00Z`",
                    ));
                }
            };
            let terms = Terms {
                id: id.unwrap_or_else(random_id),
                licensee,
                max_workers,
                issued_at,
                expires_at,
            };
            let token =
                muster_license::sign(&secret, &terms).map_err(|e| fail(e.to_string(), e.hint()))?;
            // What was signed must read back: the same checks a server makes.
            let mut issuers = Issuers::muster();
            issuers.add(secret.public().clone());
            muster_license::verify(&token, &issuers).map_err(|e| fail(e.to_string(), e.hint()))?;
            println!("{token}");
            Ok(())
        }
        Command::Inspect { issuer_keys, file } => {
            let mut issuers = Issuers::muster();
            for path in &issuer_keys {
                issuers
                    .add_file_contents(&read(path)?)
                    .map_err(|e| fail(e.to_string(), "pass the `.pub` file `keygen` wrote"))?;
            }
            let text = match file.as_deref() {
                None => read_stdin()?,
                Some(path) if path == Path::new("-") => read_stdin()?,
                Some(path) => read(path)?,
            };
            let license = muster_license::verify(&text, &issuers)
                .map_err(|e| fail(e.to_string(), e.hint()))?;
            let dates = muster_license::check_dates(&license, now()).err();
            let shown = serde_json::json!({
                "id": license.id,
                "licensee": license.licensee,
                "max_workers": license.max_workers,
                "issued_at": license.issued_at.to_rfc3339(),
                "expires_at": license.expires_at.to_rfc3339(),
                "issuer": license.issuer,
                "installable_now": dates.is_none(),
                "problem": dates.map(|e| e.to_string()),
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&shown).unwrap_or_default()
            );
            Ok(())
        }
    }
}

fn keygen(out: &Path) -> Result<(), Failure> {
    let secret_path = with_suffix(out, "key");
    let public_path = with_suffix(out, "pub");
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(fail(
                format!("`{}` exists already", path.display()),
                "choose another `--out`; an issuer key is never overwritten",
            ));
        }
    }
    let secret = IssuerSecret::generate().map_err(|e| fail(e.to_string(), "try again"))?;
    let cannot_write = "check that the directory exists and is writable";
    muster_fs::write_private(&secret_path, format!("{}\n", secret.to_paserk()).as_bytes())
        .map_err(|e| fail(e.to_string(), cannot_write))?;
    muster_fs::write_atomic(
        &public_path,
        format!("{}\n", secret.public().to_paserk()).as_bytes(),
        0o644,
    )
    .map_err(|e| fail(e.to_string(), cannot_write))?;
    println!("secret key: {} (keep it safe)", secret_path.display());
    println!("public key: {}", public_path.display());
    println!("issuer: {}", secret.public().id());
    Ok(())
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        fail(
            format!("cannot read `{}`: {e}", path.display()),
            "check the path",
        )
    })
}

fn read_stdin() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        fail(
            format!("cannot read standard input: {e}"),
            "pipe the license in",
        )
    })?;
    Ok(text)
}

fn time(text: &str) -> Result<Timestamp, Failure> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        fail(
            format!("`{text}` is not an RFC 3339 time"),
            "for example `2027-01-01T00:00:00Z`",
        )
    })
}

fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_unix_millis(millis)
}

fn random_id() -> String {
    format!("lic_{}", hex::encode(rand::random::<[u8; 8]>()))
}
