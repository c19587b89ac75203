//! The `crmsync-relay` command: set up, register workspaces, serve, and inspect a relay.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crmsync_relay::{Config, LiveStatus, Relay, RelayError, TEMPLATE};

/// A self-hostable store-and-forward relay for crmsync workspaces.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes a commented config file and creates the relay's node key; prints the node id an
    /// admin issues the relay's credential to.
    Init {
        /// Config file to write.
        #[arg(long, default_value = "crmsync-relay.toml")]
        config: PathBuf,
    },
    /// Serves devices until SIGTERM or Ctrl-C.
    Serve {
        /// Config file.
        #[arg(long, default_value = "crmsync-relay.toml")]
        config: PathBuf,
    },
    /// Manages the workspaces the relay serves.
    Workspace {
        #[command(subcommand)]
        command: WorkspaceCommand,
    },
    /// Prints the relay's node id, its workspaces and their record counts, and — asking the
    /// running relay at `metrics_addr` — the devices connected now.
    Status {
        /// Config file.
        #[arg(long, default_value = "crmsync-relay.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum WorkspaceCommand {
    /// Registers a workspace (run while the relay is stopped).
    Add {
        /// Config file.
        #[arg(long, default_value = "crmsync-relay.toml")]
        config: PathBuf,
        /// The workspace id.
        #[arg(long)]
        id: uuid::Uuid,
        /// The workspace admin's public key: the trust anchor for device credentials.
        #[arg(long)]
        admin_key: crmsync::net::PublicKey,
        /// The credential the admin issued to this relay's node id (`init` and `status`
        /// print it).
        #[arg(long)]
        credential: String,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            // Automerge opens an info-level span, with its arguments formatted, for every
            // document it loads: a fifth of a busy relay's CPU. Its warnings still show.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,automerge=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), RelayError> {
    match cli.command {
        Command::Init { config } => {
            if config.exists() {
                return Err(RelayError::Config {
                    path: config,
                    reason: "exists already; not overwriting it".into(),
                });
            }
            std::fs::write(&config, TEMPLATE).map_err(|source| RelayError::Io {
                path: config.clone(),
                source,
            })?;
            let relay = Relay::open(Config::load(&config)?)?;
            println!("wrote {}", config.display());
            println!("relay node id: {}", relay.node_id());
            Ok(())
        }
        Command::Serve { config } => {
            let relay = Relay::open(Config::load(&config)?)?;
            let runtime = tokio::runtime::Runtime::new().map_err(|source| RelayError::Io {
                path: config,
                source,
            })?;
            runtime.block_on(async {
                let running = relay.serve().await?;
                println!("relay node id: {}", relay.node_id());
                for addr in running.addr().ip_addrs() {
                    println!("listening on: {addr}");
                }
                if let Some(addr) = running.metrics_addr() {
                    println!("operations on: http://{addr} (/healthz, /metrics, /status)");
                }
                if let Some(url) = running.iroh_relay_url() {
                    println!("iroh relay on: {url}");
                }
                shutdown_signal().await;
                tracing::info!("shutting down");
                running.shutdown().await;
                Ok(())
            })
        }
        Command::Workspace {
            command:
                WorkspaceCommand::Add {
                    config,
                    id,
                    admin_key,
                    credential,
                },
        } => {
            let relay = Relay::open(Config::load(&config)?)?;
            relay.add_workspace(id, admin_key, &credential)?;
            println!("workspace {id} added");
            Ok(())
        }
        Command::Status { config: path } => {
            let config = Config::load(&path)?;
            if let Some(live) = ask_running_relay(&config, &path)? {
                print_live(&live);
                return Ok(());
            }
            let relay = Relay::open(config)?;
            println!("relay node id: {}", relay.node_id());
            println!("state: not running");
            let workspaces = relay.workspaces().status()?;
            println!("workspaces: {}", workspaces.len());
            for w in workspaces {
                println!(
                    "  {}  records: {}  revoked devices: {}",
                    w.id, w.records, w.revoked_devices
                );
            }
            Ok(())
        }
    }
}

/// The running relay's status from its operations endpoint; `None` when nothing answers
/// there (the relay is stopped, and its files can be read directly).
fn ask_running_relay(
    config: &Config,
    path: &std::path::Path,
) -> Result<Option<LiveStatus>, RelayError> {
    let Some(addr) = config.metrics_addr else {
        return Ok(None);
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| RelayError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    let Ok((code, body)) = runtime.block_on(crmsync_relay::fetch(addr, "/status")) else {
        return Ok(None);
    };
    if code != 200 {
        return Err(RelayError::Http(format!(
            "{addr}/status answered {code}: {}",
            body.trim()
        )));
    }
    serde_json::from_str(&body)
        .map(Some)
        .map_err(|e| RelayError::Http(format!("{addr}/status: {e}")))
}

fn print_live(live: &LiveStatus) {
    println!("relay node id: {}", live.node_id);
    println!("state: running, {} sessions active", live.active_sessions);
    println!("workspaces: {}", live.workspaces.len());
    for w in &live.workspaces {
        println!(
            "  {}  records: {}  revoked devices: {}  connected devices: {}",
            w.id,
            w.records,
            w.revoked_devices,
            w.connected_devices.len()
        );
        for device in &w.connected_devices {
            println!("    {device}");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
