//! Orders as the analytics read them: a compact fact per order, and its basket of items.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult};
use crate::model::{Money, Record, RecordId, RecordType, Value};

/// Order statuses that never count as a sale.
const NOT_SOLD: [&str; 2] = ["draft", "cancelled"];

/// One order as a sale: who bought, when, and for how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFact {
    /// The order.
    pub order: RecordId,
    /// The buying contact or company, when the order links one.
    pub customer: Option<RecordId>,
    /// When it was ordered.
    pub at: DateTime<Utc>,
    /// Its value: the `total` field when set, else the sum of quantity × unit price over its
    /// lines (which must then share one currency).
    pub total: Money,
}

fn is_sale(record: &Record) -> bool {
    record.record_type == RecordType::Order
        && !record.deleted
        && !record.text("status").is_some_and(|s| NOT_SOLD.contains(&s))
}

impl OrderFact {
    /// The sale an order record stands for; `None` for records that are not sales (another
    /// type, deleted, status `draft` or `cancelled`, no `ordered_at`, or neither a total nor
    /// priced lines).
    pub fn from_record(record: &Record) -> AnalyticsResult<Option<Self>> {
        if !is_sale(record) {
            return Ok(None);
        }
        let Some(at) = record.get("ordered_at").and_then(Value::as_timestamp) else {
            return Ok(None);
        };
        let total = match record.get("total").and_then(Value::as_money) {
            Some(total) => total,
            None => match lines_total(record)? {
                Some(total) => total,
                None => return Ok(None),
            },
        };
        Ok(Some(Self {
            order: record.id,
            customer: record.get("customer").and_then(Value::as_link),
            at,
            total,
        }))
    }
}

/// Σ quantity × unit price over an order's lines; `None` without lines.
fn lines_total(record: &Record) -> AnalyticsResult<Option<Money>> {
    let Some(Value::Lines(lines)) = record.get("lines") else {
        return Ok(None);
    };
    let Some(first) = lines.first() else {
        return Ok(None);
    };
    let currency = first.unit_price.currency;
    let mut sum: i128 = 0;
    for line in lines {
        if line.unit_price.currency != currency {
            return Err(AnalyticsError::MixedCurrencies {
                order: record.id,
                first: currency,
                second: line.unit_price.currency,
            });
        }
        sum += i128::from(line.quantity) * i128::from(line.unit_price.minor);
    }
    let minor = i64::try_from(sum).map_err(|_| AnalyticsError::Overflow {
        what: format!("the lines of order {}", record.id),
    })?;
    Ok(Some(Money { minor, currency }))
}

/// The distinct items of a sold order (its basket for association rules), sorted; `None` for
/// records that are not sales. A line's item is its SKU; a line that links a product without a
/// SKU is named by that product's SKU from `product_skus`, else by the product's id.
pub fn order_items(
    record: &Record,
    product_skus: &HashMap<RecordId, String>,
) -> Option<Vec<String>> {
    if !is_sale(record) {
        return None;
    }
    let Some(Value::Lines(lines)) = record.get("lines") else {
        return Some(Vec::new());
    };
    let mut items: Vec<String> = lines
        .iter()
        .filter_map(|line| match (&line.sku, line.product) {
            (Some(sku), _) => Some(sku.clone()),
            (None, Some(id)) => Some(
                product_skus
                    .get(&id)
                    .cloned()
                    .unwrap_or_else(|| id.to_string()),
            ),
            (None, None) => None,
        })
        .collect();
    items.sort();
    items.dedup();
    Some(items)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{DeviceId, OrderLine};

    fn order(fields: Vec<(&str, Value)>) -> Record {
        let now = Utc::now();
        Record {
            id: RecordId::new(),
            record_type: RecordType::Order,
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect::<BTreeMap<_, _>>(),
            created_at: now,
            created_by: DeviceId([0; 16]),
            updated_at: now,
            updated_by: DeviceId([0; 16]),
            deleted: false,
        }
    }

    fn line(sku: &str, quantity: i64, price: &str) -> OrderLine {
        OrderLine {
            product: None,
            sku: Some(sku.to_string()),
            quantity,
            unit_price: price.parse().unwrap(),
        }
    }

    #[test]
    fn total_comes_from_lines_when_unset() {
        let r = order(vec![
            ("ordered_at", Value::Timestamp(Utc::now())),
            (
                "lines",
                Value::Lines(vec![line("A", 2, "1.50 USD"), line("B", 1, "3.00 USD")]),
            ),
        ]);
        let fact = OrderFact::from_record(&r).unwrap().unwrap();
        assert_eq!(fact.total, Money::new(600, "USD").unwrap());
        let items = order_items(&r, &HashMap::new()).unwrap();
        assert_eq!(items, vec!["A", "B"]);
    }

    #[test]
    fn mixed_currency_lines_without_total_are_refused() {
        let r = order(vec![
            ("ordered_at", Value::Timestamp(Utc::now())),
            (
                "lines",
                Value::Lines(vec![line("A", 1, "1.00 USD"), line("B", 1, "1.00 EUR")]),
            ),
        ]);
        assert!(matches!(
            OrderFact::from_record(&r),
            Err(AnalyticsError::MixedCurrencies { .. })
        ));
    }

    #[test]
    fn cancelled_orders_are_not_sales() {
        let r = order(vec![
            ("ordered_at", Value::Timestamp(Utc::now())),
            ("total", Value::Money(Money::new(100, "USD").unwrap())),
            ("status", Value::Enum("cancelled".into())),
        ]);
        assert_eq!(OrderFact::from_record(&r).unwrap(), None);
        assert_eq!(order_items(&r, &HashMap::new()), None);
    }
}
