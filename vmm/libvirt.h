/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A vm pod's connection to the node's libvirtd (docs/design-decisions.md,
 * "The vm kind: where libvirt runs"), answering on the shim's own loop.
 *
 * libvirt is loaded with dlopen() when the first connection opens: linked
 * into the shim, it cost every pod of every kind ~10 MB PSS (1.8 MB of it
 * private) and ~50 ms more per exec of the shim (measured here), for the
 * one kind that uses it.
 *
 * Threads: libvirt's API blocks (each call is an RPC to libvirtd: a create
 * took 1-3.5 s here, and a libvirtd that hangs holds a call until the
 * keepalive gives up), and the shim's loop must never wait. So libvirt
 * runs on two threads of its own, started with the first connection and
 * kept for the process's life (its event implementation is process-wide):
 *  - libvirt's own default event loop (keepalive, domain events, the
 *    connection's close), which only posts what it hears to the loop;
 *  - a worker that makes the calls, one at a time in the order given, and
 *    posts each one's end to the loop.
 * Every function here is for the loop's thread and returns at once; every
 * callback (done, events, closed) runs on the loop's thread. A call's done
 * runs exactly once, even when its domain or connection was freed
 * meanwhile: its userdata must live until then. Events stop at free.
 * The process must ignore SIGPIPE (the shim does): a write to a
 * connection libvirtd dropped is then an error, not the end of the
 * process. Children the shim forks meanwhile run only async-signal-safe
 * code or exec (glibc's fork keeps malloc and stdio usable there).
 *
 * The domain is created with VIR_DOMAIN_START_AUTODESTROY: it lives as
 * long as its connection, so a shim that dies (or stops answering
 * libvirtd's keepalive for ~15 s) takes its VM with it.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/loop.h"

struct vmm_libvirt;
struct vmm_libvirt_domain;

/* The connection closed under us (libvirtd stopped, keepalive lost):
 * libvirt's reason, VIR_CONNECT_CLOSE_REASON_*. Every AUTODESTROY domain of
 * the connection is gone with it. Called from the loop, once: it may close
 * the connection. */
typedef void (*vmm_libvirt_closed_fn)(void *userdata, int reason);

/* A lifecycle event of a domain: VIR_DOMAIN_EVENT_* and its detail. */
typedef void (*vmm_libvirt_event_fn)(void *userdata, int event, int detail);

/* A call's end: r is 0, or a negative errno with err (libvirt's own
 * message), which done frees. */
typedef void (*vmm_libvirt_done_fn)(void *userdata, int r, struct us_error *err);

/* Opens uri (NULL: qemu:///system) with keepalive (5 s, 3 missed);
 * opened(userdata, ...) says how that went. The connection is usable at
 * once: calls made meanwhile run after the open (and fail if it did).
 * closed(closed_userdata, ...) hears of a close under us. Fails at once
 * only without libvirt or memory. */
int vmm_libvirt_open(struct us_loop *loop, const char *uri, vmm_libvirt_closed_fn closed,
                     void *closed_userdata, vmm_libvirt_done_fn opened, void *userdata,
                     struct vmm_libvirt **ret, struct us_error **err);
/* The network namespace of the libvirtd serving uri (NULL: qemu:///system)
 * on this node, "/proc/<pid>/ns/net" in buf: where it opens a tap by name.
 * Found from the daemon's socket (its peer credentials), so it works
 * whatever namespace the caller is in. A uri that does not name this
 * node's daemon (a remote one, a session daemon) is -EINVAL. */
int vmm_libvirt_daemon_netns(const char *uri, char *buf, size_t size, struct us_error **err);

/* Destroys the domain of that name if it still exists, and returns once
 * libvirtd has stopped it (0 also when there is none): for `shim delete`
 * after a shim died, whose domain libvirtd destroys on its own, maybe not
 * yet. Synchronous, on a connection of its own: for a process with no
 * loop to keep serving. */
int vmm_libvirt_destroy_by_name(const char *uri, const char *name, struct us_error **err);

/* Closes once the calls made before have run; the connection's
 * AUTODESTROY domains are destroyed by libvirtd. Domains still open are
 * freed first. Returns NULL. */
struct vmm_libvirt *vmm_libvirt_close(struct vmm_libvirt *lv);

/* Creates and starts (paused: started paused) the domain of xml, tied to
 * lv's life; done(userdata, ...) says whether it was created (libvirt's
 * error message in err). *ret is the domain at once, to free in any case.
 * Its lifecycle events go to event(event_userdata, ...) after done; one
 * that ended before its events were watched is reported as Stopped
 * (failed). */
int vmm_libvirt_create(struct vmm_libvirt *lv, const char *xml, bool paused,
                       vmm_libvirt_event_fn event, void *event_userdata, vmm_libvirt_done_fn done,
                       void *userdata, struct vmm_libvirt_domain **ret, struct us_error **err);

enum vmm_libvirt_action {
        VMM_LIBVIRT_RESUME,
        VMM_LIBVIRT_SUSPEND,
        /* The ACPI power button; a paused domain, which cannot hear it, is
         * destroyed instead. */
        VMM_LIBVIRT_SHUTDOWN,
        VMM_LIBVIRT_DESTROY,
};

/* done NULL: nobody waits. Fails at once only without memory. */
int vmm_libvirt_act(struct vmm_libvirt_domain *d, enum vmm_libvirt_action action,
                    vmm_libvirt_done_fn done, void *userdata, struct us_error **err);

#define VMM_LIBVIRT_STATS_DISKS 8

/* What libvirt says of a running domain (virDomainListGetStats), without
 * waiting for a QEMU busy with another job: a field libvirt could not
 * answer is 0. */
struct vmm_libvirt_stats {
        int state;             /* VIR_DOMAIN_* (running, paused, shutoff, ...) */
        unsigned vcpus;        /* online */
        uint64_t vcpu_time_ns; /* the vCPU threads' time, all vCPUs */
        uint64_t memory_kib;   /* the guest's memory (balloon.current) */
        size_t n_disks;        /* the first VMM_LIBVIRT_STATS_DISKS */
        struct vmm_libvirt_disk_stats {
                char name[32]; /* the guest's device: vda, vdb, ... */
                uint64_t rd_bytes, wr_bytes, rd_reqs, wr_reqs;
        } disks[VMM_LIBVIRT_STATS_DISKS];
};

typedef void (*vmm_libvirt_stats_fn)(void *userdata, int r, struct us_error *err,
                                     const struct vmm_libvirt_stats *stats);

int vmm_libvirt_stats(struct vmm_libvirt_domain *d, vmm_libvirt_stats_fn done, void *userdata,
                      struct us_error **err);

/* Stops its events at once; the calls made before still run and report.
 * The domain keeps running (until the connection closes). Returns NULL. */
struct vmm_libvirt_domain *vmm_libvirt_domain_free(struct vmm_libvirt_domain *d);
