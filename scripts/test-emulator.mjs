// Builds the filter-manager emulator and runs its conformance program (under Wine on Linux, natively
// on Windows); with --lpc, the LPC stand-in's (emulator/lpc/). Exits with the program's exit code;
// the last output line is `N passed, N failed`.
import path from 'node:path';
import { buildEmulator } from './build-emulator.mjs';
import { emulatedFltlibEnv, runWindowsProgram } from './windows-runtime.mjs';

const SUMMARY = /^(\d+) passed, (\d+) failed\s*$/;

async function main() {
  const lpc = process.argv.includes('--lpc');
  let conformanceExe;
  try {
    const built = buildEmulator();
    conformanceExe = lpc ? built.lpcConformanceExe : built.conformanceExe;
  } catch (error) {
    console.log(`not ok - build the emulator: ${error.message.split('\n')[0]}`);
    console.error(error.message);
    console.log('0 passed, 1 failed');
    return 1;
  }
  // The override makes Wine take the fltlib.dll beside the program instead of its builtin stub.
  const { code, output } = await runWindowsProgram(conformanceExe, [], {
    env: lpc ? {} : emulatedFltlibEnv,
    cwd: path.dirname(conformanceExe),
  });
  const lines = output.split(/\r?\n/).filter((line) => line.trim() !== '');
  const last = lines.at(-1) ?? '';
  if (!SUMMARY.test(last)) {
    // The program died before its summary: count what it printed and add the crash as a failure.
    const passed = lines.filter((line) => /^ok\b/.test(line)).length;
    const failed = lines.filter((line) => /^not ok\b/.test(line)).length;
    console.log(`not ok - ${path.basename(conformanceExe)} ended without a summary (exit code ${code})`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    return code === 0 ? 1 : code;
  }
  if (!output.endsWith('\n')) process.stdout.write('\n');
  return code;
}

process.exitCode = await main();
