//! 50 devices in one workspace and 5 workspaces at once through one relay process.
//!
//! The relay is the real binary in its own process, so the peak RSS it reports is the relay's
//! alone; the devices are in-memory engines in this process, each with its own endpoint on
//! loopback, editing at random and syncing concurrently.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{add_workspace, init, relay, stdout_of};
use crmsync::net::{EndpointAddr, NetOptions, Network, PublicKey, Role, TransportAddr};
use crmsync::sync::Replica as _;
use crmsync::{
    Engine, EngineOptions, NewRecord, Patch, Record, RecordId, RecordType, SearchOptions,
};

/// Devices per workspace: one crowded workspace and four small ones beside it.
const DEVICES: [usize; 5] = [50, 5, 5, 5, 5];
/// Rounds of edits per device, each followed by a session with the relay.
const ROUNDS: usize = 2;
/// A relay serving 70 devices and a few hundred records needs tens of MiB; a leak per
/// session or per connection crosses this.
const RELAY_RSS_LIMIT_KIB: u64 = 1024 * 1024;

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

/// The relay's `serve` process. Dropped while the test panics, it is killed (no stray relay
/// outlives a failed test) and the tail of its log is printed.
struct RelayProcess {
    child: Option<Child>,
    log: PathBuf,
    addr: EndpointAddr,
}

impl RelayProcess {
    fn serve(config: &Path, node_id: PublicKey, log: PathBuf) -> Self {
        let mut child = relay()
            .args(["serve", "--config", config.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let socket: SocketAddr = loop {
            let line = lines
                .next()
                .expect("serve prints its address before anything else ends")
                .unwrap();
            if let Some(a) = line.strip_prefix("listening on: ") {
                break a.parse().unwrap();
            }
        };
        // Keep reading: a relay whose stdout pipe is closed would fail on its next line.
        std::thread::spawn(move || lines.for_each(drop));
        Self {
            child: Some(child),
            log,
            addr: EndpointAddr::from_parts(node_id, [TransportAddr::Ip(socket)]),
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The relay's peak resident set (VmHWM) in KiB: its high-water mark since it started.
    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// SIGTERM, as an operator stops it; it must exit cleanly and soon.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let killed = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the relay did not exit within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "relay exit status {status}");
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- relay log (last lines) ---");
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A small deterministic generator: the same seed makes the same edits, so a failure can be
/// rerun as it happened (up to the interleaving of sessions).
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> Self {
        // Zero is xorshift's fixed point; mixing the seed also spreads consecutive seeds.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Device {
    workspace: usize,
    index: usize,
    engine: Engine,
    network: Network,
}

/// An engine without a search index: 70 devices each with its own index writer threads
/// would only slow the test down, and search is not what is under test.
fn engine_in(workspace: Option<uuid::Uuid>) -> Engine {
    let mut options = EngineOptions::default();
    options.store.workspace = workspace;
    let search = SearchOptions {
        enabled: false,
        ..SearchOptions::default()
    };
    Engine::in_memory_with_search(options, search).unwrap()
}

/// Live (not deleted) records the device holds: what its user could edit.
fn live_records(e: &Engine) -> Vec<RecordId> {
    e.all_heads()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| e.get(*id).unwrap().is_some())
        .collect()
}

/// A few random edits: creates, renames, tags, head counts and the occasional delete, mostly
/// of records other devices created (once synced), so the same records are edited
/// concurrently on many devices.
fn random_edits(device: &Device, rng: &mut XorShift, created: &Mutex<BTreeSet<RecordId>>) {
    let e = &device.engine;
    for _ in 0..2 + rng.below(3) {
        let live = live_records(e);
        if live.is_empty() || rng.below(3) == 0 {
            let name = format!(
                "ws{} dev{} company {}",
                device.workspace,
                device.index,
                rng.below(1_000_000)
            );
            let id = e
                .create(NewRecord::new(RecordType::Company).with("name", name))
                .unwrap()
                .id;
            created.lock().unwrap().insert(id);
            continue;
        }
        let id = live[rng.below(live.len() as u64) as usize];
        match rng.below(10) {
            0 => e.delete(id).unwrap(),
            1..=3 => {
                let name = format!("renamed by ws{} dev{}", device.workspace, device.index);
                e.update(id, Patch::new().set("name", name)).unwrap();
            }
            4..=6 => {
                let tag = format!("t{}", rng.below(5));
                e.update(id, Patch::new().add_tag(&tag)).unwrap();
            }
            _ => {
                let count = rng.below(5000) as i64;
                e.update(id, Patch::new().set("employee_count", count))
                    .unwrap();
            }
        }
    }
}

/// What a device holds, to compare replicas: every record's heads (same heads, same
/// history) and its materialized value (what the app shows).
type Replica = Vec<(RecordId, String, Option<Record>)>;

fn replica_state(e: &Engine) -> Replica {
    e.all_heads()
        .unwrap()
        .into_iter()
        .map(|(id, heads)| (id, format!("{heads:?}"), e.get(id).unwrap()))
        .collect()
}

/// Every device syncs with the relay once, all at the same time.
async fn sync_all(devices: &Arc<Vec<Device>>, relay: &EndpointAddr) {
    let tasks: Vec<_> = (0..devices.len())
        .map(|i| {
            let devices = devices.clone();
            let relay = relay.clone();
            tokio::spawn(async move {
                let d = &devices[i];
                d.network.sync_with(relay).await.unwrap_or_else(|e| {
                    panic!("workspace {} device {}: {e}", d.workspace, d.index)
                });
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_devices_and_five_workspaces_converge_through_one_relay_process() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("relay.toml");
    let config_arg = config.to_str().unwrap();

    let node_id = init(config_arg);
    let text = on_free_ports(&std::fs::read_to_string(&config).unwrap());
    assert!(text.contains("bind_addr = \"127.0.0.1:0\""), "{text}");
    std::fs::write(&config, text).unwrap();

    // Five workspaces, each with its own admin, all registered with the one relay.
    let admins: Vec<Engine> = DEVICES
        .iter()
        .map(|_| {
            let admin = engine_in(None);
            admin.init_admin().unwrap();
            admin
        })
        .collect();
    for admin in &admins {
        let for_relay = admin.invite_device(node_id, Role::Member, None).unwrap();
        add_workspace(
            config_arg,
            admin,
            &for_relay.admin().to_string(),
            &for_relay.to_string(),
        );
    }
    let server = RelayProcess::serve(&config, node_id, dir.path().join("relay.log"));

    // The admin is device 0 of its workspace; the others are invited members.
    let mut devices = Vec::new();
    for (w, (admin, &count)) in admins.iter().zip(&DEVICES).enumerate() {
        for index in 0..count {
            let engine = if index == 0 {
                admin.clone()
            } else {
                let device = engine_in(Some(admin.workspace_id()));
                let credential = admin
                    .invite_device(device.node_id().unwrap(), Role::Member, None)
                    .unwrap();
                device.join(&credential.to_string()).unwrap();
                device
            };
            let network = engine.enable_network(NetOptions::loopback()).await.unwrap();
            devices.push(Device {
                workspace: w,
                index,
                engine,
                network,
            });
        }
    }
    let devices = Arc::new(devices);
    let created: Arc<Vec<Mutex<BTreeSet<RecordId>>>> =
        Arc::new(DEVICES.iter().map(|_| Mutex::default()).collect());
    let setup = started.elapsed();

    // Every device on its own schedule: edit, sync, pause a little, again. Sessions of all
    // workspaces overlap at the relay, and later rounds edit records other devices created.
    let tasks: Vec<_> = (0..devices.len())
        .map(|i| {
            let (devices, created) = (devices.clone(), created.clone());
            let relay = server.addr.clone();
            tokio::spawn(async move {
                let d = &devices[i];
                let mut rng = XorShift::new(i as u64 + 1);
                let mut latencies = Vec::new();
                for round in 0..ROUNDS {
                    tokio::time::sleep(Duration::from_millis(rng.below(50))).await;
                    random_edits(d, &mut rng, &created[d.workspace]);
                    let session = Instant::now();
                    d.network
                        .sync_with(relay.clone())
                        .await
                        .unwrap_or_else(|e| {
                            panic!(
                                "workspace {} device {} round {round}: {e}",
                                d.workspace, d.index
                            )
                        });
                    latencies.push(session.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    latencies.sort();
    let edited = started.elapsed();

    // Quiescence: after the first pass the relay holds every edit (each device pushed all it
    // had); after the second every device has pulled all of them.
    sync_all(&devices, &server.addr).await;
    sync_all(&devices, &server.addr).await;
    let synced = started.elapsed();

    let created: Vec<BTreeSet<RecordId>> =
        created.iter().map(|c| c.lock().unwrap().clone()).collect();
    for (w, ids) in created.iter().enumerate() {
        assert!(!ids.is_empty(), "workspace {w} created records");
        for (v, other) in created.iter().enumerate().skip(w + 1) {
            assert!(ids.is_disjoint(other), "workspaces {w} and {v} share ids");
        }
    }
    let mut reference: BTreeMap<usize, Replica> = BTreeMap::new();
    for d in devices.iter() {
        let state = replica_state(&d.engine);
        let ids: BTreeSet<RecordId> = state.iter().map(|(id, _, _)| *id).collect();
        // Exactly the workspace's records: all of them arrived, and none of another
        // workspace's did.
        let foreign: Vec<usize> = (0..DEVICES.len())
            .filter(|&v| v != d.workspace && !ids.is_disjoint(&created[v]))
            .collect();
        assert!(
            foreign.is_empty(),
            "workspace {} device {} holds records of workspaces {foreign:?}",
            d.workspace,
            d.index
        );
        assert_eq!(
            ids, created[d.workspace],
            "workspace {} device {}: records held vs created in the workspace",
            d.workspace, d.index
        );
        match reference.get(&d.workspace) {
            None => {
                reference.insert(d.workspace, state);
            }
            Some(first) => assert!(
                *first == state,
                "workspace {} device {} differs from device 0 (heads or values)",
                d.workspace,
                d.index
            ),
        }
    }
    // The workspaces really were edited by many devices: some records' histories hold
    // changes of several devices, merged the same way everywhere. (Read from the histories:
    // who wrote last depends on the timing of the sessions.)
    let first_of_0 = devices.iter().find(|d| d.workspace == 0).unwrap();
    let merged = reference[&0]
        .iter()
        .filter(|(id, _, _)| {
            let history = first_of_0.engine.history(*id).unwrap();
            history.iter().any(|entry| entry.by != history[0].by)
        })
        .count();
    assert!(
        merged > 0,
        "no record of workspace 0 was edited by another device"
    );

    let peak_kib = server.peak_rss_kib();
    eprintln!(
        "scale: {} devices in {} workspaces, {} records; setup {:.1?}, edits {:.1?} \
         (sessions p50 {:.1?}, max {:.1?}), convergence {:.1?}; relay peak RSS (VmHWM) \
         {:.1} MiB",
        devices.len(),
        DEVICES.len(),
        created.iter().map(BTreeSet::len).sum::<usize>(),
        setup,
        edited - setup,
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1],
        synced - edited,
        peak_kib as f64 / 1024.0
    );
    assert!(
        peak_kib < RELAY_RSS_LIMIT_KIB,
        "relay peak RSS {peak_kib} KiB is over the {RELAY_RSS_LIMIT_KIB} KiB bound"
    );

    for d in devices.iter() {
        d.network.shutdown().await;
    }
    server.stop();

    // The relay's files agree: each workspace's file holds exactly that workspace's records.
    let status = stdout_of(relay().args(["status", "--config", config_arg]));
    for (admin, ids) in admins.iter().zip(&created) {
        let line = format!("{}  records: {}", admin.workspace_id(), ids.len());
        assert!(status.contains(&line), "expected `{line}` in:\n{status}");
    }
}
