//! The analytics part of the demo: loads the shipped sample catalogue and order history, adds
//! a few deals, and prints an RFM table, lifetime values, the pipeline forecast, the stage
//! funnel, the top association rules and a sales forecast.
//!
//! Used by `demo.rs` and `analytics_export.rs` (which reads the same sample data).

use std::collections::{BTreeSet, HashMap};

use anyhow::Context;
use chrono::NaiveDate;
use crmsync::analytics::{
    AprioriParams, CltvParams, ForecastParams, PipelineParams, Rates, RfmParams,
};
use crmsync::{
    Currency, Engine, ImportOptions, Money, NewRecord, Patch, RecordId, RecordType, Value,
};

const PRODUCTS: &str = include_str!("data/products.csv");
const ORDERS: &str = include_str!("data/orders.csv");

/// The day the demo's analyses are made: the sample history ends in December 2025.
pub fn as_of() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default()
}

/// Fixed illustrative rates into USD (analytics never fetch rates; the caller gives them).
pub const RATES: [(&str, f64); 4] = [("EUR", 1.08), ("GBP", 1.27), ("CNY", 0.14), ("BRL", 0.18)];

/// [`RATES`] as analytics rates into USD.
pub fn demo_rates() -> anyhow::Result<Rates> {
    let mut rates = Rates::new(Currency::new("USD")?);
    for (code, rate) in RATES {
        rates = rates.with_rate(Currency::new(code)?, rate)?;
    }
    Ok(rates)
}

fn companies_by_name(engine: &Engine) -> anyhow::Result<HashMap<String, RecordId>> {
    let mut names = HashMap::new();
    for r in engine.list(&crmsync::ListQuery::new(RecordType::Company))? {
        names.insert(r.title(), r.id);
    }
    Ok(names)
}

/// Imports the sample products and orders; the order file names its customers, and those not
/// stored yet are created as companies first.
pub fn load_sample(engine: &Engine) -> anyhow::Result<()> {
    let known = companies_by_name(engine)?;
    let mut reader = csv::Reader::from_reader(ORDERS.as_bytes());
    let mut missing = BTreeSet::new();
    for row in reader.records() {
        let name = row?.get(0).context("customer column")?.to_string();
        if !known.contains_key(&name) {
            missing.insert(name);
        }
    }
    engine.create_many(
        missing
            .into_iter()
            .map(|name| NewRecord::new(RecordType::Company).with("name", name))
            .collect(),
    )?;
    let strict = ImportOptions { strict: true };
    engine.import_csv(PRODUCTS.as_bytes(), &RecordType::Product, &strict)?;
    engine.import_csv(ORDERS.as_bytes(), &RecordType::Order, &strict)?;
    Ok(())
}

/// Open and closed deals on sample customers, some moved along the pipeline.
fn add_deals(engine: &Engine) -> anyhow::Result<()> {
    let companies = companies_by_name(engine)?;
    let deals = [
        (
            "Summit line retrofit",
            "Summit Foundry",
            "96000.00 USD",
            "negotiation",
            "ana",
            "2026-01-20",
        ),
        (
            "Cobalt paint cell",
            "Cobalt Motors",
            "148000.00 USD",
            "proposal",
            "ben",
            "2026-02-15",
        ),
        (
            "Atlas sorting robots",
            "Atlas Warehousing",
            "74000.00 USD",
            "qualification",
            "ana",
            "2026-03-10",
        ),
        (
            "Rhein vision upgrade",
            "Rhein Automation AG",
            "41000.00 EUR",
            "proposal",
            "ben",
            "2026-02-01",
        ),
        (
            "Quartz lab automation",
            "Quartz Labs",
            "52000.00 USD",
            "prospecting",
            "li",
            "2026-04-30",
        ),
        (
            "Harbor dock sensors",
            "Harbor Freight Lines",
            "18500.00 USD",
            "negotiation",
            "ana",
            "2026-01-31",
        ),
        (
            "Brightline panel handling",
            "Brightline Solar",
            "88000.00 USD",
            "qualification",
            "li",
            "2026-03-31",
        ),
    ];
    for (name, company, amount, stage, owner, close) in deals {
        let company = *companies.get(company).context("sample company")?;
        let path = ["prospecting", "qualification", "proposal", "negotiation"];
        let upto = path.iter().position(|s| *s == stage).unwrap_or(0);
        let deal = engine.create(
            NewRecord::new(RecordType::Deal)
                .with("name", name)
                .with("company", company)
                .with("amount", amount.parse::<Money>()?)
                .with("stage", path[0])
                .with("owner", owner)
                .with(
                    "expected_close",
                    NaiveDate::parse_from_str(close, "%Y-%m-%d")?,
                ),
        )?;
        for next in &path[1..=upto] {
            engine.update(deal.id, Patch::new().set("stage", *next))?;
        }
    }
    Ok(())
}

fn money_list(list: &[Money]) -> String {
    if list.is_empty() {
        return "-".to_string();
    }
    list.iter()
        .map(Money::to_string)
        .collect::<Vec<_>>()
        .join(" + ")
}

/// Loads the sample data and prints the analyses.
pub fn run(engine: &Engine) -> anyhow::Result<()> {
    load_sample(engine)?;
    add_deals(engine)?;
    let rates = demo_rates()?;
    let as_of = as_of();
    let names: HashMap<RecordId, String> = companies_by_name(engine)?
        .into_iter()
        .map(|(name, id)| (id, name))
        .collect();
    let name = |id: &RecordId| names.get(id).cloned().unwrap_or_else(|| id.to_string());
    let shown: Vec<String> = RATES
        .iter()
        .map(|(c, r)| format!("1 {c} = {r} USD"))
        .collect();
    println!(
        "\n== analytics as of {as_of}, in USD at fixed demo rates ({})",
        shown.join(", ")
    );

    // RFM, most valuable segments first.
    let mut rfm = engine.rfm(&RfmParams::new(as_of, rates.clone()))?;
    rfm.sort_by(|a, b| {
        a.segment
            .cmp(&b.segment)
            .then(b.monetary.minor.cmp(&a.monetary.minor))
    });
    println!("\nRFM over the last 365 days ({} customers):", rfm.len());
    println!(
        "  {:<26} {:>8} {:>6} {:>16}  RFM  segment",
        "customer", "recency", "orders", "monetary"
    );
    for row in &rfm {
        println!(
            "  {:<26} {:>7}d {:>6} {:>16}  {}  {}",
            name(&row.customer),
            row.recency_days,
            row.frequency,
            row.monetary.to_string(),
            row.score,
            row.segment
        );
    }

    let cltv = engine.lifetime_values(&CltvParams::new(as_of, rates.clone()))?;
    println!("\ncustomer lifetime value (30% margin, 80% retention, 10% discount, 5 years):");
    for row in cltv.iter().take(5) {
        println!(
            "  {}. {:<26} {:>14.2} {} (yearly margin {:.2})",
            row.rank,
            name(&row.customer),
            row.cltv,
            row.currency,
            row.yearly_margin
        );
    }

    let pipeline = engine.pipeline_report(&PipelineParams {
        rates: Some(rates.clone()),
        ..PipelineParams::default()
    })?;
    println!("\npipeline forecast (open deals, Σ amount × probability):");
    for stage in &pipeline.by_stage {
        println!(
            "  {:<14} {} deal(s)  value {}  weighted {}",
            stage.stage.as_deref().unwrap_or("(no stage)"),
            stage.totals.deals,
            money_list(&stage.totals.value),
            money_list(&stage.totals.weighted)
        );
    }
    println!(
        "  forecast: {}  = {} converted",
        money_list(&pipeline.open.weighted),
        pipeline
            .open
            .converted_weighted
            .map(|m| m.to_string())
            .unwrap_or_default()
    );
    for month in &pipeline.by_close_month {
        println!(
            "  closing {:<9} {}",
            month.month.as_deref().unwrap_or("(unset)"),
            money_list(&month.totals.weighted)
        );
    }
    println!(
        "  win rate {}, average sales cycle {}",
        pipeline
            .win_rate
            .map_or("-".to_string(), |w| format!("{:.0}%", w * 100.0)),
        pipeline
            .avg_cycle_days
            .map_or("- (no closing dates yet)".to_string(), |d| format!(
                "{d:.1} days"
            ))
    );

    let funnel = engine.stage_funnel()?;
    let steps: Vec<String> = funnel
        .stages
        .iter()
        .map(|s| match s.conversion_to_next {
            Some(c) => format!("{} {} →{:.0}%", s.stage, s.reached, c * 100.0),
            None => format!("{} {}", s.stage, s.reached),
        })
        .collect();
    println!("\nfunnel (deals reaching each stage): {}", steps.join("  "));

    let params = AprioriParams {
        min_support: 0.03,
        min_confidence: 0.5,
        max_len: None,
    };
    let assoc = engine.product_associations(&params)?;
    println!(
        "\ntop association rules ({} baskets, support ≥ {}, confidence ≥ {}):",
        assoc.baskets, params.min_support, params.min_confidence
    );
    for rule in assoc.rules.iter().take(8) {
        println!(
            "  {:<22} → {:<10} support {:.3}  confidence {:.2}  lift {:.2}",
            rule.antecedent.join(" + "),
            rule.consequent.join(" + "),
            rule.support,
            rule.confidence,
            rule.lift
        );
    }
    // "Customers who bought X also bought Y", for the first customers the rules have advice for.
    let mut shown = 0;
    for row in &rfm {
        let recs = engine.recommend_products(row.customer, &params, 3)?;
        if recs.is_empty() {
            continue;
        }
        let items: Vec<String> = recs
            .iter()
            .map(|r| {
                let because = r.because.antecedent.join(" + ");
                format!(
                    "{} ({:.0}%, bought {because})",
                    r.item,
                    r.because.confidence * 100.0
                )
            })
            .collect();
        println!("  suggest to {}: {}", name(&row.customer), items.join("; "));
        shown += 1;
        if shown == 3 {
            break;
        }
    }

    let mut fp = ForecastParams::new(rates);
    fp.horizon = 6;
    let forecast = engine.sales_forecast(&fp)?;
    let m = &forecast.model;
    println!(
        "\nsales forecast ({:?}, α {:.3} β {:.3} γ {:.3}, {} months of history):",
        m.method,
        m.smoothing.alpha,
        m.smoothing.beta,
        m.smoothing.gamma,
        forecast.history.len()
    );
    let points: Vec<String> = forecast
        .forecast
        .iter()
        .map(|p| format!("{} {:.0}", p.month, p.value))
        .collect();
    println!("  {} ({})", points.join(", "), forecast.currency);
    let orders = engine.count(&RecordType::Order)?;
    let lines: usize = engine
        .list(&crmsync::ListQuery::new(RecordType::Order).page(0, usize::MAX))?
        .iter()
        .map(|o| match o.get("lines") {
            Some(Value::Lines(l)) => l.len(),
            _ => 0,
        })
        .sum();
    println!("  ({orders} orders, {lines} order lines in the sample)");
    Ok(())
}
