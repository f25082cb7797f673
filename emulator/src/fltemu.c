/*
 * fltemu: the kernel side of filter communication ports, emulated in a user-mode host process.
 *
 * Threads (all owned by a filter object and joined by FltEmuUnregisterFilter):
 *   - one listener per server port: accepts handshake connections on the port pipe;
 *   - one thread per connection: handshake (ConnectNotify), then the "pump": reads credits from the
 *     data pipe, writes notifications to it, notices the client closing it (DisconnectNotify);
 *   - one call listener per filter and one thread per call pipe: FilterSendMessage (MessageNotify)
 *     and FilterReplyMessage requests.
 * Every wait is on an event or an I/O completion; nothing polls.
 */
#include <fltKernel.h>
#include <bcrypt.h>

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

#define FILTER_MAGIC 0x544C4946u /* "FILT" */
#define KIND_SERVER 0x56525350u  /* "PSRV" */
#define KIND_CLIENT 0x544E4C43u  /* "CLNT" */

#define HANDSHAKE_TIMEOUT_MS 30000u
#define RESPONSE_TIMEOUT_MS 30000u
#define PIPE_BUFFER_BYTES 65536u

/* ---- small helpers ----------------------------------------------------------------------- */

typedef struct link {
    struct link *prev, *next;
} link;

static void list_init(link *h) { h->prev = h->next = h; }
static BOOL list_empty(const link *h) { return h->next == h; }
static void list_add_tail(link *h, link *e)
{
    e->prev = h->prev;
    e->next = h;
    h->prev->next = e;
    h->prev = e;
}
static void list_remove(link *e)
{
    e->prev->next = e->next;
    e->next->prev = e->prev;
    e->prev = e->next = e;
}
#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))

static void append_str(WCHAR *out, size_t *o, const WCHAR *s)
{
    while (*s && *o + 1 < FEMU_PIPE_NAME_CCH) out[(*o)++] = *s++;
    out[*o] = 0;
}

static void append_hex(WCHAR *out, size_t *o, UINT64 v, int digits)
{
    static const WCHAR hex[] = L"0123456789abcdef";
    int i;
    for (i = digits - 1; i >= 0 && *o + 1 < FEMU_PIPE_NAME_CCH; i--) out[(*o)++] = hex[(v >> (i * 4)) & 0xF];
    out[*o] = 0;
}

static BOOL random_bytes(void *buf, ULONG len)
{
    return BCryptGenRandom(NULL, (PUCHAR)buf, len, BCRYPT_USE_SYSTEM_PREFERRED_RNG) >= 0;
}

static UINT64 random_u64(void)
{
    UINT64 v = 0;
    if (!random_bytes(&v, sizeof v)) v = GetTickCount64() ^ ((UINT64)GetCurrentThreadId() << 32);
    return v;
}

/* ---- objects ----------------------------------------------------------------------------- */

struct _FLT_PORT {
    ULONG kind;
};

struct _FLT_FILTER {
    ULONG magic;
    SRWLOCK lock;
    BOOL unregistering;
    link ports; /* open server ports */
    link conns; /* accepted connections until freed */
    UINT64 nextConnId;
    HANDLE stop; /* manual-reset: set by FltEmuUnregisterFilter */
    HANDLE *threads;
    size_t threadCount, threadCap;
    WCHAR callPipe[FEMU_PIPE_NAME_CCH];
    HANDLE callFirst;
    SECURITY_ATTRIBUTES sa;
    PSECURITY_DESCRIPTOR sd;
    PACL acl;
    void *tokenUser;
    volatile LONG dropOversized; /* FltEmuDropOversizedMessages */
};

typedef struct server_port {
    struct _FLT_PORT base;
    LONG refs;
    PFLT_FILTER filter;
    link entry;
    BOOL linked;
    WCHAR pipe[FEMU_PIPE_NAME_CCH];
    PVOID cookie;
    PFLT_CONNECT_NOTIFY connectNotify;
    PFLT_DISCONNECT_NOTIFY disconnectNotify;
    PFLT_MESSAGE_NOTIFY messageNotify;
    LONG maxConnections;
    SRWLOCK lock;
    LONG connections;
    BOOL closed;
    HANDLE stop;     /* manual-reset: set by FltCloseCommunicationPort */
    HANDLE listener; /* our own handle to the listener thread */
    HANDLE first;    /* first pipe instance, handed to the listener */
} server_port;

enum waiter_state { W_QUEUED, W_AWAITING_REPLY, W_DONE };

typedef struct waiter {
    link entry;
    UINT64 id;
    const void *payload;
    ULONG payloadLen;
    BOOL wantsReply;
    BOOL raw; /* payload is the whole message, FILTER_MESSAGE_HEADER included (FltEmuSendRawMessage) */
    void *reply;
    ULONG replyCap;
    ULONG replyGot;
    int state;
    NTSTATUS result;
    HANDLE event;
} waiter;

/* A notification ready to be written; its len bytes follow the struct. */
typedef struct out_item {
    struct out_item *next;
    DWORD len;
} out_item;
#define OUT_DATA(it) ((BYTE *)((it) + 1))

enum close_reason { CLOSE_NONE, CLOSE_CLIENT_GONE, CLOSE_KERNEL, CLOSE_UNLOAD };

typedef struct conn {
    struct _FLT_PORT base;
    LONG refs;
    PFLT_FILTER filter;
    server_port *port;
    link entry;
    BOOL linked;
    PFLT_DISCONNECT_NOTIFY disconnectNotify;
    PFLT_MESSAGE_NOTIFY messageNotify;
    UINT64 id;
    BYTE token[FEMU_TOKEN_BYTES];
    WCHAR dataPipe[FEMU_PIPE_NAME_CCH];
    PVOID cookie;
    HANDLE data; /* server end of the data pipe; used by the connection thread only */
    SRWLOCK lock;
    CONDITION_VARIABLE cv;
    BOOL closed;
    int closeReason;
    BOOL countHeld;         /* counts against the port's MaxConnections */
    BOOL kernelRefHeld;     /* the reference FltCloseClientPort releases */
    BOOL disconnectPending; /* DisconnectNotify still owed (holds a reference) */
    LONG callThreads;
    ULONG *credits;
    size_t credHead, credCount, credCap;
    link pending;  /* waiters not yet delivered */
    link awaiting; /* delivered waiters that want a reply */
    out_item *outHead, *outTail;
    UINT64 nextMsgId;
    HANDLE wake; /* auto-reset: new out items */
    HANDLE stop; /* manual-reset: connection closed */
} conn;

/* Synchronises FltCloseClientPort (which NULLs the caller's variable) with FltSendMessage reading it. */
static SRWLOCK g_clientPortVarLock = SRWLOCK_INIT;

static BOOL valid_filter(PFLT_FILTER f) { return f != NULL && f->magic == FILTER_MAGIC; }

/* ---- threads ----------------------------------------------------------------------------- */

static BOOL spawn(PFLT_FILTER f, LPTHREAD_START_ROUTINE fn, void *arg, HANDLE *own)
{
    HANDLE t = NULL;
    size_t i;
    AcquireSRWLockExclusive(&f->lock);
    for (i = 0; i < f->threadCount;) { /* forget threads that have ended */
        if (WaitForSingleObject(f->threads[i], 0) == WAIT_OBJECT_0) {
            CloseHandle(f->threads[i]);
            f->threads[i] = f->threads[--f->threadCount];
        } else {
            i++;
        }
    }
    if (f->threadCount == f->threadCap) {
        size_t cap = f->threadCap ? f->threadCap * 2 : 16;
        HANDLE *grown = (HANDLE *)realloc(f->threads, cap * sizeof *grown);
        if (grown) {
            f->threads = grown;
            f->threadCap = cap;
        }
    }
    if (f->threadCount < f->threadCap) {
        t = CreateThread(NULL, 0, fn, arg, CREATE_SUSPENDED, NULL);
        if (t) f->threads[f->threadCount++] = t;
    }
    ReleaseSRWLockExclusive(&f->lock);
    if (!t) return FALSE;
    if (own && !DuplicateHandle(GetCurrentProcess(), t, GetCurrentProcess(), own, 0, FALSE, DUPLICATE_SAME_ACCESS))
        *own = NULL;
    ResumeThread(t);
    return TRUE;
}

/* ---- overlapped pipe I/O with stop events ------------------------------------------------ */

/* Waits for ov; on a stop event or timeout cancels it and waits for the cancellation. */
static DWORD ov_finish(HANDLE h, OVERLAPPED *ov, HANDLE stop1, HANDLE stop2, DWORD timeout, DWORD *n)
{
    HANDLE hs[3];
    DWORD count = 0, w;
    hs[count++] = ov->hEvent;
    if (stop1) hs[count++] = stop1;
    if (stop2) hs[count++] = stop2;
    w = WaitForMultipleObjects(count, hs, FALSE, timeout);
    if (w != WAIT_OBJECT_0) {
        CancelIoEx(h, ov);
        GetOverlappedResult(h, ov, n, TRUE);
        return w == WAIT_TIMEOUT ? ERROR_TIMEOUT : ERROR_OPERATION_ABORTED;
    }
    if (!GetOverlappedResult(h, ov, n, FALSE)) return GetLastError();
    return 0;
}

static DWORD ov_connect(HANDLE h, HANDLE ev, HANDLE stop1, HANDLE stop2, DWORD timeout)
{
    OVERLAPPED ov;
    DWORD n = 0;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = ev;
    ResetEvent(ev);
    if (ConnectNamedPipe(h, &ov)) return 0;
    switch (GetLastError()) {
    case ERROR_PIPE_CONNECTED:
        return 0;
    case ERROR_IO_PENDING:
        return ov_finish(h, &ov, stop1, stop2, timeout, &n);
    default:
        return GetLastError();
    }
}

static DWORD ov_write(HANDLE h, HANDLE ev, HANDLE stop, DWORD timeout, const void *buf, DWORD len)
{
    OVERLAPPED ov;
    DWORD n = 0, err;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = ev;
    ResetEvent(ev);
    if (!WriteFile(h, buf, len, NULL, &ov) && GetLastError() != ERROR_IO_PENDING) return GetLastError();
    err = ov_finish(h, &ov, stop, NULL, timeout, &n);
    if (err == 0 && n != len) err = ERROR_WRITE_FAULT;
    return err;
}

/* Reads one whole message into a malloc'd buffer. */
static DWORD ov_read_msg(HANDLE h, HANDLE ev, HANDLE stop1, HANDLE stop2, DWORD timeout, BYTE **out, DWORD *outLen)
{
    DWORD cap = 4096, len = 0;
    BYTE *buf = (BYTE *)malloc(cap);
    if (!buf) return ERROR_NOT_ENOUGH_MEMORY;
    for (;;) {
        OVERLAPPED ov;
        DWORD n = 0, err = 0;
        memset(&ov, 0, sizeof ov);
        ov.hEvent = ev;
        ResetEvent(ev);
        if (!ReadFile(h, buf + len, cap - len, NULL, &ov)) {
            err = GetLastError();
            if (err != ERROR_IO_PENDING && err != ERROR_MORE_DATA) {
                free(buf);
                return err;
            }
        }
        err = ov_finish(h, &ov, stop1, stop2, timeout, &n);
        len += n;
        if (err == 0) break;
        if (err == ERROR_MORE_DATA && cap <= 0x3FFFFFFFu) {
            BYTE *bigger = (BYTE *)realloc(buf, (size_t)cap * 2);
            if (bigger) {
                buf = bigger;
                cap *= 2;
                continue;
            }
            err = ERROR_NOT_ENOUGH_MEMORY;
        }
        free(buf);
        return err;
    }
    *out = buf;
    *outLen = len;
    return 0;
}

static HANDLE create_instance(PFLT_FILTER f, const WCHAR *name, BOOL first, DWORD maxInstances)
{
    return CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
                            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                            maxInstances, PIPE_BUFFER_BYTES, PIPE_BUFFER_BYTES, 0, &f->sa);
}

/* A DACL admitting only the user the host runs as (the owner defaults to that user too). */
static BOOL build_user_security(PFLT_FILTER f)
{
    HANDLE token = NULL;
    DWORD len = 0, aclLen;
    TOKEN_USER *user;
    BOOL ok = FALSE;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) return FALSE;
    GetTokenInformation(token, TokenUser, NULL, 0, &len);
    user = len ? (TOKEN_USER *)malloc(len) : NULL;
    if (user && GetTokenInformation(token, TokenUser, user, len, &len)) {
        aclLen = (DWORD)(sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) + GetLengthSid(user->User.Sid));
        f->acl = (PACL)malloc(aclLen);
        f->sd = malloc(SECURITY_DESCRIPTOR_MIN_LENGTH);
        if (f->acl && f->sd && InitializeAcl(f->acl, aclLen, ACL_REVISION) &&
            AddAccessAllowedAce(f->acl, ACL_REVISION, FILE_ALL_ACCESS, user->User.Sid) &&
            InitializeSecurityDescriptor(f->sd, SECURITY_DESCRIPTOR_REVISION) &&
            SetSecurityDescriptorDacl(f->sd, TRUE, f->acl, FALSE)) {
            f->sa.nLength = sizeof f->sa;
            f->sa.lpSecurityDescriptor = f->sd;
            f->sa.bInheritHandle = FALSE;
            ok = TRUE;
        }
    }
    f->tokenUser = user;
    CloseHandle(token);
    return ok;
}

/* ---- server ports ------------------------------------------------------------------------ */

static void port_addref(server_port *p) { InterlockedIncrement(&p->refs); }

static void port_release(server_port *p)
{
    if (InterlockedDecrement(&p->refs) != 0) return;
    if (p->first && p->first != INVALID_HANDLE_VALUE) CloseHandle(p->first);
    if (p->listener) CloseHandle(p->listener);
    if (p->stop) CloseHandle(p->stop);
    free(p);
}

/* ---- connections ------------------------------------------------------------------------- */

static void conn_release(conn *c)
{
    PFLT_FILTER f = c->filter;
    out_item *it;
    if (InterlockedDecrement(&c->refs) != 0) return;
    AcquireSRWLockExclusive(&f->lock);
    if (c->linked) list_remove(&c->entry);
    ReleaseSRWLockExclusive(&f->lock);
    while ((it = c->outHead) != NULL) {
        c->outHead = it->next;
        free(it);
    }
    free(c->credits);
    if (c->data && c->data != INVALID_HANDLE_VALUE) CloseHandle(c->data);
    if (c->wake) CloseHandle(c->wake);
    if (c->stop) CloseHandle(c->stop);
    port_release(c->port);
    free(c);
}

/* Takes a reference unless the count already reached zero (the connection is being freed and only
 * waits for the filter lock to unlink itself). Call with the filter lock held. */
static BOOL conn_tryref(conn *c)
{
    LONG refs = c->refs;
    while (refs > 0) {
        LONG seen = InterlockedCompareExchange(&c->refs, refs + 1, refs);
        if (seen == refs) return TRUE;
        refs = seen;
    }
    return FALSE;
}

static conn *conn_new(server_port *p)
{
    PFLT_FILTER f = p->filter;
    conn *c = (conn *)calloc(1, sizeof *c);
    size_t o = 0;
    if (!c) return NULL;
    c->base.kind = KIND_CLIENT;
    c->refs = 1;
    c->filter = f;
    c->port = p;
    port_addref(p);
    list_init(&c->entry);
    c->disconnectNotify = p->disconnectNotify;
    c->messageNotify = p->messageNotify;
    c->data = INVALID_HANDLE_VALUE;
    InitializeSRWLock(&c->lock);
    InitializeConditionVariable(&c->cv);
    list_init(&c->pending);
    list_init(&c->awaiting);
    AcquireSRWLockExclusive(&f->lock);
    c->id = ++f->nextConnId;
    ReleaseSRWLockExclusive(&f->lock);
    append_str(c->dataPipe, &o, FEMU_CONN_PIPE_PREFIX);
    append_hex(c->dataPipe, &o, GetCurrentProcessId(), 8);
    append_str(c->dataPipe, &o, L"-");
    append_hex(c->dataPipe, &o, c->id, 8);
    append_str(c->dataPipe, &o, L"-");
    append_hex(c->dataPipe, &o, random_u64(), 16);
    c->wake = CreateEventW(NULL, FALSE, FALSE, NULL);
    c->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!c->wake || !c->stop || !random_bytes(c->token, sizeof c->token)) {
        conn_release(c);
        return NULL;
    }
    return c;
}

static void conn_release_count(conn *c)
{
    BOOL held;
    AcquireSRWLockExclusive(&c->lock);
    held = c->countHeld;
    c->countHeld = FALSE;
    ReleaseSRWLockExclusive(&c->lock);
    if (held) {
        AcquireSRWLockExclusive(&c->port->lock);
        c->port->connections--;
        ReleaseSRWLockExclusive(&c->port->lock);
    }
}

static void fail_waiters(link *list, NTSTATUS status)
{
    while (!list_empty(list)) {
        waiter *w = CONTAINER(list->next, waiter, entry);
        list_remove(&w->entry);
        w->state = W_DONE;
        w->result = status;
        SetEvent(w->event);
    }
}

/* Ends a connection: waiters get STATUS_PORT_DISCONNECTED, the connection's threads stop and close
 * their pipe ends (the client's pending reads then fail). Idempotent. */
static void conn_shutdown(conn *c, int reason)
{
    out_item *it;
    AcquireSRWLockExclusive(&c->lock);
    if (c->closed) {
        ReleaseSRWLockExclusive(&c->lock);
        return;
    }
    c->closed = TRUE;
    c->closeReason = reason;
    fail_waiters(&c->pending, STATUS_PORT_DISCONNECTED);
    fail_waiters(&c->awaiting, STATUS_PORT_DISCONNECTED);
    while ((it = c->outHead) != NULL) {
        c->outHead = it->next;
        free(it);
    }
    c->outTail = NULL;
    c->credCount = 0;
    SetEvent(c->stop);
    ReleaseSRWLockExclusive(&c->lock);
    /* A port the minifilter closed no longer counts against MaxConnections. */
    if (reason == CLOSE_KERNEL) conn_release_count(c);
}

/* Runs DisconnectNotify if it is still owed. The caller holds a reference. */
static void conn_notify_disconnect(conn *c)
{
    BOOL pending;
    AcquireSRWLockExclusive(&c->lock);
    pending = c->disconnectPending;
    c->disconnectPending = FALSE;
    ReleaseSRWLockExclusive(&c->lock);
    if (pending) {
        c->disconnectNotify(c->cookie);
        conn_release(c);
    }
}

static void append_out(conn *c, out_item *it)
{
    it->next = NULL;
    if (c->outTail)
        c->outTail->next = it;
    else
        c->outHead = it;
    c->outTail = it;
    SetEvent(c->wake);
}

/* Pairs pending reads (credits) with queued messages, in order. Caller holds c->lock. */
static void conn_match(conn *c)
{
    while (c->credCount > 0 && !list_empty(&c->pending)) {
        ULONG room = c->credits[c->credHead];
        waiter *w = CONTAINER(c->pending.next, waiter, entry);
        ULONGLONG need = (w->raw ? 0 : (ULONGLONG)sizeof(FILTER_MESSAGE_HEADER)) + w->payloadLen;
        out_item *it;
        if (need <= room) {
            FILTER_MESSAGE_HEADER hdr;
            ULONGLONG replyLength = w->wantsReply ? (ULONGLONG)w->replyCap + sizeof(FILTER_REPLY_HEADER) : 0;
            it = (out_item *)malloc(sizeof(out_item) + (size_t)need);
            if (!it) return; /* retried on the next credit or message */
            memset(&hdr, 0, sizeof hdr);
            hdr.ReplyLength = replyLength > 0xFFFFFFFFu ? 0xFFFFFFFFu : (ULONG)replyLength;
            hdr.MessageId = w->id;
            if (w->raw) {
                memcpy(OUT_DATA(it), w->payload, w->payloadLen);
            } else {
                memcpy(OUT_DATA(it), &hdr, sizeof hdr);
                if (w->payloadLen) memcpy(OUT_DATA(it) + sizeof hdr, w->payload, w->payloadLen);
            }
            it->len = (DWORD)need;
            list_remove(&w->entry);
            if (w->wantsReply) {
                w->state = W_AWAITING_REPLY;
                list_add_tail(&c->awaiting, &w->entry);
            } else {
                w->state = W_DONE;
                w->result = STATUS_SUCCESS;
                SetEvent(w->event);
            }
        } else {
            /* The read is too small: complete it with a zero-length message; the message stays
             * queued for the next read that fits, or, with FltEmuDropOversizedMessages, fails. */
            it = (out_item *)malloc(sizeof(out_item));
            if (!it) return;
            it->len = 0;
            if (c->filter->dropOversized) {
                list_remove(&w->entry);
                w->state = W_DONE;
                w->result = STATUS_BUFFER_OVERFLOW;
                SetEvent(w->event);
            }
        }
        c->credHead = (c->credHead + 1) % c->credCap;
        c->credCount--;
        append_out(c, it);
    }
}

static BOOL conn_add_credit(conn *c, ULONG size)
{
    BOOL ok = TRUE;
    AcquireSRWLockExclusive(&c->lock);
    if (!c->closed) {
        if (c->credCount == c->credCap) {
            size_t cap = c->credCap ? c->credCap * 2 : 64, i;
            ULONG *grown = (ULONG *)malloc(cap * sizeof *grown);
            if (!grown) {
                ok = FALSE;
            } else {
                for (i = 0; i < c->credCount; i++) grown[i] = c->credits[(c->credHead + i) % c->credCap];
                free(c->credits);
                c->credits = grown;
                c->credCap = cap;
                c->credHead = 0;
            }
        }
        if (ok) {
            c->credits[(c->credHead + c->credCount) % c->credCap] = size;
            c->credCount++;
            conn_match(c);
        }
    }
    ReleaseSRWLockExclusive(&c->lock);
    return ok;
}

/* The data pipe loop. Returns TRUE when the client went away (or broke the protocol), FALSE when
 * the connection was stopped from this side. */
static BOOL conn_pump(conn *c)
{
    OVERLAPPED rov, wov;
    HANDLE rev = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE wev = CreateEventW(NULL, TRUE, FALSE, NULL);
    femu_credit_msg credit;
    BOOL readPending = FALSE, gone = FALSE;
    out_item *writing = NULL;
    DWORD n = 0;

    if (!rev || !wev) gone = TRUE;
    while (!gone) {
        HANDLE hs[4];
        DWORD w;
        if (!readPending) {
            memset(&rov, 0, sizeof rov);
            rov.hEvent = rev;
            if (!ReadFile(c->data, &credit, sizeof credit, NULL, &rov) && GetLastError() != ERROR_IO_PENDING) {
                gone = TRUE;
                break;
            }
            readPending = TRUE;
        }
        if (!writing) {
            AcquireSRWLockExclusive(&c->lock);
            writing = c->outHead;
            if (writing) {
                c->outHead = writing->next;
                if (!c->outHead) c->outTail = NULL;
            }
            ReleaseSRWLockExclusive(&c->lock);
            if (writing) {
                memset(&wov, 0, sizeof wov);
                wov.hEvent = wev;
                if (!WriteFile(c->data, OUT_DATA(writing), writing->len, NULL, &wov) && GetLastError() != ERROR_IO_PENDING) {
                    free(writing);
                    writing = NULL;
                    gone = TRUE;
                    break;
                }
            }
        }
        hs[0] = c->stop;
        hs[1] = c->filter->stop;
        hs[2] = rev;
        hs[3] = writing ? wev : c->wake;
        w = WaitForMultipleObjects(4, hs, FALSE, INFINITE);
        if (w == WAIT_OBJECT_0 || w == WAIT_OBJECT_0 + 1) break;
        if (w == WAIT_OBJECT_0 + 2) {
            readPending = FALSE;
            if (!GetOverlappedResult(c->data, &rov, &n, FALSE) || n != sizeof credit || credit.h.magic != FEMU_MAGIC ||
                credit.h.type != FEMU_MSG_CREDIT || !conn_add_credit(c, credit.size)) {
                gone = TRUE;
                break;
            }
        } else if (w == WAIT_OBJECT_0 + 3) {
            if (writing) {
                BOOL ok = GetOverlappedResult(c->data, &wov, &n, FALSE);
                free(writing);
                writing = NULL;
                if (!ok) {
                    gone = TRUE;
                    break;
                }
            }
        } else {
            gone = TRUE;
            break;
        }
    }
    if (readPending || writing) {
        CancelIoEx(c->data, NULL);
        if (readPending) GetOverlappedResult(c->data, &rov, &n, TRUE);
        if (writing) {
            GetOverlappedResult(c->data, &wov, &n, TRUE);
            free(writing);
        }
    }
    if (rev) CloseHandle(rev);
    if (wev) CloseHandle(wev);
    return gone;
}

typedef struct accept_ctx {
    server_port *port;
    HANDLE pipe;
} accept_ctx;

/* Handshake, then the pump, then teardown, for one connection. */
static DWORD WINAPI conn_thread(LPVOID arg)
{
    accept_ctx *ctx = (accept_ctx *)arg;
    server_port *p = ctx->port;
    HANDLE hs = ctx->pipe;
    PFLT_FILTER f = p->filter;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    conn *c = conn_new(p);
    femu_connect_msg *req = NULL;
    femu_connect_result_msg res;
    femu_attach_msg *attach = NULL;
    DWORD len = 0, err;
    NTSTATUS status = STATUS_SUCCESS;
    BOOL accepted = FALSE;

    free(ctx);
    port_release(p); /* conn_new took its own reference */
    if (!ev || !c) goto out;

    err = ov_read_msg(hs, ev, f->stop, NULL, HANDSHAKE_TIMEOUT_MS, (BYTE **)&req, &len);
    if (err != 0) goto out;
    if (len < sizeof *req || req->h.magic != FEMU_MAGIC || req->h.type != FEMU_MSG_CONNECT ||
        req->version != FEMU_VERSION || req->contextSize > FEMU_MAX_CONTEXT || len != sizeof *req + req->contextSize) {
        status = STATUS_INVALID_PARAMETER;
    } else {
        AcquireSRWLockExclusive(&p->lock);
        if (p->closed) {
            status = STATUS_OBJECT_NAME_NOT_FOUND;
        } else if (p->connections >= p->maxConnections) {
            status = STATUS_CONNECTION_COUNT_LIMIT;
        } else {
            p->connections++;
            c->countHeld = TRUE;
        }
        ReleaseSRWLockExclusive(&p->lock);
    }
    if (NT_SUCCESS(status)) {
        c->data = create_instance(f, c->dataPipe, TRUE, 1);
        if (c->data == INVALID_HANDLE_VALUE) status = STATUS_INSUFFICIENT_RESOURCES;
    }
    if (NT_SUCCESS(status)) {
        PVOID cookie = NULL;
        status = p->connectNotify(&c->base, p->cookie, req->contextSize ? (PVOID)(req + 1) : NULL, req->contextSize,
                                  &cookie);
        if (NT_SUCCESS(status)) {
            c->cookie = cookie;
            accepted = TRUE;
            InterlockedAdd(&c->refs, 2); /* the client port the minifilter holds, and DisconnectNotify */
            AcquireSRWLockExclusive(&c->lock);
            c->kernelRefHeld = TRUE;
            c->disconnectPending = TRUE;
            ReleaseSRWLockExclusive(&c->lock);
            AcquireSRWLockExclusive(&f->lock);
            list_add_tail(&f->conns, &c->entry);
            c->linked = TRUE;
            ReleaseSRWLockExclusive(&f->lock);
        }
    }
    if (!accepted) conn_release_count(c);

    memset(&res, 0, sizeof res);
    res.h.magic = FEMU_MAGIC;
    res.h.type = FEMU_MSG_CONNECT_RESULT;
    res.status = accepted ? STATUS_SUCCESS : status;
    if (accepted) {
        res.connId = c->id;
        memcpy(res.token, c->token, sizeof res.token);
        memcpy(res.dataPipe, c->dataPipe, sizeof res.dataPipe);
        memcpy(res.callPipe, f->callPipe, sizeof res.callPipe);
    }
    err = ov_write(hs, ev, f->stop, RESPONSE_TIMEOUT_MS, &res, sizeof res);
    if (!accepted) goto out;

    /* The client now opens the data pipe and proves it is the same client with the token. */
    if (err == 0) err = ov_connect(c->data, ev, c->stop, f->stop, HANDSHAKE_TIMEOUT_MS);
    if (err == 0) err = ov_read_msg(c->data, ev, c->stop, f->stop, HANDSHAKE_TIMEOUT_MS, (BYTE **)&attach, &len);
    if (err == 0 && (len != sizeof *attach || attach->h.magic != FEMU_MAGIC || attach->h.type != FEMU_MSG_ATTACH ||
                     memcmp(attach->token, c->token, sizeof c->token) != 0))
        err = ERROR_INVALID_DATA;
    CloseHandle(hs);
    hs = INVALID_HANDLE_VALUE;

    if (err == 0) conn_pump(c);
    /* However it ended: if nobody closed it from this side, the client went away. */
    conn_shutdown(c, CLOSE_CLIENT_GONE);
    CloseHandle(c->data); /* breaks the client's pipe: its pending reads fail */
    c->data = INVALID_HANDLE_VALUE;

    AcquireSRWLockExclusive(&c->lock);
    while (c->callThreads > 0) SleepConditionVariableSRW(&c->cv, &c->lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&c->lock);

    /* After FltCloseClientPort the emulator cannot see the client's later CloseHandle; such
     * connections get DisconnectNotify when the filter is unregistered. */
    if (c->closeReason != CLOSE_KERNEL) conn_notify_disconnect(c);
    conn_release_count(c);

out:
    if (hs != INVALID_HANDLE_VALUE) CloseHandle(hs);
    if (ev) CloseHandle(ev);
    free(req);
    free(attach);
    if (c) conn_release(c);
    return 0;
}

/* Accepts handshake connections on the port pipe, one connection thread each. */
static DWORD WINAPI port_listener(LPVOID arg)
{
    server_port *p = (server_port *)arg;
    PFLT_FILTER f = p->filter;
    HANDLE inst = p->first;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE stops[2];
    stops[0] = p->stop;
    stops[1] = f->stop;
    p->first = NULL;
    while (ev) {
        HANDLE next;
        accept_ctx *ctx;
        DWORD err;
        if (inst == INVALID_HANDLE_VALUE) {
            inst = create_instance(f, p->pipe, FALSE, PIPE_UNLIMITED_INSTANCES);
            if (inst == INVALID_HANDLE_VALUE) {
                /* transient failure: back off, but leave at once when stopped */
                if (WaitForMultipleObjects(2, stops, FALSE, 250) != WAIT_TIMEOUT) break;
                continue;
            }
        }
        err = ov_connect(inst, ev, p->stop, f->stop, INFINITE);
        if (WaitForMultipleObjects(2, stops, FALSE, 0) != WAIT_TIMEOUT) break;
        if (err != 0) { /* the client left before we saw it */
            CloseHandle(inst);
            inst = INVALID_HANDLE_VALUE;
            continue;
        }
        /* Create the next instance before handing this one over, so the name never vanishes. */
        next = create_instance(f, p->pipe, FALSE, PIPE_UNLIMITED_INSTANCES);
        ctx = (accept_ctx *)malloc(sizeof *ctx);
        if (ctx) {
            ctx->port = p;
            ctx->pipe = inst;
            port_addref(p);
            if (!spawn(f, conn_thread, ctx, NULL)) {
                port_release(p);
                free(ctx);
                ctx = NULL;
            }
        }
        if (!ctx) CloseHandle(inst);
        inst = next;
    }
    if (inst != INVALID_HANDLE_VALUE && inst != NULL) CloseHandle(inst);
    if (ev) CloseHandle(ev);
    port_release(p);
    return 0;
}

/* ---- call pipes (FilterSendMessage / FilterReplyMessage) ---------------------------------- */

static NTSTATUS handle_send(conn *c, const BYTE *msg, DWORD len, BYTE **resp, DWORD *respLen)
{
    const femu_send_msg *req = (const femu_send_msg *)msg;
    femu_send_result_msg *res;
    NTSTATUS status;
    ULONG returned = 0;
    BOOL closed;
    if (len < sizeof *req || len != sizeof *req + req->inSize) return STATUS_INVALID_PARAMETER;
    res = (femu_send_result_msg *)calloc(1, sizeof *res + req->outSize);
    if (!res) return STATUS_INSUFFICIENT_RESOURCES;
    AcquireSRWLockShared(&c->lock);
    closed = c->closed;
    ReleaseSRWLockShared(&c->lock);
    if (closed) {
        status = STATUS_PORT_DISCONNECTED;
    } else if (!c->messageNotify) {
        status = STATUS_INVALID_DEVICE_REQUEST; /* emulator's choice, see README */
    } else {
        status = c->messageNotify(c->cookie, req->inSize ? (PVOID)(req + 1) : NULL, req->inSize,
                                  req->outSize ? (PVOID)(res + 1) : NULL, req->outSize, &returned);
        if (returned > req->outSize) returned = req->outSize;
    }
    res->h.magic = FEMU_MAGIC;
    res->h.type = FEMU_MSG_SEND_RESULT;
    res->status = status;
    res->bytesReturned = returned;
    *resp = (BYTE *)res;
    *respLen = (DWORD)(sizeof *res + returned);
    return STATUS_SUCCESS;
}

static NTSTATUS handle_reply(conn *c, const BYTE *msg, DWORD len)
{
    const femu_reply_msg *req = (const femu_reply_msg *)msg;
    NTSTATUS status = STATUS_FLT_NO_WAITER_FOR_REPLY;
    link *e;
    if (len < sizeof *req || len != sizeof *req + req->payloadSize) return STATUS_INVALID_PARAMETER;
    AcquireSRWLockExclusive(&c->lock);
    if (c->closed) {
        status = STATUS_PORT_DISCONNECTED;
    } else {
        for (e = c->awaiting.next; e != &c->awaiting; e = e->next) {
            waiter *w = CONTAINER(e, waiter, entry);
            if (w->id != req->messageId) continue;
            w->replyGot = req->payloadSize < w->replyCap ? req->payloadSize : w->replyCap;
            if (w->replyGot) memcpy(w->reply, req + 1, w->replyGot);
            w->result = req->payloadSize > w->replyCap ? STATUS_BUFFER_OVERFLOW : STATUS_SUCCESS;
            status = w->result;
            list_remove(&w->entry);
            w->state = W_DONE;
            SetEvent(w->event);
            break;
        }
    }
    ReleaseSRWLockExclusive(&c->lock);
    return status;
}

static conn *find_conn(PFLT_FILTER f, UINT64 id, const BYTE *token)
{
    conn *found = NULL;
    link *e;
    AcquireSRWLockExclusive(&f->lock);
    for (e = f->conns.next; e != &f->conns; e = e->next) {
        conn *c = CONTAINER(e, conn, entry);
        if (c->id != id || memcmp(c->token, token, FEMU_TOKEN_BYTES) != 0) continue;
        AcquireSRWLockExclusive(&c->lock);
        if (!c->closed && conn_tryref(c)) {
            c->callThreads++;
            found = c;
        }
        ReleaseSRWLockExclusive(&c->lock);
        break;
    }
    ReleaseSRWLockExclusive(&f->lock);
    return found;
}

typedef struct call_ctx {
    PFLT_FILTER filter;
    HANDLE pipe;
} call_ctx;

static DWORD WINAPI call_thread(LPVOID arg)
{
    call_ctx *ctx = (call_ctx *)arg;
    PFLT_FILTER f = ctx->filter;
    HANDLE h = ctx->pipe;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    BYTE *msg = NULL;
    DWORD len = 0;
    conn *c = NULL;
    femu_status_msg st;

    free(ctx);
    if (!ev) goto out;
    if (ov_read_msg(h, ev, f->stop, NULL, HANDSHAKE_TIMEOUT_MS, &msg, &len) != 0) goto out;
    if (len == sizeof(femu_hello_msg) && ((femu_hello_msg *)msg)->h.magic == FEMU_MAGIC &&
        ((femu_hello_msg *)msg)->h.type == FEMU_MSG_HELLO)
        c = find_conn(f, ((femu_hello_msg *)msg)->connId, ((femu_hello_msg *)msg)->token);
    free(msg);
    msg = NULL;
    memset(&st, 0, sizeof st);
    st.h.magic = FEMU_MAGIC;
    st.h.type = FEMU_MSG_HELLO_RESULT;
    st.status = c ? STATUS_SUCCESS : STATUS_PORT_DISCONNECTED;
    if (ov_write(h, ev, f->stop, RESPONSE_TIMEOUT_MS, &st, sizeof st) != 0 || !c) goto out;

    for (;;) {
        const femu_hdr *hdr;
        BYTE *resp = NULL;
        DWORD respLen = 0, err;
        if (ov_read_msg(h, ev, c->stop, f->stop, INFINITE, &msg, &len) != 0) break;
        hdr = (const femu_hdr *)msg;
        if (len < sizeof *hdr || hdr->magic != FEMU_MAGIC) break;
        if (hdr->type == FEMU_MSG_SEND) {
            if (!NT_SUCCESS(handle_send(c, msg, len, &resp, &respLen))) break;
        } else if (hdr->type == FEMU_MSG_REPLY) {
            memset(&st, 0, sizeof st);
            st.h.magic = FEMU_MAGIC;
            st.h.type = FEMU_MSG_REPLY_RESULT;
            st.status = handle_reply(c, msg, len);
        } else {
            break;
        }
        free(msg);
        msg = NULL;
        /* The response goes out even if the connection was closed meanwhile (e.g. by the
         * MessageNotify that just ran); only unregistering interrupts it. */
        err = ov_write(h, ev, f->stop, RESPONSE_TIMEOUT_MS, resp ? (const void *)resp : (const void *)&st,
                       resp ? respLen : (DWORD)sizeof st);
        free(resp);
        if (err != 0) break;
    }

out:
    free(msg);
    CloseHandle(h);
    if (ev) CloseHandle(ev);
    if (c) {
        AcquireSRWLockExclusive(&c->lock);
        if (--c->callThreads == 0) WakeAllConditionVariable(&c->cv);
        ReleaseSRWLockExclusive(&c->lock);
        conn_release(c);
    }
    return 0;
}

static DWORD WINAPI call_listener(LPVOID arg)
{
    PFLT_FILTER f = (PFLT_FILTER)arg;
    HANDLE inst = f->callFirst;
    HANDLE ev = CreateEventW(NULL, TRUE, FALSE, NULL);
    f->callFirst = NULL;
    while (ev) {
        HANDLE next;
        call_ctx *ctx;
        DWORD err;
        if (inst == INVALID_HANDLE_VALUE) {
            inst = create_instance(f, f->callPipe, FALSE, PIPE_UNLIMITED_INSTANCES);
            if (inst == INVALID_HANDLE_VALUE) {
                if (WaitForSingleObject(f->stop, 250) != WAIT_TIMEOUT) break;
                continue;
            }
        }
        err = ov_connect(inst, ev, f->stop, NULL, INFINITE);
        if (WaitForSingleObject(f->stop, 0) != WAIT_TIMEOUT) break;
        if (err != 0) {
            CloseHandle(inst);
            inst = INVALID_HANDLE_VALUE;
            continue;
        }
        next = create_instance(f, f->callPipe, FALSE, PIPE_UNLIMITED_INSTANCES);
        ctx = (call_ctx *)malloc(sizeof *ctx);
        if (ctx) {
            ctx->filter = f;
            ctx->pipe = inst;
            if (!spawn(f, call_thread, ctx, NULL)) {
                free(ctx);
                ctx = NULL;
            }
        }
        if (!ctx) CloseHandle(inst);
        inst = next;
    }
    if (inst != INVALID_HANDLE_VALUE && inst != NULL) CloseHandle(inst);
    if (ev) CloseHandle(ev);
    return 0;
}

/* ---- public kernel-side API --------------------------------------------------------------- */

NTSTATUS FLTAPI FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
                                           POBJECT_ATTRIBUTES ObjectAttributes, PVOID ServerPortCookie,
                                           PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
                                           PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
                                           PFLT_MESSAGE_NOTIFY MessageNotifyCallback, LONG MaxConnections)
{
    server_port *p;
    PUNICODE_STRING name;
    NTSTATUS status = STATUS_SUCCESS;

    if (!valid_filter(Filter) || !ServerPort || !ObjectAttributes) return STATUS_INVALID_PARAMETER;
    name = ObjectAttributes->ObjectName;
    if (!name || !name->Buffer || name->Length < sizeof(WCHAR)) return STATUS_OBJECT_NAME_INVALID;
    if (!(ObjectAttributes->Attributes & OBJ_KERNEL_HANDLE)) return STATUS_INVALID_PARAMETER;
    if (MaxConnections <= 0 || !ConnectNotifyCallback || !DisconnectNotifyCallback) return STATUS_INVALID_PARAMETER;

    p = (server_port *)calloc(1, sizeof *p);
    if (!p) return STATUS_INSUFFICIENT_RESOURCES;
    p->base.kind = KIND_SERVER;
    p->refs = 1; /* the minifilter's server port; released by FltCloseCommunicationPort */
    p->filter = Filter;
    list_init(&p->entry);
    p->cookie = ServerPortCookie;
    p->connectNotify = ConnectNotifyCallback;
    p->disconnectNotify = DisconnectNotifyCallback;
    p->messageNotify = MessageNotifyCallback;
    p->maxConnections = MaxConnections;
    InitializeSRWLock(&p->lock);
    p->first = INVALID_HANDLE_VALUE;
    if (!femu_port_pipe_name(name->Buffer, name->Length / sizeof(WCHAR), p->pipe)) {
        status = STATUS_OBJECT_NAME_INVALID;
        goto fail;
    }
    p->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!p->stop) {
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto fail;
    }
    /* FILE_FLAG_FIRST_PIPE_INSTANCE detects a taken name on Windows; Wine 8 ignores the flag, so
     * first ask whether any instance of the name exists (ERROR_FILE_NOT_FOUND means free). */
    if (WaitNamedPipeW(p->pipe, 1) || GetLastError() != ERROR_FILE_NOT_FOUND) {
        status = STATUS_OBJECT_NAME_COLLISION;
        goto fail;
    }
    p->first = create_instance(Filter, p->pipe, TRUE, PIPE_UNLIMITED_INSTANCES);
    if (p->first == INVALID_HANDLE_VALUE) {
        DWORD err = GetLastError();
        status = (err == ERROR_ACCESS_DENIED || err == ERROR_PIPE_BUSY) ? STATUS_OBJECT_NAME_COLLISION
                 : (err == ERROR_INVALID_NAME || err == ERROR_BAD_PATHNAME) ? STATUS_OBJECT_NAME_INVALID
                                                                          : STATUS_INSUFFICIENT_RESOURCES;
        goto fail;
    }
    AcquireSRWLockExclusive(&Filter->lock);
    if (Filter->unregistering) {
        status = STATUS_FLT_DELETING_OBJECT;
    } else {
        list_add_tail(&Filter->ports, &p->entry);
        p->linked = TRUE;
    }
    ReleaseSRWLockExclusive(&Filter->lock);
    if (!NT_SUCCESS(status)) goto fail;
    port_addref(p); /* the listener's */
    if (!spawn(Filter, port_listener, p, &p->listener)) {
        port_release(p);
        AcquireSRWLockExclusive(&Filter->lock);
        list_remove(&p->entry);
        p->linked = FALSE;
        ReleaseSRWLockExclusive(&Filter->lock);
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto fail;
    }
    *ServerPort = &p->base;
    return STATUS_SUCCESS;

fail:
    port_release(p);
    return status;
}

VOID FLTAPI FltCloseCommunicationPort(PFLT_PORT ServerPort)
{
    server_port *p = (server_port *)ServerPort;
    PFLT_FILTER f;
    if (!p || p->base.kind != KIND_SERVER) return;
    f = p->filter;
    AcquireSRWLockExclusive(&p->lock);
    if (p->closed) {
        ReleaseSRWLockExclusive(&p->lock);
        return;
    }
    p->closed = TRUE;
    ReleaseSRWLockExclusive(&p->lock);
    /* Stop accepting; the listener closes the listening instance, so the name disappears (new
     * clients get ERROR_FILE_NOT_FOUND). Existing connections use their own pipes and stay. */
    SetEvent(p->stop);
    if (p->listener) WaitForSingleObject(p->listener, INFINITE);
    AcquireSRWLockExclusive(&f->lock);
    if (p->linked) {
        list_remove(&p->entry);
        p->linked = FALSE;
    }
    ReleaseSRWLockExclusive(&f->lock);
    port_release(p);
}

VOID FLTAPI FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort)
{
    conn *c;
    BOOL release;
    UNREFERENCED_PARAMETER(Filter);
    if (!ClientPort) return;
    AcquireSRWLockExclusive(&g_clientPortVarLock);
    c = (conn *)*ClientPort;
    *ClientPort = NULL;
    ReleaseSRWLockExclusive(&g_clientPortVarLock);
    if (!c || c->base.kind != KIND_CLIENT) return;
    conn_shutdown(c, CLOSE_KERNEL);
    AcquireSRWLockExclusive(&c->lock);
    release = c->kernelRefHeld;
    c->kernelRefHeld = FALSE;
    ReleaseSRWLockExclusive(&c->lock);
    if (release) conn_release(c);
}

static NTSTATUS send_message(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer, ULONG SenderBufferLength,
                             BOOL raw, PVOID ReplyBuffer, PULONG ReplyLength, PLARGE_INTEGER Timeout);

NTSTATUS FLTAPI FltSendMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer,
                               ULONG SenderBufferLength, PVOID ReplyBuffer, PULONG ReplyLength,
                               PLARGE_INTEGER Timeout)
{
    return send_message(Filter, ClientPort, SenderBuffer, SenderBufferLength, FALSE, ReplyBuffer, ReplyLength, Timeout);
}

VOID FLTAPI FltEmuDropOversizedMessages(PFLT_FILTER Filter, BOOLEAN Drop)
{
    if (valid_filter(Filter)) InterlockedExchange(&Filter->dropOversized, Drop ? 1 : 0);
}

NTSTATUS FLTAPI FltEmuSendRawMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID Message, ULONG MessageLength,
                                     PLARGE_INTEGER Timeout)
{
    if (!Message || MessageLength < sizeof(FILTER_MESSAGE_HEADER)) return STATUS_INVALID_PARAMETER;
    return send_message(Filter, ClientPort, Message, MessageLength, TRUE, NULL, NULL, Timeout);
}

static NTSTATUS send_message(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer, ULONG SenderBufferLength,
                             BOOL raw, PVOID ReplyBuffer, PULONG ReplyLength, PLARGE_INTEGER Timeout)
{
    conn *c;
    waiter w;
    ULONGLONG deadline = 0;
    BOOL forever = Timeout == NULL;
    NTSTATUS status;

    if (!valid_filter(Filter) || !ClientPort || (!SenderBuffer && SenderBufferLength) || (ReplyBuffer && !ReplyLength))
        return STATUS_INVALID_PARAMETER;
    if (SenderBufferLength > 0x7FFFFFF0u) return STATUS_INVALID_PARAMETER;

    AcquireSRWLockShared(&g_clientPortVarLock);
    c = (conn *)*ClientPort;
    if (c && c->base.kind == KIND_CLIENT)
        InterlockedIncrement(&c->refs);
    else
        c = NULL;
    ReleaseSRWLockShared(&g_clientPortVarLock);
    if (!c) return STATUS_PORT_DISCONNECTED;

    if (!forever) {
        LONGLONG rel = Timeout->QuadPart;
        if (rel >= 0) { /* absolute system time */
            FILETIME ft;
            ULARGE_INTEGER now;
            GetSystemTimeAsFileTime(&ft);
            now.LowPart = ft.dwLowDateTime;
            now.HighPart = ft.dwHighDateTime;
            rel = rel > (LONGLONG)now.QuadPart ? rel - (LONGLONG)now.QuadPart : 0;
        } else {
            rel = -rel;
        }
        deadline = GetTickCount64() + (ULONGLONG)(rel / 10000) + (rel % 10000 ? 1 : 0);
    }

    memset(&w, 0, sizeof w);
    list_init(&w.entry);
    w.payload = SenderBuffer;
    w.payloadLen = SenderBufferLength;
    w.raw = raw;
    w.wantsReply = ReplyBuffer != NULL;
    w.reply = ReplyBuffer;
    w.replyCap = ReplyBuffer ? *ReplyLength : 0;
    w.event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!w.event) {
        conn_release(c);
        return STATUS_INSUFFICIENT_RESOURCES;
    }

    AcquireSRWLockExclusive(&c->lock);
    if (c->closed) {
        w.state = W_DONE;
        w.result = STATUS_PORT_DISCONNECTED;
        SetEvent(w.event);
    } else {
        w.id = ++c->nextMsgId;
        w.state = W_QUEUED;
        list_add_tail(&c->pending, &w.entry);
        conn_match(c);
    }
    ReleaseSRWLockExclusive(&c->lock);

    /* Whoever completes w (delivery without reply, reply, disconnect) sets w.event under c->lock. */
    for (;;) {
        DWORD ms = INFINITE, r;
        if (!forever) {
            ULONGLONG now = GetTickCount64();
            ULONGLONG left = deadline > now ? deadline - now : 0;
            ms = left > 0xFFFFFFFEu ? 0xFFFFFFFEu : (DWORD)left;
        }
        r = WaitForSingleObject(w.event, ms);
        if (r == WAIT_OBJECT_0) break;
        if (r == WAIT_FAILED || (!forever && GetTickCount64() >= deadline)) {
            AcquireSRWLockExclusive(&c->lock);
            if (w.state != W_DONE) {
                /* undelivered: the message is withdrawn; delivered: a late reply finds no waiter */
                list_remove(&w.entry);
                w.state = W_DONE;
                w.result = r == WAIT_FAILED ? STATUS_INSUFFICIENT_RESOURCES : STATUS_TIMEOUT;
            }
            ReleaseSRWLockExclusive(&c->lock);
            break;
        }
    }
    AcquireSRWLockShared(&c->lock); /* pairs with the writer that completed w */
    status = w.result;
    ReleaseSRWLockShared(&c->lock);
    if (ReplyBuffer && (status == STATUS_SUCCESS || status == STATUS_BUFFER_OVERFLOW)) *ReplyLength = w.replyGot;
    CloseHandle(w.event);
    conn_release(c);
    return status;
}

NTSTATUS FLTAPI FltBuildDefaultSecurityDescriptor(PSECURITY_DESCRIPTOR *SecurityDescriptor, ACCESS_MASK DesiredAccess)
{
    PSECURITY_DESCRIPTOR sd;
    UNREFERENCED_PARAMETER(DesiredAccess);
    if (!SecurityDescriptor) return STATUS_INVALID_PARAMETER;
    sd = malloc(SECURITY_DESCRIPTOR_MIN_LENGTH);
    if (!sd) return STATUS_INSUFFICIENT_RESOURCES;
    if (!InitializeSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION)) {
        free(sd);
        return STATUS_UNSUCCESSFUL;
    }
    *SecurityDescriptor = sd;
    return STATUS_SUCCESS;
}

VOID FLTAPI FltFreeSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor) { free(SecurityDescriptor); }

NTSTATUS FLTAPI FltEmuCreateFilter(PFLT_FILTER *Filter)
{
    PFLT_FILTER f;
    size_t o = 0;
    if (!Filter) return STATUS_INVALID_PARAMETER;
    *Filter = NULL;
    f = (PFLT_FILTER)calloc(1, sizeof *f);
    if (!f) return STATUS_INSUFFICIENT_RESOURCES;
    f->magic = FILTER_MAGIC;
    InitializeSRWLock(&f->lock);
    list_init(&f->ports);
    list_init(&f->conns);
    f->callFirst = INVALID_HANDLE_VALUE;
    append_str(f->callPipe, &o, FEMU_CALL_PIPE_PREFIX);
    append_hex(f->callPipe, &o, GetCurrentProcessId(), 8);
    append_str(f->callPipe, &o, L"-");
    append_hex(f->callPipe, &o, random_u64(), 16);
    append_hex(f->callPipe, &o, random_u64(), 16);
    f->stop = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (f->stop && build_user_security(f)) f->callFirst = create_instance(f, f->callPipe, TRUE, PIPE_UNLIMITED_INSTANCES);
    if (f->callFirst == INVALID_HANDLE_VALUE || !spawn(f, call_listener, f, NULL)) {
        if (f->callFirst != INVALID_HANDLE_VALUE) CloseHandle(f->callFirst);
        if (f->stop) CloseHandle(f->stop);
        free(f->acl);
        free(f->sd);
        free(f->tokenUser);
        free(f->threads);
        free(f);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    *Filter = f;
    return STATUS_SUCCESS;
}

/* Snapshot of the filter's connections, each with a reference. */
static conn **snapshot_conns(PFLT_FILTER f, size_t *count)
{
    conn **all;
    size_t n = 0, i = 0;
    link *e;
    AcquireSRWLockExclusive(&f->lock);
    for (e = f->conns.next; e != &f->conns; e = e->next) n++;
    all = (conn **)malloc((n ? n : 1) * sizeof *all);
    if (all) {
        for (e = f->conns.next; e != &f->conns; e = e->next) {
            conn *c = CONTAINER(e, conn, entry);
            if (conn_tryref(c)) all[i++] = c;
        }
    }
    ReleaseSRWLockExclusive(&f->lock);
    *count = i;
    return all;
}

VOID FLTAPI FltEmuUnregisterFilter(PFLT_FILTER Filter)
{
    PFLT_FILTER f = Filter;
    conn **all;
    size_t n, i;
    BOOL leftovers;
    if (!valid_filter(f)) return;

    AcquireSRWLockExclusive(&f->lock);
    f->unregistering = TRUE;
    ReleaseSRWLockExclusive(&f->lock);
    for (;;) { /* close server ports the minifilter left open */
        server_port *p = NULL;
        AcquireSRWLockExclusive(&f->lock);
        if (!list_empty(&f->ports)) {
            p = CONTAINER(f->ports.next, server_port, entry);
            port_addref(p);
        }
        ReleaseSRWLockExclusive(&f->lock);
        if (!p) break;
        FltCloseCommunicationPort(&p->base);
        port_release(p);
    }
    SetEvent(f->stop);

    all = snapshot_conns(f, &n);
    for (i = 0; all && i < n; i++) conn_shutdown(all[i], CLOSE_UNLOAD);
    for (i = 0; all && i < n; i++) conn_release(all[i]);
    free(all);

    for (;;) { /* join every emulator thread of this filter */
        HANDLE t = NULL;
        AcquireSRWLockExclusive(&f->lock);
        if (f->threadCount > 0) t = f->threads[--f->threadCount];
        ReleaseSRWLockExclusive(&f->lock);
        if (!t) break;
        WaitForSingleObject(t, INFINITE);
        CloseHandle(t);
    }

    /* DisconnectNotify for connections that have not had it (closed with FltCloseClientPort), then
     * drop the client ports the minifilter never closed. */
    all = snapshot_conns(f, &n);
    for (i = 0; all && i < n; i++) conn_notify_disconnect(all[i]);
    for (i = 0; all && i < n; i++) {
        BOOL release;
        AcquireSRWLockExclusive(&all[i]->lock);
        release = all[i]->kernelRefHeld;
        all[i]->kernelRefHeld = FALSE;
        ReleaseSRWLockExclusive(&all[i]->lock);
        if (release) conn_release(all[i]);
    }
    for (i = 0; all && i < n; i++) conn_release(all[i]);
    free(all);

    AcquireSRWLockExclusive(&f->lock);
    leftovers = !list_empty(&f->conns);
    ReleaseSRWLockExclusive(&f->lock);
    if (leftovers) return; /* something still references a connection: leak rather than dangle */
    CloseHandle(f->stop);
    free(f->threads);
    free(f->acl);
    free(f->sd);
    free(f->tokenUser);
    f->magic = 0;
    free(f);
}

/* ---- kernel helpers ------------------------------------------------------------------------ */

PVOID NTAPI ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag)
{
    UNREFERENCED_PARAMETER(Tag);
    if (NumberOfBytes == 0) NumberOfBytes = 1;
    return (Flags & POOL_FLAG_UNINITIALIZED) ? malloc(NumberOfBytes) : calloc(1, NumberOfBytes);
}

PVOID NTAPI ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag)
{
    UNREFERENCED_PARAMETER(PoolType);
    UNREFERENCED_PARAMETER(Tag);
    return malloc(NumberOfBytes ? NumberOfBytes : 1);
}

VOID NTAPI ExFreePoolWithTag(PVOID P, ULONG Tag)
{
    UNREFERENCED_PARAMETER(Tag);
    free(P);
}

VOID NTAPI ExFreePool(PVOID P) { free(P); }

static void probe(const volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
    if (Length != 0 && Alignment > 1 && ((ULONG_PTR)Address & (Alignment - 1)) != 0)
        RaiseException((DWORD)STATUS_DATATYPE_MISALIGNMENT, 0, 0, NULL);
}

VOID NTAPI ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
    probe(Address, Length, Alignment);
}

VOID NTAPI ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment)
{
    probe(Address, Length, Alignment);
}

PEPROCESS NTAPI PsGetCurrentProcess(VOID) { return (PEPROCESS)(ULONG_PTR)GetCurrentProcessId(); }

HANDLE NTAPI PsGetCurrentProcessId(VOID) { return (HANDLE)(ULONG_PTR)GetCurrentProcessId(); }

ULONG __cdecl FltEmuDbgPrint(PCSTR Format, ...)
{
    va_list args;
    va_start(args, Format);
    vfprintf(stderr, Format, args);
    va_end(args);
    return 0;
}
