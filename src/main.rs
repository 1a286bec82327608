//! The `wsgate` command line: `run` (standalone, routes from a folder), `check`, `crd` and
//! `demo`. Everything here is wiring; the work happens in the library.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::io::Write as _;

use wsgate::admin::{LogFormat, init_tracing};
use wsgate::api::{self, parse_duration};
use wsgate::gateway::{Gateway, GatewayOptions, Routes};
use wsgate::model::ObjectKind;
use wsgate::proxy::client_ip::{Cidr, TrustedProxies};
use wsgate::proxy::{DrainConfig, ProxyConfig};
use wsgate::source::files::{FileObjects, load_dir};
use wsgate::source::kube::KubeOptions;
use wsgate::table::HealthPolicy;
use wsgate::table::{ProblemKind, Snapshot, compile};

#[derive(Parser)]
#[command(
    name = "wsgate",
    version,
    about = "An ingress for WebSocket-heavy applications",
    // A flag given twice takes its last value (wrappers and charts append overrides).
    args_override_self = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the routes in a folder of WebSocketRoute YAML files (no cluster needed).
    Run(RunArgs),
    /// Serve WebSocketRoutes from a Kubernetes cluster (in-cluster config or kubeconfig).
    Controller(ControllerArgs),
    /// Validate a folder of route files and exit non-zero if any is wrong.
    Check {
        /// Folder of *.yaml / *.yml files, or one file.
        #[arg(long)]
        routes: PathBuf,
        /// The files are meant for a cluster (`kubectl apply`): `{service, port}` backends
        /// and missing Secrets are fine there. Without it they are checked as `wsgate run`
        /// would serve them, where a Service backend is an error.
        #[arg(long)]
        cluster: bool,
        /// `text` (one line per finding) or `json` (one object).
        #[arg(long, value_enum, default_value_t = CheckOutput::Text)]
        output: CheckOutput,
    },
    /// Read ingress-nginx Ingress YAML (a file or a folder) and print, per Ingress, which
    /// annotations wsgate honours, which it ignores and why, and the equivalent
    /// WebSocketRoutes.
    Migrate {
        /// A YAML file or a folder of them.
        path: PathBuf,
    },
    /// Print a CustomResourceDefinition of wsgate's: `websocketroute` (the default) or
    /// `websocketpolicy`.
    Crd {
        /// Which one.
        #[arg(default_value = "websocketroute", value_parser = ["websocketroute", "websocketpolicy"])]
        kind: String,
    },
    /// Run a chat room behind wsgate on loopback with a self-signed certificate.
    Demo(DemoArgs),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), for `man -l -` or a man1 directory.
    Man,
}

#[derive(Args, Clone)]
struct ListenArgs {
    /// Plain-HTTP listener.
    #[arg(long, default_value = "0.0.0.0:8080")]
    http_listen: SocketAddr,
    /// TLS listener.
    #[arg(long, default_value = "0.0.0.0:8443")]
    https_listen: SocketAddr,
    /// Admin listener: /healthz, /readyz, /metrics.
    #[arg(long, default_value = "0.0.0.0:9090")]
    admin_listen: SocketAddr,
    /// Port in https:// redirects (omitted when 443: the usual Service port in front of 8443;
    /// 0: the TLS listener's own port).
    #[arg(long, default_value_t = 443)]
    https_redirect_port: u16,
    /// Time a client has to send its request headers.
    #[arg(long, default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, default_value = "10s", value_parser = duration)]
    tls_handshake_timeout: Duration,
    /// Time a client has to send its PROXY protocol header (with --proxy-protocol).
    #[arg(long, default_value = "10s", value_parser = duration)]
    proxy_header_timeout: Duration,
    /// After SIGTERM/SIGINT, how long the listeners keep accepting (while /readyz says 503) so
    /// load balancers stop sending new connections first.
    #[arg(long, default_value = "5s", value_parser = duration)]
    drain_delay: Duration,
    /// Open WebSockets are closed (1001 Going Away) at moments spread over this window.
    #[arg(long, default_value = "30s", value_parser = duration)]
    drain_window: Duration,
    /// From the signal, when whatever is still open is cut and the process exits 0.
    #[arg(long, default_value = "60s", value_parser = duration)]
    drain_timeout: Duration,
    /// One log line per HTTP request and per WebSocket connection (`--access-log=false` to stop).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    access_log: bool,
    /// Require a PROXY protocol v1 or v2 header on every connection of both listeners (behind
    /// a load balancer that sends one); connections without a valid header are closed.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    proxy_protocol: bool,
    /// Comma-separated CIDRs of proxies in front of wsgate whose X-Forwarded-For names the
    /// client (e.g. `10.0.0.0/8,192.168.0.0/16`). Empty: the peer address is the client.
    #[arg(long, value_delimiter = ',', value_parser = cidr)]
    trusted_proxies: Vec<Cidr>,
    /// Consecutive connect failures after which a backend endpoint is skipped (0: never).
    #[arg(long, default_value_t = 3)]
    eject_after_failures: u32,
    /// How long an ejected endpoint is skipped before it gets another try.
    #[arg(long, default_value = "10s", value_parser = duration)]
    eject_backoff: Duration,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Args, Clone)]
struct LogArgs {
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Log level or filter (e.g. `info`, `wsgate=debug`); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
}

#[derive(Args)]
struct RunArgs {
    /// Folder of WebSocketRoute and TLS Secret YAML files, watched for changes.
    #[arg(long)]
    routes: PathBuf,
    #[command(flatten)]
    listen: ListenArgs,
}

#[derive(Args)]
struct ControllerArgs {
    /// Watch only this namespace (default: all).
    #[arg(long)]
    watch_namespace: Option<String>,
    /// Serve routes whose spec.ingressClassName is this.
    #[arg(long, default_value = wsgate::api::DEFAULT_INGRESS_CLASS)]
    ingress_class: String,
    /// Also serve routes that name no ingress class.
    #[arg(long)]
    watch_unclassed: bool,
    /// Do not watch Kubernetes Ingresses (only WebSocketRoutes).
    #[arg(long)]
    no_ingresses: bool,
    /// IngressClasses whose spec.controller is this are ours (the legacy annotation
    /// kubernetes.io/ingress.class must carry --ingress-class).
    #[arg(long, default_value = wsgate::api::ingress::CONTROLLER)]
    controller_name: String,
    /// NAMESPACE/NAME of the Service in front of wsgate: its addresses are written to
    /// status.loadBalancer of every served Ingress (by the leader).
    #[arg(long, value_parser = parse_object_key)]
    publish_service: Option<(String, String)>,
    /// Addresses (IPs or host names) for status.loadBalancer instead of the Service's.
    #[arg(long, value_delimiter = ',')]
    publish_status_address: Vec<String>,
    /// Namespace of the leader-election Lease (default: the pod's namespace, else `default`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "wsgate-leader")]
    lease_name: String,
    /// Allow `address` backends (off: in a cluster they could route to arbitrary IPs).
    #[arg(long)]
    allow_address_backends: bool,
    /// Do not serve the Gateway API (it is served when its CRDs are installed).
    #[arg(long)]
    no_gateway_api: bool,
    /// GatewayClasses whose spec.controllerName is this are ours.
    #[arg(long, default_value = wsgate::api::gateway::GATEWAY_CONTROLLER)]
    gateway_controller_name: String,
    /// Gateway listeners with protocol HTTP on this port map onto the HTTP listener (the
    /// Service's HTTP port).
    #[arg(long, default_value_t = 80)]
    gateway_http_port: u16,
    /// Gateway listeners with protocol HTTPS on this port map onto the TLS listener.
    #[arg(long, default_value_t = 443)]
    gateway_https_port: u16,
    #[command(flatten)]
    listen: ListenArgs,
}

#[derive(Args)]
struct DemoArgs {
    /// Plain-HTTP listener.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http_listen: SocketAddr,
    /// TLS listener.
    #[arg(long, default_value = "127.0.0.1:8443")]
    https_listen: SocketAddr,
    /// Admin listener.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// Where the chat app itself listens (any free port by default).
    #[arg(long, default_value = "127.0.0.1:0")]
    app_listen: SocketAddr,
    /// Serve only the chat app on --app-listen, without wsgate in front (a backend for a
    /// cluster deployment).
    #[arg(long)]
    app_only: bool,
    #[command(flatten)]
    log: LogArgs,
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd { kind } => print_crd(&kind),
        Command::Check {
            routes,
            cluster,
            output,
        } => check(&routes, cluster, output),
        Command::Migrate { path } => migrate(&path),
        Command::Run(args) => runtime().and_then(|rt| rt.block_on(run(args))),
        Command::Controller(args) => runtime().and_then(|rt| rt.block_on(controller(args))),
        Command::Demo(args) => runtime().and_then(|rt| rt.block_on(demo(args))),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "wsgate", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => man(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("wsgate: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The man page: wsgate(1) with every subcommand's options in sections of their own.
fn man() -> anyhow::Result<ExitCode> {
    let cmd = Cli::command();
    let mut out = std::io::stdout().lock();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        writeln!(out, ".SH \"WSGATE {}\"", name.to_uppercase())?;
        if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
            writeln!(out, "{}", roff_escape(&about.to_string()))?;
        }
        for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
            let flag = match (arg.get_long(), arg.get_short()) {
                (Some(long), _) => format!("\\-\\-{long}"),
                (None, Some(short)) => format!("\\-{short}"),
                (None, None) => format!("<{}>", arg.get_id()),
            };
            writeln!(out, ".TP\n\\fB{flag}\\fR")?;
            if let Some(help) = arg.get_long_help().or_else(|| arg.get_help()) {
                writeln!(out, "{}", roff_escape(&help.to_string()))?;
            }
        }
    }
    page.render_version_section(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Text safe in a roff paragraph: backslashes doubled, no line starting with `.` or `'`.
fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// An error and its causes, each said once: many library errors already print their source
/// in their own message, and `{:#}` would repeat it.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn print_crd(kind: &str) -> anyhow::Result<ExitCode> {
    let yaml = match kind {
        "websocketpolicy" => api::policy_crd_yaml(),
        _ => api::crd_yaml(),
    };
    print!("{}", yaml.context("rendering the CRD")?);
    Ok(ExitCode::SUCCESS)
}

fn drain_config(l: &ListenArgs) -> DrainConfig {
    if l.drain_timeout < l.drain_delay + l.drain_window {
        tracing::warn!(
            "--drain-timeout is shorter than --drain-delay + --drain-window: the last WebSockets will be cut, not closed"
        );
    }
    DrainConfig {
        delay: l.drain_delay,
        window: l.drain_window,
        timeout: l.drain_timeout,
    }
}

fn proxy_config(l: &ListenArgs) -> ProxyConfig {
    let mut config = ProxyConfig::new(l.http_listen, l.https_listen);
    config.https_redirect_port = l.https_redirect_port;
    config.header_timeout = l.header_timeout;
    config.tls_handshake_timeout = l.tls_handshake_timeout;
    config.proxy_header_timeout = l.proxy_header_timeout;
    config.access_log = l.access_log;
    config.proxy_protocol = l.proxy_protocol;
    config.trusted_proxies = TrustedProxies::new(l.trusted_proxies.clone());
    config.health = HealthPolicy {
        failures: l.eject_after_failures,
        backoff_ms: u64::try_from(l.eject_backoff.as_millis()).unwrap_or(u64::MAX),
    };
    config
}

fn cidr(s: &str) -> Result<Cidr, String> {
    s.parse()
        .map_err(|e: wsgate::proxy::client_ip::CidrError| e.to_string())
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    init_tracing(args.listen.log.log_format, &args.listen.log.log_level);
    let gateway = Gateway::start(GatewayOptions {
        routes: Routes::Dir(args.routes),
        proxy: proxy_config(&args.listen),
        admin_listen: args.listen.admin_listen,
        drain: drain_config(&args.listen),
    })
    .await?;
    serve_until_signal(gateway).await
}

async fn controller(args: ControllerArgs) -> anyhow::Result<ExitCode> {
    init_tracing(args.listen.log.log_format, &args.listen.log.log_level);
    let client = kube::Client::try_default()
        .await
        .map_err(|e| match e {
            // kube wraps this one in "Failed to infer configuration" around its own "failed
            // to infer config": say it once, with both attempts it made.
            kube::Error::InferConfig(inner) => anyhow::anyhow!("{inner}"),
            other => other.into(),
        })
        .context("connecting to Kubernetes (in-cluster config or KUBECONFIG)")?;
    let mut kube = KubeOptions::new(client);
    kube.namespace = args.watch_namespace;
    kube.ingress_class = args.ingress_class;
    kube.watch_unclassed = args.watch_unclassed;
    kube.watch_ingresses = !args.no_ingresses;
    kube.controller_name = args.controller_name;
    kube.publish_service = args.publish_service;
    kube.publish_status_address = args.publish_status_address;
    kube.allow_address_backends = args.allow_address_backends;
    kube.gateway_api = !args.no_gateway_api;
    kube.gateway_controller = args.gateway_controller_name;
    kube.gateway_ports = wsgate::api::gateway::Ports {
        http: args.gateway_http_port,
        https: args.gateway_https_port,
    };
    kube.lease.namespace = args.leader_election_namespace;
    kube.lease.name = args.lease_name;
    let gateway = Gateway::start(GatewayOptions {
        routes: Routes::Kube(Box::new(kube)),
        proxy: proxy_config(&args.listen),
        admin_listen: args.listen.admin_listen,
        drain: drain_config(&args.listen),
    })
    .await?;
    serve_until_signal(gateway).await
}

async fn serve_until_signal(gateway: Gateway) -> anyhow::Result<ExitCode> {
    shutdown_signal().await?;
    tracing::info!("shutting down: draining connections");
    let report = gateway.shutdown().await;
    if report.cut > 0 {
        tracing::warn!(
            cut = report.cut,
            "drain timeout: cutting what is still open"
        );
    }
    tracing::info!("bye");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    init_tracing(args.log.log_format, &args.log.log_level);
    let app = wsgate::demo::spawn(args.app_listen)
        .await
        .with_context(|| format!("cannot listen on {} (chat app)", args.app_listen))?;
    if args.app_only {
        tracing::info!(%app, "chat app listening");
        shutdown_signal().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let snapshot = wsgate::demo::snapshot(app).context("building the demo route")?;
    let mut proxy = ProxyConfig::new(args.http_listen, args.https_listen);
    // Redirect to wherever the TLS listener really is (0 = its bound port).
    proxy.https_redirect_port = 0;
    let gateway = Gateway::start(GatewayOptions {
        routes: Routes::Fixed(Box::new(snapshot)),
        proxy,
        admin_listen: args.admin_listen,
        drain: DrainConfig {
            delay: Duration::ZERO,
            window: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        },
    })
    .await?;
    println!(
        "wsgate demo: open https://localhost:{}/ in two browser tabs (self-signed certificate: accept the warning)",
        gateway.https_addr.port()
    );
    println!(
        "  http://localhost:{}/ redirects there; the chat app itself runs on {app}",
        gateway.http_addr.port()
    );
    serve_until_signal(gateway).await
}

fn report_secret(snapshot: &Snapshot, report: &wsgate::table::RouteReport) -> Option<String> {
    let route = snapshot
        .accepted()
        .find(|r| r.meta.name == report.name && r.meta.namespace == report.namespace)?;
    Some(format!(
        "{}/{}",
        report.namespace,
        route.tls.as_ref()?.secret.as_ref()?
    ))
}

/// `wsgate check`: every file problem, then problems between routes (hostname conflicts,
/// duplicate names), each naming its file.
/// `NAMESPACE/NAME`.
fn parse_object_key(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_string(), name.to_string()))
        }
        _ => Err(format!("{text:?} is not NAMESPACE/NAME")),
    }
}

/// `wsgate migrate`: a report per Ingress, as YAML comments above its WebSocketRoutes, so the
/// output can be reviewed and applied as it is. Fails when an Ingress would not be served.
fn migrate(path: &Path) -> anyhow::Result<ExitCode> {
    use k8s_openapi::api::networking::v1::Ingress;
    use serde::Deserialize;
    let files = if path.is_dir() {
        wsgate::source::files::yaml_files(path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        vec![path.to_path_buf()]
    };
    let mut failed = false;
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        for (i, doc) in serde_yaml::Deserializer::from_str(&text).enumerate() {
            let value = serde_yaml::Value::deserialize(doc)
                .map_err(|e| anyhow::anyhow!("{}: document {}: {e}", file.display(), i + 1))?;
            if value.get("kind").and_then(|k| k.as_str()) != Some("Ingress") {
                continue;
            }
            let ingress: Ingress = serde_path_to_error::deserialize(value).map_err(|e| {
                anyhow::anyhow!(
                    "{}: document {}: {}: {}",
                    file.display(),
                    i + 1,
                    e.path(),
                    e.inner()
                )
            })?;
            seen += 1;
            let m = wsgate::api::migrate::migrate(&ingress);
            println!("# Ingress {} ({})", m.id, file.display());
            for (name, meaning) in &m.honoured {
                println!("#   honoured  {name}: {meaning}");
            }
            for (name, why) in &m.ignored {
                println!("#   IGNORED   {name}: {why}");
            }
            for note in &m.notes {
                println!("#   note      {note}");
            }
            for problem in &m.problems {
                failed = true;
                println!("#   PROBLEM   {problem}");
            }
            if m.honoured.is_empty() && m.ignored.is_empty() {
                println!("#   no annotations");
            }
            for route in &m.routes {
                println!("---");
                print!("{}", serde_yaml::to_string(route)?);
            }
            println!("---");
        }
    }
    if seen == 0 {
        println!("# no Ingress found in {}", path.display());
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// How `wsgate check` prints its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum CheckOutput {
    Text,
    Json,
}

/// One thing `wsgate check` found.
#[derive(Debug, serde::Serialize)]
struct Finding {
    /// `error` (exit 1), `warning` or `note`.
    level: &'static str,
    /// The file to fix.
    file: String,
    /// What, after the file: `document 2: spec.rules[0]...: ...` or `route ns/name: ...`.
    message: String,
}

impl Finding {
    fn new(level: &'static str, file: impl std::fmt::Display, message: impl Into<String>) -> Self {
        Finding {
            level,
            file: file.to_string(),
            message: message.into(),
        }
    }
}

fn check(dir: &Path, cluster: bool, output: CheckOutput) -> anyhow::Result<ExitCode> {
    let files = load_dir(dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut findings = Vec::new();
    let mut snapshot = Snapshot::default();
    let mut file_of: HashMap<(ObjectKind, String), PathBuf> = HashMap::new();
    let mut secret_file: HashMap<String, PathBuf> = HashMap::new();
    let mut good_files = 0;
    for (file, parsed) in files {
        match parsed {
            Err(errors) => {
                for e in errors {
                    let message = match e.document {
                        Some(d) => format!("document {d}: {}", e.message),
                        None => e.message.clone(),
                    };
                    findings.push(Finding::new("error", e.file.display(), message));
                }
            }
            Ok(FileObjects {
                routes,
                secrets,
                data,
                skipped,
            }) => {
                snapshot.auth_data.extend(data);
                good_files += 1;
                for (document, what) in skipped {
                    findings.push(Finding::new(
                        "note",
                        file.display(),
                        format!("document {document}: skipped {what}: `wsgate run` reads WebSocketRoutes, Ingresses, Secrets and ConfigMaps"),
                    ));
                }
                let mut objects_here = std::collections::HashSet::new();
                for route in routes {
                    let id = format!("{}/{}", route.meta.namespace, route.meta.name);
                    // An Ingress is several routes (one per host) of one object.
                    let object = (route.meta.kind, id.clone());
                    let again =
                        route.meta.kind == ObjectKind::Ingress && !objects_here.insert(object);
                    if again {
                        snapshot.routes.push(Arc::new(Ok(route)));
                        continue;
                    }
                    if let Some(first) = file_of.get(&(route.meta.kind, id.clone())) {
                        findings.push(Finding::new(
                            "error",
                            file.display(),
                            format!("route {id} is also defined in {}", first.display()),
                        ));
                        continue;
                    }
                    file_of.insert((route.meta.kind, id), file.clone());
                    snapshot.routes.push(Arc::new(Ok(route)));
                }
                for secret in &secrets {
                    secret_file.insert(
                        format!("{}/{}", secret.namespace, secret.name),
                        file.clone(),
                    );
                }
                snapshot.secrets.extend(secrets);
            }
        }
    }
    let (_, reports) = compile(&snapshot);
    for report in &reports {
        let file = file_of
            .get(&(report.kind, report.id()))
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        problems_of(
            report,
            &file,
            &snapshot,
            &secret_file,
            cluster,
            &mut findings,
        );
    }
    // A problem of a backend both actions name is reported once.
    let mut seen = std::collections::HashSet::new();
    findings.retain(|f| seen.insert((f.level, f.file.clone(), f.message.clone())));
    let failed = findings.iter().any(|f| f.level == "error");
    match output {
        CheckOutput::Text => {
            for f in &findings {
                println!("{}: {}: {}", f.level, f.file, f.message);
            }
            if failed {
                println!("{}: invalid", dir.display());
            } else {
                println!(
                    "{}: ok ({} routes in {good_files} files)",
                    dir.display(),
                    reports.len()
                );
            }
        }
        CheckOutput::Json => {
            let out = serde_json::json!({
                "path": dir.display().to_string(),
                "ok": !failed,
                "routes": reports.len(),
                "files": good_files,
                "findings": findings,
            });
            println!("{out}");
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// One route's problems for `wsgate check`, each under the file to fix.
fn problems_of(
    report: &wsgate::table::RouteReport,
    file: &str,
    snapshot: &Snapshot,
    secret_file: &HashMap<String, PathBuf>,
    cluster: bool,
    findings: &mut Vec<Finding>,
) {
    let id = report.id();
    for problem in &report.problems {
        let finding = match problem.kind {
            // A Secret's problem is in the Secret's file, which may not be the route's.
            ProblemKind::InvalidCertificate => {
                let secret = secret_file
                    .iter()
                    .find(|(name, _)| problem.message.contains(&format!("Secret {name}:")));
                match secret {
                    Some((_, secret_file)) => Finding::new(
                        "error",
                        secret_file.display(),
                        format!("{problem} (used by route {id} in {file})"),
                    ),
                    None => Finding::new("error", file, format!("route {id}: {problem}")),
                }
            }
            // A backend CA missing here makes `wsgate run` refuse to connect to it.
            ProblemKind::InvalidSpec
            | ProblemKind::HostnameConflict
            | ProblemKind::CaSecretNotFound => {
                Finding::new("error", file, format!("route {id}: {problem}"))
            }
            // Standalone mode has no Services: such a backend could never be reached.
            ProblemKind::ServiceNotFound if !cluster => Finding::new(
                "error",
                file,
                format!(
                    "route {id}: {}: `wsgate run` has no Services; use an `address` backend (or check with --cluster for files meant for a cluster)",
                    // The cluster hint ("is the Service created?") does not apply here.
                    problem.message.split(" (is the").next().unwrap_or_default()
                ),
            ),
            // In standalone mode a missing Secret gets a self-signed certificate; in a
            // cluster it may be created later.
            ProblemKind::SecretNotFound if !cluster => Finding::new(
                "note",
                file,
                format!(
                    "route {id}: Secret {} is not in this folder; `wsgate run` serves a self-signed certificate for it",
                    report_secret(snapshot, report).unwrap_or_default()
                ),
            ),
            // A JWKS not in the folder means every token gets 401 under `wsgate run`; in a
            // cluster the ConfigMap may be created later.
            ProblemKind::InvalidKeys => Finding::new(
                if cluster { "warning" } else { "error" },
                file,
                format!("route {id}: {problem}"),
            ),
            ProblemKind::Ignored | ProblemKind::PathConflict => Finding::new(
                "warning",
                file,
                format!("{} {id}: {problem}", report.kind.as_str()),
            ),
            _ => Finding::new("note", file, format!("route {id}: {problem}")),
        };
        findings.push(finding);
    }
}
