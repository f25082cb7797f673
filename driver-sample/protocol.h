/*
 * The fltport sample's protocol: everything that crosses the communication port \FltportSample.
 *
 * Shared by the driver (driver/comm.c), the layout tool (layout/) and any user-mode C agent;
 * protocol.js defines the same structs once more with koffi, and test/integration checks the two
 * against each other (sizes and offsets printed by fltport-sample-layout.exe, layout/layout.c).
 *
 * Include <fltKernel.h> (driver) or <windows.h> (user mode) first: this header uses
 * their fixed-width types (UINT16/UINT32/UINT64, WCHAR), FIELD_OFFSET and C_ASSERT, which exist in
 * the WDK and in the Windows SDK / mingw-w64 alike.
 *
 * Every struct is laid out by hand with explicit reserved fields, so no compiler inserts padding
 * and a 32-bit agent sees the same bytes as a 64-bit driver. Reserved fields must be zero; the
 * driver refuses anything else so that they can be given a meaning in a later version.
 */
#ifndef FLTPORT_SAMPLE_PROTOCOL_H
#define FLTPORT_SAMPLE_PROTOCOL_H

#define FS_PORT_NAME L"\\FltportSample"
#define FS_MAX_CONNECTIONS 4

/* ---- connection context (FilterConnectCommunicationPort's lpContext) ------------------------ */

#define FS_CONTEXT_MAGIC 0x53505446u /* "FTPS" in memory */
#define FS_PROTOCOL_VERSION 1u

/* The connection wants open notifications and events. Without it the connection only sends
 * commands (a monitoring tool, a test) and the driver never waits on it. */
#define FS_CONNECT_AGENT 0x00000001u
#define FS_CONNECT_VALID_FLAGS FS_CONNECT_AGENT

typedef struct _FS_CONNECT_CONTEXT {
    UINT32 Magic;    /* FS_CONTEXT_MAGIC */
    UINT32 Version;  /* FS_PROTOCOL_VERSION */
    UINT32 Flags;    /* FS_CONNECT_* */
    UINT32 Reserved; /* 0 */
} FS_CONNECT_CONTEXT;

/* ---- commands: user -> kernel (FilterSendMessage) ------------------------------------------- */

/* The input buffer is an FS_COMMAND_HEADER followed by exactly PayloadBytes bytes. */
typedef enum _FS_COMMAND {
    FS_COMMAND_PING = 1,       /* payload: 0..FS_MAX_PING_BYTES bytes; output: the same bytes */
    FS_COMMAND_GET_STATS = 2,  /* payload: none; output: FS_STATS */
    FS_COMMAND_SET_CONFIG = 3, /* payload: FS_CONFIG; output: none, or FS_CONFIG (the previous one) */
} FS_COMMAND;

typedef struct _FS_COMMAND_HEADER {
    UINT32 Command;      /* FS_COMMAND */
    UINT32 PayloadBytes; /* must equal the input length minus this header */
} FS_COMMAND_HEADER;

#define FS_MAX_PING_BYTES 4096u

/* Buffers handed to FilterSendMessage must be aligned like the structs they carry: the driver
 * answers STATUS_DATATYPE_MISALIGNMENT otherwise (heap allocations always are). */
#define FS_INPUT_ALIGNMENT 4u
#define FS_OUTPUT_ALIGNMENT 8u

typedef struct _FS_STATS {
    UINT64 OpensSeen;         /* watched opens (suffix matched, filtering on, an agent connected) */
    UINT64 SelfSkipped;       /* ... of them made by an agent's own process: allowed, not sent */
    UINT64 NotificationsSent; /* FltSendMessage calls for opens = Replies + Timeouts + Malformed + SendFailures */
    UINT64 Replies;           /* well-formed verdicts */
    UINT64 Denials;           /* opens denied by a verdict */
    UINT64 Timeouts;          /* no verdict in time (STATUS_TIMEOUT): allowed */
    UINT64 MalformedReplies;  /* wrong size, sequence or verdict: allowed */
    UINT64 SendFailures;      /* the agent went away or the send failed: allowed */
    UINT64 NoAgent;           /* watched opens that found no agent to ask: allowed, not sent */
    UINT64 Connects;          /* connections accepted */
    UINT64 Refused;           /* connections refused by the context check */
    UINT64 Disconnects;       /* DisconnectNotify calls */
    UINT64 EventsSent;        /* fire-and-forget messages delivered */
    UINT64 EventsDropped;     /* fire-and-forget messages not delivered in FS_EVENT_TIMEOUT_MS */
    UINT32 Connections;       /* connections open now */
    UINT32 Agents;            /* ... of them agents */
} FS_STATS;

#define FS_CONFIG_ENABLED 0x00000001u /* filtering on; off: every open is allowed untouched */
#define FS_CONFIG_VALID_FLAGS FS_CONFIG_ENABLED

#define FS_MAX_SUFFIX_CHARS 32u
#define FS_MIN_REPLY_TIMEOUT_MS 1u
/* Opens wait for the verdict, so the wait is bounded: an agent that never answers must not hang
 * the machine's file I/O for longer than this. */
#define FS_MAX_REPLY_TIMEOUT_MS 60000u

#define FS_DEFAULT_SUFFIX L".fltport-test"
#define FS_DEFAULT_REPLY_TIMEOUT_MS 3000u
#define FS_EVENT_TIMEOUT_MS 200u

typedef struct _FS_CONFIG {
    UINT32 Flags;          /* FS_CONFIG_* */
    UINT32 ReplyTimeoutMs; /* FS_MIN_REPLY_TIMEOUT_MS..FS_MAX_REPLY_TIMEOUT_MS */
    UINT32 SuffixBytes;    /* 2..FS_MAX_SUFFIX_CHARS * 2, even; compared case-insensitively */
    UINT32 Reserved;       /* 0 */
    WCHAR Suffix[FS_MAX_SUFFIX_CHARS]; /* not NUL-terminated; bytes past SuffixBytes are ignored */
} FS_CONFIG;

/* ---- messages: kernel -> user (FilterGetMessage) -------------------------------------------- */

/* Every message starts with a UINT32 kind. */
typedef enum _FS_MESSAGE_KIND {
    FS_MESSAGE_OPEN = 1,           /* FS_OPEN_NOTIFICATION; expects an FS_OPEN_REPLY */
    FS_MESSAGE_CONFIG_CHANGED = 2, /* FS_CONFIG_EVENT; fire-and-forget: no reply expected */
} FS_MESSAGE_KIND;

#define FS_MAX_PATH_CHARS 1024u
#define FS_PATH_TRUNCATED 0x0001u /* the name was longer than FS_MAX_PATH_CHARS: Path holds its start */

typedef struct _FS_OPEN_NOTIFICATION {
    UINT32 Kind;          /* FS_MESSAGE_OPEN */
    UINT32 DesiredAccess; /* ACCESS_MASK of the create */
    UINT64 Sequence;      /* unique per driver load, starts at 1; the reply must echo it */
    UINT64 ProcessId;     /* the process opening the file */
    UINT16 PathBytes;     /* bytes used in Path: even, at most FS_MAX_PATH_CHARS * 2 */
    UINT16 PathFlags;     /* FS_PATH_* */
    UINT32 Reserved;
    WCHAR Path[FS_MAX_PATH_CHARS]; /* normalized name, not NUL-terminated */
} FS_OPEN_NOTIFICATION;

typedef struct _FS_CONFIG_EVENT {
    UINT32 Kind;     /* FS_MESSAGE_CONFIG_CHANGED */
    UINT32 Reserved;
    UINT64 ChangeCount; /* SET_CONFIG calls since the driver loaded, this one included */
    FS_CONFIG Config;   /* the configuration now in force */
} FS_CONFIG_EVENT;

/* The largest message: an agent's receive buffer must hold it (payload, header excluded). */
#define FS_MAX_MESSAGE_BYTES ((UINT32)sizeof(FS_OPEN_NOTIFICATION))

/* ---- reply: user -> kernel (FilterReplyMessage) --------------------------------------------- */

typedef enum _FS_VERDICT {
    FS_VERDICT_ALLOW = 1,
    FS_VERDICT_DENY = 2,
} FS_VERDICT;

/* Sent after the 16-byte FILTER_REPLY_HEADER, as exactly 16 + sizeof(FS_OPEN_REPLY) bytes. Its
 * size is a multiple of 8, the header's alignment, so a C struct { FILTER_REPLY_HEADER; FS_OPEN_REPLY; }
 * has no tail padding and its sizeof is that exact length (FltSendMessage would get
 * STATUS_BUFFER_OVERFLOW for a longer reply). */
typedef struct _FS_OPEN_REPLY {
    UINT64 Sequence; /* FS_OPEN_NOTIFICATION.Sequence */
    UINT32 Verdict;  /* FS_VERDICT */
    UINT32 Reserved; /* 0 */
} FS_OPEN_REPLY;

#define FS_REPLY_HEADER_BYTES 16u

/* ---- layout checks: the same numbers are in protocol.js ------------------------------------ */

C_ASSERT(sizeof(FS_CONNECT_CONTEXT) == 16);
C_ASSERT(FIELD_OFFSET(FS_CONNECT_CONTEXT, Magic) == 0);
C_ASSERT(FIELD_OFFSET(FS_CONNECT_CONTEXT, Version) == 4);
C_ASSERT(FIELD_OFFSET(FS_CONNECT_CONTEXT, Flags) == 8);
C_ASSERT(FIELD_OFFSET(FS_CONNECT_CONTEXT, Reserved) == 12);

C_ASSERT(sizeof(FS_COMMAND_HEADER) == 8);
C_ASSERT(FIELD_OFFSET(FS_COMMAND_HEADER, Command) == 0);
C_ASSERT(FIELD_OFFSET(FS_COMMAND_HEADER, PayloadBytes) == 4);

C_ASSERT(sizeof(FS_STATS) == 120);
C_ASSERT(FIELD_OFFSET(FS_STATS, OpensSeen) == 0);
C_ASSERT(FIELD_OFFSET(FS_STATS, SelfSkipped) == 8);
C_ASSERT(FIELD_OFFSET(FS_STATS, NotificationsSent) == 16);
C_ASSERT(FIELD_OFFSET(FS_STATS, Replies) == 24);
C_ASSERT(FIELD_OFFSET(FS_STATS, Denials) == 32);
C_ASSERT(FIELD_OFFSET(FS_STATS, Timeouts) == 40);
C_ASSERT(FIELD_OFFSET(FS_STATS, MalformedReplies) == 48);
C_ASSERT(FIELD_OFFSET(FS_STATS, SendFailures) == 56);
C_ASSERT(FIELD_OFFSET(FS_STATS, NoAgent) == 64);
C_ASSERT(FIELD_OFFSET(FS_STATS, Connects) == 72);
C_ASSERT(FIELD_OFFSET(FS_STATS, Refused) == 80);
C_ASSERT(FIELD_OFFSET(FS_STATS, Disconnects) == 88);
C_ASSERT(FIELD_OFFSET(FS_STATS, EventsSent) == 96);
C_ASSERT(FIELD_OFFSET(FS_STATS, EventsDropped) == 104);
C_ASSERT(FIELD_OFFSET(FS_STATS, Connections) == 112);
C_ASSERT(FIELD_OFFSET(FS_STATS, Agents) == 116);

C_ASSERT(sizeof(FS_CONFIG) == 80);
C_ASSERT(FIELD_OFFSET(FS_CONFIG, Flags) == 0);
C_ASSERT(FIELD_OFFSET(FS_CONFIG, ReplyTimeoutMs) == 4);
C_ASSERT(FIELD_OFFSET(FS_CONFIG, SuffixBytes) == 8);
C_ASSERT(FIELD_OFFSET(FS_CONFIG, Reserved) == 12);
C_ASSERT(FIELD_OFFSET(FS_CONFIG, Suffix) == 16);

C_ASSERT(sizeof(FS_OPEN_NOTIFICATION) == 2080);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, Kind) == 0);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, DesiredAccess) == 4);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, Sequence) == 8);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, ProcessId) == 16);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, PathBytes) == 24);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, PathFlags) == 26);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, Reserved) == 28);
C_ASSERT(FIELD_OFFSET(FS_OPEN_NOTIFICATION, Path) == 32);

C_ASSERT(sizeof(FS_CONFIG_EVENT) == 96);
C_ASSERT(FIELD_OFFSET(FS_CONFIG_EVENT, Kind) == 0);
C_ASSERT(FIELD_OFFSET(FS_CONFIG_EVENT, Reserved) == 4);
C_ASSERT(FIELD_OFFSET(FS_CONFIG_EVENT, ChangeCount) == 8);
C_ASSERT(FIELD_OFFSET(FS_CONFIG_EVENT, Config) == 16);

C_ASSERT(sizeof(FS_OPEN_REPLY) == 16);
C_ASSERT(sizeof(FS_OPEN_REPLY) % 8 == 0);
C_ASSERT(FIELD_OFFSET(FS_OPEN_REPLY, Sequence) == 0);
C_ASSERT(FIELD_OFFSET(FS_OPEN_REPLY, Verdict) == 8);
C_ASSERT(FIELD_OFFSET(FS_OPEN_REPLY, Reserved) == 12);

#endif /* FLTPORT_SAMPLE_PROTOCOL_H */
