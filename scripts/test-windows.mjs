// Runs a mocha suite inside Windows node.exe: under Wine on Linux, natively on Windows.
//   node scripts/test-windows.mjs [--emulator] [suite folder, default test/windows]
// With --emulator, node.exe runs with the emulator's fltlib.dll beside it.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { emulatedFltlibEnv, emulatedNodeExe, repoRoot, runWindowsProgram, windowsNodeExe } from './windows-runtime.mjs';
import { mochaCounts } from './mocha-summary.mjs';

export async function runWindowsSuite(suite, { emulator = false, env = {} } = {}) {
  let exe = windowsNodeExe();
  let extraEnv = env;
  if (emulator) {
    const { buildEmulator } = await import('./build-emulator.mjs');
    exe = emulatedNodeExe((await buildEmulator()).fltlibDll);
    extraEnv = { ...emulatedFltlibEnv, ...env };
  }
  const mocha = path.join('node_modules', 'mocha', 'bin', 'mocha.js');
  const { code, output } = await runWindowsProgram(exe, [mocha, '--config', path.join(suite, '.mocharc.json')], { env: extraEnv });
  const counts = mochaCounts(output);
  // A crash of node.exe leaves no summary: count it as a failure.
  if (code !== 0 && counts.failed === 0) counts.failed = 1;
  return counts;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const emulator = args.includes('--emulator');
  const suite = args.find((arg) => !arg.startsWith('--')) ?? path.join('test', 'windows');
  process.chdir(repoRoot);
  const counts = await runWindowsSuite(suite, { emulator });
  process.exit(counts.failed === 0 ? 0 : 1);
}
