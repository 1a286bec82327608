//! The admit phase: after [`decide`](super::decide) chose a rule and before any backend is
//! dialled, the request must come from an allowed source network, declare a body within the
//! rule's limit, come (for an upgrade) from an allowed origin — the guard against cross-site
//! WebSocket hijacking — and fit the client's limits. Origins only guard upgrades, so a page
//! may fetch from anywhere the rule serves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use super::answer::ClientFault;
use super::limits::{Admission, ClientLimiter};
use crate::model::{Cidr, ClientLimits, OriginPattern, origin_allowed};

/// What a request is checked against.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Checks<'a> {
    /// The rule's allowed client networks; empty allows any.
    pub allowed_sources: &'a [Cidr],
    /// The declared body length (`Content-Length`) and the rule's limit.
    pub body: (Option<u64>, Option<u64>),
    /// The rule's allowed origins; empty allows any.
    pub allowed_origins: &'a [OriginPattern],
    /// The `Origin` header the client sent.
    pub origin: Option<&'a str>,
    /// Per-client limits and the rule they count under.
    pub limits: Option<(ClientLimits, usize)>,
}

impl Checks<'_> {
    /// Whether there is nothing to check: [`admit`] would admit anyone, holding no slot.
    pub(crate) fn is_empty(&self) -> bool {
        self.allowed_sources.is_empty()
            && self.body.1.is_none()
            && self.allowed_origins.is_empty()
            && self.limits.is_none()
    }
}

/// Admits a request or says why not. The returned slot (when the rule has limits) holds one of
/// the client's connections until it is dropped.
pub(crate) fn admit(
    checks: Checks<'_>,
    route: &Arc<str>,
    client: IpAddr,
    limiter: &Arc<ClientLimiter>,
    now: Instant,
) -> Result<Option<Admission>, ClientFault> {
    let sources = checks.allowed_sources;
    if !sources.is_empty() && !sources.iter().any(|net| net.contains(client)) {
        return Err(ClientFault::ForbiddenSource);
    }
    if let (Some(declared), Some(max)) = checks.body {
        if declared > max {
            return Err(ClientFault::PayloadTooLarge);
        }
    }
    // Origins before limits: a refused page must not use up the client's upgrade budget.
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
            ..Checks::default()
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
            origin: Some("https://anywhere.example"),
            ..Checks::default()
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

    #[test]
    fn sources_and_declared_bodies_are_checked_before_anything_is_counted() {
        let limiter = ClientLimiter::new(16);
        let route: Arc<str> = "apps/chat".into();
        let nets: Vec<Cidr> = ["10.0.0.0/8", "2001:db8::/32"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        let checks = |body| Checks {
            allowed_sources: &nets,
            body,
            limits: one_socket(),
            ..Checks::default()
        };
        let now = Instant::now();
        let outside: IpAddr = [192, 0, 2, 7].into();
        assert_eq!(
            admit(checks((None, None)), &route, outside, &limiter, now).err(),
            Some(ClientFault::ForbiddenSource)
        );
        let inside: IpAddr = [10, 1, 2, 3].into();
        let v6: IpAddr = "2001:db8::9".parse().unwrap();
        assert_eq!(
            admit(
                checks((Some(1025), Some(1024))),
                &route,
                inside,
                &limiter,
                now
            )
            .err(),
            Some(ClientFault::PayloadTooLarge)
        );
        assert_eq!(limiter.tracked(), 0, "refusals took no slot");
        let ok = admit(
            checks((Some(1024), Some(1024))),
            &route,
            inside,
            &limiter,
            now,
        );
        assert!(matches!(ok, Ok(Some(_))));
        assert!(matches!(
            admit(checks((None, Some(1))), &route, v6, &limiter, now),
            Ok(Some(_))
        ));
    }
}
