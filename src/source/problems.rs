//! Route problems are logged when they appear, not on every rebuild: a controller rebuilds on
//! every event and every minute, and a few broken routes would otherwise repeat the same
//! warnings hundreds of times an hour. A problem that goes away is logged once as resolved.

use std::collections::HashSet;

use crate::table::RouteReport;

/// A problem as logged: the route, the condition reason and the message.
type Logged = (String, &'static str, String);

/// The problems of the last publish.
#[derive(Debug, Default)]
pub(crate) struct ProblemLog {
    seen: HashSet<Logged>,
}

impl ProblemLog {
    /// Logs what is new in `reports` since the last call, and what went away.
    pub(crate) fn log(&mut self, reports: &[RouteReport]) {
        let (new, resolved) = self.update(reports);
        for (route, reason, message) in new {
            tracing::warn!(route = %route, reason, "{message}");
        }
        for (route, reason, message) in resolved {
            tracing::info!(route = %route, reason, "resolved: {message}");
        }
    }

    /// Records `reports` as current; returns the problems that are new and those resolved.
    fn update(&mut self, reports: &[RouteReport]) -> (Vec<Logged>, Vec<Logged>) {
        let now: HashSet<Logged> = reports
            .iter()
            .flat_map(|r| {
                r.problems
                    .iter()
                    .map(move |p| (r.id(), p.kind.reason(), p.message.clone()))
            })
            .collect();
        let mut new: Vec<Logged> = now.difference(&self.seen).cloned().collect();
        let mut resolved: Vec<Logged> = self.seen.difference(&now).cloned().collect();
        new.sort();
        resolved.sort();
        self.seen = now;
        (new, resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{Problem, ProblemKind};

    fn report(name: &str, messages: &[&str]) -> RouteReport {
        RouteReport {
            kind: crate::model::ObjectKind::WebSocketRoute,
            namespace: "apps".into(),
            name: name.into(),
            generation: Some(1),
            programmed: messages.is_empty(),
            problems: messages
                .iter()
                .map(|m| Problem {
                    kind: ProblemKind::InvalidSpec,
                    message: m.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_problem_is_logged_when_it_appears_changes_or_goes() {
        let mut log = ProblemLog::default();
        let (new, gone) = log.update(&[report("a", &["bad port"]), report("b", &[])]);
        assert_eq!(new.len(), 1);
        assert!(gone.is_empty());
        // The same problem on the next rebuilds: nothing to say.
        for _ in 0..3 {
            let (new, gone) = log.update(&[report("a", &["bad port"]), report("b", &[])]);
            assert!(new.is_empty() && gone.is_empty());
        }
        // It changes: the new one is logged and the old one resolved.
        let (new, gone) = log.update(&[report("a", &["bad host"])]);
        assert_eq!(new[0].2, "bad host");
        assert_eq!(gone[0].2, "bad port");
        // Fixed, then broken again: logged again.
        let (new, gone) = log.update(&[report("a", &[])]);
        assert!(new.is_empty() && gone.len() == 1);
        let (new, _) = log.update(&[report("a", &["bad host"])]);
        assert_eq!(new.len(), 1);
    }
}
