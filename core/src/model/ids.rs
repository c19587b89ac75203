//! Identifiers: record ids (UUIDv7) and device (actor) ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a record: a UUIDv7, so ids minted offline on different devices never collide and
/// sort by creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordId(Uuid);

impl RecordId {
    /// Mints a new time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id as a 128-bit integer (its storage key).
    pub fn as_u128(&self) -> u128 {
        self.0.as_u128()
    }

    /// Rebuilds an id from its storage key.
    pub fn from_u128(value: u128) -> Self {
        Self(Uuid::from_u128(value))
    }

    /// The underlying UUID.
    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for RecordId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for RecordId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// A string that is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a record id (expected a UUID such as 0190f5a4-7c1e-7b3a-9d2e-5f6a7b8c9d0e)")]
pub struct ParseIdError(pub String);

impl FromStr for RecordId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError(s.to_string()))
    }
}

/// The identity of one replica (device) as recorded in the history of every change it makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub [u8; 16]);

impl DeviceId {
    /// A fresh random device id.
    pub fn random() -> Self {
        Self(*Uuid::new_v4().as_bytes())
    }

    /// Builds a device id from an Automerge actor id's bytes; longer ids keep their first 16
    /// bytes, shorter ones are zero-padded.
    pub fn from_actor_bytes(bytes: &[u8]) -> Self {
        let mut out = [0u8; 16];
        let n = bytes.len().min(16);
        out[..n].copy_from_slice(&bytes[..n]);
        Self(out)
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
