// npm run demo: runs the demo agent (driver-sample/demo.js) in Windows node.exe.
import path from 'node:path';
import { repoRoot, runWindowsProgram, windowsNodeExe } from './windows-runtime.mjs';

const { code } = await runWindowsProgram(windowsNodeExe(), [path.join('driver-sample', 'demo.js')], { cwd: repoRoot });
process.exit(code);
