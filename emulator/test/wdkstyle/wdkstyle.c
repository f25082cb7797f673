/*++

Module Name:

    wdkstyle.c

Abstract:

    A small minifilter with a communication port, written the way the WDK's samples and
    templates write kernel code: SAL annotations, alloc_text pragmas, PAGED_CODE,
    UNREFERENCED_PARAMETER on expressions, __try/__except/__finally/__leave, ExAllocatePoolZero
    after ExInitializeDriverRuntime. The build compiles it as kernel code against the emulator's
    fltKernel.h with -Wall -Wextra -Wconversion -Werror: it is the check that Microsoft-style code
    compiles there unchanged (issue 14). test/integration also loads it beside the sample driver:

    - The port \FltportWdkStyle answers one command: the input bytes, reversed.
    - Its pre-create callback fails every open of a file whose name starts with "wdkstyle-refuse"
      with STATUS_SHARING_VIOLATION, which shows where it runs among the filters (altitude).

Environment:

    Kernel mode

--*/

#include <fltKernel.h>

#define WS_PORT_NAME L"\\FltportWdkStyle"
#define WS_POOL_TAG 'sWtF'
#define WS_MAX_MESSAGE 4096
#define WS_REFUSED_PREFIX L"wdkstyle-refuse"

typedef struct _WS_GLOBALS {

    PFLT_FILTER Filter;

    PFLT_PORT ServerPort;

    PFLT_PORT ClientPort;

} WS_GLOBALS, *PWS_GLOBALS;

WS_GLOBALS WsGlobals;

DRIVER_INITIALIZE DriverEntry;

NTSTATUS
WsUnload (
    _In_ FLT_FILTER_UNLOAD_FLAGS Flags
    );

NTSTATUS
WsConnect (
    _In_ PFLT_PORT ClientPort,
    _In_opt_ PVOID ServerPortCookie,
    _In_reads_bytes_opt_(SizeOfContext) PVOID ConnectionContext,
    _In_ ULONG SizeOfContext,
    _Outptr_result_maybenull_ PVOID *ConnectionCookie
    );

FLT_PREOP_CALLBACK_STATUS
WsPreCreate (
    _Inout_ PFLT_CALLBACK_DATA Data,
    _In_ PCFLT_RELATED_OBJECTS FltObjects,
    _Flt_CompletionContext_Outptr_ PVOID *CompletionContext
    );

VOID
WsDisconnect (
    _In_opt_ PVOID ConnectionCookie
    );

NTSTATUS
WsMessage (
    _In_ PVOID ConnectionCookie,
    _In_reads_bytes_opt_(InputBufferSize) PVOID InputBuffer,
    _In_ ULONG InputBufferSize,
    _Out_writes_bytes_to_opt_(OutputBufferSize,*ReturnOutputBufferLength) PVOID OutputBuffer,
    _In_ ULONG OutputBufferSize,
    _Out_ PULONG ReturnOutputBufferLength
    );

#ifdef ALLOC_PRAGMA
#pragma alloc_text(INIT, DriverEntry)
#pragma alloc_text(PAGE, WsUnload)
#pragma alloc_text(PAGE, WsConnect)
#pragma alloc_text(PAGE, WsDisconnect)
#pragma alloc_text(PAGE, WsMessage)
#pragma alloc_text(PAGE, WsPreCreate)
#endif

CONST FLT_OPERATION_REGISTRATION Callbacks[] = {

    { IRP_MJ_CREATE,
      0,
      WsPreCreate,
      NULL },

    { IRP_MJ_OPERATION_END }
};

CONST FLT_REGISTRATION FilterRegistration = {

    sizeof( FLT_REGISTRATION ),         //  Size
    FLT_REGISTRATION_VERSION,           //  Version
    0,                                  //  Flags
    NULL,                               //  Context
    Callbacks,                          //  Operation callbacks
    WsUnload,                           //  FilterUnload
    NULL,                               //  InstanceSetup
    NULL,                               //  InstanceQueryTeardown
    NULL,                               //  InstanceTeardownStart
    NULL,                               //  InstanceTeardownComplete
    NULL,                               //  GenerateFileName
    NULL,                               //  NormalizeNameComponent
    NULL                                //  NormalizeContextCleanup
};

NTSTATUS
DriverEntry (
    _In_ PDRIVER_OBJECT DriverObject,
    _In_ PUNICODE_STRING RegistryPath
    )
{
    OBJECT_ATTRIBUTES oa;
    UNICODE_STRING portName;
    PSECURITY_DESCRIPTOR sd = NULL;
    NTSTATUS status;

    UNREFERENCED_PARAMETER( RegistryPath );

    ExInitializeDriverRuntime( DrvRtPoolNxOptIn );

    status = FltRegisterFilter( DriverObject,
                                &FilterRegistration,
                                &WsGlobals.Filter );

    if (!NT_SUCCESS( status )) {

        return status;
    }

    __try {

        status = FltBuildDefaultSecurityDescriptor( &sd, FLT_PORT_ALL_ACCESS );

        if (!NT_SUCCESS( status )) {

            __leave;
        }

        RtlInitUnicodeString( &portName, WS_PORT_NAME );

        InitializeObjectAttributes( &oa,
                                    &portName,
                                    OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
                                    NULL,
                                    sd );

        status = FltCreateCommunicationPort( WsGlobals.Filter,
                                             &WsGlobals.ServerPort,
                                             &oa,
                                             NULL,
                                             WsConnect,
                                             WsDisconnect,
                                             WsMessage,
                                             1 );

        if (!NT_SUCCESS( status )) {

            __leave;
        }

        status = FltStartFiltering( WsGlobals.Filter );

    } __finally {

        if (sd != NULL) {

            FltFreeSecurityDescriptor( sd );
        }

        if (!NT_SUCCESS( status )) {

            if (WsGlobals.ServerPort != NULL) {

                FltCloseCommunicationPort( WsGlobals.ServerPort );
            }

            FltUnregisterFilter( WsGlobals.Filter );
        }
    }

    return status;
}

NTSTATUS
WsUnload (
    _In_ FLT_FILTER_UNLOAD_FLAGS Flags
    )
{
    UNREFERENCED_PARAMETER( Flags );

    PAGED_CODE();

    FltCloseCommunicationPort( WsGlobals.ServerPort );

    FltUnregisterFilter( WsGlobals.Filter );

    return STATUS_SUCCESS;
}

NTSTATUS
WsConnect (
    _In_ PFLT_PORT ClientPort,
    _In_opt_ PVOID ServerPortCookie,
    _In_reads_bytes_opt_(SizeOfContext) PVOID ConnectionContext,
    _In_ ULONG SizeOfContext,
    _Outptr_result_maybenull_ PVOID *ConnectionCookie
    )
{
    PAGED_CODE();

    //
    //  The WDK defines UNREFERENCED_PARAMETER(P) as (P): an expression is fine, an
    //  assignment included.
    //

    UNREFERENCED_PARAMETER( ServerPortCookie = NULL );
    UNREFERENCED_PARAMETER( ConnectionContext );
    UNREFERENCED_PARAMETER( SizeOfContext );

    FLT_ASSERT( WsGlobals.ClientPort == NULL );

    WsGlobals.ClientPort = ClientPort;

    *ConnectionCookie = NULL;

    return STATUS_SUCCESS;
}

VOID
WsDisconnect (
    _In_opt_ PVOID ConnectionCookie
    )
{
    UNREFERENCED_PARAMETER( ConnectionCookie );

    PAGED_CODE();

    FltCloseClientPort( WsGlobals.Filter, &WsGlobals.ClientPort );
}

NTSTATUS
WsMessage (
    _In_ PVOID ConnectionCookie,
    _In_reads_bytes_opt_(InputBufferSize) PVOID InputBuffer,
    _In_ ULONG InputBufferSize,
    _Out_writes_bytes_to_opt_(OutputBufferSize,*ReturnOutputBufferLength) PVOID OutputBuffer,
    _In_ ULONG OutputBufferSize,
    _Out_ PULONG ReturnOutputBufferLength
    )
{
    PUCHAR buffer = NULL;
    NTSTATUS status = STATUS_SUCCESS;
    ULONG i;

    UNREFERENCED_PARAMETER( ConnectionCookie );

    PAGED_CODE();

    *ReturnOutputBufferLength = 0;

    if (InputBuffer == NULL || OutputBuffer == NULL ||
        InputBufferSize == 0 || InputBufferSize > WS_MAX_MESSAGE) {

        return STATUS_INVALID_PARAMETER;
    }

    if (OutputBufferSize < InputBufferSize) {

        return STATUS_BUFFER_TOO_SMALL;
    }

    buffer = ExAllocatePoolZero( PagedPool, InputBufferSize, WS_POOL_TAG );

    if (buffer == NULL) {

        return STATUS_INSUFFICIENT_RESOURCES;
    }

    __try {

        //
        //  The buffers are raw user-mode addresses: every access is guarded.
        //

        __try {

            RtlCopyMemory( buffer, InputBuffer, InputBufferSize );

        } __except (EXCEPTION_EXECUTE_HANDLER) {

            status = GetExceptionCode();
            __leave;
        }

        for (i = 0; i < InputBufferSize / 2; i += 1) {

            UCHAR swap = buffer[i];
            buffer[i] = buffer[InputBufferSize - 1 - i];
            buffer[InputBufferSize - 1 - i] = swap;
        }

        __try {

            RtlCopyMemory( OutputBuffer, buffer, InputBufferSize );
            *ReturnOutputBufferLength = InputBufferSize;

        } __except (EXCEPTION_EXECUTE_HANDLER) {

            status = GetExceptionCode();
        }

    } __finally {

        ExFreePoolWithTag( buffer, WS_POOL_TAG );
    }

    return status;
}

FLT_PREOP_CALLBACK_STATUS
WsPreCreate (
    _Inout_ PFLT_CALLBACK_DATA Data,
    _In_ PCFLT_RELATED_OBJECTS FltObjects,
    _Flt_CompletionContext_Outptr_ PVOID *CompletionContext
    )
{
    PFLT_FILE_NAME_INFORMATION nameInfo = NULL;
    UNICODE_STRING refused = RTL_CONSTANT_STRING( WS_REFUSED_PREFIX );
    FLT_PREOP_CALLBACK_STATUS result = FLT_PREOP_SUCCESS_NO_CALLBACK;
    NTSTATUS status;

    UNREFERENCED_PARAMETER( FltObjects );
    UNREFERENCED_PARAMETER( *CompletionContext = NULL );

    PAGED_CODE();

    status = FltGetFileNameInformation( Data,
                                        FLT_FILE_NAME_OPENED | FLT_FILE_NAME_QUERY_DEFAULT,
                                        &nameInfo );

    if (!NT_SUCCESS( status )) {

        return FLT_PREOP_SUCCESS_NO_CALLBACK;
    }

    __try {

        status = FltParseFileNameInformation( nameInfo );

        if (!NT_SUCCESS( status )) {

            __leave;
        }

        if (RtlPrefixUnicodeString( &refused, &nameInfo->FinalComponent, TRUE )) {

            Data->IoStatus.Status = STATUS_SHARING_VIOLATION;
            Data->IoStatus.Information = 0;
            result = FLT_PREOP_COMPLETE;
        }

    } __finally {

        FltReleaseFileNameInformation( nameInfo );
    }

    return result;
}
