//! A batch's jobs commit together: what one job's failure leaves behind. Jobs in a savepoint
//! undo only themselves; a direct job that fails after a change takes its batch with it; either
//! way no job ever answers for a write that was not committed, nor fails one that was.

use super::*;

async fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("batch.db");
    let store = SqliteStore::open(path.to_str().expect("utf-8 path"), Durability::Normal).await.expect("store opens");
    store
        .write(|conn| {
            conn.execute_batch("CREATE TABLE marks (n INTEGER PRIMARY KEY)").map_err(translate)?;
            Ok(())
        })
        .await
        .expect("table");
    (dir, store)
}

fn mark(conn: &Connection, n: i64) -> StoreResult<()> {
    conn.execute("INSERT INTO marks (n) VALUES (?1)", [n]).map_err(translate)?;
    Ok(())
}

async fn marked(store: &SqliteStore) -> Vec<i64> {
    store
        .read(|conn| {
            conn.prepare("SELECT n FROM marks ORDER BY n")
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .map_err(translate)
        })
        .await
        .expect("marks read")
}

/// Every job that answered Ok has its row, and no job that failed does.
fn answers_match(answers: &[(i64, StoreResult<()>)], rows: &[i64]) {
    for (n, answer) in answers {
        assert_eq!(answer.is_ok(), rows.contains(n), "job {n} answered {answer:?} but the rows are {rows:?}");
    }
}

#[tokio::test]
async fn a_savepoint_job_that_fails_after_writing_undoes_only_itself() {
    let (_dir, store) = store().await;
    let store = Arc::new(store);
    // Many at once, so that they share batches with the failing ones.
    let jobs = (1..=200_i64).map(|n| {
        let store = Arc::clone(&store);
        async move {
            let answer = store
                .write(move |conn| {
                    mark(conn, n)?;
                    if n % 10 == 0 { Err(StoreError::Conflict) } else { Ok(()) }
                })
                .await;
            (n, answer)
        }
    });
    let answers = futures_util::future::join_all(jobs).await;
    let rows = marked(&store).await;
    answers_match(&answers, &rows);
    assert_eq!(rows.len(), 180, "only the failing jobs' rows are missing: {rows:?}");
    assert!(answers.iter().all(|(n, a)| (n % 10 == 0) == matches!(a, Err(StoreError::Conflict))));
}

#[tokio::test]
async fn a_direct_job_that_fails_after_writing_rolls_its_batch_back() {
    let (_dir, store) = store().await;
    let store = Arc::new(store);
    let wave = |numbers: std::ops::RangeInclusive<i64>| {
        futures_util::future::join_all(numbers.map(|n| {
            let store = Arc::clone(&store);
            async move {
                let answer = store
                    .write_direct(move |conn| {
                        if n % 50 == 7 {
                            // Fails before any change: no harm to the batch.
                            return Err(StoreError::Conflict);
                        }
                        mark(conn, n)?;
                        if n == 50 { Err(StoreError::Internal("failed after a change".into())) } else { Ok(()) }
                    })
                    .await;
                (n, answer)
            }
        }))
    };
    // Submitted at once, the first wave shares batches with the job that fails after a change.
    let first = wave(1..=100).await;
    let rows = marked(&store).await;
    answers_match(&first, &rows);
    assert!(!rows.contains(&50), "the torn job's change was committed");
    assert!(matches!(first[49].1, Err(StoreError::Unavailable(_))), "the torn job answered {:?}", first[49].1);
    // The refusals answer as refusals, or as their batch's loss when they shared the torn one's.
    for n in [7_i64, 57] {
        let answer = &first[n as usize - 1].1;
        assert!(matches!(answer, Err(StoreError::Conflict | StoreError::Unavailable(_))), "job {n}: {answer:?}");
    }
    // Only that batch is lost: the store goes on committing.
    let second = wave(101..=200).await;
    let rows = marked(&store).await;
    answers_match(&second, &rows);
    for (n, answer) in &second {
        assert_eq!(answer.is_ok(), n % 50 != 7, "job {n}: {answer:?}");
    }
}

#[tokio::test]
async fn a_direct_job_that_fails_in_its_only_statement_leaves_nothing() {
    let (_dir, store) = store().await;
    store.write_direct(|conn| mark(conn, 1)).await.expect("first");
    // The second insert of the same key fails inside its one statement: SQLite undoes it.
    let taken = store.write_direct(|conn| mark(conn, 1)).await;
    assert!(matches!(taken, Err(StoreError::AlreadyExists(_))), "{taken:?}");
    store.write_direct(|conn| mark(conn, 2)).await.expect("next");
    assert_eq!(marked(&store).await, vec![1, 2]);
}
