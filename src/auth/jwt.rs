//! JSON Web Tokens (RFC 7519) in the JWS compact form (RFC 7515 §7.1), read the strict way:
//! exactly three base64url segments without padding, a JSON header whose `alg` must be one the
//! route allows and fit the key's type (never `none`), no `crit` extensions (RFC 7515
//! §4.1.11: we understand none), a signature checked by ring, then `exp` (required), `nbf`,
//! `iat`, `iss` and `aud` within a small clock skew. Nothing here does I/O or reads a clock.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::{hmac, signature};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::jwk::{KeyMaterial, KeySet};
use crate::model::Algorithm;

/// Longest token accepted (headers are bounded anyway; this bounds the work).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a token is refused. The label goes to metrics and to `WWW-Authenticate`'s
/// `error_description`; it never repeats the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token where the route looks for one.
    #[error("no token")]
    Missing,
    /// Not three base64url segments of JSON, or too long.
    #[error("malformed token")]
    Malformed,
    /// `alg` is `none`, unknown, or not one the route allows; or `crit` is present.
    #[error("algorithm not allowed")]
    Algorithm,
    /// No key of the set fits the token's `alg` and `kid`.
    #[error("no key for the token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` (or `iat`) is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// No `exp`: wsgate closes sockets when their token expires, so it must have one.
    #[error("token has no exp")]
    NoExpiry,
    /// `iss` is not the route's issuer.
    #[error("wrong issuer")]
    Issuer,
    /// `aud` names none of the route's audiences.
    #[error("wrong audience")]
    Audience,
    /// The key set could not be had (never fetched, no usable key).
    #[error("no verification keys")]
    NoKeys,
}

impl TokenError {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed => "malformed",
            TokenError::Algorithm => "algorithm",
            TokenError::UnknownKey => "unknown_key",
            TokenError::Signature => "signature",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::NoExpiry => "no_exp",
            TokenError::Issuer => "issuer",
            TokenError::Audience => "audience",
            TokenError::NoKeys => "no_keys",
        }
    }
}

/// A token split and its header read; not yet verified.
#[derive(Debug)]
pub struct Token<'a> {
    /// The header's `alg`.
    pub alg: Algorithm,
    /// The header's `kid`.
    pub kid: Option<String>,
    signing_input: &'a [u8],
    signature: Vec<u8>,
    payload: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// What the route checks besides the signature.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Required `iss`.
    pub issuer: Option<&'a str>,
    /// `aud` must name one of these (none: `aud` is not checked).
    pub audiences: &'a [Box<str>],
    /// Seconds of clock difference tolerated on `exp`, `nbf` and `iat`.
    pub skew: u64,
}

/// A verified token's claims.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// `exp`, Unix seconds.
    pub exp: u64,
    /// Every claim, for copying into headers.
    pub all: Map<String, Value>,
}

impl<'a> Token<'a> {
    /// Splits `raw` and reads its header; `allowed` are the route's algorithms.
    pub fn parse(raw: &'a str, allowed: &[Algorithm]) -> Result<Self, TokenError> {
        if raw.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Malformed);
        }
        let mut parts = raw.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| TokenError::Malformed);
        let header: Header =
            serde_json::from_slice(&decode(header)?).map_err(|_| TokenError::Malformed)?;
        if header.crit.is_some() {
            return Err(TokenError::Algorithm);
        }
        let alg = Algorithm::from_name(&header.alg).ok_or(TokenError::Algorithm)?;
        if !allowed.contains(&alg) {
            return Err(TokenError::Algorithm);
        }
        let signing_len = raw.len() - signature.len() - 1;
        Ok(Token {
            alg,
            kid: header.kid,
            signing_input: &raw.as_bytes()[..signing_len],
            signature: decode(signature)?,
            payload: decode(payload)?,
        })
    }

    /// Verifies the signature with a key of `keys` that fits `alg` and `kid`.
    pub fn verify(&self, keys: &KeySet) -> Result<(), TokenError> {
        let mut tried = false;
        for jwk in keys.candidates(self.alg, self.kid.as_deref()) {
            tried = true;
            if verify_one(self.alg, &jwk.key, self.signing_input, &self.signature) {
                return Ok(());
            }
        }
        Err(if tried {
            TokenError::Signature
        } else {
            TokenError::UnknownKey
        })
    }

    /// Checks the claims at `now` (Unix seconds). Call only after [`Token::verify`].
    pub fn claims(&self, expect: &Expect<'_>, now: u64) -> Result<Claims, TokenError> {
        let all: Map<String, Value> =
            serde_json::from_slice(&self.payload).map_err(|_| TokenError::Malformed)?;
        let time = |name: &str| -> Result<Option<u64>, TokenError> {
            match all.get(name) {
                None => Ok(None),
                // NumericDate may carry a fraction (RFC 7519 §2); a negative one is nonsense.
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(t) if t >= 0.0 && t.is_finite() => Ok(Some(t as u64)),
                    _ => Err(TokenError::Malformed),
                },
                Some(_) => Err(TokenError::Malformed),
            }
        };
        let exp = time("exp")?.ok_or(TokenError::NoExpiry)?;
        if now >= exp.saturating_add(expect.skew) {
            return Err(TokenError::Expired);
        }
        let late = now.saturating_add(expect.skew);
        if time("nbf")?.is_some_and(|nbf| nbf > late) || time("iat")?.is_some_and(|iat| iat > late)
        {
            return Err(TokenError::NotYetValid);
        }
        if let Some(issuer) = expect.issuer {
            if all.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err(TokenError::Issuer);
            }
        }
        if !expect.audiences.is_empty() {
            let named = |a: &str| expect.audiences.iter().any(|want| **want == *a);
            let ok = match all.get("aud") {
                Some(Value::String(a)) => named(a),
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(named),
                _ => false,
            };
            if !ok {
                return Err(TokenError::Audience);
            }
        }
        Ok(Claims { exp, all })
    }
}

fn verify_one(alg: Algorithm, key: &KeyMaterial, msg: &[u8], sig: &[u8]) -> bool {
    use Algorithm::*;
    let rsa = |params: &'static signature::RsaParameters| match key {
        KeyMaterial::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
            .verify(params, msg, sig)
            .is_ok(),
        _ => false,
    };
    let unparsed = |params: &'static dyn signature::VerificationAlgorithm, bytes: &[u8]| {
        signature::UnparsedPublicKey::new(params, bytes)
            .verify(msg, sig)
            .is_ok()
    };
    match (alg, key) {
        (RS256, _) => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
        (RS384, _) => rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
        (RS512, _) => rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
        (PS256, _) => rsa(&signature::RSA_PSS_2048_8192_SHA256),
        (PS384, _) => rsa(&signature::RSA_PSS_2048_8192_SHA384),
        (PS512, _) => rsa(&signature::RSA_PSS_2048_8192_SHA512),
        (ES256, KeyMaterial::P256(point)) => unparsed(&signature::ECDSA_P256_SHA256_FIXED, point),
        (ES384, KeyMaterial::P384(point)) => unparsed(&signature::ECDSA_P384_SHA384_FIXED, point),
        (EdDSA, KeyMaterial::Ed25519(x)) => unparsed(&signature::ED25519, x),
        // Constant-time comparison inside ring.
        (HS256, KeyMaterial::Oct(k)) => {
            hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, k), msg, sig).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
