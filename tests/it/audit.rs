//! Audit records as log systems get them: schema `mxm-secrets/audit/1` on stderr as JSON
//! lines, and as datagrams to a syslog or journald socket bound here in the test's own dir.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use serde_json::Value;

use crate::util::{CANARY, Fixture, Run};

const CONFIG: &str = "\
stores:
  s: {backend: env, root: src}
refs:
  api_key: {store: s, path: api/key, policy: p}
  admin_token: {store: s, path: admin, policy: admins}
policies:
  p: {allowed_principals: [worker]}
  admins: {allowed_principals: [admin]}
";

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY).env("SRC_ADMIN", CANARY);
    f.config(CONFIG);
    f
}

/// `run` with the identity given in full and a program whose arguments must stay out of
/// the records.
fn launch(f: &Fixture, before: &[&str], secret: &str) -> Run {
    let mut args: Vec<&str> = before.to_vec();
    args.extend([
        "run",
        "--config",
        "config.yaml",
        "--role",
        "worker",
        "--environment",
        "prod",
        "--machine",
        "m1",
        "--app",
        "feed",
        "--substrate",
        "systemd",
        "--secret",
        secret,
        "--",
        "true",
        "argument-never-logged",
    ]);
    f.run(args)
}

fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_owned()
}

/// Every datagram waiting on `socket`.
fn received(socket: &UnixDatagram) -> Vec<Vec<u8>> {
    socket.set_nonblocking(true).unwrap();
    let mut datagrams = Vec::new();
    let mut buffer = vec![0u8; 65_536];
    while let Ok(n) = socket.recv(&mut buffer) {
        datagrams.push(buffer[..n].to_vec());
    }
    for datagram in &datagrams {
        let text = String::from_utf8_lossy(datagram);
        assert!(!text.contains(CANARY) && !text.contains("argument-never-logged"), "{text}");
    }
    datagrams
}

fn is_rfc3339_utc(time: &str) -> bool {
    let b = time.as_bytes();
    time.len() == 24
        && time.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
        && time.starts_with("20")
}

#[test]
fn json_records_carry_the_schema_time_host_pid_program_and_identity() {
    let f = fixture();
    let run = launch(&f, &["-v", "--log-format", "json"], "api_key");
    run.code(0);
    assert!(!run.stderr().contains("argument-never-logged"));
    let records: Vec<Value> =
        run.stderr().lines().map(|l| serde_json::from_str(l).expect("one JSON object per line")).collect();
    assert_eq!(records.len(), 2, "{}", run.stderr());
    for record in &records {
        assert_eq!(record["schema"], "mxm-secrets/audit/1");
        assert!(is_rfc3339_utc(record["time"].as_str().unwrap()), "{record}");
        assert_eq!(record["host"], host());
        assert!(record["pid"].as_u64().unwrap() > 0);
        assert_eq!(record["program"], "true");
        assert_eq!(
            record["identity"],
            serde_json::json!({"role": "worker", "environment": "prod", "machine": "m1", "app": "feed", "substrate": "systemd"})
        );
        assert_eq!(record["principal"], "worker");
        assert_eq!(record["secret"], "api_key");
    }
    assert_eq!(records[0]["event"], "decision");
    assert_eq!(records[1]["event"], "fetch");
    assert_eq!(records[1]["outcome"], "ok");
    // Text records carry the same, one line each.
    let text = launch(&f, &["-v"], "api_key");
    text.code(0)
        .stderr_has(" program=true role=worker environment=prod machine=m1 app=feed substrate=systemd");
    assert_eq!(text.stderr().lines().count(), 2);
}

#[test]
fn syslog_gets_syslog3_datagrams_at_authpriv() {
    let f = fixture();
    let path = f.path("log.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let sock = path.to_str().unwrap();
    let run = launch(&f, &["--audit-log", "syslog", "--audit-socket", sock], "api_key");
    run.code(0);
    assert_eq!(run.stderr(), "", "--audit-log implies -v, and nothing goes to stderr");
    let datagrams: Vec<String> =
        received(&socket).iter().map(|d| String::from_utf8(d.clone()).unwrap()).collect();
    assert_eq!(datagrams.len(), 2, "{datagrams:?}");
    let decision = &datagrams[0];
    // authpriv (10) * 8 + info (6)
    assert!(decision.starts_with("<86>"), "{decision}");
    // `Mmm dd hh:mm:ss`, then the tag with the pid, as glibc's syslog(3) sends it locally.
    let tag = &decision[4 + 16..];
    assert!(tag.starts_with("mxm-secrets["), "{decision}");
    assert_eq!(&decision[4 + 15..4 + 16], " ", "{decision}");
    assert!(
        decision.contains("]: audit: decision principal=worker secret=api_key decision=allowed store=s "),
        "{decision}"
    );
    let denied =
        launch(&f, &["--audit-log", "syslog", "--audit-socket", sock, "--log-format", "json"], "admin_token");
    denied.code(77);
    let datagrams = received(&socket);
    let denied = String::from_utf8(datagrams[0].clone()).unwrap();
    // authpriv (10) * 8 + warning (4), and the JSON record as the message.
    assert!(denied.starts_with("<84>"), "{denied}");
    let json = &denied[denied.find("]: {").unwrap() + 3..];
    let record: Value = serde_json::from_str(json).unwrap();
    assert_eq!(record["decision"], "denied");
    assert_eq!(record["schema"], "mxm-secrets/audit/1");
}

/// journald's native fields of one datagram (values here hold no newline).
fn fields(datagram: &[u8]) -> Vec<(String, String)> {
    String::from_utf8(datagram.to_vec())
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, String)], key: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {fields:?}"))
}

#[test]
fn journald_gets_native_fields() {
    let f = fixture();
    let path = f.path("journal.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let run = launch(&f, &["--audit-log", "journald", "--audit-socket", path.to_str().unwrap()], "api_key");
    run.code(0);
    assert_eq!(run.stderr(), "");
    let datagrams = received(&socket);
    assert_eq!(datagrams.len(), 2);
    let decision = fields(&datagrams[0]);
    assert!(field(&decision, "MESSAGE").starts_with("audit: decision principal=worker secret=api_key"));
    assert_eq!(field(&decision, "PRIORITY"), "6");
    assert_eq!(field(&decision, "SYSLOG_IDENTIFIER"), "mxm-secrets");
    assert_eq!(field(&decision, "SYSLOG_FACILITY"), "10");
    assert_eq!(field(&decision, "MXM_SCHEMA"), "mxm-secrets/audit/1");
    assert_eq!(field(&decision, "MXM_EVENT"), "decision");
    assert_eq!(field(&decision, "MXM_SECRET"), "api_key");
    assert_eq!(field(&decision, "MXM_DECISION"), "allowed");
    assert_eq!(field(&decision, "MXM_STORE"), "s");
    assert_eq!(field(&decision, "MXM_PROGRAM"), "true");
    assert_eq!(field(&decision, "MXM_ROLE"), "worker");
    assert_eq!(field(&decision, "MXM_SUBSTRATE"), "systemd");
    assert_eq!(field(&decision, "MXM_HOST"), host());
    assert_eq!(field(&fields(&datagrams[1]), "MXM_OUTCOME"), "ok");
}

#[test]
fn auto_picks_journald_only_under_systemd() {
    let mut f = fixture();
    let path = f.path("journal.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    let args = ["--audit-log", "auto", "--audit-socket", path.to_str().unwrap()];
    let run = launch(&f, &args, "api_key");
    run.code(0).stderr_has("mxm-secrets: audit: decision principal=worker");
    assert!(received(&socket).is_empty());
    f.env("JOURNAL_STREAM", "8:12345");
    let run = launch(&f, &args, "api_key");
    run.code(0);
    assert_eq!(run.stderr(), "");
    assert_eq!(received(&socket).len(), 2);
}

#[test]
fn a_log_that_is_not_there_falls_back_to_stderr() {
    let f = fixture();
    let missing = f.path("nothing.sock");
    let run = launch(&f, &["--audit-log", "syslog", "--audit-socket", missing.to_str().unwrap()], "api_key");
    run.code(0).stderr_has("cannot send to the log").stderr_has("audit: decision principal=worker");
    assert!(!Path::new(&missing).exists());
    // Said once per run, not before every record, and in the system's words.
    let stderr = run.stderr();
    assert_eq!(stderr.matches("cannot send to the log").count(), 1, "{stderr}");
    assert!(stderr.contains("audit: fetch principal=worker"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: No such file or directory); on stderr instead", missing.display())),
        "{stderr}"
    );
    assert!(!stderr.contains("os error"), "{stderr}");
}

/// The caller facts (the launcher's own real uid and gid) travel with the request through
/// the one pipeline into every record, from `run`, `get` and `check --fetch` alike.
#[test]
fn records_carry_the_caller_uid_and_gid() {
    let f = fixture();
    let caller =
        serde_json::json!({"uid": nix::unistd::getuid().as_raw(), "gid": nix::unistd::getgid().as_raw()});
    let common = ["--config", "config.yaml", "--role", "worker"];
    let get: Vec<&str> = ["-v", "--log-format", "json", "get", "api_key"].into_iter().chain(common).collect();
    let check: Vec<&str> = ["-v", "--log-format", "json", "check", "--fetch", "--secret", "api_key"]
        .into_iter()
        .chain(common)
        .collect();
    for run in [launch(&f, &["-v", "--log-format", "json"], "api_key"), f.run(get), f.run(check)] {
        run.code(0);
        let records: Vec<Value> = run.stderr().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(records.len(), 2, "{}", run.stderr());
        for record in &records {
            assert_eq!(record["caller"], caller, "{record}");
        }
    }
}
