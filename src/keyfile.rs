//! The secrets key file: where it is (configured, or beside a SQLite database), creating it on a
//! SQLite database's first start (0600 from its first byte, complete or absent), reading it, and
//! unlocking the database's secrets with it.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    sync::Arc,
};

use anyhow::Context as _;
use zeroize::Zeroizing;

use crate::{
    domain::{keyring::Keyring, secrets::Secrets},
    store::{self, Store},
};

/// What the default key file's name adds to the SQLite database's.
pub const DEFAULT_SUFFIX: &str = ".secrets-key";

/// The key file a SQLite database uses when none is configured: `<database file>.secrets-key`.
pub fn beside_database(database_url: &str) -> Option<PathBuf> {
    let path = store::sqlite_path(database_url)?;
    let mut file = PathBuf::from(path).into_os_string();
    file.push(DEFAULT_SUFFIX);
    Some(file.into())
}

/// Loads the key file (`key_file`, or the SQLite database's own, created on its first start),
/// checks it against the database, and seals any TOTP seeds an older version kept in clear.
/// Every way a key can be missing or wrong fails here, with a message that says which.
pub async fn unlock(database_url: &str, key_file: Option<&Path>, store: Arc<dyn Store>) -> anyhow::Result<Secrets> {
    let (path, keyring) = match key_file {
        Some(path) => (path.to_owned(), read(path)?),
        None => {
            let path = beside_database(database_url).ok_or_else(|| {
                anyhow::anyhow!(
                    "PostgreSQL needs a secrets key file, so that every process seals with the deployment's key: \
                     create one with `sessiond secrets generate-key > FILE` (keep it 0600) and pass \
                     --secrets-key-file FILE (or SESSIOND_SECRETS_KEY_FILE)"
                )
            })?;
            let keyring = if path.exists() {
                read(&path)?
            } else {
                let used: Vec<String> = store.key_checks().await?.into_iter().map(|c| c.key_id).collect();
                anyhow::ensure!(
                    used.is_empty(),
                    "the database holds secrets sealed with key {}, but its secrets key file {} is missing: \
                     restore it from the backup taken with the database, or name it with --secrets-key-file",
                    used.join(", "),
                    path.display()
                );
                create(&path)?
            };
            (path, keyring)
        }
    };
    let secrets = Secrets::unlock(store, keyring)
        .await
        .with_context(|| format!("the secrets key file {} does not fit the database", path.display()))?;
    let sealed = secrets.seal_clear_totp_secrets().await.context("cannot seal the TOTP secrets kept in clear")?;
    if sealed > 0 {
        tracing::info!(sealed, key_id = secrets.keyring().current_key_id(), "sealed TOTP secrets kept in clear");
    }
    Ok(secrets)
}

fn read(path: &Path) -> anyhow::Result<Keyring> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the secrets key file {}", path.display()))?,
    );
    warn_if_others_may_read(path);
    Keyring::parse(&text).with_context(|| format!("the secrets key file {} is malformed", path.display()))
}

#[cfg(unix)]
fn warn_if_others_may_read(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        let mode = meta.permissions().mode() & 0o777;
        tracing::warn!(file = %path.display(), mode = format_args!("{mode:o}"), "the secrets key file is readable by others than its owner");
    }
}

#[cfg(not(unix))]
fn warn_if_others_may_read(_path: &Path) {}

/// Writes a new key file at `path`: into a 0600 temporary file beside it, synced, then linked
/// into place, which fails rather than replace a key file another process created meanwhile
/// (that one is read instead). Nobody ever sees a partial or world-readable key file.
fn create(path: &Path) -> anyhow::Result<Keyring> {
    let line = Keyring::generate_line(None).expect("a generated key id is valid");
    let text = Zeroizing::new(format!(
        "# sessiond secrets key: the first key seals, every key opens (see README, \"Secrets at rest\").\n\
         # Back this file up together with the database: without it the sealed secrets are lost.\n{line}\n"
    ));
    if !create_private(path, text.as_bytes())
        .with_context(|| format!("cannot create the secrets key file {}", path.display()))?
    {
        return read(path);
    }
    tracing::info!(file = %path.display(), "created a secrets key file; back it up together with the database");
    Keyring::parse(&text).context("the generated key file does not parse")
}

/// Creates the file `path` holding `bytes`, readable by its owner only from its first byte and
/// complete or absent: written into a 0600 temporary file beside it, synced, then linked into
/// place. `false` when another process created it meanwhile (it is left as it is).
pub(crate) fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<bool> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{:08x}", rand::random::<u32>()));
    let tmp = PathBuf::from(tmp);
    let written = write_new(&tmp, bytes);
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The new name is durable only once its directory is.
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(true)
}

fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
