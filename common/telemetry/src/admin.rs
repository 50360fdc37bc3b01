//! The per-service admin HTTP server: `/metrics`, `/livez`, `/readyz`, `/status`.
//!
//! | path | answer |
//! |---|---|
//! | `GET /livez` | `200 ok`: the process is up and its runtime answers |
//! | `GET /readyz` | `200` when the [`Health`] handle is ready (every registered check passes, at least one registered), else `503`; the body lists every check with `ok`/`FAIL` and its detail |
//! | `GET /status` | `200`, JSON from [`Health::status_json`] |
//! | `GET /metrics` | `200`, Prometheus text: the recorder's metrics, process metrics, and `lamina_health_ready` / `lamina_health_check_ok{check=...}` gauges mirroring `/readyz` |
//!
//! `HEAD` is accepted wherever `GET` is; other methods get `405`, other paths `404`.
//! The server speaks HTTP/1.1, bounds concurrent connections ([`MAX_CONNECTIONS`]; more
//! are closed at once), the time a new connection may stay silent
//! ([`FIRST_BYTE_TIMEOUT`]) and the time to read request headers
//! ([`HEADER_READ_TIMEOUT`]), and ignores request bodies. It is meant for a local or private address: it has no
//! authentication, and exposes nothing secret.
//!
//! [`AdminServer::shutdown`] stops accepting, lets in-flight requests finish (closing
//! idle keep-alive connections), and returns when every connection is closed or after
//! [`DRAIN_TIMEOUT`].

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use lamina_interfaces::Health;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::TelemetryError;
use crate::prometheus::MetricsHandle;

/// Most connections served at once; further connections are closed immediately.
pub const MAX_CONNECTIONS: usize = 64;
/// Time a client has to send its request headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a new connection has to send its first byte; a silent one is closed, so that
/// clients that connect and say nothing cannot hold every slot and keep probes out.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest wait for open connections at shutdown.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// How often histogram buffers are drained (see [`MetricsHandle::run_upkeep`]).
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin server serves.
#[derive(Clone, Debug)]
pub struct AdminState {
    /// Readiness checks and status fields, written by the service.
    pub health: Health,
    /// The metrics exporter; `None` serves only the health gauges on `/metrics`.
    pub metrics: Option<MetricsHandle>,
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port) and serves `state` on the current tokio
    /// runtime until [`AdminServer::shutdown`].
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<AdminServer, TelemetryError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| TelemetryError::Bind { addr, source })?;
        let local_addr = listener.local_addr().map_err(|source| TelemetryError::Bind { addr, source })?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(serve(listener, Arc::new(state), stop.clone()));
        tracing::info!(target: "lamina::admin", addr = %local_addr, "admin server listening");
        Ok(AdminServer { local_addr, stop, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, drains open connections (at most [`DRAIN_TIMEOUT`]) and returns.
    pub async fn shutdown(self) {
        self.stop.cancel();
        // The task only ends by returning; a join error means it panicked, which has
        // already been reported by the runtime.
        let _ = self.task.await;
    }
}

async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    if let Some(m) = state.metrics.clone() {
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => m.run_upkeep(),
                }
            }
        });
    }
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Per-connection accept errors (e.g. the peer reset) and fd exhaustion are
                // transient; back off briefly instead of spinning.
                tracing::debug!(target: "lamina::admin", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::debug!(target: "lamina::admin", %peer, "too many admin connections; closing");
            drop(stream);
            continue;
        };
        let state = state.clone();
        let stop = stop.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut first = [0u8; 1];
            let spoke = tokio::select! {
                r = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first)) => matches!(r, Ok(Ok(n)) if n > 0),
                _ = stop.cancelled() => false,
            };
            if !spoke {
                tracing::debug!(target: "lamina::admin", %peer, "closing an admin connection that sent nothing");
                return;
            }
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, &req)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    match tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await {
                        Ok(r) => r,
                        Err(_) => Ok(()),
                    }
                }
            };
            if let Err(e) = result {
                tracing::debug!(target: "lamina::admin", %peer, error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait()).await;
    tracing::debug!(target: "lamina::admin", "admin server stopped");
}

fn response(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

const TEXT: &str = "text/plain; charset=utf-8";

/// Answers one request (pure apart from reading `state`).
fn route<B>(state: &AdminState, req: &Request<B>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    let known = matches!(path, "/livez" | "/readyz" | "/status" | "/metrics");
    if !known {
        return response(StatusCode::NOT_FOUND, TEXT, "not found; try /livez /readyz /status /metrics\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = response(StatusCode::METHOD_NOT_ALLOWED, TEXT, "method not allowed\n");
        r.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    match path {
        "/livez" => response(StatusCode::OK, TEXT, "ok\n"),
        "/readyz" => {
            let (ready, body) = readiness_report(&state.health);
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            response(status, TEXT, body)
        }
        "/status" => {
            let mut body = state.health.status_json().to_string();
            body.push('\n');
            response(StatusCode::OK, "application/json", body)
        }
        _ => {
            let mut body = state.metrics.as_ref().map(MetricsHandle::render).unwrap_or_default();
            if !body.is_empty() && !body.ends_with('\n') {
                body.push('\n');
            }
            render_health_gauges(&state.health, &mut body);
            response(StatusCode::OK, PROMETHEUS_CONTENT_TYPE, body)
        }
    }
}

/// `(ready, body)` for `/readyz`: a first line `ready`/`not ready`, then one line per check.
pub fn readiness_report(health: &Health) -> (bool, String) {
    let checks = health.checks();
    // Readiness is computed from the same snapshot as the listed checks, so the status
    // line and the body cannot disagree.
    let ready = !checks.is_empty() && checks.values().all(|c| c.ok);
    let mut body = String::from(if ready { "ready\n" } else { "not ready\n" });
    if checks.is_empty() {
        body.push_str("(no readiness checks registered yet)\n");
    }
    for (name, c) in &checks {
        let _ = writeln!(body, "{} {name}: {}", if c.ok { "ok  " } else { "FAIL" }, c.detail);
    }
    (ready, body)
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Appends `lamina_health_ready` and `lamina_health_check_ok{check=...}` gauges.
pub fn render_health_gauges(health: &Health, out: &mut String) {
    let checks = health.checks();
    let ready = !checks.is_empty() && checks.values().all(|c| c.ok);
    if !out.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "# HELP lamina_health_ready 1 when every readiness check passes (what /readyz reports).\n\
         # TYPE lamina_health_ready gauge\nlamina_health_ready {}",
        u8::from(ready)
    );
    if !checks.is_empty() {
        let _ = writeln!(
            out,
            "# HELP lamina_health_check_ok 1 when the named readiness check passes.\n\
             # TYPE lamina_health_check_ok gauge"
        );
        for (name, c) in &checks {
            let _ = writeln!(out, "lamina_health_check_ok{{check=\"{}\"}} {}", escape_label(name), u8::from(c.ok));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_secs(5);

    async fn server(metrics: Option<MetricsHandle>) -> (AdminServer, Health) {
        let health = Health::new();
        let s = AdminServer::bind("127.0.0.1:0".parse().unwrap(), AdminState { health: health.clone(), metrics })
            .await
            .unwrap();
        (s, health)
    }

    #[tokio::test]
    async fn readyz_follows_the_health_handle() {
        let (s, health) = server(None).await;
        let a = s.local_addr();
        assert_eq!(client::get(a, "/livez", T).await.unwrap().status, 200);

        let r = client::get(a, "/readyz", T).await.unwrap();
        assert_eq!(r.status, 503, "no checks registered means not ready");
        assert!(r.text().starts_with("not ready\n"));

        health.set_check("peers", false, "1/3 validators connected");
        health.set_check("store", true, "opened");
        let r = client::get(a, "/readyz", T).await.unwrap();
        assert_eq!(r.status, 503);
        assert!(r.text().contains("FAIL peers: 1/3 validators connected"), "{}", r.text());
        assert!(r.text().contains("ok   store: opened"), "{}", r.text());

        health.set_check("peers", true, "3/3 validators connected");
        let r = client::get(a, "/readyz", T).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.text().starts_with("ready\n"));

        health.set_status("height", 42u64);
        let (status, json) = client::get_json(a, "/status", T).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(json["ready"], true);
        assert_eq!(json["height"], 42);
        assert_eq!(json["checks"]["peers"]["ok"], true);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn metrics_include_recorder_output_and_health_gauges() {
        let (recorder, handle) = crate::prometheus::local();
        metrics::with_local_recorder(&recorder, || metrics::counter!("lamina_test_things_total").increment(5));
        let (s, health) = server(Some(handle)).await;
        health.set_check("peers", false, "none");
        let r = client::get(s.local_addr(), "/metrics", T).await.unwrap();
        assert_eq!(r.status, 200);
        let text = r.text();
        assert!(text.contains("lamina_test_things_total 5"), "{text}");
        assert!(text.contains("\nlamina_health_ready 0\n"), "{text}");
        assert!(text.contains("lamina_health_check_ok{check=\"peers\"} 0"), "{text}");
        s.shutdown().await;
    }

    #[tokio::test]
    async fn unknown_paths_and_methods_are_refused() {
        let (s, _) = server(None).await;
        assert_eq!(client::get(s.local_addr(), "/nope", T).await.unwrap().status, 404);
        let mut tcp = tokio::net::TcpStream::connect(s.local_addr()).await.unwrap();
        tcp.write_all(b"POST /readyz HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nconnection: close\r\n\r\nabc")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tcp.read_to_end(&mut buf).await.unwrap();
        let text = String::from_utf8_lossy(&buf);
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        assert!(text.to_ascii_lowercase().contains("allow: get, head"), "{text}");
        s.shutdown().await;
    }

    #[tokio::test]
    async fn garbage_requests_get_an_error_and_the_server_keeps_serving() {
        let (s, health) = server(None).await;
        health.set_check("x", true, "fine");
        let mut tcp = tokio::net::TcpStream::connect(s.local_addr()).await.unwrap();
        tcp.write_all(b"\x00\x01garbage that is not http\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tcp.read_to_end(&mut buf).await;
        let text = String::from_utf8_lossy(&buf);
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 400"), "{text}");
        assert_eq!(client::get(s.local_addr(), "/readyz", T).await.unwrap().status, 200);
        s.shutdown().await;
    }

    #[tokio::test]
    async fn shutdown_closes_idle_keepalive_connections_and_stops_accepting() {
        let (s, _) = server(None).await;
        let addr = s.local_addr();
        // An idle keep-alive connection must not hold shutdown up.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /livez HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
        s.shutdown().await;
        let mut rest = Vec::new();
        // The server closed its side: reading reaches end of stream.
        tokio::time::timeout(T, idle.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[test]
    fn label_values_are_escaped() {
        let h = Health::new();
        h.set_check("we\"ird\\name\n", true, "");
        let mut out = String::new();
        render_health_gauges(&h, &mut out);
        assert!(out.contains("lamina_health_check_ok{check=\"we\\\"ird\\\\name\\n\"} 1"), "{out}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_connections_do_not_keep_probes_out() {
        let (s, health) = server(None).await;
        health.set_check("store", true, "opened");
        let a = s.local_addr();
        // Every slot taken by a client that connects and sends nothing.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(tokio::net::TcpStream::connect(a).await.unwrap());
        }
        // A readiness probe gets through once the silent ones are dropped.
        let start = std::time::Instant::now();
        loop {
            if let Ok(r) = client::get(a, "/readyz", T).await
                && r.status == 200
            {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(20), "probes kept out by silent connections");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("probe answered after {:?}", start.elapsed());
        drop(idle);
        s.shutdown().await;
    }
}
