// FilterPort: a connection to a minifilter's communication port (fltlib.dll).
import { loadNative } from '../binding/loader';
import type { NativeFilterPort } from '../binding/native';
import { FltportError, abortErrorFor, fromNative } from './errors';
import {
  MAX_CONTEXT_BYTES,
  checkOptionalBoolean,
  checkOptionalBytes,
  checkOptionalSignal,
  checkOptionsObject,
  checkPortName,
} from './validate';

export interface FilterConnectOptions {
  /** Connection context handed to the minifilter's ConnectNotify (at most 0xFFE8 bytes). */
  context?: Uint8Array;
  /** FLT_PORT_FLAG_SYNC_HANDLE: ask for a handle without overlapped I/O (Windows 8.1+). */
  syncHandle?: boolean;
  /** Let child processes inherit the port handle. */
  inheritHandle?: boolean;
  /** Aborting rejects at once; a connection that completes later is closed again. */
  signal?: AbortSignal;
}

export class FilterPort {
  readonly name: string;
  #native: NativeFilterPort | undefined;

  private constructor(name: string, native: NativeFilterPort) {
    this.name = name;
    this.#native = native;
  }

  /** FilterConnectCommunicationPort, run off the JS thread. */
  static async connect(name: string, options?: FilterConnectOptions): Promise<FilterPort> {
    checkPortName(name);
    const raw = checkOptionsObject(options);
    const context = checkOptionalBytes(raw.context, 'options.context', MAX_CONTEXT_BYTES);
    const syncHandle = checkOptionalBoolean(raw.syncHandle, 'options.syncHandle') ?? false;
    const inheritHandle = checkOptionalBoolean(raw.inheritHandle, 'options.inheritHandle') ?? false;
    const signal = checkOptionalSignal(raw.signal);
    if (signal?.aborted) throw abortErrorFor(signal);

    const connecting = loadNative()
      .filterConnect(name, context ?? null, syncHandle, inheritHandle)
      .then((native) => new FilterPort(name, native), (error: unknown) => Promise.reject(fromNative(error)));
    if (signal === undefined) return connecting;
    return raceAbort(connecting, signal, (port) => void port.close());
  }

  get closed(): boolean {
    return this.#native === undefined;
  }

  /** Closes the handle; calling it again does nothing. */
  async close(): Promise<void> {
    const native = this.#native;
    this.#native = undefined;
    native?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** @internal The native handle, or ERR_FLTPORT_CLOSED. */
  protected requireOpen(): NativeFilterPort {
    if (this.#native === undefined) throw new FltportError('ERR_FLTPORT_CLOSED', `the port ${this.name} is closed`);
    return this.#native;
  }
}

/**
 * Settles with `work` unless `signal` aborts first; then rejects with an AbortError and hands
 * whatever `work` produces later to `discard`, so nothing it opened is leaked.
 */
function raceAbort<T>(work: Promise<T>, signal: AbortSignal, discard: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      reject(abortErrorFor(signal));
      work.then(discard, () => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) return;
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
