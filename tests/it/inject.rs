//! In-memory injection and the launcher's hygiene: sealed memfd descriptors, clean
//! environments, core limits, dry runs, and (under strace) proof that nothing is written.

use std::fs;

use crate::util::{Args, CANARY, Fixture, LAUNCHER};

/// A file store holding `tls` (multi-line, trailing newlines, binary) and `token`, read with
/// `trim: none` so the child must see the exact bytes.
fn fixture() -> Fixture {
    let f = Fixture::new();
    fs::create_dir(f.path("secrets")).unwrap();
    fs::write(f.path("secrets/tls"), TLS).unwrap();
    fs::write(f.path("secrets/token"), CANARY).unwrap();
    f.config(&format!(
        "stores:\n  files: {{backend: file, root: '{}'}}\nrefs:\n  tls: {{store: files, path: tls, policy: p, trim: none}}\n  token: {{store: files, path: token, policy: p}}\n  admin: {{store: files, path: token, policy: nobody}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n  nobody: {{allowed_principals: []}}\n",
        f.path("secrets").display()
    ));
    f
}

const TLS: &[u8] =
    b"-----BEGIN KEY-----\n\x00\x01\xfe\xff canary-7d1f0c2e-never-print-me\n-----END KEY-----\n\n";

fn run_with(f: &Fixture, manifest: &str, command: &[&str]) -> crate::util::Run {
    f.write("mxm-secrets.yaml", manifest);
    f.run(Args::run("worker").program(command))
}

#[test]
fn a_descriptor_holds_the_exact_bytes_from_its_start() {
    let f = fixture();
    let manifest = "secrets:\n  - {name: tls, fd: 3, env: TLS_KEY_FILE}\n";
    let run = run_with(&f, manifest, &["sh", "-c", "cat \"$TLS_KEY_FILE\""]);
    run.code(0);
    assert_eq!(run.output.stdout, TLS);
    // Reading the inherited descriptor itself shares its offset: it must start at 0.
    let run = run_with(&f, manifest, &["sh", "-c", "cat <&3"]);
    run.code(0);
    assert_eq!(run.output.stdout, TLS);
}

#[test]
fn a_descriptor_is_a_sealed_memfd() {
    let f = fixture();
    let manifest = "secrets:\n  - {name: tls, fd: 5}\n";
    run_with(&f, manifest, &["readlink", "/proc/self/fd/5"])
        .code(0)
        .stdout_is("/memfd:mxm-secrets:tls (deleted)\n");
    let run = run_with(&f, manifest, &["sh", "-c", "printf x >&5 && echo wrote"]);
    assert_ne!(run.output.status.code(), Some(0), "the child could write the sealed file");
    assert_eq!(run.stdout(), "");
    let run = run_with(&f, manifest, &["sh", "-c", "printf x >> /dev/fd/5 && echo wrote"]);
    assert_eq!(run.stdout(), "", "the child could append to the sealed file");
    // Only the placed descriptor is passed: no stray memfd copies (those are close-on-exec).
    // Descriptors the launcher inherited pass through, as with env(1): see file_true_... .
    // The glob's own directory descriptor is listed too and closed by the time `readlink`
    // runs; its number, and so whether the loop's last command fails, depends on what the
    // test process inherited (cargo-mutants' jobserver pipe): only the listing counts.
    let run = run_with(
        &f,
        manifest,
        &["sh", "-c", "for fd in /proc/self/fd/*; do readlink $fd 2>/dev/null || :; done"],
    );
    run.code(0);
    let memfds: Vec<String> =
        run.stdout().lines().filter(|l| l.contains("memfd:")).map(str::to_owned).collect();
    assert_eq!(memfds, ["/memfd:mxm-secrets:tls (deleted)"]);
}

#[test]
fn file_true_takes_the_next_descriptor_the_launcher_does_not_hold() {
    let f = fixture();
    f.write("mxm-secrets.yaml", "secrets:\n  - {name: tls, file: true}\n  - {name: token, fd: 4}\n");
    // The launcher inherits descriptor 3 (as from systemd socket activation): left alone.
    let script = format!(
        "exec 3</dev/null; exec {LAUNCHER} run --config config.yaml --role worker -- sh -c 'echo $TLS; readlink /proc/self/fd/3; cat <&4'"
    );
    let output = f.tool("sh").args(["-c", &script]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, format!("/dev/fd/5\n/dev/null\n{CANARY}"));
}

#[test]
fn descriptor_mistakes_are_manifest_errors() {
    let f = fixture();
    run_with(&f, "secrets:\n  - {name: tls, fd: 2}\n", &["true"]).code(65).stderr_has("fd 2 is stderr");
    run_with(&f, "secrets:\n  - {name: tls, fd: 3}\n  - {name: token, fd: 3}\n", &["true"])
        .code(65)
        .stderr_has("both inject descriptor 3");
    // NUL cannot go in a variable, but a descriptor carries it.
    run_with(&f, "secrets:\n  - {name: tls}\n", &["true"]).code(65).stderr_has("NUL byte");
}

#[test]
fn clean_env_keeps_only_what_is_asked() {
    let mut f = fixture();
    f.env("KEPT", "1").env("DROPPED", "2").env("MXM_ROLE", "worker");
    let run = f.run(
        Args::new("run")
            .args(["--clean-env", "--keep", "KEPT", "--keep", "PATH"])
            .secret("token")
            .program(["env"]),
    );
    run.code(0);
    let mut lines: Vec<String> = run.stdout().lines().map(str::to_owned).collect();
    lines.sort();
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    assert_eq!(lines, ["KEPT=1".to_owned(), path, format!("TOKEN={CANARY}")]);
    f.run(Args::new("run").args(["--clean-env", "--keep", "MXM_ROLE"]).secret("token").program(["env"]))
        .code(64)
        .stderr_has("--keep MXM_ROLE");
    f.run(Args::new("run").args(["--keep", "KEPT"]).secret("token").program(["env"])).code(64);
}

#[test]
fn the_program_gets_the_core_limit_back() {
    let f = fixture();
    let script = format!(
        "ulimit -c 1234 && exec {LAUNCHER} run --config config.yaml --role worker --secret token -- sh -c 'ulimit -c'"
    );
    let output = f.tool("sh").args(["-c", &script]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1234\n");
}

#[test]
fn dry_run_shows_the_plan_and_fetches_nothing() {
    let f = fixture();
    let log = f.path("calls");
    let provider = f.script("bin/provider", &format!("echo \"$1\" >> {}\necho value", log.display()));
    let config = fs::read_to_string(f.path("config.yaml")).unwrap().replace(
        "stores:\n",
        &format!("stores:\n  cmd: {{backend: command, root: r, command: ['{}']}}\n", provider.display()),
    ) + "";
    let config = config.replace("refs:\n", "refs:\n  api: {store: cmd, path: api, policy: p}\n");
    f.config(&config);
    let marker = f.path("started");
    let manifest = "secrets:\n  - {name: api}\n  - {name: tls, fd: 3, env: TLS_KEY_FILE}\n  - {name: token, optional: true}\n";
    f.write("mxm-secrets.yaml", manifest);
    let run = f.run(Args::run("worker").arg("--dry-run").program(["touch", marker.to_str().unwrap()]));
    run.code(0)
        .stdout_is(&format!(
            "config     {}\nprincipal  worker (the role)\n  api    allowed  store cmd    env API\n  tls    allowed  store files  fd 3, env TLS_KEY_FILE=/dev/fd/3\n  token  allowed  store files  env TOKEN (optional)\ncommand    touch {}\nprogram    {}\n",
            f.path("config.yaml").display(),
            marker.display(),
            // Where the PATH the program inherits has it, as --dry-run reports it.
            std::env::var("PATH")
                .unwrap_or_default()
                .split(':')
                .map(|dir| std::path::Path::new(dir).join("touch"))
                .find(|p| p.is_file())
                .unwrap()
                .display()
        ));
    assert!(!run.stdout().contains(CANARY) && !run.stdout().contains("value"));
    assert!(!log.exists(), "a dry run called a backend");
    assert!(!marker.exists(), "a dry run started the program");
    f.write("mxm-secrets.yaml", "secrets:\n  - {name: admin}\n  - {name: api}\n");
    f.run(Args::run("worker").arg("--dry-run").program(["true"]))
        .code(77)
        .stdout_has("  admin  DENIED              env ADMIN\n  api    allowed  store cmd  env API\n")
        .stderr_has("secret `admin`: denied to principal `worker`");
    assert!(!log.exists(), "a dry run called a backend");
}

/// The launcher itself opens nothing for writing and creates nothing on disk: every system
/// call of every thread, from start to exec. Its backends here (env, file) start no process,
/// so everything strace follows is the launcher.
#[test]
fn the_launcher_writes_nothing_to_disk() {
    let mut f = fixture();
    let trace = f.path("trace");
    f.env("SRC_KEY", CANARY);
    let config = fs::read_to_string(f.path("config.yaml"))
        .unwrap()
        .replace("stores:\n", "stores:\n  env: {backend: env, root: src}\n")
        .replace("refs:\n", "refs:\n  key: {store: env, path: key, policy: p}\n");
    f.config(&config);
    f.write(
        "mxm-secrets.yaml",
        "secrets:\n  - {name: key}\n  - {name: tls, fd: 3}\n  - {name: token, file: true}\n",
    );
    let calls = "open,openat,openat2,creat,mkdir,mkdirat,link,linkat,symlink,symlinkat,rename,renameat,renameat2,unlink,unlinkat,truncate,ftruncate,mknod,mknodat,memfd_create,execve";
    let mut strace = f.tool("strace");
    strace.args([
        "-f",
        "-qq",
        "-o",
        trace.to_str().unwrap(),
        "-e",
        &format!("trace={calls}"),
        "--",
        LAUNCHER,
    ]);
    strace.args(Args::run("worker").program(["true"]));
    let output = strace.output().expect("strace must be installed (apt-get install strace)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let log = fs::read_to_string(&trace).unwrap();
    // Each line is `TID call(...)`. Up to the exec of the program; after it, the calls are `true`'s.
    let calls: Vec<&str> =
        log.lines().map(|l| l.split_once(' ').map_or(l, |(_, call)| call.trim_start())).collect();
    let launcher_calls: Vec<&str> =
        calls.iter().copied().skip(1).take_while(|l| !l.starts_with("execve(")).collect();
    assert!(launcher_calls.iter().any(|l| l.starts_with("memfd_create(")), "the trace saw no memfd: {log}");
    // The file backend opens `tls` below a handle on its root: `openat2(N, "tls", ...)`.
    assert!(
        launcher_calls.iter().any(|l| l.starts_with("openat") && l.contains(", \"tls\", ")),
        "the trace missed the fetch threads: {log}"
    );
    // A call interrupted by another thread's shows as `call(args <unfinished ...>` and later
    // `<... call resumed>`: the first carries the arguments.
    for call in launcher_calls.iter().filter(|c| !c.starts_with("<...")) {
        let writes =
            ["O_WRONLY", "O_RDWR", "O_CREAT", "O_TRUNC", "O_APPEND"].iter().any(|flag| call.contains(flag));
        let creates = !(call.starts_with("open")
            || call.starts_with("memfd_create(")
            || call.starts_with("ftruncate("));
        assert!(!writes && !creates, "the launcher wrote or created a file: {call}\n{log}");
        assert!(!call.contains(CANARY), "a value in a system call's arguments: {call}");
    }
}
