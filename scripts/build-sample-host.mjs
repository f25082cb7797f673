// Builds driver-sample/host (fltport-sample-host.exe: the sample driver's comm.c on the
// filter-manager emulator) into build/sample-host/. Builds the emulator first unless its outputs
// are passed in. mingw-w64 on Linux/macOS, CMake's default generator (MSVC) on Windows.
//   node scripts/build-sample-host.mjs      prints the path of the exe
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = path.join(repoRoot, 'driver-sample', 'host');
const buildDir = path.join(repoRoot, 'build', 'sample-host');
const isWindows = process.platform === 'win32';

function run(cmd, args) {
  const result = spawnSync(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (result.error) throw new Error(`${cmd} could not start: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.status}:\n${result.stdout}${result.stderr}`);
  }
}

/**
 * Builds the host if needed; cheap when it is up to date.
 * @param {{ emulator?: { kernelLib: string, includeDir: string } }} [options] the emulator's
 *   outputs, when the caller has already built it (buildEmulator() from build-emulator.mjs)
 * @returns {Promise<{ hostExe: string }>}
 */
export async function buildSampleHost({ emulator } = {}) {
  const { kernelLib, includeDir } = emulator ?? (await import('./build-emulator.mjs')).buildEmulator();
  const args = ['-S', sourceDir, '-B', buildDir, `-DFLTEMU_KERNEL_LIB=${kernelLib}`, `-DFLTEMU_INCLUDE_DIR=${includeDir}`];
  if (!isWindows) {
    args.push(`-DCMAKE_TOOLCHAIN_FILE=${path.join(repoRoot, 'cmake', 'mingw-w64-x86_64.cmake')}`, '-DCMAKE_BUILD_TYPE=Release');
  }
  run('cmake', args);
  run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel']);
  const candidates = [path.join(buildDir, 'fltport-sample-host.exe'), path.join(buildDir, 'Release', 'fltport-sample-host.exe')];
  const hostExe = candidates.find((file) => fs.existsSync(file));
  if (hostExe === undefined) throw new Error(`the sample host build produced no exe (looked for ${candidates.join(', ')})`);
  return { hostExe };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    console.log((await buildSampleHost()).hostExe);
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
