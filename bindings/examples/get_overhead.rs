//! The Rust side of the `get` overhead measurement: the median time of `crmsync::Engine::get`
//! called directly, on the same data `bindings/bench_get.py` reads through the Python bindings.
//! `bindings/bench.sh` runs both in one go and prints the ratio.
//!
//! Prints one line: `rust_get_ns <median ns per call> <records> <rounds> <calls per round>`.

use std::time::Instant;

use crmsync::{Engine, Money, NewRecord, RecordId, RecordType};

/// Records created, and the shape of each: a company and a contact linked to it.
const COMPANIES: usize = 1_000;
const ROUNDS: usize = 51;
const CALLS_PER_ROUND: usize = 2_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let engine = Engine::in_memory()?;
    let mut contacts: Vec<RecordId> = Vec::with_capacity(COMPANIES);
    for i in 0..COMPANIES {
        let company = engine.create(
            NewRecord::new(RecordType::Company)
                .with("name", format!("Company {i}"))
                .with("domain", format!("company{i}.example"))
                .with("industry", "Retail")
                .with("employee_count", 50 + i as i64)
                .with("annual_revenue", Money::new(1_250_000 + i as i64, "USD")?),
        )?;
        let contact = engine.create(
            NewRecord::new(RecordType::Contact)
                .with("first_name", format!("Ada {i}"))
                .with("last_name", "Lovelace")
                .with(
                    "emails",
                    crmsync::Value::List(vec![format!("ada{i}@company{i}.example")]),
                )
                .with("phones", crmsync::Value::List(vec!["+1 555 0100".into()]))
                .with("company", company.id)
                .with("lifecycle", "customer")
                .with(
                    "tags",
                    crmsync::Value::List(vec!["vip".into(), "q3".into()]),
                ),
        )?;
        contacts.push(contact.id);
    }
    // Warm up, then time rounds of calls cycling over the contacts.
    let mut found = 0usize;
    for id in &contacts {
        found += usize::from(engine.get(*id)?.is_some());
    }
    let mut per_call = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for i in 0..CALLS_PER_ROUND {
            let record = engine.get(contacts[i % contacts.len()])?;
            found += usize::from(std::hint::black_box(record).is_some());
        }
        per_call.push(start.elapsed().as_nanos() as f64 / CALLS_PER_ROUND as f64);
    }
    per_call.sort_by(f64::total_cmp);
    let median = per_call[per_call.len() / 2];
    assert!(found > 0);
    println!(
        "rust_get_ns {median:.0} {} {ROUNDS} {CALLS_PER_ROUND}",
        contacts.len()
    );
    Ok(())
}
