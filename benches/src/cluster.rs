//! The cluster-control seam: start a topology, list its processes, inject faults.
//!
//! The harness does not know how a network is started. A [`Cluster`] does: the `lamina`
//! binary implements it over its devnet supervisor (one OS process per module instance,
//! `node/src/devnet`), without this crate importing `node`. Provided here:
//!
//! * [`InProcessCluster`]: no processes (for in-process and synthetic targets); samples
//!   only the harness itself;
//! * [`ProcessCluster`]: runs arbitrary commands as child processes, one per module
//!   instance, and implements every fault on them with real signals (`SIGKILL`,
//!   `SIGTERM`, `SIGSTOP`, `SIGCONT`, respawn). Useful on its own for clusters started by
//!   command lines, and it is what the harness's fault tests run against.
//!
//! # Threading
//!
//! The runner calls every `Cluster` method from the thread that called
//! [`crate::run_bench`], never from a pool thread. An implementation that forks with
//! `PR_SET_PDEATHSIG` (as the devnet supervisor does: the signal fires when the *thread*
//! that forked exits) therefore keeps its children tied to a long-lived thread.

use nix::sys::signal::Signal;
use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lamina_interfaces::ChainSpec;
use lamina_primitives::TxScope;

use crate::BenchError;

/// The shape of a network to benchmark (one configuration of a sweep).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topology {
    /// Consensus validators (committee size).
    pub validators: usize,
    /// DA storage nodes.
    pub da_nodes: usize,
    /// Chains (namespaces), ids `1..=chains`.
    pub chains: usize,
    /// Execution services per chain.
    pub execution_per_chain: usize,
    /// Funded deterministic test accounts per chain (>= the workload's accounts).
    pub funded_accounts: u64,
}

impl Default for Topology {
    fn default() -> Self {
        Topology { validators: 4, da_nodes: 4, chains: 1, execution_per_chain: 1, funded_accounts: 1000 }
    }
}

impl Topology {
    /// A short label: `v4 da4 c1`.
    pub fn label(&self) -> String {
        format!("v{} da{} c{}", self.validators, self.da_nodes, self.chains)
    }
}

/// A started network, as the harness sees it.
#[derive(Clone, Debug)]
pub struct Deployment<H> {
    /// The topology it was started with.
    pub topology: Topology,
    /// Its chains with their funded test accounts (from its genesis): the workload
    /// signs with these keys.
    pub chains: Vec<ChainSpec>,
    /// What its transaction signatures bind (`Genesis::tx_scope`): the workload signs
    /// in it.
    pub scope: TxScope,
    /// Whatever the target factory needs to connect (addresses, genesis, a directory).
    pub handle: H,
}

/// One module instance: `execution-0`, `validator-3`, `da-1`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Instance {
    /// Instance-name prefix as the cluster names it (`validator`, `da`, `execution`).
    pub role: String,
    /// Index within the role.
    pub index: usize,
}

impl Instance {
    /// `role`-`index`.
    pub fn new(role: &str, index: usize) -> Self {
        Instance { role: role.to_string(), index }
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.role, self.index)
    }
}

/// A fault-schedule action on one instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// `SIGKILL`: crash without cleanup.
    Kill,
    /// `SIGTERM`: clean stop.
    Terminate,
    /// `SIGSTOP`: freeze (a paused process keeps its sockets but answers nothing).
    Pause,
    /// `SIGCONT` after a pause.
    Resume,
    /// Start the instance again after a kill or terminate (same home, same config).
    Restart,
}

/// A fault: `action` on `instance` at `at_s` seconds after the point's load starts,
/// undone at `recover_at_s` (restart after kill/terminate, resume after pause).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    /// The instance.
    pub instance: Instance,
    /// Kill, terminate or pause.
    pub action: FaultAction,
    /// Seconds after t0.
    pub at_s: f64,
    /// When to undo it (`None`: stays faulty for the rest of the point).
    pub recover_at_s: Option<f64>,
}

impl Fault {
    /// Checks the fault on its own.
    pub fn validate(&self) -> Result<(), BenchError> {
        if !matches!(self.action, FaultAction::Kill | FaultAction::Terminate | FaultAction::Pause) {
            return Err(BenchError::Spec(format!(
                "fault on {}: the action must be kill, terminate or pause (recovery is recover_at_s)",
                self.instance
            )));
        }
        if !self.at_s.is_finite() || self.at_s < 0.0 {
            return Err(BenchError::Spec(format!("fault on {}: at_s must be >= 0", self.instance)));
        }
        if let Some(r) = self.recover_at_s
            && (!r.is_finite() || r <= self.at_s)
        {
            return Err(BenchError::Spec(format!("fault on {}: recover_at_s must be after at_s", self.instance)));
        }
        Ok(())
    }

    /// The fault as timed events: the action, then its recovery.
    pub fn events(&self) -> Vec<FaultEvent> {
        let mut v = vec![FaultEvent { at_s: self.at_s, instance: self.instance.clone(), action: self.action }];
        if let Some(r) = self.recover_at_s {
            let undo = if self.action == FaultAction::Pause { FaultAction::Resume } else { FaultAction::Restart };
            v.push(FaultEvent { at_s: r, instance: self.instance.clone(), action: undo });
        }
        v
    }
}

/// One timed action of a fault schedule.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FaultEvent {
    /// Seconds after t0.
    pub at_s: f64,
    /// The instance.
    pub instance: Instance,
    /// The action.
    pub action: FaultAction,
}

/// The events of all faults, in time order (stable for equal times).
pub fn schedule(faults: &[Fault]) -> Vec<FaultEvent> {
    let mut v: Vec<FaultEvent> = faults.iter().flat_map(Fault::events).collect();
    v.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    v
}

/// A process to sample.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessRef {
    /// Instance name (`validator-0`).
    pub name: String,
    /// Module (`consensus`, `da`, `execution`, …).
    pub module: String,
    /// OS process id.
    pub pid: u32,
}

/// Starts, inspects, faults and stops networks. See the module docs for threading.
pub trait Cluster {
    /// What the target factory needs to reach a started network.
    type Handle;

    /// Starts a network of `topology` and waits until it is ready for load.
    fn start(&mut self, topology: &Topology) -> Result<Deployment<Self::Handle>, BenchError>;

    /// The running processes to sample now (after a restart, the new pid).
    fn processes(&self) -> Vec<ProcessRef>;

    /// Applies a fault action to an instance. Errors are recorded in the fault marker.
    fn apply(&mut self, instance: &Instance, action: FaultAction) -> Result<(), BenchError>;

    /// Stops the network started last.
    fn stop(&mut self) -> Result<(), BenchError>;
}

/// A cluster with no processes of its own, for in-process targets.
#[derive(Clone, Debug, Default)]
pub struct InProcessCluster {
    /// Funded test amount per account in the chain specs it reports.
    pub funded_amount: u64,
}

/// The chain specs of `topology` as the devnet lays them out: ids `1..=chains`,
/// `funded_accounts` test accounts from seed `(id − 1) · 1,000,000`.
pub fn devnet_chains(topology: &Topology, funded_amount: u64) -> Vec<ChainSpec> {
    (1..=topology.chains as u64)
        .map(|id| ChainSpec {
            id: lamina_primitives::ChainId(id),
            name: format!("chain-{id}"),
            balances: vec![],
            funded_test_accounts: topology.funded_accounts,
            funded_test_accounts_seed: (id - 1) * 1_000_000,
            funded_test_amount: funded_amount,
            fee: 0,
            fee_collector: Default::default(),
            ledger_version: 1,
        })
        .collect()
}

impl Cluster for InProcessCluster {
    type Handle = ();

    fn start(&mut self, topology: &Topology) -> Result<Deployment<()>, BenchError> {
        // In-process targets run no genesis of their own: nothing binds a network.
        Ok(Deployment {
            topology: topology.clone(),
            chains: devnet_chains(topology, self.funded_amount),
            scope: TxScope::ChainOnly,
            handle: (),
        })
    }

    fn processes(&self) -> Vec<ProcessRef> {
        Vec::new()
    }

    fn apply(&mut self, instance: &Instance, _action: FaultAction) -> Result<(), BenchError> {
        Err(BenchError::Cluster(format!("in-process cluster has no instance {instance}")))
    }

    fn stop(&mut self) -> Result<(), BenchError> {
        Ok(())
    }
}

/// How to run one instance of a [`ProcessCluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessSpec {
    /// The instance.
    pub instance: Instance,
    /// Module name reported with its samples.
    pub module: String,
    /// Program.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// File for standard output and error (`None`: discarded).
    pub log: Option<PathBuf>,
}

/// What a [`ProcessCluster`] launcher returns for a topology.
#[derive(Debug)]
pub struct Launch<H> {
    /// The deployment's chains.
    pub chains: Vec<ChainSpec>,
    /// What its transaction signatures bind.
    pub scope: TxScope,
    /// The processes, started in order.
    pub processes: Vec<ProcessSpec>,
    /// The factory's handle.
    pub handle: H,
}

struct Running {
    spec: ProcessSpec,
    child: Option<Child>,
}

type Launcher<H> = Box<dyn FnMut(&Topology) -> Result<Launch<H>, BenchError>>;

/// A cluster of child processes from command lines (see the module docs).
pub struct ProcessCluster<H> {
    launcher: Launcher<H>,
    running: Vec<Running>,
    /// Time a terminated process gets before `SIGKILL` (on `Terminate` and `stop`).
    pub grace: Duration,
}

impl<H> fmt::Debug for ProcessCluster<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessCluster")
            .field("instances", &self.running.iter().map(|r| r.spec.instance.to_string()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl<H> ProcessCluster<H> {
    /// A cluster whose `start(topology)` runs the processes `launcher` returns.
    pub fn new(launcher: impl FnMut(&Topology) -> Result<Launch<H>, BenchError> + 'static) -> Self {
        ProcessCluster { launcher: Box::new(launcher), running: Vec::new(), grace: Duration::from_secs(5) }
    }

    fn spawn(spec: &ProcessSpec) -> Result<Child, BenchError> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args).stdin(Stdio::null());
        match &spec.log {
            Some(path) => {
                let out = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| BenchError::io(path, e))?;
                let err = out.try_clone().map_err(|e| BenchError::io(path, e))?;
                cmd.stdout(out).stderr(err);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        // SAFETY: between fork and exec the closure only calls prctl, an
        // async-signal-safe system call, with integer arguments; no allocation.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(|| {
                // If the harness dies without stopping us, die too (no orphans).
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                Ok(())
            });
        }
        cmd.spawn().map_err(|e| BenchError::Cluster(format!("cannot start {}: {e}", spec.instance)))
    }

    fn find(&mut self, instance: &Instance) -> Result<&mut Running, BenchError> {
        self.running
            .iter_mut()
            .find(|r| &r.spec.instance == instance)
            .ok_or_else(|| BenchError::Cluster(format!("no instance {instance}")))
    }

    fn signal(child: &Child, sig: Signal) -> Result<(), BenchError> {
        let pid = i32::try_from(child.id()).map_err(|_| BenchError::Cluster("pid out of range".into()))?;
        // The pid is our own child, not yet reaped (we hold its Child), so it cannot
        // have been reused.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
            .map_err(|e| BenchError::Cluster(format!("kill({pid}, {sig}): {e}")))
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL; reaps the child.
    fn terminate(child: &mut Child, grace: Duration) -> Result<(), BenchError> {
        if let Ok(Some(_)) = child.try_wait() {
            return Ok(());
        }
        // A stopped process cannot act on SIGTERM; let it run first.
        let _ = Self::signal(child, Signal::SIGCONT);
        Self::signal(child, Signal::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }
}

impl<H> Cluster for ProcessCluster<H> {
    type Handle = H;

    fn start(&mut self, topology: &Topology) -> Result<Deployment<H>, BenchError> {
        self.stop()?;
        let launch = (self.launcher)(topology)?;
        for spec in launch.processes {
            let child = match Self::spawn(&spec) {
                Ok(c) => c,
                Err(e) => {
                    let _ = self.stop();
                    return Err(e);
                }
            };
            self.running.push(Running { spec, child: Some(child) });
        }
        Ok(Deployment { topology: topology.clone(), chains: launch.chains, scope: launch.scope, handle: launch.handle })
    }

    fn processes(&self) -> Vec<ProcessRef> {
        self.running
            .iter()
            .filter_map(|r| {
                r.child.as_ref().map(|c| ProcessRef {
                    name: r.spec.instance.to_string(),
                    module: r.spec.module.clone(),
                    pid: c.id(),
                })
            })
            .collect()
    }

    fn apply(&mut self, instance: &Instance, action: FaultAction) -> Result<(), BenchError> {
        let grace = self.grace;
        let r = self.find(instance)?;
        match action {
            FaultAction::Kill => {
                let mut c = r.child.take().ok_or_else(|| BenchError::Cluster(format!("{instance} is not running")))?;
                let _ = c.kill();
                let _ = c.wait();
                Ok(())
            }
            FaultAction::Terminate => {
                let mut c = r.child.take().ok_or_else(|| BenchError::Cluster(format!("{instance} is not running")))?;
                Self::terminate(&mut c, grace)
            }
            FaultAction::Pause | FaultAction::Resume => {
                let c = r.child.as_ref().ok_or_else(|| BenchError::Cluster(format!("{instance} is not running")))?;
                Self::signal(c, if action == FaultAction::Pause { Signal::SIGSTOP } else { Signal::SIGCONT })
            }
            FaultAction::Restart => {
                if let Some(c) = r.child.as_mut()
                    && let Ok(None) = c.try_wait()
                {
                    return Err(BenchError::Cluster(format!("{instance} is still running")));
                }
                r.child = Some(Self::spawn(&r.spec)?);
                Ok(())
            }
        }
    }

    fn stop(&mut self) -> Result<(), BenchError> {
        let grace = self.grace;
        for r in self.running.iter_mut().rev() {
            if let Some(mut c) = r.child.take() {
                Self::terminate(&mut c, grace)?;
            }
        }
        self.running.clear();
        Ok(())
    }
}

impl<H> Drop for ProcessCluster<H> {
    fn drop(&mut self) {
        for r in &mut self.running {
            if let Some(mut c) = r.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_expand_into_ordered_events() {
        let faults = vec![
            Fault { instance: Instance::new("da", 1), action: FaultAction::Pause, at_s: 2.0, recover_at_s: Some(4.0) },
            Fault {
                instance: Instance::new("execution", 0),
                action: FaultAction::Kill,
                at_s: 1.0,
                recover_at_s: Some(3.0),
            },
        ];
        for f in &faults {
            f.validate().unwrap();
        }
        let ev = schedule(&faults);
        let got: Vec<(f64, String, FaultAction)> =
            ev.iter().map(|e| (e.at_s, e.instance.to_string(), e.action)).collect();
        assert_eq!(
            got,
            vec![
                (1.0, "execution-0".into(), FaultAction::Kill),
                (2.0, "da-1".into(), FaultAction::Pause),
                (3.0, "execution-0".into(), FaultAction::Restart),
                (4.0, "da-1".into(), FaultAction::Resume),
            ]
        );
        let bad =
            Fault { instance: Instance::new("da", 0), action: FaultAction::Resume, at_s: 1.0, recover_at_s: None };
        assert!(bad.validate().is_err());
        let bad =
            Fault { instance: Instance::new("da", 0), action: FaultAction::Kill, at_s: 2.0, recover_at_s: Some(1.0) };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn devnet_chain_layout_matches_the_devnet() {
        let t = Topology { chains: 2, funded_accounts: 10, ..Default::default() };
        let c = devnet_chains(&t, 5);
        assert_eq!(c.len(), 2);
        assert_eq!(c[1].id, lamina_primitives::ChainId(2));
        assert_eq!(c[1].funded_test_accounts_seed, 1_000_000);
        assert_eq!(t.label(), "v4 da4 c2");
    }
}
