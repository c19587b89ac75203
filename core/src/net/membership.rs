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
use crate::engine::Engine;

/// Prefix of a credential's text form; the version lets a later format be told apart.
const CREDENTIAL_PREFIX: &str = "CRMSYNC1";
/// Domain separation: a signature over a credential can never pass for a revocation.
const CREDENTIAL_CONTEXT: &[u8] = b"crmsync credential v1\0";
const REVOCATION_CONTEXT: &[u8] = b"crmsync revocation v1\0";

pub(crate) const KEY_NODE: &str = "net.node_key";
const KEY_ADMIN_SECRET: &str = "net.admin_secret";
const KEY_CREDENTIAL: &str = "net.credential";
const KEY_REVOCATIONS: &str = "net.revocations";

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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CredentialBody {
    workspace: Uuid,
    admin: PublicKey,
    device: PublicKey,
    role: Role,
    /// Unix seconds; `None` never expires.
    expires_at: Option<i64>,
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
    fn issue(admin: &SecretKey, body: CredentialBody) -> Result<Self, NetError> {
        let signature = admin.sign(&signed_bytes(CREDENTIAL_CONTEXT, &body)?);
        Ok(Self { body, signature })
    }

    /// The workspace it grants membership of: open the engine with this workspace id before
    /// [`Engine::join`] on a new device.
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

/// This device's membership, read once per session.
#[derive(Debug, Clone)]
pub(crate) struct Membership {
    pub credential: Option<Credential>,
    pub revocations: Vec<Revocation>,
}

impl Membership {
    /// Checks a peer's credential, as presented by the node the connection authenticated.
    pub fn check(
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
    pub fn verified_revocations(
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

fn decode_setting<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    key: &str,
) -> Result<Option<T>, NetError> {
    match engine.store().setting(key)? {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| NetError::Store(crate::Error::corrupt(key, "does not decode"))),
    }
}

fn secret_setting(engine: &Engine, key: &str) -> Result<Option<SecretKey>, NetError> {
    match engine.store().setting(key)? {
        None => Ok(None),
        Some(bytes) => <[u8; 32]>::try_from(bytes.as_slice())
            .map(|b| Some(SecretKey::from_bytes(&b)))
            .map_err(|_| NetError::Store(crate::Error::corrupt(key, "not 32 bytes"))),
    }
}

/// Membership operations. Credentials and revocations are kept in the store, so they survive
/// restarts and travel with backups of the file.
impl Engine {
    /// This device's node key, created and stored on first use: the device's network
    /// identity across restarts.
    pub(crate) fn node_key(&self) -> Result<SecretKey, NetError> {
        if let Some(key) = secret_setting(self, KEY_NODE)? {
            return Ok(key);
        }
        let key = SecretKey::generate();
        self.store()
            .set_setting(KEY_NODE, Some(key.to_bytes().as_slice()))?;
        Ok(key)
    }

    /// Makes `key` this replica's node key, for a host (a relay) that serves many workspaces
    /// under one identity. Refused once the replica holds a credential for another key.
    pub fn set_node_key(&self, key: &SecretKey) -> Result<(), NetError> {
        if let Some(credential) = self.credential()?
            && credential.device() != key.public()
        {
            return Err(NetError::AlreadyJoined);
        }
        self.store()
            .set_setting(KEY_NODE, Some(key.to_bytes().as_slice()))?;
        Ok(())
    }

    /// This device's node id (public key): what an admin needs to invite it.
    pub fn node_id(&self) -> Result<PublicKey, NetError> {
        Ok(self.node_key()?.public())
    }

    /// Makes this device the admin of its workspace: creates the workspace's admin key pair
    /// (the secret never leaves this store) and an admin credential for this device.
    /// Fails if the device already holds a credential.
    pub fn init_admin(&self) -> Result<Credential, NetError> {
        if self.credential()?.is_some() {
            return Err(NetError::AlreadyJoined);
        }
        let admin = SecretKey::generate();
        let credential = Credential::issue(
            &admin,
            CredentialBody {
                workspace: self.workspace_id(),
                admin: admin.public(),
                device: self.node_id()?,
                role: Role::Admin,
                expires_at: None,
            },
        )?;
        self.store()
            .set_setting(KEY_ADMIN_SECRET, Some(admin.to_bytes().as_slice()))?;
        self.store_credential(&credential)?;
        Ok(credential)
    }

    /// Issues a credential for `device` (admin only). Show its text form to the new device,
    /// e.g. as a QR code; that device calls [`Engine::join`] with it.
    pub fn invite_device(
        &self,
        device: PublicKey,
        role: Role,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Credential, NetError> {
        let admin = secret_setting(self, KEY_ADMIN_SECRET)?.ok_or(NetError::NotAdmin)?;
        Credential::issue(
            &admin,
            CredentialBody {
                workspace: self.workspace_id(),
                admin: admin.public(),
                device,
                role,
                expires_at: expires_at.map(|t| t.timestamp()),
            },
        )
    }

    /// Joins the workspace with a credential issued to this device. A device whose database
    /// holds no record yet takes the credential's workspace on (the usual order: open, show
    /// the node id, get invited, join); one with records of another workspace is refused.
    pub fn join(&self, credential: &str) -> Result<Credential, NetError> {
        let credential: Credential = credential.parse()?;
        let me = self.node_id()?;
        if credential.device() != me {
            return Err(NetError::NotForThisDevice {
                issued_to: credential.device().to_string(),
                this_device: me.to_string(),
            });
        }
        if let Some(expired_at) = credential.expires_at()
            && expired_at <= Utc::now()
        {
            return Err(NetError::InvalidCredential(format!(
                "it expired at {expired_at}"
            )));
        }
        if let Some(existing) = self.credential()?
            && existing.admin() != credential.admin()
        {
            return Err(NetError::InvalidCredential(
                "it was signed by another admin key than this device's workspace".to_string(),
            ));
        }
        if credential.workspace() != self.workspace_id() {
            // A new device's database holds no records yet: it takes the workspace on.
            match self.store().adopt_workspace(credential.workspace()) {
                Ok(()) => {}
                Err(crate::Error::Store(crate::StoreError::WorkspaceMismatch { file, .. })) => {
                    return Err(NetError::WrongWorkspace {
                        credential: credential.workspace(),
                        store: file,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.store_credential(&credential)?;
        Ok(credential)
    }

    /// Revokes a device (admin only). Peers learn it at their next sync with any device that
    /// knows it, and refuse the device from then on; a peer it is connected to closes the
    /// connection as soon as it learns it.
    pub fn revoke(&self, device: PublicKey) -> Result<Revocation, NetError> {
        let mut revoked = self.revoke_many(&[device])?;
        revoked.pop().ok_or(NetError::NotAdmin)
    }

    /// Revokes many devices at once (admin only), in one write.
    pub fn revoke_many(&self, devices: &[PublicKey]) -> Result<Vec<Revocation>, NetError> {
        let admin = secret_setting(self, KEY_ADMIN_SECRET)?.ok_or(NetError::NotAdmin)?;
        let revoked_at = Utc::now().timestamp();
        let revocations = devices
            .iter()
            .map(|device| {
                let body = RevocationBody {
                    workspace: self.workspace_id(),
                    device: *device,
                    revoked_at,
                };
                let signature = admin.sign(&signed_bytes(REVOCATION_CONTEXT, &body)?);
                Ok(Revocation { body, signature })
            })
            .collect::<Result<Vec<_>, NetError>>()?;
        self.add_revocations(&revocations)?;
        Ok(revocations)
    }

    /// This device's credential, if it joined (or administers) a workspace.
    pub fn credential(&self) -> Result<Option<Credential>, NetError> {
        decode_setting(self, KEY_CREDENTIAL)
    }

    /// The revocations this device knows.
    pub fn revocations(&self) -> Result<Vec<Revocation>, NetError> {
        Ok(decode_setting(self, KEY_REVOCATIONS)?.unwrap_or_default())
    }

    pub(crate) fn membership(&self) -> Result<Membership, NetError> {
        Ok(Membership {
            credential: self.credential()?,
            revocations: self.revocations()?,
        })
    }

    pub(crate) fn add_revocations(&self, new: &[Revocation]) -> Result<(), NetError> {
        if new.is_empty() {
            return Ok(());
        }
        let mut all = self.revocations()?;
        let encode = |r: &Revocation| postcard::to_allocvec(r).unwrap_or_default();
        let mut known: std::collections::HashSet<Vec<u8>> = all.iter().map(encode).collect();
        for r in new {
            if known.insert(encode(r)) {
                all.push(r.clone());
            }
        }
        let bytes = postcard::to_allocvec(&all)
            .map_err(|e| NetError::InvalidCredential(format!("cannot encode: {e}")))?;
        self.store().set_setting(KEY_REVOCATIONS, Some(&bytes))?;
        Ok(())
    }

    fn store_credential(&self, credential: &Credential) -> Result<(), NetError> {
        let bytes = postcard::to_allocvec(credential)
            .map_err(|e| NetError::InvalidCredential(format!("cannot encode: {e}")))?;
        self.store().set_setting(KEY_CREDENTIAL, Some(&bytes))?;
        Ok(())
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
