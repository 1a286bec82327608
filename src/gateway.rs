//! Wiring for one process: a route source, the publisher, the proxy and the admin listener.
//! `main` and the tests start the same [`Gateway`], so what the tests drive is what users run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::admin::{self, Health};
use crate::metrics::Metrics;
use crate::proxy::{DrainConfig, Proxy, ProxyConfig, ProxyError, ShutdownReport};
use crate::source::Publisher;
use crate::source::files::{self, FileSource, Reload};
use crate::source::kube::{Controller, KubeOptions};
use crate::table::{RouteTable, Snapshot, TlsError, certified_key_from_pem, self_signed};

/// Where the routes come from.
#[derive(Clone)]
pub enum Routes {
    /// A folder of YAML files, watched for changes.
    Dir(PathBuf),
    /// A fixed set of objects (the demo).
    Fixed(Box<Snapshot>),
    /// A Kubernetes cluster (`wsgate controller`).
    Kube(Box<KubeOptions>),
}

/// Everything a gateway needs to start.
#[derive(Clone)]
pub struct GatewayOptions {
    /// The route source.
    pub routes: Routes,
    /// Listener settings.
    pub proxy: ProxyConfig,
    /// Address of `/healthz`, `/readyz` and `/metrics`.
    pub admin_listen: SocketAddr,
    /// How a shutdown drains connections.
    pub drain: DrainConfig,
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The routes folder cannot be read at all.
    #[error("{0}")]
    Routes(files::LoadError),
    /// The default certificate could not be made.
    #[error("default certificate: {0}")]
    Certificate(#[from] TlsError),
    /// A listener could not start.
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    /// The admin listener could not bind.
    #[error("cannot listen on {addr} (admin): {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
}

/// A running gateway.
pub struct Gateway {
    /// Bound plain-HTTP address.
    pub http_addr: SocketAddr,
    /// Bound TLS address.
    pub https_addr: SocketAddr,
    /// Bound admin address.
    pub admin_addr: SocketAddr,
    /// The live table (for tests and diagnostics).
    pub table: Arc<ArcSwap<RouteTable>>,
    health: Arc<Health>,
    stop: Option<oneshot::Sender<()>>,
    proxy: JoinHandle<ShutdownReport>,
    /// In controller mode: steps down from the leader election on shutdown.
    controller: Option<Controller>,
    /// Held for its `Drop`: the admin listener and the source watcher stop with the gateway.
    _background: Background,
}

/// Tasks that die with the gateway.
#[derive(Default)]
struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

fn log_reload(source: &FileSource, reload: &Reload) {
    for e in &reload.errors {
        if source.has_last_good(&e.file) {
            tracing::error!("{e}; the file's last good routes keep serving");
        } else {
            tracing::error!("{e}; nothing from this file is served until it is fixed");
        }
    }
    for name in &reload.generated {
        tracing::warn!(secret = %name, "TLS Secret not found in the routes folder; serving a self-signed certificate");
    }
}

impl Gateway {
    /// Loads the routes, binds every listener and starts serving. Returns once the gateway is
    /// ready: listeners are bound and the first table is live.
    pub async fn start(opts: GatewayOptions) -> Result<Gateway, GatewayError> {
        let table = Arc::new(ArcSwap::from_pointee(RouteTable::default()));
        let metrics = Arc::new(Metrics::new());
        // Aborted if start fails half-way, so no listener outlives a failed start.
        let mut background = Background::default();
        // The admin listener comes up first: probes get "not ready" rather than a refused
        // connection while routes load.
        let health = Arc::new(Health::default());
        let admin_addr = start_admin(opts.admin_listen, &health, &metrics, &mut background).await?;
        let controller = start_routes(opts.routes, &table, &metrics, &mut background).await?;

        let (cert, key) = self_signed(&["wsgate-default.invalid".to_string()])?;
        let default_cert = certified_key_from_pem(cert.as_bytes(), key.as_bytes())?;
        let proxy = Proxy::bind(&opts.proxy, table.clone(), default_cert, metrics.clone()).await?;
        let http_addr = proxy
            .http_addr()
            .map_err(ProxyError::from_io(opts.proxy.http_listen))?;
        let https_addr = proxy
            .https_addr()
            .map_err(ProxyError::from_io(opts.proxy.https_listen))?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let proxy = tokio::spawn(proxy.run(
            async move {
                let _ = stop_rx.await;
            },
            opts.drain,
        ));
        health.set_ready();
        tracing::info!(http = %http_addr, https = %https_addr, admin = %admin_addr, "wsgate listening");
        Ok(Gateway {
            http_addr,
            https_addr,
            admin_addr,
            table,
            health,
            stop: Some(stop_tx),
            proxy,
            controller,
            _background: background,
        })
    }

    /// Drains: `/readyz` turns false at once, the listeners keep accepting for the drain delay
    /// and then close, in-flight requests finish, open WebSockets are closed with 1001 spread
    /// over the drain window; returns what was still open at the drain timeout.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.health.set_draining();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Hand status writing over first: a drain can take minutes, a takeover should not.
        if let Some(controller) = &mut self.controller {
            controller.step_down().await;
        }
        // A proxy task that panicked has nothing left open to report.
        (&mut self.proxy).await.unwrap_or(ShutdownReport { cut: 0 })
    }
}

/// Binds and serves the admin listener; returns its bound address.
async fn start_admin(
    addr: SocketAddr,
    health: &Arc<Health>,
    metrics: &Arc<Metrics>,
    background: &mut Background,
) -> Result<SocketAddr, GatewayError> {
    let admin_error = |source| GatewayError::Admin { addr, source };
    let listener = admin::bind(addr).await.map_err(admin_error)?;
    let bound = listener.local_addr().map_err(admin_error)?;
    background.0.push(tokio::spawn(admin::serve(
        listener,
        health.clone(),
        metrics.clone(),
    )));
    Ok(bound)
}

/// Publishes the first table from `routes` and starts whatever keeps it current; in
/// controller mode, returns the controller.
async fn start_routes(
    routes: Routes,
    table: &Arc<ArcSwap<RouteTable>>,
    metrics: &Arc<Metrics>,
    background: &mut Background,
) -> Result<Option<Controller>, GatewayError> {
    match routes {
        Routes::Fixed(snapshot) => {
            let publisher = Publisher::new(table.clone(), metrics.clone(), "fixed");
            publisher.publish(&snapshot);
            publisher.record_reload(true);
        }
        Routes::Kube(kube) => {
            let publisher = Publisher::new(table.clone(), metrics.clone(), "kube");
            tracing::info!(
                "waiting for the first sync of routes, Secrets, Services and EndpointSlices"
            );
            let mut controller =
                crate::source::kube::start(*kube, publisher, metrics.clone()).await;
            background.0.extend(std::mem::take(&mut controller.tasks));
            return Ok(Some(controller));
        }
        Routes::Dir(dir) => {
            let publisher = Publisher::new(table.clone(), metrics.clone(), "files");
            let mut source = FileSource::new(dir.clone());
            // Watching starts before the first read, so no edit falls between the two.
            let watch = files::watch(dir.clone());
            let first = source.reload();
            if let Some(fatal) = first.errors.iter().find(|e| e.file == dir) {
                return Err(GatewayError::Routes(fatal.clone()));
            }
            log_reload(&source, &first);
            publisher.publish(&first.snapshot);
            publisher.record_reload(first.errors.is_empty());
            let mut last = first.snapshot;
            background.0.push(tokio::spawn(watch.run(move || {
                let reload = source.reload();
                log_reload(&source, &reload);
                if reload.snapshot != last {
                    publisher.publish(&reload.snapshot);
                    last = reload.snapshot;
                }
                publisher.record_reload(reload.errors.is_empty());
            })));
        }
    }
    Ok(None)
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.proxy.abort();
    }
}
