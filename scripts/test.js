// `npm test`: builds the addon, checks formatting and lints, runs cargo test (the workspace, then
// the benchmark's load generator), vitest, the end-to-end tests of the Next.js example in
// Chromium (e2e/), the Autobahn cases (compared with docs/autobahn/summary.json) and the
// benchmark's smoke run (nothing lost; no timing), and closes with one plain summary line
// ("tests: N passed, N failed").
'use strict'

const { spawnSync } = require('node:child_process')
const fs = require('node:fs')
const os = require('node:os')
const path = require('node:path')

const root = path.resolve(__dirname, '..')

function step(title, command, args, { capture = false } = {}) {
  console.log(`\n── ${title}: ${command} ${args.join(' ')}`)
  const result = spawnSync(command, args, {
    cwd: root,
    stdio: capture ? ['inherit', 'pipe', 'inherit'] : 'inherit',
    encoding: 'utf8',
  })
  if (capture) process.stdout.write(result.stdout)
  if (result.status !== 0) {
    console.error(`\n${title} failed (exit ${result.status ?? result.signal})`)
    process.exit(result.status || 1)
  }
  return result.stdout
}

step('build', 'npm', ['run', 'build'])
step('lint', 'npm', ['run', 'lint'])
const cargo = step('cargo test', 'cargo', ['test', '--workspace', '--color', 'never'], { capture: true })
// The benchmark's load generator is a cargo workspace of its own (bench/loadgen).
const loadgen = step(
  'cargo test (benchmark load generator)',
  'cargo',
  ['test', '--manifest-path', 'bench/loadgen/Cargo.toml', '--color', 'never'],
  { capture: true },
)
let cargoPassed = 0
let cargoFailed = 0
for (const match of (cargo + loadgen).matchAll(/test result: \w+\. (\d+) passed; (\d+) failed/g)) {
  cargoPassed += Number(match[1])
  cargoFailed += Number(match[2])
}

const report = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'roomcast-vitest-')), 'report.json')
step('vitest', 'npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`])
const vitest = JSON.parse(fs.readFileSync(report, 'utf8'))

// The Next.js example in Chromium (e2e/): builds the example when its build is stale, then runs
// the browser scenarios against its custom server, in production and under next dev.
const e2eReport = path.join(path.dirname(report), 'e2e.json')
step('e2e (Next.js example in Chromium)', 'npx', [
  'vitest',
  'run',
  '--config',
  'e2e/vitest.config.mts',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${e2eReport}`,
])
const e2e = JSON.parse(fs.readFileSync(e2eReport, 'utf8'))

step('autobahn', 'node', ['autobahn/run.js', '--check'])
// The libFuzzer targets need a nightly toolchain and cargo-fuzz (.ci/run installs it when a nightly
// is there): 30 s each, starting from the committed corpus; new inputs go to target/, not the tree.
if (spawnSync('cargo', ['+nightly', 'fuzz', '--version'], { cwd: root }).status === 0) {
  for (const target of ['decoder', 'handshake', 'encode_roundtrip', 'envelope']) {
    const scratch = path.join('target', 'fuzz-corpus', target)
    fs.mkdirSync(path.join(root, scratch), { recursive: true })
    const corpus = path.join('crates', 'engine', 'fuzz', 'corpus', target)
    const args = ['+nightly', 'fuzz', 'run', '--fuzz-dir', 'crates/engine/fuzz', target, scratch, corpus]
    step(`fuzz ${target}`, 'cargo', [...args, '--', '-max_total_time=30'])
  }
} else {
  console.log('\n── fuzz: skipped (no nightly toolchain with cargo-fuzz; see docs/reliability.md)')
}
step('benchmark smoke run', 'node', ['bench/run.js', '--quick'])

const passed = cargoPassed + vitest.numPassedTests + e2e.numPassedTests
const failed = cargoFailed + vitest.numFailedTests + e2e.numFailedTests
console.log(
  `\ncargo test: ${cargoPassed} passed, vitest: ${vitest.numPassedTests} passed, e2e: ${e2e.numPassedTests} passed`,
)
if (passed === 0) {
  console.error('no test ran')
  process.exit(1)
}
console.log(`tests: ${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
