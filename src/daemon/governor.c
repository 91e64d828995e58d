/* governor.c - placeholder while it is written (this session) */
#include "daemon/daemon.h"
int tmd_governor_start(struct tmd *d) { (void)d; return -1; }
void tmd_governor_stop(struct tmd *d) { (void)d; }
