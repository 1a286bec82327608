//! The certificates of a compile: Secrets parsed through a cache kept between compiles, with
//! expiry checked against the snapshot's clock.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::report::{Problem, ProblemKind};
use super::{CertificateInfo, TlsSecret, certified_key_from_pem, not_after};

/// A parsed certificate with its `notAfter` (Unix seconds), or why it cannot be served.
type Parsed = Result<(Arc<CertifiedKey>, Option<i64>), String>;

/// Parsed certificates kept between compiles, so a rebuild only parses Secrets whose bytes
/// changed (parsing a private key is the most expensive part of a compile). The output of a
/// compile is the same with or without it.
#[derive(Debug, Default)]
pub struct CertificateCache {
    /// Randomly keyed, so Secret contents cannot be crafted to collide.
    hasher: RandomState,
    /// namespace → name → entry: lookups of unchanged Secrets allocate nothing.
    entries: HashMap<String, HashMap<String, CachedCert>>,
}

#[derive(Debug)]
struct CachedCert {
    digest: u64,
    parsed: Parsed,
    used: bool,
}

impl CertificateCache {
    fn parse(&mut self, secret: &TlsSecret) -> Parsed {
        let digest = self.hasher.hash_one((&secret.cert_pem, &secret.key_pem));
        let cached = self
            .entries
            .get_mut(&secret.namespace)
            .and_then(|names| names.get_mut(&secret.name))
            .filter(|entry| entry.digest == digest);
        if let Some(entry) = cached {
            entry.used = true;
            return entry.parsed.clone();
        }
        let parsed = certified_key_from_pem(&secret.cert_pem, &secret.key_pem)
            .map(|cert| {
                let expiry = cert.end_entity_cert().ok().and_then(|der| not_after(der));
                (cert, expiry)
            })
            .map_err(|e| e.to_string());
        let entry = CachedCert {
            digest,
            parsed: parsed.clone(),
            used: true,
        };
        self.entries
            .entry(secret.namespace.clone())
            .or_default()
            .insert(secret.name.clone(), entry);
        parsed
    }

    /// Forgets Secrets the last compile did not use.
    fn sweep(&mut self) {
        for names in self.entries.values_mut() {
            names.retain(|_, e| std::mem::take(&mut e.used));
        }
        self.entries.retain(|_, names| !names.is_empty());
    }

    /// A digest of some bytes, keyed like the certificate cache.
    pub(super) fn digest(&self, bytes: &[u8]) -> u64 {
        self.hasher.hash_one(bytes)
    }
}

/// The Secrets of one compile, parsed through the cache, with expiry checked against `now`.
pub(super) struct Certs<'a> {
    secrets: HashMap<(&'a str, &'a str), &'a TlsSecret>,
    now: Option<i64>,
    cache: &'a mut CertificateCache,
    served: BTreeMap<String, Option<i64>>,
}

impl<'a> Certs<'a> {
    pub(super) fn new(
        secrets: &'a [TlsSecret],
        now: Option<i64>,
        cache: &'a mut CertificateCache,
    ) -> Self {
        Certs {
            secrets: secrets
                .iter()
                .map(|s| ((s.namespace.as_str(), s.name.as_str()), s))
                .collect(),
            now,
            cache,
            served: BTreeMap::new(),
        }
    }

    /// `ca.crt` of a Secret, when the Secret exists and has one.
    pub(super) fn ca(&self, namespace: &str, name: &str) -> Option<&'a [u8]> {
        self.secrets
            .get(&(namespace, name))
            .and_then(|s| s.ca_pem.as_deref())
    }

    /// A digest of some bytes, keyed like the certificate cache.
    pub(super) fn digest(&self, bytes: &[u8]) -> u64 {
        self.cache.digest(bytes)
    }

    /// Every certificate in use, with its expiry, sorted by Secret.
    pub(super) fn served(self) -> Vec<CertificateInfo> {
        self.cache.sweep();
        self.served
            .into_iter()
            .map(|(secret, not_after)| CertificateInfo { secret, not_after })
            .collect()
    }

    /// The certificate of a route's Secret, or a problem saying why there is none.
    pub(super) fn get(
        &mut self,
        namespace: &str,
        name: &str,
        problems: &mut Vec<Problem>,
    ) -> Option<Arc<CertifiedKey>> {
        let Some(secret) = self.secrets.get(&(namespace, name)).copied() else {
            problems.push(Problem {
                kind: ProblemKind::SecretNotFound,
                message: format!(
                    "TLS Secret {namespace}/{name} not found; the default certificate is served"
                ),
            });
            return None;
        };
        let why = match self.cache.parse(secret) {
            Ok((cert, expiry)) => match (self.now, expiry) {
                (Some(now), Some(t)) if t < now => format!(
                    "the certificate in tls.crt expired {} days ago",
                    (now - t) / 86_400
                ),
                _ => {
                    self.served.insert(format!("{namespace}/{name}"), expiry);
                    return Some(cert);
                }
            },
            Err(why) => why,
        };
        problems.push(Problem {
            kind: ProblemKind::InvalidCertificate,
            message: format!(
                "TLS Secret {namespace}/{name}: {why}; the default certificate is served"
            ),
        });
        None
    }
}
