// ThreadSanitizer annotations for the toolchain's Synchronization.Mutex (Docs/testing.md#sanitizers).
//
// Mutex's fast paths are inlined into our code, so the sanitizer sees their atomic
// compare-exchange on the lock word. A contended lock is handed over in its slow paths instead
// (`_MutexHandle._lockSlow`, `_unlockSlow`: a spin, then FUTEX_LOCK_PI / FUTEX_UNLOCK_PI), which
// live in libswiftSynchronization, built without the sanitizer: the waiter leaves `_lockSlow`
// owning the lock with no edge from the last owner's unlock, and every pair of accesses made
// under that lock on either side reads as a data race. This file, compiled only under
// -fsanitize=thread and linked into the test binary, defines the slow paths' symbols: each calls
// the library's own and tells the sanitizer about the edge on the lock word's address (release
// before unlocking, acquire once locked). Calls from the test binary bind to these definitions,
// and so do those from the Foundation libraries it loads (the binary exports them); nothing
// changes in any other build. A test checks that the binding holds
// (Tests/LinuxSupportTests/MutexSanitizerTests.swift).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#ifndef _GNU_SOURCE
#define _GNU_SOURCE  // RTLD_NEXT
#endif
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

void __tsan_acquire(void *address);
void __tsan_release(void *address);

// Swift methods take `self` in the register clang's swift_context parameter maps to; a
// borrowed _MutexHandle is passed by address, which is the lock word's address.
#define SWIFT_CALL __attribute__((swiftcall))
#define SWIFT_SELF __attribute__((swift_context))

typedef SWIFT_CALL void (*LockSlow)(uint32_t owner, void *SWIFT_SELF handle);
typedef SWIFT_CALL void (*UnlockSlow)(void *SWIFT_SELF handle);
typedef SWIFT_CALL bool (*TryLockSlow)(void *SWIFT_SELF handle);

#define LOCK_SLOW "$s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF"
#define UNLOCK_SLOW "$s15Synchronization12_MutexHandleV11_unlockSlowyyF"
#define TRY_LOCK_SLOW "$s15Synchronization12_MutexHandleV12_tryLockSlowSbyF"

static LockSlow libraryLockSlow;
static UnlockSlow libraryUnlockSlow;
static TryLockSlow libraryTryLockSlow;

/// The library's definition of `name`; the test binary cannot run without it.
static void *library(const char *name) {
    void *symbol = dlsym(RTLD_NEXT, name);
    if (symbol == NULL) {
        void *handle = dlopen("libswiftSynchronization.so", RTLD_NOW);
        symbol = handle != NULL ? dlsym(handle, name) : NULL;
    }
    if (symbol == NULL) {
        fprintf(stderr, "mutex_annotations: libswiftSynchronization has no %s\n", name);
        abort();
    }
    return symbol;
}

// Resolved before main, while the process has one thread: the slow paths run only for a
// contended lock, which takes two.
__attribute__((constructor)) static void resolveLibrarySlowPaths(void) {
    libraryLockSlow = (LockSlow)library(LOCK_SLOW);
    libraryUnlockSlow = (UnlockSlow)library(UNLOCK_SLOW);
    libraryTryLockSlow = (TryLockSlow)library(TRY_LOCK_SLOW);
}

SWIFT_CALL void $s15Synchronization12_MutexHandleV9_lockSlowyys6UInt32VF(uint32_t owner, void *SWIFT_SELF handle) {
    libraryLockSlow(owner, handle);
    __tsan_acquire(handle);
}

SWIFT_CALL void $s15Synchronization12_MutexHandleV11_unlockSlowyyF(void *SWIFT_SELF handle) {
    __tsan_release(handle);
    libraryUnlockSlow(handle);
}

SWIFT_CALL bool $s15Synchronization12_MutexHandleV12_tryLockSlowSbyF(void *SWIFT_SELF handle) {
    bool locked = libraryTryLockSlow(handle);
    if (locked) __tsan_acquire(handle);
    return locked;
}
#endif
#endif
