//! Tool-call checks and human approvals: an agent proposes a call, the project's policy decides,
//! a `pending` decision waits for a reviewer (or expires to deny). Every decision becomes a
//! `guardrail` span in the caller's trace and an entry in the audit chain.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use vigil_model::{
    format_rfc3339_nanos, now_unix_nanos, ProjectId, Span, SpanId, SpanKind, SpanStatus, TraceId,
};
use vigil_store::{Approval, ApprovalStatus};

use crate::audit::AuditEvent;
use crate::policy::{Action, ProposedCall, TraceSoFar};
use crate::service::{Governance, MAX_CALLS};

/// How stale a trace's cost may be when a cost cap is checked.
const COST_TTL: Duration = Duration::from_secs(1);

/// `POST /api/v1/guard/tool-call`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardRequest {
    pub tool: String,
    #[serde(default)]
    pub arguments: Value,
    pub agent: Option<String>,
    pub environment: Option<String>,
    /// The caller's trace (32 hex); a W3C `traceparent` header works too.
    pub trace_id: Option<String>,
    /// The caller's current span (16 hex), which the guardrail span becomes a child of.
    pub parent_span_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GuardResponse {
    /// `allow`, `deny` or `pending`.
    pub decision: &'static str,
    pub rule: Option<String>,
    pub reason: String,
    pub approval_id: Option<String>,
    pub expires_at: Option<String>,
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// An approval as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ApprovalView {
    #[serde(flatten)]
    pub approval: Approval,
    /// What the agent should do: `allow`, `deny`, or `pending` while undecided.
    pub decision: &'static str,
    pub created_at: String,
    pub expires_at: String,
    pub decided_at: Option<String>,
}

impl From<Approval> for ApprovalView {
    fn from(a: Approval) -> Self {
        Self {
            decision: match a.status {
                ApprovalStatus::Pending => "pending",
                ApprovalStatus::Approved => "allow",
                ApprovalStatus::Denied | ApprovalStatus::Expired => "deny",
            },
            created_at: format_rfc3339_nanos(a.created_ns),
            expires_at: format_rfc3339_nanos(a.expires_ns),
            decided_at: a.decided_ns.map(format_rfc3339_nanos),
            approval: a,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("{0}")]
    BadRequest(String),
    #[error("approval `{0}` not found")]
    NotFound(String),
    #[error("approval `{id}` was already {status}")]
    AlreadyDecided { id: String, status: &'static str },
    #[error("{0}")]
    Store(#[from] vigil_store::Error),
    #[error("{0}")]
    Audit(String),
    /// The call may not proceed (not approved, another call than the one approved, too late).
    #[error("{0}")]
    Forbidden(String),
    /// Asked again for something that can only happen once, or the policy moved on.
    #[error("{0}")]
    Conflict(String),
}

fn parse_ids(
    req: &GuardRequest,
    traceparent: Option<(TraceId, SpanId)>,
) -> Result<(Option<TraceId>, Option<SpanId>), GuardError> {
    let trace = match &req.trace_id {
        Some(t) => Some(
            TraceId::from_hex(t).map_err(|e| GuardError::BadRequest(format!("`trace_id`: {e}")))?,
        ),
        None => traceparent.map(|(t, _)| t),
    };
    let parent = match &req.parent_span_id {
        Some(s) => Some(
            SpanId::from_hex(s)
                .map_err(|e| GuardError::BadRequest(format!("`parent_span_id`: {e}")))?,
        ),
        None => traceparent.map(|(_, s)| s),
    };
    Ok((trace, parent))
}

/// What a guardrail span says about a call.
struct SpanFacts<'a> {
    project: &'a ProjectId,
    trace: TraceId,
    parent: Option<SpanId>,
    span: SpanId,
    name: String,
    start_ns: i64,
    tool: &'a str,
    arguments: &'a Value,
    agent: Option<&'a str>,
    environment: Option<&'a str>,
    session: Option<&'a str>,
    user: Option<&'a str>,
    attributes: Map<String, Value>,
    failed: Option<String>,
}

fn guardrail_span(f: SpanFacts) -> Span {
    let end = now_unix_nanos().max(f.start_ns);
    Span {
        trace_id: f.trace,
        span_id: f.span,
        parent_span_id: f.parent,
        project_id: f.project.clone(),
        kind: SpanKind::Guardrail,
        name: f.name,
        service_name: Some("vigil-guard".into()),
        environment: f.environment.map(str::to_string),
        session_id: f.session.map(str::to_string),
        user_id: f.user.map(str::to_string),
        agent_name: f.agent.map(str::to_string),
        start_time: f.start_ns,
        end_time: end,
        duration_ms: (end - f.start_ns) as f64 / 1e6,
        status: if f.failed.is_some() {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        },
        error_message: f.failed,
        tool_name: Some(f.tool.to_string()),
        tool_arguments: Some(f.arguments.clone()),
        attributes: f.attributes,
        ..Span::default()
    }
}

impl Governance {
    /// Decides a proposed tool call under the project's policy.
    pub async fn check_tool_call(
        &self,
        project: &ProjectId,
        actor: &str,
        mut req: GuardRequest,
        traceparent: Option<(TraceId, SpanId)>,
    ) -> Result<GuardResponse, GuardError> {
        let start_ns = now_unix_nanos();
        if req.tool.trim().is_empty() {
            return Err(GuardError::BadRequest("`tool` is empty".into()));
        }
        if req.tool.len() > 256 {
            return Err(GuardError::BadRequest(
                "`tool` is longer than 256 bytes".into(),
            ));
        }
        let (trace, parent) = parse_ids(&req, traceparent)?;
        if !self.audit.is_healthy() {
            // Fail closed: no guarded action goes unrecorded.
            return Err(GuardError::Audit(
                "the audit trail cannot be written right now; guarded tool calls are refused until it can".into(),
            ));
        }
        let (policy_version, policy) = self.policy_version(project).await;
        let cost_usd = match (trace, policy.limits.max_cost_per_trace_usd.is_some()) {
            (Some(t), true) => self.trace_cost(project, t).await,
            _ => None,
        };
        let call = ProposedCall {
            tool: &req.tool,
            arguments: &req.arguments,
            agent: req.agent.as_deref(),
            environment: req.environment.as_deref(),
        };
        // Read the loop counter, decide and count under one lock, so parallel calls in one trace
        // cannot all slip under a cap.
        let mut decision = match (trace, self.calls.lock()) {
            (Some(t), Ok(mut all)) => {
                let counters = all.entry(project.clone()).or_default();
                let key = (t, req.tool.clone());
                let prior_calls = counters.get(&key).copied().unwrap_or(0);
                let d = policy.decide(
                    &call,
                    TraceSoFar {
                        prior_calls,
                        cost_usd,
                    },
                );
                if d.action != Action::Deny {
                    if counters.len() >= MAX_CALLS {
                        counters.clear();
                    }
                    *counters.entry(key).or_insert(0) += 1;
                }
                d
            }
            _ => policy.decide(
                &call,
                TraceSoFar {
                    prior_calls: 0,
                    cost_usd,
                },
            ),
        };
        // A reason may quote an argument (`\`to\` is "bob@…"`): redacted like the arguments.
        let mut reason = Value::String(std::mem::take(&mut decision.reason));
        self.redact_value(project, &mut reason).await;
        decision.reason = reason.as_str().unwrap_or("[REDACTED]").to_string();
        // An approval covers this exact call, as sent (before redaction).
        let call_hash = self.call_hash(&req.tool, &req.arguments, policy_version);
        // Arguments and ids are stored (span, approval, audit) only after redaction.
        self.redact_value(project, &mut req.arguments).await;
        {
            let r = self.redactor(project).await;
            let mut c = crate::redact::RedactionCounts::default();
            r.redact_identifier(&mut req.user_id, &mut c);
            r.redact_identifier(&mut req.session_id, &mut c);
            self.add_counts(project, c);
        }
        let trace = trace.unwrap_or_else(TraceId::random);
        let span_id = SpanId::random();
        let (word, approval) = match decision.action {
            Action::Allow => ("allow", None),
            Action::Deny => ("deny", None),
            Action::RequireApproval => {
                let id = format!("ap_{}", hex::encode(rand::random::<[u8; 12]>()));
                let expires_ns = start_ns.saturating_add(
                    i64::try_from(policy.approval_timeout.as_nanos()).unwrap_or(i64::MAX / 2),
                );
                let a = Approval {
                    id,
                    project_id: project.clone(),
                    trace_id: Some(trace),
                    parent_span_id: parent,
                    span_id,
                    tool: req.tool.clone(),
                    arguments: req.arguments.clone(),
                    agent: req.agent.clone(),
                    environment: req.environment.clone(),
                    session_id: req.session_id.clone(),
                    user_id: req.user_id.clone(),
                    rule: decision.rule.clone(),
                    reason: decision.reason.clone(),
                    status: ApprovalStatus::Pending,
                    created_ns: start_ns,
                    expires_ns,
                    decided_ns: None,
                    decided_by: None,
                    comment: None,
                    call_hash: Some(call_hash.clone()),
                    policy_version,
                    consumed_ns: None,
                };
                self.store.create_approval(a.clone()).await?;
                ("pending", Some(a))
            }
        };
        let mut attributes = Map::new();
        attributes.insert("vigil.guard.decision".into(), json!(word));
        attributes.insert("vigil.guard.reason".into(), json!(decision.reason));
        if let Some(r) = &decision.rule {
            attributes.insert("vigil.guard.rule".into(), json!(r));
        }
        if let Some(a) = &approval {
            attributes.insert("vigil.guard.approval_id".into(), json!(a.id));
        }
        let mut span = guardrail_span(SpanFacts {
            project,
            trace,
            parent,
            span: span_id,
            name: format!("guard {}", req.tool),
            start_ns,
            tool: &req.tool,
            arguments: &req.arguments,
            agent: req.agent.as_deref(),
            environment: req.environment.as_deref(),
            session: req.session_id.as_deref(),
            user: req.user_id.as_deref(),
            attributes,
            failed: (decision.action == Action::Deny)
                .then(|| format!("denied: {}", decision.reason)),
        });
        self.redact_spans(project, std::slice::from_mut(&mut span))
            .await;
        self.sink.record(span);
        self.audit
            .record(
                AuditEvent::new(
                    project,
                    actor,
                    "guard.decision",
                    &req.tool,
                    json!({
                        "decision": word,
                        "rule": decision.rule,
                        "reason": decision.reason,
                        "tool": req.tool,
                        "arguments": req.arguments,
                        "agent": req.agent,
                        "environment": req.environment,
                        "trace_id": trace,
                        "span_id": span_id,
                        "approval_id": approval.as_ref().map(|a| a.id.clone()),
                    }),
                )
                .about_user(req.user_id.as_deref()),
            )
            .await;
        Ok(GuardResponse {
            decision: word,
            rule: decision.rule,
            reason: decision.reason,
            expires_at: approval
                .as_ref()
                .map(|a| format_rfc3339_nanos(a.expires_ns)),
            approval_id: approval.map(|a| a.id),
            trace_id: trace,
            span_id,
        })
    }

    /// Records in the audit trail every executed tool call (an ingested `tool` span) of a tool the
    /// project's policy names. Called after redaction, so arguments are stored redacted.
    pub async fn audit_executions(&self, project: &ProjectId, spans: &[Span]) {
        if !spans.iter().any(|s| s.kind == SpanKind::Tool) {
            return;
        }
        let policy = self.policy(project).await;
        if policy.rules.is_empty() {
            return;
        }
        for s in spans.iter().filter(|s| s.kind == SpanKind::Tool) {
            let tool = s.tool_name.as_deref().unwrap_or(&s.name);
            let Some(rule) = policy.rule_naming(tool) else {
                continue;
            };
            let actor = s
                .agent_name
                .as_deref()
                .or(s.service_name.as_deref())
                .map_or_else(|| "agent".to_string(), |a| format!("agent:{a}"));
            let event = AuditEvent::new(
                project,
                actor,
                "tool.executed",
                tool,
                json!({
                    "rule": rule,
                    "trace_id": s.trace_id,
                    "span_id": s.span_id,
                    "status": s.status.as_str(),
                    "arguments": s.tool_arguments,
                    "duration_ms": s.duration_ms,
                    "environment": s.environment,
                }),
            )
            .about_user(s.user_id.as_deref());
            self.audit.record(event).await;
        }
    }

    /// A trace's cost so far, re-read from the store at most once per `COST_TTL` per trace: a
    /// cost cap may lag the trace's spend by that much, and a guard check stays off the disk.
    async fn trace_cost(&self, project: &ProjectId, trace: TraceId) -> Option<f64> {
        let key = (project.clone(), trace);
        if let Some((at, cost)) = self.costs.lock().ok().and_then(|m| m.get(&key).copied()) {
            if at.elapsed() < COST_TTL {
                return cost;
            }
        }
        let cost = self.store.trace_cost(project, &trace).await.ok().flatten();
        if let Ok(mut m) = self.costs.lock() {
            if m.len() >= MAX_CALLS {
                m.clear();
            }
            m.insert(key, (std::time::Instant::now(), cost));
        }
        cost
    }

    /// A reviewer's decision. An approval is decided once; deciding it again is an error.
    pub async fn decide_approval(
        &self,
        project: &ProjectId,
        id: &str,
        approve: bool,
        reviewer: &str,
        comment: Option<String>,
    ) -> Result<Approval, GuardError> {
        let status = if approve {
            ApprovalStatus::Approved
        } else {
            ApprovalStatus::Denied
        };
        let now = now_unix_nanos();
        let comment = comment.map(|c| c.chars().take(2000).collect::<String>());
        let (a, changed) = self
            .store
            .decide_approval(
                project,
                id,
                status,
                Some(reviewer.to_string()),
                comment,
                now,
            )
            .await?
            .ok_or_else(|| GuardError::NotFound(id.to_string()))?;
        if !changed {
            if a.status == ApprovalStatus::Pending {
                // Pending but past its deadline: expire it now rather than accept a late answer.
                let expired = self.expire(a).await?;
                return Err(GuardError::AlreadyDecided {
                    id: expired.id,
                    status: expired.status.as_str(),
                });
            }
            return Err(GuardError::AlreadyDecided {
                id: a.id,
                status: a.status.as_str(),
            });
        }
        self.finish(&a, reviewer, true).await?;
        Ok(a)
    }

    async fn expire(&self, a: Approval) -> Result<Approval, GuardError> {
        let (a, changed) = self
            .store
            .decide_approval(
                &a.project_id,
                &a.id,
                ApprovalStatus::Expired,
                Some("system:expiry".into()),
                Some("no decision before the deadline; expired to deny".into()),
                now_unix_nanos(),
            )
            .await?
            .ok_or_else(|| GuardError::NotFound(a.id.clone()))?;
        if changed {
            self.finish(&a, "system:expiry", false).await?;
        }
        Ok(a)
    }

    /// Records a decided approval: a child span of its guard span, an audit entry, and a wake-up
    /// for whoever long-polls it.
    async fn finish(&self, a: &Approval, actor: &str, durable: bool) -> Result<(), GuardError> {
        let mut attributes = Map::new();
        attributes.insert("vigil.approval.id".into(), json!(a.id));
        attributes.insert("vigil.approval.status".into(), json!(a.status.as_str()));
        if let Some(by) = &a.decided_by {
            attributes.insert("vigil.approval.decided_by".into(), json!(by));
        }
        if let Some(c) = &a.comment {
            attributes.insert("vigil.approval.comment".into(), json!(c));
        }
        let mut span = guardrail_span(SpanFacts {
            project: &a.project_id,
            trace: a.trace_id.unwrap_or_else(TraceId::random),
            parent: Some(a.span_id),
            span: SpanId::random(),
            name: format!("approval {}", a.tool),
            start_ns: a.created_ns,
            tool: &a.tool,
            arguments: &a.arguments,
            agent: a.agent.as_deref(),
            environment: a.environment.as_deref(),
            session: a.session_id.as_deref(),
            user: a.user_id.as_deref(),
            attributes,
            failed: (a.status != ApprovalStatus::Approved).then(|| {
                format!(
                    "{}: {}",
                    a.status.as_str(),
                    a.comment.as_deref().unwrap_or(&a.reason)
                )
            }),
        });
        self.redact_spans(&a.project_id, std::slice::from_mut(&mut span))
            .await;
        self.sink.record(span);
        let event = AuditEvent::new(
            &a.project_id,
            actor,
            &format!("approval.{}", a.status.as_str()),
            &a.id,
            json!({
                "tool": a.tool,
                "arguments": a.arguments,
                "rule": a.rule,
                "reason": a.reason,
                "decided_by": a.decided_by,
                "comment": a.comment,
                "trace_id": a.trace_id,
                "call_hash": a.call_hash,
                "policy_version": a.policy_version,
                "waited_ms": (a.decided_ns.unwrap_or(a.created_ns) - a.created_ns) / 1_000_000,
            }),
        )
        .about_user(a.user_id.as_deref());
        if durable {
            // The decision is already stored: retry rather than leave it unaudited.
            let mut last = String::new();
            for attempt in 0..4u32 {
                match self.audit.append(event.clone()).await {
                    Ok(_) => {
                        last.clear();
                        break;
                    }
                    Err(e) => {
                        last = e;
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                }
            }
            if !last.is_empty() {
                self.decided.notify_waiters();
                return Err(GuardError::Audit(last));
            }
        } else {
            self.audit.record(event).await;
        }
        self.decided.notify_waiters();
        Ok(())
    }

    /// The agent redeems an approval right before it runs the call. Allowed once, for the exact
    /// call that was approved (tool and arguments), under the policy version that asked, and within
    /// the approval timeout after the decision. Recorded durably before it is allowed.
    pub async fn redeem_approval(
        &self,
        project: &ProjectId,
        id: &str,
        tool: &str,
        arguments: &Value,
        actor: &str,
    ) -> Result<Approval, GuardError> {
        let a = self
            .store
            .get_approval(project, id)
            .await?
            .ok_or_else(|| GuardError::NotFound(id.to_string()))?;
        if a.status != ApprovalStatus::Approved {
            return Err(GuardError::Forbidden(format!(
                "approval `{id}` is {}, not approved: the call may not run",
                a.status.as_str()
            )));
        }
        if a.consumed_ns.is_some() {
            return Err(GuardError::Conflict(format!(
                "approval `{id}` was already used; an approval covers one call"
            )));
        }
        let now = now_unix_nanos();
        let valid_for = a.expires_ns - a.created_ns;
        if now
            > a.decided_ns
                .unwrap_or(a.created_ns)
                .saturating_add(valid_for)
        {
            return Err(GuardError::Forbidden(format!(
                "approval `{id}` is too old to use; ask again"
            )));
        }
        if a.call_hash.as_deref()
            != Some(self.call_hash(tool, arguments, a.policy_version).as_str())
        {
            return Err(GuardError::Forbidden(format!(
                "this is not the call approval `{id}` covers (tool or arguments differ); ask again"
            )));
        }
        let (current, _) = self.policy_version(project).await;
        if current != a.policy_version {
            return Err(GuardError::Conflict(format!(
                "the policy changed (v{} → v{current}) since approval `{id}` was asked; ask again",
                a.policy_version
            )));
        }
        self.audit
            .append(
                AuditEvent::new(
                    project,
                    actor,
                    "approval.redeemed",
                    id,
                    json!({"tool": a.tool, "call_hash": a.call_hash, "trace_id": a.trace_id, "decided_by": a.decided_by}),
                )
                .about_user(a.user_id.as_deref()),
            )
            .await
            .map_err(GuardError::Audit)?;
        if !self.store.consume_approval(project, id, now).await? {
            return Err(GuardError::Conflict(format!(
                "approval `{id}` was already used; an approval covers one call"
            )));
        }
        Ok(Approval {
            consumed_ns: Some(now),
            ..a
        })
    }

    /// The approval, waiting up to `wait` for it to be decided (long poll).
    pub async fn wait_for_approval(
        &self,
        project: &ProjectId,
        id: &str,
        wait: Duration,
    ) -> Result<Approval, GuardError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Registered before reading, so a decision between the read and the wait is not missed.
            let notified = self.decided.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let a = self
                .store
                .get_approval(project, id)
                .await?
                .ok_or_else(|| GuardError::NotFound(id.to_string()))?;
            if a.status != ApprovalStatus::Pending {
                return Ok(a);
            }
            let now_ns = now_unix_nanos();
            if a.expires_ns <= now_ns {
                return self.expire(a).await;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(a);
            }
            let until_expiry = Duration::from_nanos((a.expires_ns - now_ns).max(0) as u64);
            // Re-read at least every second: a decision on another node does not wake us.
            let nap = (deadline - now)
                .min(until_expiry)
                .min(Duration::from_secs(1));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    /// Expires every approval whose deadline has passed (run every second by the server).
    pub async fn expire_overdue(&self) {
        match self.store.overdue_approvals(now_unix_nanos(), 100).await {
            Ok(list) => {
                for a in list {
                    if let Err(e) = self.expire(a).await {
                        tracing::warn!(error = %e, "approval could not be expired");
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "overdue approvals could not be read"),
        }
    }
}
