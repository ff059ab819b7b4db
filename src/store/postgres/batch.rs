//! Statements shared by concurrent calls: the hot calls' store steps (the fused reads of a token
//! with a session or with a user, a termination, a creation) are queued by kind; a few lanes per kind take
//! whatever is queued when they come free and run it as one statement over arrays (`unnest`),
//! one row per call. Concurrent calls then share one round trip, one statement's overhead and,
//! for writes, one commit (one WAL flush) instead of paying each; a call alone runs at once, so
//! nothing waits for a batch to fill.
//!
//! A statement answers each row as a statement of its own would have (every write keeps its own
//! guard, checked row by row). One that fails for one row's sake (a taken id) runs again row by
//! row, so that only that row's call fails.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use tokio::{
    sync::{Mutex, mpsc, oneshot},
    time::Instant,
};

use super::{StoreError, StoreResult, call::Db, error::Failure};

/// Lanes of one kind running at once, each on one pooled connection while it runs. Four kinds
/// take at most 12 of the pool's 16 connections, so the other calls always find some.
const LANES: usize = 3;
/// Rows one statement runs at most.
const MAX_BATCH: usize = 64;
/// Rows of one kind queued and not yet taken before a caller waits to queue its own.
const QUEUE: usize = 1024;

struct Queued<R: Batched> {
    row: R,
    deadline: Instant,
    done: oneshot::Sender<StoreResult<R::Output>>,
}

/// The queue of one kind of row in front of its lanes. The lanes end when it is dropped.
pub(super) struct Lanes<R: Batched> {
    queue: mpsc::Sender<Queued<R>>,
}

impl<R: Batched> std::fmt::Debug for Lanes<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes").field("queued", &(QUEUE - self.queue.capacity())).finish()
    }
}

impl<R: Batched> Lanes<R> {
    /// Starts the lanes (on the current runtime) over `db`'s pool.
    pub(super) fn start(db: &Db) -> Self {
        let (queue, taken) = mpsc::channel(QUEUE);
        let taken = Arc::new(Mutex::new(taken));
        for _ in 0..LANES {
            tokio::spawn(lane(db.clone(), taken.clone()));
        }
        Self { queue }
    }

    /// Runs `row` with whatever else of its kind is queued, by `deadline`.
    pub(super) async fn run(&self, row: R, deadline: Instant) -> StoreResult<R::Output> {
        let (done, answer) = oneshot::channel();
        match tokio::time::timeout_at(deadline, self.queue.send(Queued { row, deadline, done })).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(StoreError::Unavailable("the store is closed".into())),
            Err(_) => return Err(late()),
        }
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(StoreError::Unavailable("the store is closed".into())),
            Err(_) => Err(late()),
        }
    }
}

fn late() -> StoreError {
    StoreError::Unavailable("the database did not answer in time".into())
}

/// Rows one statement runs together; `run` answers one output per row, by position.
pub(super) trait Batched: Send + Sync + Sized + 'static {
    type Output: Send + 'static;
    fn run<'c>(conn: &'c mut PgConnection, rows: &'c [Self]) -> BoxFuture<'c, Result<Vec<Self::Output>, Failure>>;
}

/// Takes what is queued (at most `MAX_BATCH`), runs it, and again, until the queue is dropped.
async fn lane<R: Batched>(db: Db, taken: Arc<Mutex<mpsc::Receiver<Queued<R>>>>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        if taken.lock().await.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let now = Instant::now();
        let (mut rows, mut replies) = (Vec::with_capacity(batch.len()), Vec::with_capacity(batch.len()));
        for Queued { row, deadline, done } in batch.drain(..) {
            // Its caller has given up by now: not run at all.
            if deadline <= now {
                let _ = done.send(Err(late()));
                continue;
            }
            rows.push(row);
            replies.push((deadline, done));
        }
        run_rows(&db, rows, replies).await;
    }
}

type Reply<T> = (Instant, oneshot::Sender<StoreResult<T>>);

/// Runs `rows` within the latest of their deadlines: a row whose caller is about to give up does
/// not cut the statement short for the others (each caller stops waiting at its own deadline).
async fn run_rows<R: Batched>(db: &Db, rows: Vec<R>, replies: Vec<Reply<R::Output>>) {
    let Some(deadline) = replies.iter().map(|(deadline, _)| *deadline).max() else {
        return;
    };
    let rows = Arc::new(rows);
    match statement(db, deadline, &rows, 0..rows.len()).await {
        Ok(outputs) => {
            for ((_, done), output) in replies.into_iter().zip(outputs) {
                let _ = done.send(Ok(output));
            }
        }
        // One row's fault (a taken id, a value the database refused) fails the whole statement:
        // each row alone, so that it fails only its own call.
        Err(StoreError::AlreadyExists(_) | StoreError::Internal(_)) if rows.len() > 1 => {
            for (at, (deadline, done)) in replies.into_iter().enumerate() {
                let output = statement(db, deadline, &rows, at..at + 1).await.and_then(|outputs| {
                    outputs.into_iter().next().ok_or_else(|| StoreError::Internal("a row without an answer".into()))
                });
                let _ = done.send(output);
            }
        }
        Err(error) => {
            for (_, done) in replies {
                let _ = done.send(Err(error.clone()));
            }
        }
    }
}

async fn statement<R: Batched>(
    db: &Db,
    deadline: Instant,
    rows: &Arc<Vec<R>>,
    range: std::ops::Range<usize>,
) -> StoreResult<Vec<R::Output>> {
    db.run_until(deadline, |conn| {
        let (rows, range) = (rows.clone(), range.clone());
        Box::pin(async move { R::run(conn, &rows[range]).await })
    })
    .await
}
