// Runs the Autobahn fuzzingclient cases against roomcast, through the addon.
//
//   node autobahn/run.js            run, then write docs/autobahn/summary.json
//   node autobahn/run.js --check    run, then compare with the committed summary: exits 1 on any
//                                   difference, on any FAILED or UNIMPLEMENTED case, or on an
//                                   unclean close
//
// The cases are Autobahn's own case files, run under Python 3 by kosoku (PyPI), installed on
// first use into a venv in target/autobahn/venv. The server is autobahn/echo-server.js. Full
// reports (index.html and one JSON per case) go to target/autobahn/reports. target/ is
// git-ignored and not linted (the venv and the reports hold HTML that biome would check).
'use strict'

const { spawn, spawnSync } = require('node:child_process')
const fs = require('node:fs')
const path = require('node:path')
const readline = require('node:readline')

const here = __dirname
const root = path.resolve(here, '..')
const spec = JSON.parse(fs.readFileSync(path.join(here, 'fuzzingclient.json'), 'utf8'))
const work = path.join(root, 'target', 'autobahn')
const venv = path.join(work, 'venv')
const kosoku = path.join(venv, 'bin', 'kosoku')
const reports = path.join(work, 'reports')
const summaryFile = path.join(root, 'docs', 'autobahn', 'summary.json')
const check = process.argv.includes('--check')

/** Verdicts that are conformant (Autobahn's report colours them green). */
const ACCEPTED_BEHAVIOR = new Set(['OK', 'NON-STRICT', 'INFORMATIONAL'])
const ACCEPTED_CLOSE = new Set(['OK', 'INFORMATIONAL'])
/** The whole run (about 15 s on a 2-core machine) may take at most this long. */
const RUN_TIMEOUT_MS = 10 * 60 * 1000

function fail(message) {
  console.error(`autobahn: ${message}`)
  process.exit(1)
}

function sh(command, args) {
  console.log(`$ ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, { stdio: 'inherit', timeout: 5 * 60 * 1000 })
  if (result.status !== 0) fail(`${command} failed (exit ${result.status ?? result.signal})`)
}

/** Creates the venv and installs the pinned kosoku when it is missing or another version. */
function ensureKosoku() {
  const version = spawnSync(
    path.join(venv, 'bin', 'python'),
    ['-c', 'import importlib.metadata as m; print(m.version("kosoku"))'],
    {
      encoding: 'utf8',
    },
  )
  if (version.status === 0 && version.stdout.trim() === spec.kosoku) return
  if (!fs.existsSync(path.join(venv, 'bin', 'python'))) sh('python3', ['-m', 'venv', venv])
  sh(path.join(venv, 'bin', 'pip'), ['install', '--quiet', '--disable-pip-version-check', `kosoku==${spec.kosoku}`])
}

/** Starts the echo server on a free port; resolves with the child and its address. */
function startEchoServer() {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(here, 'echo-server.js'), '0'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const timer = setTimeout(() => reject(new Error('the echo server did not start within 10 s')), 10_000)
    child.once('exit', (code) => reject(new Error(`the echo server exited (${code}) before listening`)))
    readline.createInterface({ input: child.stdout }).on('line', (line) => {
      const match = /^listening ws:\/\/(127\.0\.0\.1:\d+)\//.exec(line)
      if (!match) return
      clearTimeout(timer)
      child.removeAllListeners('exit')
      resolve({ child, address: match[1] })
    })
  })
}

function runKosoku(address) {
  return new Promise((resolve) => {
    const args = [address, '-o', reports]
    for (const c of spec.cases) args.push('-i', c)
    for (const c of spec['exclude-cases']) args.push('-x', c)
    console.log(`$ ${path.relative(root, kosoku)} ${args.join(' ')}`)
    const child = spawn(kosoku, args, { stdio: 'inherit' })
    const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      resolve(code ?? signal)
    })
  })
}

/** Numeric order of case ids ("9.10.1" after "9.2.1"). */
function compareIds(a, b) {
  const [x, y] = [a.split('.').map(Number), b.split('.').map(Number)]
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    if ((x[i] ?? -1) !== (y[i] ?? -1)) return (x[i] ?? -1) - (y[i] ?? -1)
  }
  return 0
}

/** The committed digest of a run: per case, the verdicts and the close code; no durations. */
function summarize(index) {
  const agents = Object.keys(index)
  if (agents.length !== 1) fail(`expected one agent in the report, got ${agents.length}`)
  const results = index[agents[0]]
  const cases = {}
  const counts = {}
  for (const id of Object.keys(results).sort(compareIds)) {
    const { behavior, behaviorClose, remoteCloseCode } = results[id]
    cases[id] = { behavior, behaviorClose, remoteCloseCode }
    counts[behavior] = (counts[behavior] ?? 0) + 1
  }
  return {
    tool: `kosoku ${spec.kosoku}`,
    server: 'autobahn/echo-server.js',
    cases: spec.cases,
    excluded: spec['exclude-cases'],
    total: Object.keys(cases).length,
    counts,
    results: cases,
  }
}

/** Problems of a run on its own: non-conformant verdicts. */
function verdictProblems(summary) {
  const problems = []
  for (const [id, r] of Object.entries(summary.results)) {
    if (!ACCEPTED_BEHAVIOR.has(r.behavior)) problems.push(`${id}: behavior ${r.behavior}`)
    if (!ACCEPTED_CLOSE.has(r.behaviorClose)) problems.push(`${id}: behaviorClose ${r.behaviorClose}`)
  }
  return problems
}

/** Differences between the committed summary and a fresh one, per case. */
function differences(committed, fresh) {
  const tolerated = new Set(spec.timingDependent?.cases ?? [])
  const accept = new Set(spec.timingDependent?.accept ?? [])
  const ids = new Set([...Object.keys(committed.results), ...Object.keys(fresh.results)])
  const diffs = []
  for (const id of [...ids].sort(compareIds)) {
    const [a, b] = [committed.results[id], fresh.results[id]]
    if (!a || !b) {
      diffs.push(`${id}: ${a ? 'missing from this run' : 'not in the committed summary'}`)
      continue
    }
    for (const key of Object.keys(a)) {
      if (a[key] === b[key]) continue
      if (key === 'behavior' && tolerated.has(id) && accept.has(a[key]) && accept.has(b[key])) {
        console.log(`  note: ${id} ${b[key]} (committed ${a[key]}): timing-dependent, accepted`)
        continue
      }
      diffs.push(`${id}: ${key} ${JSON.stringify(a[key])} → ${JSON.stringify(b[key])}`)
    }
  }
  return diffs
}

async function main() {
  ensureKosoku()
  fs.rmSync(reports, { recursive: true, force: true })
  const { child: server, address } = await startEchoServer()
  let status
  try {
    status = await runKosoku(address)
  } finally {
    const exited =
      server.exitCode === null && server.signalCode === null
        ? new Promise((resolve) => server.once('exit', resolve))
        : Promise.resolve()
    server.kill('SIGTERM')
    const timer = setTimeout(() => server.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
  const indexFile = path.join(reports, 'index.json')
  if (!fs.existsSync(indexFile)) fail(`kosoku wrote no report (exit ${status})`)
  const fresh = summarize(JSON.parse(fs.readFileSync(indexFile, 'utf8')))
  console.log(
    `autobahn: ${fresh.total} cases: ${JSON.stringify(fresh.counts)}; report: ${path.relative(root, reports)}/index.html`,
  )

  const problems = verdictProblems(fresh)
  if (!check) {
    if (problems.length > 0) fail(`not writing the summary; non-conformant cases:\n  ${problems.join('\n  ')}`)
    fs.mkdirSync(path.dirname(summaryFile), { recursive: true })
    fs.writeFileSync(summaryFile, `${JSON.stringify(fresh, null, 2)}\n`)
    console.log(`autobahn: wrote ${path.relative(root, summaryFile)}`)
    return
  }
  fs.writeFileSync(path.join(reports, 'summary.json'), `${JSON.stringify(fresh, null, 2)}\n`)
  const committed = JSON.parse(fs.readFileSync(summaryFile, 'utf8'))
  const diffs = differences(committed, fresh)
  if (problems.length > 0 || diffs.length > 0) {
    fail(
      `${problems.length} non-conformant case(s), ${diffs.length} difference(s) from ${path.relative(root, summaryFile)}` +
        `:\n  ${[...problems, ...diffs].join('\n  ')}`,
    )
  }
  console.log(`autobahn: all ${fresh.total} cases match ${path.relative(root, summaryFile)}`)
}

main().catch((error) => fail(error.stack ?? String(error)))
