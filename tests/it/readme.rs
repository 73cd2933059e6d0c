//! README.md's examples, checked: every YAML block loads as the config or manifest it shows,
//! and every `mxm-secrets` command line in it parses (it gets as far as looking for its
//! config, not a usage error). The first command, the bundled example, is run by .ci/run.

use mxm_secrets::config::Config;
use mxm_secrets::manifest::Manifest;

use crate::util::Fixture;

fn blocks(language: &str) -> Vec<String> {
    let readme = include_str!("../../README.md");
    let fence = format!("```{language}\n");
    readme.split(&fence).skip(1).map(|rest| rest.split("```").next().unwrap().to_owned()).collect()
}

#[test]
fn yaml_examples_load() {
    let yaml = blocks("yaml");
    assert!(yaml.len() >= 3, "found {} yaml blocks", yaml.len());
    for block in yaml {
        if block.starts_with("secrets:") {
            Manifest::parse(&block, "README.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
        } else {
            // A block that shows only stores is checked as the stores of an empty config.
            let mut text = block.clone();
            for section in ["refs", "policies"] {
                if !text.contains(&format!("\n{section}:")) {
                    text.push_str(&format!("{section}: {{}}\n"));
                }
            }
            Config::parse(&text, "README.md").unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
    }
}

/// The words of a command line from `mxm-secrets` on, up to a redirection, pipe or comment.
fn invocation(line: &str) -> Option<Vec<String>> {
    let start = line.find("mxm-secrets ")?;
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    for c in line[start..].chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => quote = Some(c),
            (None, '>' | '|' | '#' | ')' | ';') => break,
            (None, c) if c.is_whitespace() => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            (None, c) => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    Some(words.into_iter().skip(1).collect())
}

#[test]
fn command_lines_parse() {
    let mut lines: Vec<String> = ["sh", "ini", "cron"]
        .iter()
        .flat_map(|l| blocks(l))
        .flat_map(|b| b.lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    for dockerfile in blocks("dockerfile") {
        let array = |key: &str| -> Vec<String> {
            dockerfile
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|json| serde_json::from_str(json.trim()).unwrap())
                .unwrap_or_default()
        };
        lines.push([array("ENTRYPOINT"), array("CMD")].concat().join(" "));
    }
    let commands: Vec<Vec<String>> = lines.iter().filter_map(|l| invocation(l)).collect();
    assert!(commands.len() >= 10, "found only {} command lines: {commands:?}", commands.len());
    let mut f = Fixture::new();
    let missing = f.path("no-config.yaml");
    f.env("MXM_ROLE", "readme").env("MXM_SECRETS_CONFIG", missing);
    for args in commands {
        let run = f.run(&args);
        let code = run.output.status.code();
        // A `--broker` line reads no config: with no broker there, it stops at 69.
        let broker = args.iter().any(|a| a == "--broker") && code == Some(69);
        assert!(
            matches!(code, Some(0) | Some(78)) || broker,
            "README command `mxm-secrets {}` did not parse: {code:?}\n{}",
            args.join(" "),
            run.stderr()
        );
    }
}

/// The README's "First run with gopass" block, run as written by bash in an empty HOME with
/// the launcher on PATH: a newcomer's key, store, config, `check --fetch` and `run`, against
/// the real gpg, pass and gopass. A section that stops working fails here.
#[test]
fn first_run_with_gopass_works_as_written() {
    let readme = include_str!("../../README.md");
    let section = readme
        .split("\n## First run with gopass\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has its \"First run with gopass\" section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the section has a sh block");
    let mut f = Fixture::new();
    let bin = std::path::Path::new(crate::util::LAUNCHER).parent().unwrap();
    f.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    // The section's key lives in the empty HOME's ~/.gnupg; its agent is stopped however
    // the test ends.
    struct Agent(std::path::PathBuf);
    impl Drop for Agent {
        fn drop(&mut self) {
            let _ = std::process::Command::new("gpgconf")
                .args(["--kill", "gpg-agent"])
                .env("HOME", &self.0)
                .env_remove("GNUPGHOME")
                .status();
        }
    }
    let _agent = Agent(f.path("home"));
    let output = f.tool("bash").args(["-euo", "pipefail", "-c", block]).output().expect("bash runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the README's first run failed:\n{block}\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("databento_api_key  allowed  store red  env DATABENTO_API_KEY  fetch ok"),
        "check did not print what the README says:\n{stdout}"
    );
    assert!(stdout.ends_with("\ndb-key-123\n"), "run did not print the value:\n{stdout}");
    assert!(!stderr.contains("db-key-123"), "the value reached stderr:\n{stderr}");
}

/// The README's bash completion install, its lines run as written in an empty HOME with the
/// launcher on PATH; the installed script, sourced by bash, completes the secret names of
/// the config found the usual way (~/.config/mxm/secrets.yaml), calling back through PATH.
#[test]
fn bash_completion_installs_as_written() {
    let block = blocks("sh")
        .into_iter()
        .find(|b| b.contains("completions bash > ~"))
        .expect("README.md shows how to install bash completion");
    let lines: Vec<&str> = block.lines().filter(|l| !l.contains("zsh") && !l.contains("fish")).collect();
    let mut f = Fixture::new();
    let bin = std::path::Path::new(crate::util::LAUNCHER).parent().unwrap();
    f.env("PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default()));
    f.write(
        "home/.config/mxm/secrets.yaml",
        "stores:\n  s: {backend: env, root: src}\nrefs:\n  databento_api_key: {store: s, path: k, policy: p}\n\
         policies:\n  p: {allowed_principals: [marketdata]}\n",
    );
    let install = f.tool("bash").args(["-eu", "-c", &lines.join("\n")]).output().expect("bash runs");
    assert!(install.status.success(), "{lines:?}: {}", String::from_utf8_lossy(&install.stderr));
    let body = r#"source ~/.local/share/bash-completion/completions/mxm-secrets
COMP_WORDS=(mxm-secrets get "")
COMP_CWORD=2
COMP_LINE="mxm-secrets get "
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
_clap_complete_mxm_secrets mxm-secrets "" get
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let output = f.tool("bash").args(["--norc", "--noprofile", "-c", body]).output().expect("bash runs");
    let offered = String::from_utf8_lossy(&output.stdout);
    assert!(
        offered.lines().any(|l| l == "databento_api_key"),
        "bash offered {offered:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The README's container ENTRYPOINT, as written but for where the binary is, under the real
/// `tini`: the launcher execs the program as tini's child, tini's SIGTERM reaches it, and its
/// exit code comes back out of tini. (The CMD is a shell stand-in for `python feed.py`.)
#[test]
fn container_entrypoint_works_under_tini() {
    use std::time::{Duration, Instant};
    let dockerfile = blocks("dockerfile").pop().expect("README.md shows a container");
    let entrypoint: Vec<String> = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT"))
        .map(|json| serde_json::from_str(json.trim()).unwrap())
        .expect("an ENTRYPOINT");
    assert_eq!(entrypoint[..3], ["tini", "--", "/usr/local/bin/mxm-secrets"], "{entrypoint:?}");
    let mut f = Fixture::new();
    f.config(
        "stores:\n  s: {backend: env, root: src}\nrefs:\n  databento_api_key: {store: s, path: k, policy: p}\n\
         policies:\n  p: {allowed_principals: [marketdata]}\n",
    );
    f.write("mxm-secrets.yaml", "secrets:\n  - name: databento_api_key\n");
    f.env("MXM_SECRETS_CONFIG", f.path("config.yaml")).env("SRC_K", crate::util::CANARY);
    let started = f.path("started");
    f.script(
        "feed.sh",
        &format!(
            "trap 'exit 42' TERM\necho \"$$ $PPID ${{#DATABENTO_API_KEY}}\" > {}.tmp && mv {0}.tmp {0}\n\
             while :; do sleep 0.05; done",
            started.display()
        ),
    );
    let mut argv: Vec<String> = entrypoint[1..].to_vec();
    argv[1] = crate::util::LAUNCHER.to_owned();
    argv.extend(["sh".to_owned(), f.path("feed.sh").display().to_string()]);
    let mut tini = f
        .tool("tini")
        .args(&argv)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("tini must be installed (apt-get install tini; .ci/run does): {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the program did not start under tini");
        assert!(tini.try_wait().unwrap().is_none(), "tini ended before the program started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen = std::fs::read_to_string(&started).unwrap();
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(fields[1], tini.id().to_string(), "the program is not tini's own child: {seen}");
    assert_eq!(fields[2], crate::util::CANARY.len().to_string(), "the secret did not arrive: {seen}");
    let status = std::process::Command::new("kill").args(["-TERM", &tini.id().to_string()]).status().unwrap();
    assert!(status.success());
    let output = tini.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(42), "{}", String::from_utf8_lossy(&output.stderr));
}
