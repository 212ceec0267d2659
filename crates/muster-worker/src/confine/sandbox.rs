//! The Landlock side of confinement: turning [`plan::rules`] into a ruleset the launcher applies
//! to a job between fork and exec, and the probe that tells a starting worker whether Landlock
//! works here at all.
//!
//! What a job may use: read and execute everything but the protected paths and `/dev`; write its
//! own directory, `/tmp` and what the operator allows; of `/dev`, only the harmless devices
//! ([`DEVICES`]): a root job could otherwise read a raw disk and the state dir with it. No rule
//! allows making device nodes.
//!
//! Besides the file-system rules, a job is scoped for signals (Landlock ABI 6): it cannot signal
//! the worker or the launcher. Landlock itself keeps a confined process from tracing any process
//! outside its sandbox, or reading its `/proc/PID/mem`, `/proc/PID/environ` and the like (for a
//! root job only once the launcher has also taken `CAP_SYS_ADMIN` and `CAP_PERFMON` away, which
//! let a process read any other's environment and memory map past the ptrace check).

use std::fs::File;
use std::path::{Path, PathBuf};

use landlock::{
    ABI, Access, AccessFs, BitFlags, LandlockStatus, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreated, RulesetCreatedAttr, RulesetStatus, Scope,
};
use muster_proto::confinement::Confinement;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use super::plan::{self, Access as Level, Rule, Tree};

/// The Landlock ABI whose rights muster handles. On an older kernel the rights it does not know
/// are left out (best effort); a newer kernel's extra rights are not asked for.
pub const TARGET_ABI: ABI = ABI::V7;

/// The directory entries of the real file system.
pub struct RealTree;

impl Tree for RealTree {
    fn entries(&self, dir: &Path) -> Vec<PathBuf> {
        // An unreadable directory yields no entries: everything beneath it stays denied.
        let Ok(read) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut entries: Vec<PathBuf> = read.flatten().map(|e| e.path()).collect();
        entries.sort();
        entries
    }
}

/// The devices a job may use, read and write, with everything else in `/dev` denied.
pub const DEVICES: [&str; 9] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
    "/dev/pts",
    "/dev/shm",
];

fn rights(level: Level) -> BitFlags<AccessFs> {
    match level {
        Level::List => AccessFs::ReadDir.into(),
        Level::Read => AccessFs::from_read(TARGET_ABI),
        // Never device nodes: a job that can make one can read the disk under every rule.
        Level::Write => {
            AccessFs::from_all(TARGET_ABI) & !(AccessFs::MakeChar | AccessFs::MakeBlock)
        }
    }
}

/// Builds the ruleset for `rules`, ready to be applied with `restrict_self`.
///
/// Each path is opened without following a symlink: a rule is made on what the path is now,
/// never on where a link (which someone could have just swapped in) points. Symlinks get no rule
/// of their own; what they point to is governed by its own rules. A path that vanished since the
/// plan was made is skipped.
pub fn ruleset(rules: &[Rule]) -> Result<RulesetCreated, String> {
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .and_then(|r| r.scope(Scope::Signal))
        .and_then(Ruleset::create)
        .map_err(|e| format!("cannot create the Landlock ruleset: {e}"))?;
    for rule in rules {
        let Ok(fd) = nix::fcntl::open(
            &rule.path,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let file = File::from(fd);
        let Ok(meta) = file.metadata() else { continue };
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut access = rights(rule.access);
        if !meta.is_dir() {
            access &= AccessFs::from_file(TARGET_ABI);
        }
        if access.is_empty() {
            continue;
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(file, access))
            .map_err(|e| {
                format!(
                    "cannot add a Landlock rule for `{}`: {e}",
                    rule.path.display()
                )
            })?;
    }
    Ok(ruleset)
}

/// Applies `ruleset` to the calling thread (the job's process, before it execs). Refuses a
/// ruleset the kernel did not enforce: a job the worker says is confined must be.
pub fn apply(ruleset: RulesetCreated) -> std::io::Result<()> {
    let status = ruleset.restrict_self().map_err(std::io::Error::other)?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(std::io::Error::other(
            "the kernel did not enforce the Landlock ruleset",
        ));
    }
    Ok(())
}

/// What Landlock can do here, found by confining the calling process (`muster __job-exec
/// --probe`, a throwaway process) exactly as a job would be.
pub fn probe() -> Confinement {
    let status = ruleset(&[]).and_then(|r| r.restrict_self().map_err(|e| e.to_string()));
    match status {
        Ok(status) => match (status.ruleset, status.landlock) {
            (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => Confinement::Unconfined {
                reason: "Landlock is built into this kernel but not enabled (add `landlock` to the `lsm=` boot parameter)".into(),
            },
            (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented) => {
                Confinement::Unconfined {
                    reason: "this kernel has no Landlock (Linux 5.13 or later is needed)".into(),
                }
            }
            (RulesetStatus::NotEnforced, _) => Confinement::Unconfined {
                reason: "the kernel did not enforce a Landlock ruleset".into(),
            },
            (_, status) => Confinement::Landlock {
                abi: abi_number(status).min(TARGET_ABI as u32),
            },
        },
        Err(e) => Confinement::Unconfined {
            reason: format!("Landlock failed: {e}"),
        },
    }
}

fn abi_number(status: LandlockStatus) -> u32 {
    match status {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => 0,
    }
}

/// The rules for one job, from the real file system as it is now.
pub fn job_rules(protected: &[PathBuf], writable: &[PathBuf], own: &Path) -> Vec<Rule> {
    let mut protected = protected.to_vec();
    protected.push(PathBuf::from("/dev"));
    let exempt: Vec<PathBuf> = std::iter::once(own.to_path_buf())
        .chain(DEVICES.iter().map(PathBuf::from))
        .collect();
    plan::rules(
        &plan::Grants {
            protected: &protected,
            read: &[PathBuf::from("/")],
            write: writable,
            exempt: &exempt,
        },
        &RealTree,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_for<'a>(rules: &'a [Rule], path: &str) -> Option<&'a Rule> {
        rules.iter().find(|r| r.path == Path::new(path))
    }

    #[test]
    fn a_job_gets_the_harmless_devices_and_no_other() {
        let state = tempfile::tempdir().unwrap();
        let own = state.path().join("jobs/j1");
        std::fs::create_dir_all(&own).unwrap();
        let rules = job_rules(
            &[state.path().to_path_buf()],
            &[PathBuf::from("/tmp")],
            &own,
        );
        assert_eq!(
            rule_for(&rules, "/dev/null").map(|r| r.access),
            Some(Level::Write)
        );
        assert_eq!(
            rule_for(&rules, "/dev").map(|r| r.access),
            None,
            "{rules:#?}"
        );
        assert!(
            rules
                .iter()
                .all(|r| !r.path.starts_with("/dev")
                    || DEVICES.iter().any(|d| r.path == Path::new(d))),
            "{rules:#?}"
        );
        assert_eq!(
            rule_for(&rules, "/etc").map(|r| r.access),
            Some(Level::Read)
        );
        assert_eq!(
            rule_for(&rules, own.to_str().unwrap()).map(|r| r.access),
            Some(Level::Write)
        );
        assert!(
            rules
                .iter()
                .all(|r| r.path == own || !r.path.starts_with(state.path()))
        );
    }

    #[test]
    fn write_never_allows_making_devices() {
        let write = rights(Level::Write);
        assert!(!write.contains(AccessFs::MakeBlock) && !write.contains(AccessFs::MakeChar));
        assert!(write.contains(AccessFs::MakeReg) && write.contains(AccessFs::Truncate));
    }
}
