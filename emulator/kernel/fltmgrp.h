/*
 * Internal structures of the emulator's fltmgr.sys, shared by its source files (fltmgr.c: driver,
 * devices and dispatch; ports.c: communication ports; filters.c: the filter-callback side). Not
 * for drivers.
 *
 * Locking: one lock (FltpAcquireLock) guards the filter list, each filter's port and connection
 * lists and every connection's queues. It is fltmgr's own (pushlock.c), not a KSPIN_LOCK: Wine 8's
 * KeAcquireSpinLock returns at once when the lock is held by another thread. Nothing that can
 * block, and no IoCompleteRequest (a server call under Wine), runs under it: IRPs to complete are
 * collected on a local list and completed after the lock is released.
 */
#ifndef FLTEMU_KERNEL_FLTMGRP_H
#define FLTEMU_KERNEL_FLTMGRP_H

#include <fltKernel.h>
#include <fltEmu.h>

#include "filters.h"
#include "protocol.h"

#define FLTP_POOL_TAG 0x706d6c46u /* "Flmp" in pool dumps */

/* ---- filters ----------------------------------------------------------------------------- */

typedef struct _FLT_FILTER {
    LIST_ENTRY Links; /* FltpGlobals.Filters */
    PDRIVER_OBJECT DriverObject;
    const FLT_REGISTRATION *Registration; /* the driver's own structure, kept as given */
    LIST_ENTRY ServerPorts;               /* FLTP_SERVER_PORT.FilterLinks, open ones */
    LIST_ENTRY Connections;               /* FLTP_CONNECTION.FilterLinks: accepted, not yet forgotten */
    BOOLEAN Unregistering;
    BOOLEAN DropOversizedMessages;        /* FltEmuDropOversizedMessages */
    volatile LONG Busy;                   /* port callbacks of this filter running right now */
    KEVENT Idle;                          /* signalled when Busy drops to 0 during unregistration */
    FLTP_FILTER_SIDE Side;                /* filters.c: pre-operation callbacks, altitude, ... */
} FLT_FILTER;

/* ---- ports ------------------------------------------------------------------------------- */

typedef enum _FLTP_PORT_KIND { FltpServerPort = 1, FltpClientPort = 2 } FLTP_PORT_KIND;

/* PFLT_PORT points at one of these two, which begin alike. */
typedef struct _FLT_PORT {
    FLTP_PORT_KIND Kind;
} FLT_PORT;

/* A server port: a device owned by fltmgr's driver object (FltpGlobals.DriverObject), reached by
 * the port's name through a symbolic link, so that FltCloseCommunicationPort can free the name at
 * once while the connections made through the device stay open. */
typedef struct _FLTP_SERVER_PORT {
    FLT_PORT Header;
    PFLT_FILTER Filter;
    LIST_ENTRY FilterLinks;
    PDEVICE_OBJECT Device;
    UNICODE_STRING Name;   /* the port's name (the symbolic link) */
    PVOID Cookie;
    PFLT_CONNECT_NOTIFY ConnectNotify;
    PFLT_DISCONNECT_NOTIFY DisconnectNotify;
    PFLT_MESSAGE_NOTIFY MessageNotify;
    LONG MaxConnections;
    LONG Connections;      /* accepted and not yet past DisconnectNotify */
    BOOLEAN Closed;        /* FltCloseCommunicationPort (or unregistration): no new connections */
    LONG References;       /* the port itself + every connection's file object on its device */
} FLTP_SERVER_PORT, *PFLTP_SERVER_PORT;

/* The device extension of a server port's device. */
typedef struct _FLTP_PORT_DEVICE {
    ULONG Magic; /* FLTP_PORT_DEVICE_MAGIC; fltmgr's control device has none */
    PFLTP_SERVER_PORT Port;
} FLTP_PORT_DEVICE, *PFLTP_PORT_DEVICE;
#define FLTP_PORT_DEVICE_MAGIC 0x74726f50u /* "Port" */

typedef enum _FLTP_CONNECTION_STATE {
    FltpOpened,       /* IRP_MJ_CREATE done, no CONNECT yet */
    FltpConnected,    /* ConnectNotify accepted it */
    FltpDisconnected, /* FltCloseClientPort or unregistration: every request fails with STATUS_PORT_DISCONNECTED */
    FltpClosed        /* the client's last handle is gone (IRP_MJ_CLOSE) */
} FLTP_CONNECTION_STATE;

/* A connection (the "client port"): one per FILE_OBJECT opened on a port's device (FsContext). */
typedef struct _FLTP_CONNECTION {
    FLT_PORT Header;
    PFLTP_SERVER_PORT ServerPort;
    PFLT_FILTER Filter;    /* once accepted; NULL again once the filter is unregistered */
    LIST_ENTRY FilterLinks;  /* Filter->Connections, from acceptance while the file object is open or the
                              * minifilter holds its client port */
    PFILE_OBJECT FileObject;
    PVOID Cookie;          /* ConnectNotify's ConnectionPortCookie */
    FLTP_CONNECTION_STATE State;
    BOOLEAN Accepted;           /* ConnectNotify accepted it: DisconnectNotify is owed */
    BOOLEAN DisconnectNotified;
    BOOLEAN HoldsSlot;          /* counts in ServerPort->Connections (MaxConnections) */
    BOOLEAN HeldByFilter;       /* the minifilter's client port: until FltCloseClientPort or unregistration */
    LIST_ENTRY Reads;      /* pending GET_MESSAGE IRPs, oldest first (Tail.Overlay.ListEntry) */
    LIST_ENTRY Messages;   /* FLTP_MESSAGE.Links: not yet delivered, oldest first */
    LIST_ENTRY Waiters;    /* FLTP_MESSAGE.Links: delivered, waiting for a reply */
    LONG References;       /* the file object, the minifilter's client port (HeldByFilter), every
                            * FltSendMessage and MessageNotify using it */
    LONG MessageCalls;     /* SENDs queued or in MessageNotify: DisconnectNotify waits for them (on
                            * Windows, the client port's rundown protection) */
} FLTP_CONNECTION, *PFLTP_CONNECTION;

/* ---- messages ---------------------------------------------------------------------------- */

typedef enum _FLTP_MESSAGE_STATE {
    FltpMessageQueued,    /* in Connection->Messages */
    FltpMessageWaiting,   /* delivered, in Connection->Waiters */
    FltpMessageDone       /* Status is final; the sender's event is signalled */
} FLTP_MESSAGE_STATE;

/* One FltSendMessage (or FltEmuSendRawMessage) in flight; lives on the sender's stack frame's
 * pool allocation until the sender returns. */
typedef struct _FLTP_MESSAGE {
    LIST_ENTRY Links;
    FLTP_MESSAGE_STATE State;
    NTSTATUS Status;
    ULONGLONG MessageId;
    PVOID Bytes;           /* FILTER_MESSAGE_HEADER + payload, as the read receives it */
    ULONG ByteCount;
    BOOLEAN WantsReply;    /* a reply buffer was given: wait for the reply after delivery */
    PVOID ReplyBuffer;
    ULONG ReplyCapacity;
    ULONG ReplyLength;     /* bytes written to ReplyBuffer */
    HANDLE Done;           /* an auto-reset event from the pool (ports.c), set once State is FltpMessageDone */
} FLTP_MESSAGE, *PFLTP_MESSAGE;

/* ---- global state ------------------------------------------------------------------------ */

typedef struct _FLTP_GLOBALS {
    BOOLEAN Initialized;          /* fltmgr's DriverEntry succeeded: FltRegisterFilter works */
    PDRIVER_OBJECT DriverObject;  /* fltmgr's own; owns every device */
    PDEVICE_OBJECT ControlDevice; /* \FileSystem\Filters\FltMgr */
    volatile LONG Lock;           /* FltpAcquireLock */
    LIST_ENTRY Filters;           /* FLT_FILTER.Links */
    volatile LONG64 NextMessageId;
    volatile LONG NextPortDevice;
    LIST_ENTRY Limbo;             /* limbo.c: completed IRPs not yet freed (Tail.Overlay.ListEntry) */
    HANDLE LimboWake;             /* limbo.c: auto-reset event for the reaper */
    HANDLE Reaper;                /* limbo.c: the reaper thread */
    BOOLEAN LimboStopping;
} FLTP_GLOBALS;

extern FLTP_GLOBALS FltpGlobals;

/* pushlock.c: the global lock, and the wait of a thread that found a lock taken. */
VOID FltpAcquireLock(VOID);
VOID FltpReleaseLock(VOID);
VOID FltpBackOff(ULONG Attempt);

/* ---- between the source files ------------------------------------------------------------ */

/* ports.c: IRPs on a port's device (fltmgr.c dispatches them there). */
NTSTATUS FltpPortCreate(PDEVICE_OBJECT Device, PIRP Irp);
NTSTATUS FltpPortClose(PDEVICE_OBJECT Device, PIRP Irp);
NTSTATUS FltpPortDeviceControl(PDEVICE_OBJECT Device, PIRP Irp);
/* ports.c: unregistration closes the filter's ports and connections (after the filter side has
 * stopped) and returns once no port callback of the filter runs any more. */
VOID FltpClosePortsOfFilter(PFLT_FILTER Filter);
/* ports.c: worker threads for MessageNotify (started by DriverEntry, stopped by unload). */
NTSTATUS FltpStartWorkers(VOID);
VOID FltpStopWorkers(VOID);

/* Completes an IRP with Status and Information (an IRP its dispatch routine completes itself). */
VOID FltpCompleteIrp(PIRP Irp, NTSTATUS Status, ULONG_PTR Information);

/* limbo.c: completes an IRP whose dispatch routine returned STATUS_PENDING; it is freed only once
 * no cancel call of wineserver can still name it. The devices it goes to need StackSize 2. */
VOID FltpCompletePendedIrp(PIRP Irp, NTSTATUS Status, ULONG_PTR Information);
NTSTATUS FltpStartReaper(VOID);
VOID FltpStopReaper(VOID);

#endif /* FLTEMU_KERNEL_FLTMGRP_H */
