// Runs a mocha suite inside Windows node.exe: under Wine on Linux, natively on Windows.
//   node scripts/test-windows.mjs [--emulator] [suite folder, default test/windows]
// With --emulator the addon loads the emulator's fltlib.dll, and the suites find the emulator's
// test kernel (FLTPORT_TEST_KERNEL) and the sample host (FLTPORT_SAMPLE_HOST).
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  emulatedFltlibEnv,
  emulatedNodeExe,
  removeEmulatedFltlib,
  repoRoot,
  runWindowsProgram,
  windowsNodeExe,
  windowsPath,
} from './windows-runtime.mjs';
import { mochaCounts } from './mocha-summary.mjs';

export async function runWindowsSuite(suite, { emulator = false } = {}) {
  let exe = windowsNodeExe();
  let env = {};
  if (emulator) {
    const { buildEmulator } = await import('./build-emulator.mjs');
    const { buildSampleHost } = await import('./build-sample-host.mjs');
    const built = buildEmulator();
    const { hostExe } = await buildSampleHost({ emulator: built });
    exe = emulatedNodeExe(built.fltlibDll);
    env = {
      ...emulatedFltlibEnv,
      FLTPORT_TEST_KERNEL: windowsPath(built.testKernelExe),
      FLTPORT_SAMPLE_HOST: windowsPath(hostExe),
    };
  }
  try {
    const mocha = path.join('node_modules', 'mocha', 'bin', 'mocha.js');
    const { code, output } = await runWindowsProgram(exe, [mocha, '--config', path.join(suite, '.mocharc.json')], { env });
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
  const suite = args.find((arg) => !arg.startsWith('--')) ?? path.join('test', 'windows');
  process.chdir(repoRoot);
  const counts = await runWindowsSuite(suite, { emulator });
  process.exit(counts.failed === 0 ? 0 : 1);
}
