//! SIGTERM and SIGINT as one awaitable stream, and SIGHUP (reload) apart.

use anyhow::Context as _;

/// SIGTERM and SIGINT handlers (installed once, for the whole process).
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    /// Only for node services ([`Signals::with_reload`]); elsewhere SIGHUP keeps its
    /// default (a closed terminal ends the process).
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Installs the handlers. Must run inside a tokio runtime.
    pub fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot install a SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("cannot install a SIGINT handler")?,
            hup: None,
        })
    }

    /// [`Signals::new`] plus SIGHUP as [`SignalEvent::Reload`] (node services).
    pub fn with_reload() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut s = Self::new()?;
        s.hup = Some(signal(SignalKind::hangup()).context("cannot install a SIGHUP handler")?);
        Ok(s)
    }

    /// Waits for the next signal: SIGTERM or SIGINT (stop, with its name) or SIGHUP
    /// (reload the run-time settings).
    pub async fn next_event(&mut self) -> SignalEvent {
        tokio::select! {
            _ = self.term.recv() => SignalEvent::Stop("SIGTERM"),
            _ = self.int.recv() => SignalEvent::Stop("SIGINT"),
            Some(_) = async { match &mut self.hup { Some(h) => h.recv().await, None => std::future::pending().await } } => SignalEvent::Reload,
        }
    }

    /// Waits for the next SIGTERM or SIGINT (ignoring SIGHUP); returns its name.
    pub async fn next(&mut self) -> &'static str {
        loop {
            if let SignalEvent::Stop(name) = self.next_event().await {
                return name;
            }
        }
    }
}

/// What a signal asks of the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalEvent {
    /// SIGTERM or SIGINT: stop (the signal's name).
    Stop(&'static str),
    /// SIGHUP: reload the run-time settings.
    Reload,
}
