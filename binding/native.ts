// The shape of the native module, build/Release/fltport.node. Only binding/ and lib/ use it.
// Native failures reject with a plain Error carrying { syscall, hresult | ntstatus,
// systemMessage } or { code: 'ERR_FLTPORT_MISSING_ENTRY_POINT' }; lib/errors.ts converts them.

export interface NativeRuntimeInfo {
  wineVersion: string | null;
  fltlibPath: string | null;
  ntdllEntryPoints: Record<string, boolean>;
}

export interface NativeFilterPort {
  close(): void;
}

export interface NativeModule {
  runtimeInfo(): NativeRuntimeInfo;
  filterConnect(name: string, context: Uint8Array | null, syncHandle: boolean, inheritHandle: boolean): Promise<NativeFilterPort>;
}
