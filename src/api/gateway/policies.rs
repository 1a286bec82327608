//! WebSocketPolicies applied to the rules of the HTTPRoutes they target (GEP-713 direct
//! attachment). A policy naming a rule (`sectionName`) wins over one naming the whole route;
//! between equals the older wins (then the name), and the other is `Conflicted`.

use super::Cond;
use super::types::{GATEWAY_GROUP, HttpRouteSpec, Object};
use crate::api::policy::WebSocketPolicySpec;
use std::sync::Arc;

use crate::api::translate::{SocketSettings, SocketSpec, auth_into, socket_settings_into};
use crate::model::{Auth, Rule};

/// The policies of the cluster, parsed once per translation.
pub(super) struct Policies<'a> {
    list: Vec<Parsed<'a>>,
}

struct Parsed<'a> {
    policy: &'a Object<WebSocketPolicySpec>,
    /// The socket settings and the rule's authentication.
    settings: Result<(SocketSettings, Option<Arc<Auth>>), String>,
    /// Rules it was applied to, and lost on.
    applied: usize,
    lost: usize,
    /// Targets it names that do not exist.
    missing: Vec<String>,
    /// The Gateways of the routes it targets: (namespace, name).
    ancestors: Vec<(String, String)>,
}

/// What a policy should say, per Gateway its targets attach to.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyReport {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Its generation.
    pub generation: Option<i64>,
    /// Gateways (namespace, name), each with the policy's conditions there.
    pub ancestors: Vec<((String, String), Vec<Cond>)>,
}

impl<'a> Policies<'a> {
    pub(super) fn new(policies: &'a [Object<WebSocketPolicySpec>]) -> Self {
        let list = policies
            .iter()
            .map(|policy| {
                let spec = &policy.spec;
                let mut errors = Vec::new();
                let socket = SocketSpec {
                    idle_timeout: spec.idle_timeout.as_deref(),
                    allowed_origins: &spec.allowed_origins,
                    limits: spec.limits.as_ref(),
                    load_balancing: spec.load_balancing.as_ref(),
                    max_lifetime: spec.max_lifetime.as_deref(),
                    lifetime_jitter: spec.lifetime_jitter.as_deref(),
                    keepalive: spec.keepalive.as_ref(),
                    rebalance: spec.rebalance.as_ref(),
                };
                let settings = socket_settings_into(&mut errors, "spec", "/", &socket);
                let auth = spec.auth.as_ref().map(|a| {
                    auth_into(&mut errors, &policy.namespace, "spec.auth", a).map(Arc::new)
                });
                let settings = match (settings, auth) {
                    (Some(s), None) if errors.is_empty() => Ok((s, None)),
                    (Some(s), Some(Some(a))) if errors.is_empty() => Ok((s, Some(a))),
                    _ => Err(errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")),
                };
                Parsed {
                    policy,
                    settings,
                    applied: 0,
                    lost: 0,
                    missing: Vec::new(),
                    ancestors: Vec::new(),
                }
            })
            .collect();
        Policies { list }
    }

    /// Applies the policies targeting `route` to its model rules; `gateways` are the
    /// Gateways the route attaches to.
    pub(super) fn apply(
        &mut self,
        route: &Object<HttpRouteSpec>,
        rules: &mut [Rule],
        gateways: &[(String, String)],
    ) {
        let names: Vec<Option<&str>> = route.spec.rules.iter().map(|r| r.name.as_deref()).collect();
        // (policy, the rule name it targets if one) for every target naming this route.
        let mut targeting: Vec<(usize, Option<&str>)> = Vec::new();
        for (i, parsed) in self.list.iter_mut().enumerate() {
            if parsed.policy.namespace != route.namespace {
                continue;
            }
            let mut named = false;
            for t in &parsed.policy.spec.target_refs {
                if t.group != GATEWAY_GROUP || t.kind != "HTTPRoute" || t.name != route.name {
                    continue;
                }
                named = true;
                match t.section_name.as_deref() {
                    Some(s) if !names.contains(&Some(s)) => parsed
                        .missing
                        .push(format!("HTTPRoute {} has no rule named {s}", route.name)),
                    section => targeting.push((i, section)),
                }
            }
            if named {
                for g in gateways {
                    if !parsed.ancestors.contains(g) {
                        parsed.ancestors.push(g.clone());
                    }
                }
            }
        }
        if targeting.is_empty() {
            return;
        }
        for rule in rules.iter_mut() {
            let name = names.get(rule.index).copied().flatten();
            let mut candidates: Vec<(usize, bool)> = targeting
                .iter()
                .filter(|(_, section)| section.is_none_or(|s| Some(s) == name))
                .map(|(i, section)| (*i, section.is_some()))
                .filter(|(i, _)| self.list[*i].settings.is_ok())
                .collect();
            // Specific first, then oldest, then by name.
            candidates.sort_by_key(|(i, specific)| {
                let p = self.list[*i].policy;
                (!specific, p.created.is_none(), p.created, p.name.clone())
            });
            candidates.dedup_by_key(|(i, _)| *i);
            let Some(((winner, _), losers)) = candidates.split_first() else {
                continue;
            };
            for (loser, _) in losers {
                self.list[*loser].lost += 1;
            }
            let parsed = &mut self.list[*winner];
            parsed.applied += 1;
            if let Ok((_, Some(auth))) = &parsed.settings {
                rule.auth = Some(auth.clone());
            }
            if let (Some(ws), Ok((settings, _))) = (rule.websocket.as_mut(), &parsed.settings) {
                if settings.idle_timeout.is_some() {
                    ws.idle_timeout = settings.idle_timeout;
                }
                if !settings.allowed_origins.is_empty() {
                    ws.allowed_origins = settings.allowed_origins.clone();
                }
                if settings.limits.is_some() {
                    ws.limits = settings.limits;
                }
                if let Some(balance) = &settings.balance {
                    ws.balance = balance.clone();
                }
                if settings.max_lifetime.is_some() {
                    ws.max_lifetime = settings.max_lifetime;
                }
                if settings.keepalive.is_some() {
                    ws.keepalive = settings.keepalive;
                }
                if settings.rebalance.is_some() {
                    ws.rebalance = settings.rebalance;
                }
                if settings.capacity != crate::model::Capacity::default() {
                    ws.capacity = settings.capacity;
                }
            }
        }
    }

    /// The reports, one per policy.
    pub(super) fn reports(self) -> Vec<PolicyReport> {
        self.list
            .into_iter()
            .map(|p| {
                let cond = match (&p.settings, p.applied, p.lost) {
                    (Err(why), _, _) => Cond::no("Accepted", "Invalid", why.clone()),
                    (Ok(_), 0, 0) if p.missing.is_empty() => Cond::no(
                        "Accepted",
                        "TargetNotFound",
                        "no HTTPRoute it targets is attached to a Gateway of wsgate",
                    ),
                    (Ok(_), 0, 0) => Cond::no("Accepted", "TargetNotFound", p.missing.join("; ")),
                    (Ok(_), 0, _) => Cond::no(
                        "Accepted",
                        "Conflicted",
                        "another policy for the same rules takes precedence",
                    ),
                    (Ok(_), _, _) => Cond::yes("Accepted", "Accepted", "applied"),
                };
                PolicyReport {
                    namespace: p.policy.namespace.clone(),
                    name: p.policy.name.clone(),
                    generation: p.policy.generation,
                    ancestors: p
                        .ancestors
                        .into_iter()
                        .map(|a| (a, vec![cond.clone()]))
                        .collect(),
                }
            })
            .collect()
    }
}
