// LPC ports (ntdll): LpcPort, a client's connection to a named port; LpcServerPort, a named port
// of this process and the events its clients cause. Modern Windows runs LPC on top of ALPC; the
// "LPC ports" section of docs/api.md says which behaviour is verified where.
import { loadNative } from '../binding/loader';
import type { NativeLpcClient, NativeLpcConnection, NativeLpcServer } from '../binding/native';
import { settleOnce } from './abort';
import { FltportError, WinError, abortErrorFor, fromNative, invalidArgType, invalidArgValue, outOfRange } from './errors';
import {
  type ClientId,
  LpcMessageType,
  MAX_LPC_CONNECTION_INFO_BYTES,
  MAX_LPC_MESSAGE_BYTES,
  PORT_MESSAGE_BYTES,
  type PortMessage,
  decodePortMessage,
  encodePortMessage,
} from './port-message';
import {
  checkOptionalBoolean,
  checkBytes,
  checkOptionalBytes,
  checkOptionalInteger,
  checkOptionalSignal,
  checkOptionsObject,
  checkPortName,
} from './validate';

/** The largest shared view fltport creates: 1 GiB. */
export const MAX_LPC_VIEW_BYTES = 1 << 30;
/** The peer closed its end: every later call on the port fails the same way. */
const STATUS_PORT_DISCONNECTED = 0xc0000037;
const IMPERSONATION_LEVELS = ['anonymous', 'identification', 'impersonation', 'delegation'] as const;

export type LpcImpersonationLevel = (typeof IMPERSONATION_LEVELS)[number];

/** SECURITY_QUALITY_OF_SERVICE for the connection: how far the server may impersonate the client. */
export interface LpcSecurityQos {
  /** Default 'impersonation'. */
  impersonationLevel?: LpcImpersonationLevel;
  /** SECURITY_DYNAMIC_TRACKING (the default) or static tracking. */
  dynamicTracking?: boolean;
  /** Default false. */
  effectiveOnly?: boolean;
}

export interface LpcConnectOptions {
  /** Connection information for the server (at most 128 bytes); the server's answer comes back in serverConnectionInfo. */
  connectionInfo?: Uint8Array;
  securityQos?: LpcSecurityQos;
  /** Connect with NtSecureConnectPort: fails unless the server runs as this SID, in S-1-... form or an SDDL alias (e.g. 'S-1-5-18', 'SY'). */
  serverSid?: string;
  /** A shared view (a pagefile-backed section) for payloads above the message limit. */
  view?: { bytes: number };
  /** Aborting rejects at once; a connection that completes later is closed again. */
  signal?: AbortSignal;
}

export interface LpcRequestOptions {
  /** Rejects at once; the request already inside the kernel waits on for its reply, which is dropped. */
  signal?: AbortSignal;
}

export interface LpcServerOptions {
  /** MaxConnectionInfoLength (default and maximum 128). */
  maxConnectionInfoBytes?: number;
  /** The largest payload of one message, header excluded (default and maximum 472). */
  maxMessageBytes?: number;
}

export interface LpcAcceptOptions {
  /** A view of the server's own section, shared with this client. */
  view?: { bytes: number };
}

/**
 * Shared memory of a port, read and written by copy (Electron refuses external buffers). A view
 * stays usable until its port or connection closes.
 */
export class LpcView {
  /** Bytes the kernel mapped (at least the size asked for). */
  readonly bytes: number;
  readonly #read: (offset: number, length: number) => Buffer;
  readonly #write: (offset: number, data: Uint8Array) => void;

  /** @internal */
  constructor(bytes: number, read: (offset: number, length: number) => Buffer, write: (offset: number, data: Uint8Array) => void) {
    this.bytes = bytes;
    this.#read = read;
    this.#write = write;
  }

  /** A copy of `length` bytes at `offset` (default: to the end). */
  read(offset = 0, length?: number): Buffer {
    const start = checkOffset(offset, this.bytes);
    const count = length === undefined ? this.bytes - start : checkOptionalInteger(length, 'length', 0, this.bytes) ?? 0;
    if (start + count > this.bytes) throw outOfRange('offset + length', `at most the view's ${this.bytes} bytes`, start + count);
    return callNative(() => this.#read(start, count));
  }

  /** Copies `data` into the view at `offset`. */
  write(offset: number, data: Uint8Array): void {
    const start = checkOffset(offset, this.bytes);
    checkBytes(data, 'data', this.bytes);
    if (start + data.byteLength > this.bytes) {
      throw outOfRange('offset + data.byteLength', `at most the view's ${this.bytes} bytes`, start + data.byteLength);
    }
    callNative(() => this.#write(start, data));
  }
}

/** A client connection to an LPC port (NtConnectPort). */
export class LpcPort {
  readonly name: string;
  /** The largest payload request() and post() take: the port's MaxMessageLength minus the 40-byte header. */
  readonly maxMessageBytes: number;
  /** What the server answered in the connection information (at most as long as what was sent). */
  readonly serverConnectionInfo: Buffer;
  /** This client's own view, when connect() asked for one. */
  readonly view: LpcView | null;
  /** The server's view, when the server shared one on accept. */
  readonly serverView: LpcView | null;
  readonly #native: NativeLpcClient;
  readonly #calls: Calls;

  private constructor(name: string, connection: NativeLpcConnection) {
    const native = connection.port;
    this.name = name;
    this.#native = native;
    this.#calls = new Calls((error) => {
      if (error instanceof WinError && error.ntstatus === STATUS_PORT_DISCONNECTED) this.#end(error);
    });
    this.maxMessageBytes = Math.max(0, connection.maxMessageLength - PORT_MESSAGE_BYTES);
    this.serverConnectionInfo = connection.serverConnectionInfo;
    this.view = this.#viewOf(0, connection.viewBytes);
    this.serverView = this.#viewOf(1, connection.serverViewBytes);
  }

  /** NtConnectPort on a Windows thread-pool thread; resolves once the server accepted. */
  static async connect(name: string, options?: LpcConnectOptions): Promise<LpcPort> {
    checkPortName(name);
    const raw = checkOptionsObject(options);
    const connectionInfo = checkOptionalBytes(raw.connectionInfo, 'options.connectionInfo', MAX_LPC_CONNECTION_INFO_BYTES);
    const qos = checkOptionsObject(raw.securityQos, 'options.securityQos');
    const level = qos.impersonationLevel ?? 'impersonation';
    const levelIndex = IMPERSONATION_LEVELS.indexOf(level as LpcImpersonationLevel);
    if (levelIndex < 0) {
      throw invalidArgValue('options.securityQos.impersonationLevel', `must be one of ${IMPERSONATION_LEVELS.join(', ')}`);
    }
    const dynamicTracking = checkOptionalBoolean(qos.dynamicTracking, 'options.securityQos.dynamicTracking') ?? true;
    const effectiveOnly = checkOptionalBoolean(qos.effectiveOnly, 'options.securityQos.effectiveOnly') ?? false;
    if (raw.serverSid !== undefined && typeof raw.serverSid !== 'string') {
      throw invalidArgType('options.serverSid', 'a string', raw.serverSid);
    }
    const viewBytes = checkViewOption(raw.view, 'options.view');
    const signal = checkOptionalSignal(raw.signal);
    if (signal?.aborted) throw abortErrorFor(signal);

    const native = loadNative();
    let started: ReturnType<typeof native.lpcConnect>;
    try {
      started = native.lpcConnect(name, connectionInfo ?? null, levelIndex, dynamicTracking, effectiveOnly, viewBytes, (raw.serverSid as string | undefined) ?? null);
    } catch (error) {
      throw fromNative(error);
    }
    const connecting = started.then(
      (connection) => new LpcPort(name, connection),
      (error: unknown) => Promise.reject(fromNative(error)),
    );
    if (signal === undefined) return connecting;
    return settleOnce(connecting, signal, (port) => void port.close());
  }

  /** Throws FltportError ERR_FLTPORT_MISSING_ENTRY_POINT naming the first client call this ntdll lacks. */
  static checkAvailable(): void {
    const error = loadNative().lpcMissingEntryPoint('client');
    if (error !== null) throw fromNative(error);
  }

  /** True after close() or once the server disconnected. */
  get closed(): boolean {
    return this.#calls.endError !== undefined;
  }

  /** NtRequestWaitReplyPort: sends `payload` and resolves with the data of the server's reply. */
  async request(payload?: Uint8Array, options?: LpcRequestOptions): Promise<Buffer> {
    const message = this.#message(payload);
    const signal = checkOptionalSignal(checkOptionsObject(options).signal);
    const reply = await this.#calls.run(() => this.#native.request(message), signal);
    return decodePortMessage(reply).data;
  }

  /** NtRequestPort: a datagram; resolves once it is queued at the server. */
  async post(payload?: Uint8Array): Promise<void> {
    const message = this.#message(payload);
    await this.#calls.run(() => this.#native.post(message), undefined);
  }

  /**
   * Every pending call rejects once with ERR_FLTPORT_CLOSED, as does every later one; the handle
   * closes once the calls inside the kernel have returned.
   */
  close(): Promise<void> {
    this.#end(new FltportError('ERR_FLTPORT_CLOSED', `the LPC port ${this.name} is closed`));
    return Promise.resolve();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #end(error: Error): void {
    if (this.#calls.end(error)) this.#native.close();
  }

  #message(payload: unknown): Buffer {
    const data = checkPayload(payload, 'payload', this.maxMessageBytes);
    return encodePortMessage({ data }, this.maxMessageBytes + PORT_MESSAGE_BYTES);
  }

  #viewOf(which: 0 | 1, bytes: number): LpcView | null {
    if (bytes === 0) return null;
    return new LpcView(
      bytes,
      (offset, length) => {
        this.#calls.throwIfEnded();
        return this.#native.readView(which, offset, length);
      },
      (offset, data) => {
        this.#calls.throwIfEnded();
        this.#native.writeView(which, offset, data);
      },
    );
  }
}

/** One client's connection to an LpcServerPort, from an accepted connect event. */
export class LpcServerConnection {
  /** fltport's id for the connection (the communication port's PortContext). */
  readonly id: number;
  readonly clientId: ClientId;
  /** The server's own view for this client, when accept() asked for one. */
  readonly view: LpcView | null;
  /** The client's view as mapped into this process, when the client connected with one. */
  readonly clientView: LpcView | null;
  readonly #native: NativeLpcServer;
  #closed = false;

  /** @internal */
  constructor(native: NativeLpcServer, id: number, clientId: ClientId, viewBytes: number, clientViewBytes: number) {
    this.#native = native;
    this.id = id;
    this.clientId = clientId;
    this.view = this.#viewOf(0, viewBytes);
    this.clientView = this.#viewOf(1, clientViewBytes);
  }

  /** After close(), once the client closed its port, or once the server closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Closes this side: the client's pending and later calls fail (STATUS_PORT_DISCONNECTED). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#native.closeConnection(this.id);
  }

  /** @internal The server closed: its handles are going, nothing to close here. */
  markClosed(): void {
    this.#closed = true;
  }

  #viewOf(which: 0 | 1, bytes: number): LpcView | null {
    if (bytes === 0) return null;
    const check = () => {
      if (this.#closed) throw new FltportError('ERR_FLTPORT_CLOSED', `LPC connection ${this.id} is closed`);
    };
    return new LpcView(
      bytes,
      (offset, length) => {
        check();
        return this.#native.readView(this.id, which, offset, length);
      },
      (offset, data) => {
        check();
        this.#native.writeView(this.id, which, offset, data);
      },
    );
  }
}

interface LpcEventBase {
  /** The message as the kernel delivered it. */
  message: PortMessage;
}

/** A client waits in NtConnectPort until accept() or refuse(); server.close() refuses the rest. */
export interface LpcConnectEvent extends LpcEventBase {
  type: 'connect';
  clientId: ClientId;
  connectionInfo: Buffer;
  /** Size of the view the client connected with (0 for none). */
  clientViewBytes: number;
  /** NtAcceptConnectPort + NtCompleteConnectPort; `info` goes back to the client as serverConnectionInfo. */
  accept(info?: Uint8Array, options?: LpcAcceptOptions): Promise<LpcServerConnection>;
  /** The client's connect fails with STATUS_PORT_CONNECTION_REFUSED. */
  refuse(info?: Uint8Array): Promise<void>;
}

/** A client waits in NtRequestWaitReplyPort until reply(). */
export interface LpcRequestEvent extends LpcEventBase {
  type: 'request';
  connection: LpcServerConnection | null;
  data: Buffer;
  /** NtReplyPort with `payload` (at most maxMessageBytes). */
  reply(payload?: Uint8Array): Promise<void>;
}

export interface LpcDatagramEvent extends LpcEventBase {
  type: 'datagram';
  connection: LpcServerConnection | null;
  data: Buffer;
}

/** The client closed its port (or its process ended); the connection is closed here too. */
export interface LpcPortClosedEvent extends LpcEventBase {
  type: 'port-closed';
  connection: LpcServerConnection | null;
}

/** LPC_CLIENT_DIED: a client thread registered with this port ended. */
export interface LpcClientDiedEvent extends LpcEventBase {
  type: 'client-died';
  connection: LpcServerConnection | null;
  clientId: ClientId;
  /** The thread's creation time (FILETIME), 0n when the message carries none. */
  createTime: bigint;
}

/** Any other message type (lost replies, exception and debug events). */
export interface LpcOtherEvent extends LpcEventBase {
  type: 'other';
  connection: LpcServerConnection | null;
}

export type LpcEvent = LpcConnectEvent | LpcRequestEvent | LpcDatagramEvent | LpcPortClosedEvent | LpcClientDiedEvent | LpcOtherEvent;

/**
 * A named LPC port of this process (NtCreatePort). A dedicated thread waits for messages; they
 * come out of events(). While open and referenced, it keeps the event loop alive.
 */
export class LpcServerPort {
  readonly name: string;
  readonly maxMessageBytes: number;
  readonly maxConnectionInfoBytes: number;
  readonly #native: NativeLpcServer;
  readonly #calls: Calls;
  readonly #queue: LpcEvent[] = [];
  readonly #wakers = new Set<() => void>();
  readonly #connections = new Map<number, LpcServerConnection>();
  #closing: Promise<void> | undefined;

  private constructor(name: string, native: NativeLpcServer, maxMessageBytes: number, maxConnectionInfoBytes: number) {
    this.name = name;
    this.#native = native;
    this.maxMessageBytes = maxMessageBytes;
    this.maxConnectionInfoBytes = maxConnectionInfoBytes;
    this.#calls = new Calls(() => undefined);
    native.start(
      (connectionId, bytes) => this.#received(connectionId, bytes),
      (error) => {
        if (error !== null) this.#end(fromNative(error) as Error);
      },
    );
  }

  /** NtCreatePort on a Windows thread-pool thread, then starts receiving. */
  static async create(name: string, options?: LpcServerOptions): Promise<LpcServerPort> {
    checkPortName(name);
    const raw = checkOptionsObject(options);
    const maxInfo =
      checkOptionalInteger(raw.maxConnectionInfoBytes, 'options.maxConnectionInfoBytes', 0, MAX_LPC_CONNECTION_INFO_BYTES) ??
      MAX_LPC_CONNECTION_INFO_BYTES;
    const maxMessage = checkOptionalInteger(raw.maxMessageBytes, 'options.maxMessageBytes', 0, MAX_LPC_MESSAGE_BYTES) ?? MAX_LPC_MESSAGE_BYTES;
    let native: NativeLpcServer;
    try {
      native = await loadNative().lpcCreateServer(name, maxInfo, maxMessage + PORT_MESSAGE_BYTES);
    } catch (error) {
      throw fromNative(error);
    }
    try {
      return new LpcServerPort(name, native, maxMessage, maxInfo);
    } catch (error) {
      await native.close();
      throw fromNative(error);
    }
  }

  /** Throws FltportError ERR_FLTPORT_MISSING_ENTRY_POINT naming the first server call this ntdll lacks. */
  static checkAvailable(): void {
    const error = loadNative().lpcMissingEntryPoint('server');
    if (error !== null) throw fromNative(error);
  }

  get closed(): boolean {
    return this.#calls.endError !== undefined;
  }

  /**
   * Events as they come, shared between iterators. Ends when the server closes; throws an
   * AbortError when the signal aborts and the WinError when receiving fails.
   */
  async *events(options?: { signal?: AbortSignal }): AsyncGenerator<LpcEvent, void, undefined> {
    const signal = checkOptionalSignal(checkOptionsObject(options).signal);
    for (;;) {
      if (signal?.aborted) throw abortErrorFor(signal);
      const next = this.#queue.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      const ended = this.#calls.endError;
      if (ended !== undefined) {
        if (ended instanceof FltportError && ended.code === 'ERR_FLTPORT_CLOSED') return;
        throw ended;
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          this.#wakers.delete(wake);
          signal?.removeEventListener('abort', wake);
          resolve();
        };
        this.#wakers.add(wake);
        signal?.addEventListener('abort', wake, { once: true });
      });
    }
  }

  ref(): this {
    this.#native.ref();
    return this;
  }

  unref(): this {
    this.#native.unref();
    return this;
  }

  /**
   * Refuses the connection requests still unanswered, closes every connection and the port.
   * Pending calls reject once with ERR_FLTPORT_CLOSED, as does every later one; resolves once the
   * receiving thread has ended (within a quarter of a second).
   */
  close(): Promise<void> {
    this.#end(new FltportError('ERR_FLTPORT_CLOSED', `the LPC server port ${this.name} is closed`));
    return this.#closing as Promise<void>;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #end(error: Error): void {
    if (!this.#calls.end(error)) return;
    this.#queue.length = 0;
    for (const connection of this.#connections.values()) connection.markClosed();
    this.#connections.clear();
    this.#closing = this.#native.close();
    for (const wake of [...this.#wakers]) wake();
  }

  #received(connectionId: number, bytes: Buffer): void {
    if (this.#calls.endError !== undefined) return;
    let message: PortMessage;
    try {
      message = decodePortMessage(bytes);
    } catch {
      return;  // the kernel never sends a message whose lengths do not fit; nothing to answer
    }
    const connection = connectionId === 0 ? null : this.#connections.get(connectionId);
    // A connection closed on this side: its client was disconnected and waits for nothing.
    if (connection === undefined) return;
    const event = this.#event(message, connection);
    if (event === undefined) return;
    this.#queue.push(event);
    for (const wake of [...this.#wakers]) wake();
  }

  #event(message: PortMessage, connection: LpcServerConnection | null): LpcEvent | undefined {
    switch (message.type) {
      case LpcMessageType.CONNECTION_REQUEST:
        return this.#connectEvent(message);
      case LpcMessageType.REQUEST:
        return { type: 'request', connection, message, data: message.data, reply: this.#replier(message, connection) };
      case LpcMessageType.DATAGRAM:
        return { type: 'datagram', connection, message, data: message.data };
      case LpcMessageType.PORT_CLOSED:
        if (connection !== null) {
          this.#connections.delete(connection.id);
          connection.close();
        }
        return { type: 'port-closed', connection, message };
      case LpcMessageType.CLIENT_DIED:
        return {
          type: 'client-died',
          connection,
          message,
          clientId: message.clientId,
          createTime: message.data.length >= 8 ? message.data.readBigInt64LE(0) : 0n,
        };
      default:
        return { type: 'other', connection, message };
    }
  }

  #connectEvent(request: PortMessage): LpcConnectEvent {
    let answered = false;
    const answer = (info: unknown): Buffer => {
      const data = checkOptionalBytes(info, 'info', this.maxConnectionInfoBytes);
      if (answered) throw new FltportError('ERR_FLTPORT_ALREADY_REPLIED', `connection request ${request.messageId} was already answered`);
      answered = true;
      // The request's own header identifies the client (ClientId, MessageId) to the kernel.
      return encodePortMessage(
        {
          type: request.type,
          clientId: request.clientId,
          messageId: request.messageId,
          clientViewSize: request.clientViewSize,
          data: data ?? new Uint8Array(0),
        },
        PORT_MESSAGE_BYTES + MAX_LPC_CONNECTION_INFO_BYTES,
      );
    };
    return {
      type: 'connect',
      message: request,
      clientId: request.clientId,
      connectionInfo: request.data,
      clientViewBytes: Number(request.clientViewSize),
      accept: async (info?: Uint8Array, options?: LpcAcceptOptions) => {
        const viewBytes = checkViewOption(checkOptionsObject(options).view, 'options.view');
        const message = answer(info);
        const accepted = await this.#calls.run(() => this.#native.accept(message, viewBytes), undefined);
        const connection = new LpcServerConnection(this.#native, accepted.connectionId, request.clientId, accepted.viewBytes, accepted.clientViewBytes);
        // Registered before NtCompleteConnectPort lets the client talk, so that its first
        // message finds it.
        this.#connections.set(connection.id, connection);
        try {
          await this.#calls.run(() => this.#native.complete(connection.id), undefined);
        } catch (error) {
          this.#connections.delete(connection.id);
          connection.close();
          throw error;
        }
        return connection;
      },
      refuse: async (info?: Uint8Array) => {
        const message = answer(info);
        await this.#calls.run(() => this.#native.refuse(message), undefined);
      },
    };
  }

  #replier(request: PortMessage, connection: LpcServerConnection | null): (payload?: Uint8Array) => Promise<void> {
    let replied = false;
    return async (payload?: Uint8Array) => {
      const data = checkPayload(payload, 'payload', this.maxMessageBytes);
      if (connection === null) throw new FltportError('ERR_FLTPORT_CLOSED', 'the request came through no connection');
      if (replied) throw new FltportError('ERR_FLTPORT_ALREADY_REPLIED', `request ${request.messageId} was already replied to`);
      if (connection.closed) throw new FltportError('ERR_FLTPORT_CLOSED', `LPC connection ${connection.id} is closed`);
      replied = true;
      const message = encodePortMessage(
        {
          type: LpcMessageType.REPLY,
          clientId: request.clientId,
          messageId: request.messageId,
          callbackId: request.callbackId,
          data,
        },
        this.maxMessageBytes + PORT_MESSAGE_BYTES,
      );
      await this.#calls.run(() => this.#native.reply(connection.id, message), undefined);
    };
  }
}

/**
 * The calls in flight on one port: each settles exactly once, with its outcome or earlier with
 * an AbortError or with the port's end, which every later call rejects with too.
 */
class Calls {
  endError: Error | undefined;
  readonly #pending = new Set<(error: unknown) => void>();
  readonly #onFailure: (error: unknown) => void;

  constructor(onFailure: (error: unknown) => void) {
    this.#onFailure = onFailure;
  }

  throwIfEnded(): void {
    if (this.endError !== undefined) throw this.endError;
  }

  run<T>(start: () => Promise<T>, signal: AbortSignal | undefined): Promise<T> {
    if (this.endError !== undefined) return Promise.reject(this.endError);
    if (signal?.aborted) return Promise.reject(abortErrorFor(signal));
    let work: Promise<T>;
    try {
      work = start();
    } catch (error) {
      return Promise.reject(fromNative(error));
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false;
      const finish = () => {
        settled = true;
        this.#pending.delete(fail);
        signal?.removeEventListener('abort', onAbort);
      };
      const fail = (error: unknown) => {
        if (settled) return;
        finish();
        reject(error);
      };
      const onAbort = () => fail(abortErrorFor(signal as AbortSignal));
      this.#pending.add(fail);
      signal?.addEventListener('abort', onAbort, { once: true });
      work.then(
        (value) => {
          if (settled) return;
          finish();
          resolve(value);
        },
        (nativeError: unknown) => {
          const error = fromNative(nativeError);
          this.#onFailure(error);
          fail(error);
        },
      );
    });
  }

  /** Ends the port once: every pending call rejects with `error`. False if already ended. */
  end(error: Error): boolean {
    if (this.endError !== undefined) return false;
    this.endError = error;
    for (const fail of [...this.#pending]) fail(error);
    return true;
  }
}

/** At most `maxBytes`: the port's message limit. */
function checkPayload(payload: unknown, name: string, maxBytes: number): Uint8Array {
  return payload === undefined ? new Uint8Array(0) : checkBytes(payload, name, maxBytes);
}

function checkViewOption(value: unknown, name: string): number {
  if (value === undefined) return 0;
  const view = checkOptionsObject(value, name);
  const bytes = checkOptionalInteger(view.bytes, `${name}.bytes`, 1, MAX_LPC_VIEW_BYTES);
  if (bytes === undefined) throw invalidArgType(`${name}.bytes`, 'a number', view.bytes);
  return bytes;
}

function checkOffset(offset: unknown, bytes: number): number {
  return checkOptionalInteger(offset, 'offset', 0, bytes) ?? 0;
}

/** Native view calls throw plain errors carrying codes; callers get fltport's error types. */
function callNative<T>(call: () => T): T {
  try {
    return call();
  } catch (error) {
    throw fromNative(error);
  }
}
