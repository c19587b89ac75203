//! Analytics: pipeline report, stage funnel, RFM segments, customer lifetime value, service
//! statistics, sales forecast, product associations and recommendations, the visit plan, and
//! the rows they read (order facts and baskets), as `async` calls on [`Engine`]. The reports
//! are the core's own types, with the core's docs (and formulas); the options are the
//! bindings' own: absent values take the core's defaults.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use crmsync::analytics::{
    self as an, Associations, CltvRow, Factor, FactorKind, ForecastMethod, FunnelReport,
    FunnelStage, HoltWinters, Itemset, MonthValue, Rates, Recommendation, RepeatCustomer, Rule,
    SalesForecast, Segment, ServiceStats, Smoothing, Totals, VisitCandidate, VisitWeights,
};
use crmsync::{Currency, Money, RecordId, RecordType};

use crate::engine::Engine;
use crate::error::CrmError;
use crate::runtime::run_blocking;
use crate::value::{parse_currency, parse_date, parse_id, to_usize};

/// Counts by name (the core's are ordered by name).
type Counts = BTreeMap<String, u64>;

uniffi::custom_type!(
    /// Counts by name.
    Counts, HashMap<String, u64>, {
        remote, lower: |c| c.into_iter().collect(), try_lift: |c| Ok(c.into_iter().collect())
    }
);

crmsync::uniffi_remote_Totals!();
crmsync::uniffi_remote_FunnelStage!();
crmsync::uniffi_remote_FunnelReport!();
crmsync::uniffi_remote_Segment!();
crmsync::uniffi_remote_CltvRow!();
crmsync::uniffi_remote_RepeatCustomer!();
crmsync::uniffi_remote_ServiceStats!();
crmsync::uniffi_remote_Smoothing!();
crmsync::uniffi_remote_ForecastMethod!();
crmsync::uniffi_remote_MonthValue!();
crmsync::uniffi_remote_HoltWinters!();
crmsync::uniffi_remote_SalesForecast!();
crmsync::uniffi_remote_Itemset!();
crmsync::uniffi_remote_Rule!();
crmsync::uniffi_remote_Associations!();
crmsync::uniffi_remote_Recommendation!();
crmsync::uniffi_remote_VisitWeights!();
crmsync::uniffi_remote_FactorKind!();
crmsync::uniffi_remote_Factor!();
crmsync::uniffi_remote_VisitCandidate!();

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

// Copy of the core's `OrderFact`: its ids and time keep the platform's plain types (`String`,
// `Instant` / `Date`), which `test_generated.py` pins for apps that export these rows.
/// One sold order as the analytics read it: who bought, when, and for how much. RFM, the
/// lifetime value and the sales forecast are computed from these rows.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct OrderFact {
    /// The order's id.
    pub order: String,
    /// The buying contact or company, when the order links one.
    pub customer: Option<String>,
    /// When it was ordered (its `ordered_at`).
    pub at: std::time::SystemTime,
    /// Its value: the `total` field when set, else the sum of quantity × unit price over its
    /// lines.
    pub total: Money,
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

// The core has one type per grouping (`StageTotals`, `OwnerTotals`, `MonthTotals`); the foreign
// API has one, so the pipeline report below is a copy too.
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
    /// All open deals; `weighted` is the forecast.
    pub open: Totals,
    /// Open deals by stage, in pipeline order, then stages the pipeline no longer has.
    pub by_stage: Vec<GroupTotals>,
    /// Open deals by owner, by name (no owner last).
    pub by_owner: Vec<GroupTotals>,
    /// Open deals by month of expected close, in time order.
    pub by_close_month: Vec<GroupTotals>,
    /// Deals in a won stage.
    pub won: u64,
    /// Deals in a closed stage that is not won.
    pub lost: u64,
    /// `won / (won + lost)`; absent before any deal closed.
    pub win_rate: Option<f64>,
    /// Σ amount of won deals, per currency.
    pub won_value: Vec<Money>,
    /// Mean days from creation to `closed_at` over won deals that have `closed_at`.
    pub avg_cycle_days: Option<f64>,
}

impl From<an::PipelineReport> for PipelineReport {
    fn from(r: an::PipelineReport) -> Self {
        fn groups<T>(rows: Vec<T>, split: fn(T) -> (Option<String>, Totals)) -> Vec<GroupTotals> {
            let group = |(group, totals)| GroupTotals { group, totals };
            rows.into_iter().map(split).map(group).collect()
        }
        PipelineReport {
            open: r.open,
            by_stage: groups(r.by_stage, |s| (s.stage, s.totals)),
            by_owner: groups(r.by_owner, |s| (s.owner, s.totals)),
            by_close_month: groups(r.by_close_month, |s| (s.month, s.totals)),
            won: r.won,
            lost: r.lost,
            win_rate: r.win_rate,
            won_value: r.won_value,
            avg_cycle_days: r.avg_cycle_days,
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

// Copy of the core's `RfmRow` with its `RfmScore` flattened into `r`, `f` and `m`.
/// One customer's RFM scores.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct RfmRow {
    /// The customer (contact or company).
    pub customer: RecordId,
    /// Days from the customer's last order (at any time up to `as_of`) to `as_of`.
    pub recency_days: i64,
    /// Orders in the window.
    pub frequency: u64,
    /// Sum of the window's order totals, in the reporting currency.
    pub monetary: Money,
    /// Recency score: 5 for the most recent buyers.
    pub r: u8,
    /// Frequency score: 5 for the most frequent buyers.
    pub f: u8,
    /// Monetary score: 5 for the biggest spenders.
    pub m: u8,
    /// Segment from the scores.
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

/// Options of the service statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct ServiceOptions {
    /// Only cases created at or after this moment (default: all).
    #[uniffi(default = None)]
    pub since: Option<DateTime<Utc>>,
    /// Cases from one customer that make it a repeat customer (core default: 2).
    #[uniffi(default = None)]
    pub repeat_threshold: Option<u64>,
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
        run_blocking(move || Ok(engine.stage_funnel()?)).await
    }

    /// RFM scores and segments of every customer who ordered.
    pub async fn rfm(&self, options: RfmOptions) -> Result<Vec<RfmRow>, CrmError> {
        let engine = self.core()?;
        let mut params = an::RfmParams::new(parse_date(&options.as_of)?, options.rates.try_into()?);
        if let Some(days) = options.window_days {
            params.window_days = days;
        }
        run_blocking(move || {
            let rows = engine.rfm(&params)?.into_iter().map(|r| RfmRow {
                customer: r.customer,
                recency_days: r.recency_days,
                frequency: r.frequency,
                monetary: r.monetary,
                r: r.score.r,
                f: r.score.f,
                m: r.score.m,
                segment: r.segment,
            });
            Ok(rows.collect())
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
        run_blocking(move || Ok(engine.lifetime_values(&params)?)).await
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
            since: options.since,
            ..an::ServiceParams::default()
        };
        if let Some(n) = options.repeat_threshold {
            params.repeat_threshold = n;
        }
        run_blocking(move || Ok(engine.service_stats(&params)?)).await
    }

    /// Every sold order as an [`OrderFact`], in the store's order. An order counts as sold
    /// unless it is deleted, a `draft` or `cancelled`, has no `ordered_at`, or has neither a
    /// `total` nor priced lines. Fails with `Analytics` if a counted order's lines mix
    /// currencies.
    pub async fn order_facts(&self) -> Result<Vec<OrderFact>, CrmError> {
        let engine = self.core()?;
        run_blocking(move || {
            let facts = engine.order_facts()?.into_iter().map(|f| OrderFact {
                order: f.order.to_string(),
                customer: f.customer.map(|c| c.to_string()),
                at: f.at.into(),
                total: f.total,
            });
            Ok(facts.collect())
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
        params.smoothing = options.smoothing;
        params.through = options.through.as_deref().map(parse_date).transpose()?;
        run_blocking(move || Ok(engine.sales_forecast(&params)?)).await
    }

    /// Frequent product sets and association rules over the orders' lines (products by SKU).
    #[uniffi::method(default(options = None))]
    pub async fn product_associations(
        &self,
        options: Option<AprioriOptions>,
    ) -> Result<Associations, CrmError> {
        let engine = self.core()?;
        let params = an::AprioriParams::try_from(options.unwrap_or_default())?;
        run_blocking(move || Ok(engine.product_associations(&params)?)).await
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
        run_blocking(move || Ok(engine.recommend_products(customer, &params, limit)?)).await
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
            params.weights = w;
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
        run_blocking(move || Ok(engine.visit_plan(&params)?)).await
    }
}
