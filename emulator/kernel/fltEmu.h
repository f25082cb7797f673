/*
 * Emulator-only calls of the emulator's fltmgr.sys (kernel mode). They have no Windows
 * counterpart: a driver uses them under `#ifdef FLTEMU` and answers STATUS_NOT_SUPPORTED on the
 * real filter manager. Include <fltKernel.h> first.
 */
#ifndef FLTEMU_KERNEL_FLTEMU_H
#define FLTEMU_KERNEL_FLTEMU_H

#ifdef __cplusplus
extern "C" {
#endif

/* What a buggy driver could make a client read: delivers MessageLength bytes verbatim as one
 * message, FILTER_MESSAGE_HEADER included (any ReplyLength, any MessageId), so that clients can be
 * tested against headers FltSendMessage never produces. No reply is waited for (a reply finds no
 * waiter unless MessageId is that of a real message waiting for one); returns once delivered, or
 * STATUS_TIMEOUT / STATUS_PORT_DISCONNECTED as FltSendMessage would. MessageLength must be at
 * least sizeof(FILTER_MESSAGE_HEADER) (else STATUS_INVALID_PARAMETER). */
NTSTATUS FLTAPI FltEmuSendRawMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID Message, ULONG MessageLength,
                                     PLARGE_INTEGER Timeout);

/* Whether Windows keeps a message that meets a read too small for it (the emulator's default: it
 * stays queued for a read that fits) or drops it is undocumented. With Drop, the too-small read
 * still fails with STATUS_BUFFER_TOO_SMALL and the message is dropped: its FltSendMessage returns
 * STATUS_BUFFER_OVERFLOW (the status Windows would use is unknown). Applies to every connection of
 * the filter's ports. */
VOID FLTAPI FltEmuDropOversizedMessages(PFLT_FILTER Filter, BOOLEAN Drop);

#ifdef __cplusplus
}
#endif

#endif /* FLTEMU_KERNEL_FLTEMU_H */
