/*
 * The sample minifilter: registration, the pre-create callback and unload. Everything that talks
 * to the agent is in comm.c. Built with the WDK, and here (mingw-w64) as fltportsample.sys for the
 * emulated filter manager under Wine.
 *
 * On every IRP_MJ_CREATE of a file whose name ends with the watched suffix (default
 * ".fltport-test"), the opening process, desired access and normalized name go to a connected
 * agent, whose verdict allows the open or fails it with STATUS_ACCESS_DENIED.
 */
#include <fltKernel.h>

#include "comm.h"

DRIVER_INITIALIZE DriverEntry;
static NTSTATUS FLTAPI FilterUnload(FLT_FILTER_UNLOAD_FLAGS Flags);
static NTSTATUS FLTAPI FilterInstanceQueryTeardown(PCFLT_RELATED_OBJECTS FltObjects,
                                                   FLT_INSTANCE_QUERY_TEARDOWN_FLAGS Flags);
static FLT_PREOP_CALLBACK_STATUS FLTAPI FilterPreCreate(PFLT_CALLBACK_DATA Data, PCFLT_RELATED_OBJECTS FltObjects,
                                                        PVOID *CompletionContext);
static BOOLEAN FilterNameMayHideSuffix(PCUNICODE_STRING Name);

#ifdef ALLOC_PRAGMA
#pragma alloc_text(INIT, DriverEntry)
#pragma alloc_text(PAGE, FilterUnload)
#pragma alloc_text(PAGE, FilterInstanceQueryTeardown)
#pragma alloc_text(PAGE, FilterPreCreate)
#pragma alloc_text(PAGE, FilterNameMayHideSuffix)
#endif

#if DBG
#define FILTER_VERBOSE TRUE
#else
#define FILTER_VERBOSE FALSE
#endif

static PFLT_FILTER g_Filter;

static const FLT_OPERATION_REGISTRATION g_Callbacks[] = {
    {IRP_MJ_CREATE, 0, FilterPreCreate, NULL},
    {IRP_MJ_OPERATION_END},
};

static const FLT_REGISTRATION g_Registration = {
    sizeof(FLT_REGISTRATION),
    FLT_REGISTRATION_VERSION,
    0,                           /* Flags */
    NULL,                        /* ContextRegistration */
    g_Callbacks,                 /* OperationRegistration */
    FilterUnload,                /* FilterUnloadCallback: without it `fltmc unload` is refused */
    NULL,                        /* InstanceSetupCallback: attach to every volume */
    FilterInstanceQueryTeardown, /* lets `fltmc detach` remove an instance */
    NULL,                        /* InstanceTeardownStartCallback */
    NULL,                        /* InstanceTeardownCompleteCallback */
    NULL,                        /* GenerateFileNameCallback */
    NULL,                        /* NormalizeNameComponentCallback; the later callbacks are zero too */
};

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    UNICODE_STRING portName = RTL_CONSTANT_STRING(FS_PORT_NAME);
    NTSTATUS status;

    UNREFERENCED_PARAMETER(RegistryPath);

    /* Non-paged allocations default to NX where the system supports it (POOL_NX_OPTIN), and
     * ExAllocatePoolZero works on Windows 10 versions before 2004 (POOL_ZERO_DOWN_LEVEL_SUPPORT). */
    ExInitializeDriverRuntime(DrvRtPoolNxOptIn);

    /* 0xC0000034 here means the service has no Instances values: reinstall with the INF. */
    status = FltRegisterFilter(DriverObject, &g_Registration, &g_Filter);
    if (!NT_SUCCESS(status)) return status;

    status = CommStart(g_Filter, &portName, FILTER_VERBOSE);
    if (!NT_SUCCESS(status)) {
        FltUnregisterFilter(g_Filter);
        return status;
    }

    status = FltStartFiltering(g_Filter);
    if (!NT_SUCCESS(status)) {
        CommStop();
        FltUnregisterFilter(g_Filter);
        CommCleanup();
        return status;
    }
    return STATUS_SUCCESS;
}

static NTSTATUS FLTAPI FilterUnload(FLT_FILTER_UNLOAD_FLAGS Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    PAGED_CODE();

    /* Ports first: FltUnregisterFilter waits for callbacks in flight, and a pre-create waiting
     * for a verdict returns at once when its client port is closed. DisconnectNotify still runs
     * for each connection inside FltUnregisterFilter, which is why the lock outlives it. */
    CommStop();
    FltUnregisterFilter(g_Filter);
    CommCleanup();
    return STATUS_SUCCESS;
}

static NTSTATUS FLTAPI FilterInstanceQueryTeardown(PCFLT_RELATED_OBJECTS FltObjects,
                                                   FLT_INSTANCE_QUERY_TEARDOWN_FLAGS Flags)
{
    UNREFERENCED_PARAMETER(FltObjects);
    UNREFERENCED_PARAMETER(Flags);
    PAGED_CODE();
    return STATUS_SUCCESS;
}

/*
 * Could the file name in Name (its final component, without a stream name) stand for a watched
 * file without showing the suffix? An 8.3 short name can: any name of up to 8 characters,
 * optionally followed by one dot and at most 3 more. Short names that Windows generates contain a
 * '~', but an administrator can give a file any 8.3 short name (fsutil file setshortname), so '~'
 * alone would let such a name past. An empty one can too: a stream opened relative to its file
 * (":data" with the file as RelatedFileObject). Over-approximating costs a name query; missing one
 * would let a watched file open unasked.
 */
static BOOLEAN FilterNameMayHideSuffix(PCUNICODE_STRING Name)
{
    UNICODE_STRING fileName;
    USHORT chars;
    USHORT dot = 0;
    BOOLEAN hasDot = FALSE;
    USHORT i;

    PAGED_CODE();
    CommFileNamePart(Name, &fileName);
    chars = (USHORT)(fileName.Length / sizeof(WCHAR));
    for (i = 0; i < chars; i++) {
        if (fileName.Buffer[i] != L'.') continue;
        if (hasDot) return FALSE;
        hasDot = TRUE;
        dot = i;
    }
    if (!hasDot) return chars <= 8;
    return dot >= 1 && dot <= 8 && chars - dot - 1 <= 3;
}

static FLT_PREOP_CALLBACK_STATUS FLTAPI FilterPreCreate(PFLT_CALLBACK_DATA Data, PCFLT_RELATED_OBJECTS FltObjects,
                                                        PVOID *CompletionContext)
{
    PFLT_FILE_NAME_INFORMATION nameInfo = NULL;
    PCUNICODE_STRING openedName;
    COMM_OUTCOME outcome;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(FltObjects);
    PAGED_CODE();
    *CompletionContext = NULL;

    /* Nobody to ask (a lock-free check): nothing to decide. */
    if (!CommWantsOpens()) return FLT_PREOP_SUCCESS_NO_CALLBACK;

    /* Paging-file and volume opens, and opens issued by kernel components, must never wait on a
     * user-mode process; directories are not files the agent is asked about. */
    if (FlagOn(Data->Iopb->OperationFlags, SL_OPEN_PAGING_FILE) ||
        FlagOn(Data->Iopb->TargetFileObject->Flags, FO_VOLUME_OPEN) ||
        FlagOn(Data->Iopb->Parameters.Create.Options, FILE_DIRECTORY_FILE) || Data->RequestorMode == KernelMode)
        return FLT_PREOP_SUCCESS_NO_CALLBACK;

    /*
     * The normalized name is the expensive part, and almost no open is of a watched file: decide
     * on the name the caller opened first. A file can be reached by its long name, whose suffix
     * shows here; by its 8.3 short name ("BLOCKE~1.FLT"), which hides the suffix; by its file id,
     * which is no name at all; or relative to its own handle (a stream). Only the long name needs
     * no query. Short names of directories change nothing (the suffix is the file's), a stream
     * name is ignored by the suffix check, and a symbolic link or junction makes the I/O manager
     * send a new create with the target's name, which comes through here again.
     */
    openedName = &Data->Iopb->TargetFileObject->FileName;
    if (!FlagOn(Data->Iopb->Parameters.Create.Options, FILE_OPEN_BY_FILE_ID) && !CommIsWatchedName(openedName) &&
        !FilterNameMayHideSuffix(openedName))
        return FLT_PREOP_SUCCESS_NO_CALLBACK;

    /* A name that cannot be had is let through: the sample fails open. */
    status = FltGetFileNameInformation(Data, FLT_FILE_NAME_NORMALIZED | FLT_FILE_NAME_QUERY_DEFAULT, &nameInfo);
    if (!NT_SUCCESS(status)) return FLT_PREOP_SUCCESS_NO_CALLBACK;

    outcome = CommCheckOpen(ULongToHandle(FltGetRequestorProcessId(Data)),
                            Data->Iopb->Parameters.Create.SecurityContext->DesiredAccess, &nameInfo->Name);
    FltReleaseFileNameInformation(nameInfo);

    if (outcome == COMM_OUTCOME_DENIED) {
        Data->IoStatus.Status = STATUS_ACCESS_DENIED;
        Data->IoStatus.Information = 0;
        return FLT_PREOP_COMPLETE;
    }
    return FLT_PREOP_SUCCESS_NO_CALLBACK;
}
