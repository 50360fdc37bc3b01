//! Shared fixtures for the transport tests: a test protocol, a handler with
//! misbehaviours on demand, and endpoint builders on 127.0.0.1.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use lamina_net::{Backoff, Endpoint, EndpointConfig, Handler, Protocol, ProtocolId, Reject};
use lamina_primitives::{Keypair, NodeId, Wire};
use tokio::sync::mpsc;

/// The test protocol's only wire type.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// What the handler should do (see [`op`]).
    pub op: u8,
    /// A sequence number.
    pub n: u64,
    /// Payload.
    pub data: Vec<u8>,
}

impl Wire for Msg {
    const NAME: &'static str = "Msg";
    const MAX_SIZE: usize = 16 << 20;
}

/// Operations understood by [`Echo`].
pub mod op {
    pub const ECHO: u8 = 0;
    pub const PANIC: u8 = 1;
    pub const HANG: u8 = 2;
    pub const REJECT: u8 = 3;
    /// Answer after 300 ms.
    pub const SLOW: u8 = 4;
    /// Answer with the connection's negotiated version in `n` (after a yield).
    pub const VERSION: u8 = 5;
}

impl Msg {
    pub fn echo(n: u64, data: Vec<u8>) -> Self {
        Msg { op: op::ECHO, n, data }
    }
}

pub struct EchoV1;
impl Protocol for EchoV1 {
    const ID: ProtocolId = ProtocolId::new("echo", 1);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

pub struct EchoV2;
impl Protocol for EchoV2 {
    const ID: ProtocolId = ProtocolId::new("echo", 2);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

pub struct Other;
impl Protocol for Other {
    const ID: ProtocolId = ProtocolId::new("other", 1);
    type Request = Msg;
    type Response = Msg;
    type Message = Msg;
}

/// Echoes requests (or misbehaves on request), forwards messages to a channel.
pub struct Echo {
    pub messages: mpsc::UnboundedSender<(NodeId, Msg)>,
}

impl Echo {
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(NodeId, Msg)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Echo { messages: tx }, rx)
    }
}

impl<P: Protocol<Request = Msg, Response = Msg, Message = Msg>> Handler<P> for Echo {
    async fn request(&self, _peer: NodeId, req: Msg) -> Result<Msg, Reject> {
        match req.op {
            op::PANIC => panic!("handler asked to panic"),
            op::HANG => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            op::REJECT => Err(Reject::bad_request(format!("rejecting {}", req.n))),
            op::SLOW => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Ok(req)
            }
            op::VERSION => {
                tokio::task::yield_now().await;
                Ok(Msg { n: u64::from(lamina_net::request_version().unwrap_or(0)), ..req })
            }
            _ => Ok(req),
        }
    }

    async fn message(&self, peer: NodeId, msg: Msg) {
        let _ = self.messages.send((peer, msg));
    }
}

pub fn localhost() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Fast-redialing config for tests.
pub fn test_config(listen: SocketAddr) -> EndpointConfig {
    EndpointConfig {
        backoff: Backoff { initial: Duration::from_millis(20), max: Duration::from_millis(300) },
        shutdown_grace: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
        ..EndpointConfig::new(listen)
    }
}

pub fn endpoint(seed: u64) -> (Endpoint, Keypair) {
    let kp = Keypair::for_testing(seed);
    let ep = Endpoint::bind(&kp, test_config(localhost())).unwrap();
    (ep, kp)
}

pub const WAIT: Duration = Duration::from_secs(10);

/// Waits (up to [`WAIT`]) for a condition set by another task; panics if it never holds.
pub async fn eventually(cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition never held");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
