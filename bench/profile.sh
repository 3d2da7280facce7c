#!/usr/bin/env bash
# Profiles one peer server under one load, the way bench/RESULTS.md reports it. The server runs
# on core 0, the load generator on core 1; output goes to bench/results/profile/.
#
#   bench/profile.sh SERVER TOOL [load generator options]
#     SERVER  roomcast | ws | uws | bun | node-http (the floor of (h))
#     TOOL    perf      CPU samples with call graphs, kernel included (perf record -e cpu-clock)
#             syscalls  system calls per 1,000 deliveries (perf stat on syscall tracepoints)
#             wakeups   per 100 ms: the server's sends, the share of them that woke a sleeping
#                       thread (on loopback, the load generator) and sent an IPI for it, and the
#                       server's CPU per send (perf stat -I 100)
#             switches  the server's context switches, per upgrade (--mode connect) or per 1,000
#                       deliveries (perf stat)
#             callgrind user-space instructions, counted only once all connections are open
#             dhat      heap blocks live at exit, by allocation site (for idle memory)
#             reads     every delivery, dumped by the load generator (--dump; 32 bytes each,
#                       64 MB for (b)) and summarized by reads.js: when the late messages were
#                       published, the time between two reads of a connection, the oldest
#                       message of a read, stalls
#   e.g. bench/profile.sh roomcast perf --mode publish --conns 1000 --rate 200 --duration-ms 5000
#
# Needs the load generator built (node bench/run.js --quick builds it), perf and valgrind.
set -euo pipefail
cd "$(dirname "$0")"
server=${1:?server}
tool=${2:?tool}
shift 2
loadgen=loadgen/target/release/roomcast-loadgen
out=results/profile
mkdir -p "$out"
stamp="$server-$tool-$(date +%Y%m%dT%H%M%S)"

case $server in
  bun) for bun in node_modules/@oven/bun-linux-x64/bin/bun node_modules/bun/bin/bun.exe; do [ -x "$bun" ] && break; done
       command=("$bun" servers/bun.js) ;;
  roomcast | ws | uws | node-http) command=(node servers/$server.js)
       [ "$tool" = perf ] && command=(node --perf-basic-prof servers/$server.js) ;;
  *) echo "unknown server $server" >&2; exit 2 ;;
esac
case $tool in
  callgrind) command=(valgrind --tool=callgrind --instr-atstart=no --smc-check=all-non-file
                      "--callgrind-out-file=$out/$stamp.callgrind" "${command[@]}") ;;
  dhat) command=(valgrind --tool=dhat --smc-check=all-non-file "--dhat-out-file=$out/$stamp.dhat.json" "${command[@]}") ;;
  perf | syscalls | wakeups | switches | reads) ;;
  *) echo "unknown tool $tool" >&2; exit 2 ;;
esac

taskset -c 0 "${command[@]}" >"$out/$stamp.server.out" 2>"$out/$stamp.server.err" &
for _ in $(seq 600); do grep -q '"ready"' "$out/$stamp.server.out" 2>/dev/null && break; sleep 0.2; done
ready=$(grep '"ready"' "$out/$stamp.server.out" | head -1)
[ -n "$ready" ] || { echo "the server did not start; see $out/$stamp.server.err" >&2; exit 1; }
port=$(node -e 'console.log(JSON.parse(process.argv[1]).port)' "$ready")
pid=$(node -e 'console.log(JSON.parse(process.argv[1]).pid)' "$ready")
stop() { kill "$pid" 2>/dev/null || true; for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done; kill -9 "$pid" 2>/dev/null || true; }
trap stop EXIT

connections() { node -e '
  require("http").get(`http://127.0.0.1:${process.argv[1]}/control/info`, (res) => {
    let body = ""; res.on("data", (c) => (body += c)); res.on("end", () => console.log(JSON.parse(body).connections))
  }).on("error", () => console.log(0))' "$port"; }
conns=$(node -e 'const a = process.argv.slice(1); const i = a.indexOf("--conns"); console.log(i < 0 ? 1000 : a[i + 1])' -- "$@")

dump=()
[ "$tool" = reads ] && dump=(--dump "$out/$stamp.dump")
taskset -c 1 "$loadgen" --port "$port" "$@" "${dump[@]}" >"$out/$stamp.report.json" &
load=$!
case $tool in
  perf)
    # Sample once every connection is open (from the start for --mode connect), for the rest of
    # the run (at most 60 s).
    if [[ " $* " != *" --mode connect "* ]]; then
      for _ in $(seq 300); do [ "$(connections)" -ge "$conns" ] && break; sleep 0.2; done
    fi
    timeout --signal=INT 60 perf record -e cpu-clock -F 1999 -g -p "$pid" -o "$out/$stamp.perf.data" 2>/dev/null &
    recorder=$!
    wait "$load"; kill -INT "$recorder" 2>/dev/null || true; wait "$recorder" || true
    perf report -i "$out/$stamp.perf.data" --stdio --no-children --sort dso -g none 2>/dev/null | grep '%' | head -8
    perf report -i "$out/$stamp.perf.data" --stdio --no-children --sort sym -g none 2>/dev/null | grep '%' | head -30 ;;
  syscalls)
    events=$(printf 'syscalls:sys_enter_%s,' sendmsg sendto write writev read recvfrom epoll_wait futex)
    perf stat -x, -e "${events%,}" -p "$pid" -o "$out/$stamp.syscalls.csv" &
    counter=$!
    wait "$load"; kill -INT "$counter"; wait "$counter" || true
    node -e '
      const fs = require("fs"); const [csv, report] = process.argv.slice(1)
      const received = JSON.parse(fs.readFileSync(report, "utf8")).received || 1
      for (const line of fs.readFileSync(csv, "utf8").split("\n")) {
        const f = line.split(","); if (!/^\d+$/.test(f[0])) continue
        console.log(`${f[2].replace("syscalls:sys_enter_", "").padEnd(12)} ${f[0].padStart(10)}  ${(f[0] * 1000 / received).toFixed(1)} per 1,000 deliveries`)
      }' "$out/$stamp.syscalls.csv" "$out/$stamp.report.json" ;;
  wakeups)
    # Sends: sendto and sendmsg, and write and writev (how ws, through libuv, writes).
    events=sched:sched_waking,ipi:ipi_send_cpu,cpu-clock$(printf ',syscalls:sys_enter_%s' sendto sendmsg write writev)
    perf stat -I 100 -x, -e "$events" -p "$pid" -o "$out/$stamp.wakeups.csv" &
    counter=$!
    wait "$load"; kill -INT "$counter"; wait "$counter" || true
    # One row per 100 ms with at least 100 sends: time since the load generator started, sends,
    # % of them that woke a thread, % that sent an IPI for it, server CPU µs per send.
    node -e '
      const rows = new Map()
      for (const line of require("fs").readFileSync(process.argv[1], "utf8").split("\n")) {
        const f = line.split(","); if (f.length < 4 || !/^\s*[\d.]+$/.test(f[0])) continue
        const row = rows.get(f[0]) ?? rows.set(f[0], {}).get(f[0])
        row[f[3].split(":").pop()] = Number(f[1])
      }
      console.log("   time   sends  waking    IPI  µs/send")
      for (const [time, r] of rows) {
        const calls = ["sendto", "sendmsg", "write", "writev"].map((name) => r[`sys_enter_${name}`] ?? 0)
        const sends = calls.reduce((a, b) => a + b); if (sends < 100) continue
        const pct = (n) => `${((100 * (n ?? 0)) / sends).toFixed(0)}%`.padStart(7)
        console.log(`${Number(time).toFixed(1).padStart(6)} s ${String(sends).padStart(6)} ${pct(r.sched_waking)} ${pct(r.ipi_send_cpu)} ${((r["cpu-clock"] * 1000) / sends).toFixed(1).padStart(8)}`)
      }' "$out/$stamp.wakeups.csv" ;;
  switches)
    perf stat -x, -e context-switches -p "$pid" -o "$out/$stamp.switches.csv" &
    counter=$!
    wait "$load"; kill -INT "$counter"; wait "$counter" || true
    node -e '
      const fs = require("fs"); const [csv, report] = process.argv.slice(1)
      const r = JSON.parse(fs.readFileSync(report, "utf8"))
      const line = fs.readFileSync(csv, "utf8").split("\n").find((l) => l.includes("context-switches"))
      const switches = Number(line.split(",")[0])
      if (r.upgrades_per_s) console.log(`${switches} context switches, ${(switches / r.connections).toFixed(2)} per upgrade (${Math.round(r.upgrades_per_s)} upgrades/s)`)
      else console.log(`${switches} context switches, ${((switches * 1000) / (r.received || 1)).toFixed(2)} per 1,000 deliveries`)
    ' "$out/$stamp.switches.csv" "$out/$stamp.report.json" ;;
  callgrind)
    for _ in $(seq 600); do [ "$(connections)" -ge "$conns" ] && break; sleep 0.2; done
    callgrind_control -i on "$pid" >/dev/null
    wait "$load"
    callgrind_control -d "$pid" >/dev/null
    sleep 1
    callgrind_annotate --inclusive=yes "$out/$stamp.callgrind.1" 2>/dev/null | grep -E 'roomcast|tokio|PROGRAM' | head -30 ;;
  reads)
    wait "$load"
    node reads.js "$out/$stamp.dump" ;;
  dhat)
    wait "$load"
    stop; sleep 2
    echo "open $out/$stamp.dhat.json with valgrind's dh_view.html" ;;
esac
echo "load generator report: $out/$stamp.report.json"
