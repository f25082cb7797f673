'use strict';
// Runs in Windows node.exe inside a fresh project that installed the packed tarball: what a user
// gets from `npm install fltport` must load and work through both entry points.
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const fltport = require('fltport');

(async () => {
  const esm = await import('fltport');
  assert.equal(esm.FilterPort, fltport.FilterPort, 'the ESM entry point shares the CommonJS classes');
  const info = fltport.runtimeInfo();
  assert.match(info.fltlibPath, /fltlib\.dll$/i);
  const expected = info.wineVersion !== null ? 'E_NOTIMPL' : 'ERROR_FILE_NOT_FOUND';
  await assert.rejects(fltport.FilterPort.connect('\\NoSuchPort'), { name: 'WinError', code: expected });
  // The installed package has no build/ folder: the loader took the prebuilt binary.
  const installed = path.dirname(require.resolve('fltport/package.json'));
  assert.equal(path.relative(process.cwd(), installed), path.join('node_modules', 'fltport'));
  assert.ok(fs.existsSync(path.join(installed, 'prebuilds', `win32-${process.arch}`, 'fltport.node')));
  assert.ok(!fs.existsSync(path.join(installed, 'build')));
  const { scripts = {} } = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.deepEqual(['preinstall', 'install', 'postinstall'].filter((name) => name in scripts), []);
  console.log(`smoke ok: ${process.platform}-${process.arch}, fltlib ${info.fltlibPath}`);
})().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
