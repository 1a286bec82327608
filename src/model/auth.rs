//! Authentication of a rule, as every API translates it: a JWT checked by wsgate itself,
//! an external auth service asked per request (ingress-nginx `auth-url`), or both (the JWT
//! first, so a request without a valid token never costs the auth service a call).

use std::time::Duration;

use http::HeaderName;

use super::{Backend, CaRef};

/// What a rule asks of a request before it is forwarded or upgraded.
#[derive(Debug, Clone, PartialEq)]
pub struct Auth {
    /// A JSON Web Token checked at the edge.
    pub jwt: Option<JwtAuth>,
    /// An external auth service.
    pub external: Option<ExternalAuth>,
}

/// JWS signature algorithms wsgate verifies (RFC 7518 §3.1, RFC 8037 for EdDSA). `none` is
/// not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms, reason = "the names RFC 7518 gives them")]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256: a shared secret, only from a Secret and only when enabled.
    HS256,
}

impl Algorithm {
    /// Every asymmetric algorithm: the default set.
    pub const ASYMMETRIC: [Algorithm; 9] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The algorithm a JWS `alg` names, exactly as RFC 7518 spells it.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Algorithm::RS256,
            "RS384" => Algorithm::RS384,
            "RS512" => Algorithm::RS512,
            "PS256" => Algorithm::PS256,
            "PS384" => Algorithm::PS384,
            "PS512" => Algorithm::PS512,
            "ES256" => Algorithm::ES256,
            "ES384" => Algorithm::ES384,
            "EdDSA" => Algorithm::EdDSA,
            "HS256" => Algorithm::HS256,
            _ => return None,
        })
    }

    /// Its `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::HS256 => "HS256",
        }
    }
}

/// A JWT checked at the edge.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtAuth {
    /// Required `iss`.
    pub issuer: Option<Box<str>>,
    /// `aud` must name one of these; empty: not checked.
    pub audiences: Vec<Box<str>>,
    /// Where the verification keys are.
    pub jwks: JwksSource,
    /// Algorithms accepted (never `none`; HS256 only with a Secret-held key).
    pub algorithms: Vec<Algorithm>,
    /// Clock difference tolerated on `exp`, `nbf` and `iat`.
    pub clock_skew: Duration,
    /// Where the token is looked for, in order; the first place that has one is used.
    pub from: Vec<TokenSource>,
    /// Claims copied into request headers for the backend; client-sent headers of these
    /// names are always removed first.
    pub claims_to_headers: Vec<ClaimHeader>,
    /// Close a WebSocket when its token expires, this long after `exp`; `None`: never.
    pub close_on_expiry: Option<Duration>,
}

impl JwtAuth {
    /// The default clock skew.
    pub const DEFAULT_SKEW: Duration = Duration::from_secs(30);
    /// The default refresh interval of a JWKS fetched from a URL.
    pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
}

/// Where a JWKS is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// A key of a ConfigMap in the route's namespace.
    ConfigMap {
        /// Its name.
        name: String,
        /// The key holding the JWKS JSON.
        key: String,
    },
    /// A key of a Secret in the route's namespace (the only place an HS256 key may be).
    Secret {
        /// Its name.
        name: String,
        /// The key holding the JWKS JSON.
        key: String,
    },
    /// An https URL, fetched, cached and refreshed.
    Url {
        /// The URL (https).
        url: http::Uri,
        /// How often the set is fetched again.
        refresh: Duration,
        /// CAs that verify the server, when it is not publicly trusted.
        ca: Option<CaRef>,
    },
}

/// A place a token is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (RFC 6750 §2.1).
    Bearer,
    /// A cookie of this name.
    Cookie(Box<str>),
    /// A query parameter of this name (removed before forwarding).
    Query(Box<str>),
    /// A `Sec-WebSocket-Protocol` entry starting with this prefix (the entry is removed and
    /// the rest passed on): browsers cannot set headers on a WebSocket handshake.
    Protocol(Box<str>),
}

/// A claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimHeader {
    /// The claim; `a.b` reads member `b` of object claim `a`.
    pub claim: Box<str>,
    /// The header.
    pub header: HeaderName,
}

/// An external auth service (ingress-nginx `auth-url` semantics).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalAuth {
    /// The auth service.
    pub backend: Backend,
    /// Path (and query) of the check on it.
    pub path: Box<str>,
    /// The subrequest's method; `None`: the request's own.
    pub method: Option<http::Method>,
    /// Request headers sent to it besides the `X-Original-*` and forwarding ones; empty:
    /// every end-to-end header of the request.
    pub request_headers: Vec<HeaderName>,
    /// Headers of its 2xx answer copied into the request to the backend (client-sent copies
    /// removed first).
    pub response_headers: Vec<HeaderName>,
    /// Time it has to answer; then the request fails closed (503).
    pub timeout: Duration,
    /// Cache allowed answers by a key of the request.
    pub cache: Option<AuthCache>,
    /// Where a browser that got 401 is redirected to sign in (`rd` names where it was going).
    pub signin: Option<http::Uri>,
}

impl ExternalAuth {
    /// The default timeout.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
}

/// The cache of an external auth service's allowed answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCache {
    /// What identifies a client.
    pub key: CacheKey,
    /// How long an answer is reused.
    pub ttl: Duration,
}

/// What an auth cache entry is keyed by (with the rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheKey {
    /// A request header's value.
    Header(HeaderName),
    /// A cookie's value.
    Cookie(Box<str>),
}
