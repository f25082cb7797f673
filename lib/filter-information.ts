// Parsers of the filter manager's information classes (fltuserstructures.h): the buffers that
// FilterFindFirst/Next, FilterInstanceFindFirst/Next, FilterVolumeFindFirst/Next,
// FilterVolumeInstanceFindFirst/Next and FilterGetInformation fill, and that a driver's
// FltEnumerateFilterInformation / FltEnumerateVolumeInformation / FltGetInstanceInformation
// fill in the same layouts. Every offset and length is checked against the entry it belongs to:
// a buffer that lies fails with ERR_FLTPORT_INVALID_INFORMATION, it is never read outside.
import { FltportError } from './errors';

export type FilterInformationClass = 'full' | 'aggregateBasic' | 'aggregateStandard';
export type InstanceInformationClass = 'full' | 'aggregateStandard';
export type VolumeInformationClass = 'basic' | 'standard';

/** FILTER_INFORMATION_CLASS, INSTANCE_INFORMATION_CLASS, FILTER_VOLUME_INFORMATION_CLASS values. */
export const FILTER_INFORMATION_CLASSES: Readonly<Record<FilterInformationClass, number>> = { full: 0, aggregateBasic: 1, aggregateStandard: 2 };
export const INSTANCE_INFORMATION_CLASSES: Readonly<Record<InstanceInformationClass, number>> = { full: 2, aggregateStandard: 3 };
export const VOLUME_INFORMATION_CLASSES: Readonly<Record<VolumeInformationClass, number>> = { basic: 0, standard: 1 };

/** A minifilter, or a legacy filter driver (FLTFL_*_IS_MINIFILTER / IS_LEGACYFILTER). */
export type FilterKind = 'minifilter' | 'legacy';

export interface FilterInfo {
  name: string;
  kind: FilterKind;
  /** null where the class does not carry it (FILTER_FULL_INFORMATION, a legacy filter in the basic class). */
  altitude: string | null;
  /** The filter manager frame; null for legacy filters. */
  frameId: number | null;
  /** Instances the minifilter has; null for legacy filters. */
  instances: number | null;
  /** Type.*.Flags of the standard class (none are defined yet); 0 elsewhere. */
  flags: number;
}

export interface InstanceInfo {
  kind: FilterKind;
  filterName: string;
  volumeName: string;
  /** null for a legacy filter, which has no instances of its own. */
  instanceName: string | null;
  altitude: string;
  /** null where the class does not carry it (INSTANCE_FULL_INFORMATION, legacy filters). */
  frameId: number | null;
  /** FLT_FILESYSTEM_TYPE without its prefix ('NTFS', 'REFS', ...), null where not carried. */
  fileSystem: string | null;
  /** The instance is on a volume that has been detached (dismounted); null where not carried. */
  detachedVolume: boolean | null;
  /** SupportedFeatures (Windows 8 and later), null where the entry does not carry it. */
  supportedFeatures: number | null;
}

export interface VolumeInfo {
  /** The volume's NT name: \Device\HarddiskVolume3. */
  name: string;
  /** null in the basic class. */
  frameId: number | null;
  fileSystem: string | null;
  /** FLTFL_VSI_DETACHED_VOLUME; null in the basic class. */
  detached: boolean | null;
}

// FLT_FILESYSTEM_TYPE, in enum order.
const FILE_SYSTEMS = [
  'UNKNOWN', 'RAW', 'NTFS', 'FAT', 'CDFS', 'UDFS', 'LANMAN', 'WEBDAV', 'RDPDR', 'NFS', 'MS_NETWARE', 'NETWARE',
  'BSUDF', 'MUP', 'RSFX', 'ROXIO_UDF1', 'ROXIO_UDF2', 'ROXIO_UDF3', 'TACIT', 'FS_REC', 'INCD', 'INCD_FAT', 'EXFAT',
  'PSFS', 'GPFS', 'NPFS', 'MSFS', 'CSVFS', 'REFS', 'OPENAFS', 'CIMFS',
];

/** The name of a FLT_FILESYSTEM_TYPE value ('NTFS'), or 'TYPE_<n>' for one newer than this list. */
export function fileSystemName(type: number): string {
  return FILE_SYSTEMS[type] ?? `TYPE_${type}`;
}

const IS_MINIFILTER = 1;
const IS_LEGACYFILTER = 2;
const DETACHED = 1;

function invalid(structure: string, entryOffset: number, what: string): FltportError {
  return new FltportError('ERR_FLTPORT_INVALID_INFORMATION', `${structure} at offset ${entryOffset}: ${what}`);
}

// One entry of a buffer: [start, end), where end is the next entry's start or the buffer's end.
class Entry {
  constructor(
    private readonly buffer: Buffer,
    readonly structure: string,
    readonly start: number,
    readonly end: number,
  ) {}

  /** Throws unless the entry holds `bytes` fixed bytes. */
  requireFixed(bytes: number, part = 'its fixed part'): void {
    if (this.end - this.start < bytes) throw invalid(this.structure, this.start, `${part} needs ${bytes} bytes, the entry has ${this.end - this.start}`);
  }

  u16(offset: number): number {
    return this.buffer.readUInt16LE(this.start + offset);
  }

  u32(offset: number): number {
    return this.buffer.readUInt32LE(this.start + offset);
  }

  /** A UTF-16 string of `length` bytes at `offset` from the entry's start, inside the entry and past its fixed part. */
  text(field: string, offset: number, length: number, fixedBytes: number): string {
    if (length === 0) return '';
    if (length % 2 !== 0) throw invalid(this.structure, this.start, `${field} has an odd length of ${length} bytes`);
    if (offset < fixedBytes || this.start + offset + length > this.end) {
      throw invalid(this.structure, this.start, `${field} (${length} bytes at offset ${offset}) lies outside the entry's ${this.end - this.start} bytes past its ${fixedBytes}-byte fixed part`);
    }
    return this.buffer.toString('utf16le', this.start + offset, this.start + offset + length);
  }

  /** A string described by a USHORT length at `lengthAt` and a USHORT offset at `lengthAt + 2`. */
  textAt(field: string, lengthAt: number, fixedBytes: number): string {
    return this.text(field, this.u16(lengthAt + 2), this.u16(lengthAt), fixedBytes);
  }

  kind(flagsAt: number): FilterKind {
    const flags = this.u32(flagsAt);
    if (flags === IS_MINIFILTER) return 'minifilter';
    if (flags === IS_LEGACYFILTER) return 'legacy';
    throw invalid(this.structure, this.start, `Flags is ${flags}, neither minifilter (1) nor legacy filter (2)`);
  }
}

/**
 * The entries of a buffer chained by a ULONG NextEntryOffset at their start: each offset must
 * move forward and leave room for the offset itself.
 */
function chain(buffer: Buffer, structure: string): Entry[] {
  const entries: Entry[] = [];
  let start = 0;
  for (;;) {
    if (buffer.length - start < 4) throw invalid(structure, start, `needs at least 4 bytes, the buffer has ${buffer.length - start}`);
    const next = buffer.readUInt32LE(start);
    if (next === 0) {
      entries.push(new Entry(buffer, structure, start, buffer.length));
      return entries;
    }
    if (next < 4 || start + next + 4 > buffer.length) {
      throw invalid(structure, start, `NextEntryOffset ${next} points outside the buffer of ${buffer.length} bytes`);
    }
    entries.push(new Entry(buffer, structure, start, start + next));
    start += next;
  }
}

function checkBuffer(buffer: unknown): Buffer {
  if (!(buffer instanceof Uint8Array)) {
    throw Object.assign(new TypeError('buffer must be a Uint8Array'), { code: 'ERR_INVALID_ARG_TYPE' });
  }
  return Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function parseFilterEntry(entry: Entry, cls: FilterInformationClass): FilterInfo {
  switch (cls) {
    case 'full': {
      // NextEntryOffset, FrameID, NumberOfInstances, FilterNameLength, FilterNameBuffer[]
      entry.requireFixed(14);
      return { name: entry.text('FilterNameBuffer', 14, entry.u16(12), 14), kind: 'minifilter', altitude: null, frameId: entry.u32(4), instances: entry.u32(8), flags: 0 };
    }
    case 'aggregateBasic': {
      entry.requireFixed(8);
      if (entry.kind(4) === 'legacy') {
        entry.requireFixed(12, 'Type.LegacyFilter');
        return { name: entry.textAt('FilterName', 8, 12), kind: 'legacy', altitude: null, frameId: null, instances: null, flags: 0 };
      }
      entry.requireFixed(24, 'Type.MiniFilter');
      return { name: entry.textAt('FilterName', 16, 24), kind: 'minifilter', altitude: entry.textAt('FilterAltitude', 20, 24), frameId: entry.u32(8), instances: entry.u32(12), flags: 0 };
    }
    case 'aggregateStandard': {
      entry.requireFixed(8);
      if (entry.kind(4) === 'legacy') {
        entry.requireFixed(20, 'Type.LegacyFilter');
        return { name: entry.textAt('FilterName', 12, 20), kind: 'legacy', altitude: entry.textAt('FilterAltitude', 16, 20), frameId: null, instances: null, flags: entry.u32(8) };
      }
      entry.requireFixed(28, 'Type.MiniFilter');
      return { name: entry.textAt('FilterName', 20, 28), kind: 'minifilter', altitude: entry.textAt('FilterAltitude', 24, 28), frameId: entry.u32(12), instances: entry.u32(16), flags: entry.u32(8) };
    }
  }
}

const FILTER_STRUCTURES: Readonly<Record<FilterInformationClass, string>> = {
  full: 'FILTER_FULL_INFORMATION',
  aggregateBasic: 'FILTER_AGGREGATE_BASIC_INFORMATION',
  aggregateStandard: 'FILTER_AGGREGATE_STANDARD_INFORMATION',
};

/** The filters in one buffer of `informationClass` (entries chained by NextEntryOffset). */
export function parseFilterInformation(buffer: Uint8Array, informationClass: FilterInformationClass): FilterInfo[] {
  const structure = checkClass(FILTER_STRUCTURES, informationClass);
  return chain(checkBuffer(buffer), structure).map((entry) => parseFilterEntry(entry, informationClass));
}

// SupportedFeatures follows the fixed part from Windows 8 on; it is there when the entry has
// room for it before its first string (`lengthAts`: where each string's length/offset pair is).
function supportedFeatures(entry: Entry, at: number, lengthAts: number[]): number | null {
  const stringOffsets = lengthAts.filter((lengthAt) => entry.u16(lengthAt) > 0).map((lengthAt) => entry.u16(lengthAt + 2));
  const firstString = Math.min(...stringOffsets, entry.end - entry.start);
  return firstString >= at + 4 ? entry.u32(at) : null;
}

function parseInstanceEntry(entry: Entry, cls: InstanceInformationClass): InstanceInfo {
  if (cls === 'full') {
    // NextEntryOffset, then length/offset pairs: InstanceName, Altitude, VolumeName, FilterName.
    entry.requireFixed(20);
    return {
      kind: 'minifilter',
      instanceName: entry.textAt('InstanceName', 4, 20),
      altitude: entry.textAt('Altitude', 8, 20),
      volumeName: entry.textAt('VolumeName', 12, 20),
      filterName: entry.textAt('FilterName', 16, 20),
      frameId: null,
      fileSystem: null,
      detachedVolume: null,
      supportedFeatures: null,
    };
  }
  entry.requireFixed(8);
  if (entry.kind(4) === 'legacy') {
    // Flags, then length/offset pairs: Altitude, VolumeName, FilterName; SupportedFeatures.
    entry.requireFixed(24, 'Type.LegacyFilter');
    return {
      kind: 'legacy',
      instanceName: null,
      altitude: entry.textAt('Altitude', 12, 24),
      volumeName: entry.textAt('VolumeName', 16, 24),
      filterName: entry.textAt('FilterName', 20, 24),
      frameId: null,
      fileSystem: null,
      detachedVolume: (entry.u32(8) & DETACHED) !== 0,
      supportedFeatures: supportedFeatures(entry, 24, [12, 16, 20]),
    };
  }
  // Flags, FrameID, VolumeFileSystemType, then length/offset pairs: InstanceName, Altitude,
  // VolumeName, FilterName; SupportedFeatures.
  entry.requireFixed(36, 'Type.MiniFilter');
  return {
    kind: 'minifilter',
    instanceName: entry.textAt('InstanceName', 20, 36),
    altitude: entry.textAt('Altitude', 24, 36),
    volumeName: entry.textAt('VolumeName', 28, 36),
    filterName: entry.textAt('FilterName', 32, 36),
    frameId: entry.u32(12),
    fileSystem: fileSystemName(entry.u32(16)),
    detachedVolume: (entry.u32(8) & DETACHED) !== 0,
    supportedFeatures: supportedFeatures(entry, 36, [20, 24, 28, 32]),
  };
}

const INSTANCE_STRUCTURES: Readonly<Record<InstanceInformationClass, string>> = {
  full: 'INSTANCE_FULL_INFORMATION',
  aggregateStandard: 'INSTANCE_AGGREGATE_STANDARD_INFORMATION',
};

/** The instances in one buffer of `informationClass` (entries chained by NextEntryOffset). */
export function parseInstanceInformation(buffer: Uint8Array, informationClass: InstanceInformationClass): InstanceInfo[] {
  const structure = checkClass(INSTANCE_STRUCTURES, informationClass);
  return chain(checkBuffer(buffer), structure).map((entry) => parseInstanceEntry(entry, informationClass));
}

const VOLUME_STRUCTURES: Readonly<Record<VolumeInformationClass, string>> = {
  basic: 'FILTER_VOLUME_BASIC_INFORMATION',
  standard: 'FILTER_VOLUME_STANDARD_INFORMATION',
};

/**
 * The volumes in one buffer of `informationClass`. FILTER_VOLUME_BASIC_INFORMATION has no
 * NextEntryOffset: its buffer holds one volume.
 */
export function parseVolumeInformation(buffer: Uint8Array, informationClass: VolumeInformationClass): VolumeInfo[] {
  const structure = checkClass(VOLUME_STRUCTURES, informationClass);
  const bytes = checkBuffer(buffer);
  if (informationClass === 'basic') {
    const entry = new Entry(bytes, structure, 0, bytes.length);
    entry.requireFixed(2);
    return [{ name: entry.text('FilterVolumeName', 2, entry.u16(0), 2), frameId: null, fileSystem: null, detached: null }];
  }
  return chain(bytes, structure).map((entry) => {
    // NextEntryOffset, Flags, FrameID, FileSystemType, FilterVolumeNameLength, FilterVolumeName[]
    entry.requireFixed(18);
    return {
      name: entry.text('FilterVolumeName', 18, entry.u16(16), 18),
      frameId: entry.u32(8),
      fileSystem: fileSystemName(entry.u32(12)),
      detached: (entry.u32(4) & DETACHED) !== 0,
    };
  });
}

function checkClass<T extends string>(structures: Readonly<Record<T, string>>, value: unknown): string {
  if (typeof value !== 'string' || !Object.prototype.hasOwnProperty.call(structures, value)) {
    throw Object.assign(new TypeError(`informationClass must be one of ${Object.keys(structures).map((key) => `'${key}'`).join(', ')}`), {
      code: 'ERR_INVALID_ARG_VALUE',
    });
  }
  return structures[value as T];
}
