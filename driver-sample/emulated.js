'use strict';
// The sample driver on the emulated filter manager (Linux + Wine), for the demo and the
// integration suite; runs inside Windows node.exe. startEmulatedSample() loads
// fltportsample.sys (built from driver/filter.c + driver/comm.c into emulator/build/) with
// emulator/drivers.js, and makes opens happen with emulator/build/fltmgr-control.exe, which asks
// fltmgr.sys to run the registered filters' pre-create callbacks for an open it describes (Wine
// routes no real file opens through drivers). The driver answers as it would on Windows: the
// verdict is the status the open completes with.
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');
const drivers = require('../emulator/drivers');

const buildDir = path.join(__dirname, '..', 'emulator', 'build');
const SAMPLE_SYS = path.join(buildDir, 'fltportsample.sys');
const CONTROL_EXE = path.join(buildDir, 'fltmgr-control.exe');
/** The INF's altitude (driver/fltportsample.inf). */
const ALTITUDE = '370035';
/** Create options of a plain open: FILE_OPEN as the disposition (high byte). */
const FILE_OPEN_OPTIONS = 0x01000000;

function assertBuilt() {
  if (!drivers.isWine) {
    throw new Error('the emulated filter manager runs under Wine only: on Windows, load the sample driver and set FLTPORT_SAMPLE_TARGET=driver (driver-sample/README.md)');
  }
  for (const file of [SAMPLE_SYS, CONTROL_EXE]) {
    if (!fs.existsSync(file)) throw new Error(`${file} does not exist: build the emulator with \`node scripts/build-emulator.mjs\``);
  }
}

/**
 * spawn(`file`) with `stdio`, started again (three times in all, 0.5 s apart) when process
 * creation itself fails: Wine's CreateProcess failed once in CI ("spawn UNKNOWN", thrown by
 * spawn() before anything ran; not reproduced in 300 spawns under load).
 */
async function spawnTool(file, stdio) {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return spawn(file, [], { stdio });
    } catch (error) {
      if (error.syscall !== 'spawn' || attempt === 3) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
}

/** fltmgr-control.exe, and a promise per open it was asked for. */
async function startControl() {
  const child = await spawnTool(CONTROL_EXE, ['pipe', 'pipe', 'inherit']);
  const pending = new Map();
  const failures = [];
  const lines = readline.createInterface({ input: child.stdout });
  await new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`fltmgr-control exited with ${code} before it was ready`)));
    lines.on('line', (line) => {
      const [word, id, verdict, status] = line.split(' ');
      if (word === 'ready') {
        resolve();
      } else if (word === 'done') {
        pending.get(id)?.resolve({ verdict, status: Number(status) });
        pending.delete(id);
      } else if (word === 'error') {
        const failure = new Error(`fltmgr-control: ${line}`);
        failures.push(failure);
        const waiter = pending.get(id);
        if (waiter) {
          pending.delete(id);
          waiter.reject(failure);
        }
      }
    });
  });
  child.removeAllListeners('exit');
  // 'close': every answer it wrote has been read by then.
  child.once('close', (code) => {
    const failure = new Error(`fltmgr-control exited with ${code}`);
    for (const waiter of pending.values()) waiter.reject(failure);
    pending.clear();
  });
  let nextId = 0;
  return {
    failures,
    /** Resolves with { verdict: 'allow' | 'deny', status } once the callbacks have decided. */
    open(line) {
      const id = String(++nextId);
      return new Promise((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.stdin.write(line(id));
      });
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.stdin.end('quit\n');
      await once(child, 'close');
    },
  };
}

/**
 * Loads the sample driver and starts the open injector. The driver's port is \FltportSample, as
 * on Windows (each suite or demo runs in a Wine session of its own).
 * Resolves with:
 *   open(name, { pid, access, options, normalizedName }) -> { verdict, status }: an open of the
 *     NT name `name` by process `pid` (default 4242: no real process) with desired `access`
 *     (default FILE_GENERIC_READ), create `options` (default FILE_OPEN; e.g. FILE_DIRECTORY_FILE,
 *     FILE_OPEN_BY_FILE_ID), and the name FltGetFileNameInformation reports as normalized when it
 *     differs from `name` (an 8.3 short name's long name, the file a file id names)
 *   failures: errors fltmgr-control reported
 *   stop(): stops the injector, unloads the driver
 */
async function startEmulatedSample() {
  assertBuilt();
  await drivers.startFilterManager();
  const { service } = await drivers.loadDriver(SAMPLE_SYS, { altitude: ALTITUDE });
  let control;
  try {
    control = await startControl();
  } catch (error) {
    await drivers.unloadDriver(service);
    throw error;
  }
  return {
    failures: control.failures,
    open(name, { pid = 4242, access = 0x120089, options = FILE_OPEN_OPTIONS, normalizedName } = {}) {
      const names = normalizedName === undefined ? name : `${name}|${normalizedName}`;
      return control.open((id) => `create ${id} ${pid} ${access} ${options} ${names}\n`);
    },
    async stop() {
      try {
        await control.stop();
      } finally {
        await drivers.unloadDriver(service);
      }
    },
  };
}

/**
 * Loads another minifilter of emulator/build (e.g. 'wdkstyle.sys') beside the sample, at
 * `altitude`; resolves with a function that unloads it.
 */
async function loadEmulatedFilter(sysName, altitude) {
  const { service } = await drivers.loadDriver(path.join(buildDir, sysName), { altitude });
  return () => drivers.unloadDriver(service);
}

module.exports = { startEmulatedSample, loadEmulatedFilter, spawnTool, CONTROL_EXE, FILE_OPEN_OPTIONS };
