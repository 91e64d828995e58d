/* config.c - placeholder while it is written (this session) */
#include "daemon/daemon.h"
const char tmd_default_config[] = "";
int tmd_config_default(struct tmd_config *cfg) { (void)cfg; return -1; }
int tmd_config_load(struct tmd_config *cfg, const char *path, char *err, size_t errlen) { (void)cfg; (void)path; (void)err; (void)errlen; return -1; }
int tmd_config_resolve(struct tmd_config *cfg, char *err, size_t errlen) { (void)cfg; (void)err; (void)errlen; return -1; }
int tmd_config_set(struct tmd_config *cfg, const char *section, const char *key, const char *value, char *err, size_t errlen) { (void)cfg; (void)section; (void)key; (void)value; (void)err; (void)errlen; return -1; }
int tmd_parse_size(const char *s, uint64_t *bytes, double *pct) { (void)s; (void)bytes; (void)pct; return -1; }
