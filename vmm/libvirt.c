/* SPDX-License-Identifier: Apache-2.0 */
#include <dlfcn.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include "cleanup.h"
#include "libvirt.h"

/* ---- libvirt, loaded on first use --------------------------------------- */

/* The functions we call, by the name libvirt.so.0 exports them. */
#define LIBVIRT_FUNCTIONS(X)                                                                       \
        X(virInitialize)                                                                           \
        X(virEventRegisterImpl)                                                                    \
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
        X(virDomainFree)

struct api {
#define FIELD(name) __typeof__(name) *name;
        LIBVIRT_FUNCTIONS(FIELD)
#undef FIELD
};

/* libvirt's event implementation and library state are process-wide: so is
 * this. One shim serves one pod with one loop. */
static struct {
        void *dl;
        struct api api;
        struct us_loop *loop; /* the loop libvirt's events run on */
        struct lv_handle *handles;
        struct lv_timeout *timeouts;
        int next_id;
} lv;

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

/* libvirt's last error, as ours. */
static int lv_fail(struct us_error **err, int errnum, const char *what)
{
        const char *msg = lv.dl ? lv.api.virGetLastErrorMessage() : NULL;
        return us_error_msg(err, errnum, "%s: %s", what, msg ? msg : "unknown libvirt error");
}

/* ---- libvirt's events on our loop --------------------------------------- */

struct lv_handle {
        struct lv_handle *next;
        int id, fd, events; /* VIR_EVENT_HANDLE_* wanted */
        virEventHandleCallback cb;
        void *opaque;
        virFreeCallback ff;
        struct us_loop_source *src; /* NULL while no event is wanted */
};

struct lv_timeout {
        struct lv_timeout *next;
        int id, ms; /* -1: disabled; 0: as soon as possible, again and again */
        virEventTimeoutCallback cb;
        void *opaque;
        virFreeCallback ff;
        struct us_loop_source *src;
};

/* libvirt's free callbacks must not run inside its remove calls (it may
 * hold its own locks there): they run from the loop, next. */
struct deferred_free {
        virFreeCallback ff;
        void *opaque;
};

static void run_deferred_free(struct us_loop_source *src, void *userdata)
{
        struct deferred_free *d = userdata;
        (void)src;
        d->ff(d->opaque);
        free(d);
}

static void free_later(virFreeCallback ff, void *opaque)
{
        if (!ff)
                return;
        struct deferred_free *d = malloc(sizeof(*d));
        if (d) {
                d->ff = ff;
                d->opaque = opaque;
                if (us_loop_add_timer(lv.loop, 0, run_deferred_free, d, NULL, NULL) == 0)
                        return;
                free(d);
        }
        /* Cannot defer: leak libvirt's small object rather than risk its
         * lock order. */
}

static uint32_t to_epoll(int events)
{
        return (events & VIR_EVENT_HANDLE_READABLE ? EPOLLIN : 0) |
               (events & VIR_EVENT_HANDLE_WRITABLE ? EPOLLOUT : 0);
}

static int from_epoll(uint32_t e)
{
        return (e & EPOLLIN ? VIR_EVENT_HANDLE_READABLE : 0) |
               (e & EPOLLOUT ? VIR_EVENT_HANDLE_WRITABLE : 0) |
               (e & EPOLLERR ? VIR_EVENT_HANDLE_ERROR : 0) |
               (e & EPOLLHUP ? VIR_EVENT_HANDLE_HANGUP : 0);
}

static void handle_ready(struct us_loop_source *src, int fd, uint32_t events, void *userdata)
{
        struct lv_handle *h = userdata;
        (void)src;
        h->cb(h->id, fd, from_epoll(events), h->opaque);
}

/* Watches the fd while events are wanted; with none, it is not in epoll at
 * all (epoll would report a hangup even with an empty mask, again and
 * again). */
static int handle_arm(struct lv_handle *h)
{
        uint32_t want = to_epoll(h->events);
        if (!want) {
                h->src = us_loop_source_remove(h->src);
                return 0;
        }
        if (h->src)
                return us_loop_source_set_events(h->src, want, NULL);
        return us_loop_add_fd(lv.loop, h->fd, want, handle_ready, h, &h->src, NULL);
}

static int add_handle(int fd, int events, virEventHandleCallback cb, void *opaque,
                      virFreeCallback ff)
{
        struct lv_handle *h = calloc(1, sizeof(*h));
        if (!h)
                return -1;
        *h = (struct lv_handle){.id = ++lv.next_id,
                                .fd = fd,
                                .events = events,
                                .cb = cb,
                                .opaque = opaque,
                                .ff = ff};
        if (handle_arm(h) < 0) {
                free(h);
                return -1;
        }
        h->next = lv.handles;
        lv.handles = h;
        return h->id;
}

static struct lv_handle *handle_find(int id)
{
        for (struct lv_handle *h = lv.handles; h; h = h->next)
                if (h->id == id)
                        return h;
        return NULL;
}

static void update_handle(int id, int events)
{
        struct lv_handle *h = handle_find(id);
        if (h) {
                h->events = events;
                (void)handle_arm(h);
        }
}

static int remove_handle(int id)
{
        for (struct lv_handle **pp = &lv.handles; *pp; pp = &(*pp)->next) {
                struct lv_handle *h = *pp;
                if (h->id != id)
                        continue;
                *pp = h->next;
                us_loop_source_remove(h->src);
                free_later(h->ff, h->opaque);
                free(h);
                return 0;
        }
        return -1;
}

static void timeout_fired(struct us_loop_source *src, void *userdata);

static int timeout_arm(struct lv_timeout *t)
{
        t->src = us_loop_source_remove(t->src);
        if (t->ms < 0)
                return 0;
        return us_loop_add_timer(lv.loop, (uint64_t)t->ms, timeout_fired, t, &t->src, NULL);
}

static void timeout_fired(struct us_loop_source *src, void *userdata)
{
        struct lv_timeout *t = userdata;
        int id = t->id;
        (void)src;
        /* One-shot on our side, periodic on libvirt's: re-armed first, as
         * the callback may change or remove it. */
        t->src = NULL;
        (void)timeout_arm(t);
        t->cb(id, t->opaque);
}

static int add_timeout(int ms, virEventTimeoutCallback cb, void *opaque, virFreeCallback ff)
{
        struct lv_timeout *t = calloc(1, sizeof(*t));
        if (!t)
                return -1;
        *t = (struct lv_timeout){
                .id = ++lv.next_id, .ms = ms, .cb = cb, .opaque = opaque, .ff = ff};
        if (timeout_arm(t) < 0) {
                free(t);
                return -1;
        }
        t->next = lv.timeouts;
        lv.timeouts = t;
        return t->id;
}

static void update_timeout(int id, int ms)
{
        for (struct lv_timeout *t = lv.timeouts; t; t = t->next)
                if (t->id == id) {
                        t->ms = ms;
                        (void)timeout_arm(t);
                        return;
                }
}

static int remove_timeout(int id)
{
        for (struct lv_timeout **pp = &lv.timeouts; *pp; pp = &(*pp)->next) {
                struct lv_timeout *t = *pp;
                if (t->id != id)
                        continue;
                *pp = t->next;
                us_loop_source_remove(t->src);
                free_later(t->ff, t->opaque);
                free(t);
                return 0;
        }
        return -1;
}

static int events_on(struct us_loop *loop, struct us_error **err)
{
        if (lv.loop == loop)
                return 0;
        if (lv.loop)
                return us_error_msg(err, EBUSY,
                                    "libvirt's events already run on another loop of this process");
        lv.loop = loop;
        lv.api.virEventRegisterImpl(add_handle, update_handle, remove_handle, add_timeout,
                                    update_timeout, remove_timeout);
        return 0;
}

/* ---- connection and domains --------------------------------------------- */

struct vmm_libvirt {
        virConnectPtr conn;
        vmm_libvirt_closed_fn closed;
        void *userdata;
        bool dead;                       /* libvirt closed it under us */
        int close_reason;                /* VIR_CONNECT_CLOSE_REASON_* */
        struct us_loop_source *reporter; /* reports the close from the loop */
};

struct vmm_libvirt_domain {
        struct vmm_libvirt *lv;
        virDomainPtr dom;
        int callback_id; /* -1: none */
        vmm_libvirt_event_fn event;
        void *userdata;
        struct us_loop_source *early_stop; /* reports a stop the watch missed */
};

static void report_closed(struct us_loop_source *src, void *userdata)
{
        struct vmm_libvirt *c = userdata;
        (void)src;
        c->reporter = NULL;
        if (c->closed)
                c->closed(c->userdata, c->close_reason);
}

/* libvirt calls this holding a lock that vmm_libvirt_close takes again:
 * the caller hears of it from the loop, where it may close. */
static void conn_closed(virConnectPtr conn, int reason, void *opaque)
{
        struct vmm_libvirt *c = opaque;
        (void)conn;
        if (c->dead)
                return;
        c->dead = true;
        c->close_reason = reason;
        (void)us_loop_add_timer(lv.loop, 0, report_closed, c, &c->reporter, NULL);
}

int vmm_libvirt_open(struct us_loop *loop, const char *uri, vmm_libvirt_closed_fn closed,
                     void *userdata, struct vmm_libvirt **ret, struct us_error **err)
{
        const char *u = uri ? uri : "qemu:///system";
        int r;

        if (!loop || !ret)
                return us_error_msg(err, EINVAL, "libvirt: no loop");
        if ((r = api_load(err)) < 0 || (r = events_on(loop, err)) < 0)
                return r;
        struct vmm_libvirt *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "libvirt connection");
        c->closed = closed;
        c->userdata = userdata;
        c->conn = lv.api.virConnectOpen(u);
        if (!c->conn) {
                free(c);
                return lv_fail(err, ECONNREFUSED, u);
        }
        if (lv.api.virConnectSetKeepAlive(c->conn, 5, 3) < 0 ||
            lv.api.virConnectRegisterCloseCallback(c->conn, conn_closed, c, NULL) < 0) {
                r = lv_fail(err, EIO, u);
                lv.api.virConnectClose(c->conn);
                free(c);
                return r;
        }
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

struct vmm_libvirt *vmm_libvirt_close(struct vmm_libvirt *c)
{
        if (!c)
                return NULL;
        c->reporter = us_loop_source_remove(c->reporter);
        (void)lv.api.virConnectUnregisterCloseCallback(c->conn, conn_closed);
        (void)lv.api.virConnectClose(c->conn);
        free(c);
        return NULL;
}

static int lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque)
{
        struct vmm_libvirt_domain *d = opaque;
        (void)conn;
        (void)dom;
        if (d->event)
                d->event(d->userdata, event, detail);
        return 0;
}

static void report_early_stop(struct us_loop_source *src, void *userdata)
{
        struct vmm_libvirt_domain *d = userdata;
        (void)src;
        d->early_stop = NULL;
        if (d->event)
                d->event(d->userdata, VIR_DOMAIN_EVENT_STOPPED, VIR_DOMAIN_EVENT_STOPPED_FAILED);
}

int vmm_libvirt_create(struct vmm_libvirt *c, const char *xml, bool paused,
                       vmm_libvirt_event_fn event, void *userdata, struct vmm_libvirt_domain **ret,
                       struct us_error **err)
{
        if (!c || !xml || !ret)
                return us_error_msg(err, EINVAL, "libvirt: no connection or domain");
        struct vmm_libvirt_domain *d = calloc(1, sizeof(*d));
        if (!d)
                return us_errorf(err, ENOMEM, "libvirt domain");
        d->lv = c;
        d->callback_id = -1;
        d->event = event;
        d->userdata = userdata;
        unsigned flags = VIR_DOMAIN_START_AUTODESTROY | (paused ? VIR_DOMAIN_START_PAUSED : 0);
        d->dom = lv.api.virDomainCreateXML(c->conn, xml, flags);
        if (!d->dom) {
                free(d);
                return lv_fail(err, EIO, "create domain");
        }
        /* Registered after the create: its Started event is gone by then,
         * and the caller knows it started from this return. */
        d->callback_id = lv.api.virConnectDomainEventRegisterAny(
                c->conn, d->dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                VIR_DOMAIN_EVENT_CALLBACK(lifecycle), d, NULL);
        if (d->callback_id < 0) {
                int r = lv_fail(err, EIO, "watch domain");
                (void)lv.api.virDomainDestroy(d->dom);
                lv.api.virDomainFree(d->dom);
                free(d);
                return r;
        }
        /* A domain that ended between the create and the watch (a guest
         * that powers off at once, a QEMU that died) sent its Stopped event
         * to nobody: report it from the loop, as the event would have
         * been. */
        int state = 0, reason = 0;
        if (lv.api.virDomainGetState(d->dom, &state, &reason, 0) == 0 &&
            (state == VIR_DOMAIN_SHUTOFF || state == VIR_DOMAIN_CRASHED))
                (void)us_loop_add_timer(lv.loop, 0, report_early_stop, d, &d->early_stop, NULL);
        *ret = d;
        return 0;
}

#define DOMAIN_CALL(fn, what)                                                                      \
        do {                                                                                       \
                if (!d)                                                                            \
                        return us_error_msg(err, EINVAL, "libvirt: no domain");                    \
                if (lv.api.fn(d->dom) < 0)                                                         \
                        return lv_fail(err, EIO, what);                                            \
                return 0;                                                                          \
        } while (0)

int vmm_libvirt_resume(struct vmm_libvirt_domain *d, struct us_error **err)
{
        DOMAIN_CALL(virDomainResume, "resume domain");
}

int vmm_libvirt_suspend(struct vmm_libvirt_domain *d, struct us_error **err)
{
        DOMAIN_CALL(virDomainSuspend, "suspend domain");
}

int vmm_libvirt_shutdown(struct vmm_libvirt_domain *d, struct us_error **err)
{
        DOMAIN_CALL(virDomainShutdown, "shut down domain");
}

int vmm_libvirt_destroy(struct vmm_libvirt_domain *d, struct us_error **err)
{
        DOMAIN_CALL(virDomainDestroy, "destroy domain");
}

int vmm_libvirt_state(struct vmm_libvirt_domain *d, int *ret_state, struct us_error **err)
{
        int state = 0, reason = 0;
        if (!d || !ret_state)
                return us_error_msg(err, EINVAL, "libvirt: no domain");
        if (lv.api.virDomainGetState(d->dom, &state, &reason, 0) < 0)
                return lv_fail(err, EIO, "domain state");
        *ret_state = state;
        return 0;
}

struct vmm_libvirt_domain *vmm_libvirt_domain_free(struct vmm_libvirt_domain *d)
{
        if (!d)
                return NULL;
        d->early_stop = us_loop_source_remove(d->early_stop);
        if (d->callback_id >= 0)
                (void)lv.api.virConnectDomainEventDeregisterAny(d->lv->conn, d->callback_id);
        lv.api.virDomainFree(d->dom);
        free(d);
        return NULL;
}
