//! The SSH keys of a run: a fresh ed25519 client key, and the guest's host key,
//! made here and put into the seed so that the client pins it (no trust on first
//! use, and no host-key generation in the guest, which costs seconds under TCG).

use serde::Serialize;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::{LineEnding, PrivateKey};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot encode an SSH key: {0}")]
    Encode(#[from] ssh_key::Error),
}

#[derive(Clone, Serialize)]
pub struct RunKeys {
    pub client_private: String,
    pub client_public: String,
    pub host_private: String,
    pub host_public: String,
}

impl std::fmt::Debug for RunKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunKeys")
            .field("client_public", &self.client_public)
            .field("host_public", &self.host_public)
            .finish_non_exhaustive()
    }
}

impl RunKeys {
    /// Fresh random keys for a run.
    pub fn generate() -> Result<RunKeys, KeyError> {
        let mut rng = rand_core::OsRng;
        Self::from_keypairs(Ed25519Keypair::random(&mut rng), Ed25519Keypair::random(&mut rng))
    }

    /// The keys of a saved guest (warm runs): its client key, and the host key it
    /// was seeded with, to pin. Its host private key stays in the guest.
    pub fn from_saved(client_private: &str, host_public: &str) -> Result<RunKeys, KeyError> {
        let client = PrivateKey::from_openssh(client_private)?;
        Ok(RunKeys {
            client_private: client_private.to_owned(),
            client_public: client.public_key().to_openssh()?,
            host_private: String::new(),
            host_public: host_public.to_owned(),
        })
    }

    /// Deterministic keys from a seed, for snapshots of rendered files.
    pub fn from_seed(seed: u8) -> Result<RunKeys, KeyError> {
        Self::from_keypairs(Ed25519Keypair::from_seed(&[seed; 32]), Ed25519Keypair::from_seed(&[seed.wrapping_add(1); 32]))
    }

    fn from_keypairs(client: Ed25519Keypair, host: Ed25519Keypair) -> Result<RunKeys, KeyError> {
        let client = PrivateKey::new(KeypairData::Ed25519(client), "devstack-harness client")?;
        let host = PrivateKey::new(KeypairData::Ed25519(host), "devstack-harness host")?;
        Ok(RunKeys {
            client_private: client.to_openssh(LineEnding::LF)?.to_string(),
            client_public: client.public_key().to_openssh()?,
            host_private: host.to_openssh(LineEnding::LF)?.to_string(),
            host_public: host.public_key().to_openssh()?,
        })
    }
}
