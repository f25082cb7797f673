/*
 * fltlib.dll for the emulator: the filter-manager calls of fltuser.h (FilterFindFirst and kin,
 * FilterCreate / FilterGetInformation, FilterLoad / FilterUnload, FilterAttach / FilterDetach,
 * FilterGetDosName) over the emulator's fltmgr.sys (kernel/manage.c, manage-protocol.h).
 *
 * - Volumes are the machine's drives: every drive letter QueryDosDevice maps to an NT device
 *   (\Device\HarddiskVolume1 for C: under Wine), frame 0, the file system the volume reports.
 * - Filters are the minifilters registered with fltmgr.sys, frame 0; instances are what the
 *   kernel reports: a filtering filter's default instance on every volume unless detached from
 *   it, plus those FilterAttach made.
 * - FilterLoad / FilterUnload start and stop the filter's service, as the filter manager loads
 *   and unloads the driver on Windows, after the check Windows makes: the caller's token must
 *   have SeLoadDriverPrivilege enabled (else ERROR_PRIVILEGE_NOT_HELD).
 * - Enumerations read the state once, at their FindFirst, and walk that snapshot. Their handles
 *   are this DLL's own (Windows gives handles of the filter manager's device); an unknown handle
 *   fails with E_HANDLE.
 * - An entry that does not fit fails with ERROR_INSUFFICIENT_BUFFER and *lpBytesReturned the
 *   size it needs, and the enumeration stays where it was (fltmc retries with that size).
 * Names compare without regard to case, as object and service names do on Windows.
 */
#define WIN32_LEAN_AND_MEAN
#define WIN32_NO_STATUS
#include <windows.h>
#undef WIN32_NO_STATUS
#include <ntstatus.h>
#include <winternl.h>
#include <winioctl.h>
#include <fltuser.h>
#include <stdlib.h>
#include <wchar.h>

#include "../kernel/protocol.h"
#include "../kernel/manage-protocol.h"

/* fltlib.c: the rule by which the real fltlib turns an NTSTATUS into an HRESULT. */
HRESULT HResultFromNtStatus(NTSTATUS status);

#define HR_FILE_NOT_FOUND HRESULT_FROM_WIN32(ERROR_FILE_NOT_FOUND)
#define HR_INSUFFICIENT_BUFFER HRESULT_FROM_WIN32(ERROR_INSUFFICIENT_BUFFER)
#define HR_NO_MORE_ITEMS HRESULT_FROM_WIN32(ERROR_NO_MORE_ITEMS)
#define HR_PRIVILEGE_NOT_HELD HRESULT_FROM_WIN32(ERROR_PRIVILEGE_NOT_HELD)
#define HR_FLT_FILTER_NOT_FOUND ((HRESULT)0x801F0013L)
#define HR_FLT_VOLUME_NOT_FOUND ((HRESULT)0x801F0014L)

#define VOLUME_CHARS 1024
/* How long FilterLoad / FilterUnload wait for the service to run or stop (loaded machines). */
#define SERVICE_WAIT_MS 60000

/* ---- the state: volumes, filters, instances ------------------------------------------------ */

typedef struct _TEXT {
    const WCHAR *Chars;
    USHORT Bytes;
} TEXT;

typedef struct _VOLUME {
    WCHAR NtName[VOLUME_CHARS + 1];
    WCHAR DosName[3]; /* "C:" */
    FLT_FILESYSTEM_TYPE FileSystem;
} VOLUME;

typedef struct _FILTER {
    TEXT Name;
    TEXT Altitude;
    TEXT DefaultInstance;
    BOOL Filtering;
    ULONG Instances;
    const FLTEMU_FILTER_RECORD *Record;
} FILTER;

typedef struct _INSTANCE {
    FILTER *Filter;
    TEXT Volume;
    TEXT Name;
    TEXT Altitude;
    FLT_FILESYSTEM_TYPE FileSystem;
} INSTANCE;

typedef struct _STATE {
    VOLUME *Volumes;
    ULONG VolumeCount;
    BYTE *Raw; /* the kernel's FLTEMU_FILTER_LIST */
    FILTER *Filters;
    ULONG FilterCount;
    INSTANCE *Instances;
    ULONG InstanceCount;
} STATE;

static TEXT Text(const WCHAR *chars)
{
    TEXT text = { chars, (USHORT)(wcslen(chars) * sizeof(WCHAR)) };
    return text;
}

static BOOL SameText(TEXT a, TEXT b)
{
    return a.Bytes == b.Bytes && CompareStringOrdinal(a.Chars, a.Bytes / 2, b.Chars, b.Bytes / 2, TRUE) == CSTR_EQUAL;
}

static void FreeState(STATE *state)
{
    HeapFree(GetProcessHeap(), 0, state->Volumes);
    HeapFree(GetProcessHeap(), 0, state->Raw);
    HeapFree(GetProcessHeap(), 0, state->Filters);
    HeapFree(GetProcessHeap(), 0, state->Instances);
    ZeroMemory(state, sizeof *state);
}

static FLT_FILESYSTEM_TYPE FileSystemOf(const WCHAR *name)
{
    static const struct { const WCHAR *Name; FLT_FILESYSTEM_TYPE Type; } known[] = {
        { L"NTFS", FLT_FSTYPE_NTFS }, { L"FAT", FLT_FSTYPE_FAT },     { L"FAT32", FLT_FSTYPE_FAT },
        { L"exFAT", FLT_FSTYPE_EXFAT }, { L"CDFS", FLT_FSTYPE_CDFS }, { L"UDF", FLT_FSTYPE_UDFS },
        { L"ReFS", FLT_FSTYPE_REFS },
    };
    size_t i;
    for (i = 0; i < ARRAYSIZE(known); ++i)
        if (CompareStringOrdinal(name, -1, known[i].Name, -1, TRUE) == CSTR_EQUAL) return known[i].Type;
    return FLT_FSTYPE_UNKNOWN;
}

/* The file system of the volume mounted at `root` ("C:\"), from FileFsAttributeInformation. */
static FLT_FILESYSTEM_TYPE VolumeFileSystem(const WCHAR *root)
{
    struct {
        ULONG FileSystemAttributes;
        LONG MaximumComponentNameLength;
        ULONG FileSystemNameLength;
        WCHAR FileSystemName[64];
    } attributes;
    WCHAR name[65];
    IO_STATUS_BLOCK iosb;
    HANDLE handle = CreateFileW(root, 0, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL, OPEN_EXISTING,
                                FILE_FLAG_BACKUP_SEMANTICS, NULL);
    NTSTATUS status;
    ULONG chars;

    if (handle == INVALID_HANDLE_VALUE) return FLT_FSTYPE_UNKNOWN;
    status = NtQueryVolumeInformationFile(handle, &iosb, &attributes, sizeof attributes, 5 /* FileFsAttributeInformation */);
    CloseHandle(handle);
    if (status < 0) return FLT_FSTYPE_UNKNOWN;
    chars = attributes.FileSystemNameLength / 2;
    if (chars > 64) chars = 64;
    memcpy(name, attributes.FileSystemName, chars * sizeof(WCHAR));
    name[chars] = L'\0';
    return FileSystemOf(name);
}

/* Every drive letter with an NT device behind it, each device once. */
static HRESULT ReadVolumes(STATE *state)
{
    DWORD drives = GetLogicalDrives();
    int letter;

    state->Volumes = (VOLUME *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, 26 * sizeof(VOLUME));
    if (state->Volumes == NULL) return E_OUTOFMEMORY;
    for (letter = 0; letter < 26; ++letter) {
        WCHAR dos[3] = { (WCHAR)(L'A' + letter), L':', L'\0' };
        WCHAR root[4] = { (WCHAR)(L'A' + letter), L':', L'\\', L'\0' };
        VOLUME *volume = &state->Volumes[state->VolumeCount];
        ULONG i;
        BOOL seen = FALSE;

        if ((drives & (1u << letter)) == 0) continue;
        if (QueryDosDeviceW(dos, volume->NtName, VOLUME_CHARS) == 0 || wcsncmp(volume->NtName, L"\\Device\\", 8) != 0) continue;
        for (i = 0; i < state->VolumeCount; ++i) seen |= SameText(Text(state->Volumes[i].NtName), Text(volume->NtName));
        if (seen) continue;
        wcscpy(volume->DosName, dos);
        volume->FileSystem = VolumeFileSystem(root);
        ++state->VolumeCount;
    }
    return S_OK;
}

/* The volume `name` designates: its NT name or drive letter ("C:", "C:\"); NULL if none. */
static const VOLUME *FindVolume(const STATE *state, const WCHAR *name)
{
    size_t length = wcslen(name);
    ULONG i;

    while (length > 1 && name[length - 1] == L'\\') --length; /* the trailing backslash is optional */
    for (i = 0; i < state->VolumeCount; ++i) {
        const VOLUME *volume = &state->Volumes[i];
        if (CompareStringOrdinal(name, (int)length, volume->NtName, -1, TRUE) == CSTR_EQUAL ||
            CompareStringOrdinal(name, (int)length, volume->DosName, -1, TRUE) == CSTR_EQUAL)
            return volume;
    }
    return NULL;
}

/* Opens fltmgr.sys's control device for synchronous IOCTLs. */
static NTSTATUS OpenControlDevice(HANDLE *device)
{
    UNICODE_STRING name;
    OBJECT_ATTRIBUTES attributes;
    IO_STATUS_BLOCK iosb;

    RtlInitUnicodeString(&name, FLTEMU_CONTROL_DEVICE_NAME);
    InitializeObjectAttributes(&attributes, &name, OBJ_CASE_INSENSITIVE, NULL, NULL);
    return NtCreateFile(device, FILE_READ_DATA | FILE_WRITE_DATA | SYNCHRONIZE, &attributes, &iosb, NULL, 0,
                        FILE_SHARE_READ | FILE_SHARE_WRITE, FILE_OPEN, FILE_SYNCHRONOUS_IO_NONALERT, NULL, 0);
}

static NTSTATUS ControlIoctl(ULONG code, void *input, ULONG inputBytes, void *output, ULONG outputBytes, ULONG_PTR *information)
{
    IO_STATUS_BLOCK iosb;
    HANDLE device;
    NTSTATUS status = OpenControlDevice(&device);

    *information = 0;
    if (status < 0) return status;
    iosb.Information = 0;
    status = NtDeviceIoControlFile(device, NULL, NULL, NULL, &iosb, code, input, inputBytes, output, outputBytes);
    if (status >= 0) *information = iosb.Information;
    CloseHandle(device);
    return status;
}

/* Takes `bytes` from the record at *at (bounded by `end`); NULL when it would pass the end. */
static const BYTE *Take(const BYTE **at, const BYTE *end, size_t bytes)
{
    const BYTE *taken = *at;
    if ((size_t)(end - taken) < bytes) return NULL;
    *at += bytes;
    return taken;
}

static BOOL TakeText(const BYTE **at, const BYTE *end, USHORT bytes, TEXT *text)
{
    text->Chars = (const WCHAR *)Take(at, end, bytes);
    text->Bytes = bytes;
    return text->Chars != NULL && bytes % 2 == 0;
}

/* The kernel's filter list, every length checked against the buffer. */
static HRESULT ReadFilters(STATE *state)
{
    ULONG bytes = 4096;
    const FLTEMU_FILTER_LIST *list;
    const BYTE *at;
    const BYTE *end;
    ULONG_PTR information;
    ULONG i;

    for (;;) {
        NTSTATUS status;
        state->Raw = (BYTE *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, bytes);
        if (state->Raw == NULL) return E_OUTOFMEMORY;
        status = ControlIoctl(IOCTL_FLTEMU_QUERY_FILTERS, NULL, 0, state->Raw, bytes, &information);
        if (status < 0) return HResultFromNtStatus(status);
        list = (const FLTEMU_FILTER_LIST *)state->Raw;
        if (information < sizeof *list) return E_UNEXPECTED;
        if (list->BytesNeeded <= bytes) break;
        bytes = list->BytesNeeded;
        HeapFree(GetProcessHeap(), 0, state->Raw);
        state->Raw = NULL;
    }
    state->Filters = (FILTER *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, (list->FilterCount + 1) * sizeof(FILTER));
    if (state->Filters == NULL) return E_OUTOFMEMORY;
    at = state->Raw + sizeof *list;
    end = state->Raw + information;
    for (i = 0; i < list->FilterCount; ++i) {
        const BYTE *recordStart = at;
        const FLTEMU_FILTER_RECORD *record = (const FLTEMU_FILTER_RECORD *)Take(&at, end, sizeof *record);
        FILTER *filter = &state->Filters[i];
        if (record == NULL || record->RecordBytes > (size_t)(end - recordStart) ||
            !TakeText(&at, end, record->NameBytes, &filter->Name) || !TakeText(&at, end, record->AltitudeBytes, &filter->Altitude) ||
            !TakeText(&at, end, record->DefaultInstanceBytes, &filter->DefaultInstance))
            return E_UNEXPECTED;
        filter->Filtering = record->Filtering != 0;
        filter->Record = record;
        at = recordStart + record->RecordBytes;
    }
    state->FilterCount = list->FilterCount;
    return S_OK;
}

/* Hands the instance records of `filter` that are `detached` (or not) to `visit`; FALSE when a
 * record's lengths do not fit it (or `visit` fails). */
typedef BOOL (*RECORD_VISIT)(STATE *state, FILTER *filter, TEXT volume, TEXT name, TEXT altitude, void *context);

static BOOL VisitRecords(STATE *state, FILTER *filter, BOOL detached, RECORD_VISIT visit, void *context)
{
    const BYTE *start = (const BYTE *)filter->Record;
    const BYTE *end = start + filter->Record->RecordBytes;
    const BYTE *at = start + FLTEMU_RECORD_ALIGN(sizeof *filter->Record + filter->Name.Bytes + filter->Altitude.Bytes +
                                                 filter->DefaultInstance.Bytes);
    ULONG i;

    for (i = 0; i < filter->Record->InstanceCount; ++i) {
        const BYTE *recordStart = at;
        const FLTEMU_INSTANCE_RECORD *record = (const FLTEMU_INSTANCE_RECORD *)Take(&at, end, sizeof *record);
        TEXT volume, name, altitude;
        if (record == NULL || record->RecordBytes > (size_t)(end - recordStart) || !TakeText(&at, end, record->VolumeBytes, &volume) ||
            !TakeText(&at, end, record->NameBytes, &name) || !TakeText(&at, end, record->AltitudeBytes, &altitude))
            return FALSE;
        if ((record->Detached != 0) == detached && !visit(state, filter, volume, name, altitude, context)) return FALSE;
        at = recordStart + record->RecordBytes;
    }
    return TRUE;
}

static BOOL AddInstance(STATE *state, FILTER *filter, TEXT volume, TEXT name, TEXT altitude, void *context)
{
    ULONG *capacity = (ULONG *)context;
    INSTANCE *instance;
    ULONG i;

    if (state->InstanceCount == *capacity) {
        ULONG grown = *capacity * 2 + 8;
        INSTANCE *larger = (INSTANCE *)(state->Instances == NULL
                                            ? HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, grown * sizeof(INSTANCE))
                                            : HeapReAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, state->Instances, grown * sizeof(INSTANCE)));
        if (larger == NULL) return FALSE;
        state->Instances = larger;
        *capacity = grown;
    }
    instance = &state->Instances[state->InstanceCount++];
    instance->Filter = filter;
    instance->Volume = volume;
    instance->Name = name;
    instance->Altitude = altitude;
    instance->FileSystem = FLT_FSTYPE_UNKNOWN;
    for (i = 0; i < state->VolumeCount; ++i)
        if (SameText(volume, Text(state->Volumes[i].NtName))) instance->FileSystem = state->Volumes[i].FileSystem;
    ++filter->Instances;
    return TRUE;
}

typedef struct _DETACHED_PROBE {
    TEXT Volume;
    BOOL Found;
} DETACHED_PROBE;

static BOOL NoteDetached(STATE *state, FILTER *filter, TEXT volume, TEXT name, TEXT altitude, void *context)
{
    DETACHED_PROBE *probe = (DETACHED_PROBE *)context;
    (void)state;
    (void)filter;
    (void)name;
    (void)altitude;
    if (SameText(volume, probe->Volume)) probe->Found = TRUE;
    return TRUE;
}

/* Higher altitudes first, as fltmc lists them; then by volume. */
static int CompareInstances(const void *a, const void *b)
{
    const INSTANCE *x = (const INSTANCE *)a;
    const INSTANCE *y = (const INSTANCE *)b;
    WCHAR left[40] = L"", right[40] = L"";
    int volume = CompareStringOrdinal(x->Volume.Chars, x->Volume.Bytes / 2, y->Volume.Chars, y->Volume.Bytes / 2, TRUE);
    double difference;

    if (volume != CSTR_EQUAL) return volume - CSTR_EQUAL;
    memcpy(left, x->Altitude.Chars, x->Altitude.Bytes < sizeof left - 2 ? x->Altitude.Bytes : sizeof left - 2);
    memcpy(right, y->Altitude.Chars, y->Altitude.Bytes < sizeof right - 2 ? y->Altitude.Bytes : sizeof right - 2);
    difference = wcstod(right, NULL) - wcstod(left, NULL);
    return difference > 0 ? 1 : difference < 0 ? -1 : 0;
}

/* Volumes, filters and the instances they make: every filtering filter's default instance on
 * each volume it is not detached from, and the instances attach made. */
static HRESULT ReadState(STATE *state)
{
    ULONG capacity = 0;
    HRESULT hr;
    ULONG i, j;

    ZeroMemory(state, sizeof *state);
    hr = ReadVolumes(state);
    if (SUCCEEDED(hr)) hr = ReadFilters(state);
    for (i = 0; SUCCEEDED(hr) && i < state->FilterCount; ++i) {
        FILTER *filter = &state->Filters[i];
        for (j = 0; SUCCEEDED(hr) && filter->Filtering && filter->DefaultInstance.Bytes != 0 && j < state->VolumeCount; ++j) {
            DETACHED_PROBE probe = { Text(state->Volumes[j].NtName), FALSE };
            if (!VisitRecords(state, filter, TRUE, NoteDetached, &probe)) hr = E_UNEXPECTED;
            else if (!probe.Found && !AddInstance(state, filter, probe.Volume, filter->DefaultInstance, filter->Altitude, &capacity))
                hr = E_OUTOFMEMORY;
        }
        if (SUCCEEDED(hr) && !VisitRecords(state, filter, FALSE, AddInstance, &capacity)) hr = E_OUTOFMEMORY;
    }
    if (FAILED(hr)) {
        FreeState(state);
        return hr;
    }
    if (state->InstanceCount > 1) qsort(state->Instances, state->InstanceCount, sizeof(INSTANCE), CompareInstances);
    return S_OK;
}

static const FILTER *FindFilter(const STATE *state, const WCHAR *name)
{
    ULONG i;
    for (i = 0; i < state->FilterCount; ++i)
        if (SameText(state->Filters[i].Name, Text(name))) return &state->Filters[i];
    return NULL;
}

/* ---- information classes ----------------------------------------------------------------- */

/* One entry: a fixed part, then strings, each described by a USHORT length (and, unless it is
 * the inline name right after the fixed part, a USHORT offset) in the fixed part. */
typedef struct _ENTRY {
    BYTE Fixed[64];
    ULONG FixedBytes;
    ULONG StringCount;
    struct {
        TEXT Text;
        ULONG LengthAt;
        BOOL Inline;
    } Strings[4];
} ENTRY;

static void PutULong(ENTRY *entry, ULONG at, ULONG value)
{
    memcpy(entry->Fixed + at, &value, sizeof value);
}

static void AddString(ENTRY *entry, TEXT text, ULONG lengthAt, BOOL isInline)
{
    entry->Strings[entry->StringCount].Text = text;
    entry->Strings[entry->StringCount].LengthAt = lengthAt;
    entry->Strings[entry->StringCount].Inline = isInline;
    ++entry->StringCount;
}

static HRESULT Emit(ENTRY *entry, void *buffer, DWORD bufferBytes, DWORD *returned)
{
    ULONG needed = entry->FixedBytes;
    BYTE *out = (BYTE *)buffer;
    ULONG i;

    for (i = 0; i < entry->StringCount; ++i) needed += entry->Strings[i].Text.Bytes;
    *returned = needed;
    if (buffer == NULL || bufferBytes < needed) return HR_INSUFFICIENT_BUFFER;
    needed = entry->FixedBytes;
    for (i = 0; i < entry->StringCount; ++i) {
        USHORT length = entry->Strings[i].Text.Bytes;
        USHORT offset = (USHORT)needed;
        memcpy(entry->Fixed + entry->Strings[i].LengthAt, &length, sizeof length);
        if (!entry->Strings[i].Inline) memcpy(entry->Fixed + entry->Strings[i].LengthAt + 2, &offset, sizeof offset);
        memcpy(out + needed, entry->Strings[i].Text.Chars, length);
        needed += length;
    }
    memcpy(out, entry->Fixed, entry->FixedBytes);
    return S_OK;
}

static HRESULT EmitFilter(const FILTER *filter, FILTER_INFORMATION_CLASS cls, void *buffer, DWORD bytes, DWORD *returned)
{
    ENTRY entry;
    ZeroMemory(&entry, sizeof entry);
    switch (cls) {
    case FilterFullInformation: /* NextEntryOffset, FrameID, NumberOfInstances, name */
        entry.FixedBytes = 14;
        PutULong(&entry, 8, filter->Instances);
        AddString(&entry, filter->Name, 12, TRUE);
        break;
    case FilterAggregateBasicInformation: /* ..., Flags, FrameID, NumberOfInstances, name, altitude */
        entry.FixedBytes = 24;
        PutULong(&entry, 4, FLTFL_AGGREGATE_INFO_IS_MINIFILTER);
        PutULong(&entry, 12, filter->Instances);
        AddString(&entry, filter->Name, 16, FALSE);
        AddString(&entry, filter->Altitude, 20, FALSE);
        break;
    case FilterAggregateStandardInformation: /* ..., Flags, Type.MiniFilter.{Flags, FrameID, NumberOfInstances, ...} */
        entry.FixedBytes = 28;
        PutULong(&entry, 4, FLTFL_ASI_IS_MINIFILTER);
        PutULong(&entry, 16, filter->Instances);
        AddString(&entry, filter->Name, 20, FALSE);
        AddString(&entry, filter->Altitude, 24, FALSE);
        break;
    default:
        return E_INVALIDARG;
    }
    return Emit(&entry, buffer, bytes, returned);
}

static HRESULT EmitInstance(const INSTANCE *instance, INSTANCE_INFORMATION_CLASS cls, void *buffer, DWORD bytes, DWORD *returned)
{
    ENTRY entry;
    ZeroMemory(&entry, sizeof entry);
    switch (cls) {
    case InstanceBasicInformation:
        entry.FixedBytes = 8;
        AddString(&entry, instance->Name, 4, FALSE);
        break;
    case InstancePartialInformation:
        entry.FixedBytes = 12;
        AddString(&entry, instance->Name, 4, FALSE);
        AddString(&entry, instance->Altitude, 8, FALSE);
        break;
    case InstanceFullInformation:
        entry.FixedBytes = 20;
        AddString(&entry, instance->Name, 4, FALSE);
        AddString(&entry, instance->Altitude, 8, FALSE);
        AddString(&entry, instance->Volume, 12, FALSE);
        AddString(&entry, instance->Filter->Name, 16, FALSE);
        break;
    case InstanceAggregateStandardInformation: /* Type.MiniFilter with SupportedFeatures (0) */
        entry.FixedBytes = 40;
        PutULong(&entry, 4, FLTFL_IASI_IS_MINIFILTER);
        PutULong(&entry, 16, (ULONG)instance->FileSystem);
        AddString(&entry, instance->Name, 20, FALSE);
        AddString(&entry, instance->Altitude, 24, FALSE);
        AddString(&entry, instance->Volume, 28, FALSE);
        AddString(&entry, instance->Filter->Name, 32, FALSE);
        break;
    default:
        return E_INVALIDARG;
    }
    return Emit(&entry, buffer, bytes, returned);
}

static HRESULT EmitVolume(const VOLUME *volume, FILTER_VOLUME_INFORMATION_CLASS cls, void *buffer, DWORD bytes, DWORD *returned)
{
    ENTRY entry;
    ZeroMemory(&entry, sizeof entry);
    switch (cls) {
    case FilterVolumeBasicInformation:
        entry.FixedBytes = 2;
        AddString(&entry, Text(volume->NtName), 0, TRUE);
        break;
    case FilterVolumeStandardInformation: /* NextEntryOffset, Flags, FrameID, FileSystemType, name */
        entry.FixedBytes = 18;
        PutULong(&entry, 12, (ULONG)volume->FileSystem);
        AddString(&entry, Text(volume->NtName), 16, TRUE);
        break;
    default:
        return E_INVALIDARG;
    }
    return Emit(&entry, buffer, bytes, returned);
}

/* ---- enumerations and filter handles ------------------------------------------------------ */

typedef enum _WALK_KIND { WalkFilters = 1, WalkVolumes, WalkInstances, FilterHandle } WALK_KIND;

/* An enumeration (a snapshot and where it is), or FilterCreate's handle (a snapshot-free name). */
typedef struct _WALK {
    struct _WALK *Next;
    WALK_KIND Kind;
    STATE State;
    ULONG *Items; /* indexes into State's filters, volumes or instances */
    ULONG Count;
    ULONG Position;
    WCHAR FilterName[256];
} WALK;

static SRWLOCK g_walksLock = SRWLOCK_INIT;
static WALK *g_walks;

static void FreeWalk(WALK *walk)
{
    FreeState(&walk->State);
    HeapFree(GetProcessHeap(), 0, walk->Items);
    HeapFree(GetProcessHeap(), 0, walk);
}

static WALK *NewWalk(WALK_KIND kind)
{
    WALK *walk = (WALK *)HeapAlloc(GetProcessHeap(), HEAP_ZERO_MEMORY, sizeof *walk);
    if (walk != NULL) walk->Kind = kind;
    return walk;
}

static void Publish(WALK *walk, HANDLE *handle)
{
    AcquireSRWLockExclusive(&g_walksLock);
    walk->Next = g_walks;
    g_walks = walk;
    ReleaseSRWLockExclusive(&g_walksLock);
    *handle = (HANDLE)walk;
}

/* The walk `handle` stands for, of `kind`, with the lock held on success: two threads using one
 * handle take turns. */
static WALK *Lookup(HANDLE handle, WALK_KIND kind)
{
    WALK *walk;
    AcquireSRWLockExclusive(&g_walksLock);
    for (walk = g_walks; walk != NULL; walk = walk->Next)
        if ((HANDLE)walk == handle && walk->Kind == kind) return walk;
    ReleaseSRWLockExclusive(&g_walksLock);
    return NULL;
}

static HRESULT CloseWalk(HANDLE handle, WALK_KIND kind)
{
    WALK **link;
    WALK *found = NULL;

    AcquireSRWLockExclusive(&g_walksLock);
    for (link = &g_walks; *link != NULL; link = &(*link)->Next) {
        if ((HANDLE)*link == handle && (*link)->Kind == kind) {
            found = *link;
            *link = found->Next;
            break;
        }
    }
    ReleaseSRWLockExclusive(&g_walksLock);
    if (found == NULL) return E_HANDLE;
    FreeWalk(found);
    return S_OK;
}

typedef HRESULT (*EMIT_ITEM)(const STATE *state, ULONG item, int cls, void *buffer, DWORD bytes, DWORD *returned);

static HRESULT EmitFilterItem(const STATE *state, ULONG item, int cls, void *buffer, DWORD bytes, DWORD *returned)
{
    return EmitFilter(&state->Filters[item], (FILTER_INFORMATION_CLASS)cls, buffer, bytes, returned);
}

static HRESULT EmitVolumeItem(const STATE *state, ULONG item, int cls, void *buffer, DWORD bytes, DWORD *returned)
{
    return EmitVolume(&state->Volumes[item], (FILTER_VOLUME_INFORMATION_CLASS)cls, buffer, bytes, returned);
}

static HRESULT EmitInstanceItem(const STATE *state, ULONG item, int cls, void *buffer, DWORD bytes, DWORD *returned)
{
    return EmitInstance(&state->Instances[item], (INSTANCE_INFORMATION_CLASS)cls, buffer, bytes, returned);
}

static EMIT_ITEM EmitterOf(WALK_KIND kind)
{
    return kind == WalkFilters ? EmitFilterItem : kind == WalkVolumes ? EmitVolumeItem : EmitInstanceItem;
}

/* Emits the walk's next item; moves on only when it fitted. */
static HRESULT Step(WALK *walk, int cls, void *buffer, DWORD bytes, DWORD *returned)
{
    HRESULT hr;
    if (walk->Position >= walk->Count) return HR_NO_MORE_ITEMS;
    hr = EmitterOf(walk->Kind)(&walk->State, walk->Items[walk->Position], cls, buffer, bytes, returned);
    if (SUCCEEDED(hr)) ++walk->Position;
    return hr;
}

/* FindFirst of every kind: the walk (already holding its state and items) emits its first item;
 * only then does the caller get a handle. */
static HRESULT Begin(WALK *walk, int cls, void *buffer, DWORD bytes, DWORD *returned, HANDLE *handle)
{
    HRESULT hr = Step(walk, cls, buffer, bytes, returned);
    if (FAILED(hr)) {
        FreeWalk(walk);
        return hr;
    }
    Publish(walk, handle);
    return S_OK;
}

static HRESULT Continue(HANDLE handle, WALK_KIND kind, int cls, void *buffer, DWORD bytes, DWORD *returned)
{
    WALK *walk;
    HRESULT hr;

    if (returned == NULL) return E_INVALIDARG;
    *returned = 0;
    walk = Lookup(handle, kind);
    if (walk == NULL) return E_HANDLE;
    hr = Step(walk, cls, buffer, bytes, returned);
    ReleaseSRWLockExclusive(&g_walksLock);
    return hr;
}

/* A walk over the state's items that `keep` accepts (NULL: all). */
typedef BOOL (*KEEP_ITEM)(const STATE *state, ULONG item, const void *context);

static HRESULT NewWalkOver(WALK_KIND kind, KEEP_ITEM keep, const void *context, WALK **created, HRESULT (*check)(const STATE *, const void *))
{
    WALK *walk = NewWalk(kind);
    ULONG total, i;
    HRESULT hr;

    *created = NULL;
    if (walk == NULL) return E_OUTOFMEMORY;
    hr = ReadState(&walk->State);
    if (SUCCEEDED(hr) && check != NULL) hr = check(&walk->State, context);
    if (FAILED(hr)) {
        FreeWalk(walk);
        return hr;
    }
    total = kind == WalkFilters ? walk->State.FilterCount : kind == WalkVolumes ? walk->State.VolumeCount : walk->State.InstanceCount;
    walk->Items = (ULONG *)HeapAlloc(GetProcessHeap(), 0, (total + 1) * sizeof(ULONG));
    if (walk->Items == NULL) {
        FreeWalk(walk);
        return E_OUTOFMEMORY;
    }
    for (i = 0; i < total; ++i)
        if (keep == NULL || keep(&walk->State, i, context)) walk->Items[walk->Count++] = i;
    *created = walk;
    return S_OK;
}

static BOOL InstanceOfFilter(const STATE *state, ULONG item, const void *name)
{
    return SameText(state->Instances[item].Filter->Name, Text((const WCHAR *)name));
}

static BOOL InstanceOnVolume(const STATE *state, ULONG item, const void *volume)
{
    return SameText(state->Instances[item].Volume, Text(((const VOLUME *)volume)->NtName));
}

static HRESULT FilterExists(const STATE *state, const void *name)
{
    return FindFilter(state, (const WCHAR *)name) != NULL ? S_OK : HR_FLT_FILTER_NOT_FOUND;
}

/* Starts any FindFirst: checks the out-parameters, builds the walk, emits its first item. */
static HRESULT FindFirst(WALK_KIND kind, KEEP_ITEM keep, const void *context, HRESULT (*check)(const STATE *, const void *),
                         int cls, void *buffer, DWORD bytes, DWORD *returned, HANDLE *handle)
{
    WALK *walk;
    HRESULT hr;

    if (returned == NULL || handle == NULL) return E_INVALIDARG;
    *returned = 0;
    *handle = INVALID_HANDLE_VALUE;
    hr = NewWalkOver(kind, keep, context, &walk, check);
    return FAILED(hr) ? hr : Begin(walk, cls, buffer, bytes, returned, handle);
}

HRESULT WINAPI FilterFindFirst(FILTER_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned, LPHANDLE handle)
{
    return FindFirst(WalkFilters, NULL, NULL, NULL, (int)cls, buffer, bytes, returned, handle);
}

HRESULT WINAPI FilterFindNext(HANDLE handle, FILTER_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned)
{
    return Continue(handle, WalkFilters, (int)cls, buffer, bytes, returned);
}

HRESULT WINAPI FilterFindClose(HANDLE handle)
{
    return CloseWalk(handle, WalkFilters);
}

HRESULT WINAPI FilterVolumeFindFirst(FILTER_VOLUME_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned, PHANDLE handle)
{
    return FindFirst(WalkVolumes, NULL, NULL, NULL, (int)cls, buffer, bytes, returned, handle);
}

HRESULT WINAPI FilterVolumeFindNext(HANDLE handle, FILTER_VOLUME_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned)
{
    return Continue(handle, WalkVolumes, (int)cls, buffer, bytes, returned);
}

HRESULT WINAPI FilterVolumeFindClose(HANDLE handle)
{
    return CloseWalk(handle, WalkVolumes);
}

HRESULT WINAPI FilterInstanceFindFirst(LPCWSTR filterName, INSTANCE_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes,
                                       LPDWORD returned, LPHANDLE handle)
{
    if (filterName == NULL) return E_INVALIDARG;
    return FindFirst(WalkInstances, InstanceOfFilter, filterName, FilterExists, (int)cls, buffer, bytes, returned, handle);
}

HRESULT WINAPI FilterInstanceFindNext(HANDLE handle, INSTANCE_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned)
{
    return Continue(handle, WalkInstances, (int)cls, buffer, bytes, returned);
}

HRESULT WINAPI FilterInstanceFindClose(HANDLE handle)
{
    return CloseWalk(handle, WalkInstances);
}

HRESULT WINAPI FilterVolumeInstanceFindFirst(LPCWSTR volumeName, INSTANCE_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes,
                                             LPDWORD returned, LPHANDLE handle)
{
    STATE volumes;
    const VOLUME *volume;
    VOLUME found;
    HRESULT hr;

    if (volumeName == NULL || returned == NULL || handle == NULL) return E_INVALIDARG;
    ZeroMemory(&volumes, sizeof volumes);
    hr = ReadVolumes(&volumes);
    volume = SUCCEEDED(hr) ? FindVolume(&volumes, volumeName) : NULL;
    if (volume != NULL) found = *volume;
    FreeState(&volumes);
    if (FAILED(hr)) return hr;
    if (volume == NULL) return HR_FLT_VOLUME_NOT_FOUND;
    return FindFirst(WalkInstances, InstanceOnVolume, &found, NULL, (int)cls, buffer, bytes, returned, handle);
}

HRESULT WINAPI FilterVolumeInstanceFindNext(HANDLE handle, INSTANCE_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned)
{
    return Continue(handle, WalkInstances, (int)cls, buffer, bytes, returned);
}

HRESULT WINAPI FilterVolumeInstanceFindClose(HANDLE handle)
{
    return CloseWalk(handle, WalkInstances);
}

HRESULT WINAPI FilterCreate(LPCWSTR filterName, HFILTER *filter)
{
    STATE state;
    WALK *walk;
    HRESULT hr;

    if (filter == NULL) return E_INVALIDARG;
    *filter = NULL;
    if (filterName == NULL || wcslen(filterName) >= ARRAYSIZE(walk->FilterName)) return E_INVALIDARG;
    hr = ReadState(&state);
    if (FAILED(hr)) return hr;
    hr = FilterExists(&state, filterName);
    FreeState(&state);
    if (FAILED(hr)) return hr;
    walk = NewWalk(FilterHandle);
    if (walk == NULL) return E_OUTOFMEMORY;
    wcscpy(walk->FilterName, filterName);
    Publish(walk, filter);
    return S_OK;
}

HRESULT WINAPI FilterClose(HFILTER filter)
{
    return CloseWalk(filter, FilterHandle);
}

HRESULT WINAPI FilterGetInformation(HFILTER handle, FILTER_INFORMATION_CLASS cls, LPVOID buffer, DWORD bytes, LPDWORD returned)
{
    WCHAR name[256];
    STATE state;
    const FILTER *filter;
    WALK *walk;
    HRESULT hr;

    if (returned == NULL) return E_INVALIDARG;
    *returned = 0;
    walk = Lookup(handle, FilterHandle);
    if (walk == NULL) return E_HANDLE;
    wcscpy(name, walk->FilterName);
    ReleaseSRWLockExclusive(&g_walksLock);
    hr = ReadState(&state);
    if (FAILED(hr)) return hr;
    filter = FindFilter(&state, name);
    /* The filter went (unloaded) since FilterCreate. */
    hr = filter == NULL ? HR_FLT_FILTER_NOT_FOUND : EmitFilter(filter, cls, buffer, bytes, returned);
    FreeState(&state);
    return hr;
}

/* ---- load, unload ------------------------------------------------------------------------- */

/* Windows checks SeLoadDriverPrivilege in the caller's effective token (the thread's when it
 * impersonates): present and enabled. */
static BOOL HoldsLoadDriverPrivilege(void)
{
    PRIVILEGE_SET privileges = { 1, PRIVILEGE_SET_ALL_NECESSARY, { { { 0, 0 }, 0 } } };
    BOOL held = FALSE;
    HANDLE token;

    if (!LookupPrivilegeValueW(NULL, SE_LOAD_DRIVER_NAME, &privileges.Privilege[0].Luid)) return FALSE;
    if (!OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, TRUE, &token) &&
        !OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
        return FALSE;
    if (!PrivilegeCheck(token, &privileges, &held)) held = FALSE;
    CloseHandle(token);
    return held;
}

/* Waits until the service reaches `state`; ERROR_SUCCESS, or the error that stopped it. */
static DWORD WaitForService(SC_HANDLE service, DWORD state)
{
    DWORD waited;
    for (waited = 0; waited <= SERVICE_WAIT_MS; waited += 50) {
        SERVICE_STATUS status;
        if (!QueryServiceStatus(service, &status)) return GetLastError();
        if (status.dwCurrentState == state) return ERROR_SUCCESS;
        if (status.dwCurrentState == SERVICE_STOPPED && state == SERVICE_RUNNING)
            return status.dwWin32ExitCode != ERROR_SUCCESS ? status.dwWin32ExitCode : ERROR_SERVICE_NOT_ACTIVE;
        Sleep(50);
    }
    return ERROR_SERVICE_REQUEST_TIMEOUT;
}

/* Starts or stops the filter's service. A service that does not exist is ERROR_FILE_NOT_FOUND,
 * as NtLoadDriver reports a missing service key (unverified on Windows). */
static HRESULT ControlFilterService(const WCHAR *filterName, BOOL start)
{
    SC_HANDLE manager;
    SC_HANDLE service;
    DWORD error = ERROR_SUCCESS;

    if (filterName == NULL) return E_INVALIDARG;
    if (!HoldsLoadDriverPrivilege()) return HR_PRIVILEGE_NOT_HELD;
    manager = OpenSCManagerW(NULL, NULL, SC_MANAGER_CONNECT);
    if (manager == NULL) return HRESULT_FROM_WIN32(GetLastError());
    service = OpenServiceW(manager, filterName, SERVICE_START | SERVICE_STOP | SERVICE_QUERY_STATUS);
    if (service == NULL) {
        error = GetLastError();
        CloseServiceHandle(manager);
        return error == ERROR_SERVICE_DOES_NOT_EXIST ? HR_FILE_NOT_FOUND : HRESULT_FROM_WIN32(error);
    }
    if (start) {
        if (!StartServiceW(service, 0, NULL)) error = GetLastError();
        if (error == ERROR_SUCCESS) error = WaitForService(service, SERVICE_RUNNING);
    } else {
        SERVICE_STATUS status;
        if (!ControlService(service, SERVICE_CONTROL_STOP, &status)) error = GetLastError();
        if (error == ERROR_SUCCESS) error = WaitForService(service, SERVICE_STOPPED);
    }
    CloseServiceHandle(service);
    CloseServiceHandle(manager);
    return error == ERROR_SUCCESS ? S_OK : HRESULT_FROM_WIN32(error);
}

HRESULT WINAPI FilterLoad(LPCWSTR filterName)
{
    return ControlFilterService(filterName, TRUE);
}

/* Only a loaded filter can be unloaded: ERROR_FLT_FILTER_NOT_FOUND otherwise. */
HRESULT WINAPI FilterUnload(LPCWSTR filterName)
{
    STATE state;
    HRESULT hr;

    if (filterName == NULL) return E_INVALIDARG;
    if (!HoldsLoadDriverPrivilege()) return HR_PRIVILEGE_NOT_HELD;
    hr = ReadState(&state);
    if (FAILED(hr)) return hr;
    hr = FilterExists(&state, filterName);
    FreeState(&state);
    return FAILED(hr) ? hr : ControlFilterService(filterName, FALSE);
}

/* ---- attach, detach, DOS names ------------------------------------------------------------ */

/* Sends ATTACH or DETACH for the volume `volumeName` designates (NT name or drive letter). */
static HRESULT InstanceRequest(ULONG code, LPCWSTR filterName, LPCWSTR volumeName, LPCWSTR instanceName, LPCWSTR altitude,
                               WCHAR *created, ULONG createdBytes, ULONG_PTR *createdLength)
{
    const WCHAR *strings[4];
    USHORT lengths[4];
    FLTEMU_INSTANCE_REQUEST *request;
    STATE volumes;
    const VOLUME *volume;
    WCHAR ntName[VOLUME_CHARS + 1];
    ULONG bytes = sizeof *request;
    BYTE *at;
    NTSTATUS status;
    HRESULT hr;
    int i;

    if (filterName == NULL || volumeName == NULL) return E_INVALIDARG;
    ZeroMemory(&volumes, sizeof volumes);
    hr = ReadVolumes(&volumes);
    volume = SUCCEEDED(hr) ? FindVolume(&volumes, volumeName) : NULL;
    if (volume != NULL) wcscpy(ntName, volume->NtName);
    FreeState(&volumes);
    if (FAILED(hr)) return hr;
    if (volume == NULL) return HR_FLT_VOLUME_NOT_FOUND;

    strings[0] = filterName;
    strings[1] = ntName;
    strings[2] = instanceName != NULL ? instanceName : L"";
    strings[3] = altitude != NULL ? altitude : L"";
    for (i = 0; i < 4; ++i) {
        size_t length = wcslen(strings[i]) * sizeof(WCHAR);
        if (length > 0xFFFE) return E_INVALIDARG;
        lengths[i] = (USHORT)length;
        bytes += lengths[i];
    }
    request = (FLTEMU_INSTANCE_REQUEST *)HeapAlloc(GetProcessHeap(), 0, bytes);
    if (request == NULL) return E_OUTOFMEMORY;
    request->FilterBytes = lengths[0];
    request->VolumeBytes = lengths[1];
    request->InstanceBytes = lengths[2];
    request->AltitudeBytes = lengths[3];
    at = (BYTE *)(request + 1);
    for (i = 0; i < 4; ++i) {
        memcpy(at, strings[i], lengths[i]);
        at += lengths[i];
    }
    status = ControlIoctl(code, request, bytes, created, createdBytes, createdLength);
    HeapFree(GetProcessHeap(), 0, request);
    return status < 0 ? HResultFromNtStatus(status) : S_OK;
}

/* The created instance's name goes to the caller's buffer (dwCreatedInstanceNameLength bytes),
 * NUL-terminated when there is room for it; a buffer too small for the name gets nothing and
 * ERROR_INSUFFICIENT_BUFFER, the instance being attached all the same (unverified on Windows). */
static HRESULT AttachInstance(LPCWSTR filterName, LPCWSTR volumeName, LPCWSTR altitude, LPCWSTR instanceName,
                              DWORD createdBytes, LPWSTR created)
{
    WCHAR name[256];
    ULONG_PTR length = 0;
    HRESULT hr = InstanceRequest(IOCTL_FLTEMU_ATTACH, filterName, volumeName, instanceName, altitude, name, sizeof name - 2, &length);

    if (FAILED(hr)) return hr;
    if (created != NULL && createdBytes != 0) {
        if (length > createdBytes) return HR_INSUFFICIENT_BUFFER;
        memcpy(created, name, length);
        if (length + sizeof(WCHAR) <= createdBytes) created[length / sizeof(WCHAR)] = L'\0';
    }
    return S_OK;
}

HRESULT WINAPI FilterAttach(LPCWSTR filterName, LPCWSTR volumeName, LPCWSTR instanceName, DWORD createdBytes, LPWSTR created)
{
    return AttachInstance(filterName, volumeName, NULL, instanceName, createdBytes, created);
}

HRESULT WINAPI FilterAttachAtAltitude(LPCWSTR filterName, LPCWSTR volumeName, LPCWSTR altitude, LPCWSTR instanceName,
                                      DWORD createdBytes, LPWSTR created)
{
    if (altitude == NULL || altitude[0] == L'\0') return E_INVALIDARG;
    return AttachInstance(filterName, volumeName, altitude, instanceName, createdBytes, created);
}

HRESULT WINAPI FilterDetach(LPCWSTR filterName, LPCWSTR volumeName, LPCWSTR instanceName)
{
    ULONG_PTR ignored;
    return InstanceRequest(IOCTL_FLTEMU_DETACH, filterName, volumeName, instanceName, NULL, NULL, 0, &ignored);
}

/* "C:" for a volume with a drive letter (every volume here has one); dwDosNameBufferSize counts
 * characters and must hold the name and its NUL (ERROR_INSUFFICIENT_BUFFER otherwise). An unknown
 * volume is ERROR_FILE_NOT_FOUND (both unverified on Windows). */
HRESULT WINAPI FilterGetDosName(LPCWSTR volumeName, LPWSTR dosName, DWORD dosNameChars)
{
    STATE volumes;
    const VOLUME *volume;
    HRESULT hr;

    if (volumeName == NULL || dosName == NULL) return E_INVALIDARG;
    ZeroMemory(&volumes, sizeof volumes);
    hr = ReadVolumes(&volumes);
    volume = SUCCEEDED(hr) ? FindVolume(&volumes, volumeName) : NULL;
    if (SUCCEEDED(hr) && volume == NULL) hr = HR_FILE_NOT_FOUND;
    if (SUCCEEDED(hr) && dosNameChars < wcslen(volume->DosName) + 1) hr = HR_INSUFFICIENT_BUFFER;
    if (SUCCEEDED(hr)) wcscpy(dosName, volume->DosName);
    FreeState(&volumes);
    return hr;
}
