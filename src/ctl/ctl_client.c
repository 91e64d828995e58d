/* placeholder */
#include "proto/wire.h"
int tmc_placeholder_(void);
int tmc_placeholder_(void) { return 0; }
