/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup v2 device control: OCI device rules -> v1-equivalent exception list
 * -> BPF_PROG_TYPE_CGROUP_DEVICE program, attached with raw bpf(2).
 */
#include "cgroup-devices.h"
#include "base/cleanup.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WILDCARD (-1)

/* One v1 exception: a device pattern with the access it grants (in a
 * default-deny cgroup) or takes away (in a default-allow one). */
struct dev_exception {
        uint32_t type; /* BPF_DEVCG_DEV_BLOCK or BPF_DEVCG_DEV_CHAR */
        int64_t major; /* WILDCARD or 0..UINT32_MAX-1 */
        int64_t minor;
        uint32_t access; /* BPF_DEVCG_ACC_* bits, never 0 */
};

struct dev_state {
        bool default_allow;
        struct dev_exception *ex;
        size_t n;
};

static char type_char(uint32_t type)
{
        return type == BPF_DEVCG_DEV_BLOCK ? 'b' : 'c';
}

void us_cg_device_rule_format(char *buf, size_t n, char type, int64_t major, int64_t minor,
                              const char *access)
{
        char maj[24] = "*", min[24] = "*";
        if (major >= 0)
                snprintf(maj, sizeof(maj), "%" PRId64, major);
        if (minor >= 0)
                snprintf(min, sizeof(min), "%" PRId64, minor);
        snprintf(buf, n, "%c %s:%s %s", type, maj, min, access);
}

static void fmt_exception(char *buf, size_t n, uint32_t type, int64_t major, int64_t minor,
                          uint32_t access)
{
        char acc[4];
        size_t k = 0;
        if (access & BPF_DEVCG_ACC_READ)
                acc[k++] = 'r';
        if (access & BPF_DEVCG_ACC_WRITE)
                acc[k++] = 'w';
        if (access & BPF_DEVCG_ACC_MKNOD)
                acc[k++] = 'm';
        acc[k] = '\0';
        us_cg_device_rule_format(buf, n, type_char(type), major, minor, acc);
}

static int check_number(int64_t v, const char *what, size_t index, struct us_error **err)
{
        if (v > (int64_t)UINT32_MAX)
                return us_error_msg(err, EINVAL, "invalid device %s %" PRId64 " in rule %zu", what,
                                    v, index);
        return 0;
}

int us_cg_device_rule_check(const struct us_oci_device_rule *d, size_t index, struct us_error **err)
{
        /* Shared with the v1 path (apply_devices_v1): one rule, one verdict. */
        char type = d->type ? d->type : 'a';
        if (type != 'a' && type != 'b' && type != 'c')
                return us_error_msg(err, EINVAL, "invalid device rule type '%c'", type);
        const char *access = d->access && d->access[0] ? d->access : "rwm";
        if (strspn(access, "rwm") != strlen(access) || strlen(access) > 3)
                return us_error_msg(err, EINVAL, "invalid device access \"%s\"", access);
        /* v1's kernel parser refuses what does not fit a u32 too. */
        int r = check_number(d->major, "major", index, err);
        if (r < 0)
                return r;
        return check_number(d->minor, "minor", index, err);
}

static uint32_t access_bits(const char *access)
{
        if (!access || !access[0])
                access = "rwm";
        uint32_t bits = 0;
        for (const char *c = access; *c; c++)
                bits |= *c == 'r'   ? BPF_DEVCG_ACC_READ
                        : *c == 'w' ? BPF_DEVCG_ACC_WRITE
                                    : BPF_DEVCG_ACC_MKNOD;
        return bits;
}

/* The kernel's own wildcard is ~0: a rule naming 4294967295 is one too. */
static int64_t norm_number(int64_t v)
{
        return v < 0 || v == (int64_t)UINT32_MAX ? WILDCARD : v;
}

static struct dev_exception *find_exact(struct dev_state *s, uint32_t type, int64_t major,
                                        int64_t minor)
{
        for (size_t i = 0; i < s->n; i++)
                if (s->ex[i].type == type && s->ex[i].major == major && s->ex[i].minor == minor)
                        return &s->ex[i];
        return NULL;
}

static void drop_empty(struct dev_state *s)
{
        size_t k = 0;
        for (size_t i = 0; i < s->n; i++)
                if (s->ex[i].access)
                        s->ex[k++] = s->ex[i];
        s->n = k;
}

/* Folds one rule into the state as the v1 controller does on a write to
 * devices.allow / devices.deny. */
static int fold_rule(struct dev_state *s, const struct us_oci_device_rule *d, size_t index,
                     size_t cap, struct us_error **err)
{
        char type = d->type ? d->type : 'a';
        if (type == 'a') {
                /* "a" resets the cgroup whatever its numbers and access say. */
                s->default_allow = d->allow;
                s->n = 0;
                return 0;
        }
        struct dev_exception rule = {
                .type = type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR,
                .major = norm_number(d->major),
                .minor = norm_number(d->minor),
                .access = access_bits(d->access),
        };
        if (d->allow != s->default_allow) {
                /* An exception to the default: merged with an identical
                 * pattern, else appended. */
                struct dev_exception *e = find_exact(s, rule.type, rule.major, rule.minor);
                if (e) {
                        e->access |= rule.access;
                } else {
                        if (s->n >= cap)
                                return us_error_msg(err, E2BIG, "too many device rules");
                        s->ex[s->n++] = rule;
                }
                return 0;
        }

        /* A rule that agrees with the default takes access away from
         * exceptions. v1 only subtracts from an exception with exactly the
         * same pattern and silently ignores a rule that falls inside a wider
         * wildcard exception ("deny c 1:3 w" after "allow c 1:* rwm" does not
         * deny anything): like runc, that is refused instead of enforced
         * differently from what the spec says. */
        const struct {
                int64_t major, minor;
        } wider[] = {{WILDCARD, rule.minor}, {rule.major, WILDCARD}, {WILDCARD, WILDCARD}};
        for (size_t i = 0; i < US_ELEMENTSOF(wider); i++) {
                if (wider[i].major == rule.major && wider[i].minor == rule.minor)
                        continue;
                struct dev_exception *w = find_exact(s, rule.type, wider[i].major, wider[i].minor);
                if (w && (w->access & rule.access)) {
                        char a[64], b[64];
                        fmt_exception(a, sizeof(a), rule.type, rule.major, rule.minor, rule.access);
                        fmt_exception(b, sizeof(b), w->type, w->major, w->minor, w->access);
                        return us_error_msg(err, EINVAL,
                                            "device rule %zu (%s %s) cannot punch a hole in the "
                                            "earlier wildcard rule (%s %s): cgroup v1 ignores "
                                            "such a rule",
                                            index, d->allow ? "allow" : "deny", a,
                                            d->allow ? "deny" : "allow", b);
                }
        }
        for (size_t i = 0; i < s->n; i++) {
                struct dev_exception *e = &s->ex[i];
                if (e->type != rule.type)
                        continue;
                bool exact = e->major == rule.major && e->minor == rule.minor;
                /* A later deny also takes its access from narrower allow
                 * exceptions it covers ("deny c 1:* w" after "allow c 1:5
                 * rw"), which v1 would keep: the later rule wins, and only
                 * ever towards less access. */
                bool covered = !s->default_allow &&
                               (rule.major == WILDCARD || rule.major == e->major) &&
                               (rule.minor == WILDCARD || rule.minor == e->minor);
                if (exact || covered)
                        e->access &= ~rule.access;
        }
        drop_empty(s);
        return 0;
}

static struct bpf_insn insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
        return (struct bpf_insn){
                .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm};
}

/* Registers the program keeps the request in. */
enum { R_ACCESS = BPF_REG_2, R_TYPE = BPF_REG_3, R_MAJOR = BPF_REG_4, R_MINOR = BPF_REG_5 };

/* Longest block one exception compiles to. */
#define BLOCK_MAX 12

/* One exception: falls through to its verdict when the request matches,
 * else jumps past the block. Returns the block's length. */
static size_t emit_exception(struct bpf_insn *out, const struct dev_exception *e,
                             bool default_allow)
{
        size_t n = 0;
        size_t jumps[4], nj = 0;
        /* Request's type bits outside the exception's: no match (v1 only
         * looks at the block and char bits). */
        out[n++] = insn(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_0, R_TYPE, 0, 0);
        out[n++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_0, 0, 0,
                        (int32_t)((BPF_DEVCG_DEV_BLOCK | BPF_DEVCG_DEV_CHAR) & ~e->type));
        jumps[nj++] = n;
        out[n++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 0, 0);
        /* Numbers go through a 32-bit move (zero-extended) so that values
         * above INT32_MAX compare right against the zero-extended ctx
         * loads; a JMP32 would need kernel 5.1. */
        const int64_t nums[] = {e->major, e->minor};
        const uint8_t regs[] = {R_MAJOR, R_MINOR};
        for (size_t i = 0; i < 2; i++) {
                if (nums[i] == WILDCARD)
                        continue;
                out[n++] = insn(BPF_ALU | BPF_MOV | BPF_K, BPF_REG_0, 0, 0,
                                (int32_t)(uint32_t)nums[i]);
                jumps[nj++] = n;
                out[n++] = insn(BPF_JMP | BPF_JNE | BPF_X, regs[i], BPF_REG_0, 0, 0);
        }
        out[n++] = insn(BPF_ALU | BPF_MOV | BPF_X, BPF_REG_0, R_ACCESS, 0, 0);
        if (default_allow) {
                /* A deny exception matches on any shared access bit (v1's
                 * match_exception_partial): "deny w" also stops an "rw" open. */
                out[n++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_0, 0, 0, (int32_t)e->access);
                jumps[nj++] = n;
                out[n++] = insn(BPF_JMP | BPF_JEQ | BPF_K, BPF_REG_0, 0, 0, 0);
        } else {
                /* An allow exception must cover all requested access
                 * (v1's match_exception). */
                out[n++] = insn(BPF_ALU | BPF_AND | BPF_K, BPF_REG_0, 0, 0, (int32_t)~e->access);
                jumps[nj++] = n;
                out[n++] = insn(BPF_JMP | BPF_JNE | BPF_K, BPF_REG_0, 0, 0, 0);
        }
        out[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, default_allow ? 0 : 1);
        out[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
        for (size_t j = 0; j < nj; j++)
                out[jumps[j]].off = (int16_t)(n - jumps[j] - 1);
        return n;
}

int us_cg_devices_compile(const struct us_oci_device_rule *rules, size_t n_rules,
                          struct bpf_insn **ret_insns, size_t *ret_n, struct us_error **err)
{
        if (n_rules > US_CG_DEVICES_MAX_RULES)
                return us_error_msg(err, EINVAL, "too many device rules (%zu, at most %u)", n_rules,
                                    US_CG_DEVICES_MAX_RULES);
        for (size_t i = 0; i < n_rules; i++) {
                int r = us_cg_device_rule_check(&rules[i], i, err);
                if (r < 0)
                        return r;
        }

        /* Default deny, as runc's emulator starts: a list without a leading
         * "a" rule only ever allows what it names. */
        _cleanup_free_ struct dev_exception *ex = calloc(n_rules ? n_rules : 1, sizeof(*ex));
        if (!ex)
                return us_errorf(err, ENOMEM, "compile device rules");
        struct dev_state s = {.default_allow = false, .ex = ex};
        for (size_t i = 0; i < n_rules; i++) {
                int r = fold_rule(&s, &rules[i], i, n_rules, err);
                if (r < 0)
                        return r;
        }

        size_t cap = 6 + s.n * BLOCK_MAX + 2;
        _cleanup_free_ struct bpf_insn *p = calloc(cap, sizeof(*p));
        if (!p)
                return us_errorf(err, ENOMEM, "compile device rules");
        size_t n = 0;
        /* r1 = ctx: access_type = (access << 16) | type, major, minor. */
        p[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, R_ACCESS, BPF_REG_1,
                      (int16_t)offsetof(struct bpf_cgroup_dev_ctx, access_type), 0);
        p[n++] = insn(BPF_ALU | BPF_MOV | BPF_X, R_TYPE, R_ACCESS, 0, 0);
        p[n++] = insn(BPF_ALU | BPF_AND | BPF_K, R_TYPE, 0, 0, 0xffff);
        p[n++] = insn(BPF_ALU | BPF_RSH | BPF_K, R_ACCESS, 0, 0, 16);
        p[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, R_MAJOR, BPF_REG_1,
                      (int16_t)offsetof(struct bpf_cgroup_dev_ctx, major), 0);
        p[n++] = insn(BPF_LDX | BPF_MEM | BPF_W, R_MINOR, BPF_REG_1,
                      (int16_t)offsetof(struct bpf_cgroup_dev_ctx, minor), 0);
        /* Every exception has the verdict opposite to the default, so their
         * order does not matter: the spec's order was already resolved by
         * the fold. */
        for (size_t i = 0; i < s.n; i++)
                n += emit_exception(p + n, &s.ex[i], s.default_allow);
        p[n++] = insn(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, s.default_allow ? 1 : 0);
        p[n++] = insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);

        *ret_insns = TAKE_PTR(p);
        *ret_n = n;
        return 0;
}

static int sys_bpf(int cmd, union bpf_attr *attr)
{
        long r = syscall(__NR_bpf, cmd, attr, sizeof(*attr));
        return r < 0 ? -errno : (int)r;
}

/* The verifier's log is only asked for after a failed load: with a log the
 * kernel does more work, and an old kernel fails a load whose log overflows. */
#define VERIFIER_LOG_SIZE  (64u * 1024)
#define VERIFIER_LOG_SHOWN 1024u

static int prog_load(const struct bpf_insn *insns, size_t n, char *log, uint32_t log_size)
{
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
        attr.insns = (uint64_t)(uintptr_t)insns;
        attr.insn_cnt = (uint32_t)n;
        /* No helpers are called, so no GPL-only ones: any license loads. */
        attr.license = (uint64_t)(uintptr_t) "Apache-2.0";
        if (log) {
                attr.log_level = 1;
                attr.log_buf = (uint64_t)(uintptr_t)log;
                attr.log_size = log_size;
        }
        snprintf(attr.prog_name, sizeof(attr.prog_name), "unishim_dev");
        /* bpf(2) fds are always close-on-exec. */
        return sys_bpf(BPF_PROG_LOAD, &attr);
}

static int load(const struct bpf_insn *insns, size_t n, struct us_error **err)
{
        if (n == 0 || n > UINT32_MAX)
                return us_error_msg(err, EINVAL, "invalid device program length %zu", n);
        int fd = prog_load(insns, n, NULL, 0);
        if (fd >= 0)
                return fd;
        if (fd == -ENOSYS || fd == -EPERM)
                return us_errorf(err, -fd, "load cgroup device program");
        _cleanup_free_ char *log = calloc(1, VERIFIER_LOG_SIZE);
        if (!log)
                return us_errorf(err, -fd, "load cgroup device program");
        int fd2 = prog_load(insns, n, log, VERIFIER_LOG_SIZE);
        if (fd2 >= 0)
                return fd2; /* a transient failure the first time */
        log[VERIFIER_LOG_SIZE - 1] = '\0';
        size_t len = strlen(log);
        while (len > 0 && (log[len - 1] == '\n' || log[len - 1] == ' '))
                log[--len] = '\0';
        /* The cause is at the end of the log. */
        const char *tail = len > VERIFIER_LOG_SHOWN ? log + len - VERIFIER_LOG_SHOWN : log;
        if (!tail[0])
                return us_errorf(err, -fd, "load cgroup device program");
        return us_error_msg(err, -fd, "load cgroup device program: %s (verifier: %s%s)",
                            strerror(-fd), tail == log ? "" : "...", tail);
}

static int prog_id(int fd, uint32_t *ret)
{
        struct bpf_prog_info info;
        union bpf_attr attr;
        memset(&info, 0, sizeof(info));
        memset(&attr, 0, sizeof(attr));
        attr.info.bpf_fd = (uint32_t)fd;
        attr.info.info_len = sizeof(info);
        attr.info.info = (uint64_t)(uintptr_t)&info;
        int r = sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
        if (r < 0)
                return r;
        *ret = info.id;
        return 0;
}

/* Programs this process loaded, by their instructions. Containers with the
 * same rules (in a pod, all but the privileged ones) share one program:
 * the verifier and JIT run once per process, not per container (~15 ms of
 * a sandbox container's create under TCG), and the kernel keeps one copy,
 * which any number of cgroups may have attached. A few entries, replaced
 * round-robin; the fds are close-on-exec, and the engine's children close
 * them at once. Not thread-safe: the engine's callers are single-threaded. */
#define PROG_CACHE_SIZE 4

static struct cached_prog {
        struct bpf_insn *insns;
        size_t n;
        int fd;
        uint32_t id;
} prog_cache[PROG_CACHE_SIZE];
static size_t prog_cache_next;

/* A new fd (the caller's) for the program of insns, from the cache or
 * loaded, and its id. */
static int load_cached(const struct bpf_insn *insns, size_t n, uint32_t *ret_id,
                       struct us_error **err)
{
        for (size_t i = 0; i < PROG_CACHE_SIZE; i++) {
                struct cached_prog *c = &prog_cache[i];
                if (c->insns && c->n == n && !memcmp(c->insns, insns, n * sizeof(*insns))) {
                        int fd = fcntl(c->fd, F_DUPFD_CLOEXEC, 3);
                        if (fd < 0)
                                return us_errorf(err, errno, "duplicate device program fd");
                        *ret_id = c->id;
                        return fd;
                }
        }
        _cleanup_close_ int fd = load(insns, n, err);
        if (fd < 0)
                return fd;
        int r = prog_id(fd, ret_id);
        if (r < 0)
                return us_errorf(err, -r, "device program id");
        struct bpf_insn *copy = malloc(n * sizeof(*insns));
        int keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (copy && keep >= 0) {
                struct cached_prog *c = &prog_cache[prog_cache_next];
                prog_cache_next = (prog_cache_next + 1) % PROG_CACHE_SIZE;
                if (c->insns) {
                        free(c->insns);
                        us_close(c->fd);
                }
                memcpy(copy, insns, n * sizeof(*insns));
                *c = (struct cached_prog){.insns = copy, .n = n, .fd = keep, .id = *ret_id};
        } else {
                free(copy); /* no cache entry: only slower next time */
                us_close(keep);
        }
        return TAKE_FD(fd);
}

int us_cg_devices_preload(const struct us_oci_device_rule *rules, size_t n_rules,
                          struct us_error **err)
{
        _cleanup_free_ struct bpf_insn *insns = NULL;
        size_t n = 0;
        int r = us_cg_devices_compile(rules, n_rules, &insns, &n, err);
        if (r < 0)
                return r;
        uint32_t id = 0;
        _cleanup_close_ int fd = load_cached(insns, n, &id, err);
        return fd < 0 ? fd : 0;
}

static int prog_attach(int dirfd, int progfd)
{
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.target_fd = (uint32_t)dirfd;
        attr.attach_bpf_fd = (uint32_t)progfd;
        attr.attach_type = BPF_CGROUP_DEVICE;
        attr.attach_flags = BPF_F_ALLOW_MULTI;
        return sys_bpf(BPF_PROG_ATTACH, &attr);
}

static int prog_detach(int dirfd, int progfd)
{
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.target_fd = (uint32_t)dirfd;
        attr.attach_bpf_fd = (uint32_t)progfd;
        attr.attach_type = BPF_CGROUP_DEVICE;
        return sys_bpf(BPF_PROG_DETACH, &attr);
}

int us_cg_devices_query(int dirfd, uint32_t *ids, size_t max, size_t *ret_n, struct us_error **err)
{
        union bpf_attr attr;
        memset(&attr, 0, sizeof(attr));
        attr.query.target_fd = (uint32_t)dirfd;
        attr.query.attach_type = BPF_CGROUP_DEVICE;
        attr.query.prog_ids = (uint64_t)(uintptr_t)ids;
        attr.query.prog_cnt = (uint32_t)(max > UINT32_MAX ? UINT32_MAX : max);
        int r = sys_bpf(BPF_PROG_QUERY, &attr);
        /* ENOSPC: more than max; prog_cnt then has the total. */
        if (r < 0 && r != -ENOSPC)
                return us_errorf(err, -r, "query cgroup device programs");
        *ret_n = attr.query.prog_cnt;
        return 0;
}

/* A cgroup holds at most 64 programs per attach type (BPF_CGROUP_MAX_PROGS). */
#define MAX_OLD_PROGS 64

struct old_progs {
        int fds[MAX_OLD_PROGS];
        uint32_t ids[MAX_OLD_PROGS];
        size_t n;
};

static void old_progs_close(struct old_progs *o)
{
        for (size_t i = 0; i < o->n; i++)
                us_close(o->fds[i]);
        o->n = 0;
}

/* Opens the programs attached to dirfd now, before ours joins them. */
static int open_old_progs(int dirfd, struct old_progs *o, struct us_error **err)
{
        uint32_t ids[MAX_OLD_PROGS];
        size_t n = 0;
        int r = us_cg_devices_query(dirfd, ids, MAX_OLD_PROGS, &n, err);
        if (r < 0)
                return r;
        if (n > MAX_OLD_PROGS)
                return us_error_msg(err, E2BIG, "%zu device programs attached to the cgroup", n);
        o->n = 0;
        for (size_t i = 0; i < n; i++) {
                union bpf_attr attr;
                memset(&attr, 0, sizeof(attr));
                attr.prog_id = ids[i];
                int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
                /* Detached meanwhile, or one an LSM keeps from us (as runc,
                 * leave it: another device program can only deny more). */
                if (fd == -ENOENT || fd == -EPERM || fd == -EACCES)
                        continue;
                if (fd < 0) {
                        old_progs_close(o);
                        return us_errorf(err, -fd, "open device program %" PRIu32, ids[i]);
                }
                o->ids[o->n] = ids[i];
                o->fds[o->n++] = fd;
        }
        return 0;
}

int us_cg_devices_attach(int dirfd, const struct bpf_insn *insns, size_t n_insns,
                         struct us_error **err)
{
        uint32_t id = 0; /* load() refuses an empty or oversized program */
        _cleanup_close_ int progfd = load_cached(insns, n_insns, &id, err);
        if (progfd < 0)
                return progfd;
        struct old_progs old = {.n = 0};
        int r = open_old_progs(dirfd, &old, err);
        if (r < 0)
                return r;

        /* A cached program may be attached here already (an update to the
         * same rules): BPF_F_ALLOW_MULTI refuses it twice (EEXIST), and it
         * must stay while the others go. */
        bool attached = false;
        for (size_t i = 0; i < old.n; i++)
                attached |= old.ids[i] == id;
        r = attached ? 0 : prog_attach(dirfd, progfd);
        if (r < 0) {
                old_progs_close(&old);
                return us_errorf(err, -r, "attach cgroup device program");
        }
        for (size_t i = 0; i < old.n; i++) {
                if (old.ids[i] == id)
                        continue;
                r = prog_detach(dirfd, old.fds[i]);
                if (r == -ENOENT)
                        continue; /* someone else detached it meanwhile */
                if (r < 0) {
                        (void)us_errorf(err, -r, "detach the previous cgroup device program");
                        /* Back to what was attached before, old filters
                         * first so that no moment has fewer. */
                        for (size_t j = 0; j < i; j++)
                                if (old.ids[j] != id)
                                        (void)prog_attach(dirfd, old.fds[j]);
                        if (!attached)
                                (void)prog_detach(dirfd, progfd);
                        old_progs_close(&old);
                        return r;
                }
        }
        old_progs_close(&old);
        /* The attachment keeps the program alive; our fd can go. */
        return 0;
}

int us_cg_devices_apply(const char *dir, const struct us_oci_device_rule *rules, size_t n_rules,
                        struct us_error **err)
{
        _cleanup_free_ struct bpf_insn *insns = NULL;
        size_t n = 0;
        int r = us_cg_devices_compile(rules, n_rules, &insns, &n, err);
        if (r < 0)
                return r;
        _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return us_errorf(err, errno, "open %s", dir);
        r = us_cg_devices_attach(dirfd, insns, n, err);
        if (r < 0)
                return us_error_wrap(err, r, "device rules for %s", dir);
        return 0;
}
