// The filter manager seen from user mode: which filters are loaded and where they are attached,
// loading and attaching them, and turning the NT paths a driver reports into DOS paths. Every
// call runs off the JS thread; failures are WinErrors naming the fltlib call.
import { loadNative } from '../binding/loader';
import type { NativeFilterManager } from '../binding/native';
import { WinError, fromNative, invalidArgValue } from './errors';
import {
  FILTER_INFORMATION_CLASSES,
  INSTANCE_INFORMATION_CLASSES,
  VOLUME_INFORMATION_CLASSES,
  parseFilterInformation,
  parseInstanceInformation,
  parseVolumeInformation,
} from './filter-information';
import type { FilterInfo, InstanceInfo, VolumeInfo } from './filter-information';
import { checkName, checkOptionsObject } from './validate';

/** Longest names the filter manager takes (fltuserstructures.h), in UTF-16 units. */
export const MAX_FILTER_NAME_UNITS = 255;
export const MAX_INSTANCE_NAME_UNITS = 255;
export const MAX_VOLUME_NAME_UNITS = 1024;
const MAX_ALTITUDE_UNITS = 64;

export interface VolumeWithDosName extends VolumeInfo {
  /** FilterGetDosName: 'C:', a mount point path, or null when the volume has neither (or went away meanwhile). */
  dosName: string | null;
}

export interface AttachOptions {
  /** Attach at this altitude (FilterAttachAtAltitude), a decimal string such as '385100' or '370030.5'. */
  altitude?: string;
  /** The instance to create; by default the filter's default instance. */
  instanceName?: string;
}

async function call<T>(run: (native: NativeFilterManager) => Promise<T>): Promise<T> {
  const native = loadNative().filterManager;
  try {
    return await run(native);
  } catch (error) {
    throw fromNative(error);
  }
}

const isHResult = (error: unknown, hresult: number): boolean => error instanceof WinError && error.hresult === hresult;
const ERROR_FLT_VOLUME_NOT_FOUND = 0x801f0014;
const ERROR_FILE_NOT_FOUND = 0x80070002;

const checkFilterName = (value: unknown): string => checkName(value, 'filterName', MAX_FILTER_NAME_UNITS);
const checkVolumeName = (value: unknown): string => checkName(value, 'volumeName', MAX_VOLUME_NAME_UNITS);

/** Every filter the filter manager knows, minifilters and legacy filters (FilterFindFirst/Next). */
export async function listFilters(): Promise<FilterInfo[]> {
  const buffers = await call((native) => native.findFilters(FILTER_INFORMATION_CLASSES.aggregateStandard));
  return buffers.flatMap((buffer) => parseFilterInformation(buffer, 'aggregateStandard'));
}

/** One filter (FilterCreate + FilterGetInformation); ERROR_FLT_FILTER_NOT_FOUND when it is not loaded. */
export async function getFilterInfo(filterName: string): Promise<FilterInfo> {
  checkFilterName(filterName);
  const buffer = await call((native) => native.filterInformation(filterName, FILTER_INFORMATION_CLASSES.aggregateStandard));
  const [info] = parseFilterInformation(buffer, 'aggregateStandard');
  return info as FilterInfo;
}

function parseInstances(buffers: Buffer[]): InstanceInfo[] {
  return buffers.flatMap((buffer) => parseInstanceInformation(buffer, 'aggregateStandard'));
}

/**
 * The instances of one filter (FilterInstanceFindFirst/Next), or, without a name, the instances
 * on every volume (FilterVolumeInstanceFindFirst/Next per volume, as fltmc instances does; a
 * volume that goes away meanwhile is left out).
 */
export async function listInstances(filterName?: string): Promise<InstanceInfo[]> {
  if (filterName !== undefined) {
    checkFilterName(filterName);
    return parseInstances(await call((native) => native.findInstances(filterName, INSTANCE_INFORMATION_CLASSES.aggregateStandard)));
  }
  const volumes = await findVolumes();
  const perVolume = await Promise.all(
    volumes.map((volume) =>
      listVolumeInstances(volume.name).catch((error: unknown) => {
        if (isHResult(error, ERROR_FLT_VOLUME_NOT_FOUND)) return [];
        throw error;
      }),
    ),
  );
  return perVolume.flat();
}

/** The instances attached to one volume, given by its NT name (\Device\HarddiskVolume3) or DOS name (C:). */
export async function listVolumeInstances(volumeName: string): Promise<InstanceInfo[]> {
  checkVolumeName(volumeName);
  return parseInstances(await call((native) => native.findVolumeInstances(volumeName, INSTANCE_INFORMATION_CLASSES.aggregateStandard)));
}

async function findVolumes(): Promise<VolumeInfo[]> {
  const buffers = await call((native) => native.findVolumes(VOLUME_INFORMATION_CLASSES.standard));
  return buffers.flatMap((buffer) => parseVolumeInformation(buffer, 'standard'));
}

/**
 * Every volume the filter manager knows (FilterVolumeFindFirst/Next), with its DOS name. A
 * volume FilterGetDosName does not know (ERROR_FILE_NOT_FOUND: it went away since the
 * enumeration) has none; any other failure (a missing function, a privilege) is the call's.
 */
export async function listVolumes(): Promise<VolumeWithDosName[]> {
  const volumes = await findVolumes();
  return Promise.all(
    volumes.map(async (volume) => ({
      ...volume,
      dosName: await dosName(volume.name).catch((error: unknown) => {
        if (isHResult(error, ERROR_FILE_NOT_FOUND)) return null;
        throw error;
      }),
    })),
  );
}

/** FilterGetDosName: 'C:' for '\Device\HarddiskVolume3'; null when the volume has neither a drive letter nor a mount point. */
export async function dosName(volumeName: string): Promise<string | null> {
  checkVolumeName(volumeName);
  const name = await call((native) => native.dosName(volumeName));
  return name === '' ? null : name;
}

/** FilterLoad: loads a minifilter by its service name. Needs SeLoadDriverPrivilege (an elevated administrator). */
export async function loadFilter(filterName: string): Promise<void> {
  checkFilterName(filterName);
  await call((native) => native.loadFilter(filterName));
}

/** FilterUnload. Needs SeLoadDriverPrivilege; a filter that refuses to unload fails it. */
export async function unloadFilter(filterName: string): Promise<void> {
  checkFilterName(filterName);
  await call((native) => native.unloadFilter(filterName));
}

/**
 * FilterAttach, or FilterAttachAtAltitude with options.altitude: attaches an instance of the
 * filter to a volume (NT name, drive letter or mount point). Resolves with the name of the
 * instance created. Needs administrator rights.
 */
export async function attach(filterName: string, volumeName: string, options?: AttachOptions): Promise<string> {
  checkFilterName(filterName);
  checkVolumeName(volumeName);
  const raw = checkOptionsObject(options);
  const altitude = raw.altitude === undefined ? null : checkAltitude(raw.altitude);
  const instanceName = raw.instanceName === undefined ? null : checkName(raw.instanceName, 'options.instanceName', MAX_INSTANCE_NAME_UNITS);
  return call((native) => native.attach(filterName, volumeName, instanceName, altitude));
}

/** FilterDetach: detaches an instance (by default the filter's default instance) from a volume. Needs administrator rights. */
export async function detach(filterName: string, volumeName: string, instanceName?: string): Promise<void> {
  checkFilterName(filterName);
  checkVolumeName(volumeName);
  if (instanceName !== undefined) checkName(instanceName, 'instanceName', MAX_INSTANCE_NAME_UNITS);
  await call((native) => native.detach(filterName, volumeName, instanceName ?? null));
}

function checkAltitude(value: unknown): string {
  const altitude = checkName(value, 'options.altitude', MAX_ALTITUDE_UNITS);
  if (!/^\d+(\.\d+)?$/.test(altitude)) throw invalidArgValue('options.altitude', `must be a decimal altitude such as '385100' or '370030.5', received '${altitude}'`);
  return altitude;
}

// Every volume the filter manager knows, by NT name in lower case, with its DOS name (null for
// one without), for toDosPath.
let volumeNames: Map<string, string | null> | undefined;
let refreshing: Promise<Map<string, string | null>> | undefined;

/**
 * A device a refresh did not find as a volume (\Device\Mup, \Device\NamedPipe: paths a driver
 * reports every second) refreshes again at most this often, so that such paths do not each
 * enumerate every volume; a device never looked up refreshes at once.
 */
const UNKNOWN_DEVICE_RETRY_MS = 10_000;
/** How many unknown devices are remembered (the oldest is forgotten first). */
const MAX_UNKNOWN_DEVICES = 256;
// Lower-case device name -> when a refresh last failed to find a volume for it.
const unknownDevices = new Map<string, number>();

/** '\device\mup' for '\device\mup\server\share\x': the first two components of a lower-case path. */
const deviceOf = (lower: string): string => lower.split('\\', 3).join('\\');

function rememberUnknown(device: string): void {
  unknownDevices.delete(device);
  if (unknownDevices.size >= MAX_UNKNOWN_DEVICES) unknownDevices.delete(unknownDevices.keys().next().value as string);
  unknownDevices.set(device, Date.now());
}

function refreshVolumeNames(): Promise<Map<string, string | null>> {
  refreshing ??= listVolumes()
    .then((volumes) => {
      volumeNames = new Map(volumes.map((volume) => [volume.name.toLowerCase(), volume.dosName?.replace(/\\+$/, '') ?? null]));
      return volumeNames;
    })
    .finally(() => {
      refreshing = undefined;
    });
  return refreshing;
}

/** The longest of `names`' volumes that `ntPath` lies on, or undefined. */
function volumeOf(ntPath: string, names: Map<string, string | null>): string | undefined {
  const lower = ntPath.toLowerCase();
  let best: string | undefined;
  for (const volume of names.keys()) {
    const onVolume = lower.startsWith(volume) && (lower.length === volume.length || lower[volume.length] === '\\');
    if (onVolume && (best === undefined || volume.length > best.length)) best = volume;
  }
  return best;
}

/**
 * An NT path as a driver reports it (\Device\HarddiskVolume3\Users\x.txt) as a person reads it
 * (C:\Users\x.txt), or null when its volume has no DOS name or the filter manager knows no volume
 * it lies on. Volume names come from a cache filled by the first call (listVolumes()) and
 * refreshed when a path lies on none of its volumes, so a volume mounted later is found: at once
 * for a device (\Device\X) not looked up before, at most every UNKNOWN_DEVICE_RETRY_MS for one a
 * refresh did not find. A drive letter given to a known volume later, or moved to another one,
 * is not seen until a refresh.
 */
export async function toDosPath(ntPath: string): Promise<string | null> {
  checkName(ntPath, 'ntPath', 32767);
  let names = volumeNames;
  let volume = names === undefined ? undefined : volumeOf(ntPath, names);
  if (names === undefined || volume === undefined) {
    const device = deviceOf(ntPath.toLowerCase());
    const lastMissed = unknownDevices.get(device);
    if (names !== undefined && lastMissed !== undefined && Date.now() - lastMissed < UNKNOWN_DEVICE_RETRY_MS) return null;
    names = await refreshVolumeNames();
    volume = volumeOf(ntPath, names);
    if (volume === undefined) rememberUnknown(device);
    else unknownDevices.delete(device);
  }
  const dos = volume === undefined ? null : names.get(volume);
  if (dos === undefined || dos === null) return null;
  const rest = ntPath.slice((volume as string).length);
  return `${dos}${rest === '' ? '\\' : rest}`;
}
