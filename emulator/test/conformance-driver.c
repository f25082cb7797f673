/*
 * fltemu-conformance.sys: the kernel side of the emulator's conformance program
 * (emulator-conformance.exe, conformance.c). A minifilter whose communication code the program
 * drives through a control port: it creates test ports (each with a filter of its own, so that a
 * check can unregister one), sends messages from kernel threads, closes ports and reports what its
 * callbacks saw. Runs on the emulator's fltmgr.sys only (it registers more than one filter per
 * driver, which the emulator allows).
 *
 * Control port: \FltEmuConformance. Requests: CONTROL_REQUEST (+ payload); answers below.
 * Test ports' MessageNotify obeys TEST_COMMAND: ECHO (reversed input), STATUS (returns arg),
 * SEND_BACK (FltSendMessage "ping" to the same client and answer with its reply).
 */
#include <fltKernel.h>
#include <fltEmu.h>

#include "conformance-protocol.h"

#define POOL_TAG 0x666e6f43u /* "Conf" */
/* The scanner sample's SCANNER_NOTIFICATION: ULONG BytesToScan, ULONG Reserved, UCHAR Contents[1024]. */
#define SCANNER_NOTIFICATION_BYTES (8 + 1024)

DRIVER_INITIALIZE DriverEntry;

typedef struct _SERVER SERVER;

typedef struct _SLOT {
    SERVER *Server;
    PFLT_PORT Port; /* closed by FltCloseClientPort */
    BOOLEAN Used;
} SLOT;

struct _SERVER {
    BOOLEAN Used;
    PFLT_FILTER Filter;
    PFLT_PORT ServerPort;
    SLOT Slots[CONF_MAX_SLOTS];
    volatile LONG Connects, Disconnects, Messages;
    NTSTATUS Refuse;
    BOOLEAN KeepClientPorts;
    ULONG ContextBytes;
    UCHAR Context[CONF_MAX_CONTEXT];
};

typedef struct _KSEND {
    BOOLEAN Used;
    volatile LONG Done;
    SERVER *Server;
    ULONG Slot;
    PUCHAR Payload;
    ULONG PayloadBytes;
    BOOLEAN WantReply;
    BOOLEAN HasTimeout;
    BOOLEAN Raw;
    ULONG Bulk; /* BULK_*, 0 for a single send */
    ULONG First, Count;
    volatile LONG Right, Wrong;
    LONGLONG Timeout;
    UCHAR Reply[CONF_MAX_REPLY];
    ULONG ReplyLength;
    NTSTATUS Status;
    ULONG ElapsedMs;
    HANDLE Thread;
} KSEND;

static struct {
    PDRIVER_OBJECT Driver;
    PFLT_FILTER Filter; /* the control port's */
    PFLT_PORT ControlPort;
    PFLT_PORT ControlClient;
    EX_PUSH_LOCK Lock; /* guards Servers[].Used / Slots[].Used and KSends[].Used */
    SERVER Servers[CONF_MAX_SERVERS];
    KSEND KSends[CONF_MAX_KSENDS];
} g;

static const FLT_OPERATION_REGISTRATION g_NoOperations[] = {{IRP_MJ_OPERATION_END}};

static const FLT_REGISTRATION g_Registration = {
    sizeof(FLT_REGISTRATION), FLT_REGISTRATION_VERSION, 0, NULL, g_NoOperations, NULL, NULL, NULL, NULL, NULL,
};

/* Milliseconds since Start (a KeQueryPerformanceCounter value). */
static ULONG ElapsedMsSince(LONGLONG Start)
{
    LARGE_INTEGER frequency;
    LARGE_INTEGER now = KeQueryPerformanceCounter(&frequency);
    return (ULONG)((now.QuadPart - Start) * 1000 / frequency.QuadPart);
}

/* ---- test ports ----------------------------------------------------------------------------- */

static NTSTATUS FLTAPI TestConnect(PFLT_PORT ClientPort, PVOID ServerPortCookie, PVOID ConnectionContext,
                                   ULONG SizeOfContext, PVOID *ConnectionPortCookie)
{
    SERVER *server = (SERVER *)ServerPortCookie;
    SLOT *slot = NULL;
    ULONG i;

    if (server->Refuse != STATUS_SUCCESS) return server->Refuse;
    FltAcquirePushLockExclusive(&g.Lock);
    for (i = 0; i < CONF_MAX_SLOTS && slot == NULL; i++) {
        if (!server->Slots[i].Used) slot = &server->Slots[i];
    }
    if (slot != NULL) {
        slot->Used = TRUE;
        slot->Server = server;
        slot->Port = ClientPort;
        server->ContextBytes = SizeOfContext;
        if (SizeOfContext != 0 && SizeOfContext <= sizeof server->Context)
            RtlCopyMemory(server->Context, ConnectionContext, SizeOfContext);
    }
    FltReleasePushLock(&g.Lock);
    if (slot == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    *ConnectionPortCookie = slot;
    InterlockedIncrement(&server->Connects);
    return STATUS_SUCCESS;
}

static VOID FLTAPI TestDisconnect(PVOID ConnectionCookie)
{
    SLOT *slot = (SLOT *)ConnectionCookie;
    SERVER *server = slot->Server;

    if (!server->KeepClientPorts) FltCloseClientPort(server->Filter, &slot->Port); /* as the samples do */
    FltAcquirePushLockExclusive(&g.Lock);
    slot->Used = FALSE;
    FltReleasePushLock(&g.Lock);
    InterlockedIncrement(&server->Disconnects);
}

static NTSTATUS FLTAPI TestMessage(PVOID PortCookie, PVOID InputBuffer, ULONG InputBufferLength, PVOID OutputBuffer,
                                   ULONG OutputBufferLength, PULONG ReturnOutputBufferLength)
{
    SLOT *slot = (SLOT *)PortCookie;
    const TEST_COMMAND *command = (const TEST_COMMAND *)InputBuffer;
    const UCHAR *data = (const UCHAR *)(command + 1);
    ULONG dataBytes;
    ULONG i;

    *ReturnOutputBufferLength = 0;
    InterlockedIncrement(&slot->Server->Messages);
    if (InputBuffer == NULL || InputBufferLength < sizeof *command) return STATUS_INVALID_PARAMETER;
    dataBytes = InputBufferLength - (ULONG)sizeof *command;
    switch (command->Command) {
    case TEST_ECHO:
        if (dataBytes > OutputBufferLength) dataBytes = OutputBufferLength;
        for (i = 0; i < dataBytes; i++)
            ((PUCHAR)OutputBuffer)[i] = data[InputBufferLength - sizeof *command - 1 - i];
        *ReturnOutputBufferLength = dataBytes;
        return STATUS_SUCCESS;
    case TEST_STATUS:
        return (NTSTATUS)command->Argument;
    case TEST_SEND_BACK: { /* re-entrant: ask the same client and wait for its answer */
        UCHAR reply[8];
        ULONG replyLength = sizeof reply;
        LARGE_INTEGER timeout;
        NTSTATUS status;
        timeout.QuadPart = -10LL * 1000 * 1000 * 10; /* 10 s */
        status = FltSendMessage(slot->Server->Filter, &slot->Port, "ping", 4, reply, &replyLength, &timeout);
        if (status == STATUS_SUCCESS && OutputBufferLength >= replyLength) {
            RtlCopyMemory(OutputBuffer, reply, replyLength);
            *ReturnOutputBufferLength = replyLength;
        }
        return status;
    }
    default:
        return STATUS_INVALID_PARAMETER;
    }
}

/* The usual driver code: default descriptor, FltCreateCommunicationPort. */
static NTSTATUS CreatePort(PFLT_FILTER Filter, PCWSTR Name, PVOID Cookie, PFLT_CONNECT_NOTIFY Connect,
                           PFLT_DISCONNECT_NOTIFY Disconnect, PFLT_MESSAGE_NOTIFY Message, LONG MaxConnections,
                           ULONG Attributes, PFLT_PORT *Port)
{
    PSECURITY_DESCRIPTOR descriptor;
    OBJECT_ATTRIBUTES attributes;
    UNICODE_STRING name;
    NTSTATUS status = FltBuildDefaultSecurityDescriptor(&descriptor, FLT_PORT_ALL_ACCESS);

    if (!NT_SUCCESS(status)) return status;
    RtlInitUnicodeString(&name, Name);
    InitializeObjectAttributes(&attributes, &name, Attributes, NULL, descriptor);
    status = FltCreateCommunicationPort(Filter, Port, &attributes, Cookie, Connect, Disconnect, Message, MaxConnections);
    FltFreeSecurityDescriptor(descriptor);
    return status;
}

static SERVER *ServerOf(ULONG Index)
{
    return Index < CONF_MAX_SERVERS && g.Servers[Index].Used ? &g.Servers[Index] : NULL;
}

static VOID StopServer(SERVER *Server)
{
    if (Server->ServerPort != NULL) FltCloseCommunicationPort(Server->ServerPort);
    Server->ServerPort = NULL;
    if (Server->Filter != NULL) FltUnregisterFilter(Server->Filter);
    Server->Filter = NULL;
}

/* ---- kernel senders ------------------------------------------------------------------------- */

/* One message of a bulk sender; TRUE when its answer is right. */
static BOOLEAN BulkSendOne(KSEND *Send, ULONG Sequence, PUCHAR Buffer)
{
    PFLT_PORT *port = &Send->Server->Slots[Send->Slot].Port;
    LARGE_INTEGER timeout;
    NTSTATUS status;

    switch (Send->Bulk) {
    case BULK_ECHO_SEQUENCE: {
        ULONG reply = 0;
        ULONG replyLength = sizeof reply;
        timeout.QuadPart = -30LL * 10000000;
        status = FltSendMessage(Send->Server->Filter, port, &Sequence, sizeof Sequence, &reply, &replyLength, &timeout);
        if (status == STATUS_SUCCESS && replyLength == sizeof reply && reply == Sequence * 2 + 1) return TRUE;
        break;
    }
    case BULK_NO_REPLY:
        RtlZeroMemory(Buffer, 64);
        RtlCopyMemory(Buffer, &Sequence, sizeof Sequence);
        timeout.QuadPart = -20LL * 10000000;
        status = FltSendMessage(Send->Server->Filter, port, Buffer, 64, NULL, NULL, &timeout);
        if (status == STATUS_SUCCESS) return TRUE;
        break;
    case BULK_SCANNER: {
        BOOLEAN foul = (Sequence % 7) == 0;
        UCHAR reply = 2;
        ULONG replyLength = sizeof reply;
        RtlZeroMemory(Buffer, SCANNER_NOTIFICATION_BYTES);
        *(ULONG *)Buffer = 200; /* BytesToScan */
        RtlFillMemory(Buffer + 8, 200, (UCHAR)('a' + Sequence % 26));
        if (foul) RtlCopyMemory(Buffer + 8 + 100, "foul", 4);
        status = FltSendMessage(Send->Server->Filter, port, Buffer, SCANNER_NOTIFICATION_BYTES, &reply, &replyLength,
                                NULL);
        if (status == STATUS_SUCCESS && replyLength == sizeof reply && reply == (UCHAR)!foul) return TRUE;
        break;
    }
    default:
        status = STATUS_INVALID_PARAMETER;
        break;
    }
    Send->Status = status;
    return FALSE;
}

static VOID BulkSend(KSEND *Send)
{
    PUCHAR buffer = (PUCHAR)ExAllocatePoolZero(NonPagedPoolNx, SCANNER_NOTIFICATION_BYTES, POOL_TAG);
    ULONG i;

    if (buffer == NULL) {
        Send->Status = STATUS_INSUFFICIENT_RESOURCES;
        return;
    }
    for (i = Send->First; i < Send->First + Send->Count; i++) {
        if (BulkSendOne(Send, i, buffer))
            InterlockedIncrement(&Send->Right);
        else
            InterlockedIncrement(&Send->Wrong);
    }
    ExFreePoolWithTag(buffer, POOL_TAG);
}

static KSTART_ROUTINE KSendThread;

static VOID KSendThread(PVOID Context)
{
    KSEND *send = (KSEND *)Context;
    LARGE_INTEGER start = KeQueryPerformanceCounter(NULL);
    LARGE_INTEGER timeout;

    if (send->Bulk != 0) {
        BulkSend(send);
        send->ElapsedMs = ElapsedMsSince(start.QuadPart);
        InterlockedExchange(&send->Done, 1);
        PsTerminateSystemThread(STATUS_SUCCESS);
    }

    timeout.QuadPart = send->Timeout;
    if (send->Raw)
        send->Status = FltEmuSendRawMessage(send->Server->Filter, &send->Server->Slots[send->Slot].Port, send->Payload,
                                            send->PayloadBytes, send->HasTimeout ? &timeout : NULL);
    else
        send->Status = FltSendMessage(send->Server->Filter, &send->Server->Slots[send->Slot].Port, send->Payload,
                                      send->PayloadBytes, send->WantReply ? send->Reply : NULL,
                                      send->WantReply ? &send->ReplyLength : NULL, send->HasTimeout ? &timeout : NULL);
    send->ElapsedMs = ElapsedMsSince(start.QuadPart);
    InterlockedExchange(&send->Done, 1);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

static VOID FreeKSend(KSEND *Send)
{
    if (Send->Thread != NULL) {
        ZwWaitForSingleObject(Send->Thread, FALSE, NULL);
        ZwClose(Send->Thread);
    }
    if (Send->Payload != NULL) ExFreePoolWithTag(Send->Payload, POOL_TAG);
    RtlZeroMemory(Send, sizeof *Send);
}

/* ---- control requests ----------------------------------------------------------------------- */

static NTSTATUS StartServer(const CONTROL_REQUEST *Request, CONTROL_ANSWER *Answer)
{
    SERVER *server = NULL;
    NTSTATUS status;
    ULONG i;

    FltAcquirePushLockExclusive(&g.Lock);
    for (i = 0; i < CONF_MAX_SERVERS && server == NULL; i++) {
        if (!g.Servers[i].Used) {
            server = &g.Servers[i];
            RtlZeroMemory(server, sizeof *server);
            server->Used = TRUE;
            Answer->Value = i;
        }
    }
    FltReleasePushLock(&g.Lock);
    if (server == NULL) return STATUS_INSUFFICIENT_RESOURCES;

    server->KeepClientPorts = (Request->Flags & CONF_KEEP_CLIENT_PORTS) != 0;
    status = FltRegisterFilter(g.Driver, &g_Registration, &server->Filter);
    if (NT_SUCCESS(status))
        status = CreatePort(server->Filter, Request->Name, server, TestConnect, TestDisconnect,
                            Request->Flags & CONF_WITH_MESSAGE_NOTIFY ? TestMessage : NULL,
                            (LONG)Request->MaxConnections, Request->Attributes, &server->ServerPort);
    if (!NT_SUCCESS(status)) {
        StopServer(server);
        server->Used = FALSE;
    }
    return status;
}

static NTSTATUS StartKSend(const CONTROL_REQUEST *Request, ULONG PayloadBytes, CONTROL_ANSWER *Answer)
{
    SERVER *server = ServerOf(Request->Server);
    KSEND *send = NULL;
    NTSTATUS status;
    ULONG i;

    if (server == NULL || Request->Slot >= CONF_MAX_SLOTS || Request->ReplyLength > CONF_MAX_REPLY)
        return STATUS_INVALID_PARAMETER;
    FltAcquirePushLockExclusive(&g.Lock);
    for (i = 0; i < CONF_MAX_KSENDS && send == NULL; i++) {
        if (!g.KSends[i].Used) {
            send = &g.KSends[i];
            send->Used = TRUE;
            Answer->Value = i;
        }
    }
    FltReleasePushLock(&g.Lock);
    if (send == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    send->Server = server;
    send->Slot = Request->Slot;
    send->PayloadBytes = PayloadBytes;
    send->Payload = (PUCHAR)ExAllocatePoolZero(NonPagedPoolNx, PayloadBytes + 1, POOL_TAG);
    if (send->Payload == NULL) {
        FreeKSend(send);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    RtlCopyMemory(send->Payload, Request + 1, PayloadBytes);
    send->WantReply = Request->ReplyLength != 0;
    send->ReplyLength = Request->ReplyLength;
    send->HasTimeout = (Request->Flags & CONF_HAS_TIMEOUT) != 0;
    send->Raw = (Request->Flags & CONF_RAW) != 0;
    send->Timeout = Request->Timeout;
    if (Request->Op == CONTROL_BULK) {
        send->Bulk = Request->Value;
        send->First = Request->First;
        send->Count = Request->Count;
    }
    status = PsCreateSystemThread(&send->Thread, THREAD_ALL_ACCESS, NULL, NULL, NULL, KSendThread, send);
    if (!NT_SUCCESS(status)) {
        send->Thread = NULL;
        FreeKSend(send);
    }
    return status;
}

static NTSTATUS FLTAPI ControlMessage(PVOID PortCookie, PVOID InputBuffer, ULONG InputBufferLength,
                                      PVOID OutputBuffer, ULONG OutputBufferLength, PULONG ReturnOutputBufferLength)
{
    const CONTROL_REQUEST *request = (const CONTROL_REQUEST *)InputBuffer;
    CONTROL_ANSWER *answer = (CONTROL_ANSWER *)OutputBuffer;
    ULONG payloadBytes;
    SERVER *server;
    KSEND *send;
    NTSTATUS status = STATUS_SUCCESS;
    PFLT_PORT port;

    UNREFERENCED_PARAMETER(PortCookie);
    *ReturnOutputBufferLength = 0;
    if (InputBuffer == NULL || InputBufferLength < sizeof *request || OutputBuffer == NULL ||
        OutputBufferLength < sizeof *answer)
        return STATUS_INVALID_PARAMETER;
    payloadBytes = InputBufferLength - (ULONG)sizeof *request;
    RtlZeroMemory(answer, sizeof *answer);
    server = ServerOf(request->Server);

    switch (request->Op) {
    case CONTROL_START_SERVER:
        status = StartServer(request, answer);
        break;
    case CONTROL_STOP_SERVER:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        StopServer(server);
        server->Used = FALSE;
        break;
    case CONTROL_CLOSE_SERVER_PORT:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        if (server->ServerPort != NULL) FltCloseCommunicationPort(server->ServerPort);
        server->ServerPort = NULL;
        break;
    case CONTROL_UNREGISTER:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        if (server->Filter != NULL) FltUnregisterFilter(server->Filter);
        server->Filter = NULL;
        server->ServerPort = NULL; /* closed by the unregistration */
        break;
    case CONTROL_REFUSE:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        server->Refuse = (NTSTATUS)request->Value;
        break;
    case CONTROL_COUNTS:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        answer->Connects = (ULONG)server->Connects;
        answer->Disconnects = (ULONG)server->Disconnects;
        answer->Messages = (ULONG)server->Messages;
        answer->ContextBytes = server->ContextBytes;
        answer->Value = request->Slot < CONF_MAX_SLOTS && server->Slots[request->Slot].Port == NULL;
        if (request->Flags & CONF_WITH_CONTEXT) {
            ULONG bytes = server->ContextBytes < CONF_MAX_CONTEXT ? server->ContextBytes : CONF_MAX_CONTEXT;
            if (OutputBufferLength < sizeof *answer + bytes) return STATUS_BUFFER_TOO_SMALL;
            RtlCopyMemory(answer + 1, server->Context, bytes);
            *ReturnOutputBufferLength = bytes;
        }
        break;
    case CONTROL_CLOSE_CLIENT:
        if (server == NULL || request->Slot >= CONF_MAX_SLOTS) return STATUS_INVALID_PARAMETER;
        FltCloseClientPort(server->Filter, &server->Slots[request->Slot].Port);
        answer->Value = server->Slots[request->Slot].Port == NULL;
        break;
    case CONTROL_KSEND:
    case CONTROL_BULK:
        status = StartKSend(request, payloadBytes, answer);
        break;
    case CONTROL_KSEND_RESULT:
        if (request->Value >= CONF_MAX_KSENDS || !g.KSends[request->Value].Used) return STATUS_INVALID_PARAMETER;
        send = &g.KSends[request->Value];
        answer->Value = (ULONG)send->Done;
        if (send->Done) {
            answer->Status = send->Status;
            answer->ReplyLength = send->ReplyLength;
            answer->ElapsedMs = send->ElapsedMs;
            answer->Right = (ULONG)send->Right;
            answer->Wrong = (ULONG)send->Wrong;
            if (OutputBufferLength < sizeof *answer + CONF_MAX_REPLY) return STATUS_BUFFER_TOO_SMALL;
            RtlCopyMemory(answer + 1, send->Reply, CONF_MAX_REPLY);
            *ReturnOutputBufferLength = CONF_MAX_REPLY;
        }
        break;
    case CONTROL_KSEND_FREE:
        if (request->Value >= CONF_MAX_KSENDS || !g.KSends[request->Value].Used) return STATUS_INVALID_PARAMETER;
        FreeKSend(&g.KSends[request->Value]);
        break;
    case CONTROL_CREATE_PORT: /* a port with the given attributes, closed again at once */
        port = NULL;
        status = CreatePort(server != NULL && (request->Flags & CONF_ON_SERVER_FILTER) ? server->Filter : g.Filter,
                            request->Name, NULL, TestConnect, TestDisconnect, NULL,
                            (LONG)request->MaxConnections, request->Attributes, &port);
        if (NT_SUCCESS(status)) FltCloseCommunicationPort(port);
        break;
    case CONTROL_DROP_OVERSIZED:
        if (server == NULL) return STATUS_INVALID_PARAMETER;
        FltEmuDropOversizedMessages(server->Filter, request->Value != 0);
        break;
    default:
        return STATUS_INVALID_PARAMETER;
    }
    answer->Result = status;
    *ReturnOutputBufferLength += sizeof *answer;
    /* The outcome travels in the answer: a failed FltCreateCommunicationPort is a result. */
    return STATUS_SUCCESS;
}

static NTSTATUS FLTAPI ControlConnect(PFLT_PORT ClientPort, PVOID ServerPortCookie, PVOID ConnectionContext,
                                      ULONG SizeOfContext, PVOID *ConnectionPortCookie)
{
    UNREFERENCED_PARAMETER(ServerPortCookie);
    UNREFERENCED_PARAMETER(ConnectionContext);
    UNREFERENCED_PARAMETER(SizeOfContext);
    g.ControlClient = ClientPort;
    *ConnectionPortCookie = NULL;
    return STATUS_SUCCESS;
}

static VOID FLTAPI ControlDisconnect(PVOID ConnectionCookie)
{
    UNREFERENCED_PARAMETER(ConnectionCookie);
    FltCloseClientPort(g.Filter, &g.ControlClient);
}

/* ---- driver --------------------------------------------------------------------------------- */

static VOID Cleanup(VOID)
{
    ULONG i;

    for (i = 0; i < CONF_MAX_SERVERS; i++) {
        if (g.Servers[i].Used) StopServer(&g.Servers[i]);
    }
    for (i = 0; i < CONF_MAX_KSENDS; i++) {
        if (g.KSends[i].Used) FreeKSend(&g.KSends[i]);
    }
    if (g.ControlPort != NULL) FltCloseCommunicationPort(g.ControlPort);
    if (g.Filter != NULL) FltUnregisterFilter(g.Filter);
    FltDeletePushLock(&g.Lock);
}

static NTSTATUS FLTAPI ConformanceUnload(FLT_FILTER_UNLOAD_FLAGS Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    Cleanup();
    return STATUS_SUCCESS;
}

static const FLT_REGISTRATION g_ControlRegistration = {
    sizeof(FLT_REGISTRATION), FLT_REGISTRATION_VERSION, 0, NULL, g_NoOperations, ConformanceUnload,
};

NTSTATUS DriverEntry(PDRIVER_OBJECT DriverObject, PUNICODE_STRING RegistryPath)
{
    NTSTATUS status;

    UNREFERENCED_PARAMETER(RegistryPath);
    ExInitializeDriverRuntime(DrvRtPoolNxOptIn);
    g.Driver = DriverObject;
    FltInitializePushLock(&g.Lock);
    status = FltRegisterFilter(DriverObject, &g_ControlRegistration, &g.Filter);
    if (NT_SUCCESS(status))
        status = CreatePort(g.Filter, CONF_CONTROL_PORT, NULL, ControlConnect, ControlDisconnect, ControlMessage, 1,
                            OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, &g.ControlPort);
    if (NT_SUCCESS(status)) status = FltStartFiltering(g.Filter);
    if (!NT_SUCCESS(status)) Cleanup();
    return status;
}
