//! Benchmark of the analytics at the scale: 100,000 customers with 1,000,000 order
//! lines (and 50,000 deals): RFM + CLTV, the pipeline forecast and Apriori at support 0.01,
//! each the median of several runs over rows built in memory, against the targets
//! (RFM + CLTV < 1 s, pipeline < 200 ms, Apriori < 5 s). Then the same calls through the engine
//! (reading the rows from the store) on a smaller database, and the peak memory.
//!
//! Run with `cargo run --release -p crmsync --example analytics_bench [-- CUSTOMERS LINES]`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use crmsync::analytics::{
    AprioriParams, Baskets, CltvParams, OrderFact, PipelineParams, Rates, RfmParams, apriori, cltv,
    pipeline, rfm,
};
use crmsync::{
    Currency, DeviceId, Engine, Money, NewRecord, OrderLine, Pipeline, Record, RecordId,
    RecordType, Value,
};

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

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

const PRODUCTS: usize = 500;

/// Products with Zipf-like popularity, and bundles of related products bought together.
struct Catalogue {
    skus: Vec<String>,
    prices: Vec<i64>,
    cumulative: Vec<f64>,
    bundles: Vec<Vec<usize>>,
}

impl Catalogue {
    fn new(rng: &mut Mix) -> Self {
        let weights: Vec<f64> = (0..PRODUCTS).map(|k| 1.0 / (k as f64 + 2.0)).collect();
        let total: f64 = weights.iter().sum();
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        let bundles = (0..20)
            .map(|b| (0..2 + b % 3).map(|i| (b * 7 + i * 13) % 120).collect())
            .collect();
        Self {
            skus: (0..PRODUCTS).map(|k| format!("SKU-{k:04}")).collect(),
            prices: (0..PRODUCTS)
                .map(|_| 500 + rng.below(50_000) as i64)
                .collect(),
            cumulative,
            bundles,
        }
    }

    fn pick(&self, rng: &mut Mix) -> usize {
        let u = rng.unit();
        self.cumulative
            .partition_point(|c| *c < u)
            .min(PRODUCTS - 1)
    }

    /// A basket of about 4 distinct products (a bundle 30 % of the time).
    fn basket(&self, rng: &mut Mix, max: usize) -> Vec<usize> {
        let mut items = Vec::new();
        if rng.below(10) < 3 {
            let bundle = &self.bundles[rng.below(self.bundles.len() as u64) as usize];
            items.extend(bundle.iter().copied());
        }
        let target = 1 + rng.below(7) as usize; // 1..=7, mean 4
        while items.len() < target.max(1) {
            let p = self.pick(rng);
            if !items.contains(&p) {
                items.push(p);
            }
        }
        items.truncate(max);
        items
    }
}

struct Data {
    orders: Vec<OrderFact>,
    baskets: Vec<Vec<usize>>,
    deals: Vec<Record>,
    lines: usize,
}

fn day(base: NaiveDate, offset: u64) -> DateTime<Utc> {
    (base + chrono::Duration::days(offset as i64))
        .and_hms_opt(10, 0, 0)
        .unwrap_or_default()
        .and_utc()
}

fn build(customers: usize, lines: usize, cat: &Catalogue, rng: &mut Mix) -> anyhow::Result<Data> {
    let base = NaiveDate::from_ymd_opt(2024, 1, 1).context("date")?;
    let usd = Currency::new("USD")?;
    let eur = Currency::new("EUR")?;
    let ids: Vec<RecordId> = (0..customers)
        .map(|c| RecordId::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 + c as u128))
        .collect();
    let (mut orders, mut baskets, mut made) = (Vec::new(), Vec::new(), 0usize);
    while made < lines {
        let items = cat.basket(rng, lines - made);
        made += items.len();
        let customer = ids[rng.below(customers as u64) as usize];
        let currency = if rng.below(10) == 0 { eur } else { usd };
        let minor: i64 = items
            .iter()
            .map(|&p| cat.prices[p] * (1 + rng.below(3) as i64))
            .sum();
        orders.push(OrderFact {
            order: RecordId::from_u128(orders.len() as u128 + 1),
            customer: Some(customer),
            at: day(base, rng.below(730)),
            total: Money { minor, currency },
        });
        baskets.push(items);
    }
    let stages = Pipeline::default().stages;
    let owners: Vec<String> = (0..20).map(|o| format!("rep{o:02}")).collect();
    let now = Utc::now();
    let deals = (0..customers / 2)
        .map(|i| {
            let mut fields = BTreeMap::new();
            fields.insert("name".to_string(), Value::Text(format!("deal {i}")));
            fields.insert("company".to_string(), Value::Link(ids[i * 2]));
            let stage = &stages[rng.below(stages.len() as u64) as usize];
            fields.insert("stage".to_string(), Value::Enum(stage.name.clone()));
            let currency = [usd, usd, eur][rng.below(3) as usize];
            let amount = Money {
                minor: 100_000 + rng.below(10_000_000) as i64,
                currency,
            };
            fields.insert("amount".to_string(), Value::Money(amount));
            fields.insert("owner".to_string(), Value::Text(owners[i % 20].clone()));
            if rng.below(4) == 0 {
                fields.insert("probability".to_string(), Value::Int(rng.below(101) as i64));
            }
            let close = base + chrono::Duration::days(700 + rng.below(180) as i64);
            fields.insert("expected_close".to_string(), Value::Date(close));
            Record {
                id: RecordId::from_u128(10_000_000 + i as u128),
                record_type: RecordType::Deal,
                fields,
                created_at: now,
                created_by: DeviceId([1; 16]),
                updated_at: now,
                updated_by: DeviceId([1; 16]),
                deleted: false,
            }
        })
        .collect();
    Ok(Data {
        orders,
        baskets,
        deals,
        lines: made,
    })
}

/// Median wall time of `runs` calls (after one warm-up call), and the last result.
fn median<T>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<(Duration, T)> {
    let mut out = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        out = f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((times[times.len() / 2], out))
}

fn fmt(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    }
}

/// Peak resident memory of this process so far (VmHWM), in MB.
fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(format!("{:.0} MB", kb / 1024.0))
        })
        .unwrap_or_else(|| "unknown".to_string())
}

fn row(name: &str, d: Duration, runs: usize, target: Option<Duration>) {
    let (t, verdict) = match target {
        Some(t) if d < t => (format!("< {}", fmt(t)), "PASS"),
        Some(t) => (format!("< {}", fmt(t)), "MISS"),
        None => (String::new(), ""),
    };
    println!(
        "| {name:<40} | {:>10} | {runs:>4} | {t:>10} | {verdict:<6} |",
        fmt(d)
    );
}

/// The same analyses through the engine, reading rows from an in-memory store.
fn engine_level(
    customers: usize,
    lines: usize,
    cat: &Catalogue,
    rng: &mut Mix,
) -> anyhow::Result<()> {
    let engine = Engine::in_memory()?;
    let start = Instant::now();
    let ids = engine.create_many(
        (0..customers)
            .map(|c| NewRecord::new(RecordType::Company).with("name", format!("Customer {c}")))
            .collect(),
    )?;
    let base = NaiveDate::from_ymd_opt(2024, 1, 1).context("date")?;
    let usd = Currency::new("USD")?;
    let mut made = 0;
    let mut batch = Vec::new();
    while made < lines {
        let items = cat.basket(rng, lines - made);
        made += items.len();
        let order_lines = items
            .iter()
            .map(|&p| OrderLine {
                product: None,
                sku: Some(cat.skus[p].clone()),
                quantity: 1 + rng.below(3) as i64,
                unit_price: Money {
                    minor: cat.prices[p],
                    currency: usd,
                },
            })
            .collect();
        batch.push(
            NewRecord::new(RecordType::Order)
                .with("customer", ids[rng.below(ids.len() as u64) as usize])
                .with("ordered_at", day(base, rng.below(730)))
                .with("lines", Value::Lines(order_lines)),
        );
        if batch.len() == 1000 {
            engine.create_many(std::mem::take(&mut batch))?;
        }
    }
    engine.create_many(batch)?;
    let deals: Vec<NewRecord> = (0..customers / 2)
        .map(|i| {
            NewRecord::new(RecordType::Deal)
                .with("name", format!("deal {i}"))
                .with("company", ids[i * 2])
                .with("stage", ["prospecting", "proposal", "negotiation"][i % 3])
                .with(
                    "amount",
                    Money {
                        minor: 100_000 + i as i64,
                        currency: usd,
                    },
                )
        })
        .collect();
    engine.create_many(deals)?;
    let orders = engine.count(&RecordType::Order)?;
    println!(
        "\nthrough the engine (rows read from the store): {customers} customers, {orders} orders, \
         {made} order lines, {} deals (stored in {})",
        customers / 2,
        fmt(start.elapsed())
    );
    println!(
        "| {:<40} | {:>10} | {:>4} | {:>10} | {:<6} |",
        "analysis", "median", "runs", "target", "result"
    );
    println!(
        "|{:-<42}|{:-<12}|{:-<6}|{:-<12}|{:-<8}|",
        "", "", "", "", ""
    );
    let as_of = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let rates = Rates::new(usd);
    let (d, _) = median(3, || {
        let r = engine.rfm(&RfmParams::new(as_of, rates.clone()))?;
        let c = engine.lifetime_values(&CltvParams::new(as_of, rates.clone()))?;
        Ok((r.len(), c.len()))
    })?;
    row("engine.rfm + engine.lifetime_values", d, 3, None);
    let (d, facts) = median(3, || Ok(engine.order_facts()?))?;
    row("  engine.order_facts (the store scan)", d, 3, None);
    let (d, _) = median(3, || {
        let facts = engine.order_facts()?;
        let r = rfm::rfm(&facts, &RfmParams::new(as_of, rates.clone()))?;
        let c = cltv::lifetime_values(&facts, &CltvParams::new(as_of, rates.clone()))?;
        Ok((r.len(), c.len()))
    })?;
    row("  one scan, then rfm + lifetime_values", d, 3, None);
    drop(facts);
    let (d, _) = median(
        3,
        || Ok(engine.pipeline_report(&PipelineParams::default())?),
    )?;
    row("engine.pipeline_report", d, 3, None);
    let params = AprioriParams {
        min_support: 0.01,
        ..AprioriParams::default()
    };
    let (d, _) = median(3, || Ok(engine.product_associations(&params)?))?;
    row("engine.product_associations (0.01)", d, 3, None);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let customers: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let lines: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let mut rng = Mix(20_260_101);
    let cat = Catalogue::new(&mut rng);

    let start = Instant::now();
    let data = build(customers, lines, &cat, &mut rng)?;
    let built = start.elapsed();
    let as_of = NaiveDate::from_ymd_opt(2026, 1, 1).context("date")?;
    let rates = Rates::new(Currency::new("USD")?).with_rate(Currency::new("EUR")?, 1.08)?;
    println!(
        "analytics benchmark: {customers} customers, {} orders, {} order lines, {} deals \
         (built in memory in {})",
        data.orders.len(),
        data.lines,
        data.deals.len(),
        fmt(built)
    );
    println!(
        "| {:<40} | {:>10} | {:>4} | {:>10} | {:<6} |",
        "analysis", "median", "runs", "target", "result"
    );
    println!(
        "|{:-<42}|{:-<12}|{:-<6}|{:-<12}|{:-<8}|",
        "", "", "", "", ""
    );

    const RUNS: usize = 5;
    let rfm_params = RfmParams::new(as_of, rates.clone());
    let cltv_params = CltvParams::new(as_of, rates.clone());
    let (d_rfm, rows) = median(RUNS, || Ok(rfm::rfm(&data.orders, &rfm_params)?))?;
    let (d_cltv, _) = median(RUNS, || {
        Ok(cltv::lifetime_values(&data.orders, &cltv_params)?)
    })?;
    let (d_both, _) = median(RUNS, || {
        let r = rfm::rfm(&data.orders, &rfm_params)?;
        let c = cltv::lifetime_values(&data.orders, &cltv_params)?;
        Ok((r.len(), c.len()))
    })?;
    row("RFM + CLTV", d_both, RUNS, Some(Duration::from_secs(1)));
    row("  RFM alone", d_rfm, RUNS, None);
    row("  CLTV alone", d_cltv, RUNS, None);

    let pipeline_params = PipelineParams {
        rates: Some(rates.clone()),
        ..PipelineParams::default()
    };
    let pipe = Pipeline::default();
    let (d, report) = median(RUNS, || {
        Ok(pipeline::pipeline_report(
            &data.deals,
            &pipe,
            &pipeline_params,
        )?)
    })?;
    row(
        "pipeline forecast",
        d,
        RUNS,
        Some(Duration::from_millis(200)),
    );

    let (d_build, baskets) = median(RUNS, || {
        let mut b = Baskets::new();
        for items in &data.baskets {
            b.push(items.iter().map(|&p| cat.skus[p].as_str()));
        }
        Ok(b)
    })?;
    let params = AprioriParams {
        min_support: 0.01,
        min_confidence: 0.5,
        max_len: None,
    };
    let (d, assoc) = median(RUNS, || Ok(apriori::associations(&baskets, &params)?))?;
    row(
        "Apriori, support 0.01",
        d,
        RUNS,
        Some(Duration::from_secs(5)),
    );
    row(
        "  (basket building: interning 1M lines)",
        d_build,
        RUNS,
        None,
    );
    let largest = assoc
        .itemsets
        .iter()
        .map(|s| s.items.len())
        .max()
        .unwrap_or(0);
    println!(
        "results: {} RFM rows, forecast {} (converted {}), {} frequent itemsets (up to {largest} \
         items), {} rules",
        rows.len(),
        report
            .open
            .weighted
            .iter()
            .map(Money::to_string)
            .collect::<Vec<_>>()
            .join(" + "),
        report
            .open
            .converted_weighted
            .map(|m| m.to_string())
            .unwrap_or_default(),
        assoc.itemsets.len(),
        assoc.rules.len()
    );
    let hwm = vm_hwm();

    engine_level(customers / 10, lines / 10, &cat, &mut rng)?;
    println!(
        "\npeak memory (VmHWM): {hwm} after the in-memory runs, {} at the end",
        vm_hwm()
    );
    Ok(())
}
