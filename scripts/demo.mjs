// npm run demo: the sample's agent (driver-sample/demo.js) in Windows node.exe, under Wine here.
//   default                        fltportsample.sys on the emulated filter manager under Wine (the
//                                  emulator and the driver are built here first)
//   FLTPORT_SAMPLE_TARGET=driver   Windows with the sample driver loaded (driver-sample/README.md)
// Arguments are passed on: npm run demo -- --seconds 30 --events 100000
// Ctrl+C asks the demo to stop (it then prints its summary); a second Ctrl+C ends it at once.
import fs from 'node:fs';
import path from 'node:path';
import { buildEmulator } from './build-emulator.mjs';
import {
  cacheDir,
  emulatedFltlibEnv,
  emulatedNodeExe,
  installEmulatedFilterManager,
  repoRoot,
  runWindowsProgram,
  waitForWineSessionEnd,
  windowsNodeExe,
} from './windows-runtime.mjs';

const target = process.env.FLTPORT_SAMPLE_TARGET || 'emulator';
if (target !== 'emulator' && target !== 'driver') {
  console.error(`FLTPORT_SAMPLE_TARGET must be emulator or driver, not ${target}`);
  process.exit(2);
}

// Ctrl+C reaches node.exe too, but whether Wine turns it into a console event depends on the
// terminal: the stop file is what reliably tells the demo to finish.
fs.mkdirSync(cacheDir, { recursive: true });
const stopFile = path.join(cacheDir, `demo-stop-${process.pid}`);
let interrupted = false;
process.on('SIGINT', () => {
  if (interrupted) process.exit(130);
  interrupted = true;
  fs.writeFileSync(stopFile, '');
});

let exe = windowsNodeExe();
const env = { FLTPORT_DEMO_STOP_FILE: stopFile, FLTPORT_SAMPLE_TARGET: target };
if (target === 'emulator') {
  const emulator = buildEmulator();
  exe = emulatedNodeExe(emulator.fltlibDll);
  installEmulatedFilterManager(emulator.fltmgrSys);
  // A Wine session of its own, started by node.exe: no driver of an earlier run remains.
  waitForWineSessionEnd();
  Object.assign(env, emulatedFltlibEnv);
}
try {
  const { code } = await runWindowsProgram(exe, [path.join('driver-sample', 'demo.js'), ...process.argv.slice(2)], { cwd: repoRoot, env });
  process.exitCode = code;
} finally {
  fs.rmSync(stopFile, { force: true });
}
