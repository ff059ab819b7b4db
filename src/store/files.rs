//! The SQLite database's files are readable by their owner only: the file is created 0600 before
//! SQLite opens it, since SQLite creates it 0644 (less the umask) and gives the `-wal`, `-shm` and
//! `-journal` files it creates later the main file's mode.

use std::path::Path;

/// Creates `path` empty and 0600 unless it exists (SQLite takes an empty file for a new
/// database), and takes group and other access away from an existing database and its `-wal` and
/// `-shm`, which versions before this one created 0644.
#[cfg(unix)]
pub(super) fn owner_only_database(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};

    use anyhow::Context as _;

    if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
        return Ok(());
    }
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create the database file {}", path.display())),
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = Path::new(&file);
        let Ok(meta) = std::fs::metadata(file) else { continue };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(mode & 0o700))
                .with_context(|| format!("cannot make {} readable by its owner only", file.display()))?;
            tracing::warn!(file = %file.display(), old_mode = format_args!("{mode:o}"), "made a database file readable by its owner only");
        }
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn owner_only_database(_path: &Path) -> anyhow::Result<()> {
    Ok(())
}
