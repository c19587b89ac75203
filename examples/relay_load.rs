//! Load generator for the relay: N devices sync with one `crmsync-relay serve` process on
//! loopback, editing a few records before every session.
//!
//! ```sh
//! cargo build --release -p crmsync-relay --bin crmsync-relay --example relay_load
//! cargo run --release -p crmsync-relay --example relay_load [-- OPTIONS]
//! ```
//!
//! Options (defaults in brackets):
//! - `--relay PATH`: the relay binary [`$CRMSYNC_RELAY_BIN`, else `crmsync-relay` beside this
//!   example's directory, else `<workspace>/target/release/crmsync-relay`]
//! - `--devices 10,50,200`: the device counts N, one fresh relay each
//! - `--think-ms 1000,0`: a device's mean pause between sessions; 1000 is a busy user's pace
//!   (latency under a realistic load), 0 runs every device flat out (the relay's throughput
//!   ceiling, with the devices competing for the same cores)
//! - `--duration 10`: seconds of load per run
//! - `--seed-records 200`: records every device receives in its first (full) sync
//!
//! Per run: a fresh relay process with one workspace; the admin seeds it; N devices join and
//! pull the seed (first sync, timed separately); then every device repeatedly edits 1-5
//! records (mostly updates of shared records, some creates) and syncs (an incremental
//! session) until the duration is over. Printed per run: sessions, sessions/s, records/s
//! applied (pushed into the relay plus pulled into devices), p50 / p99 / max session latency
//! over all sessions, failed sessions, the relay's peak RSS (VmHWM), and whether p99 is under
//! the 500 ms target. The devices run in this process, so on a small machine they take CPU
//! from the relay: the numbers are a lower bound for a relay with the machine to itself.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crmsync::net::{EndpointAddr, NetOptions, Network, PublicKey, Role, TransportAddr};
use crmsync::sync::Replica;
use crmsync::{Engine, EngineOptions, NewRecord, Patch, RecordId, RecordType, SearchOptions};

const TARGET_P99: Duration = Duration::from_millis(500);

struct Args {
    relay: PathBuf,
    devices: Vec<usize>,
    think_ms: Vec<u64>,
    duration: Duration,
    seed_records: usize,
}

fn list<T: std::str::FromStr>(flag: &str, value: &str) -> anyhow::Result<Vec<T>> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: `{v}` is not a number"))
        })
        .collect()
}

fn parse_args() -> anyhow::Result<Args> {
    let mut relay = std::env::var_os("CRMSYNC_RELAY_BIN").map(PathBuf::from);
    let mut devices = vec![10, 50, 200];
    let mut think_ms = vec![1000, 0];
    let mut duration = Duration::from_secs(10);
    let mut seed_records = 200;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--relay" => relay = Some(PathBuf::from(value()?)),
            "--devices" => devices = list(&flag, &value()?)?,
            "--think-ms" => think_ms = list(&flag, &value()?)?,
            "--duration" => duration = Duration::from_secs_f64(value()?.parse()?),
            "--seed-records" => seed_records = value()?.parse()?,
            "--help" | "-h" => {
                println!(
                    "relay_load [--relay PATH] [--devices 10,50,200] [--think-ms 1000,0] \
                     [--duration SECS] [--seed-records N]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument `{other}` (try --help)"),
        }
    }
    ensure!(
        devices.iter().all(|&n| n > 0),
        "--devices: counts must be positive"
    );
    Ok(Args {
        relay: match relay {
            Some(path) => path,
            None => default_relay()?,
        },
        devices,
        think_ms,
        duration,
        seed_records,
    })
}

/// The release relay binary: beside this example's directory (`target/release/examples/..`),
/// which is where `cargo build --release` puts it whatever the target directory, else under
/// the workspace's `target/release`.
fn default_relay() -> anyhow::Result<PathBuf> {
    let name = format!("crmsync-relay{}", std::env::consts::EXE_SUFFIX);
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join(&name));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(root.join("target").join("release").join(&name));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the relay binary is not built (looked at {}): run \
         `cargo build --release -p crmsync-relay` first, or pass --relay PATH / set \
         CRMSYNC_RELAY_BIN",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// The config with every address it binds on loopback moved to port 0 (any free port), so
/// this relay collides with no other test's relay nor with one already running here.
fn on_free_ports(text: &str) -> String {
    const LOOPBACK: &str = "\"127.0.0.1:";
    let mut out = String::new();
    for line in text.lines() {
        match line.find(LOOPBACK) {
            Some(at) if !line.trim_start().starts_with('#') => {
                let port = at + LOOPBACK.len();
                let end = port + line[port..].find('"').unwrap_or(line.len() - port);
                out.push_str(&line[..port]);
                out.push('0');
                out.push_str(&line[end..]);
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn run_relay(relay: &Path, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(relay)
        .args(args)
        .output()
        .with_context(|| format!("running {}", relay.display()))?;
    ensure!(
        out.status.success(),
        "crmsync-relay {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A `crmsync-relay serve` process, killed if the run fails before stopping it.
struct RelayProcess {
    child: Option<Child>,
    log: PathBuf,
    addr: EndpointAddr,
    /// Its operations endpoint (`/metrics`), if it serves one.
    operations: Option<SocketAddr>,
}

/// Counters from the relay's `/metrics`: every session it served, the pushes to connected
/// devices (live fan-out) included, which the devices' own reports do not show.
#[derive(Debug, Default, Clone, Copy)]
struct RelayCounters {
    /// Sessions a device opened.
    incoming: f64,
    /// Sessions the relay opened to push changes to a connected device.
    outgoing: f64,
    /// Records received from devices and applied.
    applied: f64,
    /// Records sent to devices.
    sent: f64,
    /// Time the relay spent in completed sessions, both directions, and their count: the
    /// relay's own view of a session, without the devices' side of the machine.
    session_seconds: f64,
    session_count: f64,
    /// CPU seconds the relay process used (user + system).
    cpu_seconds: f64,
}

impl RelayCounters {
    fn minus(self, before: Self) -> Self {
        Self {
            incoming: self.incoming - before.incoming,
            outgoing: self.outgoing - before.outgoing,
            applied: self.applied - before.applied,
            sent: self.sent - before.sent,
            session_seconds: self.session_seconds - before.session_seconds,
            session_count: self.session_count - before.session_count,
            cpu_seconds: self.cpu_seconds - before.cpu_seconds,
        }
    }
}

/// `GET path` over plain HTTP/1.1; the body.
fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "{path}: {head}");
    Ok(body.to_string())
}

/// The sum of a Prometheus counter over the series whose labels contain `label` (all series
/// when empty).
fn counter_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            (metric == name && labels.contains(label)).then(|| value.parse::<f64>().ok())?
        })
        .sum()
}

impl RelayProcess {
    /// `init`, `workspace add` for the admin's workspace, `serve` on a free loopback port.
    fn start(relay: &Path, dir: &Path, admin: &Engine) -> anyhow::Result<Self> {
        let config = dir.join("relay.toml");
        let config_arg = config.to_str().context("temp dir path is not UTF-8")?;
        let out = run_relay(relay, &["init", "--config", config_arg])?;
        let node_id: PublicKey = out
            .lines()
            .find_map(|l| l.strip_prefix("relay node id: "))
            .context("`init` printed no node id")?
            .parse()?;
        let text = on_free_ports(&std::fs::read_to_string(&config)?);
        ensure!(
            text.contains("bind_addr = \"127.0.0.1:0\""),
            "the config template no longer binds 127.0.0.1; update this example"
        );
        std::fs::write(&config, text)?;

        let credential = admin.invite_device(node_id, Role::Member, None)?;
        run_relay(
            relay,
            &[
                "workspace",
                "add",
                "--config",
                config_arg,
                "--id",
                &admin.workspace_id().to_string(),
                "--admin-key",
                &credential.admin().to_string(),
                "--credential",
                &credential.to_string(),
            ],
        )?;

        let log = dir.join("relay.log");
        let mut child = Command::new(relay)
            .args(["serve", "--config", config_arg])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()?;
        // A thread reads stdout to its end (a relay whose stdout pipe is closed would fail on
        // its next line) and hands the lines over.
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut process = Self {
            child: Some(child),
            log,
            addr: EndpointAddr::from_parts(node_id, []),
            operations: None,
        };
        let socket: SocketAddr = loop {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
                bail!(
                    "the relay did not print its address; its log:\n{}",
                    process.log_tail()
                );
            };
            if let Some(a) = line.strip_prefix("listening on: ") {
                break a.parse()?;
            }
        };
        // The operations address follows at once, if the relay serves one.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            if let Some(rest) = line.strip_prefix("operations on: http://") {
                process.operations = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                break;
            }
        }
        process.addr = EndpointAddr::from_parts(node_id, [TransportAddr::Ip(socket)]);
        Ok(process)
    }

    /// The relay's session and record counters; `None` without an operations endpoint.
    fn counters(&self) -> anyhow::Result<Option<RelayCounters>> {
        let Some(addr) = self.operations else {
            return Ok(None);
        };
        let metrics = http_get(addr, "/metrics")?;
        let sessions = "crmsync_relay_sessions_total";
        Ok(Some(RelayCounters {
            incoming: counter_sum(&metrics, sessions, "direction=\"incoming\""),
            outgoing: counter_sum(&metrics, sessions, "direction=\"outgoing\""),
            applied: counter_sum(&metrics, "crmsync_relay_records_applied_total", ""),
            sent: counter_sum(&metrics, "crmsync_relay_records_sent_total", ""),
            session_seconds: counter_sum(
                &metrics,
                "crmsync_relay_session_duration_seconds_sum",
                "",
            ),
            session_count: counter_sum(
                &metrics,
                "crmsync_relay_session_duration_seconds_count",
                "",
            ),
            cpu_seconds: self.cpu_seconds()?,
        }))
    }

    /// User plus system CPU time of the relay process so far, from `/proc/<pid>/stat`.
    fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let pid = self.child.as_ref().context("relay stopped")?.id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .context("reading the relay's /proc stat (Linux only)")?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').context("malformed /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .context("short /proc stat")?
            .iter()
            .map(|f| f.parse::<f64>().unwrap_or(0.0))
            .sum();
        Ok(ticks / clock_ticks_per_second())
    }

    /// Peak resident set (VmHWM) in MiB since the relay started.
    fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let pid = self.child.as_ref().context("relay stopped")?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .context("reading the relay's /proc status (Linux only)")?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .context("no VmHWM in /proc/<pid>/status")?;
        Ok(kib as f64 / 1024.0)
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// SIGTERM, then wait for the graceful exit.
    fn stop(mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("relay stopped")?;
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        ensure!(killed.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                ensure!(
                    status.success(),
                    "relay exited with {status}; log:\n{}",
                    self.log_tail()
                );
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the relay did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Deterministic per-device pseudo-randomness (xorshift): runs are repeatable.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point; the multiply also spreads consecutive seeds.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Devices keep no search index: search is not what is measured, and N index writers would
/// take CPU from the relay.
fn device_engine(workspace: Option<uuid::Uuid>) -> anyhow::Result<Engine> {
    let mut options = EngineOptions::default();
    options.store.workspace = workspace;
    let search = SearchOptions {
        enabled: false,
        ..SearchOptions::default()
    };
    Ok(Engine::in_memory_with_search(options, search)?)
}

/// 1-5 records: mostly updates of the shared seed records (so devices edit the same records
/// concurrently and pull each other's changes), sometimes a new company.
fn small_edit(e: &Engine, seed: &[RecordId], rng: &mut XorShift, device: usize) -> usize {
    let n = 1 + rng.below(5) as usize;
    for _ in 0..n {
        if seed.is_empty() || rng.below(5) == 0 {
            let name = format!("device {device} company {}", rng.below(1 << 30));
            e.create(NewRecord::new(RecordType::Company).with("name", name))
                .expect("create");
        } else {
            let id = seed[rng.below(seed.len() as u64) as usize];
            let patch = match rng.below(3) {
                0 => Patch::new().set("name", format!("renamed by {device}")),
                1 => Patch::new().set("employee_count", rng.below(10_000) as i64),
                _ => Patch::new().add_tag(&format!("t{}", rng.below(8))),
            };
            e.update(id, patch).expect("update");
        }
    }
    n
}

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    pushed: usize,
    pulled: usize,
    edits: usize,
    errors: usize,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.latencies.extend(other.latencies);
        self.pushed += other.pushed;
        self.pulled += other.pulled;
        self.edits += other.edits;
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    fn record(&mut self, started: Instant, outcome: Result<crmsync::sync::SyncReport, String>) {
        match outcome {
            Ok(report) => {
                self.latencies.push(started.elapsed());
                self.pushed += report.records_sent;
                self.pulled += report.records_received;
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Nearest-rank percentile of sorted latencies.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Row {
    devices: usize,
    think_ms: u64,
    sessions: usize,
    elapsed: Duration,
    records: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    errors: usize,
    peak_mib: f64,
    relay: Option<RelayCounters>,
}

/// Every device runs `body` on its own task; their tallies are merged.
async fn on_every_device<F, Fut>(devices: &Arc<Vec<(Engine, Network)>>, body: F) -> Tally
where
    F: Fn(usize, Engine, Network) -> Fut,
    Fut: Future<Output = Tally> + Send + 'static,
{
    let tasks: Vec<_> = devices
        .iter()
        .enumerate()
        .map(|(i, (e, n))| tokio::spawn(body(i, e.clone(), n.clone())))
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        total.merge(task.await.expect("device task"));
    }
    total
}

async fn run(args: &Args, n: usize, think_ms: u64) -> anyhow::Result<Row> {
    let dir = tempfile::tempdir()?;
    let admin = device_engine(None)?;
    admin.init_admin()?;
    let relay = RelayProcess::start(&args.relay, dir.path(), &admin)?;

    // The admin seeds the workspace through the relay, then leaves.
    let seed: Vec<RecordId> = admin.create_many(
        (0..args.seed_records)
            .map(|i| {
                NewRecord::new(RecordType::Company)
                    .with("name", format!("Seed company {i}"))
                    .with("domain", format!("seed{i}.example"))
            })
            .collect(),
    )?;
    let admin_net = admin.enable_network(NetOptions::loopback()).await?;
    admin_net.sync_with(relay.addr.clone()).await?;
    admin_net.shutdown().await;

    let mut devices = Vec::with_capacity(n);
    for i in 0..n {
        let engine = device_engine(Some(admin.workspace_id()))?;
        let credential = admin.invite_device(engine.node_id()?, Role::Member, None)?;
        engine.join(&credential.to_string())?;
        let network = engine
            .enable_network(NetOptions::loopback())
            .await
            .with_context(|| {
                format!(
                    "device {i} of {n} cannot bind a socket (file descriptors: `ulimit -n` \
                     is {})",
                    open_files_limit()
                )
            })?;
        devices.push((engine, network));
    }
    let devices = Arc::new(devices);

    // First sync: every device pulls the seed, all at once.
    let addr = relay.addr.clone();
    let initial_started = Instant::now();
    let initial = on_every_device(&devices, |_, _, network| {
        let addr = addr.clone();
        async move {
            let mut tally = Tally::default();
            let started = Instant::now();
            let outcome = network.sync_with(addr).await.map_err(|e| e.to_string());
            tally.record(started, outcome);
            tally
        }
    })
    .await;
    let initial_elapsed = initial_started.elapsed();
    let mut initial_sorted = initial.latencies.clone();
    initial_sorted.sort();
    println!(
        "  N={n:<4} think {think_ms:>4} ms: first sync of {} seed records to {n} devices in \
         {:.2} s (p50 {:.0} ms, p99 {:.0} ms, {} failed{})",
        args.seed_records,
        initial_elapsed.as_secs_f64(),
        ms(percentile(&initial_sorted, 0.50)),
        ms(percentile(&initial_sorted, 0.99)),
        initial.errors,
        initial
            .first_error
            .map(|e| format!(": {e}"))
            .unwrap_or_default(),
    );
    for (i, (engine, _)) in devices.iter().enumerate() {
        let held = engine.all_heads()?.len();
        ensure!(
            held == args.seed_records,
            "device {i} holds {held} records after its first sync, expected {}",
            args.seed_records
        );
    }

    // Load: edit, sync, pause, until the deadline.
    let seed = Arc::new(seed);
    let before = relay.counters()?;
    let deadline = Instant::now() + args.duration;
    let load_started = Instant::now();
    let load = on_every_device(&devices, |i, engine, network| {
        let (addr, seed) = (addr.clone(), seed.clone());
        async move {
            let mut rng = XorShift::new(i as u64 + 1);
            let mut tally = Tally::default();
            // Spread the first sessions over one think time, as devices that came online at
            // different moments would.
            tokio::time::sleep(Duration::from_millis(rng.below(think_ms + 1))).await;
            while Instant::now() < deadline {
                // A durable local write waits on the disk: let the other simulated devices
                // run meanwhile, as separate phones would.
                tally.edits +=
                    tokio::task::block_in_place(|| small_edit(&engine, &seed, &mut rng, i));
                let started = Instant::now();
                let outcome = network
                    .sync_with(addr.clone())
                    .await
                    .map_err(|e| e.to_string());
                tally.record(started, outcome);
                // A mean of `think_ms`, uniformly spread so devices do not march in step.
                let pause = rng.below(2 * think_ms + 1);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            tally
        }
    })
    .await;
    let elapsed = load_started.elapsed();
    let relay_counters = match (relay.counters()?, before) {
        (Some(after), Some(before)) => Some(after.minus(before)),
        _ => None,
    };
    let peak_mib = relay.peak_rss_mib()?;
    if load.errors > 0 {
        println!(
            "  N={n}: {} sessions failed, the first: {}\n  relay log tail:\n{}",
            load.errors,
            load.first_error.as_deref().unwrap_or("?"),
            relay.log_tail()
        );
    }
    let fan_out = fan_out_latency(&devices, &addr).await?;
    println!(
        "  N={n:<4} think {think_ms:>4} ms: live fan-out, one device's edit reached the other {} \
         connected devices (none asking) in p50 {:.0} ms, max {:.0} ms, over {} trials",
        n - 1,
        ms(percentile(&fan_out, 0.50)),
        ms(fan_out.last().copied().unwrap_or_default()),
        fan_out.len()
    );
    for (_, network) in devices.iter() {
        network.shutdown().await;
    }
    relay.stop()?;

    let mut sorted = load.latencies;
    sorted.sort();
    Ok(Row {
        devices: n,
        think_ms,
        sessions: sorted.len(),
        elapsed,
        records: load.pushed + load.pulled,
        p50: percentile(&sorted, 0.50),
        p99: percentile(&sorted, 0.99),
        max: sorted.last().copied().unwrap_or_default(),
        errors: load.errors,
        peak_mib,
        relay: relay_counters,
    })
}

/// Once the load is over: a device creates a record and syncs with the relay; how long until
/// every other device holds it, delivered by the relay's pushes alone (no other device syncs).
/// Sorted durations of a few trials, each from the start of the editing device's session.
async fn fan_out_latency(
    devices: &[(Engine, Network)],
    relay: &EndpointAddr,
) -> anyhow::Result<Vec<Duration>> {
    const TRIALS: usize = 5;
    // Let pushes still in flight from the load drain first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut took = Vec::with_capacity(TRIALS);
    for trial in 0..TRIALS {
        let (editor, network) = &devices[trial % devices.len()];
        let id = editor
            .create(NewRecord::new(RecordType::Company).with("name", format!("Fan-out {trial}")))?
            .id;
        let started = Instant::now();
        network.sync_with(relay.clone()).await?;
        loop {
            let mut all = true;
            for (engine, _) in devices {
                all &= engine.get(id)?.is_some();
            }
            if all {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(30),
                "trial {trial}: the edit did not reach every device within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(started.elapsed());
    }
    took.sort();
    Ok(took)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), 100 on every common Linux.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The soft limit on open files, for the error message when sockets run out.
fn open_files_limit() -> String {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    if cfg!(debug_assertions) {
        println!("warning: a debug build; run with --release for meaningful numbers");
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "relay_load: relay {}, {cores} cores, {:.0} s of load per run, {} seed records, \
         1-5 records edited per session; open files limit {}",
        args.relay.display(),
        args.duration.as_secs_f64(),
        args.seed_records,
        open_files_limit()
    );
    let mut rows = Vec::new();
    for &think_ms in &args.think_ms {
        for &n in &args.devices {
            rows.push(run(&args, n, think_ms).await?);
        }
    }

    println!();
    println!(
        "{:>5} {:>6} {:>9} {:>8} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9} {:>9} {:>9}",
        "N",
        "think",
        "sessions",
        "sess/s",
        "pushes/s",
        "records/s",
        "relay r/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "failed",
        "relay MiB",
        "relay CPU",
        "relay ms",
        "p99<500ms"
    );
    for r in &rows {
        let secs = r.elapsed.as_secs_f64();
        let relay = |f: fn(&RelayCounters) -> f64| {
            r.relay
                .as_ref()
                .map_or("-".to_string(), |c| format!("{:.1}", f(c) / secs))
        };
        println!(
            "{:>5} {:>6} {:>9} {:>8.1} {:>9} {:>9.1} {:>10} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>9.1} {:>9} {:>9} {:>9}",
            r.devices,
            r.think_ms,
            r.sessions,
            r.sessions as f64 / secs,
            relay(|c| c.outgoing),
            r.records as f64 / secs,
            relay(|c| c.applied + c.sent),
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
            r.errors,
            r.peak_mib,
            r.relay.as_ref().map_or("-".to_string(), |c| format!(
                "{:.0}%",
                100.0 * c.cpu_seconds / secs
            )),
            r.relay.as_ref().map_or("-".to_string(), |c| format!(
                "{:.1}",
                1000.0 * c.session_seconds / c.session_count.max(1.0)
            )),
            if r.p99 < TARGET_P99 && r.errors == 0 {
                "yes"
            } else {
                "NO"
            }
        );
    }
    println!(
        "\nthink: mean pause (ms) between a device's sessions. sessions, sess/s, p50/p99/max: \
         the sessions devices opened (edit, then sync), timed on the device. pushes/s: sessions \
         the relay opened to push changes to connected devices (live fan-out, from its \
         /metrics). records/s: records applied by the relay plus by devices in the devices' \
         sessions; relay r/s: the relay's count of records applied from and sent to devices, \
         pushes included. relay MiB: the relay process's peak RSS (VmHWM). relay CPU: the \
         relay process's CPU time over the load (100% is one core of this machine's {cores}). \
         relay ms: mean duration of a session as the relay saw it, pushes included."
    );
    Ok(())
}
