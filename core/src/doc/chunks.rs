//! Reading change bytes from another replica in one strict pass.
//!
//! `Automerge::load_incremental` skips whatever it cannot decode, so on its own it would accept
//! garbage or a truncated chunk as "nothing new". Checking with a strict load first decodes
//! every change twice, and for a replica that merges all day (a relay) that second decode was a
//! fifth of its work. Changes sent as `save_after` output are a run of change chunks, which can
//! be split and checked here once and then applied as decoded changes.

use automerge::Change;

use super::DocError;

/// The first bytes of every Automerge chunk.
const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of an uncompressed change.
const CHANGE_CHUNK: u8 = 1;
/// Magic, checksum and type, before the length.
const HEADER: usize = 9;

/// The changes in `bytes` when it is nothing but uncompressed change chunks, each whole, with a
/// checksum that matches. `Ok(None)` when it holds another kind of chunk (a whole document, a
/// compressed change), which the caller loads the general way. An error for anything else:
/// bytes that are not chunks, a chunk cut short, a checksum that does not match, a change that
/// does not decode.
pub fn split_changes(bytes: &[u8]) -> Result<Option<Vec<Change>>, DocError> {
    let mut changes = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        if rest.len() < HEADER || rest[..4] != MAGIC {
            return Err(DocError::BadChunk("not an Automerge chunk"));
        }
        if rest[8] != CHANGE_CHUNK {
            return Ok(None);
        }
        let (len, width) = uleb128(&rest[HEADER..]).ok_or(DocError::BadChunk("bad length"))?;
        let end = len
            .checked_add(HEADER + width)
            .filter(|end| *end <= rest.len())
            .ok_or(DocError::BadChunk("chunk cut short"))?;
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
        changes.push(change);
        rest = &rest[end..];
    }
    Ok(Some(changes))
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
    fn leaves_whole_documents_to_the_general_path() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "a", 1).unwrap();
        assert!(split_changes(&doc.save()).unwrap().is_none());
    }
}
