//! Where routes come from. Each source turns its objects into a [`Snapshot`] and hands it to a
//! [`Publisher`], which compiles and swaps the live table. Sources never touch sockets.

pub mod files;
pub mod kube;
mod problems;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use crate::metrics::Metrics;
use crate::table::{CompileCache, RouteReport, RouteTable, Snapshot, compile_with};
use problems::ProblemLog;

/// Compiles snapshots and publishes the result to the data plane.
#[derive(Clone)]
pub struct Publisher {
    table: Arc<ArcSwap<RouteTable>>,
    metrics: Arc<Metrics>,
    source: &'static str,
    cache: Arc<Mutex<CompileCache>>,
    problems: Arc<Mutex<ProblemLog>>,
}

impl Publisher {
    /// A publisher writing to `table`, recording reloads under `source` (`files`, `kube`, …).
    pub fn new(
        table: Arc<ArcSwap<RouteTable>>,
        metrics: Arc<Metrics>,
        source: &'static str,
    ) -> Self {
        Publisher {
            table,
            metrics,
            source,
            cache: Arc::default(),
            problems: Arc::default(),
        }
    }

    /// Compiles `snapshot`, swaps the new table in whole, logs route problems that are new, and returns
    /// the reports (for status conditions). Open connections are untouched: they hold what they
    /// already resolved.
    pub fn publish(&self, snapshot: &Snapshot) -> Vec<RouteReport> {
        let (table, reports) = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            compile_with(snapshot, &mut cache)
        };
        let hosts = table.host_count();
        let programmed = table.routes().len();
        let rejected = reports.iter().filter(|r| !r.programmed).count();
        let m = &self.metrics;
        m.cert_expiry.reset();
        for cert in table.certificates() {
            if let Some(t) = cert.not_after {
                m.cert_expiry
                    .with_label_values(&[&cert.secret])
                    .set(t as f64);
            }
        }
        self.table.store(Arc::new(table));
        m.routes
            .with_label_values(&["programmed"])
            .set(programmed as i64);
        m.routes
            .with_label_values(&["rejected"])
            .set(rejected as i64);
        m.last_reload.set(unix_now());
        self.problems
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .log(&reports);
        tracing::info!(
            routes = programmed,
            hosts,
            rejected,
            "routing table updated"
        );
        reports
    }

    /// Counts one reload of the source: `ok` false when some input was rejected (its last good
    /// version kept serving).
    pub fn record_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "error" };
        self.metrics
            .config_reloads
            .with_label_values(&[self.source, result])
            .inc();
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
