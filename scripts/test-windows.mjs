// Runs a mocha suite inside Windows node.exe: under Wine on Linux, natively on Windows.
//   node scripts/test-windows.mjs [--emulator] [--lpc-stand-in] [suite folder, default test/windows]
// With --emulator the addon loads the emulator's fltlib.dll, and the suites find the emulator's
// test kernel (FLTPORT_TEST_KERNEL) and the sample host (FLTPORT_SAMPLE_HOST). With --lpc-stand-in
// (under Wine only) node.exe preloads the LPC stand-in, emulator/lpc/README.md.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  emulatedFltlibEnv,
  emulatedNodeExe,
  isWindows,
  removeEmulatedFltlib,
  repoRoot,
  runWindowsProgram,
  windowsNodeExe,
  windowsPath,
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
    const { buildSampleHost } = await import('./build-sample-host.mjs');
    const built = buildEmulator();
    const { hostExe } = await buildSampleHost({ emulator: built });
    exe = emulatedNodeExe(built.pipeFltlibDll);
    env = {
      ...emulatedFltlibEnv,
      FLTPORT_TEST_KERNEL: windowsPath(built.testKernelExe),
      FLTPORT_SAMPLE_HOST: windowsPath(hostExe),
    };
  }
  try {
    const mocha = path.join('node_modules', 'mocha', 'bin', 'mocha.js');
    const { code, output } = await runWindowsProgram(exe, [...preload, mocha, '--config', path.join(suite, '.mocharc.json')], { env });
    const counts = mochaCounts(output);
    // A crash of node.exe leaves no summary: count it as a failure.
    if (code !== 0 && counts.failed === 0) counts.failed = 1;
    return counts;
  } finally {
    if (emulator) removeEmulatedFltlib();
  }
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
