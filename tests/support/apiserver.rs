//! A small Kubernetes API server for tests, speaking the real wire protocol on loopback:
//! lists carry a resourceVersion; watches are chunked streams of ADDED / MODIFIED / DELETED /
//! BOOKMARK events from a given resourceVersion, with `ERROR 410 Expired` once it has been
//! compacted; objects get uid, resourceVersion, creationTimestamp and generation (bumped on spec
//! changes only); `replace` checks resourceVersion (409 on conflict); the status subresource
//! takes apply patches; Leases and Events work. Tests change objects directly, take the server
//! down and bring it back on the same port, and compact history to force re-lists.
//!
//! Why in-repo: no kube-apiserver, k3s or envtest binary can be installed here, and the mock
//! servers on package registries set no resourceVersion, never send BOOKMARK or 410, or treat
//! apply patches as merges, so kube-runtime's watcher cannot be exercised faithfully.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// The resources this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Res {
    /// WebSocketRoutes.
    Routes,
    /// Secrets.
    Secrets,
    /// Services.
    Services,
    /// EndpointSlices.
    Slices,
    /// Leases.
    Leases,
    /// Events.
    Events,
    /// Ingresses.
    Ingresses,
    /// IngressClasses (cluster-scoped).
    IngressClasses,
    /// Gateway API GatewayClasses (cluster-scoped).
    GatewayClasses,
    /// Gateway API Gateways.
    Gateways,
    /// Gateway API HTTPRoutes.
    HttpRoutes,
    /// Gateway API ReferenceGrants (v1beta1).
    ReferenceGrants,
    /// Namespaces (cluster-scoped).
    Namespaces,
    /// WebSocketPolicies.
    Policies,
    /// Gateway API BackendTLSPolicies.
    BackendTlsPolicies,
    /// ConfigMaps.
    ConfigMaps,
}

impl Res {
    fn from_path(group_version: &str, plural: &str) -> Option<Res> {
        Some(match (group_version, plural) {
            ("wsgate.dev/v1alpha1", "websocketroutes") => Res::Routes,
            ("v1", "secrets") => Res::Secrets,
            ("v1", "services") => Res::Services,
            ("discovery.k8s.io/v1", "endpointslices") => Res::Slices,
            ("coordination.k8s.io/v1", "leases") => Res::Leases,
            ("events.k8s.io/v1", "events") => Res::Events,
            ("networking.k8s.io/v1", "ingresses") => Res::Ingresses,
            ("networking.k8s.io/v1", "ingressclasses") => Res::IngressClasses,
            ("gateway.networking.k8s.io/v1", "gatewayclasses") => Res::GatewayClasses,
            ("gateway.networking.k8s.io/v1", "gateways") => Res::Gateways,
            ("gateway.networking.k8s.io/v1", "httproutes") => Res::HttpRoutes,
            ("gateway.networking.k8s.io/v1beta1", "referencegrants") => Res::ReferenceGrants,
            ("v1", "namespaces") => Res::Namespaces,
            ("wsgate.dev/v1alpha1", "websocketpolicies") => Res::Policies,
            ("gateway.networking.k8s.io/v1", "backendtlspolicies") => Res::BackendTlsPolicies,
            ("v1", "configmaps") => Res::ConfigMaps,
            _ => return None,
        })
    }

    fn api_version(self) -> &'static str {
        match self {
            Res::Routes | Res::Policies => "wsgate.dev/v1alpha1",
            Res::Secrets | Res::Services | Res::Namespaces | Res::ConfigMaps => "v1",
            Res::GatewayClasses | Res::Gateways | Res::HttpRoutes | Res::BackendTlsPolicies => {
                "gateway.networking.k8s.io/v1"
            }
            Res::ReferenceGrants => "gateway.networking.k8s.io/v1beta1",
            Res::Slices => "discovery.k8s.io/v1",
            Res::Leases => "coordination.k8s.io/v1",
            Res::Events => "events.k8s.io/v1",
            Res::Ingresses | Res::IngressClasses => "networking.k8s.io/v1",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Res::Routes => "WebSocketRoute",
            Res::Secrets => "Secret",
            Res::Services => "Service",
            Res::Slices => "EndpointSlice",
            Res::Leases => "Lease",
            Res::Events => "Event",
            Res::Ingresses => "Ingress",
            Res::IngressClasses => "IngressClass",
            Res::GatewayClasses => "GatewayClass",
            Res::Gateways => "Gateway",
            Res::HttpRoutes => "HTTPRoute",
            Res::ReferenceGrants => "ReferenceGrant",
            Res::Namespaces => "Namespace",
            Res::Policies => "WebSocketPolicy",
            Res::BackendTlsPolicies => "BackendTLSPolicy",
            Res::ConfigMaps => "ConfigMap",
        }
    }

    /// Whether a change of spec bumps `metadata.generation` (custom resources and Ingresses).
    fn has_generation(self) -> bool {
        matches!(
            self,
            Res::Routes
                | Res::Policies
                | Res::Ingresses
                | Res::GatewayClasses
                | Res::Gateways
                | Res::HttpRoutes
                | Res::ReferenceGrants
                | Res::BackendTlsPolicies
        )
    }

    /// Whether objects live in a namespace.
    fn namespaced(self) -> bool {
        !matches!(
            self,
            Res::IngressClasses | Res::GatewayClasses | Res::Namespaces
        )
    }
}

type Key = (Res, String, String);

#[derive(Clone, Debug)]
struct Change {
    rv: u64,
    res: Res,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    objects: BTreeMap<Key, Value>,
    log: Vec<Change>,
    /// Watches from a resourceVersion below this get 410 Expired.
    compacted_below: u64,
    /// (method, path) of every request, for assertions.
    requests: Vec<(String, String)>,
}

struct Inner {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
    /// Bumped to end every open watch (compaction, outage).
    epoch: tokio::sync::watch::Sender<u64>,
}

/// A running test API server.
pub struct ApiServer {
    inner: Arc<Inner>,
    /// Where it listens.
    pub addr: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

type Body = BoxBody<Bytes, Infallible>;

fn full(v: Value, status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn status_error(code: u16, reason: &str, message: &str) -> Response<Body> {
    full(
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
        StatusCode::from_u16(code).unwrap(),
    )
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(|v| v.as_str())
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

impl ApiServer {
    /// Starts on a free loopback port.
    pub async fn start() -> Arc<ApiServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changes, _) = broadcast::channel(4096);
        let (epoch, _) = tokio::sync::watch::channel(0);
        let inner = Arc::new(Inner {
            state: Mutex::new(State::default()),
            changes,
            epoch,
        });
        let server = Arc::new(ApiServer {
            inner,
            addr,
            task: Mutex::new(None),
        });
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let inner = self.inner.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let inner = inner.clone();
                conns.spawn(async move {
                    let svc = service_fn(move |req| {
                        let inner = inner.clone();
                        async move { Ok::<_, Infallible>(handle(&inner, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
            // Dropping the JoinSet (when this task is aborted) aborts every connection.
        });
        *self.task.lock().unwrap() = Some(task);
    }

    /// A kube client for this server.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(format!("http://{}", self.addr).parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    /// Takes the server down: the listener closes and every connection (watches included) is
    /// cut.
    pub fn stop(&self) {
        if let Some(task) = self.task.lock().unwrap().take() {
            task.abort();
        }
        self.inner.epoch.send_modify(|e| *e += 1);
    }

    /// Brings the server back on the same port, with the same objects.
    pub async fn restart(&self) {
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Forgets history: watches resuming from an older resourceVersion get 410 Gone and must
    /// re-list. Open watches are ended.
    pub fn compact(&self) {
        let mut s = self.inner.state.lock().unwrap();
        s.compacted_below = s.rv + 1;
        s.log.clear();
        drop(s);
        self.inner.epoch.send_modify(|e| *e += 1);
    }

    /// Creates or updates an object given as YAML (namespace defaults to `default`).
    pub fn apply(&self, res: Res, yaml: &str) -> Value {
        let mut obj: Value = serde_yaml::from_str(yaml).unwrap();
        let ns = match res.namespaced() {
            true => meta_str(&obj, "namespace").unwrap_or("default").to_string(),
            false => String::new(),
        };
        let name = meta_str(&obj, "name").unwrap().to_string();
        if res.namespaced() {
            obj["metadata"]["namespace"] = json!(ns);
        }
        let mut s = self.inner.state.lock().unwrap();
        let existing = s.objects.get(&(res, ns.clone(), name.clone())).cloned();
        drop(s);
        match existing {
            None => {
                // A test may back-date an object (the API server itself sets the time, to
                // the second, so objects made in one test would otherwise tie).
                let created = obj["metadata"]["creationTimestamp"]
                    .as_str()
                    .map(String::from);
                store_new(&self.inner, res, &ns, obj, created).unwrap()
            }
            Some(old) => {
                // Keep status and identity; the object's spec/data is what the test set.
                obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
                if let Some(status) = old.get("status") {
                    if obj.get("status").is_none() {
                        obj["status"] = status.clone();
                    }
                }
                s = self.inner.state.lock().unwrap();
                replace(&mut s, &self.inner.changes, res, &ns, &name, obj, false).unwrap()
            }
        }
    }

    /// Every stored object of a resource.
    pub fn list(&self, res: Res) -> Vec<Value> {
        let s = self.inner.state.lock().unwrap();
        s.objects
            .iter()
            .filter(|((r, _, _), _)| *r == res)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Deletes an object.
    pub fn delete(&self, res: Res, ns: &str, name: &str) {
        let mut s = self.inner.state.lock().unwrap();
        let key = (res, ns.to_string(), name.to_string());
        if let Some(mut obj) = s.objects.remove(&key) {
            s.rv += 1;
            let rv = s.rv;
            obj["metadata"]["resourceVersion"] = json!(rv.to_string());
            record(&mut s, &self.inner.changes, res, "DELETED", obj);
        }
    }

    /// The stored object, if any.
    pub fn get(&self, res: Res, ns: &str, name: &str) -> Option<Value> {
        self.inner
            .state
            .lock()
            .unwrap()
            .objects
            .get(&(res, ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Every request so far, as (method, path?query).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.inner.state.lock().unwrap().requests.clone()
    }

    /// How many requests matched `method` and contained `path_part` (path and query).
    pub fn count(&self, method: &str, path_part: &str) -> usize {
        self.count_where(method, |p| p.contains(path_part))
    }

    /// How many requests matched `method` and `pred` on their path and query.
    pub fn count_where(&self, method: &str, pred: impl Fn(&str) -> bool) -> usize {
        let s = self.inner.state.lock().unwrap();
        s.requests
            .iter()
            .filter(|(m, p)| m == method && pred(p))
            .count()
    }
}

fn record(
    s: &mut State,
    changes: &broadcast::Sender<Change>,
    res: Res,
    kind: &'static str,
    object: Value,
) {
    let change = Change {
        rv: s.rv,
        res,
        kind,
        object,
    };
    s.log.push(change.clone());
    let _ = changes.send(change);
}

/// A Secret's `stringData` merged into `data` (base64), as the API server does on write.
fn fold_string_data(res: Res, obj: &mut Value) {
    use base64::Engine;
    if res != Res::Secrets {
        return;
    }
    let Some(Value::Object(strings)) = obj.as_object_mut().and_then(|o| o.remove("stringData"))
    else {
        return;
    };
    for (key, value) in strings {
        let text = value.as_str().unwrap_or_default();
        obj["data"][key] = json!(base64::engine::general_purpose::STANDARD.encode(text));
    }
}

fn store_new(
    inner: &Inner,
    res: Res,
    ns: &str,
    mut obj: Value,
    created: Option<String>,
) -> Result<Value, Response<Body>> {
    fold_string_data(res, &mut obj);
    let name = meta_str(&obj, "name")
        .ok_or_else(|| status_error(422, "Invalid", "metadata.name: required"))?
        .to_string();
    let mut s = inner.state.lock().unwrap();
    let key = (res, ns.to_string(), name.clone());
    if s.objects.contains_key(&key) {
        return Err(status_error(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", res.kind()),
        ));
    }
    s.rv += 1;
    s.uid += 1;
    let rv = s.rv;
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind());
    let meta = &mut obj["metadata"];
    if res.namespaced() {
        meta["namespace"] = json!(ns);
    }
    meta["resourceVersion"] = json!(rv.to_string());
    meta["uid"] = json!(format!("00000000-0000-0000-0000-{:012}", s.uid));
    meta["creationTimestamp"] = json!(created.unwrap_or_else(now_rfc3339));
    if res.has_generation() {
        meta["generation"] = json!(1);
    }
    s.objects.insert(key, obj.clone());
    record(&mut s, &inner.changes, res, "ADDED", obj.clone());
    Ok(obj)
}

/// Replaces an object; `check_rv` enforces optimistic concurrency as `PUT` does.
fn replace(
    s: &mut State,
    changes: &broadcast::Sender<Change>,
    res: Res,
    ns: &str,
    name: &str,
    mut obj: Value,
    check_rv: bool,
) -> Result<Value, Response<Body>> {
    fold_string_data(res, &mut obj);
    let key = (res, ns.to_string(), name.to_string());
    let Some(old) = s.objects.get(&key).cloned() else {
        return Err(status_error(
            404,
            "NotFound",
            &format!("{} \"{name}\" not found", res.kind()),
        ));
    };
    let old_rv = meta_str(&old, "resourceVersion").unwrap_or("");
    if check_rv {
        if let Some(sent) = meta_str(&obj, "resourceVersion") {
            if sent != old_rv {
                return Err(status_error(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
        }
    }
    s.rv += 1;
    let rv = s.rv;
    obj["apiVersion"] = json!(res.api_version());
    obj["kind"] = json!(res.kind());
    for field in ["uid", "creationTimestamp", "namespace", "name"] {
        if !old["metadata"][field].is_null() {
            obj["metadata"][field] = old["metadata"][field].clone();
        }
    }
    obj["metadata"]["resourceVersion"] = json!(rv.to_string());
    if res.has_generation() {
        let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
        let bumped = if old.get("spec") != obj.get("spec") {
            generation + 1
        } else {
            generation
        };
        obj["metadata"]["generation"] = json!(bumped);
    }
    s.objects.insert(key, obj.clone());
    record(s, changes, res, "MODIFIED", obj.clone());
    Ok(obj)
}

struct Target {
    res: Res,
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

fn parse_path(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (gv, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] => (Some(ns.to_string()), rest),
        rest => (None, rest),
    };
    let (plural, name, status) = match rest {
        [plural] => (*plural, None, false),
        [plural, name] => (*plural, Some(name.to_string()), false),
        [plural, name, "status"] => (*plural, Some(name.to_string()), true),
        _ => return None,
    };
    Some(Target {
        res: Res::from_path(&gv, plural)?,
        namespace,
        name,
        status,
    })
}

fn query(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%3D", "=").replace("%2F", "/")))
        .collect()
}

fn matches(obj: &Value, namespace: &Option<String>, field_selector: Option<&String>) -> bool {
    if let Some(ns) = namespace {
        if meta_str(obj, "namespace") != Some(ns.as_str()) {
            return false;
        }
    }
    match field_selector.and_then(|f| f.strip_prefix("type=")) {
        Some(t) => obj.get("type").and_then(|v| v.as_str()) == Some(t),
        None => true,
    }
}

async fn handle(inner: &Arc<Inner>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let full_path = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.clone(),
    };
    inner
        .state
        .lock()
        .unwrap()
        .requests
        .push((req.method().to_string(), full_path));
    let Some(target) = parse_path(&path) else {
        return status_error(404, "NotFound", &format!("no route for {path}"));
    };
    let q = query(&req);
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let parse = || {
        serde_json::from_slice::<Value>(&body).or_else(|_| serde_yaml::from_slice::<Value>(&body))
    };
    let ns = match target.res.namespaced() {
        true => target.namespace.clone().unwrap_or_else(|| "default".into()),
        false => String::new(),
    };
    match (method, target.name.clone()) {
        (Method::GET, None) if q.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            watch(inner, target, &q)
        }
        (Method::GET, None) => {
            let s = inner.state.lock().unwrap();
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((r, _, _), obj)| {
                    *r == target.res && matches(obj, &target.namespace, q.get("fieldSelector"))
                })
                .map(|(_, obj)| obj.clone())
                .collect();
            full(
                json!({"apiVersion": target.res.api_version(), "kind": format!("{}List", target.res.kind()),
                       "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
                StatusCode::OK,
            )
        }
        (Method::GET, Some(name)) => {
            match inner
                .state
                .lock()
                .unwrap()
                .objects
                .get(&(target.res, ns, name.clone()))
            {
                Some(obj) => full(obj.clone(), StatusCode::OK),
                None => status_error(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", target.res.kind()),
                ),
            }
        }
        (Method::POST, None) => match parse() {
            Ok(obj) => match store_new(inner, target.res, &ns, obj, None) {
                Ok(obj) => full(obj, StatusCode::CREATED),
                Err(e) => e,
            },
            Err(e) => status_error(400, "BadRequest", &e.to_string()),
        },
        (Method::PUT, Some(name)) => match parse() {
            Ok(obj) => {
                let mut s = inner.state.lock().unwrap();
                match replace(&mut s, &inner.changes, target.res, &ns, &name, obj, true) {
                    Ok(obj) => full(obj, StatusCode::OK),
                    Err(e) => e,
                }
            }
            Err(e) => status_error(400, "BadRequest", &e.to_string()),
        },
        (Method::PATCH, Some(name)) => {
            let Ok(patch) = parse() else {
                return status_error(400, "BadRequest", "bad patch");
            };
            let mut s = inner.state.lock().unwrap();
            let Some(mut obj) = s
                .objects
                .get(&(target.res, ns.clone(), name.clone()))
                .cloned()
            else {
                return status_error(
                    404,
                    "NotFound",
                    &format!("{} \"{name}\" not found", target.res.kind()),
                );
            };
            if target.status {
                // Apply patch of the status subresource: the sent status is the new status.
                obj["status"] = patch.get("status").cloned().unwrap_or(Value::Null);
            } else if let (Some(dst), Some(src)) = (obj.as_object_mut(), patch.as_object()) {
                for (k, v) in src {
                    if k != "metadata" {
                        dst.insert(k.clone(), v.clone());
                    }
                }
            }
            match replace(&mut s, &inner.changes, target.res, &ns, &name, obj, false) {
                Ok(obj) => full(obj, StatusCode::OK),
                Err(e) => e,
            }
        }
        (Method::DELETE, Some(name)) => {
            drop(body);
            let existing = inner
                .state
                .lock()
                .unwrap()
                .objects
                .get(&(target.res, ns.clone(), name.clone()))
                .cloned();
            match existing {
                Some(obj) => {
                    let mut s = inner.state.lock().unwrap();
                    s.objects.remove(&(target.res, ns, name));
                    s.rv += 1;
                    record(&mut s, &inner.changes, target.res, "DELETED", obj.clone());
                    full(obj, StatusCode::OK)
                }
                None => status_error(404, "NotFound", "not found"),
            }
        }
        _ => status_error(
            405,
            "MethodNotAllowed",
            "not supported by the test API server",
        ),
    }
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(inner: &Arc<Inner>, target: Target, q: &BTreeMap<String, String>) -> Response<Body> {
    let from: u64 = q
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|v| v.parse().ok())
        .unwrap_or(290u64);
    let field_selector = q.get("fieldSelector").cloned();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1024);
    // Subscribe and read the backlog under one lock, so no change falls between them.
    let (mut live, backlog, expired, current_rv) = {
        let s = inner.state.lock().unwrap();
        let expired = from != 0 && from < s.compacted_below;
        let backlog: Vec<Change> = s
            .log
            .iter()
            .filter(|c| c.rv > from && c.res == target.res)
            .cloned()
            .collect();
        (inner.changes.subscribe(), backlog, expired, s.rv)
    };
    let mut epoch = inner.epoch.subscribe();
    epoch.borrow_and_update();
    let res = target.res;
    let namespace = target.namespace;
    tokio::spawn(async move {
        if expired {
            let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": format!("too old resource version: {from} ({current_rv})"),
                                "reason": "Expired", "code": 410});
            let _ = tx.send(event_line("ERROR", &status)).await;
            return;
        }
        let wanted =
            |c: &Change| c.res == res && matches(&c.object, &namespace, field_selector.as_ref());
        let mut last_rv = from;
        for c in backlog.iter().filter(|c| wanted(c)) {
            last_rv = c.rv;
            if tx.send(event_line(c.kind, &c.object)).await.is_err() {
                return;
            }
        }
        let bookmark = |rv: u64| json!({"kind": res.kind(), "apiVersion": res.api_version(), "metadata": {"resourceVersion": rv.to_string()}});
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let deadline = tokio::time::sleep(Duration::from_secs(timeout));
        tokio::pin!(deadline);
        loop {
            // Biased: a compaction or outage ends the watch before any change made after it.
            tokio::select! {
                biased;
                _ = epoch.changed() => return,
                change = live.recv() => match change {
                    Ok(c) if c.rv > last_rv && wanted(&c) => {
                        last_rv = c.rv;
                        if tx.send(event_line(c.kind, &c.object)).await.is_err() { return; }
                    }
                    Ok(c) => { last_rv = last_rv.max(c.rv); }
                    Err(_) => return,
                },
                _ = tick.tick(), if bookmarks => {
                    if tx.send(event_line("BOOKMARK", &bookmark(last_rv.max(from)))).await.is_err() { return; }
                }
                _ = &mut deadline => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut r = Response::new(StreamBody::new(stream).boxed());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}
