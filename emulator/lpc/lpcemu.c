/* The LPC stand-in: ntdll's LPC port calls over message-mode named pipes, in one process or
 * between processes of the same user. Semantics and their sources: README.md beside this file.
 *
 * Objects. A connection port (NtCreatePort) owns a named pipe `\\.\pipe\fltport-lpc\<name>`, a
 * listener thread that connects pipe instances, and the receive queue every message of the port
 * goes through. Each connected pipe instance is a server end: from NtAcceptConnectPort on it is a
 * server communication port with a handle. The client's end is the client communication port.
 * Every end has a reader thread: the server's turns frames into queued PORT_MESSAGEs, the
 * client's hands replies to the threads waiting in NtRequestWaitReplyPort. A port's HANDLE is a
 * real (unnamed event) handle, so its value can never collide with another handle; NtClose looks
 * it up in the table and passes every other handle to ntdll's NtClose.
 *
 * Pipe handles: only an end's reader thread closes its pipe, holding the end's write lock and then
 * its lock; writers write holding the write lock only (never the lock, which the reader needs to
 * deliver what it reads: a writer waiting for pipe space must not stop the reader that makes
 * room), and whoever ends the pipe sets `stopping` and cancels its I/O under the lock. So no
 * thread ever passes a closed (or reused) handle value to the system. */
#define LPCEMU_BUILD
#include "lpcemu.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PIPE_PREFIX L"\\\\.\\pipe\\fltport-lpc\\"
#define PIPE_BUFFER_BYTES (64 * 1024)
#define CONNECT_BUSY_TIMEOUT_MS 30000
#define FRAME_DATA_BYTES (LPCEMU_HEADER + LPCEMU_MAX_MESSAGE + SECURITY_MAX_SID_SIZE)

/* ---- the wire protocol between the two ends of a connection ---------------------------------- */

enum frame_kind {
    F_HELLO = 1, /* server -> client on connect: server pid, max message length, data = server SID */
    F_CONNECT,   /* client -> server: pid/tid, data = connection info, section/offset/size = client view */
    F_ACCEPT,    /* server -> client: data = connection info, section/size = server view, base = client view in server */
    F_REFUSE,    /* server -> client: data = connection info */
    F_MAPPED,    /* client -> server: base = the server view as mapped in the client */
    F_COMPLETE,  /* server -> client: NtCompleteConnectPort */
    F_REQUEST,   /* client -> server: tag, pid/tid, data = the PORT_MESSAGE */
    F_DATAGRAM,  /* client -> server: pid/tid, data = the PORT_MESSAGE */
    F_REPLY,     /* server -> client: tag, data = the reply PORT_MESSAGE */
};

typedef struct frame {
    ULONG kind;
    ULONG tag;
    ULONG64 pid, tid;
    ULONG64 section; /* a section handle already duplicated into the receiver's process */
    ULONG64 offset;
    ULONG64 size;
    ULONG64 base;
    ULONG64 max_message;
    ULONG length; /* of data */
    ULONG reserved;
    BYTE data[FRAME_DATA_BYTES];
} frame;
#define FRAME_HEADER_BYTES ((DWORD)offsetof(frame, data))

/* ---- objects ---------------------------------------------------------------------------------- */

enum port_kind { K_CONNECTION = 1, K_SERVER, K_CLIENT };
/* A server end's connection state. */
enum server_state { S_NEW, S_REQUESTED, S_ACCEPTING, S_ACCEPTED, S_COMPLETED, S_ENDED };

typedef struct queued {
    struct queued *next;
    PVOID context;
    BYTE message[LPCEMU_HEADER + LPCEMU_MAX_MESSAGE];
} queued;

typedef struct pending_request {
    struct pending_request *next;
    ULONG message_id;
    ULONG tag;
    CLIENT_ID client;
} pending_request;

typedef struct waiter {
    struct waiter *next;
    ULONG tag;
    BOOL done;
    NTSTATUS status;
    LPCEMU_PORT_MESSAGE *reply;
} waiter;

typedef struct port {
    struct port *next_in_table; /* table_lock */
    HANDLE handle;              /* NULL until the port has a handle */
    LONG refs;
    enum port_kind kind;
    CRITICAL_SECTION write_lock; /* taken before `lock`, never while holding it */
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE changed; /* under lock: queue, replies, MAPPED */
    BOOL closed;                /* NtClose ran */
    ULONG max_message;          /* TotalLength limit */

    /* Server and client ends. */
    HANDLE pipe;         /* closed by the reader thread only */
    HANDLE reader;       /* thread */
    BOOL stopping;       /* ask the reader to end */
    BOOL disconnected;   /* the pipe is gone */
    PVOID local_views[2]; /* views this end mapped in this process */

    /* Connection port. */
    WCHAR *pipe_name;
    HANDLE name_claim; /* named event: the port's name is taken */
    HANDLE first_instance;
    HANDLE listener;
    HANDLE stop_listener;
    queued *queue_head, *queue_tail;
    struct port *ends; /* server ends, linked by next_end */

    /* Server end. */
    struct port *connection; /* holds a reference */
    struct port *next_end;   /* connection's lock */
    enum server_state state;
    PVOID context;
    DWORD client_pid;
    CLIENT_ID client;
    ULONG connect_message_id;
    HANDLE client_section; /* duplicated into this process by the client */
    ULONG64 client_view_offset, client_view_size;
    BOOL mapped;
    ULONG64 mapped_base;
    pending_request *pending;

    /* Client end. */
    waiter *waiters;
    ULONG next_tag;
} port;

static SRWLOCK table_lock = SRWLOCK_INIT;
static port *table;
static LONG open_ports, mapped_views;
static volatile LONG next_message_id;
static NTSTATUS(NTAPI *real_close)(HANDLE);

static INIT_ONCE security_once = INIT_ONCE_STATIC_INIT;
static SECURITY_ATTRIBUTES user_only;
static PSID process_user; /* this process's token user */

static BOOL unlink_end(port *end);
static void drop_end(port *end);
static NTSTATUS reply_through(port *c, LPCEMU_PORT_MESSAGE *reply);

/* ---- small helpers ---------------------------------------------------------------------------- */

static ULONG new_message_id(void)
{
    ULONG id;
    do id = (ULONG)InterlockedIncrement(&next_message_id);
    while (id == 0);
    return id;
}

static void port_retain(port *p) { InterlockedIncrement(&p->refs); }

static void port_release(port *p)
{
    if (InterlockedDecrement(&p->refs) != 0) return;
    while (p->queue_head) {
        queued *q = p->queue_head;
        p->queue_head = q->next;
        free(q);
    }
    while (p->pending) {
        pending_request *r = p->pending;
        p->pending = r->next;
        free(r);
    }
    if (p->connection) port_release(p->connection);
    free(p->pipe_name);
    DeleteCriticalSection(&p->lock);
    DeleteCriticalSection(&p->write_lock);
    free(p);
}

static port *port_new(enum port_kind kind)
{
    port *p = (port *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->refs = 1;
    p->kind = kind;
    InitializeCriticalSection(&p->write_lock);
    InitializeCriticalSection(&p->lock);
    InitializeConditionVariable(&p->changed);
    return p;
}

/* Gives `p` a handle and puts it in the table; the table holds a reference. */
static NTSTATUS port_insert(port *p, PHANDLE out)
{
    HANDLE h = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!h) return STATUS_INSUFFICIENT_RESOURCES;
    port_retain(p);
    AcquireSRWLockExclusive(&table_lock);
    p->handle = h;
    p->next_in_table = table;
    table = p;
    ReleaseSRWLockExclusive(&table_lock);
    InterlockedIncrement(&open_ports);
    *out = h;
    return STATUS_SUCCESS;
}

/* The port behind `h`, referenced, or NULL. */
static port *port_lookup(HANDLE h)
{
    port *p;
    if (!h) return NULL;
    AcquireSRWLockShared(&table_lock);
    for (p = table; p && p->handle != h; p = p->next_in_table) {}
    if (p) port_retain(p);
    ReleaseSRWLockShared(&table_lock);
    return p;
}

static port *port_unlink(HANDLE h)
{
    port **link;
    port *p = NULL;
    AcquireSRWLockExclusive(&table_lock);
    for (link = &table; *link; link = &(*link)->next_in_table) {
        if ((*link)->handle == h) {
            p = *link;
            *link = p->next_in_table;
            break;
        }
    }
    ReleaseSRWLockExclusive(&table_lock);
    return p;
}

static BOOL WINAPI build_security(PINIT_ONCE once, PVOID param, PVOID *context)
{
    HANDLE token = NULL;
    DWORD len = 0, acl_len;
    TOKEN_USER *user;
    PACL acl;
    PSECURITY_DESCRIPTOR sd;
    (void)once, (void)param, (void)context;
    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token)) return FALSE;
    GetTokenInformation(token, TokenUser, NULL, 0, &len);
    user = len ? (TOKEN_USER *)malloc(len) : NULL;
    if (!user || !GetTokenInformation(token, TokenUser, user, len, &len)) {
        CloseHandle(token);
        free(user);
        return FALSE;
    }
    CloseHandle(token);
    acl_len = (DWORD)(sizeof(ACL) + sizeof(ACCESS_ALLOWED_ACE) + GetLengthSid(user->User.Sid));
    acl = (PACL)malloc(acl_len);
    sd = malloc(SECURITY_DESCRIPTOR_MIN_LENGTH);
    if (!acl || !sd || !InitializeAcl(acl, acl_len, ACL_REVISION) ||
        !AddAccessAllowedAce(acl, ACL_REVISION, FILE_ALL_ACCESS, user->User.Sid) ||
        !InitializeSecurityDescriptor(sd, SECURITY_DESCRIPTOR_REVISION) || !SetSecurityDescriptorDacl(sd, TRUE, acl, FALSE)) {
        free(acl);
        free(sd);
        free(user);
        return FALSE;
    }
    user_only.nLength = sizeof user_only;
    user_only.lpSecurityDescriptor = sd;
    user_only.bInheritHandle = FALSE;
    process_user = user->User.Sid; /* the TOKEN_USER block stays allocated for the process's life */
    return TRUE;
}

static BOOL security_ready(void) { return InitOnceExecuteOnce(&security_once, build_security, NULL, NULL); }

/* `prefix` + the port name, `\` and `%` escaped as %5C and %25. */
static WCHAR *escaped_name(const WCHAR *prefix, const UNICODE_STRING *name)
{
    size_t units = name->Length / sizeof(WCHAR), length = wcslen(prefix), i, at;
    WCHAR *out = (WCHAR *)malloc((length + units * 3 + 1) * sizeof(WCHAR));
    if (!out) return NULL;
    memcpy(out, prefix, length * sizeof(WCHAR));
    at = length;
    for (i = 0; i < units; ++i) {
        WCHAR c = name->Buffer[i];
        if (c == L'\\' || c == L'%') {
            out[at++] = L'%';
            out[at++] = c == L'\\' ? L'5' : L'2';
            out[at++] = c == L'\\' ? L'C' : L'5';
        } else {
            out[at++] = c;
        }
    }
    out[at] = 0;
    return out;
}

static WCHAR *pipe_name_of(const UNICODE_STRING *name) { return escaped_name(PIPE_PREFIX, name); }

/* Creates the named event that claims a port name (GetLastError() tells whether it existed). */
static HANDLE claim_name(const UNICODE_STRING *name)
{
    WCHAR *event_name = escaped_name(L"Local\\fltport-lpc-", name);
    HANDLE claim;
    if (!event_name) return NULL;
    claim = CreateEventW(&user_only, TRUE, FALSE, event_name);
    free(event_name);
    return claim;
}

/* One overlapped pipe write, waited for. Callers hold the end's write lock (the pipe stays open). */
static BOOL pipe_write(HANDLE pipe, const frame *f)
{
    OVERLAPPED ov;
    DWORD done = 0;
    BOOL ok;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ov.hEvent) return FALSE;
    ok = WriteFile(pipe, f, FRAME_HEADER_BYTES + f->length, NULL, &ov);
    if (ok || GetLastError() == ERROR_IO_PENDING) ok = GetOverlappedResult(pipe, &ov, &done, TRUE);
    CloseHandle(ov.hEvent);
    return ok && done == FRAME_HEADER_BYTES + f->length;
}

/* One overlapped pipe read of a whole frame, waited for (before the end has a reader thread). */
static BOOL pipe_read(HANDLE pipe, frame *f)
{
    OVERLAPPED ov;
    DWORD done = 0;
    BOOL ok;
    memset(&ov, 0, sizeof ov);
    ov.hEvent = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!ov.hEvent) return FALSE;
    ok = ReadFile(pipe, f, sizeof *f, NULL, &ov);
    if (ok || GetLastError() == ERROR_IO_PENDING) ok = GetOverlappedResult(pipe, &ov, &done, TRUE);
    CloseHandle(ov.hEvent);
    return ok && done >= FRAME_HEADER_BYTES && done == FRAME_HEADER_BYTES + f->length;
}

/* Sends a frame on an end, unless its pipe is gone. */
static BOOL end_send(port *p, const frame *f)
{
    HANDLE pipe;
    BOOL ok;
    EnterCriticalSection(&p->write_lock);
    EnterCriticalSection(&p->lock);
    pipe = p->stopping ? NULL : p->pipe;
    LeaveCriticalSection(&p->lock);
    ok = pipe && pipe_write(pipe, f);
    LeaveCriticalSection(&p->write_lock);
    return ok;
}

static void frame_init(frame *f, enum frame_kind kind)
{
    memset(f, 0, FRAME_HEADER_BYTES);
    f->kind = kind;
    f->pid = GetCurrentProcessId();
    f->tid = GetCurrentThreadId();
}

/* Maps `size` bytes of a section at `offset` (0: all of it) and returns the base; `*size` becomes
 * the size of the mapped region (whole pages), as the kernel writes back. */
static PVOID map_view(HANDLE section, ULONG64 offset, SIZE_T *size)
{
    MEMORY_BASIC_INFORMATION info;
    PVOID base = MapViewOfFile(section, FILE_MAP_ALL_ACCESS, (DWORD)(offset >> 32), (DWORD)offset, *size);
    if (!base) return NULL;
    if (VirtualQuery(base, &info, sizeof info) == sizeof info) *size = info.RegionSize;
    InterlockedIncrement(&mapped_views);
    return base;
}

static void unmap_view(PVOID base)
{
    if (base && UnmapViewOfFile(base)) InterlockedDecrement(&mapped_views);
}

/* Duplicates this process's `section` into process `pid`; the value there, or 0. */
static ULONG64 section_for(DWORD pid, HANDLE section)
{
    HANDLE target = OpenProcess(PROCESS_DUP_HANDLE, FALSE, pid), copy = NULL;
    if (!target) return 0;
    if (!DuplicateHandle(GetCurrentProcess(), section, target, &copy, 0, FALSE, DUPLICATE_SAME_ACCESS)) copy = NULL;
    CloseHandle(target);
    return (ULONG64)(ULONG_PTR)copy;
}

/* ---- the reader threads ------------------------------------------------------------------------ */

/* Queues a message on a connection port for NtReplyWaitReceivePort(Ex). */
static void queue_message(port *connection, const LPCEMU_PORT_MESSAGE *message, PVOID context)
{
    queued *q = (queued *)malloc(sizeof *q);
    if (!q) return; /* out of memory: the message is lost, as a kernel out of pool would fail the send */
    q->next = NULL;
    q->context = context;
    memcpy(q->message, message, message->TotalLength);
    EnterCriticalSection(&connection->lock);
    if (connection->closed) {
        free(q);
    } else {
        if (connection->queue_tail) connection->queue_tail->next = q;
        else connection->queue_head = q;
        connection->queue_tail = q;
        WakeAllConditionVariable(&connection->changed);
    }
    LeaveCriticalSection(&connection->lock);
}

/* A frame that a server end received. */
static void server_frame(port *p, frame *f)
{
    BYTE buffer[LPCEMU_HEADER + LPCEMU_MAX_MESSAGE];
    LPCEMU_PORT_MESSAGE *m = (LPCEMU_PORT_MESSAGE *)buffer;
    PVOID context;
    switch (f->kind) {
    case F_CONNECT: {
        ULONG info = f->length > LPCEMU_MAX_CONNECTION_INFO ? LPCEMU_MAX_CONNECTION_INFO : f->length;
        memset(m, 0, LPCEMU_HEADER);
        m->DataLength = (USHORT)info;
        m->TotalLength = (USHORT)(LPCEMU_HEADER + info);
        m->Type = LPCEMU_CONNECTION_REQUEST;
        m->ClientId.UniqueProcess = (HANDLE)(ULONG_PTR)f->pid;
        m->ClientId.UniqueThread = (HANDLE)(ULONG_PTR)f->tid;
        m->MessageId = new_message_id();
        m->ClientViewSize = (SIZE_T)f->size;
        memcpy(m + 1, f->data, info);
        EnterCriticalSection(&p->lock);
        if (p->state != S_NEW) {
            LeaveCriticalSection(&p->lock);
            return;
        }
        p->state = S_REQUESTED;
        p->client = m->ClientId;
        p->client_pid = (DWORD)f->pid;
        p->connect_message_id = m->MessageId;
        p->client_section = (HANDLE)(ULONG_PTR)f->section;
        p->client_view_offset = f->offset;
        p->client_view_size = f->size;
        LeaveCriticalSection(&p->lock);
        /* PortContext is NULL for connection requests. */
        queue_message(p->connection, m, NULL);
        return;
    }
    case F_MAPPED:
        EnterCriticalSection(&p->lock);
        p->mapped = TRUE;
        p->mapped_base = f->base;
        WakeAllConditionVariable(&p->changed);
        LeaveCriticalSection(&p->lock);
        return;
    case F_REQUEST:
    case F_DATAGRAM: {
        const LPCEMU_PORT_MESSAGE *sent = (const LPCEMU_PORT_MESSAGE *)f->data;
        if (f->length < LPCEMU_HEADER || sent->TotalLength != f->length || f->length > sizeof buffer) return;
        memcpy(buffer, f->data, f->length);
        m->Type = (USHORT)(f->kind == F_REQUEST ? LPCEMU_REQUEST : LPCEMU_DATAGRAM);
        m->ClientId.UniqueProcess = (HANDLE)(ULONG_PTR)f->pid;
        m->ClientId.UniqueThread = (HANDLE)(ULONG_PTR)f->tid;
        m->MessageId = new_message_id();
        m->ClientViewSize = 0; /* CallbackId 0: not a callback */
        EnterCriticalSection(&p->lock);
        context = p->context;
        if (f->kind == F_REQUEST) {
            pending_request *r = (pending_request *)malloc(sizeof *r);
            if (!r) {
                LeaveCriticalSection(&p->lock);
                return;
            }
            r->message_id = m->MessageId;
            r->tag = f->tag;
            r->client = m->ClientId;
            r->next = p->pending;
            p->pending = r;
        }
        LeaveCriticalSection(&p->lock);
        queue_message(p->connection, m, context);
        return;
    }
    default:
        return;
    }
}

/* A server end's pipe broke or was ended. */
static void server_ended(port *p)
{
    BYTE buffer[LPCEMU_HEADER + 8];
    LPCEMU_PORT_MESSAGE *m = (LPCEMU_PORT_MESSAGE *)buffer;
    BOOL tell, forget;
    PVOID context;
    EnterCriticalSection(&p->lock);
    /* LPC_PORT_CLOSED goes to the server when the client's port goes away (closed, or its process
     * died), for connections that have a server communication port; not when the server itself
     * closed that port. */
    tell = !p->closed && (p->state == S_ACCEPTING || p->state == S_ACCEPTED || p->state == S_COMPLETED);
    forget = p->state == S_NEW;
    if (forget) p->state = S_ENDED;
    context = p->context;
    WakeAllConditionVariable(&p->changed);
    LeaveCriticalSection(&p->lock);
    /* A client that went away before it asked to connect: nobody will ever refer to this end. */
    if (forget && unlink_end(p)) port_release(p);
    if (!tell) return;
    memset(buffer, 0, sizeof buffer);
    m->DataLength = 8; /* the client's CreateTime: not known here, 0 */
    m->TotalLength = (USHORT)sizeof buffer;
    m->Type = LPCEMU_PORT_CLOSED;
    m->ClientId = p->client;
    m->MessageId = new_message_id();
    queue_message(p->connection, m, context);
}

/* A frame that a client end received. */
static void client_frame(port *p, frame *f)
{
    waiter *w;
    const LPCEMU_PORT_MESSAGE *reply = (const LPCEMU_PORT_MESSAGE *)f->data;
    if (f->kind != F_REPLY || f->length < LPCEMU_HEADER || reply->TotalLength != f->length) return;
    EnterCriticalSection(&p->lock);
    for (w = p->waiters; w && (w->tag != f->tag || w->done); w = w->next) {}
    if (w) {
        memcpy(w->reply, f->data, f->length);
        w->reply->Type = LPCEMU_REPLY;
        w->status = STATUS_SUCCESS;
        w->done = TRUE;
        WakeAllConditionVariable(&p->changed);
    }
    LeaveCriticalSection(&p->lock);
}

static void client_ended(port *p)
{
    waiter *w;
    EnterCriticalSection(&p->lock);
    for (w = p->waiters; w; w = w->next) {
        if (!w->done) {
            w->done = TRUE;
            w->status = STATUS_PORT_DISCONNECTED;
        }
    }
    WakeAllConditionVariable(&p->changed);
    LeaveCriticalSection(&p->lock);
}

static DWORD WINAPI reader_main(void *arg)
{
    port *p = (port *)arg;
    frame *f = (frame *)malloc(sizeof *f);
    HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (f && event && p->kind == K_SERVER) {
        frame_init(f, F_HELLO);
        f->max_message = p->connection->max_message;
        f->length = GetLengthSid(process_user);
        memcpy(f->data, process_user, f->length);
        if (!end_send(p, f)) goto ended;
    }
    while (f && event) {
        OVERLAPPED ov;
        DWORD got = 0;
        BOOL ok;
        memset(&ov, 0, sizeof ov);
        ov.hEvent = event;
        EnterCriticalSection(&p->lock);
        if (p->stopping) {
            LeaveCriticalSection(&p->lock);
            break;
        }
        ok = ReadFile(p->pipe, f, sizeof *f, NULL, &ov) || GetLastError() == ERROR_IO_PENDING;
        LeaveCriticalSection(&p->lock);
        if (!ok || !GetOverlappedResult(p->pipe, &ov, &got, TRUE)) break;
        if (got < FRAME_HEADER_BYTES || got != FRAME_HEADER_BYTES + f->length) break;
        if (p->kind == K_SERVER) server_frame(p, f);
        else client_frame(p, f);
    }
ended:
    EnterCriticalSection(&p->write_lock);
    EnterCriticalSection(&p->lock);
    CloseHandle(p->pipe);
    p->pipe = NULL;
    p->disconnected = TRUE;
    LeaveCriticalSection(&p->lock);
    LeaveCriticalSection(&p->write_lock);
    if (p->kind == K_SERVER) server_ended(p);
    else client_ended(p);
    if (event) CloseHandle(event);
    free(f);
    port_release(p);
    return 0;
}

static BOOL start_reader(port *p)
{
    port_retain(p);
    p->reader = CreateThread(NULL, 64 * 1024, reader_main, p, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (p->reader) return TRUE;
    port_release(p);
    return FALSE;
}

/* Ends an end's pipe (the peer sees it break) and waits for its reader to finish. */
static void end_pipe(port *p)
{
    EnterCriticalSection(&p->lock);
    p->stopping = TRUE;
    if (p->pipe) CancelIoEx(p->pipe, NULL);
    LeaveCriticalSection(&p->lock);
    if (p->reader) {
        WaitForSingleObject(p->reader, INFINITE);
        CloseHandle(p->reader);
        p->reader = NULL;
    } else {
        EnterCriticalSection(&p->write_lock);
        EnterCriticalSection(&p->lock);
        if (p->pipe) CloseHandle(p->pipe);
        p->pipe = NULL;
        p->disconnected = TRUE;
        LeaveCriticalSection(&p->lock);
        LeaveCriticalSection(&p->write_lock);
    }
}

/* ---- the connection port's listener ------------------------------------------------------------ */

static HANDLE new_instance(const WCHAR *name, BOOL first)
{
    return CreateNamedPipeW(name, PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
                            PIPE_TYPE_MESSAGE | PIPE_READMODE_MESSAGE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS,
                            PIPE_UNLIMITED_INSTANCES, PIPE_BUFFER_BYTES, PIPE_BUFFER_BYTES, 0, &user_only);
}

/* Unlinks a server end from its connection port; true if it was linked. */
static BOOL unlink_end(port *end)
{
    port *c = end->connection, **link;
    BOOL found = FALSE;
    EnterCriticalSection(&c->lock);
    for (link = &c->ends; *link; link = &(*link)->next_end) {
        if (*link == end) {
            *link = end->next_end;
            found = TRUE;
            break;
        }
    }
    LeaveCriticalSection(&c->lock);
    return found;
}

static DWORD WINAPI listener_main(void *arg)
{
    port *c = (port *)arg;
    HANDLE instance = c->first_instance, event = CreateEventW(NULL, TRUE, FALSE, NULL);
    c->first_instance = NULL;
    while (instance != INVALID_HANDLE_VALUE && event) {
        OVERLAPPED ov;
        HANDLE waits[2];
        DWORD done;
        port *end;
        BOOL connected;
        memset(&ov, 0, sizeof ov);
        ov.hEvent = event;
        connected = ConnectNamedPipe(instance, &ov) || GetLastError() == ERROR_PIPE_CONNECTED;
        if (!connected && GetLastError() != ERROR_IO_PENDING && GetLastError() != ERROR_NO_DATA) break;
        if (!connected && GetLastError() == ERROR_IO_PENDING) {
            waits[0] = event;
            waits[1] = c->stop_listener;
            if (WaitForMultipleObjects(2, waits, FALSE, INFINITE) != WAIT_OBJECT_0) {
                CancelIoEx(instance, &ov);
                GetOverlappedResult(instance, &ov, &done, TRUE);
                break;
            }
            connected = GetOverlappedResult(instance, &ov, &done, FALSE);
        }
        if (!connected) { /* the client went away again: reuse the instance */
            DisconnectNamedPipe(instance);
            continue;
        }
        end = port_new(K_SERVER);
        if (!end) {
            DisconnectNamedPipe(instance);
            continue;
        }
        end->pipe = instance;
        end->connection = c;
        port_retain(c);
        EnterCriticalSection(&c->lock);
        end->next_end = c->ends;
        c->ends = end; /* the list holds the first reference */
        LeaveCriticalSection(&c->lock);
        if (!start_reader(end)) {
            unlink_end(end);
            end_pipe(end);
            port_release(end);
        }
        instance = new_instance(c->pipe_name, FALSE);
    }
    if (instance != INVALID_HANDLE_VALUE) CloseHandle(instance);
    if (event) CloseHandle(event);
    return 0;
}

/* ---- the calls ---------------------------------------------------------------------------------- */

LPCEMU_API NTSTATUS NTAPI LpcEmuCreatePort(PHANDLE PortHandle, POBJECT_ATTRIBUTES ObjectAttributes,
                                           ULONG MaxConnectionInfoLength, ULONG MaxMessageLength, ULONG MaxPoolUsage)
{
    port *c;
    NTSTATUS status;
    (void)MaxPoolUsage;
    if (!PortHandle || !ObjectAttributes) return STATUS_INVALID_PARAMETER;
    /* Unnamed (unconnected) ports are not emulated. */
    if (!ObjectAttributes->ObjectName || !ObjectAttributes->ObjectName->Buffer || !ObjectAttributes->ObjectName->Length)
        return STATUS_NOT_IMPLEMENTED;
    if (MaxConnectionInfoLength > LPCEMU_MAX_CONNECTION_INFO) return STATUS_INVALID_PARAMETER_3;
    if (MaxMessageLength > LPCEMU_MAX_MESSAGE) return STATUS_INVALID_PARAMETER_4;
    if (!security_ready()) return STATUS_INSUFFICIENT_RESOURCES;
    c = port_new(K_CONNECTION);
    if (!c) return STATUS_INSUFFICIENT_RESOURCES;
    c->max_message = MaxMessageLength;
    c->pipe_name = pipe_name_of(ObjectAttributes->ObjectName);
    c->stop_listener = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!c->pipe_name || !c->stop_listener) {
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto failed;
    }
    /* The name's claim, for every process of the session: Wine does not honour
     * FILE_FLAG_FIRST_PIPE_INSTANCE, so a named event says whether the name is taken. */
    c->name_claim = claim_name(ObjectAttributes->ObjectName);
    if (!c->name_claim || GetLastError() == ERROR_ALREADY_EXISTS) {
        status = c->name_claim ? STATUS_OBJECT_NAME_COLLISION : STATUS_INSUFFICIENT_RESOURCES;
        goto failed;
    }
    c->first_instance = new_instance(c->pipe_name, TRUE);
    if (c->first_instance == INVALID_HANDLE_VALUE) {
        DWORD error = GetLastError();
        status = error == ERROR_ACCESS_DENIED || error == ERROR_PIPE_BUSY ? STATUS_OBJECT_NAME_COLLISION
                 : error == ERROR_INVALID_NAME || error == ERROR_BAD_PATHNAME ? STATUS_OBJECT_NAME_INVALID
                                                                              : STATUS_INSUFFICIENT_RESOURCES;
        goto failed;
    }
    c->listener = CreateThread(NULL, 64 * 1024, listener_main, c, STACK_SIZE_PARAM_IS_A_RESERVATION, NULL);
    if (!c->listener) {
        CloseHandle(c->first_instance);
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto failed;
    }
    status = port_insert(c, PortHandle);
    if (status == STATUS_SUCCESS) {
        port_release(c);
        return status;
    }
    SetEvent(c->stop_listener);
    WaitForSingleObject(c->listener, INFINITE);
    CloseHandle(c->listener);
failed:
    if (c->stop_listener) CloseHandle(c->stop_listener);
    if (c->name_claim) CloseHandle(c->name_claim);
    port_release(c);
    return status;
}

static NTSTATUS connect_port(PHANDLE PortHandle, PUNICODE_STRING PortName, LPCEMU_PORT_VIEW *ClientView,
                             PSID RequiredServerSid, LPCEMU_REMOTE_PORT_VIEW *ServerView, PULONG MaxMessageLength,
                             PVOID ConnectionInformation, PULONG ConnectionInformationLength)
{
    WCHAR *name;
    HANDLE pipe;
    frame *f;
    port *p = NULL;
    NTSTATUS status = STATUS_SUCCESS;
    ULONG info_length = 0, max_message;
    DWORD server_pid, mode = PIPE_READMODE_MESSAGE;
    PVOID client_base = NULL, server_base = NULL;
    SIZE_T client_size = 0, server_size = 0;
    ULONGLONG deadline = GetTickCount64() + CONNECT_BUSY_TIMEOUT_MS;

    if (!PortHandle || !PortName || !PortName->Buffer) return STATUS_INVALID_PARAMETER;
    if (ClientView && ClientView->Length != sizeof *ClientView) return STATUS_INVALID_PARAMETER;
    if (ServerView && ServerView->Length != sizeof *ServerView) return STATUS_INVALID_PARAMETER;
    if (ConnectionInformation && ConnectionInformationLength) info_length = *ConnectionInformationLength;
    /* The kernel sends at most the port's connection information size (LPC_MAX_CONNECTION_INFO_SIZE). */
    if (info_length > LPCEMU_MAX_CONNECTION_INFO) info_length = LPCEMU_MAX_CONNECTION_INFO;
    name = pipe_name_of(PortName);
    f = (frame *)malloc(sizeof *f);
    if (!name || !f) {
        free(name);
        free(f);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    for (;;) {
        pipe = CreateFileW(name, GENERIC_READ | GENERIC_WRITE, 0, NULL, OPEN_EXISTING,
                           FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, NULL);
        if (pipe != INVALID_HANDLE_VALUE || GetLastError() != ERROR_PIPE_BUSY || GetTickCount64() >= deadline) break;
        WaitNamedPipeW(name, 1000);
    }
    free(name);
    if (pipe == INVALID_HANDLE_VALUE) {
        free(f);
        return STATUS_OBJECT_NAME_NOT_FOUND;
    }
    if (!SetNamedPipeHandleState(pipe, &mode, NULL, NULL) || !pipe_read(pipe, f) || f->kind != F_HELLO) {
        status = STATUS_PORT_CONNECTION_REFUSED;
        goto done;
    }
    server_pid = (DWORD)f->pid;
    max_message = (ULONG)f->max_message;
    /* NtSecureConnectPort: the server process must run as this SID; checked before the server
     * hears of the request. */
    if (RequiredServerSid && (!IsValidSid(RequiredServerSid) || f->length < 8 || !IsValidSid((PSID)f->data) ||
                              !EqualSid(RequiredServerSid, (PSID)f->data))) {
        status = STATUS_SERVER_SID_MISMATCH;
        goto done;
    }
    frame_init(f, F_CONNECT);
    if (ClientView) {
        client_size = ClientView->ViewSize;
        client_base = map_view(ClientView->SectionHandle, ClientView->SectionOffset, &client_size);
        if (!client_base) {
            status = STATUS_INVALID_VIEW_SIZE;
            goto done;
        }
        f->section = section_for(server_pid, ClientView->SectionHandle);
        f->offset = ClientView->SectionOffset;
        f->size = client_size;
        ClientView->ViewBase = client_base;
        ClientView->ViewSize = client_size;
    }
    f->length = info_length;
    if (info_length) memcpy(f->data, ConnectionInformation, info_length);
    if (!pipe_write(pipe, f) || !pipe_read(pipe, f)) {
        status = STATUS_PORT_CONNECTION_REFUSED;
        goto done;
    }
    if (f->kind == F_REFUSE || f->kind == F_ACCEPT) {
        /* The server's answer comes back in the same buffer, cut to the length the client sent. */
        ULONG answer = f->length < info_length ? f->length : info_length;
        if (answer) memcpy(ConnectionInformation, f->data, answer);
        if (ConnectionInformationLength) *ConnectionInformationLength = answer;
    }
    if (f->kind != F_ACCEPT) {
        status = STATUS_PORT_CONNECTION_REFUSED;
        goto done;
    }
    if (ClientView) ClientView->ViewRemoteBase = (PVOID)(ULONG_PTR)f->base;
    if (f->section) {
        HANDLE section = (HANDLE)(ULONG_PTR)f->section;
        server_size = (SIZE_T)f->size;
        server_base = map_view(section, f->offset, &server_size);
        CloseHandle(section);
    }
    if (ServerView) {
        ServerView->ViewBase = server_base;
        ServerView->ViewSize = server_base ? server_size : 0;
    }
    frame_init(f, F_MAPPED);
    f->base = (ULONG64)(ULONG_PTR)server_base;
    if (!pipe_write(pipe, f) || !pipe_read(pipe, f) || f->kind != F_COMPLETE) {
        status = STATUS_PORT_CONNECTION_REFUSED;
        goto done;
    }
    p = port_new(K_CLIENT);
    if (!p) {
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto done;
    }
    p->pipe = pipe;
    p->max_message = max_message;
    p->local_views[0] = client_base;
    p->local_views[1] = server_base;
    if (!start_reader(p)) {
        p->pipe = NULL;
        p->local_views[0] = p->local_views[1] = NULL;
        port_release(p);
        status = STATUS_INSUFFICIENT_RESOURCES;
        goto done;
    }
    status = port_insert(p, PortHandle);
    if (status != STATUS_SUCCESS) {
        end_pipe(p);
        unmap_view(client_base);
        unmap_view(server_base);
        port_release(p);
        free(f);
        return status;
    }
    port_release(p);
    if (MaxMessageLength) *MaxMessageLength = max_message;
    free(f);
    return STATUS_SUCCESS;
done:
    free(f);
    CloseHandle(pipe);
    unmap_view(client_base);
    unmap_view(server_base);
    if (ClientView && status != STATUS_SUCCESS) ClientView->ViewBase = ClientView->ViewRemoteBase = NULL;
    return status;
}

LPCEMU_API NTSTATUS NTAPI LpcEmuConnectPort(PHANDLE PortHandle, PUNICODE_STRING PortName,
                                            PSECURITY_QUALITY_OF_SERVICE SecurityQos, LPCEMU_PORT_VIEW *ClientView,
                                            LPCEMU_REMOTE_PORT_VIEW *ServerView, PULONG MaxMessageLength,
                                            PVOID ConnectionInformation, PULONG ConnectionInformationLength)
{
    (void)SecurityQos; /* impersonation is not emulated */
    return connect_port(PortHandle, PortName, ClientView, NULL, ServerView, MaxMessageLength, ConnectionInformation,
                        ConnectionInformationLength);
}

LPCEMU_API NTSTATUS NTAPI LpcEmuSecureConnectPort(PHANDLE PortHandle, PUNICODE_STRING PortName,
                                                  PSECURITY_QUALITY_OF_SERVICE SecurityQos,
                                                  LPCEMU_PORT_VIEW *ClientView, PSID RequiredServerSid,
                                                  LPCEMU_REMOTE_PORT_VIEW *ServerView, PULONG MaxMessageLength,
                                                  PVOID ConnectionInformation, PULONG ConnectionInformationLength)
{
    (void)SecurityQos;
    return connect_port(PortHandle, PortName, ClientView, RequiredServerSid, ServerView, MaxMessageLength,
                        ConnectionInformation, ConnectionInformationLength);
}

/* The connection port a receive or a reply on `p` goes through. */
static port *receive_port(port *p) { return p->kind == K_SERVER ? p->connection : p->kind == K_CONNECTION ? p : NULL; }

/* Sends `reply` to the thread waiting for it on server end `end`; the reply must name the request
 * (MessageId) and its client (ClientId). */
static NTSTATUS reply_on(port *end, LPCEMU_PORT_MESSAGE *reply)
{
    pending_request **link, *r = NULL;
    frame *f;
    NTSTATUS status = STATUS_SUCCESS;
    EnterCriticalSection(&end->lock);
    for (link = &end->pending; *link; link = &(*link)->next) {
        if ((*link)->message_id == reply->MessageId) {
            r = *link;
            if (r->client.UniqueProcess != reply->ClientId.UniqueProcess ||
                r->client.UniqueThread != reply->ClientId.UniqueThread) {
                r = NULL;
                break;
            }
            *link = r->next;
            break;
        }
    }
    LeaveCriticalSection(&end->lock);
    if (!r) return STATUS_REPLY_MESSAGE_MISMATCH;
    f = (frame *)malloc(sizeof *f);
    if (!f) {
        free(r);
        return STATUS_NO_MEMORY;
    }
    frame_init(f, F_REPLY);
    f->tag = r->tag;
    f->length = reply->TotalLength;
    memcpy(f->data, reply, reply->TotalLength);
    ((LPCEMU_PORT_MESSAGE *)f->data)->Type = LPCEMU_REPLY;
    if (!end_send(end, f)) status = STATUS_PORT_DISCONNECTED;
    free(f);
    free(r);
    return status;
}

static NTSTATUS check_reply(const LPCEMU_PORT_MESSAGE *reply, ULONG max_message)
{
    if ((ULONG)reply->DataLength + LPCEMU_HEADER > reply->TotalLength) return STATUS_INVALID_PARAMETER;
    if (!reply->MessageId) return STATUS_INVALID_PARAMETER;
    if (reply->TotalLength > max_message || reply->TotalLength <= reply->DataLength) return STATUS_PORT_MESSAGE_TOO_LONG;
    return STATUS_SUCCESS;
}

LPCEMU_API NTSTATUS NTAPI LpcEmuReplyPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *ReplyMessage)
{
    port *p = port_lookup(PortHandle);
    NTSTATUS status;
    if (!p) return STATUS_INVALID_HANDLE;
    if (p->kind == K_CLIENT) status = STATUS_NOT_IMPLEMENTED; /* replies to callbacks are not emulated */
    else if (!ReplyMessage) status = STATUS_INVALID_PARAMETER;
    else if ((status = check_reply(ReplyMessage, receive_port(p)->max_message)) == STATUS_SUCCESS)
        status = p->kind == K_SERVER ? reply_on(p, ReplyMessage) : reply_through(p, ReplyMessage);
    port_release(p);
    return status;
}

/* A reply given to NtReplyWaitReceivePort(Ex) on the connection port: any of its connections. */
static NTSTATUS reply_through(port *c, LPCEMU_PORT_MESSAGE *reply)
{
    port *end, *found = NULL;
    pending_request *r;
    EnterCriticalSection(&c->lock);
    for (end = c->ends; end && !found; end = end->next_end) {
        EnterCriticalSection(&end->lock);
        for (r = end->pending; r && r->message_id != reply->MessageId; r = r->next) {}
        LeaveCriticalSection(&end->lock);
        if (r) {
            found = end;
            port_retain(found);
        }
    }
    LeaveCriticalSection(&c->lock);
    if (!found) return STATUS_REPLY_MESSAGE_MISMATCH;
    {
        NTSTATUS status = reply_on(found, reply);
        port_release(found);
        return status;
    }
}

LPCEMU_API NTSTATUS NTAPI LpcEmuReplyWaitReceivePortEx(HANDLE PortHandle, PVOID *PortContext,
                                                       LPCEMU_PORT_MESSAGE *ReplyMessage,
                                                       LPCEMU_PORT_MESSAGE *ReceiveMessage, PLARGE_INTEGER Timeout)
{
    port *p = port_lookup(PortHandle), *c;
    NTSTATUS status = STATUS_SUCCESS;
    ULONGLONG deadline = 0;
    queued *q = NULL;
    if (!p) return STATUS_INVALID_HANDLE;
    c = receive_port(p);
    if (!c) {
        port_release(p);
        return STATUS_NOT_IMPLEMENTED; /* receiving on a client port (callbacks) is not emulated */
    }
    if (ReplyMessage) {
        status = check_reply(ReplyMessage, c->max_message);
        if (status == STATUS_SUCCESS) status = p->kind == K_SERVER ? reply_on(p, ReplyMessage) : reply_through(c, ReplyMessage);
        if (status != STATUS_SUCCESS) {
            port_release(p);
            return status;
        }
    }
    if (Timeout) {
        LONGLONG t = Timeout->QuadPart;
        if (t > 0) { /* absolute, in 100 ns since 1601 */
            FILETIME now;
            ULARGE_INTEGER n;
            GetSystemTimeAsFileTime(&now);
            n.LowPart = now.dwLowDateTime;
            n.HighPart = now.dwHighDateTime;
            t = (LONGLONG)n.QuadPart - t;
        }
        deadline = GetTickCount64() + (ULONGLONG)(t >= 0 ? 0 : (-t + 9999) / 10000);
    }
    EnterCriticalSection(&c->lock);
    for (;;) {
        ULONGLONG now;
        if (c->closed) {
            status = STATUS_INVALID_HANDLE;
            break;
        }
        if (c->queue_head) {
            q = c->queue_head;
            c->queue_head = q->next;
            if (!c->queue_head) c->queue_tail = NULL;
            break;
        }
        if (!Timeout) {
            SleepConditionVariableCS(&c->changed, &c->lock, INFINITE);
            continue;
        }
        now = GetTickCount64();
        if (now >= deadline) {
            status = STATUS_TIMEOUT;
            break;
        }
        SleepConditionVariableCS(&c->changed, &c->lock, (DWORD)(deadline - now));
    }
    LeaveCriticalSection(&c->lock);
    if (q) {
        const LPCEMU_PORT_MESSAGE *m = (const LPCEMU_PORT_MESSAGE *)q->message;
        memcpy(ReceiveMessage, q->message, m->TotalLength);
        if (PortContext) *PortContext = q->context;
        free(q);
    }
    port_release(p);
    return status;
}

LPCEMU_API NTSTATUS NTAPI LpcEmuReplyWaitReceivePort(HANDLE PortHandle, PVOID *PortContext,
                                                     LPCEMU_PORT_MESSAGE *ReplyMessage,
                                                     LPCEMU_PORT_MESSAGE *ReceiveMessage)
{
    return LpcEmuReplyWaitReceivePortEx(PortHandle, PortContext, ReplyMessage, ReceiveMessage, NULL);
}

LPCEMU_API NTSTATUS NTAPI LpcEmuListenPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *ConnectionRequest)
{
    /* Waits for a connection request; other messages taken meanwhile are dropped. */
    for (;;) {
        NTSTATUS status = LpcEmuReplyWaitReceivePortEx(PortHandle, NULL, NULL, ConnectionRequest, NULL);
        if (status != STATUS_SUCCESS || (ConnectionRequest->Type & 0xFF) == LPCEMU_CONNECTION_REQUEST) return status;
    }
}

/* Takes the unanswered connection request that `request` names, out of every connection port of
 * this process, and gives it `context`; referenced, or NULL. */
static port *take_request(const LPCEMU_PORT_MESSAGE *request, PVOID context, NTSTATUS *status)
{
    port *c, *end, *found = NULL, *stale = NULL;
    *status = STATUS_REPLY_MESSAGE_MISMATCH;
    if (!request->MessageId) return NULL;
    AcquireSRWLockShared(&table_lock);
    for (c = table; c && !found && !stale; c = c->next_in_table) {
        if (c->kind != K_CONNECTION) continue;
        EnterCriticalSection(&c->lock);
        for (end = c->ends; end && !found && !stale; end = end->next_end) {
            EnterCriticalSection(&end->lock);
            if (end->state == S_REQUESTED && end->connect_message_id == request->MessageId &&
                end->client.UniqueProcess == request->ClientId.UniqueProcess &&
                end->client.UniqueThread == request->ClientId.UniqueThread) {
                if (end->disconnected) {
                    /* The client thread is gone: its ClientId names no thread any more. */
                    *status = STATUS_INVALID_CID;
                    end->state = S_ENDED;
                    stale = end;
                    port_retain(stale);
                } else {
                    end->state = S_ACCEPTING;
                    /* Set now: an LPC_PORT_CLOSED from here on carries it. */
                    end->context = context;
                    found = end;
                    port_retain(found);
                    *status = STATUS_SUCCESS;
                }
            }
            LeaveCriticalSection(&end->lock);
        }
        LeaveCriticalSection(&c->lock);
    }
    ReleaseSRWLockShared(&table_lock);
    if (stale) {
        drop_end(stale);
        port_release(stale);
    }
    return found;
}

/* Ends a server end that has no handle (refused, or its accept failed). */
static void drop_end(port *end)
{
    EnterCriticalSection(&end->lock);
    end->state = S_ENDED;
    LeaveCriticalSection(&end->lock);
    end_pipe(end);
    if (end->client_section) CloseHandle(end->client_section);
    end->client_section = NULL;
    if (unlink_end(end)) port_release(end); /* the connection port's list reference */
}

LPCEMU_API NTSTATUS NTAPI LpcEmuAcceptConnectPort(PHANDLE PortHandle, PVOID PortContext,
                                                  LPCEMU_PORT_MESSAGE *ConnectionRequest, BOOLEAN AcceptConnection,
                                                  LPCEMU_PORT_VIEW *ServerView, LPCEMU_REMOTE_PORT_VIEW *ClientView)
{
    port *end;
    frame *f;
    NTSTATUS status;
    ULONG info;
    SIZE_T client_size = 0, server_size = 0;
    PVOID client_base = NULL, server_base = NULL;

    if (!ConnectionRequest) return STATUS_INVALID_PARAMETER;
    if (ServerView && ServerView->Length != sizeof *ServerView) return STATUS_INVALID_PARAMETER;
    if (ClientView && ClientView->Length != sizeof *ClientView) return STATUS_INVALID_PARAMETER;
    end = take_request(ConnectionRequest, AcceptConnection ? PortContext : NULL, &status);
    if (!end) return status;
    f = (frame *)malloc(sizeof *f);
    if (!f) {
        drop_end(end);
        port_release(end);
        return STATUS_NO_MEMORY;
    }
    info = ConnectionRequest->DataLength > LPCEMU_MAX_CONNECTION_INFO ? LPCEMU_MAX_CONNECTION_INFO : ConnectionRequest->DataLength;
    frame_init(f, F_REFUSE);
    f->length = info;
    memcpy(f->data, ConnectionRequest + 1, info);
    if (!AcceptConnection) {
        end_send(end, f);
        drop_end(end);
        port_release(end);
        free(f);
        return STATUS_SUCCESS;
    }
    if (end->client_section) {
        client_size = (SIZE_T)end->client_view_size;
        client_base = map_view(end->client_section, end->client_view_offset, &client_size);
        CloseHandle(end->client_section);
        end->client_section = NULL;
        if (!client_base) {
            status = STATUS_INVALID_VIEW_SIZE;
            goto refuse;
        }
    }
    f->kind = F_ACCEPT;
    f->base = (ULONG64)(ULONG_PTR)client_base;
    if (ServerView) {
        server_size = ServerView->ViewSize;
        server_base = map_view(ServerView->SectionHandle, ServerView->SectionOffset, &server_size);
        if (!server_base) {
            status = STATUS_INVALID_VIEW_SIZE;
            goto refuse;
        }
        f->section = section_for(end->client_pid, ServerView->SectionHandle);
        f->offset = ServerView->SectionOffset;
        f->size = server_size;
    }
    EnterCriticalSection(&end->lock);
    end->max_message = end->connection->max_message;
    end->local_views[0] = client_base;
    end->local_views[1] = server_base;
    LeaveCriticalSection(&end->lock);
    status = port_insert(end, PortHandle);
    if (status != STATUS_SUCCESS) {
        EnterCriticalSection(&end->lock);
        end->local_views[0] = end->local_views[1] = NULL;
        LeaveCriticalSection(&end->lock);
        goto refuse;
    }
    EnterCriticalSection(&end->lock);
    end->state = S_ACCEPTED;
    LeaveCriticalSection(&end->lock);
    /* From here the client has its answer (or is gone, which the server learns from an
     * LPC_PORT_CLOSED): the accept succeeded either way. */
    if (end_send(end, f) && ServerView) {
        EnterCriticalSection(&end->lock);
        while (!end->mapped && !end->disconnected) SleepConditionVariableCS(&end->changed, &end->lock, INFINITE);
        ServerView->ViewRemoteBase = (PVOID)(ULONG_PTR)end->mapped_base;
        LeaveCriticalSection(&end->lock);
    }
    if (ServerView) {
        ServerView->ViewBase = server_base;
        ServerView->ViewSize = server_size;
    }
    if (ClientView) {
        ClientView->ViewBase = client_base;
        ClientView->ViewSize = client_base ? client_size : 0;
    }
    port_release(end);
    free(f);
    return STATUS_SUCCESS;
refuse:
    unmap_view(client_base);
    unmap_view(server_base);
    frame_init(f, F_REFUSE);
    f->length = 0;
    end_send(end, f);
    drop_end(end);
    port_release(end);
    free(f);
    return status;
}

LPCEMU_API NTSTATUS NTAPI LpcEmuCompleteConnectPort(HANDLE PortHandle)
{
    port *p = port_lookup(PortHandle);
    NTSTATUS status = STATUS_SUCCESS;
    frame f;
    if (!p) return STATUS_INVALID_HANDLE;
    EnterCriticalSection(&p->lock);
    if (p->kind != K_SERVER || p->state != S_ACCEPTED) status = STATUS_INVALID_PARAMETER;
    else p->state = S_COMPLETED;
    LeaveCriticalSection(&p->lock);
    if (status == STATUS_SUCCESS) {
        frame_init(&f, F_COMPLETE);
        f.length = 0;
        if (!end_send(p, &f)) status = STATUS_PORT_DISCONNECTED;
    }
    port_release(p);
    return status;
}

/* Checks a message a client sends: lengths, and a type the caller may set. */
static NTSTATUS check_request(const LPCEMU_PORT_MESSAGE *m, ULONG max_message)
{
    if (!m) return STATUS_INVALID_PARAMETER;
    if ((ULONG)m->DataLength + LPCEMU_HEADER > m->TotalLength) return STATUS_INVALID_PARAMETER;
    if (m->TotalLength > max_message || m->TotalLength <= m->DataLength) return STATUS_PORT_MESSAGE_TOO_LONG;
    /* 0 lets the kernel set LPC_REQUEST / LPC_DATAGRAM; LPC_REQUEST from the caller would be a
     * callback, which is not emulated. */
    if ((m->Type & 0xFF) != 0) return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

static NTSTATUS client_send(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *message, LPCEMU_PORT_MESSAGE *reply)
{
    port *p = port_lookup(PortHandle);
    NTSTATUS status;
    waiter w;
    frame *f;
    BOOL registered = FALSE;
    if (!p) return STATUS_INVALID_HANDLE;
    if (p->kind != K_CLIENT) {
        /* sending from the server side (callbacks) is not emulated */
        status = p->kind == K_SERVER ? STATUS_NOT_IMPLEMENTED : STATUS_INVALID_PORT_HANDLE;
        port_release(p);
        return status;
    }
    status = check_request(message, p->max_message);
    f = status == STATUS_SUCCESS ? (frame *)malloc(sizeof *f) : NULL;
    if (status == STATUS_SUCCESS && !f) status = STATUS_NO_MEMORY;
    if (status != STATUS_SUCCESS) {
        port_release(p);
        return status;
    }
    frame_init(f, reply ? F_REQUEST : F_DATAGRAM);
    f->length = message->TotalLength;
    memcpy(f->data, message, message->TotalLength);
    memset(&w, 0, sizeof w);
    w.reply = reply;
    EnterCriticalSection(&p->lock);
    if (p->disconnected || p->stopping || !p->pipe) {
        status = STATUS_PORT_DISCONNECTED;
    } else if (reply) {
        /* Registered before the request goes out: its reply may come back at once. */
        w.tag = f->tag = ++p->next_tag;
        w.next = p->waiters;
        p->waiters = &w;
        registered = TRUE;
    }
    LeaveCriticalSection(&p->lock);
    if (status == STATUS_SUCCESS && !end_send(p, f)) status = STATUS_PORT_DISCONNECTED;
    if (registered) {
        waiter **link;
        EnterCriticalSection(&p->lock);
        if (status == STATUS_SUCCESS) {
            while (!w.done) SleepConditionVariableCS(&p->changed, &p->lock, INFINITE);
            status = w.status;
        }
        for (link = &p->waiters; *link != &w; link = &(*link)->next) {}
        *link = w.next;
        LeaveCriticalSection(&p->lock);
    }
    free(f);
    port_release(p);
    return status;
}

LPCEMU_API NTSTATUS NTAPI LpcEmuRequestPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *RequestMessage)
{
    return client_send(PortHandle, RequestMessage, NULL);
}

LPCEMU_API NTSTATUS NTAPI LpcEmuRequestWaitReplyPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *RequestMessage,
                                                     LPCEMU_PORT_MESSAGE *ReplyMessage)
{
    if (!ReplyMessage) return STATUS_INVALID_PARAMETER;
    return client_send(PortHandle, RequestMessage, ReplyMessage);
}

static void close_connection_port(port *c)
{
    port *end;
    SetEvent(c->stop_listener);
    WaitForSingleObject(c->listener, INFINITE);
    CloseHandle(c->listener);
    CloseHandle(c->stop_listener);
    CloseHandle(c->name_claim);
    EnterCriticalSection(&c->lock);
    c->closed = TRUE;
    WakeAllConditionVariable(&c->changed);
    LeaveCriticalSection(&c->lock);
    /* Clients still connecting are refused; connected ones are disconnected (their server ports
     * stay valid handles until closed). */
    for (;;) {
        EnterCriticalSection(&c->lock);
        for (end = c->ends; end && end->stopping; end = end->next_end) {}
        if (end) port_retain(end);
        LeaveCriticalSection(&c->lock);
        if (!end) break;
        if (end->handle) {
            end_pipe(end);
        } else {
            drop_end(end);
        }
        port_release(end);
    }
}

static void close_end(port *p)
{
    EnterCriticalSection(&p->lock);
    p->closed = TRUE;
    LeaveCriticalSection(&p->lock);
    end_pipe(p);
    unmap_view(p->local_views[0]);
    unmap_view(p->local_views[1]);
    p->local_views[0] = p->local_views[1] = NULL;
    if (p->kind == K_SERVER && unlink_end(p)) port_release(p);
}

LPCEMU_API NTSTATUS NTAPI LpcEmuClose(HANDLE Handle)
{
    port *p = port_unlink(Handle);
    if (!p) return real_close ? real_close(Handle) : (CloseHandle(Handle) ? STATUS_SUCCESS : STATUS_INVALID_HANDLE);
    if (p->kind == K_CONNECTION) close_connection_port(p);
    else close_end(p);
    InterlockedDecrement(&open_ports);
    CloseHandle(p->handle);
    port_release(p);
    return STATUS_SUCCESS;
}

LPCEMU_API void LpcEmuCounts(LONG *ports, LONG *views)
{
    if (ports) *ports = open_ports;
    if (views) *views = mapped_views;
}

/* Called by the installer before it redirects ntdll's NtClose. */
void lpcemu_set_real_close(NTSTATUS(NTAPI *close)(HANDLE)) { real_close = close; }
