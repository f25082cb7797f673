// Builds driver-sample/host (fltport-sample-host.exe: the sample driver's comm.c on the
// filter-manager emulator) into build/sample-host/. Builds the emulator first unless its outputs
// are passed in. mingw-w64 on Linux/macOS, CMake's default generator (MSVC) on Windows.
//   node scripts/build-sample-host.mjs      prints the path of the exe
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cmakeBuild, repoRoot } from './windows-runtime.mjs';

const sourceDir = path.join(repoRoot, 'driver-sample', 'host');
const buildDir = path.join(repoRoot, 'build', 'sample-host');

/**
 * Builds the host if needed; cheap when it is up to date.
 * @param {{ emulator?: { kernelLib: string, includeDir: string } }} [options] the emulator's
 *   outputs, when the caller has already built it (buildEmulator() from build-emulator.mjs)
 * @returns {Promise<{ hostExe: string }>}
 */
export async function buildSampleHost({ emulator } = {}) {
  const { kernelLib, includeDir } = emulator ?? (await import('./build-emulator.mjs')).buildEmulator();
  cmakeBuild(sourceDir, buildDir, { FLTEMU_KERNEL_LIB: kernelLib, FLTEMU_INCLUDE_DIR: includeDir });
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
