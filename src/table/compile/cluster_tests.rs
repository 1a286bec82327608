use super::*;
use crate::model::build::{address, route, rule};
use crate::table::{ProblemKind, self_signed};

#[test]
fn address_backends_can_be_refused() {
    let r = route("a/r")
        .host("a.test")
        .rule(rule("/").websocket(address("10.1.2.3:80")))
        .build();
    let mut snap = Snapshot {
        routes: vec![Arc::new(Ok(r))],
        ..Default::default()
    };
    assert!(compile(&snap).1[0].programmed);
    snap.deny_address_backends = true;
    let (table, reports) = compile(&snap);
    assert_eq!(table.routes().len(), 0);
    assert_eq!(
        reports[0].problems[0].kind,
        ProblemKind::AddressBackendNotAllowed
    );
    assert!(
        reports[0].problems[0]
            .message
            .starts_with("spec.rules[0].websocket.backend.address")
    );
}

#[test]
fn expired_certificates_are_reported_not_loaded() {
    let r = route("a/r")
        .host("a.test")
        .tls("s")
        .rule(rule("/").http(address("10.1.2.3:80")))
        .build();
    let (cert, key) = self_signed(&["a.test".into()]).unwrap_or_else(|e| panic!("{e}"));
    let secret = TlsSecret {
        namespace: "a".into(),
        name: "s".into(),
        cert_pem: cert.into_bytes(),
        key_pem: key.into_bytes(),
        ca_pem: None,
    };
    let mut snap = Snapshot {
        routes: vec![Arc::new(Ok(r))],
        secrets: vec![secret],
        ..Default::default()
    };
    // rcgen's default notAfter is 4096-01-01: fine today, expired in the year 5000.
    snap.now = Some(1_800_000_000);
    assert!(compile(&snap).0.certificate("a.test").is_some());
    snap.now = Some(95_617_584_000);
    let (table, reports) = compile(&snap);
    assert!(table.certificate("a.test").is_none());
    assert_eq!(reports[0].problems[0].kind, ProblemKind::InvalidCertificate);
    assert!(
        reports[0].problems[0].message.contains("expired"),
        "{}",
        reports[0].problems[0].message
    );
}
