/*
 * The contract between the emulator's fltlib.dll (user mode, emulator/src/fltlib.c) and its
 * fltmgr.sys (kernel mode): device names and IOCTLs. Include <windows.h> and <winioctl.h> (user
 * mode) or <fltKernel.h> (kernel mode) first.
 *
 * A communication port is reached by its own name (FltCreateCommunicationPort's ObjectName, e.g.
 * "\MyPort"): a symbolic link to a device of fltmgr.sys. Connecting is an open of that name
 * followed by IOCTL_FLTEMU_CONNECT on the new handle (Wine drops the extended attributes that
 * the real fltlib uses to pass options and context with the open). The handle IS the connection.
 *
 *   IOCTL_FLTEMU_CONNECT      in: FLTEMU_CONNECT_REQUEST + context bytes; out: ULONG
 *                             FLTEMU_CONNECT_ACCEPTED (what tells a port from another device).
 *                             Runs ConnectNotify in the caller's context: its error, or
 *                             STATUS_CONNECTION_COUNT_LIMIT, or STATUS_OBJECT_NAME_NOT_FOUND (port
 *                             closed meanwhile). Once per handle (a second: STATUS_INVALID_HANDLE).
 *   IOCTL_FLTEMU_GET_MESSAGE  out: the caller's buffer; always pended, completed with one whole
 *                             message (FILTER_MESSAGE_HEADER + payload; Information = its size),
 *                             STATUS_BUFFER_TOO_SMALL (0 bytes; the message stays queued),
 *                             STATUS_CANCELLED, or STATUS_PORT_DISCONNECTED.
 *   IOCTL_FLTEMU_SEND         in: the caller's input, out: the caller's output buffer. Runs
 *                             MessageNotify on a worker thread; its status is the IRP's status and
 *                             Information = *ReturnOutputBufferLength (at most the output size).
 *   IOCTL_FLTEMU_REPLY        in: FILTER_REPLY_HEADER + reply payload. STATUS_SUCCESS,
 *                             STATUS_FLT_NO_WAITER_FOR_REPLY, or STATUS_BUFFER_OVERFLOW when the
 *                             payload was larger than the waiter's buffer (truncated).
 * Every IOCTL but CONNECT on a handle that is not connected: STATUS_INVALID_HANDLE; on a
 * connection the kernel side ended: STATUS_PORT_DISCONNECTED.
 *
 * The control device FLTEMU_CONTROL_DEVICE_NAME takes IOCTL_FLTEMU_INJECT_CREATE (filters.c):
 * in: FLTEMU_INJECT_CREATE_REQUEST + the NT file name(s); out: FLTEMU_INJECT_CREATE_RESULT.
 */
#ifndef FLTEMU_KERNEL_PROTOCOL_H
#define FLTEMU_KERNEL_PROTOCOL_H

#define FLTEMU_CONTROL_DEVICE_NAME L"\\FileSystem\\Filters\\FltMgr"
/* Devices of server ports: FLTEMU_PORT_DEVICE_PREFIX + a number; reached through the port name. */
#define FLTEMU_PORT_DEVICE_PREFIX L"\\FileSystem\\Filters\\FltMgrPort"

#define FLTEMU_DEVICE_TYPE 0x8FE0 /* a vendor device type (0x8000 and up) */
#define FLTEMU_IOCTL(Function) ((ULONG)CTL_CODE(FLTEMU_DEVICE_TYPE, (Function), METHOD_BUFFERED, FILE_ANY_ACCESS))
#define IOCTL_FLTEMU_CONNECT FLTEMU_IOCTL(0x801)
#define IOCTL_FLTEMU_GET_MESSAGE FLTEMU_IOCTL(0x802)
#define IOCTL_FLTEMU_SEND FLTEMU_IOCTL(0x803)
#define IOCTL_FLTEMU_REPLY FLTEMU_IOCTL(0x804)
#define IOCTL_FLTEMU_INJECT_CREATE FLTEMU_IOCTL(0x810)
/* Internal to fltmgr.sys (limbo.c): the control device completes it at once. */
#define IOCTL_FLTEMU_FENCE FLTEMU_IOCTL(0x811)
/* The filter-manager calls (manage-protocol.h). Every function number is here, so none is taken
 * twice. */
#define IOCTL_FLTEMU_QUERY_FILTERS FLTEMU_IOCTL(0x820)
#define IOCTL_FLTEMU_ATTACH FLTEMU_IOCTL(0x821)
#define IOCTL_FLTEMU_DETACH FLTEMU_IOCTL(0x822)

/* Largest connection context: the real fltlib's extended-attribute layout caps it here (System
 * Informer). */
#define FLTEMU_MAX_CONTEXT 0xFFE8u

#define FLTEMU_CONNECT_ACCEPTED 0x6e6e6f43u /* "Conn" */

typedef struct _FLTEMU_CONNECT_REQUEST {
    ULONG Options;      /* FilterConnectCommunicationPort's dwOptions */
    ULONG ContextBytes; /* followed by that many bytes of connection context */
} FLTEMU_CONNECT_REQUEST;

typedef struct _FLTEMU_INJECT_CREATE_REQUEST {
    ULONG RequestorProcessId;
    ULONG DesiredAccess;
    ULONG CreateOptions; /* FILE_* create options (FILE_DIRECTORY_FILE, ...) */
    USHORT ShareAccess;
    USHORT FileAttributes;
    ULONG NameBytes;           /* followed by the NT file name as opened, UTF-16, no terminator */
    ULONG NormalizedNameBytes; /* then the name FltGetFileNameInformation reports as normalized
                                * (the long name of an 8.3 name, a file id's file); 0: the same */
} FLTEMU_INJECT_CREATE_REQUEST;

typedef struct _FLTEMU_INJECT_CREATE_RESULT {
    LONG Status; /* the verdict: STATUS_SUCCESS, or IoStatus.Status of a FLT_PREOP_COMPLETE */
    ULONG Reserved;
} FLTEMU_INJECT_CREATE_RESULT;

#endif /* FLTEMU_KERNEL_PROTOCOL_H */
