/*
 * The filter-callback side of the emulator's fltmgr.sys: FltStartFiltering, opens injected
 * through the control device (IOCTL_FLTEMU_INJECT_CREATE) turned into pre-create callbacks, and
 * the file-name and requestor calls those callbacks make.
 *
 * Placeholder until the callback side lands: filtering starts, injected opens are refused with
 * STATUS_NOT_IMPLEMENTED, and the calls that need callback data fail.
 */
#include "fltmgrp.h"

NTSTATUS FltpFilterSideRegister(PFLT_FILTER Filter)
{
    Filter->Side.Filtering = FALSE;
    return STATUS_SUCCESS;
}

VOID FltpFilterSideUnregister(PFLT_FILTER Filter)
{
    Filter->Side.Filtering = FALSE;
}

NTSTATUS FLTAPI FltStartFiltering(PFLT_FILTER Filter)
{
    Filter->Side.Filtering = TRUE;
    return STATUS_SUCCESS;
}

NTSTATUS FltpInjectCreate(PIRP Irp, PIO_STACK_LOCATION Stack)
{
    UNREFERENCED_PARAMETER(Irp);
    UNREFERENCED_PARAMETER(Stack);
    return STATUS_NOT_IMPLEMENTED;
}

NTSTATUS FLTAPI FltGetFileNameInformation(PFLT_CALLBACK_DATA CallbackData, FLT_FILE_NAME_OPTIONS NameOptions,
                                          PFLT_FILE_NAME_INFORMATION *FileNameInformation)
{
    UNREFERENCED_PARAMETER(CallbackData);
    UNREFERENCED_PARAMETER(NameOptions);
    *FileNameInformation = NULL;
    return STATUS_NOT_IMPLEMENTED;
}

VOID FLTAPI FltReferenceFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    UNREFERENCED_PARAMETER(FileNameInformation);
}

VOID FLTAPI FltReleaseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    UNREFERENCED_PARAMETER(FileNameInformation);
}

NTSTATUS FLTAPI FltParseFileNameInformation(PFLT_FILE_NAME_INFORMATION FileNameInformation)
{
    UNREFERENCED_PARAMETER(FileNameInformation);
    return STATUS_NOT_IMPLEMENTED;
}

ULONG FLTAPI FltGetRequestorProcessId(PFLT_CALLBACK_DATA CallbackData)
{
    UNREFERENCED_PARAMETER(CallbackData);
    return 0;
}

HANDLE FLTAPI FltGetRequestorProcessIdEx(PFLT_CALLBACK_DATA CallbackData)
{
    UNREFERENCED_PARAMETER(CallbackData);
    return NULL;
}

PEPROCESS FLTAPI FltGetRequestorProcess(PFLT_CALLBACK_DATA CallbackData)
{
    UNREFERENCED_PARAMETER(CallbackData);
    return NULL;
}
