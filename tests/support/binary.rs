//! The `wsgate` binary as a child process.

use std::net::SocketAddr;
use std::path::Path;

use crate::*;

/// A `wsgate run` child process with JSON logs on ephemeral loopback ports.
pub struct Binary {
    /// The process.
    pub child: std::process::Child,
    /// Its plain-HTTP listener.
    pub http: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Its log lines, as they come (the reader thread ends with the child's stderr).
    pub log: std::sync::mpsc::Receiver<String>,
}

/// Starts `EXE run --routes DIR` plus `extra` flags; returns once it logs that it listens.
/// `exe` is the test's `env!("CARGO_BIN_EXE_wsgate")` (only the wsgate package's tests have it).
pub fn spawn_wsgate_run(exe: &str, routes: &Path, extra: &[&str]) -> Binary {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(exe)
        .args([
            "run",
            "--log-format",
            "json",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args([
            "--https-listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .args(extra)
        .arg("--routes")
        .arg(routes)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    loop {
        let Ok(line) = rx.recv_timeout(DEADLINE) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wsgate never said it was listening");
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if v["message"] == "wsgate listening" {
            let addr = |k: &str| v[k].as_str().unwrap().parse().unwrap();
            return Binary {
                child,
                http: addr("http"),
                admin: addr("admin"),
                log: rx,
            };
        }
    }
}

impl Binary {
    /// Sends SIGTERM.
    pub fn terminate(&self) {
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
    }

    /// Waits for the exit (bounded) and returns its code with every log line.
    pub async fn wait(self) -> (Option<i32>, Vec<String>) {
        let Binary { mut child, log, .. } = self;
        let status = within("exit", tokio::task::spawn_blocking(move || child.wait()))
            .await
            .unwrap()
            .unwrap();
        (status.code(), log.iter().collect())
    }
}
