// Symbolic names for the codes that filter-port, filter-manager and LPC calls can produce. Kept to those codes:
// anything else is named by its number (HRESULT_0x..., STATUS_0x...).

/** HRESULT_FROM_WIN32: the HRESULT a Win32 error code becomes. */
export function hresultFromWin32(error: number): number {
  return error <= 0 || error > 0xffff ? error >>> 0 : ((error & 0xffff) | 0x80070000) >>> 0;
}

const win32Names: ReadonlyMap<number, string> = new Map([
  [1, 'ERROR_INVALID_FUNCTION'],
  [2, 'ERROR_FILE_NOT_FOUND'],
  [5, 'ERROR_ACCESS_DENIED'],
  [6, 'ERROR_INVALID_HANDLE'],
  [8, 'ERROR_NOT_ENOUGH_MEMORY'],
  [13, 'ERROR_INVALID_DATA'],
  [31, 'ERROR_GEN_FAILURE'],
  [50, 'ERROR_NOT_SUPPORTED'],
  [87, 'ERROR_INVALID_PARAMETER'],
  [109, 'ERROR_BROKEN_PIPE'],
  [122, 'ERROR_INSUFFICIENT_BUFFER'],
  [123, 'ERROR_INVALID_NAME'],
  [127, 'ERROR_PROC_NOT_FOUND'],
  [161, 'ERROR_BAD_PATHNAME'],
  [233, 'ERROR_PIPE_NOT_CONNECTED'],
  [234, 'ERROR_MORE_DATA'],
  [258, 'WAIT_TIMEOUT'],
  [259, 'ERROR_NO_MORE_ITEMS'],
  [995, 'ERROR_OPERATION_ABORTED'],
  [997, 'ERROR_IO_PENDING'],
  [998, 'ERROR_NOACCESS'],
  [1056, 'ERROR_SERVICE_ALREADY_RUNNING'],
  [1060, 'ERROR_SERVICE_DOES_NOT_EXIST'],
  [1062, 'ERROR_SERVICE_NOT_ACTIVE'],
  [1168, 'ERROR_NOT_FOUND'],
  [1236, 'ERROR_CONNECTION_ABORTED'],
  [1238, 'ERROR_CONNECTION_COUNT_LIMIT'],
  [1306, 'ERROR_REVISION_MISMATCH'],
  [1314, 'ERROR_PRIVILEGE_NOT_HELD'],
  [1450, 'ERROR_NO_SYSTEM_RESOURCES'],
]);

// HRESULTs with names of their own; these win over the Win32 name of the same number.
const hresultNames: ReadonlyMap<number, string> = new Map([
  [0x80004001, 'E_NOTIMPL'],
  [0x80004005, 'E_FAIL'],
  [0x8000ffff, 'E_UNEXPECTED'],
  [0x8007000e, 'E_OUTOFMEMORY'],
  [0x80070057, 'E_INVALIDARG'],
  // Filter manager (facility 0x1F), as fltlib reports the kernel's STATUS_FLT_* codes.
  [0x801f0007, 'ERROR_FLT_NOT_INITIALIZED'],
  [0x801f0008, 'ERROR_FLT_FILTER_NOT_READY'],
  [0x801f000a, 'ERROR_FLT_INTERNAL_ERROR'],
  [0x801f000b, 'ERROR_FLT_DELETING_OBJECT'],
  [0x801f000f, 'ERROR_FLT_DO_NOT_ATTACH'],
  [0x801f0010, 'ERROR_FLT_DO_NOT_DETACH'],
  [0x801f0011, 'ERROR_FLT_INSTANCE_ALTITUDE_COLLISION'],
  [0x801f0012, 'ERROR_FLT_INSTANCE_NAME_COLLISION'],
  [0x801f0013, 'ERROR_FLT_FILTER_NOT_FOUND'],
  [0x801f0014, 'ERROR_FLT_VOLUME_NOT_FOUND'],
  [0x801f0015, 'ERROR_FLT_INSTANCE_NOT_FOUND'],
  [0x801f001a, 'ERROR_FLT_VOLUME_ALREADY_MOUNTED'],
  [0x801f0020, 'ERROR_FLT_NO_WAITER_FOR_REPLY'],
]);

const ntstatusNames: ReadonlyMap<number, string> = new Map([
  [0x00000000, 'STATUS_SUCCESS'],
  [0x00000102, 'STATUS_TIMEOUT'],
  [0x00000103, 'STATUS_PENDING'],
  [0x80000002, 'STATUS_DATATYPE_MISALIGNMENT'],
  [0x80000005, 'STATUS_BUFFER_OVERFLOW'],
  [0xc0000002, 'STATUS_NOT_IMPLEMENTED'],
  [0xc0000005, 'STATUS_ACCESS_VIOLATION'],
  [0xc0000008, 'STATUS_INVALID_HANDLE'],
  [0xc000000d, 'STATUS_INVALID_PARAMETER'],
  [0xc0000017, 'STATUS_NO_MEMORY'],
  [0xc0000022, 'STATUS_ACCESS_DENIED'],
  [0xc0000023, 'STATUS_BUFFER_TOO_SMALL'],
  [0xc0000024, 'STATUS_OBJECT_TYPE_MISMATCH'],
  [0xc000002f, 'STATUS_PORT_MESSAGE_TOO_LONG'],
  [0xc0000033, 'STATUS_OBJECT_NAME_INVALID'],
  [0xc0000034, 'STATUS_OBJECT_NAME_NOT_FOUND'],
  [0xc0000035, 'STATUS_OBJECT_NAME_COLLISION'],
  [0xc0000037, 'STATUS_PORT_DISCONNECTED'],
  [0xc000003a, 'STATUS_OBJECT_PATH_NOT_FOUND'],
  [0xc0000041, 'STATUS_PORT_CONNECTION_REFUSED'],
  [0xc0000042, 'STATUS_INVALID_PORT_HANDLE'],
  [0xc000004b, 'STATUS_THREAD_IS_TERMINATING'],
  [0xc000009a, 'STATUS_INSUFFICIENT_RESOURCES'],
  [0xc00000b5, 'STATUS_IO_TIMEOUT'],
  [0xc0000120, 'STATUS_CANCELLED'],
  [0xc000021f, 'STATUS_REPLY_MESSAGE_MISMATCH'],
  [0xc0000246, 'STATUS_CONNECTION_COUNT_LIMIT'],
  [0xc0000253, 'STATUS_LPC_REPLY_LOST'],
  [0xc00002a0, 'STATUS_SERVER_SID_MISMATCH'],
  [0xc01c0020, 'STATUS_FLT_NO_WAITER_FOR_REPLY'],
]);

export function hex32(value: number): string {
  return `0x${(value >>> 0).toString(16).toUpperCase().padStart(8, '0')}`;
}

/** The symbolic name of an HRESULT, e.g. 0x80070002 -> ERROR_FILE_NOT_FOUND. */
export function hresultName(hresult: number): string {
  const value = hresult >>> 0;
  const own = hresultNames.get(value);
  if (own !== undefined) return own;
  if (value >>> 16 === 0x8007) {
    const win32 = win32Names.get(value & 0xffff);
    if (win32 !== undefined) return win32;
  }
  if (value === 0) return 'S_OK';
  return `HRESULT_${hex32(value)}`;
}

/** The symbolic name of an NTSTATUS, e.g. 0xC0000037 -> STATUS_PORT_DISCONNECTED. */
export function ntstatusName(status: number): string {
  return ntstatusNames.get(status >>> 0) ?? `STATUS_${hex32(status)}`;
}
