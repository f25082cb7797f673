/*
 * Completing pended IRPs without a use-after-free in Wine 8.
 *
 * When a client cancels an I/O request (CancelIoEx, the issuing thread exits, the process dies),
 * wineserver queues a "cancel" call naming the IRP's address to the dispatch thread, and does not
 * take it back when the IRP is completed before the dispatch thread gets to it. The dispatch thread
 * then runs IoCancelIrp on an IRP that IoCompleteRequest has already freed: it writes into freed
 * memory and, once that memory is reused, calls a garbage cancel routine (winedevice.exe crashed
 * with a page fault in IoCancelIrp in the fuzz and worker_threads suites, which cancel reads while
 * the kernel sends).
 *
 * So an IRP that was pended is completed in two steps. First its result goes to wineserver as
 * IoCompleteRequest would send it, but the IRP is kept: the port devices have a spare stack
 * location below fltmgr's, which gets a completion routine that runs Wine's own completion routine
 * (the one above it) itself and then stops IoCompleteRequest before it frees anything. The IRP, its
 * cancel routine cleared, waits in limbo. Then a reaper thread sends a "fence" IOCTL to fltmgr's
 * control device: wineserver hands calls to the dispatch thread in order, so once the fence has
 * been dispatched, every cancel call queued before the IRPs entered limbo has been processed
 * (harmlessly: IoCancelIrp finds no cancel routine). Only then does the reaper complete them for
 * good, which frees them.
 */
#include "fltmgrp.h"

/* The completion routine of the spare stack location. IoCompleteRequest has moved to fltmgr's
 * location, whose completion routine is Wine's (it reports the result to wineserver): run it as
 * IoCompleteRequest would, then keep the IRP. */
static IO_COMPLETION_ROUTINE FltpHoldIrp;

static NTSTATUS FltpHoldIrp(PDEVICE_OBJECT Device, PIRP Irp, PVOID Context)
{
    PIO_STACK_LOCATION stack = IoGetCurrentIrpStackLocation(Irp);
    PIO_COMPLETION_ROUTINE routine = stack->CompletionRoutine;
    PVOID routineContext = stack->Context;
    UCHAR control = stack->Control;
    NTSTATUS status;

    UNREFERENCED_PARAMETER(Device);
    UNREFERENCED_PARAMETER(Context);
    stack->CompletionRoutine = NULL;
    stack->Control = 0;
    Irp->CurrentLocation++;
    Irp->Tail.Overlay.CurrentStackLocation++;
    Irp->PendingReturned = (control & SL_PENDING_RETURNED) != 0;
    status = routine == NULL ? STATUS_SUCCESS : routine(NULL, Irp, routineContext);
    /* Completed while its own dispatch routine still ran: Wine's dispatch loop reports it and frees
     * it, in order, so no cancel call can be left behind for it. */
    if (status == STATUS_MORE_PROCESSING_REQUIRED) return STATUS_MORE_PROCESSING_REQUIRED;

    FltpAcquireLock();
    InsertTailList(&FltpGlobals.Limbo, &Irp->Tail.Overlay.ListEntry);
    FltpReleaseLock();
    ZwSetEvent(FltpGlobals.LimboWake, NULL);
    return STATUS_MORE_PROCESSING_REQUIRED;
}

VOID FltpCompletePendedIrp(PIRP Irp, NTSTATUS Status, ULONG_PTR Information)
{
    Irp->IoStatus.Status = Status;
    Irp->IoStatus.Information = Information;
    /* No spare location (a device without one, or no reaper): complete as usual. */
    if (Irp->CurrentLocation <= 1 || FltpGlobals.LimboWake == NULL) {
        IoCompleteRequest(Irp, IO_NO_INCREMENT);
        return;
    }
    IoSetCompletionRoutine(Irp, FltpHoldIrp, NULL, TRUE, TRUE, TRUE);
    IoSetNextIrpStackLocation(Irp);
    IoCompleteRequest(Irp, IO_NO_INCREMENT);
}

/* Opens fltmgr's control device for the fences (from the reaper: an open needs the dispatch
 * thread, which DriverEntry runs on). */
static HANDLE FltpOpenControlDevice(VOID)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK iosb;
    HANDLE handle = NULL;

    RtlInitUnicodeString(&name, FLTEMU_CONTROL_DEVICE_NAME);
    InitializeObjectAttributes(&attributes, &name, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, NULL);
    if (!NT_SUCCESS(ZwCreateFile(&handle, GENERIC_READ | SYNCHRONIZE, &attributes, &iosb, NULL, 0,
                                 FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN, FILE_SYNCHRONOUS_IO_NONALERT, NULL, 0)))
        return NULL;
    return handle;
}

static KSTART_ROUTINE FltpReaper;

static VOID FltpReaper(PVOID Context)
{
    HANDLE control = NULL;

    UNREFERENCED_PARAMETER(Context);
    for (;;) {
        LIST_ENTRY batch;
        BOOLEAN stopping;
        IO_STATUS_BLOCK iosb;

        ZwWaitForSingleObject(FltpGlobals.LimboWake, FALSE, NULL);
        InitializeListHead(&batch);
        FltpAcquireLock();
        stopping = FltpGlobals.LimboStopping;
        while (!IsListEmpty(&FltpGlobals.Limbo)) InsertTailList(&batch, RemoveHeadList(&FltpGlobals.Limbo));
        FltpReleaseLock();
        /* At unload no fence can be dispatched any more (the dispatch loop may be gone): what is in
         * limbo then stays there, a few IRPs of memory. */
        if (stopping) break;
        if (IsListEmpty(&batch)) continue;
        if (control == NULL) control = FltpOpenControlDevice();
        if (control != NULL)
            ZwDeviceIoControlFile(control, NULL, NULL, NULL, &iosb, IOCTL_FLTEMU_FENCE, NULL, 0, NULL, 0);
        while (!IsListEmpty(&batch)) {
            PIRP irp = CONTAINING_RECORD(RemoveHeadList(&batch), IRP, Tail.Overlay.ListEntry);
            IoCompleteRequest(irp, IO_NO_INCREMENT); /* nothing left to call: frees it */
        }
    }
    if (control != NULL) ZwClose(control);
    PsTerminateSystemThread(STATUS_SUCCESS);
}

NTSTATUS FltpStartReaper(VOID)
{
    OBJECT_ATTRIBUTES attributes;
    NTSTATUS status;

    InitializeListHead(&FltpGlobals.Limbo);
    InitializeObjectAttributes(&attributes, NULL, OBJ_KERNEL_HANDLE, NULL, NULL);
    status = ZwCreateEvent(&FltpGlobals.LimboWake, EVENT_ALL_ACCESS, &attributes, SynchronizationEvent, FALSE);
    if (!NT_SUCCESS(status)) return status;
    status = PsCreateSystemThread(&FltpGlobals.Reaper, THREAD_ALL_ACCESS, NULL, NULL, NULL, FltpReaper, NULL);
    if (!NT_SUCCESS(status)) {
        ZwClose(FltpGlobals.LimboWake);
        FltpGlobals.LimboWake = NULL;
    }
    return status;
}

VOID FltpStopReaper(VOID)
{
    FltpAcquireLock();
    FltpGlobals.LimboStopping = TRUE;
    FltpReleaseLock();
    ZwSetEvent(FltpGlobals.LimboWake, NULL);
    ZwWaitForSingleObject(FltpGlobals.Reaper, FALSE, NULL);
    ZwClose(FltpGlobals.Reaper);
    ZwClose(FltpGlobals.LimboWake);
    FltpGlobals.LimboWake = NULL;
}
