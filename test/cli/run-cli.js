'use strict';
// Runs the fltport command (package.json "bin") in this Windows node.exe, for the suites that
// test it end to end.
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const packageJson = require('../../package.json');

const cli = path.resolve(__dirname, '..', '..', packageJson.bin.fltport);
const running = new Set();

/** Runs fltport with `args`; resolves with { code, stdout, stderr }. */
function fltport(...args) {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  child.on('exit', () => running.delete(child));
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text) => (stderr += text));
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Ends every fltport still running (a test that failed with `listen` waiting). */
function killRunning() {
  for (const child of running) child.kill();
}

const noStack = (text) => assert.doesNotMatch(text, /^\s+at /m, 'a stack trace was printed');

module.exports = { fltport, killRunning, noStack };
