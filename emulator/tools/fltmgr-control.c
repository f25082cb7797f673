/*
 * fltmgr-control: injects file opens into the emulated filter manager (emulator/kernel), for the
 * sample's demo and integration suite. Wine routes no file opens through drivers, so this tool
 * asks fltmgr.sys (IOCTL INJECT_CREATE on its control device \FileSystem\Filters\FltMgr) to run
 * the IRP_MJ_CREATE pre-operation callbacks of every filtering minifilter, in altitude order, for
 * an open described here, and prints their verdict.
 *
 *   fltmgr-control [--threads N]
 *
 * Commands, one per line on standard input; answers, one per line on standard output:
 *   open ID PID ACCESS NAME                 an open of NAME (an NT name, "\Device\HarddiskVolume3\x.txt",
 *                                           UTF-8, the rest of the line) by process PID with desired
 *                                           ACCESS (decimal or 0x-hex) of an existing file (FILE_OPEN)
 *   create ID PID ACCESS OPTIONS NAME       the same with Parameters.Create.Options as given: the
 *                                           disposition in the high byte, FILE_* create options below
 *   NAME may be OPENED|NORMALIZED: the name the caller opened, and the one FltGetFileNameInformation
 *   reports as normalized (an 8.3 short name and its long name; a file id open and the file's name).
 *   '|' cannot occur in file names. Without it both are NAME.
 *   Opens run on N threads (default 16) and may answer in any order:
 *     done ID allow|deny 0xSTATUS            STATUS: what the callbacks completed the create with
 *                                           (0x00000000 when they let it through); deny = an error
 *   quit (or the end of input)              opens under way finish, then "bye"
 * Once the control device is open: "ready PID" (this process's id). Malformed commands and failed
 * injections: "error [ID] MESSAGE".
 */
#define WIN32_LEAN_AND_MEAN
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>
#include <winioctl.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernel/protocol.h"

#define LINE_BYTES (64 * 1024)
#define ID_BYTES 64
#define DEFAULT_THREADS 16
#define MAX_THREADS 64

/* ---- output: whole lines, never interleaved ------------------------------------------------- */

static CRITICAL_SECTION g_outputLock;

static void Answer(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    EnterCriticalSection(&g_outputLock);
    vfprintf(stdout, format, args);
    fputc('\n', stdout);
    fflush(stdout);
    LeaveCriticalSection(&g_outputLock);
    va_end(args);
}

/* ---- injection requests and the queue the threads take them from ---------------------------- */

typedef struct Request {
    struct Request *next;
    char id[ID_BYTES];
    FLTEMU_INJECT_CREATE_REQUEST *inject; /* followed by its names */
    ULONG injectBytes;
} Request;

static void FreeRequest(Request *request)
{
    if (request == NULL) return;
    free(request->inject);
    free(request);
}

typedef struct WorkQueue {
    CRITICAL_SECTION lock;
    CONDITION_VARIABLE changed;
    Request *head;
    Request *tail;
    BOOL closing;
    HANDLE device;
    HANDLE threads[MAX_THREADS];
    int threadCount;
} WorkQueue;

static void QueuePush(WorkQueue *queue, Request *request)
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
static Request *QueuePop(WorkQueue *queue)
{
    Request *request;
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

/* The device handle is asynchronous (a synchronous one would serialise the threads' calls): each
 * call waits on an event of its own. */
static void Inject(HANDLE device, HANDLE event, const Request *request)
{
    FLTEMU_INJECT_CREATE_RESULT result;
    OVERLAPPED overlapped;
    DWORD bytes = 0;
    BOOL ok;

    memset(&result, 0, sizeof result);
    memset(&overlapped, 0, sizeof overlapped);
    overlapped.hEvent = event;
    ok = DeviceIoControl(device, IOCTL_FLTEMU_INJECT_CREATE, request->inject, request->injectBytes, &result,
                         sizeof result, NULL, &overlapped);
    if (!ok && GetLastError() == ERROR_IO_PENDING) ok = GetOverlappedResult(device, &overlapped, &bytes, TRUE);
    else if (ok) ok = GetOverlappedResult(device, &overlapped, &bytes, FALSE);
    if (!ok) {
        Answer("error %s INJECT_CREATE failed: Win32 error %lu (NTSTATUS 0x%08lX)", request->id, GetLastError(),
               (unsigned long)overlapped.Internal);
        return;
    }
    if (bytes != sizeof result) {
        Answer("error %s INJECT_CREATE returned %lu bytes, not %u", request->id, bytes, (unsigned)sizeof result);
        return;
    }
    Answer("done %s %s 0x%08lX", request->id, result.Status >= 0 ? "allow" : "deny", (unsigned long)result.Status);
}

static DWORD WINAPI Worker(LPVOID parameter)
{
    WorkQueue *queue = (WorkQueue *)parameter;
    HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
    Request *request;
    while ((request = QueuePop(queue)) != NULL) {
        if (event == NULL)
            Answer("error %s CreateEvent failed: %lu", request->id, GetLastError());
        else
            Inject(queue->device, event, request);
        FreeRequest(request);
    }
    if (event != NULL) CloseHandle(event);
    return 0;
}

static BOOL QueueStart(WorkQueue *queue, HANDLE device, int threads)
{
    memset(queue, 0, sizeof *queue);
    InitializeCriticalSection(&queue->lock);
    InitializeConditionVariable(&queue->changed);
    queue->device = device;
    for (; queue->threadCount < threads; queue->threadCount++) {
        queue->threads[queue->threadCount] = CreateThread(NULL, 0, Worker, queue, 0, NULL);
        if (queue->threads[queue->threadCount] == NULL) return FALSE;
    }
    return TRUE;
}

/* Lets the threads finish what is queued, joins them and frees the queue. */
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
        Request *next = queue->head->next;
        FreeRequest(queue->head);
        queue->head = next;
    }
    DeleteCriticalSection(&queue->lock);
}

/* ---- commands ------------------------------------------------------------------------------- */

static char *NextToken(char **cursor)
{
    char *start = *cursor;
    char *end;
    while (*start == ' ') start++;
    if (*start == '\0') return NULL;
    end = start;
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

/* UTF-8 -> UTF-16 units written at out (NULL: count only); -1 if invalid or longer than a
 * UNICODE_STRING holds. */
static int Utf16Units(const char *text, int bytes, WCHAR *out, int capacity)
{
    int units;
    if (bytes == 0) return -1;
    units = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, text, bytes, out, capacity);
    return units <= 0 || units > 0x7FFF ? -1 : units;
}

/* Builds the ioctl's input from "NAME" or "OPENED|NORMALIZED"; NULL after an "error" answer. */
static Request *BuildRequest(const char *id, ULONG processId, ULONG access, ULONG options, const char *names)
{
    const char *bar = strchr(names, '|');
    int openedBytes = bar != NULL ? (int)(bar - names) : (int)strlen(names);
    const char *normalized = bar != NULL ? bar + 1 : NULL;
    int normalizedBytes = normalized != NULL ? (int)strlen(normalized) : 0;
    int openedUnits = Utf16Units(names, openedBytes, NULL, 0);
    int normalizedUnits = normalized != NULL ? Utf16Units(normalized, normalizedBytes, NULL, 0) : 0;
    Request *request;
    WCHAR *names16;
    size_t bytes;

    if (openedUnits < 0 || normalizedUnits < 0) {
        Answer("error %s names must be valid UTF-8 of 1 to 32767 UTF-16 units", id);
        return NULL;
    }
    bytes = sizeof(FLTEMU_INJECT_CREATE_REQUEST) + ((size_t)openedUnits + (size_t)normalizedUnits) * sizeof(WCHAR);
    request = (Request *)calloc(1, sizeof *request);
    if (request != NULL) request->inject = (FLTEMU_INJECT_CREATE_REQUEST *)calloc(1, bytes);
    if (request == NULL || request->inject == NULL) {
        FreeRequest(request);
        Answer("error %s out of memory", id);
        return NULL;
    }
    strcpy(request->id, id);
    request->injectBytes = (ULONG)bytes;
    names16 = (WCHAR *)(request->inject + 1);
    request->inject->RequestorProcessId = processId;
    request->inject->DesiredAccess = access;
    request->inject->CreateOptions = options;
    request->inject->ShareAccess = FILE_SHARE_READ | FILE_SHARE_WRITE;
    request->inject->FileAttributes = FILE_ATTRIBUTE_NORMAL;
    request->inject->NameBytes = (ULONG)openedUnits * (ULONG)sizeof(WCHAR);
    request->inject->NormalizedNameBytes = (ULONG)normalizedUnits * (ULONG)sizeof(WCHAR);
    Utf16Units(names, openedBytes, names16, openedUnits);
    if (normalized != NULL) Utf16Units(normalized, normalizedBytes, names16 + openedUnits, normalizedUnits);
    return request;
}

/* Parses "ID PID ACCESS [OPTIONS] NAME"; NULL after an "error" answer. */
static Request *ParseOpen(char *arguments, BOOL withOptions)
{
    char *cursor = arguments;
    char *id = NextToken(&cursor);
    char *pid = NextToken(&cursor);
    char *access = NextToken(&cursor);
    char *options = withOptions ? NextToken(&cursor) : NULL;
    ULONG processId, desiredAccess, createOptions = FILE_OPEN << 24;

    while (*cursor == ' ') cursor++;
    if (id == NULL || strlen(id) >= ID_BYTES || !ParseUlong(pid, &processId) || !ParseUlong(access, &desiredAccess) ||
        (withOptions && !ParseUlong(options, &createOptions)) || *cursor == '\0') {
        Answer(withOptions ? "error usage: create ID PID ACCESS OPTIONS NAME" : "error usage: open ID PID ACCESS NAME");
        return NULL;
    }
    return BuildRequest(id, processId, desiredAccess, createOptions, cursor);
}

/* Reads commands until "quit" or the end of input. */
static void RunCommands(WorkQueue *queue)
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
        if (strcmp(command, "open") == 0 || strcmp(command, "create") == 0) {
            Request *request = ParseOpen(cursor, strcmp(command, "create") == 0);
            if (request != NULL) QueuePush(queue, request);
        } else {
            Answer("error unknown command %s", command);
        }
    }
    free(line);
}

/* ---- main ----------------------------------------------------------------------------------- */

/* The control device has no DOS name: open it by its NT name. */
static NTSTATUS OpenControlDevice(HANDLE *device)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK io;

    RtlInitUnicodeString(&name, FLTEMU_CONTROL_DEVICE_NAME);
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return NtCreateFile(device, GENERIC_READ | GENERIC_WRITE, &attributes, &io, NULL, 0, FILE_SHARE_READ | FILE_SHARE_WRITE,
                        FILE_OPEN, 0, NULL, 0);
}

int main(int argc, char **argv)
{
    int threads = DEFAULT_THREADS;
    HANDLE device = NULL;
    WorkQueue queue;
    NTSTATUS status;
    int i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) {
            threads = atoi(argv[++i]);
            if (threads >= 1 && threads <= MAX_THREADS) continue;
        }
        fprintf(stderr, "usage: fltmgr-control [--threads 1-%d]\n", MAX_THREADS);
        return 2;
    }
    InitializeCriticalSection(&g_outputLock);
    status = OpenControlDevice(&device);
    if (!NT_SUCCESS(status)) {
        fprintf(stderr, "fltmgr-control: opening %ls failed: 0x%08lX (is the emulated fltmgr.sys running?)\n",
                FLTEMU_CONTROL_DEVICE_NAME, (unsigned long)status);
        return 1;
    }
    if (!QueueStart(&queue, device, threads)) {
        fprintf(stderr, "fltmgr-control: starting %d threads failed: %lu\n", threads, GetLastError());
        QueueStop(&queue);
        CloseHandle(device);
        return 1;
    }
    Answer("ready %lu", GetCurrentProcessId());
    RunCommands(&queue);
    QueueStop(&queue);
    CloseHandle(device);
    Answer("bye");
    DeleteCriticalSection(&g_outputLock);
    return 0;
}
