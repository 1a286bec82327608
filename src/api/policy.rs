//! `WebSocketPolicy` (group `wsgate.dev`, version `v1alpha1`): what the Gateway API lacks for
//! WebSockets, attached to HTTPRoutes by Gateway API direct policy attachment (GEP-713):
//! `targetRefs` name HTTPRoutes in the policy's namespace, optionally one rule by its `name`
//! (`sectionName`). The settings are those of a WebSocketRoute rule's `websocket`, plus its
//! `auth`, which covers the targeted rules' normal requests too.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{ClientLimits, KeepaliveSpec, LoadBalancing, RebalanceSpec};

/// Socket settings for the WebSocket upgrades of HTTPRoutes (or of single rules of them).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "wsgate.dev",
    version = "v1alpha1",
    kind = "WebSocketPolicy",
    namespaced,
    status = "PolicyStatus",
    shortname = "wsp",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Idle","type":"string","jsonPath":".spec.idleTimeout"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketPolicySpec {
    /// The HTTPRoutes (in this namespace) whose upgrades the policy sets.
    #[schemars(length(min = 1, max = 16))]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Close a relayed connection after this long without a frame either way (Go duration,
    /// e.g. `1h`). Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    /// Browser origins allowed to open a socket (`https://chat.example.com`,
    /// `https://*.example.com`); others get 403. Empty allows any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Per-client limits on sockets and upgrades.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ClientLimits>,
    /// How new sockets are spread over the endpoints of each backend (default
    /// LeastConnections).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancing: Option<LoadBalancing>,
    /// Close a socket this old (Close 1001 to both sides). Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        regex(pattern = r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
    )]
    pub max_lifetime: Option<String>,
    /// Up to this share of `maxLifetime` is taken off at random per socket (default `10%`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^(100|[1-9]?[0-9])%$"))]
    pub lifetime_jitter: Option<String>,
    /// Ping a peer that sent nothing for `interval`; one that then stays silent for `timeout`
    /// is dead (the other side gets Close 1001). Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive: Option<KeepaliveSpec>,
    /// After the backend's endpoints change, close (1012) the sockets of endpoints holding
    /// more than (1 + tolerance) × the mean, oldest first, spread over `window`. Off when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalance: Option<RebalanceSpec>,
    /// Authentication of the targeted rules' requests and upgrades alike (a JWT, an external
    /// auth service, or both), as a WebSocketRoute rule's `auth`. Keys and CA Secrets are
    /// looked up in the policy's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<super::auth::AuthSpec>,
}

/// A policy's target (Gateway API `LocalPolicyTargetReferenceWithSectionName`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.group == 'gateway.networking.k8s.io' && self.kind == 'HTTPRoute'", "message": "a WebSocketPolicy targets HTTPRoutes (group gateway.networking.k8s.io)"}
]))]
pub struct PolicyTargetReference {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `HTTPRoute`.
    pub kind: String,
    /// The route's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// One rule of the route, by its `name`; every rule when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Status of a policy (Gateway API `PolicyStatus`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per Gateway the targeted routes attach to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// `status.ancestors[]`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The Gateway.
    pub ancestor_ref: AncestorRef,
    /// Who wrote the entry.
    pub controller_name: String,
    /// `Accepted`.
    pub conditions: Vec<Condition>,
}

/// A Gateway as a policy ancestor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AncestorRef {
    /// `gateway.networking.k8s.io`.
    pub group: String,
    /// `Gateway`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}
