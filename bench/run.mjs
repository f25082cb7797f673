// Benchmarks: what fltport costs per message, measured in the same run, over the same transport
// (the filter-manager emulator, emulator/test-kernel's test-kernel.sys as the kernel side, loaded
// once per run: by the JS clients themselves, by emulator/test-kernel/test-kernel-host.cjs for the
// C client), against two peers:
//   native  bench/native-client.c: the scanner pattern done the fast way in C (thread-pool I/O)
//   koffi   bench/koffi-client.cjs: what a Node developer writes without fltport (fltlib.dll through
//           koffi, FilterGetMessage / FilterReplyMessage / FilterSendMessage on libuv's pool with
//           koffi's .async, one loop per pending read); in the target cells only, twice: with
//           libuv's default pool (4 threads), where 16 loops deadlock (every thread blocked in
//           FilterGetMessage, the FLOOD command never runs: detected as no progress for
//           --deadlock-seconds, reported as such, run once per cell since it is deterministic),
//           and with UV_THREADPOOL_SIZE=40. A koffi run that fails is reported (in its row and the
//           targets against it) and that configuration is not run again in the cell; it does not
//           end the benchmark.
// A native or fltport run that fails ends the benchmark, except a fltport run that hits the time
// limit twice in a row: that is reported as a stall, and the check that no fltport configuration
// deadlocks fails with the count.
// native, fltport and the first koffi configuration run with libuv's default pool:
// UV_THREADPOOL_SIZE is never inherited from this process's environment.
//
//   node bench/run.mjs            full run (each cell 3 times, the target cells 5 times; medians)
//   node bench/run.mjs --quick    a quarter of the messages, fewer cells
//   node bench/run.mjs --soak     1,000,000 notification round trips through port.serve(): RSS
//                                 at start, middle and end
//   node bench/run.mjs --wine-calls  (Linux) wineserver requests per message, native and fltport,
//                                 for the target cells: a count, far less sensitive to the
//                                 machine's load than a time
//   node bench/run.mjs --alloc    V8 heap bytes fltport allocates per message in the target cells,
//                                 with the functions they come from (sampling heap profiler)
//   options: --setup (what npm run bench adds: on Linux, scripts/setup.sh first), --reps N (every
//            cell, target cells included, N times), --only notify|ff|send, --filter REGEXP (cell
//            names), --messages N (per cell), --deadlock-seconds N (koffi: no progress for this
//            long is a deadlock; default 20), --node-flags "FLAGS" (for the Windows node.exe,
//            e.g. V8 heap sizes), --out FILE
//   --wine-calls, --alloc and --soak measure fltport (and native) only.
//
// Linux: the Windows programs run under Wine (node.exe, the C client, the test kernel on the
// emulator's fltmgr.sys).
// Windows: the clients run natively against the real filter manager and the system's fltlib.dll
// (the C client built with MSVC); unverified on Windows.
// Results: a table on stdout and JSON in bench/results/<timestamp>.json.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  cmakeBuild,
  emulatedFltlibEnv,
  emulatedNodeExe,
  installEmulatedFilterManager,
  isWindows,
  repoRoot,
  runChecked,
  cacheDir,
  ensureWinePrefix,
  wineEnv,
  windowsNodeExe,
  windowsPath,
} from '../scripts/windows-runtime.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const buildDir = path.join(benchDir, 'build');
const resultsDir = path.join(benchDir, 'results');

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const options = { setup: false, quick: false, soak: false, wineCalls: false, alloc: false, reps: undefined, only: undefined, messages: undefined, out: undefined, filter: undefined, nodeFlags: [], deadlockSeconds: 20 };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--setup') options.setup = true;
    else if (arg === '--quick') options.quick = true;
    else if (arg === '--soak') options.soak = true;
    else if (arg === '--wine-calls') options.wineCalls = true;
    else if (arg === '--alloc') options.alloc = true;
    else if (arg === '--reps') options.reps = Number(argv[++i]);
    else if (arg === '--only') options.only = argv[++i];
    else if (arg === '--messages') options.messages = Number(argv[++i]);
    else if (arg === '--out') options.out = argv[++i];
    else if (arg === '--filter') options.filter = new RegExp(argv[++i]);
    else if (arg === '--node-flags') options.nodeFlags = argv[++i].split(' ').filter(Boolean);
    else if (arg === '--deadlock-seconds') options.deadlockSeconds = Number(argv[++i]);
    else if (arg === '--help' || arg === '-h') {
      console.log('usage: node bench/run.mjs [--setup] [--quick] [--soak] [--wine-calls] [--alloc] [--reps N] [--only notify|ff|send] [--filter REGEXP] [--messages N] [--deadlock-seconds N] [--node-flags "FLAGS"] [--out FILE]');
      process.exit(0);
    } else {
      console.error(`unknown option ${arg}`);
      process.exit(2);
    }
  }
  return options;
}

// ---------------------------------------------------------------- builds

async function buildEverything() {
  if (!fs.existsSync(path.join(repoRoot, 'node_modules', 'koffi'))) runChecked('npm', ['ci', '--no-audit', '--no-fund'], { shell: isWindows });
  if (!fs.existsSync(path.join(repoRoot, 'dist', 'lib', 'index.js')) || !fs.existsSync(path.join(repoRoot, 'build', 'Release', 'fltport.node'))) {
    console.log('building fltport (npm run build)');
    runChecked('npm', ['run', 'build', '--silent'], { shell: isWindows });
  }
  cmakeBuild(benchDir, buildDir);
  const nativeExe = path.join(buildDir, 'fltport-bench-native.exe');
  if (!fs.existsSync(nativeExe)) throw new Error(`the C client was not built: ${nativeExe}`);
  if (isWindows) {
    // The real filter manager and fltlib.dll; test-kernel.sys built with the WDK and test-signed
    // (emulator/test-kernel/sign.ps1 puts it in emulator/build/; FLTPORT_TEST_KERNEL names another).
    const testKernelSys = process.env.FLTPORT_TEST_KERNEL ?? path.join(repoRoot, 'emulator', 'build', 'test-kernel.sys');
    return { testKernelSys, nativeExe };
  }
  const { buildEmulator } = await import('../scripts/build-emulator.mjs');
  const emulator = buildEmulator();
  return { fltlibDll: emulator.fltlibDll, fltmgrSys: emulator.fltmgrSys, testKernelSys: process.env.FLTPORT_TEST_KERNEL ?? emulator.testKernelSys, nativeExe };
}

// ---------------------------------------------------------------- cells

const NOTIFY_PAYLOADS = [64, 1024, 16384];
const PENDING = [1, 4, 16, 64];
const REPLY_BYTES = 16; // a verdict: the kernel's reply buffer, answered with exactly that many bytes
const SEND_PAYLOAD = 64;
const IN_FLIGHT = [1, 8];

function cells(options) {
  const list = [];
  const scale = options.quick ? 0.25 : 1;
  const count = (base) => Math.max(200, Math.round((options.messages ?? base) * scale));
  const pendings = options.quick ? [1, 16, 64] : PENDING;
  for (const variant of ['reply', 'ff']) {
    if (options.only && options.only !== (variant === 'reply' ? 'notify' : 'ff')) continue;
    for (const payload of NOTIFY_PAYLOADS) {
      for (const pending of pendings) {
        const target = variant === 'reply' && pending === 16;
        list.push({
          id: `${variant === 'reply' ? 'notify' : 'notify-ff'} ${payloadName(payload)} pending ${pending}`,
          kind: 'notify',
          variant,
          payload,
          concurrency: pending,
          messages: count(pending === 1 ? 6000 : payload === 16384 ? 12000 : 20000),
          target: target ? 'notify' : undefined,
        });
      }
    }
  }
  if (!options.only || options.only === 'send') {
    for (const inFlight of IN_FLIGHT) {
      list.push({
        id: `send ${payloadName(SEND_PAYLOAD)} in flight ${inFlight}`,
        kind: 'send',
        payload: SEND_PAYLOAD,
        concurrency: inFlight,
        messages: count(inFlight === 1 ? 8000 : 20000),
        target: inFlight === 8 ? 'send' : undefined,
      });
    }
  }
  return options.filter ? list.filter((cell) => options.filter.test(cell.id)) : list;
}

function payloadName(bytes) {
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`;
}

function cellArgs(cell, mode = cell.kind) {
  const args = [mode, String(cell.payload), String(cell.concurrency), String(cell.messages)];
  if (cell.kind === 'notify') args.push(cell.variant === 'ff' ? 'ff' : String(REPLY_BYTES));
  return args;
}

// ---------------------------------------------------------------- running

const RUN_TIMEOUT_MS = 60_000;

/**
 * The koffi peer's configurations, in the target cells: libuv's default pool, and one with a
 * thread for each of its blocking reads and then some.
 */
const KOFFI_CONFIGS = [
  { impl: 'koffi', pool: 'default pool (4 threads)', threadpoolSize: undefined },
  { impl: 'koffi-40', pool: 'UV_THREADPOOL_SIZE=40', threadpoolSize: 40 },
];
/** What a client exits with when it reports DEADLOCK {json} (bench/koffi-client.cjs). */
const DEADLOCK_EXIT_CODE = 3;

/**
 * The environment of a client: libuv's pool size is part of what is measured, so
 * UV_THREADPOOL_SIZE comes from `env` alone, never from this process's environment.
 */
function clientEnv(env) {
  const full = isWindows ? { ...process.env, ...env } : wineEnv(env);
  for (const key of Object.keys(full)) if (key.toUpperCase() === 'UV_THREADPOOL_SIZE') delete full[key];
  if (env.UV_THREADPOOL_SIZE !== undefined) full.UV_THREADPOOL_SIZE = String(env.UV_THREADPOOL_SIZE);
  return full;
}

/**
 * runWindowsProgram (scripts/windows-runtime.mjs) with a time limit: a run that hangs is killed
 * and reported instead of stalling the whole benchmark. Output goes through a file under Wine
 * (node.exe fails with EBADF on a pipe).
 */
function runProgram(exe, args, env, timeoutMs = RUN_TIMEOUT_MS, keepLog = undefined) {
  let child;
  let logFile;
  let fd;
  if (isWindows) {
    child = spawn(exe, args, { cwd: repoRoot, env: clientEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  } else {
    ensureWinePrefix();
    logFile = keepLog ?? path.join(cacheDir, `bench-output-${process.pid}-${Date.now()}.log`);
    fd = fs.openSync(logFile, 'w');
    child = spawn('wine', [exe, ...args], { cwd: repoRoot, env: clientEnv(env), stdio: ['ignore', fd, fd] });
    fs.closeSync(fd);
  }
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill();
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (logFile && keepLog === undefined) {
        output = fs.readFileSync(logFile, 'utf8');
        fs.rmSync(logFile, { force: true });
      }
      resolve({ code: code ?? (signal ? 128 : 1), output, timedOut });
    });
  });
}

/**
 * What bench/koffi-client.cjs allows its shut-down (cancelling the blocked reads, unloading the
 * kernel, waiting for the calls still on libuv's pool), passed to it as --shutdown-seconds.
 */
const KOFFI_SHUTDOWN_SECONDS = 30;

/**
 * A run's time limit. The koffi client ends a deadlock itself, after --deadlock-seconds without
 * progress and then its shut-down; its limit is the last resort, with a minute more for node.exe's
 * start-up and the kernel's load.
 */
function timeLimitMs(koffi, setup, mode) {
  if (mode === 'soak') return 30 * 60_000;
  return koffi ? (setup.deadlockSeconds + KOFFI_SHUTDOWN_SECONDS + 60) * 1000 : RUN_TIMEOUT_MS;
}

/**
 * A JS client prints KERNEL <service> once it has loaded test-kernel.sys, and unloads it at its
 * end. One that was killed or failed may have left it loaded (a service outlives the process that
 * started it): bench/unload-kernel.cjs unloads it in node.exe, so that a retry and the next cells
 * do not run beside a stray kernel.
 */
async function unloadStrayKernel(output, setup) {
  const service = output.split(/\r?\n/).find((text) => text.startsWith('KERNEL '))?.slice(7).trim();
  if (!service) return;
  const { code, output: said } = await runProgram(setup.nodeExe, [path.join('bench', 'unload-kernel.cjs'), service], setup.env);
  console.log(code === 0 ? `  unloaded its kernel ${service}` : `  could not unload its kernel ${service} (exit ${code}): ${said.trim()}`);
}

/**
 * What a run came to: { result } (its figures), { deadlock } (the koffi client reported one) or
 * { failed: reason, output }.
 */
function outcomeOf(koffi, cell, { code, output, timedOut }, limitMs) {
  if (timedOut) return { failed: `no result after ${limitMs / 1000} s, twice (killed)`, output };
  const lines = output.split(/\r?\n/);
  const deadlock = lines.find((text) => text.startsWith('DEADLOCK '));
  if (koffi && code === DEADLOCK_EXIT_CODE && deadlock !== undefined) return { deadlock: JSON.parse(deadlock.slice(9)) };
  const line = lines.find((text) => text.startsWith('RESULT '));
  if (code !== 0 || line === undefined) {
    const said = lines.map((text) => text.trim()).filter(Boolean);
    // The reason: the error's own line (a stack's last line says little), else the last one.
    const reason = said.find((text) => /error|failed/i.test(text)) ?? said[said.length - 1];
    return { failed: `exit ${code}${reason === undefined ? ' without any output' : `: ${reason}`}`, output };
  }
  const result = JSON.parse(line.slice(7));
  const expected = cell.messages - (cell.messages % cell.concurrency); // whole messages per sender
  if (result.messages !== expected || result.failures !== 0 || (cell.variant === 'reply' && result.matched !== expected)) {
    return { failed: `${result.messages} of ${expected} messages, ${result.failures} failures, ${result.matched} matched`, output };
  }
  const fltlib = lines.find((text) => text.startsWith('FLTLIB '))?.slice(7).trim();
  return { result: { ...derive(result), fltlib } };
}

/**
 * One run of a client in a cell. Resolves with its figures; for the koffi client with { deadlock }
 * or { failed: reason } (it may fail where fltport does not: see koffi-client.cjs on Windows); for
 * fltport in a benchmark cell with { stalled } when it hit the time limit twice in a row (what the
 * deadlock check counts). Any other failure of native or fltport fails the whole run.
 */
async function runClient(impl, cell, setup, mode) {
  const koffi = KOFFI_CONFIGS.find((config) => config.impl === impl);
  const script = (file) => [setup.nodeExe, [...setup.nodeFlags, path.join('bench', file), windowsPath(setup.testKernelSys), ...cellArgs(cell, mode)]];
  const [exe, args] =
    impl === 'native'
      ? [setup.nativeExe, [setup.kernelCommand, setup.nativeFltlib, ...cellArgs(cell, mode)]]
      : koffi
        ? script('koffi-client.cjs')
        : script('fltport-client.cjs');
  if (koffi) args.push('--deadlock-seconds', String(setup.deadlockSeconds), '--shutdown-seconds', String(KOFFI_SHUTDOWN_SECONDS));
  const env = { ...setup.env, UV_THREADPOOL_SIZE: koffi?.threadpoolSize };
  const limitMs = timeLimitMs(koffi, setup, mode);
  const attempt = async () => {
    const run = await runProgram(exe, args, env, limitMs);
    if (run.timedOut || (run.code !== 0 && run.code !== DEADLOCK_EXIT_CODE)) await unloadStrayKernel(run.output, setup);
    return run;
  };
  let run = await attempt();
  if (run.timedOut) {
    // Seen once under Wine (a notify-ff cell with 64 senders never finished): retry once, say so.
    // Every run that hits the limit is recorded: the fltport ones are what the deadlock check counts.
    console.log(`  ${impl} ${cell.id}: no result after ${limitMs / 1000} s; killed, running it again`);
    setup.timeouts.push({ impl, cell: cell.id, seconds: limitMs / 1000 });
    run = await attempt();
    if (run.timedOut) {
      console.log(`  ${impl} ${cell.id}: no result after ${limitMs / 1000} s again; killed`);
      setup.timeouts.push({ impl, cell: cell.id, seconds: limitMs / 1000, again: true });
    }
  } else if (impl === 'native' && run.code !== 0 && run.output.trim() === '') {
    // Seen once under Wine (a native send cell right after a koffi run): an exit without a word,
    // before the client's first line. Run again once, say so; a second one fails the run. Only
    // the C client: a JS client that exits without a word crashed, and that is a result.
    console.log(`  ${impl} ${cell.id}: exited ${run.code} without any output; running it again`);
    setup.timeouts.push({ impl, cell: cell.id, silentExit: run.code });
    run = await attempt();
  }
  const outcome = outcomeOf(koffi, cell, run, limitMs);
  if (outcome.failed === undefined) return outcome.result ?? outcome;
  if (koffi) {
    console.log(`  ${impl} ${cell.id} failed: ${outcome.failed}`);
    return { failed: outcome.failed };
  }
  if (impl === 'fltport' && run.timedOut && mode === undefined) return { stalled: outcome.failed };
  throw new Error(`${impl} ${cell.id} failed: ${outcome.failed}\n${outcome.output}`);
}

function derive(result) {
  const rate = result.messages / result.elapsedSeconds;
  return {
    ...result,
    messagesPerSecond: rate,
    cpuPer100k: (result.cpuSeconds / result.messages) * 1e5,
    jsUsPerMessage: result.jsActiveSeconds === undefined ? undefined : (result.jsActiveSeconds / result.messages) * 1e6,
  };
}

const METRICS = ['messagesPerSecond', 'p50Us', 'p99Us', 'p999Us', 'maxUs', 'meanUs', 'cpuPer100k', 'peakBytes', 'jsUsPerMessage', 'eventLoopUtilization'];

function median(values) {
  const sorted = values.filter((value) => typeof value === 'number').sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function summarize(runs) {
  return Object.fromEntries(METRICS.map((metric) => [metric, median(runs.map((runResult) => runResult[metric]))]).filter(([, value]) => value !== undefined));
}

// Other work on the machine (test suites, the demo) skews timings: sampled every second while
// the cells run (Linux only), reported per cell and in the JSON.
const FOREIGN = /mocha|emulator-conformance|fltmgr-control|test-windows|run-tests|demo\.mjs|cmake-js/;
let foreignSeen = 0;
function watchForeign() {
  if (process.platform !== 'linux') return () => undefined;
  const timer = setInterval(() => {
    for (const pid of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      let cmdline = '';
      try {
        cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      } catch {
        continue;
      }
      if (FOREIGN.test(cmdline)) {
        foreignSeen += 1;
        return;
      }
    }
  }, 1000);
  timer.unref();
  return () => clearInterval(timer);
}

function load() {
  return isWindows ? undefined : os.loadavg().map((value) => Number(value.toFixed(2)));
}

// ---------------------------------------------------------------- output

// A figure is missing where a client has no run in a cell (fltport stalled in every repetition).
const known = (format) => (value) => (value === undefined || !Number.isFinite(value) ? '-' : format(value));
const fmt = {
  rate: known((value) => (value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(0))),
  ms: known((us) => (us / 1000).toFixed(2)),
  ratio: known((value) => `${value.toFixed(2)}x`),
  mb: known((bytes) => (bytes / 2 ** 20).toFixed(0)),
  num: (value, digits = 2) => known((number) => number.toFixed(digits))(value),
};

function table(results) {
  const header = [
    'cell', 'native msg/s', 'fltport msg/s', 'ratio', 'native p50/p99/p99.9 ms', 'fltport p50/p99/p99.9 ms', 'p99 ratio',
    'CPU s/100k native', 'fltport', 'ratio', 'peak MB native', 'fltport', 'fltport loop µs/msg',
  ];
  const rows = results.map(({ cell, native, fltport, ratios }) => [
    cell.target ? `**${cell.id}**` : cell.id,
    fmt.rate(native.messagesPerSecond),
    fmt.rate(fltport.messagesPerSecond),
    fmt.ratio(ratios.throughput),
    `${fmt.ms(native.p50Us)} / ${fmt.ms(native.p99Us)} / ${fmt.ms(native.p999Us)}`,
    `${fmt.ms(fltport.p50Us)} / ${fmt.ms(fltport.p99Us)} / ${fmt.ms(fltport.p999Us)}`,
    fmt.ratio(ratios.p99),
    fmt.num(native.cpuPer100k),
    fmt.num(fltport.cpuPer100k),
    fmt.ratio(ratios.cpu),
    fmt.mb(native.peakBytes),
    fmt.mb(fltport.peakBytes),
    fmt.num(fltport.jsUsPerMessage, 1),
  ]);
  return [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

/** The second table: the koffi peer against fltport, in the target cells. */
function koffiTable(results, deadlockSeconds) {
  const header = [
    'cell', "koffi's libuv pool", 'koffi msg/s', 'fltport / koffi msg/s', 'koffi p50/p99/p99.9 ms', 'fltport / koffi p99', 'CPU s/100k koffi', 'fltport / koffi CPU/msg',
    'peak MB koffi', 'longest wait between messages s',
  ];
  const stopped = (what) => [what, ...header.slice(3).map(() => '-')];
  const rows = results.flatMap(({ cell, koffi }) =>
    koffi.map(({ pool, summary, deadlock, failed, ratios, maxGapSeconds }) =>
      deadlock
        ? [cell.id, pool, ...stopped(`deadlock (no progress in ${deadlock.deadlockSeconds ?? deadlockSeconds} s)`)]
        : failed
          ? [cell.id, pool, ...stopped(`failed: ${failed.replaceAll('|', '/')}`)]
          : [
            cell.id,
            pool,
            fmt.rate(summary.messagesPerSecond),
            fmt.ratio(ratios.throughput),
            `${fmt.ms(summary.p50Us)} / ${fmt.ms(summary.p99Us)} / ${fmt.ms(summary.p999Us)}`,
            fmt.ratio(ratios.p99),
            fmt.num(summary.cpuPer100k),
            fmt.ratio(ratios.cpu),
            fmt.mb(summary.peakBytes),
            fmt.num(maxGapSeconds, 2),
          ],
    ),
  );
  return [header, header.map(() => '---'), ...rows].map((row) => `| ${row.join(' | ')} |`).join('\n');
}

function targetChecks(results, setup) {
  const checks = [];
  for (const { cell, ratios, koffi } of results) {
    if (cell.target === undefined) continue;
    // The targets, against native in the same run: throughput (0.95x for notify, 0.9x for
    // send), CPU per message and p99.
    const least = cell.target === 'notify' ? 0.95 : 0.9;
    checks.push({ target: `${cell.id}: throughput >= ${least}x native`, value: ratios.throughput, pass: ratios.throughput >= least });
    checks.push({ target: `${cell.id}: CPU/msg <= 1.2x native`, value: ratios.cpu, pass: ratios.cpu <= 1.2 });
    checks.push({ target: `${cell.id}: p99 <= 1.3x native`, value: ratios.p99, pass: ratios.p99 <= 1.3 });
    const koffi40 = koffi.find((config) => config.impl === 'koffi-40');
    if (cell.target === 'notify' && cell.concurrency === 16 && koffi40) {
      const against = koffi40.ratios ?? {};
      // No ratio where koffi-40 gave no figures: the check says why.
      const missing = koffi40.deadlock ? 'koffi-40 deadlocked' : koffi40.failed ? `koffi-40 failed: ${koffi40.failed}` : undefined;
      checks.push({ target: `${cell.id}: fltport >= 1.2x koffi throughput (koffi with UV_THREADPOOL_SIZE=40)`, value: against.throughput, shown: missing, pass: against.throughput >= 1.2 });
      checks.push({ target: `${cell.id}: fltport CPU/msg <= 0.7x koffi (koffi with UV_THREADPOOL_SIZE=40)`, value: against.cpu, shown: missing, pass: against.cpu <= 0.7 });
    }
  }
  // A fltport run that deadlocked hits the time limit: every such run counts, the ones a retry
  // made up for included.
  const fltportRuns = results.reduce((sum, { runs }) => sum + runs.fltport.length, 0);
  const mostPending = Math.max(0, ...results.filter(({ cell }) => cell.kind === 'notify').map(({ cell }) => cell.concurrency));
  const stalled = setup.timeouts.filter(({ impl }) => impl === 'fltport').length;
  const unresolved = results.filter(({ fltportStalls }) => fltportStalls.length > 0).map(({ cell, fltportStalls }) => `${cell.id} x${fltportStalls.length}`);
  checks.push({
    target: `no fltport configuration deadlocks (fltport always runs with libuv's default pool; ${fltportRuns} runs completed${mostPending > 0 ? `, up to ${mostPending} pending reads` : ''})`,
    shown:
      stalled === 0
        ? 'none stalled'
        : `${stalled} ${stalled === 1 ? 'run' : 'runs'} hit the time limit of ${RUN_TIMEOUT_MS / 1000} s${unresolved.length > 0 ? `; twice in a row, no result: ${unresolved.join(', ')}` : ''}`,
    pass: stalled === 0,
  });
  return checks;
}

/** The median of the per-repetition ratios a / b of a metric, over the repetitions both ran. */
function pairedRatio(runsA, runsB, metric) {
  return median(runsA.map((runA) => {
    const runB = runsB.find((candidate) => candidate.rep === runA.rep);
    return runB === undefined ? undefined : runA[metric] / runB[metric];
  }));
}

const ratiosOf = (runsA, runsB) => ({
  throughput: pairedRatio(runsA, runsB, 'messagesPerSecond'),
  p50: pairedRatio(runsA, runsB, 'p50Us'),
  p99: pairedRatio(runsA, runsB, 'p99Us'),
  p999: pairedRatio(runsA, runsB, 'p999Us'),
  cpu: pairedRatio(runsA, runsB, 'cpuPer100k'),
  peak: pairedRatio(runsA, runsB, 'peakBytes'),
});

// ---------------------------------------------------------------- modes

async function benchmark(options, setup) {
  const list = cells(options);
  const reps = options.reps ?? (options.quick ? 2 : 3);
  const results = [];
  const started = Date.now();
  for (const [index, cell] of list.entries()) {
    const impls = ['native', 'fltport', ...(cell.target ? KOFFI_CONFIGS.map((config) => config.impl) : [])];
    const runs = Object.fromEntries(impls.map((impl) => [impl, []]));
    const deadlocks = {};
    const failures = {};
    const stalls = [];
    foreignSeen = 0;
    // Runs under Wine are bimodal at times (both sides at half speed for a run): the target
    // cells get more repetitions so that their medians are stable (unless --reps says otherwise).
    const cellReps = cell.target && options.reps === undefined ? Math.max(reps + 2, 5) : reps;
    for (let rep = 0; rep < cellReps; rep += 1) {
      // Rotate which side goes first, so none always runs on a warmer machine.
      const order = [...impls.slice(rep % impls.length), ...impls.slice(0, rep % impls.length)];
      for (const impl of order) {
        // A deadlock is deterministic, and so most likely is a koffi failure: once seen, that
        // configuration is not run again in this cell.
        if (deadlocks[impl] || failures[impl]) continue;
        const outcome = await runClient(impl, cell, setup);
        if (outcome.deadlock) deadlocks[impl] = { ...outcome.deadlock, rep };
        else if (outcome.failed) failures[impl] = outcome.failed;
        else if (outcome.stalled) stalls.push(rep);
        else runs[impl].push({ ...outcome, rep });
      }
    }
    const native = summarize(runs.native);
    const fltport = summarize(runs.fltport);
    // Each repetition runs every side back to back: a ratio per repetition compares them under
    // the same machine conditions, and the median of those ratios shrugs off the periods when
    // Wine runs everything at half speed for a minute (which a ratio of medians does not).
    const ratios = ratiosOf(runs.fltport, runs.native);
    // fltport / koffi, per koffi configuration that ran (none where it deadlocked or failed).
    // maxGapSeconds: the longest wait between two messages of any of its runs, against which the
    // deadlock limit (--deadlock-seconds) can be judged.
    const koffi = KOFFI_CONFIGS.filter(({ impl }) => impls.includes(impl)).map(({ impl, pool, threadpoolSize }) => ({
      impl,
      pool,
      threadpoolSize: threadpoolSize ?? null,
      deadlock: deadlocks[impl],
      failed: failures[impl],
      ...(runs[impl].length > 0 && !deadlocks[impl] && !failures[impl]
        ? { summary: summarize(runs[impl]), ratios: ratiosOf(runs.fltport, runs[impl]), maxGapSeconds: Math.max(...runs[impl].map((run) => run.maxGapSeconds)) }
        : {}),
    }));
    const interference = foreignSeen;
    results.push({ cell, native, fltport, ratios, koffi, runs, fltportStalls: stalls, interferenceSeconds: interference });
    const elapsed = ((Date.now() - started) / 1000).toFixed(0);
    const koffiText = koffi.map(({ pool, summary, deadlock, failed, ratios: against }) =>
      deadlock
        ? `koffi ${pool}: deadlock`
        : failed
          ? `koffi ${pool}: failed`
          : `koffi ${pool} ${fmt.rate(summary.messagesPerSecond)}/s (fltport / koffi ${fmt.ratio(against.throughput)})`,
    );
    console.log(
      `[${index + 1}/${list.length} ${elapsed}s] ${cell.id}: native ${fmt.rate(native.messagesPerSecond)}/s p99 ${fmt.ms(native.p99Us)} ms, ` +
        `fltport ${fmt.rate(fltport.messagesPerSecond)}/s p99 ${fmt.ms(fltport.p99Us)} ms (${fmt.ratio(ratios.throughput)}, p99 ${fmt.ratio(ratios.p99)})` +
        (stalls.length > 0 ? ` [fltport stalled in ${stalls.length} of ${cellReps} repetitions]` : '') +
        (koffiText.length > 0 ? `; ${koffiText.join(', ')}` : '') +
        (interference > 0 ? `  [other test runs seen on the machine for ~${interference} s]` : ''),
    );
  }
  return results;
}

async function soak(options, setup) {
  const messages = options.messages ?? 1_000_000;
  const cell = { id: 'soak', kind: 'notify', variant: 'reply', payload: 64, concurrency: 16, messages };
  console.log(`soak: ${messages.toLocaleString('en-US')} round trips through port.serve() (64 B, 16 pending, ${REPLY_BYTES}-byte replies)`);
  const result = await runClient('fltport', cell, setup, 'soak');
  const samples = result.rss;
  // "start" is the sample after the first 10% (JIT, V8's young generation and the thread pools
  // have grown to their working size by then); the sample before the first message is shown too.
  const first = samples.find((sample) => sample.label !== 'start') ?? samples[0];
  const middle = samples.reduce((best, sample) => (Math.abs(sample.messages - messages / 2) < Math.abs(best.messages - messages / 2) ? sample : best));
  const last = samples[samples.length - 1];
  const mb = (bytes) => `${(bytes / 2 ** 20).toFixed(1)} MB`;
  console.log('| messages | RSS | V8 new space | RSS less new space | V8 heap total | heap used | external |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const sample of samples) {
    console.log(
      `| ${sample.messages.toLocaleString('en-US')}${sample.label === 'start' ? ' (before the first)' : ''} | ${mb(sample.rss)} | ${mb(sample.newSpace)} | ` +
        `${mb(sample.rss - sample.newSpace)} | ${mb(sample.heapTotal)} | ${mb(sample.heapUsed)} | ${mb(sample.external)} |`,
    );
  }
  const growth = last.rss - first.rss;
  const newSpaceGrowth = last.newSpace - first.newSpace;
  const secondHalf = last.rss - middle.rss;
  console.log(
    `RSS start (after ${first.messages.toLocaleString('en-US')}) ${mb(first.rss)}, middle ${mb(middle.rss)}, end ${mb(last.rss)}: ` +
      `growth ${mb(growth)} (target < 5 MB: ${growth < 5 * 2 ** 20 ? 'met' : 'MISSED'}), second half ${mb(secondHalf)}; ` +
      `V8's new space grew ${mb(newSpaceGrowth)}, everything else ${mb(growth - newSpaceGrowth)}; ` +
      `${fmt.rate(result.messagesPerSecond)} msg/s, p99 ${fmt.ms(result.p99Us)} ms`,
  );
  if (foreignSeen > 0) console.log(`other test runs were seen on the machine for ~${foreignSeen} s of the soak`);
  return { ...result, interferenceSeconds: foreignSeen, rssGrowthBytes: growth, newSpaceGrowthBytes: newSpaceGrowth, startRss: first.rss, middleRss: middle.rss, endRss: last.rss };
}

/** V8 heap allocation per message on the fltport side of the target cells (one run each). */
async function allocation(options, setup) {
  const measured = [];
  for (const cell of cells(options).filter((candidate) => options.filter || candidate.target)) {
    const result = await runClient('fltport', cell, setup, `alloc-${cell.kind}`);
    const { bytesPerMessage, sites } = result.allocation;
    console.log(`${cell.id}: ${Math.round(bytesPerMessage)} bytes of V8 heap per message; from:`);
    for (const { site, bytesPerMessage: bytes } of sites) console.log(`  ${String(Math.round(bytes)).padStart(6)}  ${site}`);
    measured.push({ cell: cell.id, bytesPerMessage, sites });
  }
  return measured;
}

/**
 * Counts wineserver requests (WINEDEBUG=+server, which a freshly started wineserver logs for
 * every process) over a whole run of each client, the test kernel's included, per message.
 */
async function wineCalls(options, setup) {
  if (isWindows) throw new Error('--wine-calls counts wineserver requests: Linux only');
  const list = cells({ ...options, messages: options.messages ?? 4000 }).filter((cell) => options.filter || cell.target);
  const counted = [];
  for (const cell of list) {
    const row = { cell: cell.id, messages: cell.messages - (cell.messages % cell.concurrency) };
    for (const impl of ['native', 'fltport']) {
      spawnSync('wineserver', ['-k'], { env: wineEnv() });
      spawnSync('wineserver', ['-w'], { env: wineEnv() });
      const log = path.join(cacheDir, `bench-wine-calls-${process.pid}.log`);
      const [exe, args] =
        impl === 'native'
          ? [setup.nativeExe, [setup.kernelCommand, setup.nativeFltlib, ...cellArgs(cell)]]
          : [setup.nodeExe, [path.join('bench', 'fltport-client.cjs'), windowsPath(setup.testKernelSys), ...cellArgs(cell)]];
      const { code } = await runProgram(exe, args, { ...setup.env, WINEDEBUG: '+server' }, RUN_TIMEOUT_MS * 5, log);
      const requests = new Map();
      let result;
      for await (const line of readline.createInterface({ input: fs.createReadStream(log) })) {
        // The log has a line for each request and one for its reply ("name( ... ) = status"): replies counted.
        const request = /^[0-9a-f]+: (\w+)\(.*\) = /.exec(line);
        if (request) requests.set(request[1], (requests.get(request[1]) ?? 0) + 1);
        else if (line.startsWith('RESULT ')) result = JSON.parse(line.slice(7));
      }
      fs.rmSync(log, { force: true });
      if (code !== 0 || result === undefined || result.messages !== row.messages) throw new Error(`${impl} ${cell.id} failed under WINEDEBUG=+server (exit ${code})`);
      row[impl] = { total: [...requests.values()].reduce((sum, count) => sum + count, 0), requests: Object.fromEntries(requests) };
    }
    row.ratio = row.fltport.total / row.native.total;
    const extra = Object.keys(row.fltport.requests)
      .map((name) => [name, (row.fltport.requests[name] - (row.native.requests[name] ?? 0)) / row.messages])
      .filter(([, more]) => more >= 0.1)
      .sort((a, b) => b[1] - a[1]);
    row.extraPerMessage = Object.fromEntries(extra);
    console.log(
      `${cell.id}: native ${(row.native.total / row.messages).toFixed(1)}, fltport ${(row.fltport.total / row.messages).toFixed(1)} ` +
        `wineserver requests per message (${fmt.ratio(row.ratio)}); fltport's extra: ${extra.map(([name, more]) => `${name} ${more.toFixed(2)}`).join(', ')}`,
    );
    counted.push(row);
  }
  return counted;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  process.chdir(repoRoot);
  // npm run bench: on Linux first the set-up that npm test and npm run demo make (Debian
  // packages, Wine, builds); on Windows buildEverything() below is all there is to do.
  if (options.setup && !isWindows) {
    const setup = spawnSync('bash', [path.join('scripts', 'setup.sh')], { stdio: 'inherit' });
    if (setup.status !== 0) process.exit(setup.status ?? 1);
  }
  const built = await buildEverything();
  const nodeExe = isWindows ? windowsNodeExe() : emulatedNodeExe(built.fltlibDll);
  if (!isWindows) installEmulatedFilterManager(built.fltmgrSys);
  const setup = {
    ...built,
    nodeExe,
    // What the C client runs to load test-kernel.sys on its port (a JS client loads it itself).
    kernelCommand: [nodeExe, path.join(repoRoot, 'emulator', 'test-kernel', 'test-kernel-host.cjs'), built.testKernelSys].map((file) => `"${windowsPath(file)}"`).join(' '),
    // Under Wine both clients load the emulator's fltlib.dll (the copy emulatedNodeExe put in
    // system32, WINEDLLOVERRIDES=fltlib=n); on Windows the system's.
    env: isWindows ? {} : emulatedFltlibEnv,
    nativeFltlib: 'fltlib.dll',
    timeouts: [],
    nodeFlags: options.nodeFlags,
    deadlockSeconds: options.deadlockSeconds,
  };
  const machine = {
    platform: process.platform,
    os: `${os.type()} ${os.release()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model,
    memoryBytes: os.totalmem(),
    wine: isWindows ? undefined : spawnSync('wine', ['--version'], { encoding: 'utf8' }).stdout?.trim(),
    windowsNode: path.basename(path.dirname(nodeExe)),
  };
  const loadBefore = load();
  if (loadBefore) console.log(`load average before: ${loadBefore.join(' ')} (${machine.cpus} CPUs)`);
  const started = new Date();
  const stopWatching = watchForeign();
  let report;
  try {
    if (options.soak) {
      report = { kind: 'soak', soak: await soak(options, setup) };
    } else if (options.wineCalls) {
      report = { kind: 'wine-calls', wineCalls: await wineCalls(options, setup) };
    } else if (options.alloc) {
      report = { kind: 'allocation', allocation: await allocation(options, setup) };
    } else {
      const results = await benchmark(options, setup);
      const checks = targetChecks(results, setup);
      console.log(`\n${table(results)}\n`);
      if (results.some(({ koffi }) => koffi.length > 0)) {
        console.log(`${koffiTable(results, options.deadlockSeconds)}\n`);
        console.log(
          "koffi (bench/koffi-client.cjs) runs in the target cells only, with libuv's default pool and with UV_THREADPOOL_SIZE=40; " +
            'a deadlock or a failure is run once per cell. native and fltport run with the default pool.',
        );
      }
      console.log('Rates and latencies are medians of the repetitions; ratios are medians of the per-repetition ratios fltport / native and fltport / koffi. Targets:');
      for (const check of checks) console.log(`  ${check.pass ? 'met   ' : 'MISSED'} ${check.target}: ${check.shown ?? fmt.ratio(check.value)}`);
      const fltlibs = new Set(results.flatMap(({ runs }) => Object.values(runs).flat().map((runResult) => runResult.fltlib?.toLowerCase())));
      console.log(`fltlib.dll loaded by the clients: ${[...fltlibs].join(', ')}`);
      report = { kind: 'benchmark', results, checks };
    }
  } finally {
    stopWatching();
  }
  const loadAfter = load();
  if (loadAfter) console.log(`load average after: ${loadAfter.join(' ')}`);
  const suffix = options.soak ? '-soak' : options.wineCalls ? '-wine-calls' : options.alloc ? '-alloc' : '';
  const out = options.out ?? path.join(resultsDir, `${started.toISOString().replaceAll(':', '-').replace(/\..+/, '')}${suffix}.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `${JSON.stringify({ started: started.toISOString(), seconds: (Date.now() - started.getTime()) / 1000, options, machine, load: { before: loadBefore, after: loadAfter }, timeouts: setup.timeouts, ...report }, null, 2)}\n`,
  );
  console.log(`results: ${path.relative(repoRoot, out)}`);
}

main().catch((error) => {
  console.error(error.stack ?? error);
  process.exit(1);
});
