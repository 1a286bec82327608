//! JSON Web Key Sets (RFC 7517) parsed once into keys ring can verify with: RSA (`n`, `e`),
//! EC P-256 / P-384 (`x`, `y`), OKP Ed25519 (`x`) and, only for HS256, `oct` (`k`). A key
//! that cannot be used is skipped with a note, so one odd entry in a provider's set (an
//! encryption key, a curve we do not verify) never takes the others down.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::Algorithm;

/// Largest JWKS document accepted (a provider's set is a few KiB).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// One usable public (or, for `oct`, shared) key.
#[derive(Clone)]
pub struct Jwk {
    /// `kid`, when the set names it.
    pub kid: Option<Box<str>>,
    /// `alg`, when the set pins the key to one algorithm.
    pub alg: Option<Algorithm>,
    /// The key material.
    pub key: KeyMaterial,
}

/// The key material of a [`Jwk`].
#[derive(Clone)]
pub enum KeyMaterial {
    /// An RSA public key: modulus and exponent, big-endian.
    Rsa {
        /// `n`.
        n: Vec<u8>,
        /// `e`.
        e: Vec<u8>,
    },
    /// An uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
    /// An uncompressed P-384 point.
    P384(Vec<u8>),
    /// An Ed25519 public key.
    Ed25519(Vec<u8>),
    /// A shared HMAC secret (only for HS256, only when the route allows it).
    Oct(Vec<u8>),
}

impl KeyMaterial {
    /// Whether this key may verify `alg`: the key's type decides, never the token's header,
    /// so an RSA public key can never be used as an HMAC secret (algorithm confusion).
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        matches!(
            (self, alg),
            (
                KeyMaterial::Rsa { .. },
                RS256 | RS384 | RS512 | PS256 | PS384 | PS512
            ) | (KeyMaterial::P256(_), ES256)
                | (KeyMaterial::P384(_), ES384)
                | (KeyMaterial::Ed25519(_), EdDSA)
                | (KeyMaterial::Oct(_), HS256)
        )
    }
}

impl fmt::Debug for Jwk {
    // Key bytes stay out of logs; `oct` ones are secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.key {
            KeyMaterial::Rsa { .. } => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::P384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
            KeyMaterial::Oct(_) => "oct",
        };
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("kty", &kind)
            .finish()
    }
}

/// The usable keys of a JWKS.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    /// Keys in the set's order.
    pub keys: Vec<Jwk>,
    /// Why entries were skipped, for the route's report.
    pub skipped: Vec<String>,
}

impl KeySet {
    /// The keys that may verify a token signed with `alg` and naming `kid`: with a `kid`, only
    /// keys of that id; without one, every key of the right type.
    pub fn candidates<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Jwk> {
        self.keys.iter().filter(move |k| {
            k.key.fits(alg)
                && k.alg.is_none_or(|a| a == alg)
                && kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))
        })
    }

    /// Whether a key has this id.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Why a JWKS document is unusable as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwksError {
    /// Larger than [`MAX_JWKS_BYTES`].
    #[error("JWKS is larger than {MAX_JWKS_BYTES} bytes")]
    TooLarge,
    /// Not a JSON object with a `keys` array.
    #[error("not a JWKS (a JSON object with a \"keys\" array): {0}")]
    NotJwks(String),
    /// No entry could be used.
    #[error("JWKS has no usable key{}", if .0.is_empty() { String::new() } else { format!(" ({})", .0.join("; ")) })]
    NoUsableKey(Vec<String>),
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    k: Option<String>,
}

/// Parses a JWKS. `allow_oct` admits `oct` (HMAC) keys; they are skipped otherwise, so a
/// shared secret is only ever used where a route asked for HS256 from a Secret.
pub fn parse_jwks(bytes: &[u8], allow_oct: bool) -> Result<KeySet, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge);
    }
    let doc: Document =
        serde_json::from_slice(bytes).map_err(|e| JwksError::NotJwks(e.to_string()))?;
    let mut set = KeySet::default();
    for (i, value) in doc.keys.into_iter().enumerate() {
        let raw: RawKey = match serde_json::from_value(value) {
            Ok(raw) => raw,
            Err(e) => {
                set.skipped.push(format!("keys[{i}]: {e}"));
                continue;
            }
        };
        match key(raw, allow_oct) {
            Ok(Some(jwk)) => set.keys.push(jwk),
            Ok(None) => {}
            Err(why) => set.skipped.push(format!("keys[{i}]: {why}")),
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKey(set.skipped));
    }
    Ok(set)
}

/// One entry: `Ok(None)` for an encryption key (not ours to use, not a problem either).
fn key(raw: RawKey, allow_oct: bool) -> Result<Option<Jwk>, String> {
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(name) => match Algorithm::from_name(name) {
            Some(alg) => Some(alg),
            None => {
                return Err(format!(
                    "alg {name:?} is not a signature algorithm wsgate verifies"
                ));
            }
        },
    };
    let field = |name: &str, v: Option<String>| -> Result<Vec<u8>, String> {
        let v = v.ok_or_else(|| format!("{} key without {name}", raw.kty))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("{name} is not base64url"))
    };
    let key = match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("RSA", _) => {
            let n = field("n", raw.n)?;
            let e = field("e", raw.e)?;
            // ring refuses moduli under 2048 bits at verification; say so here.
            let bits = n.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(format!("RSA key of {bits} bits; at least 2048 are needed"));
            }
            KeyMaterial::Rsa { n, e }
        }
        ("EC", Some(crv @ ("P-256" | "P-384"))) => {
            let size = if crv == "P-256" { 32 } else { 48 };
            let (x, y) = (field("x", raw.x)?, field("y", raw.y)?);
            if x.len() != size || y.len() != size {
                return Err(format!("{crv} coordinates must be {size} bytes"));
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if size == 32 {
                KeyMaterial::P256(point)
            } else {
                KeyMaterial::P384(point)
            }
        }
        ("OKP", Some("Ed25519")) => {
            let x = field("x", raw.x)?;
            if x.len() != 32 {
                return Err("Ed25519 x must be 32 bytes".into());
            }
            KeyMaterial::Ed25519(x)
        }
        ("oct", _) if !allow_oct => {
            return Err("oct (HMAC) keys are only used with allowHS256 from a Secret".into());
        }
        ("oct", _) => {
            let k = field("k", raw.k)?;
            // RFC 7518 §3.2: a key at least as long as the hash output.
            if k.len() < 32 {
                return Err("an HS256 key must be at least 32 bytes".into());
            }
            KeyMaterial::Oct(k)
        }
        (kty, crv) => {
            return Err(format!(
                "kty {kty:?}{} is not supported",
                crv.map(|c| format!(" crv {c:?}")).unwrap_or_default()
            ));
        }
    };
    let jwk = Jwk {
        kid: raw.kid.map(Into::into),
        alg,
        key,
    };
    if let Some(alg) = jwk.alg {
        if !jwk.key.fits(alg) {
            return Err(format!("alg {} does not fit the key type", alg.name()));
        }
    }
    Ok(Some(jwk))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_what_it_cannot_use_and_keeps_the_rest() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = format!(
            r#"{{"keys":[
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","kid":"a"}},
              {{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}},
              {{"kty":"RSA","n":"AQAB","e":"AQAB"}},
              {{"kty":"OKP","crv":"Ed25519","x":"{x}","use":"enc"}},
              {{"kty":"oct","k":"{x}"}},
              "not an object"
            ]}}"#
        );
        let set = parse_jwks(doc.as_bytes(), false).unwrap();
        assert_eq!(set.keys.len(), 1);
        assert_eq!(set.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(set.skipped.len(), 4, "{:?}", set.skipped);
        assert!(set.skipped.iter().any(|s| s.contains("2048")));
        assert!(set.skipped.iter().any(|s| s.contains("allowHS256")));
        // With HMAC allowed, the oct key is kept.
        assert_eq!(parse_jwks(doc.as_bytes(), true).unwrap().keys.len(), 2);
    }

    #[test]
    fn refuses_documents_that_are_not_a_set() {
        for bad in [
            &b"[]"[..],
            b"{}",
            b"{\"keys\":{}}",
            b"nonsense",
            b"{\"keys\":[]}",
        ] {
            assert!(
                parse_jwks(bad, false).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_JWKS_BYTES + 1];
        assert_eq!(parse_jwks(&huge, false).err(), Some(JwksError::TooLarge));
    }

    #[test]
    fn a_key_pinned_to_an_algorithm_is_offered_for_that_one_only() {
        let x = URL_SAFE_NO_PAD.encode([7u8; 32]);
        let doc = format!(r#"{{"keys":[{{"kty":"oct","k":"{x}","alg":"HS256","kid":"h"}}]}}"#);
        let set = parse_jwks(doc.as_bytes(), true).unwrap();
        assert_eq!(set.candidates(Algorithm::HS256, Some("h")).count(), 1);
        assert_eq!(set.candidates(Algorithm::HS256, Some("other")).count(), 0);
        assert_eq!(set.candidates(Algorithm::RS256, None).count(), 0);
        // A key pinned to an algorithm of another key type is refused outright.
        let doc = format!(r#"{{"keys":[{{"kty":"oct","k":"{x}","alg":"RS256"}}]}}"#);
        assert!(parse_jwks(doc.as_bytes(), true).is_err());
    }
}
