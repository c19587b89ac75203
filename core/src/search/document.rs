//! A record as an index document: which of its values go into which field.
//!
//! The mapping reads the values themselves rather than the schema, so records merged from a
//! replica whose custom fields this one does not know are indexed too: short text goes to
//! `text` unless its name says otherwise (`name`, `title`, `subject`, `owner`, anything with
//! `phone`, `mobile` or `fax` in it), values that look like email addresses go to `email`.

use tantivy::TantivyDocument;
use tantivy::schema::Field;

use super::fields::Fields;
use super::tokenizer::is_cjk;
use crate::model::{Record, RecordId, Value};

/// The digits of a phone number as written, and without a country code when it has one
/// (`+1 415 555 0000` also gives `4155550000`). `min_rest` is the fewest digits kept.
pub(crate) fn phone_variants(raw: &str, min_rest: usize) -> Vec<String> {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    if digits.is_empty() {
        return Vec::new();
    }
    let trimmed = raw.trim_start();
    let international = trimmed.starts_with('+') || trimmed.starts_with("00");
    let national = if trimmed.starts_with("00") {
        digits.get(2..).unwrap_or_default()
    } else {
        &digits
    };
    let mut out = vec![digits.clone()];
    if international {
        for cc in 1..=3 {
            if let Some(rest) = national.get(cc..)
                && rest.len() >= min_rest
            {
                out.push(rest.to_string());
            }
        }
    }
    out.dedup();
    out
}

/// Whether a value looks like one email address.
pub(crate) fn looks_like_email(value: &str) -> bool {
    let v = value.trim();
    match v.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.contains('@')
                && !v.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn is_phone_field(name: &str) -> bool {
    ["phone", "mobile", "fax"].iter().any(|p| name.contains(p))
}

/// Builds the index document of a live record. `company_name` resolves a linked company.
pub(crate) fn build(
    f: &Fields,
    record: &Record,
    company_name: &mut dyn FnMut(RecordId) -> Option<String>,
) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    let key = record.id.as_u128();
    doc.add_bytes(f.id, record.id.uuid().as_bytes().as_slice());
    doc.add_u64(f.id_hi, (key >> 64) as u64);
    doc.add_u64(f.id_lo, key as u64);
    doc.add_text(f.record_type, record.record_type.as_str());
    doc.add_i64(f.created, record.created_at.timestamp_millis());
    doc.add_i64(f.updated, record.updated_at.timestamp_millis());

    let words = |doc: &mut TantivyDocument, field: Field, value: &str, prefix: bool| {
        doc.add_text(field, value);
        doc.add_text(f.all, value);
        doc.add_text(f.pair, value);
        if prefix {
            doc.add_text(f.prefix, value);
        }
    };
    let first = record.text("first_name");
    let last = record.text("last_name");
    match (first, last) {
        // Chinese, Japanese and Korean names read family name first, without a space: 张三.
        (Some(first), Some(last)) if is_cjk(first) && is_cjk(last) => {
            words(&mut doc, f.name, &format!("{last}{first}"), true);
        }
        (Some(first), Some(last)) => words(&mut doc, f.name, &format!("{first} {last}"), true),
        (Some(one), None) | (None, Some(one)) => words(&mut doc, f.name, one, true),
        (None, None) => {}
    }
    for (name, value) in &record.fields {
        match (name.as_str(), value) {
            ("first_name" | "last_name", _) => {}
            ("stage", Value::Enum(s) | Value::Text(s)) => doc.add_text(f.stage, s),
            ("lifecycle", Value::Enum(s) | Value::Text(s)) => doc.add_text(f.lifecycle, s),
            ("owner", Value::Text(s) | Value::Enum(s)) => doc.add_text(f.owner, s),
            ("name", Value::Text(s)) => words(&mut doc, f.name, s, true),
            ("title" | "subject", Value::Text(s)) => words(&mut doc, f.title, s, true),
            ("tags", Value::List(tags)) => {
                for tag in tags {
                    doc.add_text(f.tag, tag);
                    doc.add_text(f.prefix, tag);
                    doc.add_text(f.all, tag);
                }
            }
            ("company", Value::Link(company)) => {
                doc.add_bytes(f.company_id, company.uuid().as_bytes().as_slice());
                if let Some(company) = company_name(*company) {
                    words(&mut doc, f.company, &company, true);
                }
            }
            (field, Value::Text(s)) if is_phone_field(field) => add_phone(f, &mut doc, s),
            (field, Value::List(items)) if is_phone_field(field) => {
                for item in items {
                    add_phone(f, &mut doc, item);
                }
            }
            (_, Value::Text(s)) if looks_like_email(s) => add_email(f, &mut doc, s),
            (_, Value::Text(s) | Value::LongText(s)) => words(&mut doc, f.text, s, false),
            (_, Value::List(items)) => {
                for item in items {
                    if looks_like_email(item) {
                        add_email(f, &mut doc, item);
                    } else {
                        words(&mut doc, f.text, item, false);
                    }
                }
            }
            _ => {}
        }
    }
    doc
}

fn add_email(f: &Fields, doc: &mut TantivyDocument, email: &str) {
    let email = email.trim().to_lowercase();
    let mut values = vec![email.as_str()];
    if let Some((local, domain)) = email.split_once('@') {
        values.push(local);
        values.push(domain);
    }
    for v in values {
        doc.add_text(f.email, v);
    }
    // Its words (ann, lee, acme, com) for type-ahead and typos.
    doc.add_text(f.prefix, &email);
    doc.add_text(f.all, &email);
}

fn add_phone(f: &Fields, doc: &mut TantivyDocument, phone: &str) {
    for digits in phone_variants(phone, 6) {
        doc.add_text(f.phone, &digits);
        doc.add_text(f.phone_prefix, &digits);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_variants_drop_the_country_code() {
        assert_eq!(
            phone_variants("+1 (415) 555-0000", 6),
            ["14155550000", "4155550000", "155550000", "55550000"]
        );
        assert_eq!(phone_variants("(415) 555-0000", 6), ["4155550000"]);
        assert_eq!(
            phone_variants("0086 138 1234 5678", 6),
            [
                "008613812345678",
                "613812345678",
                "13812345678",
                "3812345678"
            ]
        );
        assert!(phone_variants("n/a", 6).is_empty());
    }

    #[test]
    fn emails_are_recognized() {
        assert!(looks_like_email("Ann.Lee@acme.com"));
        assert!(!looks_like_email("meet @ noon"));
        assert!(!looks_like_email("ann@localhost"));
    }
}
