/*
 * The filter-manager management calls between the emulator's fltlib.dll (src/fltlib-manage.c)
 * and its fltmgr.sys (kernel/manage.c): IOCTLs on the control device (protocol.h's
 * FLTEMU_CONTROL_DEVICE_NAME). Include protocol.h first.
 *
 * The kernel knows the registered filters and the instances that attach and detach made; the
 * volumes are the machine's drives, which fltlib.dll finds (QueryDosDevice) and passes as NT
 * volume names. A filter that has started filtering has its default instance on every volume
 * (automatic attachment) unless it was detached from it.
 *
 *   IOCTL_FLTEMU_QUERY_FILTERS  out: FLTEMU_FILTER_LIST, then FilterCount FLTEMU_FILTER_RECORDs.
 *                               An output too small for them gets the list header alone, with
 *                               BytesNeeded (Information = sizeof the header).
 *   IOCTL_FLTEMU_ATTACH         in: FLTEMU_INSTANCE_REQUEST + its strings; out: the created
 *                               instance's name (UTF-16, no terminator; Information = its bytes).
 *                               STATUS_FLT_FILTER_NOT_FOUND, STATUS_FLT_INSTANCE_NAME_COLLISION,
 *                               STATUS_FLT_INSTANCE_ALTITUDE_COLLISION, STATUS_OBJECT_NAME_NOT_FOUND
 *                               (no altitude given and the instance has none in the registry).
 *   IOCTL_FLTEMU_DETACH         in: FLTEMU_INSTANCE_REQUEST (no altitude). STATUS_FLT_FILTER_NOT_FOUND,
 *                               STATUS_FLT_INSTANCE_NOT_FOUND.
 * Strings are UTF-16 without terminator; every record is a multiple of 8 bytes.
 */
#ifndef FLTEMU_KERNEL_MANAGE_PROTOCOL_H
#define FLTEMU_KERNEL_MANAGE_PROTOCOL_H

typedef struct _FLTEMU_FILTER_LIST {
    ULONG BytesNeeded; /* the whole list */
    ULONG FilterCount;
} FLTEMU_FILTER_LIST;

/* One registered filter: its strings (Name, Altitude, DefaultInstance), then, 8-aligned,
 * InstanceCount FLTEMU_INSTANCE_RECORDs. Altitude and DefaultInstance come from the service's
 * Instances key (empty when it has none). */
typedef struct _FLTEMU_FILTER_RECORD {
    ULONG RecordBytes;   /* with its strings and instances */
    ULONG Filtering;     /* FltStartFiltering was called */
    ULONG InstanceCount;
    USHORT NameBytes;
    USHORT AltitudeBytes;
    USHORT DefaultInstanceBytes;
    USHORT Reserved;
} FLTEMU_FILTER_RECORD;

/* An instance attach made, or (Detached) the default instance detached from a volume. Strings:
 * Volume, Name, Altitude. */
typedef struct _FLTEMU_INSTANCE_RECORD {
    ULONG RecordBytes;
    ULONG Detached;
    USHORT VolumeBytes;
    USHORT NameBytes;
    USHORT AltitudeBytes;
    USHORT Reserved;
} FLTEMU_INSTANCE_RECORD;

/* ATTACH and DETACH: strings Filter, Volume, Instance (empty: the default instance), Altitude
 * (empty: the instance's own, from the registry). */
typedef struct _FLTEMU_INSTANCE_REQUEST {
    USHORT FilterBytes;
    USHORT VolumeBytes;
    USHORT InstanceBytes;
    USHORT AltitudeBytes;
} FLTEMU_INSTANCE_REQUEST;

#define FLTEMU_RECORD_ALIGN(Bytes) (((Bytes) + 7u) & ~7u)

#endif /* FLTEMU_KERNEL_MANAGE_PROTOCOL_H */
