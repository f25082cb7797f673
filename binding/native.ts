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
  /**
   * One overlapped FilterGetMessage into a buffer of `bufferBytes` (header included). Rejects with
   * a RangeError (ERR_OUT_OF_RANGE) when the port's reads would hold more than 256 MiB of payload
   * buffers (receives and streams together).
   */
  read(bufferBytes: number, readId: number): Promise<NativeMessage>;
  /** CancelIoEx on that read; it then rejects with ERROR_OPERATION_ABORTED. */
  cancelRead(readId: number): void;
  /**
   * Keeps `pending` reads of `bufferBytes` (header included) outstanding, re-armed off the JS
   * thread while fewer than 2 x `pending` delivered messages are unconsumed. Messages come in
   * batches, each with the errors of the messages that could not be read (either list may be
   * empty); onEnd comes once, with null after stop() or close(), else the failure. Throws the
   * RangeError of read() when pending x maxBufferBytes payload bytes would pass the port's budget.
   */
  stream(
    bufferBytes: number,
    pending: number,
    onMessages: (messages: NativeMessage[], unreadable: Error[]) => void,
    onEnd: (error: Error | null) => void,
    maxBufferBytes: number | undefined,
    /** A read whose message expects a reply is re-armed by reply(..., stream) or consumed(), not at its completion. */
    holdForReply: boolean,
  ): NativeMessageStream;
  send(data: Uint8Array, replyBytes: number): Promise<Buffer>;
  /**
   * settleLazily: the promise settles with the JS thread's next wake-up (at most ~2 ms later)
   * instead of waking it. stream: the message holds that stream's read (see stream()'s
   * holdForReply), re-armed once the reply is made.
   */
  reply(messageId: bigint, status: number, payload: Uint8Array | null, settleLazily: boolean, stream: NativeMessageStream | null): Promise<void>;
  /** Cancels every read and resolves once all have completed; the handle closes after the last call using it. */
  close(): Promise<void>;
  /** Whether pending reads, streams and calls in flight (sends, replies) hold the event loop (default: they do). */
  ref(): void;
  unref(): void;
}

export interface NativeMessageStream {
  /** The consumer is done with `count` delivered messages: room for that many reads again. */
  consumed(count: number): void;
  /** Cancels the reads; onMessages may still run with what they delivered, then onEnd. */
  stop(): void;
}

/**
 * fltlib's filter-manager calls, each run off the JS thread. Enumerations resolve with one
 * buffer per FilterFindFirst/Next (and kin) call, in the information class asked for; a
 * function fltlib does not export (or Wine's built-in fltlib.dll, whose are stubs) rejects
 * with ERROR_PROC_NOT_FOUND named after it.
 */
export interface NativeFilterManager {
  findFilters(informationClass: number): Promise<Buffer[]>;
  findInstances(filterName: string, informationClass: number): Promise<Buffer[]>;
  findVolumes(informationClass: number): Promise<Buffer[]>;
  findVolumeInstances(volumeName: string, informationClass: number): Promise<Buffer[]>;
  /** FilterCreate + FilterGetInformation + FilterClose. */
  filterInformation(filterName: string, informationClass: number): Promise<Buffer>;
  loadFilter(filterName: string): Promise<void>;
  unloadFilter(filterName: string): Promise<void>;
  /** FilterAttach, or FilterAttachAtAltitude with an altitude; resolves with the created instance's name. */
  attach(filterName: string, volumeName: string, instanceName: string | null, altitude: string | null): Promise<string>;
  detach(filterName: string, volumeName: string, instanceName: string | null): Promise<void>;
  /** FilterGetDosName: '' for a volume with neither a drive letter nor a mount point. */
  dosName(volumeName: string): Promise<string>;
}

export interface NativeModule {
  runtimeInfo(): NativeRuntimeInfo;
  filterManager: NativeFilterManager;
  /** Throws a TypeError (ERR_INVALID_ARG_VALUE) for inheritHandle without syncHandle. */
  filterConnect(name: string, context: Uint8Array | null, syncHandle: boolean, inheritHandle: boolean): Promise<NativeFilterPort>;
  /** NtConnectPort (NtSecureConnectPort with serverSid); impersonationLevel 0..3 = Anonymous..Delegation. */
  lpcConnect(
    name: string,
    connectionInfo: Uint8Array | null,
    impersonationLevel: number,
    dynamicTracking: boolean,
    effectiveOnly: boolean,
    viewBytes: number,
    serverSid: string | null,
  ): Promise<NativeLpcConnection>;
  /** NtCreatePort; maxMessageLength counts the 40-byte PORT_MESSAGE header. */
  lpcCreateServer(name: string, maxConnectionInfoLength: number, maxMessageLength: number): Promise<NativeLpcServer>;
  /** null, or the FltportError-shaped error a call would fail with for lack of an ntdll export. */
  lpcMissingEntryPoint(role: 'client' | 'server'): Error | null;
}

// LPC ports. Messages are whole PORT_MESSAGEs (header + data), encoded by lib/port-message.ts.
// Views: 0 = the caller's own section, 1 = the peer's section as mapped into this process.

export interface NativeLpcConnection {
  port: NativeLpcClient;
  /** The port's MaxMessageLength, header included. */
  maxMessageLength: number;
  serverConnectionInfo: Buffer;
  viewBytes: number;
  serverViewBytes: number;
}

export interface NativeLpcClient {
  /** NtRequestWaitReplyPort: resolves with the whole reply message. */
  request(message: Uint8Array): Promise<Buffer>;
  /** NtRequestPort. */
  post(message: Uint8Array): Promise<void>;
  readView(view: 0 | 1, offset: number, length: number): Buffer;
  writeView(view: 0 | 1, offset: number, data: Uint8Array): void;
  /** Lets go of the handle; it closes after the last call in flight on it returns. */
  close(): void;
}

export interface NativeLpcAccepted {
  connectionId: number;
  viewBytes: number;
  clientViewBytes: number;
}

export interface NativeLpcServer {
  /** Starts the receiving thread. connectionId 0: the message came through the server port itself. */
  start(onMessage: (connectionId: number, message: Buffer) => void, onEnd: (error: Error | null) => void): void;
  /** NtAcceptConnectPort(TRUE); `message` is the request's header with the server's info as data. */
  accept(message: Uint8Array, viewBytes: number): Promise<NativeLpcAccepted>;
  /** NtAcceptConnectPort(FALSE). */
  refuse(message: Uint8Array): Promise<void>;
  /** NtCompleteConnectPort. */
  complete(connectionId: number): Promise<void>;
  /** NtReplyPort on the connection's communication port. */
  reply(connectionId: number, message: Uint8Array): Promise<void>;
  closeConnection(connectionId: number): void;
  readView(connectionId: number, view: 0 | 1, offset: number, length: number): Buffer;
  writeView(connectionId: number, view: 0 | 1, offset: number, data: Uint8Array): void;
  /** Closes every connection, stops the thread; resolves once the port is closed. */
  close(): Promise<void>;
  ref(): void;
  unref(): void;
}
