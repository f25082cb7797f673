'use strict';
// Facts about the Windows runtime the suite runs in: real Windows, Wine with its stub fltlib.dll,
// or either with the emulator's fltlib.dll loaded instead of the system's.
const { runtimeInfo } = require('fltport');

function describeRuntime() {
  const info = runtimeInfo();
  // Set by scripts/windows-runtime.mjs (emulatedFltlibEnv) when the emulator's fltlib.dll is in use.
  const emulated = process.env.FLTPORT_FLTLIB === 'emulator';
  return {
    ...info,
    wine: info.wineVersion !== null,
    emulated,
    // Wine's own fltlib.dll: FilterConnectCommunicationPort is a stub returning E_NOTIMPL.
    wineStubFltlib: info.wineVersion !== null && !emulated,
  };
}

module.exports = { describeRuntime };
