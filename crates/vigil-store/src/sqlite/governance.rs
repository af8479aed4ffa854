//! Governance rows on SQLite: writes through the single writer, reads from the pool.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row};
use vigil_model::{ProjectId, SpanId, TraceId};

use super::read::traces_where;
use super::writer::{delete_traces, time_now_ns};
use super::SqliteStore;
use crate::governance::{
    Approval, ApprovalStatus, AuditCheckpoint, AuditRow, GovernanceStore, StoredPolicy,
};
use crate::{Error, GcReport, Result};

const AUDIT_COLUMNS: &str = "project_id, seq, time_ns, actor, action, subject, content, content_hash, data_subject, prev_hash, entry_hash";

fn audit_row(r: &Row) -> rusqlite::Result<AuditRow> {
    Ok(AuditRow {
        project_id: ProjectId(r.get(0)?),
        seq: r.get(1)?,
        time_ns: r.get(2)?,
        actor: r.get(3)?,
        action: r.get(4)?,
        subject: r.get(5)?,
        content: r.get(6)?,
        content_hash: r.get(7)?,
        data_subject: r.get(8)?,
        prev_hash: r.get(9)?,
        entry_hash: r.get(10)?,
    })
}

const APPROVAL_COLUMNS: &str = "id, project_id, trace_id, parent_span_id, span_id, tool, arguments, agent, environment, session_id, user_id, rule, reason, status, created_ns, expires_ns, decided_ns, decided_by, comment, call_hash, policy_version, consumed_ns";

fn approval_row(r: &Row) -> rusqlite::Result<Approval> {
    let trace: Option<Vec<u8>> = r.get(2)?;
    let parent: Option<Vec<u8>> = r.get(3)?;
    let span: Vec<u8> = r.get(4)?;
    let args: String = r.get(6)?;
    let status: String = r.get(13)?;
    Ok(Approval {
        id: r.get(0)?,
        project_id: ProjectId(r.get(1)?),
        trace_id: trace.and_then(|b| TraceId::from_bytes(&b).ok()),
        parent_span_id: parent.and_then(|b| SpanId::from_bytes(&b).ok()),
        span_id: SpanId::from_bytes(&span).unwrap_or_default(),
        tool: r.get(5)?,
        arguments: serde_json::from_str(&args).unwrap_or(serde_json::Value::Null),
        agent: r.get(7)?,
        environment: r.get(8)?,
        session_id: r.get(9)?,
        user_id: r.get(10)?,
        rule: r.get(11)?,
        reason: r.get(12)?,
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Pending),
        created_ns: r.get(14)?,
        expires_ns: r.get(15)?,
        decided_ns: r.get(16)?,
        decided_by: r.get(17)?,
        comment: r.get(18)?,
        call_hash: r.get(19)?,
        policy_version: r.get(20)?,
        consumed_ns: r.get(21)?,
    })
}

fn get_approval(
    conn: &rusqlite::Connection,
    project: &ProjectId,
    id: &str,
) -> Result<Option<Approval>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE project_id = ?1 AND id = ?2"
        ))?
        .query_row(params![project.as_str(), id], approval_row)
        .optional()?)
}

#[async_trait]
impl GovernanceStore for SqliteStore {
    async fn audit_head(&self, project: &ProjectId) -> Result<Option<(i64, String)>> {
        let p = project.clone();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT seq, entry_hash FROM audit_log WHERE project_id = ?1 ORDER BY seq DESC LIMIT 1",
            )?
            .query_row([p.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
        })
        .await
    }

    async fn audit_insert(&self, rows: Vec<AuditRow>) -> Result<()> {
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                for row in &rows {
                    let inserted = tx
                        .prepare_cached(&format!(
                            "INSERT INTO audit_log ({AUDIT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT DO NOTHING"
                        ))?
                        .execute(params![
                            row.project_id.as_str(),
                            row.seq,
                            row.time_ns,
                            row.actor,
                            row.action,
                            row.subject,
                            row.content,
                            row.content_hash,
                            row.data_subject,
                            row.prev_hash,
                            row.entry_hash
                        ])?;
                    if inserted == 0 {
                        return Err(Error::Conflict(format!(
                            "audit entry {} of project {} already exists",
                            row.seq, row.project_id
                        )));
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn audit_rows(
        &self,
        project: &ProjectId,
        after: i64,
        limit: usize,
    ) -> Result<Vec<AuditRow>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE project_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![p.as_str(), after, limit as i64], audit_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn audit_projects(&self) -> Result<Vec<ProjectId>> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT DISTINCT project_id FROM audit_log ORDER BY project_id")?;
            let rows = stmt.query_map([], |r| Ok(ProjectId(r.get(0)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn audit_erase(&self, project: &ProjectId, data_subject: &str) -> Result<u64> {
        let (p, s) = (project.clone(), data_subject.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let n = conn.execute(
                    "UPDATE audit_log SET content = NULL, data_subject = NULL WHERE project_id = ?1 AND data_subject = ?2",
                    params![p.as_str(), s],
                )?;
                Ok(n as u64)
            })
            .await
    }

    async fn audit_add_checkpoint(&self, cp: AuditCheckpoint) -> Result<()> {
        self.inner
            .writer
            .exec(move |conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO audit_checkpoints (project_id, seq, entry_hash, time_ns, public_key, signature) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![cp.project_id.as_str(), cp.seq, cp.entry_hash, cp.time_ns, cp.public_key, cp.signature],
                )?;
                Ok(())
            })
            .await
    }

    async fn audit_checkpoints(&self, project: &ProjectId) -> Result<Vec<AuditCheckpoint>> {
        let p = project.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT project_id, seq, entry_hash, time_ns, public_key, signature FROM audit_checkpoints WHERE project_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([p.as_str()], |r| {
                Ok(AuditCheckpoint {
                    project_id: ProjectId(r.get(0)?),
                    seq: r.get(1)?,
                    entry_hash: r.get(2)?,
                    time_ns: r.get(3)?,
                    public_key: r.get(4)?,
                    signature: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn create_approval(&self, a: Approval) -> Result<()> {
        self.inner
            .writer
            .exec(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22)"
                ))?
                .execute(params![
                    a.id,
                    a.project_id.as_str(),
                    a.trace_id.map(|t| t.as_bytes().to_vec()),
                    a.parent_span_id.map(|s| s.as_bytes().to_vec()),
                    a.span_id.as_bytes().to_vec(),
                    a.tool,
                    a.arguments.to_string(),
                    a.agent,
                    a.environment,
                    a.session_id,
                    a.user_id,
                    a.rule,
                    a.reason,
                    a.status.as_str(),
                    a.created_ns,
                    a.expires_ns,
                    a.decided_ns,
                    a.decided_by,
                    a.comment,
                    a.call_hash,
                    a.policy_version,
                    a.consumed_ns
                ])?;
                Ok(())
            })
            .await
    }

    async fn get_approval(&self, project: &ProjectId, id: &str) -> Result<Option<Approval>> {
        let (p, id) = (project.clone(), id.to_string());
        self.read(move |c| get_approval(c, &p, &id)).await
    }

    async fn decide_approval(
        &self,
        project: &ProjectId,
        id: &str,
        status: ApprovalStatus,
        by: Option<String>,
        comment: Option<String>,
        now_ns: i64,
    ) -> Result<Option<(Approval, bool)>> {
        let (p, id) = (project.clone(), id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                // Approving or denying after the deadline is too late: only expiry may decide then.
                let deadline = if status == ApprovalStatus::Expired { i64::MAX } else { now_ns };
                let changed = conn.execute(
                    "UPDATE approvals SET status = ?3, decided_ns = ?4, decided_by = ?5, comment = ?6 \
                     WHERE project_id = ?1 AND id = ?2 AND status = 'pending' AND (expires_ns > ?7 OR ?3 = 'expired')",
                    params![p.as_str(), id, status.as_str(), now_ns, by, comment, deadline],
                )?;
                Ok(get_approval(conn, &p, &id)?.map(|a| (a, changed > 0)))
            })
            .await
    }

    async fn list_approvals(
        &self,
        project: &ProjectId,
        status: Option<ApprovalStatus>,
        limit: usize,
    ) -> Result<Vec<Approval>> {
        let p = project.clone();
        self.read(move |c| {
            // With a status, `approvals_by_status` gives the order; `?2 IS NULL OR status = ?2`
            // kept it from being used.
            let status_filter = if status.is_some() { "status = ?2" } else { "?2 IS NULL" };
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE project_id = ?1 AND {status_filter} ORDER BY created_ns DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![p.as_str(), status.map(|s| s.as_str()), limit as i64],
                approval_row,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn consume_approval(&self, project: &ProjectId, id: &str, now_ns: i64) -> Result<bool> {
        let (p, id) = (project.clone(), id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let n = conn.execute(
                    "UPDATE approvals SET consumed_ns = ?3 WHERE project_id = ?1 AND id = ?2 AND status = 'approved' AND consumed_ns IS NULL",
                    params![p.as_str(), id, now_ns],
                )?;
                Ok(n == 1)
            })
            .await
    }

    async fn overdue_approvals(&self, now_ns: i64, limit: usize) -> Result<Vec<Approval>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' AND expires_ns <= ?1 ORDER BY expires_ns LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![now_ns, limit as i64], approval_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn put_policy(&self, project: &ProjectId, source: &str) -> Result<StoredPolicy> {
        let (p, source) = (project.clone(), source.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let now = time_now_ns();
                let version: i64 = conn.query_row(
                    "INSERT INTO guard_policies (project_id, version, source, updated_ns) VALUES (?1, 1, ?2, ?3) \
                     ON CONFLICT (project_id) DO UPDATE SET version = version + 1, source = excluded.source, updated_ns = excluded.updated_ns \
                     RETURNING version",
                    params![p.as_str(), source, now],
                    |r| r.get(0),
                )?;
                Ok(StoredPolicy {
                    version,
                    source,
                    updated_ns: now,
                })
            })
            .await
    }

    async fn get_policy(&self, project: &ProjectId) -> Result<Option<StoredPolicy>> {
        let p = project.clone();
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT version, source, updated_ns FROM guard_policies WHERE project_id = ?1",
            )?
            .query_row([p.as_str()], |r| {
                Ok(StoredPolicy {
                    version: r.get(0)?,
                    source: r.get(1)?,
                    updated_ns: r.get(2)?,
                })
            })
            .optional()?)
        })
        .await
    }

    async fn trace_cost(&self, project: &ProjectId, trace: &TraceId) -> Result<Option<f64>> {
        let (p, t) = (project.clone(), *trace);
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT cost_usd FROM traces WHERE project_id = ?1 AND trace_id = ?2",
            )?
            .query_row(params![p.as_str(), t.as_bytes()], |r| {
                r.get::<_, Option<f64>>(0)
            })
            .optional()?
            .flatten())
        })
        .await
    }

    async fn add_redaction_counts(
        &self,
        rows: Vec<(ProjectId, String, String, u64)>,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.inner
            .writer
            .exec(move |conn| {
                let tx = conn.transaction()?;
                for (p, day, detector, n) in &rows {
                    tx.prepare_cached(
                        "INSERT INTO redaction_counts (project_id, day, detector, count) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT DO UPDATE SET count = count + excluded.count",
                    )?
                    .execute(params![p.as_str(), day, detector, *n as i64])?;
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    async fn redaction_counts(
        &self,
        project: &ProjectId,
        from_day: &str,
        to_day: &str,
    ) -> Result<Vec<(String, String, u64)>> {
        let (p, from, to) = (project.clone(), from_day.to_string(), to_day.to_string());
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT day, detector, count FROM redaction_counts WHERE project_id = ?1 AND day >= ?2 AND day <= ?3 ORDER BY day, detector",
            )?;
            let rows = stmt.query_map(params![p.as_str(), from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn erase_user_traces(&self, project: &ProjectId, user_id: &str) -> Result<u64> {
        let (p, u) = (project.clone(), user_id.to_string());
        self.inner
            .writer
            .exec(move |conn| {
                let mut report = GcReport::default();
                loop {
                    let n = delete_traces(
                        conn,
                        &format!(
                            "SELECT id, project_id, trace_id, session_id, span_count FROM {} LIMIT ?3",
                            traces_where("project_id = ?1 AND user_id = ?2")
                        ),
                        &[&p.as_str(), &u.as_str(), &1000i64],
                        &mut report,
                    )?;
                    if n == 0 {
                        break;
                    }
                }
                // Sessions of the user whose traces are gone, and log records naming them.
                conn.execute(
                    "DELETE FROM sessions WHERE project_id = ?1 AND user_id = ?2",
                    params![p.as_str(), u],
                )?;
                conn.execute(
                    "UPDATE approvals SET arguments = 'null', user_id = NULL, comment = NULL WHERE project_id = ?1 AND user_id = ?2",
                    params![p.as_str(), u],
                )?;
                Ok(report.traces_deleted)
            })
            .await
    }
}
