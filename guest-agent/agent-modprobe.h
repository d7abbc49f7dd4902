/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * Kernel modules on demand: the agent is the guest kernel's modprobe
 * helper (docs/guest.md). At boot PID 1 copies the image's on-demand
 * modules (one pack of xz streams, and an index) out of the initramfs into a
 * read-only tmpfs at AGENT_MODULE_DIR that only the agent's root reaches,
 * and points /proc/sys/kernel/modprobe at AGENT_MODULE_DIR "/modprobe", a
 * link to the agent's own binary. The kernel then runs that as
 * `modprobe -q -- NAME`; the agent, seeing argv[0], loads NAME (a module
 * name or an alias from the index) and its dependencies from the store,
 * and nothing else: a container cannot name a file.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

#define AGENT_MODULE_DIR      "/run/modules"
#define AGENT_MODULE_INDEX    "modules.idx"
#define AGENT_MODULE_PACK     "modules.pack"
#define AGENT_MODULE_PACK_MAX (256u << 20) /* pack bytes an index may address */
#define AGENT_MODINDEX_MAX    (1u << 20)   /* index file bytes */
#define AGENT_MODULE_XZ_MAX   (16u << 20)  /* compressed module bytes */
#define AGENT_MODULE_MAX      (64u << 20)  /* decompressed module bytes */
#define AGENT_MODNAME_MAX     255          /* a name or alias the kernel asks for */
#define AGENT_MODLOAD_MAX     64           /* modules one request may load */

/* The parsed index: "module NAME DEP..." (DEPs in load order), "file NAME
 * OFFSET SIZE" (NAME's xz stream: SIZE bytes at OFFSET in AGENT_MODULE_PACK,
 * both decimal) and "alias PATTERN NAME" lines; '#' lines and empty lines
 * are skipped. */
struct agent_modindex;

/* Parses text (len bytes, not NUL-terminated). Names are
 * [A-Za-z0-9_]{1,55}; patterns are printable without blanks. *ret is the
 * caller's (agent_modindex_free). */
int agent_modindex_parse(const char *text, size_t len, struct agent_modindex **ret,
                         struct us_error **err);
struct agent_modindex *agent_modindex_free(struct agent_modindex *idx);

/* What loading `want` takes: the module of that name ('-' read as '_'), or
 * else every module an alias pattern of that name matches, each after its
 * dependencies, each once. *ret_names (NULL-terminated, at most
 * AGENT_MODLOAD_MAX) point into idx; the array is the caller's (free()).
 * -ENOENT when nothing matches. */
int agent_modindex_resolve(const struct agent_modindex *idx, const char *want,
                           const char ***ret_names, struct us_error **err);

/* Where NAME's stream is in the pack: 0, or -ENOENT when the index has no
 * file line for it. SIZE is 1..AGENT_MODULE_XZ_MAX and OFFSET + SIZE at
 * most AGENT_MODULE_PACK_MAX. */
int agent_modindex_file(const struct agent_modindex *idx, const char *name, uint64_t *ret_offset,
                        uint64_t *ret_size);

/* PID 1, after the early mounts: sets up the store from the initramfs's
 * lib/modules/on-demand (initramfs: a directory fd of its root) and makes
 * the agent the kernel's modprobe helper. Returns the number of files and
 * bytes copied; 0 files when the image has no on-demand modules. */
int agent_modprobe_install(int initramfs, unsigned *ret_files, uint64_t *ret_bytes,
                           struct us_error **err);

/* argv[0] names the helper ("modprobe", any directory). */
bool agent_modprobe_invoked(const char *argv0);

/* The helper: `modprobe [-q] [--] NAME`. Returns the exit status. */
int agent_modprobe_main(int argc, char **argv);
