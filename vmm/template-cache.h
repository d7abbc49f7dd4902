/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The VM template cache (docs/vmm.md "VM templates", docs/security.md "VM
 * templates"): one directory per template key under the cache directory,
 *
 *   <dir>/lock               OFD locks, one byte per key (never removed)
 *   <dir>/<key>/manifest     vmm_template_manifest's text (its SHA-256 is the key)
 *   <dir>/<key>/state        QEMU's migration stream (no RAM: x-ignore-shared)
 *   <dir>/<key>/state.sha256 its digest, written once the save ended
 *   <dir>/<key>/holder.sock  the holder's socket (root only, 0600)
 *   <dir>/<key>/holder.pid   the holder's pid, for people (list reads the
 *                            socket's peer credentials instead)
 *   <dir>/.build-<key>-XXXXXX, <dir>/.rm-<key>-XXXXXX: an entry being built
 *                            or removed, never looked up
 *   <dir>/.failed-<key>      the key's failed builds, for the backoff
 *   <dir>/.failed-<key>.tmp-<pid>: the record being written by pid (then
 *                            renamed), never read
 *
 * The template's RAM is not a file: it is a memfd that the template's QEMU
 * wrote (shared), sealed once QEMU is gone (F_SEAL_WRITE, F_SEAL_GROW,
 * F_SEAL_SHRINK, F_SEAL_SEAL: QEMU 7.2 opens mem-path read-write, so a file
 * would let one clone's QEMU write every later clone's memory) and kept by
 * the holder, a small daemon per template that hands it to whoever connects
 * as root (SCM_RIGHTS) and never waits for anyone. Every clone maps that
 * memfd copy-on-write: the pages no clone wrote are shared by all.
 *
 * Nothing here waits for another caller: a key being built is "busy" at
 * once, for a second builder as for a lookup. The functions that talk to the
 * holder wait for its answer at most VMM_TEMPLATE_HOLDER_TIMEOUT_MS.
 */

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "base/error.h"
#include "template.h"

struct us_cgroup;
struct us_loop;

/* A lookup's outcomes besides success. A caller boots cold on any error
 * (with a warning); on VMM_TEMPLATE_BROKEN it may rebuild the key. */
#define VMM_TEMPLATE_NONE   (-ENOENT)  /* no template for the key */
#define VMM_TEMPLATE_BUSY   (-EBUSY)   /* being built or removed right now */
#define VMM_TEMPLATE_BROKEN (-EUCLEAN) /* there, but unusable: err says why */

/* How long a lookup waits for the holder's answer (it sends at once when it
 * runs; this only bounds a holder that is stopped or starved). */
#define VMM_TEMPLATE_HOLDER_TIMEOUT_MS 2000

struct vmm_template_cache;

/* Opens the cache directory, creating it (mode 0700, and its parents 0755)
 * if create is set. It must be a directory of the caller's euid that no
 * one else may write. holder_cgroup (may be NULL, not taken, must outlive
 * the cache): where holders started by builds through this cache live;
 * NULL: the builder's own cgroup. Returns 0 and *ret, or a negative errno
 * (-ENOENT without create, -EPERM for a directory of another owner or mode). */
int vmm_template_cache_open(const char *dir, bool create, struct us_cgroup *holder_cgroup,
                            struct vmm_template_cache **ret, struct us_error **err);
struct vmm_template_cache *vmm_template_cache_free(struct vmm_template_cache *c);
const char *vmm_template_cache_dir(const struct vmm_template_cache *c);

/* What a clone needs. Both fds O_CLOEXEC, owned by the entry. */
struct vmm_template_entry {
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        int state_fd;  /* the saved state, read-only, at offset 0 */
        int memory_fd; /* the template's RAM: the holder's sealed memfd */
        uint64_t memory_bytes;
        pid_t holder_pid;
};

#define VMM_TEMPLATE_ENTRY_INIT                                                                    \
        {                                                                                          \
                .state_fd = -1, .memory_fd = -1                                                    \
        }

/* Closes the fds (-1: none); the entry is VMM_TEMPLATE_ENTRY_INIT after. */
void vmm_template_entry_clear(struct vmm_template_entry *e);

/* The template for `in`, checked: the key is not being built or removed,
 * its manifest is in's, the state is there and has its recorded digest,
 * the holder answers as root with a memfd that carries all four seals and
 * is memory_mib large. Returns 0 and *ret (the caller's, clear it), or
 * VMM_TEMPLATE_NONE, VMM_TEMPLATE_BUSY, VMM_TEMPLATE_BROKEN (err names what
 * is wrong), -ETIMEDOUT (the holder did not answer in time), or another
 * negative errno (the inputs, the cache directory). Waits only for the
 * holder (VMM_TEMPLATE_HOLDER_TIMEOUT_MS). */
int vmm_template_lookup(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                        struct vmm_template_entry *ret, struct us_error **err);

/* A hit marks the entry used (vmm_template_evict's order). */

/* The same check for a key, without inputs: the manifest must hash to the
 * key. For `template list`; it does not mark the entry used. */
int vmm_template_check_key(struct vmm_template_cache *c, const char *key,
                           struct vmm_template_entry *ret, struct us_error **err);

/* --- Building ------------------------------------------------------------- */

struct vmm_template_build;

/* Starts building the template for `in`: takes the key's lock (without
 * waiting: VMM_TEMPLATE_BUSY if another build or removal holds it), makes
 * the entry's directory under a temporary name, an empty directory for the
 * template's 9p share, the RAM memfd (memory_mib large) and the state file.
 * The caller then boots the template (vmm_template_vm_config with
 * VMM_TEMPLATE_SOURCE and the fds below), waits for its agent, saves it
 * (vmm_vm_template_save to the state fd), quits QEMU and calls
 * vmm_template_build_publish; or frees the build to abandon it. An entry
 * already there for the key is replaced at publish. Returns 0 and *ret. */
int vmm_template_build_begin(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                             struct vmm_template_build **ret, struct us_error **err);

const char *vmm_template_build_key(const struct vmm_template_build *b);
int vmm_template_build_memory_fd(const struct vmm_template_build *b);
int vmm_template_build_state_fd(const struct vmm_template_build *b);
/* The empty directory for the template's 9p share (absolute). */
const char *vmm_template_build_share_dir(const struct vmm_template_build *b);

/* After the save succeeded and the template's QEMU exited: seals the RAM,
 * records the state's digest and the manifest, starts the holder (a daemon:
 * its own session, stdio on /dev/null, in the cache's holder cgroup),
 * removes a previous entry of the key (stopping its holder) and renames the
 * new one into place. Returns 0 and *ret_holder_pid (may be NULL); the build
 * is spent either way (free it). On failure nothing of it is left. */
int vmm_template_build_publish(struct vmm_template_build *b, pid_t *ret_holder_pid,
                               struct us_error **err);

/* Abandons an unpublished build (its directory removed, the lock released).
 * Accepts NULL; returns NULL. */
struct vmm_template_build *vmm_template_build_free(struct vmm_template_build *b);

/* Waits until the template's agent is ready (the caller's protocol: the
 * sandbox agent's Check), running `loop` meanwhile so the VM's logs drain.
 * Returns 0, or a negative errno with err. */
typedef int (*vmm_template_ready_fn)(struct vmm_vm *vm, struct us_loop *loop, int timeout_ms,
                                     void *userdata, struct us_error **err);

/* What a whole build measured, for the caller to print. */
struct vmm_template_build_result {
        char key[VMM_TEMPLATE_KEY_LEN + 1];
        pid_t holder_pid;
        double boot_s; /* QEMU start to the agent ready */
        double save_s; /* the save */
        double total_s;
        uint64_t state_bytes;
};

/* The whole build, synchronously (for `unishimctl template build`; the shim
 * drives the steps above on its loop): begin, a tap in a throwaway network
 * namespace, the template booted with `state_dir` (an existing private
 * directory for QEMU's sockets and logs) on its own event loop, as
 * VMM_TEMPLATE_UID_BASE + the caller's pid (vmm_template_userns_open), in
 * the cache's holder cgroup (when it has one), `ready`,
 * the save, QEMU's quit, publish. The caller must be root (the private
 * root, the namespace). Returns 0 and *ret, VMM_TEMPLATE_BUSY, or a
 * negative errno with err (the build is abandoned: nothing is left). */
int vmm_template_build(struct vmm_template_cache *c, const struct vmm_template_inputs *in,
                       const char *state_dir, vmm_template_ready_fn ready, void *userdata,
                       int timeout_ms, struct vmm_template_build_result *ret,
                       struct us_error **err);

/* --- Listing and removal -------------------------------------------------- */

/* The keys in the cache, sorted, each once: of entries, and with
 * leftovers set also of failed-build records and of what a builder or
 * remover that died left: temporary directories, a record's temporary
 * file (vmm_template_remove takes those away too). Returns 0, *ret (a
 * strv, free with us_strv_free) and *ret_n. */
int vmm_template_cache_keys(struct vmm_template_cache *c, bool leftovers, char ***ret,
                            size_t *ret_n, struct us_error **err);

/* The key's manifest as it is on disk, unchecked (for `template list`).
 * Returns 0 and *ret (caller frees), or a negative errno. */
int vmm_template_read_manifest(struct vmm_template_cache *c, const char *key, char **ret,
                               struct us_error **err);

/* Called by vmm_template_gc and vmm_template_remove for each thing they
 * removed: `name` (a key, a leftover's .build-/.rm- name, a .failed- record
 * or its .tmp- file) and why or what it was, in words. */
typedef void (*vmm_template_gc_fn)(const char *name, const char *why, void *userdata);

/* Removes all of the key: takes its lock (VMM_TEMPLATE_BUSY while a build
 * holds it), removes its failed-build record, stops the holder of its
 * entry (SIGTERM, then SIGKILL after 5 s) and removes the directory, and
 * removes what a builder or remover of the key that died left. Clones
 * running from it keep their mapping of the memfd. `removed` (may be NULL)
 * hears of each removal. Returns 0 (something was removed),
 * VMM_TEMPLATE_NONE (nothing of the key was there; err names the whole
 * key), VMM_TEMPLATE_BUSY or a negative errno (what was removed before it
 * stays removed). */
int vmm_template_remove(struct vmm_template_cache *c, const char *key, vmm_template_gc_fn removed,
                        void *userdata, struct us_error **err);

/* Removes what can never be used again: each entry that is stale (a file its manifest names is
 * gone or no longer stat()s as recorded, its host is not host_id, its layout is not this code's,
 * its manifest is unreadable or does not hash to its key: vmm_template_manifest_current; or the
 * key's name is not a directory: a symlink or a file, unlinked, not followed), the way
 * vmm_template_remove does (its holder stopped); the leftovers of keys whose lock is free (a
 * builder or remover that died: its directories, and a failed-build record's temporary file
 * whose writing pid is no process any more; a live writer's is never touched); and the failed-
 * build records of keys without an entry whose backoff is over (vmm_template_failure_read) or
 * that are malformed for good (not one whose read failed for a moment). A key whose lock is held
 * (busy) is not touched, nor is a live entry (broken or not: a build replaces a broken one); a
 * live key's lock is taken only to remove its leftovers (after a builder died: a lookup in that
 * moment is busy and boots cold), else never, so lookups are not made busy. host_id: this host's
 * (vmm_template_host_id_read). `removed` (may be NULL) hears of each removal. Returns 0, or the
 * first failure's negative errno with err (the other keys are collected all the same). */
int vmm_template_gc(struct vmm_template_cache *c, const char *host_id, vmm_template_gc_fn removed,
                    void *userdata, struct us_error **err);

/* Makes room for one more template: when the cache holds max entries or
 * more and keep (a key; NULL: none) is not one of them, removes the entry
 * used least recently (a lookup's hit, else its publish: the entry
 * directory's mtime), as vmm_template_remove does, provided it was not
 * used for idle_s seconds; a busy one is passed over for the next. Clones
 * running from it keep their mapping. `removed` (may be NULL) hears of the
 * removal. Returns 1 (one entry removed), 0 (no room needed, or none idle
 * long enough), or a negative errno (listing the cache). */
int vmm_template_evict(struct vmm_template_cache *c, const char *keep, size_t max, int64_t idle_s,
                       vmm_template_gc_fn removed, void *userdata, struct us_error **err);

/* --- Failed builds: a backoff ------------------------------------------- */

/* A key whose build failed is built again by a shim only after a backoff:
 * 60 s after the first failure, doubling with each one in a row, at most
 * an hour. <dir>/.failed-<key> records them ("<failures> <time>\n<why>\n",
 * time in seconds of CLOCK_REALTIME); a publish of the key, its removal
 * (rm) and gc once the backoff is over remove it. */
#define VMM_TEMPLATE_BACKOFF_MIN_S 60
#define VMM_TEMPLATE_BACKOFF_MAX_S 3600

struct vmm_template_failure {
        unsigned failures;   /* in a row, >= 1 */
        int64_t time;        /* the last one's, seconds (CLOCK_REALTIME) */
        int64_t retry_after; /* time + vmm_template_backoff_s(failures) */
        char why[256];       /* the last one's error, one line */
};

/* The backoff after `failures` failures in a row (0: none), seconds. */
int64_t vmm_template_backoff_s(unsigned failures);

/* Whether the record still holds a build back at `now` (seconds,
 * CLOCK_REALTIME). A record more than the longest backoff in the future
 * (the clock was set back) does not. */
bool vmm_template_backoff_held(const struct vmm_template_failure *f, int64_t now);

/* The key's failed-build record: 0 and *ret, VMM_TEMPLATE_NONE (none), or
 * a negative errno (-EINVAL: malformed; a caller treats it as none). */
int vmm_template_failure_read(struct vmm_template_cache *c, const char *key,
                              struct vmm_template_failure *ret, struct us_error **err);

/* Records one more failed build of the key at `now`, with why (may be
 * NULL; control characters become spaces). vmm_template_build does it on
 * any failure after it took the key's lock. The file is replaced whole
 * (rename). Returns 0 or a negative errno. */
int vmm_template_failure_record(struct vmm_template_cache *c, const char *key, const char *why,
                                int64_t now, struct us_error **err);

/* --- The throwaway network ------------------------------------------------- */

/* A tap device in a network namespace of its own, which nothing else
 * joins: the template's network (its guest never sends, but the device
 * must be there for the clones' layout). The namespace lives as long as the
 * tap's fd and goes with it. Forks a short-lived child (it enters the new
 * namespace; the caller stays where it is) and waits for it by pid. Needs
 * CAP_SYS_ADMIN and CAP_NET_ADMIN. The tap has the flags a pod's has
 * (IFF_TAP | IFF_NO_PI, no vnet header), which virtio-net's saved state
 * depends on. Returns 0 and *ret_fd (O_CLOEXEC, the caller's). */
int vmm_template_tap_open(int *ret_fd, struct us_error **err);

/* A template's QEMU is host uid and gid VMM_TEMPLATE_UID_BASE + the
 * builder's pid: one a live builder alone has (pids are below 2^22), below
 * the pods' QEMU uids (VMPOD_QEMU_UID_BASE, 0x60000000) and their uid
 * ranges, owning nothing on the host but the template's empty share. Not
 * host root: a QEMU that the template's guest took over must not own
 * root's files (the jail's /dev binds) nor signal root's processes. */
#define VMM_TEMPLATE_UID_BASE 0x5f000000u

/* A user namespace for a template's QEMU (vmm_template_instance.userns_fd):
 * its root is host uid and gid *ret_uid (VMM_TEMPLATE_UID_BASE + the
 * caller's pid) and no other id is mapped, so QEMU runs as a clone's does
 * (root of a user namespace, 9p with passthrough) without a pod's uid
 * range and without being the host's root. Forks a short-lived child.
 * Returns 0, *ret_fd (the namespace's fd, O_CLOEXEC, above stdio, the
 * caller's) and *ret_uid. */
int vmm_template_userns_open(int *ret_fd, uid_t *ret_uid, struct us_error **err);
