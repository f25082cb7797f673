// Runs a mocha suite inside Windows node.exe: under Wine on Linux, natively on Windows.
//   node scripts/test-windows.mjs [--emulator] [--lpc-stand-in] [suite folder, default test/windows]
// With --emulator (Wine only) the addon loads the emulator's fltlib.dll and Wine the emulator's
// fltmgr.sys; the suites load their drivers with emulator/drivers.js. On Windows the same suites
// run without --emulator against the real filter manager, loading test-signed drivers. With --lpc-stand-in
// (under Wine only) node.exe preloads the LPC stand-in, emulator/lpc/README.md.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  emulatedFltlibEnv,
  emulatedNodeExe,
  installEmulatedFilterManager,
  isWindows,
  repoRoot,
  runWindowsProgram,
  waitForWineSessionEnd,
  windowsNodeExe,
} from './windows-runtime.mjs';
import { mochaCounts } from './mocha-summary.mjs';

export async function runWindowsSuite(suite, { emulator = false, lpcStandIn = false } = {}) {
  let exe = windowsNodeExe();
  let env = {};
  const preload = [];
  if (lpcStandIn && !isWindows) {
    const { buildEmulator } = await import('./build-emulator.mjs');
    buildEmulator();
    preload.push('--require', `./${path.join('scripts', 'lpc-stand-in-preload.cjs')}`);
  }
  if (emulator) {
    const { buildEmulator } = await import('./build-emulator.mjs');
    const built = buildEmulator();
    exe = emulatedNodeExe(built.fltlibDll);
    installEmulatedFilterManager(built.fltmgrSys);
    // A session of its own, started by node.exe: its services.exe and winedevice.exe write to the
    // suite's output (and not to a finished program's), and no driver of an earlier run remains.
    waitForWineSessionEnd();
    env = { ...emulatedFltlibEnv };
  }
  const mocha = path.join('node_modules', 'mocha', 'bin', 'mocha.js');
  const { code, output } = await runWindowsProgram(exe, [...preload, mocha, '--config', path.join(suite, '.mocharc.json')], { env });
  const { summarized, ...counts } = mochaCounts(output);
  // A crash of node.exe leaves no summary, and under Wine it may still exit 0: a failure either way.
  if ((code !== 0 || !summarized) && counts.failed === 0) counts.failed = 1;
  return counts;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const emulator = args.includes('--emulator');
  const lpcStandIn = args.includes('--lpc-stand-in');
  const suite = args.find((arg) => !arg.startsWith('--')) ?? path.join('test', 'windows');
  process.chdir(repoRoot);
  const counts = await runWindowsSuite(suite, { emulator, lpcStandIn });
  process.exit(counts.failed === 0 ? 0 : 1);
}
