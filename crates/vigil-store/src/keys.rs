//! API key format and hashing. Keys are 192-bit random secrets, so a plain SHA-256 is a safe
//! at-rest form (no salt or slow hash needed, unlike passwords) and allows lookup by hash.

use rand::Rng;
use sha2::{Digest, Sha256};

pub const KEY_PREFIX: &str = "vk_";
const KEY_BODY_LEN: usize = 40;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub fn generate() -> String {
    let mut rng = rand::rng();
    let body: String = (0..KEY_BODY_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{KEY_PREFIX}{body}")
}

/// Cheap shape check before any lookup: anything else (quotes, NULs, SQL) is refused outright.
pub fn is_well_formed(key: &str) -> bool {
    key.len() == KEY_PREFIX.len() + KEY_BODY_LEN
        && key.starts_with(KEY_PREFIX)
        && key[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

pub fn hash(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// What may be shown after creation: prefix and last four characters.
pub fn display(key: &str) -> String {
    let tail = &key[key.len().saturating_sub(4)..];
    format!("{KEY_PREFIX}…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(is_well_formed(&a) && is_well_formed(&b));
        assert_ne!(a, b);
        assert!(!is_well_formed("vk_' OR 1=1 --"));
        assert!(!is_well_formed(&format!("{}\0", &a[..a.len() - 1])));
        assert_eq!(display(&a).chars().count(), 3 + 1 + 4);
        assert_eq!(hash(&a).len(), 32);
    }
}
