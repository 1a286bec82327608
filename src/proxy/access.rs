//! Access logs and per-request metrics that can only be recorded once a response is complete:
//! the response body is wrapped, counts its bytes, and records duration, metrics and the access
//! log line when hyper drops it (after the last byte, or when the client went away).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::HeaderValue;
use http::{Method, StatusCode, Uri};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::answer::Body;
use super::relay::RelayStats;
use crate::metrics::RouteMetrics;

/// Log target of access log lines (filter with `--log-level wsgate::access=off`).
pub(crate) const TARGET: &str = "wsgate::access";

/// What an access log line says about a request.
#[derive(Debug)]
pub(crate) struct AccessRecord {
    pub route: Arc<str>,
    pub peer: SocketAddr,
    pub method: Method,
    pub host: Option<HeaderValue>,
    pub uri: Uri,
    /// Request body size when announced by Content-Length.
    pub bytes_in: Option<u64>,
    pub backend: Option<SocketAddr>,
}

impl AccessRecord {
    fn host(&self) -> &str {
        self.host
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-")
    }

    fn backend(&self) -> String {
        self.backend
            .map_or_else(|| "-".to_string(), |b| b.to_string())
    }

    /// The record of the WebSocket connection this upgrade request opened to `backend`; it
    /// gets its own line when the connection ends.
    pub(crate) fn for_websocket(&self, backend: SocketAddr) -> AccessRecord {
        AccessRecord {
            route: self.route.clone(),
            peer: self.peer,
            method: self.method.clone(),
            host: self.host.clone(),
            uri: self.uri.clone(),
            bytes_in: None,
            backend: Some(backend),
        }
    }

    /// One line for a finished HTTP request. The query string is left out: it often carries
    /// tokens.
    pub(crate) fn log_http(&self, status: StatusCode, duration: Duration, bytes_out: u64) {
        tracing::info!(
            target: TARGET,
            kind = "http",
            route = &*self.route,
            client = %self.peer,
            method = %self.method,
            host = self.host(),
            path = self.uri.path(),
            status = status.as_u16(),
            duration_ms = millis(duration),
            bytes_in = self.bytes_in.unwrap_or(0),
            bytes_out,
            backend = %self.backend(),
        );
    }

    /// One line for a WebSocket connection that ended.
    pub(crate) fn log_websocket(&self, duration: Duration, stats: &RelayStats, reason: &str) {
        tracing::info!(
            target: TARGET,
            kind = "websocket",
            route = &*self.route,
            client = %self.peer,
            method = %self.method,
            host = self.host(),
            path = self.uri.path(),
            status = 101,
            duration_ms = millis(duration),
            bytes_in = stats.client_to_backend,
            bytes_out = stats.backend_to_client,
            backend = %self.backend(),
            close_reason = reason,
        );
    }
}

/// What to record when the response ends.
pub(crate) struct Finish {
    pub start: Instant,
    pub status: StatusCode,
    pub metrics: Option<Arc<RouteMetrics>>,
    pub access: Option<AccessRecord>,
}

/// A response body that records its request when it is dropped.
pub(crate) struct Metered {
    inner: Body,
    bytes: u64,
    finish: Option<Finish>,
}

impl Metered {
    pub(crate) fn new(inner: Body, finish: Finish) -> Self {
        Metered {
            inner,
            bytes: 0,
            finish: Some(finish),
        }
    }
}

impl HttpBody for Metered {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.bytes += data.len() as u64;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        let Some(finish) = self.finish.take() else {
            return;
        };
        let elapsed = finish.start.elapsed();
        if let Some(m) = &finish.metrics {
            m.http_duration.observe(elapsed.as_secs_f64());
        }
        if let Some(access) = &finish.access {
            access.log_http(finish.status, elapsed, self.bytes);
        }
    }
}

/// Milliseconds to the microsecond (`51.083`): an integer divided once, so the shortest
/// decimal that prints it has at most three places, not `51.082865999999996`.
fn millis(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_with_at_most_three_decimals() {
        let d = Duration::from_nanos(51_082_865_999);
        assert_eq!(millis(d).to_string(), "51082.865");
        assert_eq!(millis(Duration::from_micros(51_083)).to_string(), "51.083");
        assert_eq!(millis(Duration::ZERO).to_string(), "0");
        for micros in [1u64, 7, 999, 123_456, 99_999_999] {
            let text = millis(Duration::from_micros(micros)).to_string();
            let decimals = text.split('.').nth(1).map_or(0, str::len);
            assert!(decimals <= 3, "{micros} µs printed as {text}");
        }
    }
}
