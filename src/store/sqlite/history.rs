//! The session history in SQLite (migration 0007): entries appended in commit order, each naming
//! the entry before it of the same session (`previous`), the session row naming its newest
//! (`sessions.history_head`). No index by session: a write appends to the last page of the
//! table and rewrites only the session row it writes anyway. One session's history is read by
//! walking that chain.

use rusqlite::{Connection, OptionalExtension, params};

use super::{StoreResult, translate};
use crate::domain::session::HistoryEntry;
use crate::store::codec::{encode_changes, history_entry};

/// Appends `entry`, chained to the session's current head. The caller's write of the session
/// row must then set `history_head = last_insert_rowid()` (or roll the job back).
pub(super) fn append_history(conn: &Connection, entry: &HistoryEntry) -> StoreResult<()> {
    append(
        conn,
        "INSERT INTO session_history (session_id, sequence, at, actor, changes, previous) \
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT history_head FROM sessions WHERE id = ?1))",
        entry,
    )
}

/// Appends a new session's first entry, which has no entry before it (the caller has just found
/// no row with its id, so `append_history`'s lookup of the head would find none either).
pub(super) fn append_first_history(conn: &Connection, entry: &HistoryEntry) -> StoreResult<()> {
    append(
        conn,
        "INSERT INTO session_history (session_id, sequence, at, actor, changes, previous) \
         VALUES (?1, ?2, ?3, ?4, ?5, NULL)",
        entry,
    )
}

/// Runs `insert` with `entry`'s session id, sequence, time, actor and changes.
fn append(conn: &Connection, insert: &str, entry: &HistoryEntry) -> StoreResult<()> {
    conn.prepare_cached(insert)
        .and_then(|mut s| {
            s.execute(params![
                entry.session_id,
                i64::try_from(entry.sequence).unwrap_or(i64::MAX),
                entry.at.0,
                entry.actor,
                encode_changes(&entry.changes)
            ])
        })
        .map_err(translate)?;
    Ok(())
}

/// (session_id, sequence, at, actor, changes) of one entry.
type Row = (String, i64, i64, String, String);

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

/// One session's history in sequence order: the chain from its head, newest first.
///
/// The retention sweep removes entries by time, oldest first, so a walk ends at an entry that is
/// gone. A session's entries are numbered in sequence order, so when the missing entry's number
/// is below every number left, nothing older of the session is left either. Otherwise the sweep
/// took a newer entry before an older one (a clock that went back) and the rest of the session's
/// entries are found by a scan of the numbers below it: rare, and bounded by that range.
pub(super) fn read_history(conn: &Connection, id: &str) -> StoreResult<Vec<HistoryEntry>> {
    let head: Option<i64> = conn
        .prepare_cached("SELECT history_head FROM sessions WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(translate)?
        .flatten();
    let head = match head {
        Some(head) => Some(head),
        // A session swept from `sessions` keeps its head here while its entries last.
        None => conn
            .prepare_cached("SELECT head FROM session_history_heads WHERE session_id = ?1")
            .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
            .map_err(translate)?,
    };
    let mut newest_first: Vec<Row> = Vec::new();
    let mut link = head;
    while let Some(entry) = link {
        let row: Option<(Row, Option<i64>)> = conn
            .prepare_cached(
                "SELECT session_id, sequence, at, actor, changes, previous FROM session_history WHERE entry = ?1",
            )
            .and_then(|mut s| s.query_row([entry], |r| Ok((entry_row(r)?, r.get(5)?))).optional())
            .map_err(translate)?;
        // A number can be reused once every entry was swept: it must still be this session's,
        // and older than the entry that named it.
        let below = newest_first.last().map_or(i64::MAX, |r| r.1);
        match row {
            Some((row, previous)) if row.0 == id && row.1 < below => {
                newest_first.push(row);
                link = previous;
            }
            _ => {
                newest_first.extend(older_than(conn, id, entry, below)?);
                link = None;
            }
        }
    }
    newest_first.into_iter().rev().map(history_entry).collect()
}

/// The session's entries numbered below `entry` and older than sequence `below`, newest first,
/// when the sweep may have left some (see `read_history`).
fn older_than(conn: &Connection, id: &str, entry: i64, below: i64) -> StoreResult<Vec<Row>> {
    let oldest: Option<i64> =
        conn.query_row("SELECT MIN(entry) FROM session_history", [], |r| r.get(0)).map_err(translate)?;
    if oldest.is_none_or(|oldest| entry < oldest) {
        return Ok(Vec::new());
    }
    conn.prepare_cached(
        "SELECT session_id, sequence, at, actor, changes FROM session_history \
         WHERE entry < ?1 AND session_id = ?2 AND sequence < ?3 ORDER BY sequence DESC",
    )
    .and_then(|mut s| s.query_map(params![entry, id, below], entry_row)?.collect())
    .map_err(translate)
}

/// Removes up to `limit` sessions terminated before `before` and up to `limit` expired before it,
/// the earliest first (each through its partial index), keeping their history's heads so that
/// their history stays readable.
pub(super) fn sweep_sessions(conn: &Connection, before: i64, limit: u32) -> StoreResult<u64> {
    let mut ended: Vec<(String, Option<i64>)> = Vec::new();
    for sql in [
        // The bound the partial index has (migration 0008), written out so that SQLite uses it.
        "SELECT id, history_head FROM sessions WHERE terminated_at < ?1 AND terminated_at < 9223372036854775807 \
         ORDER BY terminated_at LIMIT ?2",
        "SELECT id, history_head FROM sessions WHERE expiration_date < ?1 ORDER BY expiration_date LIMIT ?2",
    ] {
        let found: Vec<(String, Option<i64>)> = conn
            .prepare_cached(sql)
            .and_then(|mut s| s.query_map(params![before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .map_err(translate)?;
        ended.extend(found);
    }
    let mut removed = 0;
    for (id, head) in ended {
        if let Some(head) = head {
            conn.prepare_cached("INSERT OR REPLACE INTO session_history_heads (session_id, head) VALUES (?1, ?2)")
                .and_then(|mut s| s.execute(params![id, head]))
                .map_err(translate)?;
        }
        // Both queries can name a session that ended both ways: it is removed once.
        removed += conn
            .prepare_cached("DELETE FROM sessions WHERE id = ?1")
            .and_then(|mut s| s.execute([&id]))
            .map_err(translate)?;
    }
    Ok(removed as u64)
}

/// After the retention sweep: the heads of swept sessions none of whose entries is left.
pub(super) fn forget_heads(conn: &Connection) -> StoreResult<()> {
    conn.prepare_cached(
        "DELETE FROM session_history_heads \
         WHERE head < IFNULL((SELECT MIN(entry) FROM session_history), 9223372036854775807)",
    )
    .and_then(|mut s| s.execute([]))
    .map_err(translate)?;
    Ok(())
}
