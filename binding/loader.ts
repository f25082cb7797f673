// Finds and loads the native addon. The only place that knows where the .node file lives.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FltportError } from '../lib/errors';
import type { NativeModule } from './native';

// dist/binding/loader.js -> the package root.
const packageRoot = path.resolve(__dirname, '..', '..');

/** Where a user's install can have the addon, in the order they are tried. */
export function candidatePaths(platform: string = process.platform, arch: string = process.arch): string[] {
  return [
    path.join(packageRoot, 'prebuilds', `${platform}-${arch}`, 'fltport.node'),
    path.join(packageRoot, 'build', 'Release', 'fltport.node'),
    path.join(packageRoot, 'build', 'Debug', 'fltport.node'),
  ];
}

let loaded: NativeModule | undefined;

/**
 * The native module. Throws ERR_FLTPORT_UNSUPPORTED_PLATFORM off Windows, and
 * ERR_FLTPORT_NATIVE_LOAD listing every path tried (and why each failed) when none loads.
 */
export function loadNative(): NativeModule {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'win32') {
    throw new FltportError(
      'ERR_FLTPORT_UNSUPPORTED_PLATFORM',
      `fltport talks to Windows kernel ports and works only on Windows (this is ${process.platform})`,
    );
  }
  const failures: string[] = [];
  for (const candidate of candidatePaths()) {
    if (!fs.existsSync(candidate)) {
      failures.push(`${candidate}: not found`);
      continue;
    }
    try {
      loaded = require(candidate) as NativeModule;
      return loaded;
    } catch (error) {
      failures.push(`${candidate}: ${(error as Error).message.replace(/\s*[\r\n]+\s*/g, ' ').trim()}`);
    }
  }
  throw new FltportError(
    'ERR_FLTPORT_NATIVE_LOAD',
    `fltport could not load its native addon for ${process.platform}-${process.arch}. Tried:\n  ${failures.join('\n  ')}`,
  );
}
