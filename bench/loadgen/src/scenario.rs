//! The scenarios: what to connect, what to ask the server, what to wait for, what to report.

use std::cell::{Cell, RefCell};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::{sleep, Instant};

use crate::args::Args;
use crate::client::{self, Member, SendPlan, Tally};
use crate::clock::{mono_ns, secs};
use crate::http::{get_json, plain_load};
use crate::payload::{room_name, HEADER_BYTES};
use crate::procfs::{self, Window};
use crate::wsclient;

type Error = Box<dyn std::error::Error>;

/// How long a single connection attempt (connect + upgrade) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the server may take to report all connections open.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Slack on top of the publishing time for a control request.
const CONTROL_SLACK: Duration = Duration::from_secs(120);
/// Longest wait for deliveries after publishing, whatever the progress (`--max-wait-ms`).
const MAX_DRAIN: Duration = Duration::from_secs(120);
/// The first moments of a publishing run, left out of `latency_after_warmup_us`: a server's
/// first writes on fresh connections cost more (the first segments of each connection, its
/// caches), which weighs on a short run's p99; the report gives the latency with and without.
const WARMUP: Duration = Duration::from_millis(500);

/// How the wait for deliveries ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Everything expected arrived.
    Complete,
    /// Nothing arrived for `--drain-ms`: what is missing is lost.
    Stalled,
    /// A connection ended: what is missing is lost.
    Ended,
    /// `--max-wait-ms` ran out while deliveries were still arriving: the server is behind, and
    /// only the sequence gaps seen so far are known to be lost.
    Cutoff,
}

struct Setup {
    server: SocketAddrV4,
    path: String,
    src_per_addr: usize,
    src_first: u8,
    concurrency: usize,
    pid: u32,
    info: Value,
}

pub async fn run(args: &Args) -> Result<Value, Error> {
    let port: u16 = args.get("port", 0)?;
    if port == 0 {
        return Err("--port is required".into());
    }
    let server = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let info = get_json(server, "/control/info", Duration::from_secs(10)).await?;
    let pid = info["pid"].as_u64().ok_or("the server's /control/info has no pid")? as u32;
    let setup = Setup {
        server,
        path: args.text("path", "/ws"),
        src_per_addr: args.get("src-per-addr", 5_000)?,
        src_first: args.get("src-first", 1)?,
        concurrency: args.get("concurrency", 256)?,
        pid,
        info,
    };
    let mode = args.text("mode", "publish");
    let mut report = match mode.as_str() {
        "publish" | "eventloop" => publish(args, &setup, mode == "eventloop").await?,
        "relay" => relay(args, &setup).await?,
        "idle" => idle(args, &setup).await?,
        "connect" => connect_rate(args, &setup).await?,
        other => return Err(format!("unknown --mode {other}").into()),
    };
    report["mode"] = json!(mode);
    report["server"] = setup.info.clone();
    Ok(report)
}

/// An upgraded connection and the bytes that came right after the `101`.
type Upgraded = (TcpStream, Vec<u8>);

/// Connections opened and upgraded, in index order.
struct Opened {
    streams: Vec<Upgraded>,
    seconds: f64,
}

/// Opens connections `from..to`, connection `i` joining room `r<i % rooms>`, `concurrency` at
/// a time. Fails on the first connection that cannot be opened.
async fn open(setup: &Setup, from: usize, to: usize, rooms: usize, nodelay: bool) -> Result<Opened, Error> {
    let started = mono_ns();
    let next = Rc::new(Cell::new(from));
    let slots: Rc<RefCell<Vec<Option<Upgraded>>>> = Rc::new(RefCell::new((from..to).map(|_| None).collect()));
    let host = setup.server.to_string();
    let mut workers = Vec::new();
    for _ in 0..setup.concurrency.clamp(1, (to - from).max(1)) {
        let (next, slots, host) = (next.clone(), slots.clone(), host.clone());
        let (server, path, per_addr, first) = (setup.server, setup.path.clone(), setup.src_per_addr, setup.src_first);
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= to {
                    return Ok::<(), String>(());
                }
                next.set(i + 1);
                let source = wsclient::source_addr(i, per_addr, first);
                let request =
                    wsclient::upgrade_request(&host, &format!("{path}?room={}", room_name((i % rooms) as u32)));
                let attempt = async {
                    let stream = wsclient::connect(server, source, nodelay).await?;
                    let leftover = wsclient::handshake(&stream, &request).await?;
                    std::io::Result::Ok((stream, leftover))
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
                    Ok(Ok(opened)) => slots.borrow_mut()[i - from] = Some(opened),
                    Ok(Err(e)) => return Err(format!("connection {i} from {source}: {e}")),
                    Err(_) => return Err(format!("connection {i} from {source}: timed out")),
                }
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let seconds = secs(started, mono_ns());
    let streams = Rc::try_unwrap(slots)
        .map_err(|_| "connection workers still running")?
        .into_inner()
        .into_iter()
        .map(|s| s.expect("every slot filled"))
        .collect();
    Ok(Opened { streams, seconds })
}

/// Waits until the server reports at least `n` open WebSocket connections.
async fn await_server_count(setup: &Setup, n: usize) -> Result<(), Error> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let info = get_json(setup.server, "/control/info", Duration::from_secs(10)).await?;
        let open = info["connections"].as_u64().unwrap_or(0) as usize;
        if open >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the server reports {open} of {n} connections open").into());
        }
        sleep(Duration::from_millis(20)).await;
    }
}

/// Members of room `k` when `conns` connections are spread over `rooms` rooms.
fn members(conns: usize, rooms: usize, k: usize) -> u64 {
    (conns / rooms + usize::from(k < conns % rooms)) as u64
}

/// Waits until `expected` deliveries arrived, nothing arrived for `drain`, a connection ended,
/// or `max_wait` passed.
async fn await_deliveries(tally: &Tally, expected: u64, drain: Duration, max_wait: Duration) -> Outcome {
    let hard_stop = Instant::now() + max_wait;
    let (mut seen, mut progress_at) = (tally.received.get(), Instant::now());
    loop {
        if tally.received.get() >= expected {
            return Outcome::Complete;
        }
        if tally.ended.get() > 0 {
            return Outcome::Ended;
        }
        let now = Instant::now();
        if tally.received.get() != seen {
            (seen, progress_at) = (tally.received.get(), now);
        } else if now - progress_at > drain {
            return Outcome::Stalled;
        }
        if now > hard_stop {
            return Outcome::Cutoff;
        }
        sleep(Duration::from_millis(2)).await;
    }
}

/// What every delivery scenario reports.
fn deliveries(tally: &Tally, expected: u64, outcome: Outcome, start_ns: u64, before: &Window, after: &Window) -> Value {
    let received = tally.received.get();
    let missing = expected.saturating_sub(received);
    let (lost, behind) = match outcome {
        Outcome::Cutoff => (tally.gaps.get().min(missing), missing - tally.gaps.get().min(missing)),
        _ => (missing, 0),
    };
    let span = secs(start_ns, tally.last_ns.get().max(start_ns));
    let usage = before.usage(after);
    let server_cpu = usage["server_cpu_s"].as_f64().unwrap_or(0.0);
    let at = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
    let latency = tally.latency.borrow();
    let settled = tally.latency_settled.borrow();
    let from_due = tally.latency_from_due.borrow();
    let lag = tally.publish_lag.borrow();
    json!({
        "expected": expected,
        "received": received,
        "outcome": format!("{outcome:?}").to_lowercase(),
        "lost": lost,
        "behind": behind,
        "gaps": tally.gaps.get(),
        "reordered": tally.reordered.get(),
        "malformed": tally.malformed.get(),
        "negative_latency": tally.negative.get(),
        "published_before_due": tally.before_due.get(),
        "ended_connections": tally.ended.get(),
        "first_error": *tally.first_error.borrow(),
        "delivery_span_s": span,
        "deliveries_per_s": if span > 0.0 { received as f64 / span } else { 0.0 },
        "latency_us": {
            "p50": at(&latency, 0.5), "p99": at(&latency, 0.99), "p999": at(&latency, 0.999),
            "max": latency.max(), "mean": latency.mean(), "count": latency.len(),
        },
        "latency_after_warmup_us": {
            "p50": at(&settled, 0.5), "p99": at(&settled, 0.99), "count": settled.len(),
        },
        "latency_from_schedule_us": {
            "p50": at(&from_due, 0.5), "p99": at(&from_due, 0.99), "p999": at(&from_due, 0.999), "max": from_due.max(),
        },
        "publish_lag_us": { "p50": at(&lag, 0.5), "p99": at(&lag, 0.99), "max": lag.max() },
        "server_cpu_us_per_1k": if received > 0 { server_cpu * 1e6 / (received as f64 / 1000.0) } else { 0.0 },
        "usage": usage,
    })
}

fn spawn_clients(opened: Opened, from: usize, rooms: usize, senders: impl Fn(usize) -> usize, tally: &Rc<Tally>) {
    for (offset, (stream, leftover)) in opened.streams.into_iter().enumerate() {
        let i = from + offset;
        let member = Member { index: i as u32, room: (i % rooms) as u32, senders: senders(i), plan: None };
        tokio::task::spawn_local(client::run(stream, leftover, member, tally.clone()));
    }
}

/// (a)–(d), (g): the server publishes `rate` messages/s (or as fast as it can) for `duration`.
async fn publish(args: &Args, setup: &Setup, eventloop: bool) -> Result<Value, Error> {
    let conns: usize = args.get("conns", 1000)?;
    let rooms: usize = args.get("rooms", 1)?;
    let size: usize = args.get("size", 64)?;
    let rate: f64 = args.get("rate", 0.0)?;
    let duration_ms: u64 = args.get("duration-ms", 5000)?;
    let batch: usize = args.get("batch", 8)?;
    let drain = Duration::from_millis(args.get("drain-ms", 3000)?);
    let max_wait = Duration::from_millis(args.get("max-wait-ms", MAX_DRAIN.as_millis() as u64)?);
    check_size(size)?;
    let rooms = rooms.clamp(1, conns.max(1));

    let opened = open(setup, 0, conns, rooms, false).await?;
    let connect_s = opened.seconds;
    let tally = Tally::new(rooms);
    start_dump(args, &tally);
    spawn_clients(opened, 0, rooms, |_| 1, &tally);
    await_server_count(setup, conns).await?;
    let loadavg_start = procfs::loadavg();

    let mut report = json!({});
    let http_conns: usize = args.get("http-conns", 8)?;
    if eventloop {
        // The same HTTP load on the same process, first idle, then while it publishes.
        let idle_ms: u64 = args.get("idle-ms", duration_ms)?;
        let done = Rc::new(Cell::new(0));
        let before = Window::now(setup.pid)?;
        let until = mono_ns() + idle_ms * 1_000_000;
        let load = plain_load(setup.server, http_conns, until, done.clone());
        let probe_path = format!("/control/idle?duration_ms={idle_ms}");
        let probe = get_json(setup.server, &probe_path, CONTROL_SLACK);
        let (load, probe) = tokio::join!(load, probe);
        load?;
        let after = Window::now(setup.pid)?;
        report["idle"] = json!({
            "http_requests_per_s": done.get() as f64 / (idle_ms as f64 / 1000.0),
            "event_loop": probe?["eventLoopDelay"].clone(),
            "usage": before.usage(&after),
        });
    }

    let query =
        format!("/control/publish?rooms={rooms}&size={size}&rate={rate}&duration_ms={duration_ms}&batch={batch}");
    let done = Rc::new(Cell::new(0));
    let before = Window::now(setup.pid)?;
    let start_ns = before.at_ns;
    tally.settled_from_ns.set(start_ns + WARMUP.as_nanos() as u64);
    let control = get_json(setup.server, &query, Duration::from_millis(duration_ms) + CONTROL_SLACK);
    let answer = if eventloop {
        let load = plain_load(setup.server, http_conns, start_ns + duration_ms * 1_000_000, done.clone());
        let (load, answer) = tokio::join!(load, control);
        load?;
        answer?
    } else {
        control.await?
    };
    let published = answer["published"].as_u64().ok_or("the server's publish answer has no count")?;
    let expected: u64 = (0..rooms)
        .map(|k| {
            members(conns, rooms, k) * (published / rooms as u64 + u64::from((k as u64) < published % rooms as u64))
        })
        .sum();
    let outcome = await_deliveries(&tally, expected, drain, max_wait).await;
    let after = Window::now(setup.pid)?;
    tally.finished.set(true);

    let mut result = deliveries(&tally, expected, outcome, start_ns, &before, &after);
    let publish_s = answer["elapsedMs"].as_f64().unwrap_or(0.0) / 1000.0;
    result["published"] = json!(published);
    result["publish_s"] = json!(publish_s);
    result["offered_per_s"] = json!(if publish_s > 0.0 { expected as f64 / publish_s } else { 0.0 });
    result["event_loop"] = answer["eventLoopDelay"].clone();
    result["params"] = json!({ "conns": conns, "rooms": rooms, "size": size, "rate": rate, "duration_ms": duration_ms, "batch": batch });
    result["connect_s"] = json!(connect_s);
    result["loadavg_start"] = json!(loadavg_start);
    result["loadavg_end"] = json!(procfs::loadavg());
    if eventloop {
        result["http_requests_per_s"] = json!(done.get() as f64 / (duration_ms as f64 / 1000.0));
        result["idle"] = report["idle"].take();
    }
    write_dump(args, &tally)?;
    Ok(result)
}

/// (e): every client sends `send-rate` messages/s to its room; the server relays them to the
/// other members.
async fn relay(args: &Args, setup: &Setup) -> Result<Value, Error> {
    let conns: usize = args.get("conns", 1000)?;
    let rooms: usize = args.get("rooms", 100)?;
    let size: usize = args.get("size", 64)?;
    let send_rate: f64 = args.get("send-rate", 10.0)?;
    let duration_ms: u64 = args.get("duration-ms", 10_000)?;
    let drain = Duration::from_millis(args.get("drain-ms", 3000)?);
    let max_wait = Duration::from_millis(args.get("max-wait-ms", MAX_DRAIN.as_millis() as u64)?);
    check_size(size)?;
    if send_rate <= 0.0 {
        return Err("--send-rate must be positive".into());
    }
    let rooms = rooms.clamp(1, conns.max(1));

    let opened = open(setup, 0, conns, rooms, true).await?;
    let connect_s = opened.seconds;
    await_server_count(setup, conns).await?;
    let loadavg_start = procfs::loadavg();
    let tally = Tally::new(rooms);
    start_dump(args, &tally);
    let period = Duration::from_secs_f64(1.0 / send_rate);
    let count = (send_rate * duration_ms as f64 / 1000.0).round().max(1.0) as u64;
    let before = Window::now(setup.pid)?;
    let first_at = Instant::now() + Duration::from_millis(50);
    for (i, (stream, leftover)) in opened.streams.into_iter().enumerate() {
        let stagger = period.mul_f64(i as f64 / conns as f64);
        let plan = SendPlan { slot: (i / rooms) as u32, first_at: first_at + stagger, period, count, size };
        let room_size = members(conns, rooms, i % rooms) as usize;
        let member = Member { index: i as u32, room: (i % rooms) as u32, senders: room_size, plan: Some(plan) };
        tokio::task::spawn_local(client::run(stream, leftover, member, tally.clone()));
    }
    // Wait for the sending to end, then for the deliveries.
    let sending_ends = first_at + period * (count as u32) + period;
    let all_sent = conns as u64 * count;
    while tally.sent.borrow().iter().sum::<u64>() < all_sent && tally.ended.get() == 0 {
        if Instant::now() > sending_ends + MAX_DRAIN {
            break;
        }
        sleep(Duration::from_millis(10)).await;
    }
    let sent: Vec<u64> = tally.sent.borrow().clone();
    let expected: u64 = sent.iter().enumerate().map(|(k, s)| s * members(conns, rooms, k).saturating_sub(1)).sum();
    let outcome = await_deliveries(&tally, expected, drain, max_wait).await;
    let after = Window::now(setup.pid)?;
    tally.finished.set(true);

    let mut result = deliveries(&tally, expected, outcome, before.at_ns, &before, &after);
    let sent_total: u64 = sent.iter().sum();
    let sending_s = count as f64 / send_rate;
    result["sent"] = json!(sent_total);
    result["offered_per_s"] = json!(expected as f64 / sending_s);
    result["params"] =
        json!({ "conns": conns, "rooms": rooms, "size": size, "send_rate": send_rate, "duration_ms": duration_ms });
    result["connect_s"] = json!(connect_s);
    result["loadavg_start"] = json!(loadavg_start);
    result["loadavg_end"] = json!(procfs::loadavg());
    write_dump(args, &tally)?;
    Ok(result)
}

/// (f): RSS of the server with idle connections, in steps (e.g. 10,000 then 19,000).
async fn idle(args: &Args, setup: &Setup) -> Result<Value, Error> {
    let steps = args.list("steps", &[10_000, 19_000])?;
    let settle = Duration::from_millis(args.get("settle-ms", 3000)?);
    let tally = Tally::new(1);
    sleep(settle / 2).await;
    // The baseline, like every later sample, after a full collection of the garbage so far.
    get_json(setup.server, "/control/gc", Duration::from_secs(30)).await?;
    sleep(settle / 2).await;
    let before = Window::now(setup.pid)?;
    let baseline = before.server;
    let mut rows = Vec::new();
    let mut open_so_far = 0;
    for &step in &steps {
        if step <= open_so_far {
            return Err("--steps must increase".into());
        }
        let opened = open(setup, open_so_far, step, 1, false).await?;
        let seconds = opened.seconds;
        spawn_clients(opened, open_so_far, 1, |_| 1, &tally);
        await_server_count(setup, step).await?;
        open_so_far = step;
        sleep(settle).await;
        let sample = procfs::process(setup.pid)?;
        // Then without the garbage the upgrades left: what the connections themselves hold.
        get_json(setup.server, "/control/gc", Duration::from_secs(30)).await?;
        sleep(settle / 2).await;
        let collected = procfs::process(setup.pid)?;
        let per_connection = |rss: u64| (rss as f64 - baseline.rss_kib as f64) / step as f64;
        rows.push(json!({
            "connections": step,
            "connect_s": seconds,
            "server_rss_kib": sample.rss_kib,
            "kib_per_connection": per_connection(sample.rss_kib),
            "server_rss_after_gc_kib": collected.rss_kib,
            "kib_per_connection_after_gc": per_connection(collected.rss_kib),
        }));
    }
    let ended = tally.ended.get();
    tally.finished.set(true);
    let after = Window::now(setup.pid)?;
    Ok(json!({
        "usage": before.usage(&after),
        "baseline_rss_kib": baseline.rss_kib,
        "steps": rows,
        "ended_connections": ended,
        "first_error": *tally.first_error.borrow(),
        "lost": 0,
    }))
}

/// (h): upgrades per second, `concurrency` connections in flight.
async fn connect_rate(args: &Args, setup: &Setup) -> Result<Value, Error> {
    let conns: usize = args.get("conns", 10_000)?;
    let before = Window::now(setup.pid)?;
    let opened = open(setup, 0, conns, 1, false).await?;
    let after = Window::now(setup.pid)?;
    let seconds = opened.seconds;
    let tally = Tally::new(1);
    spawn_clients(opened, 0, 1, |_| 1, &tally);
    await_server_count(setup, conns).await?;
    let usage = before.usage(&after);
    let server_cpu = usage["server_cpu_s"].as_f64().unwrap_or(0.0);
    tally.finished.set(true);
    Ok(json!({
        "connections": conns,
        "concurrency": setup.concurrency,
        "seconds": seconds,
        "upgrades_per_s": conns as f64 / seconds,
        "server_cpu_us_per_upgrade": server_cpu * 1e6 / conns as f64,
        "usage": usage,
        "lost": 0,
    }))
}

/// With `--dump PATH`, every delivery is kept (see [`client::Delivery`]) ...
fn start_dump(args: &Args, tally: &Tally) {
    if args.has("dump") {
        *tally.dump.borrow_mut() = Some(Vec::new());
    }
}

/// ... and written to PATH once the run is over, a few deliveries at a time.
fn write_dump(args: &Args, tally: &Tally) -> Result<(), Error> {
    use std::io::Write;
    let Some(dump) = tally.dump.borrow_mut().take() else { return Ok(()) };
    let path = args.text("dump", "");
    let failed = |e: std::io::Error| format!("--dump {path}: {e}");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).map_err(failed)?);
    let mut bytes = Vec::with_capacity(client::Delivery::BYTES);
    for delivery in &dump {
        bytes.clear();
        delivery.write(&mut bytes);
        file.write_all(&bytes).map_err(failed)?;
    }
    file.flush().map_err(failed)?;
    Ok(())
}

fn check_size(size: usize) -> Result<(), Error> {
    if !(HEADER_BYTES..=65_536).contains(&size) {
        return Err(format!("--size must be {HEADER_BYTES} to 65536 bytes").into());
    }
    Ok(())
}
