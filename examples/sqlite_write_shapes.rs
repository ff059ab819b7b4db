//! What one session termination costs SQLite, by statement shape, outside the server: the same
//! read, UPDATE and history INSERT the store's writer runs for DeleteSession, in group-commit
//! batches, on a copy of a benchmark database (`bench/run.sh` builds one). Evidence for
//! BENCHMARKS.md's "what would close the gap"; it never touches a database a server is using.
//!
//! The history's layout is rebuilt on the copy before the run (`--history`), from the rows it
//! holds, so that every layout starts from B-trees built the same way.
//!
//! ```sh
//! cp /tmp/sessiond-bench/small-400000.db /tmp/shapes.db
//! taskset -c 0 target/release/examples/sqlite_write_shapes --database /tmp/shapes.db --shape all-columns --batch 16
//! ```

#![allow(clippy::print_stdout)] // a command-line tool: it prints its measurement

#[path = "bench_common/mod.rs"]
mod bench_common;

use std::{fs, time::Instant};

use clap::{Parser, ValueEnum};
use rusqlite::{Connection, params};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    /// Every column in SET, so SQLite rewrites every index entry (the store before 4d89d68).
    AllColumns,
    /// What the store's writer does since 4d89d68: re-read the indexed columns, then SET the
    /// changed ones plus change_date, sequence, token_hash and state.
    Store,
    /// SET only what a termination changes: change_date, sequence, terminated_at.
    Minimal,
}

/// How `session_history` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum History {
    /// Clustered by (session_id, sequence), an index on `at` (migrations 0001-0005).
    BySession,
    /// Rows appended in commit order (a rowid), an index on `at` and one by session (migration 0006).
    Append,
    /// As `append` without the index by session: what that index costs per write.
    AppendUnindexed,
    /// Clustered by (at, session_id, sequence) WITHOUT ROWID, an index by session.
    ByTime,
    /// As `append`, no index by session: each entry names the one before it of its session, the
    /// session row names the newest (migration 0007, the store since).
    Chain,
    /// The database as the store made it (0007 or later), not rebuilt: its sessions' pages as
    /// the store's own writes filled them.
    AsIs,
}

impl History {
    /// The SQL that rebuilds the history of a database at any schema version into this layout.
    fn rebuild(self) -> String {
        const COLUMNS: &str = "session_id TEXT NOT NULL, sequence INTEGER NOT NULL, at INTEGER NOT NULL, \
                               actor TEXT NOT NULL, changes TEXT NOT NULL";
        let copy = |order: &str| {
            format!(
                "INSERT INTO h (session_id, sequence, at, actor, changes) \
                 SELECT session_id, sequence, at, actor, changes FROM session_history ORDER BY {order}; \
                 DROP TABLE session_history; ALTER TABLE h RENAME TO session_history;"
            )
        };
        match self {
            Self::BySession => format!(
                "CREATE TABLE h ({COLUMNS}, PRIMARY KEY (session_id, sequence)) WITHOUT ROWID; {} \
                 CREATE INDEX session_history_at ON session_history (at);",
                copy("session_id, sequence")
            ),
            Self::Append => MIGRATION_0006.to_owned(),
            Self::AppendUnindexed => format!("{MIGRATION_0006}; DROP INDEX session_history_session;"),
            Self::Chain => format!("{MIGRATION_0006}; {MIGRATION_0007}"),
            Self::AsIs => String::new(),
            Self::ByTime => format!(
                "CREATE TABLE h ({COLUMNS}, PRIMARY KEY (at, session_id, sequence)) WITHOUT ROWID; {} \
                 CREATE UNIQUE INDEX session_history_session ON session_history (session_id, sequence);",
                copy("at, session_id, sequence")
            ),
        }
    }
}

const MIGRATION_0006: &str = include_str!("../migrations/sqlite/0006_history_append.sql");
const MIGRATION_0007: &str = include_str!("../migrations/sqlite/0007_history_chain.sql");

/// A later option overrides an earlier one (`bench/run.sh` adds variants to common settings).
#[derive(Debug, Parser)]
#[command(args_override_self = true)]
struct Args {
    /// A copy of a benchmark database (its "del" pool is consumed).
    #[arg(long)]
    database: String,
    #[arg(long, value_enum)]
    shape: Shape,
    /// The history's layout, rebuilt on the copy before the run.
    #[arg(long, value_enum, default_value_t = History::Chain)]
    history: History,
    /// Indexes to drop before the run (what each costs per write).
    #[arg(long)]
    drop_index: Vec<String>,
    /// Rebuild the copy with pages of this size first (VACUUM; SQLite's default is 4096).
    #[arg(long)]
    page_size: Option<u32>,
    /// Terminations per transaction (the writer's group commit).
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 20_000)]
    count: u64,
    /// First index of the "del" pool to terminate.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Skip the per-job savepoint.
    #[arg(long)]
    no_savepoint: bool,
    /// Skip the history INSERT.
    #[arg(long)]
    no_history: bool,
    /// `PRAGMA cache_size` in KiB (SQLite's default is 2000).
    #[arg(long)]
    cache_kib: Option<u32>,
    /// Turn off automatic checkpoints (as if a separate connection checkpointed later).
    #[arg(long)]
    no_autocheckpoint: bool,
}

/// (`wchar`, `rchar`) of this process: bytes passed to write and read system calls.
fn io_bytes() -> (u64, u64) {
    let io = fs::read_to_string("/proc/self/io").unwrap_or_default();
    let field =
        |name: &str| io.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    (field("wchar:"), field("rchar:"))
}

/// utime + stime of this process, in seconds (clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(") ").map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conn = Connection::open(&args.database)?;
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    let rebuild = Instant::now();
    if let Some(size) = args.page_size {
        // The page size of a WAL database changes only outside WAL mode, by a VACUUM.
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = DELETE; PRAGMA page_size = {size}; VACUUM; PRAGMA journal_mode = WAL;"
        ))?;
    }
    // A database made by the store since 0007 has the chain's column and table: every layout
    // starts without them (0007 adds them again).
    let chained: i64 =
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('sessions') WHERE name = 'history_head'", [], |r| {
            r.get(0)
        })?;
    if chained > 0 && args.history != History::AsIs {
        conn.execute_batch("ALTER TABLE sessions DROP COLUMN history_head; DROP TABLE session_history_heads;")?;
    }
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {}; COMMIT;", args.history.rebuild()))?;
    for index in &args.drop_index {
        conn.execute_batch(&format!("DROP INDEX {index}"))?;
    }
    // The rebuild's pages go into the file before the measurement starts.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
    let history_rows: i64 = conn.query_row("SELECT COUNT(*) FROM session_history", [], |r| r.get(0))?;
    println!(
        "history rebuilt as {:?} ({history_rows} entries) in {:.1} s",
        args.history,
        rebuild.elapsed().as_secs_f64()
    );
    if let Some(kib) = args.cache_kib {
        conn.execute_batch(&format!("PRAGMA cache_size = -{kib}"))?;
    }
    if args.no_autocheckpoint {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0")?;
    }
    // With the chain, the entry goes first and the session row names it.
    let chain = matches!(args.history, History::Chain | History::AsIs);
    let head = if chain { ", history_head = last_insert_rowid()" } else { "" };
    let history_sql = if chain {
        "INSERT INTO session_history (session_id, sequence, at, actor, changes, previous) \
         VALUES (?1, ?2, ?3, ?4, ?5, (SELECT history_head FROM sessions WHERE id = ?1))"
    } else {
        "INSERT INTO session_history (session_id, sequence, at, actor, changes) VALUES (?1, ?2, ?3, ?4, ?5)"
    };
    let all_columns = format!(
        "UPDATE sessions SET resource_owner = resource_owner, creator_id = creator_id, \
         user_id = user_id, fingerprint_id = fingerprint_id, creation_date = creation_date, \
         change_date = ?2, sequence = ?3, token_hash = token_hash, \
         expiration_date = expiration_date, terminated_at = ?2, state = ?4{head} \
         WHERE id = ?1 AND sequence = ?5"
    );
    let store_update = format!(
        "UPDATE sessions SET change_date = ?3, sequence = ?4, token_hash = ?5, state = ?6, \
         terminated_at = ?3{head} WHERE id = ?1 AND sequence = ?2"
    );
    let minimal = format!(
        "UPDATE sessions SET change_date = ?2, sequence = ?3, terminated_at = ?2{head} WHERE id = ?1 AND sequence = ?4"
    );
    let ids: Vec<String> = (args.start..args.start + args.count).map(|i| bench_common::session_id("del", i)).collect();
    let now = 1_800_000_000_000_000i64;
    let ((written0, read0), cpu0, started) = (io_bytes(), cpu_secs(), Instant::now());
    for chunk in ids.chunks(args.batch.max(1)) {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        for id in chunk {
            if !args.no_savepoint {
                conn.execute_batch("SAVEPOINT job")?;
            }
            // The domain reads the session before it writes its successor.
            let (sequence, state): (i64, String) = conn
                .prepare_cached("SELECT sequence, state FROM sessions WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            let append = || {
                conn.prepare_cached(history_sql)?.execute(params![
                    id,
                    sequence + 1,
                    now,
                    "benchmark-user-id-0000",
                    r#"[{"type":"terminated"}]"#
                ])
            };
            if chain && !args.no_history {
                append()?;
            }
            match args.shape {
                Shape::AllColumns => {
                    conn.prepare_cached(&all_columns)?.execute(params![id, now, sequence + 1, state, sequence])?
                }
                Shape::Store => {
                    let _: (i64, Option<String>, Option<i64>, Option<i64>) = conn
                        .prepare_cached(
                            "SELECT sequence, user_id, expiration_date, terminated_at FROM sessions WHERE id = ?1",
                        )?
                        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?;
                    conn.prepare_cached(&store_update)?.execute(params![
                        id,
                        sequence,
                        now,
                        sequence + 1,
                        [7u8; 32].to_vec(),
                        state
                    ])?
                }
                Shape::Minimal => conn.prepare_cached(&minimal)?.execute(params![id, now, sequence + 1, sequence])?,
            };
            if !chain && !args.no_history {
                append()?;
            }
            if !args.no_savepoint {
                conn.execute_batch("RELEASE job")?;
            }
        }
        conn.execute_batch("COMMIT")?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let (written, read) = io_bytes();
    let n = args.count as f64;
    // Without automatic checkpoints the copy into the database file is still owed: pay it now,
    // as a background checkpointer would, and report it apart.
    let checkpoint = args.no_autocheckpoint.then(|| {
        let ((w0, _), c0, t0) = (io_bytes(), cpu_secs(), Instant::now());
        conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").map(|()| {
            let ((w1, _), c1) = (io_bytes(), cpu_secs());
            format!(
                "; the checkpoint afterwards: {:.1} us CPU, {:.1} KiB written, {:.0} us wall per termination",
                (c1 - c0) * 1e6 / n,
                (w1 - w0) as f64 / 1024.0 / n,
                t0.elapsed().as_secs_f64() * 1e6 / n
            )
        })
    });
    println!(
        "{:?} {:?}{} page {} batch {} savepoint {} history {} cache {} autocheckpoint {}: {:.0}/s, CPU {:.1} us, written {:.1} KiB, read {:.1} KiB per termination",
        args.shape,
        args.history,
        args.drop_index.iter().map(|i| format!(" without {i}")).collect::<String>(),
        conn.query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?,
        args.batch,
        !args.no_savepoint,
        !args.no_history,
        args.cache_kib.map_or_else(|| "default".to_owned(), |k| format!("{k} KiB")),
        !args.no_autocheckpoint,
        n / elapsed,
        (cpu_secs() - cpu0) * 1e6 / n,
        (written - written0) as f64 / 1024.0 / n,
        (read - read0) as f64 / 1024.0 / n,
    );
    if let Some(checkpoint) = checkpoint {
        println!("{}", checkpoint?.trim_start_matches("; "));
    }
    Ok(())
}
