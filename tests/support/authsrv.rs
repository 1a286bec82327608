//! Servers that authentication talks to: a JWKS endpoint whose set can be changed or made to
//! fail, and an external auth service with canned verdicts.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// A plain-HTTP server answering every request with `respond`, counting requests.
async fn serve<F>(respond: F) -> (SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Clone + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let count = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (respond, count) = (respond.clone(), count.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    count.fetch_add(1, Ordering::SeqCst);
                    let respond = respond.clone();
                    async move {
                        // A request for /slow is never answered in a test's time.
                        if req.uri().path() == "/slow" || req.headers().get("x-slow").is_some() {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        Ok::<_, Infallible>(respond(req))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// A JWKS endpoint (plain HTTP: put [`crate::tls_front`] before it).
pub struct JwksServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The set it serves.
    pub body: Arc<Mutex<String>>,
    /// While set, it answers 500.
    pub failing: Arc<AtomicBool>,
    /// Requests so far.
    pub hits: Arc<AtomicUsize>,
}

/// A JWKS endpoint serving `body`.
pub async fn jwks_server(body: String) -> JwksServer {
    let body = Arc::new(Mutex::new(body));
    let failing = Arc::new(AtomicBool::new(false));
    let (b, f) = (body.clone(), failing.clone());
    let (addr, hits) = serve(move |_req| {
        if f.load(Ordering::SeqCst) {
            let mut r = Response::new(Full::new(Bytes::from("down")));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        let mut r = Response::new(Full::new(Bytes::from(b.lock().unwrap().clone())));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        r
    })
    .await;
    JwksServer {
        addr,
        body,
        failing,
        hits,
    }
}

/// An external auth service: `Authorization: Bearer good` gets 200 with `x-user: alice` and
/// `x-team: blue`; `Bearer bad` gets 403 with the body `nope` and `x-reason: banned`; no
/// `Authorization` gets 401; `x-slow` (or `/slow`) is never answered. Every request's
/// headers and target are recorded.
pub struct AuthServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests so far.
    pub hits: Arc<AtomicUsize>,
    /// (method, target, headers) of every request.
    pub seen: Arc<Mutex<Vec<(String, String, HeaderMap)>>>,
}

/// A new [`AuthServer`].
pub async fn auth_server() -> AuthServer {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let (addr, hits) = serve(move |req: Request<Incoming>| {
        record.lock().unwrap().push((
            req.method().to_string(),
            req.uri().to_string(),
            req.headers().clone(),
        ));
        let auth = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let (status, body, headers): (u16, &str, &[(&str, &str)]) = match auth {
            "Bearer good" => (200, "", &[("x-user", "alice"), ("x-team", "blue")]),
            "Bearer bad" => (403, "nope", &[("x-reason", "banned")]),
            "" => (401, "who are you", &[]),
            _ => (403, "unknown", &[]),
        };
        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            r.headers_mut().insert(*k, v.parse().unwrap());
        }
        r
    })
    .await;
    AuthServer { addr, hits, seen }
}
