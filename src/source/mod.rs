//! Where routes come from. Each source turns its objects into a [`Snapshot`] and hands it to a
//! [`Publisher`], which compiles and swaps the live table. Sources never touch sockets.

pub mod files;

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::table::{RouteReport, RouteTable, Snapshot, compile};

/// Compiles snapshots and publishes the result to the data plane.
#[derive(Debug, Clone)]
pub struct Publisher {
    table: Arc<ArcSwap<RouteTable>>,
}

impl Publisher {
    /// A publisher writing to `table`.
    pub fn new(table: Arc<ArcSwap<RouteTable>>) -> Self {
        Publisher { table }
    }

    /// Compiles `snapshot`, swaps the new table in whole, logs every route problem, and returns
    /// the reports (for status conditions). Open connections are untouched: they hold what they
    /// already resolved.
    pub fn publish(&self, snapshot: &Snapshot) -> Vec<RouteReport> {
        let (table, reports) = compile(snapshot);
        let hosts = table.host_count();
        let routes = table.routes().len();
        self.table.store(Arc::new(table));
        for report in &reports {
            for problem in &report.problems {
                tracing::warn!(route = %report.id(), reason = problem.kind.reason(), "{}", problem.message);
            }
        }
        tracing::info!(
            routes,
            hosts,
            rejected = reports.iter().filter(|r| !r.programmed).count(),
            "routing table updated"
        );
        reports
    }
}
