'use strict';
// emulator/drivers.js, the loader the suites use for kernel drivers, checked with a WDM driver of
// its own (emulator/test/loader-driver): load, parameters, several instances, unload, reload, a
// failing DriverEntry, and a driver that brings its winedevice.exe down. Runs in Windows node.exe
// under Wine (scripts/test-windows.mjs --emulator test/drivers).
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const drivers = require('../../emulator/drivers.js');
const { ping, crash } = require('./fixtures/loader-device.js');

const repoRoot = path.join(__dirname, '..', '..');
const loaderDriver = path.join(repoRoot, 'emulator', 'build', 'loader-driver.sys');
const ERROR_FILE_NOT_FOUND = 2;
let deviceCounter = 0;

/** Loads loader-driver.sys with a device of its own; resolves with { service, device }. */
async function loadInstance(instance) {
  const device = `LoaderTest-${process.pid}-${++deviceCounter}`;
  const { service } = await drivers.loadDriver(loaderDriver, { parameters: { DeviceName: `\\Device\\${device}`, Instance: instance } });
  return { service, device };
}

const copiesOf = (service) => fs.readdirSync(path.join(require('node:os').tmpdir(), 'fltport-drivers')).filter((name) => name.startsWith(service));

describe('drivers.js: kernel drivers for the suites', function () {
  before(function () {
    if (!drivers.isWine) this.skip(); // loader-driver.sys is built for Wine only (no test signing)
  });
  let child; // a mocha of the test's own, ended if the test times out before it does
  afterEach(async () => {
    if (child?.exitCode === null) child.kill();
    await drivers.unloadAll();
  });

  it('loads a driver whose DriverEntry reads the Parameters it was given', async () => {
    const { service, device } = await loadInstance(41);
    assert.equal(drivers.serviceStatus(service).state, 'RUNNING');
    assert.deepEqual(drivers.loadedDrivers(), [service]);
    assert.equal(ping(device), 41);
  });

  it('runs two instances of one .sys side by side, each its own module', async () => {
    const first = await loadInstance(1);
    const second = await loadInstance(2);
    // One shared image would have one g_instance: both would answer 2.
    assert.equal(ping(first.device), 1);
    assert.equal(ping(second.device), 2);
  });

  it('unloads: the device, the service and the copy of the file go; the others stay', async () => {
    const gone = await loadInstance(1);
    const kept = await loadInstance(2);
    assert.equal(copiesOf(gone.service).length, 1);
    await drivers.unloadDriver(gone.service);
    assert.throws(() => ping(gone.device), { win32: ERROR_FILE_NOT_FOUND });
    assert.equal(drivers.serviceStatus(gone.service), null);
    assert.deepEqual(copiesOf(gone.service), []);
    assert.deepEqual(drivers.loadedDrivers(), [kept.service]);
    assert.equal(ping(kept.device), 2);
  });

  it('reloads a driver under the same service name and device', async () => {
    const device = `LoaderTest-${process.pid}-reload`;
    const service = `loader-reload-${process.pid}`;
    for (const instance of [7, 8, 9]) {
      await drivers.loadDriver(loaderDriver, { service, parameters: { DeviceName: `\\Device\\${device}`, Instance: instance } });
      assert.equal(ping(device), instance);
      await drivers.unloadDriver(service);
      assert.throws(() => ping(device), { win32: ERROR_FILE_NOT_FOUND });
    }
  });

  it('replaces a service left over by a process that ended without unloading it', async () => {
    const service = `loader-leftover-${process.pid}`;
    const parameters = (instance) => ({ DeviceName: `\\Device\\LoaderLeftover-${process.pid}`, Instance: instance });
    const script = `require('./emulator/drivers.js').loadDriver(${JSON.stringify(loaderDriver)}, ${JSON.stringify({ service, parameters: parameters(1) })})
      .then(() => process.exit(0), (error) => { console.error(error); process.exit(1); });`;
    const loader = spawn(process.execPath, ['-e', script], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    loader.stderr.on('data', (chunk) => (output += chunk));
    assert.equal(await new Promise((resolve) => loader.on('close', resolve)), 0, output);
    assert.equal(ping(`LoaderLeftover-${process.pid}`), 1);
    await drivers.loadDriver(loaderDriver, { service, parameters: parameters(2) });
    assert.equal(ping(`LoaderLeftover-${process.pid}`), 2);
  });

  it('rejects a driver whose DriverEntry fails, naming it, and leaves no service behind', async () => {
    const service = `loader-no-device-${process.pid}`;
    // No DeviceName parameter: DriverEntry returns STATUS_OBJECT_NAME_NOT_FOUND.
    await assert.rejects(drivers.loadDriver(loaderDriver, { service, parameters: { Instance: 1 } }), (error) => {
      assert.match(error.message, new RegExp(`StartServiceW\\(${service}\\)|${service} did not start`));
      return true;
    });
    assert.equal(drivers.serviceStatus(service), null);
    assert.deepEqual(drivers.loadedDrivers(), []);
  });

  it('reports a winedevice.exe that died with the drivers it took along and what Wine said; a new load works', async () => {
    const victim = await loadInstance(1);
    const neighbour = await loadInstance(2);
    assert.throws(() => crash(victim.device));
    assert.throws(() => drivers.checkDrivers(), (error) => {
      assert.equal(error.code, 'ERR_DRIVER_DEAD');
      assert.match(error.message, new RegExp(`${victim.service}: .*winedevice`));
      assert.match(error.message, new RegExp(`${neighbour.service}: `));
      if (process.env.FLTPORT_WINE_LOG) assert.match(error.message, /unimplemented function ntoskrnl\.exe\.IoGetRequestorProcessId/);
      return true;
    });
    // Reported once: the suite's own afterEach check finds nothing more to say.
    drivers.checkDrivers();
    await drivers.unloadAll();
    assert.equal(drivers.serviceStatus(victim.service), null);
    const fresh = await loadInstance(3);
    assert.equal(ping(fresh.device), 3);
  });

  it('fails a suite whose driver dies, with the message, instead of letting it wait for the dead kernel', async () => {
    const mocha = path.join(repoRoot, 'node_modules', 'mocha', 'bin', 'mocha.js');
    const spec = path.join(__dirname, 'fixtures', 'dying-driver.spec.js');
    child = spawn(process.execPath, [mocha, '--require', path.join(repoRoot, 'emulator', 'drivers.js'), '--timeout', '3600000', spec], {
      cwd: repoRoot,
      env: { ...process.env, LOADER_DRIVER: loaderDriver },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const code = await new Promise((resolve) => child.on('close', resolve));
    assert.notEqual(code, 0, output);
    assert.match(output, /"after each" hook/, output);
    assert.match(output, /kernel driver\(s\) no longer running/, output);
    if (process.env.FLTPORT_WINE_LOG) assert.match(output, /unimplemented function ntoskrnl\.exe\.IoGetRequestorProcessId/, output);
    assert.doesNotMatch(output, /waits for a kernel that is gone/, output);
  });
});
