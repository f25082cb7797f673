/*
 * Communication ports of the emulator's fltmgr.sys. Placeholder: every call fails.
 */
#include "fltmgrp.h"

NTSTATUS FltpPortCreate(PDEVICE_OBJECT Device, PIRP Irp)
{
    UNREFERENCED_PARAMETER(Device);
    FltpCompleteIrp(Irp, STATUS_NOT_IMPLEMENTED, 0);
    return STATUS_NOT_IMPLEMENTED;
}

NTSTATUS FltpPortClose(PDEVICE_OBJECT Device, PIRP Irp)
{
    UNREFERENCED_PARAMETER(Device);
    FltpCompleteIrp(Irp, STATUS_SUCCESS, 0);
    return STATUS_SUCCESS;
}

NTSTATUS FltpPortDeviceControl(PDEVICE_OBJECT Device, PIRP Irp)
{
    UNREFERENCED_PARAMETER(Device);
    FltpCompleteIrp(Irp, STATUS_NOT_IMPLEMENTED, 0);
    return STATUS_NOT_IMPLEMENTED;
}

VOID FltpClosePortsOfFilter(PFLT_FILTER Filter)
{
    UNREFERENCED_PARAMETER(Filter);
}

NTSTATUS FltpStartWorkers(VOID)
{
    return STATUS_SUCCESS;
}

VOID FltpStopWorkers(VOID)
{
}

NTSTATUS FLTAPI FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
                                           POBJECT_ATTRIBUTES ObjectAttributes, PVOID ServerPortCookie,
                                           PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
                                           PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
                                           PFLT_MESSAGE_NOTIFY MessageNotifyCallback, LONG MaxConnections)
{
    UNREFERENCED_PARAMETER(Filter);
    UNREFERENCED_PARAMETER(ObjectAttributes);
    UNREFERENCED_PARAMETER(ServerPortCookie);
    UNREFERENCED_PARAMETER(ConnectNotifyCallback);
    UNREFERENCED_PARAMETER(DisconnectNotifyCallback);
    UNREFERENCED_PARAMETER(MessageNotifyCallback);
    UNREFERENCED_PARAMETER(MaxConnections);
    *ServerPort = NULL;
    return STATUS_NOT_IMPLEMENTED;
}

VOID FLTAPI FltCloseCommunicationPort(PFLT_PORT ServerPort)
{
    UNREFERENCED_PARAMETER(ServerPort);
}

VOID FLTAPI FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort)
{
    UNREFERENCED_PARAMETER(Filter);
    *ClientPort = NULL;
}

NTSTATUS FLTAPI FltSendMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer,
                               ULONG SenderBufferLength, PVOID ReplyBuffer, PULONG ReplyLength,
                               PLARGE_INTEGER Timeout)
{
    UNREFERENCED_PARAMETER(Filter);
    UNREFERENCED_PARAMETER(ClientPort);
    UNREFERENCED_PARAMETER(SenderBuffer);
    UNREFERENCED_PARAMETER(SenderBufferLength);
    UNREFERENCED_PARAMETER(ReplyBuffer);
    UNREFERENCED_PARAMETER(ReplyLength);
    UNREFERENCED_PARAMETER(Timeout);
    return STATUS_NOT_IMPLEMENTED;
}

NTSTATUS FLTAPI FltEmuSendRawMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID Message, ULONG MessageLength,
                                     PLARGE_INTEGER Timeout)
{
    UNREFERENCED_PARAMETER(Filter);
    UNREFERENCED_PARAMETER(ClientPort);
    UNREFERENCED_PARAMETER(Message);
    UNREFERENCED_PARAMETER(MessageLength);
    UNREFERENCED_PARAMETER(Timeout);
    return STATUS_NOT_IMPLEMENTED;
}

VOID FLTAPI FltEmuDropOversizedMessages(PFLT_FILTER Filter, BOOLEAN Drop)
{
    Filter->DropOversizedMessages = Drop;
}
