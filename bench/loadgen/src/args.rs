//! Command-line options: `--name value` pairs.

use std::collections::HashMap;
use std::str::FromStr;

pub struct Args {
    values: HashMap<String, String>,
}

impl Args {
    pub fn parse() -> Result<Args, String> {
        let mut values = HashMap::new();
        let mut args = std::env::args().skip(1);
        while let Some(name) = args.next() {
            let key = name.strip_prefix("--").ok_or_else(|| format!("expected --option, got {name}"))?;
            let value = args.next().ok_or_else(|| format!("--{key} needs a value"))?;
            values.insert(key.to_string(), value);
        }
        Ok(Args { values })
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot parse {v:?}")),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    pub fn text(&self, name: &str, default: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    /// A comma-separated list of numbers.
    pub fn list(&self, name: &str, default: &[usize]) -> Result<Vec<usize>, String> {
        match self.values.get(name) {
            None => Ok(default.to_vec()),
            Some(v) => {
                v.split(',').map(|x| x.trim().parse().map_err(|_| format!("--{name}: cannot parse {x:?}"))).collect()
            }
        }
    }
}

pub const USAGE: &str = "\
roomcast-loadgen --mode MODE --port PORT [options]

Modes (each prints one JSON object on stdout):
  publish    N subscribers in K rooms; the server publishes (GET /control/publish)
  eventloop  publish, plus HTTP load on GET /plain, compared with the same load while idle
  relay      N clients in K rooms, each sending at a fixed rate; the server relays
  idle       connect N idle connections (in steps), RSS per connection
  connect    upgrades per second

Options (defaults in brackets):
  --conns N [1000]          connections          --rooms K [1]            rooms (connection i joins r<i % K>)
  --size S [64]             message bytes        --rate R [0]             publishes/s, 0 = as fast as possible
  --duration-ms D [5000]    publishing time      --batch B [8]            publishes per event-loop turn at R = 0
  --send-rate X [10]        relay: msgs/s each   --drain-ms [3000]        wait this long without progress, then count the rest lost
  --max-wait-ms [120000]    after publishing, stop waiting for deliveries (the rest is reported behind, not lost)
  --http-conns H [8]        eventloop: HTTP conns --idle-ms [D]           eventloop: idle phase
  --steps 10000,19000       idle: cumulative connection counts          --settle-ms [3000]
  --concurrency [256]       connects in flight   --path [/ws]
  --src-per-addr [5000]     connections per 127.0.0.x source address      --src-first [1]
  --dump PATH               publish, relay: write every delivery to PATH (32 bytes each, see
                            client::Delivery; node bench/reads.js PATH summarizes them)
";
