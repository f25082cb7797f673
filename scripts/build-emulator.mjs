// Configures and builds the filter-manager emulator for Wine (emulator/): fltmgr.sys, its
// fltlib.dll, the drivers that run on it, the conformance program and its driver, and the LPC
// stand-in (emulator/lpc/). Cross-compiles with mingw-w64. Wine only: on Windows the real filter
// manager runs and the WDK builds the drivers. Cheap when everything is up to date.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cmakeBuild, isWindows, repoRoot } from './windows-runtime.mjs';

const sourceDir = path.join(repoRoot, 'emulator');
const buildDir = path.join(sourceDir, 'build');

/**
 * Builds the emulator if needed and returns the paths of its outputs.
 * @returns {{ fltlibDll: string, conformanceExe: string, lpcStandInDll: string, lpcConformanceExe: string, fltmgrSys: string, testKernelSys: string, conformanceDriverSys: string, loaderDriverSys: string, sampleDriverSys: string }}
 */
export function buildEmulator() {
  if (isWindows) throw new Error('the emulator runs under Wine only: on Windows the suites use the real filter manager (see docs/windows-ci.md)');
  cmakeBuild(sourceDir, buildDir);
  const outputs = {
    fltlibDll: path.join(buildDir, 'fltlib.dll'),
    conformanceExe: path.join(buildDir, 'emulator-conformance.exe'),
    lpcStandInDll: path.join(buildDir, 'lpcemu.dll'),
    lpcConformanceExe: path.join(buildDir, 'lpc-conformance.exe'),
    fltmgrSys: path.join(buildDir, 'fltmgr.sys'),
    testKernelSys: path.join(buildDir, 'test-kernel.sys'),
    conformanceDriverSys: path.join(buildDir, 'fltemu-conformance.sys'),
    loaderDriverSys: path.join(buildDir, 'loader-driver.sys'),
    sampleDriverSys: path.join(buildDir, 'fltportsample.sys'),
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
