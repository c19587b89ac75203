//! Sync benchmark: two replicas in one process over an in-memory duplex.
//!
//! `cargo run --release --example sync_bench [-- --records N]` (default 100,000). Measures an
//! initial sync to an empty replica, an incremental sync of 10% changed records with a known
//! peer, and a new pairing of two equal replicas that differ in 10 records; prints records/s,
//! wire bytes against the bytes of the Automerge changes themselves, and round trips.

use std::time::{Duration, Instant};

use anyhow::Context;
use crmsync::sync::{SyncOptions, SyncReport, sync};
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType};
use tokio::io::{duplex, split};
use uuid::Uuid;

fn open(dir: &std::path::Path, name: &str, workspace: Uuid) -> anyhow::Result<Engine> {
    let mut options = EngineOptions::default();
    options.store.workspace = Some(workspace);
    Engine::open_with(dir.join(name), options).context("open replica")
}

/// One session, each side on its own task (as on two devices: both sides work in parallel).
async fn session(a: &Engine, b: &Engine) -> anyhow::Result<(SyncReport, SyncReport)> {
    let (x, y) = duplex(1 << 20);
    let side = |engine: &Engine, stream| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let (r, w) = split(stream);
            sync(&engine, r, w, &SyncOptions::default()).await
        })
    };
    let (ta, tb) = (side(a, x), side(b, y));
    Ok((ta.await??, tb.await??))
}

/// Bytes of the changes `to` lacks from `from`, for the given records: the physical floor.
fn raw_change_bytes(from: &Engine, to: &Engine, ids: &[RecordId]) -> anyhow::Result<u64> {
    let mut total = 0;
    for id in ids {
        let have = to.heads(*id)?;
        total += from
            .export_changes(*id, &have)?
            .map_or(0, |b| b.len() as u64);
    }
    Ok(total)
}

/// With `SYNC_BENCH_PERF_CTL=<fifo>`, tells a `perf record --control fifo:<fifo> -D -1` to
/// start or stop sampling, so a profile covers one session only: the incremental one, or the
/// initial one with `SYNC_BENCH_PROFILE=initial`.
fn profile(phase: &str, command: &str) {
    let wanted = std::env::var("SYNC_BENCH_PROFILE").unwrap_or_else(|_| "incremental".into());
    if wanted != phase {
        return;
    }
    if let Some(fifo) = std::env::var_os("SYNC_BENCH_PERF_CTL")
        && let Err(e) = std::fs::write(&fifo, format!("{command}\n"))
    {
        eprintln!("perf control: {e}");
    }
}

struct Row {
    name: &'static str,
    records: usize,
    time: Duration,
    wire: u64,
    raw: u64,
    round_trips: u32,
    target: String,
    pass: bool,
}

fn populate(e: &Engine, n: usize) -> anyhow::Result<Vec<RecordId>> {
    let mut ids = Vec::with_capacity(n);
    let companies = n / 5;
    for chunk in (0..companies).collect::<Vec<_>>().chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|i| {
                NewRecord::new(RecordType::Company)
                    .with("name", format!("Company {i}"))
                    .with("domain", format!("c{i}.example"))
                    .with("industry", ["Retail", "Energy", "Software"][i % 3])
            })
            .collect();
        ids.extend(e.create_many(batch)?);
    }
    for chunk in (0..n - companies).collect::<Vec<_>>().chunks(10_000) {
        let batch = chunk
            .iter()
            .map(|i| {
                NewRecord::new(RecordType::Contact)
                    .with("first_name", format!("First{i}"))
                    .with("last_name", format!("Last{i}"))
                    .with("title", "Buyer")
                    .with("company", ids[i % companies])
            })
            .collect();
        ids.extend(e.create_many(batch)?);
    }
    Ok(ids)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args
        .iter()
        .position(|a| a == "--records")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(100_000);
    let dir = tempfile::tempdir()?;
    let ws = Uuid::new_v4();
    let (a, b) = (
        open(dir.path(), "a.redb", ws)?,
        open(dir.path(), "b.redb", ws)?,
    );
    println!("populating {n} records ...");
    let ids = populate(&a, n)?;
    let mut rows = Vec::new();

    // 1. Initial sync into an empty replica.
    let raw = raw_change_bytes(&a, &b, &ids)?;
    profile("initial", "enable");
    let t = Instant::now();
    let (ra, rb) = session(&a, &b).await?;
    let time = t.elapsed();
    profile("initial", "disable");
    anyhow::ensure!(
        rb.records_received == n,
        "b received {}",
        rb.records_received
    );
    rows.push(Row {
        name: "initial sync (empty peer)",
        records: n,
        time,
        wire: ra.bytes_sent + rb.bytes_sent,
        raw,
        round_trips: ra.round_trips,
        target: "< 10 s".into(),
        pass: time < Duration::from_secs(10),
    });

    // 2. Incremental: 10% of the records changed on a, known peer.
    let changed: Vec<RecordId> = ids.iter().step_by(10).copied().collect();
    for (i, id) in changed.iter().enumerate() {
        a.update(*id, Patch::new().set("owner", format!("rep{}", i % 7)))?;
    }
    let raw = raw_change_bytes(&a, &b, &changed)?;
    profile("incremental", "enable");
    let t = Instant::now();
    let (ra, rb) = session(&a, &b).await?;
    let time = t.elapsed();
    profile("incremental", "disable");
    anyhow::ensure!(
        rb.records_received == changed.len(),
        "incremental incomplete"
    );
    let wire = ra.bytes_sent + rb.bytes_sent;
    rows.push(Row {
        name: "incremental (10% changed)",
        records: changed.len(),
        time,
        wire,
        raw,
        round_trips: ra.round_trips,
        target: "< 1 s, wire <= 1.5x raw, <= 4 RT".into(),
        pass: time < Duration::from_secs(1)
            && (wire as f64) <= 1.5 * raw as f64
            && ra.round_trips <= 4,
    });

    // 3. A new pairing: c gets a copy of b without a session, then 10 records differ.
    let c = open(dir.path(), "c.redb", ws)?;
    session(&c, &b).await?;
    // c has met b, never a: c and a are a fresh pairing.
    for id in ids.iter().step_by(n / 10) {
        c.update(*id, Patch::new().set("owner", "changed"))?;
    }
    let t = Instant::now();
    let (rca, rac) = session(&c, &a).await?;
    let time = t.elapsed();
    rows.push(Row {
        name: "new pairing, 10 differ",
        records: rca.differing,
        time,
        wire: rca.bytes_sent + rac.bytes_sent,
        raw: 0,
        round_trips: rca.round_trips,
        target: "kilobytes, O(log n) RT".into(),
        pass: rca.bytes_sent + rac.bytes_sent < 64 * 1024,
    });

    println!(
        "\n{:<28} {:>9} {:>10} {:>12} {:>12} {:>12} {:>6} {:>6}  target",
        "scenario", "records", "time", "records/s", "wire bytes", "raw bytes", "wire/raw", "RT"
    );
    for r in rows {
        let ratio = if r.raw == 0 {
            "-".to_string()
        } else {
            format!("{:.2}", r.wire as f64 / r.raw as f64)
        };
        println!(
            "{:<28} {:>9} {:>10.3?} {:>12.0} {:>12} {:>12} {:>8} {:>6}  {} {}",
            r.name,
            r.records,
            r.time,
            r.records as f64 / r.time.as_secs_f64(),
            r.wire,
            r.raw,
            ratio,
            r.round_trips,
            r.target,
            if r.pass { "PASS" } else { "MISS" }
        );
    }
    println!(
        "\nwire = bytes both ways incl. framing; raw = Automerge change bytes the receiver lacked"
    );
    Ok(())
}
