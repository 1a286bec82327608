//! Route fixture builders for unit tests: a route reads like the YAML a user writes, without
//! copying YAML strings between modules.

use std::time::Duration;

use super::*;

/// A route `namespace/name` with no hostnames or rules yet.
pub(crate) fn route(id: &str) -> RouteBuilder {
    let (namespace, name) = id.split_once('/').unwrap_or(("default", id));
    RouteBuilder(Route {
        meta: RouteMeta {
            kind: ObjectKind::WebSocketRoute,
            namespace: namespace.into(),
            name: name.into(),
            generation: Some(1),
            created: None,
        },
        hostnames: Vec::new(),
        catch_all: false,
        merge: false,
        redirect_hostnames: Vec::new(),
        tls: None,
        maintenance: None,
        rules: Vec::new(),
        warnings: Vec::new(),
    })
}

/// Builds a [`Route`].
pub(crate) struct RouteBuilder(Route);

impl RouteBuilder {
    pub(crate) fn host(mut self, host: &str) -> Self {
        self.0.hostnames.push(Hostname::parse(host).unwrap());
        self
    }

    pub(crate) fn redirect_host(mut self, host: &str) -> Self {
        self.0
            .redirect_hostnames
            .push(Hostname::parse(host).unwrap());
        self
    }

    pub(crate) fn tls(mut self, secret: &str) -> Self {
        self.0.tls = Some(RouteTls {
            secret: Some(secret.into()),
            secret_namespace: None,
            http_redirect: true,
            https_only: false,
            hsts: None,
        });
        self
    }

    pub(crate) fn no_http_redirect(mut self) -> Self {
        if let Some(tls) = self.0.tls.as_mut() {
            tls.http_redirect = false;
        }
        self
    }

    pub(crate) fn hsts(mut self, hsts: Hsts) -> Self {
        if let Some(tls) = self.0.tls.as_mut() {
            tls.hsts = Some(hsts);
        }
        self
    }

    pub(crate) fn maintenance(mut self, body: &str) -> Self {
        self.0.maintenance = Some(Bytes::copy_from_slice(body.as_bytes()));
        self
    }

    /// An Ingress: hostnames shared with other Ingresses, rules merged.
    pub(crate) fn ingress(mut self) -> Self {
        self.0.meta.kind = ObjectKind::Ingress;
        self.0.merge = true;
        self
    }

    pub(crate) fn catch_all(mut self) -> Self {
        self.0.catch_all = true;
        self
    }

    pub(crate) fn created(mut self, unix_seconds: i128) -> Self {
        self.0.meta.created = Some(unix_seconds * 1_000_000_000);
        self
    }

    pub(crate) fn rule(mut self, rule: RuleBuilder) -> Self {
        let mut rule = rule.0;
        rule.index = self.0.rules.len();
        let fields = [
            ("http", rule.http.as_mut().map(|h| &mut h.backends)),
            (
                "websocket",
                rule.websocket.as_mut().map(|w| &mut w.backends),
            ),
        ];
        for (kind, backends) in fields {
            for b in backends.into_iter().flatten() {
                b.backend.field = format!("spec.rules[{}].{kind}.backend", rule.index).into();
            }
        }
        self.0.rules.push(rule);
        self
    }

    pub(crate) fn build(self) -> Route {
        self.0
    }
}

/// A rule for a path prefix with no backends yet.
pub(crate) fn rule(prefix: &str) -> RuleBuilder {
    RuleBuilder(Rule {
        index: 0,
        matches: RuleMatch {
            path: PathMatch::Prefix(normalize_path_prefix(prefix).into()),
            headers: Vec::new(),
            method: None,
            query: Vec::new(),
        },
        http: None,
        websocket: None,
        fallback: false,
        allowed_sources: Vec::new(),
        auth: None,
    })
}

/// Builds a [`Rule`].
pub(crate) struct RuleBuilder(Rule);

impl RuleBuilder {
    /// Matches the whole path instead of a prefix.
    pub(crate) fn exact(mut self) -> Self {
        let path = self.0.matches.path.as_str().into();
        self.0.matches.path = PathMatch::Exact(path);
        self
    }

    /// Only clients in these networks may use the rule.
    pub(crate) fn sources(mut self, nets: &[&str]) -> Self {
        self.0.allowed_sources = nets.iter().map(|n| n.parse().unwrap()).collect();
        self
    }

    /// Takes only this method.
    pub(crate) fn method(mut self, method: http::Method) -> Self {
        self.0.matches.method = Some(method);
        self
    }

    /// Takes only requests with this header value.
    pub(crate) fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.0.matches.headers.push(HeaderMatch {
            name: http::HeaderName::from_static(name),
            value: http::HeaderValue::from_static(value),
        });
        self
    }

    /// Takes only requests with this query parameter value.
    pub(crate) fn query(mut self, name: &str, value: &str) -> Self {
        self.0.matches.query.push(QueryMatch {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Answers with this redirect (on both requests and upgrades).
    pub(crate) fn redirect(mut self, to: RequestRedirect) -> Self {
        let filters = Filters {
            redirect: Some(to),
            ..Filters::default()
        };
        self.0.http = Some(HttpAction {
            backends: Vec::new(),
            filters,
            ..http_action(Vec::new())
        });
        self
    }

    /// Normal requests split over weighted backends.
    pub(crate) fn http_split(mut self, backends: Vec<(Backend, u32)>) -> Self {
        let backends = backends
            .into_iter()
            .map(|(backend, weight)| WeightedBackend { backend, weight })
            .collect();
        self.0.http = Some(http_action(backends));
        self
    }

    pub(crate) fn fallback(mut self) -> Self {
        self.0.fallback = true;
        self
    }

    pub(crate) fn http(self, backend: Backend) -> Self {
        self.http_with(backend, |_| {})
    }

    pub(crate) fn http_with(mut self, backend: Backend, f: impl FnOnce(&mut HttpAction)) -> Self {
        let mut http = http_action(vec![WeightedBackend { backend, weight: 1 }]);
        f(&mut http);
        self.0.http = Some(http);
        self
    }

    pub(crate) fn websocket(self, backend: Backend) -> Self {
        self.websocket_with(backend, |_| {})
    }

    pub(crate) fn websocket_with(
        mut self,
        backend: Backend,
        f: impl FnOnce(&mut WebSocketAction),
    ) -> Self {
        let mut ws = WebSocketAction {
            backends: vec![WeightedBackend { backend, weight: 1 }],
            idle_timeout: None,
            handshake_timeout: None,
            max_lifetime: None,
            keepalive: None,
            rebalance: None,
            capacity: Capacity::default(),
            balance: Balance::LeastConnections,
            allowed_origins: Vec::new(),
            limits: None,
            filters: Filters::default(),
            connect_timeout: None,
        };
        f(&mut ws);
        self.0.websocket = Some(ws);
        self
    }
}

fn http_action(backends: Vec<WeightedBackend>) -> HttpAction {
    HttpAction {
        backends,
        timeout: DEFAULT_HTTP_TIMEOUT,
        balance: Balance::RoundRobin,
        filters: Filters::default(),
        max_body: None,
        limits: None,
        connect_timeout: None,
    }
}

/// A fixed-address backend.
pub(crate) fn address(addr: &str) -> Backend {
    Backend {
        target: BackendTarget::Address(addr.parse().unwrap()),
        protocol: BackendProtocol::Http,
        tls: None,
        field: "".into(),
    }
}

/// A Service-port backend.
pub(crate) fn service(name: &str, port: u16) -> Backend {
    Backend {
        target: BackendTarget::Service {
            namespace: None,
            name: name.into(),
            port: ServicePort::Number(port),
        },
        ..address("127.0.0.1:1")
    }
}

/// Origin patterns.
pub(crate) fn origins(list: &[&str]) -> Vec<OriginPattern> {
    list.iter()
        .map(|o| OriginPattern::parse(o).unwrap())
        .collect()
}

/// Seconds.
pub(crate) fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}
