//! The socket handoff from Node.js: the file descriptor of an upgraded socket is duplicated
//! (close-on-exec) before Node destroys its own handle, so the socket lives on in the engine.

use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};
use std::time::Duration;

use socket2::Socket;
use tokio::io::unix::AsyncFd;
use tokio::time::timeout;

/// How long a refused client gets to read the HTTP error before the socket is dropped.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// Duplicates `fd` (with `F_DUPFD_CLOEXEC`) and prepares the copy for the runtime: non-blocking,
/// `TCP_NODELAY` when it is TCP. Fails if `fd` is not an open socket.
pub fn duplicate(fd: RawFd) -> std::io::Result<Socket> {
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(9 /* EBADF */));
    }
    // SAFETY: the descriptor is only borrowed for the duration of the fcntl(F_DUPFD_CLOEXEC)
    // call; the copy we keep is a new descriptor that we own.
    let owned = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()?;
    let socket = Socket::from(owned);
    socket.r#type()?; // ENOTSOCK if the descriptor is not a socket.
    socket.set_nonblocking(true)?;
    let _ = socket.set_tcp_nodelay(true); // Fails harmlessly on Unix-domain sockets.
    Ok(socket)
}

/// Registers a socket with the runtime's reactor (must run inside the runtime).
pub(crate) fn register(socket: Socket) -> Option<AsyncFd<Socket>> {
    // SAFETY: `Socket` owns its descriptor, keeps it open until dropped and always returns the
    // same one from `as_raw_fd`; the `AsyncFd` owns the `Socket`.
    unsafe { AsyncFd::register(socket) }.ok()
}

/// Writes a complete HTTP response (a refused upgrade), sends FIN, and waits briefly for the
/// client to close before dropping the socket.
pub(crate) async fn respond_and_close(socket: Socket, response: Vec<u8>) {
    let Some(fd) = register(socket) else { return };
    let exchange = async {
        let mut written = 0;
        while written < response.len() {
            let mut guard = fd.writable().await?;
            match guard.try_io(|fd| fd.get_ref().send(&response[written..])) {
                Ok(result) => written += result?,
                Err(_would_block) => continue,
            }
        }
        fd.get_ref().shutdown(Shutdown::Write)?;
        let mut sink = [0u8; 1024];
        loop {
            let mut guard = fd.readable().await?;
            match guard.try_io(|fd| std::io::Read::read(&mut fd.get_ref(), &mut sink)) {
                Ok(Ok(0)) => return Ok(()),
                Ok(result) => {
                    result?;
                }
                Err(_would_block) => continue,
            }
        }
    };
    let _: Result<std::io::Result<()>, _> = timeout(REFUSAL_TIMEOUT, exchange).await;
}
