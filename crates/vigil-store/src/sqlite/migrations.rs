//! Numbered migrations, each applied in its own transaction: a crash mid-migration rolls it back
//! and the next start applies it again, so the schema is never half-migrated.

use rusqlite::Connection;

use crate::{Error, Result};

const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_users.sql")),
    (3, include_str!("../../migrations/sqlite/0003_gateway.sql")),
    (
        4,
        include_str!("../../migrations/sqlite/0004_governance.sql"),
    ),
    (
        5,
        include_str!("../../migrations/sqlite/0005_approval_binding.sql"),
    ),
    (6, include_str!("../../migrations/sqlite/0006_quality.sql")),
    (
        7,
        include_str!("../../migrations/sqlite/0007_failure_modes.sql"),
    ),
    (
        8,
        include_str!("../../migrations/sqlite/0008_experiments.sql"),
    ),
    (
        9,
        include_str!("../../migrations/sqlite/0009_score_cost.sql"),
    ),
    (
        10,
        include_str!("../../migrations/sqlite/0010_ingest_verdicts.sql"),
    ),
    (
        11,
        include_str!("../../migrations/sqlite/0011_deferred_trace_indexes.sql"),
    ),
    (
        12,
        include_str!("../../migrations/sqlite/0012_scores_by_trace_ref.sql"),
    ),
    (
        13,
        include_str!("../../migrations/sqlite/0013_trace_judged_by.sql"),
    ),
    (
        14,
        include_str!("../../migrations/sqlite/0014_chunk_passes.sql"),
    ),
    (
        15,
        include_str!("../../migrations/sqlite/0015_eval_jobs_by_project.sql"),
    ),
];

pub fn apply(conn: &mut Connection) -> Result<()> {
    // Development builds before the chunked span layout stored one row per span; that layout is
    // not migrated (nothing was released with it), but it must not be misread either.
    let old_layout: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'span_bodies')",
        [],
        |r| r.get(0),
    )?;
    if old_layout {
        return Err(Error::Corrupt(
            "this data directory was written by a pre-release build of Vigil with another storage layout; \
             move it aside (or delete it) and start again"
                .into(),
        ));
    }
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    for (version, sql) in MIGRATIONS {
        let done: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)",
            [version],
            |r| r.get(0),
        )?;
        if done {
            continue;
        }
        let tx = conn.transaction().map_err(|source| Error::Migration {
            version: *version,
            source,
        })?;
        tx.execute_batch(sql).map_err(|source| Error::Migration {
            version: *version,
            source,
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch())",
            [version],
        )
        .map_err(|source| Error::Migration {
            version: *version,
            source,
        })?;
        tx.commit().map_err(|source| Error::Migration {
            version: *version,
            source,
        })?;
        tracing::debug!(version, "applied database migration");
    }
    Ok(())
}
