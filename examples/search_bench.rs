//! Search benchmark: 100k contacts and companies plus 100k activity notes (a fifth in Chinese).
//!
//! Measures the index build from scratch, write-to-searchable latency, and query latency p50 /
//! p99 per query kind, and prints a table. Run in release:
//! `cargo run --release -p crmsync --example search_bench`

use std::time::{Duration, Instant};

use anyhow::Result;
use crmsync::{
    Engine, EngineOptions, NewRecord, Page, RecordId, RecordType, SearchFilters, SearchOptions,
    Value,
};

const COMPANIES: usize = 20_000;
const CONTACTS: usize = 80_000;
const NOTES: usize = 100_000;
const QUERIES_PER_KIND: usize = 400;

const FIRST: [&str; 16] = [
    "John", "Mary", "Ann", "Peter", "Laura", "Ahmed", "Sofia", "Ken", "Olga", "Ravi", "Emma",
    "Lucas", "Chen", "Yuki", "Omar", "Grace",
];
const LAST: [&str; 16] = [
    "Johnson", "Smith", "Garcia", "Miller", "Brown", "Nguyen", "Schmidt", "Rossi", "Kowalski",
    "Tanaka", "Okafor", "Dubois", "Larsen", "Silva", "Novak", "Fischer",
];
const WORDS: [&str; 16] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Wonka",
    "Gringotts",
    "Oceanic",
    "Massive",
    "Dynamic",
];
const SUFFIX: [&str; 6] = [
    "Corporation",
    "Technology",
    "Logistics",
    "Holdings",
    "Trading",
    "Consulting",
];
const ZH_COMPANY: [&str; 6] = [
    "北京科技有限公司",
    "上海贸易有限公司",
    "深圳电子股份有限公司",
    "广州物流集团",
    "杭州网络科技公司",
    "成都软件有限公司",
];
const ZH_FAMILY: [&str; 8] = ["张", "王", "李", "赵", "刘", "陈", "杨", "黄"];
const ZH_GIVEN: [&str; 8] = ["三", "伟", "芳", "娜", "敏", "静", "强", "磊"];
const EN_NOTES: [&str; 8] = [
    "Customer wants a quote next week for the rollout",
    "Discussed pricing and the renewal timeline with procurement",
    "Follow up on the pilot results and schedule a demo",
    "Budget approved, waiting for the signed contract",
    "Left a voicemail about the onboarding workshop",
    "Technical questions about the integration and data migration",
    "Competitor offered a discount, need a counter proposal",
    "Shipping delays discussed, promised an update on Friday",
];
const ZH_NOTES: [&str; 6] = [
    "客户希望下周报价，预算大约五十万",
    "讨论了续约时间表和价格",
    "安排产品演示，跟进试点结果",
    "合同已经签署，等待付款",
    "客户对数据迁移有技术问题",
    "竞争对手提供折扣，需要新的方案",
];

/// A small deterministic generator (no dependency, same data every run).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.next() % items.len()]
    }
}

fn populate(e: &Engine, rng: &mut Lcg) -> Result<Vec<RecordId>> {
    let mut companies = Vec::with_capacity(COMPANIES);
    for chunk in 0..COMPANIES / 1000 {
        let batch = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let name = if n.is_multiple_of(5) {
                    format!("{}{}", rng.pick(&ZH_COMPANY), n)
                } else {
                    format!("{} {} {n}", rng.pick(&WORDS), rng.pick(&SUFFIX))
                };
                let name = if n.is_multiple_of(3) {
                    format!("{name} {}", rng.pick(&LAST))
                } else {
                    name
                };
                NewRecord::new(RecordType::Company)
                    .with("name", name)
                    .with("industry", rng.pick(&SUFFIX))
            })
            .collect();
        companies.extend(e.create_many(batch)?);
    }
    for chunk in 0..CONTACTS / 1000 {
        let batch = (0..1000)
            .map(|i| {
                let n = chunk * 1000 + i;
                let company = companies[rng.next() % companies.len()];
                let phone = format!("+1 415 {:03} {:04}", n % 1000, rng.next() % 10_000);
                let (first, last) = if n.is_multiple_of(5) {
                    (rng.pick(&ZH_GIVEN), rng.pick(&ZH_FAMILY))
                } else {
                    (rng.pick(&FIRST), rng.pick(&LAST))
                };
                let email = format!("user{n}@{}.example", rng.pick(&WORDS).to_lowercase());
                NewRecord::new(RecordType::Contact)
                    .with("first_name", first)
                    .with("last_name", last)
                    .with("company", company)
                    .with("emails", Value::List(vec![email]))
                    .with("phones", Value::List(vec![phone]))
                    .with("lifecycle", ["lead", "prospect", "customer"][n % 3])
                    .with("tags", Value::List(vec![format!("segment{}", n % 7)]))
            })
            .collect();
        e.create_many(batch)?;
    }
    for _ in 0..NOTES / 1000 {
        let batch = (0..1000)
            .map(|_| {
                // Real notes differ in length and detail: a name, a number, some filler.
                let filler = " and more".repeat(rng.next() % 6);
                let body = if rng.next().is_multiple_of(5) {
                    format!(
                        "{}。{}。{}{}",
                        rng.pick(&ZH_NOTES),
                        rng.pick(&ZH_NOTES),
                        rng.pick(&ZH_FAMILY),
                        rng.next() % 10_000
                    )
                } else {
                    format!(
                        "{}. {}. Spoke with {} about order {}{filler}.",
                        rng.pick(&EN_NOTES),
                        rng.pick(&EN_NOTES),
                        rng.pick(&FIRST),
                        rng.next() % 100_000
                    )
                };
                NewRecord::new(RecordType::Activity)
                    .with("kind", "note")
                    .with("subject", format!("Call with {}", rng.pick(&LAST)))
                    .with("body", Value::LongText(body))
            })
            .collect();
        e.create_many(batch)?;
    }
    Ok(companies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

struct Row {
    kind: &'static str,
    samples: Vec<Duration>,
    hits: usize,
}

fn measure(
    e: &Engine,
    kind: &'static str,
    queries: &[String],
    filters: &SearchFilters,
) -> Result<Row> {
    let mut samples = Vec::with_capacity(QUERIES_PER_KIND);
    let mut hits = 0;
    // SEARCH_BENCH_ONLY=phrase runs only the kinds whose name contains it (for profiling).
    if std::env::var("SEARCH_BENCH_ONLY").is_ok_and(|only| !kind.contains(only.as_str())) {
        return Ok(Row {
            kind,
            samples: vec![Duration::ZERO],
            hits,
        });
    }
    let runs = std::env::var("SEARCH_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(QUERIES_PER_KIND);
    let mut by_query = vec![Vec::new(); queries.len()];
    for (i, q) in queries.iter().enumerate().cycle().take(runs) {
        let t = Instant::now();
        let found = e.search(q, filters, Page::first(10))?;
        samples.push(t.elapsed());
        by_query[i].push(t.elapsed());
        hits += usize::from(!found.hits.is_empty());
    }
    // SEARCH_BENCH_VERBOSE=1 prints each query's median (which queries of a kind are slow).
    if std::env::var_os("SEARCH_BENCH_VERBOSE").is_some() {
        for (q, mut times) in queries.iter().zip(by_query) {
            times.sort();
            println!("{kind}: {q:?} median {}", fmt(percentile(&times, 0.5)));
        }
    }
    samples.sort();
    Ok(Row {
        kind,
        samples,
        hits,
    })
}

fn main() -> Result<()> {
    // SEARCH_BENCH_DB=path keeps the database between runs (the index is still rebuilt).
    let dir = tempfile::tempdir()?;
    let path = std::env::var_os("SEARCH_BENCH_DB")
        .map_or_else(|| dir.path().join("bench.redb"), std::path::PathBuf::from);
    let mut rng = Lcg(42);
    let reuse = path.exists();
    if reuse {
        let index = Engine::search_dir(&path);
        if index.exists() {
            std::fs::remove_dir_all(index)?;
        }
    }

    let t = Instant::now();
    if !reuse {
        let no_index = SearchOptions {
            enabled: false,
            ..SearchOptions::default()
        };
        let e = Engine::open_with_search(&path, EngineOptions::default(), no_index)?;
        populate(&e, &mut rng)?;
    }
    let records = COMPANIES + CONTACTS + NOTES;
    println!(
        "stored {records} records in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // Build from scratch: open with search, wait until the first search sees everything.
    let t = Instant::now();
    let e = Engine::open(&path)?;
    let opened = t.elapsed();
    let total = e
        .search("", &SearchFilters::new(), Page::first(1).with_total())?
        .total
        .unwrap_or_default();
    let build = t.elapsed();
    // A reused database also holds the fresh records of earlier runs.
    assert!(total >= records, "every record is indexed: {total}");

    // Warm the caches and the Chinese dictionary before timing queries.
    for q in ["acme", "报价", "jonhson", "\"quote next week\""] {
        e.search(q, &SearchFilters::new(), Page::first(10))?;
    }

    // Write-to-searchable: a write, then the first search that finds it.
    let mut fresh = Vec::new();
    let mut write_only = Vec::new();
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis();
    for i in 0..50 {
        let name = format!("Fresh{run}x{i}");
        let t = Instant::now();
        let id = e
            .create(NewRecord::new(RecordType::Company).with("name", name.as_str()))?
            .id;
        write_only.push(t.elapsed());
        let t = Instant::now();
        let found = e.search(&name, &SearchFilters::new(), Page::first(1))?;
        fresh.push(t.elapsed());
        assert_eq!(found.hits.first().map(|h| h.id), Some(id));
        std::thread::sleep(Duration::from_millis(20));
    }
    fresh.sort();
    write_only.sort();

    let words = |items: &[&str], f: &dyn Fn(&str) -> String| -> Vec<String> {
        items.iter().map(|w| f(w)).collect()
    };
    let prefix = words(&WORDS, &|w| w[..3].to_lowercase());
    let fuzzy: Vec<String> = LAST
        .iter()
        .chain(SUFFIX.iter())
        .filter(|w| w.len() >= 5)
        .map(|w| {
            // Swap two letters in the middle: one typo.
            let mut c: Vec<char> = w.to_lowercase().chars().collect();
            c.swap(2, 3);
            c.into_iter().collect()
        })
        .collect();
    let phrase = [
        "\"quote next week\"",
        "\"renewal timeline\"",
        "\"signed contract\"",
        "\"data migration\"",
        "\"下周报价\"",
    ]
    .map(String::from);
    let chinese = ["报价", "张三", "北京科技", "合同", "数据迁移"].map(String::from);
    let phones = ["+1 415 123", "415 555", "(415) 99"].map(String::from);
    let filtered = SearchFilters::new()
        .record_type(RecordType::Contact)
        .lifecycle("customer")
        .tag("segment3");

    // In-process baseline: reading a page's 10 records by id, which any page of hits costs at
    // least. Ratios to it stay comparable when the machine is slower or busy.
    let page_ids: Vec<RecordId> = e
        .search("acm", &SearchFilters::new(), Page::first(10))?
        .hits
        .iter()
        .map(|h| h.id)
        .collect();
    let mut floor = Vec::with_capacity(QUERIES_PER_KIND);
    for _ in 0..QUERIES_PER_KIND {
        let t = Instant::now();
        for id in &page_ids {
            e.get(*id)?;
        }
        floor.push(t.elapsed());
    }
    floor.sort();
    let floor = percentile(&floor, 0.5);

    let rows = vec![
        measure(&e, "prefix (type-ahead)", &prefix, &SearchFilters::new())?,
        measure(&e, "fuzzy (1 typo)", &fuzzy, &SearchFilters::new())?,
        measure(&e, "phrase", &phrase, &SearchFilters::new())?,
        measure(&e, "filtered (text + 3 filters)", &prefix, &filtered)?,
        measure(&e, "chinese words", &chinese, &SearchFilters::new())?,
        measure(&e, "phone digits", &phones, &SearchFilters::new())?,
    ];

    println!();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| records | {records} (20k companies, 80k contacts, 100k notes; 1/5 Chinese) |");
    println!(
        "| index open (rebuild starts in background) | {} |",
        fmt(opened)
    );
    println!(
        "| full build from scratch | {:.2} s ({:.0} records/s) |",
        build.as_secs_f64(),
        records as f64 / build.as_secs_f64()
    );
    println!(
        "| write (create, store commit) p50 / p99 | {} / {} |",
        fmt(percentile(&write_only, 0.5)),
        fmt(percentile(&write_only, 0.99))
    );
    println!(
        "| write-to-searchable p50 / p99 / max | {} / {} / {} |",
        fmt(percentile(&fresh, 0.5)),
        fmt(percentile(&fresh, 0.99)),
        fmt(fresh.last().copied().unwrap_or_default())
    );
    println!();
    println!(
        "baseline: reading {} records by id, median {}",
        page_ids.len(),
        fmt(floor)
    );
    println!();
    println!(
        "| query kind ({QUERIES_PER_KIND} runs, page of 10) | p50 | p99 | p50 / baseline | with hits |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for row in &rows {
        let p50 = percentile(&row.samples, 0.5);
        println!(
            "| {} | {} | {} | {:.1}x | {}/{} |",
            row.kind,
            fmt(p50),
            fmt(percentile(&row.samples, 0.99)),
            p50.as_secs_f64() / floor.as_secs_f64().max(1e-9),
            row.hits,
            row.samples.len()
        );
    }
    Ok(())
}
