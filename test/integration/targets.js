'use strict';
// The two things the integration suite runs against, chosen by FLTPORT_SAMPLE_TARGET:
//   emulator (default)  driver-sample's host (FLTPORT_SAMPLE_HOST, default
//                       build/sample-host/fltport-sample-host.exe) on the emulator's fltlib.dll:
//                       started and stopped by the suite, opens simulated through its control channel
//   driver              the sample minifilter loaded on this Windows machine (test signing on,
//                       `fltmc load fltportsample`, run as administrator): real files are opened
//                       by a child process, so the suite's own process (the agent) is not skipped
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const readline = require('node:readline');
const { PORT_NAME } = require('../../driver-sample/protocol');

const repoRoot = path.resolve(__dirname, '..', '..');

function hostExe() {
  const exe = process.env.FLTPORT_SAMPLE_HOST || path.join(repoRoot, 'build', 'sample-host', 'fltport-sample-host.exe');
  if (!fs.existsSync(exe)) {
    throw new Error(`the sample host ${exe} does not exist: build it with \`node scripts/build-sample-host.mjs\` or set FLTPORT_SAMPLE_HOST`);
  }
  return exe;
}

/** Runs `fltport-sample-host --layout`: the C compiler's sizes, offsets and constants. */
async function hostLayout() {
  const child = spawn(hostExe(), ['--layout'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    text += chunk;
  });
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`fltport-sample-host --layout exited with ${code}`);
  return JSON.parse(text);
}

class EmulatorTarget {
  name = 'emulator';
  /** The host tells which outcome comm.c reached (allowed, timeout, ...); the driver cannot. */
  reportsOutcome = true;
  portName = `${PORT_NAME}-it-${process.pid}`;
  #child;
  #pending = new Map();
  #nextId = 0;
  #hostPid = 0;

  async start() {
    const args = ['--port', this.portName];
    if (process.env.FLTPORT_SAMPLE_VERBOSE) args.push('--verbose');
    const child = spawn(hostExe(), args, { stdio: ['pipe', 'pipe', process.env.FLTPORT_SAMPLE_VERBOSE ? 'inherit' : 'ignore'] });
    this.#child = child;
    const lines = readline.createInterface({ input: child.stdout });
    await new Promise((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`fltport-sample-host exited with ${code} before it was ready`)));
      lines.on('line', (line) => {
        const [word, ...rest] = line.split(' ');
        if (word === 'ready') {
          this.#hostPid = Number(rest[0]);
          resolve();
        } else if (word === 'done') {
          const [id, verdict, outcome, sequence] = rest;
          this.#pending.get(id)?.resolve({ verdict, outcome, sequence: Number(sequence) });
          this.#pending.delete(id);
        } else if (word === 'error') {
          const failure = new Error(`fltport-sample-host: ${line}`);
          for (const waiter of this.#pending.values()) waiter.reject(failure);
          this.#pending.clear();
        }
      });
    });
    child.removeAllListeners('exit');
  }

  async stop() {
    const child = this.#child;
    if (child === undefined || child.exitCode !== null) return;
    child.stdin.end('quit\n');
    const [code] = await once(child, 'exit');
    if (code !== 0) throw new Error(`fltport-sample-host exited with ${code}`);
  }

  /** A process id whose opens are skipped: under the emulator, ConnectNotify runs in the host. */
  get agentPid() {
    return this.#hostPid;
  }

  pathFor(name) {
    return `\\Device\\HarddiskVolume7\\fltport-it\\${name}`;
  }

  /** Simulates an open; resolves with { verdict: 'allow' | 'deny', outcome, sequence, pid }. */
  open(file, { pid = 4242, access = 0x120089, self = false } = {}) {
    const id = String(++this.#nextId);
    const processId = self ? this.#hostPid : pid;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve: (result) => resolve({ ...result, pid: processId }), reject });
      this.#child.stdin.write(`open ${id} ${processId} ${access} ${file}\n`);
    });
  }
}

// Opens a file in a child process and reports { pid, ok, code }.
const OPEN_SCRIPT = `
const fs = require('node:fs');
let result;
try { fs.closeSync(fs.openSync(process.argv[1], 'r')); result = { ok: true }; }
catch (error) { result = { ok: false, code: error.code }; }
process.stdout.write(JSON.stringify({ pid: process.pid, ...result }));
`;

class DriverTarget {
  name = 'driver';
  reportsOutcome = false;
  portName = PORT_NAME;
  #dir;

  async start() {
    this.#dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fltport-it-'));
  }

  async stop() {
    fs.rmSync(this.#dir, { recursive: true, force: true });
  }

  get agentPid() {
    return process.pid;
  }

  /** A real file; created now, which counts as an open like any other. */
  pathFor(name) {
    const file = path.join(this.#dir, name);
    fs.writeFileSync(file, 'fltport');
    return file;
  }

  async open(file, { self = false } = {}) {
    if (self) {
      try {
        fs.closeSync(fs.openSync(file, 'r'));
        return { verdict: 'allow', pid: process.pid };
      } catch (error) {
        if (error.code === 'EACCES' || error.code === 'EPERM') return { verdict: 'deny', pid: process.pid };
        throw error;
      }
    }
    const child = spawn(process.execPath, ['-e', OPEN_SCRIPT, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      text += chunk;
    });
    await once(child, 'exit');
    const { pid, ok, code } = JSON.parse(text);
    if (ok) return { verdict: 'allow', pid };
    if (code === 'EACCES' || code === 'EPERM') return { verdict: 'deny', pid };
    throw new Error(`opening ${file} failed with ${code}`);
  }
}

function selectTarget() {
  const name = process.env.FLTPORT_SAMPLE_TARGET || 'emulator';
  if (name === 'emulator') return new EmulatorTarget();
  if (name === 'driver') return new DriverTarget();
  throw new Error(`FLTPORT_SAMPLE_TARGET must be emulator or driver, not ${name}`);
}

module.exports = { selectTarget, hostLayout, hostExe };
