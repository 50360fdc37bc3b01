//! The one way a test runs part of itself in another process: a node to kill with
//! `SIGKILL` and restart from its files, a writer to crash at a random point.
//!
//! The test binary runs again as a child that executes one `#[test]` function, its
//! *entry*. The entry reads its spec with [`spec`] and returns at once when the process
//! is not a child started for it, so that in a normal test run it is an empty test:
//!
//! ```no_run
//! use lamina_test_utils::child::{self, TestChild};
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Spec {
//!     index: usize,
//! }
//!
//! /// The child's body; an empty test unless started by `TestChild`.
//! #[test]
//! fn node_child() {
//!     let Some(spec) = child::spec::<Spec>("node_child") else { return };
//!     println!("READY {}", spec.index);
//!     // ... serve until killed, or until SIGTERM for a graceful stop
//! }
//!
//! #[test]
//! fn node_survives_a_crash() {
//!     let mut node = TestChild::piped("node_child", &Spec { index: 0 });
//!     let index = node.wait_for("READY ", std::time::Duration::from_secs(30));
//!     assert_eq!(index.as_deref(), Some("0"));
//!     node.kill(); // SIGKILL: a crash
//!     node.restart(); // the same entry and spec again
//! }
//! ```
//!
//! A child dies with its test: on drop, when the test panics, and (by the parent-death
//! signal) when the test process itself is killed, so no test leaves a process behind.
//! The parent-death signal follows the *thread* that started the child: start it from
//! the test's own thread or a runtime worker, never from a pool thread that may exit
//! while the child is still wanted (`tokio::task::spawn_blocking`'s idle threads exit
//! after 10 s; use `block_in_place`).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// Names the entry a child process was started for.
const ENTRY_ENV: &str = "LAMINA_TEST_CHILD";
/// The child's spec, as JSON.
const SPEC_ENV: &str = "LAMINA_TEST_CHILD_SPEC";

/// In the child: the spec it was started with when this process is a child started for
/// `entry`; `None` in every other process (the entry then returns: an empty test).
///
/// # Panics
/// If the spec does not decode as a `T` (a test bug).
pub fn spec<T: serde::de::DeserializeOwned>(entry: &str) -> Option<T> {
    if std::env::var(ENTRY_ENV).ok()? != entry {
        return None;
    }
    let json = std::env::var(SPEC_ENV).unwrap_or_else(|e| panic!("{SPEC_ENV}: {e}"));
    Some(serde_json::from_str(&json).unwrap_or_else(|e| panic!("child spec for {entry}: {e}")))
}

/// Where the child's standard output and error go.
#[derive(Clone, Debug)]
enum Output {
    /// Output lines are read through [`TestChild::next_line`]; errors are dropped.
    Piped,
    /// Both are appended to a file (kept across restarts), for a failing test to show.
    File(PathBuf),
}

/// A child process running one entry of this test binary (see the module docs). Killed
/// with `SIGKILL` and reaped on drop.
#[derive(Debug)]
pub struct TestChild {
    entry: String,
    spec: String,
    output: Output,
    child: Option<Child>,
    lines: Option<Receiver<String>>,
    /// The running child's output has ended (it exited).
    closed: bool,
}

impl TestChild {
    /// Starts `entry` with `spec`; its output lines are read with [`Self::next_line`]
    /// and [`Self::wait_for`].
    pub fn piped(entry: &str, spec: &impl serde::Serialize) -> Self {
        Self::start(entry, spec, Output::Piped)
    }

    /// Starts `entry` with `spec`, its standard output and error appended to `log`.
    pub fn logged(entry: &str, spec: &impl serde::Serialize, log: &Path) -> Self {
        Self::start(entry, spec, Output::File(log.to_path_buf()))
    }

    fn start(entry: &str, spec: &impl serde::Serialize, output: Output) -> Self {
        let spec = serde_json::to_string(spec).unwrap_or_else(|e| panic!("child spec for {entry}: {e}"));
        let mut child = TestChild { entry: entry.into(), spec, output, child: None, lines: None, closed: false };
        child.spawn();
        child
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is still running", self.entry);
        let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current_exe: {e}"));
        let mut cmd = Command::new(exe);
        // `--include-ignored` also runs an entry marked `#[ignore]` (kept out of the
        // normal test list); `--exact` runs that one test only.
        cmd.args([self.entry.as_str(), "--exact", "--include-ignored", "--nocapture", "--test-threads=1"])
            .env(ENTRY_ENV, &self.entry)
            .env(SPEC_ENV, &self.spec)
            .stdin(Stdio::null());
        match &self.output {
            Output::Piped => {
                cmd.stdout(Stdio::piped()).stderr(Stdio::null());
            }
            Output::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let err = file.try_clone().unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                cmd.stdout(file).stderr(err);
            }
        }
        // SAFETY: between fork and exec the closure only calls prctl, an
        // async-signal-safe system call, with integer arguments; no allocation.
        unsafe {
            use std::os::unix::process::CommandExt as _;
            cmd.pre_exec(|| {
                // If the test process dies without dropping us, die too (no orphans).
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start child {}: {e}", self.entry));
        self.lines = child.stdout.take().map(|out| {
            // Lines come through a thread so that a stalled child fails the wait
            // instead of hanging the test.
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        });
        self.child = Some(child);
        self.closed = false;
    }

    /// The child's process id; `None` after [`Self::kill`] or [`Self::terminate`].
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The next line the child printed, waiting up to `timeout`; `None` when it has
    /// exited and every line was read, or it printed nothing in time.
    ///
    /// # Panics
    /// On a child started with [`Self::logged`].
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        let lines = self.lines.as_ref().unwrap_or_else(|| panic!("{}: output is not piped", self.entry));
        match lines.recv_timeout(timeout) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                None
            }
        }
    }

    /// Whether the child's output has ended (it exited) and every line was read: after
    /// [`Self::next_line`] answered `None`, tells an exit from a silent child.
    pub fn output_closed(&self) -> bool {
        self.closed
    }

    /// Reads lines until one contains `marker` and returns the rest of that line after
    /// it; `None` if the child exits or `timeout` passes first. The marker may follow
    /// other text on its line: libtest prints `test <entry> ... ` without a newline
    /// before the entry runs.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let line = self.next_line(deadline.saturating_duration_since(Instant::now()))?;
            if let Some((_, rest)) = line.split_once(marker) {
                return Some(rest.trim().to_string());
            }
        }
    }

    /// `SIGKILL`s the child (a crash) and reaps it; nothing if it is not running. What
    /// it printed before it died can still be read with [`Self::next_line`], which then
    /// answers `None`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Graceful stop: `SIGTERM`, then `SIGKILL` if the child has not exited after
    /// `grace`. Returns how it exited (`None` if it was not running or had to be
    /// killed).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        if let Ok(Some(status)) = c.try_wait() {
            return Some(status);
        }
        if let Ok(pid) = i32::try_from(c.id()) {
            // Our own child, not yet reaped (we hold its `Child`): the pid is not reused.
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// `SIGKILL`s the child if it runs and starts the same entry with the same spec
    /// again (a restart from its files).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for TestChild {
    fn drop(&mut self) {
        self.kill();
    }
}
