/*
 * The filter-callback side of the emulator's fltmgr.sys (filters.c): what FltRegisterFilter,
 * FltStartFiltering and FltUnregisterFilter need from it, and the INJECT_CREATE request of the
 * control device. Internal to fltmgr.sys.
 */
#ifndef FLTEMU_KERNEL_FILTERS_H
#define FLTEMU_KERNEL_FILTERS_H

/* Per-filter state of the callback side, embedded in FLT_FILTER (fltmgrp.h). */
typedef struct _FLTP_FILTER_SIDE {
    BOOLEAN Filtering; /* FltStartFiltering was called */
} FLTP_FILTER_SIDE;

/* FltRegisterFilter, after the FLT_FILTER is built and before it is listed: checks the
 * registration (and, as on Windows, that the service has its Instances keys). */
NTSTATUS FltpFilterSideRegister(struct _FLT_FILTER *Filter);

/* FltUnregisterFilter, first: no pre/post-operation callback of the filter starts any more and
 * the ones running have returned. */
VOID FltpFilterSideUnregister(struct _FLT_FILTER *Filter);

/* IOCTL_FLTEMU_INJECT_CREATE on the control device (protocol.h), in dispatch. */
NTSTATUS FltpInjectCreate(PIRP Irp, PIO_STACK_LOCATION Stack);

#endif /* FLTEMU_KERNEL_FILTERS_H */
