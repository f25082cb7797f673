/*
 * Locks: fltmgr's own global lock, and push locks (FltInitializePushLock & co.), made of interlocked
 * operations because Wine 8's KeAcquireSpinLock does not exclude (it returns at once when another
 * thread holds the lock) and its ERESOURCEs are built on it.
 *
 * Push locks are shared or exclusive, not recursive, in the pointer-sized EX_PUSH_LOCK itself, so
 * that initialising one can never fail. Bit 0 = held exclusive;
 * the rest counts shared holders in steps of 2. A waiter spins briefly and then sleeps in short
 * steps; held locks are meant to be short (no lock of a driver is held across FltSendMessage).
 * Unlike Windows, waiting writers do not hold new readers back.
 */
#include "fltmgrp.h"

#define FLTP_PUSH_LOCK_EXCLUSIVE ((LONG64)1)
#define FLTP_PUSH_LOCK_SHARED ((LONG64)2)

static volatile LONG64 *FltpPushLockWord(PEX_PUSH_LOCK PushLock)
{
    return (volatile LONG64 *)PushLock;
}

/* The Attempt-th wait for a lock that was busy. */
VOID FltpBackOff(ULONG Attempt)
{
    LARGE_INTEGER interval;

    if (Attempt < 64) {
        YieldProcessor();
        return;
    }
    interval.QuadPart = Attempt < 256 ? 0 : -10000; /* a yield, then 1 ms naps */
    KeDelayExecutionThread(KernelMode, FALSE, &interval);
}

VOID FltpAcquireLock(VOID)
{
    ULONG attempt;

    for (attempt = 0; InterlockedCompareExchange(&FltpGlobals.Lock, 1, 0) != 0; attempt++) FltpBackOff(attempt);
}

VOID FltpReleaseLock(VOID)
{
    InterlockedExchange(&FltpGlobals.Lock, 0);
}

VOID FLTAPI FltInitializePushLock(PEX_PUSH_LOCK PushLock)
{
    *FltpPushLockWord(PushLock) = 0;
}

VOID FLTAPI FltDeletePushLock(PEX_PUSH_LOCK PushLock)
{
    UNREFERENCED_PARAMETER(PushLock);
}

VOID FLTAPI FltAcquirePushLockExclusive(PEX_PUSH_LOCK PushLock)
{
    ULONG attempt;

    for (attempt = 0; InterlockedCompareExchange64(FltpPushLockWord(PushLock), FLTP_PUSH_LOCK_EXCLUSIVE, 0) != 0;
         attempt++)
        FltpBackOff(attempt);
}

VOID FLTAPI FltAcquirePushLockShared(PEX_PUSH_LOCK PushLock)
{
    ULONG attempt;

    for (attempt = 0;; attempt++) {
        LONG64 value = *FltpPushLockWord(PushLock);
        if ((value & FLTP_PUSH_LOCK_EXCLUSIVE) == 0 &&
            InterlockedCompareExchange64(FltpPushLockWord(PushLock), value + FLTP_PUSH_LOCK_SHARED, value) == value)
            return;
        FltpBackOff(attempt);
    }
}

VOID FLTAPI FltReleasePushLock(PEX_PUSH_LOCK PushLock)
{
    if ((*FltpPushLockWord(PushLock) & FLTP_PUSH_LOCK_EXCLUSIVE) != 0)
        InterlockedExchange64(FltpPushLockWord(PushLock), 0);
    else
        InterlockedExchangeAdd64(FltpPushLockWord(PushLock), -FLTP_PUSH_LOCK_SHARED);
}

VOID FLTAPI FltAcquirePushLockExclusiveEx(PEX_PUSH_LOCK PushLock, ULONG Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    FltAcquirePushLockExclusive(PushLock);
}

VOID FLTAPI FltAcquirePushLockSharedEx(PEX_PUSH_LOCK PushLock, ULONG Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    FltAcquirePushLockShared(PushLock);
}

VOID FLTAPI FltReleasePushLockEx(PEX_PUSH_LOCK PushLock, ULONG Flags)
{
    UNREFERENCED_PARAMETER(Flags);
    FltReleasePushLock(PushLock);
}
