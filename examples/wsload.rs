//! WebSocket load generator for bench/run.sh. Prints one JSON line per run.
//!
//!   wsload echo    --connect ADDR --host HOST [--tls] --conns N --seconds S [--size BYTES]
//!   wsload connect --connect ADDR --host HOST [--tls] --concurrency C --seconds S
//!   wsload idle    --connect ADDR --host HOST [--tls] --conns N [--answer-pings]
//!                  (holds them until stdin closes; with --answer-pings, reads them so Pings get Pongs)
//!   (any mode: --kx pq|x25519|p256, the key exchange groups offered; default x25519)
//!   wsload token   --jwks FILE   (writes a fresh ES256 JWKS to FILE, prints a token valid 1 h)
//!
//! `echo` is closed-loop: each connection sends a message, waits for its echo, repeats; it
//! reports round-trip percentiles. `connect` opens and closes WebSockets (TCP + TLS without
//! resumption + upgrade) as fast as C workers can. Every run is bounded by --seconds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

struct Target {
    addr: SocketAddr,
    host: String,
    path: String,
    tls: Option<tokio_rustls::TlsConnector>,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Target {
    async fn open(&self) -> anyhow::Result<WebSocketStream<Box<dyn Io>>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            Some(c) => Box::new(
                c.connect(ServerName::try_from(self.host.clone())?, tcp)
                    .await?,
            ),
            None => Box::new(tcp),
        };
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        let req = format!("{scheme}://{}{}", self.host, self.path).into_client_request()?;
        let (ws, _) = tokio_tungstenite::client_async(req, io).await?;
        Ok(ws)
    }
}

/// A fresh ES256 key's JWKS and a token it signed, valid for an hour: what a route with
/// `auth.jwt` verifies on every new connection in the auth benchmark.
fn es256_token() -> anyhow::Result<(String, String)> {
    use base64::Engine;
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let rng = ring::rand::SystemRandom::new();
    let alg = &ECDSA_P256_SHA256_FIXED_SIGNING;
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).map_err(|_| anyhow::anyhow!("keygen"))?;
    let pair =
        EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).map_err(|_| anyhow::anyhow!("key"))?;
    let point = pair.public_key().as_ref();
    let jwks = serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bench",
        "x": b64(&point[1..33]), "y": b64(&point[33..65])}]});
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        + 3600;
    let header = b64(br#"{"alg":"ES256","typ":"JWT","kid":"bench"}"#);
    let claims = b64(format!(r#"{{"sub":"bench","exp":{exp}}}"#).as_bytes());
    let input = format!("{header}.{claims}");
    let sig = pair
        .sign(&rng, input.as_bytes())
        .map_err(|_| anyhow::anyhow!("sign"))?;
    Ok((jwks.to_string(), format!("{input}.{}", b64(sig.as_ref()))))
}

/// The bench's certificate is self-signed: accept it, but check the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.windows(2).find(|w| w[0] == name).map(|w| w[1].clone())
}

fn num(args: &[String], name: &str, default: u64) -> u64 {
    arg(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Opens `n` connections, at most `parallel` at a time.
async fn open_many(
    target: &Arc<Target>,
    n: u64,
    parallel: usize,
) -> Vec<WebSocketStream<Box<dyn Io>>> {
    let results = futures_util::stream::iter(0..n)
        .map(|_| {
            let t = target.clone();
            async move { t.open().await }
        })
        .buffer_unordered(parallel)
        .collect::<Vec<_>>()
        .await;
    let mut out = Vec::new();
    let mut errors = 0;
    for r in results {
        match r {
            Ok(ws) => out.push(ws),
            Err(_) => errors += 1,
        }
    }
    if errors > 0 {
        eprintln!("wsload: {errors} of {n} connections failed");
    }
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).cloned().unwrap_or_default();
    let tls = if args.iter().any(|a| a == "--tls") {
        // Any certificate (the bench's is self-signed), ALPN http/1.1. Key exchange: `pq` offers X25519MLKEM768 first (with an X25519 share too, as Chrome
        // and Firefox do), `x25519` only the classic group (the default: what every peer
        // speaks), `p256` only P-256.
        use rustls::crypto::aws_lc_rs::kx_group;
        let groups = match arg(&args, "--kx").as_deref().unwrap_or("x25519") {
            "pq" => vec![kx_group::X25519MLKEM768, kx_group::X25519],
            "x25519" => vec![kx_group::X25519],
            "p256" => vec![kx_group::SECP256R1],
            other => anyhow::bail!("--kx {other}: pq, x25519 or p256"),
        };
        let provider = Arc::new(rustls::crypto::CryptoProvider {
            kx_groups: groups,
            ..rustls::crypto::aws_lc_rs::default_provider()
        });
        let algorithms = provider.signature_verification_algorithms;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        // Every connection does a full handshake: the handshake-bound case.
        config.resumption = rustls::client::Resumption::disabled();
        Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
    } else {
        None
    };
    let target = Arc::new(Target {
        addr: arg(&args, "--connect")
            .unwrap_or_else(|| "127.0.0.1:8443".into())
            .parse()?,
        host: arg(&args, "--host").unwrap_or_else(|| "bench.test".into()),
        path: arg(&args, "--path").unwrap_or_else(|| "/ws".into()),
        tls,
    });
    let seconds = Duration::from_secs(num(&args, "--seconds", 10));
    match mode.as_str() {
        "echo" => {
            let conns = num(&args, "--conns", 100);
            let size = num(&args, "--size", 64) as usize;
            let sockets = open_many(&target, conns, 100).await;
            let opened = sockets.len();
            let deadline = Instant::now() + seconds;
            let mut tasks = Vec::new();
            for mut ws in sockets {
                tasks.push(tokio::spawn(async move {
                    let mut rtts: Vec<u32> = Vec::new();
                    let payload = vec![b'x'; size];
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        if ws.send(Message::binary(payload.clone())).await.is_err() {
                            break;
                        }
                        match ws.next().await {
                            Some(Ok(_)) => rtts
                                .push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32),
                            _ => break,
                        }
                    }
                    let _ = ws.close(None).await;
                    rtts
                }));
            }
            let started = Instant::now();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await?);
            }
            let elapsed = started.elapsed().as_secs_f64();
            all.sort_unstable();
            println!(
                "{{\"mode\":\"echo\",\"conns\":{opened},\"messages\":{},\"msgs_per_sec\":{:.0},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
                all.len(),
                all.len() as f64 / elapsed,
                percentile(&all, 0.5),
                percentile(&all, 0.99)
            );
        }
        "connect" => {
            let workers = num(&args, "--concurrency", 50);
            let deadline = Instant::now() + seconds;
            let started = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..workers {
                let t = target.clone();
                tasks.push(tokio::spawn(async move {
                    let (mut ok, mut failed) = (0u64, 0u64);
                    while Instant::now() < deadline {
                        match t.open().await {
                            Ok(mut ws) => {
                                ok += 1;
                                let _ = ws.close(None).await;
                            }
                            Err(_) => failed += 1,
                        }
                    }
                    (ok, failed)
                }));
            }
            let (mut ok, mut failed) = (0, 0);
            for t in tasks {
                let (a, b) = t.await?;
                ok += a;
                failed += b;
            }
            let elapsed = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"connect\",\"connections\":{ok},\"failed\":{failed},\"conns_per_sec\":{:.0}}}",
                ok as f64 / elapsed
            );
        }
        "idle" => {
            let conns = num(&args, "--conns", 10_000);
            let sockets = open_many(&target, conns, 200).await;
            println!("ready {}", sockets.len());
            // With --answer-pings each socket is read, so tungstenite answers the proxy's
            // keepalive Pings (and counts them); without, the sockets are never touched.
            let pings = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let (sockets, readers) = if args.iter().any(|a| a == "--answer-pings") {
                let readers: Vec<_> = sockets
                    .into_iter()
                    .map(|mut ws| {
                        let pings = pings.clone();
                        tokio::spawn(async move {
                            while let Some(Ok(msg)) = ws.next().await {
                                if msg.is_ping() {
                                    pings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                }
                            }
                        })
                    })
                    .collect();
                (Vec::new(), readers)
            } else {
                (sockets, Vec::new())
            };
            // Hold them until told to stop (stdin closes or a line arrives), at most --seconds.
            let mut line = String::new();
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
            let _ = tokio::time::timeout(seconds, stdin.read_line(&mut line)).await;
            let open = sockets.len() + readers.iter().filter(|t| !t.is_finished()).count();
            println!(
                "{{\"mode\":\"idle\",\"held\":{open},\"pings\":{}}}",
                pings.load(std::sync::atomic::Ordering::Relaxed)
            );
            for t in readers {
                t.abort();
            }
            drop(sockets);
        }
        "token" => {
            let file = arg(&args, "--jwks").ok_or_else(|| anyhow::anyhow!("--jwks FILE"))?;
            let (jwks, token) = es256_token()?;
            std::fs::write(file, jwks)?;
            println!("{token}");
        }
        _ => {
            anyhow::bail!(
                "usage: wsload echo|connect|idle|token --connect ADDR --host HOST [--tls] ..."
            )
        }
    }
    Ok(())
}
