//! CSV and JSON export on the engine (the formats live in [`crate::export`]).

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::export::record_to_json;
use crate::model::{Reason, RecordType, ValidationError, Value, format_value};
use std::io::Write;

impl Engine {
    fn require_type(&self, record_type: &RecordType) -> Result<Vec<String>> {
        let schema = self.schema();
        let def = schema
            .type_def(record_type)
            .ok_or_else(|| ValidationError::record(record_type, Reason::UnknownType))?;
        Ok(def.fields.keys().cloned().collect())
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
        let mut count = 0;
        let mut failure = None;
        self.store().scan_type(record_type, |r| {
            let mut row = vec![r.id.to_string()];
            row.extend(
                fields
                    .iter()
                    .map(|f| r.get(f).map(format_value).unwrap_or_default()),
            );
            row.push(format_value(&Value::Timestamp(r.created_at)));
            row.push(format_value(&Value::Timestamp(r.updated_at)));
            if let Err(e) = writer.write_record(&row) {
                failure = Some(e);
                return false;
            }
            count += 1;
            true
        })?;
        if let Some(e) = failure {
            return Err(e.into());
        }
        writer.flush()?;
        Ok(count)
    }

    /// Writes every live record of a type as a JSON array of [`record_to_json`] objects,
    /// streaming one record at a time.
    pub fn export_json(&self, record_type: &RecordType, mut output: impl Write) -> Result<u64> {
        self.require_type(record_type)?;
        output.write_all(b"[")?;
        let mut count = 0u64;
        let mut failure: Option<Error> = None;
        self.store().scan_type(record_type, |r| {
            let sep: &[u8] = if count == 0 { b"\n" } else { b",\n" };
            let written = output.write_all(sep).map_err(Error::from).and_then(|_| {
                serde_json::to_writer(&mut output, &record_to_json(&r)).map_err(Error::from)
            });
            if let Err(e) = written {
                failure = Some(e);
                return false;
            }
            count += 1;
            true
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        output.write_all(b"\n]\n")?;
        output.flush()?;
        Ok(count)
    }
}
