//! Deciding how a worker's jobs will run, once, when it starts: as whom (`--job-user`), what they
//! may write (`--job-writable`), what is protected, and whether Landlock works here at all. That
//! last answer is said once in the log (a warning when jobs are not confined) and sent to the
//! server with every connection.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use muster_proto::confinement::Confinement;
use tokio::process::Command;

use super::plan::{self, Overlap};
use super::spec::{JobUser, Protection};
use super::{SELF_EXE, SUBCOMMAND};
use crate::error::WorkerError;
use crate::jobs::{JobLauncher, JobOptions, Launcher};

/// What every confined job may write besides its own directory (and the harmless devices).
const ALWAYS_WRITABLE: [&str; 1] = ["/tmp"];
/// The probe is one short process; a launcher that takes longer than this is broken.
const PROBE_WITHIN: Duration = Duration::from_secs(10);

/// How jobs will run, and what the worker tells the server about it.
#[derive(Debug, Clone)]
pub struct JobSetup {
    pub options: JobOptions,
    pub confinement: Confinement,
}

impl JobSetup {
    /// `muster worker`: checks the job user and the writable paths (a configuration error ends
    /// the worker, exit 2) and protects the state dir.
    pub async fn worker(
        job_user: Option<&str>,
        job_writable: &[PathBuf],
        state_root: &Path,
    ) -> Result<Self, WorkerError> {
        let user = job_user
            .map(|name| resolve_user(name, nix::unistd::geteuid().as_raw()))
            .transpose()?;
        let writable = job_writable
            .iter()
            .map(|path| writable_path(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::finish(vec![canonical(state_root)], writable, user).await)
    }

    /// The built-in worker: protects the server's data dir (its own state dir lies inside) and
    /// the files the server uses from outside it.
    pub async fn builtin(protected: &[PathBuf]) -> Self {
        Self::finish(
            protected.iter().map(|p| canonical(p)).collect(),
            Vec::new(),
            None,
        )
        .await
    }

    async fn finish(
        protected: Vec<PathBuf>,
        writable: Vec<PathBuf>,
        user: Option<JobUser>,
    ) -> Self {
        // The worker holds credentials in memory and perhaps in its environment: no process of
        // its user without CAP_SYS_PTRACE may trace it or read its /proc files, sandboxed or not
        // (this also turns off its core dumps).
        if let Err(e) = nix::sys::prctl::set_dumpable(false) {
            tracing::warn!(error = %e, "cannot make the worker undumpable");
        }
        let exe = PathBuf::from(SELF_EXE);
        let confinement = probe(&exe).await;
        let mut writable: Vec<PathBuf> = ALWAYS_WRITABLE
            .iter()
            .map(PathBuf::from)
            .chain(writable)
            .collect();
        writable.dedup();
        let protection = match &confinement {
            Confinement::Landlock { abi } => {
                tracing::info!(
                    abi = *abi,
                    "jobs are confined with Landlock: they cannot reach the worker's credentials"
                );
                say_overlaps(&protected, &writable);
                Some(Protection {
                    protected,
                    writable,
                })
            }
            Confinement::Unconfined { reason } => {
                tracing::warn!(
                    "jobs are not confined, so a job can read this worker's credentials: {reason}"
                );
                None
            }
        };
        if let Some(user) = &user {
            tracing::info!(user = %user.name, uid = user.uid, "jobs run as the job user");
        }
        let service = super::LaunchService::start(&exe, crate::jobs::CREDENTIAL_VARS).map(Arc::new);
        if service.is_none() {
            tracing::debug!("no launch service: each job starts the launcher anew");
        }
        Self {
            options: JobOptions {
                launcher: JobLauncher::Confined(Launcher {
                    exe,
                    protection,
                    user,
                    service,
                }),
            },
            confinement,
        }
    }
}

/// Resolves `--job-user`, which only a worker running as root (`euid` 0) can switch to.
fn resolve_user(name: &str, euid: u32) -> Result<JobUser, WorkerError> {
    if euid != 0 {
        return Err(WorkerError::config(
            format!(
                "`--job-user {name}` needs the worker to run as root, and it runs as uid {euid}"
            ),
            "start the worker as root, or drop `--job-user` (MUSTER_JOB_USER): jobs then run as the worker's user",
        ));
    }
    JobUser::resolve(name).map_err(|e| {
        WorkerError::config(
            e,
            "name an existing user with `--job-user` (MUSTER_JOB_USER), for example `nobody`",
        )
    })
}

/// A `--job-writable` path, as the kernel will see it (symlinks resolved). It must exist.
fn writable_path(path: &Path) -> Result<PathBuf, WorkerError> {
    path.canonicalize().map_err(|e| {
        WorkerError::config(
            format!("the job-writable path `{}` cannot be used: {e}", path.display()),
            "create it before starting the worker, or remove it from `--job-writable` (MUSTER_JOB_WRITABLE)",
        )
    })
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

fn say_overlaps(protected: &[PathBuf], writable: &[PathBuf]) {
    for overlap in plan::overlaps(protected, writable) {
        match overlap {
            Overlap::Inside { writable } => tracing::warn!(
                "jobs cannot write `{}`: it is inside the protected `{}`",
                writable.display(),
                protected
                    .iter()
                    .find(|p| writable.starts_with(p))
                    .map_or_else(String::new, |p| p.display().to_string())
            ),
            Overlap::Holds {
                writable,
                protected,
            } => tracing::warn!(
                "jobs can write in `{}` only beneath the entries that exist when they start, not directly in it: it holds the protected `{}` (keep the state dir out of writable places)",
                writable.display(),
                protected.display()
            ),
        }
    }
}

/// Asks the launcher to confine itself as a job would be and say how that went.
async fn probe(exe: &Path) -> Confinement {
    let run = Command::new(exe)
        .args([SUBCOMMAND, "--probe"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let unconfined = |reason: String| Confinement::Unconfined { reason };
    match tokio::time::timeout(PROBE_WITHIN, run).await {
        Ok(Ok(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            text.trim().parse().unwrap_or_else(|_| {
                unconfined(format!("the job launcher answered `{}`", text.trim()))
            })
        }
        Ok(Ok(out)) => unconfined(format!(
            "the job launcher failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Ok(Err(e)) => unconfined(format!(
            "cannot run the job launcher `{}`: {e}",
            exe.display()
        )),
        Err(_) => unconfined(format!(
            "the job launcher did not answer within {} s",
            PROBE_WITHIN.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_user_needs_a_root_worker() {
        let err = resolve_user("nobody", 1000).unwrap_err();
        assert_eq!(err.exit_code(), crate::classify::code::CONFIG);
        assert!(
            err.message().contains("needs the worker to run as root"),
            "{err}"
        );
        let err = resolve_user("no-such-user-here", 0).unwrap_err();
        assert_eq!(err.exit_code(), crate::classify::code::CONFIG);
        assert!(err.message().contains("no-such-user-here"), "{err}");
    }

    #[test]
    fn a_job_user_is_resolved_with_its_groups() {
        let user = resolve_user("root", 0).unwrap();
        assert_eq!((user.uid, user.gid), (0, 0));
        assert!(user.groups.contains(&0), "{user:?}");
    }

    #[test]
    fn a_missing_writable_path_is_a_configuration_error() {
        let err = writable_path(Path::new("/definitely/not/here")).unwrap_err();
        assert_eq!(err.exit_code(), crate::classify::code::CONFIG);
        assert!(err.message().contains("/definitely/not/here"), "{err}");
        assert_eq!(
            writable_path(Path::new("/tmp/")).unwrap(),
            PathBuf::from("/tmp")
        );
    }
}
