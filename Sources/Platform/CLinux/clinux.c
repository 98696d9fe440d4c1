// The one out-of-line helper: prctl(2) is variadic, which Swift cannot call.
#include "clinux.h"
#include <sys/prctl.h>

int clinux_set_thread_name(const char *name) {
    return prctl(PR_SET_NAME, (unsigned long)name, 0, 0, 0);
}
