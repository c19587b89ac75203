//! Checking a patch before it touches a document: each op's value brought into the shape its
//! field stores, and the outcome previewed on a copy of the row's fields for validation.

use std::collections::BTreeMap;

use crate::doc;
use crate::model::{
    FieldKind, FieldOp, Patch, Reason, RecordType, Schema, ValidationError, Value, normalize,
};

fn field_kind<'s>(
    schema: &'s Schema,
    record_type: &RecordType,
    field: &str,
) -> Result<&'s FieldKind, ValidationError> {
    schema
        .field(record_type, field)
        .map(|f| &f.kind)
        .ok_or_else(|| ValidationError::field(record_type, field, Reason::UnknownField))
}

/// Brings each op's value into the shape its field stores, refusing ops that do not fit.
pub(super) fn normalize_ops(
    schema: &Schema,
    record_type: &RecordType,
    patch: &Patch,
) -> Result<Vec<FieldOp>, ValidationError> {
    let mut out = Vec::with_capacity(patch.ops.len());
    for op in &patch.ops {
        let kind = field_kind(schema, record_type, op.field())?;
        let wrong = |got: &'static str| {
            ValidationError::field(
                record_type,
                op.field(),
                Reason::WrongKind {
                    expected: kind.name(),
                    got,
                },
            )
        };
        out.push(match op {
            FieldOp::Set { field, value } => FieldOp::Set {
                field: field.clone(),
                value: normalize(kind, value.clone()),
            },
            FieldOp::SpliceText { .. } if *kind != FieldKind::LongText => {
                return Err(wrong("a text edit"));
            }
            FieldOp::AddItem { field, item } | FieldOp::RemoveItem { field, item } => {
                let item = match (kind, item) {
                    (FieldKind::List | FieldKind::Emails, Value::Text(s)) => Value::Text(s.clone()),
                    (FieldKind::Links(_), Value::Link(id)) => Value::Link(*id),
                    (FieldKind::Links(_), Value::Text(s)) => {
                        Value::Link(s.parse().map_err(|_| wrong("text that is not an id"))?)
                    }
                    (_, other) => return Err(wrong(other.kind_name())),
                };
                if matches!(op, FieldOp::AddItem { .. }) {
                    FieldOp::AddItem {
                        field: field.clone(),
                        item,
                    }
                } else {
                    FieldOp::RemoveItem {
                        field: field.clone(),
                        item,
                    }
                }
            }
            other => other.clone(),
        });
    }
    Ok(out)
}

fn push_unique<T: PartialEq>(items: &mut Vec<T>, item: T) {
    if !items.contains(&item) {
        items.push(item);
    }
}

/// Applies ops to a copy of the fields, to validate the outcome before touching the document.
pub(super) fn preview(
    record_type: &RecordType,
    fields: &mut BTreeMap<String, Value>,
    ops: &[FieldOp],
) -> Result<(), ValidationError> {
    for op in ops {
        match op {
            FieldOp::Set { field, value } => {
                fields.insert(field.clone(), value.clone());
            }
            FieldOp::Unset { field } => {
                fields.remove(field);
            }
            FieldOp::SpliceText {
                field,
                index,
                delete,
                insert,
            } => {
                let text = match fields.get(field) {
                    Some(Value::LongText(t)) => t.clone(),
                    _ => String::new(),
                };
                let chars: Vec<char> = text.chars().collect();
                if *index > chars.len() {
                    return Err(ValidationError::field(
                        record_type,
                        field,
                        Reason::Unparsable {
                            value: format!("position {index} of {} characters", chars.len()),
                            kind: "text position",
                        },
                    ));
                }
                let end = (*index + *delete).min(chars.len());
                let mut out: String = chars[..*index].iter().collect();
                out.push_str(insert);
                out.extend(&chars[end..]);
                fields.insert(field.clone(), Value::LongText(out));
            }
            FieldOp::AddItem { field, item } => match (fields.get_mut(field), item) {
                (Some(Value::List(items)), Value::Text(s)) => push_unique(items, s.clone()),
                (Some(Value::Links(ids)), Value::Link(id)) => push_unique(ids, *id),
                (_, Value::Text(s)) => {
                    fields.insert(field.clone(), Value::List(vec![s.clone()]));
                }
                (_, Value::Link(id)) => {
                    fields.insert(field.clone(), Value::Links(vec![*id]));
                }
                _ => {}
            },
            FieldOp::RemoveItem { field, item } => match (fields.get_mut(field), item) {
                (Some(Value::List(items)), Value::Text(s)) => items.retain(|i| i != s),
                (Some(Value::Links(ids)), Value::Link(id)) => ids.retain(|i| i != id),
                _ => {}
            },
        }
    }
    // An emptied list or text reads back as no value; drop it so preview matches the document.
    fields.retain(|_, v| !doc::is_empty_container(v));
    Ok(())
}
