//! Local analytics over materialized rows: RFM segments, customer lifetime value, pipeline
//! forecast, stage funnel, monthly sales forecast, product associations, a visit plan and
//! service statistics.
//!
//! Every analysis is a pure function over rows (slices of [`Record`](crate::Record) or of the
//! compact inputs built from them, such as [`OrderFact`]), with its formula in its doc comment;
//! the engine methods in this module only gather the rows and call them. None loads Automerge documents,
//! except the funnel, which reads each deal's stage history.
//!
//! Money is never summed across currencies: sums are kept per currency, or converted into one
//! currency with exchange rates the caller gives ([`Rates`]).
//!
//! ```
//! use crmsync::analytics::{Rates, RfmParams};
//! use crmsync::{Currency, Engine, Money, NewRecord, RecordType};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = Engine::in_memory()?;
//! let acme = engine.create(NewRecord::new(RecordType::Company).with("name", "Acme"))?;
//! let at: chrono::DateTime<chrono::Utc> = "2025-03-01T10:00:00Z".parse()?;
//! engine.create(
//!     NewRecord::new(RecordType::Order)
//!         .with("customer", acme.id)
//!         .with("ordered_at", at)
//!         .with("total", Money::new(12_000, "USD")?),
//! )?;
//! let as_of = chrono::NaiveDate::from_ymd_opt(2025, 4, 1).ok_or("date")?;
//! let rows = engine.rfm(&RfmParams::new(as_of, Rates::new(Currency::new("USD")?)))?;
//! assert_eq!((rows[0].recency_days, rows[0].frequency), (31, 1));
//! # Ok(())
//! # }
//! ```

pub mod apriori;
pub mod cltv;
pub mod forecast;
pub mod funnel;
mod orders;
pub mod pipeline;
pub mod rfm;
pub mod service;
pub mod visit_plan;

use std::collections::BTreeMap;
use std::fmt;

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::model::{Currency, Money, RecordId};

pub use apriori::{AprioriParams, Associations, Baskets, Itemset, Recommendation, Rule};
pub use cltv::{CltvParams, CltvRow};
pub use forecast::{
    ForecastMethod, ForecastParams, HoltWinters, MonthValue, SalesForecast, Smoothing,
};
pub use funnel::{FunnelReport, FunnelStage, StageChange, StagePath};
pub use orders::{OrderFact, order_items};
pub use pipeline::{PipelineParams, PipelineReport, Totals};
pub use rfm::{RfmParams, RfmRow, RfmScore, Segment};
pub use service::{RepeatCustomer, ServiceParams, ServiceStats};
pub use visit_plan::{
    Factor, FactorKind, VisitCandidate, VisitInputs, VisitPlanParams, VisitWeights,
};

/// Why an analysis could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnalyticsError {
    /// A parameter is out of its range.
    #[error("analytics parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it and what is allowed.
        reason: String,
    },
    /// An amount is in a currency the caller gave no exchange rate for.
    #[error(
        "no exchange rate from {from} to {to}: add one to the rates to include amounts in {from}"
    )]
    MissingRate {
        /// The amount's currency.
        from: Currency,
        /// The currency results are reported in.
        to: Currency,
    },
    /// Too little data for the analysis.
    #[error("{what}: needs at least {needed}, found {found}")]
    NotEnoughData {
        /// What was counted.
        what: &'static str,
        /// How many are needed.
        needed: usize,
        /// How many there are.
        found: usize,
    },
    /// An order without a total has lines in more than one currency.
    #[error("order {order} has lines in {first} and {second} and no total: set its total")]
    MixedCurrencies {
        /// The order.
        order: RecordId,
        /// One currency of its lines.
        first: Currency,
        /// Another.
        second: Currency,
    },
    /// A sum of money does not fit in 64-bit minor units.
    #[error("the sum of {what} overflows 64-bit minor units")]
    Overflow {
        /// What was being summed.
        what: String,
    },
    /// Reading the rows failed.
    #[error(transparent)]
    Engine(#[from] crate::Error),
}

/// The result type of the analytics.
pub type AnalyticsResult<T> = Result<T, AnalyticsError>;

/// Exchange rates into one reporting currency, given by the caller (analytics never fetch
/// rates). Amounts already in the target currency are taken as they are; any other currency
/// needs a rate, or the analysis fails with [`AnalyticsError::MissingRate`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    target: Currency,
    rates: BTreeMap<Currency, f64>,
}

impl Rates {
    /// Rates into `target`, with none yet: only amounts in `target` are accepted.
    pub fn new(target: Currency) -> Self {
        Self {
            target,
            rates: BTreeMap::new(),
        }
    }

    /// Adds a rate: one unit of `from` is worth `rate` units of the target (major units, e.g.
    /// 1 EUR = 1.08 USD). The rate must be finite and positive.
    pub fn with_rate(mut self, from: Currency, rate: f64) -> AnalyticsResult<Self> {
        if !(rate.is_finite() && rate > 0.0) {
            return Err(AnalyticsError::InvalidParameter {
                name: "rate",
                reason: format!("rate from {from} must be finite and positive, got {rate}"),
            });
        }
        self.rates.insert(from, rate);
        Ok(self)
    }

    /// The reporting currency.
    pub fn target(&self) -> Currency {
        self.target
    }

    /// An amount in major units of the target currency (exact for the target itself).
    pub fn to_major(&self, money: Money) -> AnalyticsResult<f64> {
        let major = minor_to_major(money.minor, money.currency);
        if money.currency == self.target {
            return Ok(major);
        }
        let rate = self
            .rates
            .get(&money.currency)
            .ok_or(AnalyticsError::MissingRate {
                from: money.currency,
                to: self.target,
            })?;
        Ok(major * rate)
    }

    /// An amount converted into the target currency, rounded to its minor unit (half away from
    /// zero). Amounts in the target currency are returned unchanged.
    pub fn convert(&self, money: Money) -> AnalyticsResult<Money> {
        if money.currency == self.target {
            return Ok(money);
        }
        let major = self.to_major(money)?;
        self.money_from_major(major)
    }

    /// A target-currency amount from major units, rounded to the minor unit.
    pub fn money_from_major(&self, major: f64) -> AnalyticsResult<Money> {
        money_from_major(major, self.target)
    }
}

/// `minor / 10^exponent` as a float.
pub(crate) fn minor_to_major(minor: i64, currency: Currency) -> f64 {
    minor as f64 / 10f64.powi(currency.exponent() as i32)
}

/// Rounds major units of a currency to its minor unit.
pub(crate) fn money_from_major(major: f64, currency: Currency) -> AnalyticsResult<Money> {
    let minor = (major * 10f64.powi(currency.exponent() as i32)).round();
    // i64::MAX as f64 rounds up to 2^63, which is already out of range.
    if !minor.is_finite() || minor >= i64::MAX as f64 || minor < i64::MIN as f64 {
        return Err(AnalyticsError::Overflow {
            what: format!("an amount in {currency}"),
        });
    }
    Ok(Money {
        minor: minor as i64,
        currency,
    })
}

/// Per-currency sums of minor units, kept apart (never added across currencies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CurrencySums(BTreeMap<Currency, i128>);

impl CurrencySums {
    pub(crate) fn add(&mut self, currency: Currency, minor: i128) {
        *self.0.entry(currency).or_default() += minor;
    }

    /// The sums as money, each divided by `divisor` with rounding half away from zero.
    pub(crate) fn to_money(&self, divisor: i128, what: &str) -> AnalyticsResult<Vec<Money>> {
        self.0
            .iter()
            .map(|(currency, sum)| {
                let q = div_round(*sum, divisor);
                let minor = i64::try_from(q).map_err(|_| AnalyticsError::Overflow {
                    what: what.to_string(),
                })?;
                Ok(Money {
                    minor,
                    currency: *currency,
                })
            })
            .collect()
    }
}

/// `a / b` rounded half away from zero (`b > 0`).
pub(crate) fn div_round(a: i128, b: i128) -> i128 {
    let half = b / 2;
    if a >= 0 {
        (a + half) / b
    } else {
        (a - half) / b
    }
}

/// The median of values (mean of the two middle ones for an even count); `None` when empty.
/// NaNs sort last.
pub(crate) fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Checks that a parameter is finite and within `[lo, hi]`.
pub(crate) fn check_range(name: &'static str, value: f64, lo: f64, hi: f64) -> AnalyticsResult<()> {
    if value.is_finite() && value >= lo && value <= hi {
        Ok(())
    } else {
        Err(AnalyticsError::InvalidParameter {
            name,
            reason: format!("must be within [{lo}, {hi}], got {value}"),
        })
    }
}

/// A calendar month, ordered in time; shown as `YYYY-MM`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    /// Months since year 0 (`year * 12 + month - 1`).
    index: i64,
}

impl Month {
    /// The month a date falls in.
    pub fn of(date: NaiveDate) -> Self {
        Self {
            index: i64::from(date.year()) * 12 + i64::from(date.month0()),
        }
    }

    /// The month `n` months later (earlier for negative `n`).
    pub fn plus(self, n: i64) -> Self {
        Self {
            index: self.index + n,
        }
    }

    /// Months from `self` to `later` (negative when `later` is earlier).
    pub fn until(self, later: Month) -> i64 {
        later.index - self.index
    }

    /// The year.
    pub fn year(self) -> i64 {
        self.index.div_euclid(12)
    }

    /// The month of the year, 1 to 12.
    pub fn month(self) -> u32 {
        // rem_euclid(12) is within 0..12.
        self.index.rem_euclid(12) as u32 + 1
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd() -> Currency {
        Currency::new("USD").unwrap()
    }

    #[test]
    fn rates_convert_and_refuse_unknown_currencies() {
        let eur = Currency::new("EUR").unwrap();
        let jpy = Currency::new("JPY").unwrap();
        let rates = Rates::new(usd()).with_rate(eur, 1.1).unwrap();
        let ten_eur = Money::new(1000, "EUR").unwrap();
        assert_eq!(
            rates.convert(ten_eur).unwrap(),
            Money::new(1100, "USD").unwrap()
        );
        assert!(matches!(
            rates.convert(Money::new(5, "JPY").unwrap()),
            Err(AnalyticsError::MissingRate { from, .. }) if from == jpy
        ));
        assert!(Rates::new(usd()).with_rate(eur, -1.0).is_err());
        assert!(Rates::new(usd()).with_rate(eur, f64::NAN).is_err());
    }

    #[test]
    fn rounding_and_median() {
        assert_eq!(div_round(250, 100), 3);
        assert_eq!(div_round(-250, 100), -3);
        assert_eq!(div_round(249, 100), 2);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(Vec::new()), None);
        assert!(money_from_major(1e30, usd()).is_err());
    }

    #[test]
    fn months_print_and_step() {
        let m = Month::of(NaiveDate::from_ymd_opt(2024, 12, 31).unwrap());
        assert_eq!(m.to_string(), "2024-12");
        assert_eq!(m.plus(1).to_string(), "2025-01");
        assert_eq!(m.until(m.plus(14)), 14);
    }
}
