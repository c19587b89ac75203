//! Pipeline value and stage-weighted forecast of open deals, win rate and sales cycle.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::{AnalyticsResult, CurrencySums, Month, Rates};
use crate::model::{Money, Pipeline, Record, RecordType, Value};

/// How to weigh deals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PipelineParams {
    /// Win probability in percent by stage name, overriding the pipeline's defaults for deals
    /// that have no probability of their own.
    pub stage_probability: BTreeMap<String, u8>,
    /// When set, every total is also given converted into this currency.
    pub rates: Option<Rates>,
}

/// Sums over a group of deals. Money is per currency (sorted by code), never summed across
/// currencies; `converted_*` are the same sums in the reporting currency when rates were given.
#[cfg_attr(feature = "uniffi", derive(crmsync_uniffi_derive::Record))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Number of deals.
    pub deals: u64,
    /// Σ amount, per currency.
    pub value: Vec<Money>,
    /// Σ amount × probability / 100, per currency (rounded once, at the end).
    pub weighted: Vec<Money>,
    /// Σ amount in the reporting currency.
    pub converted_value: Option<Money>,
    /// Σ amount × probability / 100 in the reporting currency.
    pub converted_weighted: Option<Money>,
}

/// Open deals in one stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTotals {
    /// The stage (`None`: deals without a stage). Pipeline stages come in pipeline order, then
    /// stages the pipeline no longer has, by name.
    pub stage: Option<String>,
    /// The sums.
    pub totals: Totals,
}

/// Open deals of one owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTotals {
    /// The owner (`None`: deals without one).
    pub owner: Option<String>,
    /// The sums.
    pub totals: Totals,
}

/// Open deals expected to close in one month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthTotals {
    /// `YYYY-MM` of `expected_close` (`None`: deals without one), in time order.
    pub month: Option<String>,
    /// The sums; `weighted` is the expected revenue of the month.
    pub totals: Totals,
}

/// The pipeline report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineReport {
    /// All open deals; `weighted` is the forecast.
    pub open: Totals,
    /// Open deals by stage.
    pub by_stage: Vec<StageTotals>,
    /// Open deals by owner, by name (no owner last).
    pub by_owner: Vec<OwnerTotals>,
    /// Open deals by month of expected close.
    pub by_close_month: Vec<MonthTotals>,
    /// Deals in a won stage.
    pub won: u64,
    /// Deals in a closed stage that is not won.
    pub lost: u64,
    /// `won / (won + lost)`; `None` before any deal closed.
    pub win_rate: Option<f64>,
    /// Σ amount of won deals, per currency.
    pub won_value: Vec<Money>,
    /// Mean days from creation to `closed_at` over won deals that have `closed_at`.
    pub avg_cycle_days: Option<f64>,
}

#[derive(Default)]
struct Acc {
    deals: u64,
    value: CurrencySums,
    weighted: CurrencySums,
    converted_value: f64,
    converted_weighted: f64,
}

impl Acc {
    fn add(&mut self, amount: Option<(Money, Option<f64>)>, probability: u8) {
        self.deals += 1;
        if let Some((money, converted)) = amount {
            let minor = i128::from(money.minor);
            self.value.add(money.currency, minor);
            self.weighted
                .add(money.currency, minor * i128::from(probability));
            if let Some(major) = converted {
                self.converted_value += major;
                self.converted_weighted += major * f64::from(probability) / 100.0;
            }
        }
    }

    fn finish(&self, rates: Option<&Rates>) -> AnalyticsResult<Totals> {
        Ok(Totals {
            deals: self.deals,
            value: self.value.to_money(1, "deal amounts")?,
            weighted: self.weighted.to_money(100, "weighted deal amounts")?,
            converted_value: rates
                .map(|r| r.money_from_major(self.converted_value))
                .transpose()?,
            converted_weighted: rates
                .map(|r| r.money_from_major(self.converted_weighted))
                .transpose()?,
        })
    }
}

/// The pipeline report over deal rows (other record types and deleted rows are skipped).
///
/// A deal is *open* unless its stage is a closed stage of `pipeline`; a stage the pipeline does
/// not have counts as open. Its probability `p` (percent) is its own `probability` field, else
/// `params.stage_probability[stage]`, else the pipeline stage's default, else 0. Then for every
/// group of open deals (all, by stage, by owner, by month of `expected_close`):
/// `value = Σ amount` and `weighted = Σ amount × p / 100` per currency, and in the reporting
/// currency when rates are given. Deals without an amount count in `deals` only.
///
/// `win_rate = won / (won + lost)` over closed deals; `avg_cycle_days` is the mean of
/// `closed_at − created_at` (in days) over won deals with `closed_at`.
pub fn pipeline_report(
    deals: &[Record],
    pipeline: &Pipeline,
    params: &PipelineParams,
) -> AnalyticsResult<PipelineReport> {
    let rates = params.rates.as_ref();
    let mut open = Acc::default();
    let mut by_stage: HashMap<Option<&str>, Acc> = HashMap::new();
    let mut by_owner: BTreeMap<Option<&str>, Acc> = BTreeMap::new();
    let mut by_month: BTreeMap<Option<Month>, Acc> = BTreeMap::new();
    let (mut won, mut lost) = (0u64, 0u64);
    let mut won_value = CurrencySums::default();
    let (mut cycle_sum, mut cycles) = (0.0f64, 0u64);
    for deal in deals {
        if deal.record_type != RecordType::Deal || deal.deleted {
            continue;
        }
        let stage_name = deal.text("stage");
        let stage = stage_name.and_then(|s| pipeline.stage(s));
        let amount = deal.get("amount").and_then(Value::as_money);
        if let Some(stage) = stage.filter(|s| s.closed) {
            if stage.won {
                won += 1;
                if let Some(m) = amount {
                    won_value.add(m.currency, i128::from(m.minor));
                }
                if let Some(closed) = deal.get("closed_at").and_then(Value::as_timestamp) {
                    cycle_sum +=
                        (closed - deal.created_at).num_milliseconds() as f64 / 86_400_000.0;
                    cycles += 1;
                }
            } else {
                lost += 1;
            }
            continue;
        }
        let probability = deal
            .get("probability")
            .and_then(Value::as_int)
            .map(|p| p.clamp(0, 100) as u8)
            .or_else(|| stage_name.and_then(|s| params.stage_probability.get(s).copied()))
            .or(stage.map(|s| s.probability))
            .unwrap_or(0)
            .min(100);
        let amount = match amount {
            Some(m) => Some((m, rates.map(|r| r.to_major(m)).transpose()?)),
            None => None,
        };
        open.add(amount, probability);
        by_stage
            .entry(stage_name)
            .or_default()
            .add(amount, probability);
        by_owner
            .entry(deal.text("owner"))
            .or_default()
            .add(amount, probability);
        let month = match deal.get("expected_close") {
            Some(Value::Date(d)) => Some(Month::of(*d)),
            _ => None,
        };
        by_month.entry(month).or_default().add(amount, probability);
    }

    // Stages: pipeline order first, then unknown names, then "no stage".
    let mut stage_keys: Vec<Option<&str>> = pipeline
        .stages
        .iter()
        .filter(|s| !s.closed)
        .map(|s| Some(s.name.as_str()))
        .collect();
    let mut unknown: Vec<Option<&str>> = by_stage
        .keys()
        .filter(|k| k.is_some_and(|n| pipeline.stage(n).is_none()))
        .copied()
        .collect();
    unknown.sort();
    stage_keys.extend(unknown);
    if by_stage.contains_key(&None) {
        stage_keys.push(None);
    }
    let empty = Acc::default();
    let by_stage = stage_keys
        .into_iter()
        .map(|k| {
            Ok(StageTotals {
                stage: k.map(str::to_string),
                totals: by_stage.get(&k).unwrap_or(&empty).finish(rates)?,
            })
        })
        .collect::<AnalyticsResult<_>>()?;
    // BTreeMap puts None first; the report lists it last.
    let mut by_owner: Vec<OwnerTotals> = by_owner
        .iter()
        .map(|(k, acc)| {
            Ok(OwnerTotals {
                owner: k.map(str::to_string),
                totals: acc.finish(rates)?,
            })
        })
        .collect::<AnalyticsResult<_>>()?;
    by_owner.sort_by_key(|o| o.owner.is_none());
    let mut by_close_month: Vec<MonthTotals> = by_month
        .iter()
        .map(|(k, acc)| {
            Ok(MonthTotals {
                month: k.map(|m| m.to_string()),
                totals: acc.finish(rates)?,
            })
        })
        .collect::<AnalyticsResult<_>>()?;
    by_close_month.sort_by_key(|m| m.month.is_none());
    Ok(PipelineReport {
        open: open.finish(rates)?,
        by_stage,
        by_owner,
        by_close_month,
        won,
        lost,
        win_rate: (won + lost > 0).then(|| won as f64 / (won + lost) as f64),
        won_value: won_value.to_money(1, "won deal amounts")?,
        avg_cycle_days: (cycles > 0).then(|| cycle_sum / cycles as f64),
    })
}
