/* SPDX-License-Identifier: Apache-2.0 */
/*
 * linux.seccomp → libseccomp, following runc's translation
 * (libcontainer/seccomp/seccomp_linux.go) where the runtime spec leaves
 * room: unknown syscalls skipped, default-action rules skipped, repeated
 * argument indexes OR'ed as separate rules.
 */
#include "seccomp-filter.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/cleanup.h"

DEFINE_CLEANUP(scmp_filter_ctx, seccomp_release)

#define MAX_ERRNO_RET 0xffffu

static const char *action_path_name(enum us_oci_seccomp_action a)
{
        switch (a) {
        case US_SECCOMP_ACT_KILL:
                return "SCMP_ACT_KILL";
        case US_SECCOMP_ACT_KILL_PROCESS:
                return "SCMP_ACT_KILL_PROCESS";
        case US_SECCOMP_ACT_TRAP:
                return "SCMP_ACT_TRAP";
        case US_SECCOMP_ACT_ERRNO:
                return "SCMP_ACT_ERRNO";
        case US_SECCOMP_ACT_TRACE:
                return "SCMP_ACT_TRACE";
        case US_SECCOMP_ACT_ALLOW:
                return "SCMP_ACT_ALLOW";
        case US_SECCOMP_ACT_LOG:
                return "SCMP_ACT_LOG";
        case US_SECCOMP_ACT_NOTIFY:
                return "SCMP_ACT_NOTIFY";
        }
        return "unknown";
}

/* where: the JSON path of the action, for messages. */
static int resolve_action(enum us_oci_seccomp_action a, bool has_errno_ret, uint32_t errno_ret,
                          const char *where, uint32_t *ret, struct us_error **err)
{
        if (has_errno_ret && errno_ret > MAX_ERRNO_RET)
                return us_error_msg(err, EINVAL, "%s: errnoRet %u out of range (max %u)", where,
                                    errno_ret, MAX_ERRNO_RET);
        uint32_t ret_code = has_errno_ret ? errno_ret : EPERM;
        switch (a) {
        case US_SECCOMP_ACT_KILL:
                *ret = SCMP_ACT_KILL;
                return 0;
        case US_SECCOMP_ACT_KILL_PROCESS:
                *ret = SCMP_ACT_KILL_PROCESS;
                return 0;
        case US_SECCOMP_ACT_TRAP:
                *ret = SCMP_ACT_TRAP;
                return 0;
        case US_SECCOMP_ACT_ERRNO:
                *ret = SCMP_ACT_ERRNO(ret_code);
                return 0;
        case US_SECCOMP_ACT_TRACE:
                *ret = SCMP_ACT_TRACE(ret_code);
                return 0;
        case US_SECCOMP_ACT_ALLOW:
                *ret = SCMP_ACT_ALLOW;
                return 0;
        case US_SECCOMP_ACT_LOG:
                *ret = SCMP_ACT_LOG;
                return 0;
        case US_SECCOMP_ACT_NOTIFY:
                break;
        }
        return us_error_msg(err, ENOTSUP, "%s: %s is not supported", where, action_path_name(a));
}

static int resolve_op(enum us_oci_seccomp_op op, enum scmp_compare *ret)
{
        switch (op) {
        case US_SECCOMP_OP_NE:
                *ret = SCMP_CMP_NE;
                return 0;
        case US_SECCOMP_OP_LT:
                *ret = SCMP_CMP_LT;
                return 0;
        case US_SECCOMP_OP_LE:
                *ret = SCMP_CMP_LE;
                return 0;
        case US_SECCOMP_OP_EQ:
                *ret = SCMP_CMP_EQ;
                return 0;
        case US_SECCOMP_OP_GE:
                *ret = SCMP_CMP_GE;
                return 0;
        case US_SECCOMP_OP_GT:
                *ret = SCMP_CMP_GT;
                return 0;
        case US_SECCOMP_OP_MASKED_EQ:
                *ret = SCMP_CMP_MASKED_EQ;
                return 0;
        }
        return -EINVAL;
}

/* "SCMP_ARCH_X86_64" → libseccomp's "x86_64" → token; 0 when unknown. */
static uint32_t resolve_arch(const char *name)
{
        static const char prefix[] = "SCMP_ARCH_";
        char lower[32];
        size_t n = strlen(name);
        if (n <= sizeof(prefix) - 1 || n - (sizeof(prefix) - 1) >= sizeof(lower) ||
            strncmp(name, prefix, sizeof(prefix) - 1) != 0)
                return 0;
        const char *s = name + sizeof(prefix) - 1;
        size_t i = 0;
        for (; s[i]; i++)
                lower[i] = (char)tolower((unsigned char)s[i]);
        lower[i] = '\0';
        return seccomp_arch_resolve_name(lower);
}

static const struct {
        const char *name;
        enum scmp_filter_attr attr;
} filter_flags[] = {
        {"SECCOMP_FILTER_FLAG_TSYNC", SCMP_FLTATR_CTL_TSYNC},
        {"SECCOMP_FILTER_FLAG_LOG", SCMP_FLTATR_CTL_LOG},
        {"SECCOMP_FILTER_FLAG_SPEC_ALLOW", SCMP_FLTATR_CTL_SSB},
};

static int apply_flag(scmp_filter_ctx ctx, size_t i, const char *name, struct us_error **err)
{
        for (size_t j = 0; j < US_ELEMENTSOF(filter_flags); j++) {
                if (strcmp(filter_flags[j].name, name) != 0)
                        continue;
                int r = seccomp_attr_set(ctx, filter_flags[j].attr, 1);
                if (r < 0)
                        return us_errorf(err, r, "linux.seccomp.flags[%zu]: %s", i, name);
                return 0;
        }
        return us_error_msg(err, EINVAL, "linux.seccomp.flags[%zu]: unknown seccomp flag \"%.64s\"",
                            i, name);
}

static bool has_repeated_index(const struct us_oci_seccomp_rule *rule)
{
        for (size_t i = 0; i < rule->n_args; i++)
                for (size_t j = 0; j < i; j++)
                        if (rule->args[i].index == rule->args[j].index)
                                return true;
        return false;
}

static int convert_arg(const struct us_oci_seccomp_arg *a, const char *where, size_t i,
                       struct scmp_arg_cmp *ret, struct us_error **err)
{
        if (a->index > 5)
                return us_error_msg(err, EINVAL, "%s.args[%zu].index: out of range (0..5)", where,
                                    i);
        if (resolve_op(a->op, &ret->op) < 0)
                return us_error_msg(err, EINVAL, "%s.args[%zu].op: unknown operator", where, i);
        ret->arg = a->index;
        ret->datum_a = a->value;
        ret->datum_b = a->value_two;
        return 0;
}

static int add_rule(scmp_filter_ctx ctx, uint32_t default_action, size_t ri,
                    const struct us_oci_seccomp_rule *rule, struct us_error **err)
{
        char where[64];
        snprintf(where, sizeof(where), "linux.seccomp.syscalls[%zu]", ri);

        uint32_t action;
        int r = resolve_action(rule->action, rule->has_errno_ret, rule->errno_ret, where, &action,
                               err);
        if (r < 0)
                return r;

        _cleanup_free_ struct scmp_arg_cmp *cmps = NULL;
        if (rule->n_args > 0) {
                cmps = calloc(rule->n_args, sizeof(*cmps));
                if (!cmps)
                        return us_errorf(err, ENOMEM, "%s", where);
        }
        for (size_t i = 0; i < rule->n_args; i++) {
                r = convert_arg(&rule->args[i], where, i, &cmps[i], err);
                if (r < 0)
                        return r;
        }

        if (action == default_action)
                return 0; /* libseccomp refuses rules that repeat the default */

        /* libseccomp cannot AND two conditions on one argument; runc then
         * adds one rule per condition (OR), and so do we. Without a repeated
         * index there are at most 6 conditions (indexes 0..5). */
        bool split = has_repeated_index(rule);
        for (char **name = rule->names; name && *name; name++) {
                int nr = seccomp_syscall_resolve_name(*name);
                if (nr == __NR_SCMP_ERROR)
                        continue; /* unknown to this libseccomp: skipped as runc does */
                if (split) {
                        for (size_t i = 0; i < rule->n_args && r >= 0; i++)
                                r = seccomp_rule_add_array(ctx, action, nr, 1, &cmps[i]);
                } else {
                        r = seccomp_rule_add_array(ctx, action, nr, (unsigned)rule->n_args, cmps);
                }
                if (r < 0)
                        return us_errorf(err, r, "%s: add rule for %s", where, *name);
        }
        return 0;
}

int us_seccomp_build(const struct us_oci_seccomp *s, scmp_filter_ctx *ret, struct us_error **err)
{
        uint32_t default_action;
        int r = resolve_action(s->default_action, s->has_default_errno_ret, s->default_errno_ret,
                               "linux.seccomp.defaultAction", &default_action, err);
        if (r < 0)
                return r;

        _cleanup_(seccomp_release_cleanupp) scmp_filter_ctx ctx = seccomp_init(default_action);
        if (!ctx)
                return us_error_msg(err, EINVAL, "seccomp_init failed");

        /* The engine sets no_new_privs itself, only when the spec asks. */
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
        if (r < 0)
                return us_errorf(err, r, "seccomp: clear SCMP_FLTATR_CTL_NNP");

        for (size_t i = 0; s->architectures && s->architectures[i]; i++) {
                uint32_t arch = resolve_arch(s->architectures[i]);
                if (arch == 0)
                        return us_error_msg(
                                err, EINVAL,
                                "linux.seccomp.architectures[%zu]: unknown architecture \"%.64s\"",
                                i, s->architectures[i]);
                r = seccomp_arch_add(ctx, arch);
                if (r < 0 && r != -EEXIST)
                        return us_errorf(err, r, "linux.seccomp.architectures[%zu]: add %s", i,
                                         s->architectures[i]);
        }

        for (size_t i = 0; s->flags && s->flags[i]; i++) {
                r = apply_flag(ctx, i, s->flags[i], err);
                if (r < 0)
                        return r;
        }

        for (size_t i = 0; i < s->n_rules; i++) {
                r = add_rule(ctx, default_action, i, &s->rules[i], err);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(ctx);
        return 0;
}

int us_seccomp_load(const struct us_oci_seccomp *s, struct us_error **err)
{
        _cleanup_(seccomp_release_cleanupp) scmp_filter_ctx ctx = NULL;
        int r = us_seccomp_build(s, &ctx, err);
        if (r < 0)
                return r;
        r = seccomp_load(ctx);
        if (r < 0)
                return us_errorf(err, r, "load seccomp filter");
        return 0;
}

int us_seccomp_export_bpf(const struct us_oci_seccomp *s, int fd, struct us_error **err)
{
        _cleanup_(seccomp_release_cleanupp) scmp_filter_ctx ctx = NULL;
        int r = us_seccomp_build(s, &ctx, err);
        if (r < 0)
                return r;
        r = seccomp_export_bpf(ctx, fd);
        if (r < 0)
                return us_errorf(err, r, "export seccomp filter");
        return 0;
}

scmp_filter_ctx us_seccomp_free(scmp_filter_ctx ctx)
{
        if (ctx)
                seccomp_release(ctx);
        return NULL;
}
