//! The `wsgate` binary itself: `crd`, `check`, and `run` with a clean SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use http::StatusCode;
use wsgate_test_support::*;

fn wsgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
}

/// `wsgate check --routes PATH` with `extra` flags: the exit code and what it printed.
fn check(path: impl AsRef<std::ffi::OsStr>, extra: &[&str]) -> (Option<i32>, String) {
    let out = wsgate()
        .args(["check", "--routes"])
        .arg(path)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let crd = |kind: &str| {
        let out = wsgate().args(["crd", kind]).output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let generated = crd("websocketroute");
    let default = wsgate().arg("crd").output().unwrap().stdout;
    assert_eq!(String::from_utf8(default).unwrap(), generated);
    for kind in ["websocketroute", "websocketpolicy"] {
        let generated = crd(kind);
        for copy in [
            format!("crds/{kind}.yaml"),
            format!("charts/wsgate/crds/{kind}.yaml"),
        ] {
            let committed =
                std::fs::read_to_string(format!("{}/{copy}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            assert_eq!(
                committed, generated,
                "{copy} is stale: run `wsgate crd {kind} > {copy}`"
            );
        }
    }
    assert!(crd("websocketpolicy").contains("kind: WebSocketPolicy"));
    for needle in [
        "group: wsgate.dev",
        "kind: WebSocketRoute",
        "- wsr",
        "name: v1alpha1",
        "status: {}",
        "name: Programmed",
    ] {
        assert!(generated.contains(needle), "CRD lacks {needle:?}");
    }
    // What `kubectl explain wsr` shows is written for users, not kube's placeholder.
    assert!(!generated.contains("Auto-generated"), "{generated}");
    assert!(!crd("websocketpolicy").contains("Auto-generated"));
}

#[test]
fn check_names_misspelt_kinds_and_fields_lists_skipped_documents_and_speaks_json() {
    let dir = RoutesDir::new();
    dir.write(
        "a-kind.yaml",
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoutes\nmetadata: { name: a }\nspec: {}\n",
    );
    dir.write("b-field.yaml", &route_yaml("b", "  hostnames: [b.test]\n  rules:\n    - websocket: { backend: { address: \"127.0.0.1:1\" }, idleTimout: 1h }\n"));
    dir.write(
        "c-other.yaml",
        &format!(
            "{}---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{ name: x }}\n",
            route_yaml("c", "  hostnames: [c.test]\n  rules:\n    - http: { backend: { address: \"127.0.0.1:1\" } }\n")
        ),
    );
    let (code, stdout) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    for line in [
        "a-kind.yaml: document 1: kind: \"WebSocketRoutes\" is not a kind of wsgate.dev/v1alpha1 (did you mean `WebSocketRoute`?)",
        "b-field.yaml: document 1: spec.rules[0].websocket.idleTimout: unknown field (did you mean `idleTimeout`?)",
        "note: ",
        "c-other.yaml: document 2: skipped Deployment (apps/v1)",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }

    // One file can be checked on its own.
    let (code, stdout) = check(dir.path().join("c-other.yaml"), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("ok (1 routes in 1 files)"), "{stdout}");

    // A Service backend cannot be served by `wsgate run`: an error, unless the files are
    // meant for a cluster.
    let svc = RoutesDir::new();
    svc.write("svc.yaml", &route_yaml("s", "  hostnames: [s.test]\n  rules:\n    - websocket: { backend: { service: chat, port: 80 } }\n"));
    let run = |extra: &[&str]| check(svc.path(), extra);
    let (code, text) = run(&[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("error: ") && text.contains("use an `address` backend"),
        "{text}"
    );
    let (code, text) = run(&["--cluster"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("note: ") && text.contains("ServiceNotFound"),
        "{text}"
    );

    // JSON: one object with every finding.
    let (code, text) = run(&["--output", "json"]);
    assert_eq!(code, Some(1));
    let json: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["routes"], 1);
    let finding = &json["findings"][0];
    assert_eq!(finding["level"], "error");
    assert!(
        finding["file"].as_str().unwrap().ends_with("svc.yaml"),
        "{json}"
    );
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("route default/s"),
        "{json}"
    );
}

#[test]
fn check_names_every_bad_file_and_field() {
    let good = RoutesDir::new();
    good.write("chat.yaml", &route_yaml("chat", "  hostnames: [chat.test]\n  rules:\n    - websocket: { backend: { address: \"127.0.0.1:5000\" } }\n"));
    let (code, stdout) = check(good.path(), &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("ok (1 routes in 1 files)"), "{stdout}");

    // The shipped examples are valid, standalone ones as `wsgate run` serves them.
    for (folder, cluster) in [
        ("standalone", false),
        ("standalone-tls", false),
        ("standalone-http", false),
        ("chat", true),
    ] {
        let examples = format!("{}/examples/{folder}", env!("CARGO_MANIFEST_DIR"));
        let flags: &[&str] = if cluster { &["--cluster"] } else { &[] };
        let (code, stdout) = check(&examples, flags);
        assert_eq!(code, Some(0), "{folder}: {stdout}");
        if folder == "standalone-tls" {
            assert!(
                !stdout.contains("self-signed"),
                "the Secret is used: {stdout}"
            );
        }
    }

    let bad = RoutesDir::new();
    bad.write("a-port.yaml", &route_yaml("a", "  hostnames: [a.test]\n  rules:\n    - websocket: { backend: { service: chat, port: 70000 } }\n"));
    bad.write("b-typo.yaml", &route_yaml("b", "  hostnames: [b.test]\n  rules:\n    - pathPrefx: /x\n      http: { backend: { address: \"127.0.0.1:1\" } }\n"));
    bad.write("c-first.yaml", &route_yaml("c", "  hostnames: [shared.test]\n  rules:\n    - http: { backend: { address: \"127.0.0.1:1\" } }\n"));
    bad.write("d-second.yaml", &route_yaml("d", "  hostnames: [shared.test]\n  rules:\n    - http: { backend: { address: \"127.0.0.1:1\" } }\n"));
    bad.write(
        "e-yaml.yaml",
        "apiVersion: wsgate.dev/v1alpha1\nkind: WebSocketRoute\nspec: [\n",
    );
    bad.write("f-origin.yaml", &route_yaml("f", "  hostnames: [f.test]\n  rules:\n    - websocket: { backend: { address: \"127.0.0.1:1\" }, allowedOrigins: [\"https://f.test/app\"] }\n"));
    bad.write("g-ca.yaml", &route_yaml("g", "  hostnames: [g.test]\n  rules:\n    - http: { backend: { address: \"127.0.0.1:1\", tls: { caSecretName: g-ca } } }\n"));
    let (code, stdout) = check(bad.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    let expect = [
        "a-port.yaml: document 1: spec.rules[0].websocket.backend.port: must be 1..65535",
        "b-typo.yaml: document 1: spec.rules[0].pathPrefx: unknown field",
        "d-second.yaml: route default/d: HostnameConflict: hostname shared.test is already served by route default/c",
        "e-yaml.yaml: document 1: invalid YAML",
        "f-origin.yaml: document 1: spec.rules[0].websocket.allowedOrigins[0]: \"https://f.test/app\" is not an origin",
        "g-ca.yaml: route default/g: CaSecretNotFound: backend CA Secret default/g-ca not found",
    ];
    for line in expect {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("c-first.yaml"),
        "the older route is fine:\n{stdout}"
    );
}

#[test]
fn check_reports_a_jwks_that_is_missing_or_unusable() {
    let dir = RoutesDir::new();
    let route = |name: &str, map: &str| {
        route_yaml(
            name,
            &format!(
                "  hostnames: [{name}.test]\n  rules:\n    - http: {{ backend: {{ address: \"127.0.0.1:1\" }} }}\n      auth: {{ jwt: {{ jwks: {{ configMap: {{ name: {map} }} }} }} }}\n"
            ),
        )
    };
    dir.write("a.yaml", &route("a", "absent"));
    dir.write(
        "b.yaml",
        &format!(
            "{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{ name: broken }}\ndata: {{ jwks.json: '{{\"keys\": 1}}' }}\n",
            route("b", "broken")
        ),
    );
    let (code, stdout) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    for line in [
        "error: ",
        "a.yaml: route default/a: InvalidKeys: JWKS ConfigMap default/absent key jwks.json not found",
        "b.yaml: route default/b: InvalidKeys: JWKS ConfigMap default/broken key jwks.json: not a JWKS",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // In a cluster the ConfigMap may come later: a warning.
    let (code, stdout) = check(dir.path().join("a.yaml"), &["--cluster"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("warning: "), "{stdout}");
}

#[test]
fn check_puts_secret_problems_in_the_secrets_file_and_reports_unreadable_names() {
    let ca = TestCa::new();
    let leaf = ca.leaf(&["s.test"]);
    let dir = RoutesDir::new();
    dir.write(
        "route.yaml",
        &route_yaml(
            "s",
            "  hostnames: [s.test]
  tls: { secretName: s-tls }
  rules:
    - http: { backend: { address: \"127.0.0.1:1\" } }
",
        ),
    );
    // PEM armour around bytes that are no certificate, with a real key.
    let key: String = leaf.key_pem.lines().map(|l| format!("    {l}\n")).collect();
    dir.write(
        "secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata: {{ name: s-tls, namespace: default }}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n    -----BEGIN CERTIFICATE-----\n    Z2FyYmFnZQ==\n    -----END CERTIFICATE-----\n  tls.key: |\n{key}"),
    );
    // A name that loops back on itself.
    std::os::unix::fs::symlink(dir.path().join("loop.yaml"), dir.path().join("loop.yaml")).unwrap();
    let (code, stdout) = check(dir.path(), &[]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("secret.yaml: InvalidCertificate: TLS Secret default/s-tls: tls.crt holds PEM that is not an X.509 certificate"),
        "{stdout}"
    );
    assert!(stdout.contains("(used by route default/s in"), "{stdout}");
    assert!(stdout.contains("loop.yaml: cannot read"), "{stdout}");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests_and_exits_zero() {
    let backend = http_backend().await;
    let routes = RoutesDir::new();
    routes.write(
        "r.yaml",
        &route_yaml("r", &format!("  hostnames: [r.test]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n", backend.addr)),
    );
    let bin = spawn_run(&routes, &[]);
    let (http_addr, admin_addr) = (bin.http, bin.admin);
    assert_eq!(
        http(admin_addr, request("GET", "admin", "/readyz"))
            .await
            .status,
        StatusCode::OK
    );

    // A request that is still running when the signal arrives.
    let in_flight =
        tokio::spawn(
            async move { http(http_addr, request("GET", "r.test", "/slow?ms=1500")).await },
        );
    eventually("the slow request reached the backend", || async {
        backend
            .connections
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    })
    .await;
    bin.terminate();
    eventually("/readyz turns 503 while draining", || async {
        match tokio::net::TcpStream::connect(admin_addr).await {
            Ok(io) => {
                send(io, request("GET", "admin", "/readyz")).await.status
                    == StatusCode::SERVICE_UNAVAILABLE
            }
            Err(_) => true, // already gone
        }
    })
    .await;
    let reply = within("in-flight request", in_flight).await.unwrap();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(bin.wait().await.0, Some(0));
    assert!(
        tokio::net::TcpStream::connect(http_addr).await.is_err(),
        "still accepting after exit"
    );
}

/// `wsgate run` with quick drains (a test can override them through `extra`).
fn spawn_run(routes: &RoutesDir, extra: &[&str]) -> Binary {
    let mut flags = vec!["--drain-delay", "100ms", "--drain-window", "1s"];
    flags.extend_from_slice(extra);
    spawn_wsgate_run(env!("CARGO_BIN_EXE_wsgate"), routes.path(), &flags)
}

/// Sends SIGTERM, expects exit 0, and returns every JSON log line.
async fn stop(bin: Binary) -> Vec<serde_json::Value> {
    bin.terminate();
    let (code, lines) = bin.wait().await;
    assert_eq!(code, Some(0));
    lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test]
async fn access_log_has_a_line_per_request_and_per_websocket() {
    use futures_util::StreamExt;
    let web = http_backend().await;
    let ws = ws_backend().await;
    let routes = RoutesDir::new();
    routes.write(
        "r.yaml",
        &route_yaml(
            "r",
            &format!(
                "  hostnames: [r.test]\n  rules:\n    - http: {{ backend: {{ address: \"{}\" }} }}\n      websocket: {{ backend: {{ address: \"{}\" }} }}\n",
                web.addr, ws.addr
            ),
        ),
    );
    let bin = spawn_run(&routes, &[]);
    let http_addr = bin.http;
    let reply = http(http_addr, request("GET", "r.test", "/hello?token=secret")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut c = ws_over(
        tokio::net::TcpStream::connect(http_addr).await.unwrap(),
        "r.test",
        "/chat",
        &[],
    )
    .await;
    echo_roundtrip(&mut c, tokio_tungstenite::tungstenite::Message::text("hi")).await;
    c.close(None).await.unwrap();
    while let Some(Ok(_)) = within("close", c.next()).await {}
    drop(c);
    // The WebSocket line is written when the relay ends, which the client cannot observe.
    let lines = stop(bin).await;
    let access: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"] == "wsgate::access")
        .collect();
    let http_line = access
        .iter()
        .find(|l| l["kind"] == "http" && l["path"] == "/hello")
        .unwrap_or_else(|| panic!("no access line for /hello in {access:?}"));
    assert_eq!(http_line["route"], "default/r");
    assert_eq!(http_line["method"], "GET");
    assert_eq!(http_line["host"], "r.test");
    assert_eq!(http_line["status"], 200);
    assert_eq!(http_line["backend"], web.addr.to_string());
    assert!(
        http_line["client"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(http_line["bytes_out"].as_u64().unwrap() > 0);
    assert!(http_line["duration_ms"].as_f64().is_some());
    assert!(
        !http_line.to_string().contains("secret"),
        "query strings stay out of logs"
    );
    let ws_line = access
        .iter()
        .find(|l| l["kind"] == "websocket")
        .unwrap_or_else(|| panic!("no websocket access line in {access:?}"));
    assert_eq!(ws_line["path"], "/chat");
    assert_eq!(ws_line["close_reason"], "client");
    assert_eq!(ws_line["backend"], ws.addr.to_string());
    assert!(ws_line["bytes_in"].as_u64().unwrap() >= 2);

    // --access-log=false: the same traffic, no access lines.
    let bin = spawn_run(&routes, &["--access-log=false"]);
    let http_addr = bin.http;
    let reply = http(http_addr, request("GET", "r.test", "/hello")).await;
    assert_eq!(reply.status, StatusCode::OK);
    let lines = stop(bin).await;
    assert!(lines.iter().all(|l| l["target"] != "wsgate::access"));
    assert!(
        lines.iter().any(|l| l["message"] == "bye"),
        "the log was read to the end"
    );
}

#[test]
fn check_and_migrate_read_ingress_nginx_ingresses() {
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/ingress-nginx");
    let (code, stdout) = check(examples, &["--cluster"]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("ok (1 routes in 1 files)"), "{stdout}");

    let dir = RoutesDir::new();
    dir.write(
        "app.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: app\n  annotations:\n    nginx.ingress.kubernetes.io/configuration-snippet: x\n    nginx.ingress.kubernetes.io/proxy-read-timeout: \"soon\"\nspec:\n  rules:\n    - host: app.test\n      http:\n        paths:\n          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }\n",
    );
    let (code, stdout) = check(dir.path(), &[]);
    assert_ne!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("app.yaml: document 1: metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout]"),
        "{stdout}"
    );
    let out = wsgate()
        .arg("migrate")
        .arg(dir.path().join("app.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "a problem fails the migration: {stdout}"
    );
    assert!(
        stdout.contains("IGNORED   nginx.ingress.kubernetes.io/configuration-snippet"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "PROBLEM   metadata.annotations[nginx.ingress.kubernetes.io/proxy-read-timeout]"
        ),
        "{stdout}"
    );

    // The shipped example migrates to a WebSocketRoute that `check` accepts once its named
    // port is filled in, as the note says.
    let out = wsgate().args(["migrate", examples]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("port \"http\" is named"), "{stdout}");
    let fixed = stdout.replace(
        "service: chat-web\n",
        "service: chat-web\n        port: 80\n",
    );
    let migrated = RoutesDir::new();
    migrated.write("routes.yaml", &fixed);
    let (code, checked) = check(migrated.path(), &["--cluster"]);
    assert_eq!(code, Some(0), "{fixed}\n{checked}");
}

#[test]
fn completions_and_the_man_page_come_from_the_binary() {
    for shell in ["bash", "zsh", "fish"] {
        let out = wsgate().args(["completions", shell]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(
            text.contains("wsgate") && text.contains("drain-timeout"),
            "{shell}: {text}"
        );
    }
    let out = wsgate().arg("man").output().unwrap();
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in [
        ".TH wsgate 1",
        ".SH \"WSGATE RUN\"",
        ".SH \"WSGATE CHECK\"",
        "\\fB\\-\\-routes\\fR",
    ] {
        assert!(page.contains(needle), "man page lacks {needle:?}:\n{page}");
    }
    let out = wsgate().arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("wsgate {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_busy_port_is_reported_once() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let routes = RoutesDir::new();
    let out = wsgate()
        .args(["run", "--routes"])
        .arg(routes.path())
        .args([
            "--http-listen",
            &format!("127.0.0.1:{port}"),
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.matches("Address already in use").count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{stderr}"
    );
}

#[test]
fn a_controller_without_a_cluster_says_why_once() {
    let out = wsgate()
        .args([
            "controller",
            "--http-listen",
            "127.0.0.1:0",
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("connecting to Kubernetes"), "{stderr}");
    assert_eq!(
        stderr.to_lowercase().matches("infer config").count(),
        1,
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("/nonexistent/kubeconfig").count(),
        1,
        "{stderr}"
    );
}
