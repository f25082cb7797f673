/*
 * The sample's communication port: connection checks, commands from agents, open notifications
 * and the verdicts that come back. Part of the driver with filter.c: built by the WDK, and here
 * against the emulator's kernel-mode fltKernel.h (emulator/kernel) as fltportsample.sys.
 *
 * Concurrency: up to FS_MAX_CONNECTIONS connections live in a fixed table guarded by one
 * shared/exclusive lock, which is never held across FltSendMessage (that waits for an agent).
 * A table entry stays reserved while sends use its client port variable, so a disconnect followed
 * by a new connection can never redirect a notification to the newcomer.
 *
 * The pre-create callback runs on every open in the system, so its cheap checks take no lock:
 * CommWantsOpens reads two counters, and the configuration is read as a sequence lock (SET_CONFIG,
 * the only writer, makes ConfigVersion odd while it rewrites Config; a reader that saw it odd or
 * changed reads again). An open that goes on to an agent takes the lock once, shared.
 */
#include <fltKernel.h>

#include "comm.h"

#define COMM_POOL_TAG 0x70537446u /* "FtSp" in pool dumps */

/* ---- the lock ------------------------------------------------------------------------------- */

/* FltAcquirePushLock* disable normal kernel APCs themselves: no KeEnterCriticalRegion needed. */
typedef EX_PUSH_LOCK COMM_LOCK;

static VOID CommLockInitialize(COMM_LOCK *Lock) { FltInitializePushLock(Lock); }
static VOID CommLockDelete(COMM_LOCK *Lock) { FltDeletePushLock(Lock); }
static VOID CommLockShared(COMM_LOCK *Lock) { FltAcquirePushLockShared(Lock); }
static VOID CommUnlockShared(COMM_LOCK *Lock) { FltReleasePushLock(Lock); }
static VOID CommLockExclusive(COMM_LOCK *Lock) { FltAcquirePushLockExclusive(Lock); }
static VOID CommUnlockExclusive(COMM_LOCK *Lock) { FltReleasePushLock(Lock); }

C_ASSERT(sizeof(FILTER_REPLY_HEADER) == FS_REPLY_HEADER_BYTES);

/* ---- state ----------------------------------------------------------------------------------- */

typedef enum _COMM_SLOT_STATE {
    COMM_SLOT_FREE,
    COMM_SLOT_OPEN,
    COMM_SLOT_CLOSING, /* disconnected, but a send still holds its client port variable */
} COMM_SLOT_STATE;

typedef struct _COMM_CONNECTION {
    /* Written by the filter manager's FltCloseClientPort, which synchronises it with FltSendMessage. */
    PFLT_PORT ClientPort;
    HANDLE ProcessId;
    UINT32 Flags;
    ULONG Index;
    volatile LONG State; /* COMM_SLOT_STATE */
    /* One for the open connection itself, one per FltSendMessage using ClientPort right now. Taken
     * only while the entry is OPEN (under the lock); whoever drops the last one frees the entry. */
    volatile LONG References;
} COMM_CONNECTION;

typedef struct _COMM_COUNTERS {
    volatile LONG64 OpensSeen;
    volatile LONG64 SelfSkipped;
    volatile LONG64 NotificationsSent;
    volatile LONG64 Replies;
    volatile LONG64 Denials;
    volatile LONG64 Timeouts;
    volatile LONG64 MalformedReplies;
    volatile LONG64 SendFailures;
    volatile LONG64 NoAgent;
    volatile LONG64 Connects;
    volatile LONG64 Refused;
    volatile LONG64 Disconnects;
    volatile LONG64 EventsSent;
    volatile LONG64 EventsDropped;
} COMM_COUNTERS;

static struct {
    PFLT_FILTER Filter;
    PFLT_PORT ServerPort;
    BOOLEAN Verbose;
    /* Guards the connection table (but ClientPort and References) and serialises SET_CONFIG. */
    COMM_LOCK Lock;
    /* Read without the lock on every create; written under the lock. */
    volatile LONG Agents;        /* connected agents */
    volatile LONG Enabled;       /* Config.Flags & FS_CONFIG_ENABLED */
    volatile LONG ConfigVersion; /* odd while SET_CONFIG rewrites Config */
    FS_CONFIG Config;
    UINT64 ChangeCount;
    COMM_CONNECTION Connections[FS_MAX_CONNECTIONS];
    volatile LONG NextAgent;
    volatile LONG64 NextSequence;
    COMM_COUNTERS Counters;
} g;

#define COMM_COUNT(Field) ((VOID)InterlockedIncrement64(&g.Counters.Field))
#define COMM_TRACE(...)                          \
    do {                                         \
        if (g.Verbose) DbgPrint(__VA_ARGS__);    \
    } while (0)

/* ---- declarations (for the pageable-code pragmas) ------------------------------------------ */

static NTSTATUS FLTAPI CommConnectNotify(PFLT_PORT ClientPort, PVOID ServerPortCookie, PVOID ConnectionContext,
                                         ULONG SizeOfContext, PVOID *ConnectionPortCookie);
static VOID FLTAPI CommDisconnectNotify(PVOID ConnectionCookie);
static NTSTATUS FLTAPI CommMessageNotify(PVOID PortCookie, PVOID InputBuffer, ULONG InputBufferLength,
                                         PVOID OutputBuffer, ULONG OutputBufferLength,
                                         PULONG ReturnOutputBufferLength);
static NTSTATUS CommPing(const UCHAR *Payload, UINT32 PayloadBytes, PVOID OutputBuffer, ULONG OutputBufferLength,
                         PULONG ReturnOutputBufferLength);
static NTSTATUS CommGetStats(PVOID OutputBuffer, ULONG OutputBufferLength, PULONG ReturnOutputBufferLength);
static NTSTATUS CommSetConfig(const UCHAR *Payload, UINT32 PayloadBytes, PVOID OutputBuffer,
                              ULONG OutputBufferLength, PULONG ReturnOutputBufferLength);
static VOID CommBroadcastConfig(const FS_CONFIG *Config, UINT64 ChangeCount);
static PCSTR CommOutcomeName(COMM_OUTCOME Outcome);

#ifdef ALLOC_PRAGMA
#pragma alloc_text(PAGE, CommStart)
#pragma alloc_text(PAGE, CommStop)
#pragma alloc_text(PAGE, CommCleanup)
#pragma alloc_text(PAGE, CommWantsOpens)
#pragma alloc_text(PAGE, CommIsWatchedName)
#pragma alloc_text(PAGE, CommCheckOpen)
#pragma alloc_text(PAGE, CommConnectNotify)
#pragma alloc_text(PAGE, CommDisconnectNotify)
#pragma alloc_text(PAGE, CommMessageNotify)
#pragma alloc_text(PAGE, CommPing)
#pragma alloc_text(PAGE, CommGetStats)
#pragma alloc_text(PAGE, CommSetConfig)
#pragma alloc_text(PAGE, CommBroadcastConfig)
#endif

/* ---- helpers --------------------------------------------------------------------------------- */

static BOOLEAN CommIsAligned(const VOID *Pointer, ULONG Alignment)
{
    return ((ULONG_PTR)Pointer & (Alignment - 1)) == 0;
}

/* FltSendMessage takes relative timeouts as negative counts of 100 ns. */
static LARGE_INTEGER CommRelativeTimeout(UINT32 Milliseconds)
{
    LARGE_INTEGER timeout;
    timeout.QuadPart = -(LONGLONG)Milliseconds * 10000;
    return timeout;
}

static VOID CommDefaultConfig(FS_CONFIG *Config)
{
    static const WCHAR suffix[] = FS_DEFAULT_SUFFIX;
    C_ASSERT(sizeof(suffix) - sizeof(WCHAR) <= sizeof(Config->Suffix));

    RtlZeroMemory(Config, sizeof *Config);
    Config->Flags = FS_CONFIG_ENABLED;
    Config->ReplyTimeoutMs = FS_DEFAULT_REPLY_TIMEOUT_MS;
    Config->SuffixBytes = sizeof(suffix) - sizeof(WCHAR);
    RtlCopyMemory(Config->Suffix, suffix, Config->SuffixBytes);
}

static NTSTATUS CommValidateConfig(const FS_CONFIG *Config)
{
    if ((Config->Flags & ~FS_CONFIG_VALID_FLAGS) != 0 || Config->Reserved != 0) return STATUS_INVALID_PARAMETER;
    if (Config->ReplyTimeoutMs < FS_MIN_REPLY_TIMEOUT_MS || Config->ReplyTimeoutMs > FS_MAX_REPLY_TIMEOUT_MS)
        return STATUS_INVALID_PARAMETER;
    if (Config->SuffixBytes == 0 || Config->SuffixBytes > sizeof(Config->Suffix) ||
        Config->SuffixBytes % sizeof(WCHAR) != 0)
        return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

/* A consistent copy of the configuration, without the lock (see the top of this file). */
static VOID CommReadConfig(FS_CONFIG *Config)
{
    for (;;) {
        LONG version = g.ConfigVersion;
        if ((version & 1) == 0) {
            KeMemoryBarrier();
            RtlCopyMemory(Config, &g.Config, sizeof *Config);
            KeMemoryBarrier();
            if (g.ConfigVersion == version) return;
        }
        YieldProcessor();
    }
}

VOID CommFileNamePart(PCUNICODE_STRING Path, PUNICODE_STRING FileName)
{
    USHORT chars = (USHORT)(Path->Length / sizeof(WCHAR));
    USHORT start = chars;
    USHORT end;

    while (start > 0 && Path->Buffer[start - 1] != L'\\') start--;
    for (end = start; end < chars && Path->Buffer[end] != L':'; end++) {
    }
    FileName->Buffer = Path->Buffer + start;
    FileName->Length = (USHORT)((end - start) * sizeof(WCHAR));
    FileName->MaximumLength = FileName->Length;
}

/* Case-insensitive, as file names are on the file systems the filter attaches to. The suffix ends
 * the file's name, not the path: "x.fltport-test:data" and "x.fltport-test::$DATA" name streams
 * of the watched file x.fltport-test and are watched too. */
static BOOLEAN CommSuffixMatches(PCUNICODE_STRING Path, const FS_CONFIG *Config)
{
    UNICODE_STRING fileName;
    ULONG nameChars;
    ULONG suffixChars = Config->SuffixBytes / (ULONG)sizeof(WCHAR);
    const WCHAR *tail;
    ULONG i;

    if (Path->Buffer == NULL) return FALSE;
    CommFileNamePart(Path, &fileName);
    nameChars = fileName.Length / (ULONG)sizeof(WCHAR);
    if (nameChars < suffixChars) return FALSE;
    tail = fileName.Buffer + (nameChars - suffixChars);
    for (i = 0; i < suffixChars; i++) {
        if (RtlUpcaseUnicodeChar(tail[i]) != RtlUpcaseUnicodeChar(Config->Suffix[i])) return FALSE;
    }
    return TRUE;
}

/* Caller holds g.Lock. */
static BOOLEAN CommIsAgentProcessLocked(HANDLE ProcessId)
{
    ULONG i;
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) {
        const COMM_CONNECTION *connection = &g.Connections[i];
        if (connection->State == COMM_SLOT_OPEN && (connection->Flags & FS_CONNECT_AGENT) != 0 &&
            connection->ProcessId == ProcessId)
            return TRUE;
    }
    return FALSE;
}

/* Picks the next agent in turn and takes a reference on its table entry for one send; NULL when
 * none is open. Spreading opens over the agents lets several agent processes share the load.
 * Caller holds g.Lock (shared is enough: References is interlocked). */
static COMM_CONNECTION *CommAcquireAgentLocked(VOID)
{
    ULONG start = (ULONG)InterlockedIncrement(&g.NextAgent);
    ULONG i;

    for (i = 0; i < FS_MAX_CONNECTIONS; i++) {
        COMM_CONNECTION *connection = &g.Connections[(start + i) % FS_MAX_CONNECTIONS];
        if (connection->State == COMM_SLOT_OPEN && (connection->Flags & FS_CONNECT_AGENT) != 0) {
            InterlockedIncrement(&connection->References);
            return connection;
        }
    }
    return NULL;
}

/* No lock: once an entry is CLOSING nobody takes a new reference, so the last one is final. */
static VOID CommReleaseConnection(COMM_CONNECTION *Connection)
{
    if (InterlockedDecrement(&Connection->References) == 0) (VOID)InterlockedExchange(&Connection->State, COMM_SLOT_FREE);
}

/* ---- connections ----------------------------------------------------------------------------- */

static NTSTATUS CommCheckContext(const VOID *Context, ULONG SizeOfContext, FS_CONNECT_CONTEXT *Checked)
{
    if (Context == NULL || SizeOfContext != sizeof *Checked) return STATUS_INVALID_PARAMETER;
    RtlCopyMemory(Checked, Context, sizeof *Checked);
    if (Checked->Magic != FS_CONTEXT_MAGIC) return STATUS_INVALID_PARAMETER;
    if (Checked->Version != FS_PROTOCOL_VERSION) return STATUS_REVISION_MISMATCH;
    if ((Checked->Flags & ~FS_CONNECT_VALID_FLAGS) != 0 || Checked->Reserved != 0) return STATUS_INVALID_PARAMETER;
    return STATUS_SUCCESS;
}

static NTSTATUS FLTAPI CommConnectNotify(PFLT_PORT ClientPort, PVOID ServerPortCookie, PVOID ConnectionContext,
                                         ULONG SizeOfContext, PVOID *ConnectionPortCookie)
{
    FS_CONNECT_CONTEXT context;
    COMM_CONNECTION *connection = NULL;
    NTSTATUS status;
    ULONG i;

    PAGED_CODE();
    UNREFERENCED_PARAMETER(ServerPortCookie);
    *ConnectionPortCookie = NULL;

    /* The context is the filter manager's captured copy (it travels in the create request's
     * extended attributes), not a user address; only its size needs checking before the read. */
    status = CommCheckContext(ConnectionContext, SizeOfContext, &context);
    if (!NT_SUCCESS(status)) {
        COMM_COUNT(Refused);
        COMM_TRACE("fltport-sample: refused a connection (context of %lu bytes): 0x%08lX\n", SizeOfContext,
                   (ULONG)status);
        return status;
    }

    CommLockExclusive(&g.Lock);
    for (i = 0; i < FS_MAX_CONNECTIONS && connection == NULL; i++) {
        if (g.Connections[i].State == COMM_SLOT_FREE) connection = &g.Connections[i];
    }
    if (connection != NULL) {
        connection->ClientPort = ClientPort;
        /* ConnectNotify runs in the connecting process: this is the agent whose own opens are skipped. */
        connection->ProcessId = PsGetCurrentProcessId();
        connection->Flags = context.Flags;
        connection->References = 1;
        connection->State = COMM_SLOT_OPEN;
        if ((context.Flags & FS_CONNECT_AGENT) != 0) InterlockedIncrement(&g.Agents);
    }
    CommUnlockExclusive(&g.Lock);

    /* MaxConnections equals the table size, so this only happens while a disconnected entry
     * waits for its last send to return: a transient condition the agent can retry. */
    if (connection == NULL) {
        COMM_COUNT(Refused);
        return STATUS_CONNECTION_COUNT_LIMIT;
    }
    COMM_COUNT(Connects);
    COMM_TRACE("fltport-sample: connect #%lu pid=%p %s\n", connection->Index, connection->ProcessId,
               (context.Flags & FS_CONNECT_AGENT) != 0 ? "agent" : "control");
    *ConnectionPortCookie = connection;
    return STATUS_SUCCESS;
}

static VOID FLTAPI CommDisconnectNotify(PVOID ConnectionCookie)
{
    COMM_CONNECTION *connection = (COMM_CONNECTION *)ConnectionCookie;

    PAGED_CODE();
    /* Makes sends still waiting on this client fail (fail open) instead of running to their timeout. */
    FltCloseClientPort(g.Filter, &connection->ClientPort);

    CommLockExclusive(&g.Lock);
    if ((connection->Flags & FS_CONNECT_AGENT) != 0) InterlockedDecrement(&g.Agents);
    connection->State = COMM_SLOT_CLOSING;
    CommUnlockExclusive(&g.Lock);
    CommReleaseConnection(connection);

    COMM_COUNT(Disconnects);
    COMM_TRACE("fltport-sample: disconnect #%lu\n", connection->Index);
}

/* ---- commands -------------------------------------------------------------------------------- */

static NTSTATUS CommPing(const UCHAR *Payload, UINT32 PayloadBytes, PVOID OutputBuffer, ULONG OutputBufferLength,
                         PULONG ReturnOutputBufferLength)
{
    PAGED_CODE();
    if (PayloadBytes > FS_MAX_PING_BYTES) return STATUS_INVALID_PARAMETER;
    if (OutputBufferLength < PayloadBytes) return STATUS_BUFFER_TOO_SMALL;
    if (PayloadBytes == 0) return STATUS_SUCCESS;
    __try {
        /* Both are the caller's buffers, which it may have made overlap. */
        RtlMoveMemory(OutputBuffer, Payload, PayloadBytes);
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        return GetExceptionCode();
    }
    *ReturnOutputBufferLength = PayloadBytes;
    return STATUS_SUCCESS;
}

static NTSTATUS CommGetStats(PVOID OutputBuffer, ULONG OutputBufferLength, PULONG ReturnOutputBufferLength)
{
    FS_STATS stats;
    ULONG i;

    PAGED_CODE();
    if (OutputBufferLength < sizeof stats) return STATUS_BUFFER_TOO_SMALL;

    RtlZeroMemory(&stats, sizeof stats);
    stats.OpensSeen = (UINT64)g.Counters.OpensSeen;
    stats.SelfSkipped = (UINT64)g.Counters.SelfSkipped;
    stats.NotificationsSent = (UINT64)g.Counters.NotificationsSent;
    stats.Replies = (UINT64)g.Counters.Replies;
    stats.Denials = (UINT64)g.Counters.Denials;
    stats.Timeouts = (UINT64)g.Counters.Timeouts;
    stats.MalformedReplies = (UINT64)g.Counters.MalformedReplies;
    stats.SendFailures = (UINT64)g.Counters.SendFailures;
    stats.NoAgent = (UINT64)g.Counters.NoAgent;
    stats.Connects = (UINT64)g.Counters.Connects;
    stats.Refused = (UINT64)g.Counters.Refused;
    stats.Disconnects = (UINT64)g.Counters.Disconnects;
    stats.EventsSent = (UINT64)g.Counters.EventsSent;
    stats.EventsDropped = (UINT64)g.Counters.EventsDropped;
    CommLockShared(&g.Lock);
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) {
        if (g.Connections[i].State == COMM_SLOT_OPEN) stats.Connections++;
    }
    CommUnlockShared(&g.Lock);
    stats.Agents = (UINT32)g.Agents;

    __try {
        RtlCopyMemory(OutputBuffer, &stats, sizeof stats);
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        return GetExceptionCode();
    }
    *ReturnOutputBufferLength = sizeof stats;
    return STATUS_SUCCESS;
}

static NTSTATUS CommSetConfig(const UCHAR *Payload, UINT32 PayloadBytes, PVOID OutputBuffer,
                              ULONG OutputBufferLength, PULONG ReturnOutputBufferLength)
{
    FS_CONFIG config;
    FS_CONFIG previous;
    UINT64 changeCount;
    NTSTATUS status;

    PAGED_CODE();
    if (PayloadBytes != sizeof config) return STATUS_INVALID_PARAMETER;
    if (OutputBufferLength != 0 && OutputBufferLength < sizeof previous) return STATUS_BUFFER_TOO_SMALL;
    __try {
        RtlCopyMemory(&config, Payload, sizeof config);
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        return GetExceptionCode();
    }
    /* Validated in kernel memory: the caller can no longer change what was checked. */
    status = CommValidateConfig(&config);
    if (!NT_SUCCESS(status)) return status;
    RtlZeroMemory((UCHAR *)config.Suffix + config.SuffixBytes, sizeof config.Suffix - config.SuffixBytes);

    CommLockExclusive(&g.Lock);
    previous = g.Config;
    /* Interlocked operations are full barriers: readers see the odd version before the new bytes,
     * and the new bytes before the even version. */
    InterlockedIncrement(&g.ConfigVersion);
    g.Config = config;
    g.Enabled = (config.Flags & FS_CONFIG_ENABLED) != 0;
    InterlockedIncrement(&g.ConfigVersion);
    changeCount = ++g.ChangeCount;
    CommUnlockExclusive(&g.Lock);
    COMM_TRACE("fltport-sample: config #%I64u flags=0x%lX timeout=%lums suffix=%lu bytes\n", changeCount,
               (ULONG)config.Flags, (ULONG)config.ReplyTimeoutMs, (ULONG)config.SuffixBytes);

    CommBroadcastConfig(&config, changeCount);

    if (OutputBufferLength == 0) return STATUS_SUCCESS;
    __try {
        RtlCopyMemory(OutputBuffer, &previous, sizeof previous);
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        return GetExceptionCode();
    }
    *ReturnOutputBufferLength = sizeof previous;
    return STATUS_SUCCESS;
}

/* The fire-and-forget message: every agent hears about a configuration change. No reply buffer,
 * and a short timeout, because an agent that is not reading must not hold up the caller. */
static VOID CommBroadcastConfig(const FS_CONFIG *Config, UINT64 ChangeCount)
{
    COMM_CONNECTION *agents[FS_MAX_CONNECTIONS];
    ULONG count = 0;
    FS_CONFIG_EVENT event;
    LARGE_INTEGER timeout = CommRelativeTimeout(FS_EVENT_TIMEOUT_MS);
    NTSTATUS status;
    ULONG i;

    PAGED_CODE();
    CommLockShared(&g.Lock);
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) {
        COMM_CONNECTION *connection = &g.Connections[i];
        if (connection->State == COMM_SLOT_OPEN && (connection->Flags & FS_CONNECT_AGENT) != 0) {
            InterlockedIncrement(&connection->References);
            agents[count++] = connection;
        }
    }
    CommUnlockShared(&g.Lock);

    RtlZeroMemory(&event, sizeof event);
    event.Kind = FS_MESSAGE_CONFIG_CHANGED;
    event.ChangeCount = ChangeCount;
    event.Config = *Config;
    for (i = 0; i < count; i++) {
        status = FltSendMessage(g.Filter, &agents[i]->ClientPort, &event, sizeof event, NULL, NULL, &timeout);
        /* STATUS_TIMEOUT is a success code, yet nothing was delivered. */
        if (status == STATUS_SUCCESS)
            COMM_COUNT(EventsSent);
        else
            COMM_COUNT(EventsDropped);
        CommReleaseConnection(agents[i]);
    }
}

static NTSTATUS FLTAPI CommMessageNotify(PVOID PortCookie, PVOID InputBuffer, ULONG InputBufferLength,
                                         PVOID OutputBuffer, ULONG OutputBufferLength,
                                         PULONG ReturnOutputBufferLength)
{
    const COMM_CONNECTION *connection = (const COMM_CONNECTION *)PortCookie;
    FS_COMMAND_HEADER header;
    const UCHAR *payload;
    NTSTATUS status;

    PAGED_CODE();
    *ReturnOutputBufferLength = 0;
    if (InputBuffer == NULL || InputBufferLength < sizeof header) return STATUS_INVALID_PARAMETER;
    if (OutputBuffer == NULL && OutputBufferLength != 0) return STATUS_INVALID_PARAMETER;
    /* The filter manager probes these raw user addresses but leaves alignment to the minifilter. */
    if (!CommIsAligned(InputBuffer, FS_INPUT_ALIGNMENT) ||
        (OutputBuffer != NULL && !CommIsAligned(OutputBuffer, FS_OUTPUT_ALIGNMENT)))
        return STATUS_DATATYPE_MISALIGNMENT;

    /* Another thread of the caller can unmap or rewrite these buffers at any moment: every access
     * is guarded, and the header is read once into kernel memory before anything trusts it. */
    __try {
        RtlCopyMemory(&header, InputBuffer, sizeof header);
    } __except (EXCEPTION_EXECUTE_HANDLER) {
        return GetExceptionCode();
    }
    if (header.PayloadBytes != InputBufferLength - sizeof header) return STATUS_INVALID_PARAMETER;
    payload = (const UCHAR *)InputBuffer + sizeof header;

    switch (header.Command) {
    case FS_COMMAND_PING:
        status = CommPing(payload, header.PayloadBytes, OutputBuffer, OutputBufferLength, ReturnOutputBufferLength);
        break;
    case FS_COMMAND_GET_STATS:
        status = header.PayloadBytes == 0 ? CommGetStats(OutputBuffer, OutputBufferLength, ReturnOutputBufferLength)
                                          : STATUS_INVALID_PARAMETER;
        break;
    case FS_COMMAND_SET_CONFIG:
        status = CommSetConfig(payload, header.PayloadBytes, OutputBuffer, OutputBufferLength,
                               ReturnOutputBufferLength);
        break;
    default:
        status = STATUS_INVALID_DEVICE_REQUEST;
        break;
    }
    COMM_TRACE("fltport-sample: command %lu from #%lu (%lu payload bytes): 0x%08lX\n", (ULONG)header.Command,
               connection->Index, (ULONG)header.PayloadBytes, (ULONG)status);
    return status;
}

/* ---- opens ----------------------------------------------------------------------------------- */

static COMM_OUTCOME CommInterpretReply(NTSTATUS Status, const FS_OPEN_REPLY *Reply, ULONG ReplyLength,
                                       UINT64 Sequence)
{
    /* STATUS_TIMEOUT is a success code: NT_SUCCESS() alone would take it for an answer. */
    if (Status == STATUS_TIMEOUT) return COMM_OUTCOME_TIMEOUT;
    /* The agent replied with more bytes than FS_OPEN_REPLY. */
    if (Status == STATUS_BUFFER_OVERFLOW) return COMM_OUTCOME_MALFORMED;
    if (Status != STATUS_SUCCESS) return COMM_OUTCOME_SEND_FAILED;
    /* The reply buffer starts zeroed and sequences start at 1, so a short reply fails the sequence
     * check even where ReplyLength is not updated. */
    if (ReplyLength != sizeof *Reply || Reply->Sequence != Sequence || Reply->Reserved != 0)
        return COMM_OUTCOME_MALFORMED;
    if (Reply->Verdict == FS_VERDICT_DENY) return COMM_OUTCOME_DENIED;
    if (Reply->Verdict == FS_VERDICT_ALLOW) return COMM_OUTCOME_ALLOWED;
    return COMM_OUTCOME_MALFORMED;
}

static VOID CommCountOutcome(COMM_OUTCOME Outcome)
{
    switch (Outcome) {
    case COMM_OUTCOME_DENIED:
        COMM_COUNT(Denials);
        COMM_COUNT(Replies);
        break;
    case COMM_OUTCOME_ALLOWED:
        COMM_COUNT(Replies);
        break;
    case COMM_OUTCOME_TIMEOUT:
        COMM_COUNT(Timeouts);
        break;
    case COMM_OUTCOME_MALFORMED:
        COMM_COUNT(MalformedReplies);
        break;
    default:
        COMM_COUNT(SendFailures);
        break;
    }
}

BOOLEAN CommWantsOpens(VOID)
{
    PAGED_CODE();
    return g.Enabled != 0 && g.Agents > 0;
}

BOOLEAN CommIsWatchedName(PCUNICODE_STRING Name)
{
    FS_CONFIG config;

    PAGED_CODE();
    CommReadConfig(&config);
    return CommSuffixMatches(Name, &config);
}

COMM_OUTCOME CommCheckOpen(HANDLE ProcessId, ACCESS_MASK DesiredAccess, PCUNICODE_STRING Path)
{
    FS_CONFIG config;
    BOOLEAN self;
    COMM_CONNECTION *agent;
    FS_OPEN_NOTIFICATION *notification;
    FS_OPEN_REPLY reply;
    ULONG replyLength = sizeof reply;
    LARGE_INTEGER timeout;
    ULONG pathBytes;
    UINT64 sequence;
    NTSTATUS status;
    COMM_OUTCOME outcome;

    PAGED_CODE();

    CommReadConfig(&config);
    if ((config.Flags & FS_CONFIG_ENABLED) == 0 || g.Agents == 0) return COMM_OUTCOME_IDLE;
    if (!CommSuffixMatches(Path, &config)) return COMM_OUTCOME_UNWATCHED;
    COMM_COUNT(OpensSeen);

    /* One pass under the lock: is the opener an agent, and if not, which agent to ask. */
    CommLockShared(&g.Lock);
    self = CommIsAgentProcessLocked(ProcessId);
    agent = self ? NULL : CommAcquireAgentLocked();
    CommUnlockShared(&g.Lock);
    if (self) {
        COMM_COUNT(SelfSkipped);
        return COMM_OUTCOME_SELF;
    }
    if (agent == NULL) {
        COMM_COUNT(NoAgent);
        return COMM_OUTCOME_NO_AGENT;
    }

    COMM_COUNT(NotificationsSent);
    /* 2 KiB: too large for a kernel stack. Zeroed: the unused tail of Path goes to user mode. */
    notification = (FS_OPEN_NOTIFICATION *)ExAllocatePoolZero(PagedPool, sizeof *notification, COMM_POOL_TAG);
    if (notification == NULL) {
        CommReleaseConnection(agent);
        COMM_COUNT(SendFailures);
        return COMM_OUTCOME_SEND_FAILED;
    }
    sequence = (UINT64)InterlockedIncrement64(&g.NextSequence);
    pathBytes = Path->Length & ~(ULONG)1;
    notification->Kind = FS_MESSAGE_OPEN;
    notification->DesiredAccess = DesiredAccess;
    notification->Sequence = sequence;
    notification->ProcessId = (UINT64)(ULONG_PTR)ProcessId;
    if (pathBytes > sizeof notification->Path) {
        pathBytes = sizeof notification->Path;
        notification->PathFlags = FS_PATH_TRUNCATED;
    }
    notification->PathBytes = (UINT16)pathBytes;
    RtlCopyMemory(notification->Path, Path->Buffer, pathBytes);

    RtlZeroMemory(&reply, sizeof reply);
    timeout = CommRelativeTimeout(config.ReplyTimeoutMs);
    status = FltSendMessage(g.Filter, &agent->ClientPort, notification, sizeof *notification, &reply, &replyLength,
                            &timeout);
    CommReleaseConnection(agent);
    ExFreePoolWithTag(notification, COMM_POOL_TAG);

    outcome = CommInterpretReply(status, &reply, replyLength, sequence);
    CommCountOutcome(outcome);
    COMM_TRACE("fltport-sample: open #%I64u pid=%p access=0x%08lX -> %s (0x%08lX)\n", sequence, ProcessId,
               (ULONG)DesiredAccess, CommOutcomeName(outcome), (ULONG)status);
    return outcome;
}

/* Short name of an outcome for the verbose trace. */
static PCSTR CommOutcomeName(COMM_OUTCOME Outcome)
{
    switch (Outcome) {
    case COMM_OUTCOME_IDLE: return "idle";
    case COMM_OUTCOME_UNWATCHED: return "unwatched";
    case COMM_OUTCOME_SELF: return "self";
    case COMM_OUTCOME_NO_AGENT: return "no-agent";
    case COMM_OUTCOME_ALLOWED: return "allowed";
    case COMM_OUTCOME_DENIED: return "denied";
    case COMM_OUTCOME_TIMEOUT: return "timeout";
    case COMM_OUTCOME_MALFORMED: return "malformed";
    case COMM_OUTCOME_SEND_FAILED: return "send-failed";
    }
    return "unknown";
}

/* ---- lifetime -------------------------------------------------------------------------------- */

NTSTATUS CommStart(PFLT_FILTER Filter, PCUNICODE_STRING PortName, BOOLEAN Verbose)
{
    OBJECT_ATTRIBUTES attributes;
    PSECURITY_DESCRIPTOR descriptor;
    NTSTATUS status;
    ULONG i;

    PAGED_CODE();
    RtlZeroMemory(&g, sizeof g);
    g.Filter = Filter;
    g.Verbose = Verbose;
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) g.Connections[i].Index = i;
    CommDefaultConfig(&g.Config);
    g.Enabled = (g.Config.Flags & FS_CONFIG_ENABLED) != 0;
    CommLockInitialize(&g.Lock);

    /* Administrators and SYSTEM only. The agent decides which files may open: a NULL DACL here
     * would let any local user connect as the agent and take that decision over. */
    status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);
    if (!NT_SUCCESS(status)) {
        CommLockDelete(&g.Lock);
        return status;
    }
    InitializeObjectAttributes(&attributes, (PUNICODE_STRING)PortName, OBJ_CASE_INSENSITIVE | OBJ_KERNEL_HANDLE,
                               NULL, descriptor);
    status = FltCreateCommunicationPort(Filter, &g.ServerPort, &attributes, NULL, CommConnectNotify,
                                        CommDisconnectNotify, CommMessageNotify, FS_MAX_CONNECTIONS);
    FltFreeSecurityDescriptor(descriptor);
    if (!NT_SUCCESS(status)) {
        g.ServerPort = NULL;
        CommLockDelete(&g.Lock);
    }
    return status;
}

VOID CommStop(VOID)
{
    BOOLEAN open[FS_MAX_CONNECTIONS];
    ULONG i;

    PAGED_CODE();
    /* First the server port, so that no connection arrives while the others are being closed. */
    if (g.ServerPort != NULL) {
        FltCloseCommunicationPort(g.ServerPort);
        g.ServerPort = NULL;
    }
    CommLockShared(&g.Lock);
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) open[i] = g.Connections[i].State == COMM_SLOT_OPEN;
    CommUnlockShared(&g.Lock);
    /* A DisconnectNotify running now closes the same variable; the filter manager serialises both. */
    for (i = 0; i < FS_MAX_CONNECTIONS; i++) {
        if (open[i]) FltCloseClientPort(g.Filter, &g.Connections[i].ClientPort);
    }
}

VOID CommCleanup(VOID)
{
    PAGED_CODE();
    CommLockDelete(&g.Lock);
}
