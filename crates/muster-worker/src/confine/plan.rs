//! Which paths a confined job may use: the Landlock rules, as plain data.
//!
//! Landlock only allows; whatever no rule grants is denied, and a rule on a directory covers
//! everything beneath it. So "read everything except the state dir" cannot be one rule on `/`.
//! It is built instead by walking from each grant down towards every protected path inside it:
//! a directory on the way (an ancestor of a protected path) gets only [`Access::List`], and each
//! of its other entries gets the grant whole. The protected path itself gets nothing; the
//! exceptions inside it (the job's own directory, inside the state dir; `/dev/null` inside a
//! protected `/dev`) are granted by rules of their own.
//!
//! Two consequences, both deliberate: a directory on the way can be listed, and listing is
//! inherited, so the names in a protected directory are visible (never their contents); and in a
//! writable directory on the way (`/tmp` when the state dir is under `/tmp`) the job can write
//! beneath the entries that existed when it started but cannot create new entries directly in
//! it, since that right would be inherited by the protected directory too.
//!
//! The walk reads directories through [`Tree`], so it is tested here on made-up trees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a rule allows beneath its path. Each level includes the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// List the directory (inherited by everything beneath it); read no file.
    List,
    /// Read and execute files, list directories.
    Read,
    /// Everything: also create, write, truncate, rename and remove.
    Write,
}

/// One Landlock rule: `access` on `path` and everything beneath it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub path: PathBuf,
    pub access: Access,
}

/// The directory entries the walk needs.
pub trait Tree {
    /// The full paths of the entries of `dir` (empty if it cannot be read).
    fn entries(&self, dir: &Path) -> Vec<PathBuf>;
}

/// What a job may use, before the protected paths are cut out.
#[derive(Debug, Clone)]
pub struct Grants<'a> {
    /// Paths the job must not use, nor anything beneath them.
    pub protected: &'a [PathBuf],
    /// Read (and execute) grants: `/`.
    pub read: &'a [PathBuf],
    /// Write grants: `/tmp`, `/dev`, what the operator allows.
    pub write: &'a [PathBuf],
    /// Fully granted even inside a protected path: the job's own directory, harmless devices.
    pub exempt: &'a [PathBuf],
}

/// The rules for `grants`, one per path, sorted by path.
pub fn rules(grants: &Grants<'_>, tree: &dyn Tree) -> Vec<Rule> {
    let mut out = BTreeMap::new();
    let mut walk = Walk {
        protected: grants.protected,
        tree,
        out: &mut out,
    };
    for path in grants.read {
        walk.grant(path, Access::Read);
    }
    for path in grants.write {
        walk.grant(path, Access::Write);
    }
    for path in grants.exempt {
        add(&mut out, path, Access::Write);
    }
    out.into_iter()
        .map(|(path, access)| Rule { path, access })
        .collect()
}

/// How a writable path meets a protected one (said once, when the worker starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlap {
    /// The writable path is protected (or inside a protected path): it is not granted at all.
    Inside { writable: PathBuf },
    /// The writable path holds a protected one: new entries cannot be made directly in the
    /// directories that lead to it.
    Holds {
        writable: PathBuf,
        protected: PathBuf,
    },
}

/// Where the writable paths meet the protected ones.
pub fn overlaps(protected: &[PathBuf], writable: &[PathBuf]) -> Vec<Overlap> {
    let mut found = Vec::new();
    for w in writable {
        if is_protected(protected, w) {
            found.push(Overlap::Inside {
                writable: w.clone(),
            });
        } else if let Some(p) = protected.iter().find(|p| p.starts_with(w)) {
            found.push(Overlap::Holds {
                writable: w.clone(),
                protected: p.clone(),
            });
        }
    }
    found
}

fn is_protected(protected: &[PathBuf], path: &Path) -> bool {
    protected.iter().any(|p| path.starts_with(p))
}

fn add(out: &mut BTreeMap<PathBuf, Access>, path: &Path, access: Access) {
    let entry = out.entry(path.to_path_buf()).or_insert(access);
    *entry = (*entry).max(access);
}

struct Walk<'a> {
    protected: &'a [PathBuf],
    tree: &'a dyn Tree,
    out: &'a mut BTreeMap<PathBuf, Access>,
}

impl Walk<'_> {
    fn grant(&mut self, path: &Path, access: Access) {
        if is_protected(self.protected, path) {
            return;
        }
        // `starts_with` compares whole components: `/tmp/ab` is not inside `/tmp/a`.
        if !self.protected.iter().any(|p| p.starts_with(path)) {
            add(self.out, path, access);
            return;
        }
        add(self.out, path, Access::List);
        for entry in self.tree.entries(path) {
            self.grant(&entry, access);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A made-up file system: every path in it, directories and files alike.
    struct Fake(BTreeSet<PathBuf>);

    impl Fake {
        fn new(paths: &[&str]) -> Self {
            let mut all = BTreeSet::new();
            for p in paths {
                // Every ancestor exists too.
                for a in Path::new(p).ancestors() {
                    all.insert(a.to_path_buf());
                }
            }
            Self(all)
        }
    }

    impl Tree for Fake {
        fn entries(&self, dir: &Path) -> Vec<PathBuf> {
            self.0
                .iter()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect()
        }
    }

    /// The rules for reading everything and writing `write`, but `protected`.
    fn rules_of(
        fs: &Fake,
        protected: &[PathBuf],
        write: &[PathBuf],
        exempt: &[PathBuf],
    ) -> Vec<Rule> {
        rules(
            &Grants {
                protected,
                read: &paths(&["/"]),
                write,
                exempt,
            },
            fs,
        )
    }

    fn paths(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    /// What Landlock would allow on `path` under `rules`: the widest rule on it or an ancestor.
    /// A `List` rule allows only listing, so it counts as no right to open a file.
    fn effective(rules: &[Rule], path: &str) -> Option<Access> {
        rules
            .iter()
            .filter(|r| Path::new(path).starts_with(&r.path))
            .map(|r| r.access)
            .max()
    }

    fn can_read(rules: &[Rule], path: &str) -> bool {
        effective(rules, path) >= Some(Access::Read)
    }

    fn can_write(rules: &[Rule], path: &str) -> bool {
        effective(rules, path) == Some(Access::Write)
    }

    /// The usual layout: the state dir under `/var/lib`, the job's directory inside it.
    fn usual() -> (Fake, Vec<Rule>) {
        let fs = Fake::new(&[
            "/etc/hostname",
            "/usr/bin/sh",
            "/tmp/scratch",
            "/dev/null",
            "/var/log/syslog",
            "/var/lib/other/file",
            "/var/lib/w/identity.json",
            "/var/lib/w/worker-key",
            "/var/lib/w/machine-id",
            "/var/lib/w/jobs/j1/out",
            "/var/lib/w/jobs/j2/out",
            "/var/lib/wide/file",
        ]);
        let protected = paths(&["/var/lib/w"]);
        let rules = rules_of(
            &fs,
            &protected,
            &paths(&["/tmp", "/dev"]),
            &paths(&["/var/lib/w/jobs/j1"]),
        );
        (fs, rules)
    }

    #[test]
    fn everything_but_the_protected_dir_is_readable() {
        let (_, rules) = usual();
        for readable in [
            "/etc/hostname",
            "/usr/bin/sh",
            "/var/log/syslog",
            "/var/lib/other/file",
            // A sibling whose name merely starts with the protected one's.
            "/var/lib/wide/file",
        ] {
            assert!(can_read(&rules, readable), "{readable}: {rules:#?}");
        }
        for secret in [
            "/var/lib/w/identity.json",
            "/var/lib/w/worker-key",
            "/var/lib/w/machine-id",
            "/var/lib/w/jobs/j2/out",
        ] {
            assert!(!can_read(&rules, secret), "{secret}: {rules:#?}");
            assert!(!can_write(&rules, secret), "{secret}: {rules:#?}");
        }
    }

    #[test]
    fn the_way_down_is_listed_and_the_protected_dir_has_no_rule() {
        let (_, rules) = usual();
        for dir in ["/", "/var", "/var/lib"] {
            assert_eq!(effective(&rules, dir), Some(Access::List), "{dir}");
        }
        assert!(rules.iter().all(
            |r| !r.path.starts_with("/var/lib/w") || r.path == Path::new("/var/lib/w/jobs/j1")
        ));
        assert!(rules.iter().any(|r| r.path == Path::new("/etc")));
    }

    #[test]
    fn the_job_writes_its_own_dir_tmp_and_dev_only() {
        let (_, rules) = usual();
        for writable in [
            "/var/lib/w/jobs/j1/out",
            "/tmp/new",
            "/tmp/scratch",
            "/dev/null",
        ] {
            assert!(can_write(&rules, writable), "{writable}");
        }
        for read_only in ["/etc/hostname", "/var/log/syslog", "/usr/bin/sh"] {
            assert!(!can_write(&rules, read_only), "{read_only}");
        }
    }

    #[test]
    fn a_state_dir_under_tmp_splits_tmp() {
        let fs = Fake::new(&[
            "/tmp/other/file",
            "/tmp/it/state/identity.json",
            "/tmp/it/state/jobs/j1",
            "/tmp/it/scratch/pid",
            "/etc/hostname",
        ]);
        let protected = paths(&["/tmp/it/state"]);
        let rules = rules_of(
            &fs,
            &protected,
            &paths(&["/tmp"]),
            &paths(&["/tmp/it/state/jobs/j1"]),
        );
        assert!(can_write(&rules, "/tmp/other/file"));
        assert!(can_write(&rules, "/tmp/it/scratch/pid"));
        assert!(can_write(&rules, "/tmp/it/state/jobs/j1/x"));
        assert!(!can_read(&rules, "/tmp/it/state/identity.json"));
        // The directories on the way are listed only: nothing new directly in them.
        assert_eq!(effective(&rules, "/tmp"), Some(Access::List));
        assert_eq!(effective(&rules, "/tmp/it"), Some(Access::List));
        assert!(can_read(&rules, "/etc/hostname"));
    }

    #[test]
    fn a_protected_file_is_cut_out_of_its_directory() {
        let fs = Fake::new(&[
            "/etc/muster/tls.key",
            "/etc/muster/tls.crt",
            "/etc/hostname",
        ]);
        let protected = paths(&["/etc/muster/tls.key"]);
        let rules = rules_of(&fs, &protected, &[], &paths(&["/srv/job"]));
        assert!(!can_read(&rules, "/etc/muster/tls.key"));
        assert!(can_read(&rules, "/etc/muster/tls.crt"));
        assert!(can_read(&rules, "/etc/hostname"));
        assert!(can_write(&rules, "/srv/job/out"));
    }

    #[test]
    fn nested_protected_paths_and_writable_paths_inside_them() {
        // The built-in worker: its state dir inside the server's data dir, both protected; an
        // operator's writable path inside the data dir is not granted.
        let fs = Fake::new(&[
            "/var/lib/muster/admin-token",
            "/var/lib/muster/builtin-worker/jobs/j1",
            "/var/lib/muster/cache/x",
        ]);
        let protected = paths(&["/var/lib/muster", "/var/lib/muster/builtin-worker"]);
        let rules = rules_of(
            &fs,
            &protected,
            &paths(&["/var/lib/muster/cache"]),
            &paths(&["/var/lib/muster/builtin-worker/jobs/j1"]),
        );
        assert!(!can_read(&rules, "/var/lib/muster/admin-token"));
        assert!(!can_write(&rules, "/var/lib/muster/cache/x"));
        assert!(can_write(
            &rules,
            "/var/lib/muster/builtin-worker/jobs/j1/out"
        ));
    }

    #[test]
    fn overlaps_are_named() {
        let protected = paths(&["/tmp/it/state", "/var/lib/w"]);
        let found = overlaps(
            &protected,
            &paths(&["/tmp", "/var/lib/w/cache", "/var/lib/w", "/srv"]),
        );
        assert_eq!(
            found,
            vec![
                Overlap::Holds {
                    writable: "/tmp".into(),
                    protected: "/tmp/it/state".into(),
                },
                Overlap::Inside {
                    writable: "/var/lib/w/cache".into(),
                },
                Overlap::Inside {
                    writable: "/var/lib/w".into(),
                },
            ]
        );
    }
}
