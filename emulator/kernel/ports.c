/*
 * Communication ports of the emulator's fltmgr.sys: server ports, connections (client ports),
 * message delivery into pending reads, replies, MessageNotify on worker threads, and every way a
 * connection ends. The IOCTL contract with fltlib.dll is in protocol.h; the semantics follow
 * shared/reference/port-semantics.md, and emulator/README.md lists every choice and divergence.
 *
 * Lifetimes: a server port lives while the minifilter has it open or a connection made through
 * its device exists (References); a connection lives while its file object exists, the minifilter
 * holds its client port (until FltCloseClientPort), or a sender or MessageNotify uses it
 * (References): a client port variable the minifilter has not closed never points at freed memory. A filter's port callbacks in progress are counted in
 * Filter->Busy so that FltUnregisterFilter returns only once none runs any more.
 */
#include "fltmgrp.h"

/* ---- references and callbacks ------------------------------------------------------------- */

static VOID FltpReleaseServerPort(PFLTP_SERVER_PORT Port)
{
    LONG left;

    FltpAcquireLock();
    left = --Port->References;
    FltpReleaseLock();
    if (left != 0) return;
    IoDeleteDevice(Port->Device);
    ExFreePoolWithTag(Port->Name.Buffer, FLTP_POOL_TAG);
    ExFreePoolWithTag(Port, FLTP_POOL_TAG);
}

/* Caller holds the lock. */
static VOID FltpReferenceConnectionLocked(PFLTP_CONNECTION Connection)
{
    Connection->References++;
}

static VOID FltpReleaseConnection(PFLTP_CONNECTION Connection)
{
    LONG left;

    FltpAcquireLock();
    left = --Connection->References;
    FltpReleaseLock();
    if (left != 0) return;
    FltpReleaseServerPort(Connection->ServerPort);
    ExFreePoolWithTag(Connection, FLTP_POOL_TAG);
}

/* A port callback of Filter starts (caller holds the lock) / has returned. */
static VOID FltpEnterFilterLocked(PFLT_FILTER Filter)
{
    Filter->Busy++;
}

static VOID FltpLeaveFilter(PFLT_FILTER Filter)
{

    FltpAcquireLock();
    if (--Filter->Busy == 0 && Filter->Unregistering) KeSetEvent(&Filter->Idle, IO_NO_INCREMENT, FALSE);
    FltpReleaseLock();
}

/* Returns once no port callback of Filter runs (Filter->Unregistering is set). */
static VOID FltpWaitFilterIdle(PFLT_FILTER Filter)
{
    for (;;) {
        BOOLEAN idle;

        FltpAcquireLock();
        idle = Filter->Busy == 0;
        if (!idle) KeClearEvent(&Filter->Idle);
        FltpReleaseLock();
        if (idle) return;
        KeWaitForSingleObject(&Filter->Idle, Executive, KernelMode, FALSE, NULL);
    }
}

/* ---- reads and messages ------------------------------------------------------------------- */

/* The read IRPs waiting in a connection are cancellable. Whoever takes one off the list first
 * clears its cancel routine; if that fails, the cancel routine is already running and will
 * complete the IRP, so the taker leaves it alone (the entry is self-linked once off the list). */
static DRIVER_CANCEL FltpCancelRead;

static VOID FltpCancelRead(PDEVICE_OBJECT Device, PIRP Irp)
{

    UNREFERENCED_PARAMETER(Device);
    IoReleaseCancelSpinLock(Irp->CancelIrql);
    FltpAcquireLock();
    if (!IsListEmpty(&Irp->Tail.Overlay.ListEntry)) {
        RemoveEntryList(&Irp->Tail.Overlay.ListEntry);
        InitializeListHead(&Irp->Tail.Overlay.ListEntry);
    }
    FltpReleaseLock();
    FltpCompletePendedIrp(Irp, STATUS_CANCELLED, 0);
}

/* Takes the oldest read off the connection; NULL when none. A read whose cancel routine is
 * running is dropped from the list and skipped. Caller holds the lock. */
static PIRP FltpTakeReadLocked(PFLTP_CONNECTION Connection)
{
    while (!IsListEmpty(&Connection->Reads)) {
        PLIST_ENTRY entry = RemoveHeadList(&Connection->Reads);
        PIRP irp = CONTAINING_RECORD(entry, IRP, Tail.Overlay.ListEntry);
        InitializeListHead(entry);
        if (IoSetCancelRoutine(irp, NULL) != NULL) return irp;
    }
    return NULL;
}

/* The sender of Message learns its outcome (caller holds the lock; the sender frees Message once
 * it has seen FltpMessageDone under the lock, hence the event is set here too). */
static VOID FltpFinishMessageLocked(PFLTP_MESSAGE Message, NTSTATUS Status)
{
    Message->State = FltpMessageDone;
    Message->Status = Status;
    ZwSetEvent(Message->Done, NULL);
}

/* Events for senders to wait on, kept for reuse: under Wine a KEVENT gets a new event handle for
 * every wait (two more server round trips per message). Auto-reset; one returned to the pool is
 * never signalled. */
#define FLTP_MAX_POOLED_EVENTS 256

static struct {
    HANDLE Events[FLTP_MAX_POOLED_EVENTS]; /* under the lock */
    ULONG Count;
} FltpEventPool;

static HANDLE FltpTakeEvent(VOID)
{
    OBJECT_ATTRIBUTES attributes;
    HANDLE event = NULL;

    FltpAcquireLock();
    if (FltpEventPool.Count > 0) event = FltpEventPool.Events[--FltpEventPool.Count];
    FltpReleaseLock();
    if (event != NULL) return event;
    InitializeObjectAttributes(&attributes, NULL, OBJ_KERNEL_HANDLE, NULL, NULL);
    if (!NT_SUCCESS(ZwCreateEvent(&event, EVENT_ALL_ACCESS, &attributes, SynchronizationEvent, FALSE))) return NULL;
    return event;
}

static VOID FltpReturnEvent(HANDLE Event)
{
    BOOLEAN pooled = FALSE;

    FltpAcquireLock();
    if (FltpEventPool.Count < FLTP_MAX_POOLED_EVENTS) {
        FltpEventPool.Events[FltpEventPool.Count++] = Event;
        pooled = TRUE;
    }
    FltpReleaseLock();
    if (!pooled) ZwClose(Event);
}

static VOID FltpFreeEventPool(VOID)
{
    while (FltpEventPool.Count > 0) ZwClose(FltpEventPool.Events[--FltpEventPool.Count]);
}

/* IRPs taken off queues under the lock, completed after it is released. */
typedef struct _FLTP_COMPLETIONS {
    LIST_ENTRY Irps;
} FLTP_COMPLETIONS;

static VOID FltpInitCompletions(FLTP_COMPLETIONS *Completions)
{
    InitializeListHead(&Completions->Irps);
}

static VOID FltpAddCompletionLocked(FLTP_COMPLETIONS *Completions, PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = Information;
    InsertTailList(&Completions->Irps, &Irp->Tail.Overlay.ListEntry);
}

static VOID FltpCompleteAll(FLTP_COMPLETIONS *Completions)
{
    while (!IsListEmpty(&Completions->Irps)) {
        PIRP irp = CONTAINING_RECORD(RemoveHeadList(&Completions->Irps), IRP, Tail.Overlay.ListEntry);
        FltpCompletePendedIrp(irp, irp->IoStatus.Status, irp->IoStatus.Information);
    }
}

/* Pairs queued messages with pending reads, oldest with oldest: a message goes whole into a read
 * that can hold it; a read too small for the message at the head fails with
 * STATUS_BUFFER_TOO_SMALL and the message waits for the next read (or, when the filter drops
 * oversized messages, is dropped). Caller holds the lock. */
static VOID FltpDeliverLocked(PFLTP_CONNECTION Connection, FLTP_COMPLETIONS *Completions)
{
    while (!IsListEmpty(&Connection->Messages)) {
        PFLTP_MESSAGE message = CONTAINING_RECORD(Connection->Messages.Flink, FLTP_MESSAGE, Links);
        PIRP irp = FltpTakeReadLocked(Connection);
        ULONG capacity;

        if (irp == NULL) return;
        capacity = IoGetCurrentIrpStackLocation(irp)->Parameters.DeviceIoControl.OutputBufferLength;
        if (capacity < message->ByteCount) {
            FltpAddCompletionLocked(Completions, irp, STATUS_BUFFER_TOO_SMALL, 0);
            if (Connection->Filter != NULL && Connection->Filter->DropOversizedMessages) {
                RemoveEntryList(&message->Links);
                FltpFinishMessageLocked(message, STATUS_BUFFER_OVERFLOW);
            }
            continue;
        }
        RtlCopyMemory(irp->AssociatedIrp.SystemBuffer, message->Bytes, message->ByteCount);
        FltpAddCompletionLocked(Completions, irp, STATUS_SUCCESS, message->ByteCount);
        RemoveEntryList(&message->Links);
        if (message->WantsReply) {
            message->State = FltpMessageWaiting;
            InsertTailList(&Connection->Waiters, &message->Links);
        } else {
            FltpFinishMessageLocked(message, STATUS_SUCCESS);
        }
    }
}

/* Ends what is in flight on a connection that stops working: pending reads complete with
 * ReadStatus, senders (queued or waiting for a reply) get STATUS_PORT_DISCONNECTED. Caller holds
 * the lock. */
static VOID FltpFlushConnectionLocked(PFLTP_CONNECTION Connection, NTSTATUS ReadStatus, FLTP_COMPLETIONS *Completions)
{
    PIRP irp;

    while ((irp = FltpTakeReadLocked(Connection)) != NULL) FltpAddCompletionLocked(Completions, irp, ReadStatus, 0);
    while (!IsListEmpty(&Connection->Messages)) {
        PFLTP_MESSAGE message = CONTAINING_RECORD(RemoveHeadList(&Connection->Messages), FLTP_MESSAGE, Links);
        FltpFinishMessageLocked(message, STATUS_PORT_DISCONNECTED);
    }
    while (!IsListEmpty(&Connection->Waiters)) {
        PFLTP_MESSAGE message = CONTAINING_RECORD(RemoveHeadList(&Connection->Waiters), FLTP_MESSAGE, Links);
        FltpFinishMessageLocked(message, STATUS_PORT_DISCONNECTED);
    }
}

/* Gives the connection's MaxConnections slot back. Caller holds the lock. */
static VOID FltpFreeSlotLocked(PFLTP_CONNECTION Connection)
{
    if (!Connection->HoldsSlot) return;
    Connection->HoldsSlot = FALSE;
    Connection->ServerPort->Connections--;
}

/* The connection leaves its filter's list (the entry is self-linked once off it). Caller holds
 * the lock. */
static VOID FltpForgetLocked(PFLTP_CONNECTION Connection)
{
    RemoveEntryList(&Connection->FilterLinks);
    InitializeListHead(&Connection->FilterLinks);
}

/* The kernel side ends a connection (FltCloseClientPort, unregistration): every request on it
 * fails with STATUS_PORT_DISCONNECTED from now on, and its MaxConnections slot is free at once.
 * Caller holds the lock. */
static VOID FltpDisconnectLocked(PFLTP_CONNECTION Connection, FLTP_COMPLETIONS *Completions)
{
    if (Connection->State != FltpConnected) return;
    Connection->State = FltpDisconnected;
    FltpFreeSlotLocked(Connection);
    FltpFlushConnectionLocked(Connection, STATUS_PORT_DISCONNECTED, Completions);
}

/* Runs DisconnectNotify for Connection unless it already ran; at most once per accepted
 * connection, whichever of the client's close and the filter's unregistration comes first. */
static VOID FltpNotifyDisconnect(PFLTP_CONNECTION Connection)
{
    PFLT_FILTER filter;
    PFLT_DISCONNECT_NOTIFY notify = Connection->ServerPort->DisconnectNotify;

    FltpAcquireLock();
    filter = Connection->Filter;
    if (filter == NULL || !Connection->Accepted || Connection->DisconnectNotified) {
        FltpReleaseLock();
        return;
    }
    Connection->DisconnectNotified = TRUE;
    FltpEnterFilterLocked(filter);
    FltpReleaseLock();

    notify(Connection->Cookie);

    FltpLeaveFilter(filter);
}

/* The end of a connection whose client has closed: DisconnectNotify, then the MaxConnections slot
 * (kept until DisconnectNotify has returned, so a minifilter that closes the client port there
 * never closes a newcomer's). Runs once no MessageNotify of the connection is queued or running:
 * in IRP_MJ_CLOSE, or on the worker whose MessageNotify was the last. */
static VOID FltpFinishClose(PFLTP_CONNECTION Connection)
{
    FltpNotifyDisconnect(Connection);
    FltpAcquireLock();
    FltpFreeSlotLocked(Connection);
    if (!Connection->HeldByFilter) FltpForgetLocked(Connection);
    FltpReleaseLock();
}

/* A SEND queued by FltpSendToFilter is over (MessageNotify returned, or never ran): the last one
 * of a closed connection finishes its close. */
static VOID FltpEndMessageCall(PFLTP_CONNECTION Connection, PFLT_FILTER Filter)
{
    BOOLEAN finishClose;

    FltpAcquireLock();
    finishClose = --Connection->MessageCalls == 0 && Connection->State == FltpClosed;
    FltpReleaseLock();
    if (finishClose) FltpFinishClose(Connection);
    FltpLeaveFilter(Filter);
    FltpReleaseConnection(Connection);
}

/* ---- server ports ------------------------------------------------------------------------- */

/* A fresh device name: FLTEMU_PORT_DEVICE_PREFIX + a number. */
static NTSTATUS FltpPortDeviceName(PUNICODE_STRING Name, PWCH Buffer, USHORT BufferBytes)
{
    WCHAR digits[10];
    ULONG number = (ULONG)InterlockedIncrement(&FltpGlobals.NextPortDevice);
    ULONG count = 0;
    NTSTATUS status;

    RtlInitEmptyUnicodeString(Name, Buffer, BufferBytes);
    status = RtlAppendUnicodeToString(Name, FLTEMU_PORT_DEVICE_PREFIX);
    do {
        digits[count++] = (WCHAR)(L'0' + number % 10);
        number /= 10;
    } while (number != 0);
    while (NT_SUCCESS(status) && count > 0) {
        WCHAR digit[2] = {digits[--count], 0};
        status = RtlAppendUnicodeToString(Name, digit);
    }
    return status;
}

NTSTATUS FLTAPI FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
                                           POBJECT_ATTRIBUTES ObjectAttributes, PVOID ServerPortCookie,
                                           PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
                                           PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
                                           PFLT_MESSAGE_NOTIFY MessageNotifyCallback, LONG MaxConnections)
{
    WCHAR deviceNameBuffer[64];
    UNICODE_STRING deviceName;
    PFLTP_SERVER_PORT port;
    PFLTP_PORT_DEVICE extension;
    PCUNICODE_STRING name;
    NTSTATUS status;

    if (ServerPort == NULL) return STATUS_INVALID_PARAMETER;
    *ServerPort = NULL;
    if (Filter == NULL || ObjectAttributes == NULL || ObjectAttributes->ObjectName == NULL ||
        ObjectAttributes->ObjectName->Length == 0 || (ObjectAttributes->Attributes & OBJ_KERNEL_HANDLE) == 0 ||
        MaxConnections <= 0 || ConnectNotifyCallback == NULL || DisconnectNotifyCallback == NULL)
        return STATUS_INVALID_PARAMETER;
    if (Filter->Unregistering) return STATUS_FLT_DELETING_OBJECT;
    name = ObjectAttributes->ObjectName;

    port = (PFLTP_SERVER_PORT)ExAllocatePoolZero(NonPagedPoolNx, sizeof *port, FLTP_POOL_TAG);
    if (port == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    port->Name.Buffer = (PWCH)ExAllocatePoolZero(NonPagedPoolNx, name->Length, FLTP_POOL_TAG);
    if (port->Name.Buffer == NULL) {
        ExFreePoolWithTag(port, FLTP_POOL_TAG);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    RtlCopyMemory(port->Name.Buffer, name->Buffer, name->Length);
    port->Name.Length = port->Name.MaximumLength = name->Length;
    port->Header.Kind = FltpServerPort;
    port->Filter = Filter;
    port->Cookie = ServerPortCookie;
    port->ConnectNotify = ConnectNotifyCallback;
    port->DisconnectNotify = DisconnectNotifyCallback;
    port->MessageNotify = MessageNotifyCallback;
    port->MaxConnections = MaxConnections;
    port->References = 1;

    status = FltpPortDeviceName(&deviceName, deviceNameBuffer, sizeof deviceNameBuffer);
    if (NT_SUCCESS(status))
        status = IoCreateDevice(FltpGlobals.DriverObject, sizeof(FLTP_PORT_DEVICE), &deviceName, FLTEMU_DEVICE_TYPE, 0,
                                FALSE, &port->Device);
    if (!NT_SUCCESS(status)) {
        ExFreePoolWithTag(port->Name.Buffer, FLTP_POOL_TAG);
        ExFreePoolWithTag(port, FLTP_POOL_TAG);
        return status;
    }
    extension = (PFLTP_PORT_DEVICE)port->Device->DeviceExtension;
    extension->Magic = FLTP_PORT_DEVICE_MAGIC;
    extension->Port = port;
    port->Device->StackSize = 2; /* a spare stack location for FltpCompletePendedIrp */
    port->Device->Flags &= ~(ULONG)DO_DEVICE_INITIALIZING;

    /* The port's name: taken already -> STATUS_OBJECT_NAME_COLLISION, as on Windows. Wine answers
     * STATUS_OBJECT_TYPE_MISMATCH when the name is another symbolic link (another port's). */
    status = IoCreateSymbolicLink(&port->Name, &deviceName);
    if (status == STATUS_OBJECT_TYPE_MISMATCH) status = STATUS_OBJECT_NAME_COLLISION;
    if (!NT_SUCCESS(status)) {
        IoDeleteDevice(port->Device);
        ExFreePoolWithTag(port->Name.Buffer, FLTP_POOL_TAG);
        ExFreePoolWithTag(port, FLTP_POOL_TAG);
        return status;
    }

    FltpAcquireLock();
    InsertTailList(&Filter->ServerPorts, &port->FilterLinks);
    FltpReleaseLock();
    *ServerPort = &port->Header;
    return STATUS_SUCCESS;
}

/* No new connection from now on; the existing ones stay. */
VOID FLTAPI FltCloseCommunicationPort(PFLT_PORT ServerPort)
{
    PFLTP_SERVER_PORT port = CONTAINING_RECORD(ServerPort, FLTP_SERVER_PORT, Header);
    BOOLEAN closing;

    if (ServerPort == NULL || ServerPort->Kind != FltpServerPort) return;
    FltpAcquireLock();
    closing = !port->Closed;
    if (closing) {
        port->Closed = TRUE;
        RemoveEntryList(&port->FilterLinks);
    }
    FltpReleaseLock();
    if (!closing) return;
    IoDeleteSymbolicLink(&port->Name);
    FltpReleaseServerPort(port);
}

/* ---- client ports ------------------------------------------------------------------------- */

VOID FLTAPI FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort)
{
    FLTP_COMPLETIONS completions;
    PFLTP_CONNECTION connection = NULL;
    BOOLEAN release = FALSE;
    PFLT_PORT port;

    UNREFERENCED_PARAMETER(Filter);
    if (ClientPort == NULL) return;
    FltpInitCompletions(&completions);
    FltpAcquireLock();
    port = *ClientPort;
    *ClientPort = NULL;
    if (port != NULL && port->Kind == FltpClientPort) {
        connection = CONTAINING_RECORD(port, FLTP_CONNECTION, Header);
        FltpDisconnectLocked(connection, &completions);
        release = connection->HeldByFilter;
        connection->HeldByFilter = FALSE;
        if (release && connection->State == FltpClosed) FltpForgetLocked(connection);
    }
    FltpReleaseLock();
    FltpCompleteAll(&completions);
    if (release) FltpReleaseConnection(connection);
}

/* Queues Message on the connection *ClientPort names (read under the lock: FltCloseClientPort
 * may clear it at any time) and waits for its outcome: delivered (no reply wanted), replied,
 * timed out, or disconnected. */
static NTSTATUS FltpSend(PFLT_PORT *ClientPort, PFLTP_MESSAGE Message, PLARGE_INTEGER Timeout)
{
    FLTP_COMPLETIONS completions;
    PFLTP_CONNECTION connection;
    NTSTATUS status;
    NTSTATUS waited;

    FltpInitCompletions(&completions);
    Message->State = FltpMessageQueued;
    Message->Done = FltpTakeEvent();
    if (Message->Done == NULL) return STATUS_INSUFFICIENT_RESOURCES;

    FltpAcquireLock();
    connection = *ClientPort == NULL || (*ClientPort)->Kind != FltpClientPort
                     ? NULL
                     : CONTAINING_RECORD(*ClientPort, FLTP_CONNECTION, Header);
    if (connection == NULL || connection->State != FltpConnected) {
        FltpReleaseLock();
        FltpReturnEvent(Message->Done);
        return STATUS_PORT_DISCONNECTED;
    }
    FltpReferenceConnectionLocked(connection);
    InsertTailList(&connection->Messages, &Message->Links);
    FltpDeliverLocked(connection, &completions);
    FltpReleaseLock();
    FltpCompleteAll(&completions);

    waited = ZwWaitForSingleObject(Message->Done, FALSE, Timeout);

    FltpAcquireLock();
    if (Message->State != FltpMessageDone) {
        /* Not delivered, or no reply, in time: withdrawn, so a late reply finds no waiter. */
        RemoveEntryList(&Message->Links);
        Message->State = FltpMessageDone;
        Message->Status = STATUS_TIMEOUT;
        waited = STATUS_SUCCESS; /* nothing will set the event now */
    }
    status = Message->Status;
    FltpReleaseLock();
    if (waited != STATUS_SUCCESS) {
        /* The outcome came between the timeout and the look above: take the signal back before
         * the event is reused. */
        LARGE_INTEGER now;
        now.QuadPart = 0;
        ZwWaitForSingleObject(Message->Done, FALSE, &now);
    }
    FltpReturnEvent(Message->Done);
    FltpReleaseConnection(connection);
    return status;
}

static PFLTP_MESSAGE FltpAllocateMessage(ULONG ByteCount)
{
    PFLTP_MESSAGE message = (PFLTP_MESSAGE)ExAllocatePoolZero(NonPagedPoolNx, sizeof *message + ByteCount, FLTP_POOL_TAG);
    if (message == NULL) return NULL;
    message->Bytes = message + 1;
    message->ByteCount = ByteCount;
    return message;
}

NTSTATUS FLTAPI FltSendMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer,
                               ULONG SenderBufferLength, PVOID ReplyBuffer, PULONG ReplyLength,
                               PLARGE_INTEGER Timeout)
{
    FILTER_MESSAGE_HEADER header;
    PFLTP_MESSAGE message;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(Filter);
    if (ClientPort == NULL || (SenderBuffer == NULL && SenderBufferLength != 0) ||
        (ReplyBuffer != NULL && ReplyLength == NULL) ||
        SenderBufferLength > MAXULONG - sizeof header ||
        (ReplyBuffer != NULL && *ReplyLength > MAXULONG - sizeof(FILTER_REPLY_HEADER)))
        return STATUS_INVALID_PARAMETER;

    message = FltpAllocateMessage((ULONG)sizeof header + SenderBufferLength);
    if (message == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    header.MessageId = (ULONGLONG)InterlockedIncrement64(&FltpGlobals.NextMessageId);
    header.ReplyLength = ReplyBuffer == NULL ? 0 : *ReplyLength + (ULONG)sizeof(FILTER_REPLY_HEADER);
    RtlCopyMemory(message->Bytes, &header, sizeof header);
    if (SenderBufferLength != 0) RtlCopyMemory((PUCHAR)message->Bytes + sizeof header, SenderBuffer, SenderBufferLength);
    message->MessageId = header.MessageId;
    message->WantsReply = ReplyBuffer != NULL;
    message->ReplyBuffer = ReplyBuffer;
    message->ReplyCapacity = ReplyBuffer == NULL ? 0 : *ReplyLength;

    status = FltpSend(ClientPort, message, Timeout);
    if (ReplyBuffer != NULL && (status == STATUS_SUCCESS || status == STATUS_BUFFER_OVERFLOW))
        *ReplyLength = message->ReplyLength;
    ExFreePoolWithTag(message, FLTP_POOL_TAG);
    return status;
}

NTSTATUS FLTAPI FltEmuSendRawMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID Message, ULONG MessageLength,
                                     PLARGE_INTEGER Timeout)
{
    PFLTP_MESSAGE message;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(Filter);
    if (ClientPort == NULL || Message == NULL || MessageLength < sizeof(FILTER_MESSAGE_HEADER))
        return STATUS_INVALID_PARAMETER;
    message = FltpAllocateMessage(MessageLength);
    if (message == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    RtlCopyMemory(message->Bytes, Message, MessageLength);
    message->MessageId = ((const FILTER_MESSAGE_HEADER *)Message)->MessageId;
    status = FltpSend(ClientPort, message, Timeout);
    ExFreePoolWithTag(message, FLTP_POOL_TAG);
    return status;
}

VOID FLTAPI FltEmuDropOversizedMessages(PFLT_FILTER Filter, BOOLEAN Drop)
{

    FltpAcquireLock();
    Filter->DropOversizedMessages = Drop;
    FltpReleaseLock();
}

/* ---- MessageNotify on worker threads ------------------------------------------------------ */

/* One thread dispatches every IRP under Wine, and MessageNotify may block for seconds (or send a
 * message itself and wait for the reply): each SEND runs on a worker of this pool, which grows
 * when no worker is idle. On Windows MessageNotify runs in the caller's thread, so as many run at
 * once as clients call: the pool's limit is high (a client blocking 600 sends in the kernel at once
 * is a test of fltport's); beyond it a SEND waits for a free worker. */
#define FLTP_MAX_WORKERS 2048

typedef struct _FLTP_WORK {
    LIST_ENTRY Links;
    PIRP Irp;
    PFLTP_CONNECTION Connection;
} FLTP_WORK, *PFLTP_WORK;

static struct {
    LIST_ENTRY Queue;   /* FLTP_WORK, under FltpGlobals.Lock */
    LONG Queued;        /* items in Queue */
    LONG Idle;          /* workers waiting for work */
    LONG Count;         /* workers started */
    BOOLEAN Stopping;
    KSEMAPHORE Work;
    HANDLE Threads[FLTP_MAX_WORKERS];
} FltpWorkers;

static VOID FltpRunSend(PFLTP_WORK Work)
{
    PIRP irp = Work->Irp;
    PFLTP_CONNECTION connection = Work->Connection;
    PIO_STACK_LOCATION stack = IoGetCurrentIrpStackLocation(irp);
    ULONG inputBytes = stack->Parameters.DeviceIoControl.InputBufferLength;
    ULONG outputBytes = stack->Parameters.DeviceIoControl.OutputBufferLength;
    PVOID input = NULL;
    PVOID output = NULL;
    ULONG returned = 0;
    PFLT_FILTER filter;
    NTSTATUS status = STATUS_SUCCESS;

    /* The connection may have ended while the SEND waited for a worker: MessageNotify never sees
     * a connection that is over (its DisconnectNotify may be about to run). */
    FltpAcquireLock();
    filter = connection->Filter; /* kept by the SEND's Busy count */
    if (connection->State != FltpConnected) status = STATUS_PORT_DISCONNECTED;
    FltpReleaseLock();

    /* Buffered I/O gives one system buffer for both directions: MessageNotify gets copies of its
     * own (the input always readable, the output zero-filled). */
    if (NT_SUCCESS(status) && inputBytes != 0) {
        input = ExAllocatePoolUninitialized(NonPagedPoolNx, inputBytes, FLTP_POOL_TAG);
        if (input == NULL) status = STATUS_INSUFFICIENT_RESOURCES;
        else RtlCopyMemory(input, irp->AssociatedIrp.SystemBuffer, inputBytes);
    }
    if (NT_SUCCESS(status) && outputBytes != 0) {
        output = ExAllocatePoolZero(NonPagedPoolNx, outputBytes, FLTP_POOL_TAG);
        if (output == NULL) status = STATUS_INSUFFICIENT_RESOURCES;
    }
    if (NT_SUCCESS(status)) {
        status = connection->ServerPort->MessageNotify(connection->Cookie, input, inputBytes, output, outputBytes,
                                                       &returned);
        if (returned > outputBytes) returned = outputBytes;
        if (returned != 0) RtlCopyMemory(irp->AssociatedIrp.SystemBuffer, output, returned);
    }
    if (input != NULL) ExFreePoolWithTag(input, FLTP_POOL_TAG);
    if (output != NULL) ExFreePoolWithTag(output, FLTP_POOL_TAG);
    /* Completed before the connection is released: its last reference may delete the port's
     * device, which the IRP names. */
    FltpCompletePendedIrp(irp, status, returned);
    FltpEndMessageCall(connection, filter);
}

static KSTART_ROUTINE FltpWorker;

static VOID FltpWorker(PVOID Context)
{
    UNREFERENCED_PARAMETER(Context);
    for (;;) {
        PFLTP_WORK work = NULL;

        KeWaitForSingleObject(&FltpWorkers.Work, Executive, KernelMode, FALSE, NULL);
        FltpAcquireLock();
        FltpWorkers.Idle--;
        if (!IsListEmpty(&FltpWorkers.Queue)) {
            work = CONTAINING_RECORD(RemoveHeadList(&FltpWorkers.Queue), FLTP_WORK, Links);
            FltpWorkers.Queued--;
        }
        FltpReleaseLock();
        if (work == NULL) break; /* stopping */
        FltpRunSend(work);
        ExFreePoolWithTag(work, FLTP_POOL_TAG);
        FltpAcquireLock();
        FltpWorkers.Idle++;
        FltpReleaseLock();
    }
    PsTerminateSystemThread(STATUS_SUCCESS);
}

/* Starts one more worker; FALSE when the pool is full or the thread cannot start. */
static BOOLEAN FltpAddWorker(VOID)
{
    HANDLE thread;
    LONG index;

    FltpAcquireLock();
    index = FltpWorkers.Count < FLTP_MAX_WORKERS && !FltpWorkers.Stopping ? FltpWorkers.Count++ : -1;
    if (index >= 0) FltpWorkers.Idle++;
    FltpReleaseLock();
    if (index < 0) return FALSE;
    if (!NT_SUCCESS(PsCreateSystemThread(&thread, THREAD_ALL_ACCESS, NULL, NULL, NULL, FltpWorker, NULL))) {
        FltpAcquireLock();
        FltpWorkers.Idle--;
        FltpWorkers.Count--;
        FltpReleaseLock();
        return FALSE;
    }
    FltpWorkers.Threads[index] = thread;
    return TRUE;
}

NTSTATUS FltpStartWorkers(VOID)
{
    InitializeListHead(&FltpWorkers.Queue);
    KeInitializeSemaphore(&FltpWorkers.Work, 0, MAXLONG);
    return FltpAddWorker() ? STATUS_SUCCESS : STATUS_INSUFFICIENT_RESOURCES;
}

VOID FltpStopWorkers(VOID)
{
    LONG count;
    LONG i;

    FltpAcquireLock();
    FltpWorkers.Stopping = TRUE;
    count = FltpWorkers.Count;
    FltpReleaseLock();
    KeReleaseSemaphore(&FltpWorkers.Work, IO_NO_INCREMENT, count, FALSE);
    for (i = 0; i < count; i++) {
        if (FltpWorkers.Threads[i] == NULL) continue;
        ZwWaitForSingleObject(FltpWorkers.Threads[i], FALSE, NULL);
        ZwClose(FltpWorkers.Threads[i]);
        FltpWorkers.Threads[i] = NULL;
    }
    FltpFreeEventPool();
}

/* Hands a SEND to the pool (the connection and filter are already referenced for it). */
static NTSTATUS FltpQueueSend(PIRP Irp, PFLTP_CONNECTION Connection)
{
    PFLTP_WORK work = (PFLTP_WORK)ExAllocatePoolZero(NonPagedPoolNx, sizeof *work, FLTP_POOL_TAG);
    BOOLEAN needWorker;

    if (work == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    work->Irp = Irp;
    work->Connection = Connection;
    IoMarkIrpPending(Irp);
    FltpAcquireLock();
    InsertTailList(&FltpWorkers.Queue, &work->Links);
    needWorker = ++FltpWorkers.Queued > FltpWorkers.Idle;
    FltpReleaseLock();
    /* A full pool still serves the item: a worker takes it when it is free. */
    if (needWorker) FltpAddWorker();
    KeReleaseSemaphore(&FltpWorkers.Work, IO_NO_INCREMENT, 1, FALSE);
    return STATUS_PENDING;
}

/* ---- IRPs on a port's device -------------------------------------------------------------- */

static PFLTP_CONNECTION FltpConnectionOfIrp(PIRP Irp)
{
    return (PFLTP_CONNECTION)IoGetCurrentIrpStackLocation(Irp)->FileObject->FsContext;
}

/* An open of the port's name: the file object becomes a connection once CONNECT is accepted. */
NTSTATUS FltpPortCreate(PDEVICE_OBJECT Device, PIRP Irp)
{
    PFLTP_SERVER_PORT port = ((PFLTP_PORT_DEVICE)Device->DeviceExtension)->Port;
    PFLTP_CONNECTION connection;
    NTSTATUS status = STATUS_SUCCESS;

    connection = (PFLTP_CONNECTION)ExAllocatePoolZero(NonPagedPoolNx, sizeof *connection, FLTP_POOL_TAG);
    if (connection == NULL) {
        FltpCompleteIrp(Irp, STATUS_INSUFFICIENT_RESOURCES, 0);
        return STATUS_INSUFFICIENT_RESOURCES;
    }
    connection->Header.Kind = FltpClientPort;
    connection->ServerPort = port;
    connection->FileObject = IoGetCurrentIrpStackLocation(Irp)->FileObject;
    connection->State = FltpOpened;
    connection->References = 1;
    InitializeListHead(&connection->FilterLinks);
    InitializeListHead(&connection->Reads);
    InitializeListHead(&connection->Messages);
    InitializeListHead(&connection->Waiters);

    FltpAcquireLock();
    /* Closed: the name is gone already, but an open can race with FltCloseCommunicationPort. */
    if (port->Closed)
        status = STATUS_OBJECT_NAME_NOT_FOUND;
    else
        port->References++;
    FltpReleaseLock();
    if (!NT_SUCCESS(status)) {
        ExFreePoolWithTag(connection, FLTP_POOL_TAG);
        FltpCompleteIrp(Irp, status, 0);
        return status;
    }
    connection->FileObject->FsContext = connection;
    FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

/* CONNECT: ConnectNotify runs here, in dispatch, so that PsGetCurrentProcess names the client. */
static NTSTATUS FltpConnect(PFLTP_CONNECTION Connection, PIRP Irp, PIO_STACK_LOCATION Stack, ULONG_PTR *Information)
{
    PFLTP_SERVER_PORT port = Connection->ServerPort;
    const FLTEMU_CONNECT_REQUEST *request = (const FLTEMU_CONNECT_REQUEST *)Irp->AssociatedIrp.SystemBuffer;
    ULONG inputBytes = Stack->Parameters.DeviceIoControl.InputBufferLength;
    PFLT_FILTER filter;
    PVOID cookie = NULL;
    NTSTATUS status = STATUS_SUCCESS;

    if (inputBytes < sizeof *request || request->ContextBytes > FLTEMU_MAX_CONTEXT ||
        request->ContextBytes != inputBytes - sizeof *request ||
        Stack->Parameters.DeviceIoControl.OutputBufferLength < sizeof(ULONG))
        return STATUS_INVALID_PARAMETER;

    FltpAcquireLock();
    filter = port->Filter; /* valid while the port is open */
    if (Connection->State != FltpOpened)
        status = STATUS_INVALID_HANDLE;
    else if (port->Closed || filter->Unregistering)
        status = STATUS_OBJECT_NAME_NOT_FOUND;
    else if (port->Connections >= port->MaxConnections)
        status = STATUS_CONNECTION_COUNT_LIMIT;
    if (NT_SUCCESS(status)) {
        port->Connections++; /* reserved while ConnectNotify decides */
        FltpEnterFilterLocked(filter);
    }
    FltpReleaseLock();
    if (!NT_SUCCESS(status)) return status;

    status = port->ConnectNotify(&Connection->Header, port->Cookie,
                                 request->ContextBytes == 0 ? NULL : (PVOID)(request + 1), request->ContextBytes,
                                 &cookie);

    FltpAcquireLock();
    if (NT_SUCCESS(status)) {
        Connection->Cookie = cookie;
        Connection->Filter = filter;
        Connection->State = FltpConnected;
        Connection->Accepted = TRUE;
        Connection->HoldsSlot = TRUE;
        Connection->HeldByFilter = TRUE;
        FltpReferenceConnectionLocked(Connection); /* the minifilter's client port */
        InsertTailList(&filter->Connections, &Connection->FilterLinks);
    } else {
        port->Connections--;
    }
    FltpReleaseLock();
    FltpLeaveFilter(filter);
    if (!NT_SUCCESS(status)) return status;
    /* The answer only a port gives: fltlib tells a port from another device by it. */
    *(ULONG *)Irp->AssociatedIrp.SystemBuffer = FLTEMU_CONNECT_ACCEPTED;
    *Information = sizeof(ULONG);
    return STATUS_SUCCESS;
}

static NTSTATUS FltpGetMessage(PFLTP_CONNECTION Connection, PIRP Irp, PIO_STACK_LOCATION Stack)
{
    FLTP_COMPLETIONS completions;

    if (Stack->Parameters.DeviceIoControl.OutputBufferLength < sizeof(FILTER_MESSAGE_HEADER))
        return STATUS_BUFFER_TOO_SMALL;
    FltpInitCompletions(&completions);
    FltpAcquireLock();
    if (Connection->State != FltpConnected) {
        NTSTATUS status = Connection->State == FltpOpened ? STATUS_INVALID_HANDLE : STATUS_PORT_DISCONNECTED;
        FltpReleaseLock();
        return status;
    }
    /* Always pended, also when a message is waiting: the result always comes through the
     * completion (event, completion port, thread pool), as for the real filter manager. */
    IoMarkIrpPending(Irp);
    IoSetCancelRoutine(Irp, FltpCancelRead);
    if (Irp->Cancel && IoSetCancelRoutine(Irp, NULL) != NULL) {
        FltpReleaseLock();
        FltpCompletePendedIrp(Irp, STATUS_CANCELLED, 0);
        return STATUS_PENDING;
    }
    InsertTailList(&Connection->Reads, &Irp->Tail.Overlay.ListEntry);
    FltpDeliverLocked(Connection, &completions);
    FltpReleaseLock();
    FltpCompleteAll(&completions);
    return STATUS_PENDING;
}

static NTSTATUS FltpReply(PFLTP_CONNECTION Connection, PIRP Irp, PIO_STACK_LOCATION Stack)
{
    const FILTER_REPLY_HEADER *reply = (const FILTER_REPLY_HEADER *)Irp->AssociatedIrp.SystemBuffer;
    ULONG inputBytes = Stack->Parameters.DeviceIoControl.InputBufferLength;
    ULONG payloadBytes;
    PLIST_ENTRY entry;
    NTSTATUS status = STATUS_FLT_NO_WAITER_FOR_REPLY;

    if (inputBytes < sizeof *reply) return STATUS_INVALID_PARAMETER;
    payloadBytes = inputBytes - (ULONG)sizeof *reply;
    FltpAcquireLock();
    if (Connection->State != FltpConnected) {
        status = Connection->State == FltpOpened ? STATUS_INVALID_HANDLE : STATUS_PORT_DISCONNECTED;
        FltpReleaseLock();
        return status;
    }
    for (entry = Connection->Waiters.Flink; entry != &Connection->Waiters; entry = entry->Flink) {
        PFLTP_MESSAGE message = CONTAINING_RECORD(entry, FLTP_MESSAGE, Links);
        ULONG copied;

        if (message->MessageId != reply->MessageId) continue;
        RemoveEntryList(&message->Links);
        /* More than the sender's buffer holds: it gets the first bytes and STATUS_BUFFER_OVERFLOW,
         * and so does the replier. FILTER_REPLY_HEADER.Status is not passed on. */
        copied = payloadBytes < message->ReplyCapacity ? payloadBytes : message->ReplyCapacity;
        if (copied != 0) RtlCopyMemory(message->ReplyBuffer, reply + 1, copied);
        message->ReplyLength = copied;
        status = payloadBytes > message->ReplyCapacity ? STATUS_BUFFER_OVERFLOW : STATUS_SUCCESS;
        FltpFinishMessageLocked(message, status);
        break;
    }
    FltpReleaseLock();
    return status;
}

static NTSTATUS FltpSendToFilter(PFLTP_CONNECTION Connection, PIRP Irp)
{
    NTSTATUS status = STATUS_SUCCESS;

    FltpAcquireLock();
    if (Connection->State != FltpConnected)
        status = Connection->State == FltpOpened ? STATUS_INVALID_HANDLE : STATUS_PORT_DISCONNECTED;
    else if (Connection->ServerPort->MessageNotify == NULL)
        status = STATUS_INVALID_DEVICE_REQUEST;
    if (NT_SUCCESS(status)) {
        FltpReferenceConnectionLocked(Connection);
        FltpEnterFilterLocked(Connection->Filter);
        Connection->MessageCalls++;
    }
    FltpReleaseLock();
    if (!NT_SUCCESS(status)) return status;
    status = FltpQueueSend(Irp, Connection);
    if (status != STATUS_PENDING) FltpEndMessageCall(Connection, Connection->Filter);
    return status;
}

NTSTATUS FltpPortDeviceControl(PDEVICE_OBJECT Device, PIRP Irp)
{
    PIO_STACK_LOCATION stack = IoGetCurrentIrpStackLocation(Irp);
    PFLTP_CONNECTION connection = FltpConnectionOfIrp(Irp);
    ULONG_PTR information = 0;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(Device);
    switch (stack->Parameters.DeviceIoControl.IoControlCode) {
    case IOCTL_FLTEMU_CONNECT:
        status = FltpConnect(connection, Irp, stack, &information);
        break;
    case IOCTL_FLTEMU_GET_MESSAGE:
        status = FltpGetMessage(connection, Irp, stack);
        break;
    case IOCTL_FLTEMU_SEND:
        status = FltpSendToFilter(connection, Irp);
        break;
    case IOCTL_FLTEMU_REPLY:
        status = FltpReply(connection, Irp, stack);
        break;
    default:
        status = STATUS_INVALID_DEVICE_REQUEST;
        break;
    }
    if (status != STATUS_PENDING) FltpCompleteIrp(Irp, status, information);
    return status;
}

/* The client's last handle is gone. Wine sends no IRP_MJ_CLEANUP and leaves the reads pending
 * (their cancel routines do not run): they end here with STATUS_CANCELLED, as Windows's cleanup
 * ends them; senders get STATUS_PORT_DISCONNECTED; then DisconnectNotify, inline, unless a
 * MessageNotify of the connection is queued or running: the last of them runs it on its worker
 * (this thread must not wait for it). */
NTSTATUS FltpPortClose(PDEVICE_OBJECT Device, PIRP Irp)
{
    PFLTP_CONNECTION connection = FltpConnectionOfIrp(Irp);
    FLTP_COMPLETIONS completions;
    BOOLEAN finishClose;

    UNREFERENCED_PARAMETER(Device);
    FltpInitCompletions(&completions);
    FltpAcquireLock();
    connection->State = FltpClosed;
    FltpFlushConnectionLocked(connection, STATUS_CANCELLED, &completions);
    finishClose = connection->MessageCalls == 0;
    FltpReleaseLock();
    FltpCompleteAll(&completions);

    if (finishClose) FltpFinishClose(connection);
    /* Completed before the release: the last reference may delete the device the IRP names. */
    FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
    FltpReleaseConnection(connection);
    return STATUS_SUCCESS;
}

/* ---- unregistration ----------------------------------------------------------------------- */

VOID FltpClosePortsOfFilter(PFLT_FILTER Filter)
{
    FLTP_COMPLETIONS completions;
    PLIST_ENTRY entry;

    /* Server ports left open: closed as FltCloseCommunicationPort would. */
    for (;;) {
        PFLTP_SERVER_PORT port = NULL;
        FltpAcquireLock();
        if (!IsListEmpty(&Filter->ServerPorts))
            port = CONTAINING_RECORD(Filter->ServerPorts.Flink, FLTP_SERVER_PORT, FilterLinks);
        FltpReleaseLock();
        if (port == NULL) break;
        FltCloseCommunicationPort(&port->Header);
    }

    /* ConnectNotify calls in progress finish first, so that their connections are ended too. */
    FltpWaitFilterIdle(Filter);
    FltpInitCompletions(&completions);
    FltpAcquireLock();
    for (entry = Filter->Connections.Flink; entry != &Filter->Connections; entry = entry->Flink)
        FltpDisconnectLocked(CONTAINING_RECORD(entry, FLTP_CONNECTION, FilterLinks), &completions);
    FltpReleaseLock();
    FltpCompleteAll(&completions);
    /* SENDs queued before (they hold Busy; those not started yet end without MessageNotify): no
     * DisconnectNotify below overlaps a MessageNotify of its connection. */
    FltpWaitFilterIdle(Filter);

    /* DisconnectNotify for every connection that has not had it (a client closing at the same
     * moment may run it instead: once either way). */
    for (;;) {
        PFLTP_CONNECTION connection = NULL;
        FltpAcquireLock();
        for (entry = Filter->Connections.Flink; entry != &Filter->Connections; entry = entry->Flink) {
            PFLTP_CONNECTION candidate = CONTAINING_RECORD(entry, FLTP_CONNECTION, FilterLinks);
            if (!candidate->DisconnectNotified) {
                connection = candidate;
                FltpReferenceConnectionLocked(connection);
                break;
            }
        }
        FltpReleaseLock();
        if (connection == NULL) break;
        FltpNotifyDisconnect(connection);
        FltpReleaseConnection(connection);
    }
    FltpWaitFilterIdle(Filter);

    /* No callback of the filter can start any more. Its connections forget it (requests on those
     * whose clients still hold their handles fail with STATUS_PORT_DISCONNECTED), and client ports
     * the minifilter never closed are closed. */
    for (;;) {
        PFLTP_CONNECTION connection = NULL;
        BOOLEAN release = FALSE;
        FltpAcquireLock();
        if (!IsListEmpty(&Filter->Connections)) {
            connection = CONTAINING_RECORD(Filter->Connections.Flink, FLTP_CONNECTION, FilterLinks);
            FltpForgetLocked(connection);
            connection->Filter = NULL;
            release = connection->HeldByFilter; /* client ports the minifilter never closed */
            connection->HeldByFilter = FALSE;
        }
        FltpReleaseLock();
        if (connection == NULL) break;
        if (release) FltpReleaseConnection(connection);
    }
}
