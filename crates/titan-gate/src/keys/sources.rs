//! The files a keyring load reads: a digest of each, so a watcher can tell when one
//! changes, and its permissions, so the gate can warn about secrets other users can read.

use std::hash::{DefaultHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Permission bits that give the owning group or other users any access to a file.
const GROUP_OR_OTHER_BITS: u32 = 0o077;

/// The files one keyring load read or tried to read, in the order it read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeySources {
    files: Vec<SourceFile>,
}

/// One file a keyring load read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceFile {
    /// The path as configured, which may be a symbolic link.
    pub path: PathBuf,
    /// A digest of the bytes read, `None` when the file could not be read. It detects
    /// changes only; it is no integrity check.
    pub digest: Option<u64>,
    /// The file's permission bits, `None` when it could not be opened.
    pub mode: Option<u32>,
}

impl KeySources {
    /// Reads a file as UTF-8 text and records its digest and permission bits. The text is
    /// zeroed when the caller drops it.
    pub(super) fn read(&mut self, path: &Path) -> io::Result<Zeroizing<String>> {
        let result = read_file(path);
        let (digest, mode) = match &result {
            Ok((bytes, mode)) => (Some(digest(bytes)), Some(*mode)),
            Err(_) => (None, None),
        };
        self.files.retain(|file| file.path != path);
        self.files.push(SourceFile { path: path.to_path_buf(), digest, mode });
        let (bytes, _) = result?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(Zeroizing::new(text.to_owned())),
            Err(error) => Err(io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text: {error}"))),
        }
    }

    /// Returns the files in the order they were read.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Returns the digests recorded when the files were loaded.
    pub fn loaded_digests(&self) -> Vec<Option<u64>> {
        self.files.iter().map(|file| file.digest).collect()
    }

    /// Reads every file again and returns its digest now, `None` for each file that cannot be read.
    pub fn current_digests(&self) -> Vec<Option<u64>> {
        self.files.iter().map(|file| read_file(&file.path).ok().map(|(bytes, _)| digest(&bytes))).collect()
    }

    /// Returns one warning for each file that its group or other users may access.
    pub fn exposure_warnings(&self) -> Vec<String> {
        self.files
            .iter()
            .filter_map(|file| {
                let mode = file.mode.filter(|mode| mode & GROUP_OR_OTHER_BITS != 0)?;
                let path = file.path.display();
                Some(format!(
                    "{path} holds key material and has mode {mode:04o}, so its group or other users can access it; run chmod 600 {path}"
                ))
            })
            .collect()
    }
}

/// Reads a whole file into a buffer that is zeroed on drop and returns it with the file's
/// permission bits. The permissions are those of the opened file, so a symbolic link
/// reports its target's.
fn read_file(path: &Path) -> io::Result<(Zeroizing<Vec<u8>>, u32)> {
    let mut file = std::fs::File::open(path)?;
    let metadata = file.metadata()?;
    // Sized up front so the buffer does not grow: a grown Vec leaves its old copy unzeroed.
    let capacity = usize::try_from(metadata.len()).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    file.read_to_end(&mut bytes)?;
    Ok((bytes, metadata.permissions().mode() & 0o7777))
}

/// `SipHash` with fixed keys: stable within the process, which is all change detection needs.
fn digest(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    hasher.write(bytes);
    hasher.finish()
}
