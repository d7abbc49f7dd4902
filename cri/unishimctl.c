/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unishimctl: drives a CRI runtime (containerd's CRI plugin) the way kubelet
 * does, for tests, benchmarks and the demo. docs/unishimctl.md is the manual.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "base/fs-util.h"
#include "oci/oci-spec-json.h"
#include "pod-spec.h"
#include "policy/policy.h"
#include "unishimctl-template.h"

#define ISOLATION_DEFAULT "container"

struct ctl {
        struct cri_client *client;
        const char *endpoint;
        /* The last operator config pod_isolation() loaded, by path (NULL:
         * the default): `ps` asks once per pod, pods share handlers. */
        bool config_loaded;
        char *config_path;
        struct policy_config *config;
};

/* ---- output helpers ---- */

/* Server strings go to a terminal: control characters become '?'. */
static const char *clean(const char *s, char *buf, size_t size)
{
        size_t i = 0;
        for (; s && s[i] && i + 1 < size; i++)
                buf[i] = ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) ? '?' : s[i];
        buf[i] = '\0';
        return buf;
}

static void json_str(FILE *f, const char *s)
{
        fputc('"', f);
        for (; s && *s; s++) {
                unsigned char c = (unsigned char)*s;
                if (c == '"' || c == '\\')
                        fprintf(f, "\\%c", c);
                else if (c < 0x20 || c == 0x7f)
                        fprintf(f, "\\u%04x", c);
                else
                        fputc(c, f);
        }
        fputc('"', f);
}

static int fail(struct us_error *err, int r)
{
        fprintf(stderr, "unishimctl: %s\n", err ? us_error_text(err) : strerror(-r));
        us_error_free(err);
        return 1;
}

static double now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Looks up key in a map<string,string> field (all entry types share a layout). */
struct kv_entry {
        ProtobufCMessage base;
        char *key;
        char *value;
};
static const char *map_get(void *const *entries, size_t n, const char *key)
{
        for (size_t i = 0; i < n; i++) {
                const struct kv_entry *e = entries[i];
                if (e && e->key && strcmp(e->key, key) == 0)
                        return e->value;
        }
        return NULL;
}

/* The operator config at path (NULL: the default), or NULL when it does not
 * load; loaded once per path. */
static const struct policy_config *ctl_config(struct ctl *ctl, const char *path)
{
        bool same =
                path ? ctl->config_path && strcmp(path, ctl->config_path) == 0 : !ctl->config_path;
        if (ctl->config_loaded && same)
                return ctl->config;
        ctl->config = policy_config_free(ctl->config);
        free(ctl->config_path);
        ctl->config_path = path ? strdup(path) : NULL;
        ctl->config_loaded = !path || ctl->config_path; /* else retry next time */
        if (policy_config_load(path, &ctl->config, NULL) < 0)
                ctl->config = NULL;
        return ctl->config;
}

#define UNISHIM_RUNTIME_TYPE "io.containerd.unishim.v2"
/* A verbose status's "info" (spec, config, runtime options) fits a gRPC
 * message; anything larger is not containerd's. */
#define STATUS_INFO_MAX (4u << 20)

/* The kind a pod runs as. For a unishim pod that is what the shim's policy
 * decided from the pod's annotations and its handler's operator config (the
 * ConfigPath that containerd reports in the verbose status's runtimeOptions),
 * so a pod that runs as a sandbox because its handler defaults to it is
 * listed as one. Pods of other runtimes are containers. When the status
 * cannot tell (st NULL, an older containerd, a config that no longer
 * loads), the annotation alone decides, marked with "?". st is the pod's
 * verbose PodSandboxStatus. */
static const char *pod_isolation(struct ctl *ctl, const Runtime__V1__PodSandboxStatusResponse *st,
                                 void *const *annotations, size_t n_annotations, char *buf,
                                 size_t size)
{
        const char *annotated = map_get(annotations, n_annotations, UNISHIM_ANNOTATION_ISOLATION);
        snprintf(buf, size, "%s?", annotated && *annotated ? annotated : ISOLATION_DEFAULT);
        if (!st)
                return buf;
        const char *info = map_get((void *const *)st->info, st->n_info, "info");
        if (!info || strnlen(info, STATUS_INFO_MAX + 1) > STATUS_INFO_MAX)
                return buf;
        yajl_val doc = yajl_tree_parse(info, NULL, 0);
        if (!doc)
                return buf;
        const char *type = YAJL_GET_STRING(ocij_member(doc, "runtimeType"));
        yajl_val options = ocij_member(doc, "runtimeOptions");
        const char *config_path = YAJL_GET_STRING(ocij_member(options, "config_path"));
        if (type && strcmp(type, UNISHIM_RUNTIME_TYPE) != 0) {
                snprintf(buf, size, "%s", ISOLATION_DEFAULT);
        } else if (type) {
                struct us_oci_kv *kv = calloc(n_annotations + 1, sizeof(*kv));
                const struct policy_config *cfg = ctl_config(ctl, config_path);
                enum policy_isolation kind;
                for (size_t i = 0; kv && i < n_annotations; i++) {
                        const struct kv_entry *e = annotations[i];
                        kv[i].key = e && e->key ? e->key : (char *)"";
                        kv[i].value = e && e->value ? e->value : (char *)"";
                }
                if (kv && cfg && policy_pod_isolation(cfg, kv, n_annotations, &kind, NULL) == 0)
                        snprintf(buf, size, "%s", policy_isolation_name(kind));
                free(kv);
        }
        yajl_tree_free(doc);
        return buf;
}

static const char *sandbox_state(Runtime__V1__PodSandboxState s)
{
        switch (s) {
        case RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY:
                return "Ready";
        case RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_NOTREADY:
                return "NotReady";
        case _RUNTIME__V1__POD_SANDBOX_STATE_IS_INT_SIZE:
                break;
        }
        return "Unknown";
}

static const char *container_state(Runtime__V1__ContainerState s)
{
        switch (s) {
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_CREATED:
                return "Created";
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING:
                return "Running";
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_EXITED:
                return "Exited";
        case RUNTIME__V1__CONTAINER_STATE__CONTAINER_UNKNOWN:
        case _RUNTIME__V1__CONTAINER_STATE_IS_INT_SIZE:
                break;
        }
        return "Unknown";
}

/* ---- resolving names ---- */

/* POD is a sandbox id, a unique id prefix, NAME or NAMESPACE/NAME. Among
 * several sandboxes of one name, the ready one wins (a re-run pod keeps its
 * stopped predecessor until it is removed). *ret_id: free(). */
static int resolve_pod(struct ctl *ctl, const char *pod, char **ret_id, struct us_error **err)
{
        _cleanup_cri_msg_ Runtime__V1__ListPodSandboxResponse *list = NULL;
        int r = cri_list_pod_sandbox(ctl->client, NULL, &list, err);
        if (r < 0)
                return r;
        const char *slash = strchr(pod, '/');
        const Runtime__V1__PodSandbox *found = NULL;
        size_t matches = 0, prefix_matches = 0;
        const Runtime__V1__PodSandbox *prefix_found = NULL;
        for (size_t i = 0; i < list->n_items; i++) {
                const Runtime__V1__PodSandbox *s = list->items[i];
                if (!s || !s->id)
                        continue;
                if (strcmp(s->id, pod) == 0) {
                        found = s;
                        matches = 1;
                        break;
                }
                if (strncmp(s->id, pod, strlen(pod)) == 0) {
                        prefix_found = s;
                        prefix_matches++;
                }
                const Runtime__V1__PodSandboxMetadata *m = s->metadata;
                if (!m || !m->name)
                        continue;
                bool name_match;
                if (slash)
                        name_match = m->namespace_ &&
                                     strlen(m->namespace_) == (size_t)(slash - pod) &&
                                     strncmp(m->namespace_, pod, (size_t)(slash - pod)) == 0 &&
                                     strcmp(m->name, slash + 1) == 0;
                else
                        name_match = strcmp(m->name, pod) == 0;
                if (!name_match)
                        continue;
                bool ready = s->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
                bool found_ready =
                        found && found->state == RUNTIME__V1__POD_SANDBOX_STATE__SANDBOX_READY;
                if (!found || (ready && !found_ready)) {
                        if (!found || !found_ready)
                                matches = 0;
                        found = s;
                        matches++;
                } else if (ready == found_ready) {
                        matches++;
                }
        }
        if (!found && prefix_matches == 1)
                found = prefix_found, matches = 1;
        else if (!found && prefix_matches > 1)
                return us_error_msg(err, EINVAL, "pod id prefix %s is ambiguous", pod);
        if (!found)
                return us_error_msg(err, ENOENT, "no pod %s", pod);
        if (matches > 1)
                return us_error_msg(err, EINVAL, "%zu pods are named %s; use the pod id", matches,
                                    pod);
        char *id = strdup(found->id);
        if (!id)
                return us_errorf(err, ENOMEM, "resolve pod");
        *ret_id = id;
        return 0;
}

/* The containers of a pod; name NULL selects the only one. The newest attempt
 * of a name wins. *ret_id: free(). */
static int resolve_container(struct ctl *ctl, const char *pod_id, const char *name, char **ret_id,
                             struct us_error **err)
{
        Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
        filter.pod_sandbox_id = (char *)pod_id;
        _cleanup_cri_msg_ Runtime__V1__ListContainersResponse *list = NULL;
        int r = cri_list_containers(ctl->client, &filter, &list, err);
        if (r < 0)
                return r;
        const Runtime__V1__Container *found = NULL;
        size_t names = 0;
        const char *first_name = NULL;
        for (size_t i = 0; i < list->n_containers; i++) {
                const Runtime__V1__Container *c = list->containers[i];
                if (!c || !c->id || !c->metadata || !c->metadata->name)
                        continue;
                if (name && strcmp(c->metadata->name, name) != 0)
                        continue;
                if (!first_name || strcmp(first_name, c->metadata->name) != 0) {
                        if (!first_name)
                                names = 1;
                        else if (!found || strcmp(found->metadata->name, c->metadata->name) != 0)
                                names++;
                        first_name = first_name ? first_name : c->metadata->name;
                }
                if (!found || c->metadata->attempt > found->metadata->attempt ||
                    (c->metadata->attempt == found->metadata->attempt &&
                     c->created_at > found->created_at))
                        found = c;
        }
        if (!found)
                return us_error_msg(err, ENOENT, "pod %.12s has no container%s%s", pod_id,
                                    name ? " " : "", name ? name : "");
        if (!name && names > 1)
                return us_error_msg(err, EINVAL,
                                    "pod %.12s has several containers; choose one with -c", pod_id);
        char *id = strdup(found->id);
        if (!id)
                return us_errorf(err, ENOMEM, "resolve container");
        *ret_id = id;
        return 0;
}

/* ---- subcommands ---- */

static int cmd_version(struct ctl *ctl, int argc, char **argv)
{
        (void)argv;
        if (argc != 1) {
                fprintf(stderr, "usage: unishimctl version\n");
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_cri_msg_ Runtime__V1__VersionResponse *v = NULL;
        int r = cri_version(ctl->client, &v, &err);
        if (r < 0)
                return fail(err, r);
        char b[256];
        printf("Version:           %s\n", clean(v->version, b, sizeof(b)));
        printf("RuntimeName:       %s\n", clean(v->runtime_name, b, sizeof(b)));
        printf("RuntimeVersion:    %s\n", clean(v->runtime_version, b, sizeof(b)));
        printf("RuntimeApiVersion: %s\n", clean(v->runtime_api_version, b, sizeof(b)));
        return 0;
}

static int parse_i64(const char *opt, const char *s, int64_t min, int64_t max, int64_t *ret)
{
        char *end = NULL;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || !end || *end || end == s || v < min || v > max) {
                fprintf(stderr, "unishimctl: invalid %s %s\n", opt, s);
                return -EINVAL;
        }
        *ret = v;
        return 0;
}

/* Removes a half-created pod: its containers go with RemovePodSandbox. */
static void run_cleanup(struct ctl *ctl, const char *pod_id)
{
        struct us_error *e = NULL;
        (void)cri_stop_pod_sandbox(ctl->client, pod_id, &e);
        e = us_error_free(e);
        (void)cri_remove_pod_sandbox(ctl->client, pod_id, &e);
        us_error_free(e);
}

static int cmd_run(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"timing", no_argument, NULL, 'T'},
                {"no-pull", no_argument, NULL, 'P'},
                {"keep", no_argument, NULL, 'k'},
                {"stop-after-start", required_argument, NULL, 'S'},
                {NULL, 0, NULL, 0},
        };
        bool timing = false, pull = true, keep = false;
        int64_t stop_grace = -1; /* < 0: leave the containers running */
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
                switch (c) {
                case 'T':
                        timing = true;
                        break;
                case 'P':
                        pull = false;
                        break;
                case 'k':
                        keep = true;
                        break;
                case 'S':
                        if (parse_i64("--stop-after-start", optarg, 0, 24 * 3600, &stop_grace) < 0)
                                return 2;
                        break;
                default:
                        return 2;
                }
        }
        if (argc - optind != 1) {
                fprintf(stderr, "usage: unishimctl run [--timing] [--no-pull] [--keep] "
                                "[--stop-after-start GRACE] POD.json\n");
                return 2;
        }

        struct us_error *err = NULL;
        _cleanup_(cri_pod_spec_free_cleanupp) struct cri_pod_spec *spec = NULL;
        int r = cri_pod_spec_load(argv[optind], &spec, &err);
        if (r < 0)
                return fail(err, r);

        double t0 = now_ms();
        if (pull) {
                for (size_t i = 0; i < spec->n_containers; i++) {
                        const char *image = spec->containers[i]->image->image;
                        _cleanup_cri_msg_ Runtime__V1__ImageStatusResponse *st = NULL;
                        r = cri_image_status(ctl->client, image, &st, &err);
                        if (r < 0)
                                return fail(err, r);
                        if (st->image)
                                continue;
                        r = cri_pull_image(ctl->client, image, spec->sandbox, NULL, &err);
                        if (r < 0)
                                return fail(err, r);
                }
        }
        double t_pull = now_ms();

        _cleanup_free_ char *pod_id = NULL;
        r = cri_run_pod_sandbox(ctl->client, spec->sandbox, spec->runtime_handler, &pod_id, &err);
        if (r < 0)
                return fail(err, r);
        double t_run = now_ms();

        _cleanup_free_ double *create_ms = calloc(spec->n_containers, sizeof(double));
        _cleanup_free_ double *start_ms = calloc(spec->n_containers, sizeof(double));
        if (!create_ms || !start_ms) {
                run_cleanup(ctl, pod_id);
                return fail(NULL, -ENOMEM);
        }
        double create_sum = 0, start_sum = 0;
        for (size_t i = 0; i < spec->n_containers; i++) {
                const Runtime__V1__ContainerConfig *cc = spec->containers[i];
                _cleanup_free_ char *cid = NULL;
                double a = now_ms();
                r = cri_create_container(ctl->client, pod_id, cc, spec->sandbox, &cid, &err);
                double b = now_ms();
                if (r >= 0)
                        r = cri_start_container(ctl->client, cid, &err);
                double e = now_ms();
                /* What a kubelet does to a pod deleted while it starts: the
                 * stop follows StartContainer's answer with nothing between,
                 * which a second unishimctl cannot do. */
                if (r >= 0 && stop_grace >= 0) {
                        r = cri_stop_container(ctl->client, cid, stop_grace, &err);
                        if (r < 0)
                                us_error_wrap(&err, r, "stop after start");
                }
                if (r < 0) {
                        us_error_wrap(&err, r, "container %s of pod %s", cc->metadata->name,
                                      pod_id);
                        if (!keep)
                                run_cleanup(ctl, pod_id);
                        return fail(err, r);
                }
                create_ms[i] = b - a;
                start_ms[i] = e - b;
                create_sum += create_ms[i];
                start_sum += start_ms[i];
        }
        double t_end = now_ms();

        printf("%s\n", pod_id);
        fflush(stdout);
        if (timing) {
                fprintf(stderr,
                        "{\"pod_id\":\"%s\",\"ImagePull\":%.3f,\"RunPodSandbox\":%.3f,"
                        "\"CreateContainer\":%.3f,\"StartContainer\":%.3f,\"total\":%.3f,"
                        "\"containers\":[",
                        pod_id, t_pull - t0, t_run - t_pull, create_sum, start_sum, t_end - t0);
                for (size_t i = 0; i < spec->n_containers; i++) {
                        fprintf(stderr, "%s{\"name\":", i ? "," : "");
                        json_str(stderr, spec->containers[i]->metadata->name);
                        fprintf(stderr, ",\"CreateContainer\":%.3f,\"StartContainer\":%.3f}",
                                create_ms[i], start_ms[i]);
                }
                fprintf(stderr, "]}\n");
        }
        return 0;
}

/* exec's -c/-t options up to the first non-option (getopt's "+"); -1 on a
 * bad option. */
static int exec_options(int argc, char **argv, const char **cname, int64_t *timeout)
{
        static const struct option opts[] = {
                {"container", required_argument, NULL, 'c'},
                {"timeout", required_argument, NULL, 't'},
                {NULL, 0, NULL, 0},
        };
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "+c:t:", opts, NULL)) != -1) {
                switch (c) {
                case 'c':
                        *cname = optarg;
                        break;
                case 't':
                        if (parse_i64("--timeout", optarg, 0, 24 * 3600, timeout) < 0)
                                return -1;
                        break;
                default:
                        return -1;
                }
        }
        return 0;
}

static int cmd_exec(struct ctl *ctl, int argc, char **argv)
{
        const char *cname = NULL;
        int64_t timeout = 0;
        if (exec_options(argc, argv, &cname, &timeout) < 0)
                return 2;
        /* POD [-c C] -- CMD...: getopt stops at POD (the "+"), so options after
         * it are parsed in a second round. */
        if (optind >= argc) {
                fprintf(stderr, "usage: unishimctl exec POD [-c CONTAINER] [-t SECONDS] -- CMD "
                                "[ARGS...]\n");
                return 2;
        }
        const char *pod = argv[optind];
        int rest = optind + 1;
        int sub_argc = argc - rest + 1;
        char **sub_argv = argv + rest - 1;
        if (exec_options(sub_argc, sub_argv, &cname, &timeout) < 0)
                return 2;
        if (optind >= sub_argc) {
                fprintf(stderr, "unishimctl exec: no command\n");
                return 2;
        }
        const char *const *cmd = (const char *const *)(sub_argv + optind);

        struct us_error *err = NULL;
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int r = resolve_pod(ctl, pod, &pod_id, &err);
        if (r >= 0)
                r = resolve_container(ctl, pod_id, cname, &cid, &err);
        if (r < 0)
                return fail(err, r);
        struct cri_output out = {0}, errout = {0};
        int code = 0;
        r = cri_exec_sync(ctl->client, cid, cmd, timeout, &out, &errout, &code, &err);
        if (r < 0)
                return fail(err, r);
        (void)us_write_all(STDOUT_FILENO, out.data, out.len);
        (void)us_write_all(STDERR_FILENO, errout.data, errout.len);
        cri_output_clear(&out);
        cri_output_clear(&errout);
        return code < 0 || code > 255 ? 255 : code;
}

/* Prints a CRI log file: each line is "<time> <stream> <P|F> <message>"; P
 * (partial) lines continue in the next line without a newline. */
static int print_cri_log(const char *path, struct us_error **err)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        if (!f)
                return us_errorf(err, errno, "open %s", path);
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) >= 0) {
                if (n > 0 && line[n - 1] == '\n')
                        line[--n] = '\0';
                char *time_end = strchr(line, ' ');
                char *stream = time_end ? time_end + 1 : NULL;
                char *stream_end = stream ? strchr(stream, ' ') : NULL;
                char *tag = stream_end ? stream_end + 1 : NULL;
                char *tag_end = tag ? strchr(tag, ' ') : NULL;
                if (!tag_end) {
                        /* Not CRI format (or a message-less line): print as is. */
                        printf("%s\n", line);
                        continue;
                }
                char *msg = tag_end + 1;
                bool partial = tag[0] == 'P' && tag + 1 == tag_end;
                FILE *o = strncmp(stream, "stderr ", 7) == 0 ? stderr : stdout;
                fwrite(msg, 1, (size_t)(line + n - msg), o);
                if (!partial)
                        fputc('\n', o);
        }
        if (ferror(f))
                return us_errorf(err, EIO, "read %s", path);
        return 0;
}

static int cmd_logs(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"container", required_argument, NULL, 'c'},
                {NULL, 0, NULL, 0},
        };
        const char *cname = NULL, *pod = NULL;
        int c;
        optind = 0;
        /* Options may come before or after POD. */
        for (;;) {
                while ((c = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
                        if (c != 'c')
                                return 2;
                        cname = optarg;
                }
                if (optind >= argc)
                        break;
                if (pod) {
                        fprintf(stderr, "usage: unishimctl logs POD [-c CONTAINER]\n");
                        return 2;
                }
                pod = argv[optind++];
        }
        if (!pod) {
                fprintf(stderr, "usage: unishimctl logs POD [-c CONTAINER]\n");
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int r = resolve_pod(ctl, pod, &pod_id, &err);
        if (r >= 0)
                r = resolve_container(ctl, pod_id, cname, &cid, &err);
        if (r < 0)
                return fail(err, r);
        _cleanup_cri_msg_ Runtime__V1__ContainerStatusResponse *st = NULL;
        r = cri_container_status(ctl->client, cid, false, &st, &err);
        if (r < 0)
                return fail(err, r);
        const char *path = st->status->log_path;
        if (!path || path[0] != '/')
                return fail(NULL, -ENOENT);
        r = print_cri_log(path, &err);
        if (r < 0)
                return fail(err, r);
        return 0;
}

/* Stops (and with remove, removes) the containers and then the sandbox. */
static int stop_pod(struct ctl *ctl, const char *pod_id, int64_t timeout, bool remove,
                    struct us_error **err)
{
        Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
        filter.pod_sandbox_id = (char *)pod_id;
        _cleanup_cri_msg_ Runtime__V1__ListContainersResponse *list = NULL;
        int r = cri_list_containers(ctl->client, &filter, &list, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < list->n_containers; i++) {
                const Runtime__V1__Container *c = list->containers[i];
                if (!c || !c->id)
                        continue;
                if (c->state == RUNTIME__V1__CONTAINER_STATE__CONTAINER_RUNNING) {
                        r = cri_stop_container(ctl->client, c->id, timeout, err);
                        if (r < 0)
                                return us_error_wrap(err, r, "stop container %.12s", c->id);
                }
                if (remove) {
                        r = cri_remove_container(ctl->client, c->id, err);
                        if (r < 0)
                                return us_error_wrap(err, r, "remove container %.12s", c->id);
                }
        }
        r = cri_stop_pod_sandbox(ctl->client, pod_id, err);
        if (r < 0)
                return r;
        if (remove)
                return cri_remove_pod_sandbox(ctl->client, pod_id, err);
        return 0;
}

static int cmd_stop_rm(struct ctl *ctl, int argc, char **argv, bool remove)
{
        static const struct option opts[] = {
                {"timeout", required_argument, NULL, 't'},
                {NULL, 0, NULL, 0},
        };
        int64_t timeout = 10;
        int c, status = 0;
        optind = 0;
        /* Options may follow the pods: no "+", let getopt permute. */
        while ((c = getopt_long(argc, argv, "t:", opts, NULL)) != -1) {
                if (c != 't' || parse_i64("--timeout", optarg, 0, 24 * 3600, &timeout) < 0)
                        return 2;
        }
        if (optind >= argc) {
                fprintf(stderr, "usage: unishimctl %s POD... [--timeout SECONDS]\n",
                        remove ? "rm" : "stop");
                return 2;
        }
        for (int i = optind; i < argc; i++) {
                struct us_error *err = NULL;
                _cleanup_free_ char *pod_id = NULL;
                int r = resolve_pod(ctl, argv[i], &pod_id, &err);
                if (r >= 0)
                        r = stop_pod(ctl, pod_id, timeout, remove, &err);
                if (r < 0) {
                        status = fail(err, r);
                        continue;
                }
                printf("%s\n", pod_id);
        }
        return status;
}

static int cmd_ps(struct ctl *ctl, int argc, char **argv)
{
        bool quiet = argc == 2 && strcmp(argv[1], "-q") == 0;
        if (argc > 2 || (argc == 2 && !quiet)) {
                fprintf(stderr, "usage: unishimctl ps [-q]\n");
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_cri_msg_ Runtime__V1__ListPodSandboxResponse *list = NULL;
        int r = cri_list_pod_sandbox(ctl->client, NULL, &list, &err);
        if (r < 0)
                return fail(err, r);
        if (!quiet)
                printf("%-13s  %-24s  %-12s  %-8s  %-10s  %s\n", "POD ID", "NAME", "NAMESPACE",
                       "STATE", "HANDLER", "ISOLATION");
        for (size_t i = 0; i < list->n_items; i++) {
                const Runtime__V1__PodSandbox *s = list->items[i];
                if (!s || !s->id)
                        continue;
                char id[14], name[254], ns[64], handler[64], iso[64];
                clean(s->id, id, sizeof(id));
                if (quiet) {
                        char full[256];
                        printf("%s\n", clean(s->id, full, sizeof(full)));
                        continue;
                }
                _cleanup_cri_msg_ Runtime__V1__PodSandboxStatusResponse *st = NULL;
                /* On failure st stays NULL: the annotation's kind, marked "?". */
                (void)cri_pod_sandbox_status(ctl->client, s->id, true, &st, NULL);
                const char *isolation = pod_isolation(ctl, st, (void *const *)s->annotations,
                                                      s->n_annotations, iso, sizeof(iso));
                printf("%-13s  %-24s  %-12s  %-8s  %-10s  %s\n", id,
                       clean(s->metadata ? s->metadata->name : "", name, sizeof(name)),
                       clean(s->metadata ? s->metadata->namespace_ : "", ns, sizeof(ns)),
                       sandbox_state(s->state),
                       clean(s->runtime_handler && *s->runtime_handler ? s->runtime_handler : "-",
                             handler, sizeof(handler)),
                       clean(isolation, iso, sizeof(iso)));
        }
        return 0;
}

static int cmd_update(struct ctl *ctl, int argc, char **argv)
{
        static const struct option opts[] = {
                {"container", required_argument, NULL, 'c'},
                {"memory", required_argument, NULL, 'm'},
                {"cpu-quota", required_argument, NULL, 'q'},
                {"cpu-period", required_argument, NULL, 'p'},
                {"cpu-shares", required_argument, NULL, 's'},
                {NULL, 0, NULL, 0},
        };
        Runtime__V1__LinuxContainerResources res = RUNTIME__V1__LINUX_CONTAINER_RESOURCES__INIT;
        const char *cname = NULL;
        bool any = false;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                int r = 0;
                switch (c) {
                case 'c':
                        cname = optarg;
                        continue;
                case 'm':
                        r = parse_i64("--memory", optarg, 0, INT64_C(1) << 62,
                                      &res.memory_limit_in_bytes);
                        break;
                case 'q':
                        r = parse_i64("--cpu-quota", optarg, -1, INT64_C(1) << 40, &res.cpu_quota);
                        break;
                case 'p':
                        r = parse_i64("--cpu-period", optarg, 1000, 1000000, &res.cpu_period);
                        break;
                case 's':
                        r = parse_i64("--cpu-shares", optarg, 2, 262144, &res.cpu_shares);
                        break;
                default:
                        return 2;
                }
                if (r < 0)
                        return 2;
                any = true;
        }
        if (argc - optind != 1 || !any) {
                fprintf(stderr, "usage: unishimctl update POD [-c CONTAINER] [--memory BYTES] "
                                "[--cpu-quota N] [--cpu-period N] [--cpu-shares N]\n");
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int r = resolve_pod(ctl, argv[optind], &pod_id, &err);
        if (r >= 0)
                r = resolve_container(ctl, pod_id, cname, &cid, &err);
        if (r >= 0)
                r = cri_update_container_resources(ctl->client, cid, &res, &err);
        if (r < 0)
                return fail(err, r);
        return 0;
}

static void json_u64(const char *key, const Runtime__V1__UInt64Value *v, bool *first)
{
        if (!v)
                return;
        printf("%s\"%s\":%" PRIu64, *first ? "" : ",", key, (uint64_t)v->value);
        *first = false;
}

/* The `COMMAND POD [-c CONTAINER]` arguments: 0 with *ret_pod and *ret_cid
 * set (the caller's), else the command's exit status (2: usage, 1: the
 * message is printed). */
static int pod_container_args(struct ctl *ctl, int argc, char **argv, const char *cmd,
                              char **ret_pod, char **ret_cid)
{
        static const struct option opts[] = {
                {"container", required_argument, NULL, 'c'},
                {NULL, 0, NULL, 0},
        };
        const char *cname = NULL;
        int c;
        optind = 0;
        while ((c = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
                if (c != 'c')
                        return 2;
                cname = optarg;
        }
        if (argc - optind != 1) {
                fprintf(stderr, "usage: unishimctl %s POD [-c CONTAINER]\n", cmd);
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int r = resolve_pod(ctl, argv[optind], &pod_id, &err);
        if (r >= 0)
                r = resolve_container(ctl, pod_id, cname, &cid, &err);
        if (r < 0)
                return fail(err, r);
        *ret_pod = TAKE_PTR(pod_id);
        *ret_cid = TAKE_PTR(cid);
        return 0;
}

static int cmd_stats(struct ctl *ctl, int argc, char **argv)
{
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int status = pod_container_args(ctl, argc, argv, "stats", &pod_id, &cid);
        if (status != 0)
                return status;
        struct us_error *err = NULL;
        _cleanup_cri_msg_ Runtime__V1__ContainerStatsResponse *st = NULL;
        int r = cri_container_stats(ctl->client, cid, &st, &err);
        if (r < 0)
                return fail(err, r);
        const Runtime__V1__ContainerStats *s = st->stats;
        printf("{\"pod_id\":");
        json_str(stdout, pod_id);
        printf(",\"container_id\":");
        json_str(stdout, cid);
        if (s->attributes && s->attributes->metadata) {
                printf(",\"name\":");
                json_str(stdout, s->attributes->metadata->name);
        }
        bool first = true;
        printf(",\"cpu\":{");
        if (s->cpu) {
                printf("\"timestamp\":%" PRId64, (int64_t)s->cpu->timestamp);
                first = false;
                json_u64("usage_core_nano_seconds", s->cpu->usage_core_nano_seconds, &first);
                json_u64("usage_nano_cores", s->cpu->usage_nano_cores, &first);
        }
        first = true;
        printf("},\"memory\":{");
        if (s->memory) {
                printf("\"timestamp\":%" PRId64, (int64_t)s->memory->timestamp);
                first = false;
                json_u64("working_set_bytes", s->memory->working_set_bytes, &first);
                json_u64("available_bytes", s->memory->available_bytes, &first);
                json_u64("usage_bytes", s->memory->usage_bytes, &first);
                json_u64("rss_bytes", s->memory->rss_bytes, &first);
                json_u64("page_faults", s->memory->page_faults, &first);
                json_u64("major_page_faults", s->memory->major_page_faults, &first);
        }
        first = true;
        printf("},\"writable_layer\":{");
        if (s->writable_layer) {
                json_u64("used_bytes", s->writable_layer->used_bytes, &first);
                json_u64("inodes_used", s->writable_layer->inodes_used, &first);
        }
        printf("}}\n");
        return 0;
}

/* ContainerStatus as one JSON object: what kubelet reports of a container
 * (state, exit code, reason such as OOMKilled, message). */
static int cmd_status(struct ctl *ctl, int argc, char **argv)
{
        _cleanup_free_ char *pod_id = NULL, *cid = NULL;
        int status = pod_container_args(ctl, argc, argv, "status", &pod_id, &cid);
        if (status != 0)
                return status;
        struct us_error *err = NULL;
        _cleanup_cri_msg_ Runtime__V1__ContainerStatusResponse *st = NULL;
        int r = cri_container_status(ctl->client, cid, false, &st, &err);
        if (r < 0)
                return fail(err, r);
        const Runtime__V1__ContainerStatus *s = st->status;
        printf("{\"pod_id\":");
        json_str(stdout, pod_id);
        printf(",\"container_id\":");
        json_str(stdout, cid);
        printf(",\"name\":");
        json_str(stdout, s->metadata ? s->metadata->name : "");
        printf(",\"state\":");
        json_str(stdout, container_state(s->state));
        printf(",\"exit_code\":%d,\"reason\":", s->exit_code);
        json_str(stdout, s->reason);
        printf(",\"message\":");
        json_str(stdout, s->message);
        printf(",\"started_at\":%" PRId64 ",\"finished_at\":%" PRId64 "}\n", s->started_at,
               s->finished_at);
        return 0;
}

/* The pod's state, IP and isolation, then one line per container. */
static int cmd_inspect(struct ctl *ctl, int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: unishimctl inspect POD\n");
                return 2;
        }
        struct us_error *err = NULL;
        _cleanup_free_ char *pod_id = NULL;
        int r = resolve_pod(ctl, argv[1], &pod_id, &err);
        if (r < 0)
                return fail(err, r);
        _cleanup_cri_msg_ Runtime__V1__PodSandboxStatusResponse *st = NULL;
        /* Verbose: its info tells pod_isolation the handler's config. */
        r = cri_pod_sandbox_status(ctl->client, pod_id, true, &st, &err);
        if (r < 0)
                return fail(err, r);
        const Runtime__V1__PodSandboxStatus *s = st->status;
        char b1[256], b2[256], b3[256], b4[256], b5[64];
        const char *isolation = pod_isolation(ctl, st, (void *const *)s->annotations,
                                              s->n_annotations, b5, sizeof(b5));
        printf("pod %s name %s namespace %s state %s ip %s handler %s isolation %s\n", pod_id,
               clean(s->metadata ? s->metadata->name : "", b1, sizeof(b1)),
               clean(s->metadata ? s->metadata->namespace_ : "", b2, sizeof(b2)),
               sandbox_state(s->state),
               clean(s->network && s->network->ip && *s->network->ip ? s->network->ip : "-", b3,
                     sizeof(b3)),
               clean(s->runtime_handler && *s->runtime_handler ? s->runtime_handler : "-", b4,
                     sizeof(b4)),
               clean(isolation, b5, sizeof(b5)));

        Runtime__V1__ContainerFilter filter = RUNTIME__V1__CONTAINER_FILTER__INIT;
        filter.pod_sandbox_id = pod_id;
        _cleanup_cri_msg_ Runtime__V1__ListContainersResponse *list = NULL;
        r = cri_list_containers(ctl->client, &filter, &list, &err);
        if (r < 0)
                return fail(err, r);
        for (size_t i = 0; i < list->n_containers; i++) {
                const Runtime__V1__Container *c = list->containers[i];
                if (!c || !c->id)
                        continue;
                printf("container %s name %s state %s image %s\n", clean(c->id, b1, sizeof(b1)),
                       clean(c->metadata ? c->metadata->name : "", b2, sizeof(b2)),
                       container_state(c->state),
                       clean(c->image ? c->image->image : "", b3, sizeof(b3)));
        }
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f,
                "usage: unishimctl [-e|--endpoint unix:///PATH] [-T|--timeout SECONDS] COMMAND "
                "...\n"
                "\n"
                "  version                                  the runtime's CRI version\n"
                "  run [--timing] [--no-pull] [--keep] [--stop-after-start GRACE] POD.json\n"
                "                                           run a pod; prints its id\n"
                "  exec POD [-c C] [-t S] -- CMD [ARGS...]  run a command (ExecSync)\n"
                "  logs POD [-c C]                          print a container's log\n"
                "  stop POD... [--timeout S]                stop containers and sandbox\n"
                "  rm POD... [--timeout S]                  stop and remove them\n"
                "  ps|pods [-q]                             list pods\n"
                "  inspect POD                              the pod and its containers\n"
                "  update POD [-c C] [--memory B] [--cpu-quota N] [--cpu-period N] [--cpu-shares "
                "N]\n"
                "  stats POD [-c C]                         container stats as JSON\n"
                "  status POD [-c C]                        ContainerStatus as JSON (exit code, "
                "reason)\n"
                "  template [--config FILE] build|list|gc|rm KEY|rm --all\n"
                "                                           the node's VM template cache "
                "(no CRI)\n"
                "\n"
                "POD is a pod id, a unique id prefix, NAME or NAMESPACE/NAME. The endpoint\n"
                "defaults to $CRI_ENDPOINT, else %s.\n",
                CRI_DEFAULT_ENDPOINT);
}

int main(int argc, char **argv)
{
        static const struct option opts[] = {
                {"endpoint", required_argument, NULL, 'e'},
                {"timeout", required_argument, NULL, 'T'},
                {"help", no_argument, NULL, 'h'},
                {NULL, 0, NULL, 0},
        };
        const char *endpoint = getenv("CRI_ENDPOINT");
        if (!endpoint || !*endpoint)
                endpoint = CRI_DEFAULT_ENDPOINT;
        int64_t timeout_s = 0;
        int c;
        while ((c = getopt_long(argc, argv, "+e:T:h", opts, NULL)) != -1) {
                switch (c) {
                case 'e':
                        endpoint = optarg;
                        break;
                case 'T':
                        if (parse_i64("--timeout", optarg, 1, 24 * 3600, &timeout_s) < 0)
                                return 2;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return 2;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }
        const char *cmd = argv[optind];
        int sub_argc = argc - optind;
        char **sub_argv = argv + optind;

        /* The template cache is the node's, not the CRI's. */
        if (strcmp(cmd, "template") == 0)
                return unishimctl_template(sub_argc, sub_argv);

        struct ctl ctl = {.endpoint = endpoint};
        struct us_error *err = NULL;
        int r = cri_client_new(endpoint, &ctl.client, &err);
        if (r < 0)
                return fail(err, r);
        if (timeout_s > 0)
                cri_client_set_timeout(ctl.client, timeout_s * 1000);

        int status;
        if (strcmp(cmd, "version") == 0)
                status = cmd_version(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "run") == 0)
                status = cmd_run(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "exec") == 0)
                status = cmd_exec(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "logs") == 0)
                status = cmd_logs(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "stop") == 0)
                status = cmd_stop_rm(&ctl, sub_argc, sub_argv, false);
        else if (strcmp(cmd, "rm") == 0)
                status = cmd_stop_rm(&ctl, sub_argc, sub_argv, true);
        else if (strcmp(cmd, "ps") == 0 || strcmp(cmd, "pods") == 0)
                status = cmd_ps(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "inspect") == 0)
                status = cmd_inspect(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "update") == 0)
                status = cmd_update(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "stats") == 0)
                status = cmd_stats(&ctl, sub_argc, sub_argv);
        else if (strcmp(cmd, "status") == 0)
                status = cmd_status(&ctl, sub_argc, sub_argv);
        else {
                fprintf(stderr, "unishimctl: unknown command %s\n", cmd);
                usage(stderr);
                status = 2;
        }
        fflush(stdout);
        cri_client_free(ctl.client);
        policy_config_free(ctl.config);
        free(ctl.config_path);
        return status;
}
