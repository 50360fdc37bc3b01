//! The Prometheus exporter: the `metrics` recorder, rendered on demand.
//!
//! [`install`] sets the process-wide `metrics` recorder (from
//! `metrics-exporter-prometheus`, without its HTTP listener: the [`crate::admin`] server
//! serves `/metrics`) and returns a [`MetricsHandle`] that renders the Prometheus text
//! format, followed by the process metrics of [`crate::process`].
//!
//! Histograms are rendered as Prometheus histograms with [`LATENCY_BUCKETS`] (every
//! Lamina histogram is a duration in seconds), so they aggregate across nodes
//! (`histogram_quantile(0.99, sum by (le) (rate(..._bucket[5m])))`), which summaries
//! cannot. The handle's [`MetricsHandle::run_upkeep`] drains histogram buffers; the
//! admin server calls it periodically so they do not grow between scrapes.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use crate::TelemetryError;

/// Renders the recorded metrics in the Prometheus text format. Cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricsHandle {
    handle: PrometheusHandle,
    process_metrics: bool,
}

/// Bucket bounds (seconds) of every histogram: from 0.5 ms (an fsync, a local
/// step) to 30 s (a stalled dispersal).
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn builder() -> Result<PrometheusBuilder, TelemetryError> {
    PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS).map_err(|e| TelemetryError::Recorder(e.to_string()))
}

/// Installs the Prometheus recorder as the process-wide `metrics` recorder.
pub fn install() -> Result<MetricsHandle, TelemetryError> {
    let handle = builder()?.install_recorder().map_err(|e| TelemetryError::Recorder(e.to_string()))?;
    Ok(MetricsHandle { handle, process_metrics: true })
}

/// A recorder that is *not* installed globally, and its handle: for tests and for
/// embedding several services in one process (use with `metrics::with_local_recorder`
/// or `metrics::set_global_recorder`). Its rendering omits process metrics.
pub fn local() -> (PrometheusRecorder, MetricsHandle) {
    // LATENCY_BUCKETS is not empty, so the builder cannot fail.
    let recorder = builder().unwrap_or_else(|_| PrometheusBuilder::new()).build_recorder();
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

    /// Drains histogram buffers into their buckets; call periodically.
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

    #[test]
    fn histograms_render_as_buckets_that_aggregate() {
        let (recorder, handle) = local();
        metrics::with_local_recorder(&recorder, || {
            metrics::histogram!("lamina_test_wait_seconds").record(0.003);
            metrics::histogram!("lamina_test_wait_seconds").record(2.0);
        });
        let text = handle.render();
        assert!(text.contains("# TYPE lamina_test_wait_seconds histogram"), "{text}");
        assert!(text.contains("lamina_test_wait_seconds_bucket{le=\"0.005\"} 1"), "{text}");
        assert!(text.contains("lamina_test_wait_seconds_bucket{le=\"+Inf\"} 2"), "{text}");
        assert!(text.contains("lamina_test_wait_seconds_count 2"), "{text}");
    }
}
