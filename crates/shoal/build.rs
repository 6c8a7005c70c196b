//! Records the commit the binary is built from, for `shoal --version` and the startup
//! banner. Outside a git checkout (a source tarball) it is `unknown`, or whatever
//! `SHOAL_BUILD_COMMIT` says. Needs no tool beyond `git`, and works without it.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=SHOAL_BUILD_COMMIT");
    let commit = std::env::var("SHOAL_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=SHOAL_GIT_COMMIT={commit}");
    // Build again when HEAD moves: a checkout, a commit, a fetch that moves the branch.
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for f in ["HEAD", "packed-refs", "refs/heads"] {
            println!("cargo:rerun-if-changed={dir}/{f}");
        }
    }
}
