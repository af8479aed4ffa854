//! Governance: what keeps sensitive data out of the store, what stops an agent from doing what it
//! must not, and the evidence that both happened.
//!
//! - [`redact`]: detectors and per-project redaction applied to spans and log records before they
//!   are stored (OTLP ingest and the gateway alike).
//! - [`policy`]: tool-call guardrail policies and their decisions.
//! - [`audit`]: the tamper-evident audit chain, signed checkpoints, bundles, erasure.
//! - [`guard`]: tool-call checks and human approvals, as spans and audit entries.
//! - [`compliance`]: SOC 2 / HIPAA / GDPR evidence reports built from the above.

pub mod audit;
pub mod compliance;
pub mod guard;
pub mod policy;
pub mod redact;
mod service;

pub use service::{
    Governance, GovernanceSettings, PolicyError, REDACTION_SECRET_FILE, SIGNING_KEY_FILE,
};

use std::io::Write;
use std::path::Path;

/// Reads a 32-byte secret kept as hex in `path`, creating it (readable only by its owner) on first
/// use. Used for the audit signing key and the redaction HMAC key.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    match std::fs::read_to_string(path) {
        // Empty: a crash between creating and writing the file; nothing was ever keyed with it.
        Ok(text) if text.trim().is_empty() => {
            std::fs::remove_file(path)?;
            load_or_create_secret(path)
        }
        Ok(text) => match hex::decode(text.trim()) {
            Ok(key) if key.len() == 32 => Ok(key),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} does not hold a 32-byte hex key", path.display()),
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                opts.mode(0o600);
            }
            match opts.open(path) {
                Ok(mut f) => {
                    f.write_all(hex::encode(secret).as_bytes())?;
                    f.sync_all()?;
                    Ok(secret.to_vec())
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    load_or_create_secret(path)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}
