// Payload structs: a C struct shared with a driver is defined once with koffi and encoded or
// decoded here, never packed by hand. koffi is loaded only when a type is actually used.
import { invalidArgType, outOfRange } from './errors';
import { MAX_PAYLOAD_BYTES, checkBytes } from './validate';

type Koffi = typeof import('koffi');
/** A koffi type: what koffi.struct() (or koffi.array(), or a type name) gives. */
export type StructType = Parameters<Koffi['sizeof']>[0];
let koffi: Koffi | undefined;

function loadKoffi(): Koffi {
  koffi ??= require('koffi') as Koffi;
  return koffi;
}

/** Checks that `type` is a koffi type and returns its size in bytes. */
export function structSize(type: unknown, name: string): number {
  if ((typeof type !== 'object' && typeof type !== 'string') || type === null) throw invalidArgType(name, 'a koffi type', type);
  try {
    return loadKoffi().sizeof(type as StructType);
  } catch {
    throw invalidArgType(name, 'a koffi type', type);
  }
}

/** Checks an optional koffi type option; returns it. */
export function checkOptionalType(type: unknown, name: string): StructType | undefined {
  if (type === undefined) return undefined;
  structSize(type, name);
  return type as StructType;
}

/**
 * The one rule for every payload fltport sends (send data, replies, serve() results): a Uint8Array
 * is sent as it is, whether or not a type is given; anything else is encoded with the type.
 */
export function toPayload(value: unknown, type: StructType | undefined, name: string): Uint8Array {
  if (value instanceof Uint8Array) return checkBytes(value, name, MAX_PAYLOAD_BYTES);
  if (type === undefined) throw invalidArgType(name, 'a Uint8Array (or an object, with a koffi type)', value);
  return encodeStruct(type, value, name);
}

/** `value` encoded with `type`; a value koffi cannot encode is a TypeError naming the field (`name.path.to.field`). */
export function encodeStruct(type: StructType, value: unknown, name: string): Buffer {
  const buffer = Buffer.alloc(structSize(type, name));
  const failure = encodeFailure(type, value, buffer);
  if (failure === undefined) return buffer;
  const field = name + badFieldPath(type, value);
  const typeName = loadKoffi().introspect(type).name;
  const error = new TypeError(`${field} cannot be encoded as koffi type ${typeName}: ${failure.message}`, { cause: failure });
  throw Object.assign(error, { code: 'ERR_INVALID_ARG_TYPE' });
}

export function decodeStruct<T = unknown>(type: StructType, data: Uint8Array, name: string): T {
  const size = structSize(type, name);
  if (data.byteLength < size) throw outOfRange(`the ${size}-byte ${name}`, `covered by the data`, data.byteLength);
  return loadKoffi().decode(data, type) as T;
}

function encodeFailure(type: StructType, value: unknown, buffer: Buffer): Error | undefined {
  try {
    loadKoffi().encode(buffer, type, value);
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  }
}

/** Where in `value` koffi's encoding fails (koffi's own message does not say): '.field', '[index]', ... or '' for the value itself. */
function badFieldPath(type: StructType, value: unknown): string {
  const k = loadKoffi();
  const info = k.introspect(type) as { primitive: string; members?: Record<string, { type: StructType }>; ref?: StructType };
  const fails = (memberType: StructType, member: unknown) => encodeFailure(memberType, member, Buffer.alloc(k.sizeof(memberType))) !== undefined;
  if (info.members !== undefined && typeof value === 'object' && value !== null) {
    for (const [key, member] of Object.entries(info.members)) {
      const memberValue = (value as Record<string, unknown>)[key];
      // koffi leaves a missing member zero-filled.
      if (memberValue !== undefined && fails(member.type, memberValue)) return `.${key}${badFieldPath(member.type, memberValue)}`;
    }
  } else if (info.primitive === 'Array' && info.ref !== undefined && Array.isArray(value)) {
    const elementType = info.ref;
    const index = value.findIndex((element) => fails(elementType, element));
    if (index >= 0) return `[${index}]${badFieldPath(elementType, value[index])}`;
  }
  return '';
}
