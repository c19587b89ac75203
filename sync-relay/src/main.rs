//! The `crmsync-relay` command: set up, register workspaces, serve, and inspect a relay.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crmsync_relay::{Config, Relay, RelayError, TEMPLATE};

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
    /// Prints the relay's node id, its workspaces and their record counts.
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
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
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
        Command::Status { config } => {
            let relay = Relay::open(Config::load(&config)?)?;
            println!("relay node id: {}", relay.node_id());
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
