// Runs every suite and ends with one line "N passed, N failed, N skipped" summed over all of
// them; exits non-zero when anything failed.
// Windows programs run under Wine here and natively on Windows; see docs/testing.md for each suite.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { isWindows, repoRoot } from './windows-runtime.mjs';
import { mochaCounts } from './mocha-summary.mjs';
import { runWindowsSuite } from './test-windows.mjs';

process.chdir(repoRoot);

function runNode(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const take = (chunk) => {
      output += chunk;
      process.stdout.write(chunk);
    };
    child.stdout.on('data', take);
    child.stderr.on('data', take);
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

async function runLocalMocha(suite) {
  const mocha = path.join('node_modules', 'mocha', 'bin', 'mocha.js');
  const { code, output } = await runNode([mocha, '--config', path.join(suite, '.mocharc.json')]);
  const { summarized, ...counts } = mochaCounts(output);
  if ((code !== 0 || !summarized) && counts.failed === 0) counts.failed = 1;
  return counts;
}

function plainCounts(output) {
  const lines = output.trim().split('\n').reverse();
  const line = lines.find((text) => /^\d+ passed, \d+ failed/.test(text.trim())) ?? '';
  const [passed, failed, skipped] = [/(\d+) passed/, /(\d+) failed/, /(\d+) skipped/].map((re) => Number(line.match(re)?.[1] ?? 0));
  return { passed, failed, skipped };
}

const suites = [
  ['unit', () => runLocalMocha('test/unit')],
  ['workflows (actionlint)', () => runLocalMocha('test/workflows')],
  ['windows', () => runWindowsSuite('test/windows')],
  ['emulator conformance', async () => plainCounts((await runNode([path.join('scripts', 'test-emulator.mjs')])).output)],
  ['LPC stand-in conformance', async () => plainCounts((await runNode([path.join('scripts', 'test-emulator.mjs'), '--lpc'])).output)],
  ['drivers (the kernel driver loader under Wine)', () => runWindowsSuite('test/drivers', { emulator: true })],
  ['windows with the emulator', () => runWindowsSuite('test/windows', { emulator: true })],
  ['filter-port', () => runWindowsSuite('test/filter-port', { emulator: true })],
  ['fuzz (odd reads, random aborts)', () => runWindowsSuite('test/fuzz', { emulator: true })],
  ['workers (worker_threads on the emulator)', () => runWindowsSuite('test/workers', { emulator: true })],
  ['integration (sample on the emulator)', () => runWindowsSuite('test/integration', { emulator: true })],
  ['cli (the fltport command on the emulator)', () => runWindowsSuite('test/cli', { emulator: true })],
  ['filter-manager (the API and command on the emulated fltmgr.sys)', () => runWindowsSuite('test/filter-manager', { emulator: true })],
  // Real ntdll on Windows; under Wine against the LPC stand-in (emulator/lpc/README.md).
  ['windows-native (LPC)', () => runWindowsSuite('test/windows-native', { lpcStandIn: true })],
  ['bench (bench/run.mjs: native, fltport and koffi, one short run on the emulator)', () => runLocalMocha('test/bench')],
  ['pack (npm pack, install, load)', () => runLocalMocha('test/pack')],
];

const total = { passed: 0, failed: 0, skipped: 0 };
const rows = [];
for (const [name, run] of suites) {
  console.log(`\n=== ${name} ${isWindows ? '' : '(Windows binaries under Wine where needed)'}`);
  let counts;
  try {
    counts = await run();
    // A suite that ran nothing is broken, unless it skipped everything on purpose.
    if (counts.passed + counts.failed + counts.skipped === 0) counts.failed = 1;
  } catch (error) {
    console.log(`${name}: could not run: ${error.stack ?? error}`);
    counts = { passed: 0, failed: 1, skipped: 0 };
  }
  rows.push(`${name}: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped`);
  for (const key of Object.keys(total)) total[key] += counts[key];
}
console.log(`\n${rows.join('\n')}`);
console.log(`${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(total.failed === 0 ? 0 : 1);
