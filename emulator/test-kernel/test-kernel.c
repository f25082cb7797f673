/*
 * test-kernel: a scriptable kernel side on the emulator, for testing user-mode clients (fltport's
 * own suites use it; so can anyone testing an agent). It creates one communication port and
 * obeys commands that the client sends through FilterSendMessage itself:
 *
 *   command = 24-byte header { UINT32 op, arg0, arg1, arg2, arg3, reserved } + payload
 *
 *   ECHO       output = payload (as much as fits; ReturnOutputBufferLength = that)
 *   FAIL       MessageNotify returns NTSTATUS arg0
 *   NOTIFY     starts a sender thread: arg0 messages of arg1 payload bytes each (first 8 bytes =
 *              sequence number, then the byte (sequence & 0xFF)); arg2 = kernel ReplyLength
 *              (0xFFFFFFFF = no reply buffer); arg3 = timeout in ms (0 = wait forever). A reply
 *              counts as matched when its first 8 bytes are the message's sequence number.
 *   STATS      output = the connection's stats (below), at once
 *   WAIT       waits for every sender thread of the connection, then output = stats
 *   DISCONNECT after arg0 ms, FltCloseClientPort on this connection (from another thread)
 *   CONTEXT    output = the connection context ConnectNotify received
 *   FLOOD      load generator (bench/): arg3 sender threads (1..64) that start together (a start
 *              barrier), each sending arg0 messages of arg1 payload bytes (first 8 bytes = thread
 *              index << 32 | sequence), arg2 = kernel ReplyLength (0xFFFFFFFF = fire and forget),
 *              no timeout; every FltSendMessage round trip is timed with QueryPerformanceCounter
 *              into the connection's latency histogram (reset by each FLOOD). Counts go to the
 *              stats as for NOTIFY; WAIT waits for these senders too. Returns at once.
 *   LATENCY    output = latency = { UINT64 count, elapsedNs (barrier release to the last sender's
 *              end), p50Ns, p99Ns, p999Ns, maxNs, minNs, meanNs }  (64 bytes; ~0.8% resolution)
 *   RAW        what a buggy driver can make a client read (FltEmuSendRawMessage): payload = a list of
 *              entries { UINT32 payloadBytes, replyLength }; one sender thread sends them in order,
 *              each with a FILTER_MESSAGE_HEADER written verbatim: ReplyLength = the entry's (any
 *              value, 1..15 and 0xFFFFFFFF included; no reply is waited for), MessageId =
 *              RAW_ID_BASE + sequence (0 when arg2 != 0), sequence = arg1 + the entry's index,
 *              payload stamped as for NOTIFY. arg0 = timeout in ms per message (0 = wait forever).
 *              Counts go to the stats as for NOTIFY (sent, timeouts, failures).
 *   DROP_OVERSIZED arg0 != 0: from now on a message that meets a read too small for it is dropped
 *              (its sender counts a failure) instead of waiting for a read that fits; for every
 *              connection of this kernel (FltEmuDropOversizedMessages).
 *   DELAY      MessageNotify returns after arg0 ms, or when the kernel stops: a send blocked in
 *              the kernel
 *   BLOCKED    waits until at least arg0 DELAY calls of this connection are in MessageNotify at
 *              once (or the kernel stops); output = UINT32 that count
 *
 *   stats = { UINT32 sent, replied, matched, timeouts, failures; INT32 lastStatus;
 *             UINT32 replyBytesLast, connections }  (32 bytes; connections = open right now)
 *
 * A connection context of exactly "refuse" makes ConnectNotify refuse with STATUS_ACCESS_DENIED.
 *
 * Usage: test-kernel.exe PORT_NAME [MAX_CONNECTIONS]. Prints "ready" once the port exists and
 * runs until its standard input closes.
 */
#include <fltKernel.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    OP_ECHO = 1,
    OP_FAIL = 2,
    OP_NOTIFY = 3,
    OP_STATS = 4,
    OP_WAIT = 5,
    OP_DISCONNECT = 6,
    OP_CONTEXT = 7,
    OP_FLOOD = 8,
    OP_LATENCY = 9,
    OP_RAW = 10,
    OP_DROP_OVERSIZED = 11,
    OP_DELAY = 12,
    OP_BLOCKED = 13
};

#define RAW_ID_BASE 0x10000000000ull

#define COMMAND_HEADER_BYTES 24
#define NO_REPLY_BUFFER 0xFFFFFFFFu
#define MAX_SENDERS 128
#define MAX_FLOOD_THREADS 64

/* Latency histogram: exact below 128 ns, then 64 sub-buckets per power of two. */
#define HIST_EXACT 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_EXACT + 58 * HIST_SUB)

typedef struct Stats {
    UINT32 sent, replied, matched, timeouts, failures;
    INT32 lastStatus;
    UINT32 replyBytesLast, connections;
} Stats;

typedef struct Connection {
    PFLT_PORT clientPort;
    CRITICAL_SECTION lock;
    Stats stats;
    HANDLE senders[MAX_SENDERS];
    int senderCount;
    BYTE *context;
    ULONG contextBytes;
    /* FLOOD latency, under lock */
    UINT32 *histogram;
    UINT64 latencyCount, latencySumNs, latencyMinNs, latencyMaxNs;
    LONGLONG floodStart, floodEnd;
    volatile LONG delaying; /* DELAY calls in MessageNotify */
} Connection;

typedef struct Flood {
    Connection *connection;
    HANDLE start;
    volatile LONG remaining;
    volatile LONG abandon;
    UINT32 count, payloadBytes, replyLength;
} Flood;

typedef struct FloodThread {
    Flood *flood;
    UINT32 index;
} FloodThread;

typedef struct Latency {
    UINT64 count, elapsedNs, p50Ns, p99Ns, p999Ns, maxNs, minNs, meanNs;
} Latency;

static LARGE_INTEGER g_qpcFrequency;

typedef struct Sender {
    Connection *connection;
    UINT32 count, payloadBytes, replyLength, timeoutMs, delayMs;
} Sender;

static PFLT_FILTER g_filter;
static volatile LONG g_connections;
static HANDLE g_stopping; /* set when standard input closes: DELAY and BLOCKED return */

static NTSTATUS FLTAPI OnConnect(PFLT_PORT clientPort, PVOID serverCookie, PVOID context, ULONG contextBytes,
                                 PVOID *connectionCookie) {
    UNREFERENCED_PARAMETER(serverCookie);
    if (contextBytes == 6 && context != NULL && memcmp(context, "refuse", 6) == 0) return STATUS_ACCESS_DENIED;
    Connection *connection = (Connection *)calloc(1, sizeof(Connection));
    if (connection == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    InitializeCriticalSection(&connection->lock);
    connection->clientPort = clientPort;
    if (contextBytes > 0) {
        connection->context = (BYTE *)malloc(contextBytes);
        if (connection->context == NULL) {
            DeleteCriticalSection(&connection->lock);
            free(connection);
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        memcpy(connection->context, context, contextBytes);
        connection->contextBytes = contextBytes;
    }
    InterlockedIncrement(&g_connections);
    *connectionCookie = connection;
    return STATUS_SUCCESS;
}

/* Returns once every sender of the connection has ended. A running sender stays in the list while
 * it is waited for (through a handle of the waiter's own), so that two WAITs at once both wait
 * for it: one that took it out would let the other return early with stats not yet counted. */
static void WaitForSenders(Connection *connection) {
    for (;;) {
        HANDLE running = NULL;
        EnterCriticalSection(&connection->lock);
        while (connection->senderCount > 0 &&
               WaitForSingleObject(connection->senders[connection->senderCount - 1], 0) == WAIT_OBJECT_0) {
            CloseHandle(connection->senders[--connection->senderCount]);
        }
        if (connection->senderCount > 0) {
            DuplicateHandle(GetCurrentProcess(), connection->senders[connection->senderCount - 1], GetCurrentProcess(),
                            &running, SYNCHRONIZE, FALSE, 0);
        }
        BOOL done = connection->senderCount == 0;
        LeaveCriticalSection(&connection->lock);
        if (done) return;
        if (running == NULL) {
            Sleep(1); /* no handle to spare: look again */
            continue;
        }
        WaitForSingleObject(running, INFINITE);
        CloseHandle(running);
    }
}

static VOID FLTAPI OnDisconnect(PVOID connectionCookie) {
    Connection *connection = (Connection *)connectionCookie;
    /* Senders fail fast once the client is gone; the scanner sample closes the port here too. */
    FltCloseClientPort(g_filter, &connection->clientPort);
    WaitForSenders(connection);
    InterlockedDecrement(&g_connections);
    DeleteCriticalSection(&connection->lock);
    free(connection->context);
    free(connection->histogram);
    free(connection);
}

/* Counts one FltSendMessage outcome in the connection's stats (caller holds its lock); TRUE when
 * the message was sent. */
static BOOL CountSendLocked(Connection *connection, NTSTATUS status) {
    connection->stats.lastStatus = status;
    if (status == STATUS_TIMEOUT) {
        connection->stats.timeouts++;
        return FALSE;
    }
    if (!NT_SUCCESS(status)) {
        connection->stats.failures++;
        return FALSE;
    }
    connection->stats.sent++;
    return TRUE;
}

static DWORD WINAPI SendNotifications(LPVOID parameter) {
    Sender *sender = (Sender *)parameter;
    Connection *connection = sender->connection;
    BYTE *message = (BYTE *)calloc(1, sender->payloadBytes < 8 ? 8 : sender->payloadBytes);
    BYTE *reply = (BYTE *)calloc(1, sender->replyLength == NO_REPLY_BUFFER || sender->replyLength < 8 ? 8
                                                                                                        : sender->replyLength);
    for (UINT32 sequence = 0; message != NULL && reply != NULL && sequence < sender->count; ++sequence) {
        UINT64 seq64 = sequence;
        memset(message, (int)(sequence & 0xFF), sender->payloadBytes);
        memcpy(message, &seq64, sender->payloadBytes < 8 ? sender->payloadBytes : 8);
        LARGE_INTEGER timeout;
        timeout.QuadPart = -(LONGLONG)sender->timeoutMs * 10000;
        ULONG replyLength = sender->replyLength == NO_REPLY_BUFFER ? 0 : sender->replyLength;
        memset(reply, 0, replyLength < 8 ? 8 : replyLength);
        NTSTATUS status = FltSendMessage(g_filter, &connection->clientPort, message, sender->payloadBytes,
                                         sender->replyLength == NO_REPLY_BUFFER ? NULL : reply,
                                         sender->replyLength == NO_REPLY_BUFFER ? NULL : &replyLength,
                                         sender->timeoutMs == 0 ? NULL : &timeout);
        EnterCriticalSection(&connection->lock);
        if (CountSendLocked(connection, status) && sender->replyLength != NO_REPLY_BUFFER) {
            UINT64 echoed = 0;
            memcpy(&echoed, reply, 8);
            connection->stats.replied++;
            connection->stats.replyBytesLast = replyLength;
            if (replyLength >= 8 && echoed == seq64) connection->stats.matched++;
        }
        LeaveCriticalSection(&connection->lock);
        if (status == STATUS_PORT_DISCONNECTED) break;
    }
    free(message);
    free(reply);
    free(sender);
    return 0;
}

typedef struct RawSender {
    Connection *connection;
    UINT32 timeoutMs, firstSequence, zeroId, entries;
    UINT32 script[]; /* entries x { payloadBytes, replyLength } */
} RawSender;

/* Sends the message a RAW entry describes; the same stamping as SendNotifications. */
static NTSTATUS SendRaw(RawSender *sender, UINT32 index, BYTE *message) {
    UINT32 payloadBytes = sender->script[2 * index];
    UINT64 sequence = (UINT64)sender->firstSequence + index;
    FILTER_MESSAGE_HEADER header;
    header.ReplyLength = sender->script[2 * index + 1];
    header.MessageId = sender->zeroId ? 0 : RAW_ID_BASE + sequence;
    memcpy(message, &header, sizeof header);
    memset(message + sizeof header, (int)(sequence & 0xFF), payloadBytes);
    memcpy(message + sizeof header, &sequence, payloadBytes < 8 ? payloadBytes : 8);
    LARGE_INTEGER timeout;
    timeout.QuadPart = -(LONGLONG)sender->timeoutMs * 10000;
    return FltEmuSendRawMessage(g_filter, &sender->connection->clientPort, message, (ULONG)sizeof header + payloadBytes,
                                sender->timeoutMs == 0 ? NULL : &timeout);
}

static DWORD WINAPI SendRawMessages(LPVOID parameter) {
    RawSender *sender = (RawSender *)parameter;
    Connection *connection = sender->connection;
    UINT32 largest = 0;
    for (UINT32 i = 0; i < sender->entries; ++i) {
        if (sender->script[2 * i] > largest) largest = sender->script[2 * i];
    }
    BYTE *message = (BYTE *)malloc(sizeof(FILTER_MESSAGE_HEADER) + (size_t)largest);
    for (UINT32 i = 0; message != NULL && i < sender->entries; ++i) {
        NTSTATUS status = SendRaw(sender, i, message);
        EnterCriticalSection(&connection->lock);
        CountSendLocked(connection, status);
        LeaveCriticalSection(&connection->lock);
        if (status == STATUS_PORT_DISCONNECTED) break;
    }
    free(message);
    free(sender);
    return 0;
}

static UINT64 TicksToNs(LONGLONG ticks) {
    return (UINT64)((double)ticks * 1e9 / (double)g_qpcFrequency.QuadPart);
}

static unsigned BucketOf(UINT64 ns) {
    if (ns < HIST_EXACT) return (unsigned)ns;
    unsigned msb = 0;
    for (UINT64 rest = ns; rest > 1; rest >>= 1) ++msb;
    unsigned shift = msb - 6; /* keeps 7 significant bits: mantissa 64..127 */
    unsigned index = HIST_EXACT + (shift - 1) * HIST_SUB + (unsigned)((ns >> shift) - HIST_SUB);
    return index < HIST_BUCKETS ? index : HIST_BUCKETS - 1;
}

/* The middle of a bucket, in ns. */
static UINT64 BucketValue(unsigned index) {
    if (index < HIST_EXACT) return index;
    unsigned shift = (index - HIST_EXACT) / HIST_SUB + 1;
    UINT64 mantissa = HIST_SUB + (index - HIST_EXACT) % HIST_SUB;
    return (mantissa << shift) + ((1ull << shift) >> 1);
}

static void FinishFlood(Flood *flood) {
    if (InterlockedDecrement(&flood->remaining) != 0) return;
    Connection *connection = flood->connection;
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    EnterCriticalSection(&connection->lock);
    connection->floodEnd = now.QuadPart;
    LeaveCriticalSection(&connection->lock);
    CloseHandle(flood->start);
    free(flood);
}

static DWORD WINAPI FloodSender(LPVOID parameter) {
    FloodThread *self = (FloodThread *)parameter;
    Flood *flood = self->flood;
    Connection *connection = flood->connection;
    UINT32 *histogram = (UINT32 *)calloc(HIST_BUCKETS, sizeof(UINT32));
    BYTE *message = (BYTE *)calloc(1, flood->payloadBytes < 8 ? 8 : flood->payloadBytes);
    BOOL noReply = flood->replyLength == NO_REPLY_BUFFER;
    BYTE *reply = (BYTE *)calloc(1, noReply || flood->replyLength < 8 ? 8 : flood->replyLength);
    Stats local = {0};
    UINT64 sumNs = 0, minNs = UINT64_MAX, maxNs = 0, timed = 0;
    WaitForSingleObject(flood->start, INFINITE);
    for (UINT32 sequence = 0; !flood->abandon && histogram && message && reply && sequence < flood->count; ++sequence) {
        UINT64 seq64 = ((UINT64)self->index << 32) | sequence;
        memset(message, (int)(sequence & 0xFF), flood->payloadBytes);
        memcpy(message, &seq64, flood->payloadBytes < 8 ? flood->payloadBytes : 8);
        ULONG replyLength = noReply ? 0 : flood->replyLength;
        LARGE_INTEGER before, after;
        QueryPerformanceCounter(&before);
        NTSTATUS status = FltSendMessage(g_filter, &connection->clientPort, message, flood->payloadBytes,
                                         noReply ? NULL : reply, noReply ? NULL : &replyLength, NULL);
        QueryPerformanceCounter(&after);
        local.lastStatus = status;
        if (!NT_SUCCESS(status)) {
            local.failures++;
            if (status == STATUS_PORT_DISCONNECTED) break;
            continue;
        }
        UINT64 ns = TicksToNs(after.QuadPart - before.QuadPart);
        histogram[BucketOf(ns)]++;
        timed++;
        sumNs += ns;
        if (ns < minNs) minNs = ns;
        if (ns > maxNs) maxNs = ns;
        local.sent++;
        if (!noReply) {
            UINT64 echoed = 0;
            memcpy(&echoed, reply, 8);
            local.replied++;
            local.replyBytesLast = replyLength;
            if (replyLength >= 8 && echoed == seq64) local.matched++;
        }
    }
    EnterCriticalSection(&connection->lock);
    connection->stats.sent += local.sent;
    connection->stats.replied += local.replied;
    connection->stats.matched += local.matched;
    connection->stats.failures += local.failures;
    if (local.sent + local.failures > 0) connection->stats.lastStatus = local.lastStatus;
    if (local.replied > 0) connection->stats.replyBytesLast = local.replyBytesLast;
    if (connection->histogram != NULL && histogram != NULL) {
        for (unsigned i = 0; i < HIST_BUCKETS; ++i) connection->histogram[i] += histogram[i];
    }
    connection->latencyCount += timed;
    connection->latencySumNs += sumNs;
    if (timed > 0 && minNs < connection->latencyMinNs) connection->latencyMinNs = minNs;
    if (maxNs > connection->latencyMaxNs) connection->latencyMaxNs = maxNs;
    LeaveCriticalSection(&connection->lock);
    free(histogram);
    free(message);
    free(reply);
    FinishFlood(flood);
    free(self);
    return 0;
}

static NTSTATUS StartFlood(Connection *connection, const UINT32 *command) {
    UINT32 threads = command[4];
    if (threads < 1 || threads > MAX_FLOOD_THREADS) return STATUS_INVALID_PARAMETER;
    EnterCriticalSection(&connection->lock);
    BOOL room = connection->senderCount + (int)threads <= MAX_SENDERS;
    if (room) {
        if (connection->histogram == NULL) connection->histogram = (UINT32 *)calloc(HIST_BUCKETS, sizeof(UINT32));
        if (connection->histogram != NULL) memset(connection->histogram, 0, HIST_BUCKETS * sizeof(UINT32));
        connection->latencyCount = connection->latencySumNs = connection->latencyMaxNs = 0;
        connection->latencyMinNs = UINT64_MAX;
        connection->floodStart = connection->floodEnd = 0;
    }
    LeaveCriticalSection(&connection->lock);
    if (!room) return STATUS_INSUFFICIENT_RESOURCES;
    Flood *flood = (Flood *)calloc(1, sizeof(Flood));
    if (flood == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    flood->connection = connection;
    flood->count = command[1];
    flood->payloadBytes = command[2];
    flood->replyLength = command[3];
    flood->remaining = (LONG)threads;
    flood->start = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (flood->start == NULL) {
        free(flood);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    UINT32 started = 0;
    for (; started < threads; ++started) {
        FloodThread *self = (FloodThread *)calloc(1, sizeof(FloodThread));
        HANDLE thread = self == NULL ? NULL : CreateThread(NULL, 0, FloodSender, self, CREATE_SUSPENDED, NULL);
        if (thread == NULL) {
            free(self);
            break;
        }
        self->flood = flood;
        self->index = started;
        EnterCriticalSection(&connection->lock);
        connection->senders[connection->senderCount++] = thread;
        LeaveCriticalSection(&connection->lock);
        ResumeThread(thread);
    }
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    EnterCriticalSection(&connection->lock);
    connection->floodStart = now.QuadPart;
    LeaveCriticalSection(&connection->lock);
    if (started < threads) {
        flood->abandon = 1;
        SetEvent(flood->start);
        /* threads never started count as finished */
        for (UINT32 i = started; i < threads; ++i) FinishFlood(flood);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    SetEvent(flood->start);
    return STATUS_SUCCESS;
}

static Latency LatencyOf(Connection *connection) {
    Latency latency = {0};
    EnterCriticalSection(&connection->lock);
    latency.count = connection->latencyCount;
    if (connection->floodEnd > connection->floodStart) latency.elapsedNs = TicksToNs(connection->floodEnd - connection->floodStart);
    if (latency.count > 0 && connection->histogram != NULL) {
        latency.minNs = connection->latencyMinNs;
        latency.maxNs = connection->latencyMaxNs;
        latency.meanNs = connection->latencySumNs / latency.count;
        const double quantiles[3] = {0.5, 0.99, 0.999};
        UINT64 *out[3] = {&latency.p50Ns, &latency.p99Ns, &latency.p999Ns};
        int q = 0;
        UINT64 seen = 0;
        for (unsigned i = 0; i < HIST_BUCKETS && q < 3; ++i) {
            seen += connection->histogram[i];
            while (q < 3 && (double)seen >= quantiles[q] * (double)latency.count) {
                UINT64 value = BucketValue(i);
                if (value > latency.maxNs) value = latency.maxNs;
                if (value < latency.minNs) value = latency.minNs;
                *out[q++] = value;
            }
        }
    }
    LeaveCriticalSection(&connection->lock);
    return latency;
}

static DWORD WINAPI DisconnectLater(LPVOID parameter) {
    Sender *request = (Sender *)parameter;
    Sleep(request->delayMs);
    FltCloseClientPort(g_filter, &request->connection->clientPort);
    free(request);
    return 0;
}

static NTSTATUS StartThread(Connection *connection, LPTHREAD_START_ROUTINE routine, void *parameter, BOOL track) {
    HANDLE thread = CreateThread(NULL, 0, routine, parameter, 0, NULL);
    if (thread == NULL) {
        free(parameter);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    if (!track) {
        CloseHandle(thread);
        return STATUS_SUCCESS;
    }
    EnterCriticalSection(&connection->lock);
    if (connection->senderCount < MAX_SENDERS) {
        connection->senders[connection->senderCount++] = thread;
        thread = NULL;
    }
    LeaveCriticalSection(&connection->lock);
    if (thread != NULL) { /* too many at once: wait for this one here */
        WaitForSingleObject(thread, INFINITE);
        CloseHandle(thread);
    }
    return STATUS_SUCCESS;
}

static ULONG CopyOut(PVOID output, ULONG outputBytes, const void *data, ULONG bytes) {
    ULONG copied = bytes < outputBytes ? bytes : outputBytes;
    if (copied > 0) memcpy(output, data, copied);
    return copied;
}

static NTSTATUS FLTAPI OnMessage(PVOID connectionCookie, PVOID input, ULONG inputBytes, PVOID output,
                                 ULONG outputBytes, PULONG returned) {
    Connection *connection = (Connection *)connectionCookie;
    UINT32 command[6];
    *returned = 0;
    if (input == NULL || inputBytes < COMMAND_HEADER_BYTES) return STATUS_INVALID_PARAMETER;
    memcpy(command, input, sizeof(command));
    const BYTE *payload = (const BYTE *)input + COMMAND_HEADER_BYTES;
    ULONG payloadBytes = inputBytes - COMMAND_HEADER_BYTES;
    Stats snapshot;

    switch (command[0]) {
        case OP_ECHO:
            *returned = CopyOut(output, outputBytes, payload, payloadBytes);
            return STATUS_SUCCESS;
        case OP_FAIL:
            return (NTSTATUS)command[1];
        case OP_NOTIFY: {
            Sender *sender = (Sender *)calloc(1, sizeof(Sender));
            if (sender == NULL) return STATUS_INSUFFICIENT_RESOURCES;
            sender->connection = connection;
            sender->count = command[1];
            sender->payloadBytes = command[2];
            sender->replyLength = command[3];
            sender->timeoutMs = command[4];
            return StartThread(connection, SendNotifications, sender, TRUE);
        }
        case OP_WAIT:
            WaitForSenders(connection);
            /* fall through */
        case OP_STATS:
            EnterCriticalSection(&connection->lock);
            snapshot = connection->stats;
            LeaveCriticalSection(&connection->lock);
            snapshot.connections = (UINT32)g_connections;
            *returned = CopyOut(output, outputBytes, &snapshot, sizeof(snapshot));
            return STATUS_SUCCESS;
        case OP_DISCONNECT: {
            Sender *request = (Sender *)calloc(1, sizeof(Sender));
            if (request == NULL) return STATUS_INSUFFICIENT_RESOURCES;
            request->connection = connection;
            request->delayMs = command[1];
            return StartThread(connection, DisconnectLater, request, FALSE);
        }
        case OP_CONTEXT:
            *returned = CopyOut(output, outputBytes, connection->context, connection->contextBytes);
            return STATUS_SUCCESS;
        case OP_FLOOD:
            return StartFlood(connection, command);
        case OP_DROP_OVERSIZED:
            FltEmuDropOversizedMessages(g_filter, command[1] != 0);
            return STATUS_SUCCESS;
        case OP_RAW: {
            UINT32 entries = payloadBytes / 8;
            for (UINT32 i = 0; i < entries; ++i) {
                UINT32 bytes;
                memcpy(&bytes, payload + 8 * i, sizeof bytes);
                if (bytes > 0x7FFFFFF0u - sizeof(FILTER_MESSAGE_HEADER)) return STATUS_INVALID_PARAMETER;
            }
            RawSender *sender = (RawSender *)malloc(sizeof(RawSender) + (size_t)entries * 8);
            if (sender == NULL) return STATUS_INSUFFICIENT_RESOURCES;
            sender->connection = connection;
            sender->timeoutMs = command[1];
            sender->firstSequence = command[2];
            sender->zeroId = command[3];
            sender->entries = entries;
            memcpy(sender->script, payload, (size_t)entries * 8);
            return StartThread(connection, SendRawMessages, sender, TRUE);
        }
        case OP_LATENCY: {
            Latency latency = LatencyOf(connection);
            *returned = CopyOut(output, outputBytes, &latency, sizeof(latency));
            return STATUS_SUCCESS;
        }
        case OP_DELAY:
            InterlockedIncrement(&connection->delaying);
            WaitForSingleObject(g_stopping, command[1]);
            InterlockedDecrement(&connection->delaying);
            return STATUS_SUCCESS;
        case OP_BLOCKED: {
            UINT32 count;
            while ((count = (UINT32)connection->delaying) < command[1] && WaitForSingleObject(g_stopping, 10) == WAIT_TIMEOUT) {
            }
            *returned = CopyOut(output, outputBytes, &count, sizeof(count));
            return STATUS_SUCCESS;
        }
        default:
            return STATUS_INVALID_PARAMETER;
    }
}

int wmain(int argc, wchar_t **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test-kernel PORT_NAME [MAX_CONNECTIONS]\n");
        return 2;
    }
    LONG maxConnections = argc > 2 ? (LONG)_wtoi(argv[2]) : 8;
    QueryPerformanceFrequency(&g_qpcFrequency);
    g_stopping = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (g_stopping == NULL) {
        fprintf(stderr, "CreateEventW failed: %lu\n", (unsigned long)GetLastError());
        return 1;
    }
    NTSTATUS status = FltEmuCreateFilter(&g_filter);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "FltEmuCreateFilter failed: 0x%08lX\n", (unsigned long)status);
        return 1;
    }
    PSECURITY_DESCRIPTOR descriptor = NULL;
    status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "FltBuildDefaultSecurityDescriptor failed: 0x%08lX\n", (unsigned long)status);
        return 1;
    }
    UNICODE_STRING name;
    RtlInitUnicodeString(&name, argv[1]);
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &name, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, descriptor);
    PFLT_PORT serverPort = NULL;
    status = FltCreateCommunicationPort(g_filter, &serverPort, &attributes, NULL, OnConnect, OnDisconnect, OnMessage,
                                        maxConnections);
    FltFreeSecurityDescriptor(descriptor);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "FltCreateCommunicationPort failed: 0x%08lX\n", (unsigned long)status);
        return 1;
    }
    printf("ready\n");
    fflush(stdout);

    char sink[256];
    DWORD read;
    HANDLE input = GetStdHandle(STD_INPUT_HANDLE);
    while (ReadFile(input, sink, sizeof(sink), &read, NULL) && read > 0) {
    }
    SetEvent(g_stopping);
    FltCloseCommunicationPort(serverPort);
    FltEmuUnregisterFilter(g_filter);
    return 0;
}
