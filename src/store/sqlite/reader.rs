//! The SQLite store's reader: a second connection on a thread of its own for the reads that can
//! be large (a ListSessions page of up to 1,000 sessions with their metadata, one session's
//! history). On the writer's thread such a read would hold up every call queued behind it: with
//! four clients reading pages of 43 MB back to back, an unrelated GetSession took half a second
//! and writes all but stopped (BENCHMARKS.md, session 15). Here they
//! wait only for each other, each in one read transaction (one snapshot for its count and its
//! page), while the writer goes on committing. Its page cache starts cold after every commit of
//! the writer's (WAL mode), which costs a large read little and is why the small reads stay on
//! the writer's connection.

use super::*;

/// Large reads queued for the reader before callers wait.
const READ_QUEUE: usize = 256;

/// A read runs in a read transaction on the reader's connection, or learns why it cannot; what
/// it returns runs after the transaction ended.
pub(super) type ReadJob = Box<dyn FnOnce(Result<&Connection, StoreError>) -> Box<dyn FnOnce() + Send> + Send>;

#[derive(Debug)]
pub(super) struct Reader {
    jobs: Mutex<Option<mpsc::Sender<ReadJob>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Reader {
    /// Opens the reader's connection on the (already migrated) database at `path`.
    pub(super) fn open(path: &Path, turn: Arc<WalTurn>) -> anyhow::Result<Self> {
        let conn = Connection::open(path).map_err(translate)?;
        // Reads only: a bug that tried to write here would be refused, not race the writer.
        conn.execute_batch("PRAGMA query_only = ON; PRAGMA temp_store = MEMORY;").map_err(translate)?;
        conn.busy_handler(Some(short_naps)).map_err(translate)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (tx, rx) = mpsc::channel(READ_QUEUE);
        let thread =
            std::thread::Builder::new().name("sqlite-reader".into()).spawn(move || reader_loop(&conn, rx, &turn))?;
        Ok(Self { jobs: Mutex::new(Some(tx)), thread: Mutex::new(Some(thread)) })
    }

    /// Runs `f` in one read transaction on the reader's thread, then `then` on what it read, on
    /// the same thread but after the transaction ended: a snapshot held open keeps the WAL from
    /// starting over, so what needs no database (decoding) is done outside it.
    pub(super) async fn read<R: Send + 'static, T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> StoreResult<R> + Send + 'static,
        then: impl FnOnce(R) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let sender = self.jobs.lock().expect("reader handle poisoned").clone().ok_or_else(closed)?;
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn| {
            let read = conn.and_then(f);
            Box::new(move || {
                let _ = reply.send(read.and_then(then));
            })
        });
        sender.send(job).await.map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Stops the reader after the queued reads and waits for it.
    pub(super) async fn shutdown(&self) {
        drop(self.jobs.lock().expect("reader handle poisoned").take());
        let thread = self.thread.lock().expect("reader thread poisoned").take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn reader_loop(conn: &Connection, mut jobs: mpsc::Receiver<ReadJob>, turn: &WalTurn) {
    while let Some(job) = jobs.blocking_recv() {
        let yielded = std::time::Instant::now();
        loop {
            // Announce the read, then look: the writer looks at the two flags the other way round,
            // so that it never copies while a read begins unseen.
            turn.reading.store(true, Ordering::SeqCst);
            if !turn.restart.load(Ordering::SeqCst) || yielded.elapsed() >= READER_YIELDS_AT_MOST {
                break;
            }
            turn.reading.store(false, Ordering::SeqCst);
            std::thread::sleep(Duration::from_micros(200));
        }
        // A deferred transaction: its first read takes the snapshot every later one sees.
        let after = match run_cached(conn, "BEGIN") {
            Err(e) => job(Err(e)),
            Ok(()) => {
                let after = job(Ok(conn));
                if let Err(e) = run_cached(conn, "COMMIT") {
                    tracing::warn!(error = %e, "the sqlite reader could not end a read transaction");
                    let _ = run_cached(conn, "ROLLBACK");
                }
                after
            }
        };
        turn.reading.store(false, Ordering::SeqCst);
        after();
    }
}
