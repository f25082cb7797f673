/* The LPC stand-in (lpcemu.dll): ntdll's LPC port calls with their signatures, for Wine, whose
 * ntdll does not implement them. See README.md beside this file. */
#ifndef LPCEMU_H
#define LPCEMU_H

#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>

#ifdef LPCEMU_BUILD
#define LPCEMU_API __declspec(dllexport)
#else
#define LPCEMU_API __declspec(dllimport)
#endif

/* x64 layouts (phnt ntlpcapi.h). */
typedef struct LPCEMU_PORT_MESSAGE {
    USHORT DataLength;
    USHORT TotalLength;
    USHORT Type;
    USHORT DataInfoOffset;
    CLIENT_ID ClientId;
    ULONG MessageId;
    union {
        SIZE_T ClientViewSize;
        ULONG CallbackId;
    };
} LPCEMU_PORT_MESSAGE;

typedef struct LPCEMU_PORT_VIEW {
    ULONG Length;
    HANDLE SectionHandle;
    ULONG SectionOffset;
    SIZE_T ViewSize;
    PVOID ViewBase;
    PVOID ViewRemoteBase;
} LPCEMU_PORT_VIEW;

typedef struct LPCEMU_REMOTE_PORT_VIEW {
    ULONG Length;
    SIZE_T ViewSize;
    PVOID ViewBase;
} LPCEMU_REMOTE_PORT_VIEW;

enum {
    LPCEMU_REQUEST = 1,
    LPCEMU_REPLY = 2,
    LPCEMU_DATAGRAM = 3,
    LPCEMU_PORT_CLOSED = 5,
    LPCEMU_CLIENT_DIED = 6,
    LPCEMU_CONNECTION_REQUEST = 10,
};

/* PORT_MAXIMUM_MESSAGE_LENGTH on x64 (header included) and LPC_MAX_CONNECTION_INFO_SIZE. */
#define LPCEMU_MAX_MESSAGE 512
#define LPCEMU_MAX_CONNECTION_INFO 128
#define LPCEMU_HEADER ((ULONG)sizeof(LPCEMU_PORT_MESSAGE))

LPCEMU_API NTSTATUS NTAPI LpcEmuCreatePort(PHANDLE PortHandle, POBJECT_ATTRIBUTES ObjectAttributes,
                                           ULONG MaxConnectionInfoLength, ULONG MaxMessageLength, ULONG MaxPoolUsage);
LPCEMU_API NTSTATUS NTAPI LpcEmuConnectPort(PHANDLE PortHandle, PUNICODE_STRING PortName,
                                            PSECURITY_QUALITY_OF_SERVICE SecurityQos, LPCEMU_PORT_VIEW *ClientView,
                                            LPCEMU_REMOTE_PORT_VIEW *ServerView, PULONG MaxMessageLength,
                                            PVOID ConnectionInformation, PULONG ConnectionInformationLength);
LPCEMU_API NTSTATUS NTAPI LpcEmuSecureConnectPort(PHANDLE PortHandle, PUNICODE_STRING PortName,
                                                  PSECURITY_QUALITY_OF_SERVICE SecurityQos,
                                                  LPCEMU_PORT_VIEW *ClientView, PSID RequiredServerSid,
                                                  LPCEMU_REMOTE_PORT_VIEW *ServerView, PULONG MaxMessageLength,
                                                  PVOID ConnectionInformation, PULONG ConnectionInformationLength);
LPCEMU_API NTSTATUS NTAPI LpcEmuListenPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *ConnectionRequest);
LPCEMU_API NTSTATUS NTAPI LpcEmuAcceptConnectPort(PHANDLE PortHandle, PVOID PortContext,
                                                  LPCEMU_PORT_MESSAGE *ConnectionRequest, BOOLEAN AcceptConnection,
                                                  LPCEMU_PORT_VIEW *ServerView, LPCEMU_REMOTE_PORT_VIEW *ClientView);
LPCEMU_API NTSTATUS NTAPI LpcEmuCompleteConnectPort(HANDLE PortHandle);
LPCEMU_API NTSTATUS NTAPI LpcEmuReplyWaitReceivePort(HANDLE PortHandle, PVOID *PortContext,
                                                     LPCEMU_PORT_MESSAGE *ReplyMessage,
                                                     LPCEMU_PORT_MESSAGE *ReceiveMessage);
LPCEMU_API NTSTATUS NTAPI LpcEmuReplyWaitReceivePortEx(HANDLE PortHandle, PVOID *PortContext,
                                                       LPCEMU_PORT_MESSAGE *ReplyMessage,
                                                       LPCEMU_PORT_MESSAGE *ReceiveMessage, PLARGE_INTEGER Timeout);
LPCEMU_API NTSTATUS NTAPI LpcEmuReplyPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *ReplyMessage);
LPCEMU_API NTSTATUS NTAPI LpcEmuRequestPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *RequestMessage);
LPCEMU_API NTSTATUS NTAPI LpcEmuRequestWaitReplyPort(HANDLE PortHandle, LPCEMU_PORT_MESSAGE *RequestMessage,
                                                     LPCEMU_PORT_MESSAGE *ReplyMessage);
/* NtClose: closes a stand-in port, and passes every other handle to ntdll's own NtClose. */
LPCEMU_API NTSTATUS NTAPI LpcEmuClose(HANDLE Handle);

/* Makes this process's ntdll.dll export the functions above under their Nt names (in memory:
 * GetProcAddress(ntdll, "NtConnectPort") then returns the stand-in). Idempotent. 0 on success,
 * else a Win32 error code. */
LPCEMU_API DWORD LpcEmuInstall(void);

/* Stand-in ports open in this process, and views they have mapped (for leak checks). */
LPCEMU_API void LpcEmuCounts(LONG *ports, LONG *views);

#endif
