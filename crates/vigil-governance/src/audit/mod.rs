//! The audit trail: an append-only hash chain per project of every consequential event
//! (guardrail decisions and approvals, policy and key changes, logins, deletions), with periodic
//! Ed25519-signed checkpoints, verification that names the first broken entry, export to a bundle
//! anyone can verify offline, and erasure that removes content but keeps the chain verifiable.

pub mod chain;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot, Mutex};
use vigil_model::{now_unix_nanos, ProjectId};
use vigil_store::{AuditCheckpoint, AuditRow, Error as StoreError, Store};

pub use chain::{Break, VerifyReport};

/// One consequential thing that happened.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEvent {
    pub project: ProjectId,
    /// Who did it: `key:<id>`, `user:<name>`, `cli`, `system`, `agent:<name>`.
    pub actor: String,
    /// What happened, dotted: `guard.decision`, `approval.approved`, `policy.updated`, `key.created`…
    pub action: String,
    /// What it happened to: a tool, key id, approval id, user…
    pub subject: String,
    pub content: Value,
    /// The end user the content is about, for erasure.
    pub data_subject: Option<String>,
}

impl AuditEvent {
    pub fn new(
        project: &ProjectId,
        actor: impl Into<String>,
        action: &str,
        subject: impl Into<String>,
        content: Value,
    ) -> Self {
        Self {
            project: project.clone(),
            actor: actor.into(),
            action: action.to_string(),
            subject: subject.into(),
            content,
            data_subject: None,
        }
    }

    pub fn about_user(mut self, user: Option<&str>) -> Self {
        self.data_subject = user.map(str::to_string);
        self
    }
}

type Waiter = oneshot::Sender<Result<AuditRow, String>>;

const QUEUE: usize = 10_000;
const BATCH: usize = 512;

/// Appends to the chains. Events from the hot path (`record`) are batched by a background task;
/// `append` waits until its entry is durable.
#[derive(Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    key: Arc<SigningKey>,
    /// Last (seq, hash) per chain as this node knows it; dropped on conflict and re-read.
    heads: Arc<Mutex<HashMap<ProjectId, (i64, String)>>>,
    /// Keys `subject_ref`, so no end user's id is stored in the clear.
    subject_key: Arc<Vec<u8>>,
    tx: Option<mpsc::Sender<(AuditEvent, Option<Waiter>)>>,
    /// False while queued entries cannot be written (after retries): guarded actions then fail
    /// closed.
    healthy: Arc<std::sync::atomic::AtomicBool>,
}

/// Loads the Ed25519 signing key from `path`, creating it (mode 0600) on first use.
pub fn load_or_create_signing_key(path: &Path) -> std::io::Result<SigningKey> {
    let seed = crate::load_or_create_secret(path)?;
    let arr: [u8; 32] = seed.as_slice().try_into().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} does not hold a 32-byte key", path.display()),
        )
    })?;
    Ok(SigningKey::from_bytes(&arr))
}

impl AuditLog {
    /// For one-shot commands: every append goes straight to the store.
    pub fn direct(store: Arc<dyn Store>, key: SigningKey, subject_key: &[u8]) -> Self {
        Self {
            store,
            key: Arc::new(key),
            heads: Arc::default(),
            subject_key: Arc::new(subject_key.to_vec()),
            healthy: Arc::new(std::sync::atomic::AtomicBool::new(true)),
            tx: None,
        }
    }

    /// For the server: starts the batching task and the periodic checkpointer.
    pub fn start(
        store: Arc<dyn Store>,
        key: SigningKey,
        subject_key: &[u8],
        checkpoint_every: Duration,
    ) -> Self {
        let mut log = Self::direct(store, key, subject_key);
        let (tx, mut rx) = mpsc::channel::<(AuditEvent, Option<Waiter>)>(QUEUE);
        log.tx = Some(tx);
        let batcher = log.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let items = std::mem::take(&mut batch);
                let (events, waiters): (Vec<_>, Vec<_>) = items.into_iter().unzip();
                // A failed batch is retried with backoff (a busy or full disk), not dropped.
                let mut result = batcher.append_batch(events.clone()).await;
                for attempt in 0..6u32 {
                    if result.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                    result = batcher.append_batch(events.clone()).await;
                }
                batcher
                    .healthy
                    .store(result.is_ok(), std::sync::atomic::Ordering::Relaxed);
                match result {
                    Ok(rows) => {
                        for (row, w) in rows.into_iter().zip(waiters) {
                            if let Some(w) = w {
                                let _ = w.send(Ok(row));
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "audit entries could not be appended");
                        for w in waiters.into_iter().flatten() {
                            let _ = w.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        let cp = log.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(checkpoint_every.max(Duration::from_secs(1)));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = cp.checkpoint_all().await {
                    tracing::warn!(error = %e, "audit checkpoint failed");
                }
            }
        });
        log
    }

    /// Whether queued entries are being written.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().as_bytes())
    }

    /// Queues an event (waiting only for queue space) without waiting for it to be stored.
    pub async fn record(&self, event: AuditEvent) {
        match &self.tx {
            Some(tx) => {
                if tx.send((event, None)).await.is_err() {
                    tracing::error!("audit queue closed; an event was not recorded");
                }
            }
            None => {
                if let Err(e) = self.append_batch(vec![event]).await {
                    tracing::error!(error = %e, "audit entry could not be appended");
                }
            }
        }
    }

    /// Appends an event and returns once it is durable.
    pub async fn append(&self, event: AuditEvent) -> Result<AuditRow, String> {
        match &self.tx {
            Some(tx) => {
                let (w, rx) = oneshot::channel();
                tx.send((event, Some(w)))
                    .await
                    .map_err(|_| "audit queue closed".to_string())?;
                rx.await.map_err(|_| "audit task stopped".to_string())?
            }
            None => self
                .append_batch(vec![event])
                .await
                .map_err(|e| e.to_string())?
                .pop()
                .ok_or_else(|| "nothing appended".to_string()),
        }
    }

    async fn append_batch(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditRow>, StoreError> {
        let mut heads = self.heads.lock().await;
        let mut attempt = 0;
        loop {
            let mut rows = Vec::with_capacity(events.len());
            let mut next: HashMap<ProjectId, (i64, String)> = HashMap::new();
            for e in &events {
                let (seq, prev) = match next.get(&e.project).or_else(|| heads.get(&e.project)) {
                    Some(h) => h.clone(),
                    None => self
                        .store
                        .audit_head(&e.project)
                        .await?
                        .unwrap_or((0, chain::GENESIS.to_string())),
                };
                let content = e.content.to_string();
                let mut row = AuditRow {
                    project_id: e.project.clone(),
                    seq: seq + 1,
                    time_ns: now_unix_nanos(),
                    actor: e.actor.clone(),
                    action: e.action.clone(),
                    subject: e.subject.clone(),
                    content_hash: chain::content_hash(&content),
                    content: Some(content),
                    data_subject: e.data_subject.as_deref().map(|u| self.subject_ref(u)),
                    prev_hash: prev,
                    entry_hash: String::new(),
                };
                row.entry_hash = chain::entry_hash(&row);
                next.insert(e.project.clone(), (row.seq, row.entry_hash.clone()));
                rows.push(row);
            }
            match self.store.audit_insert(rows.clone()).await {
                Ok(()) => {
                    heads.extend(next);
                    return Ok(rows);
                }
                // Another node (or a CLI command) appended first: re-read the heads and retry.
                Err(StoreError::Conflict(_)) if attempt < 8 => {
                    attempt += 1;
                    for e in &events {
                        heads.remove(&e.project);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Signs the current head of one chain (if it has moved since the last checkpoint).
    pub async fn checkpoint(
        &self,
        project: &ProjectId,
    ) -> Result<Option<AuditCheckpoint>, StoreError> {
        let Some((seq, hash)) = self.store.audit_head(project).await? else {
            return Ok(None);
        };
        let existing = self.store.audit_checkpoints(project).await?;
        if let Some(last) = existing.last() {
            if last.seq == seq {
                return Ok(Some(last.clone()));
            }
        }
        // Never sign a head that does not verify: a chain edited since the last checkpoint must
        // stay detectable, not be blessed by the next signature.
        let report = self.verify(project).await?;
        if let Some(b) = &report.first_break {
            tracing::error!(project = %project, seq = b.seq, problem = %b.problem, "audit chain broken; not signing its head");
            return Ok(None);
        }
        let cp = chain::sign_checkpoint(&self.key, project, seq, &hash, now_unix_nanos());
        self.store.audit_add_checkpoint(cp.clone()).await?;
        Ok(Some(cp))
    }

    pub async fn checkpoint_all(&self) -> Result<(), StoreError> {
        for p in self.store.audit_projects().await? {
            self.checkpoint(&p).await?;
        }
        Ok(())
    }

    /// Verifies one project's chain as stored, against this node's signing key.
    pub async fn verify(&self, project: &ProjectId) -> Result<VerifyReport, StoreError> {
        self.verify_against(project, &[]).await
    }

    /// Verifies the chain also against signed heads kept elsewhere (`vigil audit head`): a chain
    /// truncated or recomputed after such a head was taken no longer contains it.
    pub async fn verify_against(
        &self,
        project: &ProjectId,
        kept: &[AuditCheckpoint],
    ) -> Result<VerifyReport, StoreError> {
        let mut checkpoints = self.store.audit_checkpoints(project).await?;
        checkpoints.extend(kept.iter().filter(|c| &c.project_id == project).cloned());
        let mut v = chain::Verifier::new(project, &checkpoints, Some(self.key.verifying_key()));
        let mut after = 0;
        loop {
            let rows = self.store.audit_rows(project, after, 5000).await?;
            let Some(last) = rows.last() else { break };
            after = last.seq;
            if !rows.iter().all(|r| v.push(r)) {
                break;
            }
        }
        Ok(v.finish())
    }

    pub async fn verify_all(&self) -> Result<Vec<VerifyReport>, StoreError> {
        let mut out = Vec::new();
        for p in self.store.audit_projects().await? {
            out.push(self.verify(&p).await?);
        }
        Ok(out)
    }

    /// Writes a bundle of one project's chain: a header, every entry, every checkpoint (a fresh
    /// one at the head included) and a signature over all of it.
    pub async fn export(&self, project: &ProjectId) -> Result<Vec<u8>, StoreError> {
        self.checkpoint(project).await?;
        let mut lines: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        let mut after = 0;
        loop {
            let batch = self.store.audit_rows(project, after, 5000).await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            rows.extend(batch);
        }
        let checkpoints = self.store.audit_checkpoints(project).await?;
        let header = BundleLine::Header {
            format: BUNDLE_FORMAT.into(),
            project_id: project.clone(),
            exported_ns: now_unix_nanos(),
            public_key: self.public_key_hex(),
            entries: rows.len() as u64,
        };
        lines.push(serde_json::to_string(&header).unwrap_or_default());
        for r in rows {
            lines.push(serde_json::to_string(&BundleLine::Entry(r)).unwrap_or_default());
        }
        for c in checkpoints {
            lines.push(serde_json::to_string(&BundleLine::Checkpoint(c)).unwrap_or_default());
        }
        let mut body = lines.join("\n");
        body.push('\n');
        let sig = ed25519_dalek::Signer::sign(&*self.key, body.as_bytes());
        body.push_str(
            &serde_json::to_string(&BundleLine::Signature(hex::encode(sig.to_bytes())))
                .unwrap_or_default(),
        );
        body.push('\n');
        Ok(body.into_bytes())
    }

    /// The keyed reference stored for an end user instead of their id (`data_subject`, erasure
    /// tombstones): equal ids give equal references, and nobody without the key can guess an
    /// e-mail address back from it.
    pub fn subject_ref(&self, user: &str) -> String {
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(&self.subject_key) else {
            // HMAC takes keys of any length: this cannot happen.
            return chain::content_hash(user);
        };
        mac.update(b"vigil-data-subject\0");
        mac.update(user.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }

    /// GDPR erasure of one end user, known by any of `forms` (the id as sent, and as stored after
    /// redaction): their traces are deleted, the content of audit entries about them is cleared
    /// (hashes stay, so the chain still verifies), and the erasure itself is appended as a
    /// tombstone that names them only by keyed reference.
    pub async fn erase_user(
        &self,
        project: &ProjectId,
        forms: &[String],
        actor: &str,
    ) -> Result<ErasureReport, String> {
        let (mut traces, mut entries) = (0, 0);
        for form in forms {
            traces += self
                .store
                .erase_user_traces(project, form)
                .await
                .map_err(|e| e.to_string())?;
            entries += self
                .store
                .audit_erase(project, &self.subject_ref(form))
                .await
                .map_err(|e| e.to_string())?;
        }
        let user_ref = forms
            .first()
            .map(|u| self.subject_ref(u))
            .unwrap_or_default();
        let tombstone = self
            .append(AuditEvent::new(
                project,
                actor,
                "data.erased",
                format!("user:{user_ref}"),
                serde_json::json!({"user_ref": user_ref, "traces_deleted": traces, "audit_entries_cleared": entries}),
            ))
            .await?;
        Ok(ErasureReport {
            traces_deleted: traces,
            audit_entries_cleared: entries,
            tombstone_seq: tombstone.seq,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErasureReport {
    pub traces_deleted: u64,
    pub audit_entries_cleared: u64,
    pub tombstone_seq: i64,
}

pub const BUNDLE_FORMAT: &str = "vigil-audit-bundle/1";

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum BundleLine {
    Header {
        format: String,
        project_id: ProjectId,
        exported_ns: i64,
        public_key: String,
        entries: u64,
    },
    Entry(AuditRow),
    Checkpoint(AuditCheckpoint),
    Signature(String),
}

/// Verifies an exported bundle offline with the signer's public key (hex). Any changed byte fails:
/// the last line signs every byte before it, and the chain and checkpoints are re-checked.
pub fn verify_bundle(bundle: &[u8], public_key_hex: &str) -> Result<VerifyReport, String> {
    verify_bundle_against(bundle, public_key_hex, &[])
}

/// `verify_bundle`, also requiring the bundle's chain to contain heads signed earlier (`kept`).
pub fn verify_bundle_against(
    bundle: &[u8],
    public_key_hex: &str,
    kept: &[AuditCheckpoint],
) -> Result<VerifyReport, String> {
    let key = chain::parse_public_key(public_key_hex)?;
    let text =
        std::str::from_utf8(bundle).map_err(|_| "the bundle is not UTF-8 text".to_string())?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("the bundle has no signature line")?;
    let (body, sig_line) = text.split_at(body_end);
    let BundleLine::Signature(sig) = serde_json::from_str(sig_line.trim_end())
        .map_err(|e| format!("the last line is not a bundle signature: {e}"))?
    else {
        return Err("the last line is not a bundle signature".into());
    };
    if !chain::verify_signature(&key, body.as_bytes(), &sig) {
        return Err("the bundle signature does not verify with this public key: the file was changed after export, or another key signed it".into());
    }
    let mut project = None;
    let mut rows = Vec::new();
    let mut checkpoints = Vec::new();
    for (i, line) in body.lines().enumerate() {
        match serde_json::from_str::<BundleLine>(line)
            .map_err(|e| format!("line {}: {e}", i + 1))?
        {
            BundleLine::Header {
                format, project_id, ..
            } => {
                if format != BUNDLE_FORMAT {
                    return Err(format!("unknown bundle format `{format}`"));
                }
                project = Some(project_id);
            }
            BundleLine::Entry(r) => rows.push(r),
            BundleLine::Checkpoint(c) => checkpoints.push(c),
            BundleLine::Signature(_) => {
                return Err(format!("line {}: a signature line before the end", i + 1))
            }
        }
    }
    let project = project.ok_or("the bundle has no header")?;
    checkpoints.extend(kept.iter().filter(|c| c.project_id == project).cloned());
    let mut v = chain::Verifier::new(&project, &checkpoints, Some(key));
    for r in &rows {
        if !v.push(r) {
            break;
        }
    }
    Ok(v.finish())
}
