//! Admission-time validation, checked offline: the CRD's `x-kubernetes-validations` (CEL) rules
//! run in a real CEL evaluator (kube-cel, the Kubernetes CEL libraries in Rust) against good
//! and bad routes, and its `pattern`s in a regex engine of the same RE2 family as the API
//! server's; `wsgate check` reports the same problems for the bad ones (the translate step
//! stays the last word, for clusters that run without the schema).
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt;
use serde_json::{Value, json};
use wsgate::api::WebSocketRoute;

fn schema() -> Value {
    let crd = serde_json::to_value(WebSocketRoute::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

fn route(spec: Value) -> Value {
    json!({
        "apiVersion": "wsgate.dev/v1alpha1",
        "kind": "WebSocketRoute",
        "metadata": { "name": "r", "namespace": "apps" },
        "spec": spec,
    })
}

fn good_spec() -> Value {
    json!({
        "hostnames": ["chat.example.com"],
        "redirectHostnames": ["www.chat.example.com"],
        "tls": { "secretName": "chat-tls", "hsts": { "maxAge": 31536000, "includeSubDomains": true, "preload": true } },
        "rules": [
            { "http": { "backend": { "service": "web", "port": 80 } } },
            { "pathPrefix": "/ws", "websocket": { "backend": { "address": "10.0.0.1:5000" } } }
        ]
    })
}

/// The CEL messages the API server would answer `kubectl apply` with.
fn cel_errors(spec: Value) -> Vec<String> {
    match kube_cel::Validator::new().validate(&schema(), &route(spec), None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

/// `wsgate check`'s messages for the same spec, through the one translate step.
fn translate_errors(spec: Value) -> Vec<String> {
    let route: WebSocketRoute = serde_json::from_value(route(spec)).unwrap();
    match wsgate::api::translate(&route) {
        Ok(_) => Vec::new(),
        Err(rejected) => rejected.problems.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn a_good_route_passes_every_rule() {
    assert_eq!(cel_errors(good_spec()), Vec::<String>::new());
    assert_eq!(translate_errors(good_spec()), Vec::<String>::new());
    let mut with_auth = good_spec();
    with_auth["rules"][0]["auth"] = json!({
        "jwt": {
            "issuer": "https://id.example.com/",
            "jwks": { "url": "https://id.example.com/jwks.json", "refreshInterval": "5m" },
            "tokenFrom": [ { "cookie": "session" }, { "bearer": true }, { "protocolPrefix": "token." } ],
            "claimsToHeaders": [ { "claim": "sub", "header": "X-User" } ]
        },
        "external": {
            "backend": { "service": "auth", "port": 80 },
            "path": "/check",
            "cache": { "cookie": "session", "duration": "30s" },
            "signinURL": "https://login.example.com/start"
        }
    });
    assert_eq!(cel_errors(with_auth.clone()), Vec::<String>::new());
    assert_eq!(translate_errors(with_auth), Vec::<String>::new());
}

#[test]
fn each_cel_rule_refuses_its_bad_fixture_as_translate_does() {
    let mut cases: Vec<(Value, &str, &str)> = Vec::new();
    let mut both = good_spec();
    both["rules"][0]["http"]["backend"]["address"] = json!("10.0.0.1:80");
    cases.push((
        both,
        "set either service+port or address",
        "set either service+port or address",
    ));
    let mut no_port = good_spec();
    no_port["rules"][0]["http"]["backend"] = json!({ "service": "web" });
    cases.push((
        no_port,
        "port is required with service",
        "required with service",
    ));
    let mut port_with_address = good_spec();
    port_with_address["rules"][1]["websocket"]["backend"]["port"] = json!(80);
    cases.push((
        port_with_address,
        "port goes with service",
        "goes with service",
    ));
    let mut neither = good_spec();
    neither["rules"][0]["http"]["backend"] = json!({});
    cases.push((
        neither,
        "set either service+port or address",
        "set service+port or address",
    ));
    let mut preload = good_spec();
    preload["tls"]["hsts"]["maxAge"] = json!(600);
    cases.push((
        preload,
        "preload needs maxAge",
        "needs maxAge of at least 31536000",
    ));
    let mut wildcard_target = good_spec();
    wildcard_target["hostnames"] = json!(["*.example.com"]);
    cases.push((
        wildcard_target,
        "must be an exact name when redirectHostnames",
        "must be an exact name",
    ));
    let mut twice = good_spec();
    twice["redirectHostnames"] = json!(["chat.example.com"]);
    cases.push((
        twice,
        "listed in both hostnames and redirectHostnames",
        "listed twice",
    ));
    let mut same_prefix = good_spec();
    same_prefix["rules"][1]["pathPrefix"] = json!("/");
    cases.push((
        same_prefix,
        "each rule needs its own pathPrefix",
        "is used by an earlier rule",
    ));
    let mut h2_plain = good_spec();
    h2_plain["rules"][0]["http"]["backend"]["protocol"] = json!("h2");
    cases.push((
        h2_plain,
        "protocol h2 is HTTP/2 over TLS and needs tls",
        "h2 is HTTP/2 over TLS and needs tls",
    ));
    let mut h2c_tls = good_spec();
    h2c_tls["rules"][0]["http"]["backend"]["protocol"] = json!("h2c");
    h2c_tls["rules"][0]["http"]["backend"]["tls"] = json!({});
    cases.push((
        h2c_tls,
        "h2c is cleartext HTTP/2",
        "h2c is cleartext HTTP/2",
    ));
    let mut empty_rule = good_spec();
    empty_rule["rules"][1] = json!({ "pathPrefix": "/ws" });
    cases.push((
        empty_rule,
        "needs an http or a websocket backend",
        "needs an http or a websocket backend",
    ));
    // Auth: each block's "exactly one" rules.
    let auth = |a: Value| {
        let mut spec = good_spec();
        spec["rules"][0]["auth"] = a;
        spec
    };
    cases.push((
        auth(json!({})),
        "set jwt, external, or both",
        "set jwt, external, or both",
    ));
    cases.push((
        auth(json!({ "jwt": { "jwks": { "configMap": { "name": "k" }, "url": "https://id.example/jwks" } } })),
        "set exactly one of configMap, secret and url",
        "set exactly one of configMap, secret and url",
    ));
    cases.push((
        auth(json!({ "jwt": { "jwks": {} } })),
        "set exactly one of configMap, secret and url",
        "set exactly one of configMap, secret and url",
    ));
    cases.push((
        auth(json!({ "jwt": { "jwks": { "secret": { "name": "k" } }, "tokenFrom": [ { "cookie": "a", "query": "b" } ] } })),
        "set exactly one of bearer, cookie, query and protocolPrefix",
        "set exactly one of bearer, cookie, query and protocolPrefix",
    ));
    cases.push((
        auth(json!({ "external": { "backend": { "service": "auth", "port": 80 }, "cache": { "duration": "1m" } } })),
        "key the cache by a header or by a cookie",
        "key the cache by a header or by a cookie",
    ));

    for (spec, cel, translate) in cases {
        let errors = cel_errors(spec.clone());
        assert!(
            errors.iter().any(|e| e.contains(cel)),
            "CEL: want {cel:?}, got {errors:?} for {spec}"
        );
        let problems = translate_errors(spec.clone());
        assert!(
            problems.iter().any(|p| p.contains(translate)),
            "translate: want {translate:?}, got {problems:?} for {spec}"
        );
    }
}

/// Every `pattern` in the schema, by the property it sits on.
fn patterns(schema: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match schema {
        Value::Object(map) => {
            if let Some(Value::String(p)) = map.get("pattern") {
                out.push((at.to_string(), p.clone()));
            }
            for (k, v) in map {
                patterns(v, &format!("{at}.{k}"), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| patterns(v, at, out)),
        _ => {}
    }
}

fn pattern_for(field: &str) -> regex::Regex {
    let mut all = Vec::new();
    patterns(&schema(), "", &mut all);
    let (_, p) = all
        .iter()
        .find(|(at, _)| at.ends_with(field))
        .unwrap_or_else(|| panic!("no pattern at {field}: {all:#?}"));
    regex::Regex::new(p).unwrap()
}

#[test]
fn patterns_accept_what_translate_accepts_and_refuse_the_obvious() {
    let cases: [(&str, &[&str], &[&str]); 5] = [
        (
            "hostnames.items",
            &[
                "chat.example.com",
                "*.example.com",
                "a-b.c1.test",
                "localhost",
            ],
            &[
                "",
                "Chat.example.com",
                "a..b",
                "-a.test",
                "a.test.",
                "*.",
                "a*.test",
                "a b",
                "a.*.test",
            ],
        ),
        (
            "pathPrefix",
            &["/", "/ws", "/ws/", "/a/b.c/d_e"],
            &["", "ws", "//", "/a//b", "/a?b", "/a#b", "/a b"],
        ),
        (
            "timeout",
            &["0", "60s", "1h30m", "1.5h", "300ms"],
            &["", "60", "s", "-1s", "1d", "1 h"],
        ),
        (
            "service",
            &["web", "chat-api", "a1"],
            &["", "Web", "1web", "web-", "a.b", "a_b"],
        ),
        (
            "secretName",
            &["chat-tls", "a.b", "0x"],
            &["", "Chat", "a_b", "-a", "a..b"],
        ),
    ];
    for (field, good, bad) in cases {
        let re = pattern_for(field);
        for g in good {
            assert!(re.is_match(g), "{field}: {g:?} should pass {re}");
        }
        for b in bad {
            assert!(!re.is_match(b), "{field}: {b:?} should fail {re}");
        }
    }
    // What the pattern lets through, translate accepts too (no rejection after admission).
    for host in ["chat.example.com", "*.example.com", "localhost"] {
        let mut spec = good_spec();
        spec["hostnames"] = json!([host]);
        spec["redirectHostnames"] = json!([]);
        assert_eq!(translate_errors(spec), Vec::<String>::new(), "{host}");
    }
}

#[test]
fn bounded_lists_and_numbers_have_maxima() {
    let s = schema();
    let spec = &s["properties"]["spec"]["properties"];
    assert_eq!(spec["hostnames"]["maxItems"], 16);
    assert_eq!(spec["rules"]["maxItems"], 64);
    let ws = &spec["rules"]["items"]["properties"]["websocket"]["properties"];
    assert_eq!(ws["allowedOrigins"]["maxItems"], 64);
    assert_eq!(
        ws["limits"]["properties"]["maxConnectionsPerClient"]["maximum"],
        4_294_967_295.0
    );
    assert_eq!(
        ws["loadBalancing"]["properties"]["policy"]["enum"],
        json!([
            "RoundRobin",
            "LeastConnections",
            "ConsistentHash",
            "StickyCookie"
        ])
    );
    // Browsers cap Max-Age at 400 days (RFC 6265bis §5.5); so does the schema.
    assert_eq!(
        ws["loadBalancing"]["properties"]["cookie"]["properties"]["maxAgeSeconds"]["maximum"],
        34_560_000.0
    );
}
