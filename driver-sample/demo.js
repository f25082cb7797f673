'use strict';
// The demo agent: connects to the sample minifilter's port \FltportSample and reports what it
// finds. Runs in Windows node.exe (under Wine on Linux, where the emulator stands in for the driver).
const { FilterPort, WinError, runtimeInfo } = require('fltport');

const PORT_NAME = '\\FltportSample';

async function main() {
  const info = runtimeInfo();
  const where = info.wineVersion ? `Wine ${info.wineVersion}` : 'Windows';
  console.log(`fltport demo on ${where}, fltlib: ${info.fltlibPath}`);
  try {
    const port = await FilterPort.connect(PORT_NAME);
    console.log(`connected to ${PORT_NAME}`);
    await port.close();
  } catch (error) {
    if (!(error instanceof WinError)) throw error;
    if (error.code === 'ERROR_FILE_NOT_FOUND') {
      console.log(`No sample driver or emulator host is running: ${PORT_NAME} does not exist (${error.message}).`);
    } else if (error.code === 'E_NOTIMPL') {
      console.log(`This fltlib.dll cannot open ports (Wine's stub: ${error.message}). Run with the emulator's fltlib.dll.`);
    } else {
      throw error;
    }
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
