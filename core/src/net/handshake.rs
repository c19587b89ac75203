//! The membership handshake that opens every session on a stream, before the sync protocol
//! runs on the same stream: both sides present their credential and the revocations they
//! know, both check the other, both send their verdict. Nothing of the store is read for the
//! peer or written from it until both verdicts say accept.

use chrono::Utc;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use super::NetError;
use super::membership::{Credential, Membership, Refusal, Revocation, Role};
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

/// Reads exactly one frame and not a byte more. The sync session's `FrameReader` reads ahead
/// into its own buffer; used here it would swallow the first bytes of the session that follows
/// on the same stream, which is why the handshake keeps this small unbuffered reader.
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

fn presentation(engine: &Engine) -> Result<(Membership, Presentation), NetError> {
    let membership = engine.membership()?;
    if membership.credential.is_none() {
        return Err(NetError::NotJoined);
    }
    let mine = Presentation {
        credential: membership.credential.clone(),
        revocations: membership.revocations.clone(),
    };
    Ok((membership, mine))
}

/// The dialing side: presents itself while reading the peer's presentation.
pub(crate) async fn dial<R, W>(
    engine: &Engine,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<Agreed, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (membership, mine) = presentation(engine)?;
    let (_, theirs): ((), Presentation) = tokio::try_join!(send(writer, &mine), recv(reader))?;
    conclude(engine, membership, remote, theirs, reader, writer).await
}

/// The accepting side: reads the peer's presentation first, so a host of many workspaces can
/// pick the replica of the workspace the peer's credential names (`pick`), then presents
/// itself. When `pick` refuses (no such workspace here, or the node is at a limit), the peer
/// gets the reason before anything is read for it.
pub(crate) async fn accept<R, W>(
    pick: impl FnOnce(Option<Uuid>) -> Result<Engine, Refusal>,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<(Engine, Agreed), NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let theirs: Presentation = recv(reader).await?;
    let workspace = theirs.credential.as_ref().map(Credential::workspace);
    let engine = match pick(workspace) {
        Ok(engine) => engine,
        Err(refusal) => {
            tracing::warn!(peer = %remote, %refusal, "refused a peer");
            let nobody = Presentation {
                credential: None,
                revocations: Vec::new(),
            };
            send(writer, &nobody).await?;
            send(writer, &Verdict::Refuse(refusal.clone())).await?;
            // Read the peer's verdict so it can finish sending it and read ours.
            let _ = recv::<_, Verdict>(reader).await;
            let _ = writer.shutdown().await;
            return Err(NetError::PeerRefused(refusal));
        }
    };
    let (membership, mine) = presentation(&engine)?;
    send(writer, &mine).await?;
    let agreed = conclude(&engine, membership, remote, theirs, reader, writer).await?;
    Ok((engine, agreed))
}

/// Checks the peer's presentation, swaps verdicts, and on success stores the revocations the
/// peer brought.
async fn conclude<R, W>(
    engine: &Engine,
    membership: Membership,
    remote: &iroh::PublicKey,
    theirs: Presentation,
    reader: &mut R,
    writer: &mut W,
) -> Result<Agreed, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = membership
        .credential
        .as_ref()
        .ok_or(NetError::NotJoined)?
        .role();
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
    // A refusing peer may stop reading once its verdict is out, so our send can fail while
    // its verdict arrived: the verdict is what the user needs to see.
    let (sent, received) = tokio::join!(send(writer, &verdict), recv::<_, Verdict>(reader));
    let their_verdict = match (sent, received) {
        (_, Ok(v @ Verdict::Refuse(_))) | (Ok(()), Ok(v)) => v,
        (Err(e), _) | (_, Err(e)) => return Err(e),
    };
    // When both refuse, the peer's reason is the one that explains the lock-out to our user
    // (a relay not serving the workspace presents nobody, which we refuse too).
    if let Verdict::Refuse(refusal) = their_verdict {
        if let Err(ours) = &checked {
            tracing::warn!(peer = %remote, refusal = %ours, "refused a peer");
        }
        tracing::warn!(peer = %remote, %refusal, "the peer refused this device");
        return Err(NetError::RefusedByPeer(refusal));
    }
    let their_role = match checked {
        Ok(role) => role,
        Err(refusal) => {
            tracing::warn!(peer = %remote, %refusal, "refused a peer");
            let _ = writer.shutdown().await;
            return Err(NetError::PeerRefused(refusal));
        }
    };
    let fresh = membership.new_revocations(workspace, &theirs.revocations);
    engine.add_revocations(&fresh)?;
    Ok(Agreed {
        ours,
        theirs: their_role,
    })
}
