// The shape of the native module, build/Release/fltport.node. Only binding/ and lib/ use it.
// Native failures reject with a plain Error carrying { syscall, hresult | ntstatus,
// systemMessage } or { code: 'ERR_FLTPORT_MISSING_ENTRY_POINT' }; lib/errors.ts converts them.

export interface NativeRuntimeInfo {
  wineVersion: string | null;
  fltlibPath: string | null;
  ntdllEntryPoints: Record<string, boolean>;
}

export interface NativeMessage {
  id: bigint;
  /** FILTER_MESSAGE_HEADER.ReplyLength as user mode sees it (0 = no reply expected). */
  replyLength: number;
  data: Buffer;
}

export interface NativeFilterPort {
  /** One overlapped FilterGetMessage into a buffer of `bufferBytes` (header included). */
  read(bufferBytes: number, readId: number): Promise<NativeMessage>;
  /** CancelIoEx on that read; it then rejects with ERROR_OPERATION_ABORTED. */
  cancelRead(readId: number): void;
  send(data: Uint8Array, replyBytes: number): Promise<Buffer>;
  reply(messageId: bigint, status: number, payload: Uint8Array | null): Promise<void>;
  /** Cancels every read and resolves once all have completed; the handle closes after the last call using it. */
  close(): Promise<void>;
  ref(): void;
  unref(): void;
}

export interface NativeModule {
  runtimeInfo(): NativeRuntimeInfo;
  filterConnect(name: string, context: Uint8Array | null, syncHandle: boolean, inheritHandle: boolean): Promise<NativeFilterPort>;
}
