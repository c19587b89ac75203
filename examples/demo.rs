//! The main demo, the whole story on one machine: device A (the admin) imports companies and
//! contacts from CSV and edits deals; device B joins the workspace; a relay runs in-process on
//! loopback; A and B sync through the relay at different times, both edit the same deal
//! offline, then meet directly peer-to-peer. It prints the merged deal with its visible
//! conflict and history, a full-text search, deals by stage and the analytics.
//!
//! Run with `cargo run --example demo [-- PATH]`; device A's database is recreated at PATH
//! (default: a file in the system temp directory) on every run, device B's beside it, and the
//! relay's data lives in a temporary directory removed at the end. Nothing leaves 127.0.0.1.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use crmsync::net::{EndpointAddr, NetOptions, Network, Role};
use crmsync::sync::{ReconcileMode, SyncReport};
use crmsync::{
    DeviceId, Engine, FilterOp, ImportOptions, ListQuery, Money, NewRecord, Page, Patch, RecordId,
    RecordType, SearchFilters, Value,
};
use crmsync_relay::{Config, Relay};

#[path = "demo_analytics.rs"]
mod demo_analytics;

const COMPANIES: &str = include_str!("data/companies.csv");
const CONTACTS: &str = include_str!("data/contacts.csv");

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path_a = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("crmsync-demo.redb"));
    let path_b = beside(&path_a, "device-b");
    let a = open_fresh(&path_a)?;
    let b = open_fresh(&path_b)?;
    let names = HashMap::from([(a.device_id(), "A"), (b.device_id(), "B")]);

    // Membership: A creates the workspace and invites B by node id; B's empty database takes
    // the workspace on when it joins. In an app the credential travels as a QR code.
    let admin = a.init_admin()?;
    let credential = a.invite_device(b.node_id()?, Role::Member, None)?;
    b.join(&credential.to_string())?;
    println!("workspace {}", a.workspace_id());
    println!("  device A (admin):  {}", path_a.display());
    println!("  device B (member): {}", path_b.display());

    // The relay is an always-on member: the admin registers the workspace with its public key
    // and issues the relay a credential, so devices trust it like any peer.
    let relay_dir = tempfile::tempdir().context("creating the relay's data directory")?;
    let relay = Relay::open(Config {
        data_dir: relay_dir.path().to_path_buf(),
        bind_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        // No operations endpoint: the demo reads no metrics, and its fixed default port would
        // collide with a relay already running on this machine.
        metrics_addr: None,
        ..Config::default()
    })?;
    let relay_credential = a.invite_device(relay.node_id(), Role::Member, None)?;
    relay.add_workspace(
        a.workspace_id(),
        admin.admin(),
        &relay_credential.to_string(),
    )?;
    let running = relay.serve().await?;
    let relay_addr = running.addr();
    let at: Vec<String> = relay_addr.ip_addrs().map(ToString::to_string).collect();
    println!(
        "  relay {} on {}",
        relay.node_id().fmt_short(),
        at.join(", ")
    );

    // 1. Device A works alone: import, deals, edits, a meeting note, a record's history.
    println!("\n== 1. device A imports and edits (offline, no network yet)");
    let nordwind = build_workspace(&a)?;
    print_history(&a, nordwind, &names)?;

    // 2. Monday morning A pushes to the relay and goes offline; only then does B come online.
    println!("\n== 2. A syncs with the relay, then goes offline; later B syncs");
    visit_relay(&a, "A", &relay_addr).await?;
    visit_relay(&b, "B", &relay_addr).await?;
    let on_b = b.get(nordwind)?.context("B received the deal")?;
    println!(
        "  B now has {} companies, {} contacts, {} deals; {} is at stage {}",
        b.count(&RecordType::Company)?,
        b.count(&RecordType::Contact)?,
        b.count(&RecordType::Deal)?,
        on_b.title(),
        on_b.text("stage").unwrap_or("-")
    );

    // 3. Both edit offline, the same deal included: different fields on each side merge, and
    // `probability`, set on both, is a conflict that resolves the same way everywhere.
    println!("\n== 3. both devices edit offline, the same deal included");
    edit_offline(&a, &b, nordwind)?;

    // 4. At different times, each online only for its session: B reaches the relay first, A
    // some time later. A session sends only the records that changed since the last one.
    println!("\n== 4. B syncs with the relay; later A does");
    visit_relay(&b, "B", &relay_addr).await?;
    visit_relay(&a, "A", &relay_addr).await?;

    // 5. One more edit on each side, offline; then in the same room (here: loopback) A and B
    // sync directly, no relay involved: one session carries both edits.
    println!("\n== 5. one more edit each, then A and B sync directly, peer-to-peer");
    a.update(
        nordwind,
        Patch::new().set("expected_close", date("2026-03-31")?),
    )?;
    b.create(
        NewRecord::new(RecordType::Activity)
            .with("kind", "task")
            .with("subject", "Send revised fleet tracking quote")
            .with("owner", "ben")
            .with("related", Value::Links(vec![nordwind])),
    )?;
    println!("  A: expected close → 2026-03-31;  B: a task to send the revised quote");
    let (net_a, net_b) = (online(&a).await?, online(&b).await?);
    report("A ⇄ B", &net_a.sync_with(net_b.addr()).await?);
    for network in [net_a, net_b] {
        network.shutdown().await;
    }
    // The relay missed that session: A's next visit hands it both edits, so a device that only
    // ever meets the relay gets them too.
    visit_relay(&a, "A", &relay_addr).await?;
    running.shutdown().await;

    // 6. The merged deal: both sides' fields, the conflict kept visible, the history of both.
    println!("\n== 6. the merged deal");
    print_record(&a, nordwind)?;
    let same = a.get(nordwind)?.map(|r| r.fields) == b.get(nordwind)?.map(|r| r.fields);
    println!("  same on B: {}", if same { "yes" } else { "NO" });
    for conflict in a.conflicts(nordwind)? {
        let others: Vec<String> = conflict
            .others
            .iter()
            .map(crmsync::model::format_value)
            .collect();
        println!(
            "  conflict on {}: both devices set it; shown {}, also kept: {}",
            conflict.field,
            crmsync::model::format_value(&conflict.value),
            others.join(", ")
        );
    }
    print_history(&a, nordwind, &names)?;

    // 7. Full-text search on B finds what either device wrote (prefixes, typos, all types).
    println!("\n== 7. search on device B");
    for query in ["fleet trackng", "budget"] {
        search(&b, query)?;
    }

    // 8. Deals by stage and the analytics, on A's replica.
    deals_by_stage(&a)?;
    demo_analytics::run(&a)
}

/// `path` with `suffix` added before its extension: `crm.redb` → `crm-device-b.redb`.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path.file_stem().unwrap_or_default().to_string_lossy();
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    path.with_file_name(name)
}

/// Opens a new database at `path`, removing what an earlier run left there (the file and its
/// search index), so every run tells the same story.
fn open_fresh(path: &Path) -> anyhow::Result<Engine> {
    if path.exists() {
        std::fs::remove_file(path).with_context(|| format!("removing old {}", path.display()))?;
    }
    let index = Engine::search_dir(path);
    if index.exists() {
        std::fs::remove_dir_all(&index)
            .with_context(|| format!("removing old {}", index.display()))?;
    }
    Engine::open(path).with_context(|| format!("opening {}", path.display()))
}

/// Starts a device's network on loopback only.
async fn online(engine: &Engine) -> anyhow::Result<Network> {
    Ok(engine.enable_network(NetOptions::loopback()).await?)
}

/// A device comes online, syncs with the relay and goes offline again. Staying connected would
/// let the relay push later changes to it at any moment; the story wants each exchange shown.
async fn visit_relay(engine: &Engine, who: &str, relay: &EndpointAddr) -> anyhow::Result<()> {
    let network = online(engine).await?;
    let synced = network.sync_with(relay.clone()).await;
    network.shutdown().await;
    report(&format!("{who} ⇄ relay"), &synced?);
    Ok(())
}

/// One line per session: what travelled each way, and how the differences were found (a
/// first meeting compares the whole database by ranges, later ones start from cursors).
fn report(who: &str, r: &SyncReport) {
    let found = match r.mode {
        ReconcileMode::Cursor => "since the last session",
        ReconcileMode::Ranges => "first meeting, compared by ranges",
    };
    println!(
        "  {who}: sent {} record(s) / {} B, received {} / {} B; {} round trips, {found}",
        r.records_sent, r.bytes_sent, r.records_received, r.bytes_received, r.round_trips,
    );
}

fn date(text: &str) -> anyhow::Result<chrono::NaiveDate> {
    Ok(chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")?)
}

/// Device A's work before any sync: imports the sample CSV files, creates deals across the
/// pipeline, edits one and logs a meeting note. Returns the deal the story follows.
fn build_workspace(engine: &Engine) -> anyhow::Result<RecordId> {
    // Two contact rows are bad on purpose: they are reported, the rest is stored.
    let options = ImportOptions::default();
    let companies = engine.import_csv(COMPANIES.as_bytes(), &RecordType::Company, &options)?;
    let contacts = engine.import_csv(CONTACTS.as_bytes(), &RecordType::Contact, &options)?;
    println!(
        "  imported {} companies and {} contacts",
        companies.created.len(),
        contacts.created.len()
    );
    for bad in companies.errors.iter().chain(&contacts.errors) {
        println!("    skipped line {}: {}", bad.line, bad.message);
    }

    let by_name = |name: &str| -> anyhow::Result<RecordId> {
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

    // Move a deal forward, tag it, log a meeting note and edit the note in place.
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
    let note = engine.get(note.id)?.context("note exists")?;
    println!(
        "  meeting note, edited in place: {}",
        note.text("body").unwrap_or_default()
    );
    print_record(engine, nordwind)?;
    Ok(nordwind)
}

/// Offline edits on both devices. The deal: A moves the stage and tags it, B revises the
/// amount and tags it, both set the probability. Elsewhere B updates a contact and logs a call.
fn edit_offline(a: &Engine, b: &Engine, deal: RecordId) -> anyhow::Result<()> {
    a.update(
        deal,
        Patch::new()
            .set("stage", "negotiation")
            .set("probability", 70i64)
            .add_tag("shortlisted"),
    )?;
    println!("  A: stage → negotiation, probability → 70, tag +shortlisted");
    b.update(
        deal,
        Patch::new()
            .set("amount", "125000.00 EUR".parse::<Money>()?)
            .set("probability", 60i64)
            .add_tag("budget-approved"),
    )?;
    println!("  B: amount → 125000.00 EUR, probability → 60, tag +budget-approved");

    let jonas = b
        .list(&ListQuery::new(RecordType::Contact).filter("last_name", FilterOp::Eq, "Becker"))?
        .first()
        .context("Jonas Becker imported")?
        .id;
    b.update(jonas, Patch::new().set("title", "CIO"))?;
    b.create(
        NewRecord::new(RecordType::Activity)
            .with("kind", "call")
            .with("subject", "Budget call with Jonas")
            .with(
                "body",
                Value::LongText(
                    "Budget approved for 120 trucks; fleet tracking to start in April.".into(),
                ),
            )
            .with("owner", "ben")
            .with("related", Value::Links(vec![deal, jonas])),
    )?;
    println!("  B: Jonas Becker's title → CIO, logged a budget call");
    Ok(())
}

fn print_record(engine: &Engine, id: RecordId) -> anyhow::Result<()> {
    let record = engine.get(id)?.context("record exists")?;
    println!("  {} {}", record.record_type, record.title());
    for (field, value) in &record.fields {
        // A link is shown as the linked record's title, not its id.
        let shown = match value {
            Value::Link(target) => engine.get(*target)?.map(|r| r.title()),
            _ => None,
        };
        let shown = shown.unwrap_or_else(|| crmsync::model::format_value(value));
        println!("  {field:>16} = {shown}");
    }
    Ok(())
}

/// A record's history, naming the device of each change, and the record as first created.
fn print_history(
    engine: &Engine,
    id: RecordId,
    names: &HashMap<DeviceId, &str>,
) -> anyhow::Result<()> {
    println!("  history:");
    let history = engine.history(id)?;
    for change in &history {
        let what = if change.created {
            format!("created with {}", change.fields.join(", "))
        } else {
            format!("set {}", change.fields.join(", "))
        };
        let by = names.get(&change.by).copied().unwrap_or("another device");
        println!("    {} on {by}: {what}", change.at.format("%H:%M:%S%.3f"));
    }
    let first = &history.first().context("a record has a history")?.version;
    let then = engine.get_at(id, first)?;
    println!(
        "  as first created: stage {}, amount {}",
        then.text("stage").unwrap_or("-"),
        then.get("amount")
            .map(crmsync::model::format_value)
            .unwrap_or_default()
    );
    Ok(())
}

fn search(engine: &Engine, query: &str) -> anyhow::Result<()> {
    let found = engine.search(query, &SearchFilters::new(), Page::first(5).with_total())?;
    println!(
        "  \"{query}\": {} match(es)",
        found.total.unwrap_or(found.hits.len())
    );
    for hit in &found.hits {
        let snippet = hit
            .snippet
            .as_ref()
            .map(|s| format!(" — {}: {}", s.field, s.marked("[", "]")))
            .unwrap_or_default();
        println!("    {:<9} {}{snippet}", hit.record_type, hit.title);
    }
    Ok(())
}

/// Deals in pipeline order, with totals per currency (never summed across currencies).
fn deals_by_stage(engine: &Engine) -> anyhow::Result<()> {
    println!("\n== deals by stage on A");
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
    Ok(())
}
