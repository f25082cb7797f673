/*
 * The emulator's fltmgr.sys: the filter manager for drivers running under Wine (winedevice.exe).
 * This file: the driver itself (the FltMgr service: DriverEntry, the control device, IRP
 * dispatch, unload), filter registration and default security descriptors. Ports are in
 * ports.c, the filter-callback side in filters.c, push locks in pushlock.c.
 *
 * Every device belongs to fltmgr's own driver object, so every IRP of every port reaches the
 * dispatch routines here, whichever minifilter created the port. All minifilters share this one
 * module (and its state) because they run in one winedevice.exe: their services and FltMgr's are
 * in the same load-order group.
 */
#include "fltmgrp.h"
#include "manage.h"

FLTP_GLOBALS FltpGlobals;

DRIVER_INITIALIZE DriverEntry;
static DRIVER_UNLOAD FltpUnload;
static DRIVER_DISPATCH FltpDispatchCreate;
static DRIVER_DISPATCH FltpDispatchClose;
static DRIVER_DISPATCH FltpDispatchDeviceControl;
static DRIVER_UNLOAD FltpMiniFilterUnload;

/* Directories that hold the control device; Wine's object namespace may lack them. Kept open
 * while fltmgr runs (a directory object lives as long as a handle to it). */
static HANDLE FltpDirectories[2];

VOID FltpCompleteIrp(PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = Information;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

static BOOLEAN FltpIsPortDevice(PDEVICE_OBJECT Device)
{
    const FLTP_PORT_DEVICE *extension = (const FLTP_PORT_DEVICE *)Device->DeviceExtension;
    return Device != FltpGlobals.ControlDevice && extension != NULL && extension->Magic == FLTP_PORT_DEVICE_MAGIC;
}

static NTSTATUS FltpDispatchCreate(PDEVICE_OBJECT Device, PIRP Irp)
{
    if (FltpIsPortDevice(Device)) return FltpPortCreate(Device, Irp);
    FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS FltpDispatchClose(PDEVICE_OBJECT Device, PIRP Irp)
{
    if (FltpIsPortDevice(Device)) return FltpPortClose(Device, Irp);
    FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

static NTSTATUS FltpDispatchDeviceControl(PDEVICE_OBJECT Device, PIRP Irp)
{
    PIO_STACK_LOCATION stack = IoGetCurrentIrpStackLocation(Irp);
    NTSTATUS status;

    if (FltpIsPortDevice(Device)) return FltpPortDeviceControl(Device, Irp);
    if (stack->Parameters.DeviceIoControl.IoControlCode == IOCTL_FLTEMU_FENCE) {
        FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
        return STATUS_SUCCESS;
    }
    if (FltpIsManageIoctl(stack->Parameters.DeviceIoControl.IoControlCode)) return FltpManageDeviceControl(Irp, stack);
    if (stack->Parameters.DeviceIoControl.IoControlCode != IOCTL_FLTEMU_INJECT_CREATE) {
        FltpCompleteIrp(Irp, STATUS_INVALID_DEVICE_REQUEST, 0);
        return STATUS_INVALID_DEVICE_REQUEST;
    }
    Irp->IoStatus.Information = 0;
    status = FltpInjectCreate(Irp, stack);
    if (status != STATUS_PENDING) {
        Irp->IoStatus.Status = status;
        IoCompleteRequest(Irp, IO_NO_INCREMENT);
    }
    return status;
}

static NTSTATUS FltpCreateDirectory(PCWSTR Name, HANDLE *Directory)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;

    RtlInitUnicodeString(&name, Name);
    InitializeObjectAttributes(&attributes, &name, OBJ_OPENIF | OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, NULL);
    return ZwCreateDirectoryObject(Directory, DIRECTORY_ALL_ACCESS, &attributes);
}

static VOID FltpCloseDirectories(VOID)
{
    ULONG i;

    for (i = ARRAYSIZE(FltpDirectories); i-- > 0;) {
        if (FltpDirectories[i] != NULL) ZwClose(FltpDirectories[i]);
        FltpDirectories[i] = NULL;
    }
}

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING controlName;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(RegistryPath);

    InitializeListHead(&FltpGlobals.Filters);
    FltpGlobals.DriverObject = DriverObject;

    status = FltpCreateDirectory(L"\\FileSystem", &FltpDirectories[0]);
    if (NT_SUCCESS(status)) status = FltpCreateDirectory(L"\\FileSystem\\Filters", &FltpDirectories[1]);
    if (!NT_SUCCESS(status)) {
        DbgPrint("fltmgr: cannot create \\FileSystem\\Filters: 0x%08lX\n", (ULONG)status);
        FltpCloseDirectories();
        return status;
    }

    RtlInitUnicodeString(&controlName, FLTEMU_CONTROL_DEVICE_NAME);
    status = IoCreateDevice(DriverObject, 0, &controlName, FLTEMU_DEVICE_TYPE, 0, FALSE, &FltpGlobals.ControlDevice);
    if (!NT_SUCCESS(status)) {
        DbgPrint("fltmgr: cannot create the control device: 0x%08lX\n", (ULONG)status);
        FltpCloseDirectories();
        return status;
    }

    FltpGlobals.ControlDevice->StackSize = 2; /* a spare stack location for FltpCompletePendedIrp */

    status = FltpStartReaper();
    if (NT_SUCCESS(status)) {
        status = FltpStartWorkers();
        if (!NT_SUCCESS(status)) FltpStopReaper();
    }
    if (!NT_SUCCESS(status)) {
        IoDeleteDevice(FltpGlobals.ControlDevice);
        FltpCloseDirectories();
        return status;
    }

    DriverObject->MajorFunction[IRP_MJ_CREATE] = FltpDispatchCreate;
    DriverObject->MajorFunction[IRP_MJ_CLOSE] = FltpDispatchClose;
    DriverObject->MajorFunction[IRP_MJ_DEVICE_CONTROL] = FltpDispatchDeviceControl;
    DriverObject->DriverUnload = FltpUnload;
    FltpGlobals.Initialized = TRUE;
    return STATUS_SUCCESS;
}

/* FltMgr stops: minifilters still registered are unregistered first (on Windows the filter
 * manager cannot be stopped at all while minifilters are loaded). */
static VOID FltpUnload(PDRIVER_OBJECT DriverObject)
{

    UNREFERENCED_PARAMETER(DriverObject);
    FltpGlobals.Initialized = FALSE;
    for (;;) {
        PFLT_FILTER filter = NULL;
        FltpAcquireLock();
        if (!IsListEmpty(&FltpGlobals.Filters))
            filter = CONTAINING_RECORD(FltpGlobals.Filters.Flink, FLT_FILTER, Links);
        FltpReleaseLock();
        if (filter == NULL) break;
        DbgPrint("fltmgr: unloading while a minifilter is registered: unregistering it\n");
        FltUnregisterFilter(filter);
    }
    FltpStopWorkers();
    FltpStopReaper();
    IoDeleteDevice(FltpGlobals.ControlDevice);
    FltpGlobals.ControlDevice = NULL;
    FltpCloseDirectories();
}

/* ---- filter registration -------------------------------------------------------------------- */

static PFLT_FILTER FltpFilterOfDriver(PDRIVER_OBJECT DriverObject)
{
    PFLT_FILTER found = NULL;
    PLIST_ENTRY entry;

    FltpAcquireLock();
    for (entry = FltpGlobals.Filters.Flink; entry != &FltpGlobals.Filters; entry = entry->Flink) {
        PFLT_FILTER filter = CONTAINING_RECORD(entry, FLT_FILTER, Links);
        if (filter->DriverObject == DriverObject && !filter->Unregistering) {
            found = filter;
            break;
        }
    }
    FltpReleaseLock();
    return found;
}

/* A minifilter's service is stopped: as on Windows, the filter manager calls the filter's
 * FilterUnloadCallback, which unregisters it. Wine's `sc stop` cannot be refused, so the unload
 * is mandatory, and a filter the callback left registered is unregistered here. */
static VOID FltpMiniFilterUnload(PDRIVER_OBJECT DriverObject)
{
    PFLT_FILTER filter = FltpFilterOfDriver(DriverObject);
    NTSTATUS status;

    if (filter == NULL) return;
    status = filter->Registration->FilterUnloadCallback(FLTFL_FILTER_UNLOAD_MANDATORY);
    if (!NT_SUCCESS(status))
        DbgPrint("fltmgr: FilterUnloadCallback returned 0x%08lX for a mandatory unload\n", (ULONG)status);
    filter = FltpFilterOfDriver(DriverObject);
    if (filter != NULL) FltUnregisterFilter(filter);
}

NTSTATUS FLTAPI FltRegisterFilter(PDRIVER_OBJECT Driver, const FLT_REGISTRATION *Registration, PFLT_FILTER *RetFilter)
{
    PFLT_FILTER filter;
    NTSTATUS status;

    if (RetFilter != NULL) *RetFilter = NULL;
    if (!FltpGlobals.Initialized) return STATUS_FLT_NOT_INITIALIZED;
    if (Driver == NULL || Registration == NULL || RetFilter == NULL ||
        Registration->Size < FIELD_OFFSET(FLT_REGISTRATION, TransactionNotificationCallback) ||
        (Registration->Version & 0xFF00) != 0x0200)
        return STATUS_INVALID_PARAMETER;

    filter = (PFLT_FILTER)ExAllocatePoolZero(NonPagedPoolNx, sizeof *filter, FLTP_POOL_TAG);
    if (filter == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    filter->DriverObject = Driver;
    filter->Registration = Registration;
    InitializeListHead(&filter->ServerPorts);
    InitializeListHead(&filter->Connections);
    KeInitializeEvent(&filter->Idle, NotificationEvent, FALSE);

    status = FltpFilterSideRegister(filter);
    if (!NT_SUCCESS(status)) {
        ExFreePoolWithTag(filter, FLTP_POOL_TAG);
        return status;
    }

    /* Without an unload callback a minifilter cannot be stopped (as on Windows). */
    if (Registration->FilterUnloadCallback != NULL) Driver->DriverUnload = FltpMiniFilterUnload;

    FltpAcquireLock();
    InsertTailList(&FltpGlobals.Filters, &filter->Links);
    FltpReleaseLock();
    *RetFilter = filter;
    return STATUS_SUCCESS;
}

VOID FLTAPI FltUnregisterFilter(PFLT_FILTER Filter)
{

    FltpAcquireLock();
    Filter->Unregistering = TRUE;
    FltpReleaseLock();

    FltpFilterSideUnregister(Filter);
    FltpClosePortsOfFilter(Filter);

    FltpAcquireLock();
    RemoveEntryList(&Filter->Links);
    FltpReleaseLock();
    FltpManageForgetFilter(Filter);
    ExFreePoolWithTag(Filter, FLTP_POOL_TAG);
}

/* ---- security descriptors ------------------------------------------------------------------- */

/* SYSTEM (S-1-5-18) and Administrators (S-1-5-32-544) get DesiredAccess, as FltBuildDefault-
 * SecurityDescriptor documents. One allocation: descriptor, ACL, then the two SIDs. Wine runs
 * every process as one user, and the emulator does not apply the descriptor to the port (see
 * emulator/README.md). */
NTSTATUS FLTAPI FltBuildDefaultSecurityDescriptor(PSECURITY_DESCRIPTOR *SecurityDescriptor,
                                                  ACCESS_MASK DesiredAccess)
{
    static const SID_IDENTIFIER_AUTHORITY ntAuthority = SECURITY_NT_AUTHORITY;
    ULONG systemSidBytes = RtlLengthRequiredSid(1);
    ULONG adminsSidBytes = RtlLengthRequiredSid(2);
    ULONG aclBytes = (ULONG)sizeof(ACL) + 2 * ((ULONG)sizeof(ACCESS_ALLOWED_ACE) - (ULONG)sizeof(ULONG)) +
                     systemSidBytes + adminsSidBytes;
    ULONG total = (ULONG)sizeof(SECURITY_DESCRIPTOR) + aclBytes + systemSidBytes + adminsSidBytes;
    PUCHAR block;
    PSECURITY_DESCRIPTOR descriptor;
    PACL acl;
    PSID systemSid;
    PSID adminsSid;
    NTSTATUS status;

    if (SecurityDescriptor == NULL) return STATUS_INVALID_PARAMETER;
    *SecurityDescriptor = NULL;
    block = (PUCHAR)ExAllocatePoolZero(PagedPool, total, FLTP_POOL_TAG);
    if (block == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    descriptor = (PSECURITY_DESCRIPTOR)block;
    acl = (PACL)(block + sizeof(SECURITY_DESCRIPTOR));
    systemSid = (PSID)((PUCHAR)acl + aclBytes);
    adminsSid = (PSID)((PUCHAR)systemSid + systemSidBytes);

    status = RtlInitializeSid(systemSid, (PSID_IDENTIFIER_AUTHORITY)&ntAuthority, 1);
    if (NT_SUCCESS(status)) {
        *RtlSubAuthoritySid(systemSid, 0) = SECURITY_LOCAL_SYSTEM_RID;
        status = RtlInitializeSid(adminsSid, (PSID_IDENTIFIER_AUTHORITY)&ntAuthority, 2);
    }
    if (NT_SUCCESS(status)) {
        *RtlSubAuthoritySid(adminsSid, 0) = SECURITY_BUILTIN_DOMAIN_RID;
        *RtlSubAuthoritySid(adminsSid, 1) = DOMAIN_ALIAS_RID_ADMINS;
        status = RtlCreateAcl(acl, aclBytes, ACL_REVISION);
    }
    if (NT_SUCCESS(status)) status = RtlAddAccessAllowedAce(acl, ACL_REVISION, DesiredAccess, systemSid);
    if (NT_SUCCESS(status)) status = RtlAddAccessAllowedAce(acl, ACL_REVISION, DesiredAccess, adminsSid);
    if (NT_SUCCESS(status)) status = RtlCreateSecurityDescriptor(descriptor, SECURITY_DESCRIPTOR_REVISION);
    if (NT_SUCCESS(status)) status = RtlSetDaclSecurityDescriptor(descriptor, TRUE, acl, FALSE);
    if (!NT_SUCCESS(status)) {
        ExFreePoolWithTag(block, FLTP_POOL_TAG);
        return status;
    }
    *SecurityDescriptor = descriptor;
    return STATUS_SUCCESS;
}

VOID FLTAPI FltFreeSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor)
{
    if (SecurityDescriptor != NULL) ExFreePoolWithTag(SecurityDescriptor, FLTP_POOL_TAG);
}
