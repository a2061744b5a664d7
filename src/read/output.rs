//! Files the user asks jemsafe to write: `page -o`, `report -o`, `archive -o`,
//! `timeline -o`.
//!
//! jemsafe runs as root, and an output often goes where others can write: /tmp, or the
//! dump directory, which mysqld's user owns. Whatever is at the name may be their file
//! (kept readable by them if written through) or a symbolic link they planted (root
//! would overwrite its target). So an output is never opened by its name: it is written
//! to a new file created beside it (`O_CREAT|O_EXCL|O_NOFOLLOW` relative to the
//! directory's descriptor, under an unpredictable name), then renamed over the name. An
//! existing file or link is replaced, never written through or followed, and a reader
//! sees the old file or the whole new one. The directory itself is the one named (a
//! symbolic link in the path before the last name is followed, as the user wrote it).
//!
//! Outputs hold mysqld's heap profile, its names and memory layout: mode 0600 (the
//! caller's), or 0640 with the dump directory's group when they go into the dump
//! directory, like the dumps beside them.

use crate::error::{Error, Result};
use jemsafe_report::create::{Access, Ownership, Staged, WriteNewError};
use jemsafe_report::safe::shown;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The dump directory an output may go into: the plan's, else the config's when it reads
/// (else none is known, and every output is 0600).
pub fn dump_dir(config: &Path, settings: Option<&super::plan::ReadSettings>) -> Option<PathBuf> {
    match settings {
        Some(s) => Some(s.dumps_dir.clone()),
        None => crate::config::Config::load(config)
            .ok()
            .map(|c| c.dumps.dir),
    }
}

/// The mode of an output: group-readable only beside the dumps, whose group may read them.
pub fn mode_for(into_dump_dir: bool) -> u32 {
    if into_dump_dir {
        0o640
    } else {
        0o600
    }
}

/// An output being written: [`Output::file`], then [`Output::finish`] renames it into
/// place. Dropped unfinished (an error on the way), the temporary file is removed and
/// whatever was at the name stays.
pub struct Output {
    staged: Staged<OwnedFd>,
    name: String,
    path: PathBuf,
}

impl Output {
    /// A new, empty output for `path`. `dump_dir`: the dump directory, when known (an
    /// output inside it gets mode 0640 and its group).
    pub fn create(path: &Path, dump_dir: Option<&Path>) -> Result<Output> {
        let shown_path = shown(path);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .ok_or_else(|| {
                Error::Usage(format!(
                    "{shown_path}: an output must be a file name in UTF-8 (as in -o page.html)"
                ))
            })?
            .to_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir = jemsafe_report::safe::open_dir(None, parent, true).map_err(Error::io(
            format!("cannot write {shown_path}: its directory {}", shown(parent)),
        ))?;
        let dir_stat = nix::sys::stat::fstat(dir.as_raw_fd())
            .map_err(|e| Error::io(format!("cannot inspect {}", shown(parent)))(e.into()))?;
        let into_dump_dir = dump_dir
            .and_then(|d| std::fs::metadata(d).ok())
            .is_some_and(|m| (m.dev(), m.ino()) == (dir_stat.st_dev, dir_stat.st_ino));
        let ownership = Ownership {
            mode: mode_for(into_dump_dir),
            uid: None,
            gid: into_dump_dir.then_some(dir_stat.st_gid),
        };
        let staged = Staged::create(dir, &name, Access::Write, ownership).map_err(|e| match e {
            WriteNewError::Create { source, .. } => Error::Refused(format!(
                "cannot write {shown_path}: a new file beside it cannot open it: {source}"
            )),
            WriteNewError::Write { source, .. } => {
                Error::io(format!("cannot set the mode of {shown_path}"))(source)
            }
        })?;
        Ok(Output {
            staged,
            name,
            path: path.to_owned(),
        })
    }

    /// Where to write the output's bytes.
    pub fn file(&self) -> &File {
        self.staged.file()
    }

    /// Flushes the output to disk and renames it over its name (replacing whatever was
    /// there: a file, a symbolic link).
    pub fn finish(mut self) -> Result<()> {
        let context = format!("cannot write {}", shown(&self.path));
        self.staged
            .publish(&self.name)
            .map_err(Error::io(context.clone()))?;
        let (dir, file) = (self.staged.dir().as_raw_fd(), self.staged.file());
        // The directory's owner (mysqld's user, in the dump directory) can list it and
        // swap another file in under the temporary name before the rename: then the name
        // is not what was written, and the user is told.
        let written = file.metadata().map_err(Error::io(context))?;
        let now = nix::sys::stat::fstatat(
            Some(dir),
            self.name.as_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        );
        match now {
            Ok(st) if (st.st_dev, st.st_ino) == (written.dev(), written.ino()) => Ok(()),
            _ => Err(Error::Untrusted(format!(
                "{} was replaced while jemsafe wrote it (by whoever else can write its \
                 directory): it is not jemsafe's output; write it to a directory only \
                 root can write",
                shown(&self.path)
            ))),
        }
    }
}

/// Writes `bytes` as the output `path` ([`Output`]); `-` is standard output.
pub fn write(path: &Path, bytes: &[u8], dump_dir: Option<&Path>) -> Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        return out
            .write_all(bytes)
            .and_then(|()| out.flush())
            .map_err(Error::io("cannot write to standard output"));
    }
    let out = Output::create(path, dump_dir)?;
    out.file()
        .write_all(bytes)
        .map_err(Error::io(format!("cannot write {}", shown(path))))?;
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use jemsafe_report::create::random;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn outputs_are_private_unless_beside_the_dumps() {
        assert_eq!(mode_for(false), 0o600);
        assert_eq!(mode_for(true), 0o640);
    }

    #[test]
    fn temporary_names_are_hidden_beside_the_output_and_differ() {
        let t = jemsafe_report::create::temp_name("page.html", 0xabc);
        assert_eq!(t, ".page.html.jemsafe-0000000000000abc.tmp");
        assert!(!t.contains('/'));
        assert_ne!(random(), random());
    }

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "jemsafe-output-{tag}-{}-{:x}",
            std::process::id(),
            random()
        ));
        std::fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn an_existing_file_or_link_is_replaced_never_written_through() {
        let d = scratch("replace");
        let old = d.join("out.html");
        std::fs::write(&old, "old").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        let old_ino = std::fs::metadata(&old).unwrap().ino();
        let kept = std::fs::File::open(&old).unwrap();
        write(&old, b"new", None).unwrap();
        let meta = std::fs::metadata(&old).unwrap();
        assert_ne!(meta.ino(), old_ino);
        assert_eq!(meta.mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(&old).unwrap(), b"new");
        // The old file, still open, was not written.
        assert_eq!(kept.metadata().unwrap().len(), 3);
        assert_eq!(
            std::fs::read(format!("/proc/self/fd/{}", kept.as_raw_fd())).unwrap(),
            b"old"
        );

        let target = d.join("target");
        std::fs::write(&target, "secret").unwrap();
        let link = d.join("link.html");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        write(&link, b"new", Some(&d)).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"secret");
        let meta = std::fs::symlink_metadata(&link).unwrap();
        assert!(meta.file_type().is_file());
        // Into the dump directory: its group may read it.
        assert_eq!(meta.mode() & 0o7777, 0o640);
        // Nothing else left behind.
        let mut names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["link.html", "out.html", "target"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_swapped_in_under_the_temporary_name_is_not_passed_off_as_the_output() {
        let d = scratch("swapped");
        let path = d.join("page.html");
        let out = Output::create(&path, None).unwrap();
        out.file().write_all(b"page").unwrap();
        // What the directory's owner could do: list it, and rename a file of theirs
        // over the temporary name.
        let theirs = d.join("theirs");
        std::fs::write(&theirs, "theirs").unwrap();
        std::fs::rename(&theirs, d.join(out.staged.temp())).unwrap();
        let e = out.finish().unwrap_err();
        assert!(
            e.to_string()
                .contains("was replaced while jemsafe wrote it"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unfinished_output_leaves_nothing_and_the_old_file_stays() {
        let d = scratch("unfinished");
        let path = d.join("a.tar.gz");
        std::fs::write(&path, "old").unwrap();
        let out = Output::create(&path, None).unwrap();
        out.file().write_all(b"partial").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1);
        let e = Output::create(&d.join(".."), None).err().unwrap();
        assert!(e.to_string().contains("a file name"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
