//! What an idle connection costs on the Rust side alone (no Node.js): adopts N connections over
//! Unix socket pairs and prints the growth of the process's anonymous RSS per connection. Used by
//! issue 6's (f) analysis (bench/RESULTS.md), to split the server's per-connection RSS between the
//! engine and Node.js.
//!
//!     cargo run --release -p roomcast-engine --example idle_memory -- 8000
//!
//! Needs a file limit above 2 N + 1000 (`ulimit -n 20000`).

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use roomcast_engine::endpoint::Client;
use roomcast_engine::{handoff, Endpoint, EndpointConfig, Engine, UpgradeRequest};

fn anonymous_rss_kib() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status.lines().find(|l| l.starts_with("RssAnon")).expect("RssAnon");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("a number")
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(8000);
    let engine: &'static Engine = Box::leak(Box::new(Engine::new()));
    let endpoint = Endpoint::new(engine, EndpointConfig { ping_interval: None, ..EndpointConfig::default() }, 2);
    let request = UpgradeRequest {
        method: "GET".into(),
        url: "/ws?room=r0".into(),
        upgrade: Some("websocket".into()),
        connection: Some("Upgrade".into()),
        key: Some("dGhlIHNhbXBsZSBub25jZQ==".into()),
        version: Some("13".into()),
        ..Default::default()
    };
    let mut peers = Vec::with_capacity(n + 500);
    let mut open = |count: usize| {
        for _ in 0..count {
            let (ours, theirs) = UnixStream::pair().expect("socket pair (raise the file limit)");
            let socket = handoff::duplicate(ours.as_raw_fd()).expect("duplicate");
            drop(ours);
            endpoint.adopt(socket, &[], &request, Client::default()).expect("accepted");
            peers.push(theirs);
        }
    };
    open(500); // Warm-up: the runtime, the registry's first allocations.
    std::thread::sleep(Duration::from_millis(500));
    let before = anonymous_rss_kib();
    open(n);
    std::thread::sleep(Duration::from_millis(1500)); // Every 101 written, every task idle.
    let after = anonymous_rss_kib();
    println!(
        "{n} idle connections: anonymous RSS {before} → {after} KiB, {:.2} KiB per connection (Rust side only)",
        after.saturating_sub(before) as f64 / n as f64
    );
}
