/*
 * The sample's communication logic (comm.c): the port, its callbacks, and asking an agent about
 * an open. filter.c calls it from the pre-create callback. Include <fltKernel.h> before this
 * header.
 */
#ifndef FLTPORT_SAMPLE_COMM_H
#define FLTPORT_SAMPLE_COMM_H

#include "../protocol.h"

/* What became of one open. Everything but COMM_OUTCOME_DENIED lets the open proceed: the sample
 * fails open, so a slow, crashed or buggy agent can never lock the user out of files. */
typedef enum _COMM_OUTCOME {
    COMM_OUTCOME_IDLE,         /* filtering off, or no agent connected: nothing to ask */
    COMM_OUTCOME_UNWATCHED,    /* the name does not end with the watched suffix */
    COMM_OUTCOME_SELF,         /* opened by an agent's own process: asking it could deadlock */
    COMM_OUTCOME_NO_AGENT,     /* the last agent left between the check and the send */
    COMM_OUTCOME_ALLOWED,      /* an agent answered allow */
    COMM_OUTCOME_DENIED,       /* an agent answered deny */
    COMM_OUTCOME_TIMEOUT,      /* no answer within the reply timeout */
    COMM_OUTCOME_MALFORMED,    /* an answer of the wrong size, sequence or verdict */
    COMM_OUTCOME_SEND_FAILED,  /* the agent disconnected, FltSendMessage failed, or no memory */
} COMM_OUTCOME;

/* Creates the port (PortName: FS_PORT_NAME in the driver) and resets the configuration and
 * counters. Verbose: one DbgPrint line per connection, command and verdict. */
NTSTATUS CommStart(_In_ PFLT_FILTER Filter, _In_ PCUNICODE_STRING PortName, _In_ BOOLEAN Verbose);

/* Closes the server port (no new connections) and every client port. Call before unregistering
 * the filter; DisconnectNotify still runs for each connection during the unregistration. */
VOID CommStop(VOID);

/* Releases what CommStart set up. Call after the filter is unregistered: no callback runs any more. */
VOID CommCleanup(VOID);

/* Cheap check for the pre-create path, before the costly name query: is anybody to be asked?
 * Takes no lock. */
BOOLEAN CommWantsOpens(VOID);

/* Does Name (any form: opened, normalized, relative) end with the watched suffix? Compares the
 * file name without a stream name, case-insensitively; takes no lock. CommCheckOpen checks again
 * on the name it is given. */
BOOLEAN CommIsWatchedName(_In_ PCUNICODE_STRING Name);

/* The final component of Path without its stream name (":stream", "::$DATA"), pointing into
 * Path's buffer: "\dir\a.txt:s" -> "a.txt". */
VOID CommFileNamePart(_In_ PCUNICODE_STRING Path, _Out_ PUNICODE_STRING FileName);

/* Decides one open: matches the suffix, skips agents' own processes, sends the notification to an
 * agent and waits for its verdict (bounded by the configured timeout). Runs at PASSIVE_LEVEL. */
COMM_OUTCOME CommCheckOpen(_In_ HANDLE ProcessId, _In_ ACCESS_MASK DesiredAccess, _In_ PCUNICODE_STRING Path);

#endif /* FLTPORT_SAMPLE_COMM_H */
