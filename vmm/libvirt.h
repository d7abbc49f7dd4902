/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * A vm pod's connection to the node's libvirtd (docs/design-decisions.md,
 * "The vm kind: where libvirt runs"), with libvirt's events on the shim's
 * own loop.
 *
 * libvirt is loaded with dlopen() when the first connection opens: linked
 * into the shim, it cost every pod of every kind ~10 MB PSS (1.8 MB of it
 * private) and ~50 ms more per exec of the shim (measured here), for the
 * one kind that uses it.
 *
 * Events: libvirt's event implementation is process-wide
 * (virEventRegisterImpl has no context argument), so the first open binds
 * it to that loop for the process's life. One shim serves one pod, with one
 * loop: that is all it needs. libvirt's handles and timeouts then run as
 * sources of that loop; libvirt starts no thread of its own.
 *
 * The domain is created with VIR_DOMAIN_START_AUTODESTROY: it lives as long
 * as this connection, so a shim that dies (or stops answering libvirtd's
 * keepalive for ~30 s) takes its VM with it. libvirt's calls are synchronous
 * RPCs to libvirtd (create took 1-3.5 s here). The process must ignore
 * SIGPIPE (the shim does): a write to a connection libvirtd dropped is then
 * an error, not the end of the process.
 *
 * Threads: every call here, and the loop, on one thread. libvirt updates
 * its handles from the thread that makes an RPC, and the bridge edits the
 * loop directly: a call from another thread would race the loop's
 * dispatch. Moving the blocking calls off the loop needs the bridge to
 * hand its changes to the loop's thread first (libvirt's own loop wakes
 * itself through a pipe for this).
 *
 * The loop: bound on the first open for the process's life; it must keep
 * running, and outlive every connection (libvirt's deferred frees, and the
 * keepalive, run on it). A handle or timer libvirt cannot be given (an fd
 * epoll refuses, no memory for a timer) fails its add call, which libvirt
 * turns into an error of the call that needed it; one that cannot be
 * re-armed later stops being served, and the keepalive then ends the
 * connection, which is reported as closed.
 */

#include <stdbool.h>

#include "error.h"
#include "loop.h"

struct vmm_libvirt;
struct vmm_libvirt_domain;

/* The connection closed under us (libvirtd stopped, keepalive lost):
 * libvirt's reason, VIR_CONNECT_CLOSE_REASON_*. Every AUTODESTROY domain of
 * the connection is gone with it. Called from the loop, once: it may close
 * the connection. */
typedef void (*vmm_libvirt_closed_fn)(void *userdata, int reason);

/* A lifecycle event of a domain: VIR_DOMAIN_EVENT_* and its detail. */
typedef void (*vmm_libvirt_event_fn)(void *userdata, int event, int detail);

/* Opens uri (NULL: qemu:///system) with keepalive (5 s, 3 missed). */
int vmm_libvirt_open(struct us_loop *loop, const char *uri, vmm_libvirt_closed_fn closed,
                     void *userdata, struct vmm_libvirt **ret, struct us_error **err);
/* The network namespace of the libvirtd serving uri (NULL: qemu:///system)
 * on this node, "/proc/<pid>/ns/net" in buf: where it opens a tap by name.
 * Found from the daemon's socket (its peer credentials), so it works
 * whatever namespace the caller is in. A uri that does not name this
 * node's daemon (a remote one, a session daemon) is -EINVAL. */
int vmm_libvirt_daemon_netns(const char *uri, char *buf, size_t size, struct us_error **err);

/* Destroys the domain of that name if it still exists, and returns once
 * libvirtd has stopped it (0 also when there is none): for `shim delete`
 * after a shim died, whose domain libvirtd destroys on its own, maybe not
 * yet. A connection of its own, synchronous, no event loop needed. */
int vmm_libvirt_destroy_by_name(const char *uri, const char *name, struct us_error **err);

/* Closes; the connection's AUTODESTROY domains are destroyed by libvirtd.
 * Domains must be freed first. Returns NULL. */
struct vmm_libvirt *vmm_libvirt_close(struct vmm_libvirt *lv);

/* Creates and starts (paused: started paused) the domain of xml, tied to
 * lv's life. Its lifecycle events go to event(userdata, ...) from the loop,
 * after this returns; one that ended before its events were watched is
 * reported as Stopped (failed). libvirt's error message is in *err. */
int vmm_libvirt_create(struct vmm_libvirt *lv, const char *xml, bool paused,
                       vmm_libvirt_event_fn event, void *userdata, struct vmm_libvirt_domain **ret,
                       struct us_error **err);
int vmm_libvirt_resume(struct vmm_libvirt_domain *d, struct us_error **err);
int vmm_libvirt_suspend(struct vmm_libvirt_domain *d, struct us_error **err);
/* ACPI power button. */
int vmm_libvirt_shutdown(struct vmm_libvirt_domain *d, struct us_error **err);
int vmm_libvirt_destroy(struct vmm_libvirt_domain *d, struct us_error **err);
/* libvirt's VIR_DOMAIN_* state (running, paused, shutoff, ...). */
int vmm_libvirt_state(struct vmm_libvirt_domain *d, int *ret_state, struct us_error **err);
/* Stops its events; the domain keeps running (until the connection
 * closes). Returns NULL. */
struct vmm_libvirt_domain *vmm_libvirt_domain_free(struct vmm_libvirt_domain *d);
