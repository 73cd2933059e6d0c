//! The program is looked up before any store is touched: a typo is 127 (a file that cannot
//! run, 126) with no backend run, on the PATH the program would inherit; `--dry-run` says so.

use std::fs;

use crate::util::{Args, CANARY, Fixture};

/// A command store whose provider leaves a mark when it runs.
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    let marker = f.path("provider-ran");
    let provider = f.script("bin/provider", &format!("touch {}\necho {CANARY}", marker.display()));
    f.config(&format!(
        "stores:\n  s: {{backend: command, root: r, command: ['{}']}}\nrefs:\n  a: {{store: s, path: a, policy: p}}\n  b: {{store: s, path: b, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        provider.display()
    ));
    // A program only on the launcher's own PATH.
    f.script("mine/only-here", "echo ran-only-here");
    let path = format!("{}:{}", f.path("mine").display(), std::env::var("PATH").unwrap_or_default());
    f.env("PATH", path);
    f
}

fn run(f: &Fixture, before: &[&str], program: &str) -> crate::util::Run {
    f.run(Args::run("worker").secrets(["a", "b"]).args(before).program([program]))
}

fn provider_ran(f: &Fixture) -> bool {
    let ran = f.path("provider-ran").exists();
    let _ = fs::remove_file(f.path("provider-ran"));
    ran
}

#[test]
fn a_missing_program_is_127_before_any_store_is_asked() {
    let f = fixture();
    run(&f, &[], "pyhton3-mxm").code(127).stderr_has("pyhton3-mxm: command not found");
    assert!(!provider_ran(&f), "the store was asked for secrets of a program that does not exist");
    let absent = f.path("bin/absent");
    run(&f, &[], absent.to_str().unwrap()).code(127);
    assert!(!provider_ran(&f));
    // The control: a program that exists gets its secrets.
    run(&f, &[], "only-here").code(0).stdout_is("ran-only-here\n");
    assert!(provider_ran(&f));
}

#[test]
fn a_program_that_cannot_execute_is_126_before_any_store_is_asked() {
    let f = fixture();
    let plain = f.write("mine/not-executable", "#!/bin/sh\n");
    run(&f, &[], plain.to_str().unwrap()).code(126).stderr_has("cannot execute");
    assert!(!provider_ran(&f));
    // Found on PATH, but not executable: as execvp, 126.
    run(&f, &[], "not-executable").code(126);
    assert!(!provider_ran(&f));
    run(&f, &[], f.path("mine").to_str().unwrap()).code(126);
    assert!(!provider_ran(&f));
}

#[test]
fn the_lookup_uses_the_path_the_program_inherits() {
    let f = fixture();
    // With --clean-env the program gets no PATH, so execvp would search only libc's default.
    run(&f, &["--clean-env"], "only-here").code(127).stderr_has("only-here: command not found");
    assert!(!provider_ran(&f));
    run(&f, &["--clean-env", "--keep", "PATH"], "only-here").code(0).stdout_is("ran-only-here\n");
    assert!(provider_ran(&f));
}

#[test]
fn dry_run_reports_the_program() {
    let f = fixture();
    run(&f, &["--dry-run"], "pyhton3-mxm")
        .code(127)
        .stdout_has("program    pyhton3-mxm: command not found\n")
        .stderr_has("pyhton3-mxm: command not found");
    let here = f.path("mine/only-here");
    run(&f, &["--dry-run"], "only-here").code(0).stdout_has(&format!("program    {}\n", here.display()));
    assert!(!provider_ran(&f), "a dry run fetched");
}
