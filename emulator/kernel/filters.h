/*
 * The filter-callback side of the emulator's fltmgr.sys (filters.c): what FltRegisterFilter,
 * FltStartFiltering and FltUnregisterFilter need from it, and the INJECT_CREATE request of the
 * control device. Internal to fltmgr.sys.
 */
#ifndef FLTEMU_KERNEL_FILTERS_H
#define FLTEMU_KERNEL_FILTERS_H

/* Altitudes are decimal strings ("370035", "370035.5"); longer ones are refused at registration. */
#define FLTP_ALTITUDE_CHARS 32

/* "digits" or "digits.digits", at most FLTP_ALTITUDE_CHARS characters, as altitudes are written. */
BOOLEAN FltpIsAltitude(PCUNICODE_STRING Altitude);

/* Per-filter state of the callback side, embedded in FLT_FILTER (fltmgrp.h). */
typedef struct _FLTP_FILTER_SIDE {
    BOOLEAN Filtering; /* FltStartFiltering was called; guarded by FltpAcquireLock */
    PFLT_PRE_OPERATION_CALLBACK PreCreate;   /* from the registration's IRP_MJ_CREATE entry */
    PFLT_POST_OPERATION_CALLBACK PostCreate;
    WCHAR Altitude[FLTP_ALTITUDE_CHARS + 1]; /* from the service's Instances key, NUL-terminated */
    /* 1 while registered, plus one per injected open calling the filter's callbacks now; the
     * unregistration drops the 1 and waits for CallbacksDone when others remain. */
    volatile LONG Callbacks;
    KEVENT CallbacksDone;
} FLTP_FILTER_SIDE;

/* FltRegisterFilter, after the FLT_FILTER is built and before it is listed: checks the
 * registration and, as on Windows, that the service has its Instances keys (the altitude). */
NTSTATUS FltpFilterSideRegister(struct _FLT_FILTER *Filter);

/* FltUnregisterFilter, first: no pre/post-operation callback of the filter starts any more and
 * the ones running have returned. */
VOID FltpFilterSideUnregister(struct _FLT_FILTER *Filter);

/* IOCTL_FLTEMU_INJECT_CREATE on the control device (protocol.h), in dispatch. */
NTSTATUS FltpInjectCreate(PIRP Irp, PIO_STACK_LOCATION Stack);

#endif /* FLTEMU_KERNEL_FILTERS_H */
