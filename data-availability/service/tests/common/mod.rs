//! Test harness: a genesis with free localhost ports, DA nodes run in-process (tasks) or
//! as child processes (this test binary re-executed), and a lying node.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use lamina_da_client::protocol::{DaProtocol, DaRequest, DaResponse};
use lamina_da_client::{ClientConfig, DaClient, protocol_config};
use lamina_da_service::store::ColumnStore;
use lamina_da_service::{Config, DaNode, accepted_peers};
use lamina_interfaces::{Blob, Genesis, Health};
use lamina_net::{Endpoint, EndpointConfig, Handler, NodeContext, Reject};
use lamina_primitives::{Batch, ChainId, Keypair, Namespace, NodeId, Transaction, TxScope, codec};
use lamina_test_utils::child::TestChild;
use tokio_util::sync::CancellationToken;

/// Key seeds: DA node `i` is `100 + i`; client (validator) `j` is `j`.
pub fn da_key(i: usize) -> Keypair {
    Keypair::for_testing(100 + i as u64)
}

pub fn client_key(j: usize) -> Keypair {
    Keypair::for_testing(j as u64)
}

/// A genesis with `n` DA nodes on free localhost ports and two validators (clients).
pub fn genesis(n: usize) -> Genesis {
    use lamina_net::ports::one_udp;
    use lamina_test_utils::node;
    let g = Genesis {
        validators: (0..2).map(|j| node(format!("v{j}"), &client_key(j), one_udp())).collect(),
        da_nodes: (0..n).map(|i| node(format!("da{i}"), &da_key(i), one_udp())).collect(),
        ..lamina_test_utils::genesis("da-test")
    };
    g.validate().unwrap();
    g
}

/// A chain's batch: `n` signed transactions with `size`-byte payloads.
pub fn batch(chain: u64, n: u64, size: usize) -> (Batch, Blob) {
    let kp = Keypair::for_testing(1_000 + chain);
    let ns = Namespace::from(ChainId(chain));
    let txs = (0..n)
        .map(|i| {
            Transaction::new_signed(
                &kp,
                TxScope::ChainOnly,
                ChainId(chain),
                i,
                vec![(i % 251) as u8 ^ chain as u8; size],
            )
        })
        .collect();
    let batch = Batch { namespace: ns, txs };
    let blob = Blob { namespace: ns, data: codec::encode(&batch).unwrap() };
    (batch, blob)
}

pub fn client_config() -> ClientConfig {
    ClientConfig {
        connect_wait: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        disperse_timeout: Duration::from_secs(20),
        ..ClientConfig::default()
    }
}

pub fn client(genesis: &Genesis, j: usize) -> (DaClient, Endpoint) {
    DaClient::bind(&client_key(j), genesis, lamina_test_utils::localhost(0), client_config()).unwrap()
}

pub fn node_context(genesis: &Arc<Genesis>, i: usize, data: &Path) -> NodeContext {
    NodeContext::new(da_key(i), genesis.clone(), data.to_path_buf(), Health::new())
}

/// Runs honest DA node `i` in this process until `shutdown`.
pub fn spawn_node(
    genesis: &Arc<Genesis>,
    i: usize,
    data: &Path,
    config: Config,
) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let ctx = node_context(genesis, i, data);
    let s = stop.clone();
    let h = tokio::spawn(async move { lamina_da_service::run(ctx, config, s).await.unwrap() });
    (stop, h)
}

/// A Byzantine DA node: stores and attests honestly, but every cell it serves (ranges,
/// samples, columns) has one byte flipped.
pub struct Liar(pub Arc<DaNode>);

fn flip(mut v: Vec<u8>) -> Vec<u8> {
    if let Some(b) = v.get_mut(7) {
        *b ^= 0x40;
    }
    v
}

impl Handler<DaProtocol> for Liar {
    async fn request(&self, peer: NodeId, req: DaRequest) -> Result<DaResponse, Reject> {
        let node = self.0.clone();
        let answer = tokio::task::spawn_blocking(move || node.handle(peer, req)).await.unwrap()?;
        Ok(match answer {
            DaResponse::Ranges(mut slices) => {
                for s in &mut slices {
                    s.proof.chunks = flip(std::mem::take(&mut s.proof.chunks));
                }
                DaResponse::Ranges(slices)
            }
            DaResponse::Sample(mut p) => {
                p.chunk = flip(std::mem::take(&mut p.chunk));
                DaResponse::Sample(p)
            }
            DaResponse::Column(c) => DaResponse::Column(flip(c)),
            other => other,
        })
    }
}

/// Runs lying DA node `i` in this process until `shutdown`.
pub async fn run_liar(genesis: Arc<Genesis>, i: usize, data: PathBuf, shutdown: CancellationToken) {
    let ctx = node_context(&genesis, i, &data);
    let dir = data.join("columns");
    std::fs::create_dir_all(&dir).unwrap();
    let (store, _) = ColumnStore::open(&dir, Config::default().store_config()).unwrap();
    let node = Arc::new(DaNode::new(&ctx, Arc::new(store)).unwrap());
    let endpoint = Endpoint::bind(&ctx.keypair, EndpointConfig::new(ctx.listen_addr().unwrap())).unwrap();
    endpoint.register::<DaProtocol, _>(Liar(node), accepted_peers(&ctx), protocol_config()).unwrap();
    shutdown.cancelled().await;
    endpoint.shutdown().await;
}

/// What a DA node process runs: node `index` of `genesis` with its files under `data`,
/// lying (see [`Liar`]) if `lie`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ChildSpec {
    pub genesis: Genesis,
    pub index: usize,
    pub data: PathBuf,
    pub lie: bool,
}

/// The entry each multi-process test binary defines as `#[test] fn da_child()`, calling
/// [`child_main`].
pub const CHILD: &str = "da_child";

/// The child-process side: when this process was started by [`start_child`], run the
/// node its spec describes until killed or `SIGTERM`; a no-op in a normal test run.
pub fn child_main() {
    let Some(spec) = lamina_test_utils::child::spec::<ChildSpec>(CHILD) else { return };
    let genesis = Arc::new(spec.genesis);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            term.recv().await;
            s.cancel();
        });
        if spec.lie {
            run_liar(genesis, spec.index, spec.data, stop).await;
        } else {
            let ctx = node_context(&genesis, spec.index, &spec.data);
            lamina_da_service::run(ctx, Config::default(), stop).await.unwrap();
        }
    });
}

/// Starts DA node `index` of `genesis` as a child process, its data under `dir/da<index>`
/// and its output in `dir/da<index>.log`.
pub fn start_child(genesis: &Genesis, index: usize, dir: &Path, lie: bool) -> TestChild {
    let data = dir.join(format!("da{index}"));
    std::fs::create_dir_all(&data).unwrap();
    let spec = ChildSpec { genesis: genesis.clone(), index, data, lie };
    TestChild::logged(CHILD, &spec, &dir.join(format!("da{index}.log")))
}
