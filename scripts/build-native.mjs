// Builds build/Release/fltport.node with cmake-js: MSVC on Windows, mingw-w64 elsewhere.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { repoRoot, isWindows } from './windows-runtime.mjs';

const cmakeJs = path.join(repoRoot, 'node_modules', 'cmake-js', 'bin', 'cmake-js');
const args = [cmakeJs, 'compile', '--log-level', 'warn'];
if (!isWindows) {
  args.push(`--CDCMAKE_TOOLCHAIN_FILE=${path.join(repoRoot, 'cmake', 'mingw-w64-x86_64.cmake')}`);
}
const result = spawnSync(process.execPath, args, { cwd: repoRoot, stdio: 'inherit' });
process.exit(result.status ?? 1);
