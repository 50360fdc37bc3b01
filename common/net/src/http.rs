//! A small HTTP/1.1 JSON query server (hyper) for the services' read-only HTTP APIs.
//!
//! Every service that answers queries over QUIC also offers them as `GET` routes with
//! JSON bodies for curl and dashboards. This module is the one server they share: it
//! bounds concurrent connections, answers anything but `GET` with 405, runs the route
//! function on the blocking pool (routes read shared state under locks and may build
//! proofs) with at most [`MAX_HTTP_CONNECTIONS`] routes running, even for clients that
//! have gone (more are answered 503), and stops accepting on shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;

/// Most concurrent HTTP connections; more are closed at once.
pub const MAX_HTTP_CONNECTIONS: usize = 256;

/// How long a connection may stay open (idle or slow) before it is closed.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);

/// Answers one request target (path and query, e.g. `/balance/ab…?asset=1`) with a status
/// code and a JSON body.
pub trait JsonRoute: Fn(&str) -> (u16, serde_json::Value) + Send + Sync + 'static {}

impl<F: Fn(&str) -> (u16, serde_json::Value) + Send + Sync + 'static> JsonRoute for F {}

async fn answer<R: JsonRoute>(
    route: Arc<R>,
    work: Arc<tokio::sync::Semaphore>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (code, body) = if req.method() != Method::GET {
        (405, serde_json::json!({"error": "GET only"}))
    } else if let Ok(permit) = work.try_acquire_owned() {
        let target =
            req.uri().path_and_query().map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        // The permit lives as long as the route runs, even if the client has gone: a
        // client closing and reconnecting cannot pile up blocking work.
        match tokio::task::spawn_blocking(move || {
            let _permit = permit;
            route(&target)
        })
        .await
        {
            Ok(r) => r,
            Err(_) => (500, serde_json::json!({"error": "internal"})),
        }
    } else {
        (503, serde_json::json!({"error": "busy: too many queries in progress; retry"}))
    };
    let mut r = Response::new(Full::new(Bytes::from(format!("{body}\n"))));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    r
}

/// Serves `route` over HTTP/1.1 on `listener` until `shutdown` (open connections are
/// dropped then). `target` names the service in logs.
pub async fn serve_json<R: JsonRoute>(
    listener: tokio::net::TcpListener,
    route: R,
    target: &'static str,
    shutdown: CancellationToken,
) {
    let route = Arc::new(route);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    let work = Arc::new(tokio::sync::Semaphore::new(MAX_HTTP_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Transient (a reset peer, fd exhaustion): back off instead of spinning.
                tracing::debug!(target: "lamina::net::http", service = target, error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let (route, work, shutdown) = (route.clone(), work.clone(), shutdown.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req| {
                let (route, work) = (route.clone(), work.clone());
                async move { Ok::<_, Infallible>(answer(route, work, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            tokio::select! {
                _ = conn => {}
                _ = tokio::time::sleep(CONNECTION_TIMEOUT) => {}
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes_get_requests_and_refuses_other_methods() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve_json(
            listener,
            |t: &str| match t {
                "/hello?x=1" => (200, serde_json::json!({"hi": 1})),
                _ => (404, serde_json::json!({"error": format!("no route {t}")})),
            },
            "test",
            stop.clone(),
        ));
        let ok = exchange(addr, "GET /hello?x=1 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("application/json") && ok.ends_with("{\"hi\":1}\n"), "{ok}");
        let missing = exchange(addr, "GET /nope HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404") && missing.contains("no route /nope"), "{missing}");
        let post =
            exchange(addr, "POST /hello HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405") && post.contains("GET only"), "{post}");
        // Headers beyond the buffer limit are refused, not buffered without bound.
        let big = format!("GET /hello HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(200_000));
        let refused = exchange(addr, &big).await;
        assert!(refused.is_empty() || refused.starts_with("HTTP/1.1 431"), "{refused}");
        stop.cancel();
        server.await.unwrap();
    }
}
