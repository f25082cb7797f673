/*
 * Requests from the conformance program (conformance.c, user mode) to its driver
 * (conformance-driver.c, fltemu-conformance.sys) through the control port, as FilterSendMessage
 * input; the answer is CONTROL_ANSWER (+ data) in the output buffer. Include <windows.h> or
 * <fltKernel.h> first.
 */
#ifndef FLTEMU_CONFORMANCE_PROTOCOL_H
#define FLTEMU_CONFORMANCE_PROTOCOL_H

#define CONF_CONTROL_PORT L"\\FltEmuConformance"
#define CONF_MAX_SERVERS 16
#define CONF_MAX_SLOTS 8
#define CONF_MAX_KSENDS 64
#define CONF_MAX_REPLY 512
#define CONF_MAX_CONTEXT 0x10000

enum {
    CONTROL_START_SERVER = 1, /* Name, MaxConnections, Attributes, Flags -> Value = server */
    CONTROL_STOP_SERVER,      /* Server: closes its port, unregisters its filter */
    CONTROL_CLOSE_SERVER_PORT,/* Server: FltCloseCommunicationPort */
    CONTROL_UNREGISTER,       /* Server: FltUnregisterFilter (port left open) */
    CONTROL_REFUSE,           /* Server, Value = NTSTATUS ConnectNotify returns (0 = accept) */
    CONTROL_COUNTS,           /* Server, Slot -> counts, Value = slot's client port variable is NULL;
                                 CONF_WITH_CONTEXT: + the last connection context */
    CONTROL_CLOSE_CLIENT,     /* Server, Slot: FltCloseClientPort -> Value = variable now NULL */
    CONTROL_KSEND,            /* Server, Slot, ReplyLength (0 = no reply buffer), Flags, Timeout,
                                 payload after the request -> Value = send; runs on a kernel thread */
    CONTROL_KSEND_RESULT,     /* Value = send -> Value = done; Status, ReplyLength, ElapsedMs, + reply */
    CONTROL_KSEND_FREE,       /* Value = send (waits for its thread) */
    CONTROL_CREATE_PORT,      /* Name, MaxConnections, Attributes: FltCreateCommunicationPort's
                                 status (the port is closed again at once); on the control filter,
                                 or with CONF_ON_SERVER_FILTER on Server's */
    CONTROL_DROP_OVERSIZED,   /* Server, Value: FltEmuDropOversizedMessages */
    CONTROL_BULK              /* Server, Slot, Value = BULK_*, First, Count: a kernel thread sends
                                 Count messages -> Value = send; KSEND_RESULT gives Right/Wrong */
};

/* Bulk senders (what each message is, and what counts as a right answer). */
enum {
    BULK_ECHO_SEQUENCE = 1, /* ULONG sequence, 4-byte reply buffer; right: reply = sequence * 2 + 1; 30 s timeout */
    BULK_NO_REPLY,          /* 64 bytes starting with the ULONG sequence, no reply buffer; 20 s timeout */
    BULK_SCANNER            /* SCANNER_NOTIFICATION (1032 bytes), 200 bytes of content, "foul" at 100 when
                               sequence % 7 == 0; 1-byte reply; right: reply = !foul; no timeout */
};

#define CONF_WITH_MESSAGE_NOTIFY 0x1
#define CONF_HAS_TIMEOUT 0x2
#define CONF_RAW 0x4 /* FltEmuSendRawMessage: the payload is the whole message, header included */
#define CONF_WITH_CONTEXT 0x8
#define CONF_ON_SERVER_FILTER 0x10
#define CONF_KEEP_CLIENT_PORTS 0x20 /* START_SERVER: DisconnectNotify leaves the client port open */

typedef struct _CONTROL_REQUEST {
    ULONG Op;
    ULONG Server;
    ULONG Slot;
    ULONG Flags;
    ULONG Value;
    ULONG MaxConnections;
    ULONG Attributes;
    ULONG ReplyLength;
    ULONG First, Count; /* CONTROL_BULK */
    LONGLONG Timeout;   /* FltSendMessage's, 100 ns units (negative: relative) */
    WCHAR Name[80];
} CONTROL_REQUEST;

typedef struct _CONTROL_ANSWER {
    LONG Result; /* NTSTATUS of the operation */
    ULONG Value;
    ULONG Connects, Disconnects, Messages, ContextBytes;
    LONG Status; /* a finished kernel send's FltSendMessage status */
    ULONG ReplyLength;
    ULONG ElapsedMs;
    ULONG Right, Wrong; /* CONTROL_BULK */
    ULONG Reserved;
} CONTROL_ANSWER;

/* MessageNotify commands of the test ports. */
enum { TEST_ECHO = 1, TEST_STATUS, TEST_SEND_BACK };

typedef struct _TEST_COMMAND {
    ULONG Command;
    ULONG Argument;
} TEST_COMMAND;

#endif /* FLTEMU_CONFORMANCE_PROTOCOL_H */
