//! Network benchmark: the sync protocol over real iroh QUIC connections on loopback, against
//! the same sessions over an in-memory duplex in the same process.
//!
//! `cargo run --release --example net_bench [-- --records N --rounds R]` (defaults 100,000 and
//! 5). Replica `a` is synced to `duplex_peer` over a duplex and to `net_peer` over iroh: first
//! an initial sync of all records into the empty peers, then R rounds of 1,000 changed records
//! each. Prints times (medians of the rounds), records/s, bytes, and the network's overhead as
//! a ratio of the duplex time. Target: under 1.20.

use std::time::{Duration, Instant};

use anyhow::Context;
use crmsync::net::{NetOptions, Role};
use crmsync::sync::Replica;
use crmsync::sync::{SyncOptions, SyncReport, sync};
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType};
use tokio::io::{duplex, split};
use uuid::Uuid;

const CHANGES_PER_ROUND: usize = 1000;

fn open(dir: &std::path::Path, name: &str, workspace: Option<Uuid>) -> anyhow::Result<Engine> {
    let mut options = EngineOptions::default();
    options.store.workspace = workspace;
    Engine::open_with(dir.join(name), options).context("open replica")
}

/// One duplex session, each side on its own task (as two devices work in parallel).
async fn duplex_session(a: &Engine, b: &Engine) -> anyhow::Result<SyncReport> {
    let (x, y) = duplex(1 << 20);
    let side = |engine: &Engine, stream| {
        let engine = engine.clone();
        tokio::spawn(async move {
            let (r, w) = split(stream);
            sync(&engine, r, w, &SyncOptions::default()).await
        })
    };
    let (ta, tb) = (side(a, x), side(b, y));
    let report = ta.await??;
    tb.await??;
    Ok(report)
}

fn populate(e: &Engine, n: usize) -> anyhow::Result<Vec<RecordId>> {
    let mut ids = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
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
    Ok(ids)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: usize) -> anyhow::Result<usize> {
    Ok(args
        .iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse())
        .transpose()?
        .unwrap_or(default))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = arg(&args, "--records", 100_000)?;
    let rounds = arg(&args, "--rounds", 5)?.max(1);
    let dir = tempfile::tempdir()?;
    let a = open(dir.path(), "a.redb", None)?;
    a.init_admin()?;
    let ws = Some(a.workspace_id());
    let duplex_peer = open(dir.path(), "duplex.redb", ws)?;
    let net_peer = open(dir.path(), "net.redb", ws)?;
    let invite = a.invite_device(net_peer.node_id()?, Role::Member, None)?;
    net_peer.join(&invite.to_string())?;

    println!("populating {n} records ...");
    let ids = populate(&a, n)?;
    let na = a.enable_network(NetOptions::loopback()).await?;
    let nb = net_peer.enable_network(NetOptions::loopback()).await?;

    let t = Instant::now();
    let d = duplex_session(&a, &duplex_peer).await?;
    let initial_duplex = t.elapsed();
    let t = Instant::now();
    let r = na.sync_with(nb.addr()).await?;
    let initial_net = t.elapsed();
    anyhow::ensure!(
        d.records_sent == n && r.records_sent == n,
        "initial sync incomplete"
    );
    let initial_bytes = (
        d.bytes_sent + d.bytes_received,
        r.bytes_sent + r.bytes_received,
    );

    let (mut inc_duplex, mut inc_net) = (Vec::new(), Vec::new());
    let mut inc_bytes = (0, 0);
    for round in 0..rounds {
        let step = (n / CHANGES_PER_ROUND).max(1);
        for (i, id) in ids
            .iter()
            .skip(round)
            .step_by(step)
            .take(CHANGES_PER_ROUND)
            .enumerate()
        {
            a.update(*id, Patch::new().set("owner", format!("rep{round}-{i}")))?;
        }
        let t = Instant::now();
        let d = duplex_session(&a, &duplex_peer).await?;
        inc_duplex.push(t.elapsed());
        let t = Instant::now();
        let r = na.sync_with(nb.addr()).await?;
        inc_net.push(t.elapsed());
        anyhow::ensure!(
            d.records_sent == r.records_sent && r.records_sent == CHANGES_PER_ROUND.min(n),
            "round {round}: duplex sent {}, network {}",
            d.records_sent,
            r.records_sent
        );
        inc_bytes = (
            d.bytes_sent + d.bytes_received,
            r.bytes_sent + r.bytes_received,
        );
    }
    anyhow::ensure!(
        a.all_heads()? == net_peer.all_heads()?,
        "the network peer did not converge"
    );
    let (inc_duplex, inc_net) = (median(inc_duplex), median(inc_net));

    println!(
        "\n{:<26} {:>9} {:>11} {:>11} {:>12} {:>12} {:>8}  target",
        "scenario", "records", "duplex", "iroh", "iroh rec/s", "iroh bytes", "ratio"
    );
    let rows = [
        (
            "initial sync (1 run)",
            n,
            initial_duplex,
            initial_net,
            initial_bytes,
        ),
        (
            "incremental (median)",
            CHANGES_PER_ROUND.min(n),
            inc_duplex,
            inc_net,
            inc_bytes,
        ),
    ];
    for (name, records, duplex_time, net_time, (duplex_bytes, net_bytes)) in rows {
        let ratio = net_time.as_secs_f64() / duplex_time.as_secs_f64();
        println!(
            "{:<26} {:>9} {:>11.3?} {:>11.3?} {:>12.0} {:>12} {:>8.2}  < 1.20 {}  (duplex bytes {})",
            name,
            records,
            duplex_time,
            net_time,
            records as f64 / net_time.as_secs_f64(),
            net_bytes,
            ratio,
            if ratio < 1.2 { "PASS" } else { "MISS" },
            duplex_bytes,
        );
    }
    println!(
        "\nratio = iroh time / duplex time, same replicas, same process; {rounds} incremental rounds"
    );
    // Background mode: how long from a local write on `a` until the peer has it (push, not
    // poll: the poll interval is 30 s).
    na.add_peer(nb.addr());
    na.start_background();
    let mut latencies = Vec::new();
    for i in 0..rounds {
        let t = Instant::now();
        let id = a
            .create(NewRecord::new(RecordType::Company).with("name", format!("Pushed {i}")))?
            .id;
        while net_peer.get(id)?.is_none() {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "push not delivered");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        latencies.push(t.elapsed());
    }
    let latency = median(latencies);
    println!(
        "background push, local write to visible on the peer: median {latency:.1?} over \
         {rounds} writes; target < 1 s {}",
        if latency < Duration::from_secs(1) {
            "PASS"
        } else {
            "MISS"
        }
    );
    na.shutdown().await;
    nb.shutdown().await;
    Ok(())
}
