/* The native baseline of the LPC benchmark (bench/lpc.mjs): an echo server and a client that
 * measures request/reply round trips, both calling ntdll's LPC entry points the way a native
 * program does (GetProcAddress). With `--stand-in <lpcemu.dll>` (under Wine) it first installs the
 * LPC stand-in, exactly as the test runner does for node.exe.
 *   lpc-bench-native server <port name> [--stand-in dll]   prints "ready", serves until killed
 *   lpc-bench-native client <port name> <messages> <in flight> <payload bytes> [--stand-in dll]
 *                                                          prints {"perSecond":..,"p50Us":..,"p99Us":..} */
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    USHORT DataLength, TotalLength, Type, DataInfoOffset;
    CLIENT_ID ClientId;
    ULONG MessageId;
    SIZE_T ClientViewSize;
} PORT_MESSAGE_X64;

typedef union {
    PORT_MESSAGE_X64 header;
    BYTE bytes[40 + 512 + 128];
} message;

typedef NTSTATUS(NTAPI *CreatePortFn)(PHANDLE, POBJECT_ATTRIBUTES, ULONG, ULONG, ULONG);
typedef NTSTATUS(NTAPI *ConnectPortFn)(PHANDLE, PUNICODE_STRING, PSECURITY_QUALITY_OF_SERVICE, PVOID, PVOID, PULONG, PVOID, PULONG);
typedef NTSTATUS(NTAPI *AcceptConnectPortFn)(PHANDLE, PVOID, PORT_MESSAGE_X64 *, BOOLEAN, PVOID, PVOID);
typedef NTSTATUS(NTAPI *HandleFn)(HANDLE);
typedef NTSTATUS(NTAPI *ReplyWaitReceiveFn)(HANDLE, PVOID *, PORT_MESSAGE_X64 *, PORT_MESSAGE_X64 *, PLARGE_INTEGER);
typedef NTSTATUS(NTAPI *RequestWaitReplyFn)(HANDLE, PORT_MESSAGE_X64 *, PORT_MESSAGE_X64 *);

static CreatePortFn create_port;
static ConnectPortFn connect_port;
static AcceptConnectPortFn accept_connect;
static HandleFn complete_connect, nt_close;
static ReplyWaitReceiveFn reply_wait_receive;
static RequestWaitReplyFn request_wait_reply;

static int resolve(const WCHAR *stand_in)
{
    HMODULE ntdll;
    if (stand_in) {
        HMODULE dll = LoadLibraryW(stand_in);
        DWORD(*install)(void) = dll ? (DWORD(*)(void))(void *)GetProcAddress(dll, "LpcEmuInstall") : NULL;
        if (!install || install() != 0) return 0;
    }
    ntdll = GetModuleHandleW(L"ntdll.dll");
    create_port = (CreatePortFn)(void *)GetProcAddress(ntdll, "NtCreatePort");
    connect_port = (ConnectPortFn)(void *)GetProcAddress(ntdll, "NtConnectPort");
    accept_connect = (AcceptConnectPortFn)(void *)GetProcAddress(ntdll, "NtAcceptConnectPort");
    complete_connect = (HandleFn)(void *)GetProcAddress(ntdll, "NtCompleteConnectPort");
    nt_close = (HandleFn)(void *)GetProcAddress(ntdll, "NtClose");
    reply_wait_receive = (ReplyWaitReceiveFn)(void *)GetProcAddress(ntdll, "NtReplyWaitReceivePortEx");
    request_wait_reply = (RequestWaitReplyFn)(void *)GetProcAddress(ntdll, "NtRequestWaitReplyPort");
    return create_port && connect_port && accept_connect && complete_connect && nt_close && reply_wait_receive && request_wait_reply;
}

static UNICODE_STRING counted(const WCHAR *text)
{
    UNICODE_STRING s;
    s.Length = s.MaximumLength = (USHORT)(wcslen(text) * sizeof(WCHAR));
    s.Buffer = (PWSTR)text;
    return s;
}

#define MAX_CONNECTIONS 4096

/* Echoes every request; the reply goes out with the next receive (the classic LPC server loop). */
static int serve(const WCHAR *name)
{
    UNICODE_STRING s = counted(name);
    OBJECT_ATTRIBUTES attributes;
    HANDLE port;
    message received, reply;
    PORT_MESSAGE_X64 *pending = NULL;
    static HANDLE communication[MAX_CONNECTIONS];
    int connections = 0;
    InitializeObjectAttributes(&attributes, &s, OBJ_CASE_INSENSITIVE, NULL, NULL);
    if (create_port(&port, &attributes, 0, 512, 0) != STATUS_SUCCESS) return 1;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        PVOID context = NULL;
        NTSTATUS status = reply_wait_receive(port, &context, pending, &received.header, NULL);
        pending = NULL;
        if (status != STATUS_SUCCESS) return 2;
        switch (received.header.Type & 0xFF) {
        case 10: /* LPC_CONNECTION_REQUEST: the connection's slot is its PortContext */
            received.header.DataLength = 0;
            received.header.TotalLength = sizeof(PORT_MESSAGE_X64);
            if (connections < MAX_CONNECTIONS &&
                accept_connect(&communication[connections], (PVOID)(ULONG_PTR)(connections + 1), &received.header, TRUE, NULL,
                               NULL) == STATUS_SUCCESS) {
                complete_connect(communication[connections]);
                ++connections;
            } else {
                accept_connect(NULL, NULL, &received.header, FALSE, NULL, NULL);
            }
            break;
        case 1: /* LPC_REQUEST */
            memcpy(&reply, &received, received.header.TotalLength);
            pending = &reply.header;
            break;
        case 5: /* LPC_PORT_CLOSED */
            if (context) nt_close(communication[(ULONG_PTR)context - 1]);
            break;
        default:
            break;
        }
    }
}

typedef struct worker {
    HANDLE port;
    int messages, payload;
    double *latencies;
} worker;

static LARGE_INTEGER frequency;

static DWORD WINAPI run_worker(void *arg)
{
    worker *w = (worker *)arg;
    message request, reply;
    int i;
    for (i = 0; i < w->messages; ++i) {
        LARGE_INTEGER start, end;
        memset(&request.header, 0, sizeof request.header);
        request.header.DataLength = (USHORT)w->payload;
        request.header.TotalLength = (USHORT)(sizeof(PORT_MESSAGE_X64) + w->payload);
        memset(request.bytes + sizeof(PORT_MESSAGE_X64), i & 0xFF, (size_t)w->payload);
        QueryPerformanceCounter(&start);
        if (request_wait_reply(w->port, &request.header, &reply.header) != STATUS_SUCCESS) return 1;
        QueryPerformanceCounter(&end);
        w->latencies[i] = (double)(end.QuadPart - start.QuadPart) * 1e6 / (double)frequency.QuadPart;
    }
    return 0;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int measure(const WCHAR *name, int messages, int in_flight, int payload)
{
    UNICODE_STRING s = counted(name);
    SECURITY_QUALITY_OF_SERVICE qos = {sizeof qos, SecurityImpersonation, SECURITY_DYNAMIC_TRACKING, FALSE};
    HANDLE port, threads[64];
    ULONG max_message = 0;
    worker workers[64];
    double *latencies = (double *)malloc(sizeof(double) * (size_t)messages);
    LARGE_INTEGER start, end;
    int per = messages / in_flight, i, total = per * in_flight;
    DWORD code = 0;
    if (!latencies || in_flight < 1 || in_flight > 64) return 1;
    if (connect_port(&port, &s, &qos, NULL, NULL, &max_message, NULL, NULL) != STATUS_SUCCESS) return 2;
    QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&start);
    for (i = 0; i < in_flight; ++i) {
        workers[i].port = port;
        workers[i].messages = per;
        workers[i].payload = payload;
        workers[i].latencies = latencies + (size_t)i * per;
        threads[i] = CreateThread(NULL, 0, run_worker, &workers[i], 0, NULL);
    }
    WaitForMultipleObjects((DWORD)in_flight, threads, TRUE, INFINITE);
    QueryPerformanceCounter(&end);
    for (i = 0; i < in_flight; ++i) {
        DWORD one = 0;
        GetExitCodeThread(threads[i], &one);
        code |= one;
        CloseHandle(threads[i]);
    }
    nt_close(port);
    if (code != 0) return 3;
    qsort(latencies, (size_t)total, sizeof(double), by_value);
    printf("{\"perSecond\":%.1f,\"p50Us\":%.1f,\"p99Us\":%.1f}\n",
           total / ((double)(end.QuadPart - start.QuadPart) / (double)frequency.QuadPart), latencies[total / 2],
           latencies[(size_t)(total * 0.99)]);
    return 0;
}

int wmain(int argc, WCHAR **argv)
{
    const WCHAR *stand_in = NULL;
    if (argc >= 2 && wcscmp(argv[argc - 2], L"--stand-in") == 0) {
        stand_in = argv[argc - 1];
        argc -= 2;
    }
    if (!resolve(stand_in)) {
        fprintf(stderr, "the LPC entry points are missing\n");
        return 1;
    }
    if (argc == 3 && wcscmp(argv[1], L"server") == 0) return serve(argv[2]);
    if (argc == 6 && wcscmp(argv[1], L"client") == 0) return measure(argv[2], _wtoi(argv[3]), _wtoi(argv[4]), _wtoi(argv[5]));
    fprintf(stderr, "usage: lpc-bench-native server NAME | client NAME MESSAGES IN_FLIGHT PAYLOAD [--stand-in DLL]\n");
    return 2;
}
