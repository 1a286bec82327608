//! The subset of the Gateway API (`gateway.networking.k8s.io`, v1.x) that wsgate reads,
//! written by hand from the upstream OpenAPI schemas (the `gateway-api` crate is generated for
//! another kube / k8s-openapi major). Only fields wsgate acts on are here; serde ignores the
//! rest, so objects from newer API versions still decode. The CRDs themselves are the
//! upstream ones, installed by the user.
//!
//! These are plain serde types, not `CustomResource`s: the controller watches the objects
//! untyped and decodes them one by one, so an object this build cannot read is reported on
//! its own instead of failing the whole list.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use serde::{Deserialize, Serialize};

/// The Gateway API group.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// `GatewayClass.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that manages Gateways of this class.
    pub controller_name: String,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass.
    pub gateway_class_name: String,
    /// Listeners.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// One Gateway listener.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway; routes attach to it by `sectionName`.
    pub name: String,
    /// Only requests for this host (exact or `*.` wildcard); any host when unset.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Port.
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or a domain-prefixed protocol.
    pub protocol: String,
    /// TLS settings of an HTTPS listener.
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default)]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (the default) or `Passthrough`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Certificates (wsgate serves the first).
    #[serde(default)]
    pub certificate_refs: Vec<ObjectReference>,
}

/// A reference to a namespaced object (a certificate Secret).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    /// API group; `""` (the default) is the core group.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind; `Secret` by default.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; the referrer's when unset.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// `listeners[].allowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from.
    #[serde(default)]
    pub namespaces: Option<RouteNamespaces>,
    /// Kinds of routes; by default those the listener's protocol supports.
    #[serde(default)]
    pub kinds: Vec<RouteGroupKind>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `Same` (the default), `All` or `Selector`.
    #[serde(default)]
    pub from: Option<String>,
    /// Namespace labels for `Selector`.
    #[serde(default)]
    pub selector: Option<LabelSelector>,
}

/// A route kind, as `allowedRoutes.kinds` and `supportedKinds` name it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Group; the Gateway API group when unset.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// `Gateway.status`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Where the Gateway is reachable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,
    /// `Accepted`, `Programmed`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Per listener.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
}

/// `status.addresses[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusAddress {
    /// `IPAddress` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// `status.listeners[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name.
    pub name: String,
    /// Route kinds that may attach.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// How many routes attached.
    pub attached_routes: i32,
    /// `Accepted`, `Programmed`, `ResolvedRefs`, `Conflicted`.
    pub conditions: Vec<Condition>,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// The Gateways (and listeners) the route attaches to.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Hosts the route serves; every host its listeners take when empty.
    #[serde(default)]
    pub hostnames: Vec<String>,
    /// Rules; one that matches every path when empty.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
}

/// A route's parent (a Gateway, or one of its listeners).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Group; the Gateway API group when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Gateway` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace; the route's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// A listener by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listeners by port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// One HTTPRoute rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Its name, for policies that target it (`sectionName`).
    #[serde(default)]
    pub name: Option<String>,
    /// Any one of these matches; a prefix match of `/` when empty.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    /// Filters.
    #[serde(default)]
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    #[serde(default)]
    pub backend_refs: Vec<HttpBackendRef>,
    /// Timeouts.
    #[serde(default)]
    pub timeouts: Option<HttpRouteTimeouts>,
}

/// `matches[]`: every part must match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// The path; prefix `/` when unset.
    #[serde(default)]
    pub path: Option<HttpPathMatch>,
    /// Headers.
    #[serde(default)]
    pub headers: Vec<NameValueMatch>,
    /// Query parameters.
    #[serde(default)]
    pub query_params: Vec<NameValueMatch>,
    /// The method.
    #[serde(default)]
    pub method: Option<String>,
}

/// `matches[].path`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `PathPrefix` (the default), `Exact` or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// The path; `/` when unset.
    #[serde(default)]
    pub value: Option<String>,
}

/// A header or query parameter match.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NameValueMatch {
    /// `Exact` (the default) or `RegularExpression`.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// One filter.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// Which filter.
    #[serde(rename = "type")]
    pub type_: String,
    /// `RequestHeaderModifier`.
    #[serde(default)]
    pub request_header_modifier: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    #[serde(default)]
    pub response_header_modifier: Option<HeaderModifier>,
    /// `RequestRedirect`.
    #[serde(default)]
    pub request_redirect: Option<RequestRedirectFilter>,
    /// `URLRewrite`.
    #[serde(default)]
    pub url_rewrite: Option<UrlRewriteFilter>,
}

/// A header modifier.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Replace or add.
    #[serde(default)]
    pub set: Vec<HeaderValuePair>,
    /// Append.
    #[serde(default)]
    pub add: Vec<HeaderValuePair>,
    /// Remove.
    #[serde(default)]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderValuePair {
    /// Name.
    pub name: String,
    /// Value.
    pub value: String,
}

/// `RequestRedirect`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirectFilter {
    /// `http` or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Host.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Path.
    #[serde(default)]
    pub path: Option<PathModifier>,
    /// Port.
    #[serde(default)]
    pub port: Option<i32>,
    /// 301 (the default) or 302 (core); 303, 307, 308 (extended).
    #[serde(default)]
    pub status_code: Option<i32>,
}

/// `URLRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewriteFilter {
    /// Host header towards the backend (not supported).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Path.
    #[serde(default)]
    pub path: Option<PathModifier>,
}

/// How a filter changes the path.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(rename = "type")]
    pub type_: String,
    /// For `ReplaceFullPath`.
    #[serde(default)]
    pub replace_full_path: Option<String>,
    /// For `ReplacePrefixMatch`.
    #[serde(default)]
    pub replace_prefix_match: Option<String>,
}

/// A backend of a rule.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpBackendRef {
    /// Group; `""` (core) when unset.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind; `Service` when unset.
    #[serde(default)]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; the route's when unset (another needs a ReferenceGrant).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: Option<i32>,
    /// Share of the rule's traffic; 1 when unset.
    #[serde(default)]
    pub weight: Option<i32>,
    /// Per-backend filters (not supported).
    #[serde(default)]
    pub filters: Vec<serde_json::Value>,
}

/// `rules[].timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// The whole request, as a Gateway API duration (`10s`, `1m30s`).
    #[serde(default)]
    pub request: Option<String>,
    /// One attempt to the backend.
    #[serde(default)]
    pub backend_request: Option<String>,
}

/// `HTTPRoute.status` (and the shape of any route status).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// One entry per parent, from the controller of each.
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// `status.parents[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parent, as the route names it.
    pub parent_ref: ParentReference,
    /// Who wrote this entry.
    pub controller_name: String,
    /// `Accepted`, `ResolvedRefs`.
    pub conditions: Vec<Condition>,
}

/// `ReferenceGrant.spec` (v1beta1).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<GrantFrom>,
    /// To what in the grant's namespace.
    #[serde(default)]
    pub to: Vec<GrantTo>,
}

/// `from[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantFrom {
    /// Group of the referrer.
    #[serde(default)]
    pub group: String,
    /// Kind of the referrer.
    pub kind: String,
    /// Namespace of the referrer.
    pub namespace: String,
}

/// `to[]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantTo {
    /// Group of the target (`""`: core).
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    pub kind: String,
    /// One object by name; any of the kind when unset.
    #[serde(default)]
    pub name: Option<String>,
}

/// What the translation needs of an object besides its spec.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Object<S> {
    /// Namespace (empty for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp`, nanoseconds since the epoch.
    pub created: Option<i128>,
    /// The spec.
    pub spec: S,
}

/// Labels of a namespace, for `allowedRoutes.namespaces.from: Selector`.
pub type NamespaceLabels = BTreeMap<String, BTreeMap<String, String>>;

/// `metadata` as far as [`Object`] needs it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
    #[serde(default)]
    creation_timestamp: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

#[derive(Deserialize)]
struct Whole<S> {
    #[serde(default)]
    metadata: Metadata,
    spec: S,
}

/// Decodes one object from its JSON, or says which field does not fit (the API server's
/// schema lets through what serde refuses; one such object must not fail a list).
pub fn decode<S: serde::de::DeserializeOwned>(
    object: serde_json::Value,
) -> Result<Object<S>, crate::model::FieldError> {
    let whole: Whole<S> =
        serde_path_to_error::deserialize(object).map_err(|e| crate::model::FieldError {
            path: e.path().to_string(),
            message: format!(
                "{} (the object does not fit this build of wsgate)",
                e.inner()
            ),
        })?;
    Ok(Object {
        namespace: whole.metadata.namespace.unwrap_or_default(),
        name: whole.metadata.name.unwrap_or_default(),
        generation: whole.metadata.generation,
        created: whole
            .metadata
            .creation_timestamp
            .map(|t| t.0.as_nanosecond()),
        spec: whole.spec,
    })
}

/// `BackendTLSPolicy.spec` (v1): TLS from the Gateway to a Service.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// The Services (ports by name through `sectionName`).
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetRef>,
    /// How the backend's certificate is verified.
    #[serde(default)]
    pub validation: BackendTlsValidation,
}

/// A policy's target in its own namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetRef {
    /// Group (`""`: core).
    #[serde(default)]
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
    /// A port of the Service by name; every port when unset.
    #[serde(default)]
    pub section_name: Option<String>,
}

/// `BackendTLSPolicy.spec.validation`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// ConfigMaps whose `ca.crt` verifies the backend (wsgate reads the first).
    #[serde(default)]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System`: the platform's CAs (not supported).
    #[serde(default)]
    pub well_known_ca_certificates: Option<String>,
    /// SNI, and the name verified in the certificate.
    #[serde(default)]
    pub hostname: String,
}

/// A reference to an object in the referrer's namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Group (`""`: core).
    #[serde(default)]
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Name.
    pub name: String,
}
