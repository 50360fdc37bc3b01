//! The built-in load of `devnet up`: the benchmark harness ([`lamina_benches`]) and the
//! bridge load on their own threads, against the running network. Built with the `bench`
//! feature (on by default); without it `devnet up` runs with no load and refuses `--load`.

use std::path::Path;
#[cfg(feature = "bench")]
use std::sync::{Arc, Mutex};
#[cfg(feature = "bench")]
use std::time::Duration;

#[cfg(feature = "bench")]
use lamina_benches::{
    BenchSpec, LiveStatus, LoadSweep, Observer, OutputSpec, PointSpec, Results, TopologySweep, WorkloadSpec,
    run_bench_with,
};

use super::UpArgs;
use super::state::DevnetState;

/// A rate for the status line (`12.3k/s`, `850/s`).
pub fn fmt_rate(r: f64) -> String {
    if r >= 1000.0 { format!("{:.1}k/s", r / 1000.0) } else { format!("{r:.0}/s") }
}

#[cfg(feature = "bench")]
/// The built-in load of `devnet up`: the benchmark harness on its own thread (it runs
/// its own multi-threaded runtime), against the running network.
pub struct BackgroundLoad {
    live: Arc<Mutex<Option<LiveStatus>>>,
    bridge_live: Option<Arc<crate::bridge_load::BridgeLive>>,
    /// Resolves once every load thread finished.
    pub done: tokio::sync::oneshot::Receiver<LoadDone>,
    /// What the load produced, once `done` resolved.
    pub result: Option<LoadDone>,
    rate: u64,
}

#[cfg(feature = "bench")]
/// What the built-in load produced: the transfer harness's results and the bridge
/// share's report (each absent when that part did not run).
pub struct LoadDone {
    /// The transfer harness's results.
    pub transfers: Option<anyhow::Result<Results>>,
    /// The bridge share's report.
    pub bridge: Option<anyhow::Result<crate::bridge_load::BridgeReport>>,
}

#[cfg(feature = "bench")]
/// Observer that keeps the latest live status for the supervisor's status line.
struct LiveSlot(Arc<Mutex<Option<LiveStatus>>>);

#[cfg(feature = "bench")]
impl Observer for LiveSlot {
    fn tick(&mut self, live: &LiveStatus) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(live.clone());
    }
}

#[cfg(feature = "bench")]
impl BackgroundLoad {
    /// Starts the load `a` asks for (transfers, and the bridge share) on its own threads.
    pub fn start(st: &DevnetState, a: &UpArgs, dir: &Path) -> anyhow::Result<Self> {
        let handle = crate::load::DevnetHandle::from_state(st)?;
        let chains = handle.genesis.chains.len();
        let share = a.bridge_share;
        if !(0.0..=1.0).contains(&share) {
            anyhow::bail!("--bridge-share must be between 0 and 1");
        }
        if share > 0.0 && !handle.genesis.bridge.enabled {
            anyhow::bail!("--bridge-share needs the bridge (two chains, a settlement node, --bridge >= 1)");
        }
        let transfer_rate = (a.load as f64 * (1.0 - share)).round() as u64;
        let bridge_rate = a.load as f64 * share;
        // The two parts send from disjoint halves of the funded accounts when both run.
        let transfer_accounts = if share > 0.0 {
            a.load_accounts.min(a.funded_accounts / 2)
        } else {
            a.load_accounts.min(a.funded_accounts)
        };
        let spec = BenchSpec {
            name: "devnet-load".into(),
            topologies: TopologySweep {
                validators: vec![handle.genesis.validators.len()],
                da_nodes: vec![handle.genesis.da_nodes.len()],
                chains: vec![chains],
                execution_per_chain: (handle.genesis.execution_nodes.len() / chains.max(1)).max(1),
                funded_accounts: a.funded_accounts,
            },
            load: LoadSweep::Fixed { rates: vec![transfer_rate as f64] },
            point: PointSpec {
                warmup: Duration::from_secs(2),
                duration: a.load_duration,
                drain: Duration::from_secs(10),
                burst: Duration::from_millis(10),
                pause_between: Duration::ZERO,
                ..PointSpec::default()
            },
            workload: WorkloadSpec { accounts: transfer_accounts.max(2), ..WorkloadSpec::default() },
            output: OutputSpec { dir: dir.join("load"), plots: true, print_summary: false },
            git: crate::build_info::git(),
            ..BenchSpec::default()
        };
        let genesis = handle.genesis.clone();
        let live = Arc::new(Mutex::new(None));
        let transfers = if transfer_rate > 0 {
            spec.validate().map_err(|e| anyhow::anyhow!("load: {e}"))?;
            let mut cluster = crate::load::AttachedCluster { state: st.clone(), handle };
            let slot = live.clone();
            eprintln!(
                "load: {transfer_rate} signed transfers/s over {chains} chain(s) for {:.0?} (+2 s warm-up), {} accounts per chain",
                a.load_duration, transfer_accounts
            );
            Some(std::thread::Builder::new().name("lamina-load".into()).spawn(move || {
                run_bench_with(&spec, &crate::load::DevnetFactory, &mut cluster, &mut LiveSlot(slot))
                    .map_err(anyhow::Error::from)
            })?)
        } else {
            None
        };
        let bridge_live = (bridge_rate > 0.0).then(|| Arc::new(crate::bridge_load::BridgeLive::default()));
        let bridge = match &bridge_live {
            Some(bl) => {
                let client_key = crate::keys::read(&st.client_key)?;
                let bspec = crate::bridge_load::BridgeLoadSpec {
                    rate: bridge_rate,
                    duration: a.load_duration + Duration::from_secs(2),
                    drain: Duration::from_secs(120),
                    first_account: a.funded_accounts / 2,
                    accounts: (a.funded_accounts / 2).max(1),
                };
                eprintln!(
                    "load: {bridge_rate:.0} bridge locks/s (each chain to the next) for {:.0?}, followed until credited",
                    bspec.duration
                );
                let bl = bl.clone();
                Some(std::thread::Builder::new().name("lamina-bridge-load".into()).spawn(move || {
                    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                    rt.block_on(crate::bridge_load::run(&genesis, &client_key, &bspec, bl))
                })?)
            }
            None => None,
        };
        let (tx, done) = tokio::sync::oneshot::channel();
        std::thread::Builder::new().name("lamina-load-join".into()).spawn(move || {
            let _ = tx.send(LoadDone { transfers: transfers.map(join_load), bridge: bridge.map(join_load) });
        })?;
        Ok(BackgroundLoad { live, bridge_live, done, result: None, rate: transfer_rate })
    }

    /// Whether the load is still running.
    pub fn running(&self) -> bool {
        self.result.is_none()
    }

    /// Waits until every load thread finished, and keeps what they produced.
    pub async fn wait(&mut self) {
        let r = (&mut self.done).await;
        self.result = Some(r.unwrap_or_else(|_| LoadDone {
            transfers: Some(Err(anyhow::anyhow!("the load generator thread died"))),
            bridge: None,
        }));
    }

    /// The live part of the status line.
    pub fn line(&self) -> String {
        let bridge = self.bridge_live.as_ref().map_or(String::new(), |b| {
            format!(
                " | bridge {} sent, {} credited",
                b.sent.load(std::sync::atomic::Ordering::Relaxed),
                b.credited.load(std::sync::atomic::Ordering::Relaxed)
            )
        });
        format!("{}{bridge}", self.transfer_line())
    }

    fn transfer_line(&self) -> String {
        if self.rate == 0 {
            return "bridge load".into();
        }
        let l = self.live.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match l {
            None => format!("load {} tx/s: preparing", self.rate),
            Some(l) => format!(
                "load {:.0}s: offered {} | finalized {} | executed {} | p50 {} p99 {}{}",
                l.elapsed_s,
                fmt_rate(l.offered_tps),
                fmt_rate(l.finalized_tps),
                fmt_rate(l.executed_tps),
                l.recent_p50_ms.map_or("–".into(), |v| format!("{v:.0}ms")),
                l.recent_p99_ms.map_or("–".into(), |v| format!("{v:.0}ms")),
                l.da_bytes.map_or(String::new(), |b| format!(" | DA {:.1} MB", b as f64 / 1e6)),
            ),
        }
    }

    /// Prints the summary table and where the results are.
    pub fn report(self, dir: &Path) {
        let Some(done) = self.result else {
            eprintln!("load interrupted before it finished (no results written)");
            eprintln!("logs: {}", dir.join("logs").display());
            return;
        };
        match done.transfers {
            Some(Ok(r)) => {
                print!("{}", r.summary_markdown());
                eprintln!("results: {}", dir.join("load").join("results.json").display());
                eprintln!("plots and CSV: {}", dir.join("load").display());
            }
            Some(Err(e)) => eprintln!("load generator failed: {e:#}"),
            None => {}
        }
        match done.bridge {
            Some(Ok(b)) => {
                println!("{}", b.line());
                let path = dir.join("load").join("bridge.json");
                let written = std::fs::create_dir_all(dir.join("load"))
                    .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&b).unwrap_or_default()));
                if written.is_ok() {
                    eprintln!("bridge results: {}", path.display());
                }
            }
            Some(Err(e)) => eprintln!("bridge load failed: {e:#}"),
            None => {}
        }
        eprintln!("logs: {}", dir.join("logs").display());
    }
}

#[cfg(feature = "bench")]
/// A load thread's result (a panic is an error).
fn join_load<T>(h: std::thread::JoinHandle<anyhow::Result<T>>) -> anyhow::Result<T> {
    h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a load thread panicked")))
}

/// Without the `bench` feature there is no load generator: a value of this type cannot
/// exist, and [`BackgroundLoad::start`] says why.
#[cfg(not(feature = "bench"))]
pub enum BackgroundLoad {}

#[cfg(not(feature = "bench"))]
impl BackgroundLoad {
    /// Refuses: this binary has no load generator.
    pub fn start(_st: &DevnetState, _a: &UpArgs, _dir: &Path) -> anyhow::Result<Self> {
        anyhow::bail!(
            "this lamina binary was built without the `bench` feature, so it has no load generator: pass --load 0"
        )
    }

    /// Never called (no value exists).
    pub fn running(&self) -> bool {
        match *self {}
    }

    /// Never called (no value exists).
    pub async fn wait(&mut self) {
        match *self {}
    }

    /// Never called (no value exists).
    pub fn line(&self) -> String {
        match *self {}
    }

    /// Never called (no value exists).
    pub fn report(self, _dir: &Path) {
        match self {}
    }
}
