/*
 * fltport-sample-host: the sample driver's stand-in, for machines without it (Linux + Wine, or
 * Windows without test signing). It links the driver's own comm.c with the filter-manager
 * emulator's kernel library, creates the same port, and plays filter.c's part: opens described on
 * its control channel go through the same CommWantsOpens / CommCheckOpen path as the driver's
 * pre-create callback, so agents see exactly what the driver would send them.
 *
 *   fltport-sample-host [--port NAME] [--workers N] [--verbose]
 *   fltport-sample-host --layout      prints the protocol's sizes and offsets as JSON, then exits
 *
 * Control channel: one command per line on standard input, one answer per line on standard output.
 *   open ID PID ACCESS PATH   decide an open (ACCESS decimal or 0x-hex; PATH: the rest of the line,
 *                             UTF-8). Opens run on N worker threads (default 8), so answers can
 *                             come in any order:  "done ID allow|deny OUTCOME SEQUENCE"
 *   quit                      (or the end of input) stop: opens under way finish, the ports close,
 *                             DisconnectNotify runs for every connection, then "bye"
 * Once the port exists: "ready HOST_PID PORT". Malformed commands: "error MESSAGE".
 * Under the emulator ConnectNotify runs in this process, so every agent's "own process" is this
 * one: an open with PID = HOST_PID is skipped as the driver skips an agent's own opens.
 * --verbose: one line per event on standard error (comm.c's lines and this file's).
 */
#include <fltKernel.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../driver/comm.h"

#define LINE_BYTES (64 * 1024)
#define ID_BYTES 64
#define DEFAULT_WORKERS 8
#define MAX_WORKERS 64

/* ---- output: whole lines, never interleaved ------------------------------------------------- */

static CRITICAL_SECTION g_outputLock;
static BOOL g_verbose;

static void EmitV(FILE *stream, const char *format, va_list args)
{
    EnterCriticalSection(&g_outputLock);
    vfprintf(stream, format, args);
    fputc('\n', stream);
    fflush(stream);
    LeaveCriticalSection(&g_outputLock);
}

static void Answer(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    EmitV(stdout, format, args);
    va_end(args);
}

static void Trace(const char *format, ...)
{
    va_list args;
    if (!g_verbose) return;
    va_start(args, format);
    EmitV(stderr, format, args);
    va_end(args);
}

/* ---- open requests and the queue the workers take them from --------------------------------- */

typedef struct OpenRequest {
    struct OpenRequest *next;
    char id[ID_BYTES];
    ULONG processId;
    ACCESS_MASK access;
    UNICODE_STRING path; /* Buffer is owned by the request */
    char *pathUtf8;      /* for verbose lines */
} OpenRequest;

static void FreeRequest(OpenRequest *request)
{
    if (request == NULL) return;
    free(request->path.Buffer);
    free(request->pathUtf8);
    free(request);
}

typedef struct WorkQueue {
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE changed;
    OpenRequest *head;
    OpenRequest *tail;
    BOOL closing;
    HANDLE threads[MAX_WORKERS];
    int threadCount;
} WorkQueue;

static void QueuePush(WorkQueue *queue, OpenRequest *request)
{
    EnterCriticalSection(&queue->lock);
    request->next = NULL;
    if (queue->tail != NULL)
        queue->tail->next = request;
    else
        queue->head = request;
    queue->tail = request;
    LeaveCriticalSection(&queue->lock);
    WakeConditionVariable(&queue->changed);
}

/* Blocks until a request is there; NULL once the queue is closing and drained. */
static OpenRequest *QueuePop(WorkQueue *queue)
{
    OpenRequest *request;
    EnterCriticalSection(&queue->lock);
    while (queue->head == NULL && !queue->closing) SleepConditionVariableCS(&queue->changed, &queue->lock, INFINITE);
    request = queue->head;
    if (request != NULL) {
        queue->head = request->next;
        if (queue->head == NULL) queue->tail = NULL;
    }
    LeaveCriticalSection(&queue->lock);
    return request;
}

/* What filter.c's pre-create callback does, with the open described instead of intercepted. */
static void DecideOpen(const OpenRequest *request)
{
    UINT64 sequence = 0;
    COMM_OUTCOME outcome = COMM_OUTCOME_IDLE;

    Trace("host: open %s pid=%lu access=0x%08lX path=%s", request->id, request->processId,
          (unsigned long)request->access, request->pathUtf8);
    if (CommWantsOpens())
        outcome = CommCheckOpen(ULongToHandle(request->processId), request->access, &request->path, &sequence);
    Answer("done %s %s %s %llu", request->id, outcome == COMM_OUTCOME_DENIED ? "deny" : "allow",
           CommOutcomeName(outcome), (unsigned long long)sequence);
    Trace("host: done %s %s #%llu", request->id, CommOutcomeName(outcome), (unsigned long long)sequence);
}

static DWORD WINAPI Worker(LPVOID parameter)
{
    WorkQueue *queue = (WorkQueue *)parameter;
    OpenRequest *request;
    while ((request = QueuePop(queue)) != NULL) {
        DecideOpen(request);
        FreeRequest(request);
    }
    return 0;
}

static BOOL QueueStart(WorkQueue *queue, int workers)
{
    memset(queue, 0, sizeof *queue);
    InitializeCriticalSection(&queue->lock);
    InitializeConditionVariable(&queue->changed);
    for (; queue->threadCount < workers; queue->threadCount++) {
        queue->threads[queue->threadCount] = CreateThread(NULL, 0, Worker, queue, 0, NULL);
        if (queue->threads[queue->threadCount] == NULL) return FALSE;
    }
    return TRUE;
}

/* Lets the workers finish what is queued, joins them and frees the queue. */
static void QueueStop(WorkQueue *queue)
{
    int i;
    EnterCriticalSection(&queue->lock);
    queue->closing = TRUE;
    LeaveCriticalSection(&queue->lock);
    WakeAllConditionVariable(&queue->changed);
    for (i = 0; i < queue->threadCount; i++) {
        WaitForSingleObject(queue->threads[i], INFINITE);
        CloseHandle(queue->threads[i]);
    }
    while (queue->head != NULL) {
        OpenRequest *next = queue->head->next;
        FreeRequest(queue->head);
        queue->head = next;
    }
    DeleteCriticalSection(&queue->lock);
}

/* ---- the control channel -------------------------------------------------------------------- */

static char *NextToken(char **cursor)
{
    char *start = *cursor;
    while (*start == ' ') start++;
    if (*start == '\0') return NULL;
    char *end = start;
    while (*end != ' ' && *end != '\0') end++;
    if (*end != '\0') *end++ = '\0';
    *cursor = end;
    return start;
}

static BOOL ParseUlong(const char *text, ULONG *value)
{
    char *end;
    unsigned long long parsed;
    if (text == NULL || *text == '\0' || *text == '-') return FALSE;
    parsed = strtoull(text, &end, 0);
    if (*end != '\0' || parsed > 0xFFFFFFFFull) return FALSE;
    *value = (ULONG)parsed;
    return TRUE;
}

/* Parses "ID PID ACCESS PATH"; NULL (after an "error" answer) when it does not hold. */
static OpenRequest *ParseOpen(char *arguments)
{
    char *cursor = arguments;
    char *id = NextToken(&cursor);
    char *pid = NextToken(&cursor);
    char *access = NextToken(&cursor);
    char *path = cursor;
    ULONG processId, desiredAccess;
    OpenRequest *request;
    int chars;

    while (*path == ' ') path++;
    if (id == NULL || strlen(id) >= ID_BYTES || !ParseUlong(pid, &processId) || !ParseUlong(access, &desiredAccess) ||
        *path == '\0') {
        Answer("error usage: open ID PID ACCESS PATH");
        return NULL;
    }
    /* UNICODE_STRING lengths are USHORT byte counts. */
    chars = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0) - 1;
    if (chars <= 0 || chars > 0x7FFF) {
        Answer("error %s: the path must be valid UTF-8 of 1 to 32767 UTF-16 units", id);
        return NULL;
    }
    request = (OpenRequest *)calloc(1, sizeof *request);
    if (request != NULL) {
        request->path.Buffer = (PWSTR)malloc(((size_t)chars + 1) * sizeof(WCHAR));
        request->pathUtf8 = _strdup(path);
    }
    if (request == NULL || request->path.Buffer == NULL || request->pathUtf8 == NULL) {
        FreeRequest(request);
        Answer("error %s: out of memory", id);
        return NULL;
    }
    MultiByteToWideChar(CP_UTF8, 0, path, -1, request->path.Buffer, chars + 1);
    request->path.Length = (USHORT)(chars * sizeof(WCHAR));
    request->path.MaximumLength = (USHORT)(chars * sizeof(WCHAR));
    strcpy(request->id, id);
    request->processId = processId;
    request->access = desiredAccess;
    return request;
}

/* Reads commands until "quit" or the end of input. */
static void RunControlChannel(WorkQueue *queue)
{
    char *line = (char *)malloc(LINE_BYTES);
    if (line == NULL) {
        Answer("error out of memory");
        return;
    }
    while (fgets(line, LINE_BYTES, stdin) != NULL) {
        size_t length = strlen(line);
        char *cursor = line;
        char *command;
        if (length > 0 && line[length - 1] != '\n' && !feof(stdin)) {
            int c;
            while ((c = fgetc(stdin)) != EOF && c != '\n') {
            }
            Answer("error line longer than %d bytes", LINE_BYTES - 2);
            continue;
        }
        while (length > 0 && (line[length - 1] == '\n' || line[length - 1] == '\r')) line[--length] = '\0';
        command = NextToken(&cursor);
        if (command == NULL) continue;
        if (strcmp(command, "quit") == 0) break;
        if (strcmp(command, "open") == 0) {
            OpenRequest *request = ParseOpen(cursor);
            if (request != NULL) QueuePush(queue, request);
        } else {
            Answer("error unknown command %s", command);
        }
    }
    free(line);
}

/* ---- --layout --------------------------------------------------------------------------------- */

#define LAYOUT_BEGIN(type) printf("%s\"" #type "\":{\"size\":%u,\"offsets\":{", firstType ? "" : ",", (unsigned)sizeof(type)), firstType = 0, firstField = 1
#define LAYOUT_FIELD(type, field) printf("%s\"" #field "\":%u", firstField ? "" : ",", (unsigned)FIELD_OFFSET(type, field)), firstField = 0
#define LAYOUT_END() printf("}}")
#define LAYOUT_CONSTANT(name) printf(",\"" #name "\":%lu", (unsigned long)(name))

static void PrintLayout(void)
{
    int firstType = 1, firstField = 1;
    printf("{\"structs\":{");
    LAYOUT_BEGIN(FS_CONNECT_CONTEXT);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Magic);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Version);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Flags);
    LAYOUT_FIELD(FS_CONNECT_CONTEXT, Reserved);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_COMMAND_HEADER);
    LAYOUT_FIELD(FS_COMMAND_HEADER, Command);
    LAYOUT_FIELD(FS_COMMAND_HEADER, PayloadBytes);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_STATS);
    LAYOUT_FIELD(FS_STATS, OpensSeen);
    LAYOUT_FIELD(FS_STATS, SelfSkipped);
    LAYOUT_FIELD(FS_STATS, NotificationsSent);
    LAYOUT_FIELD(FS_STATS, Replies);
    LAYOUT_FIELD(FS_STATS, Denials);
    LAYOUT_FIELD(FS_STATS, Timeouts);
    LAYOUT_FIELD(FS_STATS, MalformedReplies);
    LAYOUT_FIELD(FS_STATS, SendFailures);
    LAYOUT_FIELD(FS_STATS, NoAgent);
    LAYOUT_FIELD(FS_STATS, Connects);
    LAYOUT_FIELD(FS_STATS, Refused);
    LAYOUT_FIELD(FS_STATS, Disconnects);
    LAYOUT_FIELD(FS_STATS, EventsSent);
    LAYOUT_FIELD(FS_STATS, EventsDropped);
    LAYOUT_FIELD(FS_STATS, Connections);
    LAYOUT_FIELD(FS_STATS, Agents);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_CONFIG);
    LAYOUT_FIELD(FS_CONFIG, Flags);
    LAYOUT_FIELD(FS_CONFIG, ReplyTimeoutMs);
    LAYOUT_FIELD(FS_CONFIG, SuffixBytes);
    LAYOUT_FIELD(FS_CONFIG, Reserved);
    LAYOUT_FIELD(FS_CONFIG, Suffix);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_OPEN_NOTIFICATION);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Kind);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, DesiredAccess);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Sequence);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, ProcessId);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, PathBytes);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, PathFlags);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Reserved);
    LAYOUT_FIELD(FS_OPEN_NOTIFICATION, Path);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_CONFIG_EVENT);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Kind);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Reserved);
    LAYOUT_FIELD(FS_CONFIG_EVENT, ChangeCount);
    LAYOUT_FIELD(FS_CONFIG_EVENT, Config);
    LAYOUT_END();
    LAYOUT_BEGIN(FS_OPEN_REPLY);
    LAYOUT_FIELD(FS_OPEN_REPLY, Sequence);
    LAYOUT_FIELD(FS_OPEN_REPLY, Verdict);
    LAYOUT_FIELD(FS_OPEN_REPLY, Reserved);
    LAYOUT_END();
    printf("},\"constants\":{\"FS_MAX_CONNECTIONS\":%d", FS_MAX_CONNECTIONS);
    LAYOUT_CONSTANT(FS_CONTEXT_MAGIC);
    LAYOUT_CONSTANT(FS_PROTOCOL_VERSION);
    LAYOUT_CONSTANT(FS_CONNECT_AGENT);
    LAYOUT_CONSTANT(FS_COMMAND_PING);
    LAYOUT_CONSTANT(FS_COMMAND_GET_STATS);
    LAYOUT_CONSTANT(FS_COMMAND_SET_CONFIG);
    LAYOUT_CONSTANT(FS_MAX_PING_BYTES);
    LAYOUT_CONSTANT(FS_CONFIG_ENABLED);
    LAYOUT_CONSTANT(FS_MAX_SUFFIX_CHARS);
    LAYOUT_CONSTANT(FS_MIN_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_MAX_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_DEFAULT_REPLY_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_EVENT_TIMEOUT_MS);
    LAYOUT_CONSTANT(FS_MESSAGE_OPEN);
    LAYOUT_CONSTANT(FS_MESSAGE_CONFIG_CHANGED);
    LAYOUT_CONSTANT(FS_MAX_PATH_CHARS);
    LAYOUT_CONSTANT(FS_PATH_TRUNCATED);
    LAYOUT_CONSTANT(FS_MAX_MESSAGE_BYTES);
    LAYOUT_CONSTANT(FS_VERDICT_ALLOW);
    LAYOUT_CONSTANT(FS_VERDICT_DENY);
    LAYOUT_CONSTANT(FS_REPLY_HEADER_BYTES);
    printf("}}\n");
}

/* ---- main ----------------------------------------------------------------------------------- */

static int Usage(void)
{
    fprintf(stderr, "usage: fltport-sample-host [--port NAME] [--workers 1-%d] [--verbose]\n"
                    "       fltport-sample-host --layout\n",
            MAX_WORKERS);
    return 2;
}

int wmain(int argc, wchar_t **argv)
{
    const wchar_t *portText = FS_PORT_NAME;
    char portUtf8[512];
    int workers = DEFAULT_WORKERS;
    UNICODE_STRING portName;
    PFLT_FILTER filter = NULL;
    WorkQueue queue;
    NTSTATUS status;
    int exitCode = 1;
    int i;

    for (i = 1; i < argc; i++) {
        if (wcscmp(argv[i], L"--layout") == 0) {
            PrintLayout();
            return 0;
        } else if (wcscmp(argv[i], L"--verbose") == 0) {
            g_verbose = TRUE;
        } else if (wcscmp(argv[i], L"--port") == 0 && i + 1 < argc) {
            portText = argv[++i];
        } else if (wcscmp(argv[i], L"--workers") == 0 && i + 1 < argc) {
            workers = _wtoi(argv[++i]);
            if (workers < 1 || workers > MAX_WORKERS) return Usage();
        } else {
            return Usage();
        }
    }
    if (wcslen(portText) > 0x7FFF ||
        WideCharToMultiByte(CP_UTF8, 0, portText, -1, portUtf8, sizeof portUtf8, NULL, NULL) == 0)
        return Usage();

    /* Ctrl+C reaches every process on the console; the parent stops this one through its input,
     * the orderly way, so that agents see their ports close rather than a vanished process. */
    SetConsoleCtrlHandler(NULL, TRUE);
    InitializeCriticalSection(&g_outputLock);

    status = FltEmuCreateFilter(&filter);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "FltEmuCreateFilter failed: 0x%08lX\n", (unsigned long)status);
        goto done;
    }
    RtlInitUnicodeString(&portName, portText);
    status = CommStart(filter, &portName, g_verbose ? TRUE : FALSE);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "creating the port %s failed: 0x%08lX%s\n", portUtf8, (unsigned long)status,
                status == STATUS_OBJECT_NAME_COLLISION ? " (another host or the driver already has it)" : "");
        goto unregister;
    }
    if (!QueueStart(&queue, workers)) {
        fprintf(stderr, "starting %d worker threads failed: %lu\n", workers, GetLastError());
        goto stop;
    }
    Answer("ready %lu %s", GetCurrentProcessId(), portUtf8);

    RunControlChannel(&queue);
    exitCode = 0;

stop:
    QueueStop(&queue);
    CommStop();
unregister:
    FltEmuUnregisterFilter(filter);
    if (NT_SUCCESS(status)) CommCleanup();
done:
    if (exitCode == 0) Answer("bye");
    DeleteCriticalSection(&g_outputLock);
    return exitCode;
}
