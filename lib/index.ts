export { FilterPort, HANDLER_FAILED_STATUS } from './filter-port';
export type {
  FilterConnectOptions,
  MessageHandler,
  MessagesOptions,
  ReceiveOptions,
  SendOptions,
  ServeOptions,
  ServeStats,
} from './filter-port';
export { FilterMessage } from './filter-message';
export type { ReplyOptions } from './filter-message';
export type { StructType } from './structs';
export { WinError, FltportError, AbortError } from './errors';
export type { FltportErrorCode, WinErrorInit } from './errors';
export { hresultFromWin32, hresultName, ntstatusName } from './error-codes';
export { runtimeInfo } from './runtime';
export type { RuntimeInfo } from './runtime';
export { MAX_CONTEXT_BYTES, MAX_PAYLOAD_BYTES, MAX_PORT_NAME_UNITS } from './validate';
