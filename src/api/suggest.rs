//! "Did you mean" for misspelt kinds and fields: the known name closest by edit distance.

use std::sync::OnceLock;

use serde_json::Value;

/// The name of `known` closest to `wrong` (case-insensitive Levenshtein distance), if it is
/// close enough to be a typo: at most 2 edits, and fewer than half the name.
pub fn closest<'a>(wrong: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let wrong_lower = wrong.to_ascii_lowercase();
    known
        .into_iter()
        .map(|k| (distance(&wrong_lower, &k.to_ascii_lowercase()), k))
        .filter(|(d, k)| *k != wrong && *d <= 2 && *d * 2 < k.len().max(wrong.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (field names are ASCII).
fn distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// For an unknown field of a WebSocketRoute at `path` (`spec.rules[0].websocket.idleTimout`),
/// the known field of the same object it most likely meant, from the CRD's schema. `None` for
/// other kinds, or when nothing is close.
pub fn suggest_field<T: kube::Resource<DynamicType = ()>>(path: &str) -> Option<&'static str> {
    if T::kind(&()) != "WebSocketRoute" {
        return None;
    }
    let (parent, field) = match path.rsplit_once('.') {
        Some((parent, field)) => (Some(parent), field),
        None => (None, path),
    };
    let mut node = route_schema()?;
    for step in parent.into_iter().flat_map(|p| p.split('.')) {
        // `rules[0]`: the property, then its items.
        let (name, indexed) = match step.split_once('[') {
            Some((name, _)) => (name, true),
            None => (step, false),
        };
        node = node.get("properties")?.get(name)?;
        if indexed {
            node = node.get("items")?;
        }
    }
    let known = node.get("properties")?.as_object()?;
    closest(field, known.keys().map(String::as_str))
}

/// The WebSocketRoute's openAPIV3Schema, as JSON, built once.
fn route_schema() -> Option<&'static Value> {
    static SCHEMA: OnceLock<Option<Value>> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            use kube::CustomResourceExt;
            let crd = super::WebSocketRoute::crd();
            let schema = crd.spec.versions.first()?.schema.as_ref()?;
            serde_json::to_value(schema.open_api_v3_schema.as_ref()?).ok()
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_closest_known_name() {
        let known = ["idleTimeout", "allowedOrigins", "maxLifetime"];
        assert_eq!(closest("idleTimout", known), Some("idleTimeout"));
        assert_eq!(closest("idletimeout", known), Some("idleTimeout"));
        assert_eq!(closest("allowedOrigin", known), Some("allowedOrigins"));
        assert_eq!(closest("backend", known), None, "nothing close");
        assert_eq!(closest("idleTimeout", known), None, "not a typo");
        assert_eq!(
            closest("WebSocketRoutes", ["WebSocketRoute", "WebSocketPolicy"]),
            Some("WebSocketRoute")
        );
        assert_eq!(
            closest("ab", ["ax"]),
            None,
            "short names need a closer match"
        );
    }

    #[test]
    fn unknown_route_fields_are_matched_against_their_own_object() {
        use crate::api::WebSocketRoute;
        let s = suggest_field::<WebSocketRoute>;
        assert_eq!(s("spec.rules[0].websocket.idleTimout"), Some("idleTimeout"));
        assert_eq!(s("spec.rules[0].pathPrefx"), Some("pathPrefix"));
        assert_eq!(s("spec.hostname"), Some("hostnames"));
        assert_eq!(
            s("spec.rules[2].websocket.keepalive.intervall"),
            Some("interval")
        );
        assert_eq!(s("spec.rules[0].nothingLikeIt"), None);
        assert_eq!(s("spec.no.such.path"), None);
        assert_eq!(
            suggest_field::<k8s_openapi::api::networking::v1::Ingress>("spec.rulez"),
            None
        );
    }
}
