//! CSV and JSON export.

use serde_json::{Map, Value as Json, json};

use crate::model::{Record, Value, format_value};

/// A value as natural JSON: strings, numbers, booleans, arrays; money as
/// `{"minor": 125050, "currency": "USD"}`; timestamps as RFC 3339 strings.
pub fn value_to_json(value: &Value) -> Json {
    match value {
        Value::Text(s) | Value::LongText(s) | Value::Enum(s) => json!(s),
        Value::Int(i) => json!(i),
        Value::Bool(b) => json!(b),
        Value::Money(m) => json!({"minor": m.minor, "currency": m.currency.code()}),
        Value::List(items) => json!(items),
        Value::Links(ids) => json!(ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()),
        Value::Lines(lines) => Json::Array(
            lines
                .iter()
                .map(|l| {
                    json!({
                        "product": l.product.map(|p| p.to_string()),
                        "sku": l.sku,
                        "quantity": l.quantity,
                        "unit_price": {"minor": l.unit_price.minor, "currency": l.unit_price.currency.code()},
                    })
                })
                .collect(),
        ),
        other => json!(format_value(other)),
    }
}

/// A record as a JSON object: `id`, `type`, timestamps, devices, then its fields.
pub fn record_to_json(record: &Record) -> Json {
    let mut map = Map::new();
    map.insert("id".into(), json!(record.id.to_string()));
    map.insert("type".into(), json!(record.record_type.as_str()));
    map.insert("created_at".into(), json!(record.created_at.to_rfc3339()));
    map.insert("created_by".into(), json!(record.created_by.to_string()));
    map.insert("updated_at".into(), json!(record.updated_at.to_rfc3339()));
    map.insert("updated_by".into(), json!(record.updated_by.to_string()));
    let fields: Map<String, Json> = record
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), value_to_json(v)))
        .collect();
    map.insert("fields".into(), Json::Object(fields));
    Json::Object(map)
}
