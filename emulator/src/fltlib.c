/*
 * fltlib.dll for the emulator under Wine: the four port functions of fltuser.h as a thin layer
 * over the emulator's fltmgr.sys (emulator/kernel/), whose IOCTL contract is in
 * emulator/kernel/protocol.h.
 *
 * The HANDLE FilterConnectCommunicationPort returns is a file handle on the port's device: the
 * connection itself, so CreateIoCompletionPort, CreateThreadpoolIo, CancelIoEx, CloseHandle and
 * DuplicateHandle work on it as on Windows. An overlapped FilterGetMessage is one DeviceIoControl
 * with the caller's OVERLAPPED and buffer; everything else is a synchronous DeviceIoControl with an
 * internal event whose low bit is set, so that no completion packet reaches the caller's port.
 * Kernel NTSTATUS codes become HRESULTs by the rule of the real fltlib (FilterHResultFromNtStatus,
 * shared/reference/port-semantics.md).
 */
#define WIN32_LEAN_AND_MEAN
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>
#include <winioctl.h>
#include <fltuser.h>

#include "../kernel/protocol.h"

#ifndef FLT_PORT_FLAG_SYNC_HANDLE
#define FLT_PORT_FLAG_SYNC_HANDLE 0x00000001
#endif
#ifndef STATUS_FLT_BUFFER_TOO_SMALL
#define STATUS_FLT_BUFFER_TOO_SMALL ((NTSTATUS)0x801C0001L)
#endif

#define HR_FILE_NOT_FOUND ((HRESULT)0x80070002L)
#define HR_INSUFFICIENT_BUFFER ((HRESULT)0x8007007AL)
#define HR_IO_PENDING ((HRESULT)0x800703E5L)
#define HR_TIMEOUT ((HRESULT)0x80070102L)

NTSYSAPI ULONG NTAPI RtlNtStatusToDosError(NTSTATUS Status);

/* FilterHResultFromNtStatus as reverse-engineered (port-semantics.md). Also fltlib-manage.c's. */
HRESULT HResultFromNtStatus(NTSTATUS status)
{
    ULONG code = (ULONG)status;
    ULONG facility = (code >> 16) & 0x0FFFu;

    if (facility == 0x1Cu) { /* FACILITY_FILTER_MANAGER */
        if (status == STATUS_FLT_BUFFER_TOO_SMALL) return HR_INSUFFICIENT_BUFFER;
        return (HRESULT)((code & 0x8000FFFFu) | 0x001F0000u);
    }
    if (facility != 0) return E_FAIL;
    if (status == STATUS_TIMEOUT) return HR_TIMEOUT;
    return HRESULT_FROM_WIN32(RtlNtStatusToDosError(status));
}

/* Calls that completed: success and information codes are S_OK. */
static HRESULT HResultOfResult(NTSTATUS status)
{
    return status >= 0 ? S_OK : HResultFromNtStatus(status);
}

/* ---- internal synchronous I/O -------------------------------------------------------------- */

/* One event per thread for internal waits, made on first use (an event per call would cost two
 * more server round trips under Wine). */
static DWORD g_eventSlot = TLS_OUT_OF_INDEXES;

static HANDLE ThreadEvent(void)
{
    HANDLE event = g_eventSlot == TLS_OUT_OF_INDEXES ? NULL : (HANDLE)TlsGetValue(g_eventSlot);
    if (event != NULL) return event;
    event = CreateEventW(NULL, FALSE, FALSE, NULL);
    if (event != NULL && g_eventSlot != TLS_OUT_OF_INDEXES && !TlsSetValue(g_eventSlot, event)) {
        CloseHandle(event);
        event = NULL;
    }
    return event;
}

/* An IOCTL that the caller waits for. The event's low bit is set and no APC context is given:
 * the completion is not queued to a completion port the caller bound the handle to. Returns the
 * kernel's NTSTATUS and, through Information, its IoStatus.Information. */
static NTSTATUS SyncIoctl(HANDLE port, ULONG code, PVOID input, ULONG inputBytes, PVOID output, ULONG outputBytes,
                          ULONG_PTR *information)
{
    HANDLE event = ThreadEvent();
    IO_STATUS_BLOCK iosb;
    NTSTATUS status;

    *information = 0;
    if (event == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    iosb.Status = STATUS_PENDING;
    iosb.Information = 0;
    status = NtDeviceIoControlFile(port, (HANDLE)((ULONG_PTR)event | 1), NULL, NULL, &iosb, code, input, inputBytes,
                                   output, outputBytes);
    if (status == STATUS_PENDING) {
        WaitForSingleObject(event, INFINITE);
        status = iosb.Status;
    }
    if (status >= 0) *information = iosb.Information;
    return status;
}

/* ---- exports ------------------------------------------------------------------------------- */

HRESULT WINAPI FilterConnectCommunicationPort(LPCWSTR lpPortName, DWORD dwOptions, LPCVOID lpContext,
                                              WORD wSizeOfContext, LPSECURITY_ATTRIBUTES lpSecurityAttributes,
                                              HANDLE *hPort)
{
    FLTEMU_CONNECT_REQUEST *request;
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK iosb;
    HANDLE handle = NULL;
    ULONG accepted = 0;
    ULONG_PTR information = 0;
    ULONG requestBytes;
    NTSTATUS status;
    HRESULT hr;

    if (hPort == NULL) return E_INVALIDARG;
    *hPort = INVALID_HANDLE_VALUE;
    if (lpPortName == NULL) return E_INVALIDARG;
    if ((lpContext == NULL) != (wSizeOfContext == 0)) return E_INVALIDARG;
    if (wSizeOfContext > FLTEMU_MAX_CONTEXT) return E_INVALIDARG;

    RtlInitUnicodeString(&name, lpPortName);
    InitializeObjectAttributes(&attributes, &name,
                               OBJ_CASE_INSENSITIVE |
                                   (lpSecurityAttributes != NULL && lpSecurityAttributes->bInheritHandle ? OBJ_INHERIT : 0),
                               NULL, lpSecurityAttributes != NULL ? lpSecurityAttributes->lpSecurityDescriptor : NULL);
    status = NtCreateFile(&handle, FILE_READ_DATA | FILE_WRITE_DATA | SYNCHRONIZE, &attributes, &iosb, NULL, 0,
                          FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN,
                          (dwOptions & FLT_PORT_FLAG_SYNC_HANDLE) != 0 ? FILE_SYNCHRONOUS_IO_NONALERT : 0, NULL, 0);
    if (status < 0) return HResultFromNtStatus(status);

    requestBytes = (ULONG)sizeof *request + wSizeOfContext;
    request = (FLTEMU_CONNECT_REQUEST *)HeapAlloc(GetProcessHeap(), 0, requestBytes);
    if (request == NULL) {
        CloseHandle(handle);
        return E_OUTOFMEMORY;
    }
    request->Options = dwOptions;
    request->ContextBytes = wSizeOfContext;
    if (wSizeOfContext != 0) memcpy(request + 1, lpContext, wSizeOfContext);
    status = SyncIoctl(handle, IOCTL_FLTEMU_CONNECT, request, requestBytes, &accepted, sizeof accepted, &information);
    HeapFree(GetProcessHeap(), 0, request);

    if (status < 0)
        hr = HResultFromNtStatus(status);
    else if (information != sizeof accepted || accepted != FLTEMU_CONNECT_ACCEPTED)
        hr = HR_FILE_NOT_FOUND; /* a device that is not a communication port */
    else
        hr = S_OK;
    if (FAILED(hr)) {
        CloseHandle(handle);
        return hr;
    }
    *hPort = handle;
    return S_OK;
}

HRESULT WINAPI FilterGetMessage(HANDLE hPort, PFILTER_MESSAGE_HEADER lpMessageBuffer, DWORD dwMessageBufferSize,
                                LPOVERLAPPED lpOverlapped)
{
    ULONG_PTR information;
    NTSTATUS status;

    if (lpMessageBuffer == NULL) return E_INVALIDARG;
    if (dwMessageBufferSize < sizeof(FILTER_MESSAGE_HEADER)) return HR_INSUFFICIENT_BUFFER;
    if (lpOverlapped == NULL) {
        status = SyncIoctl(hPort, IOCTL_FLTEMU_GET_MESSAGE, NULL, 0, lpMessageBuffer, dwMessageBufferSize,
                           &information);
        return HResultOfResult(status);
    }
    /* As DeviceIoControl does it: a low bit in hEvent means "no completion packet". */
    lpOverlapped->Internal = (ULONG_PTR)STATUS_PENDING;
    lpOverlapped->InternalHigh = 0;
    status = NtDeviceIoControlFile(hPort, lpOverlapped->hEvent, NULL,
                                   ((ULONG_PTR)lpOverlapped->hEvent & 1) != 0 ? NULL : lpOverlapped,
                                   (PIO_STATUS_BLOCK)lpOverlapped, IOCTL_FLTEMU_GET_MESSAGE, NULL, 0, lpMessageBuffer,
                                   dwMessageBufferSize);
    /* fltmgr pends every read: the result comes through the completion. */
    if (status == STATUS_PENDING) return HR_IO_PENDING;
    return HResultOfResult(status);
}

HRESULT WINAPI FilterSendMessage(HANDLE hPort, LPVOID lpInBuffer, DWORD dwInBufferSize, LPVOID lpOutBuffer,
                                 DWORD dwOutBufferSize, LPDWORD lpBytesReturned)
{
    ULONG_PTR information;
    NTSTATUS status;

    if (lpBytesReturned == NULL || (lpInBuffer == NULL && dwInBufferSize != 0) ||
        (lpOutBuffer == NULL && dwOutBufferSize != 0))
        return E_INVALIDARG;
    *lpBytesReturned = 0;
    status = SyncIoctl(hPort, IOCTL_FLTEMU_SEND, lpInBuffer, dwInBufferSize, lpOutBuffer, dwOutBufferSize,
                       &information);
    *lpBytesReturned = (DWORD)information;
    return HResultOfResult(status);
}

HRESULT WINAPI FilterReplyMessage(HANDLE hPort, PFILTER_REPLY_HEADER lpReplyBuffer, DWORD dwReplyBufferSize)
{
    ULONG_PTR information;

    if (lpReplyBuffer == NULL || dwReplyBufferSize < sizeof(FILTER_REPLY_HEADER)) return E_INVALIDARG;
    return HResultOfResult(
        SyncIoctl(hPort, IOCTL_FLTEMU_REPLY, lpReplyBuffer, dwReplyBufferSize, NULL, 0, &information));
}

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    HANDLE event;

    (void)instance;
    switch (reason) {
    case DLL_PROCESS_ATTACH:
        g_eventSlot = TlsAlloc();
        break;
    case DLL_THREAD_DETACH:
        event = g_eventSlot == TLS_OUT_OF_INDEXES ? NULL : (HANDLE)TlsGetValue(g_eventSlot);
        if (event != NULL) CloseHandle(event);
        break;
    case DLL_PROCESS_DETACH:
        if (reserved != NULL || g_eventSlot == TLS_OUT_OF_INDEXES) break; /* process exit: nothing to free */
        event = (HANDLE)TlsGetValue(g_eventSlot);
        if (event != NULL) CloseHandle(event);
        TlsFree(g_eventSlot);
        break;
    }
    return TRUE;
}
