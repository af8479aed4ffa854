//! `Governance`: the running piece every entry point shares — OTLP ingest and the gateway redact
//! through it, the guard API decides through it, and everything consequential is audited by it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Notify;
use vigil_model::{format_rfc3339_nanos, now_unix_nanos, LogEvent, ProjectId, Span, TraceId};
use vigil_store::sink::SpanSink;
use vigil_store::Store;

use crate::audit::{load_or_create_signing_key, AuditLog};
use crate::policy::Policy;
use crate::redact::{RedactionConfig, RedactionCounts, Redactor};

/// Settings from `vigil.toml` (`[redaction]`, `[audit]`).
#[derive(Clone, Debug, Default)]
pub struct GovernanceSettings {
    pub redaction: RedactionConfig,
    /// HMAC key of the `hash` redaction action; read from the data directory when `None`.
    pub redaction_secret: Option<Vec<u8>>,
    pub checkpoint_every: Option<Duration>,
}

pub const SIGNING_KEY_FILE: &str = "audit-signing.key";
pub const REDACTION_SECRET_FILE: &str = "redaction.secret";

/// A policy as this node last read it; re-read after `POLICY_TTL` so every node follows changes.
struct CachedPolicy {
    version: i64,
    policy: Arc<Policy>,
    loaded: Instant,
}

/// Calls per (trace, tool) in one project.
pub(crate) type LoopCounters = HashMap<(TraceId, String), u64>;

/// A trace's cost as read from the store, and when.
pub(crate) type CostReading = (Instant, Option<f64>);

const POLICY_TTL: Duration = Duration::from_secs(2);
/// Guard loop counters kept in memory (per node); cleared when this many traces are tracked.
const MAX_TRACKED_CALLS: usize = 200_000;

pub struct Governance {
    pub(crate) store: Arc<dyn Store>,
    pub settings: GovernanceSettings,
    secret: Vec<u8>,
    redactors: RwLock<HashMap<ProjectId, Arc<Redactor>>>,
    counts: Mutex<HashMap<ProjectId, RedactionCounts>>,
    pub audit: AuditLog,
    policies: RwLock<HashMap<ProjectId, CachedPolicy>>,
    /// Loop counters per project: (trace, tool) → calls allowed or sent for approval. Bounded per
    /// project, so one tenant's traffic never resets another's caps.
    pub(crate) calls: Mutex<HashMap<ProjectId, LoopCounters>>,
    /// Recently read trace costs, for cost caps: (when read, cost).
    pub(crate) costs: Mutex<HashMap<(ProjectId, TraceId), CostReading>>,
    /// Woken whenever an approval is decided on this node (long polls also re-read the store).
    pub(crate) decided: Notify,
    pub(crate) sink: SpanSink,
}

impl Governance {
    /// Starts governance for a server: keys from the data directory, the audit batcher and
    /// checkpointer, the redaction-count flusher and the approval-expiry sweeper.
    pub fn start(
        store: Arc<dyn Store>,
        data_dir: &Path,
        settings: GovernanceSettings,
    ) -> Result<Arc<Self>, String> {
        let key = load_or_create_signing_key(&data_dir.join(SIGNING_KEY_FILE))
            .map_err(|e| format!("audit signing key: {e}"))?;
        let audit = AuditLog::start(
            store.clone(),
            key,
            &secret_of(data_dir, &settings)?,
            settings
                .checkpoint_every
                .unwrap_or(Duration::from_secs(600)),
        );
        let g = Arc::new(Self::with_audit(store, data_dir, settings, audit)?);
        let flusher = Arc::downgrade(&g);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let Some(g) = flusher.upgrade() else { break };
                g.flush_counts().await;
            }
        });
        let sweeper = Arc::downgrade(&g);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let Some(g) = sweeper.upgrade() else { break };
                g.expire_overdue().await;
            }
        });
        Ok(g)
    }

    /// For one-shot commands: audit appends go straight to the store, nothing runs in the background.
    pub fn direct(
        store: Arc<dyn Store>,
        data_dir: &Path,
        settings: GovernanceSettings,
    ) -> Result<Self, String> {
        let key = load_or_create_signing_key(&data_dir.join(SIGNING_KEY_FILE))
            .map_err(|e| format!("audit signing key: {e}"))?;
        let audit = AuditLog::direct(store.clone(), key, &secret_of(data_dir, &settings)?);
        Self::with_audit(store, data_dir, settings, audit)
    }

    fn with_audit(
        store: Arc<dyn Store>,
        data_dir: &Path,
        settings: GovernanceSettings,
        audit: AuditLog,
    ) -> Result<Self, String> {
        settings.redaction.validate()?;
        let secret = secret_of(data_dir, &settings)?;
        Ok(Self {
            // Its spans are redacted by the code that makes them (it awaits the redactor anyway);
            // the server adds the ingest evaluators with `judge_own_spans_with`.
            sink: SpanSink::start(store.clone(), None),
            store,
            settings,
            secret,
            redactors: RwLock::default(),
            counts: Mutex::default(),
            audit,
            policies: RwLock::default(),
            calls: Mutex::default(),
            costs: Mutex::default(),
            decided: Notify::new(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The project's redactor, built on first use from the settings for its name.
    pub async fn redactor(&self, project: &ProjectId) -> Arc<Redactor> {
        if let Some(r) = self
            .redactors
            .read()
            .ok()
            .and_then(|m| m.get(project).cloned())
        {
            return r;
        }
        let name = match self.store.list_projects().await {
            Ok(list) => list
                .into_iter()
                .find(|p| &p.id == project)
                .map(|p| p.name)
                .unwrap_or_else(|| project.as_str().to_string()),
            Err(e) => {
                // Without the name, the project's own settings are unknown: use every detector
                // (the strictest), and do not cache it, so the next call tries again.
                tracing::warn!(error = %e, "project name unknown; redacting with every detector");
                let strict = RedactionConfig::default().for_project("");
                return Arc::new(Redactor::builtin(&strict, &self.secret));
            }
        };
        let settings = self.settings.redaction.for_project(&name);
        // Settings were validated at start; should a custom rule still fail, the built-in
        // detectors keep working (failing open would store what must not be stored).
        let r = Arc::new(Redactor::new(&settings, &self.secret).unwrap_or_else(|e| {
            tracing::error!(error = %e, "custom redaction rule unusable; built-in detectors only");
            Redactor::builtin(&settings, &self.secret)
        }));
        if let Ok(mut m) = self.redactors.write() {
            m.insert(project.clone(), r.clone());
        }
        r
    }

    pub(crate) fn add_counts(&self, project: &ProjectId, c: RedactionCounts) {
        if c.is_empty() {
            return;
        }
        if let Ok(mut m) = self.counts.lock() {
            m.entry(project.clone()).or_default().merge(&c);
        }
    }

    /// Redacts spans of one project in place, before they are stored.
    pub async fn redact_spans(&self, project: &ProjectId, spans: &mut [Span]) {
        let r = self.redactor(project).await;
        self.redact_with(&r, project, spans.iter_mut());
    }

    /// Redacts `spans` of `project` with its redactor `r` and counts what was found.
    fn redact_with<'a>(
        &self,
        r: &Redactor,
        project: &ProjectId,
        spans: impl Iterator<Item = &'a mut Span>,
    ) {
        if !r.is_active() {
            return;
        }
        let mut c = RedactionCounts::default();
        r.remembering(|| {
            for s in spans {
                r.redact_span(s, &mut c);
            }
        });
        self.add_counts(project, c);
    }

    /// Has the guardrail and approval spans judged like ingested spans before they are stored.
    pub fn judge_own_spans_with(&self, judge: Arc<dyn vigil_store::sink::SpanFilter>) {
        self.sink.set_filter(judge);
    }

    /// Redacts spans of any projects, each with its project's redactor.
    pub async fn redact_spans_of_projects(&self, spans: &mut [Span]) {
        let mut projects: Vec<ProjectId> = Vec::new();
        for s in spans.iter() {
            if !projects.contains(&s.project_id) {
                projects.push(s.project_id.clone());
            }
        }
        for project in projects {
            let r = self.redactor(&project).await;
            let of_project = spans.iter_mut().filter(|s| s.project_id == project);
            self.redact_with(&r, &project, of_project);
        }
    }

    pub async fn redact_logs(&self, project: &ProjectId, events: &mut [LogEvent]) {
        let r = self.redactor(project).await;
        if !r.is_active() {
            return;
        }
        let mut c = RedactionCounts::default();
        for e in events.iter_mut() {
            r.redact_log(e, &mut c);
        }
        self.add_counts(project, c);
    }

    /// Redacts a JSON value (tool arguments in guard checks and audit entries).
    pub async fn redact_value(&self, project: &ProjectId, v: &mut Value) {
        let r = self.redactor(project).await;
        let mut c = RedactionCounts::default();
        if !r.redact_value(None, v, &mut c) {
            *v = Value::Null;
        }
        self.add_counts(project, c);
    }

    /// Writes the redaction counts gathered since the last flush.
    pub async fn flush_counts(&self) {
        let taken: HashMap<ProjectId, RedactionCounts> = match self.counts.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return,
        };
        if taken.is_empty() {
            return;
        }
        let day: String = format_rfc3339_nanos(now_unix_nanos())
            .chars()
            .take(10)
            .collect();
        let rows = taken
            .into_iter()
            .flat_map(|(p, c)| {
                let day = day.clone();
                c.0.into_iter()
                    .map(move |(d, n)| (p.clone(), day.clone(), d, n))
            })
            .collect();
        if let Err(e) = self.store.add_redaction_counts(rows).await {
            tracing::warn!(error = %e, "redaction counts could not be stored");
        }
    }

    /// The project's guardrail policy (the allow-all default when none was set).
    pub async fn policy(&self, project: &ProjectId) -> Arc<Policy> {
        self.policy_version(project).await.1
    }

    /// The policy with its version (0: none set; -1: unknown because the store could not be read,
    /// which no approval can match).
    pub async fn policy_version(&self, project: &ProjectId) -> (i64, Arc<Policy>) {
        if let Some(p) = self.policies.read().ok().and_then(|m| {
            m.get(project)
                .filter(|c| c.loaded.elapsed() < POLICY_TTL)
                .map(|c| (c.version, c.policy.clone()))
        }) {
            return p;
        }
        let stored = match self.store.get_policy(project).await {
            Ok(s) => s,
            Err(e) => {
                // Fail closed: keep the last policy this node knew, however old; with none, deny.
                tracing::warn!(project = %project, error = %e, "policy could not be read");
                let last = self
                    .policies
                    .read()
                    .ok()
                    .and_then(|m| m.get(project).map(|c| (c.version, c.policy.clone())));
                return last.unwrap_or_else(|| {
                    (
                        -1,
                        Arc::new(Policy {
                            default: crate::policy::Action::Deny,
                            ..Policy::default()
                        }),
                    )
                });
            }
        };
        let (version, policy) = match stored {
            Some(s) => {
                let cached = self.policies.read().ok().and_then(|m| {
                    m.get(project)
                        .filter(|c| c.version == s.version)
                        .map(|c| c.policy.clone())
                });
                let policy = cached.unwrap_or_else(|| {
                    Arc::new(Policy::parse(&s.source).unwrap_or_else(|e| {
                        // Stored policies were validated; a policy that no longer parses (after an
                        // upgrade) fails closed.
                        tracing::error!(project = %project, error = %e, "stored policy no longer parses; denying every tool call");
                        Policy { default: crate::policy::Action::Deny, ..Policy::default() }
                    }))
                });
                (s.version, policy)
            }
            None => (0, Arc::new(Policy::default())),
        };
        if let Ok(mut m) = self.policies.write() {
            m.insert(
                project.clone(),
                CachedPolicy {
                    version,
                    policy: policy.clone(),
                    loaded: Instant::now(),
                },
            );
        }
        (version, policy)
    }

    /// The binding of an approval to one exact call: an HMAC (server secret) over the tool, its
    /// arguments in canonical form (object keys sorted) and the policy version that asked.
    pub fn call_hash(&self, tool: &str, arguments: &Value, policy_version: i64) -> String {
        let mut canonical = String::new();
        canonical_json(arguments, &mut canonical);
        let Ok(mut mac) = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&self.secret)
        else {
            return String::new();
        };
        hmac::Mac::update(&mut mac, b"vigil-approval-call\0");
        hmac::Mac::update(&mut mac, tool.as_bytes());
        hmac::Mac::update(&mut mac, b"\0");
        hmac::Mac::update(&mut mac, canonical.as_bytes());
        hmac::Mac::update(&mut mac, &policy_version.to_be_bytes());
        hex::encode(hmac::Mac::finalize(mac).into_bytes())
    }

    /// GDPR erasure of one end user, by the id as the caller knows it: the stored (redacted) form
    /// of that id is erased too.
    pub async fn erase_user(
        &self,
        project: &ProjectId,
        user: &str,
        actor: &str,
    ) -> Result<crate::audit::ErasureReport, String> {
        let mut forms = vec![user.to_string()];
        let mut stored = Some(user.to_string());
        self.redactor(project)
            .await
            .redact_identifier(&mut stored, &mut RedactionCounts::default());
        if let Some(s) = stored.filter(|s| s != user) {
            forms.push(s);
        }
        self.audit.erase_user(project, &forms, actor).await
    }

    /// Validates, stores and audits a new policy; returns its version.
    pub async fn set_policy(
        &self,
        project: &ProjectId,
        source: &str,
        actor: &str,
    ) -> Result<i64, PolicyError> {
        let parsed = Policy::parse(source).map_err(PolicyError::Invalid)?;
        let unavailable = |e: String| PolicyError::Unavailable(e);
        let next = self
            .store
            .get_policy(project)
            .await
            .map_err(|e| unavailable(e.to_string()))?
            .map_or(1, |p| p.version + 1);
        // Audited before it takes effect: a policy change is never in force unrecorded.
        self.audit
            .append(crate::audit::AuditEvent::new(
                project,
                actor,
                "policy.updated",
                format!("guard-policy v{next}"),
                serde_json::json!({"version": next, "sha256": crate::audit::chain::content_hash(source), "source": source}),
            ))
            .await
            .map_err(unavailable)?;
        let stored = self
            .store
            .put_policy(project, source)
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if let Ok(mut m) = self.policies.write() {
            m.insert(
                project.clone(),
                CachedPolicy {
                    version: stored.version,
                    policy: Arc::new(parsed),
                    loaded: Instant::now(),
                },
            );
        }
        Ok(stored.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
    #[error("the policy could not be stored or audited: {0}")]
    Unavailable(String),
}

/// JSON with object keys sorted at every level, so equal values encode to equal bytes.
fn canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical_json(&m[k.as_str()], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The server secret that keys redaction hashes and end-user references.
fn secret_of(data_dir: &Path, settings: &GovernanceSettings) -> Result<Vec<u8>, String> {
    match &settings.redaction_secret {
        Some(s) => Ok(s.clone()),
        None => crate::load_or_create_secret(&data_dir.join(REDACTION_SECRET_FILE))
            .map_err(|e| format!("redaction secret: {e}")),
    }
}

pub(crate) const MAX_CALLS: usize = MAX_TRACKED_CALLS;
