//! Test support shared by the integration tests: a test CA issuing real certificates, route
//! folders, loopback backends (an HTTP echo server and a WebSocket echo server), clients
//! speaking real HTTP/1.1, TLS and WebSocket to a gateway started in-process, and a test
//! Kubernetes API server. A library crate, so each test uses what it needs and nothing is dead.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err,
    reason = "test support: a panic is a failed test"
)]

use std::time::Duration;

pub mod apiserver;
mod authsrv;
mod backends;
mod binary;
mod certs;
mod clients;
mod gateway;
pub mod jwt;
pub use authsrv::*;
mod metrics;

pub use backends::*;
pub use binary::*;
pub use certs::*;
pub use clients::*;
pub use gateway::*;
pub use metrics::*;

/// Upper bound for anything a test waits for; a hang fails instead of blocking CI.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Runs `fut` with [`DEADLINE`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(DEADLINE, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}
