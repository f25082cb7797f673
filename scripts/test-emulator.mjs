// Builds the filter-manager emulator and runs its conformance program (under Wine on Linux, natively
// on Windows). Exits with the program's exit code; the last output line is `N passed, N failed`.
import path from 'node:path';
import { buildEmulator } from './build-emulator.mjs';
import { emulatedFltlibEnv, runWindowsProgram } from './windows-runtime.mjs';

const SUMMARY = /^(\d+) passed, (\d+) failed\s*$/;

async function main() {
  let conformanceExe;
  try {
    ({ conformanceExe } = buildEmulator());
  } catch (error) {
    console.log(`not ok - build the emulator: ${error.message.split('\n')[0]}`);
    console.error(error.message);
    console.log('0 passed, 1 failed');
    return 1;
  }
  // The override makes Wine take the fltlib.dll beside the program instead of its builtin stub.
  const { code, output } = await runWindowsProgram(conformanceExe, [], {
    env: emulatedFltlibEnv,
    cwd: path.dirname(conformanceExe),
  });
  const lines = output.split(/\r?\n/).filter((line) => line.trim() !== '');
  const last = lines.at(-1) ?? '';
  if (!SUMMARY.test(last)) {
    // The program died before its summary: count what it printed and add the crash as a failure.
    const passed = lines.filter((line) => line.startsWith('ok - ')).length;
    const failed = lines.filter((line) => line.startsWith('not ok - ')).length;
    console.log(`not ok - emulator-conformance.exe ended without a summary (exit code ${code})`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    return code === 0 ? 1 : code;
  }
  if (!output.endsWith('\n')) process.stdout.write('\n');
  return code;
}

process.exitCode = await main();
