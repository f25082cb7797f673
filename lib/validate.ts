// Argument checks shared by the API; each throws a TypeError or RangeError naming the argument.
import { invalidArgType, invalidArgValue, outOfRange } from './errors';

export const MAX_PORT_NAME_UNITS = 32767;
/**
 * The largest connection context fltlib can carry: the context travels in an extended
 * attribute whose USHORT value length also covers a 0x17-byte header.
 */
export const MAX_CONTEXT_BYTES = 0xffe8;

export function checkPortName(name: unknown): string {
  return checkName(name, 'name', MAX_PORT_NAME_UNITS);
}

/** A non-empty string of at most `maxUnits` UTF-16 units without NUL characters. */
export function checkName(value: unknown, name: string, maxUnits: number): string {
  if (typeof value !== 'string') throw invalidArgType(name, 'a string', value);
  if (value.length === 0) throw invalidArgValue(name, 'must not be empty');
  if (value.length > maxUnits) throw outOfRange(name, `at most ${maxUnits} UTF-16 units`, value);
  if (value.includes('\0')) throw invalidArgValue(name, 'must not contain NUL characters');
  return value;
}

export function checkOptionsObject(options: unknown, name = 'options'): Record<string, unknown> {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw invalidArgType(name, 'an object', options);
  }
  return options as Record<string, unknown>;
}

export function checkOptionalBoolean(value: unknown, name: string): boolean | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') throw invalidArgType(name, 'a boolean', value);
  return value;
}

export function checkOptionalBytes(value: unknown, name: string, maxBytes: number): Uint8Array | undefined {
  return value === undefined ? undefined : checkBytes(value, name, maxBytes);
}

/** A Uint8Array of at most `maxBytes`; a view over a detached ArrayBuffer is refused, not taken as 0 bytes. */
export function checkBytes(value: unknown, name: string, maxBytes: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw invalidArgType(name, 'a Uint8Array', value);
  if (value.byteLength === 0 && isDetached(value.buffer)) {
    throw invalidArgValue(name, 'must not be a view of a detached ArrayBuffer');
  }
  if (value.byteLength > maxBytes) throw outOfRange(`${name}.byteLength`, `at most ${maxBytes}`, value.byteLength);
  return value;
}

/** A detached buffer has 0 bytes; so has an empty one, but only a detached one cannot take a new view. */
function isDetached(buffer: ArrayBufferLike): boolean {
  if (buffer.byteLength !== 0) return false;
  try {
    new Uint8Array(buffer);
    return false;
  } catch {
    return true;
  }
}

export function checkOptionalSignal(value: unknown, name = 'options.signal'): AbortSignal | undefined {
  if (value === undefined) return undefined;
  if (!(value instanceof AbortSignal)) throw invalidArgType(name, 'an AbortSignal', value);
  return value;
}

/** Largest payload fltport moves in one call (reads, sends, replies): 64 MiB. */
export const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

export function checkOptionalInteger(value: unknown, name: string, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'number') throw invalidArgType(name, 'a number', value);
  if (!Number.isInteger(value) || value < min || value > max) throw outOfRange(name, `an integer from ${min} to ${max}`, value);
  return value;
}

export function checkOptionalFunction<T extends (...args: never[]) => unknown>(value: unknown, name: string): T | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'function') throw invalidArgType(name, 'a function', value);
  return value as T;
}
