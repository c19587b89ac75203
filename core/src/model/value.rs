//! Field values and their kinds.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::ids::RecordId;
use super::record_type::RecordType;

/// An ISO 4217 currency code, checked against the ISO list when it is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// A string that is not an ISO 4217 currency code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an ISO 4217 currency code (such as USD, EUR, CNY)")]
pub struct CurrencyError(pub String);

impl Currency {
    /// Parses and checks a currency code (case-insensitive).
    pub fn new(code: &str) -> Result<Self, CurrencyError> {
        let upper = code.trim().to_ascii_uppercase();
        match iso_currency::Currency::from_code(&upper) {
            Some(_) if upper.len() == 3 => {
                let b = upper.as_bytes();
                Ok(Self([b[0], b[1], b[2]]))
            }
            _ => Err(CurrencyError(code.to_string())),
        }
    }

    /// The three-letter code.
    pub fn code(&self) -> &str {
        // Built only from ASCII letters in `new`.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }

    /// How many decimal places the currency's minor unit has (2 for USD, 0 for JPY).
    pub fn exponent(&self) -> u32 {
        iso_currency::Currency::from_code(self.code())
            .and_then(|c| c.exponent())
            .map_or(2, u32::from)
    }
}

impl TryFrom<String> for Currency {
    type Error = CurrencyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// An amount of money: integer minor units (cents) plus currency, never a float. Amount and
/// currency are one atomic value, so concurrent edits never mix one side's amount with the
/// other's currency.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// Amount in minor units (cents for USD, yen for JPY).
    pub minor: i64,
    /// Currency of the amount.
    pub currency: Currency,
}

impl Money {
    /// Builds an amount from minor units and a currency code.
    pub fn new(minor: i64, currency: &str) -> Result<Self, CurrencyError> {
        Ok(Self {
            minor,
            currency: Currency::new(currency)?,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exp = self.currency.exponent();
        if exp == 0 {
            return write!(f, "{} {}", self.minor, self.currency);
        }
        let scale = 10i128.pow(exp);
        let minor = i128::from(self.minor);
        let sign = if minor < 0 { "-" } else { "" };
        let abs = minor.abs();
        write!(
            f,
            "{sign}{}.{:0width$} {}",
            abs / scale,
            abs % scale,
            self.currency,
            width = exp as usize
        )
    }
}

/// Text that is not an amount of money.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyParseError {
    /// The currency part is not an ISO code.
    #[error(transparent)]
    Currency(#[from] CurrencyError),
    /// The number part is malformed or has more decimals than the currency allows.
    #[error("'{0}' is not an amount such as '1250.00 USD'")]
    Amount(String),
}

impl FromStr for Money {
    type Err = MoneyParseError;

    /// Parses "1250.00 USD" or "USD 1250.00"; decimals beyond the currency's exponent are an
    /// error rather than silently rounded.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || MoneyParseError::Amount(s.to_string());
        let mut parts = s.split_whitespace();
        let (a, b) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        if parts.next().is_some() {
            return Err(bad());
        }
        let (number, code) = if a.chars().all(|c| c.is_ascii_alphabetic()) {
            (b, a)
        } else {
            (a, b)
        };
        let currency = Currency::new(code)?;
        let exp = currency.exponent() as usize;
        let (neg, digits) = match number.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, number),
        };
        let (int_part, frac_part) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
        if int_part.is_empty() || !all_digits(int_part) || !all_digits(frac_part) {
            return Err(bad());
        }
        if frac_part.len() > exp {
            return Err(bad());
        }
        let mut text = String::with_capacity(int_part.len() + exp);
        text.push_str(int_part);
        text.push_str(frac_part);
        text.extend(std::iter::repeat_n('0', exp - frac_part.len()));
        let magnitude: i64 = text.parse().map_err(|_| bad())?;
        Ok(Money {
            minor: if neg { -magnitude } else { magnitude },
            currency,
        })
    }
}

/// One line of an order: a product (by link or SKU), a quantity and a unit price.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderLine {
    /// Link to a product record, when the product is in the catalogue.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub product: Option<RecordId>,
    /// Stock-keeping unit, when the product is known only by its code.
    #[cfg_attr(feature = "uniffi", uniffi(default = None))]
    pub sku: Option<String>,
    /// Number of units.
    pub quantity: i64,
    /// Price of one unit.
    pub unit_price: Money,
}

/// The value of one field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// Short text: last writer wins on concurrent edits.
    Text(String),
    /// Long text (notes, descriptions): merged character by character.
    LongText(String),
    /// Whole number.
    Int(i64),
    /// Money (minor units + currency), atomic.
    Money(Money),
    /// True or false.
    Bool(bool),
    /// A moment in time (UTC, millisecond precision).
    Timestamp(#[serde(with = "chrono::serde::ts_milliseconds")] DateTime<Utc>),
    /// A calendar date.
    Date(NaiveDate),
    /// One of a declared set of values (e.g. a deal stage).
    Enum(String),
    /// A list of strings (tags, emails, phones); concurrent additions both survive.
    List(Vec<String>),
    /// A link to another record.
    Link(RecordId),
    /// A list of links to other records.
    Links(Vec<RecordId>),
    /// Order lines, atomic.
    Lines(Vec<OrderLine>),
}

impl Value {
    /// The kind of this value, for error messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::LongText(_) => "long text",
            Value::Int(_) => "integer",
            Value::Money(_) => "money",
            Value::Bool(_) => "bool",
            Value::Timestamp(_) => "timestamp",
            Value::Date(_) => "date",
            Value::Enum(_) => "enum",
            Value::List(_) => "list of strings",
            Value::Link(_) => "link",
            Value::Links(_) => "list of links",
            Value::Lines(_) => "order lines",
        }
    }

    /// The value as text when it is text-like (text, long text or enum).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(s) | Value::LongText(s) | Value::Enum(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value as money.
    pub fn as_money(&self) -> Option<Money> {
        match self {
            Value::Money(m) => Some(*m),
            _ => None,
        }
    }

    /// The value as a timestamp.
    pub fn as_timestamp(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::Timestamp(t) => Some(*t),
            _ => None,
        }
    }

    /// The value as a single link.
    pub fn as_link(&self) -> Option<RecordId> {
        match self {
            Value::Link(id) => Some(*id),
            _ => None,
        }
    }

    /// The value as a list of strings.
    pub fn as_list(&self) -> Option<&[String]> {
        match self {
            Value::List(items) => Some(items),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(value: &str) -> Self {
        Value::Text(value.to_string())
    }
}

impl From<String> for Value {
    fn from(value: String) -> Self {
        Value::Text(value)
    }
}

impl From<i64> for Value {
    fn from(value: i64) -> Self {
        Value::Int(value)
    }
}

impl From<bool> for Value {
    fn from(value: bool) -> Self {
        Value::Bool(value)
    }
}

impl From<Money> for Value {
    fn from(value: Money) -> Self {
        Value::Money(value)
    }
}

impl From<RecordId> for Value {
    fn from(value: RecordId) -> Self {
        Value::Link(value)
    }
}

impl From<DateTime<Utc>> for Value {
    fn from(value: DateTime<Utc>) -> Self {
        Value::Timestamp(value)
    }
}

impl From<NaiveDate> for Value {
    fn from(value: NaiveDate) -> Self {
        Value::Date(value)
    }
}

/// The declared kind of a field.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Bool.
    Bool,
    /// Timestamp.
    Timestamp,
    /// Date.
    Date,
    /// One of these values.
    Enum(#[cfg_attr(feature = "uniffi", uniffi(name = "values"))] Vec<String>),
    /// List of strings.
    #[cfg_attr(feature = "uniffi", uniffi(name = "Strings"))]
    List,
    /// List of email addresses (syntax-checked).
    Emails,
    /// Link to a record of one of these types (any type when empty).
    Link(#[cfg_attr(feature = "uniffi", uniffi(name = "types"))] Vec<RecordType>),
    /// List of links to records of these types (any type when empty).
    Links(#[cfg_attr(feature = "uniffi", uniffi(name = "types"))] Vec<RecordType>),
    /// Order lines.
    Lines,
}

impl FieldKind {
    /// An integer with no range.
    pub const INT: FieldKind = FieldKind::Int {
        min: None,
        max: None,
    };

    /// The kind as words, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::LongText => "long text",
            FieldKind::Int { .. } => "integer",
            FieldKind::Money => "money",
            FieldKind::Bool => "bool",
            FieldKind::Timestamp => "timestamp",
            FieldKind::Date => "date",
            FieldKind::Enum(_) => "enum",
            FieldKind::List | FieldKind::Emails => "list of strings",
            FieldKind::Link(_) => "link",
            FieldKind::Links(_) => "list of links",
            FieldKind::Lines => "order lines",
        }
    }

    /// Whether a value has the shape this kind stores (range, enum and syntax checks aside).
    pub fn accepts(&self, value: &Value) -> bool {
        matches!(
            (self, value),
            (FieldKind::Text, Value::Text(_))
                | (FieldKind::LongText, Value::LongText(_))
                | (FieldKind::Int { .. }, Value::Int(_))
                | (FieldKind::Money, Value::Money(_))
                | (FieldKind::Bool, Value::Bool(_))
                | (FieldKind::Timestamp, Value::Timestamp(_))
                | (FieldKind::Date, Value::Date(_))
                | (FieldKind::Enum(_), Value::Enum(_))
                | (FieldKind::List | FieldKind::Emails, Value::List(_))
                | (FieldKind::Link(_), Value::Link(_))
                | (FieldKind::Links(_), Value::Links(_))
                | (FieldKind::Lines, Value::Lines(_))
        )
    }
}
