'use strict';
// Loads and unloads kernel drivers for the suites: the emulated filter manager under Wine, and
// test drivers (test-kernel.sys, the sample) under Wine and on Windows. Runs INSIDE Windows
// node.exe and talks to the service control manager directly (advapi32 through koffi), the way
// `sc create/start/stop/delete` and an INF would.
//
// Under Wine every driver service is created in the load-order group "FSFilter Infrastructure":
// Wine's services.exe runs all kernel drivers of one group in ONE winedevice.exe, so fltmgr.sys is
// one module with one state shared by every minifilter, as on Windows. node.exe itself is the user
// process that keeps the Wine session (and so services.exe and winedevice.exe) alive.
//
// A winedevice.exe that died (a driver called a function Wine does not implement, or crashed)
// takes every driver of its group with it: services.exe marks them STOPPED with
// ERROR_PROCESS_ABORTED. checkDrivers() (run after each test by the root hooks below) turns that
// into an error naming the drivers and quoting what Wine printed, so a suite fails instead of
// hanging on a kernel that is gone.
//
// Suites use it as a mocha root-hook plugin (`"require": ["emulator/drivers.js"]` in .mocharc.json):
// every driver a suite loaded is unloaded after it, whatever happened.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const koffi = require('koffi');

const isWine = (() => {
  try {
    const ntdll = koffi.load('ntdll.dll');
    ntdll.func('const char *wine_get_version()');
    return true;
  } catch {
    return false;
  }
})();

/** The group every emulated driver shares (one winedevice.exe, see above). */
const DRIVER_GROUP = 'FSFilter Infrastructure';
const FILTER_MANAGER_SERVICE = 'FltMgr';
/** Time a start or stop may take before the loader gives up (generous: loaded 2-core machines). */
const CONTROL_TIMEOUT_MS = 60000;

const SC_MANAGER_ALL_ACCESS = 0xf003f;
const SERVICE_ALL_ACCESS = 0xf01ff;
const SERVICE_KERNEL_DRIVER = 0x1;
const SERVICE_FILE_SYSTEM_DRIVER = 0x2;
const SERVICE_DEMAND_START = 0x3;
const SERVICE_ERROR_NORMAL = 0x1;
const SERVICE_CONTROL_STOP = 0x1;
const SERVICE_CONTROL_INTERROGATE = 0x4;
const SC_STATUS_PROCESS_INFO = 0;
const STATE_NAMES = { 1: 'STOPPED', 2: 'START_PENDING', 3: 'STOP_PENDING', 4: 'RUNNING', 5: 'CONTINUE_PENDING', 6: 'PAUSE_PENDING', 7: 'PAUSED' };
const ERROR_SERVICE_ALREADY_RUNNING = 1056;
const ERROR_SERVICE_DOES_NOT_EXIST = 1060;
const ERROR_SERVICE_NOT_ACTIVE = 1062;
const ERROR_PROCESS_ABORTED = 1067;
const ERROR_SERVICE_MARKED_FOR_DELETE = 1072;
/** What ControlService gets from a winedevice.exe that died (its control pipe is gone). */
const DEAD_HOST_ERRORS = new Set([109 /* ERROR_BROKEN_PIPE */, 232 /* ERROR_NO_DATA */, 233 /* ERROR_PIPE_NOT_CONNECTED */, 1053 /* ERROR_SERVICE_REQUEST_TIMEOUT */, ERROR_PROCESS_ABORTED]);
const HKEY_LOCAL_MACHINE = 0x80000002;
const KEY_ALL_ACCESS = 0xf003f;
const REG_SZ = 1;
const REG_DWORD = 4;

const SERVICE_STATUS_PROCESS = koffi.struct('SERVICE_STATUS_PROCESS', {
  dwServiceType: 'uint32',
  dwCurrentState: 'uint32',
  dwControlsAccepted: 'uint32',
  dwWin32ExitCode: 'uint32',
  dwServiceSpecificExitCode: 'uint32',
  dwCheckPoint: 'uint32',
  dwWaitHint: 'uint32',
  dwProcessId: 'uint32',
  dwServiceFlags: 'uint32',
});
const SERVICE_STATUS = koffi.struct('SERVICE_STATUS', {
  dwServiceType: 'uint32',
  dwCurrentState: 'uint32',
  dwControlsAccepted: 'uint32',
  dwWin32ExitCode: 'uint32',
  dwServiceSpecificExitCode: 'uint32',
  dwCheckPoint: 'uint32',
  dwWaitHint: 'uint32',
});

const kernel32 = koffi.load('kernel32.dll');
const advapi32 = koffi.load('advapi32.dll');
const api = {
  GetLastError: kernel32.func('uint32 __stdcall GetLastError()'),
  OpenSCManagerW: advapi32.func('void * __stdcall OpenSCManagerW(const char16_t *machine, const char16_t *database, uint32 access)'),
  CreateServiceW: advapi32.func(
    'void * __stdcall CreateServiceW(void *scm, const char16_t *name, const char16_t *display, uint32 access, uint32 type, uint32 start, uint32 errorControl, const char16_t *binaryPath, const char16_t *group, void *tagId, const char16_t *dependencies, const char16_t *account, const char16_t *password)',
  ),
  OpenServiceW: advapi32.func('void * __stdcall OpenServiceW(void *scm, const char16_t *name, uint32 access)'),
  StartServiceW: advapi32.func('bool __stdcall StartServiceW(void *service, uint32 argc, void *argv)'),
  ControlService: advapi32.func('bool __stdcall ControlService(void *service, uint32 control, _Out_ SERVICE_STATUS *status)'),
  DeleteService: advapi32.func('bool __stdcall DeleteService(void *service)'),
  CloseServiceHandle: advapi32.func('bool __stdcall CloseServiceHandle(void *handle)'),
  QueryServiceStatusEx: advapi32.func(
    'bool __stdcall QueryServiceStatusEx(void *service, uint32 level, _Out_ SERVICE_STATUS_PROCESS *status, uint32 size, _Out_ uint32 *needed)',
  ),
  RegCreateKeyExW: advapi32.func(
    'int32 __stdcall RegCreateKeyExW(intptr_t key, const char16_t *subKey, uint32 reserved, void *className, uint32 options, uint32 access, void *security, _Out_ intptr_t *result, void *disposition)',
  ),
  RegSetValueExW: advapi32.func('int32 __stdcall RegSetValueExW(intptr_t key, const char16_t *name, uint32 reserved, uint32 type, const uint8_t *data, uint32 bytes)'),
  RegCloseKey: advapi32.func('int32 __stdcall RegCloseKey(intptr_t key)'),
};

/** An error naming the call and the Win32 code, like the ones fltport itself throws. */
function win32Error(call, code, detail = '') {
  const error = new Error(`${call} failed with Win32 error ${code} (0x${code.toString(16).padStart(8, '0')})${detail ? `: ${detail}` : ''}`);
  error.win32 = code;
  return error;
}

/** Runs fn with a service control manager handle. */
function withManager(fn) {
  const scm = api.OpenSCManagerW(null, null, SC_MANAGER_ALL_ACCESS);
  if (!scm) throw win32Error('OpenSCManagerW', api.GetLastError(), 'the loader must run as an administrator');
  try {
    return fn(scm);
  } finally {
    api.CloseServiceHandle(scm);
  }
}

/** Runs fn with a handle to `service`, or returns `missing` when there is no such service. */
function withService(service, fn, missing) {
  return withManager((scm) => {
    const handle = api.OpenServiceW(scm, service, SERVICE_ALL_ACCESS);
    if (!handle) {
      const code = api.GetLastError();
      if (code === ERROR_SERVICE_DOES_NOT_EXIST && missing !== undefined) return missing;
      throw win32Error(`OpenServiceW(${service})`, code);
    }
    try {
      return fn(handle);
    } finally {
      api.CloseServiceHandle(handle);
    }
  });
}

/** { state, exitCode, serviceExitCode } of an open service. */
function queryStatus(handle, service) {
  const status = {};
  if (!api.QueryServiceStatusEx(handle, SC_STATUS_PROCESS_INFO, status, koffi.sizeof(SERVICE_STATUS_PROCESS), [0])) {
    throw win32Error(`QueryServiceStatusEx(${service})`, api.GetLastError());
  }
  return {
    state: STATE_NAMES[status.dwCurrentState] ?? String(status.dwCurrentState),
    exitCode: status.dwWin32ExitCode,
    serviceExitCode: status.dwServiceSpecificExitCode,
  };
}

/** { state, exitCode, serviceExitCode } of `service`, or null when it does not exist. */
function serviceStatus(service) {
  return withService(service, (handle) => queryStatus(handle, service), null);
}

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls until `service` reaches `state`; throws with its status when it cannot or time runs out. */
async function waitForState(service, state) {
  const deadline = Date.now() + CONTROL_TIMEOUT_MS;
  for (let pause = 2; ; pause = Math.min(pause * 2, 100)) {
    const status = serviceStatus(service);
    if (status === null) throw new Error(`service ${service} vanished while waiting for ${state}`);
    if (status.state === state) return status;
    // A driver whose DriverEntry fails is STOPPED at once with its NTSTATUS mapped to a Win32 code.
    if (state === 'RUNNING' && status.state === 'STOPPED') throw new Error(`${service} did not start: ${describeStatus(status)}${wineOutput()}`);
    if (Date.now() > deadline) throw new Error(`${service} is ${status.state} after ${CONTROL_TIMEOUT_MS} ms, expected ${state}${wineOutput()}`);
    await delay(pause);
  }
}

function describeStatus(status) {
  const reason = status.exitCode === ERROR_PROCESS_ABORTED ? ' (its winedevice.exe died: ERROR_PROCESS_ABORTED)' : '';
  return `state ${status.state}, Win32 exit code ${status.exitCode}${reason}, service exit code 0x${status.serviceExitCode.toString(16)}`;
}

/**
 * What Wine printed about a dead winedevice.exe, when scripts/test-windows.mjs told us where
 * node.exe's output goes (services.exe and winedevice.exe inherit it): its "wine:" and "err:" lines.
 */
function wineOutput() {
  const log = process.env.FLTPORT_WINE_LOG;
  if (!log) return '';
  let text;
  try {
    text = fs.readFileSync(log, 'utf8');
  } catch {
    return '';
  }
  const lines = text.split(/\r?\n/).filter((line) => /^(wine:|err:|[0-9a-f]+:err:)|unimplemented function|winedevice/i.test(line));
  return lines.length ? `\nWine said:\n${lines.slice(-10).join('\n')}` : '';
}

/**
 * Starts a service and waits until it is RUNNING. StartServiceW returns once DriverEntry has
 * returned; it blocks this thread meanwhile (Wine's services.exe bounds the wait, and a dead
 * winedevice.exe ends it at once).
 */
async function startService(service) {
  withService(service, (handle) => {
    if (api.StartServiceW(handle, 0, null)) return;
    const code = api.GetLastError();
    if (code === ERROR_SERVICE_ALREADY_RUNNING) return;
    throw win32Error(`StartServiceW(${service})`, code, `${describeStatus(queryStatus(handle, service))}${wineOutput()}`);
  });
  return waitForState(service, 'RUNNING');
}

function setRegistryValues(subKey, values) {
  const key = [0];
  const created = api.RegCreateKeyExW(HKEY_LOCAL_MACHINE, subKey, 0, null, 0, KEY_ALL_ACCESS, null, key, null);
  if (created !== 0) throw win32Error(`RegCreateKeyExW(HKLM\\${subKey})`, created);
  try {
    for (const [name, value] of Object.entries(values)) {
      let type;
      let data;
      if (typeof value === 'number') {
        if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new RangeError(`registry value ${name} must be a DWORD, got ${value}`);
        type = REG_DWORD;
        data = Buffer.alloc(4);
        data.writeUInt32LE(value);
      } else if (typeof value === 'string') {
        type = REG_SZ;
        data = Buffer.from(`${value}\0`, 'utf16le');
      } else {
        throw new TypeError(`registry value ${name} must be a number or a string`);
      }
      const set = api.RegSetValueExW(key[0], name, 0, type, data, data.length);
      if (set !== 0) throw win32Error(`RegSetValueExW(${name})`, set);
    }
  } finally {
    api.RegCloseKey(key[0]);
  }
}

const serviceKey = (service) => `SYSTEM\\CurrentControlSet\\Services\\${service}`;

/** Services this process loaded and has not unloaded yet: name -> the driver file's copy. */
const loaded = new Map();
let instanceCounter = 0;
const copiesDir = path.join(os.tmpdir(), 'fltport-drivers');

/**
 * Wine only: starts the emulated filter manager (fltmgr.sys, which scripts/test-windows.mjs put
 * into system32\drivers with the DLL override that makes Wine load it), once per Wine session; a
 * no-op on Windows, where the real one always runs. Resolves once it is RUNNING.
 */
async function startFilterManager() {
  if (!isWine) return;
  const status = serviceStatus(FILTER_MANAGER_SERVICE);
  if (status?.state === 'RUNNING') return;
  if (status === null) {
    createService(FILTER_MANAGER_SERVICE, {
      binaryPath: 'C:\\windows\\system32\\drivers\\fltmgr.sys',
      type: SERVICE_FILE_SYSTEM_DRIVER,
    });
  }
  await startService(FILTER_MANAGER_SERVICE);
}

function createService(service, { binaryPath, type }) {
  withManager((scm) => {
    const handle = api.CreateServiceW(scm, service, service, SERVICE_ALL_ACCESS, type, SERVICE_DEMAND_START, SERVICE_ERROR_NORMAL, binaryPath, DRIVER_GROUP, null, null, null, null);
    if (!handle) throw win32Error(`CreateServiceW(${service})`, api.GetLastError());
    api.CloseServiceHandle(handle);
  });
}

/**
 * Loads a driver as a new service and resolves once it runs (its DriverEntry succeeded).
 * - sysPath: the .sys file; it is copied to a name of its own, so each load is its own module
 *   (two services of one file would share one image and its globals).
 * - service: the service name (default: the file's name + this process's id + a counter).
 * - parameters: values for the service's Parameters key (numbers as REG_DWORD, strings REG_SZ).
 * - altitude: for a minifilter: writes the Instances key an INF writes (DefaultInstance, one
 *   instance with this Altitude and Flags 0) and registers the service as a file-system driver.
 * Resolves with { service, status }.
 */
async function loadDriver(sysPath, { service, parameters = {}, altitude } = {}) {
  if (typeof sysPath !== 'string') throw new TypeError('sysPath must be a string');
  const name = service ?? `${path.basename(sysPath, '.sys')}-${process.pid}-${++instanceCounter}`;
  if (loaded.has(name)) throw new Error(`service ${name} is already loaded by this process`);
  // A service of that name that this process did not load is left over from a process that
  // ended without unloading it (Wine reuses process ids from one session to the next).
  if (serviceStatus(name) !== null) await removeService(name).catch(() => {});
  fs.mkdirSync(copiesDir, { recursive: true });
  const copy = path.join(copiesDir, `${name}.sys`);
  fs.copyFileSync(sysPath, copy);
  try {
    createService(name, { binaryPath: copy, type: altitude === undefined ? SERVICE_KERNEL_DRIVER : SERVICE_FILE_SYSTEM_DRIVER });
  } catch (error) {
    fs.rmSync(copy, { force: true });
    throw error;
  }
  loaded.set(name, copy);
  try {
    setRegistryValues(`${serviceKey(name)}\\Parameters`, parameters);
    if (altitude !== undefined) {
      const instance = `${name} Instance`;
      setRegistryValues(`${serviceKey(name)}\\Instances`, { DefaultInstance: instance });
      setRegistryValues(`${serviceKey(name)}\\Instances\\${instance}`, { Altitude: String(altitude), Flags: 0 });
    }
    const status = await startService(name);
    return { service: name, status };
  } catch (error) {
    await unloadDriver(name).catch(() => {});
    throw error;
  }
}

/** Stops a service (DriverUnload runs) and waits until it is STOPPED; nothing to do if it is not running. */
async function stopService(service) {
  const stopping = withService(
    service,
    (handle) => {
      if (api.ControlService(handle, SERVICE_CONTROL_STOP, {})) return true;
      const code = api.GetLastError();
      // Never started, already stopped, or its winedevice.exe died.
      if (code === ERROR_SERVICE_NOT_ACTIVE) return false;
      if (isWine && DEAD_HOST_ERRORS.has(code)) throw deadDriverError([`${service}: ControlService(STOP) failed with ${code}: its winedevice.exe no longer answers`]);
      throw win32Error(`ControlService(${service}, STOP)`, code);
    },
    false,
  );
  if (stopping) await waitForState(service, 'STOPPED');
}

/**
 * Unloads a driver: stops it (DriverUnload runs), deletes the service and the copy of its file.
 * A driver whose winedevice.exe died is still deleted, and the death is thrown (code
 * ERR_DRIVER_DEAD) unless checkDrivers reported it already.
 */
async function unloadDriver(service) {
  let failure;
  try {
    await removeService(service);
  } catch (error) {
    if (!(error.code === 'ERR_DRIVER_DEAD' && reportedDead.has(service))) failure = error;
  }
  const copy = loaded.get(service);
  loaded.delete(service);
  reportedDead.delete(service);
  if (copy !== undefined) removeCopy(copy);
  if (failure) throw failure;
}

/** Stops and deletes a service; it is deleted even when stopping it failed (then thrown). */
async function removeService(service) {
  let failure;
  try {
    await stopService(service);
  } catch (error) {
    failure = error;
  }
  withService(
    service,
    (handle) => {
      if (!api.DeleteService(handle)) {
        const code = api.GetLastError();
        if (code !== ERROR_SERVICE_MARKED_FOR_DELETE) throw win32Error(`DeleteService(${service})`, code);
      }
    },
    null,
  );
  if (failure) throw failure;
}

/** Removes a driver file's copy; Windows may hold the image a little after the stop. */
function removeCopy(copy) {
  try {
    fs.rmSync(copy, { force: true });
  } catch {
    // Still mapped: it goes with the next cleanup of the folder (its name is never reused).
  }
}

/** Names of the drivers this process loaded and has not unloaded. */
function loadedDrivers() {
  return [...loaded.keys()];
}

/**
 * Why `service` is no longer running, or null while it runs. Under Wine, services.exe keeps a
 * driver RUNNING for seconds after its winedevice.exe died (while Wine's debugger looks at it),
 * so a control that must reach winedevice.exe asks the process itself.
 */
function deathOf(service) {
  return withService(
    service,
    (handle) => {
      const status = queryStatus(handle, service);
      if (status.state !== 'RUNNING') return `${service}: ${describeStatus(status)}`;
      if (!isWine || api.ControlService(handle, SERVICE_CONTROL_INTERROGATE, {})) return null;
      const code = api.GetLastError();
      return DEAD_HOST_ERRORS.has(code) ? `${service}: ControlService(INTERROGATE) failed with ${code}: its winedevice.exe no longer answers` : null;
    },
    `${service}: the service was deleted`,
  );
}

function deadDriverError(lines) {
  const error = new Error(`kernel driver(s) no longer running:\n${lines.join('\n')}${wineOutput()}`);
  error.code = 'ERR_DRIVER_DEAD';
  return error;
}

/** Deaths already reported by checkDrivers: unloading those drivers reports them no more. */
const reportedDead = new Set();

/**
 * Throws (code ERR_DRIVER_DEAD) when a driver this process loaded is no longer running though
 * nobody unloaded it: its winedevice.exe died (Wine) or it failed. The error names each driver
 * with its status and quotes what Wine printed.
 */
function checkDrivers() {
  const dead = [];
  for (const service of loaded.keys()) {
    if (reportedDead.has(service)) continue;
    const death = deathOf(service);
    if (death === null) continue;
    reportedDead.add(service);
    dead.push(death);
  }
  if (dead.length) throw deadDriverError(dead);
}

/** Unloads every driver this process loaded; throws the first failure after trying them all. */
async function unloadAll() {
  let failure;
  for (const service of [...loaded.keys()].reverse()) {
    try {
      await unloadDriver(service);
    } catch (error) {
      failure ??= error;
    }
  }
  if (failure) throw failure;
}

/**
 * Mocha root hooks: after each test, a driver that died fails that test (and mocha then skips the
 * rest of its suite rather than letting it wait on a kernel that is gone); after all tests every
 * driver still loaded is unloaded.
 */
const mochaHooks = {
  afterEach() {
    checkDrivers();
  },
  async afterAll() {
    await unloadAll();
  },
};

module.exports = {
  isWine,
  DRIVER_GROUP,
  startFilterManager,
  loadDriver,
  unloadDriver,
  unloadAll,
  checkDrivers,
  loadedDrivers,
  serviceStatus,
  mochaHooks,
};
