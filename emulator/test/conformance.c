/*
 * Conformance program for the filter-manager emulator: fltlib.dll (emulator/src/fltlib.c) and
 * fltmgr.sys (emulator/kernel/) under Wine, checked against shared/reference/port-semantics.md
 * and the choices listed in emulator/README.md.
 *
 * The clients are this program, through the emulator's fltlib.dll loaded from the program's
 * folder; the kernel side is the conformance driver (fltemu-conformance.sys, conformance-driver.c),
 * which the program drives through its control port: it creates test ports, sends from kernel
 * threads, closes ports and reports what its callbacks saw. scripts/test-emulator.mjs loads the
 * filter manager and the driver first. One check runs a client in a child process and kills it;
 * the last one stops the driver's service (its name is the first argument) with reads pending.
 * Prints `ok - name` / `not ok - name: detail` per check, then `N passed, N failed`.
 * Exit code: 0 when everything passed, 1 otherwise. Every check runs under a watchdog.
 */
#define WIN32_LEAN_AND_MEAN
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>
#include <fltuserstructures.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conformance-protocol.h"

#ifndef NT_SUCCESS
#define NT_SUCCESS(Status) (((NTSTATUS)(Status)) >= 0)
#endif
#ifndef OBJ_KERNEL_HANDLE
#define OBJ_KERNEL_HANDLE 0x00000200L
#endif

/* ---- the DLL under test --------------------------------------------------------------------- */

typedef HRESULT(WINAPI *connect_fn)(LPCWSTR, DWORD, LPCVOID, WORD, LPSECURITY_ATTRIBUTES, HANDLE *);
typedef HRESULT(WINAPI *send_fn)(HANDLE, LPVOID, DWORD, LPVOID, DWORD, LPDWORD);
typedef HRESULT(WINAPI *get_fn)(HANDLE, PFILTER_MESSAGE_HEADER, DWORD, LPOVERLAPPED);
typedef HRESULT(WINAPI *reply_fn)(HANDLE, PFILTER_REPLY_HEADER, DWORD);

static HMODULE g_dll;
static WCHAR g_dllPath[MAX_PATH];
static WCHAR g_exePath[MAX_PATH];
static connect_fn pConnect;
static send_fn pSend;
static get_fn pGet;
static reply_fn pReply;

#define HR_OK ((HRESULT)0)
#define HR_FILE_NOT_FOUND ((HRESULT)0x80070002L)
#define HR_ACCESS_DENIED ((HRESULT)0x80070005L)
#define HR_INVALID_HANDLE ((HRESULT)0x80070006L)
#define HR_INVALID_FUNCTION ((HRESULT)0x80070001L)
#define HR_INVALIDARG ((HRESULT)0x80070057L)
#define HR_INSUFFICIENT_BUFFER ((HRESULT)0x8007007AL)
#define HR_MORE_DATA ((HRESULT)0x800700EAL)
#define HR_IO_PENDING ((HRESULT)0x800703E5L)
#define HR_CONNECTION_COUNT_LIMIT ((HRESULT)0x800704D6L)
#define HR_NO_WAITER_FOR_REPLY ((HRESULT)0x801F0020L)

#define HX(v) ((unsigned long)(v))

static BOOL load_dll(void)
{
    FARPROC f[4];
    WCHAR *slash;
    GetModuleFileNameW(NULL, g_exePath, MAX_PATH);
    wcscpy(g_dllPath, g_exePath);
    slash = wcsrchr(g_dllPath, L'\\');
    if (!slash) return FALSE;
    wcscpy(slash + 1, L"fltlib.dll");
    g_dll = LoadLibraryW(g_dllPath);
    if (!g_dll) return FALSE;
    f[0] = GetProcAddress(g_dll, "FilterConnectCommunicationPort");
    f[1] = GetProcAddress(g_dll, "FilterSendMessage");
    f[2] = GetProcAddress(g_dll, "FilterGetMessage");
    f[3] = GetProcAddress(g_dll, "FilterReplyMessage");
    if (!f[0] || !f[1] || !f[2] || !f[3]) return FALSE;
    memcpy(&pConnect, &f[0], sizeof pConnect);
    memcpy(&pSend, &f[1], sizeof pSend);
    memcpy(&pGet, &f[2], sizeof pGet);
    memcpy(&pReply, &f[3], sizeof pReply);
    return TRUE;
}

/* ---- harness -------------------------------------------------------------------------------- */

#define DETAIL_CCH 600
#define CHECK(cond, ...)                                   \
    do {                                                   \
        if (!(cond)) {                                     \
            snprintf(detail, DETAIL_CCH, __VA_ARGS__);     \
            ok = 0;                                        \
            goto done;                                     \
        }                                                  \
    } while (0)

/* A client connected to server `s` as `h`, its ConnectNotify done. */
#define CHECK_CONNECTED(s, h)                                                              \
    do {                                                                                   \
        CHECK(pConnect((s)->name, 0, NULL, 0, NULL, &(h)) == HR_OK, "connect failed");     \
        CHECK(wait_count((s), W_CONNECTS, 1, 10000), "ConnectNotify did not run");         \
    } while (0)

typedef int (*check_fn)(char *detail);

typedef struct check_run {
    check_fn fn;
    int result;
    char detail[DETAIL_CCH];
} check_run;

static CRITICAL_SECTION g_printLock;
static int g_passed, g_failed;
static BOOL g_summaryPrinted;

static void report(const char *name, int ok, const char *detail)
{
    EnterCriticalSection(&g_printLock);
    if (ok) {
        g_passed++;
        printf("ok - %s\n", name);
    } else {
        g_failed++;
        printf("not ok - %s: %s\n", name, detail);
    }
    LeaveCriticalSection(&g_printLock);
}

static void print_summary(void)
{
    EnterCriticalSection(&g_printLock);
    if (!g_summaryPrinted) {
        g_summaryPrinted = TRUE;
        printf("%d passed, %d failed\n", g_passed, g_failed);
    }
    LeaveCriticalSection(&g_printLock);
}

static DWORD WINAPI check_thread(LPVOID arg)
{
    check_run *run = (check_run *)arg;
    run->result = run->fn(run->detail);
    return 0;
}

static BOOL g_hung;

static void run_check(const char *name, check_fn fn, DWORD timeoutMs)
{
    check_run *run = (check_run *)calloc(1, sizeof *run);
    HANDLE t;
    if (!run) {
        report(name, 0, "out of memory");
        return;
    }
    run->fn = fn;
    t = CreateThread(NULL, 0, check_thread, run, 0, NULL);
    if (!t) {
        report(name, 0, "CreateThread failed");
        free(run);
        return;
    }
    if (WaitForSingleObject(t, timeoutMs) != WAIT_OBJECT_0) {
        char detail[80];
        snprintf(detail, sizeof detail, "hung (watchdog after %lu ms)", (unsigned long)timeoutMs);
        report(name, 0, detail);
        g_hung = TRUE; /* the thread and run are abandoned */
        CloseHandle(t);
        return;
    }
    CloseHandle(t);
    report(name, run->result, run->detail);
    free(run);
}

static DWORD WINAPI overall_watchdog(LPVOID arg)
{
    (void)arg;
    Sleep(240000);
    report("whole run", 0, "still running after 240 s");
    print_summary();
    ExitProcess(1);
}

/* ---- the kernel side: requests to the conformance driver -------------------------------------- */

static HANDLE g_control = INVALID_HANDLE_VALUE;

/* Sends a request (+ payload) to the driver; the answer's extra bytes (context, reply) go to
 * `extra`. Returns the operation's NTSTATUS, or STATUS_UNSUCCESSFUL when the request itself failed. */
static NTSTATUS control(CONTROL_REQUEST *req, const void *payload, ULONG payloadBytes, CONTROL_ANSWER *answer,
                        void *extra, ULONG extraBytes)
{
    ULONG inBytes = (ULONG)sizeof *req + payloadBytes, outBytes = (ULONG)sizeof *answer + extraBytes;
    BYTE *in = (BYTE *)malloc(inBytes), *out = (BYTE *)calloc(1, outBytes);
    DWORD returned = 0;
    HRESULT hr = E_OUTOFMEMORY;
    if (in && out) {
        memcpy(in, req, sizeof *req);
        if (payloadBytes) memcpy(in + sizeof *req, payload, payloadBytes);
        hr = pSend(g_control, in, inBytes, out, outBytes, &returned);
    }
    if (hr == HR_OK && returned >= sizeof *answer) {
        memcpy(answer, out, sizeof *answer);
        if (extra && returned > sizeof *answer) memcpy(extra, out + sizeof *answer, returned - sizeof *answer);
    } else {
        memset(answer, 0, sizeof *answer);
        answer->Result = STATUS_UNSUCCESSFUL;
    }
    free(in);
    free(out);
    return answer->Result;
}

static void request_init(CONTROL_REQUEST *req, ULONG op, ULONG server)
{
    memset(req, 0, sizeof *req);
    req->Op = op;
    req->Server = server;
}

typedef struct srv {
    ULONG id;
    WCHAR name[80];
    ULONG ctxSize;
    BYTE ctx[CONF_MAX_CONTEXT];
} srv;

enum which { W_CONNECTS, W_DISCONNECTS, W_MESSAGES };

static volatile LONG g_nameCounter;

static void make_name(WCHAR *out, size_t cch, const char *tag)
{
    char tmp[80];
    snprintf(tmp, sizeof tmp, "\\FemuTest-%lu-%s-%ld", (unsigned long)GetCurrentProcessId(), tag,
             (long)InterlockedIncrement(&g_nameCounter));
    MultiByteToWideChar(CP_ACP, 0, tmp, -1, out, (int)cch);
}

/* A test port under a filter of its own (the name given, or a fresh one). */
static srv *srv_start_flags(const WCHAR *name, const char *tag, LONG maxConnections, ULONG flags,
                            NTSTATUS *statusOut)
{
    srv *s = (srv *)calloc(1, sizeof *s);
    CONTROL_REQUEST req;
    CONTROL_ANSWER answer;
    NTSTATUS status;
    if (!s) return NULL;
    if (name) wcscpy(s->name, name);
    else make_name(s->name, 80, tag);
    request_init(&req, CONTROL_START_SERVER, 0);
    wcscpy(req.Name, s->name);
    req.MaxConnections = (ULONG)maxConnections;
    req.Attributes = OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE;
    req.Flags = flags;
    status = control(&req, NULL, 0, &answer, NULL, 0);
    if (statusOut) *statusOut = status;
    if (!NT_SUCCESS(status)) {
        free(s);
        return NULL;
    }
    s->id = answer.Value;
    return s;
}

static srv *srv_start_named(const WCHAR *name, const char *tag, LONG maxConnections, BOOL withMessageNotify,
                            NTSTATUS *statusOut)
{
    return srv_start_flags(name, tag, maxConnections, withMessageNotify ? CONF_WITH_MESSAGE_NOTIFY : 0, statusOut);
}

static srv *srv_start(const char *tag, LONG maxConnections, BOOL withMessageNotify, NTSTATUS *statusOut)
{
    return srv_start_named(NULL, tag, maxConnections, withMessageNotify, statusOut);
}

static NTSTATUS srv_op(srv *s, ULONG op, ULONG slot, ULONG value, CONTROL_ANSWER *answer)
{
    CONTROL_REQUEST req;
    CONTROL_ANSWER local;
    request_init(&req, op, s->id);
    req.Slot = slot;
    req.Value = value;
    return control(&req, NULL, 0, answer ? answer : &local, NULL, 0);
}

/* Closes the port and unregisters the filter: DisconnectNotify for every connection left. */
static void srv_stop(srv *s)
{
    if (!s) return;
    srv_op(s, CONTROL_STOP_SERVER, 0, 0, NULL);
    free(s);
}

static void srv_refuse(srv *s, NTSTATUS status) { srv_op(s, CONTROL_REFUSE, 0, (ULONG)status, NULL); }
static void srv_close_port(srv *s) { srv_op(s, CONTROL_CLOSE_SERVER_PORT, 0, 0, NULL); }
static void srv_unregister(srv *s) { srv_op(s, CONTROL_UNREGISTER, 0, 0, NULL); }

/* FltCloseClientPort on a slot's variable; TRUE when the variable is NULL afterwards. */
static BOOL srv_close_client(srv *s, ULONG slot)
{
    CONTROL_ANSWER answer;
    return NT_SUCCESS(srv_op(s, CONTROL_CLOSE_CLIENT, slot, 0, &answer)) && answer.Value != 0;
}

static LONG srv_get(srv *s, enum which which)
{
    CONTROL_ANSWER answer;
    if (!NT_SUCCESS(srv_op(s, CONTROL_COUNTS, 0, 0, &answer))) return -1;
    return (LONG)(which == W_CONNECTS ? answer.Connects : which == W_DISCONNECTS ? answer.Disconnects : answer.Messages);
}

/* The last connection context ConnectNotify saw, into s->ctx / s->ctxSize. */
static BOOL srv_fetch_context(srv *s)
{
    CONTROL_REQUEST req;
    CONTROL_ANSWER answer;
    request_init(&req, CONTROL_COUNTS, s->id);
    req.Flags = CONF_WITH_CONTEXT;
    if (!NT_SUCCESS(control(&req, NULL, 0, &answer, s->ctx, sizeof s->ctx))) return FALSE;
    s->ctxSize = answer.ContextBytes;
    return TRUE;
}

/* Waits until the count reaches target (the driver's counters are polled every 5 ms). */
static BOOL wait_count(srv *s, enum which which, LONG target, DWORD ms)
{
    ULONGLONG deadline = GetTickCount64() + ms;
    for (;;) {
        if (srv_get(s, which) >= target) return TRUE;
        if (GetTickCount64() >= deadline) return FALSE;
        Sleep(5);
    }
}

/* FltCreateCommunicationPort's status for a port that is closed again at once; on s's filter
 * (onServerFilter) or on the driver's control filter. */
static NTSTATUS create_port_status(srv *s, BOOL onServerFilter, const WCHAR *name, LONG maxConnections,
                                   ULONG attributes)
{
    CONTROL_REQUEST req;
    CONTROL_ANSWER answer;
    request_init(&req, CONTROL_CREATE_PORT, s ? s->id : 0);
    wcscpy(req.Name, name);
    req.MaxConnections = (ULONG)maxConnections;
    req.Attributes = attributes;
    req.Flags = onServerFilter ? CONF_ON_SERVER_FILTER : 0;
    return control(&req, NULL, 0, &answer, NULL, 0);
}

/* A FltSendMessage on a kernel thread of the driver, on the client port variable of a slot. */
typedef struct ksend {
    ULONG id;
    BOOL finished;
    NTSTATUS status;
    ULONG replyLen;
    BYTE reply[CONF_MAX_REPLY];
    DWORD elapsedMs;
    ULONG right, wrong;
} ksend;

static ksend *ksend_request(CONTROL_REQUEST *req, const void *payload, ULONG len)
{
    ksend *k = (ksend *)calloc(1, sizeof *k);
    CONTROL_ANSWER answer;
    if (!k) return NULL;
    if (!NT_SUCCESS(control(req, payload, len, &answer, NULL, 0))) {
        free(k);
        return NULL;
    }
    k->id = answer.Value;
    return k;
}

static ksend *ksend_start(srv *s, ULONG slot, const void *payload, ULONG len, ULONG replyLen, BOOL hasTimeout,
                          LONGLONG timeout)
{
    CONTROL_REQUEST req;
    if (!s) return NULL;
    request_init(&req, CONTROL_KSEND, s->id);
    req.Slot = slot;
    req.ReplyLength = replyLen;
    req.Flags = hasTimeout ? CONF_HAS_TIMEOUT : 0;
    req.Timeout = timeout;
    return ksend_request(&req, payload, len);
}

/* FltEmuSendRawMessage on a kernel thread: `bytes` is the whole message, header included. */
static ksend *ksend_raw(srv *s, ULONG slot, const void *bytes, ULONG len)
{
    CONTROL_REQUEST req;
    if (!s) return NULL;
    request_init(&req, CONTROL_KSEND, s->id);
    req.Slot = slot;
    req.Flags = CONF_RAW | CONF_HAS_TIMEOUT;
    req.Timeout = -20LL * 10000000;
    return ksend_request(&req, bytes, len);
}

/* A kernel thread sending count messages of a BULK_* kind. */
static ksend *bulk_start(srv *s, ULONG kind, ULONG first, ULONG count)
{
    CONTROL_REQUEST req;
    if (!s) return NULL;
    request_init(&req, CONTROL_BULK, s->id);
    req.Value = kind;
    req.First = first;
    req.Count = count;
    return ksend_request(&req, NULL, 0);
}

/* Whether the send has returned within ms (its results are then in k). */
static BOOL ksend_done(ksend *k, DWORD ms)
{
    ULONGLONG deadline = GetTickCount64() + ms;
    if (!k) return FALSE;
    while (!k->finished) {
        CONTROL_REQUEST req;
        CONTROL_ANSWER answer;
        request_init(&req, CONTROL_KSEND_RESULT, 0);
        req.Value = k->id;
        if (!NT_SUCCESS(control(&req, NULL, 0, &answer, k->reply, sizeof k->reply))) return FALSE;
        if (answer.Value) {
            k->finished = TRUE;
            k->status = answer.Status;
            k->replyLen = answer.ReplyLength;
            k->elapsedMs = answer.ElapsedMs;
            k->right = answer.Right;
            k->wrong = answer.Wrong;
            break;
        }
        if (GetTickCount64() >= deadline) return FALSE;
        Sleep(5);
    }
    return TRUE;
}

/* Frees k once its send has returned; a send still blocked is left to the driver's unload. */
static void ksend_free(ksend *k)
{
    CONTROL_REQUEST req;
    CONTROL_ANSWER answer;
    if (!k) return;
    if (ksend_done(k, 5000)) {
        request_init(&req, CONTROL_KSEND_FREE, 0);
        req.Value = k->id;
        control(&req, NULL, 0, &answer, NULL, 0);
    }
    free(k);
}

/* ---- client helpers ------------------------------------------------------------------------- */

typedef TEST_COMMAND cmd_msg;
#define CMD_HDR ((ULONG)sizeof(TEST_COMMAND))
#define CMD_ECHO TEST_ECHO
#define CMD_STATUS TEST_STATUS
#define CMD_SEND_BACK TEST_SEND_BACK

typedef struct rd {
    OVERLAPPED ov;
    DWORD size;
    FILTER_MESSAGE_HEADER *msg;
} rd;

static rd *rd_new(DWORD size)
{
    rd *r = (rd *)calloc(1, sizeof *r);
    if (!r) return NULL;
    r->size = size;
    r->msg = (FILTER_MESSAGE_HEADER *)calloc(1, size);
    r->ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    return r;
}

static HRESULT rd_start(HANDLE h, rd *r)
{
    HANDLE ev = r->ov.hEvent;
    memset(&r->ov, 0, sizeof r->ov);
    r->ov.hEvent = ev;
    memset(r->msg, 0xCC, r->size);
    return pGet(h, r->msg, r->size, &r->ov);
}

/* 1: completed (n, err), 0: still pending after ms */
static int rd_wait(HANDLE h, rd *r, DWORD ms, DWORD *n, DWORD *err)
{
    if (WaitForSingleObject(r->ov.hEvent, ms) != WAIT_OBJECT_0) return 0;
    *n = 0;
    *err = GetOverlappedResult(h, &r->ov, n, FALSE) ? 0 : GetLastError();
    return 1;
}

/* Frees r only when its I/O is over (an abandoned pending read keeps its buffer, as required). */
static void rd_free(rd *r)
{
    if (!r) return;
    if (WaitForSingleObject(r->ov.hEvent, 0) != WAIT_OBJECT_0) return;
    CloseHandle(r->ov.hEvent);
    free(r->msg);
    free(r);
}

static BYTE *payload_of(rd *r) { return (BYTE *)(r->msg + 1); }

static HRESULT reply_bytes(HANDLE h, UINT64 id, const void *data, DWORD len)
{
    BYTE buf[sizeof(FILTER_REPLY_HEADER) + 512];
    FILTER_REPLY_HEADER hdr;
    memset(&hdr, 0, sizeof hdr);
    hdr.Status = 0;
    hdr.MessageId = id;
    memcpy(buf, &hdr, sizeof hdr);
    if (len) memcpy(buf + sizeof hdr, data, len);
    return pReply(h, (PFILTER_REPLY_HEADER)buf, (DWORD)sizeof hdr + len);
}

static HRESULT send_cmd(HANDLE h, ULONG cmd, ULONG arg, const void *data, ULONG len, void *out, DWORD outLen,
                        DWORD *returned)
{
    BYTE buf[CMD_HDR + 512];
    cmd_msg *m = (cmd_msg *)buf;
    m->Command = cmd;
    m->Argument = arg;
    if (len) memcpy(buf + CMD_HDR, data, len);
    return pSend(h, buf, CMD_HDR + len, out, outLen, returned);
}

/* ---- checks ---------------------------------------------------------------------------------- */

static int c_dll_is_emulator(char *detail)
{
    int ok = 1;
    WCHAR loaded[MAX_PATH];
    char a[MAX_PATH], b[MAX_PATH];
    GetModuleFileNameW(g_dll, loaded, MAX_PATH);
    WideCharToMultiByte(CP_UTF8, 0, loaded, -1, a, MAX_PATH, NULL, NULL);
    WideCharToMultiByte(CP_UTF8, 0, g_dllPath, -1, b, MAX_PATH, NULL, NULL);
    CHECK(lstrcmpiW(loaded, g_dllPath) == 0, "loaded %s instead of %s (Wine builtin? set WINEDLLOVERRIDES=fltlib=n,b)",
          a, b);
done:
    return ok;
}

static int c_missing_port(char *detail)
{
    int ok = 1;
    HANDLE h = NULL;
    HRESULT hr = pConnect(L"\\FemuNoSuchPort-0123456789", 0, NULL, 0, NULL, &h);
    CHECK(hr == HR_FILE_NOT_FOUND, "hr 0x%08lx, expected 0x80070002", HX(hr));
    CHECK(h == INVALID_HANDLE_VALUE, "*hPort is %p, expected INVALID_HANDLE_VALUE", (void *)h);
done:
    return ok;
}

static int c_max_connections(char *detail)
{
    int ok = 1;
    HANDLE a = INVALID_HANDLE_VALUE, b = INVALID_HANDLE_VALUE, c = INVALID_HANDLE_VALUE;
    HRESULT hr;
    srv *s = srv_start("max", 1, TRUE, NULL);
    CHECK(s, "server port could not be created");
    hr = pConnect(s->name, 0, NULL, 0, NULL, &a);
    CHECK(hr == HR_OK, "first connect: 0x%08lx", HX(hr));
    hr = pConnect(s->name, 0, NULL, 0, NULL, &b);
    CHECK(hr == HR_CONNECTION_COUNT_LIMIT, "second connect: hr 0x%08lx, expected 0x800704D6", HX(hr));
    CHECK(b == INVALID_HANDLE_VALUE, "second connect returned a handle");
    CHECK(srv_get(s, W_CONNECTS) == 1, "ConnectNotify ran %ld times, expected 1", (long)srv_get(s, W_CONNECTS));
    CloseHandle(a);
    a = INVALID_HANDLE_VALUE;
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify after the client closed its handle");
    hr = pConnect(s->name, 0, NULL, 0, NULL, &c);
    CHECK(hr == HR_OK, "connect after the first client left: 0x%08lx", HX(hr));
done:
    if (a != INVALID_HANDLE_VALUE) CloseHandle(a);
    if (c != INVALID_HANDLE_VALUE) CloseHandle(c);
    srv_stop(s);
    return ok;
}

static int c_ctx_ptr_without_size(char *detail)
{
    int ok = 1;
    BYTE ctx[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    HANDLE h = NULL;
    HRESULT hr;
    srv *s = srv_start("ctx1", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    hr = pConnect(s->name, 0, ctx, 0, NULL, &h);
    CHECK(hr == E_INVALIDARG, "hr 0x%08lx, expected E_INVALIDARG 0x80070057", HX(hr));
    CHECK(h == INVALID_HANDLE_VALUE, "*hPort not INVALID_HANDLE_VALUE");
    CHECK(srv_get(s, W_CONNECTS) == 0, "ConnectNotify ran");
done:
    srv_stop(s);
    return ok;
}

static int c_ctx_size_without_ptr(char *detail)
{
    int ok = 1;
    HANDLE h = NULL;
    HRESULT hr;
    srv *s = srv_start("ctx2", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    hr = pConnect(s->name, 0, NULL, 8, NULL, &h);
    CHECK(hr == E_INVALIDARG, "hr 0x%08lx, expected E_INVALIDARG 0x80070057", HX(hr));
    CHECK(h == INVALID_HANDLE_VALUE, "*hPort not INVALID_HANDLE_VALUE");
done:
    srv_stop(s);
    return ok;
}

static int c_ctx_too_large(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    HRESULT hr;
    BYTE *ctx = (BYTE *)malloc(0x10000);
    DWORD i;
    srv *s = srv_start("ctx3", 4, TRUE, NULL);
    CHECK(s && ctx, "setup failed");
    for (i = 0; i < 0x10000; i++) ctx[i] = (BYTE)(i * 7 + 3);
    hr = pConnect(s->name, 0, ctx, 0xFFE9, NULL, &h);
    CHECK(hr == E_INVALIDARG, "0xFFE9-byte context: hr 0x%08lx, expected E_INVALIDARG", HX(hr));
    hr = pConnect(s->name, 0, ctx, 0xFFE8, NULL, &h);
    CHECK(hr == HR_OK, "0xFFE8-byte context (the limit) refused: 0x%08lx", HX(hr));
    CHECK(srv_fetch_context(s), "context query failed");
    CHECK(s->ctxSize == 0xFFE8 && memcmp(s->ctx, ctx, 0xFFE8) == 0, "0xFFE8-byte context arrived damaged (size %lu)",
          (unsigned long)s->ctxSize);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    free(ctx);
    return ok;
}

static int c_connect_refused(char *detail)
{
    int ok = 1;
    HANDLE h = NULL;
    HRESULT hr;
    srv *s = srv_start("refuse", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    srv_refuse(s, STATUS_ACCESS_DENIED);
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h);
    CHECK(hr == HR_ACCESS_DENIED, "STATUS_ACCESS_DENIED: hr 0x%08lx, expected 0x80070005", HX(hr));
    CHECK(h == INVALID_HANDLE_VALUE, "*hPort not INVALID_HANDLE_VALUE");
    srv_refuse(s, (NTSTATUS)0xC01C0004L); /* a filter-manager facility code */
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h);
    CHECK(hr == (HRESULT)0x801F0004L, "0xC01C0004: hr 0x%08lx, expected 0x801F0004", HX(hr));
    srv_refuse(s, 0);
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h);
    CHECK(hr == HR_OK, "accepting again failed: 0x%08lx", HX(hr));
    CloseHandle(h);
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify");
    Sleep(200);
    CHECK(srv_get(s, W_DISCONNECTS) == 1, "DisconnectNotify ran %ld times (refused connections must not get one)",
          (long)srv_get(s, W_DISCONNECTS));
done:
    srv_stop(s);
    return ok;
}

static int c_ctx_intact(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    HRESULT hr;
    BYTE ctx[300];
    int i;
    srv *s = srv_start("ctx4", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    for (i = 0; i < 300; i++) ctx[i] = (BYTE)(255 - i);
    hr = pConnect(s->name, 0, ctx, sizeof ctx, NULL, &h);
    CHECK(hr == HR_OK, "connect: 0x%08lx", HX(hr));
    CHECK(srv_fetch_context(s), "context query failed");
    CHECK(s->ctxSize == sizeof ctx, "SizeOfContext %lu, expected 300", (unsigned long)s->ctxSize);
    CHECK(memcmp(s->ctx, ctx, sizeof ctx) == 0, "context bytes differ");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    return ok;
}

static int c_send_roundtrip(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    HRESULT hr;
    BYTE in[100], out[200];
    DWORD returned = 12345;
    int i;
    srv *s = srv_start("send", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h) == HR_OK, "connect failed");
    for (i = 0; i < 100; i++) in[i] = (BYTE)i;
    memset(out, 0, sizeof out);
    hr = send_cmd(h, CMD_ECHO, 0, in, sizeof in, out, sizeof out, &returned);
    CHECK(hr == HR_OK, "hr 0x%08lx", HX(hr));
    CHECK(returned == 100, "lpBytesReturned %lu, expected 100 (ReturnOutputBufferLength)", (unsigned long)returned);
    for (i = 0; i < 100; i++) CHECK(out[i] == in[99 - i], "output byte %d wrong", i);
    hr = send_cmd(h, CMD_ECHO, 0, in, 10, NULL, 0, &returned);
    CHECK(hr == HR_OK && returned == 0, "without output buffer: hr 0x%08lx, returned %lu", HX(hr),
          (unsigned long)returned);
    CHECK(srv_get(s, W_MESSAGES) == 2, "MessageNotify ran %ld times", (long)srv_get(s, W_MESSAGES));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    return ok;
}

static int c_send_status_mapping(char *detail)
{
    static const struct {
        ULONG status;
        ULONG hr;
    } cases[] = {
        {0xC0000022u, 0x80070005u}, /* STATUS_ACCESS_DENIED -> E_ACCESSDENIED */
        {0xC0000034u, 0x80070002u}, /* STATUS_OBJECT_NAME_NOT_FOUND -> ERROR_FILE_NOT_FOUND */
        {0xC000000Du, 0x80070057u}, /* STATUS_INVALID_PARAMETER */
        {0xC01C0010u, 0x801F0010u}, /* facility 0x1C -> FACILITY_USERMODE_FILTER_MANAGER */
        {0xC01C0020u, 0x801F0020u}, /* STATUS_FLT_NO_WAITER_FOR_REPLY */
        {0x801C0001u, 0x8007007Au}, /* STATUS_FLT_BUFFER_TOO_SMALL -> ERROR_INSUFFICIENT_BUFFER */
        {0xC0190001u, 0x80004005u}, /* another facility -> E_FAIL */
        {0x80000005u, 0x800700EAu}, /* STATUS_BUFFER_OVERFLOW -> ERROR_MORE_DATA */
        {0x00000102u, 0x00000000u}, /* STATUS_TIMEOUT is a success code -> S_OK */
        {0x00000000u, 0x00000000u},
    };
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    size_t i;
    srv *s = srv_start("status", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h) == HR_OK, "connect failed");
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        DWORD returned = 7;
        HRESULT hr = send_cmd(h, CMD_STATUS, cases[i].status, NULL, 0, NULL, 0, &returned);
        CHECK((ULONG)hr == cases[i].hr, "MessageNotify 0x%08lx: hr 0x%08lx, expected 0x%08lx", HX(cases[i].status),
              HX(hr), HX(cases[i].hr));
    }
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    return ok;
}

static int c_no_message_notify(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    HRESULT hr;
    DWORD returned = 5;
    BYTE out[8];
    srv *s = srv_start("nomsg", 4, FALSE, NULL);
    CHECK(s, "server port could not be created");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h) == HR_OK, "connect failed");
    hr = send_cmd(h, CMD_ECHO, 0, "x", 1, out, sizeof out, &returned);
    CHECK(hr == HR_INVALID_FUNCTION, "hr 0x%08lx, expected 0x80070001 (STATUS_INVALID_DEVICE_REQUEST, emulator choice)",
          HX(hr));
    CHECK(returned == 0, "lpBytesReturned %lu", (unsigned long)returned);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    return ok;
}

/* ---- 10,000 messages through 32 pending reads on a thread-pool I/O ---- */

#define TP_MESSAGES 10000
#define TP_READS 32
#define TP_SENDERS 4

typedef struct tp_ctx tp_ctx;
typedef struct tp_read {
    OVERLAPPED ov;
    tp_ctx *ctx;
    struct {
        FILTER_MESSAGE_HEADER hdr;
        ULONG seq;
        BYTE pad[60];
    } msg;
} tp_read;

struct tp_ctx {
    HANDLE h;
    PTP_IO io;
    SRWLOCK armLock;
    BOOL stopping;
    volatile LONG outstanding;
    HANDLE idle;
    volatile LONG received, duplicates, replyErrors, armErrors, strays, badSize;
    volatile LONG seen[TP_MESSAGES];
    UINT64 ids[TP_MESSAGES];
    tp_read reads[TP_READS];
};

static void tp_arm(tp_ctx *c, tp_read *r)
{
    HRESULT hr;
    BOOL armed = FALSE;
    AcquireSRWLockExclusive(&c->armLock);
    if (!c->stopping) {
        memset(&r->ov, 0, sizeof r->ov);
        StartThreadpoolIo(c->io);
        hr = pGet(c->h, &r->msg.hdr, sizeof r->msg, &r->ov);
        if (hr == HR_IO_PENDING) {
            armed = TRUE;
        } else {
            CancelThreadpoolIo(c->io);
            InterlockedIncrement(&c->armErrors);
        }
    }
    ReleaseSRWLockExclusive(&c->armLock);
    if (!armed && InterlockedDecrement(&c->outstanding) == 0) SetEvent(c->idle);
}

static VOID CALLBACK tp_callback(PTP_CALLBACK_INSTANCE inst, PVOID context, PVOID overlapped, ULONG result,
                                 ULONG_PTR bytes, PTP_IO io)
{
    tp_ctx *c = (tp_ctx *)context;
    tp_read *r = (tp_read *)overlapped;
    (void)inst;
    (void)io;
    if (r < &c->reads[0] || r >= &c->reads[TP_READS]) {
        InterlockedIncrement(&c->strays);
        return;
    }
    if (result == NO_ERROR) {
        if (bytes != sizeof(FILTER_MESSAGE_HEADER) + sizeof(ULONG) || r->msg.seq >= TP_MESSAGES) {
            InterlockedIncrement(&c->badSize);
        } else {
            ULONG seq = r->msg.seq;
            struct {
                FILTER_REPLY_HEADER h;
                ULONG v;
            } reply;
            if (InterlockedIncrement(&c->seen[seq]) > 1) InterlockedIncrement(&c->duplicates);
            c->ids[seq] = r->msg.hdr.MessageId;
            memset(&reply, 0, sizeof reply);
            reply.h.MessageId = r->msg.hdr.MessageId;
            reply.v = seq * 2 + 1;
            /* exactly header + payload: sizeof(reply) would include padding */
            if (pReply(c->h, &reply.h, sizeof(FILTER_REPLY_HEADER) + sizeof(ULONG)) != HR_OK)
                InterlockedIncrement(&c->replyErrors);
            InterlockedIncrement(&c->received);
        }
        tp_arm(c, r); /* re-arms, or gives up the slot when stopping */
        return;
    }
    if (InterlockedDecrement(&c->outstanding) == 0) SetEvent(c->idle);
}

static int cmp_u64(const void *a, const void *b)
{
    UINT64 x = *(const UINT64 *)a, y = *(const UINT64 *)b;
    return x < y ? -1 : x > y;
}

static int c_threadpool_10k(char *detail)
{
    int ok = 1, i;
    tp_ctx *c = (tp_ctx *)calloc(1, sizeof *c);
    srv *s = srv_start("tp", 4, TRUE, NULL);
    ksend *senders[TP_SENDERS] = {0};
    LONG matched = 0, failures = 0;
    NTSTATUS lastBad = 0;
    BOOL armed = FALSE;
    ULONGLONG t0;
    DWORD ms;
    CHECK(s && c, "setup failed");
    c->h = INVALID_HANDLE_VALUE;
    InitializeSRWLock(&c->armLock);
    c->idle = CreateEventW(NULL, TRUE, FALSE, NULL);
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &c->h) == HR_OK, "connect failed");
    CHECK(wait_count(s, W_CONNECTS, 1, 10000), "ConnectNotify did not run");
    c->io = CreateThreadpoolIo(c->h, tp_callback, c, NULL);
    CHECK(c->io, "CreateThreadpoolIo failed: %lu", (unsigned long)GetLastError());
    for (i = 0; i < TP_READS; i++) {
        c->reads[i].ctx = c;
        InterlockedIncrement(&c->outstanding);
        tp_arm(c, &c->reads[i]);
    }
    armed = TRUE;
    CHECK(c->armErrors == 0, "FilterGetMessage did not return 0x800703E5 for %ld reads", (long)c->armErrors);
    t0 = GetTickCount64();
    for (i = 0; i < TP_SENDERS; i++) {
        senders[i] = bulk_start(s, BULK_ECHO_SEQUENCE, (ULONG)i * (TP_MESSAGES / TP_SENDERS), TP_MESSAGES / TP_SENDERS);
        CHECK(senders[i], "kernel sender did not start");
    }
    for (i = 0; i < TP_SENDERS; i++) {
        CHECK(ksend_done(senders[i], 80000), "senders still running after 80 s (received %ld)", (long)c->received);
        matched += (LONG)senders[i]->right;
        failures += (LONG)senders[i]->wrong;
        if (senders[i]->wrong) lastBad = senders[i]->status;
    }
    ms = (DWORD)(GetTickCount64() - t0);
    CHECK(failures == 0, "%ld FltSendMessage calls failed (last status 0x%08lx)", (long)failures, HX(lastBad));
    CHECK(matched == TP_MESSAGES, "%ld replies matched, expected %d", (long)matched, TP_MESSAGES);
    /* Stop the client (every callback has run after this), then check what it saw. */
    AcquireSRWLockExclusive(&c->armLock);
    c->stopping = TRUE;
    ReleaseSRWLockExclusive(&c->armLock);
    CancelIoEx(c->h, NULL);
    armed = FALSE;
    CHECK(c->outstanding == 0 || WaitForSingleObject(c->idle, 10000) == WAIT_OBJECT_0,
          "cancelled reads did not complete (%ld outstanding)", (long)c->outstanding);
    WaitForThreadpoolIoCallbacks(c->io, FALSE);
    CHECK(c->received == TP_MESSAGES, "received %ld messages, expected %d", (long)c->received, TP_MESSAGES);
    CHECK(c->duplicates == 0, "%ld duplicated messages", (long)c->duplicates);
    for (i = 0; i < TP_MESSAGES; i++) CHECK(c->seen[i] == 1, "message %d seen %ld times", i, (long)c->seen[i]);
    CHECK(c->replyErrors == 0 && c->badSize == 0 && c->strays == 0 && c->armErrors == 0,
          "reply errors %ld, bad sizes %ld, stray completions %ld, re-arm errors %ld", (long)c->replyErrors,
          (long)c->badSize, (long)c->strays, (long)c->armErrors);
    qsort(c->ids, TP_MESSAGES, sizeof c->ids[0], cmp_u64);
    for (i = 1; i < TP_MESSAGES; i++) CHECK(c->ids[i] != c->ids[i - 1], "message id %llu used twice",
                                             (unsigned long long)c->ids[i]);
    printf("# 10,000 round trips in %lu ms\n", (unsigned long)ms);
done:
    for (i = 0; i < TP_SENDERS; i++) ksend_free(senders[i]);
    if (c && armed) {
        AcquireSRWLockExclusive(&c->armLock);
        c->stopping = TRUE;
        ReleaseSRWLockExclusive(&c->armLock);
        CancelIoEx(c->h, NULL);
        if (c->outstanding > 0 && WaitForSingleObject(c->idle, 10000) != WAIT_OBJECT_0 && ok) {
            snprintf(detail, DETAIL_CCH, "cancelled reads did not complete (%ld outstanding)", (long)c->outstanding);
            ok = 0;
        }
        WaitForThreadpoolIoCallbacks(c->io, FALSE);
    }
    if (c && c->io) CloseThreadpoolIo(c->io);
    if (c && c->h != INVALID_HANDLE_VALUE) CloseHandle(c->h);
    if (c && c->idle) CloseHandle(c->idle);
    srv_stop(s);
    if (ok) free(c); /* on failure a stuck callback may still use it */
    return ok;
}

/* ---- concurrent FilterSendMessage while reads are pending ---- */

#define CS_THREADS 8
#define CS_CALLS 100

typedef struct cs_arg {
    HANDLE h;
    ULONG tag;
    volatile LONG *bad;
    HRESULT lastHr;
} cs_arg;

static DWORD WINAPI cs_thread(LPVOID p)
{
    cs_arg *a = (cs_arg *)p;
    ULONG i;
    for (i = 0; i < CS_CALLS; i++) {
        ULONG in[2], out[2] = {0, 0};
        DWORD returned = 0;
        HRESULT hr;
        in[0] = a->tag;
        in[1] = i;
        hr = send_cmd(a->h, CMD_ECHO, 0, in, sizeof in, out, sizeof out, &returned);
        if (hr != HR_OK || returned != sizeof in) {
            InterlockedIncrement(a->bad);
            a->lastHr = hr;
            continue;
        }
        {
            BYTE *bi = (BYTE *)in, *bo = (BYTE *)out;
            int k;
            for (k = 0; k < 8; k++)
                if (bo[k] != bi[7 - k]) {
                    InterlockedIncrement(a->bad);
                    break;
                }
        }
    }
    return 0;
}

static int c_concurrent_sends(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE;
    HANDLE threads[CS_THREADS] = {0};
    cs_arg args[CS_THREADS];
    rd *reads[4] = {0};
    ksend *ks[4] = {0};
    volatile LONG bad = 0;
    srv *s = srv_start("concurrent", 4, TRUE, NULL);
    CHECK(s, "server port could not be created");
    CHECK_CONNECTED(s, h);
    for (i = 0; i < 4; i++) {
        HRESULT hr;
        reads[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
        hr = rd_start(h, reads[i]);
        CHECK(hr == HR_IO_PENDING, "FilterGetMessage: 0x%08lx", HX(hr));
    }
    for (i = 0; i < CS_THREADS; i++) {
        args[i].h = h;
        args[i].tag = 0xA0000000u + (ULONG)i;
        args[i].bad = &bad;
        args[i].lastHr = 0;
        threads[i] = CreateThread(NULL, 0, cs_thread, &args[i], 0, NULL);
        CHECK(threads[i], "CreateThread failed");
    }
    for (i = 0; i < 4; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "notify-%d", i);
        ks[i] = ksend_start(s, 0, msg, 9, 0, TRUE, -10LL * 10000000);
    }
    CHECK(WaitForMultipleObjects(CS_THREADS, threads, TRUE, 40000) == WAIT_OBJECT_0, "senders hung");
    CHECK(bad == 0, "%ld of %d FilterSendMessage calls failed or returned wrong data (last hr 0x%08lx)", (long)bad,
          CS_THREADS * CS_CALLS, HX(args[0].lastHr));
    CHECK(srv_get(s, W_MESSAGES) == CS_THREADS * CS_CALLS, "MessageNotify ran %ld times", (long)srv_get(s, W_MESSAGES));
    for (i = 0; i < 4; i++) {
        DWORD n = 0, err = 0;
        CHECK(ksend_done(ks[i], 10000), "FltSendMessage %d did not return", i);
        CHECK(ks[i]->status == STATUS_SUCCESS, "FltSendMessage %d: 0x%08lx", i, HX(ks[i]->status));
        CHECK(rd_wait(h, reads[i], 10000, &n, &err), "pending read %d never completed: a call stole its message", i);
        CHECK(err == 0 && n == sizeof(FILTER_MESSAGE_HEADER) + 9, "read %d: err %lu, %lu bytes", i,
              (unsigned long)err, (unsigned long)n);
        CHECK(memcmp(payload_of(reads[i]), "notify-", 7) == 0, "read %d payload wrong", i);
    }
done:
    for (i = 0; i < CS_THREADS; i++)
        if (threads[i]) CloseHandle(threads[i]);
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    for (i = 0; i < 4; i++) {
        rd_free(reads[i]);
        ksend_free(ks[i]);
    }
    return ok;
}

/* ---- MessageNotify calling FltSendMessage to the same client ---- */

typedef struct answer_arg {
    HANDLE h;
    HRESULT getHr, replyHr;
    char got[8];
} answer_arg;

static DWORD WINAPI answer_thread(LPVOID p)
{
    answer_arg *a = (answer_arg *)p;
    struct {
        FILTER_MESSAGE_HEADER h;
        BYTE data[64];
    } msg;
    a->getHr = pGet(a->h, &msg.h, sizeof msg, NULL);
    if (a->getHr == HR_OK) {
        memcpy(a->got, msg.data, 4);
        a->replyHr = reply_bytes(a->h, msg.h.MessageId, "pong!!!!", 8);
    }
    return 0;
}

static int c_reentrant_send(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE, t = NULL;
    answer_arg a;
    BYTE out[8];
    DWORD returned = 0;
    HRESULT hr;
    srv *s = srv_start("reentrant", 4, TRUE, NULL);
    memset(&a, 0, sizeof a);
    CHECK(s, "server port could not be created");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h) == HR_OK, "connect failed");
    a.h = h;
    t = CreateThread(NULL, 0, answer_thread, &a, 0, NULL);
    CHECK(t, "CreateThread failed");
    hr = send_cmd(h, CMD_SEND_BACK, 0, NULL, 0, out, sizeof out, &returned);
    CHECK(hr == HR_OK, "FilterSendMessage: 0x%08lx", HX(hr));
    CHECK(returned == 8 && memcmp(out, "pong!!!!", 8) == 0, "MessageNotify did not get the client's reply");
    CHECK(WaitForSingleObject(t, 10000) == WAIT_OBJECT_0, "answer thread hung");
    CHECK(a.getHr == HR_OK && memcmp(a.got, "ping", 4) == 0 && a.replyHr == HR_OK, "get 0x%08lx reply 0x%08lx",
          HX(a.getHr), HX(a.replyHr));
done:
    if (t) {
        if (WaitForSingleObject(t, 0) == WAIT_OBJECT_0) CloseHandle(t);
    }
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    return ok;
}

/* ---- reply semantics ---- */

static int c_no_reply_buffer(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    HRESULT hr;
    srv *s = srv_start("noreply", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    k = ksend_start(s, 0, "hello", 5, 0, FALSE, 0);
    CHECK(k, "thread failed");
    Sleep(100);
    CHECK(!ksend_done(k, 0), "FltSendMessage(ReplyBuffer NULL) returned before any read (status 0x%08lx)",
          HX(k->status));
    hr = rd_start(h, r);
    CHECK(hr == HR_IO_PENDING, "FilterGetMessage: 0x%08lx", HX(hr));
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete (err %lu)", (unsigned long)err);
    CHECK(ksend_done(k, 10000), "FltSendMessage did not return after delivery");
    CHECK(k->status == STATUS_SUCCESS, "FltSendMessage: 0x%08lx", HX(k->status));
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + 5, "%lu bytes (the count includes the 16-byte header)",
          (unsigned long)n);
    CHECK(r->msg->ReplyLength == 0, "header.ReplyLength %lu, expected 0", (unsigned long)r->msg->ReplyLength);
    CHECK(memcmp(payload_of(r), "hello", 5) == 0, "payload wrong");
    hr = reply_bytes(h, r->msg->MessageId, "x", 1);
    CHECK(hr == HR_NO_WAITER_FOR_REPLY, "replying anyway: 0x%08lx, expected 0x801F0020", HX(hr));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static int c_reply_length(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    BYTE answer[40];
    HRESULT hr;
    int i;
    srv *s = srv_start("replylen", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    for (i = 0; i < 40; i++) answer[i] = (BYTE)(0x40 + i);
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, "question", 8, 40, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete");
    CHECK(r->msg->ReplyLength == 40 + sizeof(FILTER_REPLY_HEADER), "header.ReplyLength %lu, expected 56 (40 + 16)",
          (unsigned long)r->msg->ReplyLength);
    hr = reply_bytes(h, r->msg->MessageId, answer, 40);
    CHECK(hr == HR_OK, "FilterReplyMessage: 0x%08lx", HX(hr));
    CHECK(ksend_done(k, 10000), "FltSendMessage did not return");
    CHECK(k->status == STATUS_SUCCESS, "FltSendMessage: 0x%08lx", HX(k->status));
    CHECK(k->replyLen == 40 && memcmp(k->reply, answer, 40) == 0, "reply %lu bytes / content wrong",
          (unsigned long)k->replyLen);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static int c_timeout_late_reply(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    HRESULT hr;
    srv *s = srv_start("timeout", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, "slow", 4, 8, TRUE, -200LL * 10000); /* 200 ms relative */
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete");
    CHECK(ksend_done(k, 10000), "FltSendMessage did not time out");
    CHECK(k->status == STATUS_TIMEOUT, "FltSendMessage: 0x%08lx, expected exactly 0x00000102", HX(k->status));
    CHECK(NT_SUCCESS(k->status), "STATUS_TIMEOUT must be a success code");
    CHECK(k->elapsedMs >= 150 && k->elapsedMs < 5000, "timed out after %lu ms for a 200 ms timeout",
          (unsigned long)k->elapsedMs);
    hr = reply_bytes(h, r->msg->MessageId, "late", 4);
    CHECK(hr == HR_NO_WAITER_FOR_REPLY, "late reply: 0x%08lx, expected 0x801F0020", HX(hr));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static int c_timeout_undelivered(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL, *k2 = NULL;
    DWORD n = 0, err = 0;
    srv *s = srv_start("timeout2", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    k = ksend_start(s, 0, "AAAA", 4, 0, TRUE, -100LL * 10000); /* nobody reads */
    CHECK(ksend_done(k, 10000), "FltSendMessage did not time out");
    CHECK(k->status == STATUS_TIMEOUT, "undelivered: 0x%08lx, expected 0x00000102", HX(k->status));
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k2 = ksend_start(s, 0, "BBBB", 4, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete");
    CHECK(memcmp(payload_of(r), "BBBB", 4) == 0, "the timed-out message was still delivered");
    CHECK(ksend_done(k2, 10000) && k2->status == STATUS_SUCCESS, "second FltSendMessage failed");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    ksend_free(k2);
    return ok;
}

static int c_reply_too_big(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    HRESULT hr;
    srv *s = srv_start("bigreply", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, "q", 1, 8, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete");
    CHECK(r->msg->ReplyLength == 24, "header.ReplyLength %lu", (unsigned long)r->msg->ReplyLength);
    hr = reply_bytes(h, r->msg->MessageId, "0123456789abcdefghijklmnopqrstuv", 32);
    CHECK(hr == HR_MORE_DATA, "FilterReplyMessage: 0x%08lx, expected 0x800700EA (emulator choice)", HX(hr));
    CHECK(ksend_done(k, 10000), "FltSendMessage did not return");
    CHECK(k->status == STATUS_BUFFER_OVERFLOW, "FltSendMessage: 0x%08lx, expected STATUS_BUFFER_OVERFLOW",
          HX(k->status));
    CHECK(k->replyLen == 8 && memcmp(k->reply, "01234567", 8) == 0, "got %lu bytes / wrong part",
          (unsigned long)k->replyLen);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static int c_small_buffer(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *small = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 4);
    rd *big = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 200);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    BYTE payload[100];
    srv *s = srv_start("small", 4, TRUE, NULL);
    CHECK(s && small && big, "setup failed");
    for (i = 0; i < 100; i++) payload[i] = (BYTE)(i ^ 0x5A);
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, small) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, payload, 100, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, small, 10000, &n, &err), "too-small read never completed");
    CHECK(err == ERROR_INSUFFICIENT_BUFFER && n == 0, "too-small read: err %lu, %lu bytes, expected 122 "
          "(STATUS_BUFFER_TOO_SMALL) and 0", (unsigned long)err, (unsigned long)n);
    CHECK(!ksend_done(k, 100), "message counted as delivered into a too-small buffer");
    CHECK(rd_start(h, big) == HR_IO_PENDING, "FilterGetMessage did not pend");
    CHECK(rd_wait(h, big, 10000, &n, &err) && err == 0, "redelivery did not happen");
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + 100 && memcmp(payload_of(big), payload, 100) == 0,
          "redelivered message wrong (%lu bytes)", (unsigned long)n);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "FltSendMessage: 0x%08lx", HX(k->status));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(small);
    rd_free(big);
    ksend_free(k);
    return ok;
}

static int c_cancel(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r1 = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    rd *r2 = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    rd *r3 = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k1 = NULL, *k2 = NULL;
    DWORD n = 0, err = 0;
    srv *s = srv_start("cancel", 4, TRUE, NULL);
    CHECK(s && r1 && r2 && r3, "setup failed");
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r1) == HR_IO_PENDING, "FilterGetMessage did not pend");
    CHECK(CancelIoEx(h, &r1->ov), "CancelIoEx: %lu", (unsigned long)GetLastError());
    CHECK(rd_wait(h, r1, 10000, &n, &err), "cancelled read never completed");
    CHECK(err == ERROR_OPERATION_ABORTED, "cancelled read: error %lu, expected 995", (unsigned long)err);
    CHECK(rd_start(h, r2) == HR_IO_PENDING, "FilterGetMessage did not report pending");
    k1 = ksend_start(s, 0, "first", 5, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r2, 10000, &n, &err) && err == 0, "read after cancel did not complete (err %lu)",
          (unsigned long)err);
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + 5 && memcmp(payload_of(r2), "first", 5) == 0,
          "message after cancel lost or damaged");
    CHECK(ksend_done(k1, 10000) && k1->status == STATUS_SUCCESS, "FltSendMessage: 0x%08lx", HX(k1->status));
    CHECK(rd_start(h, r3) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k2 = ksend_start(s, 0, "second", 6, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r3, 10000, &n, &err) && err == 0, "next read did not complete");
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + 6 && memcmp(payload_of(r3), "second", 6) == 0, "next message wrong");
    CHECK(r3->msg->MessageId != r2->msg->MessageId, "message ids repeat");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r1);
    rd_free(r2);
    rd_free(r3);
    ksend_free(k1);
    ksend_free(k2);
    return ok;
}

static int c_kernel_closes_client(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r[2] = {0};
    DWORD n = 0, err = 0, returned = 0;
    HRESULT hr;
    BYTE out[8];
    FILTER_MESSAGE_HEADER msg;
    ksend *k = NULL;
    srv *s = srv_start("kclose", 4, TRUE, NULL);
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    for (i = 0; i < 2; i++) {
        r[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
        CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "FilterGetMessage did not pend");
    }
    CHECK(srv_close_client(s, 0), "FltCloseClientPort did not NULL the variable");
    for (i = 0; i < 2; i++) {
        CHECK(rd_wait(h, r[i], 10000, &n, &err), "pending read %d did not fail", i);
        CHECK(err == ERROR_INVALID_HANDLE, "pending read %d: error %lu, expected 6 (STATUS_PORT_DISCONNECTED)", i,
              (unsigned long)err);
    }
    hr = pGet(h, &msg, sizeof msg, NULL);
    CHECK(hr == HR_INVALID_HANDLE, "FilterGetMessage afterwards: 0x%08lx, expected 0x80070006", HX(hr));
    hr = send_cmd(h, CMD_ECHO, 0, "x", 1, out, sizeof out, &returned);
    CHECK(hr == HR_INVALID_HANDLE, "FilterSendMessage afterwards: 0x%08lx, expected 0x80070006", HX(hr));
    hr = reply_bytes(h, 1, "x", 1);
    CHECK(hr == HR_INVALID_HANDLE, "FilterReplyMessage afterwards: 0x%08lx, expected 0x80070006", HX(hr));
    k = ksend_start(s, 0, "x", 1, 0, FALSE, 0);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_PORT_DISCONNECTED,
          "FltSendMessage on the NULLed variable: 0x%08lx", HX(k ? k->status : 0));
    CHECK(srv_get(s, W_DISCONNECTS) == 0, "DisconnectNotify ran at FltCloseClientPort (it runs when the client closes)");
    CloseHandle(h);
    h = INVALID_HANDLE_VALUE;
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify once the client closed its handle");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    ksend_free(k);
    for (i = 0; i < 2; i++) rd_free(r[i]);
    return ok;
}

static int c_client_close_while_waiting(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE, h2 = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL, *k2 = NULL;
    DWORD n = 0, err = 0;
    srv *s = srv_start("cclose", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    /* delivered, waiting for the reply */
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, "wait", 4, 8, FALSE, 0); /* no timeout */
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read did not complete");
    CloseHandle(h);
    h = INVALID_HANDLE_VALUE;
    CHECK(ksend_done(k, 10000), "FltSendMessage still waiting 10 s after the client closed its handle");
    CHECK(k->status == STATUS_PORT_DISCONNECTED, "FltSendMessage: 0x%08lx, expected STATUS_PORT_DISCONNECTED",
          HX(k->status));
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify");
    /* not yet delivered */
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h2) == HR_OK, "second connect failed");
    CHECK(wait_count(s, W_CONNECTS, 2, 10000), "ConnectNotify did not run");
    k2 = ksend_start(s, 0, "queued", 6, 8, FALSE, 0);
    Sleep(50);
    CloseHandle(h2);
    h2 = INVALID_HANDLE_VALUE;
    CHECK(ksend_done(k2, 10000), "undelivered FltSendMessage still waiting after the client left");
    CHECK(k2->status == STATUS_PORT_DISCONNECTED, "undelivered: 0x%08lx", HX(k2->status));
    CHECK(wait_count(s, W_DISCONNECTS, 2, 10000), "no second DisconnectNotify");
    Sleep(300);
    CHECK(srv_get(s, W_DISCONNECTS) == 2, "DisconnectNotify ran %ld times for 2 connections", (long)srv_get(s, W_DISCONNECTS));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    if (h2 != INVALID_HANDLE_VALUE) CloseHandle(h2);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    ksend_free(k2);
    return ok;
}

static int c_close_with_reads_pending(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE, h2 = INVALID_HANDLE_VALUE;
    rd *r[3] = {0};
    DWORD n = 0, err = 0;
    HRESULT hr;
    srv *s = srv_start("closepending", 1, TRUE, NULL);
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    for (i = 0; i < 3; i++) {
        r[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
        CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "FilterGetMessage did not pend");
    }
    CloseHandle(h);
    h = INVALID_HANDLE_VALUE;
    for (i = 0; i < 3; i++) {
        CHECK(rd_wait(h, r[i], 10000, &n, &err), "read %d still pending after CloseHandle", i);
        /* the OVERLAPPED's status, since the handle is gone: STATUS_CANCELLED, as Windows's cleanup */
        CHECK((ULONG)r[i]->ov.Internal == (ULONG)STATUS_CANCELLED, "read %d after CloseHandle: status 0x%08lx, expected "
              "STATUS_CANCELLED (ERROR_OPERATION_ABORTED, 995)", i, HX(r[i]->ov.Internal));
    }
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify after CloseHandle with reads pending");
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h2);
    CHECK(hr == HR_OK, "MaxConnections 1: reconnect after close: 0x%08lx", HX(hr));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    if (h2 != INVALID_HANDLE_VALUE) CloseHandle(h2);
    srv_stop(s);
    for (i = 0; i < 3; i++) rd_free(r[i]);
    return ok;
}

#define CL_MESSAGES 50

/* Cancel every pending read in the middle of a stream, then read on with more reads: nothing may be
 * lost or seen twice (messages the emulator already wrote for cancelled reads stay in the pipe). */
static int c_cancel_mid_stream(char *detail)
{
    int ok = 1, i, seen = 0, total = 0, last = -1;
    HANDLE h = INVALID_HANDLE_VALUE;
    ksend *sender = NULL;
    rd *r[8] = {0};
    HANDLE events[8];
    BOOL got[CL_MESSAGES];
    DWORD n = 0, err = 0;
    ULONGLONG deadline;
    srv *s = srv_start("cancelstream", 1, TRUE, NULL);
    memset(got, 0, sizeof got);
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    for (i = 0; i < 8; i++) {
        r[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
        events[i] = r[i]->ov.hEvent;
    }
    for (i = 0; i < 4; i++) CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "FilterGetMessage did not pend");
    sender = bulk_start(s, BULK_NO_REPLY, 0, CL_MESSAGES);
    CHECK(sender, "kernel sender did not start");
    deadline = GetTickCount64() + 20000;
    /* phase 1: 4 reads, re-armed, until 30 messages */
    while (seen < 30) {
        DWORD w = WaitForMultipleObjects(4, events, FALSE, 10000);
        CHECK(w < WAIT_OBJECT_0 + 4, "phase 1 stalled after %d messages", seen);
        i = (int)(w - WAIT_OBJECT_0);
        CHECK(rd_wait(h, r[i], 0, &n, &err) && err == 0 && n == sizeof(FILTER_MESSAGE_HEADER) + 64,
              "phase 1 read: err %lu, %lu bytes", (unsigned long)err, (unsigned long)n);
        {
            ULONG seq;
            memcpy(&seq, payload_of(r[i]), sizeof seq);
            CHECK(seq < CL_MESSAGES && !got[seq], "sequence %lu bad or seen twice", (unsigned long)seq);
            got[seq] = TRUE;
            seen++;
        }
        if (seen < 30) CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "re-arm did not pend");
        else last = i; /* consumed, not re-armed */
    }
    /* cancel what is pending; a read may still have completed with a message: count it */
    CancelIoEx(h, NULL);
    for (i = 0; i < 4; i++) {
        if (i == last) continue;
        CHECK(rd_wait(h, r[i], 10000, &n, &err), "cancelled read %d never completed", i);
        if (err == 0) {
            ULONG seq;
            memcpy(&seq, payload_of(r[i]), sizeof seq);
            CHECK(seq < CL_MESSAGES && !got[seq], "sequence %lu bad or seen twice (cancel race)", (unsigned long)seq);
            got[seq] = TRUE;
            seen++;
        } else {
            CHECK(err == ERROR_OPERATION_ABORTED, "cancelled read: error %lu", (unsigned long)err);
        }
    }
    /* phase 2: 8 fresh reads until everything arrived */
    for (i = 0; i < 8; i++) CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "phase 2 FilterGetMessage did not pend");
    while (seen < CL_MESSAGES && GetTickCount64() < deadline) {
        DWORD w = WaitForMultipleObjects(8, events, FALSE, 10000);
        CHECK(w < WAIT_OBJECT_0 + 8, "phase 2 stalled after %d of %d messages: a message was lost", seen, CL_MESSAGES);
        i = (int)(w - WAIT_OBJECT_0);
        CHECK(rd_wait(h, r[i], 0, &n, &err) && err == 0 && n == sizeof(FILTER_MESSAGE_HEADER) + 64,
              "phase 2 read: err %lu, %lu bytes", (unsigned long)err, (unsigned long)n);
        {
            ULONG seq;
            memcpy(&seq, payload_of(r[i]), sizeof seq);
            CHECK(seq < CL_MESSAGES && !got[seq], "sequence %lu bad or seen twice", (unsigned long)seq);
            got[seq] = TRUE;
            seen++;
        }
        if (seen < CL_MESSAGES) CHECK(rd_start(h, r[i]) == HR_IO_PENDING, "re-arm did not pend");
    }
    for (i = 0; i < CL_MESSAGES; i++)
        if (got[i]) total++;
    CHECK(total == CL_MESSAGES, "%d of %d messages arrived", total, CL_MESSAGES);
    CHECK(ksend_done(sender, 10000) && sender->wrong == 0, "kernel sender: %lu failures (last 0x%08lx)",
          (unsigned long)sender->wrong, HX(sender->status));
done:
    if (h != INVALID_HANDLE_VALUE) {
        CancelIoEx(h, NULL);
        for (i = 0; i < 8; i++)
            if (r[i]) WaitForSingleObject(r[i]->ov.hEvent, 5000);
        CloseHandle(h);
    }
    srv_stop(s);
    ksend_free(sender);
    for (i = 0; i < 8; i++) rd_free(r[i]);
    return ok;
}

/* Child mode: connect, take one message, die without replying. */
static int child_main(const char *portName)
{
    WCHAR name[128];
    HANDLE h;
    struct {
        FILTER_MESSAGE_HEADER h;
        BYTE data[64];
    } msg;
    MultiByteToWideChar(CP_ACP, 0, portName, -1, name, 128);
    if (!load_dll()) return 2;
    if (pConnect(name, 0, NULL, 0, NULL, &h) != HR_OK) return 3;
    if (pGet(h, &msg.h, sizeof msg, NULL) != HR_OK) return 4;
    ExitProcess(7); /* dies with the kernel side waiting for a reply */
}

static int c_client_process_dies(char *detail)
{
    int ok = 1;
    srv *s = srv_start("child", 4, TRUE, NULL);
    ksend *k = NULL;
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    WCHAR cmd[512];
    char nameA[128];
    DWORD code = 0;
    memset(&pi, 0, sizeof pi);
    CHECK(s, "setup failed");
    WideCharToMultiByte(CP_ACP, 0, s->name, -1, nameA, sizeof nameA, NULL, NULL);
    {
        char tmp[700];
        char exeA[MAX_PATH];
        WideCharToMultiByte(CP_ACP, 0, g_exePath, -1, exeA, sizeof exeA, NULL, NULL);
        snprintf(tmp, sizeof tmp, "\"%s\" --child %s", exeA, nameA);
        MultiByteToWideChar(CP_ACP, 0, tmp, -1, cmd, 512);
    }
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    CHECK(CreateProcessW(g_exePath, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi), "CreateProcess: %lu",
          (unsigned long)GetLastError());
    CHECK(wait_count(s, W_CONNECTS, 1, 20000), "the child never connected");
    k = ksend_start(s, 0, "die", 3, 8, FALSE, 0); /* no timeout */
    CHECK(WaitForSingleObject(pi.hProcess, 20000) == WAIT_OBJECT_0, "child did not exit");
    GetExitCodeProcess(pi.hProcess, &code);
    CHECK(code == 7, "child exit code %lu (expected 7 = took the message and died)", (unsigned long)code);
    CHECK(ksend_done(k, 10000), "FltSendMessage still waiting 10 s after the client process died");
    CHECK(k->status == STATUS_PORT_DISCONNECTED, "FltSendMessage: 0x%08lx", HX(k->status));
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify");
done:
    if (pi.hProcess) {
        CloseHandle(pi.hProcess);
        CloseHandle(pi.hThread);
    }
    srv_stop(s);
    ksend_free(k);
    return ok;
}

static int c_close_server_port(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE, h2 = INVALID_HANDLE_VALUE, h3 = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    BYTE out[8];
    DWORD returned = 0, n = 0, err = 0;
    HRESULT hr;
    srv *again = NULL;
    NTSTATUS st = STATUS_UNSUCCESSFUL;
    srv *s = srv_start("closeport", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    srv_close_port(s);
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h2);
    CHECK(hr == HR_FILE_NOT_FOUND, "connect after FltCloseCommunicationPort: 0x%08lx, expected 0x80070002", HX(hr));
    hr = send_cmd(h, CMD_ECHO, 0, "abc", 3, out, sizeof out, &returned);
    CHECK(hr == HR_OK && returned == 3, "existing connection: FilterSendMessage 0x%08lx", HX(hr));
    CHECK(rd_start(h, r) == HR_IO_PENDING, "existing connection: FilterGetMessage did not pend");
    k = ksend_start(s, 0, "still", 5, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "existing connection: read failed");
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "existing connection: FltSendMessage failed");
    again = srv_start_named(s->name, NULL, 4, TRUE, &st);
    CHECK(again != NULL, "re-creating the closed port's name: 0x%08lx", HX(st));
    hr = pConnect(s->name, 0, NULL, 0, NULL, &h3);
    CHECK(hr == HR_OK, "connect to the re-created port: 0x%08lx", HX(hr));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    if (h3 != INVALID_HANDLE_VALUE) CloseHandle(h3);
    srv_stop(again);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static int c_duplicate_name(char *detail)
{
    int ok = 1;
    NTSTATUS st;
    srv *s = srv_start("dup", 4, TRUE, NULL);
    CHECK(s, "setup failed");
    st = create_port_status(s, TRUE, s->name, 4, OBJ_KERNEL_HANDLE);
    CHECK(st == STATUS_OBJECT_NAME_COLLISION, "same filter: 0x%08lx, expected STATUS_OBJECT_NAME_COLLISION",
          HX(st));
    st = create_port_status(NULL, FALSE, s->name, 4, OBJ_KERNEL_HANDLE);
    CHECK(st == STATUS_OBJECT_NAME_COLLISION, "other filter: 0x%08lx, expected STATUS_OBJECT_NAME_COLLISION",
          HX(st));
done:
    srv_stop(s);
    return ok;
}

static int c_port_parameters(char *detail)
{
    int ok = 1;
    NTSTATUS st;
    WCHAR name[80];
    make_name(name, 80, "params");
    st = create_port_status(NULL, FALSE, name, 4, OBJ_CASE_INSENSITIVE);
    CHECK(st == STATUS_INVALID_PARAMETER, "without OBJ_KERNEL_HANDLE: 0x%08lx, expected STATUS_INVALID_PARAMETER",
          HX(st));
    st = create_port_status(NULL, FALSE, name, 0, OBJ_KERNEL_HANDLE);
    CHECK(st == STATUS_INVALID_PARAMETER, "MaxConnections 0: 0x%08lx, expected STATUS_INVALID_PARAMETER", HX(st));
    st = create_port_status(NULL, FALSE, name, -1, OBJ_KERNEL_HANDLE);
    CHECK(st == STATUS_INVALID_PARAMETER, "MaxConnections -1: 0x%08lx, expected STATUS_INVALID_PARAMETER", HX(st));
    st = create_port_status(NULL, FALSE, name, 1, OBJ_KERNEL_HANDLE);
    CHECK(st == STATUS_SUCCESS, "valid parameters after failures: 0x%08lx", HX(st));
done:
    return ok;
}

/* ---- no stray completions from internal I/O ---- */

typedef struct stray_ctx {
    volatile LONG callbacks, strays, failures;
    OVERLAPPED *expected;
    HANDLE done;
} stray_ctx;

static VOID CALLBACK stray_callback(PTP_CALLBACK_INSTANCE inst, PVOID context, PVOID overlapped, ULONG result,
                                    ULONG_PTR bytes, PTP_IO io)
{
    stray_ctx *c = (stray_ctx *)context;
    (void)inst;
    (void)io;
    (void)bytes;
    InterlockedIncrement(&c->callbacks);
    if (overlapped != c->expected) InterlockedIncrement(&c->strays);
    if (result != NO_ERROR) InterlockedIncrement(&c->failures);
    SetEvent(c->done);
}

static int c_no_stray_completion(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE;
    PTP_IO io = NULL;
    stray_ctx c;
    OVERLAPPED ov;
    struct {
        FILTER_MESSAGE_HEADER h;
        BYTE data[32];
    } msg;
    srv *s = srv_start("stray", 4, TRUE, NULL);
    memset(&c, 0, sizeof c);
    c.done = CreateEventW(NULL, FALSE, FALSE, NULL);
    c.expected = &ov;
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    io = CreateThreadpoolIo(h, stray_callback, &c, NULL);
    CHECK(io, "CreateThreadpoolIo failed");
    for (i = 0; i < 100; i++) {
        HRESULT hr;
        ksend *k;
        BOOL sent;
        DWORD returned;
        BYTE out[4];
        memset(&ov, 0, sizeof ov);
        StartThreadpoolIo(io);
        hr = pGet(h, &msg.h, sizeof msg, &ov);
        if (hr != HR_IO_PENDING) CancelThreadpoolIo(io);
        CHECK(hr == HR_IO_PENDING, "FilterGetMessage: 0x%08lx", HX(hr));
        k = ksend_start(s, 0, "n", 1, 0, FALSE, 0);
        sent = ksend_done(k, 10000) && k->status == STATUS_SUCCESS;
        ksend_free(k);
        CHECK(sent, "FltSendMessage failed");
        CHECK(WaitForSingleObject(c.done, 10000) == WAIT_OBJECT_0, "no completion for read %d", i);
        CHECK(send_cmd(h, CMD_ECHO, 0, "ab", 2, out, sizeof out, &returned) == HR_OK, "FilterSendMessage failed");
    }
    Sleep(300);
    CHECK(c.callbacks == 100, "%ld thread-pool callbacks for 100 reads (internal I/O leaked a completion?)",
          (long)c.callbacks);
    CHECK(c.strays == 0 && c.failures == 0, "%ld foreign OVERLAPPEDs, %ld failures", (long)c.strays,
          (long)c.failures);
done:
    if (io) {
        WaitForThreadpoolIoCallbacks(io, FALSE);
        CloseThreadpoolIo(io);
    }
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    CloseHandle(c.done);
    return ok;
}

/* ---- synchronous FilterGetMessage ---- */

static int c_sync_get(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    ksend *k = NULL, *k2 = NULL;
    struct {
        FILTER_MESSAGE_HEADER h;
        BYTE data[128];
    } msg;
    HRESULT hr;
    ULONGLONG t0;
    srv *s = srv_start("sync", 4, TRUE, NULL);
    CHECK(s, "setup failed");
    hr = pConnect(s->name, 0x1 /* FLT_PORT_FLAG_SYNC_HANDLE */, NULL, 0, NULL, &h);
    CHECK(hr == HR_OK, "connect with FLT_PORT_FLAG_SYNC_HANDLE: 0x%08lx", HX(hr));
    CHECK(wait_count(s, W_CONNECTS, 1, 10000), "ConnectNotify did not run");
    /* the message arrives while FilterGetMessage blocks */
    k = ksend_start(s, 0, "late-arrival", 12, 0, FALSE, 0);
    t0 = GetTickCount64();
    hr = pGet(h, &msg.h, sizeof msg, NULL);
    CHECK(hr == HR_OK, "blocking FilterGetMessage: 0x%08lx", HX(hr));
    CHECK(memcmp(msg.data, "late-arrival", 12) == 0, "payload wrong");
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "FltSendMessage failed");
    /* a too-small synchronous read reports the size problem; the message stays queued */
    k2 = ksend_start(s, 0, "0123456789012345678901234567890123456789", 40, 0, FALSE, 0);
    hr = pGet(h, &msg.h, sizeof(FILTER_MESSAGE_HEADER) + 8, NULL);
    CHECK(hr == HR_INSUFFICIENT_BUFFER, "too-small synchronous read: 0x%08lx, expected 0x8007007A", HX(hr));
    CHECK(!ksend_done(k2, 50), "the message was consumed by the too-small read");
    hr = pGet(h, &msg.h, sizeof msg, NULL);
    CHECK(hr == HR_OK && memcmp(msg.data, "0123456789", 10) == 0, "redelivery: 0x%08lx", HX(hr));
    CHECK(ksend_done(k2, 10000) && k2->status == STATUS_SUCCESS, "FltSendMessage failed");
    (void)t0;
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    ksend_free(k);
    ksend_free(k2);
    return ok;
}

/* ---- a client written like Microsoft's scanner sample (scanUser.c) ---- */

#define SCANNER_READ_BUFFER_SIZE 1024
#define SCANNER_THREADS 2
#define SCANNER_REQUESTS 5
#define SCANNER_MESSAGES 3000

typedef struct _SCANNER_NOTIFICATION {
    ULONG BytesToScan;
    ULONG Reserved;
    UCHAR Contents[SCANNER_READ_BUFFER_SIZE];
} SCANNER_NOTIFICATION, *PSCANNER_NOTIFICATION;

typedef struct _SCANNER_REPLY {
    BOOLEAN SafeToOpen;
} SCANNER_REPLY, *PSCANNER_REPLY;

typedef struct _SCANNER_MESSAGE {
    FILTER_MESSAGE_HEADER MessageHeader;
    SCANNER_NOTIFICATION Notification;
    OVERLAPPED Ovlp;
} SCANNER_MESSAGE, *PSCANNER_MESSAGE;

typedef struct _SCANNER_REPLY_MESSAGE {
    FILTER_REPLY_HEADER ReplyHeader;
    SCANNER_REPLY Reply;
} SCANNER_REPLY_MESSAGE, *PSCANNER_REPLY_MESSAGE;

typedef struct _SCANNER_THREAD_CONTEXT {
    HANDLE Port;
    HANDLE Completion;
    PSCANNER_MESSAGE First, Last; /* for the stray check */
    volatile LONG Replied, Strays, ReplyErrors;
} SCANNER_THREAD_CONTEXT, *PSCANNER_THREAD_CONTEXT;

static BOOL ScanBuffer(PUCHAR Buffer, ULONG BufferSize)
{
    ULONG i;
    for (i = 0; i + 4 <= BufferSize; i++)
        if (memcmp(Buffer + i, "foul", 4) == 0) return TRUE;
    return FALSE;
}

static DWORD WINAPI ScannerWorker(LPVOID lpParam)
{
    PSCANNER_THREAD_CONTEXT Context = (PSCANNER_THREAD_CONTEXT)lpParam;
    PSCANNER_NOTIFICATION notification;
    SCANNER_REPLY_MESSAGE replyMessage;
    PSCANNER_MESSAGE message;
    LPOVERLAPPED pOvlp;
    BOOL result;
    DWORD outSize;
    HRESULT hr;
    ULONG_PTR key;
    for (;;) {
        result = GetQueuedCompletionStatus(Context->Completion, &outSize, &key, &pOvlp, INFINITE);
        if (!pOvlp) break;
        message = CONTAINING_RECORD(pOvlp, SCANNER_MESSAGE, Ovlp);
        if (message < Context->First || message > Context->Last) { /* not one of ours: never touch it */
            InterlockedIncrement(&Context->Strays);
            continue;
        }
        if (!result) break; /* the port went away (or the reads were cancelled) */
        notification = &message->Notification;
        result = ScanBuffer(notification->Contents, notification->BytesToScan);
        replyMessage.ReplyHeader.Status = 0;
        replyMessage.ReplyHeader.MessageId = message->MessageHeader.MessageId;
        replyMessage.Reply.SafeToOpen = !result;
        hr = pReply(Context->Port, (PFILTER_REPLY_HEADER)&replyMessage,
                                      sizeof(FILTER_REPLY_HEADER) + sizeof(SCANNER_REPLY));
        if (SUCCEEDED(hr))
            InterlockedIncrement(&Context->Replied);
        else
            InterlockedIncrement(&Context->ReplyErrors);
        memset(&message->Ovlp, 0, sizeof(OVERLAPPED));
        hr = pGet(Context->Port, &message->MessageHeader, FIELD_OFFSET(SCANNER_MESSAGE, Ovlp), &message->Ovlp);
        if (hr != HRESULT_FROM_WIN32(ERROR_IO_PENDING)) break;
    }
    return 0;
}

static int c_scanner_client(char *detail)
{
    int ok = 1, i, j;
    SCANNER_THREAD_CONTEXT context;
    HANDLE port = INVALID_HANDLE_VALUE, completion = NULL;
    HANDLE threads[SCANNER_THREADS] = {0};
    ksend *senders[2] = {0};
    PSCANNER_MESSAGE messages = NULL;
    LONG right = 0, wrong = 0;
    HRESULT hr;
    BOOL started = FALSE;
    srv *s = srv_start("scanner", 1, TRUE, NULL);
    memset(&context, 0, sizeof context);
    CHECK(s, "setup failed");
    hr = pConnect(s->name, 0, NULL, 0, NULL, &port);
    CHECK(hr == HR_OK, "FilterConnectCommunicationPort: 0x%08lx", HX(hr));
    CHECK(wait_count(s, W_CONNECTS, 1, 10000), "ConnectNotify did not run");
    completion = CreateIoCompletionPort(port, NULL, 0, SCANNER_THREADS);
    CHECK(completion, "CreateIoCompletionPort: %lu", (unsigned long)GetLastError());
    messages = (PSCANNER_MESSAGE)calloc(SCANNER_THREADS * SCANNER_REQUESTS, sizeof(SCANNER_MESSAGE));
    CHECK(messages, "out of memory");
    context.Port = port;
    context.Completion = completion;
    context.First = &messages[0];
    context.Last = &messages[SCANNER_THREADS * SCANNER_REQUESTS - 1];
    for (i = 0; i < SCANNER_THREADS; i++) {
        threads[i] = CreateThread(NULL, 0, ScannerWorker, &context, 0, NULL);
        CHECK(threads[i], "CreateThread failed");
        for (j = 0; j < SCANNER_REQUESTS; j++) {
            PSCANNER_MESSAGE msg = &messages[i * SCANNER_REQUESTS + j];
            memset(&msg->Ovlp, 0, sizeof(OVERLAPPED));
            hr = pGet(port, &msg->MessageHeader, FIELD_OFFSET(SCANNER_MESSAGE, Ovlp), &msg->Ovlp);
            CHECK(hr == HRESULT_FROM_WIN32(ERROR_IO_PENDING), "FilterGetMessage: 0x%08lx (scanner treats it as fatal)",
                  HX(hr));
        }
    }
    started = TRUE;
    for (i = 0; i < 2; i++) {
        senders[i] = bulk_start(s, BULK_SCANNER, (ULONG)i * (SCANNER_MESSAGES / 2), SCANNER_MESSAGES / 2);
        CHECK(senders[i], "kernel sender did not start");
    }
    for (i = 0; i < 2; i++) {
        CHECK(ksend_done(senders[i], 60000), "kernel senders hung");
        right += (LONG)senders[i]->right;
        wrong += (LONG)senders[i]->wrong;
    }
    CHECK(wrong == 0 && right == SCANNER_MESSAGES, "%ld right, %ld wrong verdicts", (long)right, (long)wrong);
done:
    if (started) {
        /* The sample's way out: the port's I/O ends, GetQueuedCompletionStatus fails, workers leave. */
        CancelIoEx(port, NULL);
        if (WaitForMultipleObjects(SCANNER_THREADS, threads, TRUE, 10000) != WAIT_OBJECT_0 && ok) {
            snprintf(detail, DETAIL_CCH, "scanner workers did not exit after the reads were cancelled");
            ok = 0;
        }
        for (;;) { /* collect the remaining cancelled reads before freeing their buffers */
            DWORD n;
            ULONG_PTR key;
            LPOVERLAPPED o = NULL;
            if (!GetQueuedCompletionStatus(completion, &n, &key, &o, 500) && o == NULL) break;
        }
        if ((context.Replied != SCANNER_MESSAGES || context.ReplyErrors != 0) && ok) {
            snprintf(detail, DETAIL_CCH, "%ld replies, %ld reply errors", (long)context.Replied,
                     (long)context.ReplyErrors);
            ok = 0;
        }
        if (context.Strays != 0 && ok) {
            snprintf(detail, DETAIL_CCH, "%ld completions carried an OVERLAPPED the client never issued",
                     (long)context.Strays);
            ok = 0;
        }
    }
    for (i = 0; i < SCANNER_THREADS; i++)
        if (threads[i]) CloseHandle(threads[i]);
    for (i = 0; i < 2; i++) ksend_free(senders[i]);
    if (port != INVALID_HANDLE_VALUE) CloseHandle(port);
    if (completion) CloseHandle(completion);
    srv_stop(s);
    if (ok) free(messages);
    return ok;
}

/* ---- large messages both ways ---- */

static int c_large_messages(char *detail)
{
    int ok = 1;
    const DWORD size = 256 * 1024;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new((DWORD)sizeof(FILTER_MESSAGE_HEADER) + size);
    BYTE *in = (BYTE *)malloc(CMD_HDR + size), *out = (BYTE *)malloc(size), *pattern = (BYTE *)malloc(size);
    ksend *k = NULL;
    DWORD n = 0, err = 0, returned = 0, i;
    HRESULT hr;
    srv *s = srv_start("large", 4, TRUE, NULL);
    CHECK(s && r && in && out && pattern, "setup failed");
    for (i = 0; i < size; i++) pattern[i] = (BYTE)(i * 31 + (i >> 8));
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, pattern, size, 0, TRUE, -20LL * 10000000);
    CHECK(rd_wait(h, r, 20000, &n, &err) && err == 0, "256 KiB notification: err %lu", (unsigned long)err);
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + size && memcmp(payload_of(r), pattern, size) == 0,
          "256 KiB notification damaged (%lu bytes)", (unsigned long)n);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "FltSendMessage failed");
    ((cmd_msg *)in)->Command = CMD_ECHO;
    ((cmd_msg *)in)->Argument = 0;
    memcpy(in + CMD_HDR, pattern, size);
    hr = pSend(h, in, CMD_HDR + size, out, size, &returned);
    CHECK(hr == HR_OK && returned == size, "256 KiB FilterSendMessage: 0x%08lx, %lu bytes", HX(hr),
          (unsigned long)returned);
    for (i = 0; i < size; i++) CHECK(out[i] == pattern[size - 1 - i], "echo byte %lu wrong", (unsigned long)i);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    free(in);
    free(out);
    free(pattern);
    return ok;
}

static int c_unknown_handle(char *detail)
{
    int ok = 1;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    FILTER_MESSAGE_HEADER msg;
    OVERLAPPED ov;
    DWORD returned;
    HRESULT hr;
    memset(&ov, 0, sizeof ov);
    hr = pGet(ev, &msg, sizeof msg, &ov);
    CHECK(hr == HR_INVALID_HANDLE, "FilterGetMessage on an event: 0x%08lx", HX(hr));
    hr = pSend(NULL, "x", 1, NULL, 0, &returned);
    CHECK(hr == HR_INVALID_HANDLE, "FilterSendMessage on NULL: 0x%08lx", HX(hr));
    hr = reply_bytes(INVALID_HANDLE_VALUE, 1, NULL, 0);
    CHECK(hr == HR_INVALID_HANDLE, "FilterReplyMessage on INVALID_HANDLE_VALUE: 0x%08lx", HX(hr));
done:
    CloseHandle(ev);
    return ok;
}

static int c_unregister(char *detail)
{
    int ok = 1, i;
    HANDLE h[2] = {INVALID_HANDLE_VALUE, INVALID_HANDLE_VALUE}, h2 = INVALID_HANDLE_VALUE;
    rd *r[2] = {0};
    DWORD n = 0, err = 0;
    srv *s = srv_start("unregister", 4, TRUE, NULL);
    LONG disconnects;
    CHECK(s, "setup failed");
    for (i = 0; i < 2; i++) {
        CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h[i]) == HR_OK, "connect failed");
        r[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 16);
        CHECK(rd_start(h[i], r[i]) == HR_IO_PENDING, "FilterGetMessage did not pend");
    }
    CHECK(wait_count(s, W_CONNECTS, 2, 10000), "ConnectNotify did not run");
    srv_unregister(s); /* the port is still open: FltUnregisterFilter closes it */
    disconnects = srv_get(s, W_DISCONNECTS);
    CHECK(disconnects == 2, "DisconnectNotify ran %ld times for 2 connections by the time FltUnregisterFilter "
          "returned", (long)disconnects);
    for (i = 0; i < 2; i++) {
        CHECK(rd_wait(h[i], r[i], 10000, &n, &err), "read %d still pending after unregistration", i);
        CHECK(err == ERROR_INVALID_HANDLE, "read %d: error %lu, expected 6 (STATUS_PORT_DISCONNECTED)", i,
              (unsigned long)err);
    }
    CHECK(pGet(h[0], r[0]->msg, r[0]->size, NULL) == HR_INVALID_HANDLE, "FilterGetMessage afterwards: not 0x80070006");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h2) == HR_FILE_NOT_FOUND, "connect afterwards: not 0x80070002");
done:
    for (i = 0; i < 2; i++)
        if (h[i] != INVALID_HANDLE_VALUE) CloseHandle(h[i]);
    if (h2 != INVALID_HANDLE_VALUE) CloseHandle(h2);
    srv_stop(s);
    for (i = 0; i < 2; i++) rd_free(r[i]);
    return ok;
}


/* The bug of the pipe transport: a cancelled read left its size behind, so that a later read of
 * another size got part of a message, or a message made of another's tail. */
static int c_cancel_other_sizes(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *big = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 16384);
    rd *tiny = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 50);
    rd *next = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 16384);
    ksend *k = NULL;
    BYTE payload[1000];
    DWORD n = 0, err = 0, i;
    srv *s = srv_start("cancelsizes", 4, TRUE, NULL);
    CHECK(s && big && tiny && next, "setup failed");
    for (i = 0; i < sizeof payload; i++) payload[i] = (BYTE)(i * 13 + 1);
    CHECK_CONNECTED(s, h);
    CHECK(rd_start(h, big) == HR_IO_PENDING, "FilterGetMessage did not pend");
    CHECK(CancelIoEx(h, &big->ov), "CancelIoEx: %lu", (unsigned long)GetLastError());
    CHECK(rd_wait(h, big, 10000, &n, &err) && err == ERROR_OPERATION_ABORTED, "cancelled read: error %lu",
          (unsigned long)err);
    k = ksend_start(s, 0, payload, sizeof payload, 16, TRUE, -20LL * 10000000);
    CHECK(k, "kernel send did not start");
    CHECK(rd_start(h, tiny) == HR_IO_PENDING, "FilterGetMessage did not pend");
    CHECK(rd_wait(h, tiny, 10000, &n, &err), "50-byte read never completed");
    CHECK(err == ERROR_INSUFFICIENT_BUFFER && n == 0, "50-byte read for a 1000-byte message: err %lu, %lu bytes, "
          "expected 122 and 0 (no partial message)", (unsigned long)err, (unsigned long)n);
    CHECK(rd_start(h, next) == HR_IO_PENDING, "FilterGetMessage did not pend");
    CHECK(rd_wait(h, next, 10000, &n, &err) && err == 0, "16 KiB read: err %lu", (unsigned long)err);
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + sizeof payload && memcmp(payload_of(next), payload, sizeof payload) == 0,
          "the message arrived as %lu bytes or damaged", (unsigned long)n);
    CHECK(next->msg->ReplyLength == 16 + sizeof(FILTER_REPLY_HEADER), "header.ReplyLength %lu, expected 32",
          (unsigned long)next->msg->ReplyLength);
    CHECK(reply_bytes(h, next->msg->MessageId, "0123456789abcdef", 16) == HR_OK, "reply failed");
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS && k->replyLen == 16, "FltSendMessage: 0x%08lx",
          HX(k->status));
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(big);
    rd_free(tiny);
    rd_free(next);
    ksend_free(k);
    return ok;
}

/* FltEmuSendRawMessage: the header as the driver wrote it, whatever it says. */
static int c_raw_message(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    DWORD n = 0, err = 0;
    struct {
        FILTER_MESSAGE_HEADER h;
        char data[5];
    } raw;
    srv *s = srv_start("raw", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    raw.h.ReplyLength = 7; /* no real FltSendMessage writes 1..15 */
    raw.h.MessageId = 0;
    memcpy(raw.data, "rawrw", 5);
    CHECK(rd_start(h, r) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_raw(s, 0, &raw, sizeof(FILTER_MESSAGE_HEADER) + 5);
    CHECK(rd_wait(h, r, 10000, &n, &err) && err == 0, "read: err %lu", (unsigned long)err);
    CHECK(n == sizeof(FILTER_MESSAGE_HEADER) + 5 && r->msg->ReplyLength == 7 && r->msg->MessageId == 0 &&
              memcmp(payload_of(r), "rawrw", 5) == 0,
          "%lu bytes, ReplyLength %lu, id %llu: not what the driver wrote", (unsigned long)n,
          (unsigned long)r->msg->ReplyLength, (unsigned long long)r->msg->MessageId);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "FltEmuSendRawMessage: 0x%08lx", HX(k->status));
    CHECK(reply_bytes(h, 0, "x", 1) == HR_NO_WAITER_FOR_REPLY, "a reply to a raw message found a waiter");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

/* FltEmuDropOversizedMessages: the other answer to "too small: lost or redelivered?". */
static int c_drop_oversized(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    rd *tiny = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 4);
    rd *big = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL, *k2 = NULL;
    DWORD n = 0, err = 0;
    srv *s = srv_start("drop", 4, TRUE, NULL);
    CHECK(s && tiny && big, "setup failed");
    CHECK_CONNECTED(s, h);
    CHECK(NT_SUCCESS(srv_op(s, CONTROL_DROP_OVERSIZED, 0, 1, NULL)), "FltEmuDropOversizedMessages failed");
    CHECK(rd_start(h, tiny) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k = ksend_start(s, 0, "too-large", 9, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, tiny, 10000, &n, &err) && err == ERROR_INSUFFICIENT_BUFFER && n == 0,
          "too-small read: err %lu, %lu bytes", (unsigned long)err, (unsigned long)n);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_BUFFER_OVERFLOW,
          "dropped message's FltSendMessage: 0x%08lx, expected STATUS_BUFFER_OVERFLOW", HX(k->status));
    CHECK(rd_start(h, big) == HR_IO_PENDING, "FilterGetMessage did not pend");
    k2 = ksend_start(s, 0, "next", 4, 0, TRUE, -10LL * 10000000);
    CHECK(rd_wait(h, big, 10000, &n, &err) && err == 0 && n == sizeof(FILTER_MESSAGE_HEADER) + 4 &&
              memcmp(payload_of(big), "next", 4) == 0,
          "the next read got %lu bytes (err %lu): the dropped message came back", (unsigned long)n,
          (unsigned long)err);
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    rd_free(tiny);
    rd_free(big);
    ksend_free(k);
    ksend_free(k2);
    return ok;
}

/* A minifilter that leaves a client port open after DisconnectNotify: its variable stays usable
 * (sends fail with STATUS_PORT_DISCONNECTED) until FltCloseClientPort, as on Windows. */
static int c_client_port_kept(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE;
    ksend *k = NULL;
    srv *s = srv_start_flags(NULL, "kept", 4, CONF_WITH_MESSAGE_NOTIFY | CONF_KEEP_CLIENT_PORTS, NULL);
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    CloseHandle(h);
    h = INVALID_HANDLE_VALUE;
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify");
    k = ksend_start(s, 0, "late", 4, 0, TRUE, -5LL * 10000000);
    CHECK(ksend_done(k, 10000) && k->status == STATUS_PORT_DISCONNECTED,
          "FltSendMessage on the client port left open: 0x%08lx", HX(k->status));
    CHECK(srv_close_client(s, 0), "FltCloseClientPort afterwards did not NULL the variable");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    srv_stop(s);
    ksend_free(k);
    return ok;
}

/* The handle is the connection: a copy made by DuplicateHandle reads, sends and replies too, and
 * the connection ends when the last copy is closed. */
static int c_duplicate_handle(char *detail)
{
    int ok = 1;
    HANDLE h = INVALID_HANDLE_VALUE, copy = NULL;
    rd *r = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
    ksend *k = NULL;
    BYTE out[8];
    DWORD returned = 0, n = 0, err = 0;
    srv *s = srv_start("duplicate", 4, TRUE, NULL);
    CHECK(s && r, "setup failed");
    CHECK_CONNECTED(s, h);
    CHECK(DuplicateHandle(GetCurrentProcess(), h, GetCurrentProcess(), &copy, 0, FALSE, DUPLICATE_SAME_ACCESS),
          "DuplicateHandle: %lu", (unsigned long)GetLastError());
    CloseHandle(h);
    h = INVALID_HANDLE_VALUE;
    CHECK(send_cmd(copy, CMD_ECHO, 0, "abc", 3, out, sizeof out, &returned) == HR_OK && returned == 3,
          "FilterSendMessage on the copy failed");
    CHECK(rd_start(copy, r) == HR_IO_PENDING, "FilterGetMessage on the copy did not pend");
    k = ksend_start(s, 0, "dup", 3, 4, TRUE, -10LL * 10000000);
    CHECK(rd_wait(copy, r, 10000, &n, &err) && err == 0, "read on the copy: err %lu", (unsigned long)err);
    CHECK(reply_bytes(copy, r->msg->MessageId, "okay", 4) == HR_OK, "FilterReplyMessage on the copy failed");
    CHECK(ksend_done(k, 10000) && k->status == STATUS_SUCCESS, "FltSendMessage: 0x%08lx", HX(k->status));
    CHECK(srv_get(s, W_DISCONNECTS) == 0, "DisconnectNotify ran while a copy of the handle was open");
    CloseHandle(copy);
    copy = NULL;
    CHECK(wait_count(s, W_DISCONNECTS, 1, 10000), "no DisconnectNotify after the last copy was closed");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    if (copy) CloseHandle(copy);
    srv_stop(s);
    rd_free(r);
    ksend_free(k);
    return ok;
}

static const char *g_service;

/* Runs `sc stop` on the conformance driver's service: DriverUnload, that is FilterUnloadCallback,
 * which unregisters every filter of the driver. */
static BOOL stop_service(DWORD *exitCode)
{
    char cmd[300];
    WCHAR wcmd[300];
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    BOOL done;
    snprintf(cmd, sizeof cmd, "sc.exe stop %s", g_service);
    MultiByteToWideChar(CP_ACP, 0, cmd, -1, wcmd, 300);
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    if (!CreateProcessW(NULL, wcmd, NULL, NULL, FALSE, CREATE_NO_WINDOW, NULL, NULL, &si, &pi)) return FALSE;
    done = WaitForSingleObject(pi.hProcess, 30000) == WAIT_OBJECT_0;
    GetExitCodeProcess(pi.hProcess, exitCode);
    CloseHandle(pi.hProcess);
    CloseHandle(pi.hThread);
    return done;
}

static int c_unload(char *detail)
{
    int ok = 1, i;
    HANDLE h = INVALID_HANDLE_VALUE, h2 = INVALID_HANDLE_VALUE;
    rd *r[3] = {0};
    DWORD n = 0, err = 0, code = 0, returned = 0;
    BYTE out[8];
    srv *s = srv_start("unload", 4, TRUE, NULL);
    CHECK(s, "setup failed");
    CHECK_CONNECTED(s, h);
    for (i = 0; i < 3; i++) {
        r[i] = rd_new(sizeof(FILTER_MESSAGE_HEADER) + 64);
        CHECK(r[i] && rd_start(h, r[i]) == HR_IO_PENDING, "FilterGetMessage did not pend");
    }
    CHECK(stop_service(&code), "sc stop %s did not finish", g_service);
    for (i = 0; i < 3; i++) {
        CHECK(rd_wait(h, r[i], 20000, &n, &err), "read %d still pending after the driver unloaded", i);
        CHECK(err == ERROR_INVALID_HANDLE, "read %d: error %lu, expected 6 (STATUS_PORT_DISCONNECTED)", i,
              (unsigned long)err);
    }
    CHECK(send_cmd(h, CMD_ECHO, 0, "x", 1, out, sizeof out, &returned) == HR_INVALID_HANDLE,
          "FilterSendMessage after unload: not 0x80070006");
    CHECK(pConnect(s->name, 0, NULL, 0, NULL, &h2) == HR_FILE_NOT_FOUND, "connect after unload: not 0x80070002");
    CHECK(pConnect(CONF_CONTROL_PORT, 0, NULL, 0, NULL, &h2) == HR_FILE_NOT_FOUND,
          "control port still there after unload");
done:
    if (h != INVALID_HANDLE_VALUE) CloseHandle(h);
    if (h2 != INVALID_HANDLE_VALUE) CloseHandle(h2);
    free(s); /* its filter went with the driver */
    for (i = 0; i < 3; i++) rd_free(r[i]);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------------- */

/* A crash is reported as a failure, followed by the summary, instead of ending the run silently. */
static LONG WINAPI on_crash(EXCEPTION_POINTERS *info)
{
    char detail[160];
    snprintf(detail, sizeof detail, "unhandled exception 0x%08lx at %p", HX(info->ExceptionRecord->ExceptionCode),
             info->ExceptionRecord->ExceptionAddress);
    report("no crash", 0, detail);
    print_summary();
    ExitProcess(1);
}

int main(int argc, char **argv)
{
    HANDLE watchdog;
    HRESULT hr;
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) return child_main(argv[2]);
    if (argc < 2) {
        fprintf(stderr, "usage: emulator-conformance SERVICE (the conformance driver's service, loaded)\n");
        return 2;
    }
    g_service = argv[1];

    setvbuf(stdout, NULL, _IONBF, 0);
    InitializeCriticalSection(&g_printLock);
    /* FLTEMU_CONFORMANCE_NO_CRASH_HANDLER=1 leaves crashes to the debugger (Wine prints a backtrace). */
    if (GetEnvironmentVariableA("FLTEMU_CONFORMANCE_NO_CRASH_HANDLER", NULL, 0) == 0) SetUnhandledExceptionFilter(on_crash);
    watchdog = CreateThread(NULL, 0, overall_watchdog, NULL, 0, NULL);
    if (watchdog) CloseHandle(watchdog);

    if (!load_dll()) {
        report("load fltlib.dll from the program's folder", 0, "LoadLibrary/GetProcAddress failed");
        print_summary();
        return 1;
    }

    hr = pConnect(CONF_CONTROL_PORT, 0, NULL, 0, NULL, &g_control);
    if (hr != HR_OK) {
        char detail[120];
        snprintf(detail, sizeof detail, "0x%08lx (is fltemu-conformance.sys loaded on the emulator's fltmgr.sys?)",
                 HX(hr));
        report("connect to the conformance driver's control port", 0, detail);
        print_summary();
        return 1;
    }

    run_check("fltlib.dll is the emulator's, loaded from beside the program", c_dll_is_emulator, 5000);
    run_check("connect to a missing port returns 0x80070002", c_missing_port, 20000);
    run_check("MaxConnections reached returns 0x800704D6", c_max_connections, 20000);
    run_check("context pointer without size returns E_INVALIDARG", c_ctx_ptr_without_size, 20000);
    run_check("context size without pointer returns E_INVALIDARG", c_ctx_size_without_ptr, 20000);
    run_check("context over 0xFFE8 bytes returns E_INVALIDARG (0xFFE8 accepted)", c_ctx_too_large, 20000);
    run_check("ConnectNotify refusing maps through the HRESULT rule (0x80070005, 0x801F0004)", c_connect_refused,
              20000);
    run_check("connection context bytes arrive intact", c_ctx_intact, 20000);
    run_check("FilterSendMessage round trip with lpBytesReturned = ReturnOutputBufferLength", c_send_roundtrip, 20000);
    run_check("MessageNotify NTSTATUS to HRESULT mapping", c_send_status_mapping, 20000);
    run_check("FilterSendMessage without MessageNotify returns 0x80070001", c_no_message_notify, 20000);
    run_check("10,000 messages through 32 pending reads on a thread-pool I/O: no loss, no duplicate ids, all replies matched",
              c_threadpool_10k, 90000);
    run_check("8 threads FilterSendMessage concurrently while reads are pending", c_concurrent_sends, 60000);
    run_check("MessageNotify may FltSendMessage to the same client and wait for its reply", c_reentrant_send, 20000);
    run_check("FltSendMessage with ReplyBuffer NULL: returns once delivered, header.ReplyLength 0", c_no_reply_buffer,
              20000);
    run_check("header.ReplyLength = kernel ReplyLength + 16", c_reply_length, 20000);
    run_check("FltSendMessage timeout returns STATUS_TIMEOUT (0x102), late reply gets 0x801F0020",
              c_timeout_late_reply, 20000);
    run_check("FltSendMessage timeout before delivery withdraws the message", c_timeout_undelivered, 20000);
    run_check("reply larger than the waiter's buffer: STATUS_BUFFER_OVERFLOW with the part that fits",
              c_reply_too_big, 20000);
    run_check("too-small receive buffer, then redelivery to a big enough read", c_small_buffer, 20000);
    run_check("CancelIoEx on a pending read: ERROR_OPERATION_ABORTED, no message lost afterwards", c_cancel, 20000);
    run_check("a cancelled read leaves nothing behind: later reads of other sizes get whole messages or 122",
              c_cancel_other_sizes, 20000);
    run_check("FltCloseClientPort with reads pending: reads fail, later calls 0x80070006, variable NULL",
              c_kernel_closes_client, 20000);
    run_check("client closing its handle while FltSendMessage waits: STATUS_PORT_DISCONNECTED, one DisconnectNotify",
              c_client_close_while_waiting, 30000);
    run_check("client process dying while FltSendMessage waits: STATUS_PORT_DISCONNECTED", c_client_process_dies,
              40000);
    run_check("client closing its handle with reads pending: reads end, DisconnectNotify, slot freed",
              c_close_with_reads_pending, 30000);
    run_check("cancelling every pending read mid-stream, then reading on: nothing lost or duplicated",
              c_cancel_mid_stream, 40000);
    run_check("FltCloseCommunicationPort: new connects 0x80070002, existing connection works, name reusable",
              c_close_server_port, 20000);
    run_check("duplicate port name returns STATUS_OBJECT_NAME_COLLISION", c_duplicate_name, 20000);
    run_check("missing OBJ_KERNEL_HANDLE or MaxConnections 0 returns STATUS_INVALID_PARAMETER", c_port_parameters,
              20000);
    run_check("no stray completions from internal I/O on a thread-pool I/O", c_no_stray_completion, 30000);
    run_check("synchronous FilterGetMessage (NULL OVERLAPPED) blocks until a message arrives", c_sync_get, 20000);
    run_check("scanner-sample client: completion port, 2 threads x 5 reads, 3000 messages", c_scanner_client, 70000);
    run_check("256 KiB messages in both directions", c_large_messages, 30000);
    run_check("unknown handle returns 0x80070006", c_unknown_handle, 10000);
    run_check("unregistering the filter runs DisconnectNotify and fails pending reads", c_unregister, 20000);
    run_check("a DuplicateHandle copy of the port handle works as the original", c_duplicate_handle, 20000);
    run_check("a client port left open after DisconnectNotify stays usable until FltCloseClientPort",
              c_client_port_kept, 20000);
    run_check("FltEmuSendRawMessage delivers the header as written", c_raw_message, 20000);
    run_check("FltEmuDropOversizedMessages: the too-small read fails with 122, the message is dropped",
              c_drop_oversized, 20000);
    /* last: it unloads the driver */
    run_check("driver unload with reads pending: they end with 6, later calls 0x80070006", c_unload, 60000);

    print_summary();
    fflush(stdout);
    if (g_hung) ExitProcess(1); /* do not wait for hung checks */
    return g_failed == 0 ? 0 : 1;
}
