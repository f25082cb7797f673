// Builds the filter-manager emulator and runs its conformance program under Wine: the emulator's
// fltmgr.sys (the FltMgr service) and the conformance driver are loaded first and removed again
// afterwards. With --lpc, the LPC stand-in's conformance program (emulator/lpc/) instead, which
// also runs natively on Windows. Exits with the program's exit code; the last output line is
// `N passed, N failed`.
import fs from 'node:fs';
import path from 'node:path';
import { buildEmulator } from './build-emulator.mjs';
import {
  emulatedFltlibEnv,
  ensureWinePrefix,
  isWindows,
  runChecked,
  runWindowsProgram,
  wineEnv,
  winePrefix,
  windowsPath,
} from './windows-runtime.mjs';

const SUMMARY = /^(\d+) passed, (\d+) failed\s*$/;
const CONFORMANCE_SERVICE = 'FltEmuConformance';

/**
 * The emulator's filter manager in the Wine prefix: its fltmgr.sys replaces Wine's placeholder in
 * system32\drivers, and the prefix prefers it to Wine's builtin stub (DllOverrides).
 */
function installFilterManager(fltmgrSys) {
  ensureWinePrefix();
  fs.copyFileSync(fltmgrSys, path.join(winePrefix, 'drive_c', 'windows', 'system32', 'drivers', 'fltmgr.sys'));
  runChecked('wine', ['reg', 'add', 'HKCU\\Software\\Wine\\DllOverrides', '/v', 'fltmgr.sys', '/d', 'native', '/f'], {
    env: wineEnv(),
  });
}

/**
 * A batch file that loads FltMgr and the conformance driver (one winedevice.exe: same load-order
 * group), runs the program and removes both services again, all inside one cmd.exe: a Wine session
 * without a user process stops its services within seconds, and cmd.exe is that process. Only the
 * program's own output reaches the log.
 */
function conformanceScript(built) {
  const group = '"FSFilter Infrastructure"';
  const lines = [
    '@echo off',
    `sc stop ${CONFORMANCE_SERVICE} >nul 2>&1`,
    `sc delete ${CONFORMANCE_SERVICE} >nul 2>&1`,
    `sc create FltMgr type= kernel group= ${group} binPath= C:\\windows\\system32\\drivers\\fltmgr.sys >nul 2>&1`,
    'sc start FltMgr >nul 2>&1',
    `sc create ${CONFORMANCE_SERVICE} type= kernel group= ${group} binPath= ${windowsPath(built.conformanceDriverSys)} >nul`,
    // The Instances key an INF writes: FltRegisterFilter refuses a minifilter without one, as on Windows.
    `reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\${CONFORMANCE_SERVICE}\\Instances /v DefaultInstance /d Conformance /f >nul`,
    `reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\${CONFORMANCE_SERVICE}\\Instances\\Conformance /v Altitude /d 370000 /f >nul`,
    `sc start ${CONFORMANCE_SERVICE} >nul`,
    `"${windowsPath(built.conformanceExe)}" ${CONFORMANCE_SERVICE}`,
    'set rc=%errorlevel%',
    `sc stop ${CONFORMANCE_SERVICE} >nul 2>&1`,
    `sc delete ${CONFORMANCE_SERVICE} >nul 2>&1`,
    'sc stop FltMgr >nul 2>&1',
    'sc delete FltMgr >nul 2>&1',
    'exit /b %rc%',
  ];
  const file = path.join(path.dirname(built.conformanceExe), 'run-conformance.bat');
  fs.writeFileSync(file, `${lines.join('\r\n')}\r\n`);
  return file;
}

async function main() {
  const lpc = process.argv.includes('--lpc');
  if (!lpc && isWindows) {
    // fltmgr.sys is for Wine: on Windows the suites run against the real filter manager.
    console.log('# the filter-manager emulator runs under Wine only');
    console.log('0 passed, 0 failed');
    return 0;
  }
  let built;
  try {
    built = buildEmulator();
    if (!lpc) installFilterManager(built.fltmgrSys);
  } catch (error) {
    console.log(`not ok - build the emulator: ${error.message.split('\n')[0]}`);
    console.error(error.message);
    console.log('0 passed, 1 failed');
    return 1;
  }
  const program = lpc ? built.lpcConformanceExe : built.conformanceExe;
  // The override makes Wine take the fltlib.dll beside the program instead of its builtin stub.
  const { code, output } = lpc
    ? await runWindowsProgram(program, [], { cwd: path.dirname(program) })
    : await runWindowsProgram('cmd', ['/c', windowsPath(conformanceScript(built))], {
        env: emulatedFltlibEnv,
        cwd: path.dirname(program),
      });
  const lines = output.split(/\r?\n/).filter((line) => line.trim() !== '');
  const last = lines.at(-1) ?? '';
  if (!SUMMARY.test(last)) {
    // The program died before its summary: count what it printed and add the crash as a failure.
    const passed = lines.filter((line) => /^ok\b/.test(line)).length;
    const failed = lines.filter((line) => /^not ok\b/.test(line)).length;
    console.log(`not ok - ${path.basename(program)} ended without a summary (exit code ${code})`);
    console.log(`${passed} passed, ${failed + 1} failed`);
    return code === 0 ? 1 : code;
  }
  if (!output.endsWith('\n')) process.stdout.write('\n');
  return code;
}

process.exitCode = await main();
