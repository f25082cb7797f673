export { FilterPort, HANDLER_FAILED_STATUS } from './filter-port';
export type {
  FailureReply,
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
export { LpcPort, LpcServerPort, LpcServerConnection, LpcView, MAX_LPC_VIEW_BYTES } from './lpc-port';
export type {
  LpcAcceptOptions,
  LpcClientDiedEvent,
  LpcConnectEvent,
  LpcConnectOptions,
  LpcDatagramEvent,
  LpcEvent,
  LpcImpersonationLevel,
  LpcOtherEvent,
  LpcPortClosedEvent,
  LpcRequestEvent,
  LpcRequestOptions,
  LpcSecurityQos,
  LpcServerOptions,
} from './lpc-port';
export {
  LpcMessageFlags,
  LpcMessageType,
  MAX_LPC_CONNECTION_INFO_BYTES,
  MAX_LPC_MESSAGE_BYTES,
  PORT_MAXIMUM_MESSAGE_LENGTH,
  PORT_MESSAGE_BYTES,
  decodePortMessage,
  encodePortMessage,
} from './port-message';
export type { ClientId, PortMessage, PortMessageInit } from './port-message';
export {
  attach,
  detach,
  dosName,
  getFilterInfo,
  listFilters,
  listInstances,
  listVolumeInstances,
  listVolumes,
  loadFilter,
  toDosPath,
  unloadFilter,
  MAX_FILTER_NAME_UNITS,
  MAX_INSTANCE_NAME_UNITS,
  MAX_VOLUME_NAME_UNITS,
} from './filter-manager';
export type { AttachOptions, VolumeWithDosName } from './filter-manager';
export { fileSystemName, parseFilterInformation, parseInstanceInformation, parseVolumeInformation } from './filter-information';
export type {
  FilterInfo,
  FilterInformationClass,
  FilterKind,
  InstanceInfo,
  InstanceInformationClass,
  VolumeInfo,
  VolumeInformationClass,
} from './filter-information';
