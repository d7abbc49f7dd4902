/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * OCI linux.resources.devices on cgroup v2: the rules are folded the way the
 * v1 devices controller (and runc's emulator) folds them, compiled to a
 * BPF_PROG_TYPE_CGROUP_DEVICE program and attached to the cgroup's
 * directory. Internal to libunishim (cgroup-apply.c and its tests); not
 * installed.
 *
 * Raw bpf(2) only, no libbpf. Needs a kernel with cgroup device programs
 * (4.15+) and BPF_F_ALLOW_MULTI; loading needs CAP_BPF/CAP_SYS_ADMIN.
 */

#include <linux/bpf.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "oci/oci-spec.h"

/* More rules than this are refused (the fold is quadratic in the rule
 * count; real specs have a few dozen). */
#define US_CG_DEVICES_MAX_RULES 4096u

/* Checks one rule exactly as the v1 path does: type 'a'/'b'/'c' (0 = 'a'),
 * access a subset of "rwm" (NULL or "" = "rwm"), major/minor -1 (any
 * negative) = wildcard or at most UINT32_MAX. index names the rule in the
 * error. Returns 0 or -EINVAL with *err set. */
int us_cg_device_rule_check(const struct us_oci_device_rule *rule, size_t index,
                            struct us_error **err);

/* A rule in the v1 devices.allow/deny syntax ("c 1:3 rwm"; a negative
 * number is "*"), into buf of n bytes: for the v1 files and for error
 * texts. */
void us_cg_device_rule_format(char *buf, size_t n, char type, int64_t major, int64_t minor,
                              const char *access);

/* Compiles rules (in spec order) to a cgroup device program: ctx is struct
 * bpf_cgroup_dev_ctx, r0 = 1 allows, 0 denies. Semantics are the v1
 * controller's (see docs/design-decisions.md): an 'a' rule resets to
 * allow-all or deny-all, other rules add or remove exceptions; with no 'a'
 * rule the default is deny. Pure: no syscalls.
 * On success *ret_insns (malloc'ed, caller frees) holds *ret_n instructions.
 * Returns 0, or -EINVAL with *err naming the bad rule. */
int us_cg_devices_compile(const struct us_oci_device_rule *rules, size_t n_rules,
                          struct bpf_insn **ret_insns, size_t *ret_n, struct us_error **err);

/* Loads insns (or takes the same program from this process's cache of
 * loaded programs) and makes it the only device program that this process can
 * see attached to the cgroup directory dirfd (other programs we may not open,
 * e.g. because of an LSM, are left alone; they can only deny more): the new
 * program is attached (BPF_F_ALLOW_MULTI) before the previously attached ones
 * are detached, so the cgroup is never without a filter. On failure nothing
 * is attached that was not before (detached old programs are re-attached).
 * dirfd stays the caller's. Returns 0 or a negative errno with *err set
 * (a load failure carries the verifier's log); -ENOSYS/-EPERM from the load
 * mean the kernel or the caller cannot do BPF at all. */
int us_cg_devices_attach(int dirfd, const struct bpf_insn *insns, size_t n_insns,
                         struct us_error **err);

/* Compiles and loads rules into this process's program cache ahead of
 * time, so that a later us_cg_devices_attach of the same rules loads
 * nothing. Returns 0 or a negative errno with *err set. */
int us_cg_devices_preload(const struct us_oci_device_rule *rules, size_t n_rules,
                          struct us_error **err);

/* us_cg_devices_compile + open dir + us_cg_devices_attach. */
int us_cg_devices_apply(const char *dir, const struct us_oci_device_rule *rules, size_t n_rules,
                        struct us_error **err);

/* Ids of the device programs attached directly to dirfd (not inherited),
 * at most max of them into ids; *ret_n is the total. Returns 0 or a negative
 * errno with *err set. */
int us_cg_devices_query(int dirfd, uint32_t *ids, size_t max, size_t *ret_n, struct us_error **err);
