//! The engine end to end without Node.js: a TCP listener stands in for Node's HTTP parser, hands
//! the socket over exactly as the addon does (duplicate the descriptor, close the original), and
//! tungstenite clients are the peers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::Duration;

use roomcast_engine::endpoint::Client as ClientInfo;
use roomcast_engine::publication::Publication;
use roomcast_engine::{handoff, Endpoint, EndpointConfig, Engine, UpgradeRequest};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

type Client = WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

fn engine() -> &'static Engine {
    Box::leak(Box::new(Engine::new()))
}

/// Reads one request head from `stream` and parses what the handshake needs.
fn read_request(stream: &mut TcpStream) -> (UpgradeRequest, Vec<u8>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut chunk).expect("read request");
        assert!(n > 0, "client closed before its request ended");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let text = String::from_utf8(buf[..end].to_vec()).expect("ASCII head");
    let mut lines = text.split("\r\n");
    let mut start = lines.next().unwrap().split(' ');
    let mut request = UpgradeRequest {
        method: start.next().unwrap().into(),
        url: start.next().unwrap().into(),
        ..Default::default()
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap();
        let value = Some(value.trim().to_string());
        match name.to_ascii_lowercase().as_str() {
            "upgrade" => request.upgrade = value,
            "connection" => request.connection = value,
            "sec-websocket-key" => request.key = value,
            "sec-websocket-version" => request.version = value,
            "sec-websocket-protocol" => request.protocol = value,
            "origin" => request.origin = value,
            _ => {}
        }
    }
    (request, buf[end..].to_vec())
}

/// Accepts one upgrade and hands it to the endpoint the way the addon does.
fn hand_over(listener: &TcpListener, endpoint: &Endpoint) -> u16 {
    let (mut stream, _) = listener.accept().unwrap();
    let (request, head) = read_request(&mut stream);
    let socket = handoff::duplicate(stream.as_raw_fd()).expect("duplicate");
    drop(stream); // Node destroys its handle; the duplicate keeps the socket alive.
    match endpoint.adopt(socket, &head, &request, ClientInfo::default()) {
        Ok(_) => 101,
        Err(rejection) => rejection.status,
    }
}

fn connect(listener: &TcpListener, endpoint: &Endpoint, query: &str) -> Client {
    let url = format!("ws://{}/ws{query}", listener.local_addr().unwrap());
    let client = thread::spawn(move || tungstenite::connect(url).expect("handshake").0);
    assert_eq!(hand_over(listener, endpoint), 101);
    let client = client.join().unwrap();
    if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = client.get_ref() {
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    client
}

fn setup(config: EndpointConfig) -> (TcpListener, Endpoint, &'static Engine) {
    let engine = engine();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    (listener, Endpoint::new(engine, config, 2), engine)
}

#[test]
fn relays_between_members_and_delivers_broadcasts() {
    let (listener, endpoint, engine) = setup(EndpointConfig::default());
    let mut a = connect(&listener, &endpoint, "?room=r");
    let mut b = connect(&listener, &endpoint, "?room=r");
    a.send(Message::text("hello")).unwrap();
    assert_eq!(b.read().unwrap(), Message::text("hello"));
    b.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(a.read().unwrap(), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(engine.broadcast("r", &Publication::text("to all"), &[]).delivered, 2);
    assert_eq!(a.read().unwrap(), Message::text("to all"));
    assert_eq!(b.read().unwrap(), Message::text("to all"));
    assert_eq!(endpoint.stats().connections, 2);
}

#[test]
fn echoes_the_close_code_and_releases_the_connection() {
    let (listener, endpoint, engine) = setup(EndpointConfig::default());
    let mut a = connect(&listener, &endpoint, "?room=closing");
    a.close(Some(tungstenite::protocol::CloseFrame { code: CloseCode::from(4000), reason: "bye".into() })).unwrap();
    loop {
        match a.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4000);
            }
            Ok(other) => panic!("unexpected {other:?}"),
            Err(tungstenite::Error::ConnectionClosed) => break,
            Err(e) => panic!("{e}"),
        }
    }
    drop(a); // Our FIN ends the server's linger at once.
    for _ in 0..1000 {
        if endpoint.stats().connections == 0 {
            break;
        }
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(endpoint.stats().connections, 0);
    assert_eq!(engine.registry().room_count(), 0);
}

#[test]
fn fails_an_unmasked_frame_with_1002() {
    let (listener, endpoint, _) = setup(EndpointConfig::default());
    let addr = listener.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        // The request and an unmasked text frame in one write: the frame arrives as `head`.
        tcp.write_all(&[request.as_bytes(), &[0x81, 0x02, b'h', b'i']].concat()).unwrap();
        let mut all = Vec::new();
        tcp.read_to_end(&mut all).unwrap();
        all
    });
    assert_eq!(hand_over(&listener, &endpoint), 101);
    let bytes = client.join().unwrap();
    let close = bytes.windows(2).rposition(|w| w[0] == 0x88).expect("a close frame");
    assert_eq!(u16::from_be_bytes([bytes[close + 2], bytes[close + 3]]), 1002);
    assert_eq!(endpoint.stats().protocol_errors, 1);
}

#[test]
fn refuses_a_bad_handshake_with_its_status() {
    let (listener, endpoint, _) = setup(EndpointConfig::default());
    let addr = listener.local_addr().unwrap();
    let client = thread::spawn(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.write_all(
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\n\r\n",
        )
        .unwrap();
        let mut all = String::new();
        tcp.read_to_string(&mut all).unwrap();
        all
    });
    assert_eq!(hand_over(&listener, &endpoint), 426);
    let response = client.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 426 Upgrade Required\r\n"), "{response}");
    assert!(response.contains("Sec-WebSocket-Version: 13\r\n"));
    assert_eq!(endpoint.stats().rejected_upgrades, 1);
}

#[test]
fn refuses_upgrades_as_soon_as_close_is_called_before_its_wait_runs() {
    let (listener, endpoint, _) = setup(EndpointConfig::default());
    let addr = listener.local_addr().unwrap();
    // Not awaited: everything but the wait for the connections happened in the call.
    let released = endpoint.close(1001, Duration::from_secs(1));
    let client = thread::spawn(move || {
        let mut tcp = TcpStream::connect(addr).unwrap();
        let request = "GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        tcp.write_all(request.as_bytes()).unwrap();
        let mut all = String::new();
        tcp.read_to_string(&mut all).unwrap();
        all
    });
    assert_eq!(hand_over(&listener, &endpoint), 503);
    assert!(client.join().unwrap().starts_with("HTTP/1.1 503 "));
    endpoint.runtime().block_on(released);
}
