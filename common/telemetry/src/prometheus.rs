//! The Prometheus exporter: the `metrics` recorder, rendered on demand.
//!
//! [`install`] sets the process-wide `metrics` recorder (from
//! `metrics-exporter-prometheus`, without its HTTP listener: the [`crate::admin`] server
//! serves `/metrics`) and returns a [`MetricsHandle`] that renders the Prometheus text
//! format, followed by the process metrics of [`crate::process`].
//!
//! Histograms are rendered as summaries (the exporter's default). The handle's
//! [`MetricsHandle::run_upkeep`] drains histogram buffers; the admin server calls it
//! periodically so they do not grow between scrapes.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::TelemetryError;

/// Renders the recorded metrics in the Prometheus text format. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    handle: PrometheusHandle,
    process_metrics: bool,
}

/// Installs the Prometheus recorder as the process-wide `metrics` recorder.
pub fn install() -> Result<MetricsHandle, TelemetryError> {
    let handle = PrometheusBuilder::new().install_recorder().map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    Ok(MetricsHandle { handle, process_metrics: true })
}

/// A recorder that is *not* installed globally, and its handle: for tests and for
/// embedding several services in one process (use with `metrics::with_local_recorder`
/// or `metrics::set_global_recorder`). Its rendering omits process metrics.
pub fn local() -> (PrometheusRecorder, MetricsHandle) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, MetricsHandle { handle, process_metrics: false })
}

impl MetricsHandle {
    /// The Prometheus text exposition of every recorded metric, then the process
    /// metrics (for the handle returned by [`install`]).
    pub fn render(&self) -> String {
        let mut out = self.handle.render();
        if self.process_metrics
            && let Some(stats) = crate::process::sample()
        {
            if !out.is_empty() && !out.ends_with('\n') {
                out.push('\n');
            }
            if !out.is_empty() {
                out.push('\n');
            }
            stats.render(&mut out);
        }
        out
    }

    /// Drains histogram buffers into their summaries; call periodically.
    pub fn run_upkeep(&self) {
        self.handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_recorded_metrics() {
        let (recorder, handle) = local();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("lamina_test_events_total", "kind" => "a").increment(3);
            metrics::gauge!("lamina_test_peers").set(4.0);
        });
        let text = handle.render();
        assert!(text.contains("lamina_test_events_total{kind=\"a\"} 3"), "{text}");
        assert!(text.contains("lamina_test_peers 4"), "{text}");
        assert!(!text.contains("lamina_process_"), "local handles omit process metrics");
    }
}
