//! Short digests that change whenever what they stand for does, and reveal nothing of it.

use sha2::{Digest, Sha256};

/// Of one secret value.
pub fn fingerprint(value: &str) -> String {
    hex(&Sha256::digest(value.as_bytes())[..8])
}

/// Lowercase hex, as tokens and digests are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Of the given parts (generated config and fingerprints), for the pod template's
/// config-hash annotation.
pub fn config_hash(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex(&hasher.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_do_not_reveal_the_value() {
        assert_eq!(fingerprint("secret"), fingerprint("secret"));
        assert_ne!(fingerprint("secret"), fingerprint("secret2"));
        assert_eq!(fingerprint("secret").len(), 16);
        assert!(!fingerprint("secret").contains("secret"));
    }
}
