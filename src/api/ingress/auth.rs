//! The auth annotations of an Ingress: ingress-nginx's external auth (`auth-url`,
//! `auth-signin`, `auth-response-headers`, `auth-method`, `auth-cache-key`,
//! `auth-cache-duration`) and wsgate's JWT (`wsgate.dev/auth-jwt-*`).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::{HeaderName, Method, Uri};
use rustls_pki_types::ServerName;

use super::{NGINX, Reader, WSGATE, above_zero};
use crate::api::parse_duration;
use crate::model::{
    Algorithm, Auth, AuthCache, Backend, BackendProtocol, BackendTarget, BackendTls, CacheKey,
    ClaimHeader, ExternalAuth, JwksSource, JwtAuth, ServicePort, TokenSource,
};

/// The Ingress's auth, if its annotations ask for any.
pub(super) fn read_auth(r: &mut Reader<'_>) -> Option<Arc<Auth>> {
    let external = r
        .parsed(NGINX, "auth-url", auth_url)
        .map(|(backend, path)| {
            let method = r.parsed(NGINX, "auth-method", |v| {
                Method::from_bytes(v.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("{v:?} is not an HTTP method"))
            });
            ExternalAuth {
                backend,
                path: path.into(),
                method,
                request_headers: Vec::new(),
                response_headers: r
                    .parsed(NGINX, "auth-response-headers", header_list)
                    .unwrap_or_default(),
                timeout: ExternalAuth::DEFAULT_TIMEOUT,
                cache: cache(r),
                signin: r.parsed(NGINX, "auth-signin", |v| match v.parse::<Uri>() {
                    Ok(u) if u.host().is_some() => Ok(u),
                    _ => Err(format!("{v:?} is not an absolute URL")),
                }),
            }
        });
    let jwt = jwt(r);
    (jwt.is_some() || external.is_some()).then(|| Arc::new(Auth { jwt, external }))
}

/// `auth-url`: an IP address, or a Service as `NAME.NAMESPACE.svc[.cluster.local]` (or a
/// bare `NAME` in the Ingress's namespace), with the path of the check.
fn auth_url(v: &str) -> Result<(Backend, String), String> {
    let uri: Uri = v.parse().map_err(|_| format!("{v:?} is not a URL"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(format!("{v:?}: the scheme must be http or https")),
    };
    let host = uri.host().ok_or_else(|| format!("{v:?} has no host"))?;
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let target = match bare.parse::<IpAddr>() {
        Ok(ip) => BackendTarget::Address(SocketAddr::new(ip, port)),
        Err(_) => {
            let name = bare
                .strip_suffix(".svc.cluster.local")
                .or_else(|| bare.strip_suffix(".svc"))
                .unwrap_or(bare);
            let (name, namespace) = match name.split_once('.') {
                Some((n, ns)) if !ns.contains('.') => (n, Some(ns.to_string())),
                None => (name, None),
                Some(_) => {
                    return Err(format!(
                        "{v:?}: the host must be an IP or a Service (NAME.NAMESPACE.svc.cluster.local); wsgate does not resolve other names"
                    ));
                }
            };
            crate::model::check_dns_label(name).map_err(|why| format!("{v:?}: {why}"))?;
            BackendTarget::Service {
                namespace,
                name: name.to_string(),
                port: ServicePort::Number(port),
            }
        }
    };
    let backend = Backend {
        tls: tls.then(|| BackendTls {
            server_name: ServerName::try_from(bare.to_string())
                .unwrap_or_else(|_| ServerName::IpAddress(std::net::Ipv4Addr::UNSPECIFIED.into())),
            // As ingress-nginx: the auth service's certificate is not verified.
            ca: None,
        }),
        target,
        protocol: BackendProtocol::Http,
        field: format!("metadata.annotations[{NGINX}auth-url]").into(),
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((backend, path))
}

fn header_list(v: &str) -> Result<Vec<HeaderName>, String> {
    v.split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| HeaderName::try_from(h).map_err(|_| format!("{h:?} is not a header name")))
        .collect()
}

/// `auth-cache-key` (`$http_NAME` or `$cookie_NAME`) with `auth-cache-duration`
/// (ingress-nginx's `200 202 401 5m`: the last word is the time; only 2xx answers are
/// cached here).
fn cache(r: &mut Reader<'_>) -> Option<AuthCache> {
    let key = r.parsed(NGINX, "auth-cache-key", |v| {
        if let Some(h) = v.strip_prefix("$http_") {
            let name = h.replace('_', "-");
            return HeaderName::try_from(name.as_str())
                .map(CacheKey::Header)
                .map_err(|_| format!("{v:?}: not a header"));
        }
        match v.strip_prefix("$cookie_") {
            Some(c) if !c.is_empty() => Ok(CacheKey::Cookie(c.into())),
            _ => Err(format!(
                "{v:?}: wsgate keys the cache by one $http_NAME or $cookie_NAME"
            )),
        }
    })?;
    let ttl = r
        .parsed(NGINX, "auth-cache-duration", |v| {
            let last = v.split_whitespace().last().unwrap_or("");
            above_zero(last)
        })
        .unwrap_or(std::time::Duration::from_secs(60));
    Some(AuthCache { key, ttl })
}

/// `wsgate.dev/auth-jwt-*`: the JWKS (`-jwks-url`, or `-jwks-configmap` as `NAME[/KEY]`),
/// `-issuer`, `-audiences`, `-token-from` (`bearer`, `cookie:NAME`, `query:NAME`,
/// `protocol:PREFIX`, comma-separated, in order) and `-claims-to-headers` (`CLAIM:HEADER,...`).
fn jwt(r: &mut Reader<'_>) -> Option<JwtAuth> {
    let url = r.parsed(WSGATE, "auth-jwt-jwks-url", |v| match v.parse::<Uri>() {
        Ok(u) if u.scheme_str() == Some("https") && u.host().is_some() => Ok(u),
        _ => Err(format!("{v:?} is not an https URL")),
    });
    let map = r.parsed(WSGATE, "auth-jwt-jwks-configmap", |v| {
        let (name, key) = v.split_once('/').unwrap_or((v, "jwks.json"));
        crate::model::check_object_name(name).map_err(|why| format!("{v:?}: {why}"))?;
        Ok(JwksSource::ConfigMap {
            name: name.to_string(),
            key: key.to_string(),
        })
    });
    let jwks = match (url, map) {
        (Some(url), None) => JwksSource::Url {
            url,
            refresh: JwtAuth::DEFAULT_REFRESH,
            ca: None,
        },
        (None, Some(map)) => map,
        (None, None) => return None,
        (Some(_), Some(_)) => {
            r.bad(
                WSGATE,
                "auth-jwt-jwks-url",
                "set auth-jwt-jwks-url or auth-jwt-jwks-configmap, not both",
            );
            return None;
        }
    };
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    let from = r
        .parsed(WSGATE, "auth-jwt-token-from", |v| {
            list(v)
                .iter()
                .map(|place| match place.split_once(':') {
                    None if place == "bearer" => Ok(TokenSource::Bearer),
                    Some(("cookie", n)) if !n.is_empty() => Ok(TokenSource::Cookie(n.into())),
                    Some(("query", n)) if !n.is_empty() => Ok(TokenSource::Query(n.into())),
                    Some(("protocol", p)) if !p.is_empty() => Ok(TokenSource::Protocol(p.into())),
                    _ => Err(format!(
                        "{place:?} is not bearer, cookie:NAME, query:NAME or protocol:PREFIX"
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .unwrap_or_else(|| vec![TokenSource::Bearer]);
    let claims_to_headers = r
        .parsed(WSGATE, "auth-jwt-claims-to-headers", |v| {
            list(v)
                .iter()
                .map(|pair| {
                    let (claim, header) = pair
                        .split_once(':')
                        .ok_or_else(|| format!("{pair:?} is not CLAIM:HEADER"))?;
                    let header = HeaderName::try_from(header.trim())
                        .map_err(|_| format!("{header:?} is not a header name"))?;
                    Ok(ClaimHeader {
                        claim: claim.trim().into(),
                        header,
                    })
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .unwrap_or_default();
    Some(JwtAuth {
        issuer: r.wsgate("auth-jwt-issuer").map(Into::into),
        audiences: r
            .wsgate("auth-jwt-audiences")
            .map(|v| list(v).into_iter().map(Into::into).collect())
            .unwrap_or_default(),
        jwks,
        algorithms: Algorithm::ASYMMETRIC.to_vec(),
        clock_skew: r
            .parsed(WSGATE, "auth-jwt-clock-skew", |v| {
                parse_duration(v).map_err(|e| e.to_string())
            })
            .unwrap_or(JwtAuth::DEFAULT_SKEW),
        from,
        claims_to_headers,
        close_on_expiry: r
            .flag(WSGATE, "auth-jwt-close-on-expiry", true)
            .then_some(std::time::Duration::ZERO),
    })
}
