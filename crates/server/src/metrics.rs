//! Prometheus metrics, typed: counters and histograms with units in their
//! names, rendered in the text exposition format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// A histogram with fixed buckets, in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

const LATENCY_BOUNDS_S: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe_s(&self, seconds: f64) {
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            if seconds <= *bound {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_us
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(self.bounds) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                b.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_us.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// Every metric of the process.
#[derive(Debug)]
pub struct Metrics {
    pub http_requests_total: AtomicU64,
    pub notices_created_total: AtomicU64,
    pub webhook_delivered_total: AtomicU64,
    pub webhook_failed_total: AtomicU64,
    pub webhook_dead_total: AtomicU64,
    pub webhook_gone_total: AtomicU64,
    pub webhook_attempt_seconds: Histogram,
    /// From a notice's creation to its first successful delivery.
    pub notice_delivery_latency_seconds: Histogram,
    pub sse_streams: AtomicU64,
    pub reminders_total: AtomicU64,
    /// Rounds the delivery worker committed on its queue.
    pub delivery_rounds_total: AtomicU64,
    /// Connections open now.
    pub connections: AtomicU64,
    /// Connections closed at once because the cap was reached.
    pub connections_refused_total: AtomicU64,
    /// Failed `accept` calls (out of descriptors, ...).
    pub accept_errors_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics {
            http_requests_total: AtomicU64::new(0),
            notices_created_total: AtomicU64::new(0),
            webhook_delivered_total: AtomicU64::new(0),
            webhook_failed_total: AtomicU64::new(0),
            webhook_dead_total: AtomicU64::new(0),
            webhook_gone_total: AtomicU64::new(0),
            webhook_attempt_seconds: Histogram::new(LATENCY_BOUNDS_S),
            notice_delivery_latency_seconds: Histogram::new(LATENCY_BOUNDS_S),
            sse_streams: AtomicU64::new(0),
            reminders_total: AtomicU64::new(0),
            delivery_rounds_total: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            connections_refused_total: AtomicU64::new(0),
            accept_errors_total: AtomicU64::new(0),
        }
    }
}

impl patchline_delivery::worker::DeliveryMetrics for Metrics {
    fn attempt_seconds(&self, seconds: f64) {
        self.webhook_attempt_seconds.observe_s(seconds);
    }

    fn delivered(&self, latency_s: Option<f64>) {
        self.webhook_delivered_total.fetch_add(1, Ordering::Relaxed);
        if let Some(s) = latency_s {
            self.notice_delivery_latency_seconds.observe_s(s);
        }
    }

    fn failed(&self) {
        self.webhook_failed_total.fetch_add(1, Ordering::Relaxed);
    }

    fn dead(&self) {
        self.webhook_dead_total.fetch_add(1, Ordering::Relaxed);
    }

    fn gone(&self) {
        self.webhook_gone_total.fetch_add(1, Ordering::Relaxed);
    }

    fn reminded(&self, n: u64) {
        self.reminders_total.fetch_add(n, Ordering::Relaxed);
    }

    fn round(&self) {
        self.delivery_rounds_total.fetch_add(1, Ordering::Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, v: u64) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
}

impl Metrics {
    /// The exposition text; `extra` adds gauges read at scrape time.
    pub fn render(&self, artifacts: u64, records: u64, deliveries: &[(String, i64)]) -> String {
        let mut out = String::with_capacity(4096);
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "patchline_http_requests_total",
            "HTTP requests served.",
            l(&self.http_requests_total),
        );
        counter(
            &mut out,
            "patchline_notices_created_total",
            "Notices recorded.",
            l(&self.notices_created_total),
        );
        counter(
            &mut out,
            "patchline_webhook_delivered_total",
            "Webhook deliveries answered with 2xx.",
            l(&self.webhook_delivered_total),
        );
        counter(
            &mut out,
            "patchline_webhook_failed_total",
            "Webhook attempts that failed and will be retried.",
            l(&self.webhook_failed_total),
        );
        counter(
            &mut out,
            "patchline_webhook_dead_total",
            "Webhook deliveries given up (dead letters).",
            l(&self.webhook_dead_total),
        );
        counter(
            &mut out,
            "patchline_webhook_gone_total",
            "Endpoints disabled after answering 410 Gone.",
            l(&self.webhook_gone_total),
        );
        counter(
            &mut out,
            "patchline_reminders_total",
            "Notices reminded.",
            l(&self.reminders_total),
        );
        counter(
            &mut out,
            "patchline_delivery_rounds_total",
            "Rounds the delivery worker committed on its queue (results recorded and deliveries claimed in one commit).",
            l(&self.delivery_rounds_total),
        );
        gauge(
            &mut out,
            "patchline_sse_streams",
            "Server-sent event streams open.",
            l(&self.sse_streams),
        );
        gauge(
            &mut out,
            "patchline_connections",
            "HTTP connections open.",
            l(&self.connections),
        );
        counter(
            &mut out,
            "patchline_connections_refused_total",
            "Connections closed at once because the connection cap was reached.",
            l(&self.connections_refused_total),
        );
        counter(
            &mut out,
            "patchline_accept_errors_total",
            "Failed accepts (for example out of file descriptors).",
            l(&self.accept_errors_total),
        );
        gauge(
            &mut out,
            "patchline_artifacts",
            "Artifacts in the catalog.",
            artifacts,
        );
        gauge(
            &mut out,
            "patchline_records",
            "Advisories and failures stored.",
            records,
        );
        let _ = writeln!(
            out,
            "# HELP patchline_deliveries Deliveries by state.\n# TYPE patchline_deliveries gauge"
        );
        // Every state, 0 when no delivery is in it: a series that vanishes
        // breaks the alerts and graphs built on it.
        for state in patchline_core::notice::DeliveryState::ALL {
            let state = state.as_str();
            let n = deliveries
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            let _ = writeln!(out, "patchline_deliveries{{state=\"{state}\"}} {n}");
        }
        self.webhook_attempt_seconds.render(
            &mut out,
            "patchline_webhook_attempt_duration_seconds",
            "Duration of webhook attempts.",
        );
        self.notice_delivery_latency_seconds.render(
            &mut out,
            "patchline_notice_delivery_latency_seconds",
            "From a notice's creation to its first successful webhook delivery.",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every delivery state has its series, 0 when no delivery is in it
    /// (found from outside: states with no rows vanished from the scrape).
    #[test]
    fn every_delivery_state_is_rendered() {
        let text = Metrics::default().render(1, 2, &[("delivered".to_string(), 3)]);
        for (state, n) in [
            ("pending", 0),
            ("in_flight", 0),
            ("delivered", 3),
            ("failed", 0),
            ("dead", 0),
        ] {
            let line = format!("patchline_deliveries{{state=\"{state}\"}} {n}\n");
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
    }
}
