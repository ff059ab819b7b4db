//! The SQLite store's two threads: the writer that runs every job in group-committed
//! transactions, and the checkpointer beside it; and opening and migrating the database.

use super::*;

/// Most jobs committed in one transaction.
pub(super) const MAX_BATCH: usize = 256;
/// Jobs queued for the writer before callers wait (backpressure).
pub(super) const WRITE_QUEUE: usize = 4096;
/// How often the background checkpointer moves the WAL's pages into the database file.
pub(super) const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// Page cache of the one connection, in KiB: the hot B-tree pages of a large database stay in.
pub(super) const CACHE_KIB: u32 = 16 * 1024;
/// Prepared statements each connection keeps: every statement a job runs, of every kind of call,
/// with room for ListSessions' filter combinations (rusqlite's default, 16, is fewer than the
/// store's statements, so a mix of calls parsed some of them anew on every call).
pub(super) const STATEMENT_CACHE: usize = 128;
/// WAL frames (pages) past which the WAL should start over from its beginning.
pub(super) const WAL_RESTART_FRAMES: i64 = 8192;
/// A checkpoint pass this short leaves only a few frames behind it: the writer may copy those
/// itself, cheaply, and so let the WAL start over.
pub(super) const CAUGHT_UP: Duration = Duration::from_millis(3);
/// WAL frames past which the writer copies what is left even when the passes do not catch up
/// (writes outrunning the disk): a longer stall, but the WAL stays bounded.
pub(super) const WAL_HARD_LIMIT_FRAMES: i64 = 4 * WAL_RESTART_FRAMES;
/// Bytes the WAL file is cut back to after a checkpoint.
pub(super) const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// The WAL's restarts, shared by the writer, the checkpointer and the reader. The WAL starts over
/// only at a write transaction that finds every frame copied and no reader inside a snapshot
/// that still uses the WAL; a reader running pages back to back would hold such a snapshot most
/// of the time, and the WAL would grow by every write meanwhile (measured with the pages decoded
/// inside their read: 170-470 MiB in 10 s). So once a restart is wanted the reader starts no new
/// read until the writer has copied every frame (waiting at most `READER_YIELDS_AT_MOST`), and
/// the writer copies the last frames only while the reader is outside a read.
#[derive(Debug, Default)]
pub(super) struct WalTurn {
    /// The checkpointer wants the WAL to start over; cleared once the writer has copied every
    /// frame (reads that begin after that do not use the WAL, so the writer's next transaction
    /// starts it over).
    pub(super) restart: AtomicBool,
    /// The reader is inside a read transaction (or about to begin one).
    pub(super) reading: AtomicBool,
}

/// Longest the reader holds back a read for a restart that has not happened yet.
pub(super) const READER_YIELDS_AT_MOST: Duration = Duration::from_millis(20);

pub(super) fn closed() -> StoreError {
    StoreError::Unavailable("the store is closed".into())
}

/// Busy handler: retry after 100 µs, for up to 5 s.
pub(super) fn short_naps(attempt: i32) -> bool {
    std::thread::sleep(Duration::from_micros(100));
    attempt < 50_000
}

pub(super) fn open_writer(path: &Path, durability: Durability) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(translate)?;
    let synchronous = match durability {
        Durability::Normal => "NORMAL",
        Durability::Full => "FULL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}; \
         PRAGMA cache_size = -{CACHE_KIB}; PRAGMA secure_delete = FAST;"
    ))
    .map_err(translate)?;
    // SQLite's default busy handler sleeps in steps of up to 25 ms: a writer waiting for the
    // checkpointer's RESTART would overshoot by that much. Poll in short naps instead.
    conn.busy_handler(Some(short_naps)).map_err(translate)?;
    migrate(&conn)?;
    // Each job's savepoint copies the pages it changes into a statement journal, which SQLite
    // spills to a temporary file past 64 KiB and then keeps there: a pwrite per page for every
    // later job (38 KiB per CreateSession, measured). Kept in memory it is a copy; every job is
    // bounded (the sweeps run in steps), and the migrations above, which may rewrite every row,
    // ran before this.
    conn.execute_batch("PRAGMA temp_store = MEMORY").map_err(translate)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Applies the migrations this database lacks, one transaction each. The version is read under
/// the write lock (`BEGIN IMMEDIATE`), so processes opening one new file at the same moment take
/// turns: each step runs once, and a process that waited finds it applied.
pub(super) fn migrate(conn: &Connection) -> StoreResult<()> {
    loop {
        conn.execute_batch("BEGIN IMMEDIATE").map_err(translate)?;
        let applied = match conn.query_row("PRAGMA user_version", [], |r| r.get::<_, usize>(0)) {
            Ok(applied) => applied,
            Err(e) => return Err(rolled_back(conn, translate(e))),
        };
        if applied > MIGRATIONS.len() {
            let newer = format!(
                "the database has schema version {applied}, newer than this sessiond knows ({})",
                MIGRATIONS.len()
            );
            return Err(rolled_back(conn, StoreError::Internal(newer)));
        }
        let Some(sql) = MIGRATIONS.get(applied) else {
            return conn.execute_batch("COMMIT").map_err(translate);
        };
        let version = applied + 1;
        conn.execute_batch(&format!("{sql}; PRAGMA user_version = {version}; COMMIT;"))
            .map_err(|e| rolled_back(conn, StoreError::Internal(format!("migration {version} failed: {e}"))))?;
        tracing::info!(version, "applied sqlite migration");
    }
}

fn rolled_back(conn: &Connection, error: StoreError) -> StoreError {
    let _ = conn.execute_batch("ROLLBACK");
    error
}

/// Checkpoints run on a thread of their own (the writer's automatic checkpoints are off): a
/// checkpoint syncs the WAL and the database file, which takes milliseconds per thousand pages
/// here, and the writer must not stall behind that while calls wait for it.
///
/// Only PASSIVE checkpoints run, which never block the writer. The WAL starts over from its
/// beginning when a write transaction begins with every frame copied; under steady load the
/// writer appends while each pass copies, so that never happens by itself. Once the WAL is long,
/// passes therefore run back to back, each with less to copy than the last, until one is short
/// enough that only a few frames were appended meanwhile. Then `turn.restart` asks the writer to
/// copy those few itself between two transactions: its next transaction starts the WAL over.
/// Should writes outrun the disk so that passes never get that short, the writer is asked anyway
/// past `WAL_HARD_LIMIT_FRAMES`: a longer pause for it, a bounded WAL. The reader holds back its
/// next read meanwhile (`WalTurn`). (A RESTART checkpoint would do the same by holding the write
/// lock through a copy and two syncs: the writer waited 50-100 ms behind each one.) The pages
/// each pass copies are flushed to the disk behind it (`flush`), and once more before a restart
/// is asked for, so that the writer's pass, which syncs the database file, finds little else
/// to write out.
pub(super) fn checkpoint_loop(
    path: &Path,
    stop: &std::sync::mpsc::Receiver<()>,
    turn: &WalTurn,
    checkpoints: &AtomicU64,
) {
    let conn = match Connection::open(path).and_then(|c| c.execute_batch("PRAGMA busy_timeout = 5000;").map(|()| c)) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::error!(error = %e, "the sqlite checkpointer cannot open the database; the WAL will grow");
            return;
        }
    };
    let flusher = super::flush::Flusher::start(path);
    let mut wait = CHECKPOINT_EVERY;
    let (mut frames_before, mut copied_before) = (0, 0);
    // A restart was asked of the writer, and this thread has not yet seen the writer clear it
    // (which it does once it has copied every frame; the WAL starts over at its next write).
    let mut asked = false;
    while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        let started = std::time::Instant::now();
        // (busy, frames in the WAL, frames copied)
        let pass =
            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)));
        // Counted when it copied frames the pass before it had not (an idle WAL is not a checkpoint).
        if let Ok((_, copied)) = pass
            && copied > 0
            && copied != copied_before
        {
            checkpoints.fetch_add(1, Ordering::Relaxed);
            flusher.copied();
        }
        // A WAL that grew since the pass before, or with frames left to copy, is being written:
        // it will not start over by itself (see above).
        let written = pass.as_ref().is_ok_and(|&(frames, copied)| copied < frames || frames != frames_before);
        // The writer has just copied every frame for the restart asked of it: its next
        // transaction starts the WAL over unless a read is inside it, which the next pass tells
        // (asking again now would cost the writer a second copy and its syncs for nothing).
        let pending = turn.restart.load(Ordering::SeqCst);
        let cleared = asked && !pending;
        let settled = cleared && pass.as_ref().is_ok_and(|&(frames, copied)| copied == frames);
        if let Ok((frames, copied)) = pass {
            (frames_before, copied_before) = (frames, copied);
        }
        if cleared {
            asked = false;
        }
        wait = match pass {
            // Asked already and not done yet (the writer waits for a read to end, or for the
            // checkpoint this thread was running): nothing to ask again.
            Ok(_) if settled || (asked && pending) => CAUGHT_UP,
            Ok((frames, _)) if frames > WAL_RESTART_FRAMES && written => {
                if started.elapsed() < CAUGHT_UP || frames > WAL_HARD_LIMIT_FRAMES {
                    // What the passes copied goes to the disk first, so that the writer's copy,
                    // which syncs the database file, finds little else to wait for.
                    flusher.flush_now();
                    turn.restart.store(true, Ordering::SeqCst);
                    asked = true;
                    CAUGHT_UP
                } else {
                    Duration::ZERO
                }
            }
            // A short WAL, or a long one copied whole and left alone since: the next write
            // transaction starts it over by itself (and reads need not yield meanwhile).
            Ok(_) => CHECKPOINT_EVERY,
            Err(e) => {
                tracing::warn!(error = %e, "sqlite checkpoint failed");
                CHECKPOINT_EVERY
            }
        };
    }
}

pub(super) fn writer_loop(
    conn: Connection,
    mut jobs: mpsc::Receiver<Job>,
    path: PathBuf,
    checkpoints: Arc<AtomicU64>,
    turn: Arc<WalTurn>,
    auth: &super::auth_rows::AuthRows,
) {
    let (stop_checkpoints, stop) = std::sync::mpsc::channel::<()>();
    let checkpointer_turn = Arc::clone(&turn);
    let checkpointer = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || checkpoint_loop(&path, &stop, &checkpointer_turn, &checkpoints));
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = jobs.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(error) = run_cached(&conn, "BEGIN IMMEDIATE") {
            // Nothing ran: every job answers with the reason the transaction could not begin.
            tracing::error!(error = %error, jobs = batch.len(), "sqlite could not begin a transaction");
            for job in batch.drain(..) {
                (job(Err(error.clone())).finish)(None);
            }
            continue;
        }
        auth.transaction_began(&conn);
        let ran: Vec<Ran> = batch.drain(..).map(|job| job(Ok(&conn))).collect();
        let commit_error = if ran.iter().any(|r| r.torn) {
            // A job without a savepoint failed after changing rows: nothing of the batch may be
            // committed (`SqliteStore::write_direct`).
            tracing::error!(jobs = ran.len(), "a sqlite write failed part way; its batch was rolled back");
            let _ = run_cached(&conn, "ROLLBACK");
            Some(StoreError::Unavailable("a write failed part way; nothing was written".into()))
        } else {
            run_cached(&conn, "COMMIT").err().inspect(|_| {
                let _ = run_cached(&conn, "ROLLBACK");
            })
        };
        auth.transaction_ended();
        for r in ran {
            (r.finish)(commit_error.clone());
        }
        if turn.restart.load(Ordering::SeqCst) && !turn.reading.load(Ordering::SeqCst) {
            // The checkpointer is nearly through a long WAL: copy the frames it has not, so
            // that the next transaction starts the WAL over (see `checkpoint_loop`). While the
            // reader is inside a read, this waits for a later batch (see `WalTurn`).
            match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            }) {
                // Every frame copied: reads that begin now no longer use the WAL, and so
                // cannot hold back the restart of the next write transaction.
                Ok((0, frames, copied)) if copied == frames => turn.restart.store(false, Ordering::SeqCst),
                // The checkpointer's own pass held the checkpoint: again after the next batch.
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "sqlite checkpoint failed"),
            }
        }
    }
    drop(stop_checkpoints);
    match checkpointer {
        Ok(thread) => {
            let _ = thread.join();
        }
        Err(e) => tracing::error!(error = %e, "the sqlite checkpointer did not start"),
    }
    if let Err((_, e)) = conn.close() {
        tracing::error!(error = %e, "closing the sqlite database failed");
    }
}

/// What the store tells of itself for metrics: the WAL file's size, read at scrape time, and the
/// checkpoint passes the checkpointer counts.
#[derive(Debug)]
pub(super) struct WalStats {
    pub(super) wal_path: PathBuf,
    pub(super) checkpoints: Arc<AtomicU64>,
}

impl WalStats {
    pub(super) fn new(path: &Path) -> Self {
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        Self { wal_path: wal.into(), checkpoints: Arc::new(AtomicU64::new(0)) }
    }

    pub(super) fn read(&self) -> crate::domain::port::StoreStats {
        crate::domain::port::StoreStats {
            // No WAL file (yet, or after a clean close) is an empty one.
            wal_bytes: Some(std::fs::metadata(&self.wal_path).map_or(0, |m| m.len())),
            checkpoints: Some(self.checkpoints.load(Ordering::Relaxed)),
            pool: None,
        }
    }
}
