//! What gpg's failures mean, for the backends that decrypt with it (`pass` directly, `gopass`
//! through its own gpg call). gpg says "No secret key" for a missing key, a locked key it
//! could not ask the passphrase for, and an agent it could not start; its other lines tell
//! them apart, and each has a different next step. The message keeps gpg's own lines that
//! matter and names the keyring gpg looked in (`GNUPGHOME`, or `~/.gnupg` of `HOME`) and the
//! user, since "the wrong user" and "cron's empty environment" are the usual causes.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::process;

/// Why gpg could not decrypt, recognized from its stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// gpg-agent was not running and could not be started.
    Agent,
    /// The key is there but protected by a passphrase, and there is no terminal to ask on.
    Locked,
    /// The keyring gpg looked in has no secret key the entry is encrypted to.
    NoSecretKey,
}

impl Cause {
    pub(crate) fn of(stderr: &str) -> Option<Cause> {
        let lower = stderr.to_lowercase();
        let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
        if any(&[
            "can't connect to the agent",
            "failed to start agent",
            "no gpg-agent running",
            "error running '",
        ]) {
            Some(Cause::Agent)
        } else if any(&[
            "inappropriate ioctl for device",
            "no pinentry",
            "pinentry",
            "no passphrase given",
            "bad passphrase",
            "operation cancelled",
        ]) {
            Some(Cause::Locked)
        } else if any(&["no secret key", "secret key not available"]) {
            Some(Cause::NoSecretKey)
        } else {
            None
        }
    }

    /// The cause and what to do, with the keyring and user it applies to.
    pub(crate) fn explain(self) -> String {
        let keyring = keyring();
        let user = user();
        match self {
            Cause::Agent => format!(
                "gpg-agent is not running and gpg could not start it (keyring {keyring}, user {user}): \
                 install gpg-agent, or start it for this user and keyring with `gpgconf --launch gpg-agent`"
            ),
            Cause::Locked => format!(
                "the key is locked: unlock it once with gpg-preset-passphrase, or use a key without a \
                 passphrase for services (the secret key is in {keyring}, but its passphrase cannot be \
                 asked for without a terminal; user {user})"
            ),
            Cause::NoSecretKey => format!(
                "no secret key for this entry in the keyring gpg looked in, {keyring} (user {user}): run \
                 as the user whose keyring holds it, set GNUPGHOME to that keyring, or import the key"
            ),
        }
    }
}

/// gpg's own lines worth showing, joined with `; `: errors and which key the entry is
/// encrypted to, without the trust-database chatter.
pub(crate) fn lines_that_matter(stderr: &str) -> String {
    const CHATTER: [&str; 4] = ["checking the trustdb", "marginals needed", "depth:", "next trustdb check"];
    stderr
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !CHATTER.iter().any(|c| line.contains(c)))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `cause. gpg said: lines` for a gpg run that failed, or `None` when gpg's words are not
/// one of the known causes.
pub(crate) fn diagnosis(stderr: &str) -> Option<String> {
    let cause = Cause::of(stderr)?;
    Some(format!("{}. gpg said: {}", cause.explain(), lines_that_matter(stderr)))
}

/// For a program that hides gpg's words (Debian's gopass prints only "exit status 2", and
/// `gpg --quiet` leaves out the line that tells a locked key from a missing one): decrypt
/// `file` once more with `gpg`, output to `/dev/null` (no value reaches us), and read gpg's
/// own reason.
pub(crate) fn probe(gpg: &str, file: &Path, request: &super::FetchRequest) -> Option<String> {
    if !file.is_file() {
        return None;
    }
    let mut command = Command::new(gpg);
    command.args(["--batch", "--output", "/dev/null", "--decrypt", "--"]).arg(file);
    let finished = process::run(command, request.environment, request.timeout).ok()?;
    if finished.status.success() { None } else { diagnosis(&finished.stderr) }
}

/// The keyring gpg uses, as the environment says.
pub(crate) fn keyring() -> String {
    match (non_empty("GNUPGHOME"), non_empty("HOME")) {
        (Some(gnupghome), _) => format!("GNUPGHOME={gnupghome}"),
        (None, Some(home)) => format!("~/.gnupg (GNUPGHOME is not set; HOME={home})"),
        (None, None) => "the home directory's .gnupg (GNUPGHOME and HOME are both unset)".to_owned(),
    }
}

/// The password-store directory pass and Debian's gopass look in, as the environment says.
pub(crate) fn store_directory() -> String {
    match (non_empty("PASSWORD_STORE_DIR"), non_empty("HOME")) {
        (Some(dir), _) => format!("PASSWORD_STORE_DIR={dir}"),
        (None, Some(home)) => format!("~/.password-store (PASSWORD_STORE_DIR is not set; HOME={home})"),
        (None, None) => "~/.password-store, but PASSWORD_STORE_DIR and HOME are both unset".to_owned(),
    }
}

/// `name (uid N)` of the user this runs as.
pub(crate) fn user() -> String {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => format!("`{}` (uid {uid})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Where pass and gopass keep their store: `$PASSWORD_STORE_DIR`, else `~/.password-store`.
pub(crate) fn password_store() -> Option<PathBuf> {
    non_empty("PASSWORD_STORE_DIR").map(PathBuf::from).or_else(home_password_store)
}

/// `~/.password-store`, pass's default when `$PASSWORD_STORE_DIR` is unset.
pub(crate) fn home_password_store() -> Option<PathBuf> {
    non_empty("HOME").map(|home| PathBuf::from(home).join(".password-store"))
}

fn non_empty(variable: &str) -> Option<String> {
    std::env::var_os(variable).filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_from_gpgs_words() {
        let locked = "gpg: encrypted with 255-bit ECDH key, ID A5FA0C7EF2F5D8B3, created 2026-11-29\n      \"b <b@x>\"\ngpg: public key decryption failed: Inappropriate ioctl for device\ngpg: decryption failed: No secret key";
        assert_eq!(Cause::of(locked), Some(Cause::Locked));
        let agent = "gpg: error running '/nonexistent/gpg-agent': probably not installed\ngpg: can't connect to the agent: Configuration error\ngpg: decryption failed: No secret key";
        assert_eq!(Cause::of(agent), Some(Cause::Agent));
        assert_eq!(Cause::of("gpg: decryption failed: No secret key"), Some(Cause::NoSecretKey));
        assert_eq!(Cause::of("gpg: no valid OpenPGP data found."), None);
        assert_eq!(
            lines_that_matter(
                "gpg: checking the trustdb\n  \"b <b@x>\"\ngpg: decryption failed: No secret key\n"
            ),
            "\"b <b@x>\"; gpg: decryption failed: No secret key"
        );
    }
}
