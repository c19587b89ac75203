//! The operations endpoint: plain HTTP on its own address, for probes and scrapers —
//! `/healthz`, Prometheus `/metrics`, and `/status` (JSON, what `crmsync-relay status` prints
//! while the relay runs).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crmsync::net::Network;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::RelayError;
use crate::workspaces::Workspaces;

/// What `/status` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveStatus {
    /// The relay's node id.
    pub node_id: String,
    /// Sessions running now.
    pub active_sessions: usize,
    /// Every workspace served.
    pub workspaces: Vec<LiveWorkspace>,
}

/// One workspace in [`LiveStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWorkspace {
    /// Its id.
    pub id: uuid::Uuid,
    /// Records stored, deleted ones included.
    pub records: usize,
    /// Revoked devices known to the relay.
    pub revoked_devices: usize,
    /// Node ids of the devices connected now.
    pub connected_devices: Vec<String>,
}

/// What the endpoint reads.
pub(crate) struct Operations {
    pub network: Network,
    pub workspaces: Arc<Workspaces>,
}

impl Operations {
    fn live_status(&self) -> Result<LiveStatus, RelayError> {
        let connected = self.network.connected_peers();
        let workspaces = self
            .workspaces
            .status()?
            .into_iter()
            .map(|w| LiveWorkspace {
                id: w.id,
                records: w.records,
                revoked_devices: w.revoked_devices,
                connected_devices: connected
                    .iter()
                    .filter(|p| p.workspace == Some(w.id))
                    .map(|p| p.node_id.to_string())
                    .collect(),
            })
            .collect();
        Ok(LiveStatus {
            node_id: self.network.node_id().to_string(),
            active_sessions: self.network.active_sessions(),
            workspaces,
        })
    }

    fn metrics(&self) -> String {
        let ids = self.workspaces.ids();
        self.workspaces.metrics().render(
            &ids,
            &self.network.connected_peers(),
            self.network.active_sessions(),
        )
    }

    fn answer(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let text = |status: StatusCode, content_type: &'static str, body: String| {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            *response.status_mut() = status;
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(content_type),
            );
            response
        };
        const PLAIN: &str = "text/plain; charset=utf-8";
        if request.method() != Method::GET {
            return text(StatusCode::METHOD_NOT_ALLOWED, PLAIN, "GET only\n".into());
        }
        match request.uri().path() {
            "/healthz" => text(StatusCode::OK, PLAIN, "ok\n".into()),
            "/metrics" => text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.metrics(),
            ),
            "/status" => match self.live_status().and_then(|s| {
                serde_json::to_string(&s).map_err(|e| RelayError::Http(e.to_string()))
            }) {
                Ok(json) => text(StatusCode::OK, "application/json", json),
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, PLAIN, format!("{e}\n")),
            },
            _ => text(
                StatusCode::NOT_FOUND,
                PLAIN,
                "not found; try /healthz, /metrics or /status\n".into(),
            ),
        }
    }
}

/// Binds the endpoint's address (before the network starts, so a taken port fails the start
/// cleanly).
/// How long a client may take to send a request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection to the operations endpoint may stay open.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(120);
/// The most bytes of a request buffered (its headers, for these GET-only routes).
const MAX_REQUEST_BUFFER: usize = 16 << 10;

pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, RelayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| RelayError::Http(format!("cannot listen for /metrics on {addr}: {e}")))
}

/// Serves the endpoint until `stop` turns true; the task ends then, and with it every hold
/// on the relay's network and workspaces (connections still open answer 503).
pub(crate) fn serve(
    listener: TcpListener,
    operations: Arc<Operations>,
    mut stop: watch::Receiver<bool>,
) -> Result<(SocketAddr, JoinHandle<()>), RelayError> {
    let bound = listener
        .local_addr()
        .map_err(|e| RelayError::Http(e.to_string()))?;
    let task = tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "operations endpoint: accept failed");
                        continue;
                    }
                },
                _ = stop.changed() => return,
            };
            let operations = Arc::downgrade(&operations);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = match operations.upgrade() {
                        Some(operations) => operations.answer(&request),
                        None => stopping(),
                    };
                    async move { Ok::<_, Infallible>(response) }
                });
                // A client that trickles its headers, or keeps a connection open for ever,
                // is cut off: the endpoint answers scrapes and status checks, nothing long.
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .max_buf_size(MAX_REQUEST_BUFFER)
                    .serve_connection(TokioIo::new(stream), service);
                match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                    Ok(Err(e)) => {
                        tracing::debug!(error = %e, "operations endpoint: connection failed");
                    }
                    Err(_) => tracing::debug!("operations endpoint: connection held too long"),
                    Ok(Ok(())) => {}
                }
            });
        }
    });
    Ok((bound, task))
}

fn stopping() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(b"shutting down\n")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
}

/// Reads `path` from a running relay's operations endpoint: the status code and body.
pub async fn fetch(addr: SocketAddr, path: &str) -> Result<(u16, String), RelayError> {
    let failed = |e: &dyn std::fmt::Display| RelayError::Http(format!("{addr}{path}: {e}"));
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| failed(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed(&e))?;
        tokio::spawn(connection);
        let request = Request::get(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .map_err(|e| failed(&e))?;
        let response = sender.send_request(request).await.map_err(|e| failed(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| failed(&e))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| failed(&"no answer within 10 s"))?
}
