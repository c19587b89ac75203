//! Workspace membership: device credentials and revocations signed by the workspace's admin
//! key, and the checks a peer must pass before any record moves.
//!
//! The admin key pair is ed25519 (the same curve as iroh node keys). The admin device keeps the
//! secret; every other device keeps only the public key, which arrives inside its own
//! credential and is the trust anchor for everyone else's.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use iroh::{PublicKey, SecretKey, Signature};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NetError;

/// Prefix of a credential's text form; the version lets a later format be told apart.
const CREDENTIAL_PREFIX: &str = "CRMSYNC1";
/// Domain separation: a signature over a credential can never pass for a revocation.
const CREDENTIAL_CONTEXT: &[u8] = b"crmsync credential v1\0";
const REVOCATION_CONTEXT: &[u8] = b"crmsync revocation v1\0";

/// What a device may do in a workspace.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Invites and revokes devices; syncs like a member.
    Admin,
    /// Sends and receives changes.
    Member,
    /// Receives changes; peers refuse its own.
    ReadOnly,
}

impl Role {
    /// Whether peers accept this role's changes.
    pub fn can_write(self) -> bool {
        !matches!(self, Role::ReadOnly)
    }
}

/// What a credential states, signed by the admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CredentialBody {
    pub workspace: Uuid,
    pub admin: PublicKey,
    pub device: PublicKey,
    pub role: Role,
    /// Unix seconds; `None` never expires.
    pub expires_at: Option<i64>,
}

/// A device's proof of membership: the admin's signature over (workspace, admin key, device
/// node id, role, expiry). Its text form (`to_string`, `parse`) is uppercase base32, which a
/// QR code stores in its compact alphanumeric mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    body: CredentialBody,
    signature: Signature,
}

impl Credential {
    /// Signs `body` with the workspace admin's key.
    pub(crate) fn issue(admin: &SecretKey, body: CredentialBody) -> Result<Self, NetError> {
        let signature = admin.sign(&signed_bytes(CREDENTIAL_CONTEXT, &body)?);
        Ok(Self { body, signature })
    }

    /// The workspace it grants membership of: open the engine with this workspace id before
    /// [`crate::Engine::join`] on a new device.
    pub fn workspace(&self) -> Uuid {
        self.body.workspace
    }

    /// The node id of the device it was issued to.
    pub fn device(&self) -> PublicKey {
        self.body.device
    }

    /// The admin public key that signed it.
    pub fn admin(&self) -> PublicKey {
        self.body.admin
    }

    /// The role it grants.
    pub fn role(&self) -> Role {
        self.body.role
    }

    /// When it stops being valid (`None`: never).
    pub fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.body
            .expires_at
            .and_then(|s| DateTime::from_timestamp(s, 0))
    }

    fn signature_valid(&self) -> bool {
        signed_bytes(CREDENTIAL_CONTEXT, &self.body)
            .is_ok_and(|bytes| self.body.admin.verify(&bytes, &self.signature).is_ok())
    }
}

impl fmt::Display for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = postcard::to_allocvec(self).map_err(|_| fmt::Error)?;
        write!(f, "{CREDENTIAL_PREFIX}{}", BASE32_NOPAD.encode(&bytes))
    }
}

impl FromStr for Credential {
    type Err = NetError;

    fn from_str(text: &str) -> Result<Self, NetError> {
        let invalid = |why: &str| NetError::InvalidCredential(why.to_string());
        let text = text.trim().to_ascii_uppercase();
        let body = text
            .strip_prefix(CREDENTIAL_PREFIX)
            .ok_or_else(|| invalid("not a crmsync credential (wrong prefix or version)"))?;
        let bytes = BASE32_NOPAD
            .decode(body.as_bytes())
            .map_err(|_| invalid("not base32 (mistyped or cut short)"))?;
        let (credential, rest) =
            postcard::take_from_bytes::<Credential>(&bytes).map_err(|_| invalid("truncated"))?;
        if !rest.is_empty() {
            return Err(invalid("trailing bytes"));
        }
        if !credential.signature_valid() {
            return Err(invalid("the signature does not match its contents"));
        }
        Ok(credential)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct RevocationBody {
    workspace: Uuid,
    device: PublicKey,
    revoked_at: i64,
}

/// The admin's signed statement that a device is no longer a member. Revocations travel with
/// every sync session, so each replica learns them from whichever peer it meets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    body: RevocationBody,
    signature: Signature,
}

impl Revocation {
    /// The admin's statement, signed with its key, that `device` left `workspace`.
    pub(crate) fn issue(
        admin: &SecretKey,
        workspace: Uuid,
        device: PublicKey,
        revoked_at: i64,
    ) -> Result<Self, NetError> {
        let body = RevocationBody {
            workspace,
            device,
            revoked_at,
        };
        let signature = admin.sign(&signed_bytes(REVOCATION_CONTEXT, &body)?);
        Ok(Self { body, signature })
    }

    /// The revoked device's node id.
    pub fn device(&self) -> PublicKey {
        self.body.device
    }

    /// When the admin revoked it.
    pub fn revoked_at(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(self.body.revoked_at, 0)
    }

    /// Whether `admin` signed it for `workspace`.
    fn valid_for(&self, workspace: Uuid, admin: &PublicKey) -> bool {
        self.body.workspace == workspace
            && signed_bytes(REVOCATION_CONTEXT, &self.body)
                .is_ok_and(|bytes| admin.verify(&bytes, &self.signature).is_ok())
    }
}

fn signed_bytes<T: Serialize>(context: &[u8], body: &T) -> Result<Vec<u8>, NetError> {
    let mut bytes = context.to_vec();
    let encoded = postcard::to_allocvec(body)
        .map_err(|e| NetError::InvalidCredential(format!("cannot encode: {e}")))?;
    bytes.extend_from_slice(&encoded);
    Ok(bytes)
}

/// Why a peer was refused. Each reason is checked before any record is sent or applied, and
/// is sent to the refused peer so its user sees why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The peer presented no credential (it never joined a workspace).
    #[error("the device has no credential for this workspace")]
    NoCredential,
    /// The credential is for another workspace.
    #[error("the credential is for workspace {theirs}, not {ours}")]
    OtherWorkspace {
        /// Ours.
        ours: Uuid,
        /// The credential's.
        theirs: Uuid,
    },
    /// The credential names an admin key that is not this workspace's.
    #[error("the credential was issued by a key that is not this workspace's admin")]
    UnknownAdmin,
    /// The signature does not verify: the credential was forged or altered.
    #[error("the credential's signature is not valid (forged or altered)")]
    BadSignature,
    /// The credential was issued to another node than the one on the connection.
    #[error("the credential belongs to node {issued_to}, but node {connected} presented it")]
    NodeMismatch {
        /// The node id in the credential.
        issued_to: String,
        /// The node id authenticated by the connection.
        connected: String,
    },
    /// The credential has expired.
    #[error("the credential expired at {expired_at}")]
    Expired {
        /// When.
        expired_at: DateTime<Utc>,
    },
    /// The admin revoked the device.
    #[error("the device was revoked by the workspace admin")]
    Revoked,
    /// The peer (a relay, say) does not host the credential's workspace.
    #[error("workspace {workspace} is not served here")]
    UnknownWorkspace {
        /// The credential's workspace.
        workspace: Uuid,
    },
    /// The peer serves as many sessions as it allows at once; retry later (background mode
    /// does, with backoff).
    #[error("the peer is serving its maximum of {max_sessions} sessions at once; retry later")]
    Busy {
        /// The peer's limit.
        max_sessions: u32,
    },
    /// This device used up the bytes per minute the peer allows it.
    #[error(
        "this device reached the peer's limit of {bytes_per_minute} bytes per minute; \
         retry in {retry_after_secs} s"
    )]
    RateLimited {
        /// The peer's limit.
        bytes_per_minute: u64,
        /// When the budget allows a session again.
        retry_after_secs: u32,
    },
}

/// A replica's membership in its workspace, as it holds it: read once per session.
#[derive(Debug, Clone)]
pub struct Membership {
    /// This device's credential (`None` before it joined).
    pub credential: Option<Credential>,
    /// The revocations this device knows (and verified).
    pub revocations: Vec<Revocation>,
}

impl Membership {
    /// Checks a peer's credential, as presented by the node the connection authenticated.
    pub(crate) fn check(
        &self,
        workspace: Uuid,
        presented: Option<&Credential>,
        connected: &PublicKey,
        now: DateTime<Utc>,
    ) -> Result<Role, Refusal> {
        let theirs = presented.ok_or(Refusal::NoCredential)?;
        let admin = match &self.credential {
            Some(ours) => ours.body.admin,
            // Unreachable through the network layer, which needs a credential to start.
            None => return Err(Refusal::UnknownAdmin),
        };
        if theirs.body.workspace != workspace {
            return Err(Refusal::OtherWorkspace {
                ours: workspace,
                theirs: theirs.body.workspace,
            });
        }
        if theirs.body.admin != admin {
            return Err(Refusal::UnknownAdmin);
        }
        if !theirs.signature_valid() {
            return Err(Refusal::BadSignature);
        }
        if theirs.body.device != *connected {
            return Err(Refusal::NodeMismatch {
                issued_to: theirs.body.device.to_string(),
                connected: connected.to_string(),
            });
        }
        if let Some(expired_at) = theirs.expires_at()
            && expired_at <= now
        {
            return Err(Refusal::Expired { expired_at });
        }
        // Only revocations this node verified and stored count: a peer's own list proves
        // nothing about the peer (it is exchanged once both sides accepted each other).
        let revoked = self
            .revocations
            .iter()
            .any(|r| r.body.device == *connected && r.valid_for(workspace, &admin));
        if revoked {
            return Err(Refusal::Revoked);
        }
        Ok(theirs.body.role)
    }

    /// `received` (revocations not known here, each once), if every one carries this
    /// workspace admin's signature; `Err` at the first that does not.
    pub(crate) fn verified_revocations(
        &self,
        workspace: Uuid,
        received: &[Revocation],
    ) -> Result<Vec<Revocation>, ()> {
        let Some(ours) = &self.credential else {
            return Ok(Vec::new());
        };
        for r in received {
            if !r.valid_for(workspace, &ours.body.admin) {
                return Err(());
            }
        }
        Ok(received.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation(admin: &SecretKey, workspace: Uuid) -> Revocation {
        let body = RevocationBody {
            workspace,
            device: SecretKey::generate().public(),
            revoked_at: 0,
        };
        let signature = admin.sign(&signed_bytes(REVOCATION_CONTEXT, &body).unwrap());
        Revocation { body, signature }
    }

    /// A member passes on only revocations it verified: anything else it sends is junk, and
    /// the first junk revocation ends the check, so junk costs its sender, not the receiver.
    #[test]
    fn only_revocations_the_workspace_admin_signed_are_taken() {
        let (admin, stranger) = (SecretKey::generate(), SecretKey::generate());
        let workspace = Uuid::new_v4();
        let credential = Credential::issue(
            &admin,
            CredentialBody {
                workspace,
                admin: admin.public(),
                device: SecretKey::generate().public(),
                role: Role::Member,
                expires_at: None,
            },
        )
        .unwrap();
        let membership = Membership {
            credential: Some(credential),
            revocations: Vec::new(),
        };
        let good = revocation(&admin, workspace);
        assert_eq!(
            membership.verified_revocations(workspace, std::slice::from_ref(&good)),
            Ok(vec![good.clone()])
        );
        let forged = revocation(&stranger, workspace);
        let elsewhere = revocation(&admin, Uuid::new_v4());
        let mut altered = good.clone();
        altered.body.revoked_at = 1;
        for junk in [forged, elsewhere, altered] {
            assert_eq!(
                membership.verified_revocations(workspace, &[good.clone(), junk]),
                Err(())
            );
        }
    }
}
