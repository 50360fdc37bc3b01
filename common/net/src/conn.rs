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
//!   connection after its per-protocol check, carrying its `max_frame`.
//!
//! Either side of a connection may use it as requester; the accepting side of each stream
//! serves it with the protocol's handler.
//!
//! # Faults
//!
//! A frame longer than `max_frame` or with an unknown kind makes the receiver stop the
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
use crate::frame::{Frame, FrameDecoder, FrameError, FrameKind, OutFrame};
use crate::protocol::{ProtocolId, RawHandler};
use crate::stats::{ConnStats, Direction, Fault};

/// Frames up to this size are copied into one write buffer; larger bodies are written as
/// their own chunk (no copy).
const COALESCE_MAX: usize = 16 << 10;
/// Frames taken from a writer queue per write.
const WRITE_BATCH: usize = 512;

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
    pub(crate) remote: SocketAddr,
    pub(crate) since: Instant,
    pub(crate) stats: ConnStats,
    pub(crate) core: Arc<ProtoCore>,
    shared: Arc<Shared>,
    /// Largest frame the peer accepts (from its hello; our own limit for inbound).
    peer_max_frame: usize,
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
        core: Arc<ProtoCore>,
        shared: Arc<Shared>,
        peer_max_frame: usize,
    ) -> Arc<Self> {
        let lanes = (0..core.config.lanes).map(|_| LaneSlot::default()).collect();
        Arc::new(Conn {
            remote: quinn.remote_address(),
            stats: ConnStats::new(&core.name, &peer_label),
            inflight: Arc::new(Semaphore::new(core.config.max_inflight_per_connection)),
            quinn,
            peer,
            peer_label,
            direction,
            since: Instant::now(),
            core,
            shared,
            peer_max_frame,
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

    fn check_outgoing(&self, len: usize) -> Result<(), NetError> {
        let max = self.peer_max_frame.min(self.core.config.max_frame);
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
        self.check_outgoing(body.len())?;
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
        self.check_outgoing(body.len())?;
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
    async fn read_responses(self: Arc<Self>, mut recv: RecvStream, lane: u64, dead: Arc<AtomicBool>) {
        let mut decoder = FrameDecoder::new(self.core.config.max_frame);
        let outcome = self
            .read_frames(&mut recv, &mut decoder, |frame| match frame.kind {
                FrameKind::Response | FrameKind::Error => {
                    self.complete(frame);
                    Ok(())
                }
                FrameKind::Detached => {
                    if let Some(p) = self.lock_pending().get_mut(&frame.id) {
                        p.lane = DETACHED;
                    }
                    Ok(())
                }
                _ => Err(FrameError::UnknownKind(frame.kind as u8)),
            })
            .await;
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

    /// Reads frames from `recv`, passing each to `on_frame`, until the stream finishes
    /// (`Ok`) or fails. On a framing fault, stops the stream with the matching code and
    /// counts it; the caller resets its send side if it has one.
    async fn read_frames(
        &self,
        recv: &mut RecvStream,
        decoder: &mut FrameDecoder,
        mut on_frame: impl FnMut(Frame) -> Result<(), FrameError>,
    ) -> Result<(), NetError> {
        loop {
            let chunk = match recv.read_chunk(usize::MAX, true).await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => {
                    return decoder.finish().map_err(|_| {
                        self.stats.fault(Fault::MalformedFrame);
                        NetError::MalformedFrame("stream ended inside a frame".into())
                    });
                }
                Err(ReadError::Reset(code)) => {
                    self.stats.fault(Fault::StreamReset);
                    return Err(NetError::StreamReset(StreamError::from_code(code.into_inner())));
                }
                Err(e) => return Err(NetError::ConnectionLost(e.to_string())),
            };
            decoder.push(&chunk.bytes);
            loop {
                let frame = match decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => return Err(self.framing_fault(recv, e)),
                };
                self.stats.received((crate::frame::HEADER_LEN + frame.body.len()) as u64);
                if let Err(e) = on_frame(frame) {
                    return Err(self.framing_fault(recv, e));
                }
            }
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
    async fn serve_requests(self: Arc<Self>, send: SendStream, mut recv: RecvStream) {
        let (tx, rx) = mpsc::channel(self.core.config.send_queue);
        let c = self.clone();
        self.shared.writers.spawn(async move { c.write_stream(send, rx, None).await });
        let mut decoder = FrameDecoder::new(self.core.config.max_frame);
        let mut requests: Vec<Frame> = Vec::new();
        let shutdown = self.shared.shutdown.clone();
        loop {
            // Read what has arrived (one chunk's worth of frames), then dispatch it: the
            // dispatch may wait for in-flight permits, which pushes back on the peer.
            let read = tokio::select! {
                r = self.read_some(&mut recv, &mut decoder, &mut requests) => r,
                () = shutdown.cancelled() => {
                    let _ = recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                    break;
                }
            };
            let mut stopped = false;
            for frame in requests.drain(..) {
                let permit = tokio::select! {
                    p = self.inflight.clone().acquire_owned() => p.ok(),
                    () = shutdown.cancelled() => None,
                };
                let Some(permit) = permit else {
                    stopped = true;
                    break;
                };
                self.dispatch(frame, &tx, permit).await;
            }
            if stopped {
                let _ = recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                break;
            }
            match read {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    if matches!(e, NetError::FrameTooLarge { .. } | NetError::MalformedFrame(_)) {
                        let code = if matches!(e, NetError::FrameTooLarge { .. }) {
                            StreamError::FRAME_TOO_LARGE
                        } else {
                            StreamError::MALFORMED_FRAME
                        };
                        let _ = tx.send(Out::Reset(code)).await;
                    }
                    break;
                }
            }
        }
        // The writer finishes the stream once every handler has answered (they hold
        // clones of `tx`).
    }

    /// Reads one chunk and decodes the request frames in it into `out`. `Ok(false)` at
    /// the end of the stream.
    async fn read_some(
        &self,
        recv: &mut RecvStream,
        decoder: &mut FrameDecoder,
        out: &mut Vec<Frame>,
    ) -> Result<bool, NetError> {
        let chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return match decoder.finish() {
                    Ok(()) => Ok(false),
                    Err(e) => Err(self.framing_fault(recv, e)),
                };
            }
            Err(ReadError::Reset(code)) => {
                self.stats.fault(Fault::StreamReset);
                return Err(NetError::StreamReset(StreamError::from_code(code.into_inner())));
            }
            Err(e) => return Err(NetError::ConnectionLost(e.to_string())),
        };
        decoder.push(&chunk.bytes);
        loop {
            match decoder.next_frame() {
                Ok(Some(f)) => {
                    self.stats.received((crate::frame::HEADER_LEN + f.body.len()) as u64);
                    if f.kind != FrameKind::Request {
                        return Err(self.framing_fault(recv, FrameError::UnknownKind(f.kind as u8)));
                    }
                    out.push(f);
                }
                Ok(None) => return Ok(true),
                Err(e) => return Err(self.framing_fault(recv, e)),
            }
        }
    }

    /// Runs the handler for one request. The handler future is polled once right here:
    /// most handlers answer at once, and then no task is spawned. One that is not done
    /// continues in its own task (tracked for shutdown), under `handler_timeout`.
    /// Panics, in the call or in the future, are caught either way.
    async fn dispatch(
        self: &Arc<Self>,
        frame: Frame,
        tx: &mpsc::Sender<Out>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let handler = self.core.handler.clone();
        let (peer, id) = (self.peer, frame.id);
        let call: Option<HandlerCall> =
            std::panic::catch_unwind(AssertUnwindSafe(|| handler.request(peer, frame.body)))
                .ok()
                .map(|fut| AssertUnwindSafe(fut).catch_unwind());
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
            drop(permit);
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
            drop(permit);
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
            Ok(body) if body.len() > self.core.config.max_frame => {
                tracing::error!(target: "lamina::net", protocol = %self.core.name, size = body.len(), "response exceeds max_frame");
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
    async fn serve_uni(self: Arc<Self>, mut recv: RecvStream) {
        let mut decoder = FrameDecoder::new(self.core.config.max_frame);
        let shutdown = self.shared.shutdown.clone();
        let mut kind: Option<FrameKind> = None;
        let mut messages: Vec<Frame> = Vec::new();
        loop {
            let read = tokio::select! {
                r = self.read_uni_chunk(&mut recv, &mut decoder, &mut kind, &mut messages) => r,
                () = shutdown.cancelled() => {
                    let _ = recv.stop(VarInt::from_u32(StreamError::SHUTDOWN));
                    return;
                }
            };
            for m in messages.drain(..) {
                self.deliver_message(m).await;
            }
            match read {
                Ok(true) => {}
                Ok(false) | Err(_) => return,
            }
        }
    }

    async fn read_uni_chunk(
        &self,
        recv: &mut RecvStream,
        decoder: &mut FrameDecoder,
        kind: &mut Option<FrameKind>,
        messages: &mut Vec<Frame>,
    ) -> Result<bool, NetError> {
        let chunk = match recv.read_chunk(usize::MAX, true).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                return match decoder.finish() {
                    Ok(()) => Ok(false),
                    Err(e) => Err(self.framing_fault(recv, e)),
                };
            }
            Err(ReadError::Reset(code)) => {
                self.stats.fault(Fault::StreamReset);
                return Err(NetError::StreamReset(StreamError::from_code(code.into_inner())));
            }
            Err(e) => return Err(NetError::ConnectionLost(e.to_string())),
        };
        decoder.push(&chunk.bytes);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(f)) => f,
                Ok(None) => return Ok(true),
                Err(e) => return Err(self.framing_fault(recv, e)),
            };
            self.stats.received((crate::frame::HEADER_LEN + frame.body.len()) as u64);
            // The first frame decides what the stream is: a message stream carries only
            // messages; a response stream carries exactly one response or error.
            match (*kind, frame.kind) {
                (None | Some(FrameKind::Message), FrameKind::Message) => {
                    *kind = Some(FrameKind::Message);
                    messages.push(frame);
                }
                (None, FrameKind::Response | FrameKind::Error) => {
                    *kind = Some(frame.kind);
                    self.complete(frame);
                }
                (_, k) => return Err(self.framing_fault(recv, FrameError::UnknownKind(k as u8))),
            }
        }
    }

    async fn deliver_message(&self, frame: Frame) {
        let handler = self.core.handler.clone();
        let (peer, body) = (self.peer, frame.body);
        let call = AssertUnwindSafe(async move { handler.message(peer, body).await }).catch_unwind();
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
