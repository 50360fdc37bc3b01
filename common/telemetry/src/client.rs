//! A tiny HTTP/1 GET client for admin endpoints (`lamina devnet status`, readiness polls).
//!
//! One request per connection, a deadline on the whole exchange, and a cap on the body
//! size ([`MAX_BODY`]); no TLS, no redirects, no pooling. Errors are typed
//! ([`TelemetryError::Http`], [`TelemetryError::Timeout`], [`TelemetryError::TooLarge`],
//! [`TelemetryError::BadJson`]).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper::header::{CONNECTION, HOST};
use hyper_util::rt::TokioIo;

use crate::TelemetryError;

/// Largest response body accepted (8 MiB).
pub const MAX_BODY: usize = 8 << 20;

/// A response: status code and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status: u16,
    /// The body.
    pub body: Bytes,
}

impl HttpResponse {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET http://{addr}{path}`, within `timeout` for the whole exchange.
pub async fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<HttpResponse, TelemetryError> {
    match tokio::time::timeout(timeout, get_inner(addr, path)).await {
        Ok(r) => r,
        Err(_) => Err(TelemetryError::Timeout { addr, path: path.to_string() }),
    }
}

async fn get_inner(addr: SocketAddr, path: &str) -> Result<HttpResponse, TelemetryError> {
    let fail = |reason: String| TelemetryError::Http { addr, path: path.to_string(), reason };
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| fail(format!("connect: {e}")))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.map_err(|e| fail(e.to_string()))?;
    let driver = tokio::spawn(async move {
        // Errors surface through the request future as well; nothing to add here.
        let _ = conn.await;
    });
    let req = Request::get(path)
        .header(HOST, addr.to_string())
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(format!("bad request: {e}")))?;
    let result = async {
        let resp = sender.send_request(req).await.map_err(|e| fail(e.to_string()))?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| {
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                TelemetryError::TooLarge { addr, path: path.to_string(), limit: MAX_BODY }
            } else {
                fail(e.to_string())
            }
        })?;
        Ok(HttpResponse { status, body: body.to_bytes() })
    }
    .await;
    driver.abort();
    result
}

/// `GET` and parse the body as JSON; returns the status code with the document.
pub async fn get_json(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<(u16, serde_json::Value), TelemetryError> {
    let r = get(addr, path, timeout).await?;
    let v = serde_json::from_slice(&r.body).map_err(|source| TelemetryError::BadJson {
        addr,
        path: path.to_string(),
        source,
    })?;
    Ok((r.status, v))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot raw HTTP server answering with `reply`.
    async fn raw_server(reply: Vec<u8>) -> SocketAddr {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(&reply).await;
            let _ = s.shutdown().await;
        });
        addr
    }

    #[tokio::test]
    async fn refused_connection_is_a_typed_error() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let e = get(addr, "/livez", Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, TelemetryError::Http { .. }), "{e}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = tokio::spawn(async move {
            let (_s, _) = l.accept().await.unwrap();
            std::future::pending::<()>().await;
        });
        let e = get(addr, "/livez", Duration::from_millis(200)).await.unwrap_err();
        assert!(matches!(e, TelemetryError::Timeout { .. }), "{e}");
    }

    #[tokio::test]
    async fn non_json_and_oversize_bodies_are_typed_errors() {
        let addr = raw_server(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello".to_vec()).await;
        let e = get_json(addr, "/status", Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, TelemetryError::BadJson { .. }), "{e}");

        let mut big = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", MAX_BODY + 1).into_bytes();
        big.resize(big.len() + MAX_BODY + 1, b'x');
        let addr = raw_server(big).await;
        let e = get(addr, "/status", Duration::from_secs(10)).await.unwrap_err();
        assert!(matches!(e, TelemetryError::TooLarge { .. }), "{e}");
    }

    #[tokio::test]
    async fn garbage_response_is_a_typed_error() {
        let addr = raw_server(b"\x00\x01\x02 not http".to_vec()).await;
        let e = get(addr, "/status", Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, TelemetryError::Http { .. }), "{e}");
    }
}
