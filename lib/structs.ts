// Payload structs: a C struct shared with a driver is defined once with koffi and encoded or
// decoded here, never packed by hand. koffi is loaded only when a type is actually used.
import { invalidArgType, outOfRange } from './errors';

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

export function encodeStruct(type: StructType, value: unknown, name: string): Buffer {
  const buffer = Buffer.alloc(structSize(type, name));
  loadKoffi().encode(buffer, type, value);
  return buffer;
}

export function decodeStruct<T = unknown>(type: StructType, data: Uint8Array, name: string): T {
  const size = structSize(type, name);
  if (data.byteLength < size) throw outOfRange(`the ${size}-byte ${name}`, `covered by the data`, data.byteLength);
  return loadKoffi().decode(data, type) as T;
}
