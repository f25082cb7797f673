/* Makes ntdll.dll's export directory lead to the stand-in, in this process only.
 *
 * GetProcAddress(ntdll, name) (LdrGetProcedureAddress) binary-searches the export directory's
 * name table and returns base + AddressOfFunctions[ordinal]. Those are 32-bit RVAs from ntdll's
 * base, so everything the directory points at must lie within 4 GiB above it: one block is
 * allocated there, holding a jump (trampoline) per stand-in function and new copies of the three
 * tables with the stand-in's names added (Wine lacks NtReplyPort, NtRequestPort and
 * NtReplyWaitReceivePortEx) and existing ones pointing at trampolines. Then the directory's table
 * RVAs and counts are switched to the copies. Code that calls ntdll internally (kernel32's
 * CloseHandle, ...) is untouched; only lookups by name see the stand-in. */
#define LPCEMU_BUILD
#include "lpcemu.h"

#include <stdlib.h>
#include <string.h>

void lpcemu_set_real_close(NTSTATUS(NTAPI *close)(HANDLE));

static const struct {
    const char *name;
    const void *target;
} redirects[] = {
    {"NtAcceptConnectPort", (const void *)LpcEmuAcceptConnectPort},
    {"NtClose", (const void *)LpcEmuClose},
    {"NtCompleteConnectPort", (const void *)LpcEmuCompleteConnectPort},
    {"NtConnectPort", (const void *)LpcEmuConnectPort},
    {"NtCreatePort", (const void *)LpcEmuCreatePort},
    {"NtListenPort", (const void *)LpcEmuListenPort},
    {"NtReplyPort", (const void *)LpcEmuReplyPort},
    {"NtReplyWaitReceivePort", (const void *)LpcEmuReplyWaitReceivePort},
    {"NtReplyWaitReceivePortEx", (const void *)LpcEmuReplyWaitReceivePortEx},
    {"NtRequestPort", (const void *)LpcEmuRequestPort},
    {"NtRequestWaitReplyPort", (const void *)LpcEmuRequestWaitReplyPort},
    {"NtSecureConnectPort", (const void *)LpcEmuSecureConnectPort},
};
#define REDIRECTS (sizeof redirects / sizeof redirects[0])
#define TRAMPOLINE_BYTES 16

static INIT_ONCE installed = INIT_ONCE_STATIC_INIT;
static DWORD install_error;

typedef struct named_export {
    DWORD name_rva;
    WORD ordinal;
} named_export;

static BYTE *image_base;

static int by_name(const void *a, const void *b)
{
    return strcmp((const char *)image_base + ((const named_export *)a)->name_rva,
                  (const char *)image_base + ((const named_export *)b)->name_rva);
}

/* Reserves and commits `bytes` within 4 GiB above `base`, past the image. */
static BYTE *allocate_near(BYTE *base, SIZE_T image_size, SIZE_T bytes)
{
    ULONG_PTR at = ((ULONG_PTR)base + image_size + 0xFFFF) & ~(ULONG_PTR)0xFFFF;
    for (; at + bytes < (ULONG_PTR)base + 0xFFFF0000u; at += 0x10000) {
        BYTE *block = (BYTE *)VirtualAlloc((PVOID)at, bytes, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
        if (block) return block;
    }
    return NULL;
}

static DWORD install(void)
{
    HMODULE ntdll = GetModuleHandleW(L"ntdll.dll");
    IMAGE_DOS_HEADER *dos;
    IMAGE_NT_HEADERS *headers;
    IMAGE_DATA_DIRECTORY *entry;
    IMAGE_EXPORT_DIRECTORY *exports, updated;
    DWORD *functions, *names, *new_functions, *new_names, old_protect, names_count, functions_count, added = 0, i, j;
    WORD *ordinals, *new_ordinals;
    named_export *sorted;
    BYTE *block, *trampolines, *strings;
    SIZE_T bytes, strings_bytes = 0;
    FARPROC original_close;

    if (!ntdll) return ERROR_MOD_NOT_FOUND;
    original_close = GetProcAddress(ntdll, "NtClose");
    if (!original_close) return ERROR_PROC_NOT_FOUND;
    image_base = (BYTE *)ntdll;
    dos = (IMAGE_DOS_HEADER *)ntdll;
    headers = (IMAGE_NT_HEADERS *)(image_base + dos->e_lfanew);
    entry = &headers->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
    if (!entry->VirtualAddress) return ERROR_INVALID_DATA;
    exports = (IMAGE_EXPORT_DIRECTORY *)(image_base + entry->VirtualAddress);
    functions = (DWORD *)(image_base + exports->AddressOfFunctions);
    names = (DWORD *)(image_base + exports->AddressOfNames);
    ordinals = (WORD *)(image_base + exports->AddressOfNameOrdinals);
    names_count = exports->NumberOfNames;
    functions_count = exports->NumberOfFunctions;

    for (i = 0; i < REDIRECTS; ++i) {
        if (!GetProcAddress(ntdll, redirects[i].name)) strings_bytes += strlen(redirects[i].name) + 1;
    }
    bytes = REDIRECTS * TRAMPOLINE_BYTES + (functions_count + REDIRECTS) * sizeof(DWORD) +
            (names_count + REDIRECTS) * sizeof(DWORD) + (names_count + REDIRECTS) * sizeof(WORD) + strings_bytes;
    block = allocate_near(image_base, headers->OptionalHeader.SizeOfImage, bytes);
    sorted = (named_export *)malloc((names_count + REDIRECTS) * sizeof *sorted);
    if (!block || !sorted) {
        free(sorted);
        return ERROR_NOT_ENOUGH_MEMORY;
    }
    trampolines = block;
    new_functions = (DWORD *)(block + REDIRECTS * TRAMPOLINE_BYTES);
    new_names = new_functions + functions_count + REDIRECTS;
    new_ordinals = (WORD *)(new_names + names_count + REDIRECTS);
    strings = (BYTE *)(new_ordinals + names_count + REDIRECTS);

    memcpy(new_functions, functions, functions_count * sizeof(DWORD));
    for (i = 0; i < names_count; ++i) {
        sorted[i].name_rva = names[i];
        sorted[i].ordinal = ordinals[i];
    }
    for (i = 0; i < REDIRECTS; ++i) {
        /* jmp qword ptr [rip+0]; then the 8-byte target */
        BYTE *jump = trampolines + i * TRAMPOLINE_BYTES;
        ULONG_PTR target = (ULONG_PTR)redirects[i].target;
        DWORD rva = (DWORD)(jump - image_base);
        jump[0] = 0xFF;
        jump[1] = 0x25;
        memset(jump + 2, 0, 4);
        memcpy(jump + 6, &target, sizeof target);
        for (j = 0; j < names_count && strcmp((const char *)image_base + names[j], redirects[i].name) != 0; ++j) {}
        if (j < names_count) {
            new_functions[ordinals[j]] = rva;
        } else {
            size_t length = strlen(redirects[i].name) + 1;
            memcpy(strings, redirects[i].name, length);
            new_functions[functions_count + added] = rva;
            sorted[names_count + added].name_rva = (DWORD)(strings - image_base);
            sorted[names_count + added].ordinal = (WORD)(functions_count + added);
            strings += length;
            ++added;
        }
    }
    qsort(sorted, names_count + added, sizeof *sorted, by_name);
    for (i = 0; i < names_count + added; ++i) {
        new_names[i] = sorted[i].name_rva;
        new_ordinals[i] = sorted[i].ordinal;
    }
    free(sorted);
    if (!VirtualProtect(block, bytes, PAGE_EXECUTE_READ, &old_protect)) return GetLastError();
    FlushInstructionCache(GetCurrentProcess(), block, bytes);

    lpcemu_set_real_close((NTSTATUS(NTAPI *)(HANDLE))(void *)original_close);
    updated = *exports;
    updated.NumberOfFunctions = functions_count + added;
    updated.NumberOfNames = names_count + added;
    updated.AddressOfFunctions = (DWORD)((BYTE *)new_functions - image_base);
    updated.AddressOfNames = (DWORD)((BYTE *)new_names - image_base);
    updated.AddressOfNameOrdinals = (DWORD)((BYTE *)new_ordinals - image_base);
    if (!VirtualProtect(exports, sizeof *exports, PAGE_READWRITE, &old_protect)) return GetLastError();
    *exports = updated;
    VirtualProtect(exports, sizeof *exports, old_protect, &old_protect);
    for (i = 0; i < REDIRECTS; ++i) {
        if ((BYTE *)(void *)GetProcAddress(ntdll, redirects[i].name) != trampolines + i * TRAMPOLINE_BYTES) return ERROR_INVALID_FUNCTION;
    }
    return 0;
}

static BOOL WINAPI install_once(PINIT_ONCE once, PVOID param, PVOID *context)
{
    (void)once, (void)param, (void)context;
    install_error = install();
    return TRUE;
}

LPCEMU_API DWORD LpcEmuInstall(void)
{
    InitOnceExecuteOnce(&installed, install_once, NULL, NULL);
    return install_error;
}

/* Node-API, resolved from the host executable (node.exe exports it) at run time so that the DLL
 * imports nothing from node.exe and still loads in programs that are not node. */
typedef struct napi_env__ *napi_env;
typedef struct napi_value__ *napi_value;
typedef struct napi_callback_info__ *napi_callback_info;
typedef napi_value (*napi_callback)(napi_env, napi_callback_info);
typedef int (*napi_create_function_fn)(napi_env, const char *, size_t, napi_callback, void *, napi_value *);
typedef int (*napi_create_object_fn)(napi_env, napi_value *);
typedef int (*napi_create_int64_fn)(napi_env, long long, napi_value *);
typedef int (*napi_set_named_property_fn)(napi_env, napi_value, const char *, napi_value);

static struct {
    napi_create_function_fn create_function;
    napi_create_object_fn create_object;
    napi_create_int64_fn create_int64;
    napi_set_named_property_fn set_named_property;
} napi;

static void set_count(napi_env env, napi_value object, const char *name, long long value)
{
    napi_value number;
    if (napi.create_int64(env, value, &number) == 0) napi.set_named_property(env, object, name, number);
}

/* counts(): { ports, views, handles }: stand-in ports open and views mapped in this process, and
 * the process's handle count, for the leak checks of fltport's LPC suite. */
static napi_value counts(napi_env env, napi_callback_info info)
{
    napi_value result;
    LONG ports, views;
    DWORD handles = 0;
    (void)info;
    if (napi.create_object(env, &result) != 0) return NULL;
    LpcEmuCounts(&ports, &views);
    GetProcessHandleCount(GetCurrentProcess(), &handles);
    set_count(env, result, "ports", ports);
    set_count(env, result, "views", views);
    set_count(env, result, "handles", handles);
    return result;
}

static void fail(const char *what, DWORD error)
{
    char text[128];
    DWORD written;
    wsprintfA(text, "lpcemu.dll: could not install the LPC stand-in: %s (error %lu)\r\n", what, error);
    WriteFile(GetStdHandle(STD_ERROR_HANDLE), text, (DWORD)strlen(text), &written, NULL);
    ExitProcess(70);
}

/* Node-API module entry: `process.dlopen(module, 'lpcemu.dll')` from the test-only preload script
 * installs the stand-in before anything else in the process looks up ntdll's LPC calls, and
 * exports counts(). A failed install ends the process: a test run must not silently fall back to
 * Wine's unimplemented calls. */
LPCEMU_API napi_value napi_register_module_v1(napi_env env, napi_value exports)
{
    HMODULE host = GetModuleHandleW(NULL);
    napi_value function;
    DWORD error = LpcEmuInstall();
    if (error != 0) fail("LpcEmuInstall", error);
    napi.create_function = (napi_create_function_fn)(void *)GetProcAddress(host, "napi_create_function");
    napi.create_object = (napi_create_object_fn)(void *)GetProcAddress(host, "napi_create_object");
    napi.create_int64 = (napi_create_int64_fn)(void *)GetProcAddress(host, "napi_create_int64");
    napi.set_named_property = (napi_set_named_property_fn)(void *)GetProcAddress(host, "napi_set_named_property");
    if (!napi.create_function || !napi.create_object || !napi.create_int64 || !napi.set_named_property)
        fail("the host exports no Node-API", ERROR_PROC_NOT_FOUND);
    if (napi.create_function(env, "counts", (size_t)-1, counts, NULL, &function) != 0 ||
        napi.set_named_property(env, exports, "counts", function) != 0)
        fail("napi_create_function", ERROR_INVALID_FUNCTION);
    return exports;
}

LPCEMU_API int node_api_module_get_api_version_v1(void) { return 8; }
