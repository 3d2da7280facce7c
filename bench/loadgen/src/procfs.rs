//! What `/proc` says about the server under test, this process and the machine.

use std::fs;
use std::io;

/// CPU time and memory of one process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    /// User + system CPU seconds of every thread of the process (`/proc/<pid>/stat`).
    pub cpu_s: f64,
    /// The system (kernel) part of `cpu_s`.
    pub sys_s: f64,
    /// Resident set size, KiB (`VmRSS` of `/proc/<pid>/status`).
    pub rss_kib: u64,
    /// Peak resident set size, KiB (`VmHWM`).
    pub hwm_kib: u64,
}

fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// Samples process `pid`.
pub fn process(pid: u32) -> io::Result<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| io::Error::other("unreadable stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    let cpu_s = (field(14) + field(15)) as f64 / ticks_per_second();
    let sys_s = field(15) as f64 / ticks_per_second();
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(ProcSample { cpu_s, sys_s, rss_kib: kib("VmRSS:"), hwm_kib: kib("VmHWM:") })
}

/// CPU seconds (user + system) this process used so far.
pub fn own_cpu_s() -> f64 {
    // SAFETY: `usage` is a valid, writable rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Busy and stolen CPU seconds of the whole machine, all cores (`/proc/stat`).
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineSample {
    /// user + nice + system + irq + softirq.
    pub busy_s: f64,
    /// Time the hypervisor gave to other guests.
    pub steal_s: f64,
}

pub fn machine() -> io::Result<MachineSample> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().next().filter(|l| l.starts_with("cpu ")).ok_or_else(|| io::Error::other("no cpu line"))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    let hz = ticks_per_second();
    Ok(MachineSample { busy_s: (at(0) + at(1) + at(2) + at(5) + at(6)) as f64 / hz, steal_s: at(7) as f64 / hz })
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A snapshot of everything at one instant, to subtract from a later one.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    pub at_ns: u64,
    pub server: ProcSample,
    pub own_cpu_s: f64,
    pub machine: MachineSample,
}

impl Window {
    pub fn now(pid: u32) -> io::Result<Window> {
        Ok(Window {
            at_ns: crate::clock::mono_ns(),
            server: process(pid)?,
            own_cpu_s: own_cpu_s(),
            machine: machine()?,
        })
    }

    /// CPU use between `self` and `later`, as JSON: the server's, the load generator's, and
    /// what the rest of the machine used meanwhile (`other_cpu_s`: a run with much of it was
    /// disturbed).
    pub fn usage(&self, later: &Window) -> serde_json::Value {
        let wall_s = crate::clock::secs(self.at_ns, later.at_ns);
        let server = later.server.cpu_s - self.server.cpu_s;
        let own = later.own_cpu_s - self.own_cpu_s;
        let busy = later.machine.busy_s - self.machine.busy_s;
        serde_json::json!({
            "wall_s": wall_s,
            "server_cpu_s": server,
            "server_sys_s": later.server.sys_s - self.server.sys_s,
            "loadgen_cpu_s": own,
            "loadgen_cpu_pct": if wall_s > 0.0 { 100.0 * own / wall_s } else { 0.0 },
            "other_cpu_s": (busy - server - own).max(0.0),
            "steal_s": later.machine.steal_s - self.machine.steal_s,
            "server_rss_kib": later.server.rss_kib,
            "server_hwm_kib": later.server.hwm_kib,
        })
    }
}
