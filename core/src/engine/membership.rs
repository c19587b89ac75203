//! Membership operations on the engine. Credentials, revocations and keys are kept in the
//! store's settings, so they survive restarts and travel with backups of the file; what they
//! are and how they are checked lives in [`crate::net`].

use chrono::{DateTime, Utc};
use iroh::{PublicKey, SecretKey};

use crate::engine::Engine;
use crate::error::Error;
use crate::net::NetError;
use crate::net::membership::{Credential, CredentialBody, Membership, Revocation, Role};

const KEY_NODE: &str = "net.node_key";
const KEY_ADMIN_SECRET: &str = "net.admin_secret";
const KEY_CREDENTIAL: &str = "net.credential";
const KEY_REVOCATIONS: &str = "net.revocations";

fn decode_setting<T: serde::de::DeserializeOwned>(
    engine: &Engine,
    key: &str,
) -> Result<Option<T>, NetError> {
    match engine.store().setting(key).map_err(Error::from)? {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|_| NetError::Store(crate::Error::corrupt(key, "does not decode"))),
    }
}

fn secret_setting(engine: &Engine, key: &str) -> Result<Option<SecretKey>, NetError> {
    match engine.store().setting(key).map_err(Error::from)? {
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
            .set_setting(KEY_NODE, Some(key.to_bytes().as_slice()))
            .map_err(Error::from)?;
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
            .set_setting(KEY_NODE, Some(key.to_bytes().as_slice()))
            .map_err(Error::from)?;
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
            .set_setting(KEY_ADMIN_SECRET, Some(admin.to_bytes().as_slice()))
            .map_err(Error::from)?;
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
                Err(crate::StoreError::WorkspaceMismatch { file, .. }) => {
                    return Err(NetError::WrongWorkspace {
                        credential: credential.workspace(),
                        store: file,
                    });
                }
                Err(e) => return Err(Error::from(e).into()),
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
            .map(|device| Revocation::issue(&admin, self.workspace_id(), *device, revoked_at))
            .collect::<Result<Vec<_>, NetError>>()?;
        self.store_revocations(&revocations)?;
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

    pub(crate) fn stored_membership(&self) -> Result<Membership, NetError> {
        Ok(Membership {
            credential: self.credential()?,
            revocations: self.revocations()?,
        })
    }

    pub(crate) fn store_revocations(&self, new: &[Revocation]) -> Result<(), NetError> {
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
        self.store()
            .set_setting(KEY_REVOCATIONS, Some(&bytes))
            .map_err(Error::from)?;
        Ok(())
    }

    fn store_credential(&self, credential: &Credential) -> Result<(), NetError> {
        let bytes = postcard::to_allocvec(credential)
            .map_err(|e| NetError::InvalidCredential(format!("cannot encode: {e}")))?;
        self.store()
            .set_setting(KEY_CREDENTIAL, Some(&bytes))
            .map_err(Error::from)?;
        Ok(())
    }
}
