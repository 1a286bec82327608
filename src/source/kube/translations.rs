//! Translations kept from one rebuild to the next. Every rebuild snapshots all routes, but an
//! event changes one: a route whose object is unchanged (same UID and resourceVersion) reuses
//! its last translation, shared, so a rebuild costs a compile and not a translation of every
//! route as well.
//!
//! Routes are watched untyped and decoded here one by one: an object that does not decode
//! (a number the schema let through, an enum value from a newer CRD) becomes a rejected route
//! with its field path instead of failing the whole list. It is logged once per version.
//!
//! An edit that does not translate keeps the object's last good version serving (carried in
//! the rejection as `last_good`), as standalone mode keeps a file's last good contents.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;

use crate::api;
use crate::model::{Rejected, Route, Translated};

/// An object's identity and version: it names one exact content of the object.
type Version = (Option<String>, Option<String>);

/// Last translations by namespace and name.
#[derive(Default)]
pub(super) struct Translations {
    by_name: HashMap<(String, String), (Version, Arc<Translated>)>,
}

impl Translations {
    /// The translations of `routes`, reusing those whose object is unchanged; routes that are
    /// no longer listed are forgotten.
    pub(super) fn of<'a>(
        &mut self,
        routes: impl Iterator<Item = &'a DynamicObject>,
    ) -> Vec<Arc<Translated>> {
        let mut last = std::mem::take(&mut self.by_name);
        let mut out = Vec::with_capacity(last.len());
        for route in routes {
            let key = (route.namespace().unwrap_or_default(), route.name_any());
            let version = (route.uid(), route.resource_version());
            let translated = match last.remove(&key) {
                // Without a resourceVersion the object cannot be told apart from a changed one.
                Some((seen, translated)) if seen == version && version.1.is_some() => translated,
                previous => {
                    let mut translated = translate(route);
                    // A bad edit of the same object (not one deleted and created again) keeps
                    // its last good version serving.
                    if let Err(rejected) = &mut translated {
                        rejected.last_good = previous
                            .filter(|(seen, _)| seen.0 == version.0)
                            .and_then(|(_, t)| good_version(&t));
                    }
                    Arc::new(translated)
                }
            };
            out.push(translated.clone());
            self.by_name.insert(key, (version, translated));
        }
        out
    }
}

/// The version of a route that serves: itself, or the last good one it carries.
fn good_version(translated: &Translated) -> Option<Route> {
    match translated {
        Ok(route) => Some(route.clone()),
        Err(rejected) => rejected.last_good.clone(),
    }
}

/// Decodes and translates one object. One that does not decode is a rejected route with the
/// field that did not fit, logged here, once per version of the object.
fn translate(object: &DynamicObject) -> Translated {
    let json = serde_json::to_value(object).unwrap_or_default();
    match api::decode(json) {
        Ok(route) => api::translate(&route),
        Err(problem) => {
            let meta = api::object_meta(&object.metadata);
            tracing::warn!(
                route = %format!("{}/{}", meta.namespace, meta.name),
                %problem,
                "route does not decode: it is reported and skipped; the others serve"
            );
            Err(Box::new(Rejected {
                meta,
                problems: vec![problem],
                last_good: None,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, version: &str, host: &str) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "wsgate.dev/v1alpha1",
            "kind": "WebSocketRoute",
            "metadata": { "name": name, "namespace": "apps", "uid": "u-1",
                          "resourceVersion": version },
            "spec": { "hostnames": [host],
                      "rules": [ { "http": { "backend": { "service": "web", "port": 80 } } } ] }
        }))
        .unwrap()
    }

    #[test]
    fn an_unchanged_object_reuses_its_translation_and_a_changed_one_is_translated_again() {
        let mut cache = Translations::default();
        let first = cache.of([route("a", "1", "a.test"), route("b", "1", "b.test")].iter());
        let again = cache.of([route("a", "1", "a.test"), route("b", "2", "c.test")].iter());
        assert!(Arc::ptr_eq(&first[0], &again[0]));
        assert!(!Arc::ptr_eq(&first[1], &again[1]));
        let hostnames = |t: &Translated| match t {
            Ok(route) => route.hostnames.iter().map(ToString::to_string).collect(),
            Err(_) => Vec::new(),
        };
        assert_eq!(hostnames(&again[1]), ["c.test"]);
        // A deleted route is forgotten: listed again later, it is translated afresh.
        cache.of([route("b", "2", "c.test")].iter());
        let back = cache.of([route("a", "1", "a.test")].iter());
        assert!(!Arc::ptr_eq(&first[0], &back[0]));
    }

    #[test]
    fn a_bad_edit_carries_the_last_good_version_and_a_new_object_does_not() {
        let mut cache = Translations::default();
        cache.of([route("a", "1", "a.test")].iter());
        let bad = cache.of([route("a", "2", "not a host")].iter());
        let last_good = |t: &Translated| match t {
            Err(r) => r.last_good.as_ref().map(|g| g.hostnames[0].to_string()),
            Ok(_) => None,
        };
        assert_eq!(last_good(&bad[0]), Some("a.test".into()));
        // Still bad at the next edit: the same last good version.
        let worse = cache.of([route("a", "3", "still not a host")].iter());
        assert_eq!(last_good(&worse[0]), Some("a.test".into()));
        // Deleted and created again (another UID): nothing to fall back to.
        let mut other = route("a", "4", "not a host");
        other.metadata.uid = Some("u-2".into());
        let recreated = cache.of([other].iter());
        assert_eq!(last_good(&recreated[0]), None);
    }
}
