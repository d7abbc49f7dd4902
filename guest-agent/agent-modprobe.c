/* SPDX-License-Identifier: Apache-2.0 */
/* The kernel's modprobe helper: on-demand modules from a store only the
 * agent's root reaches (agent-modprobe.h, docs/guest.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <lzma.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "agent-modprobe.h"
#include "base/cleanup.h"
#include "base/fs-util.h"

#define MODNAME_LEN   55 /* MODULE_NAME_LEN - 1 */
#define LINE_TOKENS   128
#define ON_DEMAND_DIR "lib/modules/on-demand"

struct modentry {
        const char *name;
        size_t first_dep, n_deps; /* into agent_modindex.deps */
};

struct aliasentry {
        const char *pattern, *name;
};

struct fileentry {
        const char *name;
        uint64_t offset, size; /* the module's xz stream in AGENT_MODULE_PACK */
};

struct agent_modindex {
        char *text;
        struct modentry *mods;
        size_t n_mods;
        struct aliasentry *aliases;
        size_t n_aliases;
        const char **deps;
        size_t n_deps;
        struct fileentry *files;
        size_t n_files;
};

struct agent_modindex *agent_modindex_free(struct agent_modindex *idx)
{
        if (idx) {
                free(idx->text);
                free(idx->mods);
                free(idx->aliases);
                free(idx->deps);
                free(idx->files);
                free(idx);
        }
        return NULL;
}

static void agent_modindex_freep(struct agent_modindex **idx)
{
        agent_modindex_free(*idx);
}

static bool valid_name(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > MODNAME_LEN)
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
                      (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return true;
}

static bool valid_pattern(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > AGENT_MODNAME_MAX)
                return false;
        for (; *s; s++)
                if (*s <= ' ' || *s > '~')
                        return false;
        return true;
}

/* As modprobe: '-' and '_' are the same in names and aliases (not inside a
 * pattern's [...] class). */
static void normalize(char *s)
{
        bool in_class = false;
        for (; *s; s++) {
                if (*s == '[')
                        in_class = true;
                else if (*s == ']')
                        in_class = false;
                else if (*s == '-' && !in_class)
                        *s = '_';
        }
}

/* A decimal number of at most max, no sign, no leading zero. */
static bool parse_u64(const char *s, uint64_t max, uint64_t *ret)
{
        uint64_t v = 0;
        if (!*s || (s[0] == '0' && s[1]))
                return false;
        for (; *s; s++) {
                if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10)
                        return false;
                v = v * 10 + (uint64_t)(*s - '0');
        }
        *ret = v;
        return true;
}

static int grow(void *pp, size_t *cap, size_t need, size_t size)
{
        if (need <= *cap)
                return 0;
        size_t ncap = *cap ? *cap * 2 : 64;
        while (ncap < need)
                ncap *= 2;
        void *n = realloc(*(void **)pp, ncap * size);
        if (!n)
                return -ENOMEM;
        *(void **)pp = n;
        *cap = ncap;
        return 0;
}

int agent_modindex_parse(const char *text, size_t len, struct agent_modindex **ret,
                         struct us_error **err)
{
        if (len > AGENT_MODINDEX_MAX)
                return us_error_msg(err, EFBIG, "module index: %zu bytes, at most %u", len,
                                    AGENT_MODINDEX_MAX);
        _cleanup_(agent_modindex_freep) struct agent_modindex *idx = calloc(1, sizeof(*idx));
        if (!idx || !(idx->text = malloc(len + 1)))
                return us_errorf(err, ENOMEM, "module index");
        memcpy(idx->text, text, len);
        idx->text[len] = '\0';
        if (memchr(idx->text, '\0', len))
                return us_error_msg(err, EINVAL, "module index: a NUL byte");
        size_t cap_m = 0, cap_a = 0, cap_d = 0, cap_f = 0, lineno = 0;
        char *save = NULL;
        for (char *line = strtok_r(idx->text, "\n", &save); line;
             line = strtok_r(NULL, "\n", &save)) {
                lineno++;
                if (line[0] == '#')
                        continue;
                char *tok[LINE_TOKENS], *ts = NULL;
                size_t n = 0;
                for (char *t = strtok_r(line, " ", &ts); t; t = strtok_r(NULL, " ", &ts)) {
                        if (n == LINE_TOKENS)
                                return us_error_msg(err, EINVAL,
                                                    "module index line %zu: over %d words", lineno,
                                                    LINE_TOKENS);
                        tok[n++] = t;
                }
                if (n == 0)
                        continue;
                if (!strcmp(tok[0], "module") && n >= 2) {
                        for (size_t i = 1; i < n; i++)
                                if (!valid_name(tok[i]))
                                        return us_error_msg(err, EINVAL,
                                                            "module index line %zu: bad name",
                                                            lineno);
                        if (grow(&idx->mods, &cap_m, idx->n_mods + 1, sizeof(*idx->mods)) < 0 ||
                            grow(&idx->deps, &cap_d, idx->n_deps + n - 2, sizeof(*idx->deps)) < 0)
                                return us_errorf(err, ENOMEM, "module index");
                        idx->mods[idx->n_mods++] = (struct modentry){
                                .name = tok[1], .first_dep = idx->n_deps, .n_deps = n - 2};
                        for (size_t i = 2; i < n; i++)
                                idx->deps[idx->n_deps++] = tok[i];
                } else if (!strcmp(tok[0], "alias") && n == 3) {
                        if (!valid_pattern(tok[1]) || !valid_name(tok[2]))
                                return us_error_msg(err, EINVAL, "module index line %zu: bad alias",
                                                    lineno);
                        normalize(tok[1]);
                        if (grow(&idx->aliases, &cap_a, idx->n_aliases + 1, sizeof(*idx->aliases)) <
                            0)
                                return us_errorf(err, ENOMEM, "module index");
                        idx->aliases[idx->n_aliases++] =
                                (struct aliasentry){.pattern = tok[1], .name = tok[2]};
                } else if (!strcmp(tok[0], "file") && n == 4) {
                        struct fileentry f = {.name = tok[1]};
                        if (!valid_name(tok[1]) ||
                            !parse_u64(tok[2], AGENT_MODULE_PACK_MAX, &f.offset) ||
                            !parse_u64(tok[3], AGENT_MODULE_XZ_MAX, &f.size) || f.size == 0 ||
                            f.size > AGENT_MODULE_PACK_MAX - f.offset)
                                return us_error_msg(err, EINVAL, "module index line %zu: bad file",
                                                    lineno);
                        if (grow(&idx->files, &cap_f, idx->n_files + 1, sizeof(*idx->files)) < 0)
                                return us_errorf(err, ENOMEM, "module index");
                        idx->files[idx->n_files++] = f;
                } else {
                        return us_error_msg(err, EINVAL, "module index line %zu: not understood",
                                            lineno);
                }
        }
        *ret = TAKE_PTR(idx);
        return 0;
}

static const struct modentry *find_module(const struct agent_modindex *idx, const char *name)
{
        for (size_t i = 0; i < idx->n_mods; i++)
                if (!strcmp(idx->mods[i].name, name))
                        return &idx->mods[i];
        return NULL;
}

static int add_name(const char **v, size_t *n, const char *name)
{
        for (size_t i = 0; i < *n; i++)
                if (!strcmp(v[i], name))
                        return 0;
        if (*n == AGENT_MODLOAD_MAX)
                return -E2BIG;
        v[(*n)++] = name;
        return 0;
}

/* The module's dependencies (already complete and in load order in the
 * index), then the module. A name without a module line is a dependency
 * outside the store: loaded already, or failing to load. */
static int add_module(const struct agent_modindex *idx, const char **v, size_t *n, const char *name)
{
        const struct modentry *m = find_module(idx, name);
        int r = 0;
        for (size_t i = 0; m && r == 0 && i < m->n_deps; i++)
                r = add_name(v, n, idx->deps[m->first_dep + i]);
        return r < 0 ? r : add_name(v, n, m ? m->name : name);
}

int agent_modindex_resolve(const struct agent_modindex *idx, const char *want,
                           const char ***ret_names, struct us_error **err)
{
        if (!valid_pattern(want))
                return us_error_msg(err, EINVAL, "module name: empty, blank or too long");
        char norm[AGENT_MODNAME_MAX + 1];
        snprintf(norm, sizeof(norm), "%s", want);
        normalize(norm);
        _cleanup_free_ const char **v = calloc(AGENT_MODLOAD_MAX + 1, sizeof(*v));
        if (!v)
                return us_errorf(err, ENOMEM, "resolve module %s", want);
        size_t n = 0;
        int r = 0;
        if (find_module(idx, norm)) {
                r = add_module(idx, v, &n, norm);
        } else {
                for (size_t i = 0; r == 0 && i < idx->n_aliases; i++)
                        if (fnmatch(idx->aliases[i].pattern, norm, 0) == 0)
                                r = add_module(idx, v, &n, idx->aliases[i].name);
        }
        if (r < 0)
                return us_error_msg(err, r, "module %s: more than %d modules to load", want,
                                    AGENT_MODLOAD_MAX);
        if (n == 0)
                return us_error_msg(err, ENOENT, "module %s: not in the guest image", want);
        *ret_names = TAKE_PTR(v);
        return 0;
}

int agent_modindex_file(const struct agent_modindex *idx, const char *name, uint64_t *ret_offset,
                        uint64_t *ret_size)
{
        for (size_t i = 0; i < idx->n_files; i++)
                if (!strcmp(idx->files[i].name, name)) {
                        *ret_offset = idx->files[i].offset;
                        *ret_size = idx->files[i].size;
                        return 0;
                }
        return -ENOENT;
}

/* ---- the store (PID 1) ---- */

static int copy_file(int src_dir, int dst_dir, const char *name, uint64_t *bytes,
                     struct us_error **err)
{
        _cleanup_close_ int in = openat(src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return us_errorf(err, errno, "open %s", name);
        struct stat st;
        if (fstat(in, &st) < 0)
                return us_errorf(err, errno, "stat %s", name);
        if (!S_ISREG(st.st_mode))
                return 0;
        _cleanup_close_ int out =
                openat(dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0444);
        if (out < 0)
                return us_errorf(err, errno, "create %s", name);
        for (off_t left = st.st_size; left > 0;) {
                ssize_t k = sendfile(out, in, NULL, (size_t)left);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return us_errorf(err, k < 0 ? errno : EIO, "copy %s", name);
                left -= k;
        }
        *bytes += (uint64_t)st.st_size;
        return 0;
}

int agent_modprobe_install(int initramfs, unsigned *ret_files, uint64_t *ret_bytes,
                           struct us_error **err)
{
        _cleanup_close_ int src =
                openat(initramfs, ON_DEMAND_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (src < 0) {
                if (errno != ENOENT)
                        return us_errorf(err, errno, "open /" ON_DEMAND_DIR);
                *ret_files = 0;
                *ret_bytes = 0;
                return 0;
        }
        /* A tmpfs of its own, filled here and then read-only: the initramfs
         * is not private (a container with CAP_SYS_ADMIN that detaches its /
         * finds it below and may write there), this mount is only in the
         * agent's root, which every container leaves by pivot_root. The
         * helper must read nothing a container controls. */
        _cleanup_close_ int fs = fsopen("tmpfs", FSOPEN_CLOEXEC);
        if (fs < 0)
                return us_errorf(err, errno, "fsopen tmpfs");
        if (fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) < 0 ||
            fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
                return us_errorf(err, errno, "create the module store");
        _cleanup_close_ int store = fsmount(
                fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
        if (store < 0)
                return us_errorf(err, errno, "fsmount the module store");
        int dfd = fcntl(src, F_DUPFD_CLOEXEC, 3);
        DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
        if (!d) {
                us_close(dfd);
                return us_errorf(err, errno, "read /" ON_DEMAND_DIR);
        }
        unsigned files = 0;
        uint64_t bytes = 0;
        int r = 0;
        struct dirent *de;
        while (r == 0 && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                r = copy_file(src, store, de->d_name, &bytes, err);
                files++;
        }
        closedir(d);
        if (r < 0)
                return us_error_wrap(err, r, "fill the module store");
        /* The helper is the agent itself: its file is gone from the
         * initramfs once that is emptied, PID 1's exe link still reaches it. */
        if (symlinkat("/proc/1/exe", store, "modprobe") < 0)
                return us_errorf(err, errno, "link the modprobe helper");
        struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
        if (mount_setattr(store, "", AT_EMPTY_PATH, &ro, sizeof(ro)) < 0)
                return us_errorf(err, errno, "make the module store read-only");
        if (mkdir(AGENT_MODULE_DIR, 0755) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "mkdir " AGENT_MODULE_DIR);
        if (move_mount(store, "", AT_FDCWD, AGENT_MODULE_DIR, MOVE_MOUNT_F_EMPTY_PATH) < 0)
                return us_errorf(err, errno, "mount the module store on " AGENT_MODULE_DIR);
        /* Kernel threads share PID 1's fs_struct: the kernel resolves this
         * path in the agent's root. */
        _cleanup_close_ int sysctl = open("/proc/sys/kernel/modprobe", O_WRONLY | O_CLOEXEC);
        static const char helper[] = AGENT_MODULE_DIR "/modprobe\n";
        if (sysctl < 0 || us_write_all(sysctl, helper, sizeof(helper) - 1) < 0)
                return us_errorf(err, errno, "set /proc/sys/kernel/modprobe");
        *ret_files = files;
        *ret_bytes = bytes;
        return 0;
}

/* ---- the helper (a process the kernel starts) ---- */

bool agent_modprobe_invoked(const char *argv0)
{
        if (!argv0)
                return false;
        const char *base = strrchr(argv0, '/');
        return !strcmp(base ? base + 1 : argv0, "modprobe");
}

/* The kernel starts the helper without stdio and nobody reads its output:
 * messages go to the kernel log (the VM's console). */
static void __attribute__((format(printf, 1, 2))) kmsg(const char *fmt, ...)
{
        char buf[512];
        int n = snprintf(buf, sizeof(buf), "<4>unishim-modprobe: ");
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
        va_end(ap);
        if (n > (int)sizeof(buf) - 2)
                n = (int)sizeof(buf) - 2;
        buf[n++] = '\n';
        _cleanup_close_ int fd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
        if (fd >= 0)
                (void)us_write_all(fd, buf, (size_t)n);
}

static int read_bounded(int dir, const char *name, size_t max, uint8_t **ret, size_t *ret_len,
                        struct us_error **err)
{
        _cleanup_close_ int fd = openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return us_errorf(err, errno, "open %s", name);
        struct stat st;
        if (fstat(fd, &st) < 0)
                return us_errorf(err, errno, "stat %s", name);
        if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > max)
                return us_error_msg(err, EFBIG, "%s: not a file of 1 to %zu bytes", name, max);
        _cleanup_free_ uint8_t *buf = malloc((size_t)st.st_size);
        if (!buf)
                return us_errorf(err, ENOMEM, "read %s", name);
        size_t got = 0;
        while (got < (size_t)st.st_size) {
                ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return us_errorf(err, k < 0 ? errno : EIO, "read %s", name);
                got += (size_t)k;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = got;
        return 0;
}

static int unxz(const uint8_t *in, size_t in_len, uint8_t **ret, size_t *ret_len,
                struct us_error **err)
{
        lzma_stream s = LZMA_STREAM_INIT;
        if (lzma_stream_decoder(&s, 64u << 20, 0) != LZMA_OK)
                return us_error_msg(err, ENOMEM, "xz decoder");
        size_t cap = in_len * 4;
        uint8_t *out = malloc(cap);
        lzma_ret lr = out ? LZMA_OK : LZMA_MEM_ERROR;
        s.next_in = in;
        s.avail_in = in_len;
        while (lr == LZMA_OK) {
                if (s.total_out == cap) {
                        size_t ncap = cap * 2 > AGENT_MODULE_MAX ? AGENT_MODULE_MAX : cap * 2;
                        uint8_t *n = ncap > cap ? realloc(out, ncap) : NULL;
                        if (!n) {
                                lr = LZMA_MEM_ERROR;
                                break;
                        }
                        out = n;
                        cap = ncap;
                }
                s.next_out = out + s.total_out;
                s.avail_out = cap - s.total_out;
                lr = lzma_code(&s, LZMA_FINISH);
        }
        size_t len = s.total_out;
        lzma_end(&s);
        if (lr != LZMA_STREAM_END) {
                free(out);
                return us_error_msg(err, lr == LZMA_MEM_ERROR ? ENOMEM : EINVAL,
                                    "xz: error %d (over %u bytes, or corrupt)", (int)lr,
                                    AGENT_MODULE_MAX);
        }
        *ret = out;
        *ret_len = len;
        return 0;
}

/* The module's stream, exactly its size, from the pack. */
static int read_packed(const struct agent_modindex *idx, int pack, const char *name, uint8_t **ret,
                       size_t *ret_len, struct us_error **err)
{
        uint64_t off, size;
        if (agent_modindex_file(idx, name, &off, &size) < 0)
                return us_error_msg(err, ENOENT, "not in " AGENT_MODULE_PACK);
        _cleanup_free_ uint8_t *buf = malloc((size_t)size);
        if (!buf)
                return us_errorf(err, ENOMEM, "read");
        size_t got = 0;
        while (got < size) {
                ssize_t k = pread(pack, buf + got, (size_t)size - got, (off_t)(off + got));
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return us_errorf(err, k < 0 ? errno : EIO, "read " AGENT_MODULE_PACK);
                got += (size_t)k;
        }
        *ret = TAKE_PTR(buf);
        *ret_len = got;
        return 0;
}

static int load_module(const struct agent_modindex *idx, int pack, const char *name,
                       struct us_error **err)
{
        char path[128];
        /* Loaded already (or built in, with parameters): nothing to read. */
        snprintf(path, sizeof(path), "/sys/module/%s", name);
        if (access(path, F_OK) == 0)
                return 0;
        _cleanup_free_ uint8_t *xz = NULL, *ko = NULL;
        size_t xz_len = 0, ko_len = 0;
        int r = read_packed(idx, pack, name, &xz, &xz_len, err);
        if (r < 0)
                return us_error_wrap(err, r, "module %s", name);
        r = unxz(xz, xz_len, &ko, &ko_len, err);
        if (r < 0)
                return us_error_wrap(err, r, "module %s", name);
        if (syscall(SYS_init_module, ko, (unsigned long)ko_len, "") < 0 && errno != EEXIST)
                return us_errorf(err, errno, "load module %s", name);
        return 0;
}

int agent_modprobe_main(int argc, char **argv)
{
        /* fds 0-2 absent: anything opened first must not become them. */
        int fd;
        while ((fd = open("/dev/null", O_RDWR)) >= 0 && fd <= STDERR_FILENO)
                ;
        us_close(fd);
        const char *want = NULL;
        bool options_done = false;
        for (int i = 1; i < argc; i++) {
                const char *a = argv[i];
                if (!options_done && !strcmp(a, "--"))
                        options_done = true;
                else if (!options_done && a[0] == '-' && strcmp(a, "-q") != 0) {
                        kmsg("option %.32s: only `modprobe [-q] [--] NAME` is served", a);
                        return 2;
                } else if (options_done || a[0] != '-') {
                        if (want) {
                                kmsg("one module name at a time");
                                return 2;
                        }
                        want = a;
                }
        }
        if (!want)
                return 2;
        struct us_error *err = NULL;
        _cleanup_(agent_modindex_freep) struct agent_modindex *idx = NULL;
        _cleanup_free_ uint8_t *text = NULL;
        _cleanup_free_ const char **names = NULL;
        size_t len = 0;
        _cleanup_close_ int store = open(AGENT_MODULE_DIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int r = store < 0 ? us_errorf(&err, errno, "open " AGENT_MODULE_DIR) : 0;
        if (r == 0)
                r = read_bounded(store, AGENT_MODULE_INDEX, AGENT_MODINDEX_MAX, &text, &len, &err);
        if (r == 0)
                r = agent_modindex_parse((const char *)text, len, &idx, &err);
        if (r == 0)
                r = agent_modindex_resolve(idx, want, &names, &err);
        _cleanup_close_ int pack = -1;
        if (r == 0 &&
            (pack = openat(store, AGENT_MODULE_PACK, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) < 0)
                r = us_errorf(&err, errno, "open " AGENT_MODULE_PACK);
        for (size_t i = 0; r == 0 && names[i]; i++)
                r = load_module(idx, pack, names[i], &err);
        if (r < 0) {
                kmsg("%s", us_error_text(err));
                err = us_error_free(err);
                return 1;
        }
        return 0;
}
