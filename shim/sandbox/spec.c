/* SPDX-License-Identifier: Apache-2.0 */
#include "spec.h"

#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "base/cleanup.h"
#include "oci/oci-spec-json.h"
#include "oci/oci-spec.h"

DEFINE_CLEANUP(yajl_gen, yajl_gen_free)

static const struct {
        const char *name;
        int flag;
} ns_types[] = {
        {"pid", CLONE_NEWPID},   {"network", CLONE_NEWNET}, {"ipc", CLONE_NEWIPC},
        {"uts", CLONE_NEWUTS},   {"mount", CLONE_NEWNS},    {"cgroup", CLONE_NEWCGROUP},
        {"user", CLONE_NEWUSER},
};

static int ns_flag(yajl_val ns)
{
        const char *path[] = {"type", NULL};
        yajl_val t = yajl_tree_get(ns, path, yajl_t_string);
        const char *name = t ? YAJL_GET_STRING(t) : NULL;
        if (!name)
                return 0;
        for (size_t i = 0; i < US_ELEMENTSOF(ns_types); i++)
                if (strcmp(name, ns_types[i].name) == 0)
                        return ns_types[i].flag;
        return 0;
}

static int gen_string(yajl_gen g, const char *s)
{
        if (!s)
                return yajl_gen_null(g) == yajl_gen_status_ok ? 0 : -EINVAL;
        return yajl_gen_string(g, (const unsigned char *)s, strlen(s)) == yajl_gen_status_ok
                       ? 0
                       : -EINVAL;
}

/* Where in the document a value sits, for the few places that change. */
enum where {
        W_OTHER,
        W_ROOT_OBJ,  /* the top-level object */
        W_ROOT,      /* "root" */
        W_LINUX,     /* "linux" */
        W_MOUNTS,    /* "mounts" */
        W_MOUNT,     /* one mount */
        W_NAMESPACES /* "linux.namespaces" */
};

struct ctx {
        yajl_gen g;
        const struct sandbox_spec_rewrite *rw;
        size_t mount_index;
};

static int emit(struct ctx *c, yajl_val v, enum where w);

static int emit_object(struct ctx *c, yajl_val v, enum where w)
{
        if (yajl_gen_map_open(c->g) != yajl_gen_status_ok)
                return -EINVAL;
        size_t mi = c->mount_index;
        for (size_t i = 0; i < v->u.object.len; i++) {
                const char *k = v->u.object.keys[i];
                yajl_val child = v->u.object.values[i];
                enum where cw = W_OTHER;
                if (w == W_ROOT_OBJ && strcmp(k, "hooks") == 0)
                        continue; /* host binaries: nothing to run in the guest */
                if (w == W_ROOT_OBJ && strcmp(k, "root") == 0)
                        cw = W_ROOT;
                else if (w == W_ROOT_OBJ && strcmp(k, "linux") == 0)
                        cw = W_LINUX;
                else if (w == W_ROOT_OBJ && strcmp(k, "mounts") == 0)
                        cw = W_MOUNTS;
                else if (w == W_LINUX && strcmp(k, "namespaces") == 0)
                        cw = W_NAMESPACES;

                const char *replace = NULL;
                if (w == W_ROOT && strcmp(k, "path") == 0)
                        replace = c->rw->root_path;
                else if (w == W_LINUX && strcmp(k, "cgroupsPath") == 0)
                        replace = c->rw->cgroups_path;
                else if (w == W_MOUNT && strcmp(k, "source") == 0 && mi < c->rw->n_mounts &&
                         c->rw->mount_sources)
                        replace = c->rw->mount_sources[mi];
                else if (w == W_MOUNT && strcmp(k, "type") == 0 && mi < c->rw->n_mounts &&
                         c->rw->mount_types)
                        replace = c->rw->mount_types[mi];
                else if (w == W_NAMESPACES)
                        cw = W_OTHER;

                if (gen_string(c->g, k) < 0)
                        return -EINVAL;
                int r = replace ? gen_string(c->g, replace) : emit(c, child, cw);
                if (r < 0)
                        return r;
        }
        if (w == W_LINUX && c->rw->cgroups_path &&
            !yajl_tree_get(v, (const char *[]){"cgroupsPath", NULL}, yajl_t_any)) {
                if (gen_string(c->g, "cgroupsPath") < 0 ||
                    gen_string(c->g, c->rw->cgroups_path) < 0)
                        return -EINVAL;
        }
        return yajl_gen_map_close(c->g) == yajl_gen_status_ok ? 0 : -EINVAL;
}

static int emit_namespace(struct ctx *c, yajl_val ns)
{
        int flag = ns_flag(ns);
        if (flag & c->rw->drop_namespaces)
                return 0;
        const char *guest_path = NULL;
        if (flag == CLONE_NEWPID && c->rw->pod_pid_namespace &&
            yajl_tree_get(ns, (const char *[]){"path", NULL}, yajl_t_string))
                guest_path = c->rw->pod_pid_namespace;
        else if (!(flag & c->rw->unjoin_namespaces))
                return emit(c, ns, W_OTHER);
        /* {"type": ...} without the host path: a new namespace in the guest,
         * or the guest's own path for it. */
        if (yajl_gen_map_open(c->g) != yajl_gen_status_ok)
                return -EINVAL;
        for (size_t i = 0; i < ns->u.object.len; i++) {
                if (strcmp(ns->u.object.keys[i], "path") == 0)
                        continue;
                if (gen_string(c->g, ns->u.object.keys[i]) < 0 ||
                    emit(c, ns->u.object.values[i], W_OTHER) < 0)
                        return -EINVAL;
        }
        if (guest_path && (gen_string(c->g, "path") < 0 || gen_string(c->g, guest_path) < 0))
                return -EINVAL;
        return yajl_gen_map_close(c->g) == yajl_gen_status_ok ? 0 : -EINVAL;
}

static int emit_array(struct ctx *c, yajl_val v, enum where w)
{
        if (yajl_gen_array_open(c->g) != yajl_gen_status_ok)
                return -EINVAL;
        for (size_t i = 0; i < v->u.array.len; i++) {
                yajl_val item = v->u.array.values[i];
                int r = 0;
                if (w == W_MOUNTS) {
                        c->mount_index = i;
                        bool drop =
                                i < c->rw->n_mounts && c->rw->drop_mount && c->rw->drop_mount[i];
                        if (!drop)
                                r = YAJL_IS_OBJECT(item) ? emit_object(c, item, W_MOUNT)
                                                         : emit(c, item, W_OTHER);
                } else if (w == W_NAMESPACES && YAJL_IS_OBJECT(item)) {
                        r = emit_namespace(c, item);
                } else {
                        r = emit(c, item, W_OTHER);
                }
                if (r < 0)
                        return r;
        }
        return yajl_gen_array_close(c->g) == yajl_gen_status_ok ? 0 : -EINVAL;
}

static int emit(struct ctx *c, yajl_val v, enum where w)
{
        yajl_gen_status s;
        switch (v->type) {
        case yajl_t_string:
                return gen_string(c->g, v->u.string);
        case yajl_t_number:
                /* The number's own text: no precision lost on uint64 values. */
                s = yajl_gen_number(c->g, v->u.number.r, strlen(v->u.number.r));
                return s == yajl_gen_status_ok ? 0 : -EINVAL;
        case yajl_t_object:
                return emit_object(c, v, w);
        case yajl_t_array:
                return emit_array(c, v, w);
        case yajl_t_true:
                return yajl_gen_bool(c->g, 1) == yajl_gen_status_ok ? 0 : -EINVAL;
        case yajl_t_false:
                return yajl_gen_bool(c->g, 0) == yajl_gen_status_ok ? 0 : -EINVAL;
        case yajl_t_null:
                return yajl_gen_null(c->g) == yajl_gen_status_ok ? 0 : -EINVAL;
        case yajl_t_any:
                break;
        }
        return -EINVAL;
}

int sandbox_spec_rewrite(const char *json, size_t len, const struct sandbox_spec_rewrite *rw,
                         char **ret, size_t *ret_len, struct us_error **err)
{
        if (len > US_OCI_MAX_CONFIG_SIZE)
                return us_error_msg(err, E2BIG, "config.json too large");
        _cleanup_free_ char *text = strndup(json, len);
        if (!text)
                return us_errorf(err, ENOMEM, "rewrite config.json");
        char errbuf[256];
        _cleanup_(yajl_tree_free_cleanupp) yajl_val root =
                yajl_tree_parse(text, errbuf, sizeof(errbuf));
        if (!root || !YAJL_IS_OBJECT(root))
                return us_error_msg(err, EINVAL, "rewrite config.json: not a JSON object");
        _cleanup_(yajl_gen_free_cleanupp) yajl_gen g = yajl_gen_alloc(NULL);
        if (!g)
                return us_errorf(err, ENOMEM, "rewrite config.json");
        struct ctx c = {.g = g, .rw = rw};
        if (emit(&c, root, W_ROOT_OBJ) < 0)
                return us_error_msg(err, EINVAL, "rewrite config.json: cannot generate JSON");
        const unsigned char *buf;
        size_t n;
        yajl_gen_get_buf(g, &buf, &n);
        char *out = malloc(n + 1);
        if (!out)
                return us_errorf(err, ENOMEM, "rewrite config.json");
        memcpy(out, buf, n);
        out[n] = '\0';
        *ret = out;
        *ret_len = n;
        return 0;
}
