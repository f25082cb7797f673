// The errors fltport throws: WinError for a failed Windows call, FltportError for fltport's own
// conditions (closed port, unsupported platform, ...), AbortError for an aborted signal.
import { hex32, hresultName, ntstatusName } from './error-codes';

export type FltportErrorCode =
  | 'ERR_FLTPORT_UNSUPPORTED_PLATFORM'
  | 'ERR_FLTPORT_NATIVE_LOAD'
  | 'ERR_FLTPORT_CLOSED'
  | 'ERR_FLTPORT_MISSING_ENTRY_POINT'
  | 'ERR_FLTPORT_SYNC_HANDLE'
  | 'ERR_FLTPORT_REPLY_NOT_EXPECTED'
  | 'ERR_FLTPORT_ALREADY_REPLIED'
  | 'ERR_FLTPORT_NO_TYPE'
  | 'ERR_FLTPORT_FAILURE_REPLY'
  | 'ERR_FLTPORT_INVALID_INFORMATION';

export class FltportError extends Error {
  readonly code: FltportErrorCode;
  readonly syscall?: string;

  constructor(code: FltportErrorCode, message: string, options?: { cause?: unknown; syscall?: string }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FltportError';
    this.code = code;
    if (options?.syscall !== undefined) this.syscall = options.syscall;
  }
}

export interface WinErrorInit {
  syscall: string;
  hresult?: number;
  ntstatus?: number;
  systemMessage?: string;
}

/**
 * A Windows call failed. `code` is the symbolic name (ERROR_FILE_NOT_FOUND, E_NOTIMPL,
 * STATUS_PORT_DISCONNECTED, ...); the number is in `hresult` (fltlib calls) or `ntstatus`
 * (ntdll calls), unsigned 32-bit.
 */
export class WinError extends Error {
  readonly code: string;
  readonly syscall: string;
  readonly hresult?: number;
  readonly ntstatus?: number;
  readonly systemMessage?: string;

  constructor(init: WinErrorInit) {
    const isStatus = init.hresult === undefined;
    const number = ((isStatus ? init.ntstatus : init.hresult) ?? 0) >>> 0;
    const code = isStatus ? ntstatusName(number) : hresultName(number);
    const text = init.systemMessage ? `: ${init.systemMessage}` : '';
    super(`${init.syscall} failed with ${code} (${hex32(number)})${text}`);
    this.name = 'WinError';
    this.code = code;
    this.syscall = init.syscall;
    if (isStatus) this.ntstatus = number;
    else this.hresult = number;
    if (init.systemMessage) this.systemMessage = init.systemMessage;
  }
}

/**
 * The port's end (a disconnect seen by one call) as another call reports it: the same failure,
 * with `syscall` naming the call that was asked for.
 */
export function failureOf(error: unknown, syscall: string): unknown {
  if (!(error instanceof WinError) || error.syscall === syscall) return error;
  const init: WinErrorInit = { syscall };
  if (error.hresult !== undefined) init.hresult = error.hresult;
  else if (error.ntstatus !== undefined) init.ntstatus = error.ntstatus;
  if (error.systemMessage !== undefined) init.systemMessage = error.systemMessage;
  return new WinError(init);
}

export class AbortError extends Error {
  readonly code = 'ABORT_ERR';

  constructor(message = 'The operation was aborted', options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AbortError';
  }
}

export function abortErrorFor(signal: AbortSignal): AbortError {
  return new AbortError('The operation was aborted', { cause: signal.reason });
}

/** Turns what the addon rejects or throws with into fltport's error types. */
export function fromNative(error: unknown): unknown {
  if (typeof error !== 'object' || error === null) return error;
  const raw = error as { code?: unknown; syscall?: unknown; hresult?: unknown; ntstatus?: unknown; systemMessage?: unknown; message?: unknown };
  const syscall = typeof raw.syscall === 'string' ? raw.syscall : undefined;
  if (syscall !== undefined && (typeof raw.hresult === 'number' || typeof raw.ntstatus === 'number')) {
    const init: WinErrorInit = { syscall };
    if (typeof raw.hresult === 'number') init.hresult = raw.hresult;
    else init.ntstatus = raw.ntstatus as number;
    if (typeof raw.systemMessage === 'string' && raw.systemMessage !== '') init.systemMessage = raw.systemMessage;
    return new WinError(init);
  }
  if (typeof raw.code === 'string' && raw.code.startsWith('ERR_FLTPORT_')) {
    const init: { syscall?: string } = {};
    if (syscall !== undefined) init.syscall = syscall;
    return new FltportError(raw.code as FltportErrorCode, String(raw.message), init);
  }
  return error;
}

/** Node's convention for argument errors: a TypeError or RangeError with a code. */
export function invalidArgType(name: string, expected: string, actual: unknown): TypeError {
  const error = new TypeError(`${name} must be ${expected}, received ${describe(actual)}`);
  return Object.assign(error, { code: 'ERR_INVALID_ARG_TYPE' });
}

export function invalidArgValue(name: string, reason: string): TypeError {
  return Object.assign(new TypeError(`${name} ${reason}`), { code: 'ERR_INVALID_ARG_VALUE' });
}

export function outOfRange(name: string, range: string, actual: unknown): RangeError {
  const error = new RangeError(`${name} must be ${range}, received ${describe(actual)}`);
  return Object.assign(error, { code: 'ERR_OUT_OF_RANGE' });
}

/** Node's code for a callback's result that is not what it must return. */
export function invalidReturnValue(message: string): TypeError {
  return Object.assign(new TypeError(message), { code: 'ERR_INVALID_RETURN_VALUE' });
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string') return `string of length ${value.length}`;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return `${typeof value} ${String(value)}`;
  if (ArrayBuffer.isView(value)) return `${value.constructor.name} of ${value.byteLength} bytes`;
  if (typeof value === 'function') return 'function';
  if (typeof value === 'object') return `an instance of ${value.constructor?.name ?? 'Object'}`;
  return typeof value;
}
