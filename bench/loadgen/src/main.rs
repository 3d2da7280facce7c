//! roomcast's load generator: opens WebSocket subscribers against a server under test, has the
//! server publish (or the clients relay) messages that carry a sequence number and their send
//! time, and reports deliveries, losses, latency and the CPU and memory the server used.
//!
//! It runs on one thread (a current-thread tokio runtime) so that it can be pinned to one core
//! and measured: it reports its own CPU use next to the server's.

mod args;
mod client;
mod clock;
mod http;
mod payload;
mod procfs;
mod scenario;
mod wsclient;

use args::{Args, USAGE};

fn main() {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let local = tokio::task::LocalSet::new();
    match local.block_on(&runtime, scenario::run(&args)) {
        Ok(report) => {
            println!("{report}");
            // Exit without closing thousands of sockets one by one.
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("roomcast-loadgen: {e}");
            std::process::exit(1);
        }
    }
}
