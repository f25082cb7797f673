'use strict';
// The two things the integration suite runs against, chosen by FLTPORT_SAMPLE_TARGET:
//   emulator (default)  fltportsample.sys (driver-sample/driver, built by the emulator's build) on
//                       the emulated filter manager under Wine, loaded and unloaded by the suite;
//                       opens are injected through fltmgr-control (driver-sample/emulated.js)
//   driver              the sample minifilter loaded on this Windows machine (test signing on,
//                       `fltmc load fltportsample`, run as administrator): real files are opened
//                       by a child process, so the suite's own process (the agent) is not skipped
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { PORT_NAME } = require('../../driver-sample/protocol');
const { startEmulatedSample, loadEmulatedFilter, spawnTool, FILE_OPEN_OPTIONS } = require('../../driver-sample/emulated');

const layoutExe = path.resolve(__dirname, '..', '..', 'emulator', 'build', 'fltport-sample-layout.exe');

/** The C compiler's sizes, offsets and constants of protocol.h (fltport-sample-layout.exe), or
 * undefined where it is not built (Windows, where the WDK builds the driver). */
async function protocolLayoutOfC() {
  if (!fs.existsSync(layoutExe)) return undefined;
  const child = await spawnTool(layoutExe, ['ignore', 'pipe', 'inherit']);
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (chunk) => {
    text += chunk;
  });
  // 'close', not 'exit': the process can end before its output has been read.
  const [code] = await once(child, 'close');
  if (code !== 0) throw new Error(`fltport-sample-layout exited with ${code}`);
  return JSON.parse(text);
}

class EmulatorTarget {
  name = 'emulator';
  /** Opens are described, not made: names (short names, file ids) and create options can be chosen. */
  injectsOpens = true;
  portName = PORT_NAME;
  #sample;

  async start() {
    this.#sample = await startEmulatedSample();
  }

  async stop() {
    await this.#sample?.stop();
  }

  /** Loads another minifilter of emulator/build beside the sample (altitude undefined: a service
   * without the Instances key); resolves with its unload. */
  loadFilter(sysName, altitude) {
    return loadEmulatedFilter(sysName, altitude);
  }

  /** ConnectNotify runs in the connecting process: the suite's own node.exe is the agent. */
  get agentPid() {
    return process.pid;
  }

  pathFor(name) {
    return `\\Device\\HarddiskVolume7\\fltport-it\\${name}`;
  }

  /**
   * Injects an open; resolves with { verdict: 'allow' | 'deny', status, pid, access }.
   * normalizedName: what the filter manager reports as the normalized name, when it differs.
   */
  async open(file, { pid = 4242, access = 0x120089, self = false, options = FILE_OPEN_OPTIONS, normalizedName } = {}) {
    const processId = self ? this.agentPid : pid;
    const result = await this.#sample.open(file, { pid: processId, access, options, normalizedName });
    return { ...result, pid: processId, access };
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
  injectsOpens = false;
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
    await once(child, 'close');
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

module.exports = { selectTarget, protocolLayoutOfC };
