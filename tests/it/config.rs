//! Finding the config, refusing unsafe ones, and reporting bad ones with their position.

use std::os::unix::fs::{PermissionsExt, symlink};

use crate::util::{CANARY, Fixture};

const CONFIG: &str = "\
stores:
  app: {backend: env, root: src}
refs:
  api_key: {store: app, path: api_key, policy: market}
policies:
  market: {allowed_principals: [marketdata]}
";

fn runs(f: &Fixture, extra: &[&str]) -> crate::util::Run {
    let mut args = vec!["run"];
    args.extend(extra);
    args.extend(["--role", "marketdata", "--secret", "api_key", "--", "printenv", "API_KEY"]);
    f.run(args)
}

#[test]
fn discovery_order() {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    runs(&f, &[])
        .code(78)
        .stderr_has("no config file found; looked at:")
        .stderr_has("home/.config/mxm/secrets.yaml")
        .stderr_has("/etc/mxm/secrets.yaml");
    f.write("home/.config/mxm/secrets.yaml", CONFIG);
    runs(&f, &[]).code(0);
    f.write("xdg/mxm/secrets.yaml", "broken: [\n");
    f.env("XDG_CONFIG_HOME", f.path("xdg"));
    runs(&f, &[]).code(78).stderr_has("xdg/mxm/secrets.yaml");
    let named = f.write("named.yaml", CONFIG);
    f.env("MXM_SECRETS_CONFIG", &named);
    runs(&f, &[]).code(0);
    runs(&f, &["--config", "missing.yaml"]).code(78).stderr_has("/missing.yaml: cannot read it");
}

#[test]
fn a_config_others_can_write_is_refused() {
    let f = Fixture::new();
    let config = f.config(CONFIG);
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o664)).unwrap();
    runs(&f, &["--config", "config.yaml"])
        .code(78)
        .stderr_has("writable by group or others (mode 0664)")
        .stderr_has("chmod go-w");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o602)).unwrap();
    runs(&f, &["--config", "config.yaml"]).code(78);
}

#[test]
fn a_config_owned_by_another_user_is_refused() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("needs root to give a file away; CI runs as root");
        return;
    }
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    let config = f.config(CONFIG);
    std::os::unix::fs::chown(&config, Some(4242), None).unwrap();
    runs(&f, &["--config", "config.yaml"]).code(78).stderr_has("the file is owned by uid 4242");
    std::os::unix::fs::chown(&config, Some(0), None).unwrap();
    symlink(&config, f.path("link.yaml")).unwrap();
    runs(&f, &["--config", "link.yaml"]).code(0);
    std::os::unix::fs::lchown(f.path("link.yaml"), Some(4242), None).unwrap();
    runs(&f, &["--config", "link.yaml"])
        .code(78)
        .stderr_has("link.yaml on the way to it is owned by uid 4242");
}

#[test]
fn bad_configs_name_file_line_and_key() {
    let f = Fixture::new();
    f.config(&CONFIG.replace("policy: market}", "policy: markte}"));
    runs(&f, &["--config", "config.yaml"]).code(78).stderr_has("/config.yaml:4:").stderr_has(
        "refs.api_key: policy `markte` is not defined (defined: `market`); did you mean `market`?",
    );
    f.config(&CONFIG.replace("backend: env", "backend: vault9"));
    runs(&f, &["--config", "config.yaml"])
        .code(78)
        .stderr_has("/config.yaml:2:")
        .stderr_has("unknown variant `vault9`");
    f.config(&CONFIG.replace("path: api_key", "path: ../api_key"));
    runs(&f, &["--config", "config.yaml"]).code(78).stderr_has("`..`");
    f.write("config.yaml", "\u{0}\u{1}binary");
    runs(&f, &["--config", "config.yaml"]).code(78);
    std::fs::write(f.path("config.yaml"), [0xff, 0xfe, 0x00]).unwrap();
    runs(&f, &["--config", "config.yaml"]).code(78).stderr_has("not UTF-8");
    std::fs::create_dir(f.path("dir.yaml")).unwrap();
    runs(&f, &["--config", "dir.yaml"]).code(78);
}

#[test]
fn the_wrapped_shape_loads() {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    let indented: String = CONFIG.lines().map(|l| format!("  {l}\n")).collect();
    f.config(&format!("mxm_runtime: {{anything: 1}}\nmxm_secrets:\n{indented}"));
    runs(&f, &["--config", "config.yaml"]).code(0);
}

/// The `memory` backend exists only in the library's unit tests: the launcher refuses it.
#[test]
fn the_test_only_memory_backend_is_refused() {
    let f = Fixture::new();
    f.config(
        &CONFIG.replace("{backend: env, root: src}", "{backend: memory, root: m, values: {api_key: x}}"),
    );
    runs(&f, &["--config", "config.yaml"])
        .code(78)
        .stderr_has("/config.yaml:2:")
        .stderr_has("unknown variant `memory`");
}
