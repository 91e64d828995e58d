/* control.c - placeholder while it is written (this session) */
#include "daemon/daemon.h"
#include <unistd.h>
int tmd_control_init(struct tmd *d) { (void)d; return 0; }
void tmd_control_accept(struct tmd *d, int fd, pid_t pid, uid_t uid, gid_t gid) { (void)d; (void)pid; (void)uid; (void)gid; close(fd); }
void tmd_control_stop(struct tmd *d) { (void)d; }
