/* SPDX-License-Identifier: Apache-2.0 */
#pragma once

/*
 * The OCI spec's linux.seccomp translated to a libseccomp filter.
 */

#include <seccomp.h>
#include <stdint.h>

#include "base/error.h"
#include "oci/oci-spec.h"

/*
 * Translates s into a new libseccomp filter context (*ret, owned by the
 * caller, freed with us_seccomp_free()). As runc does: syscall names this
 * libseccomp does not know are skipped; rules whose action equals the
 * default action are skipped (libseccomp refuses them); a rule with several
 * conditions on the same argument index becomes one rule per condition
 * (OR), since libseccomp cannot AND two conditions on one argument.
 * The native architecture and every one in s->architectures are added.
 * s->flags (SECCOMP_FILTER_FLAG_TSYNC, _LOG, _SPEC_ALLOW) become filter
 * attributes. SCMP_FLTATR_CTL_NNP is 0: the caller sets no_new_privs itself
 * as the spec says.
 * Errors (-EINVAL with a message naming the linux.seccomp path): unknown
 * architecture or flag, SCMP_ACT_NOTIFY (not supported), argument index > 5,
 * errnoRet > 65535; libseccomp failures come back as its negative errno.
 */
int us_seccomp_build(const struct us_oci_seccomp *s, scmp_filter_ctx *ret, struct us_error **err);

/* Builds the filter and loads it into the calling thread (all threads with
 * TSYNC). Call in the container process right before execve, after
 * PR_SET_NO_NEW_PRIVS when the spec asks for it (without no_new_privs the
 * caller needs CAP_SYS_ADMIN). */
int us_seccomp_load(const struct us_oci_seccomp *s, struct us_error **err);

/* Builds the filter and writes its BPF program to fd (for tests and
 * debugging). fd is not closed. */
int us_seccomp_export_bpf(const struct us_oci_seccomp *s, int fd, struct us_error **err);

/* Releases a context from us_seccomp_build(); accepts NULL; returns NULL. */
scmp_filter_ctx us_seccomp_free(scmp_filter_ctx ctx);
