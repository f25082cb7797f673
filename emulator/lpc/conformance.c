/* lpc-conformance.exe: checks the LPC stand-in row by row (README.md beside this file; the check
 * numbers are the rows' #n). It installs the stand-in with LpcEmuInstall and then calls it the way
 * fltport does, through GetProcAddress(ntdll, "Nt..."), so the export rewrite is checked as well.
 * One `ok`/`not ok` line per check, then `N passed, N failed`. Children (argv[1] = "client" or
 * "server") play the other process of the cross-process checks. */
#include "lpcemu.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

typedef NTSTATUS(NTAPI *CreatePortFn)(PHANDLE, POBJECT_ATTRIBUTES, ULONG, ULONG, ULONG);
typedef NTSTATUS(NTAPI *ConnectPortFn)(PHANDLE, PUNICODE_STRING, PSECURITY_QUALITY_OF_SERVICE, LPCEMU_PORT_VIEW *,
                                       LPCEMU_REMOTE_PORT_VIEW *, PULONG, PVOID, PULONG);
typedef NTSTATUS(NTAPI *SecureConnectPortFn)(PHANDLE, PUNICODE_STRING, PSECURITY_QUALITY_OF_SERVICE, LPCEMU_PORT_VIEW *,
                                             PSID, LPCEMU_REMOTE_PORT_VIEW *, PULONG, PVOID, PULONG);
typedef NTSTATUS(NTAPI *ListenPortFn)(HANDLE, LPCEMU_PORT_MESSAGE *);
typedef NTSTATUS(NTAPI *AcceptConnectPortFn)(PHANDLE, PVOID, LPCEMU_PORT_MESSAGE *, BOOLEAN, LPCEMU_PORT_VIEW *,
                                             LPCEMU_REMOTE_PORT_VIEW *);
typedef NTSTATUS(NTAPI *HandleFn)(HANDLE);
typedef NTSTATUS(NTAPI *ReceiveFn)(HANDLE, PVOID *, LPCEMU_PORT_MESSAGE *, LPCEMU_PORT_MESSAGE *, PLARGE_INTEGER);
typedef NTSTATUS(NTAPI *MessageFn)(HANDLE, LPCEMU_PORT_MESSAGE *);
typedef NTSTATUS(NTAPI *RequestWaitReplyFn)(HANDLE, LPCEMU_PORT_MESSAGE *, LPCEMU_PORT_MESSAGE *);

static struct {
    CreatePortFn CreatePort;
    ConnectPortFn ConnectPort;
    SecureConnectPortFn SecureConnectPort;
    ListenPortFn ListenPort;
    AcceptConnectPortFn AcceptConnectPort;
    HandleFn CompleteConnectPort, Close;
    ReceiveFn ReplyWaitReceivePortEx;
    MessageFn ReplyPort, RequestPort;
    RequestWaitReplyFn RequestWaitReplyPort;
} nt;

#define BUFFER_BYTES (LPCEMU_HEADER + LPCEMU_MAX_MESSAGE + LPCEMU_MAX_CONNECTION_INFO)
typedef union message {
    LPCEMU_PORT_MESSAGE header;
    BYTE bytes[BUFFER_BYTES];
} message;

static int passed, failed;
static WCHAR exe_path[MAX_PATH];

static void check(int ok, const char *what, ...)
{
    va_list args;
    printf("%s %d - ", ok ? "ok" : "not ok", passed + failed + 1);
    va_start(args, what);
    vprintf(what, args);
    va_end(args);
    printf("\n");
    fflush(stdout);
    if (ok) ++passed;
    else ++failed;
}

static BOOL resolve(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
#define RESOLVE(field, name) (nt.field = (void *)GetProcAddress(ntdll, name)) != NULL
    return RESOLVE(CreatePort, "NtCreatePort") && RESOLVE(ConnectPort, "NtConnectPort") &&
           RESOLVE(SecureConnectPort, "NtSecureConnectPort") && RESOLVE(ListenPort, "NtListenPort") &&
           RESOLVE(AcceptConnectPort, "NtAcceptConnectPort") && RESOLVE(CompleteConnectPort, "NtCompleteConnectPort") &&
           RESOLVE(Close, "NtClose") && RESOLVE(ReplyWaitReceivePortEx, "NtReplyWaitReceivePortEx") &&
           RESOLVE(ReplyPort, "NtReplyPort") && RESOLVE(RequestPort, "NtRequestPort") &&
           RESOLVE(RequestWaitReplyPort, "NtRequestWaitReplyPort");
#undef RESOLVE
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static void port_name(WCHAR *out, const WCHAR *tag)
{
    static LONG counter;
    swprintf(out, 128, L"\\RPC Control\\lpc-conformance-%lu-%ls-%ld", GetCurrentProcessId(), tag,
             InterlockedIncrement(&counter));
}

static UNICODE_STRING counted(const WCHAR *text)
{
    UNICODE_STRING s;
    s.Length = s.MaximumLength = (USHORT)(wcslen(text) * sizeof(WCHAR));
    s.Buffer = (PWSTR)text;
    return s;
}

static NTSTATUS create_port(const WCHAR *name, ULONG max_info, ULONG max_message, HANDLE *port)
{
    UNICODE_STRING s = counted(name);
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &s, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return nt.CreatePort(port, &attributes, max_info, max_message, 0);
}

static void set_message(message *m, const void *data, USHORT length)
{
    memset(m, 0, sizeof *m);
    m->header.DataLength = length;
    m->header.TotalLength = (USHORT)(LPCEMU_HEADER + length);
    memcpy(m->bytes + LPCEMU_HEADER, data, length);
}

static NTSTATUS receive(HANDLE port, message *m, PVOID *context, LONGLONG timeout_ms)
{
    LARGE_INTEGER timeout;
    timeout.QuadPart = -timeout_ms * 10000;
    return nt.ReplyWaitReceivePortEx(port, context, NULL, &m->header, &timeout);
}

/* A connect running on its own thread (NtConnectPort blocks until the server answers). */
typedef struct connector {
    WCHAR name[128];
    PSID sid;
    BYTE info[LPCEMU_MAX_CONNECTION_INFO + 16];
    ULONG info_length;
    LPCEMU_PORT_VIEW client_view;
    HANDLE section;
    LPCEMU_REMOTE_PORT_VIEW server_view;
    ULONG max_message;
    HANDLE port;
    NTSTATUS status;
    HANDLE thread;
} connector;

static DWORD WINAPI connect_main(void *arg)
{
    connector *c = (connector *)arg;
    UNICODE_STRING s = counted(c->name);
    SECURITY_QUALITY_OF_SERVICE qos = {sizeof qos, SecurityImpersonation, SECURITY_DYNAMIC_TRACKING, FALSE};
    c->server_view.Length = sizeof c->server_view;
    if (c->section) {
        c->client_view.Length = sizeof c->client_view;
        c->client_view.SectionHandle = c->section;
    }
    if (c->sid)
        c->status = nt.SecureConnectPort(&c->port, &s, &qos, c->section ? &c->client_view : NULL, c->sid, &c->server_view,
                                         &c->max_message, c->info_length ? c->info : NULL, c->info_length ? &c->info_length : NULL);
    else
        c->status = nt.ConnectPort(&c->port, &s, &qos, c->section ? &c->client_view : NULL, &c->server_view, &c->max_message,
                                   c->info_length ? c->info : NULL, c->info_length ? &c->info_length : NULL);
    return 0;
}

static void connect_start(connector *c, const WCHAR *name)
{
    wcscpy(c->name, name);
    c->thread = CreateThread(NULL, 0, connect_main, c, 0, NULL);
}

static NTSTATUS connect_join(connector *c)
{
    WaitForSingleObject(c->thread, INFINITE);
    CloseHandle(c->thread);
    return c->status;
}

static HANDLE new_section(SIZE_T bytes) { return CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, (DWORD)bytes, NULL); }

/* A connected pair in this process: server port, its communication port, the client's port. */
typedef struct pair {
    WCHAR name[128];
    HANDLE server, communication, client;
    connector c;
    message request;
    LPCEMU_PORT_VIEW server_view;
    LPCEMU_REMOTE_PORT_VIEW client_view;
} pair;

static BOOL open_pair(pair *p, ULONG max_message, PVOID context, SIZE_T client_view, SIZE_T server_view)
{
    HANDLE server_section = NULL;
    NTSTATUS status;
    memset(p, 0, sizeof *p);
    port_name(p->name, L"pair");
    if (create_port(p->name, 0, max_message, &p->server) != STATUS_SUCCESS) return FALSE;
    if (client_view) p->c.section = new_section(client_view);
    connect_start(&p->c, p->name);
    if (receive(p->server, &p->request, NULL, 30000) != STATUS_SUCCESS) return FALSE;
    p->server_view.Length = sizeof p->server_view;
    p->client_view.Length = sizeof p->client_view;
    if (server_view) {
        server_section = new_section(server_view);
        p->server_view.SectionHandle = server_section;
        p->server_view.ViewSize = server_view;
    }
    status = nt.AcceptConnectPort(&p->communication, context, &p->request.header, TRUE, server_view ? &p->server_view : NULL,
                                  &p->client_view);
    if (server_section) CloseHandle(server_section);
    if (status != STATUS_SUCCESS || nt.CompleteConnectPort(p->communication) != STATUS_SUCCESS) return FALSE;
    if (connect_join(&p->c) != STATUS_SUCCESS) return FALSE;
    if (p->c.section) CloseHandle(p->c.section);
    p->client = p->c.port;
    return TRUE;
}

static void close_pair(pair *p)
{
    if (p->client) nt.Close(p->client);
    if (p->communication) nt.Close(p->communication);
    if (p->server) nt.Close(p->server);
}

/* A request on its own thread. */
typedef struct requester {
    HANDLE port;
    message request, reply;
    NTSTATUS status;
    HANDLE thread;
    DWORD tid;
} requester;

static DWORD WINAPI request_main(void *arg)
{
    requester *r = (requester *)arg;
    r->tid = GetCurrentThreadId();
    r->status = nt.RequestWaitReplyPort(r->port, &r->request.header, &r->reply.header);
    return 0;
}

static void request_start(requester *r, HANDLE port, const char *text)
{
    r->port = port;
    set_message(&r->request, text, (USHORT)strlen(text));
    r->thread = CreateThread(NULL, 0, request_main, r, 0, NULL);
}

static NTSTATUS request_join(requester *r)
{
    WaitForSingleObject(r->thread, INFINITE);
    CloseHandle(r->thread);
    return r->status;
}

static NTSTATUS reply_to(HANDLE port, const message *request, const char *text)
{
    message reply;
    set_message(&reply, text, (USHORT)strlen(text));
    reply.header.ClientId = request->header.ClientId;
    reply.header.MessageId = request->header.MessageId;
    reply.header.CallbackId = request->header.CallbackId;
    return nt.ReplyPort(port, &reply.header);
}

static BOOL data_is(const message *m, const char *text)
{
    return m->header.DataLength == strlen(text) && memcmp(m->bytes + LPCEMU_HEADER, text, strlen(text)) == 0;
}

static HANDLE spawn(const WCHAR *role, const WCHAR *name)
{
    WCHAR command[512];
    STARTUPINFOW si;
    PROCESS_INFORMATION pi;
    memset(&si, 0, sizeof si);
    si.cb = sizeof si;
    swprintf(command, 512, L"\"%ls\" %ls \"%ls\"", exe_path, role, name);
    if (!CreateProcessW(exe_path, command, NULL, NULL, FALSE, 0, NULL, NULL, &si, &pi)) return NULL;
    CloseHandle(pi.hThread);
    return pi.hProcess;
}

/* ---- children ----------------------------------------------------------------------------------- */

/* Connects with a 64 KiB view, writes into it, sends one request and then waits to be killed. */
static int child_client(const WCHAR *name)
{
    connector c;
    message request, reply;
    memset(&c, 0, sizeof c);
    c.section = new_section(65536);
    memcpy(c.info, "child", 5);
    c.info_length = 5;
    wcscpy(c.name, name);
    connect_main(&c);
    if (c.status != STATUS_SUCCESS) return 1;
    memcpy(c.client_view.ViewBase, "written by the child", 21);
    if (c.server_view.ViewBase) memcpy(c.server_view.ViewBase, "child in server view", 21);
    set_message(&request, "ping", 4);
    if (nt.RequestWaitReplyPort(c.port, &request.header, &reply.header) != STATUS_SUCCESS) return 2;
    Sleep(INFINITE);
    return 0;
}

/* Accepts one connection, takes one request, never answers, waits to be killed. */
static int child_server(const WCHAR *name)
{
    HANDLE server, communication;
    message m;
    if (create_port(name, 0, LPCEMU_MAX_MESSAGE, &server) != STATUS_SUCCESS) return 1;
    if (nt.ReplyWaitReceivePortEx(server, NULL, NULL, &m.header, NULL) != STATUS_SUCCESS) return 2;
    if (nt.AcceptConnectPort(&communication, NULL, &m.header, TRUE, NULL, NULL) != STATUS_SUCCESS) return 3;
    nt.CompleteConnectPort(communication);
    nt.ReplyWaitReceivePortEx(server, NULL, NULL, &m.header, NULL);
    Sleep(INFINITE);
    return 0;
}

/* ---- checks ------------------------------------------------------------------------------------ */

static void limits_and_names(void)
{
    WCHAR name[128];
    HANDLE port = NULL, second = NULL;
    connector c;
    NTSTATUS a, b;
    port_name(name, L"limits");
    a = create_port(name, LPCEMU_MAX_CONNECTION_INFO + 1, LPCEMU_MAX_MESSAGE, &port);
    b = create_port(name, LPCEMU_MAX_CONNECTION_INFO, LPCEMU_MAX_MESSAGE + 1, &port);
    check(a == STATUS_INVALID_PARAMETER_3 && b == STATUS_INVALID_PARAMETER_4,
          "#1 NtCreatePort: 129 bytes of connection info -> 0x%lx, a 513-byte message -> 0x%lx", a, b);
    a = create_port(name, LPCEMU_MAX_CONNECTION_INFO, LPCEMU_MAX_MESSAGE, &port);
    b = create_port(name, 0, LPCEMU_MAX_MESSAGE, &second);
    check(a == STATUS_SUCCESS && b == STATUS_OBJECT_NAME_COLLISION, "#2 a second port of the same name -> 0x%lx", b);
    nt.Close(port);
    memset(&c, 0, sizeof c);
    port_name(name, L"missing");
    connect_start(&c, name);
    a = connect_join(&c);
    check(a == STATUS_OBJECT_NAME_NOT_FOUND, "#3 NtConnectPort to a missing name -> 0x%lx", a);
}

static void messages(void)
{
    pair p;
    message m, reply;
    requester r;
    NTSTATUS a, b, c;
    PVOID context = NULL;
    ULONG first_id;
    if (!open_pair(&p, LPCEMU_HEADER + 100, (PVOID)0x5eed, 0, 0)) {
        check(0, "#4 a connected pair");
        return;
    }
    check(p.c.max_message == LPCEMU_HEADER + 100, "#4 NtConnectPort returns the server's MaxMessageLength (%lu)", p.c.max_message);

    memset(&m, 0, sizeof m);
    m.header.DataLength = 101;
    m.header.TotalLength = (USHORT)(LPCEMU_HEADER + 101);
    a = nt.RequestWaitReplyPort(p.client, &m.header, &reply.header);
    b = nt.RequestPort(p.client, &m.header);
    m.header.DataLength = 10;
    m.header.TotalLength = (USHORT)(LPCEMU_HEADER + 9);
    c = nt.RequestPort(p.client, &m.header);
    check(a == STATUS_PORT_MESSAGE_TOO_LONG && b == STATUS_PORT_MESSAGE_TOO_LONG && c == STATUS_INVALID_PARAMETER,
          "#5 141-byte request -> 0x%lx, datagram -> 0x%lx; DataLength past TotalLength -> 0x%lx", a, b, c);

    set_message(&m, "typed", 5);
    m.header.Type = LPCEMU_REQUEST;
    a = nt.RequestPort(p.client, &m.header);
    check(a == STATUS_INVALID_PARAMETER, "#9 a datagram with a caller-set Type -> 0x%lx", a);

    set_message(&m, "datagram", 8);
    a = nt.RequestPort(p.client, &m.header);
    b = receive(p.server, &m, &context, 30000);
    check(a == STATUS_SUCCESS && b == STATUS_SUCCESS && m.header.Type == LPCEMU_DATAGRAM && data_is(&m, "datagram") &&
              context == (PVOID)0x5eed && m.header.ClientId.UniqueProcess == (HANDLE)(ULONG_PTR)GetCurrentProcessId(),
          "#8 #11 a datagram arrives as LPC_DATAGRAM (type %u) with the connection's PortContext", m.header.Type);
    first_id = m.header.MessageId;

    request_start(&r, p.client, "question");
    b = receive(p.server, &m, &context, 30000);
    check(b == STATUS_SUCCESS && m.header.Type == LPCEMU_REQUEST && data_is(&m, "question") && m.header.MessageId != 0 &&
              m.header.MessageId != first_id && m.header.CallbackId == 0 &&
              m.header.ClientId.UniqueThread == (HANDLE)(ULONG_PTR)r.tid && context == (PVOID)0x5eed,
          "#8 #10 a request arrives as LPC_REQUEST with a new MessageId, the sender's ClientId, CallbackId 0");

    {
        message wrong = m;
        wrong.header.DataLength = 0;
        wrong.header.TotalLength = LPCEMU_HEADER;
        wrong.header.MessageId = m.header.MessageId + 1000;
        a = nt.ReplyPort(p.communication, &wrong.header);
        wrong.header.MessageId = m.header.MessageId;
        wrong.header.ClientId.UniqueThread = (HANDLE)(ULONG_PTR)(r.tid + 4);
        b = nt.ReplyPort(p.communication, &wrong.header);
        wrong.header.MessageId = 0;
        c = nt.ReplyPort(p.communication, &wrong.header);
        check(a == STATUS_REPLY_MESSAGE_MISMATCH && b == STATUS_REPLY_MESSAGE_MISMATCH && c == STATUS_INVALID_PARAMETER,
              "#12 reply with another MessageId -> 0x%lx, another thread -> 0x%lx, MessageId 0 -> 0x%lx", a, b, c);
        wrong = m;
        wrong.header.DataLength = 101;
        wrong.header.TotalLength = (USHORT)(LPCEMU_HEADER + 101);
        a = nt.ReplyPort(p.communication, &wrong.header);
        check(a == STATUS_PORT_MESSAGE_TOO_LONG, "#5 a reply over the limit -> 0x%lx", a);
    }
    a = reply_to(p.communication, &m, "answer");
    b = request_join(&r);
    c = reply_to(p.communication, &m, "again");
    check(a == STATUS_SUCCESS && b == STATUS_SUCCESS && r.reply.header.Type == LPCEMU_REPLY && data_is(&r.reply, "answer") &&
              r.reply.header.MessageId == m.header.MessageId && c == STATUS_REPLY_MESSAGE_MISMATCH,
          "#12 the client gets LPC_REPLY with the request's MessageId; a second reply -> 0x%lx", c);
    m.header.MessageId = first_id;
    a = reply_to(p.communication, &m, "to a datagram");
    check(a == STATUS_REPLY_MESSAGE_MISMATCH, "#12 replying to a datagram -> 0x%lx", a);

    a = receive(p.server, &m, NULL, 20);
    check(a == STATUS_TIMEOUT, "#13 NtReplyWaitReceivePortEx with nothing queued -> 0x%lx (STATUS_TIMEOUT)", a);
    close_pair(&p);
}

static void connection_info_and_refusal(void)
{
    WCHAR name[128];
    HANDLE server, communication;
    connector c;
    message m;
    NTSTATUS a;
    port_name(name, L"info");
    create_port(name, LPCEMU_MAX_CONNECTION_INFO, LPCEMU_MAX_MESSAGE, &server);

    memset(&c, 0, sizeof c);
    memcpy(c.info, "twenty bytes of info", 20);
    c.info_length = 20;
    connect_start(&c, name);
    a = receive(server, &m, NULL, 30000);
    check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_CONNECTION_REQUEST && data_is(&m, "twenty bytes of info") &&
              m.header.ClientViewSize == 0,
          "#6 #8 the connection request carries the client's connection info");
    {
        LPCEMU_PORT_MESSAGE request = m.header;
        set_message(&m, "a thirty-byte long answer.....", 30);
        m.header.ClientId = request.ClientId;
        m.header.MessageId = request.MessageId;
    }
    a = nt.AcceptConnectPort(&communication, NULL, &m.header, TRUE, NULL, NULL);
    check(a == STATUS_SUCCESS && WaitForSingleObject(c.thread, 100) == WAIT_TIMEOUT,
          "#16 after NtAcceptConnectPort (0x%lx) the client still waits for NtCompleteConnectPort", a);
    nt.CompleteConnectPort(communication);
    a = connect_join(&c);
    check(a == STATUS_SUCCESS && c.info_length == 20 && memcmp(c.info, "a thirty-byte long answer.....", 20) == 0,
          "#6 the answer comes back cut to the 20 bytes the client sent (%lu)", c.info_length);
    nt.Close(c.port);
    nt.Close(communication);
    receive(server, &m, NULL, 30000); /* its LPC_PORT_CLOSED */

    memset(&c, 0, sizeof c);
    memcpy(c.info, "refuse me", 9);
    c.info_length = 9;
    connect_start(&c, name);
    receive(server, &m, NULL, 30000);
    {
        message request = m;
        a = nt.AcceptConnectPort(&communication, NULL, &m.header, FALSE, NULL, NULL);
        check(a == STATUS_SUCCESS && connect_join(&c) == STATUS_PORT_CONNECTION_REFUSED,
              "#17 refused: NtAcceptConnectPort(FALSE) -> 0x%lx, the client gets STATUS_PORT_CONNECTION_REFUSED", a);
        a = nt.AcceptConnectPort(&communication, NULL, &request.header, TRUE, NULL, NULL);
        check(a == STATUS_REPLY_MESSAGE_MISMATCH, "#16 answering the same request again -> 0x%lx", a);
    }

    memset(&c, 0, sizeof c);
    connect_start(&c, name);
    receive(server, &m, NULL, 30000);
    nt.Close(server);
    a = connect_join(&c);
    check(a == STATUS_PORT_CONNECTION_REFUSED, "#19 closing the connection port refuses an unanswered request -> 0x%lx", a);
}

static DWORD WINAPI blocked_receive(void *arg)
{
    message m;
    return (DWORD)nt.ReplyWaitReceivePortEx((HANDLE)arg, NULL, NULL, &m.header, NULL);
}

static void listen_and_close(void)
{
    pair p;
    connector c;
    message m;
    HANDLE thread, event;
    NTSTATUS a;
    DWORD code = 0;
    if (!open_pair(&p, LPCEMU_MAX_MESSAGE, NULL, 0, 0)) {
        check(0, "#14 a connected pair");
        return;
    }
    set_message(&m, "dropped", 7);
    nt.RequestPort(p.client, &m.header);
    memset(&c, 0, sizeof c);
    connect_start(&c, p.name);
    a = nt.ListenPort(p.server, &m.header);
    check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_CONNECTION_REQUEST,
          "#14 NtListenPort skips the datagram and returns the connection request (type %u)", m.header.Type);
    nt.AcceptConnectPort(NULL, NULL, &m.header, FALSE, NULL, NULL);
    connect_join(&c);

    thread = CreateThread(NULL, 0, blocked_receive, p.server, 0, NULL);
    Sleep(50);
    nt.Close(p.server);
    p.server = NULL;
    WaitForSingleObject(thread, 30000);
    GetExitCodeThread(thread, &code);
    CloseHandle(thread);
    check(code == (DWORD)STATUS_INVALID_HANDLE, "#19 a receive blocked on a connection port being closed -> 0x%lx", code);
    set_message(&m, "after", 5);
    a = nt.RequestPort(p.client, &m.header);
    check(a == STATUS_PORT_DISCONNECTED, "#19 a connected client of a closed connection port -> 0x%lx", a);
    close_pair(&p);

    event = CreateEventW(NULL, TRUE, FALSE, NULL);
    a = nt.Close(event);
    check(a == STATUS_SUCCESS && nt.Close(event) == STATUS_INVALID_HANDLE, "#24 NtClose passes other handles to ntdll's NtClose");
}

static void secure_connect(void)
{
    WCHAR name[128];
    HANDLE server, token, communication;
    BYTE user[256], system_sid[SECURITY_MAX_SID_SIZE];
    DWORD length = sizeof system_sid;
    connector c;
    message m;
    NTSTATUS a;
    port_name(name, L"secure");
    create_port(name, 0, LPCEMU_MAX_MESSAGE, &server);
    OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token);
    GetTokenInformation(token, TokenUser, user, sizeof user, &length);
    CloseHandle(token);
    length = sizeof system_sid;
    CreateWellKnownSid(WinLocalSystemSid, NULL, system_sid, &length);

    memset(&c, 0, sizeof c);
    c.sid = system_sid;
    connect_start(&c, name);
    a = connect_join(&c);
    check(a == STATUS_SERVER_SID_MISMATCH && receive(server, &m, NULL, 20) == STATUS_TIMEOUT,
          "#7 NtSecureConnectPort naming another SID -> 0x%lx, and the server hears nothing", a);
    memset(&c, 0, sizeof c);
    c.sid = ((TOKEN_USER *)user)->User.Sid;
    connect_start(&c, name);
    receive(server, &m, NULL, 30000);
    nt.AcceptConnectPort(&communication, NULL, &m.header, TRUE, NULL, NULL);
    nt.CompleteConnectPort(communication);
    a = connect_join(&c);
    check(a == STATUS_SUCCESS, "#7 NtSecureConnectPort naming the server's user connects -> 0x%lx", a);
    nt.Close(c.port);
    nt.Close(communication);
    nt.Close(server);
}

typedef struct echo_server {
    HANDLE server;
    LONG answered;
} echo_server;

static DWORD WINAPI echo_main(void *arg)
{
    echo_server *e = (echo_server *)arg;
    message m;
    PVOID context;
    for (;;) {
        if (nt.ReplyWaitReceivePortEx(e->server, &context, NULL, &m.header, NULL) != STATUS_SUCCESS) return 0;
        if (m.header.Type == LPCEMU_REQUEST) {
            /* the reply is the request itself, sent back on the connection port */
            if (nt.ReplyPort(e->server, &m.header) == STATUS_SUCCESS) InterlockedIncrement(&e->answered);
        }
    }
}

#define THREADS 8
#define PER_THREAD 50

typedef struct hammer {
    HANDLE port;
    int index, good;
} hammer;

static DWORD WINAPI hammer_main(void *arg)
{
    hammer *h = (hammer *)arg;
    int i;
    for (i = 0; i < PER_THREAD; ++i) {
        message request, reply;
        char text[32];
        int length = sprintf(text, "t%d-%d", h->index, i);
        set_message(&request, text, (USHORT)length);
        if (nt.RequestWaitReplyPort(h->port, &request.header, &reply.header) == STATUS_SUCCESS && data_is(&reply, text)) ++h->good;
    }
    return 0;
}

static void concurrency(void)
{
    pair p;
    echo_server e;
    hammer h[THREADS];
    HANDLE threads[THREADS], echo;
    int i, good = 0;
    if (!open_pair(&p, LPCEMU_MAX_MESSAGE, NULL, 0, 0)) {
        check(0, "#15 a connected pair");
        return;
    }
    e.server = p.server;
    e.answered = 0;
    echo = CreateThread(NULL, 0, echo_main, &e, 0, NULL);
    for (i = 0; i < THREADS; ++i) {
        h[i].port = p.client;
        h[i].index = i;
        h[i].good = 0;
        threads[i] = CreateThread(NULL, 0, hammer_main, &h[i], 0, NULL);
    }
    WaitForMultipleObjects(THREADS, threads, TRUE, INFINITE);
    for (i = 0; i < THREADS; ++i) {
        good += h[i].good;
        CloseHandle(threads[i]);
    }
    check(good == THREADS * PER_THREAD, "#15 %d threads x %d requests on one client port: %d right replies (reply routed through the connection port)",
          THREADS, PER_THREAD, good);
    close_pair(&p);
    p.server = NULL;
    WaitForSingleObject(echo, INFINITE);
    CloseHandle(echo);
}

static void disconnects(void)
{
    pair p;
    requester r;
    message m;
    NTSTATUS a, b;
    PVOID context = NULL;
    if (!open_pair(&p, LPCEMU_MAX_MESSAGE, (PVOID)0x77, 0, 0)) {
        check(0, "#20 a connected pair");
        return;
    }
    request_start(&r, p.client, "never answered");
    receive(p.server, &m, NULL, 30000);
    nt.Close(p.communication);
    p.communication = NULL;
    a = request_join(&r);
    set_message(&m, "later", 5);
    b = nt.RequestPort(p.client, &m.header);
    check(a == STATUS_PORT_DISCONNECTED && b == STATUS_PORT_DISCONNECTED,
          "#20 the server port closed under a waiting request -> 0x%lx; a later call -> 0x%lx", a, b);
    close_pair(&p);

    if (!open_pair(&p, LPCEMU_MAX_MESSAGE, (PVOID)0x78, 0, 0)) {
        check(0, "#21 a connected pair");
        return;
    }
    request_start(&r, p.client, "pending");
    receive(p.server, &m, NULL, 30000);
    {
        message request = m;
        nt.Close(p.client);
        p.client = NULL;
        request_join(&r);
        a = receive(p.server, &m, &context, 30000);
        check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_PORT_CLOSED && m.header.DataLength == 8 && context == (PVOID)0x78,
              "#21 the client's port closed: the server gets LPC_PORT_CLOSED (type %u) with the PortContext", m.header.Type);
        a = reply_to(p.communication, &request, "too late");
        check(a == STATUS_PORT_DISCONNECTED, "#21 a reply after that -> 0x%lx", a);
    }
    close_pair(&p);
}

static void views(void)
{
    pair p;
    LONG ports_before, views_before, ports_after, views_after;
    BYTE *client_side, *server_side;
    LpcEmuCounts(&ports_before, &views_before);
    if (!open_pair(&p, LPCEMU_MAX_MESSAGE, NULL, 65536 + 100, 65536)) {
        check(0, "#25 a pair with two views");
        return;
    }
    check(p.c.client_view.ViewBase && p.c.client_view.ViewSize >= 65536 + 100 && p.c.client_view.ViewSize % 4096 == 0 &&
              p.client_view.ViewBase && p.client_view.ViewSize == p.c.client_view.ViewSize &&
              p.c.client_view.ViewRemoteBase == p.client_view.ViewBase && p.request.header.ClientViewSize == p.c.client_view.ViewSize,
          "#25 client view: mapped on both sides, size %llu written back in whole pages, ViewRemoteBase = the server's address",
          (unsigned long long)p.c.client_view.ViewSize);
    check(p.server_view.ViewBase && p.server_view.ViewSize >= 65536 && p.c.server_view.ViewBase &&
              p.c.server_view.ViewSize == p.server_view.ViewSize && p.server_view.ViewRemoteBase == p.c.server_view.ViewBase,
          "#26 server view: mapped on both sides, ViewRemoteBase = the client's address");
    client_side = (BYTE *)p.c.client_view.ViewBase;
    server_side = (BYTE *)p.client_view.ViewBase;
    memcpy(client_side + 65536, "from the client", 16);
    memcpy((BYTE *)p.server_view.ViewBase + 10, "from the server", 16);
    check(memcmp(server_side + 65536, "from the client", 16) == 0 &&
              memcmp((BYTE *)p.c.server_view.ViewBase + 10, "from the server", 16) == 0,
          "#27 both views are shared memory");
    close_pair(&p);
    LpcEmuCounts(&ports_after, &views_after);
    check(ports_after == ports_before && views_after == views_before,
          "#28 after closing: %ld ports, %ld views open (before: %ld, %ld)", ports_after, views_after, ports_before, views_before);
}

static void cross_process(void)
{
    WCHAR name[128];
    HANDLE server, communication, child, section;
    LPCEMU_PORT_VIEW server_view;
    LPCEMU_REMOTE_PORT_VIEW client_view;
    message m;
    NTSTATUS a;
    PVOID context = NULL;
    requester r;

    port_name(name, L"xclient");
    create_port(name, 0, LPCEMU_MAX_MESSAGE, &server);
    child = spawn(L"client", name);
    a = receive(server, &m, NULL, 30000);
    check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_CONNECTION_REQUEST && data_is(&m, "child") &&
              m.header.ClientId.UniqueProcess == (HANDLE)(ULONG_PTR)GetProcessId(child) && m.header.ClientViewSize == 65536,
          "#8 #25 a connection request from another process, with its view's size");
    section = new_section(65536);
    memset(&server_view, 0, sizeof server_view);
    server_view.Length = sizeof server_view;
    server_view.SectionHandle = section;
    client_view.Length = sizeof client_view;
    a = nt.AcceptConnectPort(&communication, (PVOID)0x99, &m.header, TRUE, &server_view, &client_view);
    CloseHandle(section);
    nt.CompleteConnectPort(communication);
    receive(server, &m, &context, 30000);
    check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_REQUEST && data_is(&m, "ping") && client_view.ViewBase &&
              memcmp(client_view.ViewBase, "written by the child", 21) == 0 &&
              memcmp(server_view.ViewBase, "child in server view", 21) == 0 && server_view.ViewRemoteBase != NULL,
          "#27 views shared with another process, both ways");
    reply_to(communication, &m, "pong");
    TerminateProcess(child, 9);
    WaitForSingleObject(child, INFINITE);
    CloseHandle(child);
    a = receive(server, &m, &context, 30000);
    check(a == STATUS_SUCCESS && m.header.Type == LPCEMU_PORT_CLOSED && context == (PVOID)0x99,
          "#22 the client process died: LPC_PORT_CLOSED (type %u) with its PortContext", m.header.Type);
    nt.Close(communication);

    child = spawn(L"client", name);
    receive(server, &m, NULL, 30000);
    TerminateProcess(child, 9);
    WaitForSingleObject(child, INFINITE);
    CloseHandle(child);
    a = nt.AcceptConnectPort(&communication, (PVOID)0x9a, &m.header, TRUE, NULL, NULL);
    if (a == STATUS_SUCCESS) {
        /* the death was not noticed yet: the connection closes right after (row #23) */
        NTSTATUS b = receive(server, &m, &context, 30000);
        check(b == STATUS_SUCCESS && m.header.Type == LPCEMU_PORT_CLOSED && context == (PVOID)0x9a &&
                  nt.CompleteConnectPort(communication) == STATUS_PORT_DISCONNECTED,
              "#18 #23 accepting a client that died: accepted, then LPC_PORT_CLOSED, completing -> STATUS_PORT_DISCONNECTED");
        nt.Close(communication);
    } else {
        check(a == STATUS_INVALID_CID, "#18 accepting a client that died -> 0x%lx", a);
    }
    nt.Close(server);

    port_name(name, L"xserver");
    child = spawn(L"server", name);
    {
        connector c;
        int tries;
        memset(&c, 0, sizeof c);
        /* the child creates the port after it starts */
        for (tries = 0; tries < 600; ++tries) {
            connect_start(&c, name);
            if (connect_join(&c) != STATUS_OBJECT_NAME_NOT_FOUND) break;
            Sleep(50);
        }
        request_start(&r, c.port, "hang");
        Sleep(100);
        TerminateProcess(child, 9);
        WaitForSingleObject(child, INFINITE);
        CloseHandle(child);
        a = request_join(&r);
        check(c.status == STATUS_SUCCESS && a == STATUS_PORT_DISCONNECTED,
              "#20 the server process died under a waiting request -> 0x%lx", a);
        nt.Close(c.port);
    }
}

static DWORD WINAPI watchdog(void *arg)
{
    (void)arg;
    Sleep(115000);
    printf("not ok - the conformance run took over 115 s\n%d passed, %d failed\n", passed, failed + 1);
    fflush(stdout);
    ExitProcess(3);
}

int wmain(int argc, WCHAR **argv)
{
    DWORD error = LpcEmuInstall();
    GetModuleFileNameW(NULL, exe_path, MAX_PATH);
    if (error != 0 || !resolve()) {
        printf("not ok 1 - LpcEmuInstall -> %lu, every LPC call resolvable from ntdll\n0 passed, 1 failed\n", error);
        return 1;
    }
    if (argc == 3 && wcscmp(argv[1], L"client") == 0) return child_client(argv[2]);
    if (argc == 3 && wcscmp(argv[1], L"server") == 0) return child_server(argv[2]);
    CloseHandle(CreateThread(NULL, 0, watchdog, NULL, 0, NULL));
    check(1, "#0 LpcEmuInstall: ntdll exports every LPC call, NtReplyPort / NtRequestPort / NtReplyWaitReceivePortEx included");
    limits_and_names();
    messages();
    connection_info_and_refusal();
    listen_and_close();
    secure_connect();
    concurrency();
    disconnects();
    views();
    cross_process();
    printf("%d passed, %d failed\n", passed, failed);
    fflush(stdout);
    return failed == 0 ? 0 : 1;
}
