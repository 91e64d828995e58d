/* SPDX-License-Identifier: MIT */
/*
 * tenants.c - what one uid may hold: its persistent share.
 *
 * A uid's clients together hold at most uid_pers_max bytes of persistent
 * memory (memory.uid_persistent_max; memory.uid_persistent names the share
 * of given uids; an administrator's setting for a uid, tmemctl set-uid,
 * comes before both), so that one tenant, however many clients it opens,
 * cannot fill the daemon with pages nobody may take back.  Two things count:
 * the persistent units lent to its clients (lend.c checks each GROW against
 * the share) and the persistent pages of its clients in the daemon's own
 * engine (shared pools, and private pools when the daemon does not lend),
 * which the engine bounds through one quota group per uid whose cap follows
 * what is lent (tmd_uid_follow).  A page in the engine counts as 4 KiB; a
 * unit as its size.
 *
 * Locking: lock guards the administrators' settings; it is taken under
 * lend_lock (tmd_uid_pers_max), never the other way round.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <syslog.h>

#include "daemon/daemon.h"
#include "daemon/lend.h"

struct tmd_tenants {
    pthread_mutex_t lock;
    struct tmd_uid_setting { uid_t uid; uint64_t max; } *set;   /* (lock) */
    size_t n, cap;
};

int tmd_tenants_init(struct tmd *d)
{
    struct tmd_tenants *tn = calloc(1, sizeof(*tn));
    if (!tn)
        return -ENOMEM;
    pthread_mutex_init(&tn->lock, NULL);
    d->tenants = tn;
    return 0;
}

void tmd_tenants_fini(struct tmd *d)
{
    struct tmd_tenants *tn = d->tenants;
    if (!tn)
        return;
    pthread_mutex_destroy(&tn->lock);
    free(tn->set);
    free(tn);
    d->tenants = NULL;
}

uint32_t tmd_uid_group(uid_t uid)
{
    return (uint32_t)uid + 1;       /* group 0 is none; uid -1 is no uid */
}

uint64_t tmd_uid_pers_max(struct tmd *d, uid_t uid)
{
    struct tmd_tenants *tn = d->tenants;
    uint64_t max = d->cfg.uid_pers_max;
    for (uint32_t i = 0; i < d->cfg.nuid_share; i++)
        if (d->cfg.uid_share[i].uid == (uint32_t)uid)
            max = d->cfg.uid_share[i].bytes;
    if (!tn)
        return max;
    pthread_mutex_lock(&tn->lock);
    for (size_t i = 0; i < tn->n; i++)
        if (tn->set[i].uid == uid)
            max = tn->set[i].max;
    pthread_mutex_unlock(&tn->lock);
    return max;
}

/* The engine group's cap: what uid may still hold beside lent bytes (at
 * least one page: a cap of 0 is none). */
static void group_follow(struct tmd *d, uid_t uid, uint64_t max, uint64_t lent)
{
    uint64_t pages = 0;
    if (max)
        pages = max > lent + TMEM_PAGE_SIZE ? (max - lent) / TMEM_PAGE_SIZE : 1;
    tmem_admin_set_group_cap(d->engine, tmd_uid_group(uid), pages);
}

void tmd_uid_follow(struct tmd *d, uid_t uid, uint64_t lent_bytes)
{
    group_follow(d, uid, tmd_uid_pers_max(d, uid), lent_bytes);
}

int tmd_uid_set_pers_max(struct tmd *d, uid_t uid, uint64_t bytes, bool reset)
{
    struct tmd_tenants *tn = d->tenants;
    pthread_mutex_lock(&tn->lock);
    size_t i = 0;
    while (i < tn->n && tn->set[i].uid != uid)
        i++;
    int rc = 0;
    if (reset) {
        if (i < tn->n)
            tn->set[i] = tn->set[--tn->n];
    } else if (i < tn->n) {
        tn->set[i].max = bytes;
    } else if (tn->n == tn->cap) {
        size_t cap = tn->cap ? tn->cap * 2 : 8;
        struct tmd_uid_setting *v = realloc(tn->set, cap * sizeof(*v));
        if (!v) {
            rc = -ENOMEM;
        } else {
            tn->set = v;
            tn->cap = cap;
        }
    }
    if (rc == 0 && !reset && i == tn->n) {
        tn->set[tn->n].uid = uid;
        tn->set[tn->n++].max = bytes;
    }
    pthread_mutex_unlock(&tn->lock);
    if (rc == 0)
        tmd_uid_follow(d, uid, tmd_lend_uid_persistent(d, uid));
    return rc;
}

int tmd_uid_join(struct tmd *d, tmem_client_t *c, uid_t uid)
{
    int rc = tmem_admin_set_group(d->engine, tmem_client_id(c), tmd_uid_group(uid));
    if (rc == 0)
        tmd_uid_follow(d, uid, tmd_lend_uid_persistent(d, uid));
    return rc;
}
