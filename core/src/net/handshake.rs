//! The membership handshake that opens every session on a stream, before the sync protocol
//! runs on the same stream: both sides present their credential and the revocations they
//! know, both check the other, both send their verdict. Nothing of the store is read for the
//! peer or written from it until both verdicts say accept.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::NetError;
use super::membership::{Credential, Refusal, Revocation, Role};
use crate::engine::Engine;

/// Handshake frames are small; a larger length prefix is hostile or garbage.
const MAX_HANDSHAKE_FRAME: usize = 1 << 20;

#[derive(Debug, Serialize, Deserialize)]
struct Presentation {
    credential: Option<Credential>,
    revocations: Vec<Revocation>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Accept,
    Refuse(Refusal),
}

/// What both sides agreed on: the roles that decide who may send changes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agreed {
    pub ours: Role,
    pub theirs: Role,
}

async fn send<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> Result<(), NetError> {
    let body = postcard::to_allocvec(value).map_err(|e| NetError::Handshake(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| NetError::Handshake("too large".into()))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

async fn recv<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
) -> Result<T, NetError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > MAX_HANDSHAKE_FRAME {
        return Err(NetError::Handshake(format!(
            "handshake frame of {len} bytes exceeds {MAX_HANDSHAKE_FRAME}"
        )));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    let (value, rest) =
        postcard::take_from_bytes(&body).map_err(|e| NetError::Handshake(e.to_string()))?;
    if !rest.is_empty() {
        return Err(NetError::Handshake("trailing bytes".into()));
    }
    Ok(value)
}

/// Runs the handshake with the node `remote` (authenticated by the connection). On success
/// the revocations the peer brought are stored and the roles returned.
pub(crate) async fn handshake<R, W>(
    engine: &Engine,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<Agreed, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let membership = engine.membership()?;
    let ours = membership
        .credential
        .as_ref()
        .ok_or(NetError::NotJoined)?
        .role();
    let mine = Presentation {
        credential: membership.credential.clone(),
        revocations: membership.revocations.clone(),
    };
    let (_, theirs): ((), Presentation) = tokio::try_join!(send(writer, &mine), recv(reader))?;
    let workspace = engine.workspace_id();
    let checked = membership.check(
        workspace,
        theirs.credential.as_ref(),
        remote,
        &theirs.revocations,
        Utc::now(),
    );
    let verdict = match &checked {
        Ok(_) => Verdict::Accept,
        Err(refusal) => Verdict::Refuse(refusal.clone()),
    };
    // Our verdict goes out even when we refuse, so the peer can tell its user why.
    let (_, their_verdict): ((), Verdict) = tokio::try_join!(send(writer, &verdict), recv(reader))?;
    let their_role = match checked {
        Ok(role) => role,
        Err(refusal) => {
            tracing::warn!(peer = %remote, %refusal, "refused a peer");
            let _ = writer.shutdown().await;
            return Err(NetError::PeerRefused(refusal));
        }
    };
    if let Verdict::Refuse(refusal) = their_verdict {
        tracing::warn!(peer = %remote, %refusal, "the peer refused this device");
        return Err(NetError::RefusedByPeer(refusal));
    }
    let fresh = membership.new_revocations(workspace, &theirs.revocations);
    engine.add_revocations(&fresh)?;
    Ok(Agreed {
        ours,
        theirs: their_role,
    })
}
