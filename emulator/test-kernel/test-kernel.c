/*
 * test-kernel.sys: a scriptable minifilter for testing user-mode clients (fltport's own suites and
 * bench use it; so can anyone testing an agent). It creates one communication port and obeys
 * commands that the client sends through FilterSendMessage itself:
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
 *              no timeout; every FltSendMessage round trip is timed with KeQueryPerformanceCounter
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
 *              Emulator only: STATUS_NOT_SUPPORTED on the real filter manager.
 *   DROP_OVERSIZED arg0 != 0: from now on a message that meets a read too small for it is dropped
 *              (its sender counts a failure) instead of waiting for a read that fits; for every
 *              connection of this kernel (FltEmuDropOversizedMessages). Emulator only, as RAW.
 *   DELAY      MessageNotify returns after arg0 ms, or when the kernel stops: a send blocked in
 *              the kernel
 *   BLOCKED    waits until at least arg0 DELAY calls of this connection have entered
 *              MessageNotify since it connected (or the kernel stops); output = UINT32 how many are in it now: all
 *              of them when their delays outlast their arrival, and never a wait for ever when
 *              the first end before the last arrive
 *
 *   stats = { UINT32 sent, replied, matched, timeouts, failures; INT32 lastStatus;
 *             UINT32 replyBytesLast, connections }  (32 bytes; connections = open right now)
 *
 * A connection context of exactly "refuse" makes ConnectNotify refuse with STATUS_ACCESS_DENIED.
 *
 * Parameters (the service's Parameters key; emulator/test-kernel/test-kernel.js writes them):
 *   PortName        REG_SZ     the port's name, e.g. \FltportTest-1
 *   MaxConnections  REG_DWORD  (default 8)
 * Unloading it (sc stop) closes the port and unregisters the filter: every client is
 * disconnected, DELAY and BLOCKED calls return, every sender thread has ended.
 *
 * One source for the emulator (mingw-w64, emulator/kernel/fltKernel.h, Wine) and the WDK.
 */
/* ExAllocatePoolZero on Windows 10 before 2004 (the WDK's down-level inline helper). */
#define POOL_ZERO_DOWN_LEVEL_SUPPORT
#include <fltKernel.h>
#ifdef FLTEMU
#include <fltEmu.h>
#endif

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
#define DEFAULT_MAX_CONNECTIONS 8
#define TEST_KERNEL_TAG 'nKsT'

/* Latency histogram: exact below 128 ns, then 64 sub-buckets per power of two. */
#define HIST_EXACT 128
#define HIST_SUB 64
#define HIST_BUCKETS (HIST_EXACT + 58 * HIST_SUB)

typedef struct STATS {
    UINT32 sent, replied, matched, timeouts, failures;
    INT32 lastStatus;
    UINT32 replyBytesLast, connections;
} STATS;

/* A thread the driver started. Waited for through a kernel handle (Wine 8 mishandles references
 * to thread objects: ObReferenceObjectByHandle on a thread handle leads to a crash once the
 * thread ends); shared by the connection's list and whoever waits for it. */
typedef struct SENDER_THREAD {
    HANDLE handle;
    volatile LONG references;
} SENDER_THREAD;

typedef struct CONNECTION {
    PFLT_PORT clientPort;
    FAST_MUTEX lock; /* taken with LockConnection(): stays at PASSIVE_LEVEL for the Zw calls */
    KEVENT closing;  /* set by DisconnectNotify: a pending DISCONNECT ends at once */
    STATS stats;
    SENDER_THREAD *senders[MAX_SENDERS];
    int senderCount;
    UCHAR *context;
    ULONG contextBytes;
    /* FLOOD latency, under lock */
    UINT32 *histogram;
    UINT64 latencyCount, latencySumNs, latencyMinNs, latencyMaxNs;
    LONGLONG floodStart, floodEnd;
    volatile LONG delaying;       /* DELAY calls in MessageNotify */
    volatile LONG delaysEntered;  /* DELAY calls that have entered MessageNotify */
} CONNECTION;

typedef struct FLOOD {
    CONNECTION *connection;
    KEVENT start;
    volatile LONG remaining;
    volatile LONG abandon;
    UINT32 count, payloadBytes, replyLength;
} FLOOD;

typedef struct FLOOD_THREAD {
    FLOOD *flood;
    UINT32 index;
} FLOOD_THREAD;

typedef struct LATENCY {
    UINT64 count, elapsedNs, p50Ns, p99Ns, p999Ns, maxNs, minNs, meanNs;
} LATENCY;

typedef struct SENDER {
    CONNECTION *connection;
    UINT32 count, payloadBytes, replyLength, timeoutMs, delayMs;
} SENDER;

typedef struct RAW_SENDER {
    CONNECTION *connection;
    UINT32 timeoutMs, firstSequence, zeroId, entries;
    UINT32 script[1]; /* entries x { payloadBytes, replyLength } */
} RAW_SENDER;

DRIVER_INITIALIZE DriverEntry;

static PFLT_FILTER g_filter;
static PFLT_PORT g_serverPort;
static UNICODE_STRING g_portName;
static LARGE_INTEGER g_qpcFrequency;
static volatile LONG g_connections;
static KEVENT g_stopping; /* set when the driver unloads: DELAY and BLOCKED return */

static VOID LockConnection(CONNECTION *connection) {
    KeEnterCriticalRegion();
    ExAcquireFastMutexUnsafe(&connection->lock);
}

static VOID UnlockConnection(CONNECTION *connection) {
    ExReleaseFastMutexUnsafe(&connection->lock);
    KeLeaveCriticalRegion();
}

static PVOID Allocate(SIZE_T bytes) {
    return ExAllocatePoolZero(NonPagedPoolNx, bytes, TEST_KERNEL_TAG);
}

static VOID Free(PVOID memory) {
    if (memory != NULL) ExFreePoolWithTag(memory, TEST_KERNEL_TAG);
}

/* A relative timeout of `ms` milliseconds for the Ke* waits and FltSendMessage. */
static LARGE_INTEGER RelativeMs(UINT32 ms) {
    LARGE_INTEGER timeout;
    timeout.QuadPart = -(LONGLONG)ms * 10000;
    return timeout;
}

static NTSTATUS FLTAPI OnConnect(PFLT_PORT clientPort, PVOID serverCookie, PVOID context, ULONG contextBytes,
                                 PVOID *connectionCookie) {
    UNREFERENCED_PARAMETER(serverCookie);
    if (contextBytes == 6 && context != NULL && RtlCompareMemory(context, "refuse", 6) == 6) return STATUS_ACCESS_DENIED;
    CONNECTION *connection = (CONNECTION *)Allocate(sizeof(CONNECTION));
    if (connection == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    ExInitializeFastMutex(&connection->lock);
    KeInitializeEvent(&connection->closing, NotificationEvent, FALSE);
    connection->clientPort = clientPort;
    if (contextBytes > 0 && context != NULL) {
        connection->context = (UCHAR *)Allocate(contextBytes);
        if (connection->context == NULL) {
            Free(connection);
            return STATUS_INSUFFICIENT_RESOURCES;
        }
        RtlCopyMemory(connection->context, context, contextBytes);
        connection->contextBytes = contextBytes;
    }
    InterlockedIncrement(&g_connections);
    *connectionCookie = connection;
    return STATUS_SUCCESS;
}

static BOOLEAN ThreadEnded(SENDER_THREAD *thread) {
    LARGE_INTEGER now = {0};
    return ZwWaitForSingleObject(thread->handle, FALSE, &now) == STATUS_SUCCESS;
}

static VOID WaitForThread(SENDER_THREAD *thread) {
    ZwWaitForSingleObject(thread->handle, FALSE, NULL);
}

static VOID ReleaseThread(SENDER_THREAD *thread) {
    if (InterlockedDecrement(&thread->references) != 0) return;
    ZwClose(thread->handle);
    Free(thread);
}

/* Returns once every sender of the connection has ended. A running sender stays in the list while
 * it is waited for (through a reference of the waiter's own), so that two WAITs at once both wait
 * for it: one that took it out would let the other return early with stats not yet counted. */
static VOID WaitForSenders(CONNECTION *connection) {
    for (;;) {
        SENDER_THREAD *running = NULL;
        LockConnection(connection);
        while (connection->senderCount > 0 && ThreadEnded(connection->senders[connection->senderCount - 1])) {
            ReleaseThread(connection->senders[--connection->senderCount]);
        }
        if (connection->senderCount > 0) {
            running = connection->senders[connection->senderCount - 1];
            InterlockedIncrement(&running->references);
        }
        UnlockConnection(connection);
        if (running == NULL) return;
        WaitForThread(running);
        ReleaseThread(running);
    }
}

static VOID FLTAPI OnDisconnect(PVOID connectionCookie) {
    CONNECTION *connection = (CONNECTION *)connectionCookie;
    /* Senders fail fast once the client is gone; the scanner sample closes the port here too. */
    FltCloseClientPort(g_filter, &connection->clientPort);
    KeSetEvent(&connection->closing, IO_NO_INCREMENT, FALSE);
    WaitForSenders(connection);
    InterlockedDecrement(&g_connections);
    Free(connection->context);
    Free(connection->histogram);
    Free(connection);
}

/* Counts one FltSendMessage outcome in the connection's stats (caller holds its lock); TRUE when
 * the message was sent. */
static BOOLEAN CountSendLocked(CONNECTION *connection, NTSTATUS status) {
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

/* Fills a message's payload: the byte (sequence & 0xFF), the first 8 bytes = `stamp`. */
static VOID Stamp(UCHAR *payload, UINT32 payloadBytes, UINT32 sequence, UINT64 stamp) {
    RtlFillMemory(payload, payloadBytes, (UCHAR)(sequence & 0xFF));
    RtlCopyMemory(payload, &stamp, payloadBytes < 8 ? payloadBytes : 8);
}

static VOID SendNotifications(PVOID parameter) {
    SENDER *sender = (SENDER *)parameter;
    CONNECTION *connection = sender->connection;
    BOOLEAN noReply = sender->replyLength == NO_REPLY_BUFFER;
    UCHAR *message = (UCHAR *)Allocate(sender->payloadBytes < 8 ? 8 : sender->payloadBytes);
    UCHAR *reply = (UCHAR *)Allocate(noReply || sender->replyLength < 8 ? 8 : sender->replyLength);
    for (UINT32 sequence = 0; message != NULL && reply != NULL && sequence < sender->count; ++sequence) {
        UINT64 seq64 = sequence;
        Stamp(message, sender->payloadBytes, sequence, seq64);
        LARGE_INTEGER timeout = RelativeMs(sender->timeoutMs);
        ULONG replyLength = noReply ? 0 : sender->replyLength;
        RtlZeroMemory(reply, replyLength < 8 ? 8 : replyLength);
        NTSTATUS status = FltSendMessage(g_filter, &connection->clientPort, message, sender->payloadBytes,
                                         noReply ? NULL : reply, noReply ? NULL : &replyLength,
                                         sender->timeoutMs == 0 ? NULL : &timeout);
        LockConnection(connection);
        if (CountSendLocked(connection, status) && !noReply) {
            UINT64 echoed = 0;
            RtlCopyMemory(&echoed, reply, 8);
            connection->stats.replied++;
            connection->stats.replyBytesLast = replyLength;
            if (replyLength >= 8 && echoed == seq64) connection->stats.matched++;
        }
        UnlockConnection(connection);
        if (status == STATUS_PORT_DISCONNECTED) break;
    }
    Free(message);
    Free(reply);
    Free(sender);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

#ifdef FLTEMU
/* Sends the message a RAW entry describes; the same stamping as SendNotifications. */
static NTSTATUS SendRaw(RAW_SENDER *sender, UINT32 index, UCHAR *message) {
    UINT32 payloadBytes = sender->script[2 * index];
    UINT32 sequence = sender->firstSequence + index;
    FILTER_MESSAGE_HEADER header;
    header.ReplyLength = sender->script[2 * index + 1];
    header.MessageId = sender->zeroId ? 0 : RAW_ID_BASE + sequence;
    RtlCopyMemory(message, &header, sizeof header);
    Stamp(message + sizeof header, payloadBytes, sequence, (UINT64)sequence);
    LARGE_INTEGER timeout = RelativeMs(sender->timeoutMs);
    return FltEmuSendRawMessage(g_filter, &sender->connection->clientPort, message, (ULONG)sizeof header + payloadBytes,
                                sender->timeoutMs == 0 ? NULL : &timeout);
}

static VOID SendRawMessages(PVOID parameter) {
    RAW_SENDER *sender = (RAW_SENDER *)parameter;
    CONNECTION *connection = sender->connection;
    UINT32 largest = 0;
    for (UINT32 i = 0; i < sender->entries; ++i) {
        if (sender->script[2 * i] > largest) largest = sender->script[2 * i];
    }
    UCHAR *message = (UCHAR *)Allocate(sizeof(FILTER_MESSAGE_HEADER) + (SIZE_T)largest);
    for (UINT32 i = 0; message != NULL && i < sender->entries; ++i) {
        NTSTATUS status = SendRaw(sender, i, message);
        LockConnection(connection);
        CountSendLocked(connection, status);
        UnlockConnection(connection);
        if (status == STATUS_PORT_DISCONNECTED) break;
    }
    Free(message);
    Free(sender);
    PsTerminateSystemThread(STATUS_SUCCESS);
}
#endif

/* Integer arithmetic only: no floating point in kernel code. */
static UINT64 TicksToNs(LONGLONG ticks) {
    UINT64 frequency = (UINT64)g_qpcFrequency.QuadPart;
    UINT64 whole = (UINT64)ticks / frequency, rest = (UINT64)ticks % frequency;
    return whole * 1000000000ull + rest * 1000000000ull / frequency;
}

static ULONG BucketOf(UINT64 ns) {
    if (ns < HIST_EXACT) return (ULONG)ns;
    ULONG msb = 0;
    for (UINT64 rest = ns; rest > 1; rest >>= 1) ++msb;
    ULONG shift = msb - 6; /* keeps 7 significant bits: mantissa 64..127 */
    ULONG index = HIST_EXACT + (shift - 1) * HIST_SUB + (ULONG)((ns >> shift) - HIST_SUB);
    return index < HIST_BUCKETS ? index : HIST_BUCKETS - 1;
}

/* The middle of a bucket, in ns. */
static UINT64 BucketValue(ULONG index) {
    if (index < HIST_EXACT) return index;
    ULONG shift = (index - HIST_EXACT) / HIST_SUB + 1;
    UINT64 mantissa = HIST_SUB + (index - HIST_EXACT) % HIST_SUB;
    return (mantissa << shift) + ((1ull << shift) >> 1);
}

static VOID FinishFlood(FLOOD *flood) {
    if (InterlockedDecrement(&flood->remaining) != 0) return;
    CONNECTION *connection = flood->connection;
    LARGE_INTEGER now = KeQueryPerformanceCounter(NULL);
    LockConnection(connection);
    connection->floodEnd = now.QuadPart;
    UnlockConnection(connection);
    Free(flood);
}

static VOID FloodSender(PVOID parameter) {
    FLOOD_THREAD *self = (FLOOD_THREAD *)parameter;
    FLOOD *flood = self->flood;
    CONNECTION *connection = flood->connection;
    UINT32 *histogram = (UINT32 *)Allocate(HIST_BUCKETS * sizeof(UINT32));
    UCHAR *message = (UCHAR *)Allocate(flood->payloadBytes < 8 ? 8 : flood->payloadBytes);
    BOOLEAN noReply = flood->replyLength == NO_REPLY_BUFFER;
    UCHAR *reply = (UCHAR *)Allocate(noReply || flood->replyLength < 8 ? 8 : flood->replyLength);
    STATS local = {0};
    UINT64 sumNs = 0, minNs = MAXUINT64, maxNs = 0, timed = 0;
    KeWaitForSingleObject(&flood->start, Executive, KernelMode, FALSE, NULL);
    for (UINT32 sequence = 0; !flood->abandon && histogram && message && reply && sequence < flood->count; ++sequence) {
        UINT64 seq64 = ((UINT64)self->index << 32) | sequence;
        Stamp(message, flood->payloadBytes, sequence, seq64);
        ULONG replyLength = noReply ? 0 : flood->replyLength;
        LARGE_INTEGER before = KeQueryPerformanceCounter(NULL);
        NTSTATUS status = FltSendMessage(g_filter, &connection->clientPort, message, flood->payloadBytes,
                                         noReply ? NULL : reply, noReply ? NULL : &replyLength, NULL);
        LARGE_INTEGER after = KeQueryPerformanceCounter(NULL);
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
            RtlCopyMemory(&echoed, reply, 8);
            local.replied++;
            local.replyBytesLast = replyLength;
            if (replyLength >= 8 && echoed == seq64) local.matched++;
        }
    }
    LockConnection(connection);
    connection->stats.sent += local.sent;
    connection->stats.replied += local.replied;
    connection->stats.matched += local.matched;
    connection->stats.failures += local.failures;
    if (local.sent + local.failures > 0) connection->stats.lastStatus = local.lastStatus;
    if (local.replied > 0) connection->stats.replyBytesLast = local.replyBytesLast;
    if (connection->histogram != NULL && histogram != NULL) {
        for (ULONG i = 0; i < HIST_BUCKETS; ++i) connection->histogram[i] += histogram[i];
    }
    connection->latencyCount += timed;
    connection->latencySumNs += sumNs;
    if (timed > 0 && minNs < connection->latencyMinNs) connection->latencyMinNs = minNs;
    if (maxNs > connection->latencyMaxNs) connection->latencyMaxNs = maxNs;
    UnlockConnection(connection);
    Free(histogram);
    Free(message);
    Free(reply);
    FinishFlood(flood);
    Free(self);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

/* Adds a thread to the connection's senders; FALSE when the list is full. */
static BOOLEAN TrackSender(CONNECTION *connection, SENDER_THREAD *thread) {
    BOOLEAN tracked = FALSE;
    LockConnection(connection);
    if (connection->senderCount < MAX_SENDERS) {
        connection->senders[connection->senderCount++] = thread;
        tracked = TRUE;
    }
    UnlockConnection(connection);
    return tracked;
}

/* Starts a system thread running routine(parameter), which owns and frees `parameter`. Every
 * thread is one of the connection's senders, so that DisconnectNotify (and so unloading) waits
 * for it; with MAX_SENDERS running, the caller waits for this one. */
static NTSTATUS StartThread(CONNECTION *connection, PKSTART_ROUTINE routine, PVOID parameter) {
    SENDER_THREAD *thread = (SENDER_THREAD *)Allocate(sizeof(SENDER_THREAD));
    if (thread == NULL) {
        Free(parameter);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    /* A kernel handle: MessageNotify may run in the client's process (Windows). */
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, NULL, OBJ_KERNEL_HANDLE, NULL, NULL);
    NTSTATUS status = PsCreateSystemThread(&thread->handle, SYNCHRONIZE, &attributes, NULL, NULL, routine, parameter);
    if (!NT_SUCCESS(status)) {
        Free(thread);
        Free(parameter);
        return status;
    }
    thread->references = 1;
    if (!TrackSender(connection, thread)) {
        WaitForThread(thread);
        ReleaseThread(thread);
    }
    return STATUS_SUCCESS;
}

static NTSTATUS StartFlood(CONNECTION *connection, const UINT32 *command) {
    UINT32 threads = command[4];
    if (threads < 1 || threads > MAX_FLOOD_THREADS) return STATUS_INVALID_PARAMETER;
    LockConnection(connection);
    BOOLEAN room = connection->senderCount + (int)threads <= MAX_SENDERS;
    if (room) {
        if (connection->histogram == NULL) connection->histogram = (UINT32 *)Allocate(HIST_BUCKETS * sizeof(UINT32));
        if (connection->histogram != NULL) RtlZeroMemory(connection->histogram, HIST_BUCKETS * sizeof(UINT32));
        connection->latencyCount = connection->latencySumNs = connection->latencyMaxNs = 0;
        connection->latencyMinNs = MAXUINT64;
        connection->floodStart = connection->floodEnd = 0;
    }
    UnlockConnection(connection);
    if (!room) return STATUS_INSUFFICIENT_RESOURCES;
    FLOOD *flood = (FLOOD *)Allocate(sizeof(FLOOD));
    if (flood == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    flood->connection = connection;
    flood->count = command[1];
    flood->payloadBytes = command[2];
    flood->replyLength = command[3];
    flood->remaining = (LONG)threads;
    KeInitializeEvent(&flood->start, NotificationEvent, FALSE);
    UINT32 started = 0;
    for (; started < threads; ++started) {
        FLOOD_THREAD *self = (FLOOD_THREAD *)Allocate(sizeof(FLOOD_THREAD));
        if (self == NULL) break;
        self->flood = flood;
        self->index = started;
        if (!NT_SUCCESS(StartThread(connection, FloodSender, self))) break;
    }
    LARGE_INTEGER now = KeQueryPerformanceCounter(NULL);
    LockConnection(connection);
    connection->floodStart = now.QuadPart;
    UnlockConnection(connection);
    if (started < threads) {
        flood->abandon = 1;
        KeSetEvent(&flood->start, IO_NO_INCREMENT, FALSE);
        /* threads never started count as finished */
        for (UINT32 i = started; i < threads; ++i) FinishFlood(flood);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    KeSetEvent(&flood->start, IO_NO_INCREMENT, FALSE);
    return STATUS_SUCCESS;
}

static LATENCY LatencyOf(CONNECTION *connection) {
    LATENCY latency = {0};
    LockConnection(connection);
    latency.count = connection->latencyCount;
    if (connection->floodEnd > connection->floodStart) latency.elapsedNs = TicksToNs(connection->floodEnd - connection->floodStart);
    if (latency.count > 0 && connection->histogram != NULL) {
        latency.minNs = connection->latencyMinNs;
        latency.maxNs = connection->latencyMaxNs;
        latency.meanNs = connection->latencySumNs / latency.count;
        /* quantiles 0.5, 0.99, 0.999 as fractions of 1000 */
        const UINT64 perMille[3] = {500, 990, 999};
        UINT64 *out[3] = {&latency.p50Ns, &latency.p99Ns, &latency.p999Ns};
        int q = 0;
        UINT64 seen = 0;
        for (ULONG i = 0; i < HIST_BUCKETS && q < 3; ++i) {
            seen += connection->histogram[i];
            while (q < 3 && seen * 1000 >= perMille[q] * latency.count) {
                UINT64 value = BucketValue(i);
                if (value > latency.maxNs) value = latency.maxNs;
                if (value < latency.minNs) value = latency.minNs;
                *out[q++] = value;
            }
        }
    }
    UnlockConnection(connection);
    return latency;
}

static VOID DisconnectLater(PVOID parameter) {
    SENDER *request = (SENDER *)parameter;
    LARGE_INTEGER timeout = RelativeMs(request->delayMs);
    /* Ends at once when the client goes first (the connection is about to be freed). */
    if (KeWaitForSingleObject(&request->connection->closing, Executive, KernelMode, FALSE, &timeout) == STATUS_TIMEOUT) {
        FltCloseClientPort(g_filter, &request->connection->clientPort);
    }
    Free(request);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

/* Copies what fits of `bytes` into the caller's output buffer; returns the count copied. */
static ULONG CopyOut(PVOID output, ULONG outputBytes, const VOID *data, ULONG bytes) {
    ULONG copied = bytes < outputBytes ? bytes : outputBytes;
    if (copied > 0 && output != NULL) RtlCopyMemory(output, data, copied);
    return copied;
}

/* Starts a NOTIFY or DISCONNECT thread described by a SENDER. */
static NTSTATUS StartSender(CONNECTION *connection, const UINT32 *command, PKSTART_ROUTINE routine) {
    SENDER *sender = (SENDER *)Allocate(sizeof(SENDER));
    if (sender == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    sender->connection = connection;
    if (routine == DisconnectLater) {
        sender->delayMs = command[1];
    } else {
        sender->count = command[1];
        sender->payloadBytes = command[2];
        sender->replyLength = command[3];
        sender->timeoutMs = command[4];
    }
    return StartThread(connection, routine, sender);
}

#ifdef FLTEMU
static NTSTATUS StartRaw(CONNECTION *connection, const UINT32 *command, const UCHAR *payload, ULONG payloadBytes) {
    UINT32 entries = payloadBytes / 8;
    for (UINT32 i = 0; i < entries; ++i) {
        UINT32 bytes;
        RtlCopyMemory(&bytes, payload + 8 * i, sizeof bytes);
        if (bytes > 0x7FFFFFF0u - sizeof(FILTER_MESSAGE_HEADER)) return STATUS_INVALID_PARAMETER;
    }
    RAW_SENDER *sender = (RAW_SENDER *)Allocate(FIELD_OFFSET(RAW_SENDER, script) + (SIZE_T)entries * 8);
    if (sender == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    sender->connection = connection;
    sender->timeoutMs = command[1];
    sender->firstSequence = command[2];
    sender->zeroId = command[3];
    sender->entries = entries;
    RtlCopyMemory(sender->script, payload, (SIZE_T)entries * 8);
    return StartThread(connection, SendRawMessages, sender);
}
#endif

static NTSTATUS Delay(CONNECTION *connection, UINT32 ms) {
    LARGE_INTEGER timeout = RelativeMs(ms);
    /* In this order: a BLOCKED that sees this call entered also counts it as in. */
    InterlockedIncrement(&connection->delaying);
    InterlockedIncrement(&connection->delaysEntered);
    KeWaitForSingleObject(&g_stopping, Executive, KernelMode, FALSE, &timeout);
    InterlockedDecrement(&connection->delaying);
    return STATUS_SUCCESS;
}

static UINT32 WaitForDelays(CONNECTION *connection, UINT32 wanted) {
    LARGE_INTEGER pause = RelativeMs(10);
    while ((UINT32)connection->delaysEntered < wanted &&
           KeWaitForSingleObject(&g_stopping, Executive, KernelMode, FALSE, &pause) == STATUS_TIMEOUT) {
    }
    return (UINT32)connection->delaying;
}

/*
 * The commands. Input and output are the client's buffers: on Windows raw user-mode addresses
 * (hence __try), under Wine winedevice.exe's copies of them.
 */
static NTSTATUS FLTAPI OnMessage(PVOID connectionCookie, PVOID input, ULONG inputBytes, PVOID output,
                                 ULONG outputBytes, PULONG returned) {
    CONNECTION *connection = (CONNECTION *)connectionCookie;
    UINT32 command[6];
    NTSTATUS status = STATUS_SUCCESS;
    STATS snapshot;
    LATENCY latency;
    UINT32 count;
    *returned = 0;
    if (input == NULL || inputBytes < COMMAND_HEADER_BYTES) return STATUS_INVALID_PARAMETER;
    const UCHAR *payload = (const UCHAR *)input + COMMAND_HEADER_BYTES;
    ULONG payloadBytes = inputBytes - COMMAND_HEADER_BYTES;

    __try {
        RtlCopyMemory(command, input, sizeof(command));
        switch (command[0]) {
            case OP_ECHO:
                *returned = CopyOut(output, outputBytes, payload, payloadBytes);
                break;
            case OP_FAIL:
                status = (NTSTATUS)command[1];
                break;
            case OP_NOTIFY:
                status = StartSender(connection, command, SendNotifications);
                break;
            case OP_WAIT:
            case OP_STATS:
                if (command[0] == OP_WAIT) WaitForSenders(connection);
                LockConnection(connection);
                snapshot = connection->stats;
                UnlockConnection(connection);
                snapshot.connections = (UINT32)g_connections;
                *returned = CopyOut(output, outputBytes, &snapshot, sizeof(snapshot));
                break;
            case OP_DISCONNECT:
                status = StartSender(connection, command, DisconnectLater);
                break;
            case OP_CONTEXT:
                *returned = CopyOut(output, outputBytes, connection->context, connection->contextBytes);
                break;
            case OP_FLOOD:
                status = StartFlood(connection, command);
                break;
#ifdef FLTEMU
            case OP_DROP_OVERSIZED:
                FltEmuDropOversizedMessages(g_filter, command[1] != 0);
                break;
            case OP_RAW:
                status = StartRaw(connection, command, payload, payloadBytes);
                break;
#else
            case OP_DROP_OVERSIZED:
            case OP_RAW:
                status = STATUS_NOT_SUPPORTED;
                break;
#endif
            case OP_LATENCY:
                latency = LatencyOf(connection);
                *returned = CopyOut(output, outputBytes, &latency, sizeof(latency));
                break;
            case OP_DELAY:
                status = Delay(connection, command[1]);
                break;
            case OP_BLOCKED:
                count = WaitForDelays(connection, command[1]);
                *returned = CopyOut(output, outputBytes, &count, sizeof(count));
                break;
            default:
                status = STATUS_INVALID_PARAMETER;
                break;
        }
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        *returned = 0;
        status = GetExceptionCode();
    }
    return status;
}

/* Reads the value `name` of the open key into `info` (caller's buffer of `bytes`). */
static NTSTATUS QueryValue(HANDLE key, PCWSTR name, PKEY_VALUE_PARTIAL_INFORMATION info, ULONG bytes) {
    UNICODE_STRING valueName;
    ULONG needed = 0;
    RtlInitUnicodeString(&valueName, name);
    return ZwQueryValueKey(key, &valueName, KeyValuePartialInformation, info, bytes, &needed);
}

/* Takes PortName (into g_portName) and MaxConnections from the service's Parameters key. */
static NTSTATUS ReadParameters(PUNICODE_STRING registryPath, LONG *maxConnections) {
    static const WCHAR suffix[] = L"\\Parameters";
    UNICODE_STRING keyPath;
    keyPath.Length = 0;
    keyPath.MaximumLength = (USHORT)(registryPath->Length + sizeof(suffix));
    keyPath.Buffer = (PWCH)Allocate(keyPath.MaximumLength);
    if (keyPath.Buffer == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    RtlCopyUnicodeString(&keyPath, registryPath);
    RtlAppendUnicodeToString(&keyPath, suffix);
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &keyPath, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, NULL);
    HANDLE key = NULL;
    NTSTATUS status = ZwOpenKey(&key, KEY_READ, &attributes);
    Free(keyPath.Buffer);
    if (!NT_SUCCESS(status)) return status;

    /* Room for a name of 255 characters. */
    union {
        KEY_VALUE_PARTIAL_INFORMATION info;
        UCHAR bytes[sizeof(KEY_VALUE_PARTIAL_INFORMATION) + 512];
    } value;
    *maxConnections = DEFAULT_MAX_CONNECTIONS;
    status = QueryValue(key, L"MaxConnections", &value.info, sizeof(value));
    if (NT_SUCCESS(status) && value.info.Type == REG_DWORD && value.info.DataLength == sizeof(ULONG)) {
        RtlCopyMemory(maxConnections, value.info.Data, sizeof(LONG));
    }
    status = QueryValue(key, L"PortName", &value.info, sizeof(value));
    ZwClose(key);
    if (!NT_SUCCESS(status)) return status;
    if (value.info.Type != REG_SZ || value.info.DataLength < sizeof(WCHAR)) return STATUS_OBJECT_TYPE_MISMATCH;
    ULONG nameBytes = value.info.DataLength;
    while (nameBytes >= sizeof(WCHAR) && ((const WCHAR *)value.info.Data)[nameBytes / sizeof(WCHAR) - 1] == L'\0') {
        nameBytes -= (ULONG)sizeof(WCHAR);
    }
    if (nameBytes == 0) return STATUS_OBJECT_NAME_INVALID;
    g_portName.Buffer = (PWCH)Allocate(nameBytes);
    if (g_portName.Buffer == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    RtlCopyMemory(g_portName.Buffer, value.info.Data, nameBytes);
    g_portName.Length = g_portName.MaximumLength = (USHORT)nameBytes;
    return STATUS_SUCCESS;
}

static NTSTATUS FLTAPI Unload(FLT_FILTER_UNLOAD_FLAGS flags) {
    UNREFERENCED_PARAMETER(flags);
    KeSetEvent(&g_stopping, IO_NO_INCREMENT, FALSE);
    FltCloseCommunicationPort(g_serverPort);
    /* Disconnects every client: DisconnectNotify waits for each connection's threads. */
    FltUnregisterFilter(g_filter);
    Free(g_portName.Buffer);
    return STATUS_SUCCESS;
}

static const FLT_REGISTRATION g_registration = {
    sizeof(FLT_REGISTRATION), /* Size */
    FLT_REGISTRATION_VERSION, /* Version */
    0,                        /* Flags */
    NULL,                     /* ContextRegistration */
    NULL,                     /* OperationRegistration: no I/O is filtered */
    Unload,                   /* FilterUnloadCallback */
};

static NTSTATUS CreatePort(LONG maxConnections) {
    PSECURITY_DESCRIPTOR descriptor = NULL;
    NTSTATUS status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);
    if (!NT_SUCCESS(status)) return status;
    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &g_portName, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, descriptor);
    status = FltCreateCommunicationPort(g_filter, &g_serverPort, &attributes, NULL, OnConnect, OnDisconnect, OnMessage,
                                        maxConnections);
    FltFreeSecurityDescriptor(descriptor);
    return status;
}

NTSTATUS DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registryPath) {
    ExInitializeDriverRuntime(DrvRtPoolNxOptIn);
    KeQueryPerformanceCounter(&g_qpcFrequency);
    KeInitializeEvent(&g_stopping, NotificationEvent, FALSE);
    LONG maxConnections;
    NTSTATUS status = ReadParameters(registryPath, &maxConnections);
    if (!NT_SUCCESS(status)) return status;
    status = FltRegisterFilter(driver, &g_registration, &g_filter);
    if (NT_SUCCESS(status)) {
        status = CreatePort(maxConnections);
        if (NT_SUCCESS(status)) {
            status = FltStartFiltering(g_filter);
            if (!NT_SUCCESS(status)) FltCloseCommunicationPort(g_serverPort);
        }
        if (!NT_SUCCESS(status)) FltUnregisterFilter(g_filter);
    }
    if (!NT_SUCCESS(status)) Free(g_portName.Buffer);
    return status;
}
