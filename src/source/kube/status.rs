//! Route status from a compile report: the pure part (which conditions a route should have)
//! kept apart from writing them, so every reason can be unit-tested.
//!
//! Conditions follow Gateway API conventions: `Accepted` (the spec is valid, the class matches,
//! no hostname conflict), `ResolvedRefs` (the Secret and Services exist and are usable) and
//! `Programmed` (live in the data plane). `lastTransitionTime` only moves when a condition's
//! status changes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::WebSocketRouteStatus;
use crate::table::{Problem, RouteReport};

fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    previous: Option<&WebSocketRouteStatus>,
    now: &Time,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let prior = previous
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
        .filter(|c| c.status == status);
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time: prior.map_or_else(|| now.clone(), |c| c.last_transition_time.clone()),
    }
}

fn summary<'a>(problems: impl Iterator<Item = &'a Problem>) -> Option<(&'static str, String)> {
    let problems: Vec<&Problem> = problems.collect();
    let first = problems.first()?;
    let message = problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ");
    Some((first.kind.reason(), message))
}

/// The status a route should have after a compile.
pub fn desired_status(
    report: &RouteReport,
    previous: Option<&WebSocketRouteStatus>,
    now: &Time,
    controller: &str,
) -> WebSocketRouteStatus {
    let generation = report.generation;
    let cond = |t: &str, ok: bool, reason: &str, message: String| {
        condition(t, ok, reason, message, generation, previous, now)
    };
    let accepted = match summary(report.problems.iter().filter(|p| p.kind.is_acceptance())) {
        None => cond(
            "Accepted",
            true,
            "Accepted",
            "The route is valid and owned by this controller.".into(),
        ),
        Some((reason, message)) => cond("Accepted", false, reason, message),
    };
    let resolved = match summary(report.problems.iter().filter(|p| !p.kind.is_acceptance())) {
        None => cond(
            "ResolvedRefs",
            true,
            "ResolvedRefs",
            "The TLS Secret and every backend Service resolved.".into(),
        ),
        Some((reason, message)) => cond("ResolvedRefs", false, reason, message),
    };
    let programmed = if report.programmed {
        cond(
            "Programmed",
            true,
            "Programmed",
            "The route is live in the data plane.".into(),
        )
    } else {
        let reason = report
            .problems
            .first()
            .map_or("Invalid", |p| p.kind.reason());
        cond(
            "Programmed",
            false,
            reason,
            "The route is not served; see the Accepted condition.".into(),
        )
    };
    WebSocketRouteStatus {
        controller: Some(controller.to_string()),
        observed_generation: generation,
        conditions: vec![accepted, resolved, programmed],
    }
}

/// Whether two statuses say the same thing (timestamps aside), i.e. no write is needed.
pub fn same_status(a: Option<&WebSocketRouteStatus>, b: &WebSocketRouteStatus) -> bool {
    let Some(a) = a else { return false };
    a.controller == b.controller
        && a.observed_generation == b.observed_generation
        && same_conditions(&a.conditions, &b.conditions)
}

/// Whether two condition lists say the same, in order, timestamps aside.
pub fn same_conditions(a: &[Condition], b: &[Condition]) -> bool {
    let key = |c: &Condition| {
        (
            c.type_.clone(),
            c.status.clone(),
            c.reason.clone(),
            c.message.clone(),
            c.observed_generation,
        )
    };
    a.len() == b.len() && a.iter().map(key).eq(b.iter().map(key))
}

/// Whether a route's status (as JSON) holds conditions written by `controller`; conditions
/// without a writer come from a version before `status.controller` and count as ours.
pub fn has_own_conditions(status: Option<&serde_json::Value>, controller: &str) -> bool {
    let Some(status) = status else { return false };
    let has_conditions = status
        .get("conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|c| !c.is_empty());
    let writer = status.get("controller").and_then(serde_json::Value::as_str);
    has_conditions && writer.is_none_or(|w| w == controller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::ProblemKind;

    fn report(programmed: bool, problems: &[(ProblemKind, &str)]) -> RouteReport {
        RouteReport {
            kind: crate::model::ObjectKind::WebSocketRoute,
            namespace: "apps".into(),
            name: "chat".into(),
            generation: Some(3),
            programmed,
            problems: problems
                .iter()
                .map(|(k, m)| Problem {
                    kind: *k,
                    message: m.to_string(),
                })
                .collect(),
        }
    }

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_else(|e| panic!("{e}")))
    }

    fn summary_of(s: &WebSocketRouteStatus) -> Vec<(String, String, String)> {
        s.conditions
            .iter()
            .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
            .collect()
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn healthy_route() {
        let s = desired_status(&report(true, &[]), None, &at(100), "wsgate.dev/wsgate");
        assert_eq!(
            summary_of(&s),
            vec![
                t("Accepted", "True", "Accepted"),
                t("ResolvedRefs", "True", "ResolvedRefs"),
                t("Programmed", "True", "Programmed")
            ]
        );
        assert_eq!(s.observed_generation, Some(3));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.observed_generation == Some(3))
        );
    }

    #[test]
    fn every_reason_lands_in_its_condition() {
        let cases = [
            (false, ProblemKind::InvalidSpec, "Accepted"),
            (false, ProblemKind::HostnameConflict, "Accepted"),
            (false, ProblemKind::AddressBackendNotAllowed, "Accepted"),
            (true, ProblemKind::SecretNotFound, "ResolvedRefs"),
            (true, ProblemKind::CaSecretNotFound, "ResolvedRefs"),
            (true, ProblemKind::InvalidCertificate, "ResolvedRefs"),
            (true, ProblemKind::ServiceNotFound, "ResolvedRefs"),
            (true, ProblemKind::NoReadyEndpoints, "ResolvedRefs"),
        ];
        for (programmed, kind, condition) in cases {
            let s = desired_status(
                &report(programmed, &[(kind, "what to fix")]),
                None,
                &at(100),
                "wsgate.dev/wsgate",
            );
            let c = s
                .conditions
                .iter()
                .find(|c| c.type_ == condition)
                .unwrap_or_else(|| panic!("{condition}"));
            assert_eq!(
                (c.status.as_str(), c.reason.as_str(), c.message.as_str()),
                ("False", kind.reason(), "what to fix")
            );
            let p = s
                .conditions
                .iter()
                .find(|c| c.type_ == "Programmed")
                .unwrap_or_else(|| panic!("Programmed"));
            assert_eq!(
                p.status,
                if programmed { "True" } else { "False" },
                "{kind:?}"
            );
        }
    }

    #[test]
    fn transition_time_moves_only_on_status_change() {
        let first = desired_status(&report(true, &[]), None, &at(100), "wsgate.dev/wsgate");
        let same = desired_status(
            &report(true, &[]),
            Some(&first),
            &at(200),
            "wsgate.dev/wsgate",
        );
        assert!(same_status(Some(&first), &same));
        assert!(
            same.conditions
                .iter()
                .all(|c| c.last_transition_time == at(100))
        );
        let broken = desired_status(
            &report(true, &[(ProblemKind::NoReadyEndpoints, "scale it up")]),
            Some(&same),
            &at(300),
            "wsgate.dev/wsgate",
        );
        assert!(!same_status(Some(&same), &broken));
        let resolved = broken
            .conditions
            .iter()
            .find(|c| c.type_ == "ResolvedRefs")
            .unwrap_or_else(|| panic!());
        assert_eq!(resolved.last_transition_time, at(300));
        let accepted = broken
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .unwrap_or_else(|| panic!());
        assert_eq!(accepted.last_transition_time, at(100));
        assert!(!same_status(None, &broken));
    }

    #[test]
    fn own_conditions_are_those_this_class_wrote_or_nobody_claimed() {
        let ours = "wsgate.dev/wsgate";
        let cond = serde_json::json!([{ "type": "Programmed", "status": "True" }]);
        let status = |controller: Option<&str>| {
            let mut s = serde_json::json!({ "conditions": cond });
            if let Some(c) = controller {
                s["controller"] = c.into();
            }
            s
        };
        assert!(has_own_conditions(Some(&status(Some(ours))), ours));
        assert!(has_own_conditions(Some(&status(None)), ours));
        assert!(!has_own_conditions(
            Some(&status(Some("wsgate.dev/nginx"))),
            ours
        ));
        assert!(!has_own_conditions(
            Some(&serde_json::json!({ "conditions": [] })),
            ours
        ));
        assert!(!has_own_conditions(None, ours));
    }
}
