//! `cargo bench --bench launch`: what the launcher costs, as ratios against baselines
//! measured in the same run, interleaved run by run so that a noisy machine slows both sides
//! alike. `-- --guard` runs fewer rounds and exits 1 when a ratio passes its guard bound: a
//! regression check that compares ratios, never absolute times.
//!
//! Needs gpg, pass and gopass (as the tests do); makes a throwaway cv25519 key and store with
//! the tests' own helper, tests/support/gpg_store.rs.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/support/gpg_store.rs"]
mod gpg_store;

use gpg_store::GpgStore;

const LAUNCHER: &str = env!("CARGO_BIN_EXE_mxm-secrets");
const SECRETS: usize = 10;

/// Where the store and config live; builds the commands.
struct Context {
    dir: tempfile::TempDir,
}

impl Context {
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .current_dir(self.dir.path())
            .env("GNUPGHOME", self.path("gnupg"))
            .env("PASSWORD_STORE_DIR", self.path("store"))
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for i in 0..SECRETS {
            command.env(format!("MXM_BENCH_S{i}"), format!("value-{i}"));
        }
        command
    }

    fn shell(&self, script: &str) -> Command {
        self.command("sh", &["-c", script])
    }

    /// `mxm-secrets run` with `count` secrets of one store, running `true`.
    fn launcher(&self, store: &str, count: usize) -> Command {
        self.launch(store, count, &[], &["true"])
    }

    /// `mxm-secrets run FLAGS` with `count` secrets of one store, running `program`.
    fn launch(&self, store: &str, count: usize, flags: &[&str], program: &[&str]) -> Command {
        let mut args: Vec<String> =
            ["run", "--config", "config.yaml", "--role", "bench"].map(String::from).to_vec();
        for i in 0..count {
            args.extend(["--secret".to_owned(), format!("{store}_s{i}=V{i}")]);
        }
        args.extend(flags.iter().map(|f| f.to_string()));
        args.push("--".to_owned());
        args.extend(program.iter().map(|p| p.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(LAUNCHER, &args)
    }

    /// The same run, its values from the broker at `socket` (no config read).
    fn through_broker(&self, socket: &Path, store: &str, count: usize) -> Command {
        let mut args: Vec<String> =
            ["run", "--broker", &socket.display().to_string(), "--role", "bench"].map(String::from).to_vec();
        for i in 0..count {
            args.extend(["--secret".to_owned(), format!("{store}_s{i}=V{i}")]);
        }
        args.extend(["--", "true"].map(String::from));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.command(LAUNCHER, &args)
    }
}

/// A broker serving the bench's config, stopped (SIGTERM, drained) when dropped.
struct BrokerProcess(std::process::Child);

impl BrokerProcess {
    fn start(context: &Context, socket: &Path) -> BrokerProcess {
        let mut command = context.command(
            LAUNCHER,
            &["serve", "--config", "config.yaml", "--socket", &socket.display().to_string()],
        );
        let child = command.spawn().expect("the broker starts");
        let start = Instant::now();
        while !socket.exists() {
            assert!(start.elapsed() < Duration::from_secs(20), "the broker never made its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        BrokerProcess(child)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

struct Results {
    rounds: usize,
    failures: Vec<String>,
}

impl Results {
    /// Median of `rounds` runs of each, interleaved; prints the ratio; a ratio over `guard`
    /// is a regression.
    fn compare(
        &mut self,
        label: &str,
        target: f64,
        guard: f64,
        baseline: impl Fn() -> Command,
        ours: impl Fn() -> Command,
    ) -> (Duration, Duration) {
        // `MXM_BENCH_ONLY=(g)`: only the comparisons whose label holds it, to measure one
        // quickly at a quiet moment.
        if std::env::var("MXM_BENCH_ONLY").is_ok_and(|only| !label.contains(&only)) {
            return (Duration::ZERO, Duration::ZERO);
        }
        for _ in 0..3 {
            time(&mut baseline());
            time(&mut ours());
        }
        let (mut base, mut mine) = (Vec::new(), Vec::new());
        for _ in 0..self.rounds {
            base.push(time(&mut baseline()));
            mine.push(time(&mut ours()));
        }
        let (base, mine) = (median(base), median(mine));
        let ratio = mine.as_secs_f64() / base.as_secs_f64();
        let delta = ms(mine) - ms(base);
        let verdict = if ratio <= target { "meets target" } else { "over target" };
        let target = if target.is_finite() {
            format!("target <= {target}, {verdict}")
        } else {
            "for reference".to_owned()
        };
        println!(
            "{label:<60} {:>7.2} ms vs {:>7.2} ms  ratio {ratio:>5.2}  delta {delta:>+6.2} ms  ({target})",
            ms(mine),
            ms(base)
        );
        if ratio > guard {
            self.failures.push(format!("{label}: ratio {ratio:.2} is over its guard bound {guard}"));
        }
        (mine, base)
    }
}

fn time(command: &mut Command) -> Duration {
    let start = Instant::now();
    let status = command.status().expect("runs");
    assert!(status.success(), "{command:?} failed: {status}");
    start.elapsed()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The key, store and config the bench runs on; the store's agent stops when it is dropped.
fn setup(dir: &Path) -> GpgStore {
    let store = GpgStore::create(dir.join("gnupg"), dir.join("store"));
    fs::create_dir(dir.join("files")).unwrap();
    for i in 0..SECRETS {
        store.insert(&format!("mxm/s{i}"), format!("secret-{i}\n").as_bytes());
        fs::write(dir.join(format!("files/s{i}")), format!("file-secret-{i}")).unwrap();
    }
    let mut config = String::new();
    writeln!(config, "stores:").unwrap();
    writeln!(config, "  env: {{backend: env, root: mxm_bench}}").unwrap();
    writeln!(config, "  gopass: {{backend: gopass, root: mxm}}").unwrap();
    writeln!(config, "  pass: {{backend: pass, root: '{}/store/mxm'}}", dir.display()).unwrap();
    writeln!(config, "  file: {{backend: file, root: '{}/files'}}", dir.display()).unwrap();
    writeln!(config, "refs:").unwrap();
    for i in 0..SECRETS {
        for store in ["env", "gopass", "pass", "file"] {
            writeln!(config, "  {store}_s{i}: {{store: {store}, path: s{i}, policy: p}}").unwrap();
        }
    }
    writeln!(config, "policies:\n  p: {{allowed_principals: [bench]}}").unwrap();
    let path = dir.join("config.yaml");
    fs::write(&path, config).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    store
}

/// Peak resident memory of one launcher run, in KiB, from `wait4`.
#[allow(unsafe_code)]
fn peak_rss_kib(mut command: Command) -> i64 {
    let child = command.spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for the child we own.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `child.id()` is our unreaped child; both pointers are to live locals.
    let pid = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32);
    std::mem::forget(child); // reaped above
    usage.ru_maxrss
}

fn main() {
    let guard = std::env::args().any(|a| a == "--guard");
    let context = Context { dir: tempfile::Builder::new().prefix("mxm-bench-").tempdir().unwrap() };
    let store = setup(context.dir.path());
    let curve = store.encryption_curve();
    let mut results = Results { rounds: if guard { 15 } else { 40 }, failures: Vec::new() };
    println!(
        "mxm-secrets launch benchmark: {} interleaved rounds each, medians; gpg encryption key {curve}",
        results.rounds
    );
    println!(
        "(with an rsa key the gpg-agent serializes private-key work, and parallel fetches gain little)\n"
    );
    let c = &context;
    let all = "0 1 2 3 4 5 6 7 8 9";
    let gopass_parallel = format!("for i in {all}; do gopass show -- mxm/s$i >/dev/null & done; wait");
    let gopass_sequential = format!("for i in {all}; do gopass show -- mxm/s$i >/dev/null; done");
    let gpg_parallel = format!(
        "for i in {all}; do gpg --batch --quiet --decrypt -- store/mxm/s$i.gpg >/dev/null & done; wait"
    );

    results.compare(
        "(a) run, env backend, 1 secret  vs  env X=v true",
        2.0,
        6.0,
        || c.command("env", &["X=v", "true"]),
        || c.launcher("env", 1),
    );
    results.compare(
        "(b) run, 1 gopass secret  vs  gopass show",
        1.5,
        2.5,
        || c.command("gopass", &["show", "--", "mxm/s0"]),
        || c.launcher("gopass", 1),
    );
    // (b) cannot reach 1.1: besides gopass's ~10 ms the launcher must exec itself and then
    // the program, ~1.3 ms of process creation that bare `gopass show` never pays. The fair
    // floor is the smallest launcher that does the same job, a shell one-liner.
    results.compare(
        "(b2) run, 1 gopass secret  vs  sh -c 'V=$(gopass show ..) exec true'",
        1.1,
        1.6,
        || c.shell("V0=$(gopass show -- mxm/s0) exec true"),
        || c.launcher("gopass", 1),
    );
    results.compare(
        "(c) run, 10 gopass secrets  vs  10 gopass show in parallel",
        1.25,
        2.0,
        || c.shell(&gopass_parallel),
        || c.launcher("gopass", SECRETS),
    );
    results.compare(
        "    10 gopass show one after another  vs  10 in parallel",
        f64::INFINITY,
        f64::INFINITY,
        || c.shell(&gopass_parallel),
        || c.shell(&gopass_sequential),
    );
    results.compare(
        "(d) run, 10 pass secrets  vs  10 gpg --decrypt in parallel",
        1.25,
        2.0,
        || c.shell(&gpg_parallel),
        || c.launcher("pass", SECRETS),
    );
    // Supervising costs no CPU to speak of (perf stat: the same task-clock); what it adds is
    // two waits (for the child's exec, for its exit), whose wake-ups a loaded machine makes
    // slow, hence a guard looser than the target.
    let (supervised, exec) = results.compare(
        "(g) run --supervise, env backend, 1 secret  vs  run (exec)",
        f64::INFINITY,
        2.0,
        || c.launcher("env", 1),
        || c.launch("env", 1, &["--supervise"], &["true"]),
    );
    if exec > Duration::ZERO {
        let added = ms(supervised) - ms(exec);
        let verdict = if added < 1.0 { "meets target" } else { "over target" };
        println!("    supervising adds {added:+.2} ms to a launch  (target < 1 ms, {verdict})");
    }
    // Output masking: a program writing text through --mask (10 values, each in 14 forms)
    // against the same program's output passed through `cat`. 1 GiB as the issue asks; the
    // guard runs 128 MiB, which shows the same ratio on a busy CI machine in less time.
    let bytes: u64 = if guard { 128 << 20 } else { 1 << 30 };
    let writer = format!("yes 'GET /api/v1/orders?id=42 200 3.1ms user=svc-feed ok' | head -c {bytes}");
    let piped = format!("{writer} | cat");
    let rounds = std::mem::replace(&mut results.rounds, 5);
    results.compare(
        &format!("(h) {} MiB through run --mask, 10 secrets  vs  through cat", bytes >> 20),
        1.5,
        // 1 GiB measures 1.0 to 1.3; the guard's 128 MiB in 5 rounds swings more (1.81 once
        // on a quiet CI run): the guard catches a matcher gone quadratic, not noise.
        3.0,
        || c.shell(&piped),
        || c.launch("env", SECRETS, &["--mask"], &["sh", "-c", &writer]),
    );
    results.rounds = rounds;
    let rss = peak_rss_kib(c.launcher("env", SECRETS));
    let verdict = if rss <= 8 * 1024 { "meets target" } else { "over target" };
    println!("(e) peak RSS of run with 10 env secrets: {rss} KiB  (target <= 8192 KiB, {verdict})");
    if rss > 12 * 1024 {
        results.failures.push(format!("peak RSS {rss} KiB is over its guard bound of 12288 KiB"));
    }
    println!(
        "(f) the Python mxm-secrets 0.3.2: not measured; it needs Python >= 3.13, and this machine has 3.11"
    );
    let socket = c.path("run/broker.sock");
    let broker = BrokerProcess::start(c, &socket);
    results.compare(
        "(i) run --broker, 10 file secrets  vs  run with the config, same 10",
        1.3,
        2.0,
        || c.launcher("file", SECRETS),
        || c.through_broker(&socket, "file", SECRETS),
    );
    // 200 clients at once, each its own process; every one must get its values.
    let clients = 200;
    let start = Instant::now();
    let running: Vec<_> =
        (0..clients).map(|_| c.through_broker(&socket, "file", 1).spawn().expect("spawns")).collect();
    let failures =
        running.into_iter().map(|mut child| child.wait().expect("waits")).filter(|s| !s.success()).count();
    let elapsed = start.elapsed();
    let verdict = if failures == 0 { "meets target" } else { "over target" };
    println!(
        "(j) {clients} concurrent run --broker clients: {failures} failed, all done in {:.0} ms  (target 0 failures, {verdict})",
        ms(elapsed)
    );
    if failures > 0 {
        results.failures.push(format!("{failures} of {clients} concurrent broker clients failed"));
    }
    drop(broker);
    drop(store);
    if guard && !results.failures.is_empty() {
        eprintln!("\nregressions:");
        for failure in &results.failures {
            eprintln!("  {failure}");
        }
        std::process::exit(1);
    }
}
