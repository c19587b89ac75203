//! The main demo: open a database file, import companies and contacts from CSV, edit records,
//! print a record with its history, and list deals by pipeline stage.
//!
//! Run with `cargo run --example demo [-- PATH]`; the database is recreated at PATH (default: a
//! file in the system temp directory) on every run.

use std::collections::BTreeMap;

use anyhow::Context;
use crmsync::{
    Engine, FilterOp, ImportOptions, ListQuery, Money, NewRecord, Patch, RecordType, Value,
};

#[path = "demo_analytics.rs"]
mod demo_analytics;

const COMPANIES: &str = include_str!("data/companies.csv");
const CONTACTS: &str = include_str!("data/contacts.csv");

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("crmsync-demo.redb"));
    if path.exists() {
        std::fs::remove_file(&path).with_context(|| format!("removing old {}", path.display()))?;
    }
    let engine = Engine::open(&path).with_context(|| format!("opening {}", path.display()))?;
    println!(
        "database: {} (device {})",
        path.display(),
        engine.device_id()
    );

    // 1. Import. Two contact rows are bad on purpose: they are reported, the rest is stored.
    let options = ImportOptions::default();
    let companies = engine.import_csv(COMPANIES.as_bytes(), &RecordType::Company, &options)?;
    let contacts = engine.import_csv(CONTACTS.as_bytes(), &RecordType::Contact, &options)?;
    println!(
        "\nimported {} companies and {} contacts",
        companies.created.len(),
        contacts.created.len()
    );
    for bad in companies.errors.iter().chain(&contacts.errors) {
        println!("  skipped line {}: {}", bad.line, bad.message);
    }

    // 2. Deals across the pipeline, linked to the imported companies.
    let by_name = |name: &str| -> anyhow::Result<crmsync::RecordId> {
        let found =
            engine.list(&ListQuery::new(RecordType::Company).filter("name", FilterOp::Eq, name))?;
        Ok(found.first().context("company imported")?.id)
    };
    let deals = [
        (
            "Acme line 4 automation",
            "Acme Robotics",
            "240000.00 USD",
            "proposal",
        ),
        (
            "Acme spare parts",
            "Acme Robotics",
            "18000.00 USD",
            "closed_won",
        ),
        (
            "Nordwind fleet tracking",
            "Nordwind Logistik GmbH",
            "95000.00 EUR",
            "qualification",
        ),
        (
            "中关村 data platform",
            "北京科技有限公司",
            "680000.00 CNY",
            "negotiation",
        ),
        (
            "Kestrel pilot",
            "Kestrel Health",
            "30000.00 GBP",
            "prospecting",
        ),
        (
            "Verde POS rollout",
            "Verde Foods",
            "52000.00 BRL",
            "closed_lost",
        ),
    ];
    let mut deal_ids = Vec::new();
    for (name, company, amount, stage) in deals {
        let deal = engine.create(
            NewRecord::new(RecordType::Deal)
                .with("name", name)
                .with("company", by_name(company)?)
                .with("amount", amount.parse::<Money>()?)
                .with("stage", stage)
                .with("owner", "ana"),
        )?;
        deal_ids.push(deal.id);
    }

    // 3. Edits: move a deal forward, tag it, log a meeting note and edit the note in place.
    let nordwind = deal_ids[2];
    engine.update(
        nordwind,
        Patch::new().set("stage", "proposal").add_tag("rfp"),
    )?;
    engine.update(
        nordwind,
        Patch::new()
            .set("amount", "110000.00 EUR".parse::<Money>()?)
            .set("probability", 55i64),
    )?;
    let note = engine.create(
        NewRecord::new(RecordType::Activity)
            .with("kind", "meeting")
            .with("subject", "Fleet tracking workshop")
            .with(
                "body",
                Value::LongText("Jonas wants a quote next week.".into()),
            )
            .with("related", Value::Links(vec![nordwind])),
    )?;
    engine.update(note.id, Patch::new().splice_text("body", 6, 5, "asked for"))?;

    // 4. A record with its history.
    let deal = engine.get(nordwind)?.context("deal exists")?;
    println!("\ndeal {}: {}", deal.id, deal.title());
    for (field, value) in &deal.fields {
        println!("  {field:>14} = {}", crmsync::model::format_value(value));
    }
    println!("  history:");
    for change in engine.history(nordwind)? {
        let what = if change.created {
            format!("created with {}", change.fields.join(", "))
        } else {
            format!("set {}", change.fields.join(", "))
        };
        println!(
            "    {} by {}: {what}",
            change.at.format("%H:%M:%S%.3f"),
            change.by
        );
    }
    let first = engine.history(nordwind)?.remove(0).version;
    let then = engine.get_at(nordwind, &first)?;
    println!(
        "  as first created: stage {}, amount {}",
        then.text("stage").unwrap_or("-"),
        then.get("amount")
            .map(crmsync::model::format_value)
            .unwrap_or_default()
    );
    let note = engine.get(note.id)?.context("note exists")?;
    println!("\nnote: {}", note.text("body").unwrap_or_default());

    // 5. Deals by stage, in pipeline order, with totals per currency (never summed across).
    println!("\ndeals by stage:");
    let schema = engine.schema();
    for stage in &schema.pipeline().stages {
        let deals = engine.list(
            &ListQuery::new(RecordType::Deal)
                .filter("stage", FilterOp::Eq, stage.name.as_str())
                .page(0, 1000),
        )?;
        if deals.is_empty() {
            continue;
        }
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for d in &deals {
            if let Some(m) = d.get("amount").and_then(Value::as_money) {
                *totals.entry(m.currency.code().to_string()).or_default() += m.minor;
            }
        }
        let totals: Vec<String> = totals
            .into_iter()
            .map(|(code, minor)| Money::new(minor, &code).map(|m| m.to_string()))
            .collect::<Result<_, _>>()?;
        println!(
            "  {:<14} {} deal(s), {}",
            stage.name,
            deals.len(),
            totals.join(" + ")
        );
        for d in deals {
            println!("      - {}", d.title());
        }
    }
    demo_analytics::run(&engine)
}
