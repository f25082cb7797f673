/*
 * fltlib.dll replacement (user side of the filter-manager emulator).
 *
 * Exports FilterConnectCommunicationPort, FilterSendMessage, FilterGetMessage and FilterReplyMessage
 * with the signatures of fltuser.h, talking to a host process that links fltemu (see protocol.h).
 *
 * The HANDLE returned to the caller is the client end of an overlapped message-mode pipe that
 * carries only notifications from the kernel side, so CreateIoCompletionPort, CreateThreadpoolIo,
 * CancelIoEx and CloseHandle work on it directly. Everything else (credits, calls, replies) uses
 * internal I/O that never reaches the caller's completion port:
 *   - credits are written on the data pipe with an OVERLAPPED whose hEvent has the low bit set
 *     (documented: no completion packet is queued for such an operation);
 *   - FilterSendMessage / FilterReplyMessage use synchronous "call" pipes from a small per-connection
 *     pool, so they never consume notifications meant for pending reads.
 */
#define WIN32_LEAN_AND_MEAN
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <fltuser.h>

#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#ifndef FLT_PORT_FLAG_SYNC_HANDLE
#define FLT_PORT_FLAG_SYNC_HANDLE 0x00000001
#endif

#define HR_INVALID_HANDLE ((HRESULT)0x80070006L)   /* HRESULT_FROM_WIN32(ERROR_INVALID_HANDLE) */
#define HR_IO_PENDING ((HRESULT)0x800703E5L)       /* HRESULT_FROM_WIN32(ERROR_IO_PENDING) */
#define HR_INSUFFICIENT_BUFFER ((HRESULT)0x8007007AL)

/* How long FilterConnectCommunicationPort keeps retrying while every pipe instance is busy. */
#define CONNECT_BUSY_TIMEOUT_MS 30000u
/* Idle call pipes kept per connection; more are opened on demand and closed after use. */
#define CALL_POOL_MAX 64

/* ------------------------------------------------------------------------------------------ */
/* Status mapping (FilterHResultFromNtStatus as reverse-engineered, see port-semantics.md)      */

typedef ULONG(NTAPI *rtl_nt_status_to_dos_error_fn)(NTSTATUS);

static HRESULT hresult_from_ntstatus(NTSTATUS status)
{
    ULONG u = (ULONG)status;
    ULONG facility = (u >> 16) & 0x0FFFu;
    if (facility == 0x1Cu) { /* FACILITY_FILTER_MANAGER */
        if (u == (ULONG)STATUS_FLT_BUFFER_TOO_SMALL) return HR_INSUFFICIENT_BUFFER;
        return (HRESULT)((u & 0x8000FFFFu) | 0x001F0000u);
    }
    if (facility != 0) return E_FAIL;
    if (u == (ULONG)STATUS_TIMEOUT) return (HRESULT)0x80070102L;
    {
        HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
        FARPROC proc = ntdll ? GetProcAddress(ntdll, "RtlNtStatusToDosError") : NULL;
        rtl_nt_status_to_dos_error_fn fn;
        ULONG dos;
        if (!proc) return E_FAIL;
        memcpy(&fn, &proc, sizeof fn);
        dos = fn(status);
        return HRESULT_FROM_WIN32(dos);
    }
}

/* Result of a kernel-side call: success codes (including informational ones) are S_OK. */
static HRESULT hresult_from_call_status(NTSTATUS status)
{
    return status >= 0 ? S_OK : hresult_from_ntstatus(status);
}

static BOOL is_pipe_gone(DWORD err)
{
    return err == ERROR_BROKEN_PIPE || err == ERROR_PIPE_NOT_CONNECTED || err == ERROR_NO_DATA ||
           err == ERROR_INVALID_HANDLE;
}

/* ------------------------------------------------------------------------------------------ */
/* Connection records: user HANDLE -> connection, in a process-wide table guarded by a lock.    */

typedef struct conn_rec {
    LONG refs;
    HANDLE port; /* the caller's handle; owned by the caller, never closed here */
    UINT64 connId;
    BYTE token[FEMU_TOKEN_BYTES];
    WCHAR callPipe[FEMU_PIPE_NAME_CCH];
    SRWLOCK readLock;   /* keeps reads and their credits in the same order */
    HANDLE creditEvent; /* used under readLock only */
    SRWLOCK poolLock;
    HANDLE pool[CALL_POOL_MAX];
    int poolCount;
    volatile LONG disconnected;
} conn_rec;

static SRWLOCK g_tableLock = SRWLOCK_INIT;
static conn_rec **g_table;
static size_t g_tableCount, g_tableCap;

static void rec_release(conn_rec *r)
{
    int i;
    if (InterlockedDecrement(&r->refs) != 0) return;
    for (i = 0; i < r->poolCount; i++) CloseHandle(r->pool[i]);
    if (r->creditEvent) CloseHandle(r->creditEvent);
    free(r);
}

static conn_rec *rec_lookup(HANDLE port)
{
    conn_rec *found = NULL;
    size_t i;
    if (port == NULL || port == INVALID_HANDLE_VALUE) return NULL;
    AcquireSRWLockShared(&g_tableLock);
    for (i = 0; i < g_tableCount; i++) {
        if (g_table[i]->port == port) {
            found = g_table[i];
            InterlockedIncrement(&found->refs);
            break;
        }
    }
    ReleaseSRWLockShared(&g_tableLock);
    return found;
}

/* A connection is known dead when one of its idle call pipes reports the server end closed. */
static BOOL rec_is_dead(conn_rec *r)
{
    BOOL dead = r->disconnected != 0;
    if (!dead && TryAcquireSRWLockExclusive(&r->poolLock)) {
        if (r->poolCount > 0) {
            DWORD avail = 0;
            if (!PeekNamedPipe(r->pool[0], NULL, 0, NULL, &avail, NULL) && is_pipe_gone(GetLastError()))
                dead = TRUE;
        }
        ReleaseSRWLockExclusive(&r->poolLock);
    }
    return dead;
}

/* Inserts r. A record with the same handle value is stale (the handle was closed and the value
 * reused) and is dropped; records of connections the server has ended are swept as well. */
static BOOL rec_insert(conn_rec *r)
{
    conn_rec **drop = NULL;
    size_t ndrop = 0, i, keep = 0;
    BOOL ok = TRUE;
    AcquireSRWLockExclusive(&g_tableLock);
    if (g_tableCount > 0) drop = (conn_rec **)malloc(g_tableCount * sizeof *drop);
    for (i = 0; i < g_tableCount; i++) {
        conn_rec *e = g_table[i];
        if (drop && (e->port == r->port || rec_is_dead(e)))
            drop[ndrop++] = e;
        else if (!drop && e->port == r->port)
            continue; /* cannot remember it for release; leak it rather than keep a stale entry */
        else
            g_table[keep++] = e;
    }
    g_tableCount = keep;
    if (g_tableCount == g_tableCap) {
        size_t cap = g_tableCap ? g_tableCap * 2 : 16;
        conn_rec **t = (conn_rec **)realloc(g_table, cap * sizeof *t);
        if (t) {
            g_table = t;
            g_tableCap = cap;
        }
    }
    if (g_tableCount < g_tableCap)
        g_table[g_tableCount++] = r;
    else
        ok = FALSE;
    ReleaseSRWLockExclusive(&g_tableLock);
    for (i = 0; i < ndrop; i++) rec_release(drop[i]);
    free(drop);
    return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Pipe helpers                                                                                 */

static DWORD set_message_mode(HANDLE h)
{
    DWORD mode = PIPE_READMODE_MESSAGE;
    return SetNamedPipeHandleState(h, &mode, NULL, NULL) ? 0 : GetLastError();
}

/* Opens a pipe, waiting while all instances are busy. */
static HANDLE open_pipe(const WCHAR *name, DWORD flags, LPSECURITY_ATTRIBUTES sa, DWORD *err)
{
    ULONGLONG deadline = GetTickCount64() + CONNECT_BUSY_TIMEOUT_MS;
    for (;;) {
        HANDLE h = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, sa, OPEN_EXISTING,
                               flags | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
        ULONGLONG now;
        if (h != INVALID_HANDLE_VALUE) {
            DWORD e = set_message_mode(h);
            if (e == 0) {
                *err = 0;
                return h;
            }
            CloseHandle(h);
            *err = e;
            return INVALID_HANDLE_VALUE;
        }
        *err = GetLastError();
        now = GetTickCount64();
        if (*err != ERROR_PIPE_BUSY || now >= deadline) return INVALID_HANDLE_VALUE;
        if (!WaitNamedPipeW(name, (DWORD)(deadline - now))) {
            DWORD e = GetLastError();
            if (e != ERROR_SEM_TIMEOUT && e != ERROR_PIPE_BUSY) {
                *err = e;
                return INVALID_HANDLE_VALUE;
            }
        }
    }
}

/* Synchronous write of one message on a synchronous handle. */
static DWORD write_msg_sync(HANDLE h, const void *buf, DWORD len)
{
    DWORD n = 0;
    if (!WriteFile(h, buf, len, &n, NULL)) return GetLastError();
    return n == len ? 0 : ERROR_WRITE_FAULT;
}

/* Reads one whole message from a synchronous handle into a malloc'd buffer. */
static DWORD read_msg_sync(HANDLE h, BYTE **out, DWORD *outLen)
{
    DWORD cap = 512, len = 0;
    BYTE *buf = (BYTE *)malloc(cap);
    if (!buf) return ERROR_NOT_ENOUGH_MEMORY;
    for (;;) {
        DWORD n = 0;
        BOOL ok = ReadFile(h, buf + len, cap - len, &n, NULL);
        DWORD err = ok ? 0 : GetLastError();
        len += n;
        if (ok) break;
        if (err == ERROR_MORE_DATA) {
            BYTE *bigger;
            if (cap > 0x7FFFFFFFu) {
                free(buf);
                return ERROR_NOT_ENOUGH_MEMORY;
            }
            bigger = (BYTE *)realloc(buf, (size_t)cap * 2);
            if (!bigger) {
                free(buf);
                return ERROR_NOT_ENOUGH_MEMORY;
            }
            buf = bigger;
            cap *= 2;
            continue;
        }
        free(buf);
        return err;
    }
    *out = buf;
    *outLen = len;
    return 0;
}

/* One overlapped operation on the data pipe that must never reach the caller's completion port. */
static DWORD internal_write(HANDLE h, HANDLE event, const void *buf, DWORD len)
{
    OVERLAPPED ov;
    DWORD n = 0;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = (HANDLE)((ULONG_PTR)event | 1); /* low bit: no completion packet */
    if (!WriteFile(h, buf, len, NULL, &ov)) {
        DWORD err = GetLastError();
        if (err != ERROR_IO_PENDING) return err;
    }
    if (!GetOverlappedResult(h, &ov, &n, TRUE)) return GetLastError();
    return n == len ? 0 : ERROR_WRITE_FAULT;
}

/* ------------------------------------------------------------------------------------------ */
/* Call pipes                                                                                   */

static HANDLE call_pipe_open(conn_rec *r, DWORD *err)
{
    femu_hello_msg hello;
    femu_status_msg *resp = NULL;
    DWORD len = 0;
    HANDLE h = open_pipe(r->callPipe, 0, NULL, err);
    if (h == INVALID_HANDLE_VALUE) {
        /* the filter is gone: the connection is gone */
        if (*err == ERROR_FILE_NOT_FOUND) *err = ERROR_BROKEN_PIPE;
        return h;
    }
    memset(&hello, 0, sizeof hello);
    hello.h.magic = FEMU_MAGIC;
    hello.h.type = FEMU_MSG_HELLO;
    hello.connId = r->connId;
    memcpy(hello.token, r->token, sizeof hello.token);
    *err = write_msg_sync(h, &hello, sizeof hello);
    if (*err == 0) *err = read_msg_sync(h, (BYTE **)&resp, &len);
    if (*err == 0) {
        if (len != sizeof *resp || resp->h.magic != FEMU_MAGIC || resp->h.type != FEMU_MSG_HELLO_RESULT)
            *err = ERROR_INVALID_DATA;
        else if (resp->status != 0)
            *err = ERROR_BROKEN_PIPE; /* the server no longer knows this connection */
    }
    free(resp);
    if (*err != 0) {
        CloseHandle(h);
        return INVALID_HANDLE_VALUE;
    }
    return h;
}

static HANDLE call_pipe_take(conn_rec *r, DWORD *err)
{
    HANDLE h = INVALID_HANDLE_VALUE;
    AcquireSRWLockExclusive(&r->poolLock);
    if (r->poolCount > 0) h = r->pool[--r->poolCount];
    ReleaseSRWLockExclusive(&r->poolLock);
    if (h != INVALID_HANDLE_VALUE) {
        *err = 0;
        return h;
    }
    return call_pipe_open(r, err);
}

static void call_pipe_put(conn_rec *r, HANDLE h)
{
    AcquireSRWLockExclusive(&r->poolLock);
    if (r->poolCount < CALL_POOL_MAX) {
        r->pool[r->poolCount++] = h;
        h = INVALID_HANDLE_VALUE;
    }
    ReleaseSRWLockExclusive(&r->poolLock);
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
}

/* Sends one request and reads its response on a pooled call pipe. */
static DWORD call(conn_rec *r, const void *req, DWORD reqLen, BYTE **resp, DWORD *respLen)
{
    DWORD err;
    HANDLE h = call_pipe_take(r, &err);
    if (h == INVALID_HANDLE_VALUE) return err;
    err = write_msg_sync(h, req, reqLen);
    if (err == 0) err = read_msg_sync(h, resp, respLen);
    if (err == 0)
        call_pipe_put(r, h);
    else
        CloseHandle(h);
    return err;
}

static HRESULT hresult_from_transport(conn_rec *r, DWORD err)
{
    if (is_pipe_gone(err)) {
        InterlockedExchange(&r->disconnected, 1);
        return HR_INVALID_HANDLE;
    }
    return HRESULT_FROM_WIN32(err);
}

/* ------------------------------------------------------------------------------------------ */
/* Exports                                                                                      */

HRESULT WINAPI FilterConnectCommunicationPort(LPCWSTR lpPortName, DWORD dwOptions, LPCVOID lpContext,
                                              WORD wSizeOfContext, LPSECURITY_ATTRIBUTES lpSecurityAttributes,
                                              HANDLE *hPort)
{
    WCHAR portPipe[FEMU_PIPE_NAME_CCH];
    femu_connect_msg *req = NULL;
    femu_connect_result_msg *res = NULL;
    DWORD resLen = 0, err = 0;
    HANDLE hs = INVALID_HANDLE_VALUE, data = INVALID_HANDLE_VALUE;
    conn_rec *r = NULL;
    HRESULT hr = S_OK;

    (void)dwOptions; /* FLT_PORT_FLAG_SYNC_HANDLE: the emulated handle always supports both modes */
    if (hPort == NULL) return E_INVALIDARG;
    *hPort = INVALID_HANDLE_VALUE;
    if (lpPortName == NULL) return E_INVALIDARG;
    if ((lpContext == NULL) != (wSizeOfContext == 0)) return E_INVALIDARG;
    if (wSizeOfContext > FEMU_MAX_CONTEXT) return E_INVALIDARG;
    if (!femu_port_pipe_name(lpPortName, wcslen(lpPortName), portPipe)) return HRESULT_FROM_WIN32(ERROR_INVALID_NAME);

    /* 1. handshake on the port pipe: the kernel side runs ConnectNotify before answering */
    hs = open_pipe(portPipe, 0, NULL, &err);
    if (hs == INVALID_HANDLE_VALUE) return HRESULT_FROM_WIN32(err);
    req = (femu_connect_msg *)calloc(1, sizeof *req + wSizeOfContext);
    if (!req) {
        hr = E_OUTOFMEMORY;
        goto done;
    }
    req->h.magic = FEMU_MAGIC;
    req->h.type = FEMU_MSG_CONNECT;
    req->version = FEMU_VERSION;
    req->options = dwOptions;
    req->contextSize = wSizeOfContext;
    if (wSizeOfContext) memcpy(req + 1, lpContext, wSizeOfContext);
    err = write_msg_sync(hs, req, (DWORD)(sizeof *req + wSizeOfContext));
    if (err == 0) err = read_msg_sync(hs, (BYTE **)&res, &resLen);
    if (err != 0) {
        hr = HRESULT_FROM_WIN32(err);
        goto done;
    }
    if (resLen != sizeof *res || res->h.magic != FEMU_MAGIC || res->h.type != FEMU_MSG_CONNECT_RESULT) {
        hr = HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
        goto done;
    }
    if (res->status < 0) {
        hr = hresult_from_ntstatus(res->status);
        goto done;
    }
    res->dataPipe[FEMU_PIPE_NAME_CCH - 1] = 0;
    res->callPipe[FEMU_PIPE_NAME_CCH - 1] = 0;

    /* 2. the per-connection data pipe becomes the caller's handle */
    data = open_pipe(res->dataPipe, FILE_FLAG_OVERLAPPED, lpSecurityAttributes, &err);
    if (data == INVALID_HANDLE_VALUE) {
        hr = HRESULT_FROM_WIN32(err);
        goto done;
    }
    r = (conn_rec *)calloc(1, sizeof *r);
    if (!r) {
        hr = E_OUTOFMEMORY;
        goto done;
    }
    r->refs = 1;
    r->port = data;
    r->connId = res->connId;
    memcpy(r->token, res->token, sizeof r->token);
    memcpy(r->callPipe, res->callPipe, sizeof r->callPipe);
    InitializeSRWLock(&r->readLock);
    InitializeSRWLock(&r->poolLock);
    r->creditEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!r->creditEvent) {
        hr = HRESULT_FROM_WIN32(GetLastError());
        goto done;
    }
    {
        femu_attach_msg attach;
        memset(&attach, 0, sizeof attach);
        attach.h.magic = FEMU_MAGIC;
        attach.h.type = FEMU_MSG_ATTACH;
        memcpy(attach.token, r->token, sizeof attach.token);
        err = internal_write(data, r->creditEvent, &attach, sizeof attach);
        if (err != 0) {
            hr = HRESULT_FROM_WIN32(err);
            goto done;
        }
    }
    /* 3. one call pipe up front: proves the call channel works and lets dead connections be swept */
    {
        HANDLE cp = call_pipe_open(r, &err);
        if (cp == INVALID_HANDLE_VALUE) {
            hr = HRESULT_FROM_WIN32(err);
            goto done;
        }
        r->pool[r->poolCount++] = cp;
    }
    if (!rec_insert(r)) {
        hr = E_OUTOFMEMORY;
        goto done;
    }
    r = NULL; /* owned by the table now */
    *hPort = data;
    data = INVALID_HANDLE_VALUE;

done:
    if (r) rec_release(r);
    if (data != INVALID_HANDLE_VALUE) CloseHandle(data);
    if (hs != INVALID_HANDLE_VALUE) CloseHandle(hs);
    free(req);
    free(res);
    return hr;
}

HRESULT WINAPI FilterGetMessage(HANDLE hPort, PFILTER_MESSAGE_HEADER lpMessageBuffer, DWORD dwMessageBufferSize,
                                LPOVERLAPPED lpOverlapped)
{
    conn_rec *r;
    femu_credit_msg credit;
    OVERLAPPED local;
    HANDLE localEvent = NULL;
    LPOVERLAPPED ov = lpOverlapped;
    HRESULT hr = S_OK;
    DWORD err = 0;
    BOOL readIssued = FALSE;

    r = rec_lookup(hPort);
    if (!r) return HR_INVALID_HANDLE;
    if (lpMessageBuffer == NULL) {
        rec_release(r);
        return E_INVALIDARG;
    }
    if (dwMessageBufferSize < sizeof(FILTER_MESSAGE_HEADER)) {
        rec_release(r);
        return HR_INSUFFICIENT_BUFFER;
    }
    if (ov == NULL) {
        localEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
        if (!localEvent) {
            hr = HRESULT_FROM_WIN32(GetLastError());
            rec_release(r);
            return hr;
        }
        memset(&local, 0, sizeof local);
        local.hEvent = (HANDLE)((ULONG_PTR)localEvent | 1);
        ov = &local;
    }
    memset(&credit, 0, sizeof credit);
    credit.h.magic = FEMU_MAGIC;
    credit.h.type = FEMU_MSG_CREDIT;
    credit.size = dwMessageBufferSize;

    /* Read first, credit second, both under the lock: the server only writes a notification after
     * seeing the credit, so the read is already queued (and pending) by then, and reads complete in
     * the order their credits arrive. */
    AcquireSRWLockExclusive(&r->readLock);
    if (r->disconnected) {
        hr = HR_INVALID_HANDLE;
    } else if (!ReadFile(hPort, lpMessageBuffer, dwMessageBufferSize, NULL, ov) &&
               (err = GetLastError()) != ERROR_IO_PENDING) {
        hr = hresult_from_transport(r, err);
    } else {
        readIssued = TRUE;
        err = internal_write(hPort, r->creditEvent, &credit, sizeof credit);
        if (err != 0) {
            /* The read is queued and will complete (with the pipe's error) on its own. */
            hresult_from_transport(r, err);
        }
    }
    ReleaseSRWLockExclusive(&r->readLock);

    if (readIssued) {
        if (lpOverlapped) {
            /* fltmgr pends every overlapped FilterGetMessage; the completion is always queued. */
            hr = HR_IO_PENDING;
        } else {
            DWORD n = 0;
            if (!GetOverlappedResult(hPort, ov, &n, TRUE))
                hr = hresult_from_transport(r, GetLastError());
            else if (n < sizeof(FILTER_MESSAGE_HEADER))
                hr = HR_INSUFFICIENT_BUFFER; /* too small: the message stays queued */
            else
                hr = S_OK;
        }
    }
    if (localEvent) CloseHandle(localEvent);
    rec_release(r);
    return hr;
}

HRESULT WINAPI FilterSendMessage(HANDLE hPort, LPVOID lpInBuffer, DWORD dwInBufferSize, LPVOID lpOutBuffer,
                                 DWORD dwOutBufferSize, LPDWORD lpBytesReturned)
{
    conn_rec *r;
    femu_send_msg *req;
    femu_send_result_msg *res = NULL;
    DWORD resLen = 0, err;
    HRESULT hr;

    r = rec_lookup(hPort);
    if (!r) return HR_INVALID_HANDLE;
    if (lpBytesReturned == NULL || (lpInBuffer == NULL && dwInBufferSize != 0) ||
        (lpOutBuffer == NULL && dwOutBufferSize != 0)) {
        rec_release(r);
        return E_INVALIDARG;
    }
    *lpBytesReturned = 0;
    if (r->disconnected) {
        rec_release(r);
        return HR_INVALID_HANDLE;
    }
    if (dwInBufferSize > 0x7FFFFFFFu - sizeof *req) {
        rec_release(r);
        return E_INVALIDARG;
    }
    req = (femu_send_msg *)malloc(sizeof *req + dwInBufferSize);
    if (!req) {
        rec_release(r);
        return E_OUTOFMEMORY;
    }
    req->h.magic = FEMU_MAGIC;
    req->h.type = FEMU_MSG_SEND;
    req->inSize = dwInBufferSize;
    req->outSize = dwOutBufferSize;
    if (dwInBufferSize) memcpy(req + 1, lpInBuffer, dwInBufferSize);
    err = call(r, req, (DWORD)(sizeof *req + dwInBufferSize), (BYTE **)&res, &resLen);
    free(req);
    if (err != 0) {
        hr = hresult_from_transport(r, err);
    } else if (resLen < sizeof *res || res->h.magic != FEMU_MAGIC || res->h.type != FEMU_MSG_SEND_RESULT ||
               res->bytesReturned > dwOutBufferSize || resLen != sizeof *res + res->bytesReturned) {
        hr = HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
    } else {
        if (res->bytesReturned) memcpy(lpOutBuffer, res + 1, res->bytesReturned);
        *lpBytesReturned = res->bytesReturned;
        hr = hresult_from_call_status(res->status);
    }
    free(res);
    rec_release(r);
    return hr;
}

HRESULT WINAPI FilterReplyMessage(HANDLE hPort, PFILTER_REPLY_HEADER lpReplyBuffer, DWORD dwReplyBufferSize)
{
    conn_rec *r;
    femu_reply_msg *req;
    femu_status_msg *res = NULL;
    DWORD resLen = 0, err, payload;
    HRESULT hr;

    r = rec_lookup(hPort);
    if (!r) return HR_INVALID_HANDLE;
    if (lpReplyBuffer == NULL || dwReplyBufferSize < sizeof(FILTER_REPLY_HEADER) ||
        dwReplyBufferSize > 0x7FFFFFFFu - sizeof *req) {
        rec_release(r);
        return E_INVALIDARG;
    }
    if (r->disconnected) {
        rec_release(r);
        return HR_INVALID_HANDLE;
    }
    payload = dwReplyBufferSize - (DWORD)sizeof(FILTER_REPLY_HEADER);
    req = (femu_reply_msg *)malloc(sizeof *req + payload);
    if (!req) {
        rec_release(r);
        return E_OUTOFMEMORY;
    }
    req->h.magic = FEMU_MAGIC;
    req->h.type = FEMU_MSG_REPLY;
    req->status = lpReplyBuffer->Status;
    req->payloadSize = payload;
    req->messageId = lpReplyBuffer->MessageId;
    if (payload) memcpy(req + 1, (const BYTE *)lpReplyBuffer + sizeof(FILTER_REPLY_HEADER), payload);
    err = call(r, req, (DWORD)(sizeof *req + payload), (BYTE **)&res, &resLen);
    free(req);
    if (err != 0) {
        hr = hresult_from_transport(r, err);
    } else if (resLen != sizeof *res || res->h.magic != FEMU_MAGIC || res->h.type != FEMU_MSG_REPLY_RESULT) {
        hr = HRESULT_FROM_WIN32(ERROR_INVALID_DATA);
    } else {
        hr = hresult_from_call_status(res->status);
    }
    free(res);
    rec_release(r);
    return hr;
}

/* ------------------------------------------------------------------------------------------ */

BOOL WINAPI DllMain(HINSTANCE instance, DWORD reason, LPVOID reserved)
{
    (void)instance;
    if (reason == DLL_PROCESS_DETACH && reserved == NULL) {
        /* FreeLibrary: release every record (call pipes). At process exit the system does it. */
        size_t i;
        AcquireSRWLockExclusive(&g_tableLock);
        for (i = 0; i < g_tableCount; i++) rec_release(g_table[i]);
        free(g_table);
        g_table = NULL;
        g_tableCount = g_tableCap = 0;
        ReleaseSRWLockExclusive(&g_tableLock);
    }
    return TRUE;
}
