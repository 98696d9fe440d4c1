// The C library's heap interfaces that the Glibc module does not import (<malloc.h>).
#ifndef CLINUX_MEMORY_H
#define CLINUX_MEMORY_H

#include <malloc.h>

/// malloc_trim(3): returns the free memory of every arena to the kernel; 1 if any was.
static inline int clinux_malloc_trim(void) { return malloc_trim(0); }

#endif
