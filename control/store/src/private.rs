//! The data directory is the operator's alone: created 0700, its files created 0600 (with the
//! mode, never chmod-ed after the fact, so there is no window in which another user can open
//! them). A directory or file found looser is tightened, and the caller is told so it can warn.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data directory and every directory weft creates in it.
pub const DIR_MODE: u32 = 0o700;
/// Mode of every file weft creates in the data directory.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700. An existing `dir` that grants anything
/// to group or others is tightened to 0700; the returned line says what was found.
pub fn private_dir(dir: &Path) -> std::io::Result<Option<String>> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    tighten(dir, DIR_MODE)
}

/// Tightens `path` to `mode` when it grants more; says what it found.
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<Option<String>> {
    let found = fs::metadata(path)?.permissions().mode() & 0o777;
    if found & !mode == 0 {
        return Ok(None);
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(Some(format!(
        "{} had mode {found:o}, tightened to {mode:o}",
        path.display()
    )))
}

/// Opens `path` for reading and appending, creating it with mode 0600; an existing file
/// looser than 0600 is tightened (the returned line says so).
pub fn open_append(path: &Path) -> std::io::Result<(File, Option<String>)> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    let warning = tighten(path, FILE_MODE)?;
    Ok((file, warning))
}

/// Creates (or truncates) `path` for writing with mode 0600.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    // A leftover file of the same name keeps its mode through `truncate`: start afresh.
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Replaces `path` with `bytes` atomically: a 0600 temporary file beside it, fsync'ed, renamed
/// over `path`, and the directory fsync'ed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut file = create_file(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_parent(path)
}

/// `fsync`s the directory holding `path`, so a created or renamed entry survives a crash.
pub fn sync_parent(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => File::open(parent)?.sync_all(),
        _ => Ok(()),
    }
}
