// What the current process runs on: Windows or Wine, which fltlib.dll it loaded, and which
// LPC entry points ntdll exports.
import { loadNative } from '../binding/loader';

export interface RuntimeInfo {
  /** Wine's version when running under Wine, else null. */
  wineVersion: string | null;
  /** Path of the fltlib.dll in use: the system's, Wine's stub or the emulator's. */
  fltlibPath: string | null;
  /** For each LPC call fltport binds, whether this system's ntdll exports it. */
  ntdllEntryPoints: Record<string, boolean>;
}

export function runtimeInfo(): RuntimeInfo {
  return loadNative().runtimeInfo();
}
