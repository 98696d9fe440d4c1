// Nothing to call: linking this target into the test binary is what it does (mutex_annotations.c).
#ifndef MUTEX_ANNOTATIONS_H
#define MUTEX_ANNOTATIONS_H
#endif
