/* SPDX-License-Identifier: Apache-2.0 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "base/cleanup.h"
#include "libvirt.h"
#include "base/log.h"

/* ---- libvirt, loaded on first use --------------------------------------- */

/* The functions we call, by the name libvirt.so.0 exports them. */
#define LIBVIRT_FUNCTIONS(X)                                                                       \
        X(virInitialize)                                                                           \
        X(virEventRegisterDefaultImpl)                                                             \
        X(virEventRunDefaultImpl)                                                                  \
        X(virSetErrorFunc)                                                                         \
        X(virGetLastErrorMessage)                                                                  \
        X(virConnectOpen)                                                                          \
        X(virConnectClose)                                                                         \
        X(virConnectSetKeepAlive)                                                                  \
        X(virConnectRegisterCloseCallback)                                                         \
        X(virConnectUnregisterCloseCallback)                                                       \
        X(virConnectDomainEventRegisterAny)                                                        \
        X(virConnectDomainEventDeregisterAny)                                                      \
        X(virDomainCreateXML)                                                                      \
        X(virDomainResume)                                                                         \
        X(virDomainSuspend)                                                                        \
        X(virDomainShutdown)                                                                       \
        X(virDomainDestroy)                                                                        \
        X(virDomainGetState)                                                                       \
        X(virDomainLookupByName)                                                                   \
        X(virDomainListGetStats)                                                                   \
        X(virDomainStatsRecordListFree)                                                            \
        X(virDomainFree)

struct api {
#define FIELD(name) __typeof__(name) *name;
        LIBVIRT_FUNCTIONS(FIELD)
#undef FIELD
};

struct job;

/* libvirt's event implementation and library state are process-wide: so is
 * this. One shim serves one pod with one loop. */
static struct {
        void *dl;
        struct api api;
        /* Set once, on the loop's thread, before the threads start. */
        struct us_loop *loop; /* the loop every callback runs on */
        struct us_loop_mailbox *mailbox;
        /* The worker's queue. */
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct job *jobs, **jobs_tail;
        /* The loop's thread only. */
        struct vmm_libvirt *conns;
        unsigned next_id;
} lv = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void quiet_errors(void *userdata, virErrorPtr error)
{
        /* Errors are reported through us_error at each call, not printed. */
        (void)userdata;
        (void)error;
}

static int api_load(struct us_error **err)
{
        if (lv.dl)
                return 0;
        void *dl = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);
        if (!dl)
                return us_error_msg(err, ENOENT, "load libvirt (apt package libvirt0): %s",
                                    dlerror());
#define LOAD(name)                                                                                 \
        lv.api.name = (__typeof__(name) *)dlsym(dl, #name);                                        \
        if (!lv.api.name) {                                                                        \
                dlclose(dl);                                                                       \
                return us_error_msg(err, ENOENT, "libvirt.so.0 has no %s", #name);                 \
        }
        LIBVIRT_FUNCTIONS(LOAD)
#undef LOAD
        if (lv.api.virInitialize() < 0) {
                dlclose(dl);
                return us_error_msg(err, EIO, "initialise libvirt");
        }
        lv.api.virSetErrorFunc(NULL, quiet_errors);
        lv.dl = dl;
        return 0;
}

/* libvirt's last error (of this thread), as ours. */
static int lv_fail(struct us_error **err, int errnum, const char *what)
{
        const char *msg = lv.dl ? lv.api.virGetLastErrorMessage() : NULL;
        return us_error_msg(err, errnum, "%s: %s", what, msg ? msg : "unknown libvirt error");
}

/* ---- the loop's objects ------------------------------------------------ */

/* Fields marked "worker" are touched by the worker thread only (and by the
 * loop's thread before the first call on the object is queued, or after
 * its last one finished); the rest by the loop's thread only. */

struct vmm_libvirt {
        struct vmm_libvirt *next; /* lv.conns */
        unsigned id;              /* how the event thread names it */
        char *uri;
        vmm_libvirt_closed_fn closed;
        void *closed_userdata;
        bool dead; /* closed under us: reported */
        struct vmm_libvirt_domain *domains;
        virConnectPtr conn; /* worker; NULL until opened, or when that failed */
        char *open_error;   /* worker: why it did not open */
};

#define EARLY_EVENTS 8

struct vmm_libvirt_domain {
        struct vmm_libvirt_domain *next; /* its connection's domains */
        struct vmm_libvirt *c;
        unsigned id;
        vmm_libvirt_event_fn event;
        void *event_userdata;
        bool created; /* the create's done ran: events go out from then */
        bool freed;
        bool stop_seen; /* a Stopped event was delivered */
        /* Events that came before the create's done (the event thread does
         * not wait for the worker's report), delivered after it. */
        struct early_event {
                int event, detail;
        } early[EARLY_EVENTS];
        size_t n_early;
        virDomainPtr dom; /* worker; NULL when the create failed */
        int callback_id;  /* worker; -1: none */
};

/* What a libvirt callback of the event thread gets as its opaque: ids,
 * not pointers, as the objects may be gone when the loop reads the mail. */
struct ids {
        unsigned conn, dom;
};

static struct vmm_libvirt *conn_by_id(unsigned id)
{
        for (struct vmm_libvirt *c = lv.conns; c; c = c->next)
                if (c->id == id)
                        return c;
        return NULL;
}

static struct vmm_libvirt_domain *domain_by_ids(struct ids ids)
{
        struct vmm_libvirt *c = conn_by_id(ids.conn);
        for (struct vmm_libvirt_domain *d = c ? c->domains : NULL; d; d = d->next)
                if (d->id == ids.dom)
                        return d;
        return NULL;
}

/* ---- the worker ----------------------------------------------------------- */

/* A call: queued by the loop, made by the worker, reported back through
 * the mailbox (the mail is the job). */
struct job {
        struct us_loop_mail mail;
        struct job *next;
        void (*run)(struct job *j);    /* worker */
        void (*finish)(struct job *j); /* loop: reports and frees */
        struct vmm_libvirt *c;
        struct vmm_libvirt_domain *d;
        vmm_libvirt_done_fn done;
        vmm_libvirt_stats_fn stats_done;
        void *userdata;
        /* in */
        char *xml;
        unsigned flags;
        enum vmm_libvirt_action action;
        /* out (worker) */
        int r;
        struct us_error *err;
        bool ended_early; /* create: the domain had ended before it was watched */
        struct vmm_libvirt_stats stats;
};

static void job_free(struct job *j)
{
        us_error_free(j->err);
        free(j->xml);
        free(j);
}

static void job_finished(struct us_loop_mail *mail)
{
        struct job *j = (struct job *)mail;
        j->finish(j);
}

static void *worker(void *arg)
{
        (void)arg;
        for (;;) {
                pthread_mutex_lock(&lv.lock);
                while (!lv.jobs)
                        pthread_cond_wait(&lv.wake, &lv.lock);
                struct job *j = lv.jobs;
                lv.jobs = j->next;
                if (!lv.jobs)
                        lv.jobs_tail = &lv.jobs;
                pthread_mutex_unlock(&lv.lock);
                j->run(j);
                us_loop_mailbox_post(lv.mailbox, &j->mail, job_finished);
        }
        return NULL;
}

static void *event_thread(void *arg)
{
        (void)arg;
        for (;;)
                (void)lv.api.virEventRunDefaultImpl();
        return NULL;
}

static void submit(struct job *j)
{
        j->next = NULL;
        pthread_mutex_lock(&lv.lock);
        *lv.jobs_tail = j;
        lv.jobs_tail = &j->next;
        pthread_cond_signal(&lv.wake);
        pthread_mutex_unlock(&lv.lock);
}

static struct job *job_new(void (*run)(struct job *), void (*finish)(struct job *),
                           struct us_error **err)
{
        struct job *j = calloc(1, sizeof(*j));
        if (!j) {
                us_errorf(err, ENOMEM, "libvirt call");
                return NULL;
        }
        j->run = run;
        j->finish = finish;
        return j;
}

/* The threads, once per process, signals blocked in them (the loop's
 * thread takes its signals through a signalfd). */
static int threads_start(struct us_loop *loop, struct us_error **err)
{
        if (lv.loop == loop)
                return 0;
        if (lv.loop)
                return us_error_msg(err, EBUSY,
                                    "libvirt already answers another loop of this process");
        int r = us_loop_mailbox_new(loop, &lv.mailbox, err);
        if (r < 0)
                return r;
        if (lv.api.virEventRegisterDefaultImpl() < 0) {
                lv.mailbox = us_loop_mailbox_free(lv.mailbox);
                return lv_fail(err, EIO, "libvirt's event loop");
        }
        lv.jobs_tail = &lv.jobs;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pthread_t t;
        int e = pthread_create(&t, NULL, event_thread, NULL);
        if (e == 0) {
                pthread_detach(t);
                e = pthread_create(&t, NULL, worker, NULL);
                if (e == 0)
                        pthread_detach(t);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (e != 0)
                /* A lone event thread is harmless: nothing is registered
                 * with it without the worker. */
                return us_errorf(err, e, "start libvirt's threads");
        lv.loop = loop;
        return 0;
}

static void job_fail(struct job *j, int errnum, const char *what)
{
        j->r = lv_fail(&j->err, errnum, what);
}

/* ---- what the event thread hears ------------------------------------------- */

struct event_mail {
        struct us_loop_mail mail;
        struct ids ids;
        int event, detail;
};

static void deliver_event(struct vmm_libvirt_domain *d, int event, int detail)
{
        if (event == VIR_DOMAIN_EVENT_STOPPED)
                d->stop_seen = true;
        if (d->event)
                d->event(d->event_userdata, event, detail);
}

static void event_arrived(struct us_loop_mail *mail)
{
        struct event_mail *m = (struct event_mail *)mail;
        struct vmm_libvirt_domain *d = domain_by_ids(m->ids);
        if (d && !d->created) {
                if (d->n_early < EARLY_EVENTS)
                        d->early[d->n_early++] = (struct early_event){m->event, m->detail};
                else if (m->event == VIR_DOMAIN_EVENT_STOPPED)
                        /* The last one that matters most. */
                        d->early[EARLY_EVENTS - 1] = (struct early_event){m->event, m->detail};
        } else if (d) {
                deliver_event(d, m->event, m->detail);
        }
        free(m);
}

static int lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        (void)conn;
        (void)dom;
        struct event_mail *m = calloc(1, sizeof(*m));
        if (!m)
                return 0; /* lost: a Stopped one is seen at the next call's error */
        m->ids = *(const struct ids *)opaque;
        m->event = event;
        m->detail = detail;
        us_loop_mailbox_post(lv.mailbox, &m->mail, event_arrived);
        return 0;
}

static void closed_arrived(struct us_loop_mail *mail)
{
        struct event_mail *m = (struct event_mail *)mail;
        struct vmm_libvirt *c = conn_by_id(m->ids.conn);
        if (c && !c->dead) {
                c->dead = true;
                if (c->closed)
                        c->closed(c->closed_userdata, m->detail);
        }
        free(m);
}

static void conn_closed(virConnectPtr conn, int reason, void *opaque)
{
        (void)conn;
        struct event_mail *m = calloc(1, sizeof(*m));
        if (!m)
                return;
        m->ids = *(const struct ids *)opaque;
        m->detail = reason;
        us_loop_mailbox_post(lv.mailbox, &m->mail, closed_arrived);
}

/* ---- connection ----------------------------------------------------------- */

static void run_open(struct job *j)
{
        struct vmm_libvirt *c = j->c;
        struct ids *ids = malloc(sizeof(*ids));
        if (!ids) {
                j->r = us_errorf(&j->err, ENOMEM, "libvirt connection");
                return;
        }
        *ids = (struct ids){.conn = c->id};
        c->conn = lv.api.virConnectOpen(c->uri);
        if (!c->conn) {
                free(ids);
                job_fail(j, ECONNREFUSED, c->uri);
        } else if (lv.api.virConnectSetKeepAlive(c->conn, 5, 3) < 0 ||
                   lv.api.virConnectRegisterCloseCallback(c->conn, conn_closed, ids, free) < 0) {
                free(ids);
                job_fail(j, EIO, c->uri);
                lv.api.virConnectClose(c->conn);
                c->conn = NULL;
        }
        if (j->r < 0)
                c->open_error = strdup(us_error_text(j->err));
}

static void finish_plain(struct job *j)
{
        if (j->done)
                j->done(j->userdata, j->r, TAKE_PTR(j->err));
        job_free(j);
}

int vmm_libvirt_open(struct us_loop *loop, const char *uri, vmm_libvirt_closed_fn closed,
                     void *closed_userdata, vmm_libvirt_done_fn opened, void *userdata,
                     struct vmm_libvirt **ret, struct us_error **err)
{
        int r;
        if (!loop || !ret)
                return us_error_msg(err, EINVAL, "libvirt: no loop");
        if ((r = api_load(err)) < 0 || (r = threads_start(loop, err)) < 0)
                return r;
        struct vmm_libvirt *c = calloc(1, sizeof(*c));
        struct job *j = c ? job_new(run_open, finish_plain, err) : NULL;
        if (!c || !j || !(c->uri = strdup(uri ? uri : "qemu:///system"))) {
                free(c);
                free(j);
                return us_errorf(err, ENOMEM, "libvirt connection");
        }
        c->id = ++lv.next_id;
        c->closed = closed;
        c->closed_userdata = closed_userdata;
        c->next = lv.conns;
        lv.conns = c;
        j->c = c;
        j->done = opened;
        j->userdata = userdata;
        submit(j);
        *ret = c;
        return 0;
}

/* The system daemon's sockets: the modular one first, then libvirtd. */
static const char *const system_sockets[] = {"/run/libvirt/virtqemud-sock",
                                             "/run/libvirt/libvirt-sock"};

int vmm_libvirt_daemon_netns(const char *uri, char *buf, size_t size, struct us_error **err)
{
        const char *u = uri ? uri : "qemu:///system";
        const char *given = NULL;
        size_t given_len = 0;
        if (strncmp(u, "qemu:///system", 14) != 0 || (u[14] && u[14] != '?'))
                return us_error_msg(err, EINVAL,
                                    "libvirt URI %s: vm pods need this node's system daemon "
                                    "(qemu:///system)",
                                    u);
        const char *q = strstr(u, "socket=");
        if (q) {
                given = q + 7;
                given_len = strcspn(given, "&");
        }
        for (size_t i = 0; i < (given ? 1 : US_ELEMENTSOF(system_sockets)); i++) {
                struct sockaddr_un sa = {.sun_family = AF_UNIX};
                if (given) {
                        if (given_len >= sizeof(sa.sun_path))
                                return us_error_msg(err, ENAMETOOLONG, "libvirt socket %.*s",
                                                    (int)given_len, given);
                        memcpy(sa.sun_path, given, given_len);
                } else {
                        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", system_sockets[i]);
                }
                _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd < 0)
                        return us_errorf(err, errno, "socket");
                if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        continue;
                struct ucred cred;
                socklen_t len = sizeof(cred);
                if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.pid <= 0)
                        return us_errorf(err, errno ? errno : EPROTO, "libvirt daemon at %s",
                                         sa.sun_path);
                snprintf(buf, size, "/proc/%d/ns/net", (int)cred.pid);
                return 0;
        }
        return us_error_msg(err, ECONNREFUSED, "no libvirt daemon answers at %s",
                            given ? "the URI's socket" : "/run/libvirt/");
}

int vmm_libvirt_destroy_by_name(const char *uri, const char *name, struct us_error **err)
{
        const char *u = uri ? uri : "qemu:///system";
        int r = api_load(err);
        if (r < 0)
                return r;
        /* One call and done: no events, no keepalive, no loop. */
        virConnectPtr conn = lv.api.virConnectOpen(u);
        if (!conn)
                return lv_fail(err, ECONNREFUSED, u);
        virDomainPtr dom = lv.api.virDomainLookupByName(conn, name);
        r = 0;
        if (dom) {
                if (lv.api.virDomainDestroy(dom) < 0) {
                        int state = VIR_DOMAIN_NOSTATE, reason = 0;
                        /* Gone meanwhile (its own AUTODESTROY): what we wanted. */
                        if (lv.api.virDomainGetState(dom, &state, &reason, 0) == 0 &&
                            state != VIR_DOMAIN_SHUTOFF)
                                r = lv_fail(err, EIO, name);
                }
                lv.api.virDomainFree(dom);
        }
        lv.api.virConnectClose(conn);
        return r;
}

static void run_close(struct job *j)
{
        struct vmm_libvirt *c = j->c;
        if (!c->conn)
                return;
        (void)lv.api.virConnectUnregisterCloseCallback(c->conn, conn_closed);
        (void)lv.api.virConnectClose(c->conn);
}

static void finish_close(struct job *j)
{
        free(j->c->open_error);
        free(j->c->uri);
        free(j->c);
        job_free(j);
}

struct vmm_libvirt *vmm_libvirt_close(struct vmm_libvirt *c)
{
        if (!c)
                return NULL;
        while (c->domains)
                vmm_libvirt_domain_free(c->domains);
        for (struct vmm_libvirt **pp = &lv.conns; *pp; pp = &(*pp)->next)
                if (*pp == c) {
                        *pp = c->next;
                        break;
                }
        struct job *j = job_new(run_close, finish_close, NULL);
        if (!j) {
                /* Leaks the connection (libvirtd keeps it, and its
                 * domains, until the process ends) rather than close it
                 * under a call the worker may be making. */
                us_log_warn("libvirt: no memory to close connection %s", c->uri);
                return NULL;
        }
        j->c = c;
        submit(j);
        return NULL;
}

/* ---- domains ---------------------------------------------------------------- */

static void run_create(struct job *j)
{
        struct vmm_libvirt_domain *d = j->d;
        virConnectPtr conn = d->c->conn;
        if (!conn) {
                j->r = us_error_msg(&j->err, ENOTCONN,
                                    "create domain: no connection to libvirtd (%s)",
                                    d->c->open_error ? d->c->open_error : "it did not open");
                return;
        }
        struct ids *ids = malloc(sizeof(*ids));
        if (!ids) {
                j->r = us_errorf(&j->err, ENOMEM, "libvirt domain");
                return;
        }
        *ids = (struct ids){.conn = d->c->id, .dom = d->id};
        d->dom = lv.api.virDomainCreateXML(conn, j->xml, j->flags);
        if (!d->dom) {
                free(ids);
                job_fail(j, EIO, "create domain");
                return;
        }
        /* Registered after the create: its Started event is gone by then,
         * and the caller knows it started from done. */
        d->callback_id = lv.api.virConnectDomainEventRegisterAny(
                conn, d->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE, VIR_DOMAIN_EVENT_CALLBACK(lifecycle),
                ids, free);
        if (d->callback_id < 0) {
                free(ids);
                job_fail(j, EIO, "watch domain");
                (void)lv.api.virDomainDestroy(d->dom);
                lv.api.virDomainFree(d->dom);
                d->dom = NULL;
                return;
        }
        /* A domain that ended between the create and the watch (a guest
         * that powers off at once, a QEMU that died) sent its Stopped event
         * to nobody. */
        int state = 0, reason = 0;
        j->ended_early = lv.api.virDomainGetState(d->dom, &state, &reason, 0) == 0 &&
                         (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED);
}

static void finish_create(struct job *j)
{
        struct vmm_libvirt_domain *d = j->d;
        d->created = true;
        if (j->done)
                j->done(j->userdata, j->r, TAKE_PTR(j->err));
        /* done may have freed it: then nobody listens. */
        for (size_t i = 0; i < d->n_early && !d->freed; i++)
                deliver_event(d, d->early[i].event, d->early[i].detail);
        d->n_early = 0;
        if (j->r >= 0 && j->ended_early && !d->freed && !d->stop_seen)
                deliver_event(d, VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_FAILED);
        job_free(j);
}

int vmm_libvirt_create(struct vmm_libvirt *c, const char *xml, bool paused,
                       vmm_libvirt_event_fn event, void *event_userdata, vmm_libvirt_done_fn done,
                       void *userdata, struct vmm_libvirt_domain **ret, struct us_error **err)
{
        if (!c || !xml || !ret)
                return us_error_msg(err, EINVAL, "libvirt: no connection or domain");
        struct vmm_libvirt_domain *d = calloc(1, sizeof(*d));
        struct job *j = d ? job_new(run_create, finish_create, err) : NULL;
        if (!d || !j || !(j->xml = strdup(xml))) {
                free(d);
                if (j)
                        job_free(j);
                return us_errorf(err, ENOMEM, "libvirt domain");
        }
        d->c = c;
        d->id = ++lv.next_id;
        d->callback_id = -1;
        d->event = event;
        d->event_userdata = event_userdata;
        d->next = c->domains;
        c->domains = d;
        j->d = d;
        j->flags = VIR_DOMAIN_START_AUTODESTROY | (paused ? VIR_DOMAIN_START_PAUSED : 0);
        j->done = done;
        j->userdata = userdata;
        submit(j);
        *ret = d;
        return 0;
}

static const char *const action_names[] = {
        [VMM_LIBVIRT_RESUME] = "resume domain",
        [VMM_LIBVIRT_SUSPEND] = "suspend domain",
        [VMM_LIBVIRT_SHUTDOWN] = "shut down domain",
        [VMM_LIBVIRT_DESTROY] = "destroy domain",
};

static void run_act(struct job *j)
{
        virDomainPtr dom = j->d->dom;
        const char *what = action_names[j->action];
        if (!dom) {
                j->r = us_error_msg(&j->err, ESRCH, "%s: it was never created", what);
                return;
        }
        int r = -1;
        switch (j->action) {
        case VMM_LIBVIRT_RESUME:
                r = lv.api.virDomainResume(dom);
                break;
        case VMM_LIBVIRT_SUSPEND:
                r = lv.api.virDomainSuspend(dom);
                break;
        case VMM_LIBVIRT_SHUTDOWN: {
                int state = 0, reason = 0;
                if (lv.api.virDomainGetState(dom, &state, &reason, 0) == 0 &&
                    state == VIR_DOMAIN_PAUSED)
                        r = lv.api.virDomainDestroy(dom);
                else
                        r = lv.api.virDomainShutdown(dom);
                break;
        }
        case VMM_LIBVIRT_DESTROY:
                r = lv.api.virDomainDestroy(dom);
                break;
        }
        if (r < 0)
                job_fail(j, EIO, what);
}

int vmm_libvirt_act(struct vmm_libvirt_domain *d, enum vmm_libvirt_action action,
                    vmm_libvirt_done_fn done, void *userdata, struct us_error **err)
{
        if (!d || (unsigned)action >= US_ELEMENTSOF(action_names))
                return us_error_msg(err, EINVAL, "libvirt: no domain or action");
        struct job *j = job_new(run_act, finish_plain, err);
        if (!j)
                return -ENOMEM;
        j->d = d;
        j->action = action;
        j->done = done;
        j->userdata = userdata;
        submit(j);
        return 0;
}

static uint64_t param_u64(const virTypedParameter *p)
{
        switch (p->type) {
        case VIR_TYPED_PARAM_INT:
                return p->value.i < 0 ? 0 : (uint64_t)p->value.i;
        case VIR_TYPED_PARAM_UINT:
                return p->value.ui;
        case VIR_TYPED_PARAM_LLONG:
                return p->value.l < 0 ? 0 : (uint64_t)p->value.l;
        case VIR_TYPED_PARAM_ULLONG:
                return p->value.ul;
        default:
                return 0;
        }
}

/* One "block.<n>.<field>" parameter into its disk. */
static void disk_param(struct vmm_libvirt_stats *s, const virTypedParameter *p)
{
        char *end;
        unsigned long n = strtoul(p->field + 6, &end, 10);
        if (end == p->field + 6 || *end != '.' || n >= VMM_LIBVIRT_STATS_DISKS)
                return;
        struct vmm_libvirt_disk_stats *d = &s->disks[n];
        const char *f = end + 1;
        if (n >= s->n_disks)
                s->n_disks = n + 1;
        if (!strcmp(f, "name") && p->type == VIR_TYPED_PARAM_STRING && p->value.s)
                snprintf(d->name, sizeof(d->name), "%s", p->value.s);
        else if (!strcmp(f, "rd.bytes"))
                d->rd_bytes = param_u64(p);
        else if (!strcmp(f, "wr.bytes"))
                d->wr_bytes = param_u64(p);
        else if (!strcmp(f, "rd.reqs"))
                d->rd_reqs = param_u64(p);
        else if (!strcmp(f, "wr.reqs"))
                d->wr_reqs = param_u64(p);
}

static void stats_of(struct vmm_libvirt_stats *s, const virTypedParameter *params, int n)
{
        for (int i = 0; i < n; i++) {
                const virTypedParameter *p = &params[i];
                const char *f = p->field;
                size_t len = strlen(f);
                if (!strcmp(f, "state.state"))
                        s->state = (int)param_u64(p);
                else if (!strcmp(f, "vcpu.current"))
                        s->vcpus = (unsigned)param_u64(p);
                else if (!strncmp(f, "vcpu.", 5) && len > 5 && !strcmp(f + len - 5, ".time"))
                        s->vcpu_time_ns += param_u64(p);
                else if (!strcmp(f, "balloon.current"))
                        s->memory_kib = param_u64(p);
                else if (!strncmp(f, "block.", 6) && strcmp(f, "block.count") != 0)
                        disk_param(s, p);
        }
}

static void run_stats(struct job *j)
{
        virDomainPtr dom = j->d->dom;
        if (!dom) {
                j->r = us_error_msg(&j->err, ESRCH, "domain stats: it was never created");
                return;
        }
        virDomainPtr doms[] = {dom, NULL};
        virDomainStatsRecordPtr *recs = NULL;
        /* NOWAIT: what a QEMU busy with another job (a guest's slow
         * monitor command) cannot answer now is left out, not waited for. */
        int n = lv.api.virDomainListGetStats(doms,
                                             VIR_DOMAIN_STATS_STATE | VIR_DOMAIN_STATS_BALLOON |
                                                     VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_BLOCK,
                                             &recs, VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT);
        if (n < 0) {
                job_fail(j, EIO, "domain stats");
                return;
        }
        for (int i = 0; i < n; i++)
                stats_of(&j->stats, recs ? recs[i]->params : NULL, recs ? recs[i]->nparams : 0);
        lv.api.virDomainStatsRecordListFree(recs);
}

static void finish_stats(struct job *j)
{
        if (j->stats_done)
                j->stats_done(j->userdata, j->r, TAKE_PTR(j->err), j->r < 0 ? NULL : &j->stats);
        job_free(j);
}

int vmm_libvirt_stats(struct vmm_libvirt_domain *d, vmm_libvirt_stats_fn done, void *userdata,
                      struct us_error **err)
{
        if (!d)
                return us_error_msg(err, EINVAL, "libvirt: no domain");
        struct job *j = job_new(run_stats, finish_stats, err);
        if (!j)
                return -ENOMEM;
        j->d = d;
        j->stats_done = done;
        j->userdata = userdata;
        submit(j);
        return 0;
}

static void run_domain_free(struct job *j)
{
        struct vmm_libvirt_domain *d = j->d;
        if (d->callback_id >= 0 && d->c->conn)
                (void)lv.api.virConnectDomainEventDeregisterAny(d->c->conn, d->callback_id);
        if (d->dom)
                lv.api.virDomainFree(d->dom);
}

static void finish_domain_free(struct job *j)
{
        free(j->d);
        job_free(j);
}

struct vmm_libvirt_domain *vmm_libvirt_domain_free(struct vmm_libvirt_domain *d)
{
        if (!d || d->freed)
                return NULL;
        d->freed = true;
        d->event = NULL;
        for (struct vmm_libvirt_domain **pp = &d->c->domains; *pp; pp = &(*pp)->next)
                if (*pp == d) {
                        *pp = d->next;
                        break;
                }
        struct job *j = job_new(run_domain_free, finish_domain_free, NULL);
        if (!j) {
                us_log_warn("libvirt: no memory to free a domain's handle");
                return NULL;
        }
        j->d = d;
        submit(j);
        return NULL;
}
