//! Per-sandbox ed25519 client keys in OpenSSH format, written with the modes ssh demands.

use std::io;
use std::path::Path;

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey};

use crate::atomic_file::{ensure_private_dir, write_atomic};

/// Mode of a private key file: ssh ignores keys that others can read.
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// Mode of a public key file.
pub const PUBLIC_KEY_MODE: u32 = 0o644;
/// Mode of the keys directory.
pub const KEYS_DIR_MODE: u32 = 0o700;

/// Errors from making, reading or writing keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The ssh-key library refused an operation.
    #[error("{0}")]
    Ssh(#[from] ssh_key::Error),
    /// A file could not be read or written.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A public key line is not a single ed25519 OpenSSH key.
    #[error("not an ssh-ed25519 public key line: {0:?}")]
    NotEd25519(String),
}

/// A freshly generated or loaded ed25519 keypair.
#[derive(Debug, Clone)]
pub struct KeyPair {
    private: PrivateKey,
}

impl KeyPair {
    /// Generates a new keypair carrying `comment` (km uses `km-<id>`).
    pub fn generate(comment: &str) -> Result<Self, KeyError> {
        let mut private = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
        private.set_comment(comment);
        Ok(Self { private })
    }

    /// Loads an OpenSSH private key file.
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        Ok(Self {
            private: PrivateKey::read_openssh_file(path)?,
        })
    }

    /// The `ssh-ed25519 AAAA… comment` line, without a newline.
    pub fn public_line(&self) -> Result<String, KeyError> {
        Ok(self.private.public_key().to_openssh()?)
    }

    /// The `SHA256:…` fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.private.fingerprint(HashAlg::Sha256).to_string()
    }

    /// Writes the pair to `private_path` (0600) and `public_path` (0644), each atomically, and
    /// forces the directory to 0700.
    pub fn write(&self, private_path: &Path, public_path: &Path) -> Result<(), KeyError> {
        if let Some(dir) = private_path.parent() {
            ensure_private_dir(dir, KEYS_DIR_MODE)?;
        }
        let pem = self.private.to_openssh(LineEnding::LF)?;
        write_atomic(private_path, pem.as_bytes(), PRIVATE_KEY_MODE)?;
        let public = format!("{}\n", self.public_line()?);
        write_atomic(public_path, public.as_bytes(), PUBLIC_KEY_MODE)?;
        Ok(())
    }
}

/// Parses one ed25519 public key line (`ssh-ed25519 AAAA… [comment]`).
pub fn parse_public_line(line: &str) -> Result<PublicKey, KeyError> {
    // One line only: a newline or other control character inside (a comment, say) would put a
    // second key into authorized_keys wherever the line is written.
    if line.trim().chars().any(char::is_control) {
        return Err(KeyError::NotEd25519(line.trim().to_owned()));
    }
    let key = PublicKey::from_openssh(line.trim())
        .map_err(|_| KeyError::NotEd25519(line.trim().to_owned()))?;
    if key.algorithm() != Algorithm::Ed25519 {
        return Err(KeyError::NotEd25519(line.trim().to_owned()));
    }
    Ok(key)
}

/// The SHA256 fingerprint of a public key line.
pub fn fingerprint_of_line(line: &str) -> Result<String, KeyError> {
    Ok(parse_public_line(line)?
        .fingerprint(HashAlg::Sha256)
        .to_string())
}

/// Reads a `.pub` file and returns its fingerprint.
pub fn fingerprint_of_file(path: &Path) -> Result<String, KeyError> {
    fingerprint_of_line(&std::fs::read_to_string(path)?)
}

/// The `type base64` part of a public key line, which identifies the key whatever its comment.
pub fn key_material(line: &str) -> Option<String> {
    let mut fields = line.split_whitespace();
    Some(format!("{} {}", fields.next()?, fields.next()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_carry_the_comment_and_roundtrip() {
        let pair = KeyPair::generate("km-sb-01234567").unwrap();
        let line = pair.public_line().unwrap();
        assert!(line.starts_with("ssh-ed25519 AAAA"));
        assert!(line.ends_with(" km-sb-01234567"));
        assert_eq!(fingerprint_of_line(&line).unwrap(), pair.fingerprint());
        assert!(pair.fingerprint().starts_with("SHA256:"));
    }

    #[test]
    fn hostile_public_lines_are_refused() {
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-rsa AAAA x",
            "ssh-ed25519 AAAA'; rm -rf / #",
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrMYzBeS4c0BkfRSRmcQgCVV7rEf/Dmj4CzNPRQLQnJ a\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGrMYzBeS4c0BkfRSRmcQgCVV7rEf/Dmj4CzNPRQLQnJ b",
        ] {
            assert!(parse_public_line(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_material_ignores_comments() {
        assert_eq!(
            key_material("ssh-ed25519 AAAA c1"),
            key_material("ssh-ed25519 AAAA c2")
        );
    }
}
