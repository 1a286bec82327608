//! Route folders and a gateway started in-process on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use wsgate::gateway::{Gateway, GatewayOptions, Routes};
use wsgate::proxy::ProxyConfig;
use wsgate::source::kube::KubeOptions;

use crate::*;

/// A routes folder.
pub struct RoutesDir {
    /// The folder, removed on drop.
    pub dir: tempfile::TempDir,
}

impl Default for RoutesDir {
    fn default() -> Self {
        Self::new()
    }
}

impl RoutesDir {
    /// An empty folder.
    pub fn new() -> Self {
        RoutesDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file atomically (write + rename), as editors and ConfigMap mounts do.
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).unwrap();
        std::fs::rename(&tmp, self.dir.path().join(name)).unwrap();
    }
}

/// Options for a test gateway: everything on loopback with ephemeral ports.
pub fn options(dir: &Path) -> GatewayOptions {
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut proxy = ProxyConfig::new(any, any);
    proxy.header_timeout = Duration::from_secs(1);
    GatewayOptions {
        routes: Routes::Dir(dir.to_path_buf()),
        proxy,
        admin_listen: any,
        drain: wsgate::proxy::DrainConfig::immediate(Duration::from_secs(5)),
    }
}

/// A gateway serving the routes folder `dir`, on loopback with ephemeral ports.
pub async fn start(dir: &Path) -> Gateway {
    Gateway::start(options(dir)).await.unwrap()
}

/// A route document.
pub fn route_yaml(name: &str, body: &str) -> String {
    format!(
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nmetadata: {{ name: {name}, namespace: default }}\nspec:\n{body}"
    )
}

/// Polls `check` until it holds (bounded by [`DEADLINE`]): for waiting on a hot reload, whose
/// completion has no other signal a client can observe.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !check().await {
        if start.elapsed() > DEADLINE {
            panic!("never happened: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Controller options against the test API server: a fast lease and debounce, `identity` as
/// this replica's lease holder.
pub fn kube_options(server: &crate::apiserver::ApiServer, identity: &str) -> KubeOptions {
    let mut k = KubeOptions::new(server.client());
    k.lease.identity = identity.to_string();
    k.lease.duration = Duration::from_secs(2);
    k.lease.renew_every = Duration::from_millis(200);
    k.debounce = Duration::from_millis(20);
    k
}

/// `wsgate controller` in-process against the test API server, with `tweak` applied to
/// its options.
pub async fn controller_with(
    server: &crate::apiserver::ApiServer,
    identity: &str,
    tweak: impl FnOnce(&mut KubeOptions),
) -> Gateway {
    let dir = RoutesDir::new();
    let mut opts = options(dir.path());
    let mut kube = kube_options(server, identity);
    tweak(&mut kube);
    opts.routes = Routes::Kube(Box::new(kube));
    within("controller start", Gateway::start(opts))
        .await
        .unwrap()
}
