//! Field values, patches and field declarations as the foreign side sees them, with their
//! conversions to and from the core types.
//!
//! Record ids cross as strings (hyphenated UUIDs), timestamps as the platform's instant type
//! (millisecond precision, UTC), dates as `YYYY-MM-DD` strings, money as integer minor units and
//! an ISO 4217 code.

use std::collections::HashMap;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, Utc};
use crmsync::{Currency, RecordId, RecordType, Value};

use crate::error::CrmError;

/// An amount of money: integer minor units (cents for USD, yen for JPY) and an ISO 4217
/// currency code. Never a float.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Money {
    /// Amount in minor units.
    pub minor: i64,
    /// ISO 4217 code such as "USD" (case-insensitive on input).
    pub currency: String,
}

/// One line of an order: a product (by link or SKU), a quantity and a unit price.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrderLine {
    /// Id of a product record, when the product is in the catalogue.
    #[uniffi(default = None)]
    pub product: Option<String>,
    /// Stock-keeping unit, when the product is known only by its code.
    #[uniffi(default = None)]
    pub sku: Option<String>,
    /// Number of units (positive).
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price: Money,
}

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
    /// A list of strings (tags, emails, phones); concurrent additions both survive. (Named
    /// `Strings`, not `List`, so the Kotlin class does not shadow `kotlin.collections.List`.)
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

/// One edit of a record. A patch is a list of them, applied in order as one change.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum FieldOp {
    /// Sets a field. Long text set this way is diffed against the current text, so concurrent
    /// edits elsewhere in the text survive.
    Set {
        /// Field name.
        field: String,
        /// New value.
        value: FieldValue,
    },
    /// Removes a field's value.
    Unset {
        /// Field name.
        field: String,
    },
    /// Edits long text in place: deletes `delete` characters at `index` (Unicode code points)
    /// and inserts `insert` there.
    SpliceText {
        /// Field name.
        field: String,
        /// Position in Unicode code points.
        index: u64,
        /// How many characters to delete.
        delete: u64,
        /// Text to insert.
        insert: String,
    },
    /// Adds an item to a list of strings (`Text`) or of links (`Link`); no-op if present.
    AddItem {
        /// Field name.
        field: String,
        /// The item.
        item: FieldValue,
    },
    /// Removes an item from a list; no-op if absent.
    RemoveItem {
        /// Field name.
        field: String,
        /// The item.
        item: FieldValue,
    },
}

/// The declared kind of a field.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum FieldKind {
    /// Short text.
    Text,
    /// Long text merged character by character.
    LongText,
    /// Whole number, optionally within an inclusive range.
    Int {
        /// Smallest allowed value.
        min: Option<i64>,
        /// Largest allowed value.
        max: Option<i64>,
    },
    /// Money.
    Money,
    /// True or false.
    Bool,
    /// A moment in time.
    Timestamp,
    /// A calendar date.
    Date,
    /// One of these values.
    Enum {
        /// The allowed values.
        values: Vec<String>,
    },
    /// A list of strings.
    Strings,
    /// A list of email addresses (syntax-checked).
    Emails,
    /// A link to a record of one of these types (any type when empty).
    Link {
        /// Allowed record types.
        types: Vec<String>,
    },
    /// A list of links to records of these types (any type when empty).
    Links {
        /// Allowed record types.
        types: Vec<String>,
    },
    /// Order lines.
    Lines,
}

/// A custom field to declare.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct FieldDef {
    /// Kind of value the field holds.
    pub kind: FieldKind,
    /// Whether a record must have the field.
    #[uniffi(default = false)]
    pub required: bool,
}

/// One stage of the deal pipeline.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Stage {
    /// Stage name as stored in the deal's `stage` field.
    pub name: String,
    /// Default win probability in percent (0-100).
    pub probability: u8,
    /// Whether a deal in this stage is closed.
    pub closed: bool,
    /// Whether a deal in this stage is won.
    pub won: bool,
}

/// Parses a record id.
pub(crate) fn parse_id(id: &str) -> Result<RecordId, CrmError> {
    id.parse().map_err(CrmError::input)
}

/// Parses record ids.
pub(crate) fn parse_ids(ids: &[String]) -> Result<Vec<RecordId>, CrmError> {
    ids.iter().map(|id| parse_id(id)).collect()
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

/// A core timestamp as the platform's instant.
pub(crate) fn to_instant(t: DateTime<Utc>) -> SystemTime {
    SystemTime::from(t)
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

impl From<crmsync::Money> for Money {
    fn from(m: crmsync::Money) -> Self {
        Money {
            minor: m.minor,
            currency: m.currency.code().to_string(),
        }
    }
}

impl TryFrom<Money> for crmsync::Money {
    type Error = CrmError;
    fn try_from(m: Money) -> Result<Self, CrmError> {
        crmsync::Money::new(m.minor, &m.currency).map_err(CrmError::input)
    }
}

impl From<crmsync::OrderLine> for OrderLine {
    fn from(l: crmsync::OrderLine) -> Self {
        OrderLine {
            product: l.product.map(|p| p.to_string()),
            sku: l.sku,
            quantity: l.quantity,
            unit_price: l.unit_price.into(),
        }
    }
}

impl TryFrom<OrderLine> for crmsync::OrderLine {
    type Error = CrmError;
    fn try_from(l: OrderLine) -> Result<Self, CrmError> {
        Ok(crmsync::OrderLine {
            product: l.product.as_deref().map(parse_id).transpose()?,
            sku: l.sku,
            quantity: l.quantity,
            unit_price: l.unit_price.try_into()?,
        })
    }
}

impl From<Value> for FieldValue {
    fn from(v: Value) -> Self {
        match v {
            Value::Text(value) => FieldValue::Text { value },
            Value::LongText(value) => FieldValue::LongText { value },
            Value::Int(value) => FieldValue::Int { value },
            Value::Money(m) => FieldValue::Money {
                minor: m.minor,
                currency: m.currency.code().to_string(),
            },
            Value::Bool(value) => FieldValue::Bool { value },
            Value::Timestamp(t) => FieldValue::Timestamp {
                value: to_instant(t),
            },
            Value::Date(d) => FieldValue::Date {
                value: d.to_string(),
            },
            Value::Enum(value) => FieldValue::Enum { value },
            Value::List(values) => FieldValue::Strings { values },
            Value::Link(id) => FieldValue::Link { id: id.to_string() },
            Value::Links(ids) => FieldValue::Links {
                ids: ids.iter().map(ToString::to_string).collect(),
            },
            Value::Lines(lines) => FieldValue::Lines {
                lines: lines.into_iter().map(OrderLine::from).collect(),
            },
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
                Value::Money(crmsync::Money::new(minor, &currency).map_err(CrmError::input)?)
            }
            FieldValue::Bool { value } => Value::Bool(value),
            FieldValue::Timestamp { value } => Value::Timestamp(to_utc(value)?),
            FieldValue::Date { value } => Value::Date(parse_date(&value)?),
            FieldValue::Enum { value } => Value::Enum(value),
            FieldValue::Strings { values } => Value::List(values),
            FieldValue::Link { id } => Value::Link(parse_id(&id)?),
            FieldValue::Links { ids } => Value::Links(parse_ids(&ids)?),
            FieldValue::Lines { lines } => Value::Lines(
                lines
                    .into_iter()
                    .map(crmsync::OrderLine::try_from)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// A count from the foreign side as a `usize`.
pub(crate) fn to_usize(n: u64) -> Result<usize, CrmError> {
    usize::try_from(n).map_err(|_| CrmError::input(format!("{n} is too large")))
}

impl TryFrom<FieldOp> for crmsync::FieldOp {
    type Error = CrmError;
    fn try_from(op: FieldOp) -> Result<Self, CrmError> {
        Ok(match op {
            FieldOp::Set { field, value } => crmsync::FieldOp::Set {
                field,
                value: value.try_into()?,
            },
            FieldOp::Unset { field } => crmsync::FieldOp::Unset { field },
            FieldOp::SpliceText {
                field,
                index,
                delete,
                insert,
            } => crmsync::FieldOp::SpliceText {
                field,
                index: to_usize(index)?,
                delete: to_usize(delete)?,
                insert,
            },
            FieldOp::AddItem { field, item } => crmsync::FieldOp::AddItem {
                field,
                item: item.try_into()?,
            },
            FieldOp::RemoveItem { field, item } => crmsync::FieldOp::RemoveItem {
                field,
                item: item.try_into()?,
            },
        })
    }
}

/// Record type names as core types.
fn record_types(types: Vec<String>) -> Vec<RecordType> {
    types.into_iter().map(RecordType::from).collect()
}

impl From<FieldKind> for crmsync::FieldKind {
    fn from(k: FieldKind) -> Self {
        use crmsync::FieldKind as K;
        match k {
            FieldKind::Text => K::Text,
            FieldKind::LongText => K::LongText,
            FieldKind::Int { min, max } => K::Int { min, max },
            FieldKind::Money => K::Money,
            FieldKind::Bool => K::Bool,
            FieldKind::Timestamp => K::Timestamp,
            FieldKind::Date => K::Date,
            FieldKind::Enum { values } => K::Enum(values),
            FieldKind::Strings => K::List,
            FieldKind::Emails => K::Emails,
            FieldKind::Link { types } => K::Link(record_types(types)),
            FieldKind::Links { types } => K::Links(record_types(types)),
            FieldKind::Lines => K::Lines,
        }
    }
}

impl From<FieldDef> for crmsync::FieldDef {
    fn from(d: FieldDef) -> Self {
        if d.required {
            crmsync::FieldDef::required(d.kind.into())
        } else {
            crmsync::FieldDef::optional(d.kind.into())
        }
    }
}

impl From<Stage> for crmsync::Stage {
    fn from(s: Stage) -> Self {
        crmsync::Stage {
            name: s.name,
            probability: s.probability,
            closed: s.closed,
            won: s.won,
        }
    }
}

impl From<crmsync::Stage> for Stage {
    fn from(s: crmsync::Stage) -> Self {
        Stage {
            name: s.name,
            probability: s.probability,
            closed: s.closed,
            won: s.won,
        }
    }
}

impl From<crmsync::FieldKind> for FieldKind {
    fn from(k: crmsync::FieldKind) -> Self {
        use crmsync::FieldKind as K;
        let names = |types: Vec<RecordType>| types.iter().map(ToString::to_string).collect();
        match k {
            K::Text => FieldKind::Text,
            K::LongText => FieldKind::LongText,
            K::Int { min, max } => FieldKind::Int { min, max },
            K::Money => FieldKind::Money,
            K::Bool => FieldKind::Bool,
            K::Timestamp => FieldKind::Timestamp,
            K::Date => FieldKind::Date,
            K::Enum(values) => FieldKind::Enum { values },
            K::List => FieldKind::Strings,
            K::Emails => FieldKind::Emails,
            K::Link(types) => FieldKind::Link {
                types: names(types),
            },
            K::Links(types) => FieldKind::Links {
                types: names(types),
            },
            K::Lines => FieldKind::Lines,
        }
    }
}

/// A declared field, as the schema has it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SchemaField {
    /// Kind of value the field holds.
    pub kind: FieldKind,
    /// Whether a record must have the field.
    pub required: bool,
    /// Whether the app declared it (false for built-in fields).
    pub custom: bool,
}

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
        let types = s
            .record_types()
            .filter_map(|t| {
                let def = s.type_def(t)?;
                let fields = def
                    .fields
                    .iter()
                    .map(|(name, f)| {
                        let field = SchemaField {
                            kind: f.kind.clone().into(),
                            required: f.required,
                            custom: f.custom,
                        };
                        (name.clone(), field)
                    })
                    .collect();
                let one_of = def.one_of.clone();
                Some((t.to_string(), SchemaType { fields, one_of }))
            })
            .collect();
        Schema {
            types,
            pipeline: s
                .pipeline()
                .stages
                .iter()
                .cloned()
                .map(Stage::from)
                .collect(),
        }
    }
}
