//! Analytics: each analysis against numbers computed by hand for a small dataset, plus
//! invariants.

mod customers;
mod deals;
mod field;
mod sales;

use chrono::{DateTime, NaiveDate, Utc};
use crmsync::{Currency, Engine, NewRecord, RecordId, RecordType, Value};

use crate::common::money;

pub fn date(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("test date")
}

/// Noon UTC of a day.
pub fn at(text: &str) -> DateTime<Utc> {
    date(text).and_hms_opt(12, 0, 0).expect("noon").and_utc()
}

pub fn usd() -> Currency {
    Currency::new("USD").expect("USD")
}

pub fn id(n: u128) -> RecordId {
    RecordId::from_u128(n)
}

/// Companies with ids 1..=n, so their id order (the RFM tie order) is known.
pub fn companies(engine: &Engine, n: u128) -> Vec<RecordId> {
    (1..=n)
        .map(|i| {
            let mut new = NewRecord::new(RecordType::Company).with("name", format!("C{i}"));
            new.id = Some(id(i));
            engine.create(new).expect("company").id
        })
        .collect()
}

pub fn order(engine: &Engine, customer: Option<RecordId>, when: &str, total: &str) {
    let mut new = NewRecord::new(RecordType::Order)
        .with("ordered_at", at(when))
        .with("total", money(total));
    if let Some(c) = customer {
        new = new.with("customer", c);
    }
    engine.create(new).expect("order");
}

pub fn deal(engine: &Engine, name: &str, fields: Vec<(&str, Value)>) -> RecordId {
    let mut new = NewRecord::new(RecordType::Deal).with("name", name);
    for (k, v) in fields {
        new = new.with(k, v);
    }
    engine.create(new).expect("deal").id
}

pub fn enum_(s: &str) -> Value {
    Value::Enum(s.to_string())
}

/// A deterministic pseudo-random sequence (SplitMix64).
pub struct Mix(u64);

impl Mix {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
