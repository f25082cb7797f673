// Configures and builds the filter-manager emulator (emulator/): fltlib.dll, the fltemu kernel-side
// library and the conformance program. Cross-compiles with mingw-w64 on Linux/macOS, uses CMake's
// default generator (Visual Studio / MSVC) on Windows. Cheap when everything is up to date.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceDir = path.join(repoRoot, 'emulator');
const buildDir = path.join(sourceDir, 'build');
const isWindows = process.platform === 'win32';

function run(cmd, args) {
  const result = spawnSync(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  if (result.error) throw new Error(`${cmd} could not start: ${result.error.message}`);
  if (result.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited with ${result.status}:\n${result.stdout}${result.stderr}`);
  }
  return result.stdout;
}

/**
 * Builds the emulator if needed and returns the paths of its outputs.
 * testKernelExe is present only when emulator/test-kernel/test-kernel.c exists.
 * @returns {{ fltlibDll: string, kernelLib: string, includeDir: string, conformanceExe: string, testKernelExe?: string }}
 */
export function buildEmulator() {
  if (!fs.existsSync(path.join(buildDir, 'CMakeCache.txt'))) {
    const args = ['-S', sourceDir, '-B', buildDir];
    if (!isWindows) {
      args.push(`-DCMAKE_TOOLCHAIN_FILE=${path.join(repoRoot, 'cmake', 'mingw-w64-x86_64.cmake')}`);
      args.push('-DCMAKE_BUILD_TYPE=Release');
    }
    run('cmake', args);
  }
  run('cmake', ['--build', buildDir, '--config', 'Release', '--parallel']);

  const kernelLibCandidates = ['libfltemu.a', 'fltemu.lib'].map((name) => path.join(buildDir, name));
  const outputs = {
    fltlibDll: path.join(buildDir, 'fltlib.dll'),
    kernelLib: kernelLibCandidates.find((file) => fs.existsSync(file)) ?? kernelLibCandidates[isWindows ? 1 : 0],
    includeDir: path.join(sourceDir, 'include'),
    conformanceExe: path.join(buildDir, 'emulator-conformance.exe'),
  };
  for (const [name, file] of Object.entries(outputs)) {
    if (!fs.existsSync(file)) throw new Error(`emulator build did not produce ${name}: ${file}`);
  }
  if (fs.existsSync(path.join(sourceDir, 'test-kernel', 'test-kernel.c'))) {
    const testKernelExe = path.join(buildDir, 'test-kernel.exe');
    if (!fs.existsSync(testKernelExe)) throw new Error(`emulator build did not produce testKernelExe: ${testKernelExe}`);
    outputs.testKernelExe = testKernelExe;
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
