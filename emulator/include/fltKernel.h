/*
 * fltKernel.h for the filter-manager EMULATOR (user mode). NOT the WDK header.
 *
 * It declares the communication-port part of the WDK's fltKernel.h with the same names, signatures
 * and callback types, plus the few kernel types and helpers a minifilter's communication code uses,
 * so that such a .c file compiles unchanged against the WDK (as a driver) and against this header
 * (linked into a user-mode host program with the fltemu library). Include it first, as WDK code
 * includes fltKernel.h first.
 *
 * The host program creates the filter object itself (FltEmuCreateFilter / FltEmuUnregisterFilter,
 * below), because there is no FltRegisterFilter / DriverEntry here.
 */
#ifndef FLTEMU_FLTKERNEL_H
#define FLTEMU_FLTKERNEL_H

#define FLTEMU 1

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>
#include <excpt.h>
#include <fltuserstructures.h> /* FILTER_MESSAGE_HEADER, FILTER_REPLY_HEADER (the WDK header includes it too) */

#ifdef __cplusplus
extern "C" {
#endif

/* ---- basic kernel types and helpers --------------------------------------------------------- */

#ifndef NT_SUCCESS
#define NT_SUCCESS(Status) (((NTSTATUS)(Status)) >= 0)
#endif
#ifndef NT_INFORMATION
#define NT_INFORMATION(Status) ((((ULONG)(Status)) >> 30) == 1)
#endif
#ifndef NT_WARNING
#define NT_WARNING(Status) ((((ULONG)(Status)) >> 30) == 2)
#endif
#ifndef NT_ERROR
#define NT_ERROR(Status) ((((ULONG)(Status)) >> 30) == 3)
#endif

#ifndef OBJ_KERNEL_HANDLE
#define OBJ_KERNEL_HANDLE 0x00000200L
#endif
#ifndef OBJ_CASE_INSENSITIVE
#define OBJ_CASE_INSENSITIVE 0x00000040L
#endif
#ifndef InitializeObjectAttributes
#define InitializeObjectAttributes(p, n, a, r, s) \
    do {                                          \
        (p)->Length = sizeof(OBJECT_ATTRIBUTES);  \
        (p)->RootDirectory = (r);                 \
        (p)->Attributes = (a);                    \
        (p)->ObjectName = (n);                    \
        (p)->SecurityDescriptor = (s);            \
        (p)->SecurityQualityOfService = NULL;     \
    } while (0)
#endif

#ifndef UNREFERENCED_PARAMETER
#define UNREFERENCED_PARAMETER(P) ((void)(P))
#endif

/* Everything runs at PASSIVE_LEVEL in user mode. */
#define PASSIVE_LEVEL 0
#define APC_LEVEL 1
#define DISPATCH_LEVEL 2
typedef UCHAR KIRQL;
#define KeGetCurrentIrql() ((KIRQL)PASSIVE_LEVEL)
#ifndef PAGED_CODE
#define PAGED_CODE() ((void)0)
#endif
#ifndef FLT_ASSERT
#define FLT_ASSERT(e)
#endif
#ifndef FLT_ASSERTMSG
#define FLT_ASSERTMSG(m, e)
#endif
#ifndef NT_ASSERT
#define NT_ASSERT(e) ((void)0)
#endif
/* ALLOC_PRAGMA is deliberately not defined: `#pragma alloc_text` blocks are skipped. */

/* Structured exception handling stand-ins for compilers without __try/__except in C (GCC).
 * The guarded block always runs and the handler never does: an access violation inside __try
 * crashes the host instead of being handled (MSVC and clang-cl keep real SEH). */
#if !defined(_MSC_VER)
#ifndef __try
#define __try if (1)
#endif
#ifndef __except
#define __except(filter) else if (0 && (filter))
#endif
#ifndef __finally
#define __finally if (1)
#endif
#undef GetExceptionCode
#define GetExceptionCode() ((NTSTATUS)STATUS_UNSUCCESSFUL)
#endif

/* Pool allocation: backed by the process heap. ExAllocatePool2 zeroes unless
 * POOL_FLAG_UNINITIALIZED; the tag is ignored. */
typedef ULONG64 POOL_FLAGS;
#define POOL_FLAG_UNINITIALIZED 0x0000000000000002ULL
#define POOL_FLAG_NON_PAGED 0x0000000000000040ULL
#define POOL_FLAG_NON_PAGED_EXECUTE 0x0000000000000080ULL
#define POOL_FLAG_PAGED 0x0000000000000100ULL
typedef enum _POOL_TYPE { NonPagedPool = 0, PagedPool = 1, NonPagedPoolNx = 512 } POOL_TYPE;

PVOID NTAPI ExAllocatePool2(POOL_FLAGS Flags, SIZE_T NumberOfBytes, ULONG Tag);
PVOID NTAPI ExAllocatePoolWithTag(POOL_TYPE PoolType, SIZE_T NumberOfBytes, ULONG Tag);
VOID NTAPI ExFreePoolWithTag(PVOID P, ULONG Tag);
VOID NTAPI ExFreePool(PVOID P);

/* Raises STATUS_DATATYPE_MISALIGNMENT (RaiseException) when Address is not aligned to Alignment.
 * The emulator hands MessageNotify heap copies of the caller's buffers, which are always
 * 16-byte aligned and readable, so only larger alignments can fail. */
VOID NTAPI ProbeForRead(const volatile VOID *Address, SIZE_T Length, ULONG Alignment);
VOID NTAPI ProbeForWrite(volatile VOID *Address, SIZE_T Length, ULONG Alignment);

/* The host process stands in for "the current process" (not the connecting client). */
typedef struct _EPROCESS *PEPROCESS;
PEPROCESS NTAPI PsGetCurrentProcess(VOID);
HANDLE NTAPI PsGetCurrentProcessId(VOID);

/* Writes to stderr (named apart from ntdll's DbgPrint, which goes to the debugger). */
ULONG __cdecl FltEmuDbgPrint(PCSTR Format, ...);
#define DbgPrint FltEmuDbgPrint
#ifndef KdPrint
#define KdPrint(args) ((void)DbgPrint args)
#endif

/* ntdll exports (Wine has them too). RtlInitUnicodeString is declared by winternl.h. */
NTSYSAPI NTSTATUS NTAPI RtlSetDaclSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor, BOOLEAN DaclPresent,
                                                     PACL Dacl, BOOLEAN DaclDefaulted);

/* ---- filter manager communication ports ---------------------------------------------------- */

#ifndef FLTAPI
#define FLTAPI NTAPI
#endif

typedef struct _FLT_FILTER *PFLT_FILTER;
typedef struct _FLT_PORT *PFLT_PORT;

#define FLT_PORT_CONNECT 0x0001
#define FLT_PORT_ALL_ACCESS (FLT_PORT_CONNECT | STANDARD_RIGHTS_ALL)

typedef NTSTATUS(FLTAPI *PFLT_CONNECT_NOTIFY)(PFLT_PORT ClientPort, PVOID ServerPortCookie, PVOID ConnectionContext,
                                              ULONG SizeOfContext, PVOID *ConnectionPortCookie);
typedef VOID(FLTAPI *PFLT_DISCONNECT_NOTIFY)(PVOID ConnectionCookie);
typedef NTSTATUS(FLTAPI *PFLT_MESSAGE_NOTIFY)(PVOID PortCookie, PVOID InputBuffer, ULONG InputBufferLength,
                                              PVOID OutputBuffer, ULONG OutputBufferLength,
                                              PULONG ReturnOutputBufferLength);

/* The security descriptor in ObjectAttributes is accepted and ignored: the emulator's pipes always
 * admit only the user running the host. ObjectAttributes must carry OBJ_KERNEL_HANDLE. */
NTSTATUS FLTAPI FltCreateCommunicationPort(PFLT_FILTER Filter, PFLT_PORT *ServerPort,
                                           POBJECT_ATTRIBUTES ObjectAttributes, PVOID ServerPortCookie,
                                           PFLT_CONNECT_NOTIFY ConnectNotifyCallback,
                                           PFLT_DISCONNECT_NOTIFY DisconnectNotifyCallback,
                                           PFLT_MESSAGE_NOTIFY MessageNotifyCallback, LONG MaxConnections);
VOID FLTAPI FltCloseCommunicationPort(PFLT_PORT ServerPort);
VOID FLTAPI FltCloseClientPort(PFLT_FILTER Filter, PFLT_PORT *ClientPort);
NTSTATUS FLTAPI FltSendMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID SenderBuffer,
                               ULONG SenderBufferLength, PVOID ReplyBuffer, PULONG ReplyLength,
                               PLARGE_INTEGER Timeout);
NTSTATUS FLTAPI FltBuildDefaultSecurityDescriptor(PSECURITY_DESCRIPTOR *SecurityDescriptor,
                                                  ACCESS_MASK DesiredAccess);
VOID FLTAPI FltFreeSecurityDescriptor(PSECURITY_DESCRIPTOR SecurityDescriptor);

/* ---- emulator-only API for the host program ------------------------------------------------- */

/* Creates the filter object that FltCreateCommunicationPort & co. take (stands in for
 * FltRegisterFilter). */
NTSTATUS FLTAPI FltEmuCreateFilter(PFLT_FILTER *Filter);

/* Stands in for FltUnregisterFilter: closes server ports still open, disconnects every client
 * (their pending reads fail), waits for all emulator threads of this filter, runs DisconnectNotify
 * once for each connection that has not had it, and frees the filter. Must not be called from a
 * port callback. */
VOID FLTAPI FltEmuUnregisterFilter(PFLT_FILTER Filter);

/* What a buggy driver could make a client read: sends MessageLength bytes verbatim as one message,
 * FILTER_MESSAGE_HEADER included (any ReplyLength, any MessageId), so that clients can be tested
 * against headers FltSendMessage never produces. No reply is waited for (a reply finds no waiter
 * unless MessageId is that of a real message waiting for one); returns once delivered, or
 * STATUS_TIMEOUT / STATUS_PORT_DISCONNECTED as FltSendMessage would. MessageLength must be at
 * least sizeof(FILTER_MESSAGE_HEADER). */
NTSTATUS FLTAPI FltEmuSendRawMessage(PFLT_FILTER Filter, PFLT_PORT *ClientPort, PVOID Message, ULONG MessageLength,
                                     PLARGE_INTEGER Timeout);

/* Whether Windows keeps a message that meets a read too small for it (the emulator's default:
 * it waits for a read that fits) or drops it is undocumented. With Drop, the too-small read still
 * completes as usual and the message is dropped: its FltSendMessage returns
 * STATUS_BUFFER_OVERFLOW (the status Windows would use is unknown). */
VOID FLTAPI FltEmuDropOversizedMessages(PFLT_FILTER Filter, BOOLEAN Drop);

#ifdef __cplusplus
}
#endif

#endif /* FLTEMU_FLTKERNEL_H */
