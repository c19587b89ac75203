//! redb table definitions and the encoding of what they hold.

use automerge::{Automerge, ChangeHash};
use redb::{ReadableTable, TableDefinition};

use crate::error::{Error, Result};
use crate::model::{Record, RecordId};

/// Record id → Automerge document bytes as of the last compaction.
pub const DOCS: TableDefinition<u128, &[u8]> = TableDefinition::new("docs");
/// (record id, n) → incremental Automerge changes appended since the last compaction.
pub const DOC_CHANGES: TableDefinition<(u128, u32), &[u8]> = TableDefinition::new("doc_changes");
/// Record id → materialized [`Record`] (postcard).
pub const ROWS: TableDefinition<u128, &[u8]> = TableDefinition::new("rows");
/// Record id → current Automerge heads (concatenated 32-byte hashes).
pub const HEADS: TableDefinition<u128, &[u8]> = TableDefinition::new("heads");
/// Local sequence number → record id, change kind and the record's heads before the write
/// (see [`encode_log`]). The heads let sync send a known peer exactly what it lacks.
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// (record type, record id) → () for live (not deleted) records: lists by type in id order.
pub const BY_TYPE: TableDefinition<(&str, u128), ()> = TableDefinition::new("by_type");
/// Name → value: format version, device id, workspace id, schema customizations.
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

pub fn encode_row(record: &Record) -> Vec<u8> {
    // Serializing plain data into a Vec cannot fail.
    postcard::to_allocvec(record).unwrap_or_default()
}

pub fn decode_row(id: u128, bytes: &[u8]) -> Result<Record> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::corrupt(format!("row {}", RecordId::from_u128(id)), e))
}

pub fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    heads.iter().flat_map(|h| h.0).collect()
}

pub fn decode_heads(bytes: &[u8]) -> Result<Vec<ChangeHash>> {
    if !bytes.len().is_multiple_of(32) {
        return Err(Error::corrupt("heads", "length is not a multiple of 32"));
    }
    bytes
        .chunks_exact(32)
        .map(|c| ChangeHash::try_from(c).map_err(|e| Error::corrupt("heads", e)))
        .collect()
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
    let bad = || Error::corrupt(format!("log entry {seq}"), "shorter than 17 bytes");
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
    let mut doc =
        Automerge::load(base.value()).map_err(|e| Error::corrupt(format!("document {id}"), e))?;
    let mut pending = 0;
    for entry in changes.range((key, 0)..=(key, u32::MAX))? {
        let (_, bytes) = entry?;
        doc.load_incremental(bytes.value())
            .map_err(|e| Error::corrupt(format!("changes of {id}"), e))?;
        pending += 1;
    }
    Ok(Some((doc, pending)))
}
