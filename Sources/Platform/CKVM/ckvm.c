// Intentionally empty: CKVM only exports constants from include/ckvm.h.
#include "ckvm.h"
