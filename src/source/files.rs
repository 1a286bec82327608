//! Standalone mode's route source: a folder of YAML files, the same documents users would
//! `kubectl apply`, watched for changes.
//!
//! Every `*.yaml`/`*.yml` file may hold several documents. `WebSocketRoute`, `Ingress` and
//! `Secret` documents of type `kubernetes.io/tls` are taken; other kinds are skipped. A file that
//! fails to parse or validate is reported with file, document and field, and its last good
//! contents keep serving, so a typo never takes routes down.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::networking::v1::Ingress;
use serde::Deserialize;

use crate::api::{WebSocketRoute, ingress, translate};
use crate::model::Route;
use crate::table::{DataRef, JWKS_SECRET_TYPE, Snapshot, TlsSecret, self_signed};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: PathBuf,
    /// 1-based document number within the file, when the problem is in one document.
    pub document: Option<usize>,
    /// What is wrong, starting with the field path when there is one.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.document {
            Some(d) => write!(f, "{}: document {d}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The objects one file holds.
#[derive(Debug, Clone, Default)]
pub struct FileObjects {
    /// Routes, translated, in document order.
    pub routes: Vec<Route>,
    /// TLS Secrets, in document order.
    pub secrets: Vec<TlsSecret>,
    /// Keys of ConfigMaps and of other Secrets (where a route's JWKS may be).
    pub data: Vec<(DataRef, Vec<u8>)>,
    /// Documents not read, as (document number, what they were): other kinds, Secrets of
    /// other types. `wsgate check` lists them.
    pub skipped: Vec<(usize, String)>,
}

const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
const ROUTE_API_VERSION: &str = "wsgate.dev/v1alpha1";
/// The kinds of the `wsgate.dev` group.
const WSGATE_KINDS: [&str; 2] = ["WebSocketRoute", "WebSocketPolicy"];

/// Parses one file's text. Either every document is usable, or every problem is returned.
pub fn parse_file(file: &Path, text: &str) -> Result<FileObjects, Vec<LoadError>> {
    let mut objects = FileObjects::default();
    let mut errors = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document = i + 1;
        let err = |message: String| LoadError {
            file: file.to_path_buf(),
            document: Some(document),
            message,
        };
        let value = match serde_yaml::Value::deserialize(doc) {
            Ok(serde_yaml::Value::Null) => continue, // an empty document, e.g. a trailing `---`
            Ok(v) => v,
            Err(e) => {
                errors.push(err(format!("invalid YAML: {e}")));
                // The parser cannot resynchronize after a syntax error.
                break;
            }
        };
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or("");
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or("");
        match (kind, api_version) {
            ("WebSocketRoute", ROUTE_API_VERSION) => match parse_route(value) {
                Ok(route) => objects.routes.push(route),
                Err(messages) => errors.extend(messages.into_iter().map(err)),
            },
            ("Ingress", "networking.k8s.io/v1") => match parse_ingress(value) {
                Ok(routes) => objects.routes.extend(routes),
                Err(messages) => errors.extend(messages.into_iter().map(err)),
            },
            ("WebSocketRoute", other) => errors.push(err(format!(
                "apiVersion: {other:?} is not supported, use {ROUTE_API_VERSION}"
            ))),
            // Policies attach to HTTPRoutes, which standalone mode does not read.
            ("WebSocketPolicy", _) => objects.skipped.push((
                document,
                "WebSocketPolicy (it applies to Gateway API HTTPRoutes, in a cluster)".into(),
            )),
            // A misspelt kind of ours is a mistake, not someone else's object.
            (other, version) if version.starts_with("wsgate.dev/") => {
                let hint = crate::api::closest(other, WSGATE_KINDS)
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                errors.push(err(format!(
                    "kind: {other:?} is not a kind of {version}{hint}"
                )));
            }
            ("Secret", "v1") if secret_type(&value) == Some(JWKS_SECRET_TYPE) => {
                match data_keys::<Secret>(value) {
                    Ok(data) => objects.data.extend(data),
                    Err(message) => errors.push(err(message)),
                }
            }
            ("Secret", "v1") => match parse_secret(value) {
                Ok(Some(secret)) => objects.secrets.push(secret),
                Ok(None) => objects.skipped.push((
                    document,
                    "a Secret that is not of type kubernetes.io/tls or wsgate.dev/jwks".into(),
                )),
                Err(message) => errors.push(err(message)),
            },
            ("ConfigMap", "v1") => match data_keys::<ConfigMap>(value) {
                Ok(data) => objects.data.extend(data),
                Err(message) => errors.push(err(message)),
            },
            ("", _) => errors.push(err("kind: required".into())),
            (other, version) => objects
                .skipped
                .push((document, format!("{other} ({version})"))),
        }
    }
    if errors.is_empty() {
        Ok(objects)
    } else {
        Err(errors)
    }
}

/// Deserializes and translates a route; unknown fields are errors, as with `kubectl apply`'s
/// strict field validation, because a misspelt field would otherwise be silently ignored.
fn parse_route(value: serde_yaml::Value) -> Result<Route, Vec<String>> {
    let (route, mut problems): (WebSocketRoute, _) = strict(value)?;
    match translate(&route) {
        Ok(route) if problems.is_empty() => Ok(route),
        Ok(_) => Err(problems),
        Err(rejected) => {
            problems.extend(rejected.problems.iter().map(ToString::to_string));
            Err(problems)
        }
    }
}

/// Deserializes an object, with every field it does not know and a missing name as problems
/// (as `kubectl apply`'s strict field validation); a value that does not fit fails at once.
fn strict<T: serde::de::DeserializeOwned + kube::Resource<DynamicType = ()>>(
    value: serde_yaml::Value,
) -> Result<(T, Vec<String>), Vec<String>> {
    let mut unknown = Vec::new();
    let _ = serde_ignored::deserialize(value.clone(), |path| unknown.push(field_path(&path)))
        .map(|o: T| o);
    let object: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        vec![format!("{path}: {}", e.into_inner())]
    })?;
    let mut problems: Vec<String> = unknown
        .into_iter()
        // apiVersion and kind are read by kube's own deserializer; metadata and status are
        // Kubernetes' business.
        .filter(|p| !matches!(p.as_str(), "apiVersion" | "kind"))
        .filter(|p| !p.starts_with("metadata.") && !p.starts_with("status"))
        .map(|p| match crate::api::suggest_field::<T>(&p) {
            Some(known) => format!("{p}: unknown field (did you mean `{known}`?)"),
            None => format!("{p}: unknown field"),
        })
        .collect();
    if object.meta().name.as_deref().unwrap_or("").is_empty() {
        problems.push("metadata.name: required".into());
    }
    Ok((object, problems))
}

/// Deserializes and translates an Ingress (standalone: backends may name addresses through
/// `wsgate.dev/address`), with unknown fields refused as for routes. Its class is not
/// checked: every Ingress in the folder is served.
fn parse_ingress(value: serde_yaml::Value) -> Result<Vec<Route>, Vec<String>> {
    let (ingress, mut problems): (Ingress, _) = strict(value)?;
    let opts = ingress::IngressOptions { standalone: true };
    let mut routes = Vec::new();
    for translated in ingress::translate(&ingress, opts) {
        match translated {
            Ok(route) => routes.push(route),
            Err(rejected) => problems.extend(rejected.problems.iter().map(ToString::to_string)),
        }
    }
    if problems.is_empty() {
        Ok(routes)
    } else {
        Err(problems)
    }
}

/// `spec.rules[0].pathPrefx` from serde_ignored's path.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        P::Map { parent, key } => {
            let p = field_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            field_path(parent)
        }
    }
}

fn secret_type(value: &serde_yaml::Value) -> Option<&str> {
    value.get("type").and_then(|t| t.as_str())
}

/// The keys of a ConfigMap (`data`, `binaryData`) or of a `wsgate.dev/jwks` Secret (`data`
/// in base64, `stringData`), each with where it is.
fn data_keys<K: DataObject>(value: serde_yaml::Value) -> Result<Vec<(DataRef, Vec<u8>)>, String> {
    let object: K = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    let meta = object.meta();
    let name = meta.name.clone().filter(|n| !n.is_empty());
    let name = name.ok_or("metadata.name: required")?;
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    Ok(object
        .entries()
        .into_iter()
        .map(|(key, bytes)| (DataRef::new(K::SECRET, &namespace, &name, &key), bytes))
        .collect())
}

/// A ConfigMap or a Secret, as a bag of keys.
trait DataObject: serde::de::DeserializeOwned + kube::Resource<DynamicType = ()> {
    const SECRET: bool;
    fn entries(self) -> Vec<(String, Vec<u8>)>;
}

impl DataObject for ConfigMap {
    const SECRET: bool = false;
    fn entries(self) -> Vec<(String, Vec<u8>)> {
        let text = self
            .data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.into_bytes()));
        let binary = self
            .binary_data
            .into_iter()
            .flatten()
            .map(|(k, v)| (k, v.0));
        text.chain(binary).collect()
    }
}

impl DataObject for Secret {
    const SECRET: bool = true;
    fn entries(self) -> Vec<(String, Vec<u8>)> {
        let data = self.data.into_iter().flatten().map(|(k, v)| (k, v.0));
        let text = self.string_data.into_iter().flatten();
        data.chain(text.map(|(k, v)| (k, v.into_bytes()))).collect()
    }
}

fn parse_secret(value: serde_yaml::Value) -> Result<Option<TlsSecret>, String> {
    let secret: Secret = serde_path_to_error::deserialize(value)
        .map_err(|e| format!("{}: {}", e.path(), e.inner()))?;
    if secret.type_.as_deref() != Some(TLS_SECRET_TYPE) {
        return Ok(None);
    }
    let name = secret
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("metadata.name: required")?;
    let field = |key: &str| -> Result<Vec<u8>, String> {
        if let Some(v) = secret.string_data.as_ref().and_then(|d| d.get(key)) {
            return Ok(v.clone().into_bytes());
        }
        match secret.data.as_ref().and_then(|d| d.get(key)) {
            Some(v) => Ok(v.0.clone()),
            None => Err(format!(
                "data[\"{key}\"]: required in a kubernetes.io/tls Secret"
            )),
        }
    };
    Ok(Some(TlsSecret {
        namespace: secret
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        name,
        cert_pem: field("tls.crt")?,
        key_pem: field("tls.key")?,
        ca_pem: field("ca.crt").ok(),
    }))
}

/// The YAML files of a folder, sorted by name (hidden files skipped).
pub fn yaml_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // A YAML name that cannot be followed (a symlink loop, a dangling link) is listed,
        // so reading it reports the error instead of the file vanishing silently.
        let directory = std::fs::metadata(&path).is_ok_and(|m| m.is_dir());
        if yaml && !name.starts_with('.') && !directory {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// One file of a folder and what parsing it gave.
pub type LoadedFile = (PathBuf, Result<FileObjects, Vec<LoadError>>);

/// Reads and parses every YAML file of `dir`, or `dir` itself when it is a file.
pub fn load_dir(dir: &Path) -> Result<Vec<LoadedFile>, LoadError> {
    let files = if std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
        vec![dir.to_path_buf()]
    } else {
        yaml_files(dir).map_err(|e| LoadError {
            file: dir.to_path_buf(),
            document: None,
            message: format!("cannot read the routes folder: {e}"),
        })?
    };
    Ok(files
        .into_iter()
        .map(|file| {
            let parsed = match std::fs::read_to_string(&file) {
                Ok(text) => parse_file(&file, &text),
                Err(e) => Err(vec![LoadError {
                    file: file.clone(),
                    document: None,
                    message: format!("cannot read: {e}"),
                }]),
            };
            (file, parsed)
        })
        .collect())
}

/// A folder of route files with the last good contents of each file.
#[derive(Debug)]
pub struct FileSource {
    dir: PathBuf,
    last_good: BTreeMap<PathBuf, FileObjects>,
    /// Self-signed stand-ins for Secrets the files do not provide, kept across reloads so a
    /// reload does not change a route's certificate.
    generated: HashMap<(String, String), (Vec<String>, TlsSecret)>,
}

/// The result of one reload.
#[derive(Debug)]
pub struct Reload {
    /// What to compile: every file's newest good contents.
    pub snapshot: Snapshot,
    /// Problems found in this pass (their files kept their last good contents).
    pub errors: Vec<LoadError>,
    /// Secrets that were generated because no file provides them.
    pub generated: Vec<String>,
}

impl FileSource {
    /// A source over `dir`; nothing is read until [`FileSource::reload`].
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSource {
            dir: dir.into(),
            last_good: BTreeMap::new(),
            generated: HashMap::new(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `file` has contents that loaded before and still serve.
    pub fn has_last_good(&self, file: &Path) -> bool {
        self.last_good.contains_key(file)
    }

    /// Reads the folder again. Files that fail keep their last good contents; files that are
    /// gone are dropped; an unreadable folder keeps everything.
    pub fn reload(&mut self) -> Reload {
        let mut errors = Vec::new();
        match load_dir(&self.dir) {
            Err(e) => errors.push(e),
            Ok(files) => {
                let present: Vec<PathBuf> = files.iter().map(|(f, _)| f.clone()).collect();
                self.last_good.retain(|f, _| present.contains(f));
                for (file, parsed) in files {
                    match parsed {
                        Ok(objects) => {
                            self.last_good.insert(file, objects);
                        }
                        Err(mut errs) => errors.append(&mut errs),
                    }
                }
            }
        }
        let mut snapshot = Snapshot::default();
        for objects in self.last_good.values() {
            snapshot
                .routes
                .extend(objects.routes.iter().map(|r| Arc::new(Ok(r.clone()))));
            snapshot.secrets.extend(objects.secrets.iter().cloned());
        }
        let named = DataRef::named_by(&snapshot.routes);
        for objects in self.last_good.values() {
            for (at, bytes) in &objects.data {
                if named.binary_search(at).is_ok() {
                    snapshot.auth_data.insert(at.clone(), bytes.clone());
                }
            }
        }
        let generated = self.fill_missing_secrets(&mut snapshot, &mut errors);
        Reload {
            snapshot,
            errors,
            generated,
        }
    }

    /// Standalone mode has no cert-manager: a route whose Secret is missing gets a self-signed
    /// certificate for its hostnames (with a warning), so it can be tried at once.
    fn fill_missing_secrets(
        &mut self,
        snapshot: &mut Snapshot,
        errors: &mut Vec<LoadError>,
    ) -> Vec<String> {
        let mut made = Vec::new();
        let mut wanted: Vec<((String, String), Vec<String>)> = Vec::new();
        for route in snapshot.accepted() {
            let Some(secret) = route.tls.as_ref().and_then(|t| t.secret.as_ref()) else {
                continue;
            };
            let key = (route.meta.namespace.clone(), secret.clone());
            let provided = snapshot
                .secrets
                .iter()
                .any(|s| s.namespace == key.0 && s.name == key.1);
            if provided {
                continue;
            }
            let hosts = route.hostnames.iter().chain(&route.redirect_hostnames);
            let names: Vec<String> = hosts.map(|h| h.as_str().to_string()).collect();
            match wanted.iter_mut().find(|(k, _)| *k == key) {
                Some((_, existing)) => existing.extend(names),
                None => wanted.push((key, names)),
            }
        }
        self.generated
            .retain(|k, _| wanted.iter().any(|(w, _)| w == k));
        for (key, mut names) in wanted {
            names.sort();
            names.dedup();
            let reuse = self.generated.get(&key).filter(|(n, _)| *n == names);
            let secret = match reuse {
                Some((_, secret)) => secret.clone(),
                None => match self_signed(&names) {
                    Ok((cert, key_pem)) => {
                        let secret = TlsSecret {
                            namespace: key.0.clone(),
                            name: key.1.clone(),
                            cert_pem: cert.into_bytes(),
                            key_pem: key_pem.into_bytes(),
                            ca_pem: None,
                        };
                        self.generated
                            .insert(key.clone(), (names.clone(), secret.clone()));
                        secret
                    }
                    Err(e) => {
                        errors.push(LoadError {
                            file: self.dir.clone(),
                            document: None,
                            message: format!(
                                "self-signed certificate for {}/{}: {e}",
                                key.0, key.1
                            ),
                        });
                        continue;
                    }
                },
            };
            made.push(format!("{}/{} ({})", key.0, key.1, names.join(", ")));
            snapshot.secrets.push(secret);
        }
        made
    }
}

/// How often the folder is re-read when file events cannot be watched.
const POLL_FALLBACK: Duration = Duration::from_secs(1);
/// Events closer together than this are taken as one change (editors write in several steps).
const SETTLE: Duration = Duration::from_millis(150);

/// A routes folder being watched. Watching starts when this is made, so a change made while
/// the first load runs is not missed: its event waits in the channel.
pub struct FolderWatch {
    dir: PathBuf,
    events: Result<(notify::RecommendedWatcher, tokio::sync::mpsc::Receiver<()>), notify::Error>,
}

/// Whether a file event can change what the folder holds. Reads are not changes: wsgate's
/// own re-read of the files produces access events, which would otherwise start a reload
/// loop (a rebuild about 7 times a second, forever).
fn is_change(event: &notify::Event) -> bool {
    use notify::EventKind;
    use notify::event::{MetadataKind, ModifyKind};
    !matches!(
        event.kind,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(MetadataKind::AccessTime))
    )
}

/// Starts watching `dir`.
pub fn watch(dir: PathBuf) -> FolderWatch {
    use notify::Watcher;
    let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| is_change(&e)) {
            // A full channel already means "changed"; nothing is lost by dropping this one.
            let _ = tx.try_send(());
        }
    })
    .and_then(|mut w| {
        w.watch(&dir, notify::RecursiveMode::NonRecursive)
            .map(|()| w)
    });
    FolderWatch {
        events: watcher.map(|w| (w, rx)),
        dir,
    }
}

impl FolderWatch {
    /// Calls `on_change` after every change, coalescing bursts of events. Falls back to
    /// re-reading every second when the folder cannot be watched (e.g. inotify limits).
    pub async fn run(self, mut on_change: impl FnMut()) {
        let (_watcher, mut rx) = match self.events {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot watch the routes folder; re-reading it every second");
                let mut tick = tokio::time::interval(POLL_FALLBACK);
                loop {
                    tick.tick().await;
                    on_change();
                }
            }
        };
        while rx.recv().await.is_some() {
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            on_change();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = r#"
apiVersion: wsgate.dev/v1alpha1
kind: WebSocketRoute
metadata: { name: chat }
spec:
  hostnames: [chat.local]
  tls: { secretName: chat-tls }
  rules:
    - websocket: { backend: { address: "127.0.0.1:5000" } }
"#;

    fn parse(text: &str) -> Result<FileObjects, Vec<String>> {
        parse_file(Path::new("routes/x.yaml"), text)
            .map_err(|es| es.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn takes_routes_and_tls_secrets_and_skips_other_kinds() {
        let text = format!(
            "{ROUTE}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: chat-tls, namespace: default}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: CERT, tls.key: KEY}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: other}}\ndata: {{password: aHVudGVyMg==}}\n---\n"
        );
        let objects = parse(&text).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(objects.routes.len(), 1);
        assert_eq!(objects.secrets.len(), 1);
        assert_eq!(objects.secrets[0].cert_pem, b"CERT");
        // base64 `data` works too.
        let b64 = "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\ndata: {tls.crt: Q0VSVA==, tls.key: S0VZ}\n";
        let objects = parse(b64).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            (
                objects.secrets[0].cert_pem.as_slice(),
                objects.secrets[0].key_pem.as_slice()
            ),
            (&b"CERT"[..], &b"KEY"[..])
        );
    }

    #[test]
    fn errors_name_file_document_and_field() {
        let bad = ROUTE.replace("address: \"127.0.0.1:5000\"", "service: chat, port: 99999");
        let text = format!("{ROUTE}---{bad}");
        assert_eq!(
            parse(&text).err(),
            Some(vec![
                "routes/x.yaml: document 2: spec.rules[0].websocket.backend.port: must be 1..65535"
                    .to_string()
            ])
        );
        let typo = ROUTE.replace("websocket:", "websockt:");
        let errors = parse(&typo).err().unwrap_or_default();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("spec.rules[0].websockt: unknown field")),
            "{errors:?}"
        );
        let wrong_type = ROUTE.replace("hostnames: [chat.local]", "hostnames: chat.local");
        let errors = parse(&wrong_type).err().unwrap_or_default();
        assert!(
            errors[0].starts_with("routes/x.yaml: document 1: spec.hostnames: invalid type"),
            "{errors:?}"
        );
        let errors = parse("a: [").err().unwrap_or_default();
        assert!(errors[0].contains("invalid YAML"), "{errors:?}");
        let errors = parse("apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n").err().unwrap_or_default();
        assert!(
            errors[0].ends_with("data[\"tls.key\"]: required in a kubernetes.io/tls Secret"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_broken_file_keeps_its_last_good_contents() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("chat.yaml");
        std::fs::write(&file, ROUTE).unwrap_or_else(|e| panic!("{e}"));
        let mut source = FileSource::new(dir.path());
        let first = source.reload();
        assert!(first.errors.is_empty(), "{:?}", first.errors);
        assert_eq!(first.snapshot.routes.len(), 1);
        // Missing Secret → one generated, and the same one again on the next reload.
        assert_eq!(
            first.generated,
            vec!["default/chat-tls (chat.local)".to_string()]
        );
        std::fs::write(
            &file,
            "kind: WebSocketRoute\napiVersion: wsgate.dev/v1alpha1\nspec: {",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let second = source.reload();
        assert_eq!(second.errors.len(), 1);
        assert_eq!(second.snapshot.routes, first.snapshot.routes);
        assert_eq!(second.snapshot.secrets, first.snapshot.secrets);
        std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{e}"));
        let third = source.reload();
        assert!(third.snapshot.routes.is_empty() && third.errors.is_empty());
    }
}
