//! The `meta` table and the encoding of what the tables hold. The tables a journal record
//! covers are defined in [`super::recorded`], the one place that can write them.

use automerge::{Automerge, ChangeHash};
use redb::{ReadableTable, TableDefinition};

use super::error::{Result, StoreError};
use crate::doc::Facts;
use crate::model::{Record, RecordId};

/// Name → value: format version, device id, workspace id, schema customizations.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub fn encode_row(record: &Record) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    postcard::to_allocvec(record).unwrap_or_default()
}

pub fn decode_row(id: u128, bytes: &[u8]) -> Result<Record> {
    postcard::from_bytes(bytes)
        .map_err(|e| StoreError::corrupt(format!("row {}", RecordId::from_u128(id)), e))
}

pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(StoreError::corrupt(
            "heads",
            "length is not a multiple of 32",
        ));
    }
    bytes
        .chunks_exact(32)
        .map(|c| ChangeHash::try_from(c).map_err(|e| StoreError::corrupt("heads", e)))
        .collect()
}

/// After a heads entry's hashes, its facts: the highest op and the fields map's counter (two
/// big-endian u64), each actor with its last sequence number (16 bytes and a u64), then the
/// count of actors (u16). That is 18 + 24k bytes, never a multiple of 32, while hashes come in
/// 32s: an entry's length says whether facts follow, and entries written before facts existed
/// simply have none.
const FACTS_FIXED: usize = 18;
const FACTS_PER_ACTOR: usize = 24;

/// A heads table value: the hashes, then the facts when they are known (and fit).
pub fn encode_heads_entry(heads: &[ChangeHash], facts: Option<&Facts>) -> Vec<u8> {
    let mut out = encode_heads(heads);
    if let Some(facts) = facts
        && let Ok(count) = u16::try_from(facts.seqs.len())
    {
        out.extend_from_slice(&facts.max_op.to_be_bytes());
        out.extend_from_slice(&facts.fields_counter.to_be_bytes());
        for (actor, seq) in &facts.seqs {
            out.extend_from_slice(actor);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        out.extend_from_slice(&count.to_be_bytes());
    }
    out
}

/// Decodes a heads table value written by [`encode_heads_entry`].
pub fn decode_heads_entry(bytes: &[u8]) -> Result<(Vec<ChangeHash>, Option<Facts>)> {
    if bytes.len().is_multiple_of(32) {
        return Ok((decode_heads(bytes)?, None));
    }
    let bad = || StoreError::corrupt("heads", "facts do not match their length");
    let (rest, count) = bytes.split_last_chunk::<2>().ok_or_else(bad)?;
    let facts_len = FACTS_FIXED - 2 + FACTS_PER_ACTOR * usize::from(u16::from_be_bytes(*count));
    let split = rest.len().checked_sub(facts_len).ok_or_else(bad)?;
    let (hashes, facts) = rest.split_at(split);
    let word = |at: usize| u64::from_be_bytes(facts[at..at + 8].try_into().unwrap_or_default());
    let seqs = facts[16..]
        .chunks_exact(FACTS_PER_ACTOR)
        .map(|c| {
            let mut actor = [0u8; 16];
            actor.copy_from_slice(&c[..16]);
            (
                actor,
                u64::from_be_bytes(c[16..].try_into().unwrap_or_default()),
            )
        })
        .collect();
    let facts = Facts {
        max_op: word(0),
        fields_counter: word(8),
        seqs,
    };
    Ok((decode_heads(hashes)?, Some(facts)))
}

/// The heads of a heads table value.
pub fn decode_heads_value(bytes: &[u8]) -> Result<Vec<ChangeHash>> {
    Ok(decode_heads_entry(bytes)?.0)
}

/// A log entry: record id (16 bytes), change kind (1 byte), heads before the write (32 each).
pub fn encode_log(id: u128, kind: u8, heads_before: &[ChangeHash]) -> Vec<u8> {
    let mut out = Vec::with_capacity(17 + 32 * heads_before.len());
    out.extend_from_slice(&id.to_be_bytes());
    out.push(kind);
    out.extend(encode_heads(heads_before));
    out
}

/// Decodes a log entry written by [`encode_log`].
pub fn decode_log(seq: u64, bytes: &[u8]) -> Result<(u128, u8, Vec<ChangeHash>)> {
    let bad = || StoreError::corrupt(format!("log entry {seq}"), "shorter than 17 bytes");
    let id: [u8; 16] = bytes
        .get(..16)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let kind = *bytes.get(16).ok_or_else(bad)?;
    Ok((u128::from_be_bytes(id), kind, decode_heads(&bytes[17..])?))
}

/// Loads a record's document: the compacted base plus the changes appended since. Returns the
/// document and how many appended chunks it has.
pub fn load_doc(
    docs: &impl ReadableTable<u128, &'static [u8]>,
    changes: &impl ReadableTable<(u128, u32), &'static [u8]>,
    id: RecordId,
) -> Result<Option<(Automerge, u32)>> {
    let key = id.as_u128();
    let Some(base) = docs.get(key)? else {
        return Ok(None);
    };
    let mut doc = Automerge::load(base.value())
        .map_err(|e| StoreError::corrupt(format!("document {id}"), e))?;
    let mut pending = 0;
    for entry in changes.range((key, 0)..=(key, u32::MAX))? {
        let (_, bytes) = entry?;
        doc.load_incremental(bytes.value())
            .map_err(|e| StoreError::corrupt(format!("changes of {id}"), e))?;
        pending += 1;
    }
    Ok(Some((doc, pending)))
}
