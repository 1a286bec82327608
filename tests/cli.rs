//! The `wsgate` binary itself: `crd`, `check`, and `run` with a clean SIGTERM.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use http::StatusCode;
use wsgate_test_support::*;

fn wsgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_wsgate"))
}

#[test]
fn committed_crd_matches_the_generated_one() {
    let out = wsgate().arg("crd").output().unwrap();
    assert!(out.status.success());
    let generated = String::from_utf8(out.stdout).unwrap();
    for copy in [
        "crds/websocketroute.yaml",
        "charts/wsgate/crds/websocketroute.yaml",
    ] {
        let committed =
            std::fs::read_to_string(format!("{}/{copy}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        assert_eq!(
            committed, generated,
            "{copy} is stale: run `wsgate crd > {copy}`"
        );
    }
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
}

#[test]
fn check_names_every_bad_file_and_field() {
    let good = RoutesDir::new();
    good.write("chat.yaml", &route_yaml("chat", "  hostnames: [chat.test]\n  rules:\n    - websocket: { backend: { address: \"127.0.0.1:5000\" } }\n"));
    let out = wsgate()
        .args(["check", "--routes"])
        .arg(good.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("ok (1 routes in 1 files)"), "{stdout}");

    // The shipped examples are valid.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/standalone");
    let out = wsgate()
        .args(["check", "--routes", examples])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

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
    let out = wsgate()
        .args(["check", "--routes"])
        .arg(bad.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
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
    let out = wsgate()
        .args(["check", "--routes"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("secret.yaml: InvalidCertificate: TLS Secret default/s-tls: tls.crt holds PEM that is not an X.509 certificate"),
        "{stdout}"
    );
    assert!(stdout.contains("(used by route default/s in"), "{stdout}");
    assert!(stdout.contains("loop.yaml: cannot read"), "{stdout}");
}
