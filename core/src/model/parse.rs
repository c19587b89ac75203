//! Values to and from plain text, as found in CSV files and text inputs.
//!
//! Lists are separated by `;`; money is `1250.00 USD`; timestamps are RFC 3339 (or a bare date,
//! read as midnight UTC); order lines are `SKU x QUANTITY @ PRICE`, where SKU may be a product id.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use super::ids::RecordId;
use super::validate::Reason;
use super::value::{FieldKind, Money, OrderLine, Value};

fn unparsable(text: &str, kind: &FieldKind) -> Reason {
    Reason::Unparsable {
        value: text.to_string(),
        kind: kind.name(),
    }
}

fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(';').map(str::trim).filter(|s| !s.is_empty())
}

/// Parses a timestamp: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in UTC, or a date at midnight UTC.
fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Some(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn parse_line(text: &str) -> Option<OrderLine> {
    let (item, price) = text.split_once('@')?;
    let (product, quantity) = item.rsplit_once(" x ")?;
    let product = product.trim();
    let quantity: i64 = quantity.trim().parse().ok()?;
    let unit_price: Money = price.trim().parse().ok()?;
    let (product, sku) = match product.parse::<RecordId>() {
        Ok(id) => (Some(id), None),
        Err(_) if !product.is_empty() => (None, Some(product.to_string())),
        Err(_) => return None,
    };
    Some(OrderLine {
        product,
        sku,
        quantity,
        unit_price,
    })
}

/// Parses text into a value of the given kind. Range, enum and link checks are left to
/// validation, so the error here only means "not this kind of value".
pub fn parse_value(kind: &FieldKind, text: &str) -> Result<Value, Reason> {
    let text = text.trim();
    let bad = || unparsable(text, kind);
    Ok(match kind {
        FieldKind::Text => Value::Text(text.to_string()),
        FieldKind::LongText => Value::LongText(text.to_string()),
        FieldKind::Enum(_) => Value::Enum(text.to_string()),
        FieldKind::Int { .. } => Value::Int(text.replace('_', "").parse().map_err(|_| bad())?),
        FieldKind::Money => Value::Money(text.parse().map_err(|_| bad())?),
        FieldKind::Bool => match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "y" | "1" => Value::Bool(true),
            "false" | "no" | "n" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
        FieldKind::Timestamp => Value::Timestamp(parse_timestamp(text).ok_or_else(bad)?),
        FieldKind::Date => {
            Value::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?)
        }
        FieldKind::List | FieldKind::Emails => {
            Value::List(split_list(text).map(str::to_string).collect())
        }
        FieldKind::Link(_) => Value::Link(text.parse().map_err(|_| bad())?),
        FieldKind::Links(_) => Value::Links(
            split_list(text)
                .map(|s| s.parse().map_err(|_| bad()))
                .collect::<Result<_, _>>()?,
        ),
        FieldKind::Lines => Value::Lines(
            split_list(text)
                .map(|s| parse_line(s).ok_or_else(bad))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// Formats a value as text that [`parse_value`] reads back to the same value.
pub fn format_value(value: &Value) -> String {
    match value {
        Value::Text(s) | Value::LongText(s) | Value::Enum(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Money(m) => m.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Timestamp(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        Value::Date(d) => d.format("%Y-%m-%d").to_string(),
        Value::List(items) => items.join(";"),
        Value::Link(id) => id.to_string(),
        Value::Links(ids) => ids
            .iter()
            .map(RecordId::to_string)
            .collect::<Vec<_>>()
            .join(";"),
        Value::Lines(lines) => lines
            .iter()
            .map(|l| {
                let product = match (&l.product, &l.sku) {
                    (Some(id), _) => id.to_string(),
                    (None, Some(sku)) => sku.clone(),
                    (None, None) => String::new(),
                };
                format!("{product} x {} @ {}", l.quantity, l.unit_price)
            })
            .collect::<Vec<_>>()
            .join(";"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips_through_text() {
        let m: Money = "1250.5 USD".parse().unwrap();
        assert_eq!(m.minor, 125050);
        assert_eq!(m.to_string(), "1250.50 USD");
        let y: Money = "JPY 300".parse().unwrap();
        assert_eq!((y.minor, y.to_string().as_str()), (300, "300 JPY"));
        assert!("1.234 USD".parse::<Money>().is_err());
        assert!("12 ABC".parse::<Money>().is_err());
        let neg: Money = "-0.05 EUR".parse().unwrap();
        assert_eq!((neg.minor, neg.to_string().as_str()), (-5, "-0.05 EUR"));
    }

    #[test]
    fn order_lines_round_trip() {
        let v = parse_value(
            &FieldKind::Lines,
            "SKU-1 x 2 @ 19.99 USD; SKU-2 x 1 @ 5 USD",
        )
        .unwrap();
        assert_eq!(
            format_value(&v),
            "SKU-1 x 2 @ 19.99 USD;SKU-2 x 1 @ 5.00 USD"
        );
        assert_eq!(
            parse_value(&FieldKind::Lines, &format_value(&v)).unwrap(),
            v
        );
    }
}
