'use strict';
// The demo agent, run by `npm run demo` (scripts/demo.mjs) in Windows node.exe: it connects to the
// sample's port \FltportSample as an agent, denies every open whose name contains "blocked", and
// prints a live line of progress and a summary.
//   FLTPORT_SAMPLE_TARGET=emulator (default): loads fltportsample.sys on the emulated filter
//                   manager (Linux + Wine, see emulated.js) and injects a stream of opens into it
//   FLTPORT_SAMPLE_TARGET=driver: uses the minifilter loaded on Windows; a child process opens real
//                   files, and any other process opening a *.fltport-test file shows up too
// Options: --seconds N (default 10), --events N (stop after N opens; default: no limit).
// Stops early and cleanly on Ctrl+C, or when the file named by FLTPORT_DEMO_STOP_FILE appears.
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { FilterPort, WinError } = require('fltport');
const { PORT_NAME, DEFAULT_SUFFIX, constants, structs, connectContext, getStats, decodeMessage } = require('./protocol');
const { startEmulatedSample } = require('./emulated');
const { unloadAll } = require('../emulator/drivers');

const IN_FLIGHT = 32;
const NAMES = ['report', 'notes', 'blocked-payroll', 'photo', 'blocked-keys', 'budget', 'draft', 'blocked-secrets'];

function parseArgs(argv) {
  const options = { seconds: 10, events: Infinity };
  for (let i = 0; i < argv.length; i += 1) {
    const value = Number(argv[i + 1]);
    if (argv[i] === '--seconds' && value > 0) options.seconds = value;
    else if (argv[i] === '--events' && Number.isInteger(value) && value > 0) options.events = value;
    else throw new Error(`usage: demo.js [--seconds N] [--events N] (at ${argv[i]})`);
    i += 1;
  }
  return options;
}

/** The agent's side: what it was asked and what it answered. */
function startAgent(port) {
  const tally = { events: 0, allowed: 0, denied: 0, configEvents: 0 };
  const served = port.serve(
    (message) => {
      const decoded = decodeMessage(message);
      if (decoded.kind !== 'open') {
        tally.configEvents += 1;
        return undefined; // fire-and-forget: nothing to answer
      }
      const allow = !path.win32.basename(decoded.path).toLowerCase().includes('blocked');
      tally.events += 1;
      tally[allow ? 'allowed' : 'denied'] += 1;
      return { Sequence: decoded.sequence, Verdict: allow ? constants.FS_VERDICT_ALLOW : constants.FS_VERDICT_DENY, Reserved: 0 };
    },
    { bufferBytes: constants.FS_MAX_MESSAGE_BYTES, pending: 16, replyType: structs.FS_OPEN_REPLY },
  );
  return { tally, served };
}

// Opens files named on the command line in a loop until its input closes; one line per open.
const OPENER_SCRIPT = `
const fs = require('node:fs');
const files = process.argv.slice(1);
let stop = false;
process.stdin.on('end', () => { stop = true; }).resume();
(async () => {
  for (let i = 0; !stop; i += 1) {
    const file = files[i % files.length];
    let verdict = 'allow';
    try { fs.closeSync(fs.openSync(file, 'r')); } catch (error) { verdict = error.code === 'EACCES' || error.code === 'EPERM' ? 'deny' : 'error'; }
    process.stdout.write(verdict + ' ' + file + '\\n');
    if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
  }
})();
`;

/** Real files opened by a child process (the agent's own opens would be skipped). */
function startFileOpener() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fltport-demo-'));
  const files = NAMES.map((name) => {
    const file = path.join(dir, `${name}${DEFAULT_SUFFIX}`);
    fs.writeFileSync(file, 'fltport demo');
    return file;
  });
  const child = spawn(process.execPath, ['-e', OPENER_SCRIPT, ...files], { stdio: ['pipe', 'pipe', 'inherit'] });
  const listeners = new Set();
  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    const space = line.indexOf(' ');
    for (const listener of listeners) listener(line.slice(0, space), line.slice(space + 1));
  });
  return {
    onOpen: (listener) => listeners.add(listener),
    async stop() {
      child.stdin.end();
      await once(child, 'exit');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

function progressLine(tally, seconds) {
  const rate = seconds > 0 ? Math.round(tally.events / seconds) : 0;
  return `events ${tally.events}  allowed ${tally.allowed}  denied ${tally.denied}  ${rate} events/s  (${seconds.toFixed(1)} s)`;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const target = process.env.FLTPORT_SAMPLE_TARGET || 'emulator';
  if (target !== 'emulator' && target !== 'driver') throw new Error(`FLTPORT_SAMPLE_TARGET must be emulator or driver, not ${target}`);
  const stopFile = process.env.FLTPORT_DEMO_STOP_FILE;
  console.log(`fltport demo: an agent that denies opens of "*blocked*${DEFAULT_SUFFIX}" (${target === 'emulator' ? 'fltportsample.sys on the emulated filter manager' : 'on the loaded driver'})`);
  console.log(`runs ${options.seconds} s${options.events === Infinity ? '' : ` or ${options.events} opens`}; Ctrl+C stops it early`);

  const sample = target === 'emulator' ? await startEmulatedSample() : undefined;
  let port;
  try {
    port = await FilterPort.connect(PORT_NAME, { context: connectContext({ agent: true }) });
  } catch (error) {
    await sample?.stop();
    if (error instanceof WinError && error.code === 'ERROR_FILE_NOT_FOUND') {
      throw new Error(`${PORT_NAME} does not exist: load the driver (driver-sample/README.md) or run the demo on the emulator`);
    }
    throw error;
  }
  const control = await FilterPort.connect(PORT_NAME, { context: connectContext() });
  const before = await getStats(control);
  const { tally, served } = startAgent(port);

  // Where the opens come from, and what the opener saw of each verdict: every "blocked" name must
  // be denied and every other allowed.
  const seen = { opens: 0, wrong: 0 };
  const check = (verdict, name) => {
    seen.opens += 1;
    if ((verdict === 'deny') !== name.toLowerCase().includes('blocked')) seen.wrong += 1;
  };
  const started = Date.now();
  let stopping = false;
  const stop = () => {
    stopping = true;
  };
  process.once('SIGINT', stop);
  const elapsed = () => (Date.now() - started) / 1000;
  const progress = setInterval(() => {
    if (stopFile && fs.existsSync(stopFile)) stop();
    if (elapsed() >= options.seconds) stop();
    process.stdout.write(`\r${progressLine(tally, elapsed())}   `);
  }, 250);

  let opener;
  if (sample !== undefined) {
    let counter = 0;
    const stream = async () => {
      while (!stopping && counter < options.events) {
        counter += 1;
        const name = `${NAMES[counter % NAMES.length]}-${counter}${DEFAULT_SUFFIX}`;
        const { verdict } = await sample.open(`\\Device\\HarddiskVolume3\\Users\\demo\\Documents\\${name}`);
        check(verdict, name);
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, stream));
  } else {
    opener = startFileOpener();
    opener.onOpen((verdict, file) => {
      check(verdict, path.basename(file));
      if (seen.opens >= options.events) stop();
    });
    while (!stopping) await new Promise((resolve) => setTimeout(resolve, 50));
    await opener.stop();
  }
  clearInterval(progress);
  const seconds = elapsed();
  process.stdout.write(`\r${progressLine(tally, seconds)}   \n`);

  const counted = await getStats(control);
  await Promise.all([port.close(), control.close()]);
  const serveStats = await served;
  await sample?.stop();

  const diff = (key) => counted[key] - before[key];
  console.log('\nsummary');
  console.log(`  agent:  ${tally.events} opens decided (${tally.allowed} allowed, ${tally.denied} denied), ${Math.round(tally.events / seconds)} events/s over ${seconds.toFixed(1)} s`);
  console.log(`  driver: ${diff('NotificationsSent')} notifications, ${diff('Replies')} verdicts, ${diff('Denials')} denials, ${diff('Timeouts')} timeouts, ${diff('MalformedReplies')} malformed, ${diff('SendFailures')} send failures`);
  console.log(`  opens:  ${seen.opens} made, ${seen.wrong} with the wrong result${serveStats.lateReplies ? `, ${serveStats.lateReplies} late replies` : ''}`);
  if (sample?.failures.length) console.log(`  injection errors: ${sample.failures.map((failure) => failure.message).join('; ')}`);
  if (seen.wrong > 0 || sample?.failures.length) process.exitCode = 1;
}

main().catch(async (error) => {
  console.error(`\n${error.message ?? error}`);
  process.exitCode = 1;
  // Whatever failed, a driver the demo loaded does not outlive it.
  await unloadAll().catch((failure) => console.error(failure.message));
});
