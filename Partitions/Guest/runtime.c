// The allocator entry points the Embedded Swift runtime calls. Swift reserves these names,
// so they are defined here and forward to GuestKit's heap.
#include <stddef.h>

void *guest_heap_allocate(long size, long alignment);
void guest_heap_release(void *pointer);

int posix_memalign(void **result, size_t alignment, size_t size) {
    void *block = guest_heap_allocate((long)size, (long)alignment);
    if (!block) return 12; // ENOMEM
    *result = block;
    return 0;
}

void free(void *pointer) {
    guest_heap_release(pointer);
}
