//! The merge path: exporting a record's changes and applying changes from another replica.
//! This is the narrow interface sync talks to.

use automerge::{Automerge, ChangeHash, ReadDoc};

use super::Store;
use super::write::Origin;
use crate::doc::{self, DocError};
use crate::error::{Error, Result};
use crate::events::{ChangeEvent, ChangeKind};
use crate::model::{RecordId, Schema};

impl Store {
    /// The changes of a record that a replica holding `have` (heads it already has) lacks, as
    /// bytes for [`Store::apply_changes`]. `None` if the record is unknown here.
    pub fn export_changes(&self, id: RecordId, have: &[ChangeHash]) -> Result<Option<Vec<u8>>> {
        let Some(doc) = self.doc(id)? else {
            return Ok(None);
        };
        // Heads the other side has that we do not know cannot narrow the export: drop them.
        let known: Vec<ChangeHash> = have
            .iter()
            .copied()
            .filter(|h| doc.get_change_by_hash(h).is_some())
            .collect();
        Ok(Some(doc.save_after(&known)))
    }

    /// Applies changes received from another replica, for many records in one transaction:
    /// either every record of the batch is merged or, on the first bad one, nothing is.
    /// Returns one event per record that changed.
    pub fn apply_changes(
        &self,
        schema: &Schema,
        batch: &[(RecordId, Vec<u8>)],
    ) -> Result<Vec<ChangeEvent>> {
        self.write(|ctx| {
            let mut events = Vec::new();
            for (id, bytes) in batch {
                let id = *id;
                let existing = ctx.load(id)?;
                let (mut doc, origin_heads, pending) = match existing {
                    Some((doc, pending)) => {
                        let heads = doc.get_heads();
                        (doc, Some(heads), pending)
                    }
                    None => (Automerge::new(), None, 0),
                };
                let before = doc.get_heads();
                doc.load_incremental(bytes)
                    .map_err(|e| Error::doc(id)(DocError::from(e)))?;
                let missing = doc.get_missing_deps(&[]);
                if !missing.is_empty() {
                    return Err(Error::doc(id)(DocError::MissingChanges(missing.len())));
                }
                if doc.get_heads() == before {
                    continue;
                }
                let record = doc::materialize(&doc, id, schema).map_err(Error::doc(id))?;
                let origin = match origin_heads {
                    Some(heads) => {
                        let row = ctx.row(id)?.ok_or_else(|| {
                            Error::corrupt(format!("record {id}"), "document without row")
                        })?;
                        if row.record_type != record.record_type {
                            return Err(Error::TypeMismatch {
                                id,
                                expected: row.record_type.to_string(),
                                found: record.record_type.to_string(),
                            });
                        }
                        Origin::Loaded { heads, pending }
                    }
                    None => Origin::New(doc.save()),
                };
                events.push(ctx.persist(&doc, origin, &record, ChangeKind::Merged)?);
            }
            Ok(events)
        })
    }
}
