/* metrics.c - placeholder while it is written (this session) */
#include "daemon/daemon.h"
int tmd_metrics_start(struct tmd *d) { (void)d; return -1; }
void tmd_metrics_stop(struct tmd *d) { (void)d; }
uint32_t tmd_metrics_port(struct tmd *d) { (void)d; return 0; }
