#![expect(clippy::unwrap_used, reason = "tests: a panic is a failed test")]
//! The audit chain against tampering done directly in the SQLite file: an edited, a deleted and a
//! reordered row are each reported at the exact entry; an exported bundle verifies offline with
//! the public key and fails after any one byte changes; erasure keeps the chain verifiable.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use rusqlite::{params, Connection};
use serde_json::json;
use vigil_governance::audit::{self, AuditEvent, AuditLog};
use vigil_model::ProjectId;
use vigil_store::{SqliteSettings, SqliteStore, Store};

struct Fixture {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    log: AuditLog,
    project: ProjectId,
}

async fn chain_of(n: i64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(&SqliteSettings::new(dir.path())).unwrap());
    let log = AuditLog::direct(store, SigningKey::from_bytes(&[7; 32]), b"subject-key");
    let project = ProjectId("p_test".into());
    for i in 1..=n {
        let event = AuditEvent::new(
            &project,
            "key:k1",
            "guard.decision",
            format!("tool_{i}"),
            json!({"decision": "allow", "i": i}),
        )
        .about_user(Some(if i % 2 == 0 { "alice" } else { "bob" }));
        log.append(event).await.unwrap();
        if i == 4 {
            log.checkpoint(&project).await.unwrap();
        }
    }
    Fixture {
        db: dir.path().join(vigil_store::sqlite::DB_FILE),
        _dir: dir,
        log,
        project,
    }
}

fn tamper(db: &std::path::Path, sql: &str) {
    let conn = Connection::open(db).unwrap();
    conn.execute_batch(sql).unwrap();
}

#[tokio::test]
async fn an_untouched_chain_verifies() {
    let f = chain_of(8).await;
    let r = f.log.verify(&f.project).await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!((r.entries, r.head_seq, r.checkpoints_verified), (8, 8, 1));
}

#[tokio::test]
async fn an_edited_row_is_named() {
    let f = chain_of(8).await;
    tamper(
        &f.db,
        "UPDATE audit_log SET content = replace(content, 'allow', 'deny') WHERE seq = 5",
    );
    let r = f.log.verify(&f.project).await.unwrap();
    let b = r.first_break.unwrap();
    assert_eq!(b.seq, 5, "{}", b.problem);
    assert!(b.problem.contains("edited"), "{}", b.problem);

    // Editing a hashed field (the actor) without fixing the hash is caught at the same entry.
    let f = chain_of(8).await;
    tamper(
        &f.db,
        "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 6",
    );
    assert_eq!(
        f.log
            .verify(&f.project)
            .await
            .unwrap()
            .first_break
            .unwrap()
            .seq,
        6
    );
}

#[tokio::test]
async fn content_removed_without_an_erasure_is_named() {
    let f = chain_of(8).await;
    tamper(&f.db, "UPDATE audit_log SET content = NULL WHERE seq = 5");
    let b = f.log.verify(&f.project).await.unwrap().first_break.unwrap();
    assert_eq!(b.seq, 5, "{}", b.problem);
}

#[tokio::test]
async fn a_broken_chain_is_not_signed() {
    let f = chain_of(6).await;
    tamper(
        &f.db,
        "UPDATE audit_log SET actor = 'user:mallory' WHERE seq = 6",
    );
    assert!(f.log.checkpoint(&f.project).await.unwrap().is_none());
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let f = chain_of(8).await;
    tamper(&f.db, "DELETE FROM audit_log WHERE seq = 3");
    let b = f.log.verify(&f.project).await.unwrap().first_break.unwrap();
    assert_eq!(b.seq, 3, "{}", b.problem);
    assert!(b.problem.contains("missing"), "{}", b.problem);

    // Deleting the tail is caught by the signed checkpoint that covered it.
    let f = chain_of(8).await;
    tamper(&f.db, "DELETE FROM audit_log WHERE seq >= 4");
    let b = f.log.verify(&f.project).await.unwrap().first_break.unwrap();
    assert_eq!(b.seq, 4, "{}", b.problem);
}

#[tokio::test]
async fn a_reordered_row_is_named() {
    let f = chain_of(8).await;
    // Swap entries 6 and 7 by renumbering them.
    tamper(
        &f.db,
        "UPDATE audit_log SET seq = -1 WHERE seq = 6; UPDATE audit_log SET seq = 6 WHERE seq = 7; UPDATE audit_log SET seq = 7 WHERE seq = -1;",
    );
    let b = f.log.verify(&f.project).await.unwrap().first_break.unwrap();
    assert_eq!(b.seq, 6, "{}", b.problem);
}

#[tokio::test]
async fn a_rewritten_chain_fails_its_signed_checkpoint() {
    // Whoever edits entry 2 and recomputes every hash after it still cannot forge the checkpoint.
    let f = chain_of(6).await;
    let conn = Connection::open(&f.db).unwrap();
    let mut prev = audit::chain::GENESIS.to_string();
    let rows: Vec<(i64, i64, String, String, String, String)> = conn
        .prepare("SELECT seq, time_ns, actor, action, subject, content FROM audit_log ORDER BY seq")
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (seq, time, actor, action, subject, content) in rows {
        let content = if seq == 2 {
            content.replace("allow", "deny")
        } else {
            content
        };
        let mut row = vigil_store::AuditRow {
            project_id: f.project.clone(),
            seq,
            time_ns: time,
            actor,
            action,
            subject,
            content_hash: audit::chain::content_hash(&content),
            content: Some(content.clone()),
            data_subject: None,
            prev_hash: prev.clone(),
            entry_hash: String::new(),
        };
        row.entry_hash = audit::chain::entry_hash(&row);
        conn.execute(
            "UPDATE audit_log SET content = ?1, content_hash = ?2, prev_hash = ?3, entry_hash = ?4 WHERE seq = ?5",
            params![content, row.content_hash, row.prev_hash, row.entry_hash, seq],
        )
        .unwrap();
        prev = row.entry_hash;
    }
    let b = f.log.verify(&f.project).await.unwrap().first_break.unwrap();
    assert_eq!(b.seq, 4, "{}", b.problem);
    assert!(b.problem.contains("checkpoint"), "{}", b.problem);
}

#[tokio::test]
async fn bundles_verify_offline_and_fail_after_one_changed_byte() {
    let f = chain_of(5).await;
    let bundle = f.log.export(&f.project).await.unwrap();
    let key = f.log.public_key_hex();
    let r = audit::verify_bundle(&bundle, &key).unwrap();
    assert!(
        r.ok() && r.entries == 5 && r.checkpoints_verified == 2,
        "{r:?}"
    );

    // Every single-byte change anywhere in the file is caught.
    let step = (bundle.len() / 97).max(1);
    for i in (0..bundle.len()).step_by(step) {
        let mut bad = bundle.clone();
        bad[i] ^= 0x01;
        let verdict = audit::verify_bundle(&bad, &key);
        assert!(
            !matches!(verdict, Ok(ref r) if r.ok()),
            "byte {i} changed and the bundle still verified"
        );
    }
    // Another key does not verify it.
    let other = hex::encode(SigningKey::from_bytes(&[9; 32]).verifying_key().as_bytes());
    assert!(audit::verify_bundle(&bundle, &other).is_err());
}

#[tokio::test]
async fn erasure_clears_content_and_the_chain_still_verifies() {
    let f = chain_of(6).await;
    let report = f
        .log
        .erase_user(&f.project, &["alice".to_string()], "cli")
        .await
        .unwrap();
    assert_eq!(report.audit_entries_cleared, 3);
    assert_eq!(report.tombstone_seq, 7);
    let r = f.log.verify(&f.project).await.unwrap();
    assert!(r.ok(), "{r:?}");
    assert_eq!(r.erased_entries, 3);
    let conn = Connection::open(&f.db).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM audit_log WHERE content LIKE '%alice%' OR data_subject = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
    let bundle = f.log.export(&f.project).await.unwrap();
    assert!(audit::verify_bundle(&bundle, &f.log.public_key_hex())
        .unwrap()
        .ok());
}

#[tokio::test]
async fn a_head_kept_outside_catches_truncation_even_without_stored_checkpoints() {
    let f = chain_of(6).await;
    let kept = f.log.checkpoint(&f.project).await.unwrap().unwrap();
    assert_eq!(kept.seq, 6);
    // Whoever can write the database drops the tail and every stored checkpoint ...
    tamper(
        &f.db,
        "DELETE FROM audit_log WHERE seq >= 5; DELETE FROM audit_checkpoints;",
    );
    assert!(f.log.verify(&f.project).await.unwrap().ok());
    // ... but not the head an auditor kept.
    let b = f
        .log
        .verify_against(&f.project, &[kept])
        .await
        .unwrap()
        .first_break
        .unwrap();
    assert_eq!(b.seq, 5, "{}", b.problem);
}
