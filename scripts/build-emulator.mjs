// Configures and builds the filter-manager emulator (emulator/): fltlib.dll, the fltemu kernel-side
// library and the conformance program, and the LPC stand-in (emulator/lpc/) with its own. Cross-compiles with mingw-w64 on Linux/macOS, uses CMake's
// default generator (Visual Studio / MSVC) on Windows. Cheap when everything is up to date.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cmakeBuild, isWindows, repoRoot } from './windows-runtime.mjs';

const sourceDir = path.join(repoRoot, 'emulator');
const buildDir = path.join(sourceDir, 'build');

/**
 * Builds the emulator if needed and returns the paths of its outputs.
 * @returns {{ fltlibDll: string, kernelLib: string, includeDir: string, conformanceExe: string, fltmgrSys?: string, testKernelSys?: string, loaderDriverSys?: string }}
 */
export function buildEmulator() {
  cmakeBuild(sourceDir, buildDir);

  const kernelLibCandidates = ['libfltemu.a', 'fltemu.lib'].map((name) => path.join(buildDir, name));
  const outputs = {
    fltlibDll: path.join(buildDir, 'fltlib.dll'),
    kernelLib: kernelLibCandidates.find((file) => fs.existsSync(file)) ?? kernelLibCandidates[isWindows ? 1 : 0],
    includeDir: path.join(sourceDir, 'include'),
    conformanceExe: path.join(buildDir, 'emulator-conformance.exe'),
    lpcStandInDll: path.join(buildDir, 'lpcemu.dll'),
    lpcConformanceExe: path.join(buildDir, 'lpc-conformance.exe'),
    // The kernel side under Wine (not built with MSVC: on Windows the real filter manager runs and
    // the WDK builds the drivers): the emulator's filter manager, the test kernel and the loader
    // suite's driver.
    ...(isWindows
      ? {}
      : {
          fltmgrSys: path.join(buildDir, 'fltmgr.sys'),
          testKernelSys: path.join(buildDir, 'test-kernel.sys'),
          loaderDriverSys: path.join(buildDir, 'loader-driver.sys'),
          conformanceDriverSys: path.join(buildDir, 'fltemu-conformance.sys'),
          loaderDriverSys: path.join(buildDir, 'loader-driver.sys'),
          sampleDriverSys: path.join(buildDir, 'fltportsample.sys'),
        }),
    // The previous fltlib.dll over named pipes, for the sample host (user mode) until the
    // integration suite moves to fltportsample.sys.
    pipeFltlibDll: path.join(buildDir, 'pipes', 'fltlib.dll'),
  };
  for (const [name, file] of Object.entries(outputs)) {
    if (!fs.existsSync(file)) throw new Error(`emulator build did not produce ${name}: ${file}`);
  }
  return outputs;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const outputs = buildEmulator();
    for (const [name, file] of Object.entries(outputs)) console.log(`${name}: ${file}`);
  } catch (error) {
    console.error(error.message);
    process.exit(1);
  }
}
