//! Customer lifetime value: discounted projected margin over a horizon.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, OrderFact, Rates, check_range};
use crate::model::{Currency, RecordId};

/// Days in an average year, for tenure in years.
const DAYS_PER_YEAR: f64 = 365.25;
/// Longest horizon accepted, in years.
const MAX_HORIZON: u32 = 100;

/// How to project and discount.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CltvParams {
    /// The day the analysis is made (orders after it are ignored).
    pub as_of: NaiveDate,
    /// Yearly discount rate `d` (default 0.10), at least 0.
    pub discount_rate: f64,
    /// Horizon `T` in years: years 0..=T are summed (default 5, at most 100).
    pub horizon_years: u32,
    /// Share of a year's margin kept the next year, 0 to 1 (default 0.8).
    pub retention: f64,
    /// Gross margin as a share of revenue, 0 to 1 (default 0.3).
    pub margin: f64,
    /// Reporting currency, with rates for orders in other currencies.
    pub rates: Rates,
}

impl CltvParams {
    /// Defaults: 10 % discount, 5-year horizon, 80 % retention, 30 % margin.
    pub fn new(as_of: NaiveDate, rates: Rates) -> Self {
        Self {
            as_of,
            discount_rate: 0.10,
            horizon_years: 5,
            retention: 0.8,
            margin: 0.3,
            rates,
        }
    }
}

/// One customer's lifetime value.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CltvRow {
    /// The customer (contact or company).
    pub customer: RecordId,
    /// 1 for the highest value.
    pub rank: u32,
    /// Revenue of all orders up to `as_of`, in major units of `currency`.
    pub revenue: f64,
    /// Years from the first order to `as_of`, at least 1.
    pub tenure_years: f64,
    /// Projected margin of year 0, `M_0`, in major units.
    pub yearly_margin: f64,
    /// The lifetime value, in major units.
    pub cltv: f64,
    /// The reporting currency.
    pub currency: Currency,
}

/// Lifetime value per customer, highest first (ties by customer id).
///
/// `CLTV = Σ_{t=0..T} M_t / (1 + d)^t` with `M_t = M_0 · retention^t` and
/// `M_0 = margin · revenue / tenure_years`, where `revenue` is the sum of the customer's order
/// totals dated on or before `as_of` (converted into the reporting currency) and
/// `tenure_years = max(1, (as_of − first order date) in days / 365.25)` — a customer younger
/// than a year is not extrapolated from a few weeks of orders.
pub fn lifetime_values(orders: &[OrderFact], params: &CltvParams) -> AnalyticsResult<Vec<CltvRow>> {
    check_range("discount_rate", params.discount_rate, 0.0, 10.0)?;
    check_range("retention", params.retention, 0.0, 1.0)?;
    check_range("margin", params.margin, 0.0, 1.0)?;
    if params.horizon_years > MAX_HORIZON {
        return Err(AnalyticsError::InvalidParameter {
            name: "horizon_years",
            reason: format!(
                "must be at most {MAX_HORIZON}, got {}",
                params.horizon_years
            ),
        });
    }
    // Σ_t (retention / (1 + d))^t: the same factor for every customer.
    let ratio = params.retention / (1.0 + params.discount_rate);
    let factor: f64 = (0..=params.horizon_years)
        .map(|t| ratio.powi(t as i32))
        .sum();
    let mut by_customer: HashMap<RecordId, (NaiveDate, f64)> = HashMap::new();
    for order in orders {
        let Some(customer) = order.customer else {
            continue;
        };
        let date = order.at.date_naive();
        if date > params.as_of {
            continue;
        }
        let amount = params.rates.to_major(order.total)?;
        let acc = by_customer.entry(customer).or_insert((date, 0.0));
        acc.0 = acc.0.min(date);
        acc.1 += amount;
    }
    let currency = params.rates.target();
    let mut rows: Vec<CltvRow> = by_customer
        .into_iter()
        .map(|(customer, (first, revenue))| {
            let days = (params.as_of - first).num_days() as f64;
            let tenure_years = (days / DAYS_PER_YEAR).max(1.0);
            let yearly_margin = params.margin * revenue / tenure_years;
            CltvRow {
                customer,
                rank: 0,
                revenue,
                tenure_years,
                yearly_margin,
                cltv: yearly_margin * factor,
                currency,
            }
        })
        .collect();
    rows.sort_by(|a, b| {
        b.cltv
            .total_cmp(&a.cltv)
            .then_with(|| a.customer.cmp(&b.customer))
    });
    for (i, row) in rows.iter_mut().enumerate() {
        row.rank = u32::try_from(i + 1).unwrap_or(u32::MAX);
    }
    Ok(rows)
}
