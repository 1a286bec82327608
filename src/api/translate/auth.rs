//! The `auth` block of a rule (or of a WebSocketPolicy) into [`model::Auth`].

use http::HeaderName;

use super::{Problems, backend, positive_duration};
use crate::api::auth::{
    AuthCacheSpec, AuthSpec, ExternalAuthSpec, JwtAlgorithm, JwtSpec, TokenFrom,
};
use crate::api::parse_duration;
use crate::model::{
    self, Algorithm, AuthCache, CaRef, CacheKey, ClaimHeader, ExternalAuth, FieldError, JwksSource,
    JwtAuth, TokenSource, check_object_name,
};

/// Where a JWKS key defaults to.
const DEFAULT_JWKS_KEY: &str = "jwks.json";

/// [`auth`] for callers outside this module: problems go to `errors`.
pub(crate) fn auth_into(
    errors: &mut Vec<FieldError>,
    namespace: &str,
    prefix: &str,
    spec: &AuthSpec,
) -> Option<model::Auth> {
    let mut p = Problems(std::mem::take(errors));
    let out = auth(&mut p, namespace, prefix, spec);
    *errors = p.0;
    out
}

/// The auth block whose fields sit under `prefix` (`spec.rules[0].auth`); `None` if it has a
/// problem (each one added to `p`).
pub(super) fn auth(
    p: &mut Problems,
    namespace: &str,
    prefix: &str,
    spec: &AuthSpec,
) -> Option<model::Auth> {
    if spec.jwt.is_none() && spec.external.is_none() {
        p.add(prefix, "set jwt, external, or both");
        return None;
    }
    let before = p.0.len();
    let jwt = spec
        .jwt
        .as_ref()
        .and_then(|j| jwt(p, &format!("{prefix}.jwt"), j));
    let external = spec
        .external
        .as_ref()
        .and_then(|e| external(p, namespace, &format!("{prefix}.external"), e));
    (p.0.len() == before).then_some(model::Auth { jwt, external })
}

fn jwt(p: &mut Problems, prefix: &str, spec: &JwtSpec) -> Option<JwtAuth> {
    let at = |field: &str| format!("{prefix}.{field}");
    let hs256 = spec.allow_hs256.unwrap_or(false);
    let jwks = jwks(p, &at("jwks"), spec);
    if hs256 && spec.jwks.secret.is_none() {
        p.add(
            at("allowHS256"),
            "HS256 keys are shared secrets: they must come from jwks.secret",
        );
    }
    let mut algorithms: Vec<Algorithm> = if spec.algorithms.is_empty() {
        Algorithm::ASYMMETRIC.to_vec()
    } else {
        spec.algorithms.iter().map(|a| algorithm(*a)).collect()
    };
    if spec.algorithms.contains(&JwtAlgorithm::HS256) && !hs256 {
        p.add(
            at("algorithms"),
            "HS256 needs allowHS256: true (and jwks.secret)",
        );
    }
    if hs256 && !algorithms.contains(&Algorithm::HS256) {
        algorithms.push(Algorithm::HS256);
    }
    let skew = match &spec.clock_skew {
        None => Some(JwtAuth::DEFAULT_SKEW),
        Some(text) => duration(p, at("clockSkew"), text),
    };
    let grace = match &spec.expiry_grace {
        None => Some(std::time::Duration::ZERO),
        Some(text) => duration(p, at("expiryGrace"), text),
    };
    let mut from = Vec::with_capacity(spec.token_from.len().max(1));
    for (i, place) in spec.token_from.iter().enumerate() {
        if let Some(source) = token_source(p, &at(&format!("tokenFrom[{i}]")), place) {
            from.push(source);
        }
    }
    if spec.token_from.is_empty() {
        from.push(TokenSource::Bearer);
    }
    let mut claims_to_headers = Vec::with_capacity(spec.claims_to_headers.len());
    for (i, c) in spec.claims_to_headers.iter().enumerate() {
        let field = at(&format!("claimsToHeaders[{i}]"));
        if c.claim.is_empty() || c.claim.split('.').any(str::is_empty) {
            p.add(
                format!("{field}.claim"),
                "a claim name, or names joined by '.'",
            );
        }
        if let Some(header) = header_name(p, format!("{field}.header"), &c.header) {
            claims_to_headers.push(ClaimHeader {
                claim: c.claim.as_str().into(),
                header,
            });
        }
    }
    if let Some(issuer) = &spec.issuer {
        if issuer.is_empty() {
            p.add(
                at("issuer"),
                "must not be empty (leave it out to accept any issuer)",
            );
        }
    }
    Some(JwtAuth {
        issuer: spec.issuer.as_deref().map(Into::into),
        audiences: spec.audiences.iter().map(|a| a.as_str().into()).collect(),
        jwks: jwks?,
        algorithms,
        clock_skew: skew?,
        from,
        claims_to_headers,
        close_on_expiry: match spec.close_on_expiry.unwrap_or(true) {
            true => Some(grace?),
            false => None,
        },
    })
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::RS256 => Algorithm::RS256,
        JwtAlgorithm::RS384 => Algorithm::RS384,
        JwtAlgorithm::RS512 => Algorithm::RS512,
        JwtAlgorithm::PS256 => Algorithm::PS256,
        JwtAlgorithm::PS384 => Algorithm::PS384,
        JwtAlgorithm::PS512 => Algorithm::PS512,
        JwtAlgorithm::ES256 => Algorithm::ES256,
        JwtAlgorithm::ES384 => Algorithm::ES384,
        JwtAlgorithm::EdDSA => Algorithm::EdDSA,
        JwtAlgorithm::HS256 => Algorithm::HS256,
    }
}

fn jwks(p: &mut Problems, prefix: &str, spec: &JwtSpec) -> Option<JwksSource> {
    let j = &spec.jwks;
    let at = |field: &str| format!("{prefix}.{field}");
    let object = |p: &mut Problems, field: &str, r: &crate::api::auth::KeyRef| {
        if let Err(why) = check_object_name(&r.name) {
            p.add(at(&format!("{field}.name")), why);
        }
        let key = r
            .key
            .clone()
            .unwrap_or_else(|| DEFAULT_JWKS_KEY.to_string());
        if key.is_empty() {
            p.add(at(&format!("{field}.key")), "must not be empty");
        }
        (r.name.clone(), key)
    };
    if j.url.is_none() && (j.refresh_interval.is_some() || j.ca_secret_name.is_some()) {
        p.add(prefix, "refreshInterval and caSecretName go with url");
    }
    match (&j.config_map, &j.secret, &j.url) {
        (Some(r), None, None) => {
            let (name, key) = object(p, "configMap", r);
            Some(JwksSource::ConfigMap { name, key })
        }
        (None, Some(r), None) => {
            let (name, key) = object(p, "secret", r);
            Some(JwksSource::Secret { name, key })
        }
        (None, None, Some(url)) => {
            let parsed = match url.parse::<http::Uri>() {
                Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => Some(u),
                _ => {
                    p.add(at("url"), format!("{url:?} is not an https URL"));
                    None
                }
            };
            let refresh = match &j.refresh_interval {
                None => Some(JwtAuth::DEFAULT_REFRESH),
                Some(text) => {
                    positive_duration(p, at("refreshInterval"), text, "must be greater than 0")
                }
            };
            let ca = j
                .ca_secret_name
                .as_ref()
                .and_then(|name| match check_object_name(name) {
                    Ok(()) => Some(CaRef::Secret(name.clone())),
                    Err(why) => {
                        p.add(at("caSecretName"), why);
                        None
                    }
                });
            Some(JwksSource::Url {
                url: parsed?,
                refresh: refresh?,
                ca,
            })
        }
        _ => {
            p.add(prefix, "set exactly one of configMap, secret and url");
            None
        }
    }
}

fn token_source(p: &mut Problems, at: &str, place: &TokenFrom) -> Option<TokenSource> {
    let set = [
        place.bearer.is_some(),
        place.cookie.is_some(),
        place.query.is_some(),
        place.protocol_prefix.is_some(),
    ];
    if set.iter().filter(|s| **s).count() != 1 {
        p.add(
            at,
            "set exactly one of bearer, cookie, query and protocolPrefix",
        );
        return None;
    }
    let token_chars = |p: &mut Problems, field: &str, name: &str| {
        if name.is_empty() || !super::is_token(name) {
            p.add(
                format!("{at}.{field}"),
                format!("{name:?} is not a valid name"),
            );
            return None;
        }
        Some(name.into())
    };
    if place.bearer == Some(false) {
        p.add(
            format!("{at}.bearer"),
            "set bearer: true, or leave this entry out",
        );
        return None;
    }
    match place {
        TokenFrom {
            bearer: Some(true), ..
        } => Some(TokenSource::Bearer),
        TokenFrom {
            cookie: Some(c), ..
        } => token_chars(p, "cookie", c).map(TokenSource::Cookie),
        TokenFrom { query: Some(q), .. } => token_chars(p, "query", q).map(TokenSource::Query),
        TokenFrom {
            protocol_prefix: Some(pre),
            ..
        } => token_chars(p, "protocolPrefix", pre).map(TokenSource::Protocol),
        _ => None,
    }
}

fn external(
    p: &mut Problems,
    namespace: &str,
    prefix: &str,
    spec: &ExternalAuthSpec,
) -> Option<ExternalAuth> {
    let at = |field: &str| format!("{prefix}.{field}");
    let backend = backend(p, namespace, &at("backend"), &spec.backend);
    let path = spec.path.as_deref().unwrap_or("/");
    if !path.starts_with('/') || path.parse::<http::uri::PathAndQuery>().is_err() {
        p.add(at("path"), format!("{path:?} is not an absolute path"));
    }
    let headers = |p: &mut Problems, field: &str, names: &[String]| -> Vec<HeaderName> {
        names
            .iter()
            .enumerate()
            .filter_map(|(i, h)| header_name(p, at(&format!("{field}[{i}]")), h))
            .collect()
    };
    let request_headers = headers(p, "requestHeaders", &spec.request_headers);
    let response_headers = headers(p, "responseHeaders", &spec.response_headers);
    let timeout = match &spec.timeout {
        None => Some(ExternalAuth::DEFAULT_TIMEOUT),
        Some(t) => positive_duration(p, at("timeout"), t, "must be greater than 0"),
    };
    let cache = spec.cache.as_ref().map(|c| cache(p, &at("cache"), c));
    let signin = spec
        .signin_url
        .as_ref()
        .and_then(|url| match url.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Some(u)
            }
            _ => {
                p.add(
                    at("signinURL"),
                    format!("{url:?} is not an absolute http(s) URL"),
                );
                None
            }
        });
    Some(ExternalAuth {
        backend: backend?,
        path: path.into(),
        method: None,
        request_headers,
        response_headers,
        timeout: timeout?,
        cache: cache.flatten(),
        signin,
    })
}

fn cache(p: &mut Problems, prefix: &str, spec: &AuthCacheSpec) -> Option<AuthCache> {
    let key = match (&spec.header, &spec.cookie) {
        (Some(h), None) => header_name(p, format!("{prefix}.header"), h).map(CacheKey::Header),
        (None, Some(c)) if super::is_token(c) => Some(CacheKey::Cookie(c.as_str().into())),
        (None, Some(c)) => {
            p.add(
                format!("{prefix}.cookie"),
                format!("{c:?} is not a valid cookie name"),
            );
            None
        }
        _ => {
            p.add(prefix, "key the cache by a header or by a cookie");
            None
        }
    };
    let ttl = positive_duration(
        p,
        format!("{prefix}.duration"),
        &spec.duration,
        "must be greater than 0",
    );
    Some(AuthCache {
        key: key?,
        ttl: ttl?,
    })
}

fn header_name(p: &mut Problems, at: String, name: &str) -> Option<HeaderName> {
    match HeaderName::try_from(name) {
        Ok(h) => Some(h),
        Err(_) => {
            p.add(at, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

/// A duration that may be zero.
fn duration(p: &mut Problems, at: String, text: &str) -> Option<std::time::Duration> {
    match parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            p.add(at, e.to_string());
            None
        }
    }
}
