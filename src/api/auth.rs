//! The `auth` block of a WebSocketRoute rule and of a WebSocketPolicy: a JWT checked at the
//! edge and an external auth service (ingress-nginx `auth-url` semantics). Translated into
//! [`crate::model::Auth`] by the WebSocketRoute translate step.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Backend;

/// Authentication of a rule's requests and WebSocket upgrades. With both, the JWT is checked
/// first, so a request without a valid token never costs the auth service a call.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.jwt) || has(self.external)",
    "message": "set jwt, external, or both"
}]))]
pub struct AuthSpec {
    /// A JSON Web Token checked by wsgate: missing or invalid gets 401.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// An external auth service asked before each request or upgrade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalAuthSpec>,
}

/// A JWT checked at the edge.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Required `iss` claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub issuer: Option<String>,
    /// The `aud` claim must name one of these. Empty: `aud` is not checked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(max = 1024)))]
    pub audiences: Vec<String>,
    /// Where the verification keys (a JWKS) are: exactly one of configMap, secret, url.
    pub jwks: JwksSpec,
    /// Accepted algorithms (default: every asymmetric one: RS256, RS384, RS512, PS256, PS384,
    /// PS512, ES256, ES384, EdDSA). `none` never is.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Accept HS256 with an `oct` key. Only with `jwks.secret`: a shared secret must not sit in
    /// a ConfigMap or behind a URL.
    #[serde(
        default,
        rename = "allowHS256",
        skip_serializing_if = "Option::is_none"
    )]
    pub allow_hs256: Option<bool>,
    /// Clock difference tolerated on `exp`, `nbf` and `iat` (default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub clock_skew: Option<String>,
    /// Where the token is looked for, in order (default: `Authorization: Bearer`). Browsers
    /// cannot set headers on a WebSocket handshake: use a cookie, a query parameter or a
    /// `Sec-WebSocket-Protocol` entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub token_from: Vec<TokenFrom>,
    /// Claims copied into request headers for the backend. Client-sent headers of these
    /// names are always removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub claims_to_headers: Vec<ClaimToHeader>,
    /// Close a WebSocket when its token expires: Close 1008 to the client, 1001 to the
    /// backend (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub close_on_expiry: Option<bool>,
    /// How long after `exp` the socket is closed (default `0s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub expiry_grace: Option<String>,
}

/// A JWS signature algorithm.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[allow(clippy::upper_case_acronyms, reason = "the names RFC 7518 gives them")]
pub enum JwtAlgorithm {
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
    /// HMAC SHA-256 (needs allowHS256 and a Secret).
    HS256,
}

/// Where a JWKS is. Exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1",
    "message": "set exactly one of configMap, secret and url"
}]))]
pub struct JwksSpec {
    /// A key of a ConfigMap in the route's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<KeyRef>,
    /// A key of a Secret in the route's namespace (the only place for an HS256 key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<KeyRef>,
    /// An https URL (an identity provider's `jwks_uri`), fetched, cached and refreshed; the
    /// last good set keeps serving when a fetch fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = r"^https://"))]
    pub url: Option<String>,
    /// With `url`: how often the set is fetched again (default `5m`). A token with an
    /// unknown `kid` also fetches it again (at most every 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub refresh_interval: Option<String>,
    /// With `url`: a Secret in the route's namespace whose `ca.crt` verifies the server (for a
    /// private CA); default: the system's trusted CAs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub ca_secret_name: Option<String>,
}

/// A key of a ConfigMap or Secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    /// The object's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key (default `jwks.json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub key: Option<String>,
}

/// One place a token is looked for. Exactly one field.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "(has(self.bearer) ? 1 : 0) + (has(self.cookie) ? 1 : 0) + (has(self.query) ? 1 : 0) + (has(self.protocolPrefix) ? 1 : 0) == 1",
    "message": "set exactly one of bearer, cookie, query and protocolPrefix"
}]))]
pub struct TokenFrom {
    /// `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer: Option<bool>,
    /// A cookie of this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub cookie: Option<String>,
    /// A query parameter of this name; it is removed before the request is forwarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub query: Option<String>,
    /// A `Sec-WebSocket-Protocol` entry starting with this prefix (`access_token.` takes
    /// `access_token.eyJ…`); the entry is removed and the others passed on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub protocol_prefix: Option<String>,
}

/// A claim copied into a request header.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimToHeader {
    /// The claim (`sub`; `a.b` for member `b` of object claim `a`). Strings, numbers and
    /// booleans are copied; lists of them joined with `,`.
    #[schemars(length(min = 1, max = 256))]
    pub claim: String,
    /// The request header (`X-User`).
    #[schemars(length(min = 1, max = 256))]
    pub header: String,
}

/// An external auth service (ingress-nginx `auth-url`): a 2xx answer lets the request
/// through; 401, 403 and any other answer go back to the client as they came; no answer in
/// time, or none at all, fails closed with 503.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuthSpec {
    /// The auth service: a Service port or an address, with TLS if it needs it.
    pub backend: Backend,
    /// The path (and query) of the check (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024), regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// Request headers sent to the service (besides `X-Original-URL`, `X-Original-Method` and
    /// the forwarding headers). Empty: every end-to-end header of the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub request_headers: Vec<String>,
    /// Headers of the service's 2xx answer copied into the request to the backend
    /// (ingress-nginx `auth-response-headers`); client-sent copies are removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub response_headers: Vec<String>,
    /// Time the service has to answer (default `5s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub timeout: Option<String>,
    /// Reuse a 2xx answer for requests with the same key, for `duration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<AuthCacheSpec>,
    /// Where a 401 sends a browser to sign in (ingress-nginx `auth-signin`): a 302 to this
    /// URL with `rd` set to the page it was going to.
    #[serde(default, rename = "signinURL", skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub signin_url: Option<String>,
}

/// The cache of an external auth service's 2xx answers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "has(self.header) != has(self.cookie)",
    "message": "key the cache by a header or by a cookie"
}]))]
pub struct AuthCacheSpec {
    /// Key by this request header's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub header: Option<String>,
    /// Key by this cookie's value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub cookie: Option<String>,
    /// How long an answer is reused (Go duration, e.g. `30s`).
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub duration: String,
}
