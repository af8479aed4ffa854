//! The chain itself: how an entry is hashed, how checkpoints are signed, and how a sequence of
//! entries is verified — the same code for the live store and for an exported bundle checked
//! offline by a third party.

use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::Serialize;
use sha2::{Digest, Sha256};
use vigil_model::ProjectId;
use vigil_store::{AuditCheckpoint, AuditRow};

/// `prev_hash` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub fn content_hash(content: &str) -> String {
    hex::encode(Sha256::digest(content.as_bytes()))
}

/// Length-prefixed fields, so no two different entries encode to the same bytes.
fn put(buf: &mut Vec<u8>, field: &[u8]) {
    buf.extend_from_slice(&(field.len() as u64).to_be_bytes());
    buf.extend_from_slice(field);
}

/// The canonical encoding of an entry: every hashed field in a fixed order.
pub fn canonical(row: &AuditRow) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    put(&mut b, b"vigil-audit-entry/1");
    put(&mut b, row.project_id.as_str().as_bytes());
    put(&mut b, &row.seq.to_be_bytes());
    put(&mut b, &row.time_ns.to_be_bytes());
    put(&mut b, row.actor.as_bytes());
    put(&mut b, row.action.as_bytes());
    put(&mut b, row.subject.as_bytes());
    put(&mut b, row.content_hash.as_bytes());
    put(&mut b, row.prev_hash.as_bytes());
    b
}

pub fn entry_hash(row: &AuditRow) -> String {
    hex::encode(Sha256::digest(canonical(row)))
}

pub fn checkpoint_message(
    project: &ProjectId,
    seq: i64,
    entry_hash: &str,
    time_ns: i64,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    put(&mut b, b"vigil-audit-checkpoint/1");
    put(&mut b, project.as_str().as_bytes());
    put(&mut b, &seq.to_be_bytes());
    put(&mut b, entry_hash.as_bytes());
    put(&mut b, &time_ns.to_be_bytes());
    b
}

pub fn sign_checkpoint(
    key: &SigningKey,
    project: &ProjectId,
    seq: i64,
    entry_hash: &str,
    time_ns: i64,
) -> AuditCheckpoint {
    let sig = key.sign(&checkpoint_message(project, seq, entry_hash, time_ns));
    AuditCheckpoint {
        project_id: project.clone(),
        seq,
        entry_hash: entry_hash.to_string(),
        time_ns,
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(sig.to_bytes()),
    }
}

pub fn parse_public_key(hex_key: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(hex_key.trim()).map_err(|_| "the public key is not hex".to_string())?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key is 32 bytes (64 hex characters)".to_string())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("invalid Ed25519 public key: {e}"))
}

pub fn verify_signature(key: &VerifyingKey, message: &[u8], sig_hex: &str) -> bool {
    let Ok(bytes) = hex::decode(sig_hex) else {
        return false;
    };
    let Ok(arr) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return false;
    };
    key.verify(message, &Signature::from_bytes(&arr)).is_ok()
}

/// The first place a chain stops being trustworthy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Break {
    /// The entry at which verification failed.
    pub seq: i64,
    pub problem: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    pub project_id: ProjectId,
    pub entries: u64,
    pub erased_entries: u64,
    pub checkpoints_verified: u64,
    pub head_seq: i64,
    pub head_hash: String,
    /// `None` when the whole chain verified.
    pub first_break: Option<Break>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.first_break.is_none()
    }
}

/// Walks entries in order (they must be sorted by `seq`) and checks each link, each content hash
/// and each signed checkpoint. With `key`, checkpoints must be signed by it; without, by the key
/// they name (still catching edits that do not also forge a signature).
pub struct Verifier<'a> {
    report: VerifyReport,
    prev_hash: String,
    checkpoints: std::collections::BTreeMap<i64, &'a AuditCheckpoint>,
    key: Option<VerifyingKey>,
    /// The first entry whose content is gone with no `data.erased` entry after it yet.
    unexplained_erasure: Option<i64>,
}

impl<'a> Verifier<'a> {
    pub fn new(
        project: &ProjectId,
        checkpoints: &'a [AuditCheckpoint],
        key: Option<VerifyingKey>,
    ) -> Self {
        Self {
            report: VerifyReport {
                project_id: project.clone(),
                entries: 0,
                erased_entries: 0,
                checkpoints_verified: 0,
                head_seq: 0,
                head_hash: GENESIS.to_string(),
                first_break: None,
            },
            prev_hash: GENESIS.to_string(),
            checkpoints: checkpoints.iter().map(|c| (c.seq, c)).collect(),
            key,
            unexplained_erasure: None,
        }
    }

    fn fail(&mut self, seq: i64, problem: String) {
        if self.report.first_break.is_none() {
            self.report.first_break = Some(Break { seq, problem });
        }
    }

    /// Feeds the next entry; returns `false` once the chain is broken (later entries prove nothing).
    pub fn push(&mut self, row: &AuditRow) -> bool {
        if self.report.first_break.is_some() {
            return false;
        }
        let expected = self.report.head_seq + 1;
        if row.project_id != self.report.project_id {
            self.fail(
                row.seq,
                format!("entry {} belongs to another project", row.seq),
            );
            return false;
        }
        if row.seq != expected {
            let problem = if row.seq > expected {
                format!(
                    "entry {expected} is missing (the next entry present is {})",
                    row.seq
                )
            } else {
                format!(
                    "entry {} appears out of order after entry {}",
                    row.seq, self.report.head_seq
                )
            };
            self.fail(expected, problem);
            return false;
        }
        if row.prev_hash != self.prev_hash {
            self.fail(
                row.seq,
                format!(
                    "entry {} does not link to entry {}: its prev_hash is not that entry's hash (entries deleted, inserted or reordered)",
                    row.seq,
                    row.seq - 1
                ),
            );
            return false;
        }
        if let Some(content) = &row.content {
            if content_hash(content) != row.content_hash {
                self.fail(
                    row.seq,
                    format!(
                        "entry {} was edited: its content does not match its content hash",
                        row.seq
                    ),
                );
                return false;
            }
        } else {
            self.report.erased_entries += 1;
            self.unexplained_erasure.get_or_insert(row.seq);
        }
        // An erasure explains every cleared entry before it.
        if row.action == "data.erased" {
            self.unexplained_erasure = None;
        }
        let computed = entry_hash(row);
        if computed != row.entry_hash {
            self.fail(
                row.seq,
                format!(
                    "entry {} was edited: its fields do not match its entry hash",
                    row.seq
                ),
            );
            return false;
        }
        if let Some(cp) = self.checkpoints.get(&row.seq).copied() {
            if let Err(problem) = self.check_checkpoint(cp, &computed) {
                self.fail(row.seq, problem);
                return false;
            }
            self.report.checkpoints_verified += 1;
        }
        self.prev_hash = computed.clone();
        self.report.entries += 1;
        self.report.head_seq = row.seq;
        self.report.head_hash = computed;
        true
    }

    fn check_checkpoint(&self, cp: &AuditCheckpoint, hash: &str) -> Result<(), String> {
        let key = match &self.key {
            Some(k) => *k,
            None => parse_public_key(&cp.public_key)?,
        };
        let msg = checkpoint_message(&cp.project_id, cp.seq, &cp.entry_hash, cp.time_ns);
        if !verify_signature(&key, &msg, &cp.signature) {
            return Err(format!(
                "the signed checkpoint at entry {} does not verify with the public key",
                cp.seq
            ));
        }
        if cp.entry_hash != hash {
            return Err(format!(
                "entry {} differs from the signed checkpoint taken at that entry (the chain was rewritten)",
                cp.seq
            ));
        }
        Ok(())
    }

    pub fn finish(mut self) -> VerifyReport {
        if let Some(seq) = self
            .unexplained_erasure
            .filter(|_| self.report.first_break.is_none())
        {
            self.fail(
                seq,
                format!("entry {seq} lost its content, and no erasure (`data.erased`) entry follows to account for it"),
            );
        }
        if self.report.first_break.is_none() {
            if let Some((&seq, _)) = self.checkpoints.iter().next_back() {
                if seq > self.report.head_seq {
                    let at = self.report.head_seq + 1;
                    self.fail(
                        at,
                        format!(
                            "entries from {at} on are missing: a signed checkpoint covers entry {seq} but the chain ends at {}",
                            self.report.head_seq
                        ),
                    );
                }
            }
        }
        self.report
    }
}
