// npm run demo:lpc: examples/lpc-demo.js (an LPC server and a client process) in Windows node.exe:
// natively on Windows against the real ntdll, under Wine here with the LPC stand-in preloaded
// (emulator/lpc/README.md). Arguments are passed on: npm run demo:lpc -- --requests 50000
import path from 'node:path';
import { buildEmulator } from './build-emulator.mjs';
import { isWindows, repoRoot, runWindowsProgram, windowsNodeExe } from './windows-runtime.mjs';

const preload = [];
if (!isWindows) {
  buildEmulator();
  preload.push('--require', `./${path.join('scripts', 'lpc-stand-in-preload.cjs')}`);
}
const { code } = await runWindowsProgram(windowsNodeExe(), [...preload, path.join('examples', 'lpc-demo.js'), ...process.argv.slice(2)], {
  cwd: repoRoot,
});
process.exitCode = code;
