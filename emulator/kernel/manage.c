/*
 * The management side of the emulator's fltmgr.sys: the registered filters as FilterFindFirst
 * and kin see them, and the instances FilterAttach / FilterDetach make (IOCTLs of
 * manage-protocol.h on the control device). fltlib.dll (src/fltlib-manage.c) turns the answers
 * into the information classes of fltuserstructures.h.
 *
 * What is modelled: a filter is a registered minifilter, named after its service (the driver
 * object's name without "\Driver\"), frame 0, its altitude and default instance from the
 * service's Instances key (as an INF writes them). Once it calls FltStartFiltering its default
 * instance is on every volume (automatic attachment); FilterDetach takes it off a volume and
 * FilterAttach puts it, or another instance, on one. Not modelled: InstanceSetup callbacks
 * (every attachment succeeds), legacy filters, frames other than 0.
 *
 * Records live in one list guarded by fltmgr's lock (FltpAcquireLock), with a generation count: a request reads
 * the registry outside the lock and applies its change only if nothing changed meanwhile (else it
 * starts over), so the collision checks see what they change.
 */
#include "fltmgrp.h"
#include "manage.h"
#include "manage-protocol.h"

#define FLTP_NAME_CHARS 255      /* FILTER_NAME_MAX_CHARS, INSTANCE_NAME_MAX_CHARS */
#define FLTP_VOLUME_CHARS 1024   /* VOLUME_NAME_MAX_CHARS */
#define FLTP_MANAGE_ATTEMPTS 16  /* tries to apply a change while others keep changing the records */

/* An instance attach made, or the default instance detached from a volume (Detached). */
typedef struct _FLTP_INSTANCE {
    LIST_ENTRY Links;
    PFLT_FILTER Filter;
    BOOLEAN Detached;
    UNICODE_STRING Volume;
    UNICODE_STRING Name;
    UNICODE_STRING Altitude;
    WCHAR VolumeBuffer[FLTP_VOLUME_CHARS];
    WCHAR NameBuffer[FLTP_NAME_CHARS];
    WCHAR AltitudeBuffer[FLTP_ALTITUDE_CHARS];
} FLTP_INSTANCE, *PFLTP_INSTANCE;

static LIST_ENTRY FltpInstances = { &FltpInstances, &FltpInstances };
static ULONG FltpGeneration; /* changes of FltpInstances and of the filter list seen by it */

/* A filter as a request sees it: copied under the lock, completed from the registry after. */
typedef struct _FLTP_FILTER_VIEW {
    PFLT_FILTER Filter;
    BOOLEAN Filtering;
    UNICODE_STRING Name;
    UNICODE_STRING Altitude;
    UNICODE_STRING DefaultInstance;
    WCHAR NameBuffer[FLTP_NAME_CHARS];
    WCHAR AltitudeBuffer[FLTP_ALTITUDE_CHARS];
    WCHAR DefaultInstanceBuffer[FLTP_NAME_CHARS];
} FLTP_FILTER_VIEW, *PFLTP_FILTER_VIEW;

typedef struct _FLTP_VIEW {
    ULONG Generation;
    ULONG FilterCount;
    PFLTP_FILTER_VIEW Filters;
    ULONG InstanceCount;
    PFLTP_INSTANCE Instances; /* copies: Links and the strings' buffers are the copy's own */
} FLTP_VIEW, *PFLTP_VIEW;

BOOLEAN FltpIsManageIoctl(ULONG Code)
{
    return Code == IOCTL_FLTEMU_QUERY_FILTERS || Code == IOCTL_FLTEMU_ATTACH || Code == IOCTL_FLTEMU_DETACH;
}

/* ---- strings ------------------------------------------------------------------------------ */

static VOID FltpSetString(PUNICODE_STRING String, PWCH Buffer, USHORT CapacityChars, PCWCH Text, USHORT Bytes)
{
    USHORT bytes = Bytes > CapacityChars * sizeof(WCHAR) ? (USHORT)(CapacityChars * sizeof(WCHAR)) : Bytes;
    if (bytes != 0) RtlCopyMemory(Buffer, Text, bytes);
    String->Buffer = Buffer;
    String->Length = bytes;
    String->MaximumLength = (USHORT)(CapacityChars * sizeof(WCHAR));
}

static VOID FltpCopyInstance(PFLTP_INSTANCE To, const FLTP_INSTANCE *From)
{
    To->Filter = From->Filter;
    To->Detached = From->Detached;
    FltpSetString(&To->Volume, To->VolumeBuffer, FLTP_VOLUME_CHARS, From->Volume.Buffer, From->Volume.Length);
    FltpSetString(&To->Name, To->NameBuffer, FLTP_NAME_CHARS, From->Name.Buffer, From->Name.Length);
    FltpSetString(&To->Altitude, To->AltitudeBuffer, FLTP_ALTITUDE_CHARS, From->Altitude.Buffer, From->Altitude.Length);
}

static BOOLEAN FltpSame(PCUNICODE_STRING A, PCUNICODE_STRING B)
{
    return RtlEqualUnicodeString(A, B, TRUE);
}

/* ---- the registry: a filter's Instances key ----------------------------------------------- */

/* Reads the REG_SZ `Value` of the key `Path` into String (empty when missing). */
static VOID FltpReadRegistryString(PCUNICODE_STRING Path, PCWSTR Value, PUNICODE_STRING String)
{
    UCHAR buffer[sizeof(KEY_VALUE_PARTIAL_INFORMATION) + FLTP_NAME_CHARS * sizeof(WCHAR)];
    PKEY_VALUE_PARTIAL_INFORMATION information = (PKEY_VALUE_PARTIAL_INFORMATION)buffer;
    OBJECT_ATTRIBUTES attributes;
    UNICODE_STRING valueName;
    HANDLE key;
    ULONG returned = 0;
    ULONG bytes;
    NTSTATUS status;

    String->Length = 0;
    InitializeObjectAttributes(&attributes, (PUNICODE_STRING)Path, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, NULL, NULL);
    if (!NT_SUCCESS(ZwOpenKey(&key, KEY_QUERY_VALUE, &attributes))) return;
    RtlInitUnicodeString(&valueName, Value);
    status = ZwQueryValueKey(key, &valueName, KeyValuePartialInformation, information, sizeof buffer, &returned);
    ZwClose(key);
    if (!NT_SUCCESS(status) || information->Type != REG_SZ) return;
    bytes = information->DataLength;
    /* Without its terminator, and never more than the string holds. */
    while (bytes >= 2 && ((PCWCH)information->Data)[bytes / 2 - 1] == L'\0') bytes -= 2;
    if (bytes > String->MaximumLength) bytes = String->MaximumLength;
    RtlCopyMemory(String->Buffer, information->Data, bytes);
    String->Length = (USHORT)(bytes & ~1u);
}

/* Where a service's Instances key is: under Parameters (Windows 11 24H2) or the service key
 * (earlier versions); an INF writes both, and the first that answers counts (as in filters.c). */
static const PCWSTR FltpInstancesLayouts[] = { L"\\Parameters\\Instances", L"\\Instances" };

/* \Registry\Machine\System\CurrentControlSet\Services\<Service><Layout>[\<Instance>] */
static BOOLEAN FltpInstancesKeyPath(PCUNICODE_STRING Service, PCWSTR Layout, PCUNICODE_STRING Instance, PUNICODE_STRING Path)
{
    Path->Length = 0;
    if (!NT_SUCCESS(RtlAppendUnicodeToString(Path, L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\")) ||
        !NT_SUCCESS(RtlAppendUnicodeStringToString(Path, Service)) || !NT_SUCCESS(RtlAppendUnicodeToString(Path, Layout)))
        return FALSE;
    if (Instance == NULL) return TRUE;
    return NT_SUCCESS(RtlAppendUnicodeToString(Path, L"\\")) && NT_SUCCESS(RtlAppendUnicodeStringToString(Path, Instance));
}

/* The Altitude of the filter's instance `Instance` in its Instances key (empty when none). */
static VOID FltpInstanceAltitude(PCUNICODE_STRING Service, PCUNICODE_STRING Instance, PUNICODE_STRING Altitude)
{
    WCHAR pathBuffer[160 + 2 * FLTP_NAME_CHARS];
    UNICODE_STRING path = { 0, sizeof pathBuffer, pathBuffer };
    ULONG i;

    Altitude->Length = 0;
    for (i = 0; i < ARRAYSIZE(FltpInstancesLayouts) && Altitude->Length == 0; ++i)
        if (FltpInstancesKeyPath(Service, FltpInstancesLayouts[i], Instance, &path)) FltpReadRegistryString(&path, L"Altitude", Altitude);
}

static VOID FltpReadFilterRegistry(PFLTP_FILTER_VIEW Filter)
{
    WCHAR pathBuffer[160 + 2 * FLTP_NAME_CHARS];
    UNICODE_STRING path = { 0, sizeof pathBuffer, pathBuffer };
    ULONG i;

    Filter->DefaultInstance.Length = 0;
    Filter->Altitude.Length = 0;
    for (i = 0; i < ARRAYSIZE(FltpInstancesLayouts) && Filter->DefaultInstance.Length == 0; ++i)
        if (FltpInstancesKeyPath(&Filter->Name, FltpInstancesLayouts[i], NULL, &path))
            FltpReadRegistryString(&path, L"DefaultInstance", &Filter->DefaultInstance);
    if (Filter->DefaultInstance.Length != 0) FltpInstanceAltitude(&Filter->Name, &Filter->DefaultInstance, &Filter->Altitude);
}

/* ---- views -------------------------------------------------------------------------------- */

static VOID FltpFreeView(PFLTP_VIEW View)
{
    if (View->Filters != NULL) ExFreePoolWithTag(View->Filters, FLTP_POOL_TAG);
    if (View->Instances != NULL) ExFreePoolWithTag(View->Instances, FLTP_POOL_TAG);
    RtlZeroMemory(View, sizeof *View);
}

/* The service name of a registered filter: its driver object's name after the last '\'. */
static VOID FltpFilterName(PFLT_FILTER Filter, PFLTP_FILTER_VIEW View)
{
    PCUNICODE_STRING driverName = &Filter->DriverObject->DriverName;
    USHORT chars = driverName->Length / sizeof(WCHAR);
    USHORT start = chars;

    while (start > 0 && driverName->Buffer[start - 1] != L'\\') --start;
    FltpSetString(&View->Name, View->NameBuffer, FLTP_NAME_CHARS, driverName->Buffer + start,
                  (USHORT)((chars - start) * sizeof(WCHAR)));
}

/* Copies the filters and records (under the lock), then reads each filter's Instances key. */
static NTSTATUS FltpTakeView(PFLTP_VIEW View)
{
    ULONG filterCapacity = 8;
    ULONG instanceCapacity = 8;

    RtlZeroMemory(View, sizeof *View);
    for (;;) {
        ULONG filters = 0;
        ULONG instances = 0;
        PLIST_ENTRY entry;

        View->Filters = (PFLTP_FILTER_VIEW)ExAllocatePoolZero(NonPagedPoolNx, filterCapacity * sizeof(FLTP_FILTER_VIEW), FLTP_POOL_TAG);
        View->Instances = (PFLTP_INSTANCE)ExAllocatePoolZero(NonPagedPoolNx, instanceCapacity * sizeof(FLTP_INSTANCE), FLTP_POOL_TAG);
        if (View->Filters == NULL || View->Instances == NULL) {
            FltpFreeView(View);
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        FltpAcquireLock();
        for (entry = FltpGlobals.Filters.Flink; entry != &FltpGlobals.Filters; entry = entry->Flink) {
            PFLT_FILTER filter = CONTAINING_RECORD(entry, FLT_FILTER, Links);
            if (filter->Unregistering) continue;
            if (filters < filterCapacity) {
                View->Filters[filters].Filter = filter;
                View->Filters[filters].Filtering = filter->Side.Filtering;
                FltpFilterName(filter, &View->Filters[filters]);
            }
            ++filters;
        }
        for (entry = FltpInstances.Flink; entry != &FltpInstances; entry = entry->Flink) {
            if (instances < instanceCapacity) FltpCopyInstance(&View->Instances[instances], CONTAINING_RECORD(entry, FLTP_INSTANCE, Links));
            ++instances;
        }
        View->Generation = FltpGeneration;
        FltpReleaseLock();
        if (filters <= filterCapacity && instances <= instanceCapacity) {
            ULONG i;
            View->FilterCount = filters;
            View->InstanceCount = instances;
            for (i = 0; i < filters; ++i) {
                PFLTP_FILTER_VIEW filter = &View->Filters[i];
                filter->Altitude.Buffer = filter->AltitudeBuffer;
                filter->Altitude.MaximumLength = sizeof filter->AltitudeBuffer;
                filter->DefaultInstance.Buffer = filter->DefaultInstanceBuffer;
                filter->DefaultInstance.MaximumLength = sizeof filter->DefaultInstanceBuffer;
                FltpReadFilterRegistry(filter);
            }
            return STATUS_SUCCESS;
        }
        FltpFreeView(View);
        filterCapacity = filters + 8;
        instanceCapacity = instances + 8;
    }
}

static PFLTP_FILTER_VIEW FltpFindFilter(PFLTP_VIEW View, PCUNICODE_STRING Name)
{
    ULONG i;
    for (i = 0; i < View->FilterCount; ++i)
        if (FltpSame(&View->Filters[i].Name, Name)) return &View->Filters[i];
    return NULL;
}

/* The record of `Filter` on `Volume` named `Name` (Detached or not as asked), or NULL. */
static PFLTP_INSTANCE FltpFindRecord(PFLTP_VIEW View, PFLT_FILTER Filter, PCUNICODE_STRING Volume, PCUNICODE_STRING Name,
                                     BOOLEAN Detached)
{
    ULONG i;
    for (i = 0; i < View->InstanceCount; ++i) {
        PFLTP_INSTANCE record = &View->Instances[i];
        if (record->Filter == Filter && record->Detached == Detached && FltpSame(&record->Volume, Volume) &&
            (Name == NULL || FltpSame(&record->Name, Name)))
            return record;
    }
    return NULL;
}

/* Whether `Filter`'s default instance is on `Volume`: filtering, and not detached from it. */
static BOOLEAN FltpDefaultAttached(PFLTP_VIEW View, PFLTP_FILTER_VIEW Filter, PCUNICODE_STRING Volume)
{
    return Filter->Filtering && Filter->DefaultInstance.Length != 0 &&
           FltpFindRecord(View, Filter->Filter, Volume, NULL, TRUE) == NULL;
}

/* Whether an instance on `Volume` has `Altitude` (any filter's), or one of `Filter` is named `Name`. */
static NTSTATUS FltpCheckCollisions(PFLTP_VIEW View, PFLTP_FILTER_VIEW Filter, PCUNICODE_STRING Volume,
                                    PCUNICODE_STRING Name, PCUNICODE_STRING Altitude)
{
    ULONG i;

    for (i = 0; i < View->FilterCount; ++i) {
        PFLTP_FILTER_VIEW other = &View->Filters[i];
        if (!FltpDefaultAttached(View, other, Volume)) continue;
        if (other == Filter && FltpSame(&other->DefaultInstance, Name)) return STATUS_FLT_INSTANCE_NAME_COLLISION;
        if (FltpSame(&other->Altitude, Altitude)) return STATUS_FLT_INSTANCE_ALTITUDE_COLLISION;
    }
    for (i = 0; i < View->InstanceCount; ++i) {
        PFLTP_INSTANCE record = &View->Instances[i];
        if (record->Detached || !FltpSame(&record->Volume, Volume)) continue;
        if (record->Filter == Filter->Filter && FltpSame(&record->Name, Name)) return STATUS_FLT_INSTANCE_NAME_COLLISION;
        if (FltpSame(&record->Altitude, Altitude)) return STATUS_FLT_INSTANCE_ALTITUDE_COLLISION;
    }
    return STATUS_SUCCESS;
}

/* ---- changes -------------------------------------------------------------------------------- */

/* What a request does to the records, decided on a view. */
typedef struct _FLTP_CHANGE {
    PFLT_FILTER Filter;
    PFLTP_INSTANCE Remove;  /* a copy in the view: the record to take out (same fields) */
    PFLTP_INSTANCE Insert;  /* allocated: the record to put in */
} FLTP_CHANGE;

static BOOLEAN FltpSameRecord(const FLTP_INSTANCE *A, const FLTP_INSTANCE *B)
{
    return A->Filter == B->Filter && A->Detached == B->Detached && FltpSame(&A->Volume, &B->Volume) &&
           FltpSame(&A->Name, &B->Name);
}

/* Applies `Change` if nothing changed since `View` was taken and the filter is still registered:
 * STATUS_SUCCESS, or STATUS_RETRY to start over. The removed record is freed. */
static NTSTATUS FltpApply(PFLTP_VIEW View, FLTP_CHANGE *Change)
{
    PFLTP_INSTANCE removed = NULL;
    BOOLEAN registered = FALSE;
    PLIST_ENTRY entry;

    FltpAcquireLock();
    if (FltpGeneration != View->Generation) {
        FltpReleaseLock();
        return STATUS_RETRY;
    }
    for (entry = FltpGlobals.Filters.Flink; entry != &FltpGlobals.Filters; entry = entry->Flink)
        if (CONTAINING_RECORD(entry, FLT_FILTER, Links) == Change->Filter && !Change->Filter->Unregistering) registered = TRUE;
    if (!registered) {
        FltpReleaseLock();
        return STATUS_FLT_FILTER_NOT_FOUND;
    }
    if (Change->Remove != NULL) {
        for (entry = FltpInstances.Flink; entry != &FltpInstances; entry = entry->Flink) {
            PFLTP_INSTANCE record = CONTAINING_RECORD(entry, FLTP_INSTANCE, Links);
            if (FltpSameRecord(record, Change->Remove)) {
                RemoveEntryList(&record->Links);
                removed = record;
                break;
            }
        }
    }
    if (Change->Insert != NULL) {
        InsertTailList(&FltpInstances, &Change->Insert->Links);
        Change->Insert = NULL;
    }
    ++FltpGeneration;
    FltpReleaseLock();
    if (removed != NULL) ExFreePoolWithTag(removed, FLTP_POOL_TAG);
    return STATUS_SUCCESS;
}

static PFLTP_INSTANCE FltpNewRecord(PFLT_FILTER Filter, BOOLEAN Detached, PCUNICODE_STRING Volume, PCUNICODE_STRING Name,
                                    PCUNICODE_STRING Altitude)
{
    PFLTP_INSTANCE record = (PFLTP_INSTANCE)ExAllocatePoolZero(NonPagedPoolNx, sizeof *record, FLTP_POOL_TAG);

    if (record == NULL) return NULL;
    record->Filter = Filter;
    record->Detached = Detached;
    FltpSetString(&record->Volume, record->VolumeBuffer, FLTP_VOLUME_CHARS, Volume->Buffer, Volume->Length);
    FltpSetString(&record->Name, record->NameBuffer, FLTP_NAME_CHARS, Name->Buffer, Name->Length);
    FltpSetString(&record->Altitude, record->AltitudeBuffer, FLTP_ALTITUDE_CHARS, Altitude->Buffer, Altitude->Length);
    return record;
}

VOID FltpManageForgetFilter(PFLT_FILTER Filter)
{
    LIST_ENTRY forgotten;
    PLIST_ENTRY entry;

    InitializeListHead(&forgotten);
    FltpAcquireLock();
    for (entry = FltpInstances.Flink; entry != &FltpInstances;) {
        PFLTP_INSTANCE record = CONTAINING_RECORD(entry, FLTP_INSTANCE, Links);
        entry = entry->Flink;
        if (record->Filter != Filter) continue;
        RemoveEntryList(&record->Links);
        InsertTailList(&forgotten, &record->Links);
    }
    ++FltpGeneration;
    FltpReleaseLock();
    while (!IsListEmpty(&forgotten)) ExFreePoolWithTag(CONTAINING_RECORD(RemoveHeadList(&forgotten), FLTP_INSTANCE, Links), FLTP_POOL_TAG);
}

/* Whether `FileName` is on `Volume`: the volume's name followed by a backslash or nothing
 * (\Device\HarddiskVolume1 is not the volume of \Device\HarddiskVolume10\x). */
static BOOLEAN FltpIsOnVolume(PCUNICODE_STRING FileName, PCUNICODE_STRING Volume)
{
    UNICODE_STRING prefix;

    if (Volume->Length == 0 || FileName->Length < Volume->Length) return FALSE;
    prefix.Buffer = FileName->Buffer;
    prefix.Length = prefix.MaximumLength = Volume->Length;
    return FltpSame(&prefix, Volume) &&
           (FileName->Length == Volume->Length || FileName->Buffer[Volume->Length / sizeof(WCHAR)] == L'\\');
}

BOOLEAN FltpHasInstanceForLocked(PFLT_FILTER Filter, PCUNICODE_STRING FileName)
{
    BOOLEAN defaultDetached = FALSE;
    PLIST_ENTRY entry;

    for (entry = FltpInstances.Flink; entry != &FltpInstances; entry = entry->Flink) {
        PFLTP_INSTANCE record = CONTAINING_RECORD(entry, FLTP_INSTANCE, Links);
        if (record->Filter != Filter || !FltpIsOnVolume(FileName, &record->Volume)) continue;
        if (!record->Detached) return TRUE;
        defaultDetached = TRUE;
    }
    return Filter->Side.Filtering && !defaultDetached;
}

/* ---- requests ------------------------------------------------------------------------------- */

/* The strings of a FLTEMU_INSTANCE_REQUEST, checked against the input's size. */
typedef struct _FLTP_REQUEST {
    UNICODE_STRING Filter;
    UNICODE_STRING Volume;
    UNICODE_STRING Instance;
    UNICODE_STRING Altitude;
} FLTP_REQUEST;

static NTSTATUS FltpReadRequest(PIRP Irp, PIO_STACK_LOCATION Stack, FLTP_REQUEST *Request)
{
    const FLTEMU_INSTANCE_REQUEST *header = (const FLTEMU_INSTANCE_REQUEST *)Irp->AssociatedIrp.SystemBuffer;
    ULONG inputBytes = Stack->Parameters.DeviceIoControl.InputBufferLength;
    PWCH text;
    ULONG total;

    if (header == NULL || inputBytes < sizeof *header) return STATUS_INVALID_PARAMETER;
    total = (ULONG)sizeof *header + header->FilterBytes + header->VolumeBytes + header->InstanceBytes + header->AltitudeBytes;
    if (total > inputBytes || ((header->FilterBytes | header->VolumeBytes | header->InstanceBytes | header->AltitudeBytes) & 1) != 0 ||
        header->FilterBytes == 0 || header->VolumeBytes == 0 || header->FilterBytes > FLTP_NAME_CHARS * sizeof(WCHAR) ||
        header->InstanceBytes > FLTP_NAME_CHARS * sizeof(WCHAR) || header->VolumeBytes > FLTP_VOLUME_CHARS * sizeof(WCHAR))
        return STATUS_INVALID_PARAMETER;
    text = (PWCH)(header + 1);
    Request->Filter.Buffer = text;
    Request->Filter.Length = Request->Filter.MaximumLength = header->FilterBytes;
    Request->Volume.Buffer = text + header->FilterBytes / sizeof(WCHAR);
    Request->Volume.Length = Request->Volume.MaximumLength = header->VolumeBytes;
    Request->Instance.Buffer = Request->Volume.Buffer + header->VolumeBytes / sizeof(WCHAR);
    Request->Instance.Length = Request->Instance.MaximumLength = header->InstanceBytes;
    Request->Altitude.Buffer = Request->Instance.Buffer + header->InstanceBytes / sizeof(WCHAR);
    Request->Altitude.Length = Request->Altitude.MaximumLength = header->AltitudeBytes;
    if (Request->Altitude.Length != 0 && !FltpIsAltitude(&Request->Altitude)) return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

/* Decides an attach on `View`. *Created names the instance. */
static NTSTATUS FltpDecideAttach(PFLTP_VIEW View, FLTP_REQUEST *Request, FLTP_CHANGE *Change, PUNICODE_STRING Created)
{
    PFLTP_FILTER_VIEW filter = FltpFindFilter(View, &Request->Filter);
    WCHAR altitudeBuffer[FLTP_ALTITUDE_CHARS];
    UNICODE_STRING altitude = { 0, sizeof altitudeBuffer, altitudeBuffer };
    PCUNICODE_STRING name;
    NTSTATUS status;

    if (filter == NULL) return STATUS_FLT_FILTER_NOT_FOUND;
    name = Request->Instance.Length != 0 ? &Request->Instance : &filter->DefaultInstance;
    if (name->Length == 0) return STATUS_OBJECT_NAME_NOT_FOUND;
    if (Request->Altitude.Length != 0) RtlCopyUnicodeString(&altitude, &Request->Altitude);
    else FltpInstanceAltitude(&filter->Name, name, &altitude);
    if (altitude.Length == 0) return STATUS_OBJECT_NAME_NOT_FOUND;

    status = FltpCheckCollisions(View, filter, &Request->Volume, name, &altitude);
    if (!NT_SUCCESS(status)) return status;
    Change->Filter = filter->Filter;
    RtlCopyUnicodeString(Created, name);
    /* The default instance back where it was detached: the detachment goes. */
    if (FltpSame(name, &filter->DefaultInstance) && FltpSame(&altitude, &filter->Altitude)) {
        Change->Remove = FltpFindRecord(View, filter->Filter, &Request->Volume, NULL, TRUE);
        if (Change->Remove != NULL && filter->Filtering) return STATUS_SUCCESS;
        Change->Remove = NULL;
    }
    Change->Insert = FltpNewRecord(filter->Filter, FALSE, &Request->Volume, name, &altitude);
    return Change->Insert == NULL ? STATUS_INSUFFICIENT_RESOURCES : STATUS_SUCCESS;
}

/* Decides a detach on `View`. */
static NTSTATUS FltpDecideDetach(PFLTP_VIEW View, FLTP_REQUEST *Request, FLTP_CHANGE *Change)
{
    PFLTP_FILTER_VIEW filter = FltpFindFilter(View, &Request->Filter);
    PCUNICODE_STRING name;

    if (filter == NULL) return STATUS_FLT_FILTER_NOT_FOUND;
    name = Request->Instance.Length != 0 ? &Request->Instance : &filter->DefaultInstance;
    Change->Filter = filter->Filter;
    Change->Remove = FltpFindRecord(View, filter->Filter, &Request->Volume, name, FALSE);
    if (Change->Remove != NULL) return STATUS_SUCCESS;
    if (!FltpSame(name, &filter->DefaultInstance) || !FltpDefaultAttached(View, filter, &Request->Volume))
        return STATUS_FLT_INSTANCE_NOT_FOUND;
    Change->Insert = FltpNewRecord(filter->Filter, TRUE, &Request->Volume, name, &filter->Altitude);
    return Change->Insert == NULL ? STATUS_INSUFFICIENT_RESOURCES : STATUS_SUCCESS;
}

static NTSTATUS FltpAttachOrDetach(PIRP Irp, PIO_STACK_LOCATION Stack, BOOLEAN Attach)
{
    WCHAR createdBuffer[FLTP_NAME_CHARS];
    UNICODE_STRING created = { 0, sizeof createdBuffer, createdBuffer };
    FLTP_REQUEST request;
    NTSTATUS status = FltpReadRequest(Irp, Stack, &request);
    ULONG attempt;

    if (!NT_SUCCESS(status)) return status;
    /* The request's strings stay in the system buffer until the created name goes there, last. */
    for (attempt = 0; attempt < FLTP_MANAGE_ATTEMPTS; ++attempt) {
        FLTP_CHANGE change = { NULL, NULL, NULL };
        FLTP_VIEW view;

        status = FltpTakeView(&view);
        if (!NT_SUCCESS(status)) return status;
        status = Attach ? FltpDecideAttach(&view, &request, &change, &created) : FltpDecideDetach(&view, &request, &change);
        if (NT_SUCCESS(status)) status = FltpApply(&view, &change);
        if (change.Insert != NULL) ExFreePoolWithTag(change.Insert, FLTP_POOL_TAG);
        FltpFreeView(&view);
        if (status != STATUS_RETRY) break;
    }
    if (status == STATUS_RETRY) status = STATUS_DEVICE_BUSY;
    if (!NT_SUCCESS(status) || !Attach) return status;
    if (Stack->Parameters.DeviceIoControl.OutputBufferLength < created.Length) return STATUS_BUFFER_TOO_SMALL;
    RtlCopyMemory(Irp->AssociatedIrp.SystemBuffer, created.Buffer, created.Length);
    Irp->IoStatus.Information = created.Length;
    return STATUS_SUCCESS;
}

/* Appends `String` at `*At` (no terminator). */
static VOID FltpPut(PUCHAR *At, PCUNICODE_STRING String)
{
    if (String->Length != 0) RtlCopyMemory(*At, String->Buffer, String->Length);
    *At += String->Length;
}

static ULONG FltpFilterRecordBytes(PFLTP_VIEW View, PFLTP_FILTER_VIEW Filter, ULONG *Instances)
{
    ULONG bytes = FLTEMU_RECORD_ALIGN((ULONG)sizeof(FLTEMU_FILTER_RECORD) + Filter->Name.Length + Filter->Altitude.Length +
                                      Filter->DefaultInstance.Length);
    ULONG i;

    *Instances = 0;
    for (i = 0; i < View->InstanceCount; ++i) {
        PFLTP_INSTANCE record = &View->Instances[i];
        if (record->Filter != Filter->Filter) continue;
        bytes += FLTEMU_RECORD_ALIGN((ULONG)sizeof(FLTEMU_INSTANCE_RECORD) + record->Volume.Length + record->Name.Length +
                                     record->Altitude.Length);
        ++*Instances;
    }
    return bytes;
}

static NTSTATUS FltpQueryFilters(PIRP Irp, PIO_STACK_LOCATION Stack)
{
    ULONG outputBytes = Stack->Parameters.DeviceIoControl.OutputBufferLength;
    PUCHAR output = (PUCHAR)Irp->AssociatedIrp.SystemBuffer;
    FLTEMU_FILTER_LIST *list = (FLTEMU_FILTER_LIST *)output;
    ULONG needed = sizeof *list;
    FLTP_VIEW view;
    PUCHAR at;
    ULONG i;
    NTSTATUS status;

    if (output == NULL || outputBytes < sizeof *list) return STATUS_BUFFER_TOO_SMALL;
    status = FltpTakeView(&view);
    if (!NT_SUCCESS(status)) return status;
    for (i = 0; i < view.FilterCount; ++i) {
        ULONG instances;
        needed += FltpFilterRecordBytes(&view, &view.Filters[i], &instances);
    }
    RtlZeroMemory(output, needed <= outputBytes ? needed : sizeof *list);
    list->BytesNeeded = needed;
    list->FilterCount = view.FilterCount;
    if (needed > outputBytes) {
        Irp->IoStatus.Information = sizeof *list;
        FltpFreeView(&view);
        return STATUS_SUCCESS;
    }
    at = output + sizeof *list;
    for (i = 0; i < view.FilterCount; ++i) {
        PFLTP_FILTER_VIEW filter = &view.Filters[i];
        FLTEMU_FILTER_RECORD *record = (FLTEMU_FILTER_RECORD *)at;
        PUCHAR strings;
        ULONG j;

        record->RecordBytes = FltpFilterRecordBytes(&view, filter, &record->InstanceCount);
        record->Filtering = filter->Filtering;
        record->NameBytes = filter->Name.Length;
        record->AltitudeBytes = filter->Altitude.Length;
        record->DefaultInstanceBytes = filter->DefaultInstance.Length;
        strings = (PUCHAR)(record + 1);
        FltpPut(&strings, &filter->Name);
        FltpPut(&strings, &filter->Altitude);
        FltpPut(&strings, &filter->DefaultInstance);
        at += FLTEMU_RECORD_ALIGN((ULONG)(strings - at));
        for (j = 0; j < view.InstanceCount; ++j) {
            PFLTP_INSTANCE instance = &view.Instances[j];
            FLTEMU_INSTANCE_RECORD *out = (FLTEMU_INSTANCE_RECORD *)at;
            if (instance->Filter != filter->Filter) continue;
            out->Detached = instance->Detached;
            out->VolumeBytes = instance->Volume.Length;
            out->NameBytes = instance->Name.Length;
            out->AltitudeBytes = instance->Altitude.Length;
            strings = (PUCHAR)(out + 1);
            FltpPut(&strings, &instance->Volume);
            FltpPut(&strings, &instance->Name);
            FltpPut(&strings, &instance->Altitude);
            out->RecordBytes = FLTEMU_RECORD_ALIGN((ULONG)(strings - at));
            at += out->RecordBytes;
        }
    }
    Irp->IoStatus.Information = needed;
    FltpFreeView(&view);
    return STATUS_SUCCESS;
}

NTSTATUS FltpManageDeviceControl(PIRP Irp, PIO_STACK_LOCATION Stack)
{
    NTSTATUS status;

    Irp->IoStatus.Information = 0;
    switch (Stack->Parameters.DeviceIoControl.IoControlCode) {
    case IOCTL_FLTEMU_QUERY_FILTERS:
        status = FltpQueryFilters(Irp, Stack);
        break;
    case IOCTL_FLTEMU_ATTACH:
        status = FltpAttachOrDetach(Irp, Stack, TRUE);
        break;
    default:
        status = FltpAttachOrDetach(Irp, Stack, FALSE);
        break;
    }
    Irp->IoStatus.Status = status;
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
    return status;
}
