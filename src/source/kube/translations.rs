//! Translations kept from one rebuild to the next. Every rebuild snapshots all routes, but an
//! event changes one: a route whose object is unchanged (same UID and resourceVersion) reuses
//! its last translation, shared, so a rebuild costs a compile and not a translation of every
//! route as well.
//!
//! Routes are watched untyped and decoded here one by one: an object that does not decode
//! (a number the schema let through, an enum value from a newer CRD) becomes a rejected route
//! with its field path instead of failing the whole list. It is logged once per version.

use std::collections::HashMap;
use std::sync::Arc;

use kube::ResourceExt;
use kube::api::DynamicObject;

use crate::api;
use crate::model::{Rejected, Translated};

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
                _ => Arc::new(translate(route)),
            };
            out.push(translated.clone());
            self.by_name.insert(key, (version, translated));
        }
        out
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
}
