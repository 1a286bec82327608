//! What a compile says about each route: whether it is served and everything wrong with it,
//! each problem kind mapping to a status condition reason.

use crate::model::{ObjectKind, RouteMeta};

/// What happened to one route in a compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReport {
    /// The kind of object the route came from.
    pub kind: ObjectKind,
    /// Namespace of the route.
    pub namespace: String,
    /// Name of the route.
    pub name: String,
    /// `metadata.generation` that was compiled.
    pub generation: Option<i64>,
    /// Whether the route is in the table.
    pub programmed: bool,
    /// Everything wrong with it, most important first.
    pub problems: Vec<Problem>,
}

/// One problem with a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem, which decides the status condition it lands in.
    pub kind: ProblemKind,
    /// What a user can do about it.
    pub message: String,
}

/// Kinds of route problems; each maps to a condition reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The spec fails validation.
    InvalidSpec,
    /// An older route already serves one of its hostnames.
    HostnameConflict,
    /// An older route merged into the same hostname already serves one of its paths (that
    /// path alone is left out).
    PathConflict,
    /// `tls.secretName` names no TLS Secret in the route's namespace.
    SecretNotFound,
    /// `backend.tls.caSecretName` names no TLS Secret with a `ca.crt` in the route's namespace.
    CaSecretNotFound,
    /// The Secret's certificate or key cannot be served.
    InvalidCertificate,
    /// A backend Service port is unknown.
    ServiceNotFound,
    /// A backend Service has no ready endpoint.
    NoReadyEndpoints,
    /// An `address` backend where only Service backends are allowed.
    AddressBackendNotAllowed,
    /// The JWKS a rule's `auth.jwt` names is missing or has no usable key (its requests get
    /// 401 until it is fixed).
    InvalidKeys,
    /// Something the object says that is not honoured (an unknown annotation); the route
    /// serves without it.
    Ignored,
}

impl ProblemKind {
    /// The CamelCase condition reason.
    pub fn reason(self) -> &'static str {
        match self {
            ProblemKind::InvalidSpec => "InvalidSpec",
            ProblemKind::HostnameConflict => "HostnameConflict",
            ProblemKind::PathConflict => "PathConflict",
            ProblemKind::SecretNotFound => "SecretNotFound",
            ProblemKind::CaSecretNotFound => "CaSecretNotFound",
            ProblemKind::InvalidCertificate => "InvalidCertificate",
            ProblemKind::ServiceNotFound => "ServiceNotFound",
            ProblemKind::NoReadyEndpoints => "NoReadyEndpoints",
            ProblemKind::AddressBackendNotAllowed => "AddressBackendNotAllowed",
            ProblemKind::InvalidKeys => "InvalidKeys",
            ProblemKind::Ignored => "Ignored",
        }
    }

    /// Whether the problem keeps the route out of the table (rather than degrading it).
    pub fn rejects_route(self) -> bool {
        matches!(
            self,
            ProblemKind::InvalidSpec
                | ProblemKind::HostnameConflict
                | ProblemKind::AddressBackendNotAllowed
        )
    }

    /// Whether the problem is about the route itself (`Accepted`) rather than what it refers
    /// to (`ResolvedRefs`).
    pub fn is_acceptance(self) -> bool {
        self.rejects_route()
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.kind.reason(), self.message)
    }
}

impl RouteReport {
    /// A report on `meta` with no problems yet.
    pub(super) fn new(meta: &RouteMeta) -> Self {
        RouteReport {
            kind: meta.kind,
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            generation: meta.generation,
            programmed: false,
            problems: Vec::new(),
        }
    }

    /// Adds a problem.
    pub(super) fn add(&mut self, kind: ProblemKind, message: String) {
        self.problems.push(Problem { kind, message });
    }

    /// `namespace/name`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
