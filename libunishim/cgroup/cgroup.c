/* SPDX-License-Identifier: Apache-2.0 */
/*
 * cgroup layout detection, path validation and the lifecycle of a
 * container's cgroup (create, enter, freeze, kill, destroy, OOM events,
 * the container's cgroupfs view). Resource limits are in cgroup-apply.c,
 * metrics in cgroup-stats.c.
 */
#include "cgroup.h"
#include "cgroup-internal.h"
#include "base/cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define CG_PATH_MAX        4096
#define CG_MAX_HIERS       64
#define CG_MAX_MOUNTINFO   (8u << 20)
#define CG_MAX_PIDS        (1u << 20)
#define CG_MAX_DEPTH       64
#define CG_DEFAULT_ROOT    "/sys/fs/cgroup"
#define CG_FREEZE_WAIT_MS  2000
#define CG_DESTROY_WAIT_MS 2000
#define CG_KILL_ATTEMPTS   50
#define CG_RMDIR_RETRIES   50

static const struct {
        const char *name;
        uint32_t bit;
} controllers[] = {
        {"cpu", US_CG_CPU},
        {"cpuacct", US_CG_CPUACCT},
        {"cpuset", US_CG_CPUSET},
        {"memory", US_CG_MEMORY},
        {"devices", US_CG_DEVICES},
        {"freezer", US_CG_FREEZER},
        {"blkio", US_CG_BLKIO},
        {"pids", US_CG_PIDS},
        {"net_cls", US_CG_NET_CLS},
        {"net_prio", US_CG_NET_PRIO},
        {"perf_event", US_CG_PERF_EVENT},
        {"hugetlb", US_CG_HUGETLB},
        {"rdma", US_CG_RDMA},
        {"misc", US_CG_MISC},
};

static void sleep_ms(unsigned ms)
{
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ---- small file helpers ---- */

static int open_in(const char *dir, const char *file, int flags, mode_t mode)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return -ENOMEM;
        int fd = open(p, flags | O_CLOEXEC | O_NOCTTY, mode);
        return fd < 0 ? -errno : fd;
}

static int write_fd_all(int fd, const char *value)
{
        size_t len = strlen(value);
        ssize_t n;
        do
                n = write(fd, value, len);
        while (n < 0 && errno == EINTR);
        if (n < 0)
                return -errno;
        if ((size_t)n != len)
                return -EIO;
        return 0;
}

int us_cg_write_quiet(const struct us_cgroup *cg, const char *dir, const char *file,
                      const char *value)
{
        int flags = O_WRONLY;
        if (cg && cg->layout->fake)
                flags |= O_CREAT | O_TRUNC;
        /* Device rules accumulate in the kernel; a fake tree records them. */
        if (cg && cg->layout->fake && strncmp(file, "devices.", 8) == 0)
                flags = (flags & ~O_TRUNC) | O_APPEND;
        _cleanup_close_ int fd = open_in(dir, file, flags, 0644);
        if (fd < 0)
                return fd;
        int r = write_fd_all(fd, value);
        if (r < 0)
                return r;
        if (cg && cg->layout->fake && (flags & O_APPEND))
                return write_fd_all(fd, "\n");
        return 0;
}

int us_cg_write(const struct us_cgroup *cg, const char *dir, const char *file, const char *value,
                struct us_error **err)
{
        int r = us_cg_write_quiet(cg, dir, file, value);
        if (r < 0)
                return us_errorf(err, -r, "set %s to %s", file, value);
        return 0;
}

bool us_cg_exists(const char *dir, const char *file)
{
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, file) < 0)
                return false;
        return access(p, F_OK) == 0;
}

static int read_fd_bounded(int fd, char **ret, size_t max)
{
        size_t cap = 4096, len = 0;
        _cleanup_free_ char *buf = malloc(cap + 1);
        if (!buf)
                return -ENOMEM;
        for (;;) {
                if (len == cap) {
                        if (cap >= max)
                                return -EFBIG;
                        size_t ncap = cap * 2 > max ? max : cap * 2;
                        char *nb = realloc(buf, ncap + 1);
                        if (!nb)
                                return -ENOMEM;
                        buf = nb;
                        cap = ncap;
                }
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
        }
        buf[len] = '\0';
        if (memchr(buf, '\0', len))
                return -EINVAL;
        *ret = TAKE_PTR(buf);
        return 0;
}

int us_cg_read(const char *dir, const char *file, char **ret, struct us_error **err)
{
        _cleanup_close_ int fd = open_in(dir, file, O_RDONLY, 0);
        if (fd < 0)
                return us_errorf(err, -fd, "read %s/%s", dir, file);
        int r = read_fd_bounded(fd, ret, US_CG_MAX_FILE);
        if (r < 0)
                return us_errorf(err, -r, "read %s/%s", dir, file);
        return 0;
}

int us_cg_parse_u64(const char *s, uint64_t *ret)
{
        while (*s == ' ' || *s == '\t' || *s == '\n')
                s++;
        size_t n = strcspn(s, " \t\n");
        if (n == 0)
                return -EINVAL;
        const char *rest = s + n;
        while (*rest == ' ' || *rest == '\t' || *rest == '\n')
                rest++;
        if (*rest)
                return -EINVAL;
        if (n == 3 && strncmp(s, "max", 3) == 0) {
                *ret = UINT64_MAX;
                return 0;
        }
        char *end = NULL;
        if (s[0] == '-') {
                errno = 0;
                (void)strtoll(s, &end, 10);
                if (end != s + n || n == 1)
                        return -EINVAL;
                *ret = 0; /* containerd: negative values read as 0 */
                return 0;
        }
        if (s[0] < '0' || s[0] > '9')
                return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(s, &end, 10);
        if (errno || end != s + n)
                return -EINVAL;
        *ret = v;
        return 0;
}

int us_cg_read_u64(const char *dir, const char *file, uint64_t *ret, struct us_error **err)
{
        _cleanup_free_ char *text = NULL;
        int r = us_cg_read(dir, file, &text, err);
        if (r < 0)
                return r;
        uint64_t v;
        if (us_cg_parse_u64(text, &v) < 0)
                return us_error_msg(err, EINVAL, "parse %s/%s: not a number", dir, file);
        *ret = v;
        return 0;
}

int us_cg_find_key(const char *text, const char *key, uint64_t *ret)
{
        size_t klen = strlen(key);
        for (const char *line = text; line && *line;) {
                const char *nl = strchr(line, '\n');
                size_t llen = nl ? (size_t)(nl - line) : strlen(line);
                if (llen > klen && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        char num[32];
                        size_t vlen = llen - klen - 1;
                        if (vlen == 0 || vlen >= sizeof(num))
                                return -EINVAL;
                        memcpy(num, line + klen + 1, vlen);
                        num[vlen] = '\0';
                        return us_cg_parse_u64(num, ret);
                }
                line = nl ? nl + 1 : NULL;
        }
        return -ENOENT;
}

/* ---- layout ---- */

static void hier_clear(struct us_cgroup_hier *h)
{
        free(h->mountpoint);
        free(h->name);
        free(h->named);
        h->mountpoint = h->name = h->named = NULL;
}

struct us_cgroup_layout *us_cgroup_layout_free(struct us_cgroup_layout *l)
{
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n_hiers; i++)
                hier_clear(&l->hiers[i]);
        free(l->hiers);
        free(l->root);
        free(l);
        return NULL;
}

static struct us_cgroup_layout *layout_dup(const struct us_cgroup_layout *l)
{
        _cleanup_(us_cgroup_layout_free_cleanupp) struct us_cgroup_layout *c =
                calloc(1, sizeof(*c));
        if (!c)
                return NULL;
        c->mode = l->mode;
        c->fake = l->fake;
        c->root = strdup(l->root);
        c->hiers = calloc(l->n_hiers ? l->n_hiers : 1, sizeof(*c->hiers));
        if (!c->root || !c->hiers)
                return NULL;
        for (size_t i = 0; i < l->n_hiers; i++) {
                c->hiers[i].mountpoint = strdup(l->hiers[i].mountpoint);
                c->hiers[i].name = strdup(l->hiers[i].name);
                c->hiers[i].controllers = l->hiers[i].controllers;
                c->hiers[i].v2 = l->hiers[i].v2;
                c->n_hiers++;
                if (!c->hiers[i].mountpoint || !c->hiers[i].name)
                        return NULL;
                if (l->hiers[i].named && !(c->hiers[i].named = strdup(l->hiers[i].named)))
                        return NULL;
        }
        return TAKE_PTR(c);
}

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static char *unescape_field(const char *s, size_t n)
{
        char *out = malloc(n + 1);
        if (!out)
                return NULL;
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 3 < n && s[i + 1] >= '0' && s[i + 1] <= '3' &&
                    s[i + 2] >= '0' && s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
                        out[o++] = (char)(((s[i + 1] - '0') << 6) | ((s[i + 2] - '0') << 3) |
                                          (s[i + 3] - '0'));
                        i += 3;
                } else {
                        out[o++] = s[i];
                }
        }
        out[o] = '\0';
        if (memchr(out, '\0', o)) {
                free(out);
                return NULL;
        }
        return out;
}

static uint32_t parse_superopts(const char *opts, size_t n, char **ret_named)
{
        uint32_t mask = 0;
        const char *p = opts, *end = opts + n;
        while (p < end) {
                const char *c = memchr(p, ',', (size_t)(end - p));
                size_t len = c ? (size_t)(c - p) : (size_t)(end - p);
                if (len > 5 && strncmp(p, "name=", 5) == 0) {
                        mask |= US_CG_NAMED;
                        free(*ret_named);
                        *ret_named = strndup(p + 5, len - 5);
                }
                for (size_t i = 0; i < US_ELEMENTSOF(controllers); i++)
                        if (strlen(controllers[i].name) == len &&
                            strncmp(controllers[i].name, p, len) == 0)
                                mask |= controllers[i].bit;
                p += len + 1;
        }
        return mask;
}

static char *normalize_root(const char *root)
{
        size_t n = strlen(root);
        while (n > 1 && root[n - 1] == '/')
                n--;
        return strndup(root, n);
}

/* Splits a line into space-separated fields (at most max). */
static size_t split_fields(const char *line, size_t len, const char **f, size_t *fl, size_t max)
{
        size_t nf = 0, i = 0;
        while (i < len && nf < max) {
                while (i < len && line[i] == ' ')
                        i++;
                if (i >= len)
                        break;
                size_t s = i;
                while (i < len && line[i] != ' ')
                        i++;
                f[nf] = line + s;
                fl[nf] = i - s;
                nf++;
        }
        return nf;
}

int us_cgroup_layout_parse(const char *root, const char *mountinfo, size_t len, unsigned flags,
                           struct us_cgroup_layout **ret, struct us_error **err)
{
        if (!root || root[0] != '/')
                return us_error_msg(err, EINVAL, "cgroup root must be an absolute path");
        if (strlen(root) >= CG_PATH_MAX)
                return us_error_msg(err, ENAMETOOLONG, "cgroup root too long");
        _cleanup_(us_cgroup_layout_free_cleanupp) struct us_cgroup_layout *l =
                calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        l->fake = flags & US_CGROUP_LAYOUT_FAKE;
        l->root = normalize_root(root);
        l->hiers = calloc(CG_MAX_HIERS, sizeof(*l->hiers));
        if (!l->root || !l->hiers)
                return -ENOMEM;

        if (flags & US_CGROUP_LAYOUT_ROOT_IS_CGROUP2) {
                l->mode = US_CGROUP_V2;
                l->hiers[0].mountpoint = strdup(l->root);
                l->hiers[0].name = strdup("");
                l->hiers[0].v2 = true;
                l->n_hiers = 1;
                if (!l->hiers[0].mountpoint || !l->hiers[0].name)
                        return -ENOMEM;
                *ret = TAKE_PTR(l);
                return 0;
        }
        if (len > CG_MAX_MOUNTINFO)
                return us_error_msg(err, EFBIG, "mountinfo too large");

        size_t rootlen = strlen(l->root);
        bool root_is_slash = rootlen == 1;
        const char *p = mountinfo, *end = mountinfo + len;
        while (p < end) {
                const char *nl = memchr(p, '\n', (size_t)(end - p));
                size_t llen = nl ? (size_t)(nl - p) : (size_t)(end - p);
                const char *line = p;
                p += llen + 1;

                const char *f[64];
                size_t fl[64];
                size_t nf = split_fields(line, llen, f, fl, US_ELEMENTSOF(f));
                size_t sep = 0;
                for (size_t i = 6; i < nf; i++)
                        if (fl[i] == 1 && f[i][0] == '-') {
                                sep = i;
                                break;
                        }
                if (sep == 0 || sep + 3 >= nf)
                        continue;
                const char *fstype = f[sep + 1];
                size_t fstlen = fl[sep + 1];
                bool v2 = fstlen == 7 && strncmp(fstype, "cgroup2", 7) == 0;
                bool v1 = fstlen == 6 && strncmp(fstype, "cgroup", 6) == 0;
                if (!v1 && !v2)
                        continue;
                _cleanup_free_ char *mp = unescape_field(f[4], fl[4]);
                if (!mp)
                        continue;
                /* Only direct children of root count: <root>/<name>. */
                const char *name;
                if (root_is_slash) {
                        if (mp[0] != '/' || mp[1] == '\0')
                                continue;
                        name = mp + 1;
                } else {
                        if (strncmp(mp, l->root, rootlen) != 0 || mp[rootlen] != '/')
                                continue;
                        name = mp + rootlen + 1;
                }
                if (!*name || strchr(name, '/'))
                        continue;
                _cleanup_free_ char *named = NULL;
                uint32_t mask = v1 ? parse_superopts(f[sep + 3], fl[sep + 3], &named) : 0;
                if (v1 && mask == 0)
                        continue;
                if ((mask & US_CG_NAMED) && !named)
                        return -ENOMEM;

                /* A later mount on the same point shadows the earlier one. */
                size_t idx = l->n_hiers;
                for (size_t i = 0; i < l->n_hiers; i++)
                        if (strcmp(l->hiers[i].mountpoint, mp) == 0) {
                                idx = i;
                                hier_clear(&l->hiers[i]);
                                break;
                        }
                if (idx == CG_MAX_HIERS)
                        return us_error_msg(err, E2BIG, "too many cgroup hierarchies under %s",
                                            l->root);
                struct us_cgroup_hier *h = &l->hiers[idx];
                h->name = strdup(name);
                h->mountpoint = TAKE_PTR(mp);
                h->named = TAKE_PTR(named);
                h->controllers = mask;
                h->v2 = v2;
                if (idx == l->n_hiers)
                        l->n_hiers++;
                if (!h->name)
                        return -ENOMEM;
        }
        if (l->n_hiers == 0)
                return us_error_msg(err, ENOENT, "no cgroup hierarchies mounted under %s", l->root);
        l->mode = US_CGROUP_V1;
        for (size_t i = 0; i < l->n_hiers; i++)
                if (l->hiers[i].v2)
                        l->mode = US_CGROUP_HYBRID;
        *ret = TAKE_PTR(l);
        return 0;
}

int us_cgroup_layout_detect(const char *root, struct us_cgroup_layout **ret, struct us_error **err)
{
        if (!root)
                root = CG_DEFAULT_ROOT;
        struct statfs sfs;
        if (statfs(root, &sfs) < 0)
                return us_errorf(err, errno, "statfs %s", root);
        if ((unsigned long)sfs.f_type == (unsigned long)CGROUP2_SUPER_MAGIC)
                return us_cgroup_layout_parse(root, "", 0, US_CGROUP_LAYOUT_ROOT_IS_CGROUP2, ret,
                                              err);
        _cleanup_close_ int fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open /proc/self/mountinfo");
        _cleanup_free_ char *text = NULL;
        int r = read_fd_bounded(fd, &text, CG_MAX_MOUNTINFO);
        if (r < 0)
                return us_errorf(err, -r, "read /proc/self/mountinfo");
        return us_cgroup_layout_parse(root, text, strlen(text), 0, ret, err);
}

enum us_cgroup_mode us_cgroup_layout_mode(const struct us_cgroup_layout *l)
{
        return l->mode;
}

size_t us_cgroup_layout_count(const struct us_cgroup_layout *l)
{
        return l->n_hiers;
}

const char *us_cgroup_layout_mountpoint(const struct us_cgroup_layout *l, size_t i, bool *ret_v2)
{
        if (i >= l->n_hiers)
                return NULL;
        if (ret_v2)
                *ret_v2 = l->hiers[i].v2;
        return l->hiers[i].mountpoint;
}

static int hier_index(const struct us_cgroup_layout *l, const char *controller)
{
        if (strcmp(controller, "unified") == 0) {
                for (size_t i = 0; i < l->n_hiers; i++)
                        if (l->hiers[i].v2)
                                return (int)i;
                return -1;
        }
        if (strncmp(controller, "name=", 5) == 0) {
                /* Named hierarchies are found by their mount name. */
                for (size_t i = 0; i < l->n_hiers; i++)
                        if (!l->hiers[i].v2 && l->hiers[i].named &&
                            strcmp(l->hiers[i].named, controller + 5) == 0)
                                return (int)i;
                return -1;
        }
        uint32_t bit = 0;
        for (size_t i = 0; i < US_ELEMENTSOF(controllers); i++)
                if (strcmp(controllers[i].name, controller) == 0)
                        bit = controllers[i].bit;
        if (!bit)
                return -1;
        for (size_t i = 0; i < l->n_hiers; i++)
                if (!l->hiers[i].v2 && (l->hiers[i].controllers & bit))
                        return (int)i;
        return -1;
}

const char *us_cgroup_layout_controller(const struct us_cgroup_layout *l, const char *controller)
{
        int i = hier_index(l, controller);
        return i < 0 ? NULL : l->hiers[i].mountpoint;
}

/* ---- paths ---- */

int us_cgroup_path_validate(const char *path, size_t len, char **ret, struct us_error **err)
{
        if (!path || len == 0)
                return us_error_msg(err, EINVAL, "invalid cgroup path: empty");
        if (memchr(path, '\0', len))
                return us_error_msg(err, EINVAL, "invalid cgroup path: contains NUL");
        if (len > CG_PATH_MAX)
                return us_error_msg(err, ENAMETOOLONG, "invalid cgroup path: longer than %d bytes",
                                    CG_PATH_MAX);
        if (memchr(path, ':', len))
                return us_error_msg(err, EINVAL,
                                    "invalid cgroup path %.*s: systemd cgroup paths are not "
                                    "supported",
                                    (int)len, path);
        size_t i = path[0] == '/' ? 1 : 0;
        if (i == len)
                return us_error_msg(err, EINVAL, "invalid cgroup path /: the root cgroup");
        while (i <= len) {
                const char *c = memchr(path + i, '/', len - i);
                size_t clen = c ? (size_t)(c - (path + i)) : len - i;
                if (clen == 0)
                        return us_error_msg(err, EINVAL,
                                            "invalid cgroup path %.*s: empty component", (int)len,
                                            path);
                if ((clen == 1 && path[i] == '.') ||
                    (clen == 2 && path[i] == '.' && path[i + 1] == '.'))
                        return us_error_msg(err, EINVAL,
                                            "invalid cgroup path %.*s: \".\" or \"..\" component",
                                            (int)len, path);
                if (clen > 255)
                        return us_error_msg(err, ENAMETOOLONG,
                                            "invalid cgroup path: component longer than 255 "
                                            "bytes");
                if (!c)
                        break;
                i += clen + 1;
        }
        if (ret) {
                char *n = malloc(len + 2);
                if (!n)
                        return -ENOMEM;
                size_t off = path[0] == '/' ? 0 : 1;
                n[0] = '/';
                memcpy(n + off, path, len);
                n[len + off] = '\0';
                *ret = n;
        }
        return 0;
}

/* ---- the cgroup object ---- */

struct us_cgroup *us_cgroup_free(struct us_cgroup *cg)
{
        if (!cg)
                return NULL;
        if (cg->dirs && cg->layout)
                for (size_t i = 0; i < cg->layout->n_hiers; i++)
                        free(cg->dirs[i]);
        free(cg->dirs);
        free(cg->path);
        us_cgroup_layout_free(cg->layout);
        free(cg);
        return NULL;
}

static int cgroup_new(const struct us_cgroup_layout *l, const char *path, struct us_cgroup **ret,
                      struct us_error **err)
{
        if (!path)
                return us_error_msg(err, EINVAL, "invalid cgroup path: empty");
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = calloc(1, sizeof(*cg));
        if (!cg)
                return -ENOMEM;
        int r = us_cgroup_path_validate(path, strlen(path), &cg->path, err);
        if (r < 0)
                return r;
        cg->layout = layout_dup(l);
        if (!cg->layout)
                return -ENOMEM;
        cg->dirs = calloc(l->n_hiers ? l->n_hiers : 1, sizeof(char *));
        if (!cg->dirs)
                return -ENOMEM;
        for (size_t i = 0; i < l->n_hiers; i++) {
                const char *mp = l->hiers[i].mountpoint;
                if (asprintf(&cg->dirs[i], "%s%s", strcmp(mp, "/") == 0 ? "" : mp, cg->path) < 0) {
                        cg->dirs[i] = NULL;
                        return -ENOMEM;
                }
        }
        *ret = TAKE_PTR(cg);
        return 0;
}

const char *us_cgroup_path(const struct us_cgroup *cg)
{
        return cg->path;
}

const char *us_cgroup_dir(const struct us_cgroup *cg, const char *controller)
{
        int i = hier_index(cg->layout, controller);
        return i < 0 ? NULL : cg->dirs[i];
}

const char *us_cg_v1_dir(const struct us_cgroup *cg, uint32_t ctrl)
{
        for (size_t i = 0; i < cg->layout->n_hiers; i++)
                if (!cg->layout->hiers[i].v2 && (cg->layout->hiers[i].controllers & ctrl))
                        return cg->dirs[i];
        return NULL;
}

const char *us_cg_v2_dir(const struct us_cgroup *cg)
{
        for (size_t i = 0; i < cg->layout->n_hiers; i++)
                if (cg->layout->hiers[i].v2)
                        return cg->dirs[i];
        return NULL;
}

const char *us_cg_v2_ctrl_dir(const struct us_cgroup *cg)
{
        return cg->layout->mode == US_CGROUP_V2 ? us_cg_v2_dir(cg) : NULL;
}

/* Trimmed content of dir/file, "" when missing (fake trees). */
static int read_trimmed(const char *dir, const char *file, char **ret)
{
        _cleanup_free_ char *t = NULL;
        int r = us_cg_read(dir, file, &t, NULL);
        if (r == -ENOENT) {
                *ret = strdup("");
                return *ret ? 0 : -ENOMEM;
        }
        if (r < 0)
                return r;
        size_t n = strlen(t);
        while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == ' '))
                t[--n] = '\0';
        *ret = TAKE_PTR(t);
        return 0;
}

/* A new v1 cpuset cgroup starts with empty cpus/mems and takes no tasks
 * until they are set: copy them down from the parent. */
static int cpuset_fill(const struct us_cgroup *cg, const char *parent, const char *dir,
                       struct us_error **err)
{
        static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
        for (size_t i = 0; i < US_ELEMENTSOF(files); i++) {
                _cleanup_free_ char *cur = NULL, *pv = NULL;
                int r = read_trimmed(dir, files[i], &cur);
                if (r < 0)
                        return us_errorf(err, -r, "read %s/%s", dir, files[i]);
                if (cur[0])
                        continue;
                r = read_trimmed(parent, files[i], &pv);
                if (r < 0)
                        return us_errorf(err, -r, "read %s/%s", parent, files[i]);
                if (!pv[0])
                        continue;
                r = us_cg_write(cg, dir, files[i], pv, err);
                if (r < 0)
                        return us_error_wrap(err, r, "cgroup %s", dir);
        }
        return 0;
}

/* mkdir -p of the cgroup path under one hierarchy. */
static bool has_word(const char *list, const char *word, size_t len)
{
        for (const char *p = list; *p;) {
                size_t n = strcspn(p, " ");
                if (n == len && !strncmp(p, word, len))
                        return true;
                p += n;
                p += strspn(p, " ");
        }
        return false;
}

/* Enables the controllers of the space-separated list enable in dir's
 * subtree_control. Only those not enabled yet, and in one write: each write
 * that changes subtree_control makes the kernel walk and update the subtree
 * (on a guest under TCG, milliseconds apiece). Best effort, as a controller
 * may be unusable (threaded parent, no delegation): should the one write
 * fail, each controller is tried on its own. */
static int enable_controllers(const struct us_cgroup *cg, const char *dir, const char *enable)
{
        _cleanup_free_ char *have = NULL;
        if (read_trimmed(dir, "cgroup.subtree_control", &have) < 0)
                have = NULL;
        size_t cap = strlen(enable) * 2 + 2, len = 0;
        _cleanup_free_ char *want = malloc(cap);
        if (!want)
                return -ENOMEM;
        want[0] = '\0';
        for (const char *p = enable; *p;) {
                size_t n = strcspn(p, " ");
                if (n > 0 && !(have && has_word(have, p, n)))
                        len += (size_t)snprintf(want + len, cap - len, "%s+%.*s", len ? " " : "",
                                                (int)n, p);
                p += n;
                p += strspn(p, " ");
        }
        if (len == 0 || us_cg_write_quiet(cg, dir, "cgroup.subtree_control", want) == 0)
                return 0;
        char *save = NULL;
        for (char *t = strtok_r(want, " ", &save); t; t = strtok_r(NULL, " ", &save))
                (void)us_cg_write_quiet(cg, dir, "cgroup.subtree_control", t);
        return 0;
}

static int mkdir_hier(const struct us_cgroup *cg, size_t h, struct us_error **err)
{
        const struct us_cgroup_hier *hier = &cg->layout->hiers[h];
        bool cpuset = !hier->v2 && (hier->controllers & US_CG_CPUSET);
        _cleanup_free_ char *enable = NULL;
        if (hier->v2 && cg->layout->mode == US_CGROUP_V2) {
                /* Pure v2: controllers must be enabled in every ancestor's
                 * subtree_control before the leaf has their files. */
                if (read_trimmed(hier->mountpoint, "cgroup.controllers", &enable) < 0)
                        enable = NULL;
        }
        const char *dir = cg->dirs[h];
        size_t base = strlen(dir) - strlen(cg->path);
        _cleanup_free_ char *cur = strdup(dir);
        _cleanup_free_ char *parent = strdup(dir);
        if (!cur || !parent)
                return -ENOMEM;
        /* Walk each component after the mount point. */
        for (size_t i = base + 1; i <= strlen(dir); i++) {
                if (dir[i] != '/' && dir[i] != '\0')
                        continue;
                memcpy(parent, dir, i);
                parent[i] = '\0';
                char *slash = strrchr(parent, '/');
                size_t plen = (size_t)(slash - parent);
                memcpy(cur, dir, i);
                cur[i] = '\0';
                /* parent = cur without its last component, or the mount. */
                parent[plen ? plen : 1] = '\0';
                if (enable && enable[0]) {
                        int r = enable_controllers(cg, parent, enable);
                        if (r < 0)
                                return r;
                }
                if (mkdir(cur, 0755) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "mkdir %s", cur);
                if (cpuset) {
                        int r = cpuset_fill(cg, parent, cur, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

int us_cgroup_create_in(const struct us_cgroup_layout *l, const char *path, struct us_cgroup **ret,
                        struct us_error **err)
{
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = NULL;
        int r = cgroup_new(l, path, &cg, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                r = mkdir_hier(cg, i, err);
                if (r < 0)
                        return us_error_wrap(err, r, "create cgroup %s", cg->path);
        }
        *ret = TAKE_PTR(cg);
        return 0;
}

int us_cgroup_enable_children(struct us_cgroup *cg, struct us_error **err)
{
        if (cg->layout->mode != US_CGROUP_V2)
                return 0;
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                if (!cg->layout->hiers[i].v2)
                        continue;
                _cleanup_free_ char *have = NULL;
                int r = read_trimmed(cg->dirs[i], "cgroup.controllers", &have);
                if (r < 0)
                        return us_errorf(err, -r, "read %s/cgroup.controllers", cg->dirs[i]);
                if (have[0] && (r = enable_controllers(cg, cg->dirs[i], have)) < 0)
                        return us_errorf(err, -r, "enable controllers in %s", cg->dirs[i]);
        }
        return 0;
}

int us_cgroup_open_in(const struct us_cgroup_layout *l, const char *path, struct us_cgroup **ret,
                      struct us_error **err)
{
        _cleanup_(us_cgroup_free_cleanupp) struct us_cgroup *cg = NULL;
        int r = cgroup_new(l, path, &cg, err);
        if (r < 0)
                return r;
        bool any = false;
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                struct stat st;
                if (stat(cg->dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
                        any = true;
        }
        if (!any)
                return us_error_msg(err, ENOENT, "cgroup %s exists in no hierarchy", cg->path);
        *ret = TAKE_PTR(cg);
        return 0;
}

int us_cgroup_create(const char *root, const char *path, struct us_cgroup **ret,
                     struct us_error **err)
{
        int r = us_cgroup_path_validate(path, path ? strlen(path) : 0, NULL, err);
        if (r < 0)
                return r;
        _cleanup_(us_cgroup_layout_free_cleanupp) struct us_cgroup_layout *l = NULL;
        r = us_cgroup_layout_detect(root, &l, err);
        if (r < 0)
                return us_error_wrap(err, r, "detect cgroup layout");
        return us_cgroup_create_in(l, path, ret, err);
}

int us_cgroup_open(const char *root, const char *path, struct us_cgroup **ret,
                   struct us_error **err)
{
        int r = us_cgroup_path_validate(path, path ? strlen(path) : 0, NULL, err);
        if (r < 0)
                return r;
        _cleanup_(us_cgroup_layout_free_cleanupp) struct us_cgroup_layout *l = NULL;
        r = us_cgroup_layout_detect(root, &l, err);
        if (r < 0)
                return us_error_wrap(err, r, "detect cgroup layout");
        return us_cgroup_open_in(l, path, ret, err);
}

/* ---- processes ---- */

int us_cgroup_enter(struct us_cgroup *cg, pid_t pid, struct us_error **err)
{
        char v[32];
        snprintf(v, sizeof(v), "%d", (int)pid);
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                int r = us_cg_write(cg, cg->dirs[i], "cgroup.procs", v, err);
                if (r < 0)
                        return us_error_wrap(err, r, "enter cgroup %s", cg->dirs[i]);
        }
        return 0;
}

int us_cgroup_clone_fd(const struct us_cgroup *cg)
{
        if (cg->layout->mode != US_CGROUP_V2 || cg->layout->n_hiers != 1 || cg->layout->fake)
                return -EOPNOTSUPP;
        int fd = open(cg->dirs[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return fd < 0 ? -errno : fd;
}

/* The hierarchy whose cgroup.procs is authoritative for listing. */
static const char *procs_dir(const struct us_cgroup *cg)
{
        const char *d = us_cg_v1_dir(cg, US_CG_FREEZER);
        if (!d)
                d = us_cg_v1_dir(cg, US_CG_PIDS);
        if (!d)
                d = us_cg_v2_dir(cg);
        if (!d && cg->layout->n_hiers)
                d = cg->dirs[0];
        return d;
}

struct pidvec {
        pid_t *v;
        size_t n, cap;
};

static int pidvec_add(struct pidvec *pv, pid_t p)
{
        for (size_t i = 0; i < pv->n; i++)
                if (pv->v[i] == p)
                        return 0;
        if (pv->n == pv->cap) {
                if (pv->cap >= CG_MAX_PIDS)
                        return -E2BIG;
                size_t nc = pv->cap ? pv->cap * 2 : 16;
                pid_t *nv = realloc(pv->v, nc * sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                pv->v = nv;
                pv->cap = nc;
        }
        pv->v[pv->n++] = p;
        return 0;
}

static int collect_pids(const char *dir, unsigned depth, struct pidvec *pv, struct us_error **err)
{
        if (depth > CG_MAX_DEPTH)
                return us_error_msg(err, ELOOP, "cgroup %s nested too deep", dir);
        _cleanup_free_ char *text = NULL;
        int r = us_cg_read(dir, "cgroup.procs", &text, NULL);
        if (r == -ENOENT)
                return 0; /* removed meanwhile, or a fake tree without the file */
        if (r < 0)
                return us_errorf(err, -r, "read %s/cgroup.procs", dir);
        for (char *line = text; line && *line;) {
                char *nl = strchr(line, '\n');
                if (nl)
                        *nl = '\0';
                if (*line) {
                        uint64_t v;
                        if (us_cg_parse_u64(line, &v) < 0 || v == 0 || v > INT32_MAX)
                                return us_error_msg(err, EINVAL, "bad pid in %s/cgroup.procs", dir);
                        r = pidvec_add(pv, (pid_t)v);
                        if (r < 0)
                                return us_errorf(err, -r, "list pids of %s", dir);
                }
                line = nl ? nl + 1 : NULL;
        }
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "open %s", dir);
        DIR *d = fdopendir(dfd);
        if (!d)
                return us_errorf(err, errno, "opendir %s", dir);
        dfd = -1;
        struct dirent *de;
        r = 0;
        while ((de = readdir(d))) {
                if (de->d_type != DT_DIR || strcmp(de->d_name, ".") == 0 ||
                    strcmp(de->d_name, "..") == 0)
                        continue;
                _cleanup_free_ char *sub = NULL;
                if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0) {
                        r = -ENOMEM;
                        break;
                }
                r = collect_pids(sub, depth + 1, pv, err);
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

int us_cgroup_pids(struct us_cgroup *cg, pid_t **ret, size_t *ret_n, struct us_error **err)
{
        struct pidvec pv = {0};
        const char *dir = procs_dir(cg);
        if (dir) {
                int r = collect_pids(dir, 0, &pv, err);
                if (r < 0) {
                        free(pv.v);
                        return r;
                }
        }
        *ret = pv.v;
        *ret_n = pv.n;
        return 0;
}

/* ---- freezer ---- */

static int freeze_v1(struct us_cgroup *cg, const char *dir, bool frozen, struct us_error **err)
{
        const char *want = frozen ? "FROZEN" : "THAWED";
        for (unsigned waited = 0;; waited += 1) {
                /* Re-writing FROZEN restarts a freeze that a task's
                 * transition (vfork, exit) interrupted. */
                if (waited % 50 == 0) {
                        int r = us_cg_write(cg, dir, "freezer.state", want, err);
                        if (r < 0)
                                return us_error_wrap(err, r, "freeze cgroup %s", cg->path);
                }
                _cleanup_free_ char *st = NULL;
                int r = read_trimmed(dir, "freezer.state", &st);
                if (r < 0)
                        return us_errorf(err, -r, "read %s/freezer.state", dir);
                if (strcmp(st, want) == 0)
                        return 0;
                if (waited >= CG_FREEZE_WAIT_MS) {
                        if (frozen)
                                (void)us_cg_write_quiet(cg, dir, "freezer.state", "THAWED");
                        return us_error_msg(err, EBUSY, "freeze cgroup %s: state %s, want %s",
                                            cg->path, st, want);
                }
                sleep_ms(1);
        }
}

static int freeze_v2(struct us_cgroup *cg, const char *dir, bool frozen, struct us_error **err)
{
        int r = us_cg_write(cg, dir, "cgroup.freeze", frozen ? "1" : "0", err);
        if (r < 0)
                return us_error_wrap(err, r, "freeze cgroup %s", cg->path);
        uint64_t want = frozen ? 1 : 0;
        for (unsigned waited = 0;; waited++) {
                _cleanup_free_ char *ev = NULL;
                r = us_cg_read(dir, "cgroup.events", &ev, NULL);
                if (r == -ENOENT && cg->layout->fake)
                        return 0;
                if (r < 0)
                        return us_errorf(err, -r, "read %s/cgroup.events", dir);
                uint64_t v;
                if (us_cg_find_key(ev, "frozen", &v) == 0 && v == want)
                        return 0;
                if (waited >= CG_FREEZE_WAIT_MS) {
                        if (frozen)
                                (void)us_cg_write_quiet(cg, dir, "cgroup.freeze", "0");
                        return us_error_msg(err, EBUSY, "freeze cgroup %s: timed out", cg->path);
                }
                sleep_ms(1);
        }
}

int us_cgroup_freeze(struct us_cgroup *cg, bool frozen, struct us_error **err)
{
        const char *d = us_cg_v1_dir(cg, US_CG_FREEZER);
        if (d)
                return freeze_v1(cg, d, frozen, err);
        d = us_cg_v2_dir(cg);
        if (d)
                return freeze_v2(cg, d, frozen, err);
        return us_error_msg(err, ENOTSUP, "freeze cgroup %s: no freezer on this host", cg->path);
}

static bool is_frozen(const struct us_cgroup *cg)
{
        const char *d = us_cg_v1_dir(cg, US_CG_FREEZER);
        _cleanup_free_ char *st = NULL;
        if (d) {
                if (read_trimmed(d, "freezer.state", &st) < 0)
                        return false;
                return strcmp(st, "THAWED") != 0 && st[0];
        }
        d = us_cg_v2_dir(cg);
        if (d && us_cg_read(d, "cgroup.freeze", &st, NULL) == 0)
                return st[0] == '1';
        return false;
}

static int signal_pids(struct us_cgroup *cg, int sig, size_t *ret_n, struct us_error **err)
{
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;
        int r = us_cgroup_pids(cg, &pids, &n, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if (kill(pids[i], sig) < 0 && errno != ESRCH)
                        return us_errorf(err, errno, "kill %d", (int)pids[i]);
        *ret_n = n;
        return 0;
}

int us_cgroup_kill_all(struct us_cgroup *cg, int sig, struct us_error **err)
{
        size_t n = 0;
        int r;
        if (sig != SIGKILL) {
                r = signal_pids(cg, sig, &n, err);
                return r < 0 ? us_error_wrap(err, r, "signal cgroup %s", cg->path) : 0;
        }
        const char *v2 = us_cg_v2_ctrl_dir(cg);
        if (v2 && !cg->layout->fake && us_cg_exists(v2, "cgroup.kill")) {
                r = us_cg_write(cg, v2, "cgroup.kill", "1", err);
                if (r < 0 && r != -ENOENT)
                        return us_error_wrap(err, r, "kill cgroup %s", cg->path);
        }
        /* A frozen task only dies once thawed. */
        if (is_frozen(cg)) {
                r = us_cgroup_freeze(cg, false, err);
                if (r < 0)
                        return us_error_wrap(err, r, "kill cgroup %s", cg->path);
        }
        for (unsigned attempt = 0; attempt < CG_KILL_ATTEMPTS; attempt++) {
                r = signal_pids(cg, SIGKILL, &n, err);
                if (r < 0)
                        return us_error_wrap(err, r, "kill cgroup %s", cg->path);
                if (n == 0 || cg->layout->fake)
                        return 0;
                sleep_ms(attempt < 10 ? 1 : 10);
        }
        return 0; /* the survivors are dying; destroy waits for them */
}

/* ---- OOM events ---- */

int us_cgroup_oom_fd(struct us_cgroup *cg, int *ret_fd, struct us_error **err)
{
        const char *d = us_cg_v1_dir(cg, US_CG_MEMORY);
        if (d) {
                _cleanup_close_ int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
                if (efd < 0)
                        return us_errorf(err, errno, "eventfd");
                _cleanup_close_ int ofd = open_in(d, "memory.oom_control", O_RDONLY, 0);
                if (ofd < 0)
                        return us_errorf(err, -ofd, "open %s/memory.oom_control", d);
                char v[64];
                snprintf(v, sizeof(v), "%d %d", efd, ofd);
                int r = us_cg_write(cg, d, "cgroup.event_control", v, err);
                if (r < 0)
                        return us_error_wrap(err, r, "register OOM event for %s", cg->path);
                *ret_fd = TAKE_FD(efd);
                return 0;
        }
        d = us_cg_v2_ctrl_dir(cg);
        if (!d)
                return us_error_msg(err, ENOTSUP, "no memory controller for cgroup %s", cg->path);
        _cleanup_close_ int ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ifd < 0)
                return us_errorf(err, errno, "inotify_init1");
        _cleanup_free_ char *p = NULL;
        if (asprintf(&p, "%s/memory.events", d) < 0)
                return -ENOMEM;
        if (inotify_add_watch(ifd, p, IN_MODIFY) < 0)
                return us_errorf(err, errno, "watch %s", p);
        *ret_fd = TAKE_FD(ifd);
        return 0;
}

int us_cgroup_oom_count(struct us_cgroup *cg, uint64_t *ret, struct us_error **err)
{
        _cleanup_free_ char *text = NULL;
        uint64_t v = 0;
        const char *d = us_cg_v1_dir(cg, US_CG_MEMORY);
        if (d) {
                int r = us_cg_read(d, "memory.oom_control", &text, err);
                if (r < 0)
                        return r;
                /* oom_kill exists since Linux 4.13; before that under_oom
                 * is the only signal there is. */
                if (us_cg_find_key(text, "oom_kill", &v) < 0 &&
                    us_cg_find_key(text, "under_oom", &v) < 0)
                        return us_error_msg(err, EINVAL, "parse %s/memory.oom_control", d);
                *ret = v;
                return 0;
        }
        d = us_cg_v2_ctrl_dir(cg);
        if (!d)
                return us_error_msg(err, ENOTSUP, "no memory controller for cgroup %s", cg->path);
        int r = us_cg_read(d, "memory.events", &text, err);
        if (r < 0)
                return r;
        if (us_cg_find_key(text, "oom_kill", &v) < 0)
                return us_error_msg(err, EINVAL, "parse %s/memory.events", d);
        *ret = v;
        return 0;
}

int us_cgroup_oom_event(struct us_cgroup *cg, int fd, uint64_t *last_count, bool *ret_oom,
                        struct us_error **err)
{
        uint8_t buf[4096]; /* an eventfd counter, or inotify records */
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno != EAGAIN && errno != EINTR)
                return us_errorf(err, errno, "read OOM notification of %s", cg->path);

        const char *d = us_cg_v1_dir(cg, US_CG_MEMORY);
        if (d) {
                _cleanup_free_ char *text = NULL;
                /* Gone: the notification was the cgroup's removal. */
                if (us_cg_read(d, "memory.oom_control", &text, NULL) < 0) {
                        *ret_oom = false;
                        return 0;
                }
                uint64_t v = 0;
                if (us_cg_find_key(text, "oom_kill", &v) == 0 && v > *last_count)
                        *last_count = v;
                *ret_oom = n > 0;
                return 0;
        }
        uint64_t count = 0;
        int r = us_cgroup_oom_count(cg, &count, err);
        if (r < 0)
                return r;
        *ret_oom = count > *last_count;
        *last_count = count;
        return 0;
}

/* ---- the container's view: mounts ---- */

static int bind_one(const char *src, const char *dst, bool readonly, struct us_error **err)
{
        if (mount(src, dst, NULL, MS_BIND | MS_REC, NULL) < 0)
                return us_errorf(err, errno, "bind mount %s on %s", src, dst);
        if (readonly &&
            mount(NULL, dst, NULL,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
                return us_errorf(err, errno, "remount %s read-only", dst);
        return 0;
}

int us_cgroup_mount(struct us_cgroup *cg, const char *dest, bool readonly, struct us_error **err)
{
        if (!dest || dest[0] != '/')
                return us_error_msg(err, EINVAL, "cgroup mount destination must be absolute");
        if (cg->layout->mode == US_CGROUP_V2) {
                int r = bind_one(cg->dirs[0], dest, readonly, err);
                return r < 0 ? us_error_wrap(err, r, "mount cgroup at %s", dest) : 0;
        }
        if (mount("tmpfs", dest, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=755") < 0)
                return us_errorf(err, errno, "mount tmpfs on %s", dest);
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                const struct us_cgroup_hier *h = &cg->layout->hiers[i];
                _cleanup_free_ char *target = NULL;
                if (asprintf(&target, "%s/%s", dest, h->name) < 0)
                        return -ENOMEM;
                if (mkdir(target, 0755) < 0 && errno != EEXIST)
                        return us_errorf(err, errno, "mkdir %s", target);
                int r = bind_one(cg->dirs[i], target, readonly, err);
                if (r < 0)
                        return us_error_wrap(err, r, "mount cgroup at %s", dest);
                /* Co-mounted controllers get the host's symlinks:
                 * cpu -> cpu,cpuacct and cpuacct -> cpu,cpuacct. */
                if (h->v2 || !strchr(h->name, ','))
                        continue;
                _cleanup_free_ char *names = strdup(h->name);
                if (!names)
                        return -ENOMEM;
                char *save = NULL;
                for (char *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                        _cleanup_free_ char *link = NULL;
                        if (asprintf(&link, "%s/%s", dest, t) < 0)
                                return -ENOMEM;
                        if (symlink(h->name, link) < 0 && errno != EEXIST)
                                return us_errorf(err, errno, "symlink %s", link);
                }
        }
        if (readonly &&
            mount(NULL, dest, NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  "mode=755") < 0)
                return us_errorf(err, errno, "remount %s read-only", dest);
        return 0;
}

/* ---- destroy ---- */

static int rmdir_tree(const struct us_cgroup *cg, const char *dir, unsigned depth,
                      struct us_error **err)
{
        if (depth > CG_MAX_DEPTH)
                return us_error_msg(err, ELOOP, "cgroup %s nested too deep", dir);
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0)
                return errno == ENOENT ? 0 : us_errorf(err, errno, "open %s", dir);
        DIR *d = fdopendir(dfd);
        if (!d)
                return us_errorf(err, errno, "opendir %s", dir);
        int fd = TAKE_FD(dfd);
        struct dirent *de;
        int r = 0;
        while ((de = readdir(d))) {
                if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                        continue;
                if (de->d_type == DT_DIR) {
                        _cleanup_free_ char *sub = NULL;
                        if (asprintf(&sub, "%s/%s", dir, de->d_name) < 0) {
                                r = -ENOMEM;
                                break;
                        }
                        r = rmdir_tree(cg, sub, depth + 1, err);
                        if (r < 0)
                                break;
                } else if (cg->layout->fake) {
                        (void)unlinkat(fd, de->d_name, 0);
                }
        }
        closedir(d);
        if (r < 0)
                return r;
        for (unsigned i = 0;; i++) {
                if (rmdir(dir) == 0 || errno == ENOENT)
                        return 0;
                if (errno != EBUSY || i >= CG_RMDIR_RETRIES)
                        return us_errorf(err, errno, "rmdir %s", dir);
                sleep_ms(10);
        }
}

int us_cgroup_destroy(struct us_cgroup *cg, struct us_error **err)
{
        int r = us_cgroup_kill_all(cg, SIGKILL, err);
        if (r < 0 && r != -ENOENT)
                return us_error_wrap(err, r, "destroy cgroup %s", cg->path);
        for (unsigned waited = 0; !cg->layout->fake; waited += 10) {
                _cleanup_free_ pid_t *pids = NULL;
                size_t n = 0;
                r = us_cgroup_pids(cg, &pids, &n, err);
                if (r < 0)
                        return us_error_wrap(err, r, "destroy cgroup %s", cg->path);
                if (n == 0)
                        break;
                if (waited >= CG_DESTROY_WAIT_MS)
                        return us_error_msg(err, EBUSY,
                                            "destroy cgroup %s: %zu processes did not exit",
                                            cg->path, n);
                for (size_t i = 0; i < n; i++)
                        (void)kill(pids[i], SIGKILL);
                sleep_ms(10);
        }
        int first = 0;
        for (size_t i = 0; i < cg->layout->n_hiers; i++) {
                r = rmdir_tree(cg, cg->dirs[i], 0, err);
                if (r < 0 && !first)
                        first = r;
        }
        if (first < 0)
                return us_error_wrap(err, first, "destroy cgroup %s", cg->path);
        return 0;
}
