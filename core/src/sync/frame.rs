//! Length-prefixed frames over any byte stream: a 4-byte big-endian length, then a postcard
//! message. Frames above the limit are refused before anything is allocated for them.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::SyncError;
use super::message::Message;

/// Writes frames and counts what it wrote. A frame is written a piece at a time
/// ([`FrameWriter::write_some`]), so a driver can read while a large frame is going out.
pub struct FrameWriter<W> {
    inner: W,
    max: usize,
    /// Bytes written, prefixes included.
    pub bytes: u64,
    /// The frame being written and how much of it went.
    pending: Vec<u8>,
    written: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    pub fn new(inner: W, max: usize) -> Self {
        Self {
            inner,
            max,
            bytes: 0,
            pending: Vec::new(),
            written: 0,
        }
    }

    /// Whether a frame is part-way out.
    pub fn is_busy(&self) -> bool {
        self.written < self.pending.len()
    }

    /// Encodes a message as the next frame to write (after the one part-way out, if any).
    pub fn queue(&mut self, message: &Message) -> Result<(), SyncError> {
        let frame = encode_limited(message, self.max)?;
        self.pending.drain(..self.written);
        self.written = 0;
        self.pending.extend_from_slice(&frame);
        Ok(())
    }

    /// Writes some of what is queued, flushing when a frame is complete. Cancel-safe: if the
    /// future is dropped before it completes, nothing was written.
    pub async fn write_some(&mut self) -> Result<(), SyncError> {
        let n = self.inner.write(&self.pending[self.written..]).await?;
        if n == 0 {
            return Err(SyncError::Io(std::io::ErrorKind::WriteZero.into()));
        }
        self.written += n;
        self.bytes += n as u64;
        if !self.is_busy() {
            self.pending.clear();
            self.written = 0;
            self.inner.flush().await?;
        }
        Ok(())
    }

    /// Encodes and sends one message, with whatever was queued before it.
    pub async fn send(&mut self, message: &Message) -> Result<(), SyncError> {
        self.queue(message)?;
        while self.is_busy() {
            self.write_some().await?;
        }
        Ok(())
    }

    /// Flushes and shuts the write side down (end of stream for the peer).
    pub async fn finish(&mut self) -> Result<(), SyncError> {
        self.inner.shutdown().await?;
        Ok(())
    }
}

/// Splits a byte stream into messages, with no I/O: bytes go in as they arrive, in pieces of
/// any size, and whole messages come out. Strict: a frame must decode to exactly one message
/// with no bytes left, and a frame above the limit is refused from its length prefix, before
/// anything is allocated for it.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    /// Bytes taken by the messages returned so far, prefixes included.
    pub bytes: u64,
    pending: Vec<u8>,
}

impl FrameDecoder {
    /// A decoder refusing frames above `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            bytes: 0,
            pending: Vec::new(),
        }
    }

    /// Appends bytes received.
    pub fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
    }

    /// The next whole message, or `None` until more bytes arrive.
    pub fn next_message(&mut self) -> Result<Option<Message>, SyncError> {
        let Some(prefix) = self.pending.first_chunk::<4>() else {
            return Ok(None);
        };
        let end = 4 + checked_len(*prefix, self.max)?;
        if self.pending.len() < end {
            return Ok(None);
        }
        let message = decode_body(&self.pending[4..end]);
        self.pending.drain(..end);
        self.bytes += end as u64;
        message.map(Some)
    }

    /// Bytes still missing for the frame under way (at least one).
    fn missing(&self) -> Result<usize, SyncError> {
        let wanted = match self.pending.first_chunk::<4>() {
            Some(prefix) => 4 + checked_len(*prefix, self.max)?,
            None => 4,
        };
        Ok(wanted.saturating_sub(self.pending.len()).max(1))
    }

    /// Whether part of a frame arrived and the rest did not.
    pub fn is_mid_frame(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// Reads frames from a byte stream through a [`FrameDecoder`].
pub struct FrameReader<R> {
    inner: R,
    /// Bytes read that no `recv` has returned yet live here rather than in the future of one
    /// `recv`, so a `recv` dropped mid-frame (a driver that was writing meanwhile, or a
    /// session whose write failed and which then looks for the peer's abort) loses nothing.
    decoder: FrameDecoder,
}

/// The most a single read asks for, so a peer that announces a large frame and then sends
/// slowly does not get the whole frame's memory reserved up front.
const READ_CHUNK: usize = 64 << 10;

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        Self {
            inner,
            decoder: FrameDecoder::new(max),
        }
    }

    /// Bytes of the messages returned so far, prefixes included.
    pub fn bytes(&self) -> u64 {
        self.decoder.bytes
    }

    /// Reads and decodes one message. Cancel-safe: dropping the future before it completes
    /// leaves what it read for the next call.
    pub async fn recv(&mut self) -> Result<Message, SyncError> {
        loop {
            if let Some(message) = self.decoder.next_message()? {
                return Ok(message);
            }
            let missing = self.decoder.missing()?;
            let buffer = &mut self.decoder.pending;
            buffer.reserve(missing.min(READ_CHUNK));
            match self.inner.read_buf(buffer).await {
                Ok(0) => return Err(SyncError::Truncated),
                Ok(_) => {}
                Err(e) => return Err(truncated(e)),
            }
        }
    }

    /// Waits for the peer to close its side, dropping anything it still sends.
    pub async fn closed(&mut self) {
        self.decoder.pending.clear();
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

fn decode_body(body: &[u8]) -> Result<Message, SyncError> {
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
    encode_limited(message, u32::MAX as usize)
}

/// Encodes a message as one frame, refusing it if its body exceeds `max` bytes.
fn encode_limited(message: &Message, max: usize) -> Result<Vec<u8>, SyncError> {
    let body = postcard::to_allocvec(message).map_err(|e| SyncError::Encode(e.to_string()))?;
    let too_large = || SyncError::FrameTooLarge {
        size: body.len() as u64,
        max: max as u64,
    };
    if body.len() > max {
        return Err(too_large());
    }
    let len = u32::try_from(body.len()).map_err(|_| too_large())?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
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
        let cut = tokio::time::timeout(Duration::from_millis(50), reader.recv()).await;
        assert!(cut.is_err(), "half a frame cannot be a message");
        ours.write_all(tail).await.unwrap();
        match reader.recv().await.unwrap() {
            Message::Abort { message, .. } => assert_eq!(message.len(), 300),
            _ => panic!("expected the abort"),
        }
        assert_eq!(reader.bytes(), frame.len() as u64);
    }
}
