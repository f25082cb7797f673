/*
 * Wire protocol shared by the emulated fltlib.dll (user side) and the fltemu library (kernel side).
 *
 * Three kinds of message-mode named pipes are involved:
 *   port pipe  \\.\pipe\fltport-emulator\<encoded port name>   handshake only (CONNECT/CONNECT_RESULT)
 *   data pipe  \\.\pipe\fltport-emulator-conn\<unique>         one per connection; its client end IS
 *                                                              the HANDLE FilterConnectCommunicationPort
 *                                                              returns. Server->client: notifications only
 *                                                              (FILTER_MESSAGE_HEADER + payload, or a
 *                                                              zero-length message = "buffer too small").
 *                                                              Client->server: ATTACH, then CREDITs.
 *   call pipe  \\.\pipe\fltport-emulator-call\<unique>         one name per emulated filter; each instance
 *                                                              is a synchronous request/response channel
 *                                                              (SEND, REPLY) owned by one DLL thread at a time.
 * All fields are fixed-size so 32- and 64-bit peers could talk; both ends are built from this header.
 */
#ifndef FLTEMU_PROTOCOL_H
#define FLTEMU_PROTOCOL_H

#include <windows.h>

#define FEMU_MAGIC 0x554D4546u /* "FEMU" */
#define FEMU_VERSION 1u

#define FEMU_PORT_PIPE_PREFIX L"\\\\.\\pipe\\fltport-emulator\\"
#define FEMU_CONN_PIPE_PREFIX L"\\\\.\\pipe\\fltport-emulator-conn\\"
#define FEMU_CALL_PIPE_PREFIX L"\\\\.\\pipe\\fltport-emulator-call\\"

/* Pipe names are limited to 256 characters on Windows. */
#define FEMU_PIPE_NAME_CCH 257

/* Largest connection context: the FLTPORT extended attribute layout of the real fltlib caps it here. */
#define FEMU_MAX_CONTEXT 0xFFE8u

#define FEMU_TOKEN_BYTES 16

enum femu_msg_type {
    FEMU_MSG_CONNECT = 1,
    FEMU_MSG_CONNECT_RESULT,
    FEMU_MSG_ATTACH,
    FEMU_MSG_CREDIT,
    FEMU_MSG_HELLO,
    FEMU_MSG_HELLO_RESULT,
    FEMU_MSG_SEND,
    FEMU_MSG_SEND_RESULT,
    FEMU_MSG_REPLY,
    FEMU_MSG_REPLY_RESULT
};

typedef struct femu_hdr {
    UINT32 magic;
    UINT32 type;
} femu_hdr;

/* client -> port pipe; followed by contextSize bytes of connection context */
typedef struct femu_connect_msg {
    femu_hdr h;
    UINT32 version;
    UINT32 options;
    UINT32 contextSize;
    UINT32 reserved;
} femu_connect_msg;

/* port pipe -> client */
typedef struct femu_connect_result_msg {
    femu_hdr h;
    INT32 status; /* NTSTATUS from the kernel side (ConnectNotify, limits) */
    UINT32 reserved;
    UINT64 connId;
    BYTE token[FEMU_TOKEN_BYTES];
    WCHAR dataPipe[FEMU_PIPE_NAME_CCH];
    WCHAR callPipe[FEMU_PIPE_NAME_CCH];
} femu_connect_result_msg;

/* client -> data pipe, first message */
typedef struct femu_attach_msg {
    femu_hdr h;
    BYTE token[FEMU_TOKEN_BYTES];
} femu_attach_msg;

/* client -> data pipe: "one read of `size` bytes is (about to be) pending" */
typedef struct femu_credit_msg {
    femu_hdr h;
    UINT32 size;
    UINT32 reserved;
} femu_credit_msg;

/* client -> call pipe, first message */
typedef struct femu_hello_msg {
    femu_hdr h;
    UINT64 connId;
    BYTE token[FEMU_TOKEN_BYTES];
} femu_hello_msg;

/* call pipe -> client (HELLO_RESULT, REPLY_RESULT) */
typedef struct femu_status_msg {
    femu_hdr h;
    INT32 status;
    UINT32 reserved;
} femu_status_msg;

/* client -> call pipe; followed by inSize bytes */
typedef struct femu_send_msg {
    femu_hdr h;
    UINT32 inSize;
    UINT32 outSize;
} femu_send_msg;

/* call pipe -> client; followed by bytesReturned bytes */
typedef struct femu_send_result_msg {
    femu_hdr h;
    INT32 status;
    UINT32 bytesReturned;
} femu_send_result_msg;

/* client -> call pipe; followed by payloadSize bytes (the reply without its FILTER_REPLY_HEADER) */
typedef struct femu_reply_msg {
    femu_hdr h;
    INT32 status;
    UINT32 payloadSize;
    UINT64 messageId;
} femu_reply_msg;

/* Builds the port pipe name for a port name (counted, not necessarily NUL-terminated).
 * Backslashes and '%' are escaped as %5C / %25 so that distinct port names never share a pipe.
 * Returns FALSE when the result would not fit a pipe name. */
static __inline BOOL femu_port_pipe_name(const WCHAR *name, size_t cch, WCHAR out[FEMU_PIPE_NAME_CCH])
{
    static const WCHAR prefix[] = FEMU_PORT_PIPE_PREFIX;
    static const WCHAR hex[] = L"0123456789ABCDEF";
    size_t o = 0, i;
    for (i = 0; prefix[i]; i++) out[o++] = prefix[i];
    for (i = 0; i < cch; i++) {
        WCHAR ch = name[i];
        if (ch == L'\\' || ch == L'%') {
            if (o + 3 >= FEMU_PIPE_NAME_CCH) return FALSE;
            out[o++] = L'%';
            out[o++] = hex[(ch >> 4) & 0xF];
            out[o++] = hex[ch & 0xF];
        } else {
            if (ch == 0 || o + 1 >= FEMU_PIPE_NAME_CCH) return FALSE;
            out[o++] = ch;
        }
    }
    out[o] = 0;
    return cch > 0;
}

#endif
