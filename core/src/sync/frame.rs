//! Length-prefixed frames over any byte stream: a 4-byte big-endian length, then a postcard
//! message. Frames above the limit are refused before anything is allocated for them.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SyncError;
use super::message::Message;

/// Writes frames and counts what it wrote.
pub struct FrameWriter<W> {
    inner: W,
    max: usize,
    /// Bytes written, prefixes included.
    pub bytes: u64,
    /// Frames written.
    pub frames: u64,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes: 0,
            frames: 0,
        }
    }

    /// Encodes and sends one message.
    pub async fn send<M: Serialize>(&mut self, message: &M) -> Result<(), SyncError> {
        let body = postcard::to_allocvec(message).map_err(|e| SyncError::Encode(e.to_string()))?;
        if body.len() > self.max {
            return Err(SyncError::FrameTooLarge {
                size: body.len() as u64,
                max: self.max as u64,
            });
        }
        let len = u32::try_from(body.len()).map_err(|_| SyncError::FrameTooLarge {
            size: body.len() as u64,
            max: self.max as u64,
        })?;
        self.inner.write_all(&len.to_be_bytes()).await?;
        self.inner.write_all(&body).await?;
        self.inner.flush().await?;
        self.bytes += 4 + body.len() as u64;
        self.frames += 1;
        Ok(())
    }

    /// Flushes and shuts the write side down (end of stream for the peer).
    pub async fn finish(&mut self) -> Result<(), SyncError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

/// Reads frames, strictly: a frame must decode to exactly one message with no bytes left.
pub struct FrameReader<R> {
    inner: R,
    max: usize,
    /// Bytes read, prefixes included.
    pub bytes: u64,
    /// Bytes read from `inner` that no `recv` has returned yet. Kept here rather than in the
    /// future of one `recv`, so a `recv` dropped mid-frame (a session whose write failed
    /// while a read was under way, which then looks for the peer's abort) loses nothing.
    pending: Vec<u8>,
}

/// The most a single read asks for, so a peer that announces a large frame and then sends
/// slowly does not get the whole frame's memory reserved up front.
const READ_CHUNK: usize = 64 << 10;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes: 0,
            pending: Vec::new(),
        }
    }

    /// Reads and decodes one message. Cancel-safe: dropping the future before it completes
    /// leaves what it read for the next call.
    pub async fn recv<M: DeserializeOwned>(&mut self) -> Result<M, SyncError> {
        loop {
            let wanted = match self.pending.first_chunk::<4>() {
                Some(prefix) => {
                    let end = 4 + checked_len(*prefix, self.max)?;
                    if self.pending.len() >= end {
                        let message = decode_body(&self.pending[4..end]);
                        self.pending.drain(..end);
                        self.bytes += end as u64;
                        return message;
                    }
                    end
                }
                None => 4,
            };
            let missing = wanted - self.pending.len();
            self.pending.reserve(missing.min(READ_CHUNK));
            let read = self.inner.read_buf(&mut self.pending).await;
            match read {
                Ok(0) => return Err(SyncError::Truncated),
                Ok(_) => {}
                Err(e) => return Err(truncated(e)),
            }
        }
    }
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Waits for the peer to close its side, dropping anything it still sends.
    pub async fn closed(&mut self) {
        self.pending.clear();
        let mut sink = [0u8; 1024];
        while let Ok(1..) = self.inner.read(&mut sink).await {}
    }
}

fn checked_len(prefix: [u8; 4], max: usize) -> Result<usize, SyncError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(SyncError::FrameTooLarge {
            size: len as u64,
            max: max as u64,
        });
    }
    Ok(len)
}

fn decode_body<M: DeserializeOwned>(body: &[u8]) -> Result<M, SyncError> {
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|e| SyncError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SyncError::Decode(format!(
            "{} unexpected byte(s) after the message",
            rest.len()
        )));
    }
    Ok(message)
}

/// Encodes a message as one frame (length prefix and body), as a session sends it.
pub fn encode_frame(message: &Message) -> Result<Vec<u8>, SyncError> {
    let body = postcard::to_allocvec(message).map_err(|e| SyncError::Encode(e.to_string()))?;
    let len = u32::try_from(body.len()).map_err(|_| SyncError::FrameTooLarge {
        size: body.len() as u64,
        max: u64::from(u32::MAX),
    })?;
    Ok([len.to_be_bytes().as_slice(), &body].concat())
}

/// Decodes the frame at the start of `bytes` exactly as a session reads it, returning the
/// message and the bytes the frame took. For fuzzing and tools.
pub fn decode_frame(bytes: &[u8], max: usize) -> Result<(Message, usize), SyncError> {
    let prefix: [u8; 4] = bytes
        .get(..4)
        .and_then(|p| p.try_into().ok())
        .ok_or(SyncError::Truncated)?;
    let len = checked_len(prefix, max)?;
    let body = bytes.get(4..4 + len).ok_or(SyncError::Truncated)?;
    Ok((decode_body(body)?, 4 + len))
}

fn truncated(e: std::io::Error) -> SyncError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        SyncError::Truncated
    } else {
        SyncError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// A read abandoned half-way through a frame (a session whose write failed while it was
    /// reading) must leave the bytes it took for the next read, or the peer's abort that
    /// follows is lost.
    #[tokio::test]
    async fn a_dropped_read_loses_nothing() {
        let (mut ours, theirs) = tokio::io::duplex(1 << 16);
        let mut reader = FrameReader::new(theirs, 1 << 20);
        let frame = encode_frame(&Message::Abort {
            code: super::super::message::AbortCode::Protocol,
            message: "x".repeat(300),
        })
        .unwrap();
        let (head, tail) = frame.split_at(100);
        ours.write_all(head).await.unwrap();
        let cut = tokio::time::timeout(Duration::from_millis(50), reader.recv::<Message>()).await;
        assert!(cut.is_err(), "half a frame cannot be a message");
        ours.write_all(tail).await.unwrap();
        match reader.recv::<Message>().await.unwrap() {
            Message::Abort { message, .. } => assert_eq!(message.len(), 300),
            _ => panic!("expected the abort"),
        }
        assert_eq!(reader.bytes, frame.len() as u64);
    }
}
