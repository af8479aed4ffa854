//! Local users of the web UI: password hashing and session tokens. Backend-neutral, so every store
//! hashes and verifies alike.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde::Serialize;
use vigil_model::ProjectId;

use crate::{Error, Result};

pub const SESSION_PREFIX: &str = "vs_";
/// A browser session lasts this long without a new login.
pub const SESSION_TTL_SECONDS: i64 = 30 * 86_400;
pub const MIN_PASSWORD_LEN: usize = 10;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub projects: Vec<ProjectId>,
    pub created_at: i64,
}

pub fn validate(name: &str, password: &str) -> Result<()> {
    let ok_name = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if !ok_name {
        return Err(Error::InvalidQuery(
            "a user name is 1 to 64 letters, digits, `.`, `_`, `-` or `@`".into(),
        ));
    }
    if password.chars().count() < MIN_PASSWORD_LEN || password.len() > 1024 {
        return Err(Error::InvalidQuery(format!(
            "a password has at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// Argon2id with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::Task(format!("password hashing failed: {e}")))
}

/// Constant-time verification; a malformed stored hash verifies nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// Verifying against this when the user does not exist keeps "no such user" and "wrong password"
/// equally slow, so timing does not reveal which names exist.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("vigil-dummy-password").unwrap_or_default())
}

pub fn new_session_token() -> String {
    let key = crate::keys::generate();
    format!("{SESSION_PREFIX}{}", &key[crate::keys::KEY_PREFIX.len()..])
}

pub fn is_session_token(t: &str) -> bool {
    t.len() == SESSION_PREFIX.len() + 40
        && t.starts_with(SESSION_PREFIX)
        && t[SESSION_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_and_tokens_have_a_shape() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(!verify_password("x", "not a hash"));
        let t = new_session_token();
        assert!(is_session_token(&t) && !is_session_token("vs_short"));
        assert!(validate("alice", "0123456789").is_ok());
        assert!(validate("al ice", "0123456789").is_err());
        assert!(validate("alice", "short").is_err());
    }
}
