//! Writes the inputs and results of the analytics as CSV and JSON for the independent
//! cross-check (`scripts/analytics_crosscheck.py`, run by `scripts/analytics_crosscheck.sh`):
//! RFM (sample orders and a synthetic set with many ties), Apriori (sample baskets and a
//! synthetic set with larger itemsets) and Holt-Winters / Holt forecasts with fixed smoothing.
//!
//! Run with `cargo run -p crmsync --example analytics_export -- DIR`.

#[allow(dead_code)] // `run` prints the demo; only the loader is used here.
#[path = "demo_analytics.rs"]
mod demo_analytics;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{Duration, NaiveDate};
use crmsync::analytics::{
    AprioriParams, Associations, Baskets, HoltWinters, OrderFact, Rates, RfmParams, RfmRow,
    Smoothing, apriori, forecast, rfm,
};
use crmsync::{Currency, Engine, Money, RecordId};

/// A deterministic pseudo-random sequence (SplitMix64).
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
}

fn export_rfm(
    dir: &Path,
    name: &str,
    orders: &[OrderFact],
    params: &RfmParams,
) -> anyhow::Result<()> {
    let mut text = String::from("order,customer,date,minor,currency,exponent\n");
    for o in orders {
        let customer = o.customer.map(|c| c.to_string()).unwrap_or_default();
        writeln!(
            text,
            "{},{customer},{},{},{},{}",
            o.order,
            o.at.date_naive(),
            o.total.minor,
            o.total.currency,
            o.total.currency.exponent()
        )?;
    }
    write(dir, &format!("rfm_{name}_orders.csv"), &text)?;
    let rows: Vec<RfmRow> = rfm::rfm(orders, params)?;
    let mut text = String::from("customer,recency_days,frequency,monetary_minor,r,f,m,segment\n");
    for r in &rows {
        writeln!(
            text,
            "{},{},{},{},{},{},{},{}",
            r.customer,
            r.recency_days,
            r.frequency,
            r.monetary.minor,
            r.score.r,
            r.score.f,
            r.score.m,
            r.segment
        )?;
    }
    write(dir, &format!("rfm_{name}_scores.csv"), &text)?;
    let meta = serde_json::json!({ "as_of": params.as_of.to_string(), "window_days": params.window_days, "rates": params.rates });
    write(
        dir,
        &format!("rfm_{name}.json"),
        &serde_json::to_string_pretty(&meta)?,
    )
}

fn export_apriori(
    dir: &Path,
    name: &str,
    baskets: &Baskets,
    params: &AprioriParams,
) -> anyhow::Result<()> {
    let mut text = String::from("basket,item\n");
    for (i, items) in baskets.iter().enumerate() {
        for item in items {
            writeln!(text, "{i},{item}")?;
        }
    }
    write(dir, &format!("apriori_{name}_baskets.csv"), &text)?;
    let a: Associations = apriori::associations(baskets, params)?;
    let mut text = String::from("items,count,support\n");
    for s in &a.itemsets {
        writeln!(text, "{},{},{:.17}", s.items.join("|"), s.count, s.support)?;
    }
    write(dir, &format!("apriori_{name}_itemsets.csv"), &text)?;
    let mut text = String::from("antecedent,consequent,support,confidence,lift\n");
    for r in &a.rules {
        writeln!(
            text,
            "{},{},{:.17},{:.17},{:.17}",
            r.antecedent.join("|"),
            r.consequent.join("|"),
            r.support,
            r.confidence,
            r.lift
        )?;
    }
    write(dir, &format!("apriori_{name}_rules.csv"), &text)?;
    write(
        dir,
        &format!("apriori_{name}.json"),
        &serde_json::to_string_pretty(params)?,
    )
}

fn export_forecast(
    dir: &Path,
    name: &str,
    series: &[f64],
    season_length: usize,
    smoothing: Option<Smoothing>,
    horizon: usize,
) -> anyhow::Result<()> {
    let model = HoltWinters::fit(series, season_length, smoothing)?;
    let out = serde_json::json!({
        "series": series,
        "season_length": season_length,
        "horizon": horizon,
        "model": model,
        "forecast": model.forecast(horizon),
    });
    write(
        dir,
        &format!("forecast_{name}.json"),
        &serde_json::to_string_pretty(&out)?,
    )
}

/// Orders of `customers` synthetic customers with few distinct frequencies (many ties).
fn synthetic_orders(rng: &mut Mix, customers: u128) -> anyhow::Result<Vec<OrderFact>> {
    let start = NaiveDate::from_ymd_opt(2023, 7, 1).context("date")?;
    let mut orders = Vec::new();
    let mut n = 0u128;
    for c in 1..=customers {
        let customer = RecordId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + c * 7919);
        for _ in 0..1 + rng.below(4) {
            n += 1;
            let day = start + Duration::days(rng.below(731) as i64);
            let at = day.and_hms_opt(9, 0, 0).context("time")?.and_utc();
            // Amounts on a coarse grid, so monetary values tie too.
            let total = Money::new(2500 * (1 + rng.below(8) as i64), "USD")?;
            orders.push(OrderFact {
                order: RecordId::from_u128(n),
                customer: Some(customer),
                at,
                total,
            });
        }
    }
    Ok(orders)
}

fn synthetic_baskets(rng: &mut Mix) -> Baskets {
    let mut baskets = Baskets::new();
    for _ in 0..4000 {
        let mut items = Vec::new();
        // Three bundles bought together often, plus background items of falling popularity.
        let bundle = rng.below(6);
        let groups: [&[&str]; 3] = [
            &["P01", "P02", "P03", "P04"],
            &["P05", "P06", "P07"],
            &["P08", "P09"],
        ];
        if let Some(group) = groups.get(bundle as usize) {
            for item in *group {
                if rng.below(10) < 7 {
                    items.push((*item).to_string());
                }
            }
        }
        for k in 10..40u64 {
            if rng.below(100) < 30 - (k - 10) {
                items.push(format!("P{k:02}"));
            }
        }
        baskets.push(items);
    }
    baskets
}

fn main() -> anyhow::Result<()> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: analytics_export DIR")?,
    );
    std::fs::create_dir_all(&dir)?;
    let engine = Engine::in_memory()?;
    demo_analytics::load_sample(&engine)?;
    let rates = demo_analytics::demo_rates()?;
    let as_of = demo_analytics::as_of();
    let mut rng = Mix(2026);

    // RFM: the sample (several currencies, converted) and a synthetic set full of ties.
    let orders = engine.order_facts()?;
    export_rfm(
        &dir,
        "sample",
        &orders,
        &RfmParams::new(as_of, rates.clone()),
    )?;
    let synthetic = synthetic_orders(&mut rng, 2000)?;
    let usd = Rates::new(Currency::new("USD")?);
    let mut params = RfmParams::new(NaiveDate::from_ymd_opt(2025, 7, 1).context("date")?, usd);
    params.window_days = 180;
    export_rfm(&dir, "ties", &synthetic, &params)?;

    // Apriori.
    let sample = AprioriParams {
        min_support: 0.03,
        min_confidence: 0.5,
        max_len: None,
    };
    export_apriori(&dir, "sample", &engine.order_baskets()?, &sample)?;
    let synth = AprioriParams {
        min_support: 0.02,
        min_confidence: 0.3,
        max_len: None,
    };
    export_apriori(&dir, "synthetic", &synthetic_baskets(&mut rng), &synth)?;

    // Forecasts with fixed smoothing: the sample's monthly revenue (Holt-Winters), its first
    // 20 months (Holt), and the fitted parameters on the full series.
    let monthly = forecast::monthly_revenue(&orders, &rates, None)?;
    let values: Vec<f64> = monthly.iter().map(|(_, v)| *v).collect();
    let mut text = String::from("month,revenue\n");
    for (m, v) in &monthly {
        writeln!(text, "{m},{v:.6}")?;
    }
    write(&dir, "monthly_revenue.csv", &text)?;
    let fixed = Smoothing {
        alpha: 0.3,
        beta: 0.05,
        gamma: 0.2,
    };
    export_forecast(&dir, "sample_hw", &values, 12, Some(fixed), 12)?;
    export_forecast(
        &dir,
        "sample_holt",
        &values[..20.min(values.len())],
        12,
        Some(fixed),
        6,
    )?;
    export_forecast(&dir, "sample_fitted", &values, 12, None, 12)?;
    let quarterly: Vec<f64> = (0..40)
        .map(|t| {
            200.0
                + 3.0 * f64::from(t)
                + [30.0, -10.0, -25.0, 5.0][t as usize % 4]
                + rng.below(20) as f64
        })
        .collect();
    export_forecast(
        &dir,
        "synthetic_quarterly",
        &quarterly,
        4,
        Some(Smoothing {
            alpha: 0.5,
            beta: 0.2,
            gamma: 0.3,
        }),
        8,
    )?;
    println!("analytics exported to {}", dir.display());
    Ok(())
}
