// LPC benchmark: request/reply round trips per second and p99 latency, fltport (LpcPort.request
// in Windows node.exe) against a native C client, both talking to the same native echo server
// in the same run. Here on the LPC stand-in under Wine (emulator/lpc/: every figure is the
// stand-in's named-pipe transport plus what the client adds); on Windows against the real ntdll
// (unverified on Windows).
//   node bench/lpc.mjs [--messages N] [--reps N]    (defaults: 4,000 requests per cell, 3 reps; medians)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildEmulator } from '../scripts/build-emulator.mjs';
import { cacheDir, cmakeBuild, ensureWinePrefix, isWindows, repoRoot, runWindowsProgram, wineEnv, windowsNodeExe, windowsPath } from '../scripts/windows-runtime.mjs';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const buildDir = path.join(benchDir, 'build');
const option = (name, fallback) => {
  const at = process.argv.indexOf(name);
  return at >= 0 ? Number(process.argv[at + 1]) : fallback;
};
const messages = option('--messages', 4000);
const reps = option('--reps', 3);
const PAYLOAD = 64;
const CELLS = [1, 8]; // requests in flight

const { lpcStandInDll } = buildEmulator();
cmakeBuild(benchDir, buildDir);
const nativeExe = path.join(buildDir, 'lpc-bench-native.exe');
const standIn = isWindows ? [] : ['--stand-in', windowsPath(lpcStandInDll)];
const preload = isWindows ? [] : ['--require', `./${path.join('scripts', 'lpc-stand-in-preload.cjs')}`];
const portName = `\\RPC Control\\fltport-bench-${process.pid}`;

/** The echo server, until stop() is called; resolves once it listens. */
async function startServer() {
  fs.mkdirSync(cacheDir, { recursive: true });
  const log = path.join(cacheDir, `lpc-bench-server-${process.pid}.log`);
  const fd = fs.openSync(log, 'w');
  const child = isWindows
    ? spawn(nativeExe, ['server', portName], { stdio: ['ignore', fd, fd] })
    : (ensureWinePrefix(), spawn('wine', [nativeExe, 'server', portName, ...standIn], { env: wineEnv(), stdio: ['ignore', fd, fd] }));
  fs.closeSync(fd);
  for (;;) {
    const text = fs.readFileSync(log, 'utf8');
    if (text.includes('ready')) break;
    if (child.exitCode !== null) throw new Error(`the echo server exited: ${text}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return () => {
    child.kill();
    fs.rmSync(log, { force: true });
  };
}

async function measure(client, inFlight) {
  const args = [portName, String(messages), String(inFlight), String(PAYLOAD)];
  const { code, output } =
    client === 'native'
      ? await runWindowsProgram(nativeExe, ['client', ...args, ...standIn], { echo: false })
      : await runWindowsProgram(windowsNodeExe(), [...preload, path.join('bench', 'lpc-fltport-client.cjs'), ...args], { echo: false, cwd: repoRoot });
  const line = output.split(/\r?\n/).find((text) => text.startsWith('{'));
  if (code !== 0 || line === undefined) throw new Error(`${client} client failed (${code}): ${output}`);
  return JSON.parse(line);
}

const median = (values) => [...values].sort((a, b) => a - b)[values.length >> 1];
const stop = await startServer();
try {
  console.log(`LPC request/reply, ${PAYLOAD} B each way, ${messages} requests per cell, median of ${reps} (${isWindows ? 'real ntdll' : 'LPC stand-in under Wine'})`);
  console.log('| cell | native /s | fltport /s | ratio | native p99 | fltport p99 | ratio |');
  console.log('| --- | --- | --- | --- | --- | --- | --- |');
  for (const inFlight of CELLS) {
    const runs = { native: [], fltport: [] };
    for (let rep = 0; rep < reps; rep += 1) {
      for (const client of ['native', 'fltport']) runs[client].push(await measure(client, inFlight));
    }
    const pick = (client, key) => median(runs[client].map((run) => run[key]));
    const [nRate, fRate, nP99, fP99] = [pick('native', 'perSecond'), pick('fltport', 'perSecond'), pick('native', 'p99Us'), pick('fltport', 'p99Us')];
    console.log(
      `| request 64 B, in flight ${inFlight} | ${nRate.toFixed(0)} | ${fRate.toFixed(0)} | ${(fRate / nRate).toFixed(2)}x | ` +
        `${(nP99 / 1000).toFixed(2)} ms | ${(fP99 / 1000).toFixed(2)} ms | ${(fP99 / nP99).toFixed(2)}x |`,
    );
  }
} finally {
  stop();
}
