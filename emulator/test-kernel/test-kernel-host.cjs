'use strict';
// For programs that are not JS (bench/native-client.c): loads a fresh instance of the test kernel
// SYS_PATH with a port named PORT_NAME, prints "ready", and unloads it when its standard input
// closes. Runs in Windows node.exe:  node test-kernel-host.cjs SYS_PATH PORT_NAME [MAX_CONNECTIONS]
const { startKernel } = require('./test-kernel.js');
const drivers = require('../drivers.js');

async function main() {
  const [sys, portName, maxConnections = '8'] = process.argv.slice(2);
  if (!portName) throw new Error('usage: node test-kernel-host.cjs SYS_PATH PORT_NAME [MAX_CONNECTIONS]');
  const kernel = await startKernel({ sys, portName, maxConnections: Number(maxConnections) });
  process.stdout.write('ready\n');
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.once('close', resolve));
  await kernel.stop();
}

main().catch(async (error) => {
  console.error(error.stack ?? String(error));
  await drivers.unloadAll().catch(() => {});
  process.exit(1);
});
