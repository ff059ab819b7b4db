//! Schema migrations: versioned files applied at start (and by `sessiond migrate`), safe when
//! several processes start at once, with nothing but tables and transactions.

use sqlx::{Connection as _, Executor as _, PgPool};

use super::{backoff, error::lost_race};
use crate::domain::Timestamp;

/// Migrations, applied in order; the table `schema_migrations` records which ran.
const MIGRATIONS: &[&str] = &[
    include_str!("../../../migrations/postgres/0001_init.sql"),
    include_str!("../../../migrations/postgres/0002_lockouts_history_retention.sql"),
    include_str!("../../../migrations/postgres/0003_sealed_secrets.sql"),
    include_str!("../../../migrations/postgres/0004_otp_email_sms.sql"),
    include_str!("../../../migrations/postgres/0005_passkeys.sql"),
    include_str!("../../../migrations/postgres/0006_history_append.sql"),
];
/// Rounds of the protocol below (a round fails only when a concurrent starter won it) before a
/// start gives up.
const MIGRATION_ROUNDS: u32 = 10;

/// Brings the schema up to date; safe when several processes start at once.
///
/// Each migration runs in one transaction that executes its DDL and then inserts its version into
/// `schema_migrations` (DDL first: CockroachDB refuses a schema change after a write in the same
/// transaction). Two starters racing on the same migration collide on the new tables or on the
/// version's primary key (a unique violation, "already exists", or a serialization failure); the
/// loser rolls back and starts over, and then finds the version applied. No advisory locks, which
/// the distributed engines do not provide.
pub(super) async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    let mut round = 1;
    loop {
        match migrate_once(pool).await {
            Ok(()) => return Ok(()),
            Err(e) if lost_race(&e) && round < MIGRATION_ROUNDS => {
                tracing::debug!(error = %e, round, "a concurrent start is migrating too; checking again");
                tokio::time::sleep(backoff(round)).await;
                round += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn migrate_once(pool: &PgPool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    // Looked up first so that a routine start does not make the server log "already exists".
    let ledger_exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name = 'schema_migrations')",
    )
    .fetch_one(&mut *conn)
    .await?;
    if !ledger_exists {
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    }
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM schema_migrations ORDER BY version").fetch_all(&mut *conn).await?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if let Some(&newest) = applied.last()
        && newest > known
    {
        anyhow::bail!("the database has schema version {newest}, newer than this sessiond knows ({known})");
    }
    for (version, sql) in (1..).zip(MIGRATIONS) {
        if applied.contains(&version) {
            continue;
        }
        let mut tx = conn.begin().await?;
        // A migration may rewrite a whole table: the hot statements' 700 ms cap does not apply to
        // it (a slow or busy server failed starts with "statement timeout"). A lock held by
        // another starter is still waited for only so long.
        tx.execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = '30s'").await?;
        // Unprepared (simple protocol): a migration is several statements. Not `raw_sql`, whose
        // future is not `Send`, and servers are spawned.
        tx.execute(*sql).await?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)")
            .bind(version)
            .bind(Timestamp::now().0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied postgres migration");
    }
    Ok(())
}
