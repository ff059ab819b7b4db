//! The database file flushed to the disk behind the checkpointer, on a thread of its own.
//!
//! A checkpoint pass copies WAL frames into the database file, and SQLite syncs that file only
//! when a pass copies the WAL to its end. Under steady writes the checkpointer's passes never
//! do; the pass that does is the writer's own, just before the WAL starts over (see
//! `checkpoint_loop`), so its sync used to write out every page the checkpointer had copied
//! since the last restart: tens of megabytes, 13-150 ms during which no call committed
//! (measured, closed-loop DeleteSession; it was the whole of Delete's p99.9). Flushed here as
//! the passes go, the writer's sync finds only the pages of its own short pass.
//!
//! A flush here changes nothing SQLite relies on: it only writes sooner what SQLite's own sync
//! would write, and Linux reports a failed write-back to every descriptor open on the file, so
//! one seen here is still seen by SQLite's next sync.

use std::{
    collections::HashMap,
    fs::File,
    path::Path,
    sync::{Arc, Mutex, OnceLock, mpsc},
};

/// One descriptor per database file, kept open until the process exits. Closing any descriptor
/// of a file drops every POSIX lock the process holds on it, SQLite's included (its own VFS
/// defers its closes for that reason): closed while a connection is open, it would let another
/// process take the database for unused and fold its WAL away. Keyed by the file itself (a
/// database deleted and made again at the same path is another file).
static FILES: OnceLock<Mutex<HashMap<FileKey, Arc<File>>>> = OnceLock::new();

#[cfg(unix)]
type FileKey = (u64, u64);
#[cfg(not(unix))]
type FileKey = std::path::PathBuf;

#[cfg(unix)]
fn key_of(meta: &std::fs::Metadata, _path: &Path) -> std::io::Result<FileKey> {
    use std::os::unix::fs::MetadataExt as _;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn key_of(_meta: &std::fs::Metadata, path: &Path) -> std::io::Result<FileKey> {
    std::fs::canonicalize(path)
}

fn database_file(path: &Path) -> std::io::Result<Arc<File>> {
    let mut files = FILES.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Looked up before opening: a second descriptor of a kept file could not be closed either.
    if let Some(kept) = files.get(&key_of(&std::fs::metadata(path)?, path)?) {
        return Ok(Arc::clone(kept));
    }
    let file = Arc::new(File::open(path)?);
    files.insert(key_of(&file.metadata()?, path)?, Arc::clone(&file));
    Ok(file)
}

/// Asks the flushing thread for a flush; the thread ends when this is dropped.
#[derive(Debug)]
pub(super) struct Flusher {
    wake: Option<mpsc::SyncSender<()>>,
    file: Option<Arc<File>>,
}

impl Flusher {
    /// Starts flushing the database at `path`. Without a file to flush (none at that path, or
    /// the thread did not start) the writer's sync pays for every page, as SQLite alone would.
    pub(super) fn start(path: &Path) -> Self {
        let file = match database_file(path) {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!(error = %e, path = %path.display(), "the sqlite database file is not flushed in the background");
                return Self { wake: None, file: None };
            }
        };
        // One flush asked for while one runs is enough: it covers every page copied before it.
        let (wake, asked) = mpsc::sync_channel::<()>(1);
        let flushed = Arc::clone(&file);
        let started = std::thread::Builder::new().name("sqlite-flush".into()).spawn(move || {
            while asked.recv().is_ok() {
                if let Err(e) = flushed.sync_data() {
                    tracing::warn!(error = %e, "flushing the sqlite database file failed");
                }
            }
        });
        match started {
            Ok(_) => Self { wake: Some(wake), file: Some(file) },
            Err(e) => {
                tracing::warn!(error = %e, "the sqlite flushing thread did not start");
                Self { wake: None, file: Some(file) }
            }
        }
    }

    /// A pass copied pages into the database file: flush them soon, without waiting.
    pub(super) fn copied(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }

    /// Flushes the database file now, waiting for it.
    pub(super) fn flush_now(&self) {
        if let Some(file) = &self.file
            && let Err(e) = file.sync_data()
        {
            tracing::warn!(error = %e, "flushing the sqlite database file failed");
        }
    }
}
