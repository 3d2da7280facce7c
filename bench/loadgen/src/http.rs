//! HTTP/1.1 over loopback: the control requests the load generator sends to the server under
//! test (`/control/*`, JSON answers), and the plain-route load of the event-loop scenario.

use std::cell::Cell;
use std::io;
use std::net::SocketAddrV4;
use std::rc::Rc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::clock::mono_ns;
use crate::wsclient::{find, write_all};

/// Largest response accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// `GET path` on a fresh connection; returns the body of a `200` parsed as JSON.
pub async fn get_json(server: SocketAddrV4, path: &str, timeout: Duration) -> io::Result<serde_json::Value> {
    let exchange = async {
        let stream = TcpStream::connect(server).await?;
        stream.set_nodelay(true)?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n");
        write_all(&stream, request.as_bytes()).await?;
        let mut buf = Vec::with_capacity(1024);
        let (status, body) = read_response(&stream, &mut buf).await?;
        if status != 200 {
            return Err(io::Error::other(format!("GET {path}: HTTP {status}: {}", String::from_utf8_lossy(&body))));
        }
        serde_json::from_slice(&body).map_err(|e| io::Error::other(format!("GET {path}: {e}")))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, format!("GET {path}: no answer"))))
}

/// Reads one response (with a `Content-Length`, or closed by the server) from `stream`; bytes
/// past it stay in `buf`. Returns the status and the body.
async fn read_response(stream: &TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, Vec<u8>)> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(length) = length {
                if buf.len() >= end + 4 + length {
                    let body = buf[end + 4..end + 4 + length].to_vec();
                    buf.drain(..end + 4 + length);
                    return Ok((status, body));
                }
            }
            if head.contains("transfer-encoding") {
                return Err(io::Error::other("chunked responses are not supported: send a Content-Length"));
            }
        }
        if buf.len() > MAX_RESPONSE {
            return Err(io::Error::other("response too long"));
        }
        stream.readable().await?;
        match stream.try_read(&mut chunk) {
            Ok(0) => {
                // Closed: the body is whatever came after the headers.
                let end = find(buf, b"\r\n\r\n").ok_or_else(|| io::Error::other("closed before the headers"))?;
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
                let body = buf[end + 4..].to_vec();
                buf.clear();
                return Ok((status, body));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Keeps `connections` keep-alive connections busy with `GET /plain` until `until_ns`
/// (CLOCK_MONOTONIC); counts the `200`s answered before then in `done`.
pub async fn plain_load(
    server: SocketAddrV4,
    connections: usize,
    until_ns: u64,
    done: Rc<Cell<u64>>,
) -> io::Result<()> {
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let done = done.clone();
        tasks.push(tokio::task::spawn_local(async move {
            let stream = TcpStream::connect(server).await?;
            stream.set_nodelay(true)?;
            let request = format!("GET /plain HTTP/1.1\r\nHost: {server}\r\n\r\n").into_bytes();
            let mut buf = Vec::with_capacity(1024);
            while mono_ns() < until_ns {
                write_all(&stream, &request).await?;
                let remaining = Duration::from_nanos(until_ns.saturating_sub(mono_ns()));
                match tokio::time::timeout(remaining, read_response(&stream, &mut buf)).await {
                    Ok(Ok((200, _))) if mono_ns() <= until_ns => done.set(done.get() + 1),
                    Ok(Ok((200, _))) | Err(_) => break,
                    Ok(Ok((status, _))) => return Err(io::Error::other(format!("GET /plain: HTTP {status}"))),
                    Ok(Err(e)) => return Err(e),
                }
            }
            io::Result::Ok(())
        }));
    }
    for task in tasks {
        task.await.map_err(io::Error::other)??;
    }
    Ok(())
}
