//! The write-ahead journal: what makes a small write durable with one fsync of a page or two.
//!
//! A durable redb commit writes every B-tree page the transaction copied (about twenty for an
//! edit, scattered over the file) and waits for all of them; that was most of an edit's time.
//! Instead, a small write's table mutations are encoded as one journal record, written to a
//! preallocated file beside the database (`crm.redb` → `crm.redb.wal`) and flushed with
//! `fdatasync`; only then is the redb transaction committed, without a flush of its own. Every
//! so often (the journal is full, a write is too large to journal, the store closes) a durable
//! redb commit takes everything so far to the database file: a checkpoint.
//!
//! Which records are still to be replayed after a crash is decided by an epoch number kept in
//! the database itself: each checkpoint commit raises it, and a journal record counts only if it
//! carries the current epoch and the next index. So a record from before the checkpoint, a
//! torn record (its checksum fails) and whatever follows it are ignored, and nothing needs
//! truncating. Replaying a record writes the values the write wrote (no read-modify-write), so
//! replaying records the database already holds changes nothing.
//!
//! A record's header: magic (4 bytes), version (1), payload length (4), epoch (8), index (4),
//! CRC-32 (4), little-endian; the CRC covers the database's identity, the version, epoch,
//! index, length and payload. The version says how to read the payload. A later version keeps
//! this header and its checksum, so this build tells a whole record it cannot read (the open
//! fails, [`StoreError::JournalVersion`]: skipping it would lose an acknowledged write) from a
//! torn one (the journal ends there). Records of the build before versions existed have
//! another magic and a header without the version byte; they are still replayed, as a crash
//! leaves them for the next build to open. A transaction that changed nothing writes no record.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Result, StoreError};
use crate::model::DeviceId;

/// A write whose mutations take more is committed to the database durably instead (imports,
/// sync batches): writing it twice would cost more than the flush it saves.
pub(super) const MAX_RECORD: usize = 256 << 10;
/// Records between checkpoints at most. Pages that a non-durable commit replaced cannot be
/// reused before the next durable one, so this bounds how much the file grows meanwhile.
const MAX_RECORDS: u32 = 2048;
const MAGIC: u32 = 0x5657_5343; // "CSWV"
/// The version of the records this build writes, and the newest it reads.
const VERSION: u8 = 1;
/// magic, version, payload length, epoch, index, checksum.
const HEADER: usize = 4 + 1 + 4 + 8 + 4 + 4;
/// The magic of records without a version byte, written before versions existed. Their
/// payload is read as version 1's.
const LEGACY_MAGIC: u32 = 0x4c57_5343; // "CSWL"
/// magic, payload length, epoch, index, checksum.
const LEGACY_HEADER: usize = 4 + 4 + 8 + 4 + 4;

/// The path of the journal of a database file.
pub(super) fn journal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".wal");
    PathBuf::from(name)
}

/// One table mutation, as a write made it and a replay makes it again.
#[derive(Debug)]
pub(super) enum Mutation<'a> {
    Doc(u128, &'a [u8]),
    Chunk(u128, u32, &'a [u8]),
    DropChunk(u128, u32),
    Row(u128, &'a [u8]),
    Heads(u128, &'a [u8]),
    Log(u64, &'a [u8]),
    List(&'a str, u128),
    Unlist(&'a str, u128),
}

impl Mutation<'_> {
    fn tag(&self) -> u8 {
        match self {
            Mutation::Doc(..) => 1,
            Mutation::Chunk(..) => 2,
            Mutation::DropChunk(..) => 3,
            Mutation::Row(..) => 4,
            Mutation::Heads(..) => 5,
            Mutation::Log(..) => 6,
            Mutation::List(..) => 7,
            Mutation::Unlist(..) => 8,
        }
    }
}

/// The mutations of one write transaction, encoded as they happen. Gives up (and frees its
/// buffer) once they outgrow [`MAX_RECORD`]: such a write is committed durably.
#[derive(Debug, Default)]
pub(super) struct Recorder {
    bytes: Vec<u8>,
    overflowed: bool,
    mutations: usize,
}

/// What a write transaction leaves for the journal.
#[derive(Debug)]
pub(super) enum Recorded {
    /// It changed nothing: there is nothing to commit, journal or flush.
    Nothing,
    /// The payload of its journal record.
    Payload(Vec<u8>),
    /// More than a journal record takes: it is committed durably instead.
    TooLarge,
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    // Values are far below 4 GiB: a record larger than MAX_RECORD is never kept.
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Recorder {
    pub fn record(&mut self, m: &Mutation<'_>) {
        self.mutations += 1;
        if self.overflowed {
            return;
        }
        let out = &mut self.bytes;
        out.push(m.tag());
        match *m {
            Mutation::Doc(id, v) | Mutation::Row(id, v) | Mutation::Heads(id, v) => {
                out.extend_from_slice(&id.to_le_bytes());
                put_bytes(out, v);
            }
            Mutation::Chunk(id, n, v) => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
                put_bytes(out, v);
            }
            Mutation::DropChunk(id, n) => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&n.to_le_bytes());
            }
            Mutation::Log(seq, v) => {
                out.extend_from_slice(&seq.to_le_bytes());
                put_bytes(out, v);
            }
            Mutation::List(t, id) | Mutation::Unlist(t, id) => {
                put_bytes(out, t.as_bytes());
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        if out.len() > MAX_RECORD {
            self.overflowed = true;
            self.bytes = Vec::new();
        }
    }

    /// The encoded mutations, if there are any and they fit a journal record.
    pub fn finish(self) -> Recorded {
        if self.mutations == 0 {
            Recorded::Nothing
        } else if self.overflowed {
            Recorded::TooLarge
        } else {
            Recorded::Payload(self.bytes)
        }
    }
}

/// Reads the mutations of a journal record back, in order.
pub(super) fn decode(
    mut bytes: &[u8],
    mut apply: impl FnMut(Mutation<'_>) -> Result<()>,
) -> Result<()> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
        if bytes.len() < n {
            return Err(StoreError::corrupt("journal record", "truncated mutation"));
        }
        let (head, rest) = bytes.split_at(n);
        *bytes = rest;
        Ok(head)
    }
    fn array<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(take(bytes, N)?);
        Ok(out)
    }
    fn sized<'a>(bytes: &mut &'a [u8]) -> Result<&'a [u8]> {
        let n = u32::from_le_bytes(array(bytes)?) as usize;
        take(bytes, n)
    }
    fn text<'a>(bytes: &mut &'a [u8]) -> Result<&'a str> {
        std::str::from_utf8(sized(bytes)?)
            .map_err(|_| StoreError::corrupt("journal record", "record type is not UTF-8"))
    }
    while let Some((&tag, rest)) = bytes.split_first() {
        bytes = rest;
        let b = &mut bytes;
        let m = match tag {
            1 => Mutation::Doc(u128::from_le_bytes(array(b)?), sized(b)?),
            2 => Mutation::Chunk(
                u128::from_le_bytes(array(b)?),
                u32::from_le_bytes(array(b)?),
                sized(b)?,
            ),
            3 => Mutation::DropChunk(
                u128::from_le_bytes(array(b)?),
                u32::from_le_bytes(array(b)?),
            ),
            4 => Mutation::Row(u128::from_le_bytes(array(b)?), sized(b)?),
            5 => Mutation::Heads(u128::from_le_bytes(array(b)?), sized(b)?),
            6 => Mutation::Log(u64::from_le_bytes(array(b)?), sized(b)?),
            7 => Mutation::List(text(b)?, u128::from_le_bytes(array(b)?)),
            8 => Mutation::Unlist(text(b)?, u128::from_le_bytes(array(b)?)),
            other => {
                return Err(StoreError::corrupt(
                    "journal record",
                    format!("unknown mutation {other}"),
                ));
            }
        };
        apply(m)?;
    }
    Ok(())
}

/// Covers the device id too: a journal left beside a database file that was since replaced
/// holds no record of the new one. `version` is `None` for a legacy record, whose checksum
/// predates versions.
fn checksum(device: DeviceId, version: Option<u8>, epoch: u64, index: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&device.0);
    if let Some(version) = version {
        h.update(&[version]);
    }
    h.update(&epoch.to_le_bytes());
    h.update(&index.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// The journal file and where the next record goes.
#[derive(Debug)]
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes of the file, written once when it is created: overwriting written blocks lets
    /// `fdatasync` skip the file's metadata.
    capacity: u64,
    device: DeviceId,
    epoch: u64,
    /// Index of the next record within the epoch (also: records since the last checkpoint).
    index: u32,
    offset: u64,
}

fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> StoreError {
    StoreError::Journal {
        path: path.to_path_buf(),
        what,
        source,
    }
}

impl Journal {
    /// Opens (creating and preallocating if needed) the journal of a database file and reads
    /// the records of `epoch` still to replay, in order.
    pub fn open(
        db: &Path,
        capacity: u64,
        (device, epoch): (DeviceId, u64),
    ) -> Result<(Self, Vec<Vec<u8>>)> {
        let path = journal_path(db);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io_error(&path, "opening", e))?;
        let len = file
            .metadata()
            .map_err(|e| io_error(&path, "reading its size", e))?
            .len();
        // Records are read whatever the file's size (one written with another capacity keeps
        // its records); a file with none to replay is sized now, one with some after the
        // replay's checkpoint (`ensure_capacity`).
        let (records, offset) = match read_records(&file, len, device, epoch) {
            Ok(read) => read,
            Err(Unreadable::Io(e)) => return Err(io_error(&path, "reading", e)),
            Err(Unreadable::Version(found)) => {
                return Err(StoreError::JournalVersion {
                    path,
                    found,
                    supported: VERSION,
                });
            }
        };
        let mut journal = Self {
            file,
            path,
            capacity,
            device,
            epoch,
            index: records.len() as u32,
            offset,
        };
        if records.is_empty() {
            journal.ensure_capacity()?;
        }
        Ok((journal, records))
    }

    /// The epoch the database names as current.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records written since the last checkpoint.
    pub fn records(&self) -> u32 {
        self.index
    }

    /// Whether a record of `len` payload bytes goes into the journal (else: checkpoint).
    pub fn has_room(&self, len: usize) -> bool {
        len <= MAX_RECORD
            && self.index < MAX_RECORDS
            && self.offset + (HEADER + len) as u64 <= self.capacity
    }

    /// Writes a record and waits until it is on disk.
    pub fn append(&mut self, payload: &[u8]) -> std::io::Result<()> {
        let mut record = Vec::with_capacity(HEADER + payload.len());
        record.extend_from_slice(&MAGIC.to_le_bytes());
        record.push(VERSION);
        record.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        record.extend_from_slice(&self.epoch.to_le_bytes());
        record.extend_from_slice(&self.index.to_le_bytes());
        let sum = checksum(self.device, Some(VERSION), self.epoch, self.index, payload);
        record.extend_from_slice(&sum.to_le_bytes());
        record.extend_from_slice(payload);
        let written =
            write_at(&self.file, &record, self.offset).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            // The write fails, but its record may have reached the disk whole: void it, so a
            // replay never applies a write that was not acknowledged.
            let _ = write_at(&self.file, &[0; HEADER], self.offset)
                .and_then(|()| self.file.sync_data());
            return Err(e);
        }
        self.offset += record.len() as u64;
        self.index += 1;
        Ok(())
    }

    /// Takes back the record just appended, whose transaction failed to commit: a replay must
    /// not apply a write that returned an error. Best effort; should it fail, the next
    /// checkpoint (which the caller attempts) voids the record all the same.
    pub fn retract(&mut self, len: usize) -> std::io::Result<()> {
        let start = self.offset - (HEADER + len) as u64;
        write_at(&self.file, &[0; HEADER], start)?;
        self.file.sync_data()?;
        self.offset = start;
        self.index -= 1;
        Ok(())
    }

    /// Gives the journal its full size, once the records it held were replayed and voided.
    pub fn ensure_capacity(&mut self) -> Result<()> {
        let len = self
            .file
            .metadata()
            .map_err(|e| io_error(&self.path, "reading its size", e))?
            .len();
        if len != self.capacity {
            preallocate(&mut self.file, &self.path, self.capacity)
                .map_err(|e| io_error(&self.path, "preallocating", e))?;
        }
        Ok(())
    }

    /// Starts over after a checkpoint raised the database's epoch to `epoch`.
    pub fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.index = 0;
        self.offset = 0;
    }
}

/// Why the journal's records could not be read.
enum Unreadable {
    Io(std::io::Error),
    /// A whole record of the current epoch, of a version newer than [`VERSION`].
    Version(u8),
}

impl From<std::io::Error> for Unreadable {
    fn from(e: std::io::Error) -> Self {
        Unreadable::Io(e)
    }
}

/// A record's header, of either layout.
struct Header {
    /// `None` for a legacy record.
    version: Option<u8>,
    len: usize,
    epoch: u64,
    index: u32,
    sum: u32,
    /// The header's own length.
    size: usize,
}

impl Header {
    /// Reads the header at the start of `bytes` (all that is left of the file, up to
    /// [`HEADER`]); `None` where no record starts.
    fn parse(bytes: &[u8]) -> Option<Header> {
        let u32_at = |i: usize| Some(u32::from_le_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
        let u64_at = |i: usize| Some(u64::from_le_bytes(bytes.get(i..i + 8)?.try_into().ok()?));
        let (version, fields, size) = match u32_at(0)? {
            MAGIC => (Some(*bytes.get(4)?), 5, HEADER),
            LEGACY_MAGIC => (None, 4, LEGACY_HEADER),
            _ => return None,
        };
        Some(Header {
            version,
            len: u32_at(fields)? as usize,
            epoch: u64_at(fields + 4)?,
            index: u32_at(fields + 12)?,
            sum: u32_at(fields + 16)?,
            size,
        })
    }
}

/// The valid records of `epoch` from the start of the journal, and the offset after them. Read
/// record by record: after a clean close the first header already ends it, so opening reads a
/// few bytes, not the file.
fn read_records(
    file: &File,
    file_len: u64,
    device: DeviceId,
    epoch: u64,
) -> Result<(Vec<Vec<u8>>, u64), Unreadable> {
    let mut out = Vec::new();
    let mut at = 0u64;
    let mut header = [0u8; HEADER];
    while at < file_len {
        // A legacy header is shorter: a file cut just after one still holds it whole.
        let available = (file_len - at).min(HEADER as u64) as usize;
        read_at(file, &mut header[..available], at)?;
        let Some(h) = Header::parse(&header[..available]) else {
            break;
        };
        // Bounded by the file's length, not by MAX_RECORD: a later version may write larger
        // records, which must be refused below rather than skipped here.
        let end = at + (h.size + h.len) as u64;
        if h.epoch != epoch || h.index as usize != out.len() || end > file_len {
            break;
        }
        let mut payload = vec![0; h.len];
        read_at(file, &mut payload, at + h.size as u64)?;
        if checksum(device, h.version, epoch, h.index, &payload) != h.sum {
            break;
        }
        if let Some(found) = h.version.filter(|&v| v > VERSION) {
            return Err(Unreadable::Version(found));
        }
        out.push(payload);
        at = end;
    }
    Ok((out, at))
}

#[cfg(unix)]
fn read_at(file: &File, bytes: &mut [u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, offset)
}

#[cfg(windows)]
fn read_at(file: &File, mut bytes: &mut [u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_read(file, bytes, offset)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        bytes = &mut bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

#[cfg(unix)]
fn write_at(file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, offset)
}

#[cfg(windows)]
fn write_at(file: &File, mut bytes: &[u8], mut offset: u64) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let n = std::os::windows::fs::FileExt::seek_write(file, bytes, offset)?;
        bytes = &bytes[n..];
        offset += n as u64;
    }
    Ok(())
}

/// Fills the journal with zeros up to its capacity and makes its existence durable.
fn preallocate(file: &mut File, path: &Path, capacity: u64) -> std::io::Result<()> {
    file.set_len(0)?;
    let zeros = vec![0u8; 64 << 10];
    let mut left = capacity;
    while left > 0 {
        let n = left.min(zeros.len() as u64);
        file.write_all(&zeros[..n as usize])?;
        left -= n;
    }
    file.sync_all()?;
    #[cfg(unix)]
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}
