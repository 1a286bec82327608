//! The admit phase: after [`decide`](super::decide) chose a WebSocket rule and before any
//! backend is dialled, the request must come from an allowed origin (the guard against
//! cross-site WebSocket hijacking) and fit the client's limits. Normal requests have nothing to
//! pass here: origins only guard upgrades, so a page may fetch from anywhere the rule serves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::answer::ClientFault;
use super::limits::{Admission, ClientLimiter};
use crate::model::{ClientLimits, OriginPattern, origin_allowed};

/// What an upgrade is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks<'a> {
    /// The rule's allowed origins; empty allows any.
    pub allowed_origins: &'a [OriginPattern],
    /// The `Origin` header the client sent.
    pub origin: Option<&'a str>,
    /// Per-client limits and the rule they count under.
    pub limits: Option<(ClientLimits, usize)>,
}

/// Admits an upgrade or says why not. The returned slot (when the rule has limits) holds one of
/// the client's connections until it is dropped.
pub(crate) fn admit(
    checks: Checks<'_>,
    route: &Arc<str>,
    client: IpAddr,
    limiter: &Arc<ClientLimiter>,
    now: Instant,
) -> Result<Option<Admission>, ClientFault> {
    // Origins first: a refused page must not use up the client's upgrade budget.
    if !origin_allowed(checks.allowed_origins, checks.origin) {
        return Err(ClientFault::ForbiddenOrigin);
    }
    let Some((limits, rule)) = checks.limits else {
        return Ok(None);
    };
    limiter
        .admit(route, rule, client, limits, now)
        .map(Some)
        .map_err(ClientFault::TooMany)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::build::origins;
    use crate::proxy::limits::Refusal;

    fn one_socket() -> Option<(ClientLimits, usize)> {
        let limits = ClientLimits {
            max_connections: Some(1),
            rate: None,
            burst: 1,
        };
        Some((limits, 0))
    }

    #[test]
    fn origins_are_checked_before_limits_are_counted() {
        let limiter = ClientLimiter::new(16);
        let route: Arc<str> = "apps/chat".into();
        let client: IpAddr = [192, 0, 2, 7].into();
        let allowed = origins(&["https://chat.example.com"]);
        let checks = |origin| Checks {
            allowed_origins: &allowed,
            origin,
            limits: one_socket(),
        };
        let now = Instant::now();
        for refused in [None, Some("https://evil.example"), Some("null")] {
            assert_eq!(
                admit(checks(refused), &route, client, &limiter, now).err(),
                Some(ClientFault::ForbiddenOrigin),
                "{refused:?}"
            );
        }
        // The refusals above took no slot: the one allowed socket is still free.
        let held = admit(
            checks(Some("https://chat.example.com")),
            &route,
            client,
            &limiter,
            now,
        );
        assert!(matches!(held, Ok(Some(_))));
        let second = admit(
            checks(Some("https://chat.example.com")),
            &route,
            client,
            &limiter,
            now,
        );
        assert_eq!(
            second.err(),
            Some(ClientFault::TooMany(Refusal::TooManyConnections))
        );
        drop(held);
        let again = admit(
            checks(Some("https://chat.example.com")),
            &route,
            client,
            &limiter,
            now,
        );
        assert!(matches!(again, Ok(Some(_))), "the slot came back on drop");
    }

    #[test]
    fn a_rule_without_origins_or_limits_admits_anyone() {
        let limiter = ClientLimiter::new(16);
        let checks = Checks {
            allowed_origins: &[],
            origin: Some("https://anywhere.example"),
            limits: None,
        };
        let got = admit(
            checks,
            &"apps/x".into(),
            [192, 0, 2, 8].into(),
            &limiter,
            Instant::now(),
        );
        assert!(matches!(got, Ok(None)));
    }
}
