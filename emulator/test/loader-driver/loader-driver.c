/*
 * loader-driver.sys: the smallest WDM driver that lets test/drivers check emulator/drivers.js
 * (load, unload, reload, several instances, a driver that brings winedevice.exe down). It needs
 * no filter manager.
 *
 * Parameters (the service's Parameters key, written by loadDriver):
 *   DeviceName  REG_SZ     NT name of the device it creates, e.g. \Device\LoaderTest-1
 *   Instance    REG_DWORD  returned by IOCTL_LOADER_PING
 *
 * IOCTL_LOADER_PING   output = ULONG Instance: proves which instance answers and that the
 *                     parameters reached DriverEntry
 * IOCTL_LOADER_CRASH  calls an ntoskrnl export that Wine 8 leaves unimplemented, looked up at run
 *                     time (so no import check rejects the build): Wine aborts the whole
 *                     winedevice.exe, as it does for a driver that imports one
 */
#include <ntddk.h>

#define IOCTL_LOADER_PING CTL_CODE(FILE_DEVICE_UNKNOWN, 0x801, METHOD_BUFFERED, FILE_ANY_ACCESS)
#define IOCTL_LOADER_CRASH CTL_CODE(FILE_DEVICE_UNKNOWN, 0x802, METHOD_BUFFERED, FILE_ANY_ACCESS)

/* A stub in Wine 8.0's ntoskrnl.exe (listed in shared/reference/wine-kernel.md). */
typedef ULONG(NTAPI *RequestorProcessIdRoutine)(PIRP irp);

/* "Ldr " read as a little-endian ULONG, as a WDK multi-character tag would be */
#define LOADER_POOL_TAG 0x2072644Cu

static ULONG g_instance;
static PDEVICE_OBJECT g_device;

/* Reads the value `name` of the open key into `info` (caller's buffer of `bytes`). */
static NTSTATUS QueryValue(HANDLE key, PCWSTR name, PKEY_VALUE_PARTIAL_INFORMATION info, ULONG bytes) {
    UNICODE_STRING valueName;
    ULONG needed = 0;
    RtlInitUnicodeString(&valueName, name);
    return ZwQueryValueKey(key, &valueName, KeyValuePartialInformation, info, bytes, &needed);
}

/* Creates the device named by Parameters\DeviceName and takes Parameters\Instance. */
static NTSTATUS CreateDeviceFromParameters(PDRIVER_OBJECT driver, PUNICODE_STRING registryPath) {
    static const WCHAR suffix[] = L"\\Parameters";
    UNICODE_STRING keyPath;
    keyPath.MaximumLength = (USHORT)(registryPath->Length + sizeof(suffix));
    keyPath.Length = 0;
    keyPath.Buffer = (PWCH)ExAllocatePoolWithTag(PagedPool, keyPath.MaximumLength, LOADER_POOL_TAG);
    if (keyPath.Buffer == NULL) return STATUS_INSUFFICIENT_RESOURCES;
    RtlCopyUnicodeString(&keyPath, registryPath);
    RtlAppendUnicodeToString(&keyPath, suffix);

    OBJECT_ATTRIBUTES attributes;
    InitializeObjectAttributes(&attributes, &keyPath, OBJ_KERNEL_HANDLE | OBJ_CASE_INSENSITIVE, NULL, NULL);
    HANDLE key = NULL;
    NTSTATUS status = ZwOpenKey(&key, KEY_READ, &attributes);
    ExFreePoolWithTag(keyPath.Buffer, LOADER_POOL_TAG);
    if (!NT_SUCCESS(status)) return status;

    /* Room for a name of 255 characters. */
    union {
        KEY_VALUE_PARTIAL_INFORMATION info;
        UCHAR bytes[sizeof(KEY_VALUE_PARTIAL_INFORMATION) + 512];
    } value;
    status = QueryValue(key, L"Instance", &value.info, sizeof(value));
    if (NT_SUCCESS(status) && value.info.Type == REG_DWORD && value.info.DataLength == sizeof(ULONG)) {
        RtlCopyMemory(&g_instance, value.info.Data, sizeof(ULONG));
    }
    RtlZeroMemory(&value, sizeof(value));
    status = QueryValue(key, L"DeviceName", &value.info, sizeof(value) - sizeof(WCHAR));
    ZwClose(key);
    if (!NT_SUCCESS(status)) return status;
    if (value.info.Type != REG_SZ) return STATUS_OBJECT_TYPE_MISMATCH;

    UNICODE_STRING deviceName;
    RtlInitUnicodeString(&deviceName, (PCWSTR)value.info.Data);
    return IoCreateDevice(driver, 0, &deviceName, FILE_DEVICE_UNKNOWN, 0, FALSE, &g_device);
}

static NTSTATUS Complete(PIRP irp, NTSTATUS status, ULONG_PTR bytes) {
    irp->IoStatus.Status = status;
    irp->IoStatus.Information = bytes;
    IoCompleteRequest(irp, IO_NO_INCREMENT);
    return status;
}

static NTSTATUS DispatchCreateClose(PDEVICE_OBJECT device, PIRP irp) {
    UNREFERENCED_PARAMETER(device);
    return Complete(irp, STATUS_SUCCESS, 0);
}

static NTSTATUS DispatchControl(PDEVICE_OBJECT device, PIRP irp) {
    UNREFERENCED_PARAMETER(device);
    PIO_STACK_LOCATION stack = IoGetCurrentIrpStackLocation(irp);
    switch (stack->Parameters.DeviceIoControl.IoControlCode) {
        case IOCTL_LOADER_PING:
            if (stack->Parameters.DeviceIoControl.OutputBufferLength < sizeof(ULONG)) {
                return Complete(irp, STATUS_BUFFER_TOO_SMALL, 0);
            }
            RtlCopyMemory(irp->AssociatedIrp.SystemBuffer, &g_instance, sizeof(ULONG));
            return Complete(irp, STATUS_SUCCESS, sizeof(ULONG));
        case IOCTL_LOADER_CRASH: {
            UNICODE_STRING name;
            RtlInitUnicodeString(&name, L"IoGetRequestorProcessId");
            RequestorProcessIdRoutine routine = (RequestorProcessIdRoutine)(ULONG_PTR)MmGetSystemRoutineAddress(&name);
            if (routine == NULL) return Complete(irp, STATUS_PROCEDURE_NOT_FOUND, 0);
            routine(irp); /* does not return under Wine 8 */
            return Complete(irp, STATUS_SUCCESS, 0);
        }
        default:
            return Complete(irp, STATUS_INVALID_DEVICE_REQUEST, 0);
    }
}

static VOID DriverUnload(PDRIVER_OBJECT driver) {
    UNREFERENCED_PARAMETER(driver);
    if (g_device != NULL) IoDeleteDevice(g_device);
}

NTSTATUS NTAPI DriverEntry(PDRIVER_OBJECT driver, PUNICODE_STRING registryPath) {
    driver->MajorFunction[IRP_MJ_CREATE] = DispatchCreateClose;
    driver->MajorFunction[IRP_MJ_CLOSE] = DispatchCreateClose;
    driver->MajorFunction[IRP_MJ_DEVICE_CONTROL] = DispatchControl;
    driver->DriverUnload = DriverUnload;
    return CreateDeviceFromParameters(driver, registryPath);
}
