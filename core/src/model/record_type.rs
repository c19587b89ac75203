//! Record types: the built-in CRM types and app-defined custom types.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The type of a record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", from = "String")]
pub enum RecordType {
    /// A company (account).
    Company,
    /// A person.
    Contact,
    /// A deal in the sales pipeline.
    Deal,
    /// A call, meeting, email, note, task or visit.
    Activity,
    /// A support case.
    Case,
    /// A customer order.
    Order,
    /// A product in the catalogue.
    Product,
    /// A marketing campaign.
    Campaign,
    /// A type the app declared itself.
    Custom(String),
}

impl RecordType {
    /// The built-in types, in a stable order.
    pub const BUILT_IN: [RecordType; 8] = [
        RecordType::Company,
        RecordType::Contact,
        RecordType::Deal,
        RecordType::Activity,
        RecordType::Case,
        RecordType::Order,
        RecordType::Product,
        RecordType::Campaign,
    ];

    /// The type's name as stored.
    pub fn as_str(&self) -> &str {
        match self {
            RecordType::Company => "company",
            RecordType::Contact => "contact",
            RecordType::Deal => "deal",
            RecordType::Activity => "activity",
            RecordType::Case => "case",
            RecordType::Order => "order",
            RecordType::Product => "product",
            RecordType::Campaign => "campaign",
            RecordType::Custom(name) => name,
        }
    }

    /// Whether the type is one of the built-in CRM types.
    pub fn is_built_in(&self) -> bool {
        !matches!(self, RecordType::Custom(_))
    }
}

impl From<&str> for RecordType {
    fn from(value: &str) -> Self {
        match value {
            "company" => RecordType::Company,
            "contact" => RecordType::Contact,
            "deal" => RecordType::Deal,
            "activity" => RecordType::Activity,
            "case" => RecordType::Case,
            "order" => RecordType::Order,
            "product" => RecordType::Product,
            "campaign" => RecordType::Campaign,
            other => RecordType::Custom(other.to_string()),
        }
    }
}

impl From<String> for RecordType {
    fn from(value: String) -> Self {
        RecordType::from(value.as_str())
    }
}

impl From<RecordType> for String {
    fn from(value: RecordType) -> Self {
        value.as_str().to_string()
    }
}

impl FromStr for RecordType {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(RecordType::from(s))
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
