//! Policy facts (`users`, `groups`, `units`; rule keys `user`, `group`, `unit`) decided by
//! the launcher's own real ids: throwaway users made with `useradd` in the test (removed on
//! drop, also when the test fails) run the launcher through `setpriv`, and `run`, `check` and
//! `explain` must answer by who they really are, whatever role they declare. Tests that make
//! users need root (they say so and skip with the reason otherwise); CI runs as root.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use serde_json::Value;

use crate::util::{Args, CANARY, Fixture, LAUNCHER, Run, TestGroup, TestUser, root_or_skip};

/// A fixture the test users can read: its directory 0755 and the config and manifest 0644,
/// owned by root (the trusted-file rules accept root's files that only root can write).
fn shared_fixture(config: &str) -> Fixture {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    fs::set_permissions(f.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let readable = |path: std::path::PathBuf| {
        fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    };
    readable(f.config(config));
    readable(f.write("by_user.yaml", "secrets:\n  - {name: by_user, env: VALUE}\n"));
    readable(f.write("by_group.yaml", "secrets:\n  - {name: by_group, env: VALUE}\n"));
    f
}

/// The launcher run as `user` through `setpriv`; `groups` is `--init-groups` (its groups
/// from /etc/group) or `--clear-groups`.
fn run_as(f: &Fixture, user: &TestUser, groups: &str, args: Args) -> Run {
    Run::of(user.command_with(f, groups, LAUNCHER, args))
}

fn config(users: &str, group: &str) -> String {
    format!(
        "\
stores:
  s: {{backend: env, root: src}}
refs:
  by_user: {{store: s, path: api/key, policy: users}}
  by_group: {{store: s, path: api/key, policy: groups}}
policies:
  users: {{allowed_principals: [worker, deployer], users: [{users}]}}
  groups: {{allowed_principals: [worker], groups: [{group}]}}
"
    )
}

/// Needs root. `users` decides `run`, `check` and `explain` by the real uid: the listed user
/// gets the value, another user declaring the same role is denied (77) by name, and so is
/// root itself, which the list does not name.
#[test]
fn users_decide_by_the_real_uid_as_root() {
    if !root_or_skip("users_decide_by_the_real_uid_as_root") {
        return;
    }
    let alice = TestUser::new("fa");
    let bob = TestUser::new("fb");
    let f = shared_fixture(&config(&format!("{}, 4000000", alice.name), "4000001"));
    let run = |user: &TestUser| {
        run_as(
            &f,
            user,
            "--init-groups",
            Args::run("worker").manifest("by_user.yaml").program(["printenv", "VALUE"]),
        )
    };
    run(&alice).code(0).stdout_is(&format!("{CANARY}\n"));
    run(&bob)
        .code(77)
        .stderr_has("secret `by_user`: denied to principal `worker` by policy `users`")
        .stderr_has(&format!(
            "{} is not one of the policy's users (allowed: `{} (uid {})`, `uid 4000000`)",
            bob.shown(),
            alice.name,
            alice.uid
        ));
    assert!(!run(&bob).stdout().contains(CANARY));
    // Root is a uid like any other to the list.
    f.run(Args::run("worker").manifest("by_user.yaml").program(["printenv", "VALUE"]))
        .code(77)
        .stderr_has("user root (uid 0) is not one of the policy's users");

    let check =
        |user: &TestUser| run_as(&f, user, "--init-groups", Args::check("worker").manifest("by_user.yaml"));
    check(&alice).code(0);
    check(&bob).code(77).stdout_has("DENIED");

    let explain = |user: &TestUser, format: &str| {
        run_as(
            &f,
            user,
            "--init-groups",
            Args::new("explain").arg("by_user").role("worker").args(["--format", format]),
        )
    };
    explain(&alice, "text")
        .code(0)
        .stdout_has(&format!("caller     {}; groups {} (gid {})", alice.shown(), alice.name, alice.gid))
        .stdout_has(&format!(
            "fact       policy users: caller {} matches one of {} (uid {}), uid 4000000\n",
            alice.shown(),
            alice.name,
            alice.uid
        ))
        .stdout_has("decision   allowed\n");
    explain(&bob, "text")
        .code(77)
        .stdout_has(&format!("fact       policy users: caller {} does not match one of", bob.shown()));
    let report: Value = serde_json::from_str(&explain(&bob, "json").code(77).stdout()).unwrap();
    assert_eq!(report["caller"]["uid"], bob.uid);
    assert_eq!(report["caller"]["user"], bob.name.as_str());
    assert_eq!(report["caller"]["gid"], bob.gid);
    assert_eq!(report["caller"]["unit"], Value::Null);
    assert_eq!(report["policy"]["users"][0]["id"], alice.uid);
    assert_eq!(report["policy"]["users"][0]["name"], alice.name.as_str());
    assert_eq!(report["policy"]["users"][1], serde_json::json!({"id": 4_000_000, "name": null}));
    assert_eq!(report["facts"][0]["by"], "policy");
    assert_eq!(report["facts"][0]["key"], "users");
    assert_eq!(report["facts"][0]["matched"], false);
    assert!(report["reason"].as_str().unwrap().contains(&bob.shown()));
}

/// Needs root. `groups` counts the primary group and every supplementary group the process
/// really has: bob, a member of the group, is allowed with his groups (`--init-groups`) and
/// denied once the process drops them (`--clear-groups`), whatever /etc/group says.
#[test]
fn groups_decide_by_the_processs_groups_as_root() {
    if !root_or_skip("groups_decide_by_the_processs_groups_as_root") {
        return;
    }
    let readers = TestGroup::new("fr");
    let alice = TestUser::new("fga");
    let bob = TestUser::with_groups("fgb", &[&readers]);
    let f = shared_fixture(&config("4000000", &readers.name));
    let run = |user: &TestUser, groups: &str| {
        run_as(&f, user, groups, Args::run("worker").manifest("by_group.yaml").program(["printenv", "VALUE"]))
    };
    run(&bob, "--init-groups").code(0).stdout_is(&format!("{CANARY}\n"));
    run(&bob, "--clear-groups").code(77).stderr_has(&format!(
        "none of the caller's groups ({} (gid {})) is one of the policy's groups (allowed: `{} (gid {})`)",
        bob.name, bob.gid, readers.name, readers.gid
    ));
    run(&alice, "--init-groups").code(77).stderr_has("is one of the policy's groups");

    let check = |user: &TestUser, groups: &str| {
        run_as(&f, user, groups, Args::check("worker").manifest("by_group.yaml"))
    };
    check(&bob, "--init-groups").code(0);
    check(&bob, "--clear-groups").code(77);

    let explain = |user: &TestUser, groups: &str| {
        let args = Args::new("explain").arg("by_group").role("worker").args(["--format", "json"]);
        serde_json::from_str::<Value>(&run_as(&f, user, groups, args).stdout()).unwrap()
    };
    let allowed = explain(&bob, "--init-groups");
    assert_eq!(allowed["decision"], "allowed");
    assert!(allowed["caller"]["groups"].as_array().unwrap().contains(&serde_json::json!(readers.gid)));
    assert_eq!(allowed["facts"][0]["key"], "groups");
    assert_eq!(allowed["facts"][0]["matched"], true);
    let denied = explain(&bob, "--clear-groups");
    assert_eq!(denied["decision"], "denied");
    assert_eq!(denied["facts"][0]["matched"], false);
}

/// Needs root. A rule `{principal: deployer, user: alice}` gives alice its principal whatever
/// role she declares, and reserves it: bob declaring `--role deployer` is denied.
#[test]
fn a_user_rule_gives_and_reserves_its_principal_as_root() {
    if !root_or_skip("a_user_rule_gives_and_reserves_its_principal_as_root") {
        return;
    }
    let alice = TestUser::new("fra");
    let bob = TestUser::new("frb");
    let text = format!(
        "{}principals:\n  - {{principal: deployer, user: {}}}\n",
        config(&format!("{}, {}", alice.name, bob.name), "4000001"),
        alice.name
    );
    let f = shared_fixture(&text);
    let check = |user: &TestUser, role: &str| {
        run_as(&f, user, "--init-groups", Args::check(role).manifest("by_user.yaml"))
    };
    check(&alice, "anything").code(0).stdout_has("principal  deployer (from principals[0] of the config)");
    check(&bob, "deployer")
        .code(77)
        .stderr_has("role `deployer` names a principal that rule principals[0] produces");
    check(&bob, "worker").code(0);
    let explain = run_as(&f, &alice, "--init-groups", Args::new("explain").arg("by_user").role("anything"));
    explain
        .code(0)
        .stdout_has(&format!("rule       principals[0]: {{principal: deployer, user: {}}}\n", alice.name))
        .stdout_has(&format!(
            "fact       principals[0] user: caller {} matches {} (uid {})",
            alice.shown(),
            alice.name,
            alice.uid
        ));
}

/// No root needed. A user name the system does not know is a config error (78) at its line
/// and key, for `run`, `check` and `explain` alike.
#[test]
fn an_unknown_user_or_group_name_is_a_config_error() {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(&config("no_such_user_mxm", "4000001"));
    for args in [
        Args::run("worker").secret("by_user").program(["true"]),
        Args::check("worker").secret("by_user"),
        Args::new("explain").arg("by_user").role("worker"),
    ] {
        f.run(args).code(78).stderr_has(
            "/config.yaml:7:59: policies.users.users[0]: there is no user named `no_such_user_mxm` on this system",
        );
    }
    f.config(&config("root", "no_such_group_mxm"));
    f.run(Args::check("worker").secret("by_group"))
        .code(78)
        .stderr_has("policies.groups.groups[0]: there is no group named `no_such_group_mxm`");
    f.config(&format!("{}principals:\n  - {{principal: worker, unit: feed}}\n", config("root", "0")));
    f.run(Args::check("worker").secret("by_group"))
        .code(78)
        .stderr_has("principals[0].unit: unit `feed` is not a systemd unit name: it has no type suffix");
}

/// No root needed. The launcher is in no systemd unit it vouches for: a policy with `units`
/// denies it, and `explain` says which fact decided.
#[test]
fn the_launcher_has_no_unit() {
    let mut f = Fixture::new();
    f.env("SRC_API_KEY", CANARY);
    f.config(&config("0", "0").replace("groups: [0]", "units: [feed.service]"));
    f.run(Args::check("worker").secret("by_group"))
        .code(77)
        .stdout_has("DENIED")
        .stderr_has("the caller runs in no systemd unit (allowed units: `feed.service`)");
    f.run(Args::new("explain").arg("by_group").role("worker"))
        .code(77)
        .stdout_has("no systemd unit\n")
        .stdout_has("fact       policy units: caller in no systemd unit does not match feed.service\n");
    // `list` says that the caller, not the principal, is what the policies refuse.
    f.config(
        &config("0", "0")
            .replace("users: [0]", "units: [feed.service]")
            .replace("groups: [0]", "units: [a.service]"),
    );
    f.run(Args::new("list").role("worker")).code(0).stdout_has(
        "nothing    policies allow principal `worker`, but not this caller (its user, groups or unit) for \
         by_group, by_user; `mxm-secrets explain NAME` shows which fact decided\n",
    );
}
