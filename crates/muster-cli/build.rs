//! Records the commit the `muster` binary is built from, for `muster --version`: the
//! `MUSTER_BUILD_COMMIT` environment variable when a packager sets it, otherwise
//! `git rev-parse --short=12 HEAD`, otherwise `unknown` (a source tarball without git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MUSTER_BUILD_COMMIT");
    let commit = std::env::var("MUSTER_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MUSTER_GIT_COMMIT={commit}");
    // Build again when HEAD moves: a checkout changes HEAD, a commit changes the branch's ref
    // (loose, or in packed-refs). In a worktree these live in different git dirs; `--git-path`
    // knows where.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
