'use strict';
// bench/run.mjs for real, in one short run: the native C client, fltport and the koffi peer
// (bench/koffi-client.cjs) in two target cells, under Wine against the emulator. What the JSON
// results must hold: every client's message counts, koffi with libuv's default pool reported as
// deadlocked at 16 pending reads (and nothing left hanging), koffi with 40 threads completing,
// and the ratios. It runs with UV_THREADPOOL_SIZE set in its own environment: run.mjs must not
// pass it on to the clients that measure libuv's default pool.
// The deadlock limit is run.mjs's: a koffi run with no progress for that long is reported as a
// deadlock, so it must be far beyond any pause of a healthy run on a loaded machine. Only the one
// deadlocking run waits it out.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const repoRoot = path.resolve(__dirname, '..', '..');
const NOTIFY_CELL = 'notify 64 B pending 16';
const SEND_CELL = 'send 64 B in flight 8';
const MESSAGES = 1000;
const DEADLOCK_SECONDS = 60;
/** The whole run: a few minutes under Wine, and the deadlocking run's wait. */
const RUN_BUDGET_MS = 15 * 60_000 + DEADLOCK_SECONDS * 1000;

describe('bench/run.mjs: native, fltport and koffi in one run', function () {
  let report;
  let output = '';
  let work;
  let child;

  before(async function () {
    // On Windows the workflow's bench step runs the real thing (test-signed test-kernel.sys).
    if (process.platform === 'win32') this.skip();
    this.timeout(RUN_BUDGET_MS);
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'fltport-bench-'));
    const out = path.join(work, 'results.json');
    const args = [
      path.join('bench', 'run.mjs'),
      '--reps', '1',
      '--messages', String(MESSAGES),
      '--filter', `^(${NOTIFY_CELL}|${SEND_CELL})$`,
      '--deadlock-seconds', String(DEADLOCK_SECONDS),
      '--out', out,
    ];
    const code = await new Promise((resolve, reject) => {
      // A process group of its own, so that after() can end it and its Wine processes if this
      // hook fails or times out.
      child = spawn(process.execPath, args, { cwd: repoRoot, env: { ...process.env, UV_THREADPOOL_SIZE: '64' }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      child.stdout.on('data', (chunk) => (output += chunk));
      child.stderr.on('data', (chunk) => (output += chunk));
      child.on('error', reject);
      child.on('close', resolve);
    });
    assert.equal(code, 0, `bench/run.mjs exited with ${code}:\n${output}`);
    report = JSON.parse(fs.readFileSync(out, 'utf8'));
  });

  /** Ends the bench's process group if it still runs (after a failure, a time-out, or mocha's own exit). */
  const endBench = () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Ended in the meantime.
      }
    }
  };
  process.once('exit', endBench);

  after(() => {
    endBench();
    process.removeListener('exit', endBench);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  const result = (id) => report.results.find(({ cell }) => cell.id === id);
  const expectedMessages = (cell) => cell.messages - (cell.messages % cell.concurrency);

  it('ran the two cells, each once per client, no fltport run stalled or failed', () => {
    assert.equal(report.kind, 'benchmark');
    assert.deepEqual(report.timeouts.filter(({ impl }) => impl === 'fltport'), []);
    assert.deepEqual(report.results.map(({ cell }) => cell.id).sort(), [NOTIFY_CELL, SEND_CELL]);
    for (const { runs } of report.results) {
      assert.equal(runs.native.length, 1);
      assert.equal(runs.fltport.length, 1);
      assert.equal(runs['koffi-40'].length, 1);
    }
    for (const { fltportStalls } of report.results) assert.deepEqual(fltportStalls, []);
  });

  it('native, fltport and koffi handled every message of each cell, none failed', () => {
    for (const { cell, runs } of report.results) {
      for (const run of [runs.native[0], runs.fltport[0], runs['koffi-40'][0], ...runs.koffi]) {
        assert.equal(run.messages, expectedMessages(cell), `${run.impl} ${cell.id}`);
        assert.equal(run.failures, 0, `${run.impl} ${cell.id}`);
        if (cell.kind === 'notify') assert.equal(run.matched, expectedMessages(cell), `${run.impl} ${cell.id}: replies the kernel matched`);
      }
      assert.deepEqual([runs.native[0].impl, runs.fltport[0].impl, runs['koffi-40'][0].impl], ['native', 'fltport', 'koffi']);
    }
  });

  it("reports koffi with libuv's default pool at 16 pending reads as a deadlock, run once, shut down cleanly", () => {
    const { runs, koffi } = result(NOTIFY_CELL);
    assert.equal(runs.koffi.length, 0);
    const { deadlock } = koffi.find(({ impl }) => impl === 'koffi');
    assert.ok(deadlock, 'no deadlock reported');
    // UV_THREADPOOL_SIZE=64 in run.mjs's environment did not reach the client.
    assert.equal(deadlock.threadpoolSize, 'default (4)');
    assert.equal(deadlock.concurrency, 16);
    assert.equal(deadlock.deadlockSeconds, DEADLOCK_SECONDS);
    assert.equal(deadlock.messagesHandled, 0);
    assert.equal(deadlock.floodsStarted, 0, 'the warm-up FLOOD reached the kernel');
    assert.equal(deadlock.cleanShutdown, true);
    assert.match(output, new RegExp(`\\| ${NOTIFY_CELL} \\| default pool \\(4 threads\\) \\| deadlock \\(no progress in ${DEADLOCK_SECONDS} s\\) \\|`));
  });

  it('koffi with UV_THREADPOOL_SIZE=40 completes both cells, and its default pool the send cell', () => {
    for (const { cell, runs, koffi } of report.results) {
      const forty = koffi.find(({ impl }) => impl === 'koffi-40');
      assert.equal(forty.deadlock, undefined, cell.id);
      assert.equal(forty.failed, undefined, cell.id);
      assert.equal(runs['koffi-40'][0].threadpoolSize, '40');
      assert.ok(forty.summary.messagesPerSecond > 0);
      // The longest wait between two of its messages, what the deadlock limit is judged against.
      assert.ok(Number.isFinite(forty.maxGapSeconds) && forty.maxGapSeconds > 0, `${cell.id}: maxGapSeconds ${forty.maxGapSeconds}`);
      assert.equal(forty.maxGapSeconds, runs['koffi-40'][0].maxGapSeconds);
    }
    const { runs, koffi } = result(SEND_CELL);
    assert.equal(koffi.find(({ impl }) => impl === 'koffi').deadlock, undefined);
    assert.equal(koffi.find(({ impl }) => impl === 'koffi').failed, undefined);
    assert.equal(runs.koffi[0].threadpoolSize, 'default (4)');
  });

  it('gives finite ratios fltport / native and fltport / koffi, and the targets against koffi', () => {
    const finite = (value, what) => assert.ok(Number.isFinite(value) && value > 0, `${what}: ${value}`);
    for (const { cell, ratios, koffi } of report.results) {
      for (const metric of ['throughput', 'p99', 'cpu']) {
        finite(ratios[metric], `${cell.id} fltport / native ${metric}`);
        for (const config of koffi.filter(({ deadlock }) => !deadlock)) finite(config.ratios[metric], `${cell.id} fltport / ${config.impl} ${metric}`);
      }
    }
    const targets = report.checks.map(({ target }) => target);
    assert.ok(targets.includes(`${NOTIFY_CELL}: fltport >= 1.2x koffi throughput (koffi with UV_THREADPOOL_SIZE=40)`));
    assert.ok(targets.includes(`${NOTIFY_CELL}: fltport CPU/msg <= 0.7x koffi (koffi with UV_THREADPOOL_SIZE=40)`));
    const deadlockCheck = report.checks.find(({ target }) => target.startsWith('no fltport configuration deadlocks'));
    assert.equal(deadlockCheck.pass, true);
  });
});
