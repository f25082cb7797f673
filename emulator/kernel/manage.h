/*
 * The management side of the emulator's fltmgr.sys (manage.c): filters, instances, attach and
 * detach, for the emulator's fltlib.dll (manage-protocol.h). Internal to fltmgr.sys.
 */
#ifndef FLTEMU_KERNEL_MANAGE_H
#define FLTEMU_KERNEL_MANAGE_H

/* Whether the control device's IOCTL `Code` is one of manage-protocol.h's. */
BOOLEAN FltpIsManageIoctl(ULONG Code);

/* Such an IOCTL, in dispatch: completes the IRP. */
NTSTATUS FltpManageDeviceControl(PIRP Irp, PIO_STACK_LOCATION Stack);

/* Whether `Filter` has an instance on the volume `FileName` (an NT name) is on: its default instance
 * (filtering, not detached from that volume) or one attached there. Caller holds fltmgr's lock. */
BOOLEAN FltpHasInstanceForLocked(struct _FLT_FILTER *Filter, PCUNICODE_STRING FileName);

/* FltUnregisterFilter, once the filter is off the list: its instances go with it. */
VOID FltpManageForgetFilter(struct _FLT_FILTER *Filter);

#endif /* FLTEMU_KERNEL_MANAGE_H */
