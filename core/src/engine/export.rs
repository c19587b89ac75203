//! CSV and JSON export on the engine (the formats live in [`crate::export`]).

use std::io::Write;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::export::record_to_json;
use crate::model::{Reason, Record, RecordType, ValidationError, Value, format_value};

impl Engine {
    fn require_type(&self, record_type: &RecordType) -> Result<Vec<String>> {
        let schema = self.schema();
        let def = schema
            .type_def(record_type)
            .ok_or_else(|| ValidationError::record(record_type, Reason::UnknownType))?;
        Ok(def.fields.keys().cloned().collect())
    }

    /// Hands every live record of a type to `write`, in id order, stopping at its first
    /// failure; returns how many it wrote.
    fn write_each(
        &self,
        record_type: &RecordType,
        mut write: impl FnMut(u64, &Record) -> Result<()>,
    ) -> Result<u64> {
        let mut count = 0;
        let mut failure = None;
        self.store()
            .scan_type(record_type, |r| match write(count, &r) {
                Ok(()) => {
                    count += 1;
                    true
                }
                Err(e) => {
                    failure = Some(e);
                    false
                }
            })?;
        match failure {
            Some(e) => Err(e),
            None => Ok(count),
        }
    }

    /// Writes every live record of a type as CSV: `id`, then the declared fields (names as
    /// headers, values as [`format_value`] writes them), then `created_at` and `updated_at`.
    /// The file imports back with [`Engine::import_csv`] (the `id` column aside).
    pub fn export_csv(&self, record_type: &RecordType, output: impl Write) -> Result<u64> {
        let fields = self.require_type(record_type)?;
        let mut writer = csv::Writer::from_writer(output);
        let mut header = vec!["id".to_string()];
        header.extend(fields.iter().cloned());
        header.extend(["created_at".to_string(), "updated_at".to_string()]);
        writer.write_record(&header)?;
        let count = self.write_each(record_type, |_, r| {
            let mut row = vec![r.id.to_string()];
            row.extend(
                fields
                    .iter()
                    .map(|f| r.get(f).map(format_value).unwrap_or_default()),
            );
            row.push(format_value(&Value::Timestamp(r.created_at)));
            row.push(format_value(&Value::Timestamp(r.updated_at)));
            Ok(writer.write_record(&row)?)
        })?;
        writer.flush()?;
        Ok(count)
    }

    /// Writes every live record of a type as a JSON array of [`record_to_json`] objects,
    /// streaming one record at a time.
    pub fn export_json(&self, record_type: &RecordType, mut output: impl Write) -> Result<u64> {
        self.require_type(record_type)?;
        output.write_all(b"[")?;
        let count = self.write_each(record_type, |written, r| {
            let sep: &[u8] = if written == 0 { b"\n" } else { b",\n" };
            output.write_all(sep)?;
            serde_json::to_writer(&mut output, &record_to_json(r)).map_err(Error::from)
        })?;
        output.write_all(b"\n]\n")?;
        output.flush()?;
        Ok(count)
    }
}
