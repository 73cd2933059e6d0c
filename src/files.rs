//! Opening the files the launcher reads: the config and the manifest (which decide who gets
//! which secret and where it goes), `file`-backend secrets, and the few files a backend
//! names (a token file, a CA bundle). Regular files only, opened so that a FIFO or device put
//! in their place cannot block us, and, where it matters, so that what is checked is what is
//! read:
//!
//! - [`read_trusted`] walks the path itself, one component at a time from `/`, each looked up
//!   in the directory opened before it without following links, and checks every directory,
//!   every link and the file against a [`Trust`] rule (sshd's StrictModes). Links are followed
//!   by reading them and walking on, so a link's owner is checked before its target is used.
//! - [`open_beneath`] opens a path below a directory without letting any link lead out of it:
//!   `openat2(RESOLVE_BENEATH)`, or the same walk where the kernel lacks `openat2`.
//!
//! Both look each name up with `O_PATH | O_NOFOLLOW` and only then decide, so swapping a file
//! for a link between a check and the open changes nothing: there is no second lookup.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat};

/// Opens `path` for reading, without blocking and without acquiring a terminal, and checks
/// that what was opened (not what the path named a moment before) is a regular file.
pub fn open_regular(path: &Path) -> Result<(File, Metadata), std::io::Error> {
    let file =
        File::options().read(true).custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY).open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(NOT_REGULAR));
    }
    Ok((file, meta))
}

const NOT_REGULAR: &str = "it is not a regular file (a directory, FIFO or device)";

/// A small UTF-8 file: at most `limit` bytes.
pub fn read_text(path: &Path, limit: u64) -> Result<(String, Metadata), String> {
    let (file, meta) = open_regular(path).map_err(|e| format!("cannot read it: {e}"))?;
    let text = read_limited(file, &meta, limit)?;
    Ok((text, meta))
}

fn read_limited(file: File, meta: &Metadata, limit: u64) -> Result<String, String> {
    if meta.len() > limit {
        return Err(format!("is {} bytes, more than the {limit} it may have", meta.len()));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("grew past the {limit} bytes it may have while being read"));
    }
    String::from_utf8(bytes)
        .map_err(|e| format!("is not UTF-8 text (byte {} is invalid)", e.utf8_error().valid_up_to()))
}

/// Why a file was not opened. Each message is a sentence about the path the caller names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Nothing by that name: a missing file or directory on the way, or a dangling link.
    Missing(String),
    /// Something is there but cannot be read as a small regular file.
    Unusable(String),
    /// Refused for safety: a link that leaves the fence, or an owner or mode that lets
    /// someone else change what we would read.
    Unsafe(String),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Missing(m) | OpenError::Unusable(m) | OpenError::Unsafe(m) => f.write_str(m),
        }
    }
}

/// Who may have written a file that decides something, and every directory and link on the
/// way to it: root or the caller, and nobody else through the write bits in `forbidden`.
#[derive(Debug, Clone, Copy)]
pub struct Trust {
    /// `config` or `manifest`, for messages.
    pub what: &'static str,
    /// Write bits that disqualify the file or a directory: group and others for the config,
    /// others only for the manifest (a deploy group may share it).
    pub forbidden: u32,
    /// What whoever could change it would decide, for messages.
    pub stake: &'static str,
}

/// The config holds the policy: whoever can edit it can grant themselves any secret.
pub const CONFIG: Trust = Trust { what: "config", forbidden: 0o022, stake: "who reads which secret" };

/// The manifest decides where secrets go (a variable the program logs, say); group-writable
/// stays allowed for deploy groups.
pub const MANIFEST: Trust = Trust { what: "manifest", forbidden: 0o002, stake: "where the secrets go" };

/// Reads a small UTF-8 file that `trust` governs, checking every directory from `/`, every
/// link and the file itself (see the module header). A relative path is taken from the
/// working directory, whose ancestors are checked too.
pub fn read_trusted(path: &Path, limit: u64, trust: &Trust) -> Result<String, OpenError> {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        let cwd = std::env::current_dir()
            .map_err(|e| OpenError::Unusable(format!("cannot read it: the working directory: {e}")))?;
        cwd.join(path)
    };
    let top = open_path(nix::fcntl::AT_FDCWD, OsStr::new("/"))
        .map_err(|e| OpenError::Unusable(format!("cannot read it: /: {}", io(e))))?;
    let (file, meta) = Walk::new(top, Fence::Trusted(trust))?.open(&absolute)?;
    if let Some(uid) = foreign(meta.uid()) {
        return Err(OpenError::Unsafe(format!(
            "the file is owned by {owner}, {nobody}; whoever owns the {what} decides {stake}. Fix: \
             chown root {path} (or to yourself), or use a {what} you own",
            owner = owner(uid),
            nobody = not_root_nor_you(),
            what = trust.what,
            stake = trust.stake,
            path = path.display()
        )));
    }
    if meta.mode() & trust.forbidden != 0 {
        let (who, chmod) = writers(trust.forbidden);
        return Err(OpenError::Unsafe(format!(
            "is writable by {who} (mode {mode:04o}); whoever can edit it decides {stake}. Fix: \
             chmod {chmod} {path}",
            mode = meta.mode() & 0o7777,
            stake = trust.stake,
            path = path.display()
        )));
    }
    read_limited(file, &meta, limit).map_err(OpenError::Unusable)
}

/// Opens `relative` below the directory `root` for reading, following links only while they
/// stay below it: `openat2` with `RESOLVE_BENEATH` resolves and opens in one step; where the
/// kernel has no `openat2` (before Linux 5.6, or a seccomp filter that hides it) the same walk
/// as [`read_trusted`] does, fenced at `root`. An absolute link into root (`/run/secrets/x`
/// inside `/run/secrets`) is followed by the walk, which openat2 would refuse.
pub fn open_beneath(root: &Path, relative: &Path) -> Result<(File, Metadata), OpenError> {
    let real = root.canonicalize().map_err(|e| OpenError::Unusable(format!("the store's root: {e}")))?;
    let dir = open_path(nix::fcntl::AT_FDCWD, real.as_os_str())
        .map_err(|e| OpenError::Unusable(format!("the store's root: {}", io(e))))?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&dir, relative, how) {
        Ok(fd) => {
            let file = File::from(fd);
            let meta = file.metadata().map_err(|e| OpenError::Unusable(format!("cannot read it: {e}")))?;
            if !meta.is_file() {
                return Err(OpenError::Unusable(NOT_REGULAR.to_owned()));
            }
            Ok((file, meta))
        }
        Err(Errno::ENOENT) => Err(OpenError::Missing(format!("cannot read it: {}", io(Errno::ENOENT)))),
        // No openat2 here (ENOSYS; EPERM or E2BIG from seccomp filters or old headers); a link
        // that leaves root or is absolute (EXDEV), which the walk refuses in words or, for an
        // absolute link back into root, follows; a rename racing a `..` (EAGAIN).
        Err(Errno::ENOSYS | Errno::EPERM | Errno::E2BIG | Errno::EXDEV | Errno::EAGAIN) => {
            walk_beneath(dir, real, relative)
        }
        Err(e) => Err(OpenError::Unusable(format!("cannot read it: {}", io(e)))),
    }
}

/// The walk that [`open_beneath`] falls back to; its own function so tests run it on a kernel
/// that has `openat2`.
fn walk_beneath(dir: OwnedFd, real: PathBuf, relative: &Path) -> Result<(File, Metadata), OpenError> {
    Walk::new(dir, Fence::Beneath { real })?.open(relative)
}

/// Where a walk may go.
enum Fence<'a> {
    /// Anywhere from `/`, through directories and links that `Trust` accepts.
    Trusted(&'a Trust),
    /// Only below the directory the walk starts at, whose real path this is.
    Beneath { real: PathBuf },
}

/// A path resolved by hand: the kernel's resolution, one name at a time, with our checks
/// between the names.
struct Walk<'a> {
    /// The directories walked through; the last is where the next name is looked up. The
    /// first is where the walk started (`/`, or the fence) and is never left by `..`.
    dirs: Vec<OwnedFd>,
    /// Their names from the start, for messages.
    shown: PathBuf,
    fence: Fence<'a>,
    /// The links followed and their targets, to say which led out of the fence.
    followed: Vec<(PathBuf, PathBuf)>,
}

/// Linux gives up after 40 links in one resolution (ELOOP); so do we.
const MAX_LINKS: usize = 40;

impl<'a> Walk<'a> {
    fn new(start: OwnedFd, fence: Fence<'a>) -> Result<Walk<'a>, OpenError> {
        let shown = match &fence {
            Fence::Trusted(trust) => {
                let st = fstat(&start)
                    .map_err(|e| OpenError::Unusable(format!("cannot read it: /: {}", io(e))))?;
                check_directory(trust, Path::new("/"), &st)?;
                PathBuf::from("/")
            }
            Fence::Beneath { .. } => PathBuf::new(),
        };
        Ok(Walk { dirs: vec![start], shown, fence, followed: Vec::new() })
    }

    fn open(mut self, path: &Path) -> Result<(File, Metadata), OpenError> {
        let mut pending = names(path);
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                if self.dirs.len() > 1 {
                    self.dirs.pop();
                    self.shown.pop();
                } else if let Fence::Beneath { real } = &self.fence {
                    let via = if self.followed.is_empty() {
                        "the path leads".to_owned()
                    } else {
                        let links: Vec<String> = (self.followed.iter())
                            .map(|(link, target)| {
                                format!("{} is a link to {}", link.display(), target.display())
                            })
                            .collect();
                        format!("{}, which leads", links.join(", "))
                    };
                    return Err(OpenError::Unsafe(format!(
                        "{via} outside the store's root {}; refusing to follow it",
                        real.display()
                    )));
                }
                continue;
            }
            let here = self.here(&name);
            let top = self.dirs.last().expect("the walk's start");
            let fd = match open_path(top, &name) {
                Ok(fd) => fd,
                // The file itself, reached without links, is the path the message starts
                // with: not said twice. A directory on the way, or a link's target, is named.
                Err(Errno::ENOENT) if pending.is_empty() && self.followed.is_empty() => {
                    return Err(OpenError::Missing(format!("cannot read it: {}", io(Errno::ENOENT))));
                }
                Err(Errno::ENOENT) => {
                    return Err(OpenError::Missing(format!(
                        "cannot read it: {}: {}",
                        here.display(),
                        io(Errno::ENOENT)
                    )));
                }
                Err(e) => {
                    return Err(OpenError::Unusable(format!(
                        "cannot read it: {}: {}",
                        here.display(),
                        io(e)
                    )));
                }
            };
            let st = fstat(&fd)
                .map_err(|e| OpenError::Unusable(format!("cannot read it: {}: {}", here.display(), io(e))))?;
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFLNK {
                self.follow(&fd, &st, &here, &mut pending)?;
            } else if !pending.is_empty() {
                if kind != SFlag::S_IFDIR {
                    return Err(OpenError::Unusable(format!(
                        "cannot read it: {} is not a directory",
                        here.display()
                    )));
                }
                if let Fence::Trusted(trust) = self.fence {
                    check_directory(trust, &here, &st)?;
                }
                self.dirs.push(fd);
                self.shown.push(&name);
            } else if kind != SFlag::S_IFREG {
                return Err(OpenError::Unusable(NOT_REGULAR.to_owned()));
            } else {
                return open_final(top, &name, &st, &here);
            }
        }
        // The path ended on a directory (`.`, `/`, `dir/`).
        Err(OpenError::Unusable(NOT_REGULAR.to_owned()))
    }

    /// The link `fd` at `here`: its owner checked (a trusted walk), its target queued before
    /// the rest of the path.
    fn follow(
        &mut self,
        fd: &OwnedFd,
        st: &FileStat,
        here: &Path,
        pending: &mut VecDeque<OsString>,
    ) -> Result<(), OpenError> {
        if let (Fence::Trusted(trust), Some(uid)) = (&self.fence, foreign(st.st_uid)) {
            return Err(OpenError::Unsafe(format!(
                "the symlink {link} on the way to it is owned by {owner}, {nobody}; whoever owns \
                 a link chooses the file it leads to, and so decides {stake}. Fix: \
                 chown -h root {link} (or to yourself), or remove the link",
                link = here.display(),
                owner = owner(uid),
                nobody = not_root_nor_you(),
                stake = trust.stake
            )));
        }
        if self.followed.len() >= MAX_LINKS {
            return Err(OpenError::Unusable(format!(
                "cannot read it: more than {MAX_LINKS} symlinks on the way (a loop?) at {}",
                here.display()
            )));
        }
        let target = PathBuf::from(readlinkat(fd, "").map_err(|e| {
            OpenError::Unusable(format!("cannot read the link {}: {}", here.display(), io(e)))
        })?);
        let target_shown = target.clone();
        let rest = if target.is_absolute() {
            match &self.fence {
                Fence::Trusted(_) => {
                    self.dirs.truncate(1);
                    self.shown = PathBuf::from("/");
                    target
                }
                Fence::Beneath { real } => match target.strip_prefix(real) {
                    Ok(inside) => {
                        self.dirs.truncate(1);
                        self.shown = PathBuf::new();
                        inside.to_owned()
                    }
                    Err(_) => {
                        return Err(OpenError::Unsafe(format!(
                            "{} is a link to {}, outside the store's root {}; refusing to follow it",
                            here.display(),
                            target.display(),
                            real.display()
                        )));
                    }
                },
            }
        } else {
            target
        };
        let mut queued = names(&rest);
        queued.extend(pending.drain(..));
        *pending = queued;
        self.followed.push((here.to_owned(), target_shown));
        Ok(())
    }

    fn here(&self, name: &OsStr) -> PathBuf {
        self.shown.join(name)
    }
}

/// The names of `path`, `..` kept (the walk resolves it), `/` and `.` dropped (the caller
/// chose where the walk starts).
fn names(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|component| match component {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Opens the last name for reading, without following a link put there since it was looked
/// at, and checks it is still the file that was looked at.
fn open_final(
    dir: &OwnedFd,
    name: &OsStr,
    seen: &FileStat,
    here: &Path,
) -> Result<(File, Metadata), OpenError> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let changed = || {
        OpenError::Unusable(format!(
            "cannot read it: {} changed while it was opened; try again",
            here.display()
        ))
    };
    let fd = match openat(dir, name, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOENT) => return Err(changed()),
        Err(e) => return Err(OpenError::Unusable(format!("cannot read it: {}: {}", here.display(), io(e)))),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| OpenError::Unusable(format!("cannot read it: {e}")))?;
    if meta.dev() != seen.st_dev || meta.ino() != seen.st_ino || !meta.is_file() {
        return Err(changed());
    }
    Ok((file, meta))
}

/// A directory on the way to a trusted file: owned by root or the caller, and not writable by
/// those `trust` forbids, unless sticky (`/tmp`): there nobody but an entry's owner, the
/// directory's owner and root may remove or rename the entry, and every entry on the way is
/// itself checked to be owned by root or the caller.
fn check_directory(trust: &Trust, here: &Path, st: &FileStat) -> Result<(), OpenError> {
    if let Some(uid) = foreign(st.st_uid) {
        return Err(OpenError::Unsafe(format!(
            "the directory {dir} on the way to it is owned by {owner}, {nobody}; its owner can \
             replace the file, and so decide {stake}. Fix: chown root {dir}, or \
             keep the {what} in directories owned by root or by you",
            dir = here.display(),
            owner = owner(uid),
            nobody = not_root_nor_you(),
            what = trust.what,
            stake = trust.stake
        )));
    }
    let sticky = st.st_mode & nix::libc::S_ISVTX != 0;
    if st.st_mode & trust.forbidden != 0 && !sticky {
        let (who, chmod) = writers(trust.forbidden);
        return Err(OpenError::Unsafe(format!(
            "the directory {dir} on the way to it is writable by {who} (mode {mode:04o}) and not \
             sticky; whoever can write it can replace the file, and so decide {stake}. Fix: \
             chmod {chmod} {dir}",
            dir = here.display(),
            mode = st.st_mode & 0o7777,
            stake = trust.stake
        )));
    }
    Ok(())
}

/// Looks `name` up in `dir` without following it if it is a link, and without opening what
/// it names (a FIFO would block, a device could act): only an `O_PATH` handle, to inspect.
fn open_path<Fd: AsFd>(dir: Fd, name: &OsStr) -> Result<OwnedFd, Errno> {
    if name.as_bytes().contains(&0) {
        return Err(Errno::EINVAL);
    }
    openat(dir, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
}

/// `uid` when it is neither root nor the caller.
fn foreign(uid: u32) -> Option<u32> {
    (uid != 0 && uid != nix::unistd::geteuid().as_raw()).then_some(uid)
}

fn not_root_nor_you() -> String {
    format!("neither root nor you (uid {})", nix::unistd::geteuid())
}

/// `uid 1001 (alice)`, or `uid 1001` for a uid without a user.
fn owner(uid: u32) -> String {
    match nix::unistd::User::from_uid(uid.into()) {
        Ok(Some(user)) => format!("uid {uid} ({})", user.name),
        _ => format!("uid {uid}"),
    }
}

/// Who the `forbidden` write bits let in, and the chmod that shuts them out.
fn writers(forbidden: u32) -> (&'static str, &'static str) {
    if forbidden & 0o020 != 0 { ("group or others", "go-w") } else { ("anyone", "o-w") }
}

/// An errno in the words `std::io::Error` uses elsewhere in our messages.
/// The system's words for an error, without Rust's "(os error N)" after them.
fn io(errno: Errno) -> &'static str {
    errno.desc()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const CANARY: &str = "canary-files-never-read-me";

    /// Both ways of opening below a root: openat2, and the walk it falls back to.
    fn both(root: &Path, relative: &str) -> [Result<String, OpenError>; 2] {
        let read = |opened: Result<(File, Metadata), OpenError>| {
            opened.map(|(mut file, _)| {
                let mut text = String::new();
                file.read_to_string(&mut text).unwrap();
                text
            })
        };
        let real = root.canonicalize().unwrap();
        let dir = open_path(nix::fcntl::AT_FDCWD, real.as_os_str()).unwrap();
        [read(open_beneath(root, Path::new(relative))), read(walk_beneath(dir, real, Path::new(relative)))]
    }

    fn kubernetes_mount(dir: &Path) -> PathBuf {
        let root = dir.join("mount");
        std::fs::create_dir_all(root.join("..2024_x")).unwrap();
        std::fs::write(root.join("..2024_x/key"), "inside").unwrap();
        symlink("..2024_x", root.join("..data")).unwrap();
        symlink("..data/key", root.join("key")).unwrap();
        root
    }

    #[test]
    fn links_inside_root_are_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = kubernetes_mount(dir.path());
        for got in both(&root, "key") {
            assert_eq!(got.unwrap(), "inside");
        }
        // An absolute link back into root: openat2 refuses it, the walk follows it.
        symlink(root.canonicalize().unwrap().join("..data/key"), root.join("absolute")).unwrap();
        for got in both(&root, "absolute") {
            assert_eq!(got.unwrap(), "inside");
        }
        std::fs::create_dir(root.join("sub")).unwrap();
        symlink("../..data/key", root.join("sub/up")).unwrap();
        for got in both(&root, "sub/up") {
            assert_eq!(got.unwrap(), "inside");
        }
    }

    #[test]
    fn links_out_of_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = kubernetes_mount(dir.path());
        std::fs::write(dir.path().join("outside"), CANARY).unwrap();
        symlink("../outside", root.join("up")).unwrap();
        symlink(dir.path().join("outside"), root.join("absolute")).unwrap();
        symlink("/etc", root.join("etc")).unwrap();
        symlink("..data/../../outside", root.join("through")).unwrap();
        for (path, says) in [
            ("up", "up is a link to ../outside, which leads outside the store's root"),
            ("absolute", "outside the store's root"),
            ("etc/passwd", "etc is a link to /etc, outside the store's root"),
            ("through", "through is a link to ..data/../../outside, ..data is a link to ..2024_x, which"),
        ] {
            for got in both(&root, path) {
                match got {
                    Err(OpenError::Unsafe(message)) => assert!(message.contains(says), "{path}: {message}"),
                    other => panic!("{path}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn only_regular_files_are_opened() {
        let dir = tempfile::tempdir().unwrap();
        let root = kubernetes_mount(dir.path());
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        symlink("nowhere", root.join("dangling")).unwrap();
        for (path, missing) in [("fifo", false), ("..data", false), ("missing", true), ("dangling", true)] {
            for got in both(&root, path) {
                match got {
                    Err(OpenError::Missing(_)) if missing => {}
                    Err(OpenError::Unusable(m)) if !missing => {
                        assert!(m.contains("not a regular file"), "{m}")
                    }
                    other => panic!("{path}: {other:?}"),
                }
            }
        }
        symlink("loop", root.join("loop")).unwrap();
        for got in both(&root, "loop") {
            assert!(got.is_err());
        }
    }

    /// Reads `path` below `root` `rounds` times by both ways while `flip` runs in a loop on
    /// another thread: whatever is read must be the file inside, and it must be read at all.
    fn never_leads_out(root: &Path, path: &str, rounds: usize, flip: impl Fn() + Send + 'static) {
        let stop = Arc::new(AtomicBool::new(false));
        let flipper = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    flip();
                }
            })
        };
        let mut read = [0; 2];
        for _ in 0..rounds {
            for (i, got) in both(root, path).into_iter().enumerate() {
                if let Ok(text) = got {
                    assert_eq!(text, "inside");
                    read[i] += 1;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        flipper.join().unwrap();
        assert!(read[0] > 0 && read[1] > 0, "the file inside was never read: {read:?}");
    }

    /// A file swapped for a link out of root in a tight loop: whatever is read is the file
    /// inside, never the one outside.
    #[test]
    fn a_racing_swap_never_leads_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(dir.path().join("outside"), CANARY).unwrap();
        std::fs::write(root.join("real"), "inside").unwrap();
        let (inside, outside) = (root.clone(), dir.path().join("outside"));
        never_leads_out(&root, "key", 3000, move || {
            let _ = std::fs::hard_link(inside.join("real"), inside.join("tmp"));
            let _ = std::fs::rename(inside.join("tmp"), inside.join("key"));
            let _ = symlink(&outside, inside.join("tmp"));
            let _ = std::fs::rename(inside.join("tmp"), inside.join("key"));
        });
    }

    /// The same race one level up: a directory on the way swapped for a link to a directory
    /// outside root (issue 11 item 3, second review).
    #[test]
    fn a_racing_directory_swap_never_leads_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        std::fs::create_dir(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/key"), CANARY).unwrap();
        std::fs::write(root.join("real/key"), "inside").unwrap();
        let (inside, outside) = (root.clone(), dir.path().join("outside"));
        never_leads_out(&root, "d/key", 2000, move || {
            let _ = symlink("real", inside.join("tmp"));
            let _ = std::fs::rename(inside.join("tmp"), inside.join("d"));
            let _ = symlink(&outside, inside.join("tmp"));
            let _ = std::fs::rename(inside.join("tmp"), inside.join("d"));
        });
    }
}
