// PORT_MESSAGE, the header of every LPC message, in its 64-bit layout (phnt ntlpcapi.h):
//   DataLength u16 @0, TotalLength u16 @2, Type u16 @4, DataInfoOffset u16 @6,
//   ClientId { UniqueProcess, UniqueThread } (two pointers) @8, MessageId u32 @24, 4 bytes of
//   padding, then @32 a SIZE_T that is ClientViewSize in a connection request and CallbackId
//   (its low 32 bits) in a request. 40 bytes; the data follows at once.
// Pure TypeScript: LPC messages are built and read here, the addon only moves the bytes.
import { invalidArgType, outOfRange } from './errors';

/** sizeof(PORT_MESSAGE) on 64-bit Windows. */
export const PORT_MESSAGE_BYTES = 40;
/** PORT_MAXIMUM_MESSAGE_LENGTH on 64-bit Windows: the largest message, header included. */
export const PORT_MAXIMUM_MESSAGE_LENGTH = 512;
/** The largest payload one LPC message carries: 512 - 40 = 472 bytes. */
export const MAX_LPC_MESSAGE_BYTES = PORT_MAXIMUM_MESSAGE_LENGTH - PORT_MESSAGE_BYTES;
/** LPC_MAX_CONNECTION_INFO_SIZE: 16 * sizeof(ULONG_PTR). */
export const MAX_LPC_CONNECTION_INFO_BYTES = 128;

/** PORT_MESSAGE.Type values (the low byte of the field). */
export const LpcMessageType = Object.freeze({
  REQUEST: 1,
  REPLY: 2,
  DATAGRAM: 3,
  LOST_REPLY: 4,
  PORT_CLOSED: 5,
  CLIENT_DIED: 6,
  EXCEPTION: 7,
  DEBUG_EVENT: 8,
  ERROR_EVENT: 9,
  CONNECTION_REQUEST: 10,
} as const);

/** Flag bits in the high byte of PORT_MESSAGE.Type. */
export const LpcMessageFlags = Object.freeze({
  CONTINUATION_REQUIRED: 0x2000,
  NO_IMPERSONATE: 0x4000,
  KERNELMODE_MESSAGE: 0x8000,
} as const);

const TYPE_MASK = 0x00ff;
const FLAGS_MASK = 0xff00;

/** CLIENT_ID: the sending thread and its process. Windows ids fit in 32 bits. */
export interface ClientId {
  processId: number;
  threadId: number;
}

export interface PortMessage {
  /** Bytes of data after the header (PORT_MESSAGE.DataLength). */
  dataLength: number;
  /** Header plus data (PORT_MESSAGE.TotalLength). */
  totalLength: number;
  /** One of LpcMessageType (the low byte of PORT_MESSAGE.Type). */
  type: number;
  /** LpcMessageFlags bits (the high byte of PORT_MESSAGE.Type). */
  flags: number;
  dataInfoOffset: number;
  clientId: ClientId;
  messageId: number;
  /** The SIZE_T at offset 32: the client's view size in a connection request. */
  clientViewSize: bigint;
  /** The low 32 bits of the same field: CallbackId in a request. */
  callbackId: number;
  /** The data: a view into the decoded bytes, not a copy. */
  data: Buffer;
}

export interface PortMessageInit {
  /** 0 (the default) lets the kernel set the type, as requests and datagrams need. */
  type?: number;
  flags?: number;
  dataInfoOffset?: number;
  clientId?: ClientId;
  messageId?: number;
  /** Written to the SIZE_T at offset 32; give this or callbackId. */
  clientViewSize?: bigint;
  callbackId?: number;
  data?: Uint8Array;
}

/**
 * A whole message, header and data. Throws a RangeError, before anything reaches the kernel,
 * when the data would make the message longer than `maxMessageLength` (header included).
 */
export function encodePortMessage(init: PortMessageInit, maxMessageLength: number = PORT_MAXIMUM_MESSAGE_LENGTH): Buffer {
  if (typeof init !== 'object' || init === null) throw invalidArgType('message', 'an object', init);
  const data = init.data ?? new Uint8Array(0);
  if (!(data instanceof Uint8Array)) throw invalidArgType('message.data', 'a Uint8Array', data);
  const maxData = maxMessageLength - PORT_MESSAGE_BYTES;
  if (data.byteLength > maxData) throw outOfRange('message.data.byteLength', `at most ${maxData}`, data.byteLength);
  const type = integer(init.type ?? 0, 'message.type', 0, TYPE_MASK);
  const flags = integer(init.flags ?? 0, 'message.flags', 0, FLAGS_MASK);
  if ((flags & ~FLAGS_MASK) !== 0) throw outOfRange('message.flags', 'bits of 0xFF00 only', flags);
  const clientId = init.clientId ?? { processId: 0, threadId: 0 };
  if (typeof clientId !== 'object' || clientId === null) throw invalidArgType('message.clientId', 'an object', clientId);
  if (init.clientViewSize !== undefined && init.callbackId !== undefined) {
    throw invalidArgType('message.callbackId', 'undefined when message.clientViewSize is given (they share a field)', init.callbackId);
  }
  const slot = init.clientViewSize ?? BigInt(integer(init.callbackId ?? 0, 'message.callbackId', 0, 0xffffffff));
  if (typeof slot !== 'bigint' || slot < 0n || slot > 0xffffffffffffffffn) {
    throw outOfRange('message.clientViewSize', 'a bigint from 0 to 2^64-1', slot);
  }

  const bytes = Buffer.alloc(PORT_MESSAGE_BYTES + data.byteLength);
  bytes.writeUInt16LE(data.byteLength, 0);
  bytes.writeUInt16LE(bytes.length, 2);
  bytes.writeUInt16LE(type | flags, 4);
  bytes.writeUInt16LE(integer(init.dataInfoOffset ?? 0, 'message.dataInfoOffset', 0, 0xffff), 6);
  bytes.writeBigUInt64LE(BigInt(integer(clientId.processId, 'message.clientId.processId', 0, Number.MAX_SAFE_INTEGER)), 8);
  bytes.writeBigUInt64LE(BigInt(integer(clientId.threadId, 'message.clientId.threadId', 0, Number.MAX_SAFE_INTEGER)), 16);
  bytes.writeUInt32LE(integer(init.messageId ?? 0, 'message.messageId', 0, 0xffffffff), 24);
  bytes.writeBigUInt64LE(slot, 32);
  bytes.set(data, PORT_MESSAGE_BYTES);
  return bytes;
}

/**
 * Reads a message the kernel delivered. Throws a RangeError when the bytes are shorter than the
 * header, shorter than TotalLength, or when DataLength does not fit in TotalLength.
 */
export function decodePortMessage(bytes: Uint8Array): PortMessage {
  if (!(bytes instanceof Uint8Array)) throw invalidArgType('bytes', 'a Uint8Array', bytes);
  if (bytes.byteLength < PORT_MESSAGE_BYTES) {
    throw outOfRange('bytes.byteLength', `at least ${PORT_MESSAGE_BYTES} (the PORT_MESSAGE header)`, bytes.byteLength);
  }
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dataLength = view.readUInt16LE(0);
  const totalLength = view.readUInt16LE(2);
  if (totalLength > view.length) throw outOfRange('PORT_MESSAGE.TotalLength', `at most the ${view.length} bytes given`, totalLength);
  if (PORT_MESSAGE_BYTES + dataLength > totalLength) {
    throw outOfRange('PORT_MESSAGE.DataLength', `at most TotalLength - ${PORT_MESSAGE_BYTES} (${totalLength - PORT_MESSAGE_BYTES})`, dataLength);
  }
  const rawType = view.readUInt16LE(4);
  const slot = view.readBigUInt64LE(32);
  return {
    dataLength,
    totalLength,
    type: rawType & TYPE_MASK,
    flags: rawType & FLAGS_MASK,
    dataInfoOffset: view.readUInt16LE(6),
    clientId: { processId: Number(view.readBigUInt64LE(8)), threadId: Number(view.readBigUInt64LE(16)) },
    messageId: view.readUInt32LE(24),
    clientViewSize: slot,
    callbackId: Number(slot & 0xffffffffn),
    data: view.subarray(PORT_MESSAGE_BYTES, PORT_MESSAGE_BYTES + dataLength),
  };
}

function integer(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number') throw invalidArgType(name, 'a number', value);
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer from ${min} to ${max}`, value);
  return value;
}
