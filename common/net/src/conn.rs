//! One QUIC connection of one protocol: request lanes, the message stream, stream
//! readers and writers, and dispatch to the handler.
//!
//! # Streams
//!
//! * **Request lanes** (bidi, long-lived, opened by the requester, `lanes` per
//!   connection): many requests are pipelined on a lane, each tagged with a
//!   connection-unique id; responses come back on the same lane in completion order.
//!   A writer task per lane batches queued frames into one write, so that thousands of
//!   small requests cost a few QUIC stream writes. This is what reaches >100k
//!   request/responses per second on one connection (see `benches/benches/net.rs`).
//! * **Dedicated request streams** (bidi, one request): for requests larger than
//!   `inline_max`, so that a multi-MiB transfer never delays small requests.
//! * **Large responses** (uni, one frame): a response larger than `inline_max` to a
//!   request that came on a lane goes on its own uni stream, for the same reason.
//! * **Message stream** (uni, long-lived, one per connection and direction): one-way
//!   messages, delivered and handled in order.
//! * **Hello** (uni, first stream a server opens): the server's acceptance of the
//!   connection after its per-protocol check, carrying its `max_request`.
//!
//! Either side of a connection may use it as requester; the accepting side of each stream
//! serves it with the protocol's handler.
//!
//! # Faults
//!
//! # Memory
//!
//! Every frame is checked from its header before its body is read: its kind must be one
//! the stream carries and its length within that kind's limit (`max_request`,
//! `max_response`, `max_message`). A request or message then claims its length from the
//! peer's [`Budget`] (per connection and per peer key); reading waits until the claim is
//! granted, and the claim is released when the handler returns. Buffers grow with the
//! bytes received; a partial frame that stalls for `read_stall_timeout` fails its
//! stream. See [`crate::TransportLimits`] for the resulting bound.
//!
//! # Faults
//!
//! A frame longer than its limit or with an unexpected kind makes the receiver stop the
//! stream's receive side and reset its send side with a [`StreamError`] code: that
//! stream's requests fail at the requester with [`NetError::StreamReset`]; other streams
//! and connections are untouched. A well-framed body that fails to decode is answered
//! with a `Malformed` rejection (the lane stays usable). Every fault is counted in
//! [`ConnStats`]. Handler panics are caught and answered with an `Internal` rejection.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use lamina_primitives::NodeId;
use quinn::{ReadError, RecvStream, SendStream, VarInt};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::ProtocolConfig;
use crate::error::{NetError, Reject, RejectKind, StreamError};
use crate::frame::{Frame, FrameDecoder, FrameError, FrameKind, Header, OutFrame};
use crate::protocol::{ProtocolId, RawHandler};
use crate::stats::{ConnStats, Direction, Fault};

/// Frames up to this size are copied into one write buffer; larger bodies are written as
/// their own chunk (no copy).
const COALESCE_MAX: usize = 16 << 10;
/// Frames taken from a writer queue per write.
const WRITE_BATCH: usize = 512;
/// Bytes a stream reader may take beyond the end of the frame it has claimed (the next
/// frames' starts): the part of a stream's buffer no claim covers.
pub(crate) const READ_AHEAD: usize = 64 << 10;

/// What a stream carries: it decides the frame kinds accepted and their size limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// A bidi stream the peer opened: requests.
    Requests,
    /// A bidi stream we opened: responses, errors and detached markers.
    Responses,
    /// A uni stream the peer opened: messages, or exactly one response or error.
    Uni,
}

/// The receive side of one stream with its decoding state.
struct Reader {
    recv: RecvStream,
    decoder: FrameDecoder,
    role: Role,
    /// What the first frame of a uni stream made it.
    uni_kind: Option<FrameKind>,
    /// The header of the frame being received has been checked.
    checked: bool,
    /// The budget claimed for the frame being received.
    claim: Option<Claim>,
}

impl Reader {
    fn new(recv: RecvStream, role: Role, config: &ProtocolConfig) -> Self {
        let max = match role {
            Role::Requests => config.max_request,
            Role::Responses => config.max_response,
            Role::Uni => config.max_message.max(config.max_response),
        };
        Reader { recv, decoder: FrameDecoder::new(max), role, uni_kind: None, checked: false, claim: None }
    }
}

/// Bytes of requests and messages a peer may have in our memory: one semaphore for its
/// key (shared by all its connections, on every protocol) and one for the connection.
/// Permits are bytes.
#[derive(Clone)]
pub(crate) struct Budget {
    peer: Arc<Semaphore>,
    peer_total: usize,
    conn: Arc<Semaphore>,
    conn_total: usize,
}

/// Bytes claimed from a [`Budget`], given back on drop.
pub(crate) struct Claim {
    _peer: tokio::sync::OwnedSemaphorePermit,
    _conn: tokio::sync::OwnedSemaphorePermit,
}

impl Budget {
    /// A budget of `conn_total` bytes for a new connection, within the peer's `peer`
    /// semaphore of `peer_total` bytes.
    pub(crate) fn new(peer: Arc<Semaphore>, peer_total: usize, conn_total: usize) -> Self {
        Budget { peer, peer_total, conn: Arc::new(Semaphore::new(conn_total)), conn_total }
    }

    /// Permits to take for `bytes`: a frame larger than a budget takes all of it, so
    /// that it can still be received (alone).
    fn permits(bytes: usize, total: usize) -> u32 {
        bytes.min(total).min(u32::MAX as usize) as u32
    }

    /// Claims `bytes` at once if both budgets have room.
    fn try_claim(&self, bytes: usize) -> Option<Claim> {
        let peer = self.peer.clone().try_acquire_many_owned(Self::permits(bytes, self.peer_total)).ok()?;
        let conn = self.conn.clone().try_acquire_many_owned(Self::permits(bytes, self.conn_total)).ok()?;
        Some(Claim { _peer: peer, _conn: conn })
    }

    /// Claims `bytes`, waiting for room: the peer's budget first, then the
    /// connection's (always in this order, so that claims of different connections of
    /// one peer cannot wait on each other in a cycle). `None` if a semaphore was closed.
    async fn claim(&self, bytes: usize) -> Option<Claim> {
        let peer = self.peer.clone().acquire_many_owned(Self::permits(bytes, self.peer_total)).await.ok()?;
        let conn = self.conn.clone().acquire_many_owned(Self::permits(bytes, self.conn_total)).await.ok()?;
        Some(Claim { _peer: peer, _conn: conn })
    }

    /// Bytes claimed on this connection now.
    pub(crate) fn claimed(&self) -> usize {
        self.conn_total - self.conn.available_permits()
    }
}

/// What a request holds while its handler runs: its in-flight permit and its claim.
struct Held {
    _permit: tokio::sync::OwnedSemaphorePermit,
    _claim: Option<Claim>,
}

/// The immutable part of a registered protocol, shared by its connections.
pub(crate) struct ProtoCore {
    pub(crate) id: ProtocolId,
    pub(crate) name: String,
    pub(crate) config: ProtocolConfig,
    pub(crate) handler: Arc<dyn RawHandler>,
}

/// Endpoint-wide state a connection needs.
pub(crate) struct Shared {
    /// Cancelled when the endpoint starts shutting down: stream readers stop taking new
    /// requests and messages.
    pub(crate) shutdown: CancellationToken,
    /// In-flight handler invocations (drained on shutdown).
    pub(crate) handlers: TaskTracker,
    /// Writers of response streams, until the peer has acknowledged everything written
    /// (drained on shutdown, after the handlers).
    pub(crate) writers: TaskTracker,
    /// Every other task of the endpoint.
    pub(crate) tasks: TaskTracker,
}

/// Items queued to a stream writer.
enum Out {
    Frame(OutFrame),
    /// Reset the stream with this code and stop.
    Reset(u32),
}

/// A requester's handle on a lane: its writer queue.
#[derive(Clone)]
struct Lane {
    id: u64,
    tx: mpsc::Sender<Out>,
    dead: Arc<AtomicBool>,
}

impl Lane {
    fn usable(&self) -> bool {
        !self.dead.load(Ordering::Acquire) && !self.tx.is_closed()
    }
}

#[derive(Default)]
struct LaneSlot {
    current: Mutex<Option<Lane>>,
    opening: tokio::sync::Mutex<()>,
}

struct Pending {
    tx: oneshot::Sender<Result<Bytes, NetError>>,
    /// The lane the request went out on, or [`DETACHED`] once the server announced that
    /// the response comes on its own stream (then only connection loss or the timeout
    /// fails it).
    lane: u64,
}

/// Lane id of requests whose response travels on a stream of its own.
const DETACHED: u64 = u64::MAX;

/// A live connection.
pub(crate) struct Conn {
    pub(crate) quinn: quinn::Connection,
    pub(crate) peer: NodeId,
    pub(crate) peer_label: String,
    pub(crate) direction: Direction,
    /// The protocol version negotiated in the handshake (one of the protocol's range).
    pub(crate) version: u32,
    pub(crate) remote: SocketAddr,
    pub(crate) since: Instant,
    pub(crate) stats: ConnStats,
    pub(crate) core: Arc<ProtoCore>,
    shared: Arc<Shared>,
    /// Largest request the peer accepts (from its hello; our own limit for inbound).
    peer_max_request: usize,
    /// The peer's inbound budget on this connection.
    budget: Budget,
    pending: Mutex<HashMap<u64, Pending>>,
    next_id: AtomicU64,
    next_lane: AtomicU64,
    round_robin: AtomicUsize,
    lanes: Vec<LaneSlot>,
    messages: LaneSlot,
    message_seq: AtomicU64,
    inflight: Arc<Semaphore>,
    /// Set once the connection is known to be closed (by the close watcher).
    closed: AtomicBool,
}

impl Conn {
    pub(crate) fn new(
        quinn: quinn::Connection,
        peer: NodeId,
        peer_label: String,
        direction: Direction,
        version: u32,
        core: Arc<ProtoCore>,
        shared: Arc<Shared>,
        peer_max_request: usize,
        budget: Budget,
        inflight: Option<Arc<Semaphore>>,
    ) -> Arc<Self> {
        let lanes = (0..core.config.lanes).map(|_| LaneSlot::default()).collect();
        Arc::new(Conn {
            remote: quinn.remote_address(),
            stats: ConnStats::new(&core.name, &peer_label),
            // Strangers (open access) share their protocol's one semaphore; others get
            // one per connection.
            inflight: inflight.unwrap_or_else(|| Arc::new(Semaphore::new(core.config.max_inflight_per_connection))),
            quinn,
            peer,
            peer_label,
            direction,
            version,
            since: Instant::now(),
            core,
            shared,
            peer_max_request,
            budget,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            next_lane: AtomicU64::new(1),
            round_robin: AtomicUsize::new(0),
            lanes,
            messages: LaneSlot::default(),
            message_seq: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        })
    }

    /// True until the connection is known to be closed or lost. (A connection that
    /// just failed may still look alive for a moment; using it then fails with
    /// [`NetError::ConnectionLost`].)
    pub(crate) fn is_alive(&self) -> bool {
        !self.closed.load(Ordering::Acquire)
    }

    /// Marks the connection closed (called by the close watcher) and drops our ends of
    /// the writer queues, so that the writer tasks end (they hold the connection).
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
        for slot in self.lanes.iter().chain(std::iter::once(&self.messages)) {
            slot.current.lock().unwrap_or_else(|e| e.into_inner()).take();
        }
    }

    /// Bytes of the peer's requests and messages held now on this connection.
    pub(crate) fn inbound_claimed(&self) -> usize {
        self.budget.claimed()
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.lock_pending().len()
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the tasks that accept the peer's streams.
    pub(crate) fn start(self: &Arc<Self>) {
        let c = self.clone();
        self.shared.tasks.spawn(async move { c.accept_bidi_loop().await });
        let c = self.clone();
        self.shared.tasks.spawn(async move { c.accept_uni_loop().await });
    }

    /// Fails every pending request (the connection is gone).
    pub(crate) fn fail_all(&self, err: &NetError) {
        let drained: Vec<Pending> = self.lock_pending().drain().map(|(_, p)| p).collect();
        for p in drained {
            let _ = p.tx.send(Err(err.clone()));
        }
    }

    fn fail_lane(&self, lane: u64, err: &NetError) {
        let failed: Vec<Pending> = {
            let mut pending = self.lock_pending();
            let ids: Vec<u64> = pending.iter().filter(|(_, p)| p.lane == lane).map(|(id, _)| *id).collect();
            ids.into_iter().filter_map(|id| pending.remove(&id)).collect()
        };
        for p in failed {
            let _ = p.tx.send(Err(err.clone()));
        }
    }

    /// Checks an outgoing request (`request`) or message against the size limits.
    fn check_outgoing(&self, len: usize, request: bool) -> Result<(), NetError> {
        let max = if request {
            self.peer_max_request.min(self.core.config.max_request)
        } else {
            self.core.config.max_message
        };
        if len > max {
            return Err(NetError::FrameTooLarge { size: len, max });
        }
        if self.shared.shutdown.is_cancelled() {
            return Err(NetError::Shutdown);
        }
        Ok(())
    }

    // ------------------------------------------------------------------ requester side

    /// Sends a request and waits for its response, up to `timeout`.
    pub(crate) async fn request(self: &Arc<Self>, body: Bytes, timeout: Duration) -> Result<Bytes, NetError> {
        self.check_outgoing(body.len(), true)?;
        let deadline = tokio::time::Instant::now() + timeout;
        let expired = || NetError::Timeout(timeout);
        let lane = if body.len() <= self.core.config.inline_max {
            let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
            match self.current_lane(&self.lanes[i]) {
                Some(lane) => lane,
                None => tokio::time::timeout_at(deadline, self.lane(i)).await.map_err(|_| expired())??,
            }
        } else {
            tokio::time::timeout_at(deadline, self.open_lane()).await.map_err(|_| expired())??
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.lock_pending().insert(id, Pending { tx, lane: lane.id });
        let mut guard = PendingGuard { conn: self, id, armed: true };
        let frame = Out::Frame(OutFrame::new(FrameKind::Request, id, body));
        // Fast path: room in the lane's queue. Otherwise wait for room (bounded).
        match lane.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(NetError::ConnectionLost("request stream closed".into()));
            }
            Err(mpsc::error::TrySendError::Full(frame)) => {
                match tokio::time::timeout_at(deadline, lane.tx.send(frame)).await {
                    Err(_) => {
                        self.stats.fault(Fault::RequestTimeout);
                        return Err(expired());
                    }
                    Ok(Err(_)) => return Err(NetError::ConnectionLost("request stream closed".into())),
                    Ok(Ok(())) => {}
                }
            }
        }
        // A dedicated lane (large request) is finished once its frame is queued: dropping
        // our sender lets the writer finish the stream after writing it.
        drop(lane);
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(answer) => {
                // Whoever answered removed the entry.
                guard.armed = false;
                match answer {
                    Ok(Ok(body)) => Ok(body),
                    Ok(Err(e)) => {
                        if matches!(e, NetError::Rejected(_)) {
                            self.stats.fault(Fault::Rejected);
                        }
                        Err(e)
                    }
                    Err(_) => Err(NetError::ConnectionLost("connection dropped".into())),
                }
            }
            Err(_) => {
                self.stats.fault(Fault::RequestTimeout);
                Err(expired())
            }
        }
    }

    /// Queues a one-way message on the connection's message stream.
    pub(crate) async fn send_message(self: &Arc<Self>, body: Bytes) -> Result<(), NetError> {
        self.check_outgoing(body.len(), false)?;
        let lane = self.message_lane().await?;
        let seq = self.message_seq.fetch_add(1, Ordering::Relaxed);
        lane.tx
            .send(Out::Frame(OutFrame::new(FrameKind::Message, seq, body)))
            .await
            .map_err(|_| NetError::ConnectionLost("message stream closed".into()))
    }

    /// The lane in `slot`, if it is open and usable.
    fn current_lane(&self, slot: &LaneSlot) -> Option<Lane> {
        slot.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|l| l.usable()).cloned()
    }

    /// The long-lived lane `i`, opened (or reopened) on demand.
    async fn lane(self: &Arc<Self>, i: usize) -> Result<Lane, NetError> {
        let slot = &self.lanes[i];
        if let Some(l) = self.current_lane(slot) {
            return Ok(l);
        }
        let _opening = slot.opening.lock().await;
        if let Some(l) = self.current_lane(slot) {
            return Ok(l);
        }
        let lane = self.open_lane().await?;
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(lane.clone());
        Ok(lane)
    }

    /// Opens a bidi stream with a writer and a response reader.
    async fn open_lane(self: &Arc<Self>) -> Result<Lane, NetError> {
        let (send, recv) = self.quinn.open_bi().await.map_err(|e| NetError::ConnectionLost(e.to_string()))?;
        let (tx, rx) = mpsc::channel(self.core.config.send_queue);
        let lane =
            Lane { id: self.next_lane.fetch_add(1, Ordering::Relaxed), tx, dead: Arc::new(AtomicBool::new(false)) };
        let c = self.clone();
        let dead = lane.dead.clone();
        self.shared.tasks.spawn(async move { c.write_stream(send, rx, Some(dead)).await });
        let c = self.clone();
        let (id, dead) = (lane.id, lane.dead.clone());
        self.shared.tasks.spawn(async move { c.read_responses(recv, id, dead).await });
        Ok(lane)
    }

    async fn message_lane(self: &Arc<Self>) -> Result<Lane, NetError> {
        let slot = &self.messages;
        if let Some(l) = slot.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|l| l.usable()) {
            return Ok(l.clone());
        }
        let _opening = slot.opening.lock().await;
        if let Some(l) = slot.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().filter(|l| l.usable()) {
            return Ok(l.clone());
        }
        let send = self.quinn.open_uni().await.map_err(|e| NetError::ConnectionLost(e.to_string()))?;
        let (tx, rx) = mpsc::channel(self.core.config.send_queue);
        let lane = Lane { id: 0, tx, dead: Arc::new(AtomicBool::new(false)) };
        let c = self.clone();
        let dead = lane.dead.clone();
        self.shared.tasks.spawn(async move { c.write_stream(send, rx, Some(dead)).await });
        *slot.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(lane.clone());
        Ok(lane)
    }

    /// Reads responses on a lane until it ends; fails the lane's pending requests then.
    async fn read_responses(self: Arc<Self>, recv: RecvStream, lane: u64, dead: Arc<AtomicBool>) {
        let mut reader = Reader::new(recv, Role::Responses, &self.core.config);
        let mut frames = Vec::new();
        let outcome = loop {
            let read = self.read_step(&mut reader, &mut frames).await;
            for (frame, _) in frames.drain(..) {
                if frame.kind == FrameKind::Detached {
                    if let Some(p) = self.lock_pending().get_mut(&frame.id) {
                        p.lane = DETACHED;
                    }
                } else {
                    self.complete(frame);
                }
            }
            match read {
                Ok(true) => {}
                Ok(false) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        dead.store(true, Ordering::Release);
        let err = match outcome {
            Ok(()) => NetError::ConnectionLost("request stream finished by peer".into()),
            Err(e) => e,
        };
        self.fail_lane(lane, &err);
    }

    /// Completes the pending request a response or error frame answers.
    fn complete(&self, frame: Frame) {
        let Some(p) = self.lock_pending().remove(&frame.id) else {
            // Timed out or cancelled meanwhile: not a fault.
            return;
        };
        let result = match frame.kind {
            FrameKind::Response => Ok(frame.body),
            _ => Err(NetError::Rejected(Reject::decode(&frame.body))),
        };
        let _ = p.tx.send(result);
    }

    /// Checks a frame's header against what the stream carries, before its body is read:
    /// the kind, the size limit for that kind, and (for a response on a stream of its
    /// own) that it answers a request of ours.
    fn check_header(&self, reader: &mut Reader, h: &Header) -> Result<(), FrameError> {
        let config = &self.core.config;
        let limit = match (reader.role, reader.uni_kind, h.kind) {
            (Role::Requests, _, FrameKind::Request) => config.max_request,
            (Role::Responses, _, FrameKind::Response | FrameKind::Error | FrameKind::Detached) => config.max_response,
            (Role::Uni, None | Some(FrameKind::Message), FrameKind::Message) => {
                reader.uni_kind = Some(FrameKind::Message);
                config.max_message
            }
            (Role::Uni, None, FrameKind::Response | FrameKind::Error) => {
                // A response stream carries exactly one answer, to a request we sent.
                if !self.lock_pending().contains_key(&h.id) {
                    return Err(FrameError::UnknownKind(h.kind as u8));
                }
                reader.uni_kind = Some(h.kind);
                config.max_response
            }
            (_, _, k) => return Err(FrameError::UnknownKind(k as u8)),
        };
        if h.len > limit {
            return Err(FrameError::TooLarge { size: h.len, max: limit });
        }
        Ok(())
    }

    /// One step of reading a stream: hands every complete frame buffered to `out` (each
    /// request or message with its budget claim), then, if none was, reads one chunk.
    /// `Ok(false)` at the clean end of the stream.
    ///
    /// Memory: a request or message claims its whole length from the peer's budget once
    /// its header has arrived, before its body is read (waiting for the claim stops
    /// reading, so QUIC flow control pushes back on the peer); at most [`READ_AHEAD`]
    /// bytes are read beyond a claimed frame; a frame that stops arriving for
    /// `read_stall_timeout` fails the stream.
    async fn read_step(&self, reader: &mut Reader, out: &mut Vec<(Frame, Option<Claim>)>) -> Result<bool, NetError> {
        loop {
            let header = match reader.decoder.peek_header() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(self.framing_fault(&mut reader.recv, e)),
            };
            if !reader.checked {
                if let Err(e) = self.check_header(reader, &header) {
                    return Err(self.framing_fault(&mut reader.recv, e));
                }
                reader.checked = true;
            }
            if reader.claim.is_none() && matches!(header.kind, FrameKind::Request | FrameKind::Message) {
                let bytes = header.frame_len();
                reader.claim = match self.budget.try_claim(bytes) {
                    Some(claim) => Some(claim),
                    // Hand over the frames already read first: their handlers may be
                    // what releases the budget this one waits for.
                    None if !out.is_empty() => return Ok(true),
                    None => {
                        self.stats.fault(Fault::BudgetWait);
                        Some(self.budget.claim(bytes).await.ok_or(NetError::Shutdown)?)
                    }
                };
            }
            match reader.decoder.next_frame() {
                Ok(Some(frame)) => {
                    self.stats.received(header.frame_len() as u64);
                    reader.checked = false;
                    out.push((frame, reader.claim.take()));
                }
                Ok(None) => break,
                Err(e) => return Err(self.framing_fault(&mut reader.recv, e)),
            }
        }
        if !out.is_empty() {
            return Ok(true);
        }
        // Read up to the end of the current (already claimed) frame, or a little ahead.
        let buffered = reader.decoder.buffered();
        let max = match reader.decoder.peek_header() {
            Ok(Some(h)) => h.frame_len().saturating_sub(buffered).max(READ_AHEAD),
            _ => READ_AHEAD,
        };
        let partial = !reader.decoder.is_empty();
        let read = reader.recv.read_chunk(max, true);
        let read = if partial {
            match tokio::time::timeout(self.core.config.read_stall_timeout, read).await {
                Ok(r) => r,
                Err(_) => {
                    self.stats.fault(Fault::Stalled);
                    tracing::debug!(target: "lamina::net", peer = %self.peer_label, protocol = %self.core.name, "frame stalled");
                    let _ = reader.recv.stop(VarInt::from_u32(StreamError::STALLED));
                    return Err(NetError::StreamReset(StreamError::Stalled));
                }
            }
        } else {
            read.await
        };
        match read {
            Ok(Some(chunk)) => {
                reader.decoder.push(&chunk.bytes);
                Ok(true)
            }
            Ok(None) => match reader.decoder.finish() {
                Ok(()) => Ok(false),
                Err(e) => Err(self.framing_fault(&mut reader.recv, e)),
            },
            Err(ReadError::Reset(code)) => {
                self.stats.fault(Fault::StreamReset);
                Err(NetError::StreamReset(StreamError::from_code(code.into_inner())))
            }
            Err(e) => Err(NetError::ConnectionLost(e.to_string())),
        }
    }

    fn framing_fault(&self, recv: &mut RecvStream, e: FrameError) -> NetError {
        let (fault, code, err) = match e {
            FrameError::TooLarge { size, max } => {
                (Fault::FrameTooLarge, StreamError::FRAME_TOO_LARGE, NetError::FrameTooLarge { size, max })
            }
            FrameError::UnknownKind(k) => (
                Fault::MalformedFrame,
                StreamError::MALFORMED_FRAME,
                NetError::MalformedFrame(format!("unexpected frame kind {k} on this stream")),
            ),
            FrameError::Truncated => {
                (Fault::MalformedFrame, StreamError::MALFORMED_FRAME, NetError::MalformedFrame("truncated".into()))
            }
        };
        self.stats.fault(fault);
        tracing::debug!(target: "lamina::net", peer = %self.peer_label, protocol = %self.core.name, error = %err, "stream fault");
        let _ = recv.stop(VarInt::from_u32(code));
        err
    }

    /// Writes queued frames to `send`, batching, until the queue closes (then finishes
    /// the stream) or a reset is requested.
    async fn write_stream(
        self: Arc<Self>,
        mut send: SendStream,
        mut rx: mpsc::Receiver<Out>,
        dead: Option<Arc<AtomicBool>>,
    ) {
        let mut batch = Vec::with_capacity(64);
        let mut buf = BytesMut::new();
        let mut chunks: Vec<Bytes> = Vec::new();
        loop {
            if rx.recv_many(&mut batch, WRITE_BATCH).await == 0 {
                // Finished: wait until the peer has acknowledged (or stopped) the stream,
                // so that a shutdown waiting on the writers knows the answers arrived.
                if send.finish().is_ok() {
                    let _ = send.stopped().await;
                }
                break;
            }
            if batch.len() < WRITE_BATCH {
                // Let the tasks that are ready to queue frames (handlers finishing,
                // requesters) run first, then take what they queued: one write, and one
                // QUIC packet, for many small frames instead of one each. Costs nothing
                // when nothing else is runnable.
                tokio::task::yield_now().await;
                while batch.len() < WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
            }
            let (mut frames, mut bytes) = (0u64, 0u64);
            let mut reset = None;
            for item in batch.drain(..) {
                match item {
                    Out::Frame(f) => {
                        frames += 1;
                        bytes += f.wire_len() as u64;
                        if f.body.len() <= COALESCE_MAX {
                            f.write_to(&mut buf);
                        } else {
                            if !buf.is_empty() {
                                chunks.push(buf.split().freeze());
                            }
                            chunks.push(Bytes::copy_from_slice(&f.header));
                            chunks.push(f.body);
                        }
                    }
                    Out::Reset(code) => {
                        reset = Some(code);
                        break;
                    }
                }
            }
            if !buf.is_empty() {
                chunks.push(buf.split().freeze());
            }
            if !chunks.is_empty() {
                if let Err(e) = send.write_all_chunks(&mut chunks).await {
                    chunks.clear();
                    if let quinn::WriteError::Stopped(code) = e {
                        self.stats.fault(Fault::StreamReset);
                        tracing::debug!(target: "lamina::net", peer = %self.peer_label, code = %code, "peer stopped a stream");
                    }
                    break;
                }
                chunks.clear();
                self.stats.sent(frames, bytes);
            }
            if let Some(code) = reset {
                let _ = send.reset(VarInt::from_u32(code));
                break;
            }
        }
        if let Some(d) = dead {
            d.store(true, Ordering::Release);
        }
    }

    // ------------------------------------------------------------------ serving side

    async fn accept_bidi_loop(self: Arc<Self>) {
        loop {
            let accepted = tokio::select! {
                a = self.quinn.accept_bi() => a,
                () = self.shared.shutdown.cancelled() => return,
            };
            let Ok((send, recv)) = accepted else { return };
            let c = self.clone();
            self.shared.tasks.spawn(async move { c.serve_requests(send, recv).await });
        }
    }

    async fn accept_uni_loop(self: Arc<Self>) {
        loop {
            let accepted = tokio::select! {
                a = self.quinn.accept_uni() => a,
                () = self.shared.shutdown.cancelled() => return,
            };
            let Ok(recv) = accepted else { return };
            let c = self.clone();
            self.shared.tasks.spawn(async move { c.serve_uni(recv).await });
        }
    }

    /// Serves a bidi stream opened by the peer: each request frame is handled in its own
    /// task; responses are written back on this stream (or on their own uni stream when
    /// large).
    async fn serve_requests(self: Arc<Self>, send: SendStream, recv: RecvStream) {
        let (tx, rx) = mpsc::channel(self.core.config.send_queue);
        let c = self.clone();
        self.shared.writers.spawn(async move { c.write_stream(send, rx, None).await });
        let mut reader = Reader::new(recv, Role::Requests, &self.core.config);
        let mut requests = Vec::new();
        let shutdown = self.shared.shutdown.clone();
        loop {
            // Read what has arrived (one chunk's worth of frames), then dispatch it: the
            // dispatch may wait for in-flight permits, which pushes back on the peer.
            let read = tokio::select! {
                r = self.read_step(&mut reader, &mut requests) => r,
                () = shutdown.cancelled() => {
                    let _ = reader.recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                    break;
                }
            };
            let mut stopped = false;
            for (frame, claim) in requests.drain(..) {
                let permit = tokio::select! {
                    p = self.inflight.clone().acquire_owned() => p.ok(),
                    () = shutdown.cancelled() => None,
                };
                let Some(permit) = permit else {
                    stopped = true;
                    break;
                };
                self.dispatch(frame, &tx, Held { _permit: permit, _claim: claim }).await;
            }
            if stopped {
                let _ = reader.recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                break;
            }
            match read {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    let code = match e {
                        NetError::FrameTooLarge { .. } => Some(StreamError::FRAME_TOO_LARGE),
                        NetError::MalformedFrame(_) => Some(StreamError::MALFORMED_FRAME),
                        NetError::StreamReset(StreamError::Stalled) => Some(StreamError::STALLED),
                        _ => None,
                    };
                    if let Some(code) = code {
                        let _ = tx.send(Out::Reset(code)).await;
                    }
                    break;
                }
            }
        }
        // The writer finishes the stream once every handler has answered (they hold
        // clones of `tx`).
    }

    /// Runs the handler for one request. The handler future is polled once right here:
    /// most handlers answer at once, and then no task is spawned. One that is not done
    /// continues in its own task (tracked for shutdown), under `handler_timeout`.
    /// Panics, in the call or in the future, are caught either way.
    async fn dispatch(self: &Arc<Self>, frame: Frame, tx: &mpsc::Sender<Out>, held: Held) {
        let handler = self.core.handler.clone();
        let (peer, id, version) = (self.peer, frame.id, self.version);
        let call: Option<HandlerCall> =
            std::panic::catch_unwind(AssertUnwindSafe(|| handler.request(peer, frame.body))).ok().map(|fut| {
                let scoped: crate::protocol::BoxFuture<_> =
                    Box::pin(crate::protocol::REQUEST_VERSION.scope(version, fut));
                AssertUnwindSafe(scoped).catch_unwind()
            });
        let Some(mut call) = call else {
            self.respond(id, Err(HandlerFailure::Panicked), tx).await;
            return;
        };
        let ready = {
            let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
            match std::pin::Pin::new(&mut call).poll(&mut cx) {
                std::task::Poll::Ready(Ok(result)) => Some(Ok(result)),
                std::task::Poll::Ready(Err(_panic)) => Some(Err(HandlerFailure::Panicked)),
                std::task::Poll::Pending => None,
            }
        };
        if let Some(outcome) = ready {
            self.respond(id, outcome, tx).await;
            drop(held);
            return;
        }
        let conn = self.clone();
        let tx = tx.clone();
        self.shared.handlers.spawn(async move {
            let outcome = match tokio::time::timeout(conn.core.config.handler_timeout, call).await {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(_panic)) => Err(HandlerFailure::Panicked),
                Err(_) => Err(HandlerFailure::TimedOut),
            };
            conn.respond(id, outcome, &tx).await;
            drop(held);
        });
    }

    /// Sends the answer to request `id`: on the request's stream, or (when large) on a
    /// stream of its own after a `Detached` marker.
    async fn respond(&self, id: u64, outcome: Result<Result<Bytes, Reject>, HandlerFailure>, tx: &mpsc::Sender<Out>) {
        let result = match outcome {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(reject)) => {
                if reject.kind == RejectKind::Malformed {
                    self.stats.fault(Fault::Decode);
                }
                Err(reject)
            }
            Err(HandlerFailure::Panicked) => {
                self.stats.fault(Fault::HandlerPanic);
                tracing::error!(target: "lamina::net", protocol = %self.core.name, peer = %self.peer_label, "request handler panicked");
                Err(Reject::internal("handler panicked"))
            }
            Err(HandlerFailure::TimedOut) => {
                self.stats.fault(Fault::HandlerTimeout);
                Err(Reject::new(RejectKind::Timeout, "handler timed out"))
            }
        };
        let out = match result {
            Ok(body) if body.len() > self.core.config.max_response => {
                tracing::error!(target: "lamina::net", protocol = %self.core.name, size = body.len(), "response exceeds max_response");
                OutFrame::new(FrameKind::Error, id, Bytes::from(Reject::internal("response too large").encode()))
            }
            Ok(body) => OutFrame::new(FrameKind::Response, id, body),
            Err(reject) => OutFrame::new(FrameKind::Error, id, Bytes::from(reject.encode())),
        };
        if out.body.len() > self.core.config.inline_max {
            // Announce the detour on the request's stream first, so that the requester
            // does not give up when that stream finishes.
            let _ = tx.send(Out::Frame(OutFrame::new(FrameKind::Detached, id, Bytes::new()))).await;
            self.send_alone(out).await;
        } else {
            let _ = tx.send(Out::Frame(out)).await;
        }
    }

    /// Sends one frame on a uni stream of its own (large responses).
    async fn send_alone(&self, frame: OutFrame) {
        let bytes = frame.wire_len() as u64;
        let result = async {
            let mut send = self.quinn.open_uni().await.map_err(|e| e.to_string())?;
            let mut chunks = [Bytes::copy_from_slice(&frame.header), frame.body];
            send.write_all_chunks(&mut chunks).await.map_err(|e| e.to_string())?;
            send.finish().map_err(|e| e.to_string())?;
            Ok::<_, String>(send)
        }
        .await;
        match result {
            Ok(send) => {
                self.stats.sent(1, bytes);
                // Delivery is tracked like the other response writers (for shutdown).
                self.shared.writers.spawn(async move {
                    let _ = send.stopped().await;
                });
            }
            Err(e) => {
                tracing::debug!(target: "lamina::net", peer = %self.peer_label, error = %e, "large response not sent")
            }
        }
    }

    /// Serves a uni stream opened by the peer: the message stream, or one large
    /// response.
    async fn serve_uni(self: Arc<Self>, recv: RecvStream) {
        let mut reader = Reader::new(recv, Role::Uni, &self.core.config);
        let shutdown = self.shared.shutdown.clone();
        let mut frames = Vec::new();
        loop {
            let read = tokio::select! {
                r = self.read_step(&mut reader, &mut frames) => r,
                () = shutdown.cancelled() => {
                    let _ = reader.recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                    return;
                }
            };
            for (frame, claim) in frames.drain(..) {
                if frame.kind == FrameKind::Message {
                    self.deliver_message(frame).await;
                } else {
                    self.complete(frame);
                }
                drop(claim);
            }
            match read {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    async fn deliver_message(&self, frame: Frame) {
        let handler = self.core.handler.clone();
        let (peer, body, version) = (self.peer, frame.body, self.version);
        let call = AssertUnwindSafe(
            crate::protocol::REQUEST_VERSION.scope(version, async move { handler.message(peer, body).await }),
        )
        .catch_unwind();
        match call.await {
            Ok(Ok(())) => {}
            Ok(Err(reject)) => {
                self.stats.fault(Fault::Decode);
                tracing::debug!(target: "lamina::net", peer = %self.peer_label, protocol = %self.core.name, reason = %reject.reason, "bad message");
            }
            Err(_panic) => {
                self.stats.fault(Fault::HandlerPanic);
                tracing::error!(target: "lamina::net", protocol = %self.core.name, peer = %self.peer_label, "message handler panicked");
            }
        }
    }
}

/// A handler invocation with panics caught.
type HandlerCall = futures::future::CatchUnwind<AssertUnwindSafe<crate::protocol::BoxFuture<Result<Bytes, Reject>>>>;

/// Why a handler produced no answer.
enum HandlerFailure {
    Panicked,
    TimedOut,
}

/// Removes a request from the pending map when its future ends or is dropped without an
/// answer (timeout, cancellation).
struct PendingGuard<'a> {
    conn: &'a Conn,
    id: u64,
    armed: bool,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.conn.lock_pending().remove(&self.id);
        }
    }
}
