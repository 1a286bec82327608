//! The certificates of a compile: Secrets parsed through a cache kept between compiles, with
//! expiry checked against the snapshot's clock. The cache also remembers each Secret's last
//! good certificate: a Secret rotated to something that does not parse (garbage PEM, a key
//! that does not match) keeps its last good certificate serving, with a problem on the route,
//! until that certificate expires — rather than the default certificate at once.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use rustls::sign::CertifiedKey;

use super::report::{Problem, ProblemKind};
use super::{CertificateInfo, TlsSecret, certified_key_from_pem, not_after};

/// A certificate with its `notAfter` (Unix seconds).
type Good = (Arc<CertifiedKey>, Option<i64>);

/// A parsed certificate, or why it cannot be served.
type Parsed = Result<Good, String>;

/// Parsed certificates kept between compiles, so a rebuild only parses Secrets whose bytes
/// changed (parsing a private key is the most expensive part of a compile), and the last good
/// certificate of each Secret in use. Apart from that last good certificate, the output of a
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
    /// The newest certificate of this Secret that parsed (this one, or an earlier one).
    last_good: Option<Good>,
    used: bool,
}

impl CertificateCache {
    /// The Secret's certificate, and its last good one for when this one does not parse.
    fn parse(&mut self, secret: &TlsSecret) -> (Parsed, Option<Good>) {
        let digest = self.hasher.hash_one((&secret.cert_pem, &secret.key_pem));
        let cached = self
            .entries
            .get_mut(&secret.namespace)
            .and_then(|names| names.get_mut(&secret.name));
        let earlier = match cached {
            Some(entry) if entry.digest == digest => {
                entry.used = true;
                return (entry.parsed.clone(), entry.last_good.clone());
            }
            Some(entry) => entry.last_good.take(),
            None => None,
        };
        let parsed = certified_key_from_pem(&secret.cert_pem, &secret.key_pem)
            .map(|cert| {
                let expiry = cert.end_entity_cert().ok().and_then(|der| not_after(der));
                (cert, expiry)
            })
            .map_err(|e| e.to_string());
        let last_good = parsed.clone().ok().or(earlier);
        let entry = CachedCert {
            digest,
            parsed: parsed.clone(),
            last_good: last_good.clone(),
            used: true,
        };
        self.entries
            .entry(secret.namespace.clone())
            .or_default()
            .insert(secret.name.clone(), entry);
        (parsed, last_good)
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
        let (parsed, last_good) = self.cache.parse(secret);
        let expired = |expiry: Option<i64>| match (self.now, expiry) {
            (Some(now), Some(t)) if t < now => Some((now - t) / 86_400),
            _ => None,
        };
        let why = match parsed {
            Ok((cert, expiry)) => match expired(expiry) {
                Some(days) => format!("the certificate in tls.crt expired {days} days ago"),
                None => {
                    self.served.insert(format!("{namespace}/{name}"), expiry);
                    return Some(cert);
                }
            },
            Err(why) => match last_good {
                // A rotation to something unusable: the last good one serves until it expires.
                Some((cert, expiry)) if expired(expiry).is_none() => {
                    problems.push(Problem {
                        kind: ProblemKind::InvalidCertificate,
                        message: format!(
                            "TLS Secret {namespace}/{name}: {why}; the last good certificate keeps serving{}",
                            expiry.map_or(String::new(), |t| format!(" until it expires ({})", rfc3339(t)))
                        ),
                    });
                    self.served.insert(format!("{namespace}/{name}"), expiry);
                    return Some(cert);
                }
                _ => why,
            },
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

/// Unix seconds as an RFC 3339 UTC time.
fn rfc3339(t: i64) -> String {
    jiff::Timestamp::from_second(t).map_or_else(|_| t.to_string(), |ts| ts.to_string())
}
