//! Visit plan: which customers a field rep should see next, and why.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::{AnalyticsError, AnalyticsResult, Rates, RfmRow, Segment, check_range};
use crate::model::{Pipeline, Record, RecordId, RecordType, Value};

/// Case statuses that are finished.
const CASE_DONE: [&str; 2] = ["resolved", "closed"];
/// Open cases beyond this many add nothing more to the score.
const CASES_CAP: u64 = 3;

/// Weights of the score's components (each component is within 0..=1).
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VisitWeights {
    /// Open deal value (default 0.4).
    pub deal_value: f64,
    /// Time since the last activity (default 0.3).
    pub inactivity: f64,
    /// RFM segment at risk (default 0.2).
    pub risk: f64,
    /// Open cases (default 0.1).
    pub cases: f64,
}

impl Default for VisitWeights {
    fn default() -> Self {
        Self {
            deal_value: 0.4,
            inactivity: 0.3,
            risk: 0.2,
            cases: 0.1,
        }
    }
}

/// Whose plan, where, and how to weigh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitPlanParams {
    /// The day of planning.
    pub as_of: NaiveDate,
    /// Only customers this rep owns (case-insensitive; a contact without an owner takes its
    /// company's).
    pub owner: Option<String>,
    /// Only customers in this region (case-insensitive; a contact without a region takes its
    /// company's).
    pub region: Option<String>,
    /// Component weights.
    pub weights: VisitWeights,
    /// Days without activity at which the inactivity component is full (default 90).
    pub inactivity_cap_days: u32,
    /// Currency for deal values, with rates for deals in other currencies.
    pub rates: Rates,
    /// Most customers returned (default 20).
    pub limit: usize,
    /// Window of the RFM scoring the engine runs for the plan (default 365 days).
    pub rfm_window_days: u32,
}

impl VisitPlanParams {
    /// A plan for everyone's customers everywhere, with the default weights.
    pub fn new(as_of: NaiveDate, rates: Rates) -> Self {
        Self {
            as_of,
            owner: None,
            region: None,
            weights: VisitWeights::default(),
            inactivity_cap_days: 90,
            rates,
            limit: 20,
            rfm_window_days: 365,
        }
    }
}

/// The rows a visit plan reads.
#[derive(Debug, Clone, Copy)]
pub struct VisitInputs<'a> {
    /// Companies and contacts (other types are ignored).
    pub customers: &'a [Record],
    /// Deals.
    pub deals: &'a [Record],
    /// Activities.
    pub activities: &'a [Record],
    /// Cases.
    pub cases: &'a [Record],
    /// RFM rows of the customers who ordered.
    pub rfm: &'a [RfmRow],
    /// The deal pipeline (closed stages, default probabilities).
    pub pipeline: &'a Pipeline,
}

/// A component of a customer's score.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Enum))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactorKind {
    /// Weighted value of open deals.
    OpenDeals,
    /// Time since the last activity.
    Inactivity,
    /// RFM segment at risk.
    AtRisk,
    /// Open service cases.
    OpenCases,
}

/// One reason a customer ranks where it does.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// Which component.
    pub kind: FactorKind,
    /// Weight × component: its share of the score.
    pub contribution: f64,
    /// In words, e.g. "no activity for 45 days".
    pub detail: String,
}

/// A customer to visit.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitCandidate {
    /// The customer.
    pub customer: RecordId,
    /// Company or contact.
    pub record_type: RecordType,
    /// Its title.
    pub name: String,
    /// The score (higher first).
    pub score: f64,
    /// Σ amount × probability of its open deals, in major units of the reporting currency.
    pub open_deal_value: f64,
    /// Days since its last done activity; `None` if it has none.
    pub days_since_activity: Option<i64>,
    /// Its RFM segment, if it ordered.
    pub segment: Option<Segment>,
    /// Its open cases.
    pub open_cases: u64,
    /// The non-zero components, largest first.
    pub factors: Vec<Factor>,
}

/// The risk component of a segment: 1 for important-retain (valuable and lapsing), 0.5 for
/// important-develop and churned, 0 otherwise.
fn risk(segment: Option<Segment>) -> f64 {
    match segment {
        Some(Segment::ImportantRetain) => 1.0,
        Some(Segment::ImportantDevelop | Segment::Churned) => 0.5,
        _ => 0.0,
    }
}

fn same(a: Option<&str>, b: &str) -> bool {
    a.is_some_and(|a| a.trim().eq_ignore_ascii_case(b.trim()))
}

/// Ranks customers to visit.
///
/// `score = w_deal·D + w_inactivity·I + w_risk·R + w_cases·C`, each component within 0..=1:
/// - D = the customer's weighted open deal value (Σ amount × probability / 100 over its open
///   deals — deals linking it as `company` or in `contacts` — with probability as in the
///   pipeline report) ÷ the largest such value among the candidates (0 if none has any);
/// - I = min(days since its last activity with `done_at` on or before `as_of` — activities
///   listing it in `related` — , cap) ÷ cap; 1 when it has no activity;
/// - R = 1 for segment important-retain, 0.5 for important-develop or churned, else 0;
/// - C = min(open cases, 3) ÷ 3, cases linking it as `company` or `contact` whose status is
///   not resolved or closed.
///
/// Candidates are the companies and contacts passing the owner and region filters; ranked by
/// score, then id; at most `limit`.
pub fn visit_plan(
    inputs: VisitInputs<'_>,
    params: &VisitPlanParams,
) -> AnalyticsResult<Vec<VisitCandidate>> {
    let w = params.weights;
    for (name, v) in [
        ("weights.deal_value", w.deal_value),
        ("weights.inactivity", w.inactivity),
        ("weights.risk", w.risk),
        ("weights.cases", w.cases),
    ] {
        check_range(name, v, 0.0, 1e6)?;
    }
    if params.inactivity_cap_days == 0 {
        return Err(AnalyticsError::InvalidParameter {
            name: "inactivity_cap_days",
            reason: "must be at least 1".into(),
        });
    }
    let is_customer = |r: &Record| {
        !r.deleted && matches!(r.record_type, RecordType::Company | RecordType::Contact)
    };
    let by_id: HashMap<RecordId, &Record> = inputs
        .customers
        .iter()
        .filter(|r| is_customer(r))
        .map(|r| (r.id, r))
        .collect();
    // A contact's own value of a field, else its company's.
    let inherited = |r: &Record, field: &str| -> Option<String> {
        r.text(field).map(str::to_string).or_else(|| {
            let company = r.get("company").and_then(Value::as_link)?;
            by_id.get(&company)?.text(field).map(str::to_string)
        })
    };

    let mut deal_value: HashMap<RecordId, f64> = HashMap::new();
    for deal in inputs
        .deals
        .iter()
        .filter(|d| d.record_type == RecordType::Deal && !d.deleted)
    {
        let stage_name = deal.text("stage");
        let stage = stage_name.and_then(|s| inputs.pipeline.stage(s));
        if stage.is_some_and(|s| s.closed) {
            continue;
        }
        let Some(amount) = deal.get("amount").and_then(Value::as_money) else {
            continue;
        };
        let p = deal
            .get("probability")
            .and_then(Value::as_int)
            .map(|p| p.clamp(0, 100) as f64)
            .or(stage.map(|s| f64::from(s.probability)))
            .unwrap_or(0.0);
        let weighted = params.rates.to_major(amount)? * p / 100.0;
        let mut linked: Vec<RecordId> = deal
            .get("company")
            .and_then(Value::as_link)
            .into_iter()
            .collect();
        if let Some(Value::Links(ids)) = deal.get("contacts") {
            linked.extend(ids);
        }
        linked.sort();
        linked.dedup();
        for id in linked {
            *deal_value.entry(id).or_default() += weighted;
        }
    }

    let mut last_activity: HashMap<RecordId, NaiveDate> = HashMap::new();
    for activity in inputs
        .activities
        .iter()
        .filter(|a| a.record_type == RecordType::Activity && !a.deleted)
    {
        let Some(done) = activity.get("done_at").and_then(Value::as_timestamp) else {
            continue;
        };
        let day = done.date_naive();
        if day > params.as_of {
            continue;
        }
        if let Some(Value::Links(ids)) = activity.get("related") {
            for id in ids {
                let e = last_activity.entry(*id).or_insert(day);
                *e = (*e).max(day);
            }
        }
    }

    let mut open_cases: HashMap<RecordId, u64> = HashMap::new();
    for case in inputs
        .cases
        .iter()
        .filter(|c| c.record_type == RecordType::Case && !c.deleted)
    {
        if case.text("status").is_some_and(|s| CASE_DONE.contains(&s)) {
            continue;
        }
        let mut linked: Vec<RecordId> = ["company", "contact"]
            .iter()
            .filter_map(|f| case.get(f).and_then(Value::as_link))
            .collect();
        linked.dedup();
        for id in linked {
            *open_cases.entry(id).or_default() += 1;
        }
    }
    let segments: HashMap<RecordId, Segment> =
        inputs.rfm.iter().map(|r| (r.customer, r.segment)).collect();

    let candidates: Vec<&Record> = inputs
        .customers
        .iter()
        .filter(|r| is_customer(r))
        .filter(|r| {
            params
                .owner
                .as_deref()
                .is_none_or(|o| same(inherited(r, "owner").as_deref(), o))
        })
        .filter(|r| {
            params
                .region
                .as_deref()
                .is_none_or(|g| same(inherited(r, "region").as_deref(), g))
        })
        .collect();
    let max_value = candidates
        .iter()
        .filter_map(|r| deal_value.get(&r.id))
        .fold(0.0f64, |a, b| a.max(*b));
    let cap = f64::from(params.inactivity_cap_days);
    let currency = params.rates.target();
    let mut out: Vec<VisitCandidate> = candidates
        .into_iter()
        .map(|r| {
            let value = deal_value.get(&r.id).copied().unwrap_or(0.0);
            let days = last_activity
                .get(&r.id)
                .map(|d| (params.as_of - *d).num_days());
            let segment = segments.get(&r.id).copied();
            let cases = open_cases.get(&r.id).copied().unwrap_or(0);
            let d = if max_value > 0.0 {
                (value / max_value).max(0.0)
            } else {
                0.0
            };
            let i = days.map_or(1.0, |days| (days as f64).min(cap) / cap);
            let c = cases.min(CASES_CAP) as f64 / CASES_CAP as f64;
            let mut factors = vec![
                Factor {
                    kind: FactorKind::OpenDeals,
                    contribution: w.deal_value * d,
                    detail: format!("open deals worth {value:.2} {currency} weighted"),
                },
                Factor {
                    kind: FactorKind::Inactivity,
                    contribution: w.inactivity * i,
                    detail: match days {
                        Some(days) => format!("no activity for {days} days"),
                        None => "no activity on record".to_string(),
                    },
                },
                Factor {
                    kind: FactorKind::AtRisk,
                    contribution: w.risk * risk(segment),
                    detail: format!("RFM segment {}", segment.map_or("-", Segment::label)),
                },
                Factor {
                    kind: FactorKind::OpenCases,
                    contribution: w.cases * c,
                    detail: format!("{cases} open case(s)"),
                },
            ];
            let score = factors.iter().map(|f| f.contribution).sum();
            factors.retain(|f| f.contribution > 0.0);
            factors.sort_by(|a, b| b.contribution.total_cmp(&a.contribution));
            VisitCandidate {
                customer: r.id,
                record_type: r.record_type.clone(),
                name: r.title(),
                score,
                open_deal_value: value,
                days_since_activity: days,
                segment,
                open_cases: cases,
                factors,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.customer.cmp(&b.customer))
    });
    out.truncate(params.limit);
    Ok(out)
}
