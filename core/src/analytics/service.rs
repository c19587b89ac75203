//! Service statistics over cases.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, median};
use crate::model::{Record, RecordId, RecordType, Value};

/// Case statuses that are finished.
const DONE: [&str; 2] = ["resolved", "closed"];
/// Key for cases without a status or priority.
const UNSET: &str = "unset";

/// Which cases, and what counts as repeated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceParams {
    /// Only cases created at or after this moment (default: all).
    pub since: Option<DateTime<Utc>>,
    /// A customer with at least this many cases is listed as repeated (default 2, at least 2).
    pub repeat_threshold: u64,
}

impl Default for ServiceParams {
    fn default() -> Self {
        Self {
            since: None,
            repeat_threshold: 2,
        }
    }
}

/// A customer who keeps opening cases.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepeatCustomer {
    /// The customer: the case's company, else its contact.
    pub customer: RecordId,
    /// Its cases.
    pub cases: u64,
    /// Those not resolved or closed.
    pub open: u64,
}

/// Case statistics.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Cases counted.
    pub cases: u64,
    /// Cases by status (`unset` for none).
    pub by_status: BTreeMap<String, u64>,
    /// Cases by priority (`unset` for none).
    pub by_priority: BTreeMap<String, u64>,
    /// Cases with `resolved_at`.
    pub resolved: u64,
    /// Median hours from creation to `resolved_at` over those.
    pub median_resolution_hours: Option<f64>,
    /// Cases with a satisfaction rating.
    pub rated: u64,
    /// Mean satisfaction (1-5) over those.
    pub avg_satisfaction: Option<f64>,
    /// Customers with at least `repeat_threshold` cases, most cases first (then by id).
    pub repeat_customers: Vec<RepeatCustomer>,
}

/// Service statistics over case rows (other types and deleted rows are skipped).
///
/// Counts by `status` and `priority`; `median_resolution_hours` = median of
/// `resolved_at − created_at` (hours, negative clock skew counted as 0) over cases with
/// `resolved_at`; `avg_satisfaction` = mean of `satisfaction` over rated cases; a case belongs
/// to its `company`, else its `contact`, and customers with `repeat_threshold` or more cases
/// are listed.
pub fn service_stats(cases: &[Record], params: &ServiceParams) -> AnalyticsResult<ServiceStats> {
    if params.repeat_threshold < 2 {
        return Err(AnalyticsError::InvalidParameter {
            name: "repeat_threshold",
            reason: format!("must be at least 2, got {}", params.repeat_threshold),
        });
    }
    let mut stats = ServiceStats {
        cases: 0,
        by_status: BTreeMap::new(),
        by_priority: BTreeMap::new(),
        resolved: 0,
        median_resolution_hours: None,
        rated: 0,
        avg_satisfaction: None,
        repeat_customers: Vec::new(),
    };
    let mut hours = Vec::new();
    let mut satisfaction_sum = 0i64;
    let mut per_customer: HashMap<RecordId, (u64, u64)> = HashMap::new();
    for case in cases {
        if case.record_type != RecordType::Case || case.deleted {
            continue;
        }
        if params.since.is_some_and(|s| case.created_at < s) {
            continue;
        }
        stats.cases += 1;
        let status = case.text("status");
        *stats
            .by_status
            .entry(status.unwrap_or(UNSET).to_string())
            .or_default() += 1;
        *stats
            .by_priority
            .entry(case.text("priority").unwrap_or(UNSET).to_string())
            .or_default() += 1;
        if let Some(resolved) = case.get("resolved_at").and_then(Value::as_timestamp) {
            stats.resolved += 1;
            let ms = (resolved - case.created_at).num_milliseconds().max(0);
            hours.push(ms as f64 / 3_600_000.0);
        }
        if let Some(score) = case.get("satisfaction").and_then(Value::as_int) {
            stats.rated += 1;
            satisfaction_sum += score;
        }
        let customer = case
            .get("company")
            .and_then(Value::as_link)
            .or_else(|| case.get("contact").and_then(Value::as_link));
        if let Some(customer) = customer {
            let e = per_customer.entry(customer).or_default();
            e.0 += 1;
            if !status.is_some_and(|s| DONE.contains(&s)) {
                e.1 += 1;
            }
        }
    }
    stats.median_resolution_hours = median(hours);
    stats.avg_satisfaction =
        (stats.rated > 0).then(|| satisfaction_sum as f64 / stats.rated as f64);
    stats.repeat_customers = per_customer
        .into_iter()
        .filter(|(_, (n, _))| *n >= params.repeat_threshold)
        .map(|(customer, (cases, open))| RepeatCustomer {
            customer,
            cases,
            open,
        })
        .collect();
    stats
        .repeat_customers
        .sort_by(|a, b| b.cases.cmp(&a.cases).then(a.customer.cmp(&b.customer)));
    Ok(stats)
}
