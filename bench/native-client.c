/*
 * The native baseline for bench/run.mjs: the scanner pattern done the fast way in C.
 *
 *   fltport-bench-native KERNEL_COMMAND FLTLIB notify PAYLOAD PENDING COUNT REPLY_BYTES|ff
 *   fltport-bench-native KERNEL_COMMAND FLTLIB send PAYLOAD THREADS COUNT
 *
 * It runs KERNEL_COMMAND PORT_NAME 8 (a command line that loads test-kernel.sys on that port,
 * prints "ready" and unloads it when its standard input closes: node.exe
 * emulator/test-kernel/test-kernel-host.cjs) with a fresh port name, loads fltlib.dll with LoadLibrary
 * (FLTLIB: a path or "fltlib.dll"), connects and runs one cell:
 *   notify  PENDING overlapped FilterGetMessage calls on thread-pool I/O; each completion replies
 *           at once on its pool thread with an exact-size FilterReplyMessage (header + the
 *           kernel's reply length, first 8 payload bytes echoed) and starts its read again. The
 *           kernel floods with PENDING sender threads (test-kernel FLOOD); round trips are timed
 *           kernel-side.
 *   send    THREADS threads loop on FilterSendMessage (test-kernel ECHO of PAYLOAD bytes), each
 *           call timed with QueryPerformanceCounter.
 * Each cell starts with an unmeasured warm-up of a tenth of its size, but at least 500 messages
 * per sender or thread (fltport-client.cjs does the same). Prints one line: RESULT {json}.
 */
#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <psapi.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

/* fltuser.h shapes, declared here so that any SDK (or none) works. */
typedef struct {
    ULONG ReplyLength;
    ULONGLONG MessageId;
} BenchMessageHeader;
typedef struct {
    LONG Status;
    ULONGLONG MessageId;
} BenchReplyHeader;

typedef HRESULT(WINAPI *ConnectFn)(LPCWSTR, DWORD, LPCVOID, WORD, LPSECURITY_ATTRIBUTES, HANDLE *);
typedef HRESULT(WINAPI *SendFn)(HANDLE, LPVOID, DWORD, LPVOID, DWORD, LPDWORD);
typedef HRESULT(WINAPI *GetFn)(HANDLE, BenchMessageHeader *, DWORD, LPOVERLAPPED);
typedef HRESULT(WINAPI *ReplyFn)(HANDLE, BenchReplyHeader *, DWORD);

static ConnectFn pConnect;
static SendFn pSend;
static GetFn pGet;
static ReplyFn pReply;

enum { OP_ECHO = 1, OP_WAIT = 5, OP_FLOOD = 8, OP_LATENCY = 9 };
#define NO_REPLY_BUFFER 0xFFFFFFFFu
#define HEADER_BYTES 16

typedef struct {
    UINT32 sent, replied, matched, timeouts, failures;
    INT32 lastStatus;
    UINT32 replyBytesLast, connections;
} KernelStats;

typedef struct {
    UINT64 count, elapsedNs, p50Ns, p99Ns, p999Ns, maxNs, minNs, meanNs;
} KernelLatency;

static HANDLE g_port;
static LARGE_INTEGER g_frequency;

static void Fail(const char *what, HRESULT hr) {
    fprintf(stderr, "%s failed: 0x%08lX\n", what, (unsigned long)hr);
    fflush(stderr);
    ExitProcess(1);
}

static HRESULT Command(UINT32 op, UINT32 a0, UINT32 a1, UINT32 a2, UINT32 a3, const void *payload, DWORD payloadBytes,
                       void *out, DWORD outBytes, DWORD *returned) {
    BYTE stackBuffer[24 + 1024];
    BYTE *buffer = 24 + payloadBytes <= sizeof(stackBuffer) ? stackBuffer : (BYTE *)malloc(24 + payloadBytes);
    UINT32 header[6] = {op, a0, a1, a2, a3, 0};
    DWORD ignored = 0;
    memcpy(buffer, header, sizeof(header));
    if (payloadBytes > 0) memcpy(buffer + 24, payload, payloadBytes);
    HRESULT hr = pSend(g_port, buffer, 24 + payloadBytes, out, outBytes, returned ? returned : &ignored);
    if (buffer != stackBuffer) free(buffer);
    return hr;
}

/* ---- process figures ---- */

static double CpuSeconds(void) {
    FILETIME created, exited, kernel, user;
    GetProcessTimes(GetCurrentProcess(), &created, &exited, &kernel, &user);
    ULARGE_INTEGER k = {{kernel.dwLowDateTime, kernel.dwHighDateTime}};
    ULARGE_INTEGER u = {{user.dwLowDateTime, user.dwHighDateTime}};
    return (double)(k.QuadPart + u.QuadPart) / 1e7;
}

static double PeakWorkingSetBytes(void) {
    PROCESS_MEMORY_COUNTERS counters;
    memset(&counters, 0, sizeof(counters));
    counters.cb = sizeof(counters);
    if (!GetProcessMemoryInfo(GetCurrentProcess(), &counters, sizeof(counters))) return 0;
    return (double)counters.PeakWorkingSetSize;
}

static double Now(void) {
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    return (double)now.QuadPart / (double)g_frequency.QuadPart;
}

/* Messages per sender (or thread) in the warm-up that precedes every measured cell: a tenth, but
 * at least 500 (or all of them), so that short cells (--quick) start as warm as long ones. */
static DWORD WarmupCount(DWORD measured) {
    DWORD least = measured < 500 ? measured : 500;
    DWORD tenth = measured / 10;
    DWORD count = tenth > least ? tenth : least;
    return count > 0 ? count : 1;
}

/* ---- the kernel ---- */

static HANDLE g_kernelStdin;

static void StartKernel(const wchar_t *command, const wchar_t *portName) {
    SECURITY_ATTRIBUTES inherit = {sizeof(inherit), NULL, TRUE};
    HANDLE inRead, inWrite, outRead, outWrite;
    if (!CreatePipe(&inRead, &inWrite, &inherit, 0) || !CreatePipe(&outRead, &outWrite, &inherit, 0))
        Fail("CreatePipe", HRESULT_FROM_WIN32(GetLastError()));
    SetHandleInformation(inWrite, HANDLE_FLAG_INHERIT, 0);
    SetHandleInformation(outRead, HANDLE_FLAG_INHERIT, 0);
    STARTUPINFOW startup;
    memset(&startup, 0, sizeof(startup));
    startup.cb = sizeof(startup);
    startup.dwFlags = STARTF_USESTDHANDLES;
    startup.hStdInput = inRead;
    startup.hStdOutput = outWrite;
    startup.hStdError = GetStdHandle(STD_ERROR_HANDLE);
    wchar_t commandLine[1024];
    swprintf(commandLine, 1024, L"%ls %ls 8", command, portName);
    PROCESS_INFORMATION process;
    if (!CreateProcessW(NULL, commandLine, NULL, NULL, TRUE, 0, NULL, NULL, &startup, &process))
        Fail("CreateProcess(test-kernel)", HRESULT_FROM_WIN32(GetLastError()));
    CloseHandle(process.hThread);
    CloseHandle(process.hProcess);
    CloseHandle(inRead);
    CloseHandle(outWrite);
    char text[256];
    DWORD length = 0, got = 0;
    while (length < sizeof(text) - 1 && ReadFile(outRead, text + length, (DWORD)(sizeof(text) - 1 - length), &got, NULL) &&
           got > 0) {
        length += got;
        text[length] = 0;
        if (strstr(text, "ready") != NULL) break;
    }
    if (strstr(text, "ready") == NULL) Fail("test-kernel start", E_FAIL);
    CloseHandle(outRead);
    g_kernelStdin = inWrite;
}

/* ---- notify: thread-pool I/O ---- */

typedef struct {
    OVERLAPPED overlapped; /* first: the completion hands us this pointer */
    BYTE *buffer;
    BYTE *reply;
} Read;

static DWORD g_bufferBytes;
static volatile LONG g_stopping;
static volatile LONG g_received;
static volatile LONG g_replyFailures;
static volatile LONG g_readFailures;
static volatile LONG g_lastReadError;
static PTP_IO g_io;

static void StartRead(Read *read) {
    memset(&read->overlapped, 0, sizeof(read->overlapped));
    StartThreadpoolIo(g_io);
    HRESULT hr = pGet(g_port, (BenchMessageHeader *)read->buffer, g_bufferBytes, &read->overlapped);
    if (hr != HRESULT_FROM_WIN32(ERROR_IO_PENDING) && hr != S_OK) {
        CancelThreadpoolIo(g_io);
        if (!g_stopping) Fail("FilterGetMessage", hr);
    }
}

static void CALLBACK OnRead(PTP_CALLBACK_INSTANCE instance, void *context, void *overlapped, ULONG result,
                            ULONG_PTR bytes, PTP_IO io) {
    (void)instance;
    (void)context;
    (void)io;
    Read *read = (Read *)overlapped;
    if (g_stopping) return; /* cancelled at the end */
    if (result != NO_ERROR) {
        /* counted and reported; the read is started again so that no slot is lost */
        InterlockedIncrement(&g_readFailures);
        InterlockedExchange(&g_lastReadError, (LONG)result);
        StartRead(read);
        return;
    }
    InterlockedIncrement(&g_received);
    BenchMessageHeader header;
    memcpy(&header, read->buffer, sizeof(header));
    if (header.ReplyLength > 0) {
        /* exact size: header + the kernel's reply buffer; echo the sequence number */
        BenchReplyHeader *reply = (BenchReplyHeader *)read->reply;
        reply->Status = 0;
        reply->MessageId = header.MessageId;
        ULONG payload = header.ReplyLength > HEADER_BYTES ? header.ReplyLength - HEADER_BYTES : 0;
        ULONG available = (ULONG)bytes > HEADER_BYTES ? (ULONG)bytes - HEADER_BYTES : 0;
        memcpy(read->reply + HEADER_BYTES, read->buffer + HEADER_BYTES, payload < available ? payload : available);
        if (FAILED(pReply(g_port, reply, header.ReplyLength))) InterlockedIncrement(&g_replyFailures);
    }
    StartRead(read);
}

static void PrintCommon(const char *mode, double cpu, double peak) {
    printf("\"impl\":\"native\",\"mode\":\"%s\",\"cpuSeconds\":%.6f,\"peakBytes\":%.0f", mode, cpu, peak);
}

static int Notify(DWORD payloadBytes, DWORD pending, DWORD count, DWORD replyLength) {
    g_bufferBytes = HEADER_BYTES + payloadBytes;
    g_io = CreateThreadpoolIo(g_port, OnRead, NULL, NULL);
    if (g_io == NULL) Fail("CreateThreadpoolIo", HRESULT_FROM_WIN32(GetLastError()));
    DWORD replyBytes = replyLength == NO_REPLY_BUFFER ? 0 : HEADER_BYTES + replyLength;
    Read *reads = (Read *)calloc(pending, sizeof(Read));
    for (DWORD i = 0; i < pending; ++i) {
        reads[i].buffer = (BYTE *)calloc(1, g_bufferBytes);
        reads[i].reply = (BYTE *)calloc(1, replyBytes + HEADER_BYTES);
        StartRead(&reads[i]);
    }
    DWORD perSender = count / pending;
    /* Warm-up, not measured: the same flood, smaller (thread pools, caches). */
    KernelStats warm;
    memset(&warm, 0, sizeof(warm));
    HRESULT hr = Command(OP_FLOOD, WarmupCount(perSender), payloadBytes, replyLength, pending, NULL, 0, NULL, 0, NULL);
    if (FAILED(hr)) Fail("FLOOD (warm-up)", hr);
    hr = Command(OP_WAIT, 0, 0, 0, 0, NULL, 0, &warm, sizeof(warm), NULL);
    if (FAILED(hr)) Fail("WAIT (warm-up)", hr);
    LONG warmReceived = g_received;

    double cpu0 = CpuSeconds();
    double t0 = Now();
    hr = Command(OP_FLOOD, perSender, payloadBytes, replyLength, pending, NULL, 0, NULL, 0, NULL);
    if (FAILED(hr)) Fail("FLOOD", hr);
    KernelStats stats;
    memset(&stats, 0, sizeof(stats));
    hr = Command(OP_WAIT, 0, 0, 0, 0, NULL, 0, &stats, sizeof(stats), NULL);
    if (FAILED(hr)) Fail("WAIT", hr);
    /* The kernel's counts are per connection: the warm-up's come off. */
    stats.sent -= warm.sent;
    stats.matched -= warm.matched;
    stats.failures -= warm.failures;
    double wall = Now() - t0;
    double cpu = CpuSeconds() - cpu0;
    KernelLatency latency;
    memset(&latency, 0, sizeof(latency));
    hr = Command(OP_LATENCY, 0, 0, 0, 0, NULL, 0, &latency, sizeof(latency), NULL);
    if (FAILED(hr)) Fail("LATENCY", hr);
    double peak = PeakWorkingSetBytes();

    printf("RESULT {");
    PrintCommon("notify", cpu, peak);
    printf(",\"messages\":%lu,\"received\":%ld,\"matched\":%lu,\"failures\":%lu,\"replyFailures\":%ld,"
           "\"readFailures\":%ld,\"lastReadError\":%ld,"
           "\"elapsedSeconds\":%.6f,\"wallSeconds\":%.6f,\"p50Us\":%.3f,\"p99Us\":%.3f,\"p999Us\":%.3f,\"maxUs\":%.3f,"
           "\"meanUs\":%.3f}\n",
           (unsigned long)stats.sent, (long)(g_received - warmReceived), (unsigned long)stats.matched, (unsigned long)stats.failures,
           (long)g_replyFailures, (long)g_readFailures, (long)g_lastReadError, latency.elapsedNs / 1e9, wall, latency.p50Ns / 1e3, latency.p99Ns / 1e3,
           latency.p999Ns / 1e3, latency.maxNs / 1e3, latency.meanNs / 1e3);
    fflush(stdout);
    /* No WaitForThreadpoolIoCallbacks: a completion racing with the cancel may start its read
     * again after CancelIoEx, and that wait would then never end. The process exits instead. */
    InterlockedExchange(&g_stopping, 1);
    CancelIoEx(g_port, NULL);
    return stats.failures == 0 ? 0 : 1;
}

/* ---- send: T threads ---- */

typedef struct {
    HANDLE ready, start;
    DWORD payloadBytes, count;
    double *latencies; /* seconds */
    DWORD done;
    HRESULT failure;
} Sender;

static DWORD WINAPI SendLoop(LPVOID parameter) {
    Sender *sender = (Sender *)parameter;
    BYTE *request = (BYTE *)calloc(1, 24 + sender->payloadBytes);
    BYTE *output = (BYTE *)calloc(1, sender->payloadBytes + 1);
    UINT32 header[6] = {OP_ECHO, 0, 0, 0, 0, 0};
    memcpy(request, header, sizeof(header));
    memset(request + 24, 0x5A, sender->payloadBytes);
    /* Warm-up, not measured, all threads at once as in the measured run. */
    for (DWORD i = WarmupCount(sender->count); i > 0; --i) {
        DWORD returned = 0;
        pSend(g_port, request, 24 + sender->payloadBytes, output, sender->payloadBytes, &returned);
    }
    ReleaseSemaphore(sender->ready, 1, NULL);
    WaitForSingleObject(sender->start, INFINITE);
    for (DWORD i = 0; i < sender->count; ++i) {
        DWORD returned = 0;
        LARGE_INTEGER before, after;
        QueryPerformanceCounter(&before);
        HRESULT hr = pSend(g_port, request, 24 + sender->payloadBytes, output, sender->payloadBytes, &returned);
        QueryPerformanceCounter(&after);
        if (FAILED(hr) || returned != sender->payloadBytes) {
            sender->failure = FAILED(hr) ? hr : E_FAIL;
            break;
        }
        sender->latencies[sender->done++] = (double)(after.QuadPart - before.QuadPart) / (double)g_frequency.QuadPart;
    }
    free(request);
    free(output);
    return 0;
}

static int CompareDoubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double Quantile(const double *sorted, DWORD n, double q) {
    if (n == 0) return 0;
    DWORD index = (DWORD)(q * n);
    if (index >= n) index = n - 1;
    return sorted[index];
}

static int SendBench(DWORD payloadBytes, DWORD threads, DWORD count) {
    HANDLE start = CreateEventW(NULL, TRUE, FALSE, NULL);
    HANDLE ready = CreateSemaphoreW(NULL, 0, (LONG)threads, NULL);
    Sender *senders = (Sender *)calloc(threads, sizeof(Sender));
    HANDLE *handles = (HANDLE *)calloc(threads, sizeof(HANDLE));
    DWORD perThread = count / threads;
    for (DWORD i = 0; i < threads; ++i) {
        senders[i].ready = ready;
        senders[i].start = start;
        senders[i].payloadBytes = payloadBytes;
        senders[i].count = perThread;
        senders[i].latencies = (double *)calloc(perThread, sizeof(double));
        handles[i] = CreateThread(NULL, 0, SendLoop, &senders[i], 0, NULL);
    }
    for (DWORD i = 0; i < threads; ++i) WaitForSingleObject(ready, INFINITE); /* warmed up, at the start line */
    double cpu0 = CpuSeconds();
    double t0 = Now();
    SetEvent(start);
    WaitForMultipleObjects(threads, handles, TRUE, INFINITE);
    double elapsed = Now() - t0;
    double cpu = CpuSeconds() - cpu0;
    double peak = PeakWorkingSetBytes();
    DWORD total = 0, failures = 0;
    for (DWORD i = 0; i < threads; ++i) {
        total += senders[i].done;
        if (senders[i].failure) ++failures;
    }
    double *all = (double *)calloc(total ? total : 1, sizeof(double));
    DWORD n = 0;
    double sum = 0;
    for (DWORD i = 0; i < threads; ++i) {
        memcpy(all + n, senders[i].latencies, senders[i].done * sizeof(double));
        n += senders[i].done;
    }
    for (DWORD i = 0; i < n; ++i) sum += all[i];
    qsort(all, n, sizeof(double), CompareDoubles);
    printf("RESULT {");
    PrintCommon("send", cpu, peak);
    printf(",\"messages\":%lu,\"failures\":%lu,\"elapsedSeconds\":%.6f,\"wallSeconds\":%.6f,\"p50Us\":%.3f,"
           "\"p99Us\":%.3f,\"p999Us\":%.3f,\"maxUs\":%.3f,\"meanUs\":%.3f}\n",
           (unsigned long)n, (unsigned long)failures, elapsed, elapsed, Quantile(all, n, 0.5) * 1e6,
           Quantile(all, n, 0.99) * 1e6, Quantile(all, n, 0.999) * 1e6, n ? all[n - 1] * 1e6 : 0,
           n ? sum / n * 1e6 : 0);
    fflush(stdout);
    return failures == 0 ? 0 : 1;
}

int wmain(int argc, wchar_t **argv) {
    if (argc < 7) {
        fprintf(stderr,
                "usage: fltport-bench-native KERNEL_COMMAND FLTLIB notify PAYLOAD PENDING COUNT REPLY_BYTES|ff\n"
                "       fltport-bench-native KERNEL_COMMAND FLTLIB send PAYLOAD THREADS COUNT\n");
        return 2;
    }
    QueryPerformanceFrequency(&g_frequency);
    HMODULE fltlib = LoadLibraryW(argv[2]);
    if (fltlib == NULL) Fail("LoadLibrary(fltlib)", HRESULT_FROM_WIN32(GetLastError()));
    pConnect = (ConnectFn)(void (*)(void))GetProcAddress(fltlib, "FilterConnectCommunicationPort");
    pSend = (SendFn)(void (*)(void))GetProcAddress(fltlib, "FilterSendMessage");
    pGet = (GetFn)(void (*)(void))GetProcAddress(fltlib, "FilterGetMessage");
    pReply = (ReplyFn)(void (*)(void))GetProcAddress(fltlib, "FilterReplyMessage");
    if (!pConnect || !pSend || !pGet || !pReply) Fail("GetProcAddress(fltlib)", E_NOINTERFACE);

    wchar_t portName[64];
    swprintf(portName, 64, L"\\FltportBenchNative-%lu", (unsigned long)GetCurrentProcessId());
    StartKernel(argv[1], portName);
    HRESULT hr = pConnect(portName, 0, NULL, 0, NULL, &g_port);
    if (FAILED(hr)) Fail("FilterConnectCommunicationPort", hr);
    {
        wchar_t path[MAX_PATH];
        char narrow[MAX_PATH * 2];
        DWORD length = GetModuleFileNameW(fltlib, path, MAX_PATH);
        path[length < MAX_PATH ? length : MAX_PATH - 1] = 0;
        WideCharToMultiByte(CP_UTF8, 0, path, -1, narrow, sizeof(narrow), NULL, NULL);
        for (char *c = narrow; *c; ++c)
            if (*c == '\\') *c = '/';
        printf("FLTLIB %s\n", narrow);
    }

    int code;
    DWORD payload = (DWORD)_wtoi(argv[4]);
    if (wcscmp(argv[3], L"notify") == 0 && argc >= 8) {
        DWORD replyLength = wcscmp(argv[7], L"ff") == 0 ? NO_REPLY_BUFFER : (DWORD)_wtoi(argv[7]);
        code = Notify(payload, (DWORD)_wtoi(argv[5]), (DWORD)_wtoi(argv[6]), replyLength);
    } else if (wcscmp(argv[3], L"send") == 0) {
        code = SendBench(payload, (DWORD)_wtoi(argv[5]), (DWORD)_wtoi(argv[6]));
    } else {
        fprintf(stderr, "unknown mode\n");
        code = 2;
    }
    CloseHandle(g_kernelStdin); /* the kernel is unloaded when its host's stdin closes */
    fflush(stdout);
    ExitProcess((UINT)code);  /* without waiting for thread-pool callbacks still running */
}
