'use strict';
// Facts about the Windows runtime the suite runs in: real Windows, Wine with its stub fltlib.dll,
// or either with the emulator's fltlib.dll beside node.exe.
const path = require('node:path');
const { runtimeInfo } = require('fltport');

function describeRuntime() {
  const info = runtimeInfo();
  const fltlibDir = info.fltlibPath ? path.win32.dirname(info.fltlibPath).toLowerCase() : '';
  const emulated = fltlibDir === path.win32.dirname(process.execPath).toLowerCase();
  return {
    ...info,
    wine: info.wineVersion !== null,
    emulated,
    // Wine's own fltlib.dll: FilterConnectCommunicationPort is a stub returning E_NOTIMPL.
    wineStubFltlib: info.wineVersion !== null && !emulated,
  };
}

module.exports = { describeRuntime };
