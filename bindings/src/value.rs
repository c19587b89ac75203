//! Field values, patches, field declarations and the leaf types of every record.
//!
//! The core's records and enums cross as themselves (uniffi remote types whose definitions,
//! docs included, come from the core: see `bindings/derive`). Their leaf types cross as custom
//! types in a foreign-friendly form: ids as strings (hyphenated UUIDs, hex device ids), record
//! types and currencies as their names, timestamps as the platform's instant (millisecond
//! precision, UTC). A leaf that does not parse fails the call with `InvalidInput`.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, Utc};
use crmsync::doc::Version;
use crmsync::{
    Currency, DeviceId, FieldDef as SchemaField, FieldKind, FieldOp, Money, OrderLine, RecordId,
    RecordType, Stage, Value,
};

use crate::error::CrmError;

type Timestamp = DateTime<Utc>;
type Fields = BTreeMap<String, Value>;
type Count = usize;

uniffi::custom_type!(
    /// A record id: a UUID such as `0190f5a4-7c1e-7b3a-9d2e-5f6a7b8c9d0e`.
    RecordId, String, { remote, lower: |id| id.to_string(), try_lift: |id| Ok(parse_id(&id)?) }
);
uniffi::custom_type!(
    /// A device (replica) id: 32 hex digits, the author of every change the device makes.
    DeviceId, String, { remote, lower: |id| id.to_string(), try_lift: |id| Ok(parse_device(&id)?) }
);
uniffi::custom_type!(
    /// A record type: `company`, `contact`, `deal`, `activity`, `case`, `order`, `product`,
    /// `campaign`, or a custom type's name.
    RecordType, String, { remote, lower: |t| t.to_string(), try_lift: |t| Ok(RecordType::from(t)) }
);
uniffi::custom_type!(
    /// An ISO 4217 currency code such as `USD` (case-insensitive on input).
    Currency, String, {
        remote, lower: |c| c.code().to_string(), try_lift: |c| Ok(parse_currency(&c)?)
    }
);
uniffi::custom_type!(
    /// A moment in time (UTC, to the millisecond).
    Timestamp, SystemTime, { remote, lower: |t| SystemTime::from(t), try_lift: |t| Ok(to_utc(t)?) }
);
uniffi::custom_type!(
    /// A state of a record (its heads), as its history gives it; pass it to `get_at`.
    Version, String, {
        remote,
        lower: |v| v.to_string(),
        try_lift: |v| Ok(Version::from_str(&v).map_err(CrmError::input)?),
    }
);
uniffi::custom_type!(
    /// The value of one field.
    Value, FieldValue, {
        remote, lower: |v| FieldValue::from(v), try_lift: |v| Ok(Value::try_from(v)?)
    }
);
uniffi::custom_type!(
    /// Field values by name; unset fields are absent.
    Fields, HashMap<String, FieldValue>, {
        remote,
        lower: |f| f.into_iter().map(|(k, v)| (k, v.into())).collect(),
        try_lift: |f| {
            let fields = f.into_iter().map(|(k, v)| Ok((k, Value::try_from(v)?)));
            Ok(fields.collect::<Result<_, CrmError>>()?)
        },
    }
);

uniffi::custom_type!(
    /// A count or a position (a `usize` in the core).
    Count, u64, { remote, lower: |n| n as u64, try_lift: |n| Ok(to_usize(n)?) }
);

crmsync::uniffi_remote_Money!();
crmsync::uniffi_remote_OrderLine!();
crmsync::uniffi_remote_FieldKind!();
crmsync::uniffi_remote_Stage!();
crmsync::uniffi_remote_FieldOp!();

// Copy of the core's `Value` with another foreign shape: named fields, money as its two parts,
// dates as `YYYY-MM-DD` strings, and `Strings` for the core's `List` (so the Kotlin class does
// not shadow `kotlin.collections.List`). The core's `Value` crosses as this (custom type above).
/// The value of one field. The variant must match the field's kind (see the schema); plain
/// `Text` is also accepted for enum, long-text and string-list fields, and `Link` for
/// list-of-links fields.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum FieldValue {
    /// Short text: last writer wins on concurrent edits.
    Text {
        /// The text.
        value: String,
    },
    /// Long text (notes, descriptions): merged character by character.
    LongText {
        /// The text.
        value: String,
    },
    /// Whole number.
    Int {
        /// The number.
        value: i64,
    },
    /// Money: minor units and currency, one atomic value.
    Money {
        /// Amount in minor units (cents).
        minor: i64,
        /// ISO 4217 code.
        currency: String,
    },
    /// True or false.
    Bool {
        /// The value.
        value: bool,
    },
    /// A moment in time (UTC, stored to the millisecond).
    Timestamp {
        /// The instant.
        value: SystemTime,
    },
    /// A calendar date.
    Date {
        /// `YYYY-MM-DD`.
        value: String,
    },
    /// One of the field's declared values (e.g. a deal stage).
    Enum {
        /// The value.
        value: String,
    },
    /// A list of strings (tags, emails, phones); concurrent additions both survive.
    Strings {
        /// The items.
        values: Vec<String>,
    },
    /// A link to another record.
    Link {
        /// The linked record's id.
        id: String,
    },
    /// A list of links to other records.
    Links {
        /// The linked records' ids.
        ids: Vec<String>,
    },
    /// Order lines, atomic.
    Lines {
        /// The lines.
        lines: Vec<OrderLine>,
    },
}

impl From<Value> for FieldValue {
    fn from(v: Value) -> Self {
        let id = |id: RecordId| id.to_string();
        match v {
            Value::Text(value) => FieldValue::Text { value },
            Value::LongText(value) => FieldValue::LongText { value },
            Value::Int(value) => FieldValue::Int { value },
            Value::Money(Money { minor, currency }) => FieldValue::Money {
                minor,
                currency: currency.into(),
            },
            Value::Bool(value) => FieldValue::Bool { value },
            Value::Timestamp(t) => FieldValue::Timestamp { value: t.into() },
            Value::Date(d) => FieldValue::Date {
                value: d.to_string(),
            },
            Value::Enum(value) => FieldValue::Enum { value },
            Value::List(values) => FieldValue::Strings { values },
            Value::Link(link) => FieldValue::Link { id: id(link) },
            Value::Links(ids) => FieldValue::Links {
                ids: ids.into_iter().map(id).collect(),
            },
            Value::Lines(lines) => FieldValue::Lines { lines },
        }
    }
}

impl TryFrom<FieldValue> for Value {
    type Error = CrmError;
    fn try_from(v: FieldValue) -> Result<Self, CrmError> {
        Ok(match v {
            FieldValue::Text { value } => Value::Text(value),
            FieldValue::LongText { value } => Value::LongText(value),
            FieldValue::Int { value } => Value::Int(value),
            FieldValue::Money { minor, currency } => {
                Value::Money(Money::new(minor, &currency).map_err(CrmError::input)?)
            }
            FieldValue::Bool { value } => Value::Bool(value),
            FieldValue::Timestamp { value } => Value::Timestamp(to_utc(value)?),
            FieldValue::Date { value } => Value::Date(parse_date(&value)?),
            FieldValue::Enum { value } => Value::Enum(value),
            FieldValue::Strings { values } => Value::List(values),
            FieldValue::Link { id } => Value::Link(parse_id(&id)?),
            FieldValue::Links { ids } => Value::Links(
                ids.iter()
                    .map(|id| parse_id(id))
                    .collect::<Result<_, _>>()?,
            ),
            FieldValue::Lines { lines } => Value::Lines(lines),
        })
    }
}

// The core's `FieldDef` (the schema's `SchemaField`) also says whether the app declared the
// field, which the engine sets: a declaration leaves it out.
/// A custom field to declare.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldDef {
    /// Kind of value the field holds.
    pub kind: FieldKind,
    /// Whether a record must have the field.
    #[uniffi(default = false)]
    pub required: bool,
}

/// The core's `FieldDef`, which the schema lists as `SchemaField` (in a module of its own,
/// where `FieldDef` names it).
mod schema_field {
    use crmsync::{FieldDef, FieldKind};

    crmsync::uniffi_remote_FieldDef!();
}

impl From<FieldDef> for SchemaField {
    fn from(d: FieldDef) -> Self {
        match d.required {
            true => SchemaField::required(d.kind),
            false => SchemaField::optional(d.kind),
        }
    }
}

// Copies: the core's `TypeDef` keys its fields in a `BTreeMap` (uniffi carries `HashMap`s), and
// its `Schema` keeps its fields private.
/// The declared fields of one record type.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SchemaType {
    /// Fields by name.
    pub fields: HashMap<String, SchemaField>,
    /// Groups of fields of which at least one must be present (contact: first or last name).
    pub one_of: Vec<Vec<String>>,
}

/// Every record type of the workspace with its fields (built-in and custom), and the deal
/// pipeline.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Schema {
    /// Record types by name.
    pub types: HashMap<String, SchemaType>,
    /// The deal pipeline's stages, in order.
    pub pipeline: Vec<Stage>,
}

impl From<crmsync::Schema> for Schema {
    fn from(s: crmsync::Schema) -> Self {
        let types = s.record_types().filter_map(|t| {
            let def = s.type_def(t)?.clone();
            let fields = def.fields.into_iter().collect();
            Some((
                t.to_string(),
                SchemaType {
                    fields,
                    one_of: def.one_of,
                },
            ))
        });
        Schema {
            types: types.collect(),
            pipeline: s.pipeline().stages.clone(),
        }
    }
}

/// Parses a record id.
pub(crate) fn parse_id(id: &str) -> Result<RecordId, CrmError> {
    id.parse().map_err(CrmError::input)
}

/// Parses a device id (32 hex digits).
fn parse_device(id: &str) -> Result<DeviceId, CrmError> {
    let hex = id.trim();
    match u128::from_str_radix(hex, 16) {
        Ok(n) if hex.len() == 32 && !hex.starts_with('+') => Ok(DeviceId(n.to_be_bytes())),
        _ => Err(CrmError::input(format!(
            "'{id}' is not a device id (32 hex digits)"
        ))),
    }
}

/// Parses a `YYYY-MM-DD` date.
pub(crate) fn parse_date(date: &str) -> Result<NaiveDate, CrmError> {
    date.trim().parse().map_err(|_| {
        CrmError::input(format!(
            "'{date}' is not a date such as 2025-03-31 (YYYY-MM-DD)"
        ))
    })
}

/// Parses an ISO 4217 currency code.
pub(crate) fn parse_currency(code: &str) -> Result<Currency, CrmError> {
    Currency::new(code).map_err(CrmError::input)
}

/// The platform's instant as a core timestamp, to the millisecond (truncated toward the
/// epoch). Instants beyond the core's range are refused rather than clamped.
pub(crate) fn to_utc(t: SystemTime) -> Result<DateTime<Utc>, CrmError> {
    let millis = match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).ok(),
        Err(before) => i64::try_from(before.duration().as_millis())
            .ok()
            .map(|m| -m),
    };
    millis
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| CrmError::input("timestamp out of range"))
}

/// A count from the foreign side as a `usize`.
pub(crate) fn to_usize(n: u64) -> Result<usize, CrmError> {
    usize::try_from(n).map_err(|_| CrmError::input(format!("{n} is too large")))
}
