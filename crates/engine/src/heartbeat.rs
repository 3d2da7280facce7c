//! The heartbeat of an endpoint: a ping to every connection each `pingInterval`, and the
//! connections that sent nothing since the previous ping dropped and counted. One task per
//! endpoint rather than a timer per connection, so an idle connection costs no timer.

use std::sync::Arc;
use std::time::Duration;

use crate::endpoint::EndpointShared;
use crate::stats::add;

/// Pings every connection each `period`; a connection that sent nothing since the previous
/// ping is dropped and counted.
pub(crate) async fn run(shared: Arc<EndpointShared>, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let open = shared.open_connections();
        for conn in open {
            if !conn.heartbeat() {
                add(&shared.stats.ping_timeouts, 1);
                conn.terminate();
            }
        }
    }
}
