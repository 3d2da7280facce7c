//! The smallest WebSocket client that does the job: a TCP connect from a chosen loopback source
//! address, a fixed upgrade request, and a frame parser for what servers send. No allocation
//! per message: frames are parsed in place from the caller's buffer.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use tokio::net::{TcpSocket, TcpStream};

/// The RFC 6455 §1.3 sample key, and the accept value every correct server answers with.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";
/// Largest upgrade response accepted.
const MAX_RESPONSE: usize = 16 * 1024;

pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Source address of connection `index`: 127.0.0.`first`, then the next address every
/// `per_addr` connections. Past about 10,000 connections from one address to one port, the
/// kernel's search for a free ephemeral port makes each connect() slow (measured here: 9,000
/// more connections took 15 s instead of 1 s), so the runner uses 5,000 per address.
pub fn source_addr(index: usize, per_addr: usize, first: u8) -> Ipv4Addr {
    let host = first as usize + index / per_addr.max(1);
    Ipv4Addr::new(127, 0, 0, host.min(254) as u8)
}

/// Opens a TCP connection from `source` (any port) to `server`. The socket is closed with a
/// reset (linger 0) so that runs leave no TIME_WAIT behind.
pub async fn connect(server: SocketAddrV4, source: Ipv4Addr, nodelay: bool) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    let fd = socket.as_raw_fd();
    // The port is chosen at connect() time, per destination, instead of at bind() time.
    setsockopt(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, &1i32)?;
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_LINGER, &libc::linger { l_onoff: 1, l_linger: 0 })?;
    socket.bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))?;
    let stream = socket.connect(SocketAddr::V4(server)).await?;
    stream.set_nodelay(nodelay)?;
    Ok(stream)
}

fn setsockopt<T>(fd: i32, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live T of the size passed.
    let rc = unsafe {
        libc::setsockopt(fd, level, name, value as *const T as *const libc::c_void, size_of::<T>() as libc::socklen_t)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The upgrade request for `path_and_query`.
pub fn upgrade_request(host: &str, path_and_query: &str) -> Vec<u8> {
    format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

/// Sends the upgrade request and reads the response. Returns the bytes that followed it (the
/// first frames, if the server sent some already).
pub async fn handshake(stream: &TcpStream, request: &[u8]) -> io::Result<Vec<u8>> {
    write_all(stream, request).await?;
    let mut response = Vec::with_capacity(256);
    let mut buf = [0u8; 4096];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the upgrade")),
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
        if let Some(end) = find(&response, b"\r\n\r\n") {
            let head = &response[..end];
            if !head.starts_with(b"HTTP/1.1 101") {
                let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
                return Err(io::Error::other(format!("upgrade refused: {}", String::from_utf8_lossy(line))));
            }
            if find(head, ACCEPT).is_none() {
                return Err(io::Error::other("wrong Sec-WebSocket-Accept"));
            }
            return Ok(response.split_off(end + 4));
        }
        if response.len() > MAX_RESPONSE {
            return Err(io::Error::other("upgrade response too long"));
        }
    }
}

/// Writes all of `bytes`, waiting for the socket when it is full.
pub async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match stream.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => stream.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A complete frame at the start of a buffer.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    /// Where the payload starts and ends in the buffer.
    pub payload: (usize, usize),
}

/// Parses the frame at the start of `buf`: `Ok(None)` when it is not complete yet.
pub fn parse(buf: &[u8]) -> io::Result<Option<Frame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    if buf[1] & 0x80 != 0 {
        return Err(io::Error::other("masked frame from the server"));
    }
    let (len, header) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize, 10),
        126 | 127 => return Ok(None),
        n => (n as usize, 2),
    };
    if buf.len() < header + len {
        return Ok(None);
    }
    Ok(Some(Frame { fin: buf[0] & 0x80 != 0, opcode: buf[0] & 0x0f, payload: (header, header + len) }))
}

/// Appends a masked client frame (RFC 6455 §5.3) to `out`.
pub fn encode_masked(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_length_forms_and_waits_for_incomplete_frames() {
        let small = [0x82, 2, 7, 8];
        let frame = parse(&small).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode, frame.payload), (true, OP_BINARY, (2, 4)));
        assert!(parse(&small[..3]).unwrap().is_none());
        let mut medium = vec![0x82, 126, 0, 200];
        medium.resize(4 + 200, 0);
        assert_eq!(parse(&medium).unwrap().unwrap().payload, (4, 204));
        let mut large = vec![0x02, 127, 0, 0, 0, 0, 0, 1, 0, 0];
        large.resize(10 + 65536, 0);
        let frame = parse(&large).unwrap().unwrap();
        assert_eq!((frame.fin, frame.payload), (false, (10, 10 + 65536)));
        assert!(parse(&[0x82, 0x81, 0, 0, 0, 0, 1]).is_err(), "servers never mask");
    }

    #[test]
    fn masked_frames_unmask_to_the_payload() {
        let mut out = Vec::new();
        encode_masked(OP_BINARY, b"hello", [1, 2, 3, 4], &mut out);
        assert_eq!(&out[..2], &[0x82, 0x85]);
        let unmasked: Vec<u8> = out[6..].iter().enumerate().map(|(i, b)| b ^ [1, 2, 3, 4][i % 4]).collect();
        assert_eq!(unmasked, b"hello");
    }

    #[test]
    fn source_addresses_advance_every_per_addr_connections() {
        assert_eq!(source_addr(0, 16000, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(15999, 16000, 1), Ipv4Addr::new(127, 0, 0, 1));
        assert_eq!(source_addr(16000, 16000, 1), Ipv4Addr::new(127, 0, 0, 2));
    }
}
