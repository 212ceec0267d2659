//! What the worker tells the launcher about one job: one JSON line on the launcher's control
//! socket (its stdin), so nothing about the job shows in `ps` beyond the command itself.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One job, as the launcher runs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// The worker's pid: a launcher whose parent is already someone else (the worker died while
    /// it started) runs nothing.
    pub worker_pid: u32,
    /// The command and its arguments (the environment is the launcher's own).
    pub command: Vec<String>,
    /// The job's directory, its working directory.
    pub dir: PathBuf,
    /// The Landlock protection, or `None` where Landlock is unavailable.
    pub protection: Option<Protection>,
    /// Run the command as this user (the worker runs as root).
    pub user: Option<JobUser>,
    /// How long the job's processes have after SIGTERM before SIGKILL.
    pub kill_grace_ms: u64,
}

/// The paths a confined job must not use, and the ones it may write besides its own directory.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Protection {
    pub protected: Vec<PathBuf>,
    pub writable: Vec<PathBuf>,
}

/// The user jobs run as (`--job-user`), resolved once when the worker starts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, from the group database.
    pub groups: Vec<u32>,
    pub home: PathBuf,
}

impl JobUser {
    /// Looks `name` up in the user and group databases.
    pub fn resolve(name: &str) -> Result<Self, String> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| format!("cannot look up user `{name}`: {e}"))?
            .ok_or_else(|| format!("there is no user `{name}`"))?;
        let cname = std::ffi::CString::new(user.name.clone())
            .map_err(|_| format!("user name `{name}` holds a NUL byte"))?;
        let groups = nix::unistd::getgrouplist(&cname, user.gid)
            .map_err(|e| format!("cannot list the groups of `{name}`: {e}"))?;
        Ok(Self {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: user.dir,
        })
    }
}
