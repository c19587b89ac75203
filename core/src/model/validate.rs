//! Validation of field values against the schema.

use std::collections::BTreeMap;

use super::ids::RecordId;
use super::record_type::RecordType;
use super::schema::{FieldDef, Schema};
use super::value::{FieldKind, Value};

/// A record or field value that the schema does not allow. Names the record type, the field
/// (when one is at fault) and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{record_type}{}: {reason}", field.as_ref().map(|f| format!(".{f}")).unwrap_or_default())]
pub struct ValidationError {
    /// The record type being written.
    pub record_type: String,
    /// The field at fault, if one is.
    pub field: Option<String>,
    /// Why the value is refused.
    pub reason: Reason,
}

/// Why a value is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reason {
    /// The record type is not in the schema.
    #[error("unknown record type; declare it with define_type first")]
    UnknownType,
    /// The field is not declared for this type.
    #[error("unknown field; declare it as a custom field first")]
    UnknownField,
    /// A required field is missing or empty.
    #[error("is required")]
    Required,
    /// None of a group of fields of which one is required is present.
    #[error("at least one of {0} is required")]
    OneOfRequired(String),
    /// The value is of another kind than the field declares.
    #[error("expects {expected}, got {got}")]
    WrongKind {
        /// The declared kind.
        expected: &'static str,
        /// The kind given.
        got: &'static str,
    },
    /// The value is not one of the allowed enum values.
    #[error("'{value}' is not one of: {allowed}")]
    NotInEnum {
        /// The value given.
        value: String,
        /// The allowed values, comma separated.
        allowed: String,
    },
    /// The number is outside the declared range.
    #[error("{value} is outside {min}..={max}")]
    OutOfRange {
        /// The value given.
        value: i64,
        /// Smallest allowed.
        min: i64,
        /// Largest allowed.
        max: i64,
    },
    /// Not a valid email address.
    #[error("'{0}' is not a valid email address")]
    BadEmail(String),
    /// A list item is empty.
    #[error("list items must not be empty")]
    EmptyItem,
    /// A linked record does not exist here.
    #[error("links to {0}, which does not exist")]
    MissingLink(RecordId),
    /// A linked record is of a type the field does not allow.
    #[error("links to {id}, a {actual}, but only {allowed} may be linked")]
    WrongLinkType {
        /// The linked record.
        id: RecordId,
        /// Its type.
        actual: String,
        /// Allowed types.
        allowed: String,
    },
    /// An order line is malformed.
    #[error("order line {0}: {1}")]
    BadLine(usize, String),
    /// The text is not a value of the field's kind (CSV import, text input).
    #[error("'{value}' is not a {kind}")]
    Unparsable {
        /// The text given.
        value: String,
        /// The kind expected.
        kind: &'static str,
    },
}

impl ValidationError {
    /// Builds an error about one field.
    pub fn field(record_type: &RecordType, field: &str, reason: Reason) -> Self {
        Self {
            record_type: record_type.to_string(),
            field: Some(field.to_string()),
            reason,
        }
    }

    /// Builds an error about the record as a whole.
    pub fn record(record_type: &RecordType, reason: Reason) -> Self {
        Self {
            record_type: record_type.to_string(),
            field: None,
            reason,
        }
    }
}

/// Looks up the type of a linked record; `None` when it does not exist.
pub type LinkLookup<'a> = dyn Fn(RecordId) -> Option<RecordType> + 'a;

/// Brings a value into the shape its field stores: plain text given for an enum or long-text
/// field becomes that kind, and lists lose empty duplicates. Other mismatches are left for
/// [`check_value`] to report.
pub fn normalize(kind: &FieldKind, value: Value) -> Value {
    match (kind, value) {
        (FieldKind::Enum(_), Value::Text(s)) => Value::Enum(s),
        (FieldKind::LongText, Value::Text(s)) => Value::LongText(s),
        (FieldKind::Text, Value::LongText(s) | Value::Enum(s)) => Value::Text(s),
        (FieldKind::List | FieldKind::Emails, Value::Text(s)) => Value::List(vec![s]),
        (FieldKind::Links(_), Value::Link(id)) => Value::Links(vec![id]),
        (FieldKind::List | FieldKind::Emails, Value::List(items)) => Value::List(dedup(items)),
        (FieldKind::Links(_), Value::Links(items)) => Value::Links(dedup(items)),
        (_, v) => v,
    }
}

fn dedup<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Checks one value against its field definition (kind, enum, range, email syntax, links).
pub fn check_value(
    record_type: &RecordType,
    name: &str,
    def: &FieldDef,
    value: &Value,
    links: &LinkLookup<'_>,
) -> Result<(), ValidationError> {
    let fail = |reason| Err(ValidationError::field(record_type, name, reason));
    if !def.kind.accepts(value) {
        return fail(Reason::WrongKind {
            expected: def.kind.name(),
            got: value.kind_name(),
        });
    }
    match (&def.kind, value) {
        (FieldKind::Text, Value::Text(s)) if def.required && s.trim().is_empty() => {
            fail(Reason::Required)
        }
        (FieldKind::Enum(allowed), Value::Enum(v)) if !allowed.contains(v) => {
            fail(Reason::NotInEnum {
                value: v.clone(),
                allowed: allowed.join(", "),
            })
        }
        (FieldKind::Int { min, max }, Value::Int(v)) => {
            let (lo, hi) = (min.unwrap_or(i64::MIN), max.unwrap_or(i64::MAX));
            if *v < lo || *v > hi {
                return fail(Reason::OutOfRange {
                    value: *v,
                    min: lo,
                    max: hi,
                });
            }
            Ok(())
        }
        (FieldKind::Emails, Value::List(items)) => {
            for item in items {
                // The crate follows RFC 5322, which allows dotless domains; a CRM address
                // without a dot in its domain is a typo, so it is refused too.
                let dotted = item.rsplit_once('@').is_some_and(|(_, d)| d.contains('.'));
                if !email_address::EmailAddress::is_valid(item) || !dotted {
                    return fail(Reason::BadEmail(item.clone()));
                }
            }
            Ok(())
        }
        (FieldKind::List, Value::List(items)) if items.iter().any(|i| i.trim().is_empty()) => {
            fail(Reason::EmptyItem)
        }
        (FieldKind::Link(allowed), Value::Link(id)) => check_link(*id, allowed, links)
            .map_err(|r| ValidationError::field(record_type, name, r)),
        (FieldKind::Links(allowed), Value::Links(ids)) => {
            for id in ids {
                check_link(*id, allowed, links)
                    .map_err(|r| ValidationError::field(record_type, name, r))?;
            }
            Ok(())
        }
        (FieldKind::Lines, Value::Lines(lines)) => {
            for (i, line) in lines.iter().enumerate() {
                let reason = if line.product.is_none() && line.sku.is_none() {
                    Some("needs a product link or a SKU".to_string())
                } else if line.quantity <= 0 {
                    Some(format!("quantity {} must be positive", line.quantity))
                } else {
                    None
                };
                if let Some(reason) = reason {
                    return fail(Reason::BadLine(i + 1, reason));
                }
                if let Some(product) = line.product {
                    check_link(product, &[RecordType::Product], links)
                        .map_err(|r| ValidationError::field(record_type, name, r))?;
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_link(id: RecordId, allowed: &[RecordType], links: &LinkLookup<'_>) -> Result<(), Reason> {
    let actual = links(id).ok_or(Reason::MissingLink(id))?;
    if allowed.is_empty() || allowed.contains(&actual) {
        Ok(())
    } else {
        Err(Reason::WrongLinkType {
            id,
            actual: actual.to_string(),
            allowed: allowed
                .iter()
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        })
    }
}

/// Normalizes and checks the fields of a record: the `touched` ones (all when `None`) must be
/// declared and valid, and required fields must be present. Untouched fields are left alone,
/// so an edit never fails over a value written under an older schema.
pub fn validate_record(
    schema: &Schema,
    record_type: &RecordType,
    fields: &mut BTreeMap<String, Value>,
    touched: Option<&[String]>,
    links: &LinkLookup<'_>,
) -> Result<(), ValidationError> {
    let def = schema
        .type_def(record_type)
        .ok_or_else(|| ValidationError::record(record_type, Reason::UnknownType))?;
    let names: Vec<String> = match touched {
        Some(names) => names.to_vec(),
        None => fields.keys().cloned().collect(),
    };
    for name in names {
        let field = def
            .fields
            .get(&name)
            .ok_or_else(|| ValidationError::field(record_type, &name, Reason::UnknownField))?;
        if let Some(value) = fields.remove(&name) {
            let value = normalize(&field.kind, value);
            check_value(record_type, &name, field, &value, links)?;
            fields.insert(name, value);
        }
    }
    for (name, field) in &def.fields {
        if field.required && !fields.contains_key(name) {
            return Err(ValidationError::field(record_type, name, Reason::Required));
        }
    }
    for group in &def.one_of {
        let present = group.iter().any(|name| {
            fields
                .get(name)
                .is_some_and(|v| v.as_str().is_none_or(|s| !s.trim().is_empty()))
        });
        if !present {
            return Err(ValidationError::record(
                record_type,
                Reason::OneOfRequired(group.join(" or ")),
            ));
        }
    }
    Ok(())
}
