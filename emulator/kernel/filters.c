/*
 * The filter-callback side of the emulator's fltmgr.sys: what a registration declares (operation
 * callbacks, the altitude from the service's Instances key), FltStartFiltering, opens injected
 * through the control device (IOCTL_FLTEMU_INJECT_CREATE) turned into IRP_MJ_CREATE callbacks,
 * and the file-name and requestor calls those callbacks make.
 *
 * Wine sends no file system I/O through drivers, so the only operation a filter ever sees is an
 * injected create. For one injection, the pre-create callback of every filtering filter runs, from
 * the highest altitude down, with a FLT_CALLBACK_DATA built from the request (RequestorMode
 * UserMode, Iopb->TargetFileObject with the opened name, Parameters.Create). A filter that returns
 * FLT_PREOP_COMPLETE ends the walk with its IoStatus; otherwise the "file system" opens the file
 * (STATUS_SUCCESS, FILE_OPENED). Then the post-create callbacks of the filters that asked for one
 * run, lowest altitude first, and the final IoStatus.Status is the verdict returned to the caller.
 * Callbacks run on a work item (they may wait seconds for an agent), never in dispatch.
 * Not emulated: FLT_PREOP_PENDING (the open fails with STATUS_NOT_SUPPORTED), instances and
 * volumes (FltObjects->Instance and ->Volume are NULL), contexts, and Data->Thread (NULL: the
 * requestor is another process; FltGetRequestorProcessId names it).
 */
#include "fltmgrp.h"
#include "manage.h"

#define FLTP_CREATE_MAGIC 0x74437446u /* "FtCt" */
/* Filters called for one injected open; more filtering filters than this are an error. */
#define FLTP_MAX_FILTERS 32

/* ---- registration --------------------------------------------------------------------------- */

/* The service name is the last component of the driver's name (\Driver\NAME, \FileSystem\NAME). */
static VOID FltpServiceName(PDRIVER_OBJECT Driver, PUNICODE_STRING Service)
{
    USHORT chars = (USHORT)(Driver->DriverName.Length / sizeof(WCHAR));
    USHORT start = chars;

    while (start > 0 && Driver->DriverName.Buffer[start - 1] != L'\\') start--;
    Service->Buffer = Driver->DriverName.Buffer + start;
    Service->Length = (USHORT)((chars - start) * sizeof(WCHAR));
    Service->MaximumLength = Service->Length;
}

static NTSTATUS FltpOpenKey(PCUNICODE_STRING Name, HANDLE *Key)
{
    OBJECT_ATTRIBUTES attributes;

    InitializeObjectAttributes(&attributes, (PUNICODE_STRING)Name, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE, NULL, NULL);
    return ZwOpenKey(Key, KEY_READ, &attributes);
}

/* A REG_SZ value of at most Capacity - 1 characters, NUL-terminated into Buffer. */
static NTSTATUS FltpQueryString(HANDLE Key, PCWSTR ValueName, WCHAR *Buffer, ULONG Capacity)
{
    UCHAR storage[FIELD_OFFSET(KEY_VALUE_PARTIAL_INFORMATION, Data) + 256 * sizeof(WCHAR)];
    PKEY_VALUE_PARTIAL_INFORMATION value = (PKEY_VALUE_PARTIAL_INFORMATION)storage;
    UNICODE_STRING name;
    ULONG length;
    ULONG chars;
    NTSTATUS status;

    RtlInitUnicodeString(&name, ValueName);
    status = ZwQueryValueKey(Key, &name, KeyValuePartialInformation, value, sizeof storage, &length);
    if (!NT_SUCCESS(status)) return status;
    if (value->Type != REG_SZ) return STATUS_OBJECT_TYPE_MISMATCH;
    chars = value->DataLength / (ULONG)sizeof(WCHAR);
    if (chars > 0 && ((const WCHAR *)value->Data)[chars - 1] == L'\0') chars--;
    if (chars == 0 || chars >= Capacity) return STATUS_INVALID_PARAMETER;
    RtlCopyMemory(Buffer, value->Data, chars * sizeof(WCHAR));
    Buffer[chars] = L'\0';
    return STATUS_SUCCESS;
}

/* The altitude of the service's default instance: Instances\DefaultInstance names an instance
 * key whose Altitude value it is. InstancesPath: the Instances key (Windows 11 24H2 reads it
 * under Parameters, earlier versions under the service key; an INF writes both). */
static NTSTATUS FltpReadAltitudeFrom(PCUNICODE_STRING InstancesPath, WCHAR *Altitude)
{
    WCHAR instance[128];
    WCHAR pathBuffer[512];
    UNICODE_STRING path = {0, sizeof pathBuffer, pathBuffer};
    HANDLE key;
    NTSTATUS status;

    status = FltpOpenKey(InstancesPath, &key);
    if (!NT_SUCCESS(status)) return status;
    status = FltpQueryString(key, L"DefaultInstance", instance, ARRAYSIZE(instance));
    ZwClose(key);
    if (!NT_SUCCESS(status)) return status;

    status = RtlAppendUnicodeStringToString(&path, InstancesPath);
    if (NT_SUCCESS(status)) status = RtlAppendUnicodeToString(&path, L"\\");
    if (NT_SUCCESS(status)) status = RtlAppendUnicodeToString(&path, instance);
    if (!NT_SUCCESS(status)) return status;
    status = FltpOpenKey(&path, &key);
    if (!NT_SUCCESS(status)) return status;
    status = FltpQueryString(key, L"Altitude", Altitude, FLTP_ALTITUDE_CHARS + 1);
    ZwClose(key);
    return status;
}

BOOLEAN FltpIsAltitude(PCUNICODE_STRING Altitude)
{
    USHORT chars = Altitude->Length / sizeof(WCHAR);
    USHORT i;
    BOOLEAN dot = FALSE;

    if (chars == 0 || chars > FLTP_ALTITUDE_CHARS) return FALSE;
    for (i = 0; i < chars; i++) {
        WCHAR c = Altitude->Buffer[i];
        if (c == L'.' && !dot && i > 0 && i + 1 < chars)
            dot = TRUE;
        else if (c < L'0' || c > L'9')
            return FALSE;
    }
    return TRUE;
}

static NTSTATUS FltpReadAltitude(PDRIVER_OBJECT Driver, WCHAR *Altitude)
{
    static const PCWSTR layouts[] = {L"\\Parameters\\Instances", L"\\Instances"};
    WCHAR pathBuffer[384];
    UNICODE_STRING path = {0, sizeof pathBuffer, pathBuffer};
    UNICODE_STRING service;
    NTSTATUS status = STATUS_OBJECT_NAME_NOT_FOUND;
    ULONG i;

    FltpServiceName(Driver, &service);
    for (i = 0; i < ARRAYSIZE(layouts); i++) {
        path.Length = 0;
        status = RtlAppendUnicodeToString(&path, L"\\Registry\\Machine\\System\\CurrentControlSet\\Services\\");
        if (NT_SUCCESS(status)) status = RtlAppendUnicodeStringToString(&path, &service);
        if (NT_SUCCESS(status)) status = RtlAppendUnicodeToString(&path, layouts[i]);
        if (NT_SUCCESS(status)) status = FltpReadAltitudeFrom(&path, Altitude);
        if (NT_SUCCESS(status)) {
            UNICODE_STRING altitude;
            RtlInitUnicodeString(&altitude, Altitude);
            return FltpIsAltitude(&altitude) ? STATUS_SUCCESS : STATUS_INVALID_PARAMETER;
        }
    }
    return status;
}

NTSTATUS FltpFilterSideRegister(PFLT_FILTER Filter)
{
    FLTP_FILTER_SIDE *side = &Filter->Side;
    const FLT_OPERATION_REGISTRATION *operation = Filter->Registration->OperationRegistration;
    NTSTATUS status;

    /* Major functions are IRP_MJ_* (0 .. IRP_MJ_MAXIMUM_FUNCTION) or the filter manager's own
     * negative ones ((UCHAR)-1 .. (UCHAR)-22). Only IRP_MJ_CREATE ever happens here. */
    for (; operation != NULL && operation->MajorFunction != IRP_MJ_OPERATION_END; operation++) {
        if (operation->MajorFunction > IRP_MJ_MAXIMUM_FUNCTION && operation->MajorFunction < (UCHAR)-22)
            return STATUS_INVALID_PARAMETER;
        if (operation->MajorFunction == IRP_MJ_CREATE) {
            side->PreCreate = operation->PreOperation;
            side->PostCreate = operation->PostOperation;
        }
    }

    /* As on Windows: a minifilter whose service has no Instances key cannot register. */
    status = FltpReadAltitude(Filter->DriverObject, side->Altitude);
    if (!NT_SUCCESS(status)) {
        UNICODE_STRING service;
        FltpServiceName(Filter->DriverObject, &service);
        DbgPrint("fltmgr: FltRegisterFilter: no valid Instances\\DefaultInstance altitude for the service %.*ls: 0x%08lX\n",
                 (int)(service.Length / sizeof(WCHAR)), service.Buffer, (ULONG)status);
        return status == STATUS_INVALID_PARAMETER ? status : STATUS_OBJECT_NAME_NOT_FOUND;
    }
    side->Filtering = FALSE;
    side->Callbacks = 1;
    KeInitializeEvent(&side->CallbacksDone, NotificationEvent, FALSE);
    return STATUS_SUCCESS;
}

VOID FltpFilterSideUnregister(PFLT_FILTER Filter)
{
    FLTP_FILTER_SIDE *side = &Filter->Side;

    /* Filter->Unregistering is set: no injection takes the filter any more. */
    FltpAcquireLock();
    side->Filtering = FALSE;
    FltpReleaseLock();
    if (InterlockedDecrement(&side->Callbacks) != 0)
        KeWaitForSingleObject(&side->CallbacksDone, Executive, KernelMode, FALSE, NULL);
}

NTSTATUS FLTAPI FltStartFiltering(PFLT_FILTER Filter)
{
    NTSTATUS status = STATUS_SUCCESS;

    if (Filter == NULL) return STATUS_INVALID_PARAMETER;
    FltpAcquireLock();
    if (Filter->Unregistering)
        status = STATUS_FLT_DELETING_OBJECT;
    else
        Filter->Side.Filtering = TRUE;
    FltpReleaseLock();
    return status;
}

/* ---- injected opens ------------------------------------------------------------------------- */

/* One injected open: the callback data every filter sees, and what it points to. */
typedef struct _FLTP_CREATE {
    FLT_CALLBACK_DATA Data; /* first: FltGetFileNameInformation finds the rest from it */
    ULONG Magic;            /* FLTP_CREATE_MAGIC: Data belongs to an injected open */
    ULONG RequestorProcessId;
    FLT_IO_PARAMETER_BLOCK Iopb;
    FILE_OBJECT FileObject;  /* FileName: the opened name */
    IO_SECURITY_CONTEXT SecurityContext;
    UNICODE_STRING NormalizedName;
    PIRP Irp;
    PIO_WORKITEM WorkItem;
    /* then the opened name's and the normalized name's characters */
} FLTP_CREATE, *PFLTP_CREATE;

static PFLTP_CREATE FltpCreateOf(PFLT_CALLBACK_DATA Data)
{
    PFLTP_CREATE create = CONTAINING_RECORD(Data, FLTP_CREATE, Data);
    return Data != NULL && create->Magic == FLTP_CREATE_MAGIC ? create : NULL;
}

/* Compares two valid altitudes numerically: < 0, 0 or > 0. */
static LONG FltpCompareAltitudes(const WCHAR *Left, const WCHAR *Right)
{
    ULONG leftDigits = 0;
    ULONG rightDigits = 0;
    ULONG i;

    while (Left[leftDigits] >= L'0' && Left[leftDigits] <= L'9') leftDigits++;
    while (Right[rightDigits] >= L'0' && Right[rightDigits] <= L'9') rightDigits++;
    /* Written without leading zeros, a longer integer part is a larger number. */
    if (leftDigits != rightDigits) return leftDigits < rightDigits ? -1 : 1;
    for (i = 0; Left[i] != L'\0' || Right[i] != L'\0'; i++) {
        WCHAR left = Left[i] == L'\0' ? L'0' : Left[i];
        WCHAR right = Right[i] == L'\0' ? L'0' : Right[i];
        if (left != right) return left < right ? -1 : 1;
    }
    return 0;
}

/* The filters to call for an open of FileName, highest altitude first, each with a reference on
 * its Callbacks: those with an instance on the file's volume (attach and detach decide). */
static ULONG FltpTakeFilters(PCUNICODE_STRING FileName, PFLT_FILTER *Filters)
{
    ULONG count = 0;
    PLIST_ENTRY entry;
    ULONG i;

    FltpAcquireLock();
    for (entry = FltpGlobals.Filters.Flink; entry != &FltpGlobals.Filters; entry = entry->Flink) {
        PFLT_FILTER filter = CONTAINING_RECORD(entry, FLT_FILTER, Links);
        if (filter->Unregistering || !filter->Side.Filtering) continue;
        if (filter->Side.PreCreate == NULL && filter->Side.PostCreate == NULL) continue;
        if (!FltpHasInstanceForLocked(filter, FileName)) continue;
        if (count == FLTP_MAX_FILTERS) break;
        InterlockedIncrement(&filter->Side.Callbacks);
        Filters[count++] = filter;
    }
    FltpReleaseLock();

    for (i = 1; i < count; i++) {
        PFLT_FILTER filter = Filters[i];
        ULONG j = i;
        for (; j > 0 && FltpCompareAltitudes(Filters[j - 1]->Side.Altitude, filter->Side.Altitude) < 0; j--)
            Filters[j] = Filters[j - 1];
        Filters[j] = filter;
    }
    return count;
}

static VOID FltpReleaseFilter(PFLT_FILTER Filter)
{
    if (InterlockedDecrement(&Filter->Side.Callbacks) == 0) KeSetEvent(&Filter->Side.CallbacksDone, IO_NO_INCREMENT, FALSE);
}

static FLT_RELATED_OBJECTS FltpRelatedObjects(PFLT_FILTER Filter, PFILE_OBJECT FileObject)
{
    FLT_RELATED_OBJECTS objects = {sizeof(FLT_RELATED_OBJECTS), 0, Filter, NULL, NULL, FileObject, NULL};
    return objects;
}

/* Runs the callbacks of every filtering filter for one open; returns the final IoStatus.Status. */
static NTSTATUS FltpRunCreateCallbacks(PFLTP_CREATE Create)
{
    PFLT_FILTER filters[FLTP_MAX_FILTERS];
    PVOID completionContexts[FLTP_MAX_FILTERS];
    BOOLEAN wantsPost[FLTP_MAX_FILTERS];
    PFLT_CALLBACK_DATA data = &Create->Data;
    ULONG count = FltpTakeFilters(&Create->FileObject.FileName, filters);
    ULONG called = 0;
    BOOLEAN completed = FALSE;
    ULONG i;

    for (; called < count && !completed; called++) {
        PFLT_FILTER filter = filters[called];
        FLT_RELATED_OBJECTS objects = FltpRelatedObjects(filter, &Create->FileObject);
        FLT_PREOP_CALLBACK_STATUS result = FLT_PREOP_SUCCESS_WITH_CALLBACK;

        completionContexts[called] = NULL;
        if (filter->Side.PreCreate != NULL)
            result = filter->Side.PreCreate(data, &objects, &completionContexts[called]);
        wantsPost[called] = FALSE;
        switch (result) {
        case FLT_PREOP_SUCCESS_WITH_CALLBACK:
        case FLT_PREOP_SYNCHRONIZE:
            wantsPost[called] = filter->Side.PostCreate != NULL;
            break;
        case FLT_PREOP_SUCCESS_NO_CALLBACK:
        case FLT_PREOP_DISALLOW_FASTIO:
            break;
        case FLT_PREOP_COMPLETE:
            completed = TRUE;
            break;
        default:
            DbgPrint("fltmgr: a pre-create callback returned %d, which the emulator does not support: the open fails\n",
                     (int)result);
            data->IoStatus.Status = STATUS_NOT_SUPPORTED;
            data->IoStatus.Information = 0;
            completed = TRUE;
            break;
        }
    }
    if (!completed) {
        data->IoStatus.Status = STATUS_SUCCESS;
        data->IoStatus.Information = FILE_OPENED;
    }

    SetFlag(data->Flags, FLTFL_CALLBACK_DATA_POST_OPERATION);
    for (i = called; i-- > 0;) {
        if (wantsPost[i]) {
            FLT_RELATED_OBJECTS objects = FltpRelatedObjects(filters[i], &Create->FileObject);
            filters[i]->Side.PostCreate(data, &objects, completionContexts[i], 0);
        }
    }
    for (i = 0; i < count; i++) FltpReleaseFilter(filters[i]);
    return data->IoStatus.Status;
}

static VOID NTAPI FltpInjectWorker(PDEVICE_OBJECT Device, PVOID Context)
{
    PFLTP_CREATE create = (PFLTP_CREATE)Context;
    PIRP irp = create->Irp;
    FLTEMU_INJECT_CREATE_RESULT *result = (FLTEMU_INJECT_CREATE_RESULT *)irp->AssociatedIrp.SystemBuffer;

    UNREFERENCED_PARAMETER(Device);
    RtlZeroMemory(result, sizeof *result);
    result->Status = FltpRunCreateCallbacks(create);
    IoFreeWorkItem(create->WorkItem);
    ExFreePoolWithTag(create, FLTP_POOL_TAG);
    FltpCompletePendedIrp(irp, STATUS_SUCCESS, sizeof *result);
}

/* Checks the request and builds the open from it; runs in dispatch, so the callbacks (which may
 * wait for user mode, e.g. through FltSendMessage) are left to a work item. */
NTSTATUS FltpInjectCreate(PIRP Irp, PIO_STACK_LOCATION Stack)
{
    const FLTEMU_INJECT_CREATE_REQUEST *request = (const FLTEMU_INJECT_CREATE_REQUEST *)Irp->AssociatedIrp.SystemBuffer;
    ULONG inputBytes = Stack->Parameters.DeviceIoControl.InputBufferLength;
    ULONG nameBytes, normalizedBytes;
    const WCHAR *names;
    WCHAR *copies;
    PFLTP_CREATE create;

    if (Stack->Parameters.DeviceIoControl.OutputBufferLength < sizeof(FLTEMU_INJECT_CREATE_RESULT))
        return STATUS_BUFFER_TOO_SMALL;
    if (inputBytes < sizeof *request) return STATUS_INVALID_PARAMETER;
    nameBytes = request->NameBytes;
    normalizedBytes = request->NormalizedNameBytes;
    /* UNICODE_STRING lengths are even USHORTs. */
    if (nameBytes == 0 || nameBytes > 0xFFFE || nameBytes % sizeof(WCHAR) != 0 || normalizedBytes > 0xFFFE ||
        normalizedBytes % sizeof(WCHAR) != 0 || inputBytes - sizeof *request != nameBytes + normalizedBytes)
        return STATUS_INVALID_PARAMETER;

    create = (PFLTP_CREATE)ExAllocatePoolZero(NonPagedPoolNx, sizeof *create + nameBytes + normalizedBytes,
                                              FLTP_POOL_TAG);
    if (create == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    create->WorkItem = IoAllocateWorkItem(FltpGlobals.ControlDevice);
    if (create->WorkItem == NULL) {
        ExFreePoolWithTag(create, FLTP_POOL_TAG);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    /* Copied before anything else: the output will overwrite the system buffer. */
    names = (const WCHAR *)(request + 1);
    copies = (WCHAR *)(create + 1);
    RtlCopyMemory(copies, names, nameBytes + normalizedBytes);

    create->Magic = FLTP_CREATE_MAGIC;
    create->Irp = Irp;
    create->RequestorProcessId = request->RequestorProcessId;
    create->FileObject.Type = IO_TYPE_FILE;
    create->FileObject.Size = (CSHORT)sizeof(FILE_OBJECT);
    create->FileObject.FileName.Buffer = copies;
    create->FileObject.FileName.Length = (USHORT)nameBytes;
    create->FileObject.FileName.MaximumLength = (USHORT)nameBytes;
    if (normalizedBytes != 0) {
        create->NormalizedName.Buffer = copies + nameBytes / sizeof(WCHAR);
        create->NormalizedName.Length = (USHORT)normalizedBytes;
        create->NormalizedName.MaximumLength = (USHORT)normalizedBytes;
    } else {
        create->NormalizedName = create->FileObject.FileName;
    }
    create->SecurityContext.DesiredAccess = request->DesiredAccess;
    create->Iopb.MajorFunction = IRP_MJ_CREATE;
    create->Iopb.TargetFileObject = &create->FileObject;
    create->Iopb.Parameters.Create.SecurityContext = &create->SecurityContext;
    create->Iopb.Parameters.Create.Options = request->CreateOptions;
    create->Iopb.Parameters.Create.ShareAccess = request->ShareAccess;
    create->Iopb.Parameters.Create.FileAttributes = request->FileAttributes;

    {
        /* Thread and Iopb are const members: set by initialisation, then copied in. */
        FLT_CALLBACK_DATA data = {FLTFL_CALLBACK_DATA_IRP_OPERATION, NULL, &create->Iopb};
        data.RequestorMode = UserMode;
        RtlCopyMemory(&create->Data, &data, sizeof data);
    }

    IoMarkIrpPending(Irp);
    IoQueueWorkItem(create->WorkItem, FltpInjectWorker, DelayedWorkQueue, create);
    return STATUS_PENDING;
}

/* ---- what callbacks ask about an open ------------------------------------------------------- */

ULONG FLTAPI FltGetRequestorProcessId(PFLT_CALLBACK_DATA CallbackData)
{
    PFLTP_CREATE create = FltpCreateOf(CallbackData);
    return create != NULL ? create->RequestorProcessId : 0;
}

HANDLE FLTAPI FltGetRequestorProcessIdEx(PFLT_CALLBACK_DATA CallbackData)
{
    return ULongToHandle(FltGetRequestorProcessId(CallbackData));
}

/* Like Windows, returns no reference: the process object stays valid while its open is under way.
 * NULL when the requestor id names no running process (an injected open may invent one). */
PEPROCESS FLTAPI FltGetRequestorProcess(PFLT_CALLBACK_DATA CallbackData)
{
    PEPROCESS process = NULL;
    ULONG processId = FltGetRequestorProcessId(CallbackData);

    if (processId == 0 || !NT_SUCCESS(PsLookupProcessByProcessId(ULongToHandle(processId), &process))) return NULL;
    ObDereferenceObject(process);
    return process;
}

/* ---- file names ------------------------------------------------------------------------------- */

/* A name information block and the name it points into, reference-counted. */
typedef struct _FLTP_NAME {
    volatile LONG References;
    FLT_FILE_NAME_INFORMATION Information;
    /* then the name's characters */
} FLTP_NAME, *PFLTP_NAME;

static PFLTP_NAME FltpNameOf(PFLT_FILE_NAME_INFORMATION Information)
{
    return CONTAINING_RECORD(Information, FLTP_NAME, Information);
}

/* The volume part of an NT name: "\Device\HarddiskVolume3" of "\Device\HarddiskVolume3\dir\x";
 * empty for a name of another form. */
static VOID FltpVolumeOf(PCUNICODE_STRING Name, PUNICODE_STRING Volume)
{
    static const WCHAR device[] = L"\\Device\\";
    USHORT chars = (USHORT)(Name->Length / sizeof(WCHAR));
    USHORT prefix = (USHORT)(ARRAYSIZE(device) - 1);
    USHORT end = prefix;

    Volume->Buffer = Name->Buffer;
    Volume->Length = 0;
    Volume->MaximumLength = 0;
    if (chars <= prefix || RtlCompareMemory(Name->Buffer, device, prefix * sizeof(WCHAR)) != prefix * sizeof(WCHAR))
        return;
    while (end < chars && Name->Buffer[end] != L'\\') end++;
    Volume->Length = (USHORT)(end * sizeof(WCHAR));
    Volume->MaximumLength = Volume->Length;
}

/* For an injected open: FLT_FILE_NAME_OPENED gives the name as opened, FLT_FILE_NAME_NORMALIZED
 * the normalized name given with the injection (the opened name when none was), whatever the
 * query method. FLT_FILE_NAME_SHORT is not supported. */
NTSTATUS FLTAPI FltGetFileNameInformation(PFLT_CALLBACK_DATA CallbackData, FLT_FILE_NAME_OPTIONS NameOptions,
                                          PFLT_FILE_NAME_INFORMATION *FileNameInformation)
{
    PFLTP_CREATE create = FltpCreateOf(CallbackData);
    PCUNICODE_STRING source;
    PFLTP_NAME name;
    WCHAR *characters;

    if (FileNameInformation == NULL) return STATUS_INVALID_PARAMETER;
    *FileNameInformation = NULL;
    if (create == NULL) return STATUS_INVALID_PARAMETER;
    switch (FltGetFileNameFormat(NameOptions)) {
    case FLT_FILE_NAME_NORMALIZED:
        source = &create->NormalizedName;
        break;
    case FLT_FILE_NAME_OPENED:
        source = &create->FileObject.FileName;
        break;
    case FLT_FILE_NAME_SHORT:
        return STATUS_NOT_SUPPORTED;
    default:
        return STATUS_INVALID_PARAMETER;
    }

    name = (PFLTP_NAME)ExAllocatePoolZero(PagedPool, sizeof *name + source->Length, FLTP_POOL_TAG);
    if (name == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    characters = (WCHAR *)(name + 1);
    RtlCopyMemory(characters, source->Buffer, source->Length);
    name->References = 1;
    name->Information.Size = (USHORT)sizeof(FLT_FILE_NAME_INFORMATION);
    name->Information.Format = FltGetFileNameFormat(NameOptions);
    name->Information.Name.Buffer = characters;
    name->Information.Name.Length = source->Length;
    name->Information.Name.MaximumLength = source->Length;
    FltpVolumeOf(&name->Information.Name, &name->Information.Volume);
    *FileNameInformation = &name->Information;
    return STATUS_SUCCESS;
}

VOID FLTAPI FltReferenceFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    InterlockedIncrement(&FltpNameOf(FileNameInformation)->References);
}

VOID FLTAPI FltReleaseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    PFLTP_NAME name = FltpNameOf(FileNameInformation);
    if (InterlockedDecrement(&name->References) == 0) ExFreePoolWithTag(name, FLTP_POOL_TAG);
}

/* Fills FinalComponent, Extension, Stream and ParentDir from Name (all point into it). The final
 * component includes the stream name; the extension excludes it; ParentDir is what lies between
 * the volume and the final component, backslashes included. */
NTSTATUS FLTAPI FltParseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    PFLT_FILE_NAME_INFORMATION info = FileNameInformation;
    USHORT chars;
    USHORT start;
    USHORT colon;
    USHORT dot;
    USHORT volumeChars;

    if (info == NULL) return STATUS_INVALID_PARAMETER;
    chars = (USHORT)(info->Name.Length / sizeof(WCHAR));
    volumeChars = (USHORT)(info->Volume.Length / sizeof(WCHAR));
    start = chars;
    while (start > volumeChars && info->Name.Buffer[start - 1] != L'\\') start--;
    for (colon = start; colon < chars && info->Name.Buffer[colon] != L':'; colon++) {
    }
    dot = colon;
    while (dot > start && info->Name.Buffer[dot - 1] != L'.') dot--;

    info->FinalComponent.Buffer = info->Name.Buffer + start;
    info->FinalComponent.Length = (USHORT)((chars - start) * sizeof(WCHAR));
    info->Stream.Buffer = colon < chars ? info->Name.Buffer + colon : NULL;
    info->Stream.Length = (USHORT)((chars - colon) * sizeof(WCHAR));
    info->Extension.Buffer = dot > start ? info->Name.Buffer + dot : NULL;
    info->Extension.Length = dot > start ? (USHORT)((colon - dot) * sizeof(WCHAR)) : 0;
    info->ParentDir.Buffer = info->Name.Buffer + volumeChars;
    info->ParentDir.Length = (USHORT)((start - volumeChars) * sizeof(WCHAR));
    info->FinalComponent.MaximumLength = info->FinalComponent.Length;
    info->Stream.MaximumLength = info->Stream.Length;
    info->Extension.MaximumLength = info->Extension.Length;
    info->ParentDir.MaximumLength = info->ParentDir.Length;
    info->NamesParsed = FLTFL_FILE_NAME_PARSED_FINAL_COMPONENT | FLTFL_FILE_NAME_PARSED_EXTENSION |
                        FLTFL_FILE_NAME_PARSED_STREAM | FLTFL_FILE_NAME_PARSED_PARENT_DIR;
    return STATUS_SUCCESS;
}
