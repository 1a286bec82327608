//! Ingress translations kept from one rebuild to the next, as [`super::translations`] does for
//! WebSocketRoutes: an unchanged object (same UID and resourceVersion) reuses its routes.
//!
//! An edit that does not translate keeps the object's last good version serving: every route
//! of that version serves on, each carrying the new version's problems.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;

use crate::api::ingress::{self, IngressOptions};
use crate::model::{Rejected, Route, Translated};

/// An object's identity and version.
type Version = (Option<String>, Option<String>);

/// The routes one Ingress translated to.
type Routes = Vec<Arc<Translated>>;

/// Last translations by namespace and name.
#[derive(Default)]
pub(super) struct IngressTranslations {
    by_name: HashMap<(String, String), (Version, Routes)>,
}

impl IngressTranslations {
    /// The routes of `ingresses`, reusing those of unchanged objects; objects no longer
    /// listed are forgotten.
    pub(super) fn of<'a>(
        &mut self,
        ingresses: impl Iterator<Item = &'a Ingress>,
    ) -> Vec<Arc<Translated>> {
        let mut last = std::mem::take(&mut self.by_name);
        let mut out = Vec::new();
        for object in ingresses {
            let key = (object.namespace().unwrap_or_default(), object.name_any());
            let version = (object.uid(), object.resource_version());
            let routes = match last.remove(&key) {
                Some((seen, routes)) if seen == version && version.1.is_some() => routes,
                previous => {
                    let fresh = ingress::translate(object, IngressOptions::default());
                    let same_object = previous.filter(|(seen, _)| seen.0 == version.0);
                    let good = same_object.map(|(_, routes)| good_versions(&routes));
                    with_last_good(fresh, good.unwrap_or_default())
                        .into_iter()
                        .map(Arc::new)
                        .collect()
                }
            };
            out.extend(routes.iter().cloned());
            self.by_name.insert(key, (version, routes));
        }
        out
    }
}

/// The routes of a version that serve: those that translated, and the last good ones that
/// rejected routes carry.
fn good_versions(routes: &[Arc<Translated>]) -> Vec<Route> {
    routes
        .iter()
        .filter_map(|t| match &**t {
            Ok(route) => Some(route.clone()),
            Err(rejected) => rejected.last_good.clone(),
        })
        .collect()
}

/// A new version's routes; when some did not translate and an earlier version served, the
/// earlier version serves whole instead, each route with the new version's problems.
fn with_last_good(fresh: Vec<Translated>, good: Vec<Route>) -> Vec<Translated> {
    let problems: Vec<_> = fresh
        .iter()
        .filter_map(|t| t.as_ref().err())
        .flat_map(|r| r.problems.iter().cloned())
        .collect();
    if problems.is_empty() || good.is_empty() {
        return fresh;
    }
    let meta = match fresh.first() {
        Some(Ok(route)) => route.meta.clone(),
        Some(Err(rejected)) => rejected.meta.clone(),
        None => return fresh,
    };
    good.into_iter()
        .map(|last| {
            Err(Box::new(Rejected {
                meta: meta.clone(),
                problems: problems.clone(),
                last_good: Some(last),
            }))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress(version: &str, timeout: &str) -> Ingress {
        serde_json::from_value(serde_json::json!({
            "metadata": { "name": "chat", "namespace": "apps", "uid": "u-1",
                          "resourceVersion": version,
                          "annotations": { "nginx.ingress.kubernetes.io/proxy-read-timeout": timeout } },
            "spec": { "rules": [
                { "host": "a.test", "http": { "paths": [ { "path": "/", "pathType": "Prefix",
                  "backend": { "service": { "name": "web", "port": { "number": 80 } } } } ] } },
                { "host": "b.test", "http": { "paths": [ { "path": "/", "pathType": "Prefix",
                  "backend": { "service": { "name": "web", "port": { "number": 80 } } } } ] } }
            ] }
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn unchanged_objects_reuse_their_routes_and_a_bad_edit_keeps_the_last_good_version() {
        let mut cache = IngressTranslations::default();
        let first = cache.of([ingress("1", "60")].iter());
        assert_eq!(first.len(), 2);
        let again = cache.of([ingress("1", "60")].iter());
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        // A bad annotation rejects the object: both hosts keep their last good routes.
        let bad = cache.of([ingress("2", "soon")].iter());
        assert_eq!(bad.len(), 2);
        for t in &bad {
            let rejected = t
                .as_ref()
                .as_ref()
                .err()
                .unwrap_or_else(|| panic!("rejected"));
            assert!(rejected.last_good.is_some());
            assert!(rejected.problems[0].path.contains("proxy-read-timeout"));
        }
        // Still bad: the same good version.
        let worse = cache.of([ingress("3", "never")].iter());
        assert!(worse.iter().all(|t| {
            t.as_ref()
                .as_ref()
                .err()
                .is_some_and(|r| r.last_good.is_some())
        }));
        // Fixed: served as translated.
        let fixed = cache.of([ingress("4", "90")].iter());
        assert!(fixed.iter().all(|t| t.is_ok()));
    }
}
