//! The membership handshake that opens every session on a stream, before the sync protocol
//! runs on the same stream: both sides present their credential, both check the other, both
//! send their verdict. Only then, between members, do the revocations each side knows travel.
//! Nothing of the store is read for the peer or written from it until both verdicts say accept.
//!
//! Everything a node reads before it knows who the peer is stays small: a presentation is one
//! credential and a verdict one refusal, in frames of at most [`MAX_HANDSHAKE_FRAME`] bytes,
//! allocated only as their bytes arrive.

use std::collections::HashSet;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use super::NetError;
use super::membership::{Credential, Membership, Refusal, Revocation, Role};
use super::replica::{SharedReplica, SyncedReplica};

/// Largest frame before the peer is authenticated: a credential is about 200 bytes.
const MAX_HANDSHAKE_FRAME: usize = 4 << 10;
/// Revocations per frame once both sides are members (each about 130 bytes)...
const REVOCATIONS_PER_FRAME: usize = 256;
/// ...in frames of at most this many bytes...
const MAX_REVOCATION_FRAME: usize = 64 << 10;
/// ...and at most this many in one session's list. A longer list is refused: no admin revokes
/// that many devices of one workspace, and the bound keeps a member's junk costly to itself.
pub(crate) const MAX_REVOCATIONS: usize = 100_000;

#[derive(Debug, Serialize, Deserialize)]
struct Presentation {
    credential: Option<Credential>,
}

#[derive(Debug, Serialize, Deserialize)]
enum Verdict {
    Accept,
    Refuse(Refusal),
}

/// What a side knows of the revocations, sent first: lists travel only when these differ.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct RevocationSummary {
    count: u64,
    digest: [u8; 32],
}

/// A page of a side's revocations.
#[derive(Debug, Serialize, Deserialize)]
struct RevocationPage {
    revocations: Vec<Revocation>,
    last: bool,
}

/// What both sides agreed on: the roles that decide who may send changes, and the
/// revocations the peer taught this node (a host cuts those devices off at once).
#[derive(Debug, Clone)]
pub(crate) struct Agreed {
    pub ours: Role,
    pub theirs: Role,
    pub learned: Vec<Revocation>,
}

async fn send<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, value: &T) -> Result<(), NetError> {
    let body = postcard::to_allocvec(value).map_err(|e| NetError::Handshake(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| NetError::Handshake("too large".into()))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(&body).await?;
    w.flush().await?;
    Ok(())
}

/// Reads exactly one frame of at most `max` bytes and not a byte more. The sync session's
/// `FrameReader` reads ahead into its own buffer; used here it would swallow the first bytes
/// of the session that follows on the same stream, which is why the handshake keeps this
/// small unbuffered reader. The body's buffer grows as bytes arrive: a length prefix alone
/// allocates nothing.
async fn recv<R: AsyncRead + Unpin, T: serde::de::DeserializeOwned>(
    r: &mut R,
    max: usize,
) -> Result<T, NetError> {
    let mut prefix = [0u8; 4];
    r.read_exact(&mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(NetError::Handshake(format!(
            "handshake frame of {len} bytes exceeds {max}"
        )));
    }
    let mut body = Vec::new();
    (&mut *r).take(len as u64).read_to_end(&mut body).await?;
    if body.len() < len {
        return Err(NetError::Handshake("the peer's frame was cut short".into()));
    }
    let (value, rest) =
        postcard::take_from_bytes(&body).map_err(|e| NetError::Handshake(e.to_string()))?;
    if !rest.is_empty() {
        return Err(NetError::Handshake("trailing bytes".into()));
    }
    Ok(value)
}

fn presentation(engine: &dyn SyncedReplica) -> Result<(Membership, Presentation), NetError> {
    let membership = engine.membership()?;
    if membership.credential.is_none() {
        return Err(NetError::NotJoined);
    }
    let mine = Presentation {
        credential: membership.credential.clone(),
    };
    Ok((membership, mine))
}

/// The dialing side: presents itself while reading the peer's presentation.
pub(crate) async fn dial<R, W>(
    engine: &dyn SyncedReplica,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<Agreed, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (membership, mine) = presentation(engine)?;
    let (_, theirs): ((), Presentation) =
        tokio::try_join!(send(writer, &mine), recv(reader, MAX_HANDSHAKE_FRAME))?;
    let checked = check(engine, &membership, remote, &theirs);
    let ours = conclude(&membership, checked, remote, reader, writer).await?;
    let learned = exchange_revocations(engine, &membership, reader, writer).await?;
    Ok(Agreed {
        ours: ours.0,
        theirs: ours.1,
        learned,
    })
}

/// The accepting side: reads the peer's presentation first, so a host of many workspaces can
/// pick the replica of the workspace the peer's credential names (`pick`); checks the
/// credential; only a member that passed is `admit`ted (a session slot, a byte budget), and
/// then this side presents itself. A refusal at any step reaches the peer with its reason
/// before anything is read for it.
pub(crate) async fn accept<R, W, S>(
    pick: impl FnOnce(Option<Uuid>) -> Result<SharedReplica, Refusal>,
    admit: impl FnOnce() -> Result<S, Refusal>,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<(SharedReplica, Agreed, S), NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let theirs: Presentation = recv(reader, MAX_HANDSHAKE_FRAME).await?;
    let workspace = theirs.credential.as_ref().map(Credential::workspace);
    let engine = match pick(workspace) {
        Ok(engine) => engine,
        Err(refusal) => return Err(refuse(refusal, remote, reader, writer).await),
    };
    let (membership, mine) = presentation(&*engine)?;
    let checked = check(&*engine, &membership, remote, &theirs);
    if let Err(refusal) = &checked {
        return Err(refuse(refusal.clone(), remote, reader, writer).await);
    }
    let slot = match admit() {
        Ok(slot) => slot,
        Err(refusal) => return Err(refuse(refusal, remote, reader, writer).await),
    };
    send(writer, &mine).await?;
    let roles = conclude(&membership, checked, remote, reader, writer).await?;
    let learned = exchange_revocations(&*engine, &membership, reader, writer).await?;
    let agreed = Agreed {
        ours: roles.0,
        theirs: roles.1,
        learned,
    };
    Ok((engine, agreed, slot))
}

/// Refuses the peer before presenting this side: it gets nobody's presentation and the reason.
async fn refuse<R, W>(
    refusal: Refusal,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> NetError
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    tracing::warn!(peer = %remote, %refusal, "refused a peer");
    if send_refusal(&refusal, writer).await.is_ok() {
        // Read the peer's verdict so it can finish sending it and read ours.
        let _ = recv::<_, Verdict>(reader, MAX_HANDSHAKE_FRAME).await;
    }
    let _ = writer.shutdown().await;
    NetError::PeerRefused(refusal)
}

/// Refuses a peer without reading anything from it (no handshake place is free for it): it
/// gets nobody's presentation and the reason, and the stream is finished.
pub(crate) async fn refuse_unread<W: AsyncWrite + Unpin>(refusal: Refusal, writer: &mut W) {
    let _ = send_refusal(&refusal, writer).await;
    let _ = writer.shutdown().await;
}

/// Nobody's presentation, then the refusal as this side's verdict.
async fn send_refusal<W: AsyncWrite + Unpin>(
    refusal: &Refusal,
    writer: &mut W,
) -> Result<(), NetError> {
    send(writer, &Presentation { credential: None }).await?;
    send(writer, &Verdict::Refuse(refusal.clone())).await
}

/// Checks the peer's credential against this replica's membership.
fn check(
    engine: &dyn SyncedReplica,
    membership: &Membership,
    remote: &iroh::PublicKey,
    theirs: &Presentation,
) -> Result<Role, Refusal> {
    membership.check(
        engine.workspace(),
        theirs.credential.as_ref(),
        remote,
        Utc::now(),
    )
}

/// Swaps verdicts; returns (our role, theirs) when both accept.
async fn conclude<R, W>(
    membership: &Membership,
    checked: Result<Role, Refusal>,
    remote: &iroh::PublicKey,
    reader: &mut R,
    writer: &mut W,
) -> Result<(Role, Role), NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let ours = membership
        .credential
        .as_ref()
        .ok_or(NetError::NotJoined)?
        .role();
    let verdict = match &checked {
        Ok(_) => Verdict::Accept,
        Err(refusal) => Verdict::Refuse(refusal.clone()),
    };
    // Our verdict goes out even when we refuse, so the peer can tell its user why.
    // A refusing peer may stop reading once its verdict is out, so our send can fail while
    // its verdict arrived: the verdict is what the user needs to see.
    let (sent, received) = tokio::join!(
        send(writer, &verdict),
        recv::<_, Verdict>(reader, MAX_HANDSHAKE_FRAME)
    );
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
    match checked {
        Ok(theirs) => Ok((ours, theirs)),
        Err(refusal) => {
            tracing::warn!(peer = %remote, %refusal, "refused a peer");
            let _ = writer.shutdown().await;
            Err(NetError::PeerRefused(refusal))
        }
    }
}

fn summary(revocations: &[Revocation]) -> Result<RevocationSummary, NetError> {
    let mut encoded = revocations
        .iter()
        .map(postcard::to_allocvec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NetError::Handshake(e.to_string()))?;
    encoded.sort();
    let mut hasher = Sha256::new();
    for r in &encoded {
        hasher.update(r);
    }
    Ok(RevocationSummary {
        count: revocations.len() as u64,
        digest: hasher.finalize().into(),
    })
}

/// Between two members: each side learns the revocations the other knows. Summaries first;
/// the lists travel (in pages) only when they differ. Received revocations already known are
/// not checked again; a new one must carry the workspace admin's signature, and one that does
/// not ends the session (members only pass on revocations they verified). Returns those that
/// were new here, now stored.
async fn exchange_revocations<R, W>(
    engine: &dyn SyncedReplica,
    membership: &Membership,
    reader: &mut R,
    writer: &mut W,
) -> Result<Vec<Revocation>, NetError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mine = &membership.revocations;
    let ours = summary(mine)?;
    let (_, theirs): ((), RevocationSummary) =
        tokio::try_join!(send(writer, &ours), recv(reader, MAX_HANDSHAKE_FRAME))?;
    if theirs == ours {
        return Ok(Vec::new());
    }
    let send_pages = async {
        let mut pages = mine.chunks(REVOCATIONS_PER_FRAME).peekable();
        if pages.peek().is_none() {
            return send(
                writer,
                &RevocationPage {
                    revocations: Vec::new(),
                    last: true,
                },
            )
            .await;
        }
        while let Some(page) = pages.next() {
            let page = RevocationPage {
                revocations: page.to_vec(),
                last: pages.peek().is_none(),
            };
            send(writer, &page).await?;
        }
        Ok(())
    };
    let receive_pages = async {
        let mut received = Vec::new();
        loop {
            let page: RevocationPage = recv(reader, MAX_REVOCATION_FRAME).await?;
            if page.revocations.len() > REVOCATIONS_PER_FRAME
                || received.len() + page.revocations.len() > MAX_REVOCATIONS
            {
                return Err(NetError::Handshake(format!(
                    "the peer sent more than {MAX_REVOCATIONS} revocations"
                )));
            }
            received.extend(page.revocations);
            if page.last {
                return Ok(received);
            }
        }
    };
    let (_, received) = tokio::try_join!(send_pages, receive_pages)?;
    let encode = |r: &Revocation| postcard::to_allocvec(r).unwrap_or_default();
    let mut seen: HashSet<Vec<u8>> = mine.iter().map(encode).collect();
    let unknown: Vec<Revocation> = received
        .into_iter()
        .filter(|r| seen.insert(encode(r)))
        .collect();
    // Signature checks are CPU work: off the async runtime's workers.
    let fresh =
        crate::sync::blocking(|| membership.verified_revocations(engine.workspace(), &unknown))
            .map_err(|_| {
                NetError::Handshake(
                    "the peer sent a revocation the workspace admin did not sign".to_string(),
                )
            })?;
    engine.add_revocations(&fresh)?;
    Ok(fresh)
}
