'use strict';
// For bench/run.mjs: unloads a test-kernel.sys service that a client it had to kill (or that
// failed) left loaded. Runs in Windows node.exe:  node unload-kernel.cjs SERVICE
const drivers = require('../emulator/drivers.js');

const [service] = process.argv.slice(2);
if (!service) {
  console.error('usage: node unload-kernel.cjs SERVICE');
  process.exit(2);
}
drivers.unloadDriver(service).catch((error) => {
  console.error(error.stack ?? String(error));
  process.exitCode = 1;
});
