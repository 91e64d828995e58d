/* SPDX-License-Identifier: MIT */
/*
 * server.c - the client socket: connections, the handshake, windows, and
 * parked clients; also the daemon-wide figures.
 *
 * The listener thread waits (epoll) on the client socket, the control
 * socket, every connection, and an eventfd that stops it.  A connection
 * must send a valid HELLO within HELLO_TIMEOUT_MS; the daemon then opens
 * an engine client for it (or hands it a parked one: a client restored by
 * tmemctl whose uid and name match), creates its window (a memfd sealed
 * against shrinking and growing, so that the client can never make the
 * daemon fault on it), starts its worker and sends the window.  After that
 * the socket must stay silent: its end, whatever the cause (close, exit,
 * SIGKILL), or any byte on it ends the client: the worker is stopped, the
 * engine client released (its private pools freed, its shared pools left),
 * the window unmapped, its lent memory (lend.c) taken back.  With lent
 * memory the socket carries the few messages of lend.c (GROW, RETURN,
 * CLEANED), handled here on the listener's thread; anything else on it is a
 * protocol violation.
 *
 * Identity is SO_PEERCRED's pid, uid and gid, never what the client says;
 * the name in the HELLO is a label.
 *
 * Parked clients (restored by tmemctl or from the state file, state.c)
 * wait for a connection from their uid with their name; with
 * cfg.park_timeout the listener releases those nobody adopted in time.
 *
 * One daemon per socket path: before it touches either socket path the
 * daemon takes PATH.lock of each (tmd_server_lock) and holds it until it
 * exits; it removes a socket path only while it is still the file it bound.
 *
 * Stopping: the listener and the control threads first, then each worker,
 * and only then each connection's socket (close_conn), so that a request a
 * worker took is completed and published before its client can see the
 * daemon gone; the engine clients stay until tmd_server_stop, for the
 * state file.
 *
 * Locking: d->conns_lock guards the connection list, nconns/nparked and
 * each connection's fields but its worker's counters (atomics).  Only the
 * listener thread adds and removes connections, except tmd_park_client
 * (control threads), which adds parked entries.  A removed connection
 * belongs to the reaper thread (reap_lock guards its queue), which stops
 * its worker, closes its socket and releases its client.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "daemon/daemon.h"
#include "daemon/lend.h"

/* Connections that have not sent their HELLO: a client library sends it
 * right after connect(), so they are few and short-lived.  Each uid may
 * have MAX_HANDSHAKES_PER_UID of them (the peer's uid is known at accept,
 * before a byte is read), all uids MAX_HANDSHAKES, and each is dropped
 * after HELLO_TIMEOUT_MS: one uid's silent connections never use up what
 * another uid needs to connect. */
#define HELLO_TIMEOUT_MS        1000u
#define MAX_HANDSHAKES          64u
#define MAX_HANDSHAKES_PER_UID  4u
#define TAG_LISTEN  ((uint64_t)1)
#define TAG_CONTROL ((uint64_t)2)
#define TAG_STOP    ((uint64_t)3)

struct tmd_conn {
    struct tmd_conn *next;
    int fd;                         /* -1 for a parked client */
    pid_t pid;
    uid_t uid;
    gid_t gid;
    char name[TMW_NAME_MAX];        /* sanitised label */
    bool parked, ready;             /* ready: HELLO done, worker running */
    bool borrowed;                  /* a control thread runs a stream on fd: out of epoll */
    _Atomic bool ended;             /* an administrator ended it (tmd_end_client) */
    uint64_t since_ms;
    tmem_client_t *c;               /* the engine client (NULL before HELLO) */
    void *win;
    struct tmd_lent *lent;          /* its lent memory (lending daemon), else NULL */
    struct tmd_worker *w;
    struct tmd_worker_stats st;
    const char *why;                /* why it ended (a literal), for the reaper's log */
};

static int stop_fd = -1, epfd = -1;

uint64_t tmd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void tmd_sanitize_name(char out[TMW_NAME_MAX], const char *in, size_t max)
{
    size_t n = strnlen(in, max < TMW_NAME_MAX - 1 ? max : TMW_NAME_MAX - 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)in[i];
        out[i] = (ch < 0x21 || ch > 0x7e || ch == ',' || ch == ':' || ch == '=') ? '_'
                                                                                 : (char)ch;
    }
    out[n] = '\0';
}

/* ------------------------------------------------------------------------
 * Sockets
 * ---------------------------------------------------------------------- */
static int make_dirs(const char *path)
{
    char dir[TMD_PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash || slash == dir)
        return 0;
    *slash = '\0';
    for (char *p = dir + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(dir, 0755) != 0 && errno != EEXIST)
                return -errno;
            *p = '/';
        }
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* ------------------------------------------------------------------------
 * The lock: one daemon per socket path
 * ---------------------------------------------------------------------- */
/* Takes PATH.lock (created 0600 beside the socket, never removed): an
 * exclusive flock held by this process until it exits, the file holding
 * its pid.  The descriptor, or -errno (logged, naming the holder). */
static int lock_path(const char *path)
{
    char lock[TMD_PATH_MAX + 8];
    snprintf(lock, sizeof(lock), "%s.lock", path);
    int rc = make_dirs(path);
    if (rc) {
        tmd_log(LOG_ERR, "cannot create the directory of %s: %s", path, strerror(-rc));
        return rc;
    }
    int fd = open(lock, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = -errno;
        tmd_log(LOG_ERR, "lock file %s: cannot open it: %s; not starting", lock, strerror(errno));
        return rc;
    }
    /* the pid is written into it: a file of ours alone, not a link to another */
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
        st.st_uid != geteuid()) {
        tmd_log(LOG_ERR, "lock file %s: not a regular file of the daemon's user (uid %u) with "
                "one link; remove it; not starting", lock, (unsigned)geteuid());
        close(fd);
        return -EPERM;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        char text[32] = "";
        ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
        long pid = 0;
        char *end = text;
        if (n > 0) {
            text[n] = '\0';
            pid = strtol(text, &end, 10);
        }
        if (rc == -EWOULDBLOCK && pid > 0 && end != text && *end == '\n')
            tmd_log(LOG_ERR, "%s: another tmemd (pid %ld) serves it: it holds the lock file "
                    "%s; not starting", path, pid, lock);
        else if (rc == -EWOULDBLOCK)
            tmd_log(LOG_ERR, "%s: another tmemd serves it: it holds the lock file %s; not "
                    "starting", path, lock);
        else
            tmd_log(LOG_ERR, "lock file %s: cannot lock it: %s; not starting", lock,
                    strerror(-rc));
        close(fd);
        return rc;
    }
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, text, (size_t)len, 0) != len)
        tmd_log(LOG_WARNING, "lock file %s: cannot write the pid into it: %s", lock,
                strerror(errno));
    return fd;
}

int tmd_server_lock(struct tmd *d)
{
    d->lock_fd[0] = lock_path(d->cfg.socket_path);
    if (d->lock_fd[0] < 0)
        return d->lock_fd[0];
    d->lock_fd[1] = lock_path(d->cfg.control_path);
    if (d->lock_fd[1] < 0) {
        close(d->lock_fd[0]);
        d->lock_fd[0] = -1;
        return d->lock_fd[1];
    }
    return 0;
}

/* The socket files this daemon bound (device and inode), so that it
 * removes only those: [0] the client socket, [1] the control socket. */
static struct bound { dev_t dev; ino_t ino; bool set; } bound[2];

/* Removes path if it is still the socket this daemon bound there (b). */
static void unlink_own(const char *path, struct bound *b)
{
    struct stat st;
    if (!b->set)
        return;
    b->set = false;
    if (lstat(path, &st) != 0)
        return;
    if (!S_ISSOCK(st.st_mode) || st.st_dev != b->dev || st.st_ino != b->ino) {
        tmd_log(LOG_WARNING, "%s: no longer the socket this daemon bound (replaced "
                "meanwhile): left in place", path);
        return;
    }
    unlink(path);
}

/* Binds a SOCK_SEQPACKET socket at path, atomically: bound and listening
 * under a temporary name, then renamed, so that the path appearing means
 * the daemon is ready; b records the file.  Called with path's lock held
 * (tmd_server_lock): a socket file already there is a stale one, replaced,
 * unless something still listens on it (a daemon that takes no lock): that
 * is an error. */
static int listen_at(const char *path, unsigned mode, gid_t group, struct bound *b)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    char tmp[TMD_PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s.%d", path, (int)getpid()) >= (int)sizeof(tmp) ||
        strlen(path) >= sizeof(sa.sun_path)) {
        tmd_log(LOG_ERR, "socket path too long: %s", path);
        return -ENAMETOOLONG;
    }
    int rc = make_dirs(path);
    if (rc) {
        tmd_log(LOG_ERR, "cannot create the directory of %s: %s", path, strerror(-rc));
        return rc;
    }
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    strcpy(sa.sun_path, path);
    /* a full backlog (EAGAIN) is a listener too */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN) {
        tmd_log(LOG_ERR, "%s: another process is serving it", path);
        close(fd);
        return -EADDRINUSE;
    }
    strcpy(sa.sun_path, tmp);
    unlink(tmp);
    struct stat st;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(fd, 128) != 0 ||
        chmod(tmp, mode) != 0 || (group != (gid_t)-1 && chown(tmp, (uid_t)-1, group) != 0) ||
        lstat(tmp, &st) != 0 || rename(tmp, path) != 0) {
        rc = -errno;
        tmd_log(LOG_ERR, "cannot listen on %s: %s", path, strerror(errno));
        unlink(tmp);
        close(fd);
        return rc;
    }
    *b = (struct bound){ st.st_dev, st.st_ino, true };
    return fd;
}

static int epoll_add(int fd, uint64_t tag, uint32_t events)
{
    struct epoll_event ev = { .events = events, .data.u64 = tag };
    return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

static void send_refusal(int fd, int result)
{
    struct tmw_hello_reply r;
    memset(&r, 0, sizeof(r));
    r.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO_REPLY, sizeof(r), result };
    (void)send(fd, &r, sizeof(r), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* ------------------------------------------------------------------------
 * Connections
 * ---------------------------------------------------------------------- */
static void fold_stats(struct tmd *d, struct tmd_conn *k)
{
    atomic_fetch_add(&d->n.requests, atomic_load(&k->st.requests));
    atomic_fetch_add(&d->n.bad_requests, atomic_load(&k->st.bad_requests));
    atomic_fetch_add(&d->n.worker_sleeps, atomic_load(&k->st.sleeps));
    atomic_fetch_add(&d->n.worker_wakeups, atomic_load(&k->st.wakeups));
    atomic_fetch_add(&d->n.worker_empty_wakeups, atomic_load(&k->st.empty_wakeups));
    atomic_fetch_add(&d->n.worker_cpu_ns, atomic_load(&k->st.cpu_ns));
    atomic_fetch_add(&d->n.worker_throttles, atomic_load(&k->st.throttles));
}

/* Stops k's worker, ends its lent memory, then closes its socket.  In
 * this order: the worker completes the request it took and publishes the
 * result before it stops, and a client that sees the socket closed looks
 * at its slot once more (remote.c), so a request that was carried out (an
 * exclusive get that removed its page) is never reported to the client as
 * failed; and the lent memory leaves the lender's list, which other
 * threads send messages from, while the descriptor is still k's, not
 * closed or reused by a new connection. */
static void close_conn(struct tmd *d, struct tmd_conn *k)
{
    tmd_worker_stop(k->w);      /* joins; before the client goes: the worker uses it */
    k->w = NULL;
    /* its units stop counting; a daemon that stops leaves them with the
     * client, which brings them to the next one */
    tmd_lend_close(d, k->lent, !atomic_load(&d->stopping));
    k->lent = NULL;
    if (k->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, k->fd, NULL);
        close(k->fd);
        k->fd = -1;
    }
}

/* The reaper thread ends connections the listener has dropped: stopping a
 * worker can wait for its sleep's timeout, and releasing a client frees
 * every page it held and waits for a save of it to finish.  Off the
 * listener's thread, one client's end never delays another's HELLO.  A
 * dropped connection is off the list and out of epoll; it counts in
 * nconns until the reaper has released its client, so that a connection
 * count that drops means the client is gone.  reap_lock guards the queue. */
static pthread_mutex_t reap_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t reap_cond = PTHREAD_COND_INITIALIZER;
static struct tmd_conn *reap_head, **reap_tail = &reap_head;
static bool reap_quit;
static pthread_t reaper;

static void finish_conn(struct tmd *d, struct tmd_conn *k, bool counted)
{
    close_conn(d, k);
    if (k->c) {
        tmd_log_limited(LOG_INFO, "leave", k->uid,
                        "client %u (pid %d uid %u \"%s\") left: %s; %llu requests",
                        tmem_client_id(k->c), (int)k->pid, (unsigned)k->uid, k->name, k->why,
                        (unsigned long long)atomic_load(&k->st.requests));
        tmem_client_release(k->c);
    } else {
        tmd_log_limited(LOG_DEBUG, "no-hello", k->uid,
                        "connection from pid %d uid %u ended before its HELLO: %s",
                        (int)k->pid, (unsigned)k->uid, k->why);
    }
    if (k->win)
        munmap(k->win, TMW_WINDOW_SIZE);
    fold_stats(d, k);
    if (counted) {
        pthread_mutex_lock(&d->conns_lock);
        d->nconns--;
        pthread_mutex_unlock(&d->conns_lock);
    }
    free(k);
}

static void *reaper_main(void *arg)
{
    struct tmd *d = arg;
    pthread_mutex_lock(&reap_lock);
    for (;;) {
        while (!reap_head && !reap_quit)
            pthread_cond_wait(&reap_cond, &reap_lock);
        struct tmd_conn *k = reap_head;
        if (!k)
            break;                      /* quit, and the queue is empty */
        reap_head = k->next;
        if (!reap_head)
            reap_tail = &reap_head;
        pthread_mutex_unlock(&reap_lock);
        finish_conn(d, k, true);
        pthread_mutex_lock(&reap_lock);
    }
    pthread_mutex_unlock(&reap_lock);
    return NULL;
}

/* Ends the reaper once it has ended every connection queued. */
static void stop_reaper(void)
{
    pthread_mutex_lock(&reap_lock);
    reap_quit = true;
    pthread_cond_signal(&reap_cond);
    pthread_mutex_unlock(&reap_lock);
    pthread_join(reaper, NULL);
}

/* Ends connection k (listener thread, or the main thread at the stop; k is
 * on the list): off the list and out of epoll now, the rest by the reaper. */
static void drop_conn(struct tmd *d, struct tmd_conn *k, const char *why)
{
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    }
    bool parked = k->parked;
    if (parked)
        d->nparked--;
    pthread_mutex_unlock(&d->conns_lock);
    if (k->fd >= 0)
        epoll_ctl(epfd, EPOLL_CTL_DEL, k->fd, NULL);
    k->why = why;
    if (parked) {               /* no worker, no socket; not in nconns */
        finish_conn(d, k, false);
        return;
    }
    k->next = NULL;
    pthread_mutex_lock(&reap_lock);
    *reap_tail = k;
    reap_tail = &k->next;
    pthread_cond_signal(&reap_cond);
    pthread_mutex_unlock(&reap_lock);
}

/* Accepts one connection on lfd with its peer's credentials.  The fd, -1
 * when none is waiting (or on error), -2 when one came and went. */
static int accept_peer(int lfd, int flags, const char *what, struct ucred *cr)
{
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | flags);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR)
            tmd_log_limited(LOG_WARNING, "accept", TMD_NO_UID, "accept on the %s socket: %s",
                            what, strerror(errno));
        return -1;
    }
    socklen_t len = sizeof(*cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) != 0) {
        close(fd);
        return -2;
    }
    return fd;
}

static void conn_event(struct tmd *d, struct tmd_conn *k, uint32_t events);

static void accept_client(struct tmd *d)
{
    for (;;) {
        struct ucred cr;
        int fd = accept_peer(d->listen_fd, SOCK_NONBLOCK, "client", &cr);
        if (fd == -1)
            return;
        if (fd < 0)
            continue;
        /* the limits on clients are applied to the HELLO (handle_hello),
         * so that the refusal is an answer; here the bounds on handshakes
         * under way, per uid and in all */
        uint32_t pending = 0, mine = 0, nconns;
        pthread_mutex_lock(&d->conns_lock);
        for (struct tmd_conn *o = d->conns; o; o = o->next) {
            bool p = !o->ready && !o->parked;
            pending += p;
            mine += p && o->uid == cr.uid;
        }
        nconns = d->nconns;
        pthread_mutex_unlock(&d->conns_lock);
        const char *full = mine >= MAX_HANDSHAKES_PER_UID ? "handshakes of this uid"
                         : pending >= MAX_HANDSHAKES ? "handshakes"
                         : nconns >= d->cfg.max_clients + MAX_HANDSHAKES ? "connections" : NULL;
        if (full) {
            atomic_fetch_add(&d->n.refused_conn, 1);
            tmd_log_limited(LOG_WARNING, "refused", cr.uid,
                            "refused pid %d uid %u: too many %s under way", (int)cr.pid,
                            (unsigned)cr.uid, full);
            send_refusal(fd, -EAGAIN);
            close(fd);
            continue;
        }
        struct tmd_conn *k = calloc(1, sizeof(*k));
        if (!k) {
            send_refusal(fd, -ENOMEM);
            close(fd);
            continue;
        }
        k->fd = fd;
        k->pid = cr.pid;
        k->uid = cr.uid;
        k->gid = cr.gid;
        k->since_ms = tmd_now_ms();
        if (epoll_add(fd, (uint64_t)(uintptr_t)k, EPOLLIN | EPOLLRDHUP) != 0) {
            close(fd);
            free(k);
            continue;
        }
        pthread_mutex_lock(&d->conns_lock);
        k->next = d->conns;
        d->conns = k;
        d->nconns++;
        pthread_mutex_unlock(&d->conns_lock);
        atomic_fetch_add(&d->n.accepted, 1);
        /* a client library sends its HELLO right after connect(): read it
         * now, so that a burst of connections of one uid is served, not
         * refused as handshakes under way */
        conn_event(d, k, EPOLLIN);
    }
}

static void accept_control(struct tmd *d)
{
    for (;;) {
        struct ucred cr;
        int fd = accept_peer(d->control_fd, 0, "control", &cr);
        if (fd == -1)
            return;
        if (fd < 0)
            continue;
        tmd_control_accept(d, fd, cr.pid, cr.uid, cr.gid);
    }
}

static void *make_window(struct tmd *d, uint32_t client_id, int *fd_out)
{
    (void)d;
    int fd = memfd_create("tmem-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, TMW_WINDOW_SIZE) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        close(fd);
        return NULL;
    }
    void *win = mmap(NULL, TMW_WINDOW_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (win == MAP_FAILED) {
        close(fd);
        return NULL;
    }
    struct tmw_header *h = win;
    h->magic = TMW_MAGIC;
    h->version = TMW_VERSION;
    h->nslots = TMW_NSLOTS;
    h->window_size = TMW_WINDOW_SIZE;
    h->slots_off = TMW_SLOTS_OFF;
    h->pages_off = TMW_PAGES_OFF;
    h->client_id = client_id;
    *fd_out = fd;
    return win;
}

int tmd_check_hello(const void *msg, ssize_t n, char name[TMW_NAME_MAX])
{
    struct tmw_hello h;
    if (n != (ssize_t)sizeof(h))
        return -EPROTO;
    memcpy(&h, msg, sizeof(h));
    if (h.m.magic != TMW_MAGIC || h.m.type != TMW_MSG_HELLO || h.m.len != sizeof(h))
        return -EPROTO;
    if (h.m.version != TMW_VERSION)
        return -EPROTONOSUPPORT;
    tmd_sanitize_name(name, h.name, sizeof(h.name));
    return 0;
}

/* Takes the parked client of (uid, name), if any. */
static tmem_client_t *adopt_parked(struct tmd *d, uid_t uid, const char *name)
{
    tmem_client_t *c = NULL;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
        struct tmd_conn *k = *pp;
        if (k->parked && k->uid == uid && strcmp(k->name, name) == 0) {
            *pp = k->next;
            d->nparked--;
            c = k->c;
            free(k);
            break;
        }
    }
    pthread_mutex_unlock(&d->conns_lock);
    return c;
}

/* A client the handshake could not serve: a restored one goes back to
 * waiting for its owner (its pages must not be lost to a passing error),
 * a new one is released. */
static void give_back(struct tmd *d, struct tmd_conn *k, tmem_client_t *c, bool adopted,
                      const char *name)
{
    if (adopted)
        tmd_park_client(d, c, k->uid, k->gid, name);
    else
        tmem_client_release(c);
}

/* The standing authorisations of [memory] shared_allow for this uid. */
static void apply_shared_rules(struct tmd *d, tmem_client_t *c, uid_t uid, const char *name)
{
    for (uint32_t i = 0; i < d->cfg.nshared_allow; i++) {
        const struct tmd_shared_rule *r = &d->cfg.shared_allow[i];
        if (r->uid >= 0 && (uid_t)r->uid != uid)
            continue;
        char u[37];
        tmem_uuid_format(r->uuid, u);
        int rc = tmem_admin_shared_auth(d->engine, tmem_client_id(c), r->uuid, 1);
        if (rc)
            tmd_log_limited(LOG_WARNING, "shared-allow", uid,
                            "client %u (%s, uid %u): shared_allow %s: %s", tmem_client_id(c),
                            name, (unsigned)uid, u, tmem_strerror(rc));
        else
            tmd_log_limited(LOG_DEBUG, "shared-allow", uid,
                            "client %u (%s, uid %u): may join shared pools of %s",
                            tmem_client_id(c), name, (unsigned)uid, u);
    }
}

/* Receives a HELLO and up to 3 descriptors (any more are closed).  The
 * message's length as recv says it (MSG_TRUNC), 0 at the end, -1 with
 * errno. */
static ssize_t recv_hello(int fd, struct tmw_hello *h, int fds[3], int *nfds)
{
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(8 * sizeof(int))];
    } cm;
    struct iovec iov = { h, sizeof(*h) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = sizeof(cm.buf) };
    ssize_t n = recvmsg(fd, &mh, MSG_TRUNC | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    *nfds = 0;
    if (n < 0)
        return n;
    for (struct cmsghdr *ch = CMSG_FIRSTHDR(&mh); ch; ch = CMSG_NXTHDR(&mh, ch)) {
        if (ch->cmsg_level != SOL_SOCKET || ch->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (ch->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int got;
            memcpy(&got, CMSG_DATA(ch) + i * sizeof(int), sizeof(int));
            if (*nfds < 3)
                fds[(*nfds)++] = got;
            else
                close(got);
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        return (ssize_t)sizeof(*h) + 1;     /* more than we take: malformed */
    return n;
}

static void close_fds(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0)
            close(fds[i]);
}

/* The HELLO of connection k; false drops it. */
static bool handle_hello(struct tmd *d, struct tmd_conn *k)
{
    struct tmw_hello h;
    int hfds[3], nh = 0;
    ssize_t n = recv_hello(k->fd, &h, hfds, &nh);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR;
    if (n == 0)
        return false;
    char name[TMW_NAME_MAX];
    int bad = tmd_check_hello(&h, n, name);
    bool adopt = !bad && (h.flags & TMW_HELLO_ADOPT);
    if (!bad && (h.flags & ~TMW_HELLO_ADOPT || nh != (adopt ? 3 : 1)) &&
        !(nh == 0 && !h.flags && !tmd_lending(d)))
        bad = -EPROTO;          /* the shared page, and the arenas of an adoption (a daemon
                                   that does not lend needs neither) */
    if (!bad && adopt && !tmd_lending(d))
        bad = -EOPNOTSUPP;      /* a daemon that does not lend cannot take memory back */
    if (bad) {
        close_fds(hfds, nh);
        atomic_fetch_add(&d->n.bad_msgs, 1);
        tmd_log_limited(LOG_WARNING, "bad-hello", k->uid,
                        "pid %d uid %u: malformed HELLO (%zd bytes): dropped", (int)k->pid,
                        (unsigned)k->uid, n);
        send_refusal(k->fd, bad);
        return false;
    }
    uint32_t all = 0, mine = 0;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn *o = d->conns; o; o = o->next) {
        all += o->ready;
        mine += o->ready && o->uid == k->uid;
    }
    pthread_mutex_unlock(&d->conns_lock);
    bool full_uid = d->cfg.max_clients_per_uid && mine >= d->cfg.max_clients_per_uid;
    if (all >= d->cfg.max_clients || full_uid) {
        atomic_fetch_add(&d->n.refused_conn, 1);
        tmd_log_limited(LOG_WARNING, "refused", k->uid,
                        "refused pid %d uid %u: %u clients already (%s)", (int)k->pid,
                        (unsigned)k->uid, full_uid ? mine : all,
                        full_uid ? "max_clients_per_uid" : "max_clients");
        send_refusal(k->fd, -EAGAIN);
        close_fds(hfds, nh);
        return false;
    }
    /* a parked client (restored by tmemctl or the state file) of this
     * owner: its pools become the connection's; with lent memory they are
     * streamed into the client's own engine after the reply (a client
     * coming back with its arenas keeps what it has, and the parked one
     * waits) */
    tmem_client_t *c = adopt && tmd_lending(d) ? NULL : adopt_parked(d, k->uid, name);
    tmem_client_t *parked = NULL;
    if (c && tmd_lending(d)) {
        parked = c;
        c = NULL;
    }
    bool adopted = c != NULL;
    if (!c)
        c = tmem_client_open(d->engine, name);
    /* in its uid's persistent share, a restored one with its pages */
    if (c && tmd_uid_join(d, c, k->uid) != 0) {
        give_back(d, k, c, adopted, name);
        c = NULL;
        errno = ENOMEM;
    }
    int wfd = -1;
    void *win = c ? make_window(d, tmem_client_id(c), &wfd) : NULL;
    if (!win) {
        tmd_log_limited(LOG_ERR, "open-failed", k->uid, "pid %d uid %u: cannot open a client: %s",
                        (int)k->pid, (unsigned)k->uid, strerror(errno));
        send_refusal(k->fd, -ENOMEM);
        if (c)
            give_back(d, k, c, adopted, name);
        if (parked)
            tmd_park_client(d, parked, k->uid, k->gid, name);
        close_fds(hfds, nh);
        return false;
    }
    struct tmw_hello_reply r;
    memset(&r, 0, sizeof(r));
    r.mode = TMW_MODE_WINDOW;
    struct tmd_lent *lent = NULL;
    int afds[2] = { -1, -1 };
    int rc = 0;
    if (tmd_lending(d)) {
        struct tmd_lend_hello hi = { k->fd, tmem_client_id(c), k->uid, name, hfds[0], adopt,
                                     { adopt ? hfds[1] : -1, adopt ? hfds[2] : -1 },
                                     h.unit_bytes };
        rc = tmd_lend_open(d, &hi, &r, afds, &lent);
        if (rc == -EPROTO) {
            atomic_fetch_add(&d->n.bad_msgs, 1);
            tmd_log_limited(LOG_WARNING, "bad-hello", k->uid,
                            "pid %d uid %u: HELLO with a shared page or arenas that are not "
                            "ours: dropped", (int)k->pid, (unsigned)k->uid);
        }
    }
    close_fds(hfds, nh);
    struct tmd_worker *w = NULL;
    if (rc == 0) {
        apply_shared_rules(d, c, k->uid, name);
        char who[160];
        snprintf(who, sizeof(who), "client %u (pid %d uid %u \"%s\")", tmem_client_id(c),
                 (int)k->pid, (unsigned)k->uid, name);
        rc = tmd_worker_start(d, &w, c, win, &k->st, who);
    }
    if (rc) {
        send_refusal(k->fd, rc);
        tmd_lend_close(d, lent, !adopt);    /* an adoption's arenas stay the client's:
                                               it tries again with them */
        munmap(win, TMW_WINDOW_SIZE);
        close(wfd);
        give_back(d, k, c, adopted, name);
        if (parked)
            tmd_park_client(d, parked, k->uid, k->gid, name);
        return false;
    }
    pthread_mutex_lock(&d->conns_lock);
    memcpy(k->name, name, sizeof(name));
    k->c = c;
    k->win = win;
    k->w = w;
    k->lent = lent;
    k->ready = true;
    pthread_mutex_unlock(&d->conns_lock);

    r.m = (struct tmw_msg){ TMW_MAGIC, TMW_VERSION, TMW_MSG_HELLO_REPLY, sizeof(r), 0 };
    r.client_id = tmem_client_id(c);
    r.window_size = TMW_WINDOW_SIZE;
    if (parked)
        r.flags |= TMW_REPLY_RESTORE;
    int sfds[3] = { wfd, afds[0], afds[1] }, ns = afds[0] >= 0 ? 3 : 1;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(3 * sizeof(int))];
    } cm;
    memset(&cm, 0, sizeof(cm));
    struct iovec iov = { &r, sizeof(r) };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf,
                         .msg_controllen = CMSG_SPACE((size_t)ns * sizeof(int)) };
    struct cmsghdr *ch = CMSG_FIRSTHDR(&mh);
    ch->cmsg_level = SOL_SOCKET;
    ch->cmsg_type = SCM_RIGHTS;
    ch->cmsg_len = CMSG_LEN((size_t)ns * sizeof(int));
    memcpy(CMSG_DATA(ch), sfds, (size_t)ns * sizeof(int));
    ssize_t sent = sendmsg(k->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    close(wfd);         /* the arenas stay open: the daemon punches through them */
    if (sent != (ssize_t)sizeof(r)) {
        if (parked)
            tmd_park_client(d, parked, k->uid, k->gid, name);
        return false;
    }
    if (lent)
        tmd_lend_started(d, lent);
    if (parked) {
        /* on this thread: the client asks for memory as it restores, and
         * its messages are served here meanwhile (other clients wait) */
        int64_t got = tmd_lend_restore(d, lent, k->fd, tmem_client_id(parked));
        if (got >= 0) {
            tmd_log(LOG_INFO, "client %u (uid %u \"%s\") restored its parked pools into its "
                    "lent memory: %" PRId64 " pages", r.client_id, (unsigned)k->uid, k->name, got);
            tmem_client_release(parked);
        } else {
            tmd_log_limited(LOG_WARNING, "restore", k->uid,
                            "client %u (uid %u \"%s\"): restoring its parked pools failed "
                            "(%s); they stay parked", r.client_id, (unsigned)k->uid, k->name,
                            strerror((int)-got));
            tmd_park_client(d, parked, k->uid, k->gid, name);
        }
    }
    tmd_log_limited(LOG_INFO, "connect", k->uid,
                    "client %u (pid %d uid %u gid %u \"%s\") connected%s%s", r.client_id,
                    (int)k->pid, (unsigned)k->uid, (unsigned)k->gid, k->name,
                    lent ? (adopt ? ", bringing back its lent memory" : ", with lent memory")
                         : "",
                    adopted ? ", adopting its restored pools" : "");
    return true;
}

static void conn_event(struct tmd *d, struct tmd_conn *k, uint32_t events)
{
    if (!k->ready) {
        if (!handle_hello(d, k))
            drop_conn(d, k, "no valid HELLO");
        return;
    }
    if (events & EPOLLIN) {
        /* a few messages at a time: a client that floods its socket waits
         * for its turn like the others */
        static _Alignas(8) uint8_t b[TMW_MSG_MAX];      /* the listener's thread only */
        for (int i = 0; i < 16; i++) {
            ssize_t n = recv(k->fd, b, sizeof(b), MSG_DONTWAIT | MSG_TRUNC);
            if (n > 0) {
                const char *why = "a message after HELLO";
                if (!k->lent || n > (ssize_t)sizeof(b) ||
                    tmd_lend_msg(d, k->lent, b, (size_t)n, &why) != 0) {
                    atomic_fetch_add(&d->n.bad_msgs, 1);
                    tmd_log_limited(LOG_WARNING, "protocol", k->uid,
                                    "client %u (pid %d uid %u): protocol violation (%s): "
                                    "dropped", tmem_client_id(k->c), (int)k->pid,
                                    (unsigned)k->uid, why);
                    drop_conn(d, k, "protocol violation");
                    return;
                }
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR) &&
                !(events & (EPOLLHUP | EPOLLRDHUP)))
                return;
            /* 0: the end, or an empty message (no protocol step is one):
             * after the end a second read says 0 again, after an empty
             * message the socket is still open and has nothing more */
            if (n == 0 && recv(k->fd, b, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN) {
                atomic_fetch_add(&d->n.bad_msgs, 1);
                tmd_log_limited(LOG_WARNING, "protocol", k->uid,
                                "client %u (pid %d uid %u): protocol violation (an empty "
                                "message): dropped", tmem_client_id(k->c), (int)k->pid,
                                (unsigned)k->uid);
                drop_conn(d, k, "protocol violation");
                return;
            }
            drop_conn(d, k, atomic_load(&k->ended) ? "ended by an administrator"
                                                   : "connection closed");
            return;
        }
        return;             /* more to read: epoll says so again */
    }
    drop_conn(d, k, atomic_load(&k->ended) ? "ended by an administrator" : "connection closed");
}

static void drop_stale_hellos(struct tmd *d)
{
    uint64_t now = tmd_now_ms();
    for (;;) {
        struct tmd_conn *stale = NULL;
        pthread_mutex_lock(&d->conns_lock);
        for (struct tmd_conn *k = d->conns; k; k = k->next)
            if (!k->parked && !k->ready && now - k->since_ms > HELLO_TIMEOUT_MS)
                stale = k;
        pthread_mutex_unlock(&d->conns_lock);
        if (!stale)
            return;
        atomic_fetch_add(&d->n.bad_msgs, 1);
        drop_conn(d, stale, "no HELLO in time");
    }
}

int tmd_end_client(struct tmd *d, uint32_t client_id)
{
    struct tmd_conn *parked = NULL;
    int rc = -ENOENT;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
        struct tmd_conn *k = *pp;
        if (!k->c || tmem_client_id(k->c) != client_id)
            continue;
        if (k->parked) {
            *pp = k->next;
            d->nparked--;
            parked = k;
        } else {
            /* the listener sees the end (epoll) and ends it */
            atomic_store(&k->ended, true);
            shutdown(k->fd, SHUT_RDWR);
        }
        rc = 0;
        break;
    }
    pthread_mutex_unlock(&d->conns_lock);
    if (parked) {
        tmem_client_release(parked->c);
        free(parked);
    }
    return rc;
}

/* Releases the parked clients nobody adopted within cfg.park_timeout
 * seconds.  Each is unlinked under the lock: a control thread's
 * tmd_park_client may replace (and free) a parked entry at any time. */
static void drop_expired_parked(struct tmd *d)
{
    if (!d->cfg.park_timeout)
        return;
    uint64_t now = tmd_now_ms(), limit = (uint64_t)d->cfg.park_timeout * 1000u;
    for (;;) {
        struct tmd_conn *old = NULL;
        pthread_mutex_lock(&d->conns_lock);
        for (struct tmd_conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
            if ((*pp)->parked && now - (*pp)->since_ms > limit) {
                old = *pp;
                *pp = old->next;
                d->nparked--;
                break;
            }
        }
        pthread_mutex_unlock(&d->conns_lock);
        if (!old)
            return;
        tmem_client_info_t info;
        uint64_t pages = tmem_client_info(d->engine, tmem_client_id(old->c), &info) == 0
                             ? info.persistent_pages : 0;
        tmd_log(LOG_NOTICE, "parked client %u (uid %u \"%s\") unclaimed for %u s "
                "(park_timeout): released with its %llu persistent pages",
                tmem_client_id(old->c), (unsigned)old->uid, old->name, d->cfg.park_timeout,
                (unsigned long long)pages);
        tmem_client_release(old->c);
        free(old);
    }
}

static void *listener_main(void *arg)
{
    struct tmd *d = arg;
    struct epoll_event evs[32];
    for (;;) {
        int n = epoll_wait(epfd, evs, 32, (int)tmd_lend_tick(d));
        if (n < 0) {
            /* never leave: a listener gone would strand every client */
            if (errno != EINTR) {
                tmd_log(LOG_ERR, "epoll_wait: %s; retrying", strerror(errno));
                struct timespec ts = { 0, 100000000 };
                nanosleep(&ts, NULL);
            }
            n = 0;
        }
        for (int i = 0; i < n; i++) {
            uint64_t tag = evs[i].data.u64;
            if (tag == TAG_STOP)
                return NULL;
            if (tag == TAG_LISTEN)
                accept_client(d);
            else if (tag == TAG_CONTROL)
                accept_control(d);
            else
                conn_event(d, (struct tmd_conn *)(uintptr_t)tag, evs[i].events);
        }
        drop_stale_hellos(d);
        drop_expired_parked(d);
    }
    return NULL;
}

int tmd_server_start(struct tmd *d)
{
    gid_t admin = (gid_t)-1;
    if (d->cfg.admin_group[0]) {
        struct group *g = getgrnam(d->cfg.admin_group);
        if (!g) {
            tmd_log(LOG_ERR, "admin_group \"%s\": no such group", d->cfg.admin_group);
            return -ENOENT;
        }
        admin = g->gr_gid;
    }
    d->quiesced = false;
    epfd = epoll_create1(EPOLL_CLOEXEC);
    stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (epfd < 0 || stop_fd < 0)
        return -errno;
    d->control_fd = listen_at(d->cfg.control_path, d->cfg.control_mode, admin, &bound[1]);
    if (d->control_fd < 0)
        return d->control_fd;
    d->listen_fd = listen_at(d->cfg.socket_path, d->cfg.socket_mode, (gid_t)-1, &bound[0]);
    if (d->listen_fd < 0) {
        close(d->control_fd);
        unlink_own(d->cfg.control_path, &bound[1]);
        return d->listen_fd;
    }
    epoll_add(d->listen_fd, TAG_LISTEN, EPOLLIN);
    epoll_add(d->control_fd, TAG_CONTROL, EPOLLIN);
    epoll_add(stop_fd, TAG_STOP, EPOLLIN);
    reap_quit = false;
    int rc = pthread_create(&reaper, NULL, reaper_main, d);
    if (rc == 0) {
        rc = pthread_create(&d->listener, NULL, listener_main, d);
        if (rc)
            stop_reaper();
    }
    if (rc) {
        unlink_own(d->cfg.socket_path, &bound[0]);
        unlink_own(d->cfg.control_path, &bound[1]);
        close(d->listen_fd);
        close(d->control_fd);
        return -rc;
    }
    tmd_log(LOG_INFO, "listening on %s (clients) and %s (control)", d->cfg.socket_path,
            d->cfg.control_path);
    return 0;
}

void tmd_server_quiesce(struct tmd *d)
{
    if (d->quiesced)
        return;
    d->quiesced = true;
    uint64_t one = 1;
    if (write(stop_fd, &one, sizeof(one)) != sizeof(one))
        tmd_log(LOG_ERR, "cannot stop the listener: %s", strerror(errno));
    pthread_join(d->listener, NULL);
    unlink_own(d->cfg.socket_path, &bound[0]);
    unlink_own(d->cfg.control_path, &bound[1]);
    close(d->listen_fd);
    close(d->control_fd);
    tmd_control_stop(d);
    /* No other thread touches the list from here on (the listener and the
     * control threads are gone).  Every worker stops before its socket
     * closes (close_conn). */
    for (struct tmd_conn *k = d->conns; k; k = k->next)
        close_conn(d, k);
}

void tmd_server_stop(struct tmd *d)
{
    tmd_server_quiesce(d);
    while (d->conns)
        drop_conn(d, d->conns, "the daemon stops");
    stop_reaper();              /* it ends every connection queued first */
    close(stop_fd);
    close(epfd);
}

/* ------------------------------------------------------------------------
 * Parked clients and identities
 * ---------------------------------------------------------------------- */
int tmd_park_client(struct tmd *d, tmem_client_t *c, uint32_t uid, uint32_t gid,
                    const char *name)
{
    struct tmd_conn *k = calloc(1, sizeof(*k));
    if (!k) {
        tmem_client_release(c);     /* ownership was taken, whatever the outcome */
        return -ENOMEM;
    }
    k->fd = -1;
    k->uid = uid;
    k->gid = gid;
    k->parked = true;
    k->c = c;
    k->since_ms = tmd_now_ms();
    tmd_sanitize_name(k->name, name, TMW_NAME_MAX);
    pthread_mutex_lock(&d->conns_lock);
    /* one parked client per (uid, name): a newer restore replaces it */
    struct tmd_conn *old = NULL;
    for (struct tmd_conn **pp = &d->conns; *pp; pp = &(*pp)->next) {
        if ((*pp)->parked && (*pp)->uid == uid && strcmp((*pp)->name, k->name) == 0) {
            old = *pp;
            *pp = old->next;
            d->nparked--;
            break;
        }
    }
    k->next = d->conns;
    d->conns = k;
    d->nparked++;
    pthread_mutex_unlock(&d->conns_lock);
    if (old) {
        tmd_log(LOG_INFO, "restored client for uid %u \"%s\" replaces an unclaimed one",
                (unsigned)uid, k->name);
        tmem_client_release(old->c);
        free(old);
    }
    return 0;
}

int tmd_client_identity(struct tmd *d, uint32_t client_id, uint32_t *uid, uint32_t *gid,
                        char name[TMW_NAME_MAX])
{
    int rc = -ENOENT;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn *k = d->conns; k; k = k->next) {
        if (k->c && tmem_client_id(k->c) == client_id) {
            *uid = k->uid;
            *gid = k->gid;
            memcpy(name, k->name, TMW_NAME_MAX);
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&d->conns_lock);
    return rc;
}

/* ------------------------------------------------------------------------
 * Figures
 * ---------------------------------------------------------------------- */
struct tmd_conn *tmd_conn_borrow(struct tmd *d, uint32_t client_id, int *fd,
                                 struct tmd_lent **lent)
{
    struct tmd_conn *got = NULL;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn *k = d->conns; k && !got; k = k->next) {
        if (k->ready && !k->parked && k->lent && !k->borrowed && k->c &&
            tmem_client_id(k->c) == client_id) {
            k->borrowed = true;
            epoll_ctl(epfd, EPOLL_CTL_DEL, k->fd, NULL);
            *fd = k->fd;
            *lent = k->lent;
            got = k;
        }
    }
    pthread_mutex_unlock(&d->conns_lock);
    return got;
}

void tmd_conn_return(struct tmd *d, struct tmd_conn *k)
{
    pthread_mutex_lock(&d->conns_lock);
    k->borrowed = false;
    /* level-triggered: an end that came meanwhile is seen at once */
    epoll_add(k->fd, (uint64_t)(uintptr_t)k, EPOLLIN | EPOLLRDHUP);
    pthread_mutex_unlock(&d->conns_lock);
}

int tmd_lent_apply(struct tmd *d, uint32_t client_id,
                   void (*fn)(struct tmd *d, struct tmd_lent *l, void *arg), void *arg)
{
    int rc = -ENOENT;
    pthread_mutex_lock(&d->conns_lock);
    for (struct tmd_conn *k = d->conns; k; k = k->next) {
        if (k->lent && k->c && (client_id == TMEM_CLIENT_ALL || tmem_client_id(k->c) == client_id)) {
            fn(d, k->lent, arg);
            rc = 0;
        }
    }
    pthread_mutex_unlock(&d->conns_lock);
    return rc;
}

/* Adds what a client with lent memory reports to the engine's totals. */
static void add_report(tmem_stats_t *e, const struct tmd_lend_client *r)
{
#define REP_ADD(f) e->f += r->rep[TMW_REP_##f];
    TMW_REPORT_FIELDS(REP_ADD)
#undef REP_ADD
}

void tmd_stats_snapshot(struct tmd *d, struct tmw_ctl_stats *o, bool fresh)
{
    memset(o, 0, sizeof(*o));
    if (fresh && tmd_lending(d))
        tmd_lend_refresh(d, 100);
    /* the limit before what is held: the governor lowers it only once the
     * memory is given back, so the two read in this order agree */
    o->gov_limit = atomic_load(&d->gov.limit);
    tmem_stats_get(d->engine, &o->engine);
    o->uptime_ms = tmd_now_ms() - d->start_ms;
    o->accepted = atomic_load(&d->n.accepted);
    o->refused_conn = atomic_load(&d->n.refused_conn);
    o->bad_msgs = atomic_load(&d->n.bad_msgs);
    o->bad_requests = atomic_load(&d->n.bad_requests);
    o->requests = atomic_load(&d->n.requests);
    o->worker_sleeps = atomic_load(&d->n.worker_sleeps);
    o->worker_wakeups = atomic_load(&d->n.worker_wakeups);
    o->worker_empty_wakeups = atomic_load(&d->n.worker_empty_wakeups);
    o->worker_cpu_ns = atomic_load(&d->n.worker_cpu_ns);
    o->worker_throttles = atomic_load(&d->n.worker_throttles);
    o->ctl_refused = atomic_load(&d->n.ctl_refused);
    pthread_mutex_lock(&d->conns_lock);
    o->connections = d->nconns;
    o->parked = d->nparked;
    for (struct tmd_conn *k = d->conns; k; k = k->next) {
        o->requests += atomic_load(&k->st.requests);
        o->bad_requests += atomic_load(&k->st.bad_requests);
        o->worker_sleeps += atomic_load(&k->st.sleeps);
        o->worker_wakeups += atomic_load(&k->st.wakeups);
        o->worker_empty_wakeups += atomic_load(&k->st.empty_wakeups);
        o->worker_cpu_ns += atomic_load(&k->st.cpu_ns);
        o->worker_throttles += atomic_load(&k->st.throttles);
        o->throttled += atomic_load(&k->st.throttled) != 0;
        if (k->lent) {
            struct tmd_lend_client r;
            tmd_lend_report(d, k->lent, &r);
            add_report(&o->engine, &r);
        }
    }
    pthread_mutex_unlock(&d->conns_lock);
    tmd_lend_retired(d, &o->engine);        /* clients gone: their counters stay */
    o->lending = tmd_lending(d);
    struct tmd_lend_totals lt;
    tmd_lend_totals(d, &lt);
    o->lent_bytes[0] = lt.lent_bytes[0];
    o->lent_bytes[1] = lt.lent_bytes[1];
    o->lend_grown = lt.grown;
    o->lend_refused = lt.refused;
    o->lend_returned = lt.returned;
    o->lend_revoked = lt.revoked;
    o->lend_bad = lt.bad;
    o->lend_shrinks_asked = lt.shrinks_asked;
    o->lend_adopted_units = lt.adopted_units;
    o->lend_adopt_refused = lt.adopt_refused;
    if (o->lending) {       /* the memory the daemon holds: its engine's and what it lent */
        o->engine.bytes_held += lt.lent_bytes[0] + lt.lent_bytes[1];
        o->engine.max_bytes = o->gov_limit;
        o->engine.frames_held += (lt.lent_bytes[0] + lt.lent_bytes[1]) / TMEM_PAGE_SIZE;
    }
    o->gov_max = d->cfg.max_memory;
    o->gov_reserve = d->cfg.reserve;
    o->gov_mem_available = atomic_load(&d->gov.mem_available);
    o->gov_psi_some_avg10_x100 = atomic_load(&d->gov.psi_x100);
    o->gov_shrinks = atomic_load(&d->gov.shrinks);
    o->gov_grows = atomic_load(&d->gov.grows);
    o->gov_pages_evicted = atomic_load(&d->gov.pages_evicted);
    o->gov_pages_released = atomic_load(&d->gov.pages_released);
    o->metrics_port = tmd_metrics_port(d);
}

int tmd_clients_snapshot(struct tmd *d, struct tmw_ctl_client **out, size_t *n, bool fresh)
{
    if (fresh && tmd_lending(d))
        tmd_lend_refresh(d, 100);
    pthread_mutex_lock(&d->conns_lock);
    size_t cap = (size_t)d->nconns + d->nparked, used = 0;
    struct tmw_ctl_client *a = calloc(cap ? cap : 1, sizeof(*a));
    if (!a) {
        pthread_mutex_unlock(&d->conns_lock);
        return -ENOMEM;
    }
    for (struct tmd_conn *k = d->conns; k && used < cap; k = k->next) {
        if (!k->c)
            continue;
        struct tmw_ctl_client *r = &a[used];
        if (tmem_client_info(d->engine, tmem_client_id(k->c), &r->info) != 0)
            continue;
        r->pid = k->parked ? 0 : k->pid;
        r->uid = k->uid;
        r->gid = k->gid;
        r->parked = k->parked;
        r->requests = atomic_load(&k->st.requests);
        r->bad_requests = atomic_load(&k->st.bad_requests);
        r->wakeups = atomic_load(&k->st.wakeups);
        r->empty_wakeups = atomic_load(&k->st.empty_wakeups);
        r->worker_cpu_ns = atomic_load(&k->st.cpu_ns);
        r->throttles = atomic_load(&k->st.throttles);
        r->throttled = atomic_load(&k->st.throttled) != 0;
        if (k->lent) {
            struct tmd_lend_client rep;
            tmd_lend_report(d, k->lent, &rep);
            tmem_client_info_t *ci = &r->info;
            const uint64_t *v = rep.rep;
            ci->weight = rep.weight;
            ci->nr_pools += (uint32_t)v[TMW_REP_pools];
            ci->ephemeral_pages += v[TMW_REP_ephemeral_pages];
            ci->persistent_pages += v[TMW_REP_persistent_pages];
            ci->puts += v[TMW_REP_puts];
            ci->puts_ok += v[TMW_REP_puts_ok];
            ci->gets += v[TMW_REP_gets];
            ci->gets_hit += v[TMW_REP_gets_hit];
            ci->flushes += v[TMW_REP_flushes];
            ci->evicted += rep.evicted;
            ci->refused_nomem += v[TMW_REP_refused_nomem];
            ci->refused_quota += v[TMW_REP_refused_quota];
            ci->refused_frozen += v[TMW_REP_refused_frozen];
            ci->compressed_pages += rep.compressed_pages;
            ci->compressed_bytes += rep.compressed_bytes;
            ci->compress_poor += v[TMW_REP_compress_poor];
            r->lent = 1;
            r->lent_bytes[0] = rep.lent_bytes[0];
            r->lent_bytes[1] = rep.lent_bytes[1];
            r->meta_bytes = v[TMW_REP_meta_bytes];
            r->oldest_eph_ms = rep.oldest_eph_ms;
            r->revoked_units = rep.st.revoked;
        }
        used++;
    }
    pthread_mutex_unlock(&d->conns_lock);
    *out = a;
    *n = used;
    return 0;
}
