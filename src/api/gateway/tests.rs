use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::*;
use crate::model::{BackendProtocol, BackendTarget, PathMatch, PathRewrite, Route};

/// The objects of a multi-document YAML, sorted by kind.
#[derive(Default)]
struct Cluster {
    classes: Vec<Object<GatewayClassSpec>>,
    gateways: Vec<Object<GatewaySpec>>,
    routes: Vec<Object<HttpRouteSpec>>,
    grants: Vec<Object<ReferenceGrantSpec>>,
    policies: Vec<Object<crate::api::policy::WebSocketPolicySpec>>,
    backend_tls: Vec<Object<BackendTlsPolicySpec>>,
    config_maps: HashSet<(String, String)>,
    namespaces: NamespaceLabels,
    services: ServicePorts,
    secrets: HashSet<(String, String)>,
}

fn cluster(yaml: &str) -> Cluster {
    let mut c = Cluster::default();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_json::Value::deserialize(doc).unwrap_or_else(|e| panic!("{e}"));
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        let ns = value["metadata"]["namespace"].as_str().unwrap_or_default();
        let name = value["metadata"]["name"].as_str().unwrap_or_default();
        let (ns, name) = (ns.to_string(), name.to_string());
        fn must<S: serde::de::DeserializeOwned>(value: serde_json::Value) -> Object<S> {
            decode(value).unwrap_or_else(|e| panic!("{e}"))
        }
        match kind.as_str() {
            "GatewayClass" => c.classes.push(must(value)),
            "Gateway" => c.gateways.push(must(value)),
            "HTTPRoute" => c.routes.push(must(value)),
            "ReferenceGrant" => c.grants.push(must(value)),
            "WebSocketPolicy" => c.policies.push(must(value)),
            "BackendTLSPolicy" => c.backend_tls.push(must(value)),
            "ConfigMap" => {
                if value["data"]["ca.crt"].is_string() {
                    c.config_maps.insert((ns, name));
                }
            }
            "Namespace" => {
                let labels = value["metadata"]["labels"].clone();
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(labels).unwrap_or_default();
                c.namespaces.insert(name, labels);
            }
            "Service" => {
                let ports = value["spec"]["ports"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let ports = ports
                    .iter()
                    .map(|p| ServicePortInfo {
                        number: p["port"].as_u64().unwrap_or_default() as u16,
                        name: p["name"].as_str().map(str::to_string),
                        app_protocol: p["appProtocol"].as_str().map(str::to_string),
                    })
                    .collect();
                c.services.insert((ns, name), ports);
            }
            "Secret" => {
                c.secrets.insert((ns, name));
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    c
}

impl Cluster {
    fn translate(&self) -> Translation {
        translate(&World {
            controller: GATEWAY_CONTROLLER,
            ports: Ports::default(),
            classes: &self.classes,
            gateways: &self.gateways,
            routes: &self.routes,
            grants: &self.grants,
            policies: &self.policies,
            backend_tls: &self.backend_tls,
            config_maps: &self.config_maps,
            namespaces: &self.namespaces,
            services: &self.services,
            secrets: &self.secrets,
        })
    }
}

/// A class of ours, a Gateway `infra/gw` with an HTTP listener, an HTTPS listener for
/// `*.example.com` and one that admits routes from every namespace, Services and Secrets.
const BASE: &str = r#"
kind: GatewayClass
metadata: {name: wsgate}
spec: {controllerName: wsgate.dev/gateway-controller}
---
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/other}
---
kind: Gateway
metadata: {name: gw, namespace: infra, generation: 3}
spec:
  gatewayClassName: wsgate
  listeners:
    - {name: http, port: 80, protocol: HTTP}
    - name: https
      port: 443
      protocol: HTTPS
      hostname: "*.example.com"
      tls: {certificateRefs: [{name: wildcard-tls}]}
    - name: shared
      port: 80
      protocol: HTTP
      hostname: "*.shared.test"
      allowedRoutes: {namespaces: {from: All}}
---
kind: Gateway
metadata: {name: theirs, namespace: infra}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
kind: Secret
metadata: {name: wildcard-tls, namespace: infra}
---
kind: Service
metadata: {name: chat, namespace: infra}
spec: {ports: [{port: 8080}, {port: 8443, appProtocol: kubernetes.io/wss}, {port: 9000, appProtocol: kubernetes.io/h2c}]}
---
kind: Service
metadata: {name: chat-v2, namespace: infra}
spec: {ports: [{port: 8080, appProtocol: kubernetes.io/ws}]}
---
kind: Service
metadata: {name: api, namespace: apps}
spec: {ports: [{port: 80}]}
"#;

fn with(extra: &str) -> Cluster {
    cluster(&format!("{BASE}\n---\n{extra}"))
}

fn accepted_route(t: &Translation, name: &str) -> Route {
    t.routes
        .iter()
        .find_map(|r| r.as_ref().ok().filter(|r| r.meta.name == name).cloned())
        .unwrap_or_else(|| panic!("no accepted route {name}: {:?}", t.routes))
}

/// `(parent name, section, condition type, status, reason)` of a route's status.
fn parent_conditions(
    t: &Translation,
    name: &str,
) -> Vec<(String, Option<String>, &'static str, bool, &'static str)> {
    let report = t.http_routes.iter().find(|r| r.name == name);
    let report = report.unwrap_or_else(|| panic!("no report for {name}"));
    report
        .parents
        .iter()
        .flat_map(|(p, conds)| {
            conds.iter().map(move |c| {
                (
                    p.name.clone(),
                    p.section_name.clone(),
                    c.type_,
                    c.status,
                    c.reason,
                )
            })
        })
        .collect()
}

fn condition<'a>(conds: &'a [Cond], type_: &str) -> &'a Cond {
    conds
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} in {conds:?}"))
}

fn listener<'a>(t: &'a Translation, gw: &str, name: &str) -> &'a ListenerReport {
    let g = t.gateways.iter().find(|g| g.name == gw);
    let g = g.unwrap_or_else(|| panic!("no gateway {gw}"));
    let l = g.listeners.iter().find(|l| l.name == name);
    l.unwrap_or_else(|| panic!("no listener {name}"))
}

#[test]
fn only_classes_naming_wsgate_and_their_gateways_are_reported() {
    let t = cluster(BASE).translate();
    let classes: Vec<_> = t.classes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(classes, ["wsgate"]);
    assert!(condition(&t.classes[0].conditions, "Accepted").status);
    assert!(condition(&t.classes[0].conditions, "SupportedVersion").status);
    let gateways: Vec<_> = t.gateways.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(gateways, ["gw"]);
    let gw = &t.gateways[0];
    assert_eq!(gw.generation, Some(3));
    assert!(condition(&gw.conditions, "Accepted").status);
    assert!(condition(&gw.conditions, "Programmed").status);
    for name in ["http", "https", "shared"] {
        let l = listener(&t, "gw", name);
        for (type_, want) in [
            ("Accepted", true),
            ("Programmed", true),
            ("ResolvedRefs", true),
            ("Conflicted", false),
        ] {
            assert_eq!(
                condition(&l.conditions, type_).status,
                want,
                "{name} {type_}"
            );
        }
        assert_eq!(l.supported_kinds.len(), 1);
        assert_eq!(l.supported_kinds[0].kind, "HTTPRoute");
    }
}

#[test]
fn a_same_namespace_route_attaches_and_serves_its_hostnames_with_the_listener_certificate() {
    let t = with(
        r#"
kind: HTTPRoute
metadata: {name: chat, namespace: infra, generation: 2}
spec:
  parentRefs: [{name: gw}]
  hostnames: [chat.example.com]
  rules:
    - backendRefs: [{name: chat, port: 8080}]
"#,
    )
    .translate();
    let route = accepted_route(&t, "chat");
    assert_eq!(route.hostnames[0].as_str(), "chat.example.com");
    assert!(route.merge);
    let tls = route.tls.as_ref().unwrap_or_else(|| panic!("tls"));
    assert_eq!(tls.secret.as_deref(), Some("wildcard-tls"));
    assert_eq!(tls.secret_namespace.as_deref(), Some("infra"));
    assert!(!tls.http_redirect);
    assert!(!tls.https_only, "attached to the HTTP listener too");
    // Both listeners without a hostname conflict take it: http (any host) and https.
    assert_eq!(listener(&t, "gw", "http").attached_routes, 1);
    assert_eq!(listener(&t, "gw", "https").attached_routes, 1);
    assert_eq!(listener(&t, "gw", "shared").attached_routes, 0);
    let conds = parent_conditions(&t, "chat");
    assert_eq!(
        conds,
        [
            ("gw".into(), None, "Accepted", true, "Accepted"),
            ("gw".into(), None, "ResolvedRefs", true, "ResolvedRefs"),
        ]
    );
    // Requests and upgrades go to the same backend: every HTTPRoute takes WebSockets.
    let rule = &route.rules[0];
    assert_eq!(rule.matches.path, PathMatch::Prefix("/".into()));
    let http = rule.http.as_ref().unwrap_or_else(|| panic!("http"));
    let ws = rule.websocket.as_ref().unwrap_or_else(|| panic!("ws"));
    assert_eq!(http.backends, ws.backends);
}

#[test]
fn hostnames_intersect_with_the_listener_hostname() {
    let h = |s: &str| Hostname::parse(s).unwrap_or_else(|e| panic!("{e}"));
    let names = |l: Option<&str>, r: &[&str]| -> Vec<Option<String>> {
        let l = l.map(h);
        let r: Vec<Hostname> = r.iter().map(|s| h(s)).collect();
        intersect(l.as_ref(), &r)
            .into_iter()
            .map(|n| n.map(|n| n.as_str().to_string()))
            .collect()
    };
    let some = |s: &str| Some(s.to_string());
    assert_eq!(names(None, &[]), [None]);
    assert_eq!(names(None, &["a.test"]), [some("a.test")]);
    assert_eq!(names(Some("*.example.com"), &[]), [some("*.example.com")]);
    assert_eq!(
        names(
            Some("*.example.com"),
            &["a.example.com", "a.b.example.com", "example.com", "x.org"]
        ),
        [some("a.example.com"), some("a.b.example.com")]
    );
    // A wider route wildcard narrows to the listener's name, and the reverse.
    assert_eq!(
        names(Some("foo.example.com"), &["*.example.com"]),
        [some("foo.example.com")]
    );
    assert_eq!(
        names(Some("*.example.com"), &["*.foo.example.com"]),
        [some("*.foo.example.com")]
    );
    assert_eq!(
        names(Some("*.foo.example.com"), &["*.example.com"]),
        [some("*.foo.example.com")]
    );
    assert!(names(Some("a.example.com"), &["b.example.com"]).is_empty());
}

#[test]
fn parent_refs_pick_listeners_by_section_and_port_and_report_why_they_do_not_attach() {
    let t = with(
        r#"
kind: HTTPRoute
metadata: {name: only-https, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  hostnames: [chat.example.com]
  rules: [{backendRefs: [{name: chat, port: 8080}]}]
---
kind: HTTPRoute
metadata: {name: wrong-host, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  hostnames: [chat.example.org]
  rules: [{backendRefs: [{name: chat, port: 8080}]}]
---
kind: HTTPRoute
metadata: {name: no-section, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: nope}, {name: gw, port: 8443}]
  rules: [{backendRefs: [{name: chat, port: 8080}]}]
---
kind: HTTPRoute
metadata: {name: other-ns, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: http}, {name: gw, namespace: infra, sectionName: shared}]
  hostnames: [api.shared.test]
  rules: [{backendRefs: [{name: api, port: 80}]}]
---
kind: HTTPRoute
metadata: {name: not-ours, namespace: infra}
spec:
  parentRefs: [{name: theirs}, {name: missing}]
  rules: [{backendRefs: [{name: chat, port: 8080}]}]
"#,
    )
    .translate();
    assert_eq!(listener(&t, "gw", "https").attached_routes, 1);
    assert_eq!(listener(&t, "gw", "http").attached_routes, 0);
    let only_https = accepted_route(&t, "only-https").tls;
    assert!(only_https.is_some_and(|t| t.https_only));
    let reason = |name: &str, i: usize| parent_conditions(&t, name)[i].4;
    assert_eq!(reason("wrong-host", 0), "NoMatchingListenerHostname");
    assert_eq!(reason("no-section", 0), "NoMatchingParent");
    assert_eq!(reason("no-section", 2), "NoMatchingParent");
    // From another namespace: the `Same` listener refuses, the `All` one takes it.
    assert_eq!(reason("other-ns", 0), "NotAllowedByListeners");
    assert_eq!(reason("other-ns", 2), "Accepted");
    assert_eq!(listener(&t, "gw", "shared").attached_routes, 1);
    let other = accepted_route(&t, "other-ns");
    assert_eq!(other.hostnames[0].as_str(), "api.shared.test");
    assert!(other.tls.is_none());
    // Parents that are not Gateways of ours get no status from wsgate.
    assert!(t.http_routes.iter().all(|r| r.name != "not-ours"));
    assert!(
        t.routes
            .iter()
            .all(|r| crate::model::meta(r).name != "not-ours")
    );
}

#[test]
fn a_namespace_selector_admits_routes_by_namespace_labels() {
    let yaml = r#"
kind: Gateway
metadata: {name: selective, namespace: infra}
spec:
  gatewayClassName: wsgate
  listeners:
    - name: http
      port: 80
      protocol: HTTP
      hostname: sel.test
      allowedRoutes:
        namespaces:
          from: Selector
          selector: {matchLabels: {team: chat}, matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}
---
kind: Namespace
metadata: {name: apps, labels: {team: chat}}
---
kind: Namespace
metadata: {name: prod, labels: {team: chat, env: prod}}
---
kind: HTTPRoute
metadata: {name: a, namespace: apps}
spec: {parentRefs: [{name: selective, namespace: infra}], rules: [{backendRefs: [{name: api, port: 80}]}]}
---
kind: HTTPRoute
metadata: {name: b, namespace: prod}
spec: {parentRefs: [{name: selective, namespace: infra}], rules: [{backendRefs: [{name: api, port: 80}]}]}
"#;
    let t = with(yaml).translate();
    assert_eq!(parent_conditions(&t, "a")[0].4, "Accepted");
    assert_eq!(parent_conditions(&t, "b")[0].4, "NotAllowedByListeners");
}

#[test]
fn cross_namespace_backends_need_a_reference_grant() {
    let route = r#"
kind: HTTPRoute
metadata: {name: cross, namespace: apps}
spec:
  parentRefs: [{name: gw, namespace: infra, sectionName: shared}]
  hostnames: [x.shared.test]
  rules: [{backendRefs: [{name: chat, namespace: infra, port: 8080}]}]
"#;
    let t = with(route).translate();
    let conds = parent_conditions(&t, "cross");
    assert_eq!(
        (conds[1].2, conds[1].3, conds[1].4),
        ("ResolvedRefs", false, "RefNotPermitted")
    );
    // Still accepted: the share of an unresolved backend gets 500.
    let served = accepted_route(&t, "cross");
    let target = &served.rules[0]
        .http
        .as_ref()
        .map(|h| h.backends[0].backend.target.clone());
    assert_eq!(target.as_ref(), Some(&BackendTarget::Unresolved));

    // Grants for another namespace, or to another Service, open nothing.
    let wrong = r#"
---
kind: ReferenceGrant
metadata: {name: allow-others, namespace: infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: elsewhere}]
  to: [{group: "", kind: Service, name: chat}]
---
kind: ReferenceGrant
metadata: {name: allow-apps-to-api, namespace: infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: "", kind: Service, name: chat-v2}]
"#;
    let t = with(&format!("{route}{wrong}")).translate();
    assert_eq!(parent_conditions(&t, "cross")[1].4, "RefNotPermitted");

    let grant = r#"
---
kind: ReferenceGrant
metadata: {name: allow-apps, namespace: infra}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: apps}]
  to: [{group: "", kind: Service, name: chat}]
"#;
    let t = with(&format!("{route}{grant}")).translate();
    let conds = parent_conditions(&t, "cross");
    assert_eq!((conds[1].3, conds[1].4), (true, "ResolvedRefs"));
    let served = accepted_route(&t, "cross");
    let target = served.rules[0]
        .http
        .as_ref()
        .map(|h| h.backends[0].backend.target.clone());
    assert_eq!(
        target,
        Some(BackendTarget::Service {
            namespace: Some("infra".into()),
            name: "chat".into(),
            port: crate::model::ServicePort::Number(8080),
        })
    );
}

#[test]
fn invalid_kinds_and_missing_backends_are_reported_and_answered_500() {
    let t = with(
        r#"
kind: HTTPRoute
metadata: {name: bad, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
    - backendRefs: [{group: example.com, kind: Bucket, name: b}]
    - matches: [{path: {value: /two}}]
      backendRefs: [{name: nope, port: 80}]
    - matches: [{path: {value: /three}}]
"#,
    )
    .translate();
    let conds = parent_conditions(&t, "bad");
    assert_eq!(
        (conds[0].3, conds[1].3, conds[1].4),
        (true, false, "InvalidKind")
    );
    let route = accepted_route(&t, "bad");
    for rule in &route.rules {
        let http = rule.http.as_ref().unwrap_or_else(|| panic!("http"));
        assert_eq!(http.backends[0].backend.target, BackendTarget::Unresolved);
    }
    let t = with(
        r#"
kind: HTTPRoute
metadata: {name: missing, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules: [{backendRefs: [{name: nope, port: 80}, {name: chat, port: 1234}]}]
"#,
    )
    .translate();
    assert_eq!(parent_conditions(&t, "missing")[1].4, "BackendNotFound");
}

#[test]
fn matches_filters_weights_and_timeouts_map_onto_the_model() {
    let t = with(
        r#"
kind: HTTPRoute
metadata: {name: full, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  hostnames: [full.test]
  rules:
    - name: canary
      matches:
        - path: {type: Exact, value: /exact}
          headers: [{name: X-Env, value: canary}, {name: x-env, value: ignored}]
          queryParams: [{name: v, value: "2"}]
          method: POST
        - path: {type: PathPrefix, value: /app/}
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: x-set, value: s}]
            add: [{name: x-add, value: a}]
            remove: [x-remove]
        - type: ResponseHeaderModifier
          responseHeaderModifier: {set: [{name: x-resp, value: r}]}
        - type: URLRewrite
          urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /new}}
      backendRefs:
        - {name: chat, port: 8080, weight: 3}
        - {name: chat-v2, port: 8080, weight: 1}
        - {name: chat, port: 9000, weight: 0}
      timeouts: {request: 10s, backendRequest: 2s}
    - matches: [{path: {value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {scheme: https, hostname: new.test, port: 8443, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - matches: [{path: {value: /tls}}]
      backendRefs: [{name: chat, port: 8443}]
"#,
    )
    .translate();
    let route = accepted_route(&t, "full");
    assert_eq!(route.rules.len(), 4);
    let exact = &route.rules[0];
    assert_eq!(exact.index, 0);
    assert_eq!(exact.matches.path, PathMatch::Exact("/exact".into()));
    // Only the first match of a header name counts.
    assert_eq!(exact.matches.headers.len(), 1);
    assert_eq!(exact.matches.headers[0].name.as_str(), "x-env");
    assert_eq!(&*exact.matches.query[0].value, "2");
    assert_eq!(exact.matches.method, Some(http::Method::POST));
    assert_eq!(
        route.rules[1].matches.path,
        PathMatch::Prefix("/app".into())
    );
    let http = exact.http.as_ref().unwrap_or_else(|| panic!("http"));
    let weights: Vec<u32> = http.backends.iter().map(|b| b.weight).collect();
    assert_eq!(weights, [3, 1, 0]);
    assert_eq!(http.backends[2].backend.protocol, BackendProtocol::Http2);
    assert_eq!(http.timeout, std::time::Duration::from_secs(2));
    assert_eq!(http.filters.rewrite, Some(PathRewrite::Full("/new".into())));
    let req = &http.filters.request_headers;
    assert_eq!((req.set.len(), req.add.len(), req.remove.len()), (1, 1, 1));
    assert_eq!(http.filters.response_headers.set.len(), 1);
    let ws = exact.websocket.as_ref().unwrap_or_else(|| panic!("ws"));
    assert_eq!(ws.filters, http.filters);
    // The timeouts bound the handshake of an upgrade, not the socket.
    assert_eq!(
        ws.handshake_timeout,
        Some(std::time::Duration::from_secs(2))
    );
    assert_eq!(ws.idle_timeout, None);
    let untimed = route.rules[3]
        .websocket
        .as_ref()
        .map(|w| w.handshake_timeout);
    assert_eq!(untimed, Some(None));
    let redirect = route.rules[2]
        .http
        .as_ref()
        .and_then(|h| h.filters.redirect.clone());
    let redirect = redirect.unwrap_or_else(|| panic!("redirect"));
    assert_eq!(
        (redirect.scheme, redirect.port, redirect.status.as_u16()),
        (Some("https"), Some(8443), 301)
    );
    assert_eq!(redirect.path, Some(PathRewrite::Prefix("/new".into())));
    assert!(
        route.rules[2]
            .http
            .as_ref()
            .is_some_and(|h| h.backends.is_empty())
    );
    // appProtocol kubernetes.io/wss: TLS to the Service's cluster name.
    let tls = route.rules[3]
        .http
        .as_ref()
        .and_then(|h| h.backends[0].backend.tls.clone());
    let tls = tls.unwrap_or_else(|| panic!("tls"));
    assert_eq!(
        format!("{:?}", tls.server_name),
        format!(
            "{:?}",
            rustls_pki_types::ServerName::try_from("chat.infra.svc")
                .unwrap_or_else(|e| panic!("{e}"))
        )
    );
}

#[test]
fn unsupported_values_refuse_the_route_with_the_field() {
    for (spec, field) in [
        (
            "matches: [{path: {type: RegularExpression, value: /x.*}}]",
            "path.type",
        ),
        (
            "matches: [{headers: [{type: RegularExpression, name: a, value: b}]}]",
            "headers[0]",
        ),
        ("filters: [{type: RequestMirror}]", "RequestMirror"),
        (
            "filters: [{type: URLRewrite, urlRewrite: {hostname: x.test}}]",
            "hostname",
        ),
        (
            "filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: host, value: x}]}}]",
            "host",
        ),
        (
            "matches: [{path: {type: Exact, value: /x}}]\n      filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]",
            "ReplacePrefixMatch",
        ),
    ] {
        let yaml = format!(
            r#"
kind: HTTPRoute
metadata: {{name: odd, namespace: infra}}
spec:
  parentRefs: [{{name: gw, sectionName: http}}]
  rules:
    - {spec}
      backendRefs: [{{name: chat, port: 8080}}]
"#
        );
        let t = with(&yaml).translate();
        let conds = parent_conditions(&t, "odd");
        assert_eq!(
            (conds[0].3, conds[0].4),
            (false, "UnsupportedValue"),
            "{spec}"
        );
        let rejected = t.routes.iter().find_map(|r| r.as_ref().err());
        let problems = rejected
            .map(|r| r.problems[0].message.clone())
            .unwrap_or_default();
        assert!(problems.contains(field), "{spec}: {problems}");
    }
}

#[test]
fn listeners_on_other_ports_or_with_bad_certificates_are_not_programmed() {
    let yaml = r#"
kind: Gateway
metadata: {name: odd, namespace: infra}
spec:
  gatewayClassName: wsgate
  listeners:
    - {name: high, port: 8080, protocol: HTTP}
    - {name: tcp, port: 80, protocol: TCP}
    - {name: nocert, port: 443, protocol: HTTPS, hostname: a.test, tls: {certificateRefs: [{name: missing}]}}
    - {name: cross, port: 443, protocol: HTTPS, hostname: b.test, tls: {certificateRefs: [{name: other-tls, namespace: certs}]}}
    - {name: dup1, port: 80, protocol: HTTP, hostname: d.test}
    - {name: dup2, port: 80, protocol: HTTP, hostname: d.test}
    - name: kinds
      port: 80
      protocol: HTTP
      hostname: k.test
      allowedRoutes: {kinds: [{kind: GRPCRoute}]}
---
kind: Secret
metadata: {name: other-tls, namespace: certs}
"#;
    let t = with(yaml).translate();
    let cond = |l: &str, type_: &str| {
        let c = condition(&listener(&t, "odd", l).conditions, type_);
        (c.status, c.reason)
    };
    assert_eq!(cond("high", "Accepted"), (false, "PortUnavailable"));
    assert_eq!(cond("tcp", "Accepted"), (false, "UnsupportedProtocol"));
    assert_eq!(
        cond("nocert", "ResolvedRefs"),
        (false, "InvalidCertificateRef")
    );
    assert!(!cond("nocert", "Programmed").0);
    assert_eq!(cond("cross", "ResolvedRefs"), (false, "RefNotPermitted"));
    assert_eq!(cond("dup1", "Conflicted"), (true, "HostnameConflict"));
    assert_eq!(cond("kinds", "ResolvedRefs"), (false, "InvalidRouteKinds"));
    assert!(listener(&t, "odd", "kinds").supported_kinds.is_empty());

    let grant = r#"
---
kind: ReferenceGrant
metadata: {name: certs-for-infra, namespace: certs}
spec:
  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]
  to: [{group: "", kind: Secret}]
"#;
    let t = with(&format!("{yaml}{grant}")).translate();
    let c = condition(&listener(&t, "odd", "cross").conditions, "ResolvedRefs");
    assert!(c.status, "{c:?}");
}

#[test]
fn a_route_through_two_https_listeners_takes_the_most_specific_certificate() {
    let yaml = r#"
kind: Gateway
metadata: {name: certs, namespace: infra}
spec:
  gatewayClassName: wsgate
  listeners:
    - {name: wide, port: 443, protocol: HTTPS, hostname: "*.c.test", tls: {certificateRefs: [{name: wide-tls}]}}
    - {name: narrow, port: 443, protocol: HTTPS, hostname: "x.c.test", tls: {certificateRefs: [{name: narrow-tls}]}}
---
kind: Secret
metadata: {name: wide-tls, namespace: infra}
---
kind: Secret
metadata: {name: narrow-tls, namespace: infra}
---
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: certs}]
  hostnames: [x.c.test]
  rules: [{backendRefs: [{name: chat, port: 8080}]}]
"#;
    let t = with(yaml).translate();
    let route = accepted_route(&t, "r");
    assert_eq!(route.hostnames.len(), 1);
    let secret = route.tls.and_then(|t| t.secret);
    assert_eq!(secret.as_deref(), Some("narrow-tls"));
}

#[test]
fn websocket_policies_set_socket_settings_per_route_or_rule_and_report_per_gateway() {
    let yaml = r#"
kind: HTTPRoute
metadata: {name: chat, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
    - name: live
      matches: [{path: {value: /live}}]
      backendRefs: [{name: chat, port: 8080}]
    - backendRefs: [{name: chat, port: 8080}]
---
kind: WebSocketPolicy
metadata: {name: whole, namespace: infra, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  idleTimeout: 1h
  allowedOrigins: ["https://chat.example.com"]
  maxLifetime: 30m
  keepalive: {interval: 20s, timeout: 5s}
  rebalance: {tolerance: 0.5}
---
kind: WebSocketPolicy
metadata: {name: live-rule, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: live}]
  idleTimeout: 30s
  limits: {maxConnectionsPerClient: 3}
  loadBalancing: {policy: ConsistentHash, hashOn: {header: x-user}}
---
kind: WebSocketPolicy
metadata: {name: younger, namespace: infra, creationTimestamp: "2026-06-01T00:00:00Z"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  idleTimeout: 5m
---
kind: WebSocketPolicy
metadata: {name: no-rule, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: nope}]
  idleTimeout: 5m
---
kind: WebSocketPolicy
metadata: {name: broken, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  idleTimeout: 0s
  allowedOrigins: ["not an origin"]
"#;
    let t = with(yaml).translate();
    let route = accepted_route(&t, "chat");
    let ws = |i: usize| {
        route.rules[i]
            .websocket
            .clone()
            .unwrap_or_else(|| panic!("ws"))
    };
    // The rule-specific policy wins on its rule; the older whole-route one elsewhere.
    let live = ws(0);
    assert_eq!(live.idle_timeout, Some(std::time::Duration::from_secs(30)));
    assert_eq!(live.limits.and_then(|l| l.max_connections), Some(3));
    assert!(matches!(
        live.balance,
        crate::model::Balance::ConsistentHash(_)
    ));
    assert!(live.allowed_origins.is_empty());
    let rest = ws(1);
    assert_eq!(
        rest.idle_timeout,
        Some(std::time::Duration::from_secs(3600))
    );
    assert_eq!(rest.allowed_origins.len(), 1);
    assert_eq!(rest.balance, crate::model::Balance::LeastConnections);
    assert_eq!(rest.max_lifetime.map(|l| l.max.as_secs()), Some(1800));
    assert_eq!(live.max_lifetime, None);
    assert_eq!(
        rest.keepalive
            .map(|k| (k.interval.as_secs(), k.timeout.as_secs())),
        Some((20, 5))
    );
    assert_eq!(rest.rebalance.map(|r| r.tolerance), Some(0.5));
    assert_eq!((live.keepalive, live.rebalance), (None, None));
    // Requests are untouched.
    assert!(
        route.rules[1]
            .http
            .as_ref()
            .is_some_and(|h| h.limits.is_none())
    );
    let reason = |name: &str| {
        let p = t.policies.iter().find(|p| p.name == name);
        let p = p.unwrap_or_else(|| panic!("{name}"));
        assert!(
            p.ancestors
                .iter()
                .all(|(g, _)| g == &("infra".to_string(), "gw".to_string()))
        );
        p.ancestors.first().map(|(_, c)| (c[0].status, c[0].reason))
    };
    assert_eq!(reason("whole"), Some((true, "Accepted")));
    assert_eq!(reason("live-rule"), Some((true, "Accepted")));
    assert_eq!(reason("younger"), Some((false, "Conflicted")));
    assert_eq!(reason("no-rule"), Some((false, "TargetNotFound")));
    assert_eq!(reason("broken"), Some((false, "Invalid")));
    let broken = t.policies.iter().find(|p| p.name == "broken");
    let message = broken
        .and_then(|p| p.ancestors.first())
        .map(|(_, c)| c[0].message.clone());
    let message = message.unwrap_or_default();
    assert!(
        message.contains("spec.idleTimeout") && message.contains("spec.allowedOrigins[0]"),
        "{message}"
    );
}

#[test]
fn a_websocket_policy_sets_auth_for_requests_and_upgrades_of_its_rule() {
    let yaml = r#"
kind: HTTPRoute
metadata: {name: chat, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
    - name: live
      matches: [{path: {value: /live}}]
      backendRefs: [{name: chat, port: 8080}]
    - backendRefs: [{name: chat, port: 8080}]
---
kind: WebSocketPolicy
metadata: {name: guarded, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat, sectionName: live}]
  auth:
    jwt: {jwks: {configMap: {name: keys}}, tokenFrom: [{cookie: session}]}
---
kind: WebSocketPolicy
metadata: {name: bad-auth, namespace: infra}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: chat}]
  auth: {jwt: {jwks: {url: "http://plain"}}}
"#;
    let t = with(yaml).translate();
    let route = accepted_route(&t, "chat");
    let auth = route.rules[0]
        .auth
        .as_ref()
        .unwrap_or_else(|| panic!("auth"));
    let jwt = auth.jwt.as_ref().unwrap_or_else(|| panic!("jwt"));
    assert_eq!(
        jwt.jwks,
        crate::model::JwksSource::ConfigMap {
            name: "keys".into(),
            key: "jwks.json".into()
        }
    );
    assert!(route.rules[1].auth.is_none(), "the other rule is untouched");
    let bad = t.policies.iter().find(|p| p.name == "bad-auth");
    let cond = bad
        .and_then(|p| p.ancestors.first())
        .map(|(_, c)| c[0].clone());
    let cond = cond.unwrap_or_else(|| panic!("bad-auth status"));
    assert_eq!((cond.status, cond.reason), (false, "Invalid"));
    assert!(
        cond.message.contains("spec.auth.jwt.jwks.url"),
        "{}",
        cond.message
    );
}

#[test]
fn backend_tls_policies_verify_tls_backends_and_fail_closed_when_invalid() {
    let yaml = r#"
kind: Service
metadata: {name: secure, namespace: infra}
spec: {ports: [{name: https, port: 8443}, {name: other, port: 9443}]}
---
kind: Service
metadata: {name: broken, namespace: infra}
spec: {ports: [{name: https, port: 443}]}
---
kind: ConfigMap
metadata: {name: internal-ca, namespace: infra}
data: {ca.crt: "-----BEGIN CERTIFICATE-----"}
---
kind: BackendTLSPolicy
metadata: {name: secure-https, namespace: infra}
spec:
  targetRefs: [{group: "", kind: Service, name: secure, sectionName: https}]
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: internal-ca}], hostname: secure.internal}
---
kind: BackendTLSPolicy
metadata: {name: broken-ca, namespace: infra}
spec:
  targetRefs: [{group: "", kind: Service, name: broken}]
  validation: {caCertificateRefs: [{group: "", kind: ConfigMap, name: missing}], hostname: broken.internal}
---
kind: BackendTLSPolicy
metadata: {name: unused, namespace: infra}
spec:
  targetRefs: [{group: "", kind: Service, name: nobody}]
  validation: {caCertificateRefs: [{group: "", kind: Secret, name: x}], hostname: x.internal}
---
kind: HTTPRoute
metadata: {name: tls, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: http}]
  rules:
    - matches: [{path: {value: /a}}]
      backendRefs: [{name: secure, port: 8443}]
    - matches: [{path: {value: /b}}]
      backendRefs: [{name: secure, port: 9443}]
    - matches: [{path: {value: /c}}]
      backendRefs: [{name: broken, port: 443}]
"#;
    let t = with(yaml).translate();
    let route = accepted_route(&t, "tls");
    let backend = |i: usize| {
        let http = route.rules[i]
            .http
            .as_ref()
            .unwrap_or_else(|| panic!("http"));
        http.backends[0].backend.clone()
    };
    let a = backend(0);
    let tls = a
        .tls
        .unwrap_or_else(|| panic!("the policy makes the port TLS"));
    assert_eq!(
        format!("{:?}", tls.server_name),
        "DnsName(\"secure.internal\")"
    );
    assert_eq!(
        tls.ca,
        Some(crate::model::CaRef::ConfigMap {
            namespace: "infra".into(),
            name: "internal-ca".into()
        })
    );
    // Another port of the Service is not named by the policy.
    assert!(backend(1).tls.is_none());
    // A policy whose CA does not resolve fails closed: the share gets 500, not plaintext.
    assert_eq!(backend(2).target, BackendTarget::Unresolved);
    let report = |name: &str| t.backend_tls.iter().find(|p| p.name == name).cloned();
    let secure = report("secure-https").unwrap_or_else(|| panic!("secure-https"));
    assert_eq!(
        secure.ancestors[0].0,
        ("infra".to_string(), "gw".to_string())
    );
    assert!(secure.ancestors[0].1.iter().all(|c| c.status));
    let broken = report("broken-ca").unwrap_or_else(|| panic!("broken-ca"));
    let reasons: Vec<_> = broken.ancestors[0]
        .1
        .iter()
        .map(|c| (c.type_, c.status, c.reason))
        .collect();
    assert_eq!(
        reasons,
        [
            ("Accepted", false, "NoValidCACertificate"),
            ("ResolvedRefs", false, "InvalidCACertificateRef")
        ]
    );
    // A policy no route of ours uses has no Gateway to report on.
    assert!(report("unused").is_none());
}
