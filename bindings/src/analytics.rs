//! Analytics: pipeline report, stage funnel, RFM segments, customer lifetime value, service
//! statistics, sales forecast, product associations and recommendations, the visit plan, and
//! the rows they read (order facts and baskets), as `async` calls on [`Engine`]. Options leave
//! out what has a core default; the formulas are in the core's `analytics` module.

use std::collections::HashMap;
use std::time::SystemTime;

use crmsync::analytics::{self as an, Rates};

use crate::engine::Engine;
use crate::error::CrmError;
use crate::runtime::run_blocking;
use crate::value::{Money, parse_currency, parse_date, parse_id, to_instant, to_usize, to_utc};

/// Exchange rates into one reporting currency, given by the app (analytics never fetch
/// rates). Amounts in another currency without a rate make the analysis fail with `Analytics`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ExchangeRates {
    /// The reporting currency (ISO 4217).
    pub target: String,
    /// Units of `target` one major unit of each currency is worth (e.g. "EUR" → 1.08).
    #[uniffi(default)]
    pub rates: HashMap<String, f64>,
}

impl TryFrom<ExchangeRates> for Rates {
    type Error = CrmError;
    fn try_from(r: ExchangeRates) -> Result<Self, CrmError> {
        let mut rates = Rates::new(parse_currency(&r.target)?);
        for (code, rate) in r.rates {
            rates = rates.with_rate(parse_currency(&code)?, rate)?;
        }
        Ok(rates)
    }
}

/// One sold order as the analytics read it: who bought, when, and for how much. RFM, the
/// lifetime value and the sales forecast are computed from these rows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrderFact {
    /// The order's id.
    pub order: String,
    /// The buying contact or company, when the order links one.
    pub customer: Option<String>,
    /// When it was ordered (its `ordered_at`).
    pub at: SystemTime,
    /// Its value: the `total` field when set, else the sum of quantity × unit price over its
    /// lines.
    pub total: Money,
}

impl From<an::OrderFact> for OrderFact {
    fn from(f: an::OrderFact) -> Self {
        OrderFact {
            order: f.order.to_string(),
            customer: f.customer.map(|c| c.to_string()),
            at: to_instant(f.at),
            total: f.total.into(),
        }
    }
}

/// Options of the pipeline report.
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct PipelineOptions {
    /// Win probability in percent by stage, overriding the pipeline's defaults for deals that
    /// have no probability of their own.
    #[uniffi(default)]
    pub stage_probability: HashMap<String, u8>,
    /// When given, every total is also converted into the reporting currency.
    #[uniffi(default = None)]
    pub rates: Option<ExchangeRates>,
}

/// Sums over a group of deals: money per currency (sorted by code), never summed across
/// currencies; `converted_*` in the reporting currency when rates were given.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Totals {
    /// Number of deals.
    pub deals: u64,
    /// Sum of amounts, per currency.
    pub value: Vec<Money>,
    /// Sum of amounts weighted by win probability, per currency.
    pub weighted: Vec<Money>,
    /// `value` converted into the reporting currency.
    pub converted_value: Option<Money>,
    /// `weighted` converted into the reporting currency.
    pub converted_weighted: Option<Money>,
}

impl From<an::Totals> for Totals {
    fn from(t: an::Totals) -> Self {
        Totals {
            deals: t.deals,
            value: t.value.into_iter().map(Money::from).collect(),
            weighted: t.weighted.into_iter().map(Money::from).collect(),
            converted_value: t.converted_value.map(Money::from),
            converted_weighted: t.converted_weighted.map(Money::from),
        }
    }
}

/// Open deals of one group: a stage, an owner or a close month (`YYYY-MM`).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GroupTotals {
    /// The group (absent: deals without a stage, owner or close date).
    pub group: Option<String>,
    /// The sums.
    pub totals: Totals,
}

/// The pipeline report.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct PipelineReport {
    /// All open deals.
    pub open: Totals,
    /// Open deals by stage, in pipeline order.
    pub by_stage: Vec<GroupTotals>,
    /// Open deals by owner.
    pub by_owner: Vec<GroupTotals>,
    /// Open deals by expected close month, in time order.
    pub by_close_month: Vec<GroupTotals>,
    /// Deals won.
    pub won: u64,
    /// Deals lost.
    pub lost: u64,
    /// `won / (won + lost)`, absent without closed deals.
    pub win_rate: Option<f64>,
    /// Value won, per currency.
    pub won_value: Vec<Money>,
    /// Mean days from creation to close of closed deals.
    pub avg_cycle_days: Option<f64>,
}

impl From<an::PipelineReport> for PipelineReport {
    fn from(r: an::PipelineReport) -> Self {
        let group = |g: Option<String>, t: an::Totals| GroupTotals {
            group: g,
            totals: t.into(),
        };
        PipelineReport {
            open: r.open.into(),
            by_stage: r
                .by_stage
                .into_iter()
                .map(|s| group(s.stage, s.totals))
                .collect(),
            by_owner: r
                .by_owner
                .into_iter()
                .map(|s| group(s.owner, s.totals))
                .collect(),
            by_close_month: r
                .by_close_month
                .into_iter()
                .map(|s| group(s.month, s.totals))
                .collect(),
            won: r.won,
            lost: r.lost,
            win_rate: r.win_rate,
            won_value: r.won_value.into_iter().map(Money::from).collect(),
            avg_cycle_days: r.avg_cycle_days,
        }
    }
}

/// One stage of the funnel.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FunnelStage {
    /// The stage.
    pub stage: String,
    /// Deals that were ever in this stage.
    pub entered: u64,
    /// Deals that reached this stage or a later one.
    pub reached: u64,
    /// Share of deals reaching this stage that reached the next.
    pub conversion_to_next: Option<f64>,
    /// Median days spent in the stage.
    pub median_days: Option<f64>,
    /// Deals whose time in the stage is known.
    pub deals_timed: u64,
}

/// The stage funnel over every live deal's stage history.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct FunnelReport {
    /// Deals counted.
    pub deals: u64,
    /// Deals lost.
    pub lost: u64,
    /// Open and won stages, in pipeline order.
    pub stages: Vec<FunnelStage>,
}

impl From<an::FunnelReport> for FunnelReport {
    fn from(r: an::FunnelReport) -> Self {
        FunnelReport {
            deals: r.deals,
            lost: r.lost,
            stages: r
                .stages
                .into_iter()
                .map(|s| FunnelStage {
                    stage: s.stage,
                    entered: s.entered,
                    reached: s.reached,
                    conversion_to_next: s.conversion_to_next,
                    median_days: s.median_days,
                    deals_timed: s.deals_timed,
                })
                .collect(),
        }
    }
}

/// Options of RFM scoring.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct RfmOptions {
    /// The day of the analysis, `YYYY-MM-DD` (later orders are ignored).
    pub as_of: String,
    /// Days of orders counted for frequency and monetary value (core default: 365).
    #[uniffi(default = None)]
    pub window_days: Option<u32>,
    /// Reporting currency and rates.
    pub rates: ExchangeRates,
}

/// An RFM segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Segment {
    /// Recent, frequent, big spenders: keep them.
    ImportantKeep,
    /// Frequent big spenders who have not bought lately: develop them.
    ImportantDevelop,
    /// Big spenders who rarely and not lately buy: win them back.
    ImportantRetain,
    /// Everyone else.
    General,
    /// The least recent buyers who are not important.
    Churned,
}

impl From<an::Segment> for Segment {
    fn from(s: an::Segment) -> Self {
        match s {
            an::Segment::ImportantKeep => Segment::ImportantKeep,
            an::Segment::ImportantDevelop => Segment::ImportantDevelop,
            an::Segment::ImportantRetain => Segment::ImportantRetain,
            an::Segment::General => Segment::General,
            an::Segment::Churned => Segment::Churned,
        }
    }
}

/// One customer's RFM scores.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RfmRow {
    /// The customer (contact or company id).
    pub customer: String,
    /// Days since the last order.
    pub recency_days: i64,
    /// Orders in the window.
    pub frequency: u64,
    /// Spend in the window, in the reporting currency.
    pub monetary: Money,
    /// Recency score, 1 (worst) to 5 (best).
    pub r: u8,
    /// Frequency score, 1 to 5.
    pub f: u8,
    /// Monetary score, 1 to 5.
    pub m: u8,
    /// The segment.
    pub segment: Segment,
}

/// Options of the customer lifetime value; absent values take the core defaults (10 %
/// discount, 5-year horizon, 80 % retention, 30 % margin).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CltvOptions {
    /// The day of the analysis, `YYYY-MM-DD`.
    pub as_of: String,
    /// Yearly discount rate.
    #[uniffi(default = None)]
    pub discount_rate: Option<f64>,
    /// Years summed after this one.
    #[uniffi(default = None)]
    pub horizon_years: Option<u32>,
    /// Share of a year's margin kept the next year, 0 to 1.
    #[uniffi(default = None)]
    pub retention: Option<f64>,
    /// Gross margin as a share of revenue, 0 to 1.
    #[uniffi(default = None)]
    pub margin: Option<f64>,
    /// Reporting currency and rates.
    pub rates: ExchangeRates,
}

/// One customer's lifetime value; amounts in major units of `currency`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CltvRow {
    /// The customer.
    pub customer: String,
    /// 1 for the highest value.
    pub rank: u32,
    /// Revenue of all orders up to the day of the analysis.
    pub revenue: f64,
    /// Years from the first order, at least 1.
    pub tenure_years: f64,
    /// Projected margin of this year.
    pub yearly_margin: f64,
    /// The lifetime value.
    pub cltv: f64,
    /// The reporting currency.
    pub currency: String,
}

/// Options of the service statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ServiceOptions {
    /// Only cases created at or after this moment (default: all).
    #[uniffi(default = None)]
    pub since: Option<SystemTime>,
    /// Cases from one customer that make it a repeat customer (core default: 2).
    #[uniffi(default = None)]
    pub repeat_threshold: Option<u64>,
}

/// A customer who keeps opening cases.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RepeatCustomer {
    /// The customer.
    pub customer: String,
    /// Its cases.
    pub cases: u64,
    /// How many are still open.
    pub open: u64,
}

/// Support case statistics.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ServiceStats {
    /// Cases counted.
    pub cases: u64,
    /// Cases by status.
    pub by_status: HashMap<String, u64>,
    /// Cases by priority.
    pub by_priority: HashMap<String, u64>,
    /// Cases resolved.
    pub resolved: u64,
    /// Median hours from creation to resolution.
    pub median_resolution_hours: Option<f64>,
    /// Cases with a satisfaction rating.
    pub rated: u64,
    /// Mean satisfaction (1-5).
    pub avg_satisfaction: Option<f64>,
    /// Customers with many cases, most first.
    pub repeat_customers: Vec<RepeatCustomer>,
}

impl From<an::ServiceStats> for ServiceStats {
    fn from(s: an::ServiceStats) -> Self {
        ServiceStats {
            cases: s.cases,
            by_status: s.by_status.into_iter().collect(),
            by_priority: s.by_priority.into_iter().collect(),
            resolved: s.resolved,
            median_resolution_hours: s.median_resolution_hours,
            rated: s.rated,
            avg_satisfaction: s.avg_satisfaction,
            repeat_customers: s
                .repeat_customers
                .into_iter()
                .map(|c| RepeatCustomer {
                    customer: c.customer.to_string(),
                    cases: c.cases,
                    open: c.open,
                })
                .collect(),
        }
    }
}

#[uniffi::export]
impl Engine {
    /// Pipeline value, weighted forecast, win rate and cycle length of the deals.
    #[uniffi::method(default(options = None))]
    pub async fn pipeline_report(
        &self,
        options: Option<PipelineOptions>,
    ) -> Result<PipelineReport, CrmError> {
        let engine = self.core()?;
        let options = options.unwrap_or_default();
        let params = an::PipelineParams {
            stage_probability: options.stage_probability.into_iter().collect(),
            rates: options.rates.map(Rates::try_from).transpose()?,
        };
        run_blocking(move || Ok(engine.pipeline_report(&params)?.into())).await
    }

    /// The stage funnel from every live deal's stage history (reads each deal's history, so
    /// it costs more than the other analyses).
    pub async fn stage_funnel(&self) -> Result<FunnelReport, CrmError> {
        let engine = self.core()?;
        run_blocking(move || Ok(engine.stage_funnel()?.into())).await
    }

    /// RFM scores and segments of every customer who ordered.
    pub async fn rfm(&self, options: RfmOptions) -> Result<Vec<RfmRow>, CrmError> {
        let engine = self.core()?;
        let mut params = an::RfmParams::new(parse_date(&options.as_of)?, options.rates.try_into()?);
        if let Some(days) = options.window_days {
            params.window_days = days;
        }
        run_blocking(move || {
            let rows = engine.rfm(&params)?;
            Ok(rows
                .into_iter()
                .map(|r| RfmRow {
                    customer: r.customer.to_string(),
                    recency_days: r.recency_days,
                    frequency: r.frequency,
                    monetary: r.monetary.into(),
                    r: r.score.r,
                    f: r.score.f,
                    m: r.score.m,
                    segment: r.segment.into(),
                })
                .collect())
        })
        .await
    }

    /// Customer lifetime values, highest first.
    pub async fn lifetime_values(&self, options: CltvOptions) -> Result<Vec<CltvRow>, CrmError> {
        let engine = self.core()?;
        let mut params =
            an::CltvParams::new(parse_date(&options.as_of)?, options.rates.try_into()?);
        if let Some(d) = options.discount_rate {
            params.discount_rate = d;
        }
        if let Some(h) = options.horizon_years {
            params.horizon_years = h;
        }
        if let Some(r) = options.retention {
            params.retention = r;
        }
        if let Some(m) = options.margin {
            params.margin = m;
        }
        run_blocking(move || {
            let rows = engine.lifetime_values(&params)?;
            Ok(rows
                .into_iter()
                .map(|r| CltvRow {
                    customer: r.customer.to_string(),
                    rank: r.rank,
                    revenue: r.revenue,
                    tenure_years: r.tenure_years,
                    yearly_margin: r.yearly_margin,
                    cltv: r.cltv,
                    currency: r.currency.code().to_string(),
                })
                .collect())
        })
        .await
    }

    /// Support case statistics: counts by status and priority, resolution time, satisfaction,
    /// repeat customers.
    #[uniffi::method(default(options = None))]
    pub async fn service_stats(
        &self,
        options: Option<ServiceOptions>,
    ) -> Result<ServiceStats, CrmError> {
        let engine = self.core()?;
        let options = options.unwrap_or_default();
        let mut params = an::ServiceParams {
            since: options.since.map(to_utc).transpose()?,
            ..an::ServiceParams::default()
        };
        if let Some(n) = options.repeat_threshold {
            params.repeat_threshold = n;
        }
        run_blocking(move || Ok(engine.service_stats(&params)?.into())).await
    }
}

/// Fixed smoothing parameters of the forecast, each within 0 to 1.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct Smoothing {
    /// Level smoothing α.
    pub alpha: f64,
    /// Trend smoothing β.
    pub beta: f64,
    /// Seasonal smoothing γ (ignored by Holt's method).
    pub gamma: f64,
}

impl From<Smoothing> for an::Smoothing {
    fn from(s: Smoothing) -> Self {
        an::Smoothing {
            alpha: s.alpha,
            beta: s.beta,
            gamma: s.gamma,
        }
    }
}

impl From<an::Smoothing> for Smoothing {
    fn from(s: an::Smoothing) -> Self {
        Smoothing {
            alpha: s.alpha,
            beta: s.beta,
            gamma: s.gamma,
        }
    }
}

/// Options of the sales forecast; absent values take the core defaults (12 months ahead,
/// yearly seasonality, fitted smoothing, history through the last order's month).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ForecastOptions {
    /// Revenue currency, with rates for orders in other currencies.
    pub rates: ExchangeRates,
    /// Months to forecast.
    #[uniffi(default = None)]
    pub horizon: Option<u32>,
    /// Season length in months.
    #[uniffi(default = None)]
    pub season_length: Option<u32>,
    /// Fixed smoothing; absent: fitted.
    #[uniffi(default = None)]
    pub smoothing: Option<Smoothing>,
    /// The history ends with the month of this day, `YYYY-MM-DD` (later orders are ignored).
    #[uniffi(default = None)]
    pub through: Option<String>,
}

/// Which model the forecast fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ForecastMethod {
    /// Additive trend and additive seasonality.
    HoltWinters,
    /// Additive trend only (too little history for seasons).
    Holt,
}

/// The fitted exponential smoothing model.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ForecastModel {
    /// Which model.
    pub method: ForecastMethod,
    /// Season length (0 for Holt).
    pub season_length: u64,
    /// Smoothing used (`gamma` is 0 for Holt).
    pub smoothing: Smoothing,
    /// Whether the smoothing was fitted (false when fixed by the options).
    pub fitted: bool,
    /// Initial level.
    pub initial_level: f64,
    /// Initial trend.
    pub initial_trend: f64,
    /// Initial seasonal states.
    pub initial_seasonal: Vec<f64>,
    /// Final level.
    pub level: f64,
    /// Final trend.
    pub trend: f64,
    /// Final seasonal states by phase.
    pub seasonal: Vec<f64>,
    /// Number of observations.
    pub n: u64,
    /// Sum of squared one-step errors.
    pub sse: f64,
}

/// A month's value, in major units of the forecast's currency.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct MonthValue {
    /// `YYYY-MM`.
    pub month: String,
    /// Revenue (history) or point forecast.
    pub value: f64,
}

/// Monthly revenue, the fitted model and its forecast.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SalesForecast {
    /// Currency of every value.
    pub currency: String,
    /// Revenue per month from the first order's month, empty months as 0.
    pub history: Vec<MonthValue>,
    /// The fitted model.
    pub model: ForecastModel,
    /// Point forecasts for the months after the history.
    pub forecast: Vec<MonthValue>,
}

fn month_values(values: Vec<an::MonthValue>) -> Vec<MonthValue> {
    values
        .into_iter()
        .map(|m| MonthValue {
            month: m.month,
            value: m.value,
        })
        .collect()
}

impl From<an::SalesForecast> for SalesForecast {
    fn from(f: an::SalesForecast) -> Self {
        let m = f.model;
        SalesForecast {
            currency: f.currency.code().to_string(),
            history: month_values(f.history),
            model: ForecastModel {
                method: match m.method {
                    an::ForecastMethod::HoltWinters => ForecastMethod::HoltWinters,
                    an::ForecastMethod::Holt => ForecastMethod::Holt,
                },
                season_length: m.season_length as u64,
                smoothing: m.smoothing.into(),
                fitted: m.fitted,
                initial_level: m.initial_level,
                initial_trend: m.initial_trend,
                initial_seasonal: m.initial_seasonal,
                level: m.level,
                trend: m.trend,
                seasonal: m.seasonal,
                n: m.n as u64,
                sse: m.sse,
            },
            forecast: month_values(f.forecast),
        }
    }
}

/// Thresholds of the product associations (Apriori); absent values take the core defaults
/// (support 0.01, confidence 0.5, no size limit).
#[derive(Debug, Clone, Default, PartialEq, uniffi::Record)]
pub struct AprioriOptions {
    /// Minimum support of a frequent itemset, in (0, 1].
    #[uniffi(default = None)]
    pub min_support: Option<f64>,
    /// Minimum confidence of a rule, in [0, 1].
    #[uniffi(default = None)]
    pub min_confidence: Option<f64>,
    /// Largest itemset searched.
    #[uniffi(default = None)]
    pub max_len: Option<u32>,
}

impl TryFrom<AprioriOptions> for an::AprioriParams {
    type Error = CrmError;
    fn try_from(o: AprioriOptions) -> Result<Self, CrmError> {
        let mut params = an::AprioriParams::default();
        if let Some(s) = o.min_support {
            params.min_support = s;
        }
        if let Some(c) = o.min_confidence {
            params.min_confidence = c;
        }
        params.max_len = o.max_len.map(|n| to_usize(n.into())).transpose()?;
        Ok(params)
    }
}

/// A frequent set of products (by SKU).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Itemset {
    /// Its items, sorted.
    pub items: Vec<String>,
    /// Orders holding every item.
    pub count: u64,
    /// `count / orders`.
    pub support: f64,
}

/// An association rule: orders with `antecedent` also hold `consequent`.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct AssociationRule {
    /// Items bought (sorted).
    pub antecedent: Vec<String>,
    /// Items also bought (sorted).
    pub consequent: Vec<String>,
    /// Support of both together.
    pub support: f64,
    /// Support of the antecedent.
    pub antecedent_support: f64,
    /// Support of the consequent.
    pub consequent_support: f64,
    /// `support / antecedent_support`.
    pub confidence: f64,
    /// `confidence / consequent_support`.
    pub lift: f64,
}

impl From<an::Rule> for AssociationRule {
    fn from(r: an::Rule) -> Self {
        AssociationRule {
            antecedent: r.antecedent,
            consequent: r.consequent,
            support: r.support,
            antecedent_support: r.antecedent_support,
            consequent_support: r.consequent_support,
            confidence: r.confidence,
            lift: r.lift,
        }
    }
}

/// Frequent itemsets and association rules over the orders.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Associations {
    /// Orders counted (the support denominator).
    pub baskets: u64,
    /// Frequent itemsets by size, then support.
    pub itemsets: Vec<Itemset>,
    /// Rules by lift, then confidence.
    pub rules: Vec<AssociationRule>,
}

impl From<an::Associations> for Associations {
    fn from(a: an::Associations) -> Self {
        Associations {
            baskets: a.baskets,
            itemsets: a
                .itemsets
                .into_iter()
                .map(|i| Itemset {
                    items: i.items,
                    count: i.count,
                    support: i.support,
                })
                .collect(),
            rules: a.rules.into_iter().map(AssociationRule::from).collect(),
        }
    }
}

/// A product to suggest to a customer, with the rule suggesting it.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Recommendation {
    /// The item (SKU).
    pub item: String,
    /// The rule; its antecedent is within what the customer bought.
    pub because: AssociationRule,
}

/// Weights of the visit score's components.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct VisitWeights {
    /// Open deal value (core default 0.4).
    pub deal_value: f64,
    /// Time since the last activity (core default 0.3).
    pub inactivity: f64,
    /// RFM segment at risk (core default 0.2).
    pub risk: f64,
    /// Open cases (core default 0.1).
    pub cases: f64,
}

/// Options of the visit plan; absent values take the core defaults (everyone's customers
/// everywhere, default weights, 90-day inactivity cap, 20 customers, 365-day RFM window).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisitPlanOptions {
    /// The day of planning, `YYYY-MM-DD`.
    pub as_of: String,
    /// Currency for deal values, with rates for deals in other currencies.
    pub rates: ExchangeRates,
    /// Only customers this rep owns.
    #[uniffi(default = None)]
    pub owner: Option<String>,
    /// Only customers in this region.
    #[uniffi(default = None)]
    pub region: Option<String>,
    /// Component weights.
    #[uniffi(default = None)]
    pub weights: Option<VisitWeights>,
    /// Days without activity at which the inactivity component is full.
    #[uniffi(default = None)]
    pub inactivity_cap_days: Option<u32>,
    /// Most customers returned.
    #[uniffi(default = None)]
    pub limit: Option<u32>,
    /// Window of the RFM scoring, in days.
    #[uniffi(default = None)]
    pub rfm_window_days: Option<u32>,
}

/// A component of a customer's visit score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
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
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Factor {
    /// Which component.
    pub kind: FactorKind,
    /// Its share of the score (weight × component).
    pub contribution: f64,
    /// In words, e.g. "no activity for 45 days".
    pub detail: String,
}

/// A customer to visit.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct VisitCandidate {
    /// The customer's id.
    pub customer: String,
    /// Company or contact.
    pub record_type: String,
    /// Its title.
    pub name: String,
    /// The score (higher first).
    pub score: f64,
    /// Weighted value of its open deals, in major units of the reporting currency.
    pub open_deal_value: f64,
    /// Days since its last done activity; absent if it has none.
    pub days_since_activity: Option<i64>,
    /// Its RFM segment, if it ordered.
    pub segment: Option<Segment>,
    /// Its open cases.
    pub open_cases: u64,
    /// The non-zero components, largest first.
    pub factors: Vec<Factor>,
}

impl From<an::VisitCandidate> for VisitCandidate {
    fn from(c: an::VisitCandidate) -> Self {
        VisitCandidate {
            customer: c.customer.to_string(),
            record_type: c.record_type.to_string(),
            name: c.name,
            score: c.score,
            open_deal_value: c.open_deal_value,
            days_since_activity: c.days_since_activity,
            segment: c.segment.map(Segment::from),
            open_cases: c.open_cases,
            factors: c
                .factors
                .into_iter()
                .map(|f| Factor {
                    kind: match f.kind {
                        an::FactorKind::OpenDeals => FactorKind::OpenDeals,
                        an::FactorKind::Inactivity => FactorKind::Inactivity,
                        an::FactorKind::AtRisk => FactorKind::AtRisk,
                        an::FactorKind::OpenCases => FactorKind::OpenCases,
                    },
                    contribution: f.contribution,
                    detail: f.detail,
                })
                .collect(),
        }
    }
}

#[uniffi::export]
impl Engine {
    /// Every sold order as an [`OrderFact`], in the store's order. An order counts as sold
    /// unless it is deleted, a `draft` or `cancelled`, has no `ordered_at`, or has neither a
    /// `total` nor priced lines. Fails with `Analytics` if a counted order's lines mix
    /// currencies.
    pub async fn order_facts(&self) -> Result<Vec<OrderFact>, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let facts = engine.order_facts()?;
            Ok(facts.into_iter().map(OrderFact::from).collect())
        })
        .await
    }

    /// One basket per sold order with items: its distinct items, each named by the line's
    /// SKU, else the linked product's SKU, else the product's id. Sold orders without items
    /// are left out. Items keep the order in which they first appear across all baskets. This
    /// is what `product_associations` reads.
    pub async fn order_baskets(&self) -> Result<Vec<Vec<String>>, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let baskets = engine.order_baskets()?;
            Ok(baskets
                .iter()
                .map(|items| items.into_iter().map(str::to_string).collect())
                .collect())
        })
        .await
    }

    /// Monthly revenue from the orders and its forecast (Holt-Winters, or Holt's linear trend
    /// with too little history for seasons).
    pub async fn sales_forecast(
        &self,
        options: ForecastOptions,
    ) -> Result<SalesForecast, CrmError> {
        let engine = self.core()?;
        let mut params = an::ForecastParams::new(options.rates.try_into()?);
        if let Some(h) = options.horizon {
            params.horizon = to_usize(h.into())?;
        }
        if let Some(m) = options.season_length {
            params.season_length = to_usize(m.into())?;
        }
        params.smoothing = options.smoothing.map(an::Smoothing::from);
        params.through = options.through.as_deref().map(parse_date).transpose()?;
        run_blocking(move || Ok(engine.sales_forecast(&params)?.into())).await
    }

    /// Frequent product sets and association rules over the orders' lines (products by SKU).
    #[uniffi::method(default(options = None))]
    pub async fn product_associations(
        &self,
        options: Option<AprioriOptions>,
    ) -> Result<Associations, CrmError> {
        let engine = self.core()?;
        let params = an::AprioriParams::try_from(options.unwrap_or_default())?;
        run_blocking(move || Ok(engine.product_associations(&params)?.into())).await
    }

    /// Up to `limit` products to suggest to a customer (contact or company id), from the
    /// association rules over every order and what the customer already bought.
    #[uniffi::method(default(options = None))]
    pub async fn recommend_products(
        &self,
        customer: String,
        limit: u32,
        options: Option<AprioriOptions>,
    ) -> Result<Vec<Recommendation>, CrmError> {
        let engine = self.core()?;
        let customer = parse_id(&customer)?;
        let limit = to_usize(limit.into())?;
        let params = an::AprioriParams::try_from(options.unwrap_or_default())?;
        run_blocking(move || {
            let recommendations = engine.recommend_products(customer, &params, limit)?;
            Ok(recommendations
                .into_iter()
                .map(|r| Recommendation {
                    item: r.item,
                    because: r.because.into(),
                })
                .collect())
        })
        .await
    }

    /// Customers to visit next, best first, with the reasons: open deal value, time since the
    /// last activity, RFM segment at risk, open cases.
    pub async fn visit_plan(
        &self,
        options: VisitPlanOptions,
    ) -> Result<Vec<VisitCandidate>, CrmError> {
        let engine = self.core()?;
        let mut params =
            an::VisitPlanParams::new(parse_date(&options.as_of)?, options.rates.try_into()?);
        params.owner = options.owner;
        params.region = options.region;
        if let Some(w) = options.weights {
            params.weights = an::VisitWeights {
                deal_value: w.deal_value,
                inactivity: w.inactivity,
                risk: w.risk,
                cases: w.cases,
            };
        }
        if let Some(days) = options.inactivity_cap_days {
            params.inactivity_cap_days = days;
        }
        if let Some(limit) = options.limit {
            params.limit = to_usize(limit.into())?;
        }
        if let Some(days) = options.rfm_window_days {
            params.rfm_window_days = days;
        }
        run_blocking(move || {
            let plan = engine.visit_plan(&params)?;
            Ok(plan.into_iter().map(VisitCandidate::from).collect())
        })
        .await
    }
}
