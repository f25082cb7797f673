export { FilterPort } from './filter-port';
export type { FilterConnectOptions } from './filter-port';
export { WinError, FltportError, AbortError } from './errors';
export type { FltportErrorCode, WinErrorInit } from './errors';
export { hresultFromWin32, hresultName, ntstatusName } from './error-codes';
export { runtimeInfo } from './runtime';
export type { RuntimeInfo } from './runtime';
export { MAX_CONTEXT_BYTES, MAX_PORT_NAME_UNITS } from './validate';
