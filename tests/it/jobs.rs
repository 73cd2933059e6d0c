//! The fetch bound: `--jobs N` (default 8) for the whole run, and a store's `max_concurrent`
//! for its own fetches. Providers count themselves in and out under a mkdir lock.

use std::fs;

use crate::util::{Args, Fixture};

/// Two command stores over one counting provider: `a` unbounded, `b` with `b_bound`. Each
/// fetch records, under the lock, how many fetches run in all and from its store.
fn fixture(b_bound: &str) -> Fixture {
    let f = Fixture::new();
    let dir = f.path("counts");
    fs::create_dir(&dir).unwrap();
    let provider = f.script(
        "bin/provider",
        &format!(
            "store=${{1%%/*}}; d={d}
lock() {{ until mkdir $d/lock 2>/dev/null; do sleep 0.01; done; }}
bump() {{ n=$(cat $d/$1 2>/dev/null || echo 0); n=$((n $2 1)); echo $n > $d/$1; }}
lock; bump all +; bump $store +; cat $d/all >> $d/seen-all; cat $d/$store >> $d/seen-$store; rmdir $d/lock
sleep 0.3
lock; bump all -; bump $store -; rmdir $d/lock
echo value-$1",
            d = dir.display()
        ),
    );
    let mut config = format!(
        "stores:\n  a: {{backend: command, root: a, command: ['{p}']}}\n  b: {{backend: command, root: b, command: ['{p}']{b_bound}}}\nrefs:\n",
        p = provider.display()
    );
    for i in 0..6 {
        config.push_str(&format!(
            "  a{i}: {{store: a, path: p{i}, policy: p}}\n  b{i}: {{store: b, path: p{i}, policy: p}}\n"
        ));
    }
    config.push_str("policies:\n  p: {allowed_principals: [worker]}\n");
    f.config(&config);
    f
}

fn all_secrets() -> Vec<String> {
    (0..6)
        .flat_map(|i| ["--secret".to_owned(), format!("a{i}"), "--secret".to_owned(), format!("b{i}")])
        .collect()
}

/// The most fetches seen at once, in all or from one store, and how many were recorded.
fn peak(f: &Fixture, which: &str) -> (usize, usize) {
    let seen: Vec<usize> = fs::read_to_string(f.path(&format!("counts/seen-{which}")))
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    let _ = fs::remove_file(f.path(&format!("counts/seen-{which}")));
    (seen.iter().copied().max().unwrap_or(0), seen.len())
}

fn run(f: &Fixture, extra: &[&str]) -> crate::util::Run {
    f.run(Args::run("worker").args(extra).args(all_secrets()).program(["sh", "-c", "echo $A0 $B5"]))
}

#[test]
fn jobs_bounds_the_whole_run_and_max_concurrent_its_store() {
    let f = fixture(", max_concurrent: 1");
    run(&f, &["--jobs", "3"]).code(0).stdout_is("value-a/p0 value-b/p5\n");
    let (all, fetches) = peak(&f, "all");
    assert_eq!(fetches, 12, "every secret fetched once");
    assert!((2..=3).contains(&all), "--jobs 3: at most 3 at once, and more than one: {all}");
    assert_eq!(peak(&f, "b").0, 1, "store b's max_concurrent 1 was exceeded");
    assert!(peak(&f, "a").0 >= 2, "store a is unbounded and ran one at a time");
    // One job: one fetch at a time, everywhere; check --fetch takes the same bound.
    run(&f, &["--jobs", "1"]).code(0);
    assert_eq!(peak(&f, "all"), (1, 12));
    f.run(Args::check("worker").args(["--fetch", "--jobs", "2"]).args(all_secrets())).code(0);
    assert_eq!(peak(&f, "all").0, 2, "check --fetch --jobs 2");
}

#[test]
fn the_default_is_eight_and_a_store_bound_holds_under_it() {
    let f = fixture(", max_concurrent: 2");
    run(&f, &[]).code(0);
    let (all, _) = peak(&f, "all");
    assert!((3..=8).contains(&all), "default bound 8, and stores a and b overlap: {all}");
    assert_eq!(peak(&f, "b").0, 2, "store b's max_concurrent 2");
}

#[test]
fn bad_bounds_are_refused() {
    let f = fixture("");
    for bad in ["0", "-1", "many", "1.5"] {
        f.run(Args::run("worker").args(["--jobs", bad]).secret("a0").program(["true"]))
            .code(64)
            .stderr_has("--jobs")
            .stderr_has("a whole number, at least 1");
        f.run(Args::check("worker").args(["--jobs", bad]).secret("a0")).code(64);
        f.run(Args::get("a0", "worker").args(["--jobs", bad])).code(64);
    }
    for (bad, shown) in [
        ("0", "max_concurrent 0 "),
        ("-2", "max_concurrent -2 "),
        ("two", "max_concurrent `two` "),
        ("1.5", "max_concurrent 1.5 "),
    ] {
        let f = fixture(&format!(", max_concurrent: {bad}"));
        f.run(Args::check("worker").secret("a0"))
            .code(78)
            .stderr_has("/config.yaml:3:")
            .stderr_has(shown)
            .stderr_has("is not a positive whole number");
    }
}
