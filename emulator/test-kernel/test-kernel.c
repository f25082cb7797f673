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
    OP_CONTEXT = 7
};

#define COMMAND_HEADER_BYTES 24
#define NO_REPLY_BUFFER 0xFFFFFFFFu
#define MAX_SENDERS 64

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
} Connection;

typedef struct Sender {
    Connection *connection;
    UINT32 count, payloadBytes, replyLength, timeoutMs, delayMs;
} Sender;

static PFLT_FILTER g_filter;
static volatile LONG g_connections;

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

static void WaitForSenders(Connection *connection) {
    for (;;) {
        HANDLE thread = NULL;
        EnterCriticalSection(&connection->lock);
        if (connection->senderCount > 0) thread = connection->senders[--connection->senderCount];
        LeaveCriticalSection(&connection->lock);
        if (thread == NULL) return;
        WaitForSingleObject(thread, INFINITE);
        CloseHandle(thread);
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
    free(connection);
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
        connection->stats.lastStatus = status;
        if (status == STATUS_TIMEOUT) {
            connection->stats.timeouts++;
        } else if (!NT_SUCCESS(status)) {
            connection->stats.failures++;
        } else {
            connection->stats.sent++;
            if (sender->replyLength != NO_REPLY_BUFFER) {
                UINT64 echoed = 0;
                memcpy(&echoed, reply, 8);
                connection->stats.replied++;
                connection->stats.replyBytesLast = replyLength;
                if (replyLength >= 8 && echoed == seq64) connection->stats.matched++;
            }
        }
        LeaveCriticalSection(&connection->lock);
        if (status == STATUS_PORT_DISCONNECTED) break;
    }
    free(message);
    free(reply);
    free(sender);
    return 0;
}

static DWORD WINAPI DisconnectLater(LPVOID parameter) {
    Sender *request = (Sender *)parameter;
    Sleep(request->delayMs);
    FltCloseClientPort(g_filter, &request->connection->clientPort);
    free(request);
    return 0;
}

static NTSTATUS StartThread(Connection *connection, LPTHREAD_START_ROUTINE routine, Sender *sender, BOOL track) {
    HANDLE thread = CreateThread(NULL, 0, routine, sender, 0, NULL);
    if (thread == NULL) {
        free(sender);
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
    FltCloseCommunicationPort(serverPort);
    FltEmuUnregisterFilter(g_filter);
    return 0;
}
