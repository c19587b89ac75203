//! The record model: types, fields, values and validation. No I/O.

mod ids;
mod parse;
mod record;
mod record_type;
mod schema;
mod validate;
mod value;

pub use ids::{DeviceId, ParseIdError, RecordId};
pub use parse::{format_value, parse_value};
pub use record::{FieldOp, NewRecord, Patch, Record};
pub use record_type::RecordType;
pub use schema::{Customizations, FieldDef, Pipeline, Schema, SchemaError, Stage, TypeDef};
pub use validate::{LinkLookup, Reason, ValidationError, check_value, normalize, validate_record};
pub use value::{Currency, CurrencyError, FieldKind, Money, MoneyParseError, OrderLine, Value};
