//! The AWS backends against moto's server (`pip install 'moto[server]==5.2.5'`; .ci/run does
//! it), started on a free loopback port by each test and stopped by it. `MXM_MOTO` names
//! `moto_server`; the test setup uses boto3 from the same venv. With `MXM_REQUIRE_MOTO=1`
//! (set by CI) a missing moto fails these tests instead of skipping them.
//!
//! No test reaches real AWS or reads the machine's AWS setup: every store names a loopback
//! endpoint, credentials are fake keys in the launcher's environment, the shared config and
//! credentials files point at nothing, and the instance metadata service is off. moto checks
//! signatures once its IAM is on (the denied test), so the SDK's signer is what is tested.
//! Batch calls are counted by a proxy between the launcher and moto that reads each
//! request's `x-amz-target` header.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::util::{Args, CANARY, Fixture, free_loopback_port, spawn_daemon, wait_until_up};

struct Moto {
    server: Child,
    python: PathBuf,
    url: String,
    port: u16,
    home: tempfile::TempDir,
}

impl Moto {
    /// A fresh server, or `None` (test skipped) when moto is not installed and not required.
    /// `env`: moto's own settings (`INITIAL_NO_AUTH_ACTION_COUNT`).
    fn start(env: &[(&str, &str)]) -> Option<Moto> {
        let binary = PathBuf::from(std::env::var_os("MXM_MOTO").unwrap_or_else(|| "moto_server".into()));
        let python = binary.with_file_name("python");
        if !python.exists() || Command::new(&binary).arg("--help").output().is_err() {
            assert!(
                std::env::var_os("MXM_REQUIRE_MOTO").is_none(),
                "MXM_REQUIRE_MOTO is set but `{}` cannot run: pip install 'moto[server]==5.2.5' in a venv",
                binary.display()
            );
            eprintln!("skipped: no moto_server (pip install 'moto[server]==5.2.5', and set MXM_MOTO)");
            return None;
        }
        let port = free_loopback_port();
        let home = tempfile::tempdir().unwrap();
        let mut command = Command::new(&binary);
        command.args(["-H", "127.0.0.1", "-p", &port.to_string()]).envs(env.iter().copied());
        let server = spawn_daemon(command, home.path());
        let moto = Moto { server, python, url: format!("http://127.0.0.1:{port}"), port, home };
        // A connection, not a request: with IAM on, moto counts every request it answers.
        wait_until_up(&format!("moto at {}", moto.url), || TcpStream::connect(("127.0.0.1", port)).is_ok());
        Some(moto)
    }

    /// Runs a boto3 script against the server (clients `sm`, `ssm`, `iam` are made for it);
    /// its stdout.
    fn setup(&self, script: &str) -> String {
        let prelude = "import os, json, boto3\n\
            kw = dict(endpoint_url=os.environ['MOTO_URL'], region_name='us-east-1', \
                      aws_access_key_id='AKIDSETUP', aws_secret_access_key='setup-secret')\n\
            sm = boto3.client('secretsmanager', **kw)\n\
            ssm = boto3.client('ssm', **kw)\n\
            iam = boto3.client('iam', **kw)\n";
        let output = Command::new(&self.python)
            .args(["-c", &format!("{prelude}{script}")])
            .env_clear()
            .env("MOTO_URL", &self.url)
            .env("HOME", self.home.path())
            .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(output.status.success(), "setup failed: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// A fixture whose launcher has fake keys and no way to any other AWS setup.
fn fixture(key: &str, secret: &str) -> Fixture {
    let mut f = Fixture::new();
    f.env("AWS_ACCESS_KEY_ID", key)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    f
}

/// A TCP proxy to `port` that keeps every request's bytes, to count calls by their target.
struct Proxy {
    url: String,
    sent: Arc<Mutex<Vec<u8>>>,
}

impl Proxy {
    fn to(port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&sent);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { return };
                let (mut client_in, mut server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let record = Arc::clone(&record);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = client_in.read(&mut buffer) {
                        record.lock().unwrap().extend_from_slice(&buffer[..n]);
                        if server_out.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = server_out.shutdown(Shutdown::Write);
                });
                let (mut server_in, mut client_out) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut server_in, &mut client_out);
                    let _ = client_out.shutdown(Shutdown::Both);
                });
            }
        });
        Proxy { url, sent }
    }

    /// How many requests named `target` (`secretsmanager.BatchGetSecretValue`) in
    /// `x-amz-target`, since the last call.
    fn calls(&self, target: &str) -> usize {
        let mut sent = self.sent.lock().unwrap();
        let needle = format!("x-amz-target: {target}\r\n").to_ascii_lowercase().into_bytes();
        let lower = sent.to_ascii_lowercase();
        sent.clear();
        lower.windows(needle.len()).filter(|w| *w == needle.as_slice()).count()
    }
}

fn store(backend: &str, root: &str, url: &str, more: &str) -> String {
    format!("{{backend: {backend}, root: '{root}', region: us-east-1, endpoint: '{url}'{more}}}")
}

fn get(f: &Fixture, name: &str) -> crate::util::Run {
    f.run(Args::get(name, "worker"))
}

#[test]
fn secrets_manager_values_fields_binary_versions_and_missing() {
    let Some(moto) = Moto::start(&[]) else { return };
    let ids = moto.setup(&format!(
        "sm.create_secret(Name='mxm/red/db', SecretString=json.dumps({{'user': 'bob', 'password': '{CANARY}', 'port': 5432}}))\n\
         sm.create_secret(Name='mxm/red/plain', SecretString='plain value\\n')\n\
         sm.create_secret(Name='mxm/red/bin', SecretBinary=bytes([0, 1, 2, 255, 10]))\n\
         old = sm.create_secret(Name='mxm/red/rotated', SecretString='old')['VersionId']\n\
         sm.put_secret_value(SecretId='mxm/red/rotated', SecretString='new')\n\
         sm.put_secret_value(SecretId='mxm/red/rotated', SecretString='pending', VersionStages=['AWSPENDING'])\n\
         print(old)\n"
    ));
    let old_id = ids.trim();
    let f = fixture("AKIDTEST", "test-secret");
    let url = &moto.url;
    f.config(&format!(
        "\
stores:
  sm: {}
  sm_previous: {}
  sm_pending: {}
  sm_old: {}
refs:
  db_password: {{store: sm, path: db, policy: p, field: password}}
  db_user: {{store: sm, path: db, policy: p, field: user}}
  db_port: {{store: sm, path: db, policy: p, field: port}}
  no_key: {{store: sm, path: db, policy: p, field: nope}}
  plain: {{store: sm, path: plain, policy: p}}
  plain_exact: {{store: sm, path: plain, policy: p, trim: none}}
  plain_field: {{store: sm, path: plain, policy: p, field: user}}
  binary: {{store: sm, path: bin, policy: p, trim: none}}
  rotated: {{store: sm, path: rotated, policy: p}}
  rotated_previous: {{store: sm_previous, path: rotated, policy: p}}
  rotated_pending: {{store: sm_pending, path: rotated, policy: p}}
  rotated_old: {{store: sm_old, path: rotated, policy: p}}
  missing: {{store: sm, path: nope, policy: p}}
policies:
  p: {{allowed_principals: [worker]}}
",
        store("aws_secrets_manager", "mxm/red", url, ""),
        store("aws_secrets_manager", "mxm/red/", url, ", version_stage: AWSPREVIOUS"),
        store("aws_secrets_manager", "mxm/red", url, ", version_stage: AWSPENDING"),
        store("aws_secrets_manager", "mxm/red", url, &format!(", version_id: {old_id}")),
    ));
    get(&f, "db_password").code(0).stdout_is(CANARY);
    get(&f, "db_user").code(0).stdout_is("bob");
    get(&f, "db_port").code(0).stdout_is("5432");
    get(&f, "plain").code(0).stdout_is("plain value");
    get(&f, "plain_exact").code(0).stdout_is("plain value\n");
    let binary = get(&f, "binary");
    binary.code(0);
    assert_eq!(binary.output.stdout, [0, 1, 2, 255, 10]);
    get(&f, "rotated").code(0).stdout_is("new");
    get(&f, "rotated_previous").code(0).stdout_is("old");
    get(&f, "rotated_pending").code(0).stdout_is("pending");
    get(&f, "rotated_old").code(0).stdout_is("old");
    get(&f, "no_key")
        .code(66)
        .stderr_has("secret `mxm/red/db` has no key `nope` (keys: `password`, `port`, `user`)");
    get(&f, "plain_field")
        .code(66)
        .stderr_has("a `field` picks a key of a JSON object, and its SecretString is not one");
    get(&f, "missing")
        .code(66)
        .stderr_has("secret `missing`: does not exist in store `sm`: AWS has no secret `mxm/red/nope` (ResourceNotFoundException");
    // Several at once go in one batch; a missing one is named among those found.
    let run = f.run(Args::run("worker").secrets(["db_user", "plain", "missing", "rotated"]).program(["env"]));
    run.code(66)
        .stderr_has("secret `missing`: does not exist in store `sm`: AWS has no secret `mxm/red/nope`");
    let run = f.run(Args::run("worker").secrets(["db_user", "plain", "rotated_previous"]).program(["env"]));
    run.code(0)
        .stdout_has("DB_USER=bob\n")
        .stdout_has("PLAIN=plain value\n")
        .stdout_has("ROTATED_PREVIOUS=old\n");
    // The launcher's AWS keys never reach the program.
    for credential in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "test-secret"] {
        assert!(!run.stdout().contains(credential), "{credential} reached the program: {}", run.stdout());
    }
}

#[test]
fn forty_five_secrets_take_three_batch_calls() {
    let Some(moto) = Moto::start(&[]) else { return };
    moto.setup(
        "for i in range(45):\n    sm.create_secret(Name=f'mxm/many/s{i}', SecretString=f'value-{i}')\n",
    );
    let proxy = Proxy::to(moto.port);
    let f = fixture("AKIDTEST", "test-secret");
    let refs: String = (0..45).map(|i| format!("  s{i}: {{store: sm, path: s{i}, policy: p}}\n")).collect();
    f.config(&format!(
        "stores:\n  sm: {}\nrefs:\n{refs}policies:\n  p: {{allowed_principals: [worker]}}\n",
        store("aws_secrets_manager", "mxm/many", &proxy.url, "")
    ));
    let names: Vec<String> = (0..45).map(|i| format!("s{i}")).collect();
    let run = f.run(Args::run("worker").secrets(names.iter().map(String::as_str)).program(["env"]));
    run.code(0);
    for i in 0..45 {
        run.stdout_has(&format!("S{i}=value-{i}\n"));
    }
    assert_eq!(proxy.calls("secretsmanager.BatchGetSecretValue"), 3);
    // One secret is one GetSecretValue.
    get(&f, "s7").code(0).stdout_is("value-7");
    assert_eq!(proxy.calls("secretsmanager.GetSecretValue"), 1);
}

#[test]
fn ssm_parameters_in_calls_of_ten_with_versions_and_invalid_names() {
    let Some(moto) = Moto::start(&[]) else { return };
    moto.setup(&format!(
        "for i in range(25):\n    \
             ssm.put_parameter(Name=f'/mxm/red/p{{i}}', Value=f'param-{{i}}', Type='SecureString' if i % 2 else 'String')\n\
         ssm.put_parameter(Name='/mxm/red/db/password', Value='old', Type='SecureString')\n\
         ssm.put_parameter(Name='/mxm/red/db/password', Value='{CANARY}', Type='SecureString', Overwrite=True)\n"
    ));
    let proxy = Proxy::to(moto.port);
    let f = fixture("AKIDTEST", "test-secret");
    let refs: String = (0..25).map(|i| format!("  p{i}: {{store: ps, path: p{i}, policy: p}}\n")).collect();
    f.config(&format!(
        "\
stores:
  ps: {}
refs:
{refs}  db: {{store: ps, path: db/password, policy: p}}
  db_first: {{store: ps, path: db/password, policy: p, version: 1}}
  missing: {{store: ps, path: db/nope, policy: p}}
policies:
  p: {{allowed_principals: [worker]}}
",
        store("aws_ssm", "/mxm/red", &proxy.url, "")
    ));
    let names: Vec<String> = (0..25).map(|i| format!("p{i}")).collect();
    let run = f.run(Args::run("worker").secrets(names.iter().map(String::as_str)).program(["env"]));
    run.code(0);
    for i in 0..25 {
        run.stdout_has(&format!("P{i}=param-{i}\n"));
    }
    assert_eq!(proxy.calls("AmazonSSM.GetParameters"), 3);
    get(&f, "db").code(0).stdout_is(CANARY);
    get(&f, "db_first").code(0).stdout_is("old");
    get(&f, "missing").code(66).stderr_has("AWS has no parameter `/mxm/red/db/nope` (InvalidParameters)");
    let run = f.run(Args::run("worker").secrets(["db", "db_first", "missing"]).program(["true"]));
    run.code(66).stderr_has("secret `missing`: does not exist in store `ps`");
    assert_eq!(proxy.calls("AmazonSSM.GetParameters"), 4);
}

/// moto's IAM, on after the setup's 8 requests: then every request must be signed with a
/// key moto issued, and is checked against that user's policy. moto checks actions, not
/// resources, so the denied identity is one without `secretsmanager:GetSecretValue`.
#[test]
fn a_secret_the_identity_may_not_read_is_77() {
    let Some(moto) = Moto::start(&[("INITIAL_NO_AUTH_ACTION_COUNT", "8")]) else { return };
    let keys = moto.setup(&format!(
        "sm.create_secret(Name='mxm/red/a', SecretString='{CANARY}')\n\
         sm.create_secret(Name='mxm/red/b', SecretString='b-value')\n\
         def user(name, actions):\n    \
             iam.create_user(UserName=name)\n    \
             key = iam.create_access_key(UserName=name)['AccessKey']\n    \
             statement = {{'Effect': 'Allow', 'Action': actions, 'Resource': '*'}}\n    \
             iam.put_user_policy(UserName=name, PolicyName='p', PolicyDocument=json.dumps({{'Version': '2012-10-17', 'Statement': [statement]}}))\n    \
             print(key['AccessKeyId'], key['SecretAccessKey'])\n\
         user('single', ['secretsmanager:GetSecretValue'])\n\
         user('lister', ['secretsmanager:ListSecrets'])\n"
    ));
    let keys: Vec<Vec<&str>> = keys.lines().map(|l| l.split(' ').collect()).collect();
    let config = format!(
        "stores:\n  sm: {}\nrefs:\n  a: {{store: sm, path: a, policy: p}}\n  b: {{store: sm, path: b, policy: p}}\n\
         policies:\n  p: {{allowed_principals: [worker]}}\n",
        store("aws_secrets_manager", "mxm/red", &moto.url, "")
    );
    // Allowed GetSecretValue only: the batch is refused as a whole, and each secret is read alone.
    let single = fixture(keys[0][0], keys[0][1]);
    single.config(&config);
    let run = single.run(Args::run("worker").secrets(["a", "b"]).program(["env"]));
    run.code(0).stdout_has(&format!("A={CANARY}\n")).stdout_has("B=b-value\n");
    let lister = fixture(keys[1][0], keys[1][1]);
    lister.config(&config);
    get(&lister, "a")
        .code(77)
        .stderr_has(
            "secret `a`: denied by the secret service behind store `sm`: secret `mxm/red/a`: AccessDenied",
        )
        .stderr_has("is not authorized to perform: secretsmanager:GetSecretValue");
    // A key with the wrong secret: moto checks the SDK's signature.
    let forged = fixture(keys[0][0], "not-the-secret-key");
    forged.config(&config);
    get(&forged, "a").code(69).stderr_has("SignatureDoesNotMatch");
}

/// An endpoint that accepts connections and never answers: the store's timeout ends the
/// fetch (75), for each backend, single and batched. Needs no moto.
#[test]
fn a_silent_endpoint_is_a_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            keep.lock().unwrap().push(stream);
        }
    });
    let f = fixture("AKIDTEST", "test-secret");
    f.config(&format!(
        "stores:\n  sm: {}\n  ps: {}\nrefs:\n  a: {{store: sm, path: a, policy: p}}\n  b: {{store: sm, path: b, policy: p}}\n  \
         c: {{store: ps, path: c, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n",
        store("aws_secrets_manager", "mxm", &url, ", timeout: 1"),
        store("aws_ssm", "/mxm", &url, ", timeout: 1"),
    ));
    get(&f, "a").code(75).stderr_has("store `sm` did not answer within 1s");
    get(&f, "c").code(75).stderr_has("store `ps` did not answer within 1s");
    f.run(Args::run("worker").secrets(["a", "b", "c"]).program(["true"])).code(75);
    assert!(!held.lock().unwrap().is_empty(), "the launcher never connected");
}

/// What a store may say, refused at load (78) with the key's reason. Needs no moto.
#[test]
fn bad_aws_stores_are_config_errors() {
    let f = fixture("AKIDTEST", "test-secret");
    for (store, reason) in [
        (
            "{backend: aws_secrets_manager, root: mxm, endpoint: 'http://secrets.internal:80'}",
            "is plain http to another machine",
        ),
        ("{backend: aws_ssm, root: /mxm, endpoint: 'http://10.1.2.3'}", "is plain http to another machine"),
        ("{backend: aws_ssm, root: mxm}", "must be a parameter path starting with `/`"),
        (
            "{backend: aws_secrets_manager, root: mxm, token_file: /x}",
            "`token_file` is not an option of backend `aws_secrets_manager`",
        ),
        (
            "{backend: aws_ssm, root: /mxm, version_stage: AWSPREVIOUS}",
            "`version_stage` is not an option of backend `aws_ssm`",
        ),
        ("{backend: aws_secrets_manager, root: mxm, regoin: us-east-1}", "unknown field `regoin`"),
        ("{backend: aws_secrets_manager, root: mxm, region: 'US EAST'}", "must be a region like eu-west-1"),
        (
            "{backend: aws_secrets_manager, root: mxm, version_stage: AWSPREVIOUS, version_id: abc}",
            "give `version_stage` or `version_id`, not both",
        ),
        (
            "{backend: aws_secrets_manager, root: 'mx m'}",
            "Secrets Manager names are letters, digits and /_+=.@-",
        ),
    ] {
        f.config(&format!(
            "stores:\n  s: {store}\nrefs:\n  a: {{store: s, path: a, policy: p}}\npolicies:\n  p: {{allowed_principals: [worker]}}\n"
        ));
        f.run(Args::check("worker")).code(78).stderr_has(reason);
    }
    // A secret's version is its store's, not the ref's.
    f.config(
        "stores:\n  s: {backend: aws_secrets_manager, root: mxm}\nrefs:\n  a: {store: s, path: a, policy: p, version: 2}\n\
         policies:\n  p: {allowed_principals: [worker]}\n",
    );
    f.run(Args::check("worker")).code(78).stderr_has("`version` is for stores that keep versions");
}

/// An endpoint from the environment is held to the store key's rule. Needs no moto. The
/// addresses are this machine's (0.0.0.0), so that a regression sends nothing anywhere.
#[test]
fn a_plain_http_endpoint_from_the_environment_is_refused() {
    let mut f = fixture("AKIDTEST", "test-secret");
    f.config(
        "stores:\n  s: {backend: aws_ssm, root: /mxm, region: us-east-1}\n  m: {backend: aws_secrets_manager, root: mxm, region: us-east-1}\n\
         refs:\n  a: {store: s, path: a, policy: p}\n  b: {store: m, path: b, policy: p}\npolicies:\n  p: {allowed_principals: [worker]}\n",
    );
    f.env("AWS_ENDPOINT_URL", "http://0.0.0.0:9");
    get(&f, "a").code(78).stderr_has("is plain http to another machine").stderr_has("(from AWS_ENDPOINT_URL");
    f.env("AWS_ENDPOINT_URL", "https://127.0.0.1:9")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://0.0.0.0:9");
    get(&f, "b").code(78).stderr_has("(from AWS_ENDPOINT_URL_SECRETS_MANAGER)");
}

/// No region anywhere (store, environment, profile): 78, before any request. Needs no moto.
#[test]
fn no_region_is_a_config_error() {
    let f = fixture("AKIDTEST", "test-secret");
    f.config(
        "stores:\n  s: {backend: aws_ssm, root: /mxm, endpoint: 'http://127.0.0.1:9'}\nrefs:\n  a: {store: s, path: a, policy: p}\n\
         policies:\n  p: {allowed_principals: [worker]}\n",
    );
    get(&f, "a").code(78).stderr_has("no AWS region: set the store's `region`, or AWS_REGION");
}
