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
//! A flush here is no worse than SQLite alone: it only writes sooner pages whose WAL frames are
//! already synced (each pass syncs the WAL before it copies), and Linux (4.13 and later)
//! reports a failed write-back once to each descriptor open on the file at the time, so one
//! seen here is still seen by SQLite's next sync.

#[cfg(unix)]
use std::{
    collections::HashMap,
    sync::{Mutex, OnceLock},
};
use std::{
    fs::File,
    path::Path,
    sync::{Arc, mpsc},
};

/// One descriptor per database file, kept open until the process exits. Closing any descriptor
/// of a file drops every POSIX lock the process holds on it, SQLite's included (its own VFS
/// defers its closes for that reason): closed while a connection is open, it would let another
/// process take the database for unused and fold its WAL away. Keyed by the file itself, device
/// and inode (a database deleted and made again at the same path is another file).
#[cfg(unix)]
static FILES: OnceLock<Mutex<KeptFiles>> = OnceLock::new();

/// Descriptors by (device, inode).
#[cfg(unix)]
type KeptFiles = HashMap<(u64, u64), Arc<File>>;

#[cfg(unix)]
fn database_file(path: &Path) -> std::io::Result<Arc<File>> {
    use std::{collections::hash_map::Entry, os::unix::fs::MetadataExt as _};

    let key = |meta: std::fs::Metadata| (meta.dev(), meta.ino());
    let mut files = FILES.get_or_init(Mutex::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Looked up before opening, and every descriptor opened is kept, even a second one of a
    // kept file or one that cannot be looked at: none may be closed.
    if let Some(kept) = files.get(&key(std::fs::metadata(path)?)) {
        return Ok(Arc::clone(kept));
    }
    let file = File::open(path)?;
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(e) => {
            std::mem::forget(file);
            return Err(e);
        }
    };
    match files.entry(key(meta)) {
        Entry::Occupied(kept) => {
            std::mem::forget(file);
            Ok(Arc::clone(kept.get()))
        }
        Entry::Vacant(slot) => Ok(Arc::clone(slot.insert(Arc::new(file)))),
    }
}

/// Elsewhere the writer's sync pays for every page, as SQLite alone would (a flush there may
/// need a writable handle, and no POSIX locks tie a descriptor's life to SQLite's).
#[cfg(not(unix))]
fn database_file(_path: &Path) -> std::io::Result<Arc<File>> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Asks the flushing thread for a flush; the thread ends when this is dropped.
#[derive(Debug)]
pub(super) struct Flusher {
    wake: Option<mpsc::SyncSender<()>>,
    file: Option<Arc<File>>,
}

impl Flusher {
    /// Starts flushing the database at `path`. Without a file to flush (none at that path, or
    /// not a unix system) the writer's sync pays for every page, as SQLite alone would; without
    /// the thread, only `flush_now` flushes.
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
