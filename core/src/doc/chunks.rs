//! Reading change bytes from another replica in one strict pass.
//!
//! `Automerge::load_incremental` skips whatever it cannot decode, so on its own it would accept
//! garbage or a truncated chunk as "nothing new". Checking with a strict load first decodes
//! every change twice, and for a replica that merges all day (a relay) that second decode was a
//! fifth of its work. Changes sent as `save_after` output are a run of change chunks, which can
//! be split and checked here once and then applied as decoded changes.
//!
//! Automerge checks a change's ops when it parses it, but not that the actors its ops name are
//! among the actors the change lists: `Change::decode` panics on such a change (applying it
//! fails cleanly). Changes split here have that checked too, so they are safe to decode.

use automerge::Change;

use super::DocError;

/// The first bytes of every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of an uncompressed change.
const CHANGE_CHUNK: u8 = 1;
/// Magic, checksum and type, before the length.
const HEADER: usize = 9;

/// The chunk at the start of `rest`: its type, where its contents start and where it ends.
fn next_chunk(rest: &[u8]) -> Result<(u8, usize, usize), DocError> {
    if rest.len() < HEADER || rest[..4] != MAGIC {
        return Err(DocError::BadChunk("not an Automerge chunk"));
    }
    let (len, width) = uleb128(&rest[HEADER..]).ok_or(DocError::BadChunk("bad length"))?;
    let end = len
        .checked_add(HEADER + width)
        .filter(|end| *end <= rest.len())
        .ok_or(DocError::BadChunk("chunk cut short"))?;
    Ok((rest[8], HEADER + width, end))
}

/// Chunk type of a whole document.
const DOCUMENT_CHUNK: u8 = 0;
/// Bit of a column specification that marks the column as deflate-compressed.
const DEFLATED_COLUMN: u64 = 0b1000;

/// The most bytes the compressed columns of one record's received bytes may inflate to.
/// Automerge inflates them whole, before any checksum or sanity check, so a few kilobytes of a
/// crafted deflate stream could otherwise claim gigabytes. A record's compacted history is far
/// below this (long notes typed over months included); a frame is at most 16 MiB by default.
pub const MAX_INFLATED_BYTES: u64 = 32 << 20;

/// Checks bytes from another replica that are not all plain change chunks (see
/// [`split_changes`]) before Automerge reads them: each chunk must be a whole document or an
/// uncompressed change. A compressed change or a bundle is refused (replicas never send them),
/// and the compressed columns of documents may inflate to [`MAX_INFLATED_BYTES`] in all. That is
/// measured by inflating into nothing, so a compression bomb costs bounded time and no memory.
pub fn check_chunks(bytes: &[u8]) -> Result<(), DocError> {
    let mut budget = MAX_INFLATED_BYTES;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (kind, body, end) = next_chunk(rest)?;
        match kind {
            CHANGE_CHUNK => {}
            DOCUMENT_CHUNK => {
                let inflated = document_inflation(&rest[body..end], budget)?;
                budget -= inflated;
            }
            _ => {
                return Err(DocError::BadChunk(
                    "a compressed change or bundle, which replicas never send",
                ));
            }
        }
        rest = &rest[end..];
    }
    Ok(())
}

/// The bytes a document chunk's compressed columns inflate to, if at most `budget`.
fn document_inflation(body: &[u8], budget: u64) -> Result<u64, DocError> {
    let malformed = DocError::BadChunk("a document whose columns do not parse");
    let mut r = Reader(body);
    let columns = (|| {
        let actors = r.uint()?;
        for _ in 0..actors {
            r.bytes()?;
        }
        let heads = usize::try_from(r.uint()?).ok()?;
        r.take(heads.checked_mul(32)?)?;
        // Change columns, then op columns: each a list of (specification, length).
        let mut specs = Vec::new();
        for _ in 0..2 {
            let count = r.uint()?;
            for _ in 0..count {
                specs.push((r.uint()?, usize::try_from(r.uint()?).ok()?));
                if specs.len() > body.len() {
                    return None; // more columns than bytes: garbage
                }
            }
        }
        Some(specs)
    })()
    .ok_or(malformed)?;
    let mut inflated = 0u64;
    for (spec, len) in columns {
        let data = r
            .take(len)
            .ok_or(DocError::BadChunk("a document whose columns do not parse"))?;
        if spec & DEFLATED_COLUMN == 0 {
            continue;
        }
        let left = budget - inflated;
        let mut limited = std::io::Read::take(flate2::bufread::DeflateDecoder::new(data), left + 1);
        let size = std::io::copy(&mut limited, &mut std::io::sink())
            .map_err(|_| DocError::BadChunk("a compressed column that does not inflate"))?;
        if size > left {
            return Err(DocError::BadChunk(
                "compressed columns that inflate past the limit (MAX_INFLATED_BYTES)",
            ));
        }
        inflated += size;
    }
    Ok(inflated)
}

/// The changes in `bytes` when it is nothing but uncompressed change chunks, each whole, with a
/// checksum that matches. `Ok(None)` when it holds another kind of chunk (a whole document, a
/// compressed change), which the caller loads the general way. An error for anything else:
/// bytes that are not chunks, a chunk cut short, a checksum that does not match, a change that
/// does not decode.
pub fn split_changes(bytes: &[u8]) -> Result<Option<Vec<Change>>, DocError> {
    let mut changes = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (kind, body, end) = next_chunk(rest)?;
        if kind != CHANGE_CHUNK {
            return Ok(None);
        }
        let change = Change::try_from(&rest[..end]).map_err(|e| {
            DocError::BadChunk(if matches!(e, automerge::LoadChangeError::LeftoverData) {
                "trailing bytes in a change"
            } else {
                "change does not decode"
            })
        })?;
        // The checksum is the start of the hash of the chunk's type, length and contents,
        // which is the change's hash: a mismatch means the bytes were altered.
        if change.hash().0[..4] != rest[4..8] {
            return Err(DocError::BadChunk("checksum does not match"));
        }
        check_actor_indices(&rest[body..end]).ok_or(DocError::BadChunk(
            "an op names an actor the change does not list",
        ))?;
        // Records never hold rich-text marks, and automerge 0.12 can abort the process (a
        // panic inside a destructor while unwinding another) on forged mark ops: refused
        // before it sees them. Decoding is safe now that the actors are checked.
        let marks = change.decode().operations.iter().any(|op| {
            matches!(
                op.action,
                automerge::legacy::OpType::MarkBegin(_) | automerge::legacy::OpType::MarkEnd(_)
            )
        });
        if marks {
            return Err(DocError::BadChunk(
                "rich-text marks, which records never hold",
            ));
        }
        changes.push(change);
        rest = &rest[end..];
    }
    Ok(Some(changes))
}

/// Reads a change chunk's contents (after its header) far enough to check that every actor
/// column holds indexes of listed actors (the change's own, then its other actors). `None` if
/// one does not, or if the contents do not read as a change.
fn check_actor_indices(body: &[u8]) -> Option<()> {
    let mut r = Reader(body);
    let deps = r.uint()?;
    r.take(usize::try_from(deps).ok()?.checked_mul(32)?)?;
    r.bytes()?; // actor
    r.uint()?; // seq
    r.uint()?; // start op
    r.int()?; // time
    r.bytes()?; // message
    let others = r.uint()?;
    for _ in 0..others {
        r.bytes()?;
    }
    let actors = others.checked_add(1)?;
    let columns = r.uint()?;
    let mut specs = Vec::new();
    for _ in 0..columns {
        specs.push((r.uint()?, usize::try_from(r.uint()?).ok()?));
    }
    for (spec, len) in specs {
        let data = r.take(len)?;
        // The low three bits of a column spec are its type; 1 is a column of actor indexes.
        if spec & 0b111 == 1 && !actor_column_within(data, actors) {
            return None;
        }
    }
    Some(())
}

/// Whether every value of a run-length encoded column of actor indexes is below `actors`.
fn actor_column_within(data: &[u8], actors: u64) -> bool {
    let mut r = Reader(data);
    while !r.0.is_empty() {
        let Some(count) = r.int() else { return false };
        let values = match count {
            // A run of one value.
            1.. => 1,
            // A run of nulls: their count follows, no value.
            0 => match r.uint() {
                Some(_) => 0,
                None => return false,
            },
            // Literal values.
            _ => count.unsigned_abs(),
        };
        for _ in 0..values {
            match r.uint() {
                Some(index) if index < actors => {}
                _ => return false,
            }
        }
    }
    true
}

/// A cursor over LEB128 numbers and length-prefixed byte strings.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }

    fn uint(&mut self) -> Option<u64> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let byte = *self.take(1)?.first()?;
            let part = u64::from(byte & 0x7f);
            let shift = 7 * i;
            if shift == 63 && part > 1 {
                return None;
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }

    fn int(&mut self) -> Option<i64> {
        let mut value: i64 = 0;
        let mut shift = 0;
        loop {
            let byte = *self.take(1)?.first()?;
            if shift > 63 {
                return None;
            }
            value |= i64::from(byte & 0x7f).wrapping_shl(shift);
            shift += 7;
            if byte & 0x80 == 0 {
                if shift < 64 && byte & 0x40 != 0 {
                    value |= -1i64 << shift;
                }
                return Some(value);
            }
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.uint()?).ok()?;
        self.take(len)
    }
}

/// An unsigned LEB128 number that fits a `usize`, and the bytes it took.
fn uleb128(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in bytes.iter().take(10).enumerate() {
        let part = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        if shift == 63 && part > 1 {
            return None;
        }
        value |= part << shift;
        if byte & 0x80 == 0 {
            return usize::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    fn two_changes() -> (Vec<u8>, usize) {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", 1).unwrap();
        doc.commit();
        let first = doc.save_after(&[]).len();
        doc.put(ROOT, "b", "two").unwrap();
        doc.commit();
        (doc.save_after(&[]), first)
    }

    #[test]
    fn splits_a_run_of_changes() {
        let (bytes, _) = two_changes();
        let changes = split_changes(&bytes).unwrap().unwrap();
        assert_eq!(changes.len(), 2);
        assert_eq!(split_changes(&[]).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn refuses_altered_cut_or_foreign_bytes() {
        let (bytes, first) = two_changes();
        assert!(split_changes(&bytes[..bytes.len() - 1]).is_err());
        assert!(split_changes(&bytes[..first + 3]).is_err());
        let mut altered = bytes.clone();
        let last = altered.len() - 1;
        altered[last] ^= 1;
        assert!(split_changes(&altered).is_err());
        assert!(split_changes(b"hello, this is not automerge").is_err());
        let mut huge = bytes[..HEADER].to_vec();
        huge.extend([0xff; 11]);
        assert!(split_changes(&huge).is_err());
    }

    #[test]
    fn refuses_ops_naming_an_actor_the_change_does_not_list() {
        use automerge::legacy::{Key, ObjectId, Op, OpId, OpType, SortedVec};
        use automerge::{ActorId, ExpandedChange, ScalarValue};
        use sha2::{Digest, Sha256};
        // An op overwriting another actor's op lists that actor; then the list is cut.
        let (a, b) = (ActorId::from(&[1u8; 16][..]), ActorId::from(&[2u8; 16][..]));
        let change = Change::from(ExpandedChange {
            operations: vec![Op {
                action: OpType::Put(ScalarValue::Int(1)),
                obj: ObjectId::Root,
                key: Key::Map("a".into()),
                pred: SortedVec::from(vec![OpId::new(1, &b)]),
                insert: false,
            }],
            actor_id: a,
            hash: None,
            seq: 1,
            start_op: std::num::NonZeroU64::new(2).unwrap(),
            time: 0,
            message: None,
            deps: Vec::new(),
            extra_bytes: Vec::new(),
            author: None,
        });
        let bytes = change.raw_bytes();
        assert!(split_changes(bytes).is_ok());
        let (_, width) = uleb128(&bytes[HEADER..]).unwrap();
        let body = &bytes[HEADER + width..];
        // No deps (1 byte), the actor (1 + 16), seq, start op, time, empty message: 1 each.
        let others = 1 + 17 + 4;
        assert_eq!(body[others], 1, "one other actor listed");
        let mut cut = body[..others].to_vec();
        cut.push(0);
        cut.extend_from_slice(&body[others + 1 + 17..]);
        let mut hashed = vec![CHANGE_CHUNK, u8::try_from(cut.len()).unwrap()];
        hashed.extend_from_slice(&cut);
        let hash = Sha256::digest(&hashed);
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&hash[..4]);
        forged.extend_from_slice(&hashed);
        // Automerge reads it as a change; decoding it would panic.
        assert!(Change::try_from(forged.as_slice()).is_ok());
        assert!(matches!(
            split_changes(&forged),
            Err(DocError::BadChunk(reason)) if reason.contains("actor")
        ));
    }

    #[test]
    fn leaves_whole_documents_to_the_general_path() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", 1).unwrap();
        assert!(split_changes(&doc.save()).unwrap().is_none());
    }
}
