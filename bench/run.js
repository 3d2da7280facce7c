// roomcast's benchmark runner: runs the scenarios of issue 6 against roomcast and its peers (ws,
// uWebSockets.js, Bun), the server pinned to core 0 and the load generator to core 1, servers
// alternating A B C D A B C D, and prints one Markdown table of medians (min–max) with ratios.
//
//   node bench/run.js                 full run (3 runs of every scenario, about 25 minutes)
//   node bench/run.js --quick         smoke run for CI: small N, about 1 s per scenario, 1 run;
//                                     exits non-zero if a server fails or a message is lost
//   options: --runs N  --servers roomcast,ws,uws,bun  --scenarios a,b,c,d,e,f,g,h  --no-pin
//   (--servers also takes node-http, in (h) only: Node's HTTP server writing the 101, the floor
//   of anything that lets Node parse the upgrade)
'use strict'

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const BENCH = __dirname
const ROOT = path.resolve(BENCH, '..')
const LOADGEN = path.join(BENCH, 'loadgen', 'target', 'release', 'roomcast-loadgen')
const RESULTS = path.join(BENCH, 'results')
const SERVER_CORE = '0'
const LOADGEN_CORE = '1'
// How long a server may take to print its ready line, and to exit after SIGTERM.
const SERVER_START_MS = 30_000
const SERVER_STOP_MS = 3_000
// On top of a scenario's own duration, how long its load generator may run before it is killed.
const LOADGEN_SLACK_MS = 240_000
// A run is marked when the rest of the machine used more than this many cores meanwhile.
const DISTURBED_CORES = 0.1
// In the full run, how long after publishing ends the load generator waits for a server that is
// behind: what has not arrived by then is reported as its backlog ("behind"), not as lost. It
// keeps a slow server (ws) from stretching the full run past half an hour.
const FULL_MAX_WAIT_MS = 15_000

// ── the servers ────────────────────────────────────────────────────────────────────────────────

function bunBinary() {
  const candidates = [
    'node_modules/@oven/bun-linux-x64/bin/bun',
    'node_modules/bun/bin/bun.exe', // where the `bun` package's postinstall moves it
    'node_modules/bun/bin/bun',
  ]
  for (const candidate of candidates) {
    const file = path.join(BENCH, candidate)
    try {
      fs.accessSync(file, fs.constants.X_OK)
      return file
    } catch {}
  }
  return null
}

const SERVERS = {
  roomcast: { label: 'roomcast', command: () => [process.execPath, 'servers/roomcast.js'] },
  ws: { label: 'ws', command: () => [process.execPath, 'servers/ws.js'] },
  uws: { label: 'uWS.js', command: () => [process.execPath, 'servers/uws.js'] },
  bun: { label: 'Bun', command: () => [bunBinary(), 'servers/bun.js'] },
  // Not a peer and not in the default list: Node's HTTP server writing the 101 and nothing else,
  // the floor of (h) for anything that lets Node parse the upgrade (servers/node-http.js).
  'node-http': {
    label: 'Node http, 101 only',
    command: () => [process.execPath, 'servers/node-http.js'],
    only: ['h'],
  },
}

// ── the scenarios ──────────────────────────────────────────────────────────────────────────────

const ms = (us) => us / 1000
const get = (object, dotted) => dotted.split('.').reduce((o, k) => (o == null ? undefined : o[k]), object)
/** A latency in ms of a paced run's report (a flat-out publisher has no schedule). */
const paced = (path) => (r) => (r.params?.rate > 0 ? ms(get(r, path)) : undefined)
const step = (n) => (r) => r.steps?.[n]

/**
 * Each scenario: the load generator's arguments (full and quick), how long it publishes (for the
 * kill timer), and the metrics of the table: `higher` says which way is better.
 */
const SCENARIOS = [
  {
    id: 'a',
    title: '(a) fan-out peak: 1 room × 1,000 subscribers, 64 B, as fast as possible, 5 s',
    // 32 messages × 1,000 subscribers = 32,000 deliveries per turn of the event loop.
    full: '--mode publish --conns 1000 --rooms 1 --size 64 --rate 0 --duration-ms 5000 --batch 32',
    // The smoke run paces (a) and (d): as fast as possible, the roomcast engine's queues can
    // outgrow maxBufferedBytes and close subscribers (a finding of the full run, see RESULTS.md),
    // and the smoke run must fail only when the harness or a server is broken.
    quick: '--mode publish --conns 100 --rooms 1 --size 64 --rate 1000 --duration-ms 1000',
    metrics: deliveryMetrics(),
  },
  {
    id: 'b',
    title: '(b) fan-out latency: 1,000 subscribers, 200 msg/s (200k deliveries/s offered), 64 B, 10 s',
    full: '--mode publish --conns 1000 --rooms 1 --size 64 --rate 200 --duration-ms 10000',
    quick: '--mode publish --conns 100 --rooms 1 --size 64 --rate 100 --duration-ms 1000',
    metrics: deliveryMetrics(),
  },
  {
    id: 'c',
    title: '(c) wide: 10,000 subscribers, 20 msg/s (200k deliveries/s offered), 256 B, 10 s',
    full: '--mode publish --conns 10000 --rooms 1 --size 256 --rate 20 --duration-ms 10000',
    quick: '--mode publish --conns 500 --rooms 1 --size 256 --rate 20 --duration-ms 1000',
    metrics: deliveryMetrics(),
  },
  {
    id: 'd',
    title: '(d) many rooms: 1,000 rooms × 10 members, round-robin publishing, 64 B, as fast as possible, 5 s',
    // As many deliveries per turn of the event loop as (a): 3,200 messages × 10 members.
    full: '--mode publish --conns 10000 --rooms 1000 --size 64 --rate 0 --duration-ms 5000 --batch 3200',
    quick: '--mode publish --conns 200 --rooms 20 --size 64 --rate 2000 --duration-ms 1000',
    metrics: deliveryMetrics(),
  },
  {
    id: 'e',
    title: '(e) client relay: 100 rooms × 10 clients, each sending 10 msg/s (90k deliveries/s offered), 64 B, 10 s',
    full: '--mode relay --conns 1000 --rooms 100 --size 64 --send-rate 10 --duration-ms 10000',
    quick: '--mode relay --conns 100 --rooms 10 --size 64 --send-rate 10 --duration-ms 1000',
    metrics: deliveryMetrics(),
  },
  {
    id: 'f',
    title: '(f) idle memory: 10,000 then 19,000 idle connections (RSS over the baseline after start-up and a full GC)',
    full: '--mode idle --steps 10000,19000 --settle-ms 3000',
    quick: '--mode idle --steps 500,1000 --settle-ms 500',
    metrics: [
      { label: 'KiB per idle connection, 10k', get: (r) => step(0)(r)?.kib_per_connection, digits: 2 },
      {
        label: 'KiB per idle connection, 10k, after a full GC',
        get: (r) => step(0)(r)?.kib_per_connection_after_gc,
        digits: 2,
      },
      { label: 'KiB per idle connection, 19k', get: (r) => step(1)(r)?.kib_per_connection, digits: 2 },
      {
        label: 'KiB per idle connection, 19k, after a full GC',
        get: (r) => step(1)(r)?.kib_per_connection_after_gc,
        digits: 2,
      },
      { label: 'server RSS with 19k, MiB', get: (r) => step(1)(r)?.server_rss_kib / 1024, digits: 0 },
    ],
  },
  {
    id: 'g',
    title:
      '(g) event-loop impact: HTTP GET /plain (64 keep-alive connections) on the same process, idle vs. during (b)',
    full: '--mode eventloop --conns 1000 --rooms 1 --size 64 --rate 200 --duration-ms 5000 --idle-ms 5000 --http-conns 64',
    quick:
      '--mode eventloop --conns 100 --rooms 1 --size 64 --rate 100 --duration-ms 1000 --idle-ms 1000 --http-conns 16',
    metrics: [
      { label: 'HTTP requests/s, idle', get: (r) => r.idle?.http_requests_per_s, higher: true, digits: 0 },
      { label: 'HTTP requests/s during (b)', get: (r) => r.http_requests_per_s, higher: true, digits: 0 },
      {
        label: 'during (b) ÷ idle, %',
        get: (r) => (100 * r.http_requests_per_s) / r.idle?.http_requests_per_s,
        higher: true,
        digits: 0,
      },
      { label: 'event-loop delay p99 idle, ms', get: (r) => r.idle?.event_loop?.p99Ms, digits: 1 },
      { label: 'event-loop delay p99 during (b), ms', get: (r) => r.event_loop?.p99Ms, digits: 1 },
      { label: 'deliveries/s during (b)', get: (r) => r.deliveries_per_s, higher: true, digits: 0 },
    ],
  },
  {
    id: 'h',
    title: '(h) connection rate: 10,000 upgrades, 256 in flight',
    full: '--mode connect --conns 10000 --concurrency 256',
    quick: '--mode connect --conns 1000 --concurrency 64',
    metrics: [
      { label: 'upgrades/s', get: (r) => r.upgrades_per_s, higher: true, digits: 0 },
      { label: 'server CPU µs per upgrade', get: (r) => r.server_cpu_us_per_upgrade, digits: 0 },
    ],
  },
]

function deliveryMetrics() {
  return [
    { label: 'deliveries/s', get: (r) => r.deliveries_per_s, higher: true, digits: 0 },
    {
      // A paced publisher that falls more than 1 s behind its schedule stops (servers/control.js).
      label: 'paced: messages published, % of the schedule',
      get: (r) =>
        r.params?.rate > 0
          ? (100 * r.published) / Math.round((r.params.rate * r.params.duration_ms) / 1000)
          : undefined,
      higher: true,
      digits: 0,
    },
    { label: 'server CPU µs per 1,000 deliveries', get: (r) => r.server_cpu_us_per_1k, digits: 0 },
    {
      label: 'kernel share of the server CPU, %',
      get: (r) => (100 * get(r, 'usage.server_sys_s')) / get(r, 'usage.server_cpu_s'),
      neutral: true,
      digits: 0,
    },
    { label: 'latency p50, ms', get: (r) => ms(get(r, 'latency_us.p50')), digits: 1 },
    { label: 'latency p99, ms', get: (r) => ms(get(r, 'latency_us.p99')), digits: 1 },
    {
      // Messages published from 0.5 s into the run on (the first writes on fresh connections
      // cost more; see WARMUP in loadgen/src/scenario.rs).
      label: 'latency p99 after the first 0.5 s, ms',
      get: (r) => (get(r, 'latency_after_warmup_us.count') ? ms(get(r, 'latency_after_warmup_us.p99')) : undefined),
      digits: 1,
    },
    { label: 'latency p99.9, ms', get: (r) => ms(get(r, 'latency_us.p999')), digits: 1 },
    // Counted from when each message was due by the publisher's schedule instead of from its
    // publish: with the time the publisher waited for its event loop (see loadgen/src/payload.rs).
    { label: 'latency p99 from the schedule, ms', get: paced('latency_from_schedule_us.p99'), digits: 1 },
    { label: 'publish behind the schedule p99, ms', get: paced('publish_lag_us.p99'), digits: 1 },
    { label: 'latency max, ms', get: (r) => ms(get(r, 'latency_us.max')), digits: 1 },
    { label: 'server RSS at the end, MiB', get: (r) => get(r, 'usage.server_rss_kib') / 1024, digits: 0 },
    {
      label: 'load generator CPU, % of its core',
      get: (r) => get(r, 'usage.loadgen_cpu_pct'),
      neutral: true,
      digits: 0,
    },
    { label: 'lost messages (sum over runs)', get: (r) => r.lost, sum: true, digits: 0 },
    {
      label: `still queued ${FULL_MAX_WAIT_MS / 1000} s after publishing ended (sum over runs)`,
      get: (r) => r.behind,
      sum: true,
      digits: 0,
    },
  ]
}

// ── options ────────────────────────────────────────────────────────────────────────────────────

function parseOptions(argv) {
  const servers = Object.keys(SERVERS).filter((name) => !SERVERS[name].only)
  const options = { quick: false, runs: null, servers, scenarios: null, pin: true }
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    if (arg === '--quick') options.quick = true
    else if (arg === '--no-pin') options.pin = false
    else if (arg === '--runs') options.runs = Number(argv[++i])
    else if (arg === '--servers') options.servers = argv[++i].split(',')
    else if (arg === '--scenarios') options.scenarios = argv[++i].split(',')
    else throw new Error(`unknown option ${arg} (see the top of bench/run.js)`)
  }
  for (const name of options.servers) if (!SERVERS[name]) throw new Error(`unknown server ${name}`)
  options.runs ??= options.quick ? 1 : 3
  if (!Number.isInteger(options.runs) || options.runs < 1) throw new Error('--runs must be a positive integer')
  const ids = options.scenarios ?? SCENARIOS.map((s) => s.id)
  options.scenarios = ids.map((id) => {
    const scenario = SCENARIOS.find((s) => s.id === id)
    if (!scenario) throw new Error(`unknown scenario ${id}`)
    return scenario
  })
  return options
}

// ── preparation ────────────────────────────────────────────────────────────────────────────────

function run(command, args, cwd) {
  const result = spawnSync(command, args, { cwd, stdio: ['ignore', 'inherit', 'inherit'] })
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status ?? result.signal})`)
}

function prepare(options) {
  const missing = ['ws', 'uwebsockets'].filter((name) => {
    try {
      require.resolve(name, { paths: [BENCH] })
      return false
    } catch {
      return true
    }
  })
  if (missing.length > 0 || (options.servers.includes('bun') && !bunBinary())) {
    log('installing the peers (bench/package.json)')
    run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error'], BENCH)
  }
  if (options.servers.includes('bun') && !bunBinary()) throw new Error('the bun binary is missing after npm install')
  log('building the load generator')
  run('cargo', ['build', '--release', '--quiet', '--manifest-path', path.join(BENCH, 'loadgen', 'Cargo.toml')], ROOT)
  if (options.pin && spawnSync('taskset', ['-c', SERVER_CORE, 'true']).status !== 0) {
    log('taskset is not usable here: running without pinning')
    options.pin = false
  }
  if (os.availableParallelism() < 2) options.pin = false
  fs.mkdirSync(path.join(RESULTS, 'logs'), { recursive: true })
}

// How long to wait for the addon when a build is under way (it unlinks the addon first).
const ADDON_WAIT_MS = 180_000
// What servers/roomcast.js loads of the package.
const PACKAGE_FILES = ['package.json', 'index.js', 'index.mjs', 'native.js', 'lib']

function addonFile() {
  return fs.readdirSync(ROOT).find((f) => /^roomcast\..+\.node$/.test(f))
}

/**
 * Copies the roomcast package (its JS and the built addon) aside for the run: the addon may be
 * rebuilt meanwhile, and every roomcast server of a run must load the same build. Returns the
 * copy's directory and a description of the build (hash and build time).
 */
async function snapshotRoomcast(stamp) {
  const deadline = Date.now() + ADDON_WAIT_MS
  while (!addonFile()) {
    if (Date.now() > deadline) throw new Error('no built roomcast addon at the root: run npm run build there first')
    log('waiting for the roomcast addon (a build is under way?)')
    await new Promise((resolve) => setTimeout(resolve, 5000))
  }
  const dir = path.join(RESULTS, `roomcast-${stamp}`)
  fs.mkdirSync(dir, { recursive: true })
  const addon = addonFile()
  const bytes = fs.readFileSync(path.join(ROOT, addon))
  fs.writeFileSync(path.join(dir, addon), bytes)
  for (const name of PACKAGE_FILES) {
    if (fs.existsSync(path.join(ROOT, name)))
      fs.cpSync(path.join(ROOT, name), path.join(dir, name), { recursive: true })
  }
  const hash = require('node:crypto').createHash('sha256').update(bytes).digest('hex').slice(0, 12)
  const built = fs.statSync(path.join(ROOT, addon)).mtime.toISOString()
  return { dir, build: `${addon} sha256:${hash}, built ${built}` }
}

// ── processes ──────────────────────────────────────────────────────────────────────────────────

function pinned(core, argv, pin) {
  return pin ? ['taskset', ['-c', core, ...argv]] : [argv[0], argv.slice(1)]
}

// The processes this runner started and has not seen exit, ended if the runner is interrupted.
const children = new Set()

function track(child) {
  children.add(child)
  child.on('exit', () => children.delete(child))
  return child
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) child.kill('SIGKILL')
    process.exit(130)
  })
}

/** Starts a server; resolves with its process, port and pid once it printed its ready line. */
function startServer(name, options, logFile) {
  const [command, args] = pinned(SERVER_CORE, SERVERS[name].command(), options.pin)
  const out = fs.openSync(logFile, 'a')
  const env = { ...process.env, ROOMCAST_PACKAGE: options.roomcast?.dir ?? ROOT }
  const child = track(spawn(command, args, { cwd: BENCH, env, stdio: ['ignore', 'pipe', out] }))
  fs.closeSync(out)
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`${name} did not start within ${SERVER_START_MS} ms`))
    }, SERVER_START_MS)
    child.on('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      reject(new Error(`${name} exited before it was ready (${code ?? signal}); see ${logFile}`))
    })
    child.stdout.on('data', (chunk) => {
      buffered += chunk
      const line = buffered.split('\n').find((l) => l.startsWith('{'))
      if (!line) return
      clearTimeout(timer)
      child.removeAllListeners('exit')
      child.on('exit', () => children.delete(child))
      child.stdout.removeAllListeners('data')
      child.stdout.resume()
      resolve({ child, ...JSON.parse(line) })
    })
  })
}

/** Stops a server this runner started: SIGTERM to its pid, SIGKILL if it lingers. */
function stopServer(server) {
  const { child } = server
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), SERVER_STOP_MS)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    child.kill('SIGTERM')
  })
}

/** Runs the load generator against `port`; resolves with its JSON report. */
function runLoadgen(scenarioArgs, port, options, logFile, budgetMs) {
  const argv = [LOADGEN, '--port', String(port), ...scenarioArgs.split(' ')]
  const [command, args] = pinned(LOADGEN_CORE, argv, options.pin)
  const err = fs.openSync(logFile, 'a')
  const child = track(spawn(command, args, { cwd: BENCH, stdio: ['ignore', 'pipe', err] }))
  fs.closeSync(err)
  let stdout = ''
  child.stdout.on('data', (chunk) => {
    stdout += chunk
  })
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), budgetMs)
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      clearTimeout(timer)
      if (code !== 0) return reject(new Error(`load generator failed (${code ?? signal}); see ${logFile}`))
      try {
        resolve(JSON.parse(stdout))
      } catch (error) {
        reject(new Error(`load generator printed no report: ${error.message}`))
      }
    })
  })
}

function durationMsOf(scenarioArgs) {
  const times = [...scenarioArgs.matchAll(/--(?:duration|idle|settle)-ms (\d+)/g)].map((m) => Number(m[1]))
  return times.reduce((a, b) => a + b, 0)
}

/** Cores the rest of the machine used during the measurement (0 when unknown). */
function disturbance(report) {
  const usage = report.usage
  if (!usage || !(usage.wall_s > 0)) return 0
  return (usage.other_cpu_s + usage.steal_s) / usage.wall_s
}

// ── statistics and the table ───────────────────────────────────────────────────────────────────

function median(values) {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

function format(value, digits) {
  if (value === undefined || Number.isNaN(value)) return '—'
  if (Math.abs(value) >= 10_000) return Math.round(value).toLocaleString('en-US')
  return value.toFixed(digits)
}

/** The cell of one server: median (min–max), or the sum; † when runs were disturbed. */
function cell(runs, metric) {
  const values = runs.map((r) => metric.get(r.report)).filter((v) => typeof v === 'number' && Number.isFinite(v))
  if (values.length === 0) return { text: runs.some((r) => r.error) ? 'failed' : '—', value: undefined }
  const disturbed = runs.filter((r) => r.disturbed).length
  const mark = disturbed > 0 ? ` †${disturbed}` : ''
  const failed = runs.filter((r) => r.error).length
  const failMark = failed > 0 ? ` (${failed} failed)` : ''
  if (metric.sum) {
    const total = values.reduce((a, b) => a + b, 0)
    return { text: `${format(total, 0)}${failMark}`, value: total }
  }
  const mid = median(values)
  const spread =
    values.length > 1
      ? ` (${format(Math.min(...values), metric.digits)}–${format(Math.max(...values), metric.digits)})`
      : ''
  return { text: `${format(mid, metric.digits)}${spread}${mark}${failMark}`, value: mid }
}

function ratio(ours, theirs) {
  if (ours === undefined || theirs === undefined || theirs === 0) return '—'
  const r = ours / theirs
  return `${r >= 100 ? r.toFixed(0) : r >= 10 ? r.toFixed(1) : r.toFixed(2)}×`
}

function table(results, options) {
  const servers = options.servers
  const peers = servers.filter((s) => s !== 'roomcast')
  const showRatios = servers.includes('roomcast')
  const header = ['scenario / metric', ...servers.map((s) => SERVERS[s].label)]
  if (showRatios) header.push(...peers.map((p) => `roomcast ÷ ${SERVERS[p].label}`))
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`]
  for (const scenario of options.scenarios) {
    const title = options.quick ? `${scenario.title.split(':')[0]} — quick: \`${scenario.quick}\`` : scenario.title
    lines.push(`| **${title}** |${' |'.repeat(header.length - 1)}`)
    for (const metric of scenario.metrics) {
      const cells = Object.fromEntries(servers.map((s) => [s, cell(results[scenario.id][s], metric)]))
      const row = [`${metric.label}${metric.higher ? ' ↑' : metric.sum || metric.neutral ? '' : ' ↓'}`]
      row.push(...servers.map((s) => cells[s].text))
      if (showRatios) {
        row.push(...peers.map((p) => (metric.sum || metric.neutral ? '' : ratio(cells.roomcast.value, cells[p].value))))
      }
      lines.push(`| ${row.join(' | ')} |`)
    }
  }
  return lines.join('\n')
}

function machine(options, started) {
  const cpu = (fs.readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown CPU'
  const bun = bunBinary()
  const bunVersion = bun ? spawnSync(bun, ['--version'], { encoding: 'utf8' }).stdout.trim() : 'absent'
  const version = (name) => {
    try {
      return require(path.join(BENCH, 'node_modules', name, 'package.json')).version
    } catch {
      return '?'
    }
  }
  return [
    `- machine: ${cpu}, ${os.availableParallelism()} cores, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}`,
    `- date: ${started.toISOString()}; duration ${Math.round((Date.now() - started) / 1000)} s`,
    `- command: \`node bench/run.js ${process.argv.slice(2).join(' ')}\`${options.pin ? '' : ' (not pinned)'}`,
    `- runtimes: node ${process.versions.node}, bun ${bunVersion}; ws ${version('ws')}, uwebsockets ${version('uwebsockets')}`,
    `- pinning: ${options.pin ? `servers on core ${SERVER_CORE}, load generator on core ${LOADGEN_CORE} (taskset)` : 'none'}; ${options.runs} run(s) per server, order ${options.servers.map((s) => SERVERS[s].label).join(' → ')} repeated`,
    `- cells: median (min–max) over runs; † n = n runs during which the rest of the machine used more than ${DISTURBED_CORES} core`,
  ].join('\n')
}

function log(message) {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

// ── main ───────────────────────────────────────────────────────────────────────────────────────

async function main() {
  const options = parseOptions(process.argv.slice(2))
  const started = new Date()
  prepare(options)
  const stamp = started.toISOString().replace(/[:.]/g, '-')
  if (options.servers.includes('roomcast')) {
    options.roomcast = await snapshotRoomcast(stamp)
    const probe = spawnSync(process.execPath, ['-e', 'require(process.argv[1])', options.roomcast.dir], {
      encoding: 'utf8',
    })
    if (probe.status !== 0)
      throw new Error(`roomcast does not load; build the addon first (npm run build at the root):\n${probe.stderr}`)
  }
  const logFile = path.join(RESULTS, 'logs', `${stamp}.log`)
  log(`logs in ${path.relative(ROOT, logFile)}`)
  const results = {}
  const problems = []
  for (const scenario of options.scenarios) {
    results[scenario.id] = Object.fromEntries(options.servers.map((s) => [s, []]))
    const scenarioArgs = options.quick ? scenario.quick : scenario.full
    for (let run = 1; run <= options.runs; run++) {
      for (const name of options.servers) {
        if (SERVERS[name].only && !SERVERS[name].only.includes(scenario.id)) continue
        const entry = { run }
        const where = `${scenario.id} run ${run} ${SERVERS[name].label}`
        fs.appendFileSync(logFile, `\n── ${where}: ${scenarioArgs}\n`)
        let server
        try {
          server = await startServer(name, options, logFile)
          const budget = durationMsOf(scenarioArgs) + LOADGEN_SLACK_MS
          const loadArgs =
            options.quick || !/--mode (publish|eventloop|relay)/.test(scenarioArgs)
              ? scenarioArgs
              : `${scenarioArgs} --max-wait-ms ${FULL_MAX_WAIT_MS}`
          entry.report = await runLoadgen(loadArgs, server.port, options, logFile, budget)
          entry.disturbed = disturbance(entry.report) > DISTURBED_CORES
          const r = entry.report
          const broken = r.lost > 0 || r.behind > 0 || r.ended_connections > 0 || r.gaps > 0 || r.malformed > 0
          if (broken) {
            problems.push(`${where}: lost ${r.lost}, behind ${r.behind}, gaps ${r.gaps}, ended ${r.ended_connections}`)
          }
          log(
            `${where}: ${summary(r)}${entry.disturbed ? ` † (${disturbance(r).toFixed(2)} cores used elsewhere)` : ''}`,
          )
        } catch (error) {
          entry.error = error.message
          problems.push(`${where}: ${error.message}`)
          log(`${where}: FAILED: ${error.message}`)
        } finally {
          if (server) await stopServer(server)
        }
        entry.report ??= {}
        results[scenario.id][name].push(entry)
      }
    }
  }
  const output = [`## roomcast benchmark${options.quick ? ' (quick smoke run)' : ''}`, '', machine(options, started)]
  const head = spawnSync('git', ['log', '-1', '--format=%h %s'], { cwd: ROOT, encoding: 'utf8' }).stdout.trim()
  output.push(`- roomcast: repository at ${head}; ${options.roomcast?.build ?? 'not run'}`, '')
  if (options.roomcast) fs.rmSync(options.roomcast.dir, { recursive: true, force: true })
  output.push(table(results, options), '')
  if (options.servers.includes('roomcast')) {
    output.push(
      'Ratios are roomcast ÷ peer, medians of the same run: for ↑ rows more is better, for ↓ rows less is.',
      '',
    )
  }
  const markdown = output.join('\n')
  fs.writeFileSync(
    path.join(RESULTS, `${stamp}.json`),
    JSON.stringify({ options: summaryOptions(options), results }, null, 1),
  )
  fs.writeFileSync(path.join(RESULTS, 'latest.md'), markdown)
  process.stdout.write(`${markdown}\n`)
  if (problems.length > 0) {
    process.stderr.write(`\n${problems.length} problem(s):\n${problems.map((p) => `  ${p}`).join('\n')}\n`)
    // A full run reports losses in the table; the smoke run fails on them.
    if (options.quick) process.exit(1)
  }
  if (options.quick) process.stderr.write('bench quick: every server ran every scenario, nothing lost\n')
}

function summaryOptions(options) {
  return { ...options, scenarios: options.scenarios.map((s) => s.id) }
}

function summary(r) {
  if (r.upgrades_per_s) return `${Math.round(r.upgrades_per_s)} upgrades/s`
  if (r.steps)
    return r.steps.map((s) => `${s.connections} conns: ${s.kib_per_connection.toFixed(2)} KiB/conn`).join(', ')
  const http =
    r.http_requests_per_s === undefined
      ? ''
      : `, http ${Math.round(r.idle.http_requests_per_s)} → ${Math.round(r.http_requests_per_s)} req/s`
  return `${Math.round(r.deliveries_per_s)} deliveries/s, p99 ${ms(r.latency_us.p99).toFixed(1)} ms, ${Math.round(r.server_cpu_us_per_1k)} µs/1k, lost ${r.lost}${r.behind ? `, behind ${r.behind}` : ''}, loadgen ${Math.round(r.usage.loadgen_cpu_pct)}%${http}`
}

main().catch((error) => {
  process.stderr.write(`bench: ${error.stack ?? error}\n`)
  process.exit(1)
})
