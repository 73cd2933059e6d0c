//! Users, groups and systemd units as the config names them (policy `users`, `groups`,
//! `units`; rule `user`, `group`, `unit`), checked and resolved when the config loads.
//!
//! A user or group is given by name (`alice`, `wheel`) or by number (`1001`, unquoted). A
//! name is looked up once, while the config is read (`getpwnam_r` / `getgrnam_r`, through
//! NSS like `id(1)`), and kept as its id: the judge compares ids, which is what the kernel
//! reports for a caller, and does no lookup of its own. A name that does not exist is a
//! config error (78) at its line, not a list that silently matches nobody. So a user created,
//! renamed or deleted after the config loaded counts as it was at load: the launcher loads on
//! every run; a broker on start and on every reload (`SIGHUP`). A number is taken as it is,
//! existing or not (a container's uid need not be in `/etc/passwd`).

use std::fmt;
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Deserializer};

use crate::name::check_label;

/// Users or groups: what an [`Account`] is an id of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    fn id_word(self) -> &'static str {
        match self {
            Kind::User => "uid",
            Kind::Group => "gid",
        }
    }
    fn word(self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Group => "group",
        }
    }
}

/// A user or group of the config, resolved: its id and, when the config named it, the name.
/// Two accounts are the same when their ids are (`alice` and `1001` may be one user).
#[derive(Clone)]
pub struct Account {
    pub kind: Kind,
    pub id: u32,
    /// The name the config gave, or `None` when it gave the number.
    pub name: Option<String>,
}

impl Account {
    pub fn user(id: u32) -> Account {
        Account { kind: Kind::User, id, name: None }
    }

    pub fn group(id: u32) -> Account {
        Account { kind: Kind::Group, id, name: None }
    }

    /// The same account, given by `name` (which is not looked up here).
    pub fn named(self, name: &str) -> Account {
        Account { name: Some(name.to_owned()), ..self }
    }
}

impl PartialEq for Account {
    fn eq(&self, other: &Account) -> bool {
        self.kind == other.kind && self.id == other.id
    }
}

impl Eq for Account {}

impl Hash for Account {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self.kind, self.id).hash(state);
    }
}

/// `alice (uid 1001)`, or `uid 1001` when given by number.
impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({} {})", self.kind.id_word(), self.id),
            None => write!(f, "{} {}", self.kind.id_word(), self.id),
        }
    }
}

/// As [`Display`](fmt::Display): it is what "is listed twice" shows.
impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {self}", self.kind.word())
    }
}

/// `(uid_t) -1` and `(gid_t) -1` mean "no change" to `chown(2)` and `setresuid(2)`; no
/// process has them, so a config that names them is mistaken.
const NO_ID: u64 = u32::MAX as u64;

/// The id of a user or group name, looked up now; `Ok(None)` when there is none.
fn look_up(kind: Kind, name: &str) -> Result<Option<u32>, String> {
    let found = match kind {
        Kind::User => nix::unistd::User::from_name(name).map(|u| u.map(|u| u.uid.as_raw())),
        Kind::Group => nix::unistd::Group::from_name(name).map(|g| g.map(|g| g.gid.as_raw())),
    };
    found.map_err(|errno| format!("cannot look up {} `{name}`: {}", kind.word(), errno.desc()))
}

/// `user alice (uid 1001)`, or `uid 1001` when no user has it: for messages only (the
/// judge compares ids and looks nothing up).
pub fn describe_uid(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => format!("user {} (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// `group wheel (gid 10)`, or `gid 10` when no group has it: for messages only.
pub fn describe_gid(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => format!("{} (gid {gid})", group.name),
        _ => format!("gid {gid}"),
    }
}

/// Reads a user or group from the config: a number as it is, a name looked up.
fn read<'de, D: Deserializer<'de>>(deserializer: D, kind: Kind) -> Result<Account, D::Error> {
    struct Visit(Kind);
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Account;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "a {} name or a number ({})", self.0.word(), self.0.id_word())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Account, E> {
            if v >= NO_ID {
                return Err(E::custom(format!(
                    "{} {v} is out of range: ids go from 0 to {}",
                    self.0.id_word(),
                    NO_ID - 1
                )));
            }
            Ok(Account { kind: self.0, id: v as u32, name: None })
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Account, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::custom(format!("{} {v} is negative", self.0.id_word()))),
            }
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Account, E> {
            let kind = self.0;
            check_label(kind.word(), v).map_err(E::custom)?;
            match look_up(kind, v).map_err(E::custom)? {
                Some(id) => Ok(Account { kind, id, name: Some(v.to_owned()) }),
                None if v.bytes().all(|b| b.is_ascii_digit()) => Err(E::custom(format!(
                    "there is no {} named `{v}`; to mean {} {v}, write the number without quotes",
                    kind.word(),
                    kind.id_word()
                ))),
                None => Err(E::custom(format!(
                    "there is no {} named `{v}` on this system (the lookup goes through NSS, as \
                     `getent {}` does); create it, correct the name, or give the number",
                    kind.word(),
                    match kind {
                        Kind::User => "passwd",
                        Kind::Group => "group",
                    }
                ))),
            }
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Account, E> {
            Err(E::custom(format!("is null; write a {} name or number, or remove it", self.0.word())))
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Account, E> {
            Err(E::custom(format!(
                "`{v}` is a boolean, not a {} name or number; write the name in quotes if it is one",
                self.0.word()
            )))
        }
        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Account, E> {
            Err(E::custom(format!("`{v}` is not a whole number, so not a {}", self.0.id_word())))
        }
    }
    deserializer.deserialize_any(Visit(kind))
}

/// A user of the config (`users: [alice, 1001]`, `user: alice`), resolved on reading.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConfigUser(pub Account);

/// A group of the config (`groups: [wheel, 10]`, `group: wheel`), resolved on reading.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ConfigGroup(pub Account);

/// As the account's: "user uid 0 is listed twice".
impl fmt::Debug for ConfigUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for ConfigGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ConfigUser {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, Kind::User).map(ConfigUser)
    }
}

impl<'de> Deserialize<'de> for ConfigGroup {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        read(deserializer, Kind::Group).map(ConfigGroup)
    }
}

/// The unit types systemd has (`systemd.unit(5)`); a unit name ends in one of them.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "device",
    "mount",
    "automount",
    "swap",
    "timer",
    "path",
    "slice",
    "scope",
];

/// systemd's `UNIT_NAME_MAX`, less its terminating NUL.
const UNIT_NAME_MAX: usize = 255;

/// A systemd unit name as systemd writes it (`feed.service`, `worker@2.service`): what the
/// kernel's cgroup path and systemd's credential requests carry, compared exactly. Checked as
/// systemd's `unit_name_is_valid` does, in short: at most 255 bytes of `[A-Za-z0-9:_.\@-]`,
/// ending in `.TYPE` of a known unit type, something before it.
pub fn check_unit(what: &str, value: &str) -> Result<(), String> {
    check_label(what, value)?;
    let allowed = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c);
    let Some((prefix, suffix)) = value.rsplit_once('.') else {
        return Err(format!(
            "{what} `{value}` is not a systemd unit name: it has no type suffix (write e.g. `{value}.service`)"
        ));
    };
    if value.len() > UNIT_NAME_MAX {
        return Err(format!(
            "{what} `{value}` is longer than systemd's {UNIT_NAME_MAX} bytes for a unit name"
        ));
    }
    if let Some(bad) = value.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "{what} `{}` is not a systemd unit name: `{}` cannot be in one (letters, digits and `:-_.\\@` can)",
            value.escape_debug(),
            bad.escape_debug()
        ));
    }
    if prefix.is_empty() || prefix.starts_with('@') {
        return Err(format!("{what} `{value}` is not a systemd unit name: nothing before the type"));
    }
    if !UNIT_TYPES.contains(&suffix) {
        return Err(format!(
            "{what} `{value}` is not a systemd unit name: `.{suffix}` is not a unit type (one of: {})",
            UNIT_TYPES.join(", ")
        ));
    }
    Ok(())
}

crate::name::checked_string!(
    /// A systemd unit name in a policy or rule (see [`check_unit`]).
    Unit, "unit", check_unit
);

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> Result<Account, String> {
        serde_yaml::from_str::<ConfigUser>(text).map(|u| u.0).map_err(|e| e.to_string())
    }

    fn group(text: &str) -> Result<Account, String> {
        serde_yaml::from_str::<ConfigGroup>(text).map(|g| g.0).map_err(|e| e.to_string())
    }

    /// `root` and group `root` are uid and gid 0 on every Linux system.
    #[test]
    fn names_resolve_and_numbers_stay() {
        assert_eq!(user("root").unwrap(), Account::user(0));
        assert_eq!(user("root").unwrap().to_string(), "root (uid 0)");
        assert_eq!(group("root").unwrap(), Account::group(0));
        assert_eq!(group("root").unwrap().to_string(), "root (gid 0)");
        let number = user("4000000").unwrap();
        assert_eq!((number.id, number.name.as_deref()), (4_000_000, None));
        assert_eq!(number.to_string(), "uid 4000000");
        assert_eq!(group("0").unwrap().to_string(), "gid 0");
        // The same id by name and by number is the same account.
        assert_eq!(user("root").unwrap(), user("0").unwrap());
        assert_ne!(Account::user(0), Account::group(0));
    }

    #[test]
    fn unknown_names_and_bad_numbers_are_refused() {
        let error = user("no_such_user_mxm").unwrap_err();
        assert!(error.contains("there is no user named `no_such_user_mxm` on this system"), "{error}");
        assert!(error.contains("getent passwd"), "{error}");
        let error = group("no_such_group_mxm").unwrap_err();
        assert!(error.contains("there is no group named `no_such_group_mxm`"), "{error}");
        let error = user("'4000000'").unwrap_err();
        assert!(error.contains("to mean uid 4000000, write the number without quotes"), "{error}");
        assert!(user("-1").unwrap_err().contains("uid -1 is negative"));
        assert!(user("4294967295").unwrap_err().contains("out of range"));
        assert_eq!(user("4294967294").unwrap().id, 4_294_967_294);
        assert!(user("1.5").unwrap_err().contains("not a whole number"));
        assert!(user("true").unwrap_err().contains("is a boolean"));
        assert!(user("~").unwrap_err().contains("is null"));
        assert!(user("' root'").unwrap_err().contains("white space"));
        assert!(group("[a]").is_err());
    }

    #[test]
    fn unit_names() {
        for good in ["feed.service", "worker@2.service", "sys-kernel.mount", "a:b\\x2d.socket", "x.scope"] {
            check_unit("unit", good).unwrap();
        }
        for (bad, why) in [
            ("feed", "no type suffix"),
            ("feed.servic", "not a unit type"),
            (".service", "nothing before the type"),
            ("@x.service", "nothing before the type"),
            ("feed service.service", "cannot be in one"),
            ("féed.service", "cannot be in one"),
            ("", "must not be empty"),
        ] {
            let error = check_unit("unit", bad).unwrap_err();
            assert!(error.contains(why), "{bad}: {error}");
        }
        let long = format!("{}.service", "a".repeat(250));
        assert!(check_unit("unit", &long).unwrap_err().contains("255 bytes"));
        // Exactly systemd's most is a unit name.
        check_unit("unit", &format!("{}.service", "a".repeat(247))).unwrap();
    }
}
