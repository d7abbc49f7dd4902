/* SPDX-License-Identifier: Apache-2.0 */
/* cri/pod-spec.c: the pod JSON of unishimctl, good and hostile. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "unit.h"

#include "cri/pod-spec.h"

static struct cri_pod_spec *parse_ok(const char *json)
{
        struct cri_pod_spec *spec = NULL;
        struct us_error *err = NULL;
        int r = cri_pod_spec_parse(json, strlen(json), &spec, &err);
        if (r < 0)
                fail_msg("unexpected error: %s", us_error_text(err));
        assert_non_null(spec);
        return spec;
}

/* Parses json expecting failure with errno want and a message containing
 * every one of the NULL-terminated substrings. */
static void parse_bad(const char *json, size_t len, int want, ...)
{
        struct cri_pod_spec *spec = NULL;
        struct us_error *err = NULL;
        int r = cri_pod_spec_parse(json, len, &spec, &err);
        if (r >= 0)
                fail_msg("accepted: %.200s", json);
        assert_null(spec);
        assert_int_equal(r, -want);
        assert_non_null(err);
        va_list ap;
        va_start(ap, want);
        for (const char *s; (s = va_arg(ap, const char *));)
                if (!strstr(us_error_text(err), s))
                        fail_msg("error \"%s\" lacks \"%s\"", us_error_text(err), s);
        va_end(ap);
        us_error_free(err);
}
#define BAD(json, want, ...) parse_bad(json, strlen(json), want, __VA_ARGS__, NULL)

static const char *map_value(void *const *entries, size_t n, const char *key)
{
        struct e {
                ProtobufCMessage base;
                char *key, *value;
        };
        for (size_t i = 0; i < n; i++)
                if (strcmp(((const struct e *)entries[i])->key, key) == 0)
                        return ((const struct e *)entries[i])->value;
        return NULL;
}

static void minimal_gets_kubelet_defaults(void **state)
{
        (void)state;
        struct cri_pod_spec *spec = parse_ok(
                "{\"name\":\"web\",\"containers\":[{\"name\":\"app\",\"image\":\"busybox\"}]}");
        const Runtime__V1__PodSandboxConfig *sb = spec->sandbox;
        assert_string_equal(sb->metadata->name, "web");
        assert_string_equal(sb->metadata->namespace_, "default");
        assert_int_equal(strlen(sb->metadata->uid), 36);
        assert_int_equal(sb->metadata->uid[14], '4'); /* UUID v4 */
        assert_string_equal(spec->runtime_handler, "unishim");
        assert_string_equal(sb->hostname, "web");
        char want[128];
        snprintf(want, sizeof(want), "/var/log/pods/default_web_%s", sb->metadata->uid);
        assert_string_equal(sb->log_directory, want);
        assert_int_equal(sb->linux_->security_context->namespace_options->network,
                         RUNTIME__V1__NAMESPACE_MODE__POD);
        assert_int_equal(sb->linux_->security_context->namespace_options->pid,
                         RUNTIME__V1__NAMESPACE_MODE__CONTAINER);
        assert_int_equal(spec->n_containers, 1);
        const Runtime__V1__ContainerConfig *c = spec->containers[0];
        assert_string_equal(c->metadata->name, "app");
        assert_string_equal(c->image->image, "busybox");
        assert_string_equal(c->log_path, "app/0.log");
        assert_int_equal(c->n_command, 0);
        assert_int_equal(c->n_envs, 0);
        assert_false(c->tty);
        cri_pod_spec_free(spec);

        /* Two parses get different uids. */
        struct cri_pod_spec *a =
                parse_ok("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}");
        struct cri_pod_spec *b =
                parse_ok("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}");
        assert_string_not_equal(a->sandbox->metadata->uid, b->sandbox->metadata->uid);
        cri_pod_spec_free(a);
        cri_pod_spec_free(b);
}

static const char full_pod[] =
        "{\"name\": \"vm-pod.1\", \"namespace\": \"team-a\", \"uid\": \"1234-abcd\","
        " \"runtime_handler\": \"unishim\","
        " \"annotations\": {\"unishim.io/isolation\": \"sandbox\", \"other\": \"x y\"},"
        " \"labels\": {\"app\": \"web\"}, \"hostname\": \"h1\","
        " \"log_directory\": \"/tmp/logs\", \"cgroup_parent\": \"/kubepods/pod1\","
        " \"containers\": ["
        "  {\"name\": \"app\", \"image\": \"docker.io/unishim/test:latest\","
        "   \"command\": [\"/bin/sh\", \"-c\"], \"args\": [\"echo hi\"],"
        "   \"env\": {\"A\": \"1\", \"B\": \"two words\"}, \"working_dir\": \"/tmp\","
        "   \"annotations\": {\"c\": \"d\"}, \"labels\": {\"l\": \"m\"},"
        "   \"resources\": {\"memory_limit_bytes\": 67108864, \"cpu_quota\": 50000,"
        "                  \"cpu_period\": 100000, \"cpu_shares\": 512},"
        "   \"mounts\": [{\"host_path\": \"/srv\", \"container_path\": \"/data\", \"readonly\": "
        "true},"
        "              {\"host_path\": \"/tmp\", \"container_path\": \"/t\"}],"
        "   \"tty\": true, \"stdin\": true, \"privileged\": true,"
        "   \"run_as_user\": 1000, \"run_as_group\": 2000},"
        "  {\"name\": \"istio-proxy\", \"image\": \"proxy\"}],"
        " \"privileged\": true}";

static void full_description(void **state)
{
        (void)state;
        struct cri_pod_spec *spec = parse_ok(full_pod);
        const Runtime__V1__PodSandboxConfig *sb = spec->sandbox;
        assert_string_equal(sb->metadata->name, "vm-pod.1");
        assert_string_equal(sb->metadata->namespace_, "team-a");
        assert_string_equal(sb->metadata->uid, "1234-abcd");
        assert_string_equal(sb->hostname, "h1");
        assert_string_equal(sb->log_directory, "/tmp/logs");
        assert_string_equal(sb->linux_->cgroup_parent, "/kubepods/pod1");
        assert_int_equal(sb->n_annotations, 2);
        assert_string_equal(map_value((void *const *)sb->annotations, sb->n_annotations,
                                      "unishim.io/isolation"),
                            "sandbox");
        assert_string_equal(map_value((void *const *)sb->labels, sb->n_labels, "app"), "web");

        assert_int_equal(spec->n_containers, 2);
        const Runtime__V1__ContainerConfig *c = spec->containers[0];
        assert_int_equal(c->n_command, 2);
        assert_string_equal(c->command[1], "-c");
        assert_int_equal(c->n_args, 1);
        assert_string_equal(c->args[0], "echo hi");
        assert_int_equal(c->n_envs, 2);
        assert_string_equal(c->envs[0]->key, "A");
        assert_string_equal(c->envs[1]->value, "two words");
        assert_string_equal(c->working_dir, "/tmp");
        assert_string_equal(map_value((void *const *)c->annotations, c->n_annotations, "c"), "d");
        assert_int_equal(c->linux_->resources->memory_limit_in_bytes, 67108864);
        assert_int_equal(c->linux_->resources->cpu_quota, 50000);
        assert_int_equal(c->linux_->resources->cpu_period, 100000);
        assert_int_equal(c->linux_->resources->cpu_shares, 512);
        assert_int_equal(c->n_mounts, 2);
        assert_string_equal(c->mounts[0]->host_path, "/srv");
        assert_string_equal(c->mounts[0]->container_path, "/data");
        assert_true(c->mounts[0]->readonly);
        assert_false(c->mounts[1]->readonly);
        assert_true(c->tty);
        assert_true(c->stdin);
        assert_true(c->linux_->security_context->privileged);
        assert_true(sb->linux_->security_context->privileged);
        assert_false(spec->containers[1]->linux_->security_context->privileged);
        assert_int_equal(c->linux_->security_context->run_as_user->value, 1000);
        assert_int_equal(c->linux_->security_context->run_as_group->value, 2000);
        assert_null(spec->containers[1]->linux_->security_context->run_as_user);
        assert_string_equal(spec->containers[1]->metadata->name, "istio-proxy");

        /* What we built is a valid message: it packs and unpacks to the same. */
        Runtime__V1__CreateContainerRequest req = RUNTIME__V1__CREATE_CONTAINER_REQUEST__INIT;
        req.pod_sandbox_id = (char *)"abc";
        req.config = spec->containers[0];
        req.sandbox_config = spec->sandbox;
        size_t len = protobuf_c_message_get_packed_size(&req.base);
        uint8_t *buf = malloc(len);
        assert_non_null(buf);
        assert_int_equal(protobuf_c_message_pack(&req.base, buf), len);
        Runtime__V1__CreateContainerRequest *back =
                runtime__v1__create_container_request__unpack(NULL, len, buf);
        assert_non_null(back);
        assert_string_equal(back->sandbox_config->metadata->uid, "1234-abcd");
        assert_string_equal(back->config->mounts[0]->host_path, "/srv");
        assert_int_equal(back->config->linux_->resources->cpu_quota, 50000);
        runtime__v1__create_container_request__free_unpacked(back, NULL);
        free(buf);
        cri_pod_spec_free(spec);
}

static void host_namespaces_and_propagation(void **state)
{
        (void)state;
        struct cri_pod_spec *spec = parse_ok(
                "{\"name\":\"w\",\"host_network\":true,\"host_pid\":true,\"host_ipc\":true,"
                "\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"mounts\":["
                "{\"host_path\":\"/b\",\"container_path\":\"/b\",\"propagation\":"
                "\"Bidirectional\"},"
                "{\"host_path\":\"/h\",\"container_path\":\"/h\",\"propagation\":"
                "\"HostToContainer\"},"
                "{\"host_path\":\"/n\",\"container_path\":\"/n\",\"propagation\":\"None\"},"
                "{\"host_path\":\"/d\",\"container_path\":\"/d\"}]}]}");
        /* kubelet gives the containers the pod's host namespaces too. */
        const Runtime__V1__NamespaceOption *nss[] = {
                spec->sandbox->linux_->security_context->namespace_options,
                spec->containers[0]->linux_->security_context->namespace_options};
        for (size_t i = 0; i < 2; i++) {
                assert_int_equal(nss[i]->network, RUNTIME__V1__NAMESPACE_MODE__NODE);
                assert_int_equal(nss[i]->pid, RUNTIME__V1__NAMESPACE_MODE__NODE);
                assert_int_equal(nss[i]->ipc, RUNTIME__V1__NAMESPACE_MODE__NODE);
        }
        assert_string_equal(spec->sandbox->hostname, "");
        Runtime__V1__Mount **m = spec->containers[0]->mounts;
        assert_int_equal(m[0]->propagation,
                         RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_BIDIRECTIONAL);
        assert_int_equal(m[1]->propagation,
                         RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_HOST_TO_CONTAINER);
        assert_int_equal(m[2]->propagation, RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE);
        assert_int_equal(m[3]->propagation, RUNTIME__V1__MOUNT_PROPAGATION__PROPAGATION_PRIVATE);
        cri_pod_spec_free(spec);

        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"mounts\":[{"
            "\"host_path\":\"/b\",\"container_path\":\"/b\",\"propagation\":\"rshared\"}]}]}",
            EINVAL, "containers[0].mounts[0].propagation", "\"rshared\"");
        BAD("{\"name\":\"w\",\"host_network\":\"yes\",\"containers\":[{\"name\":\"a\","
            "\"image\":\"i\"}]}",
            EINVAL, "host_network: expected boolean");
        BAD("{\"name\":\"w\",\"host_network\":true,\"hostname\":\"h\",\"containers\":[{"
            "\"name\":\"a\",\"image\":\"i\"}]}",
            EINVAL, "hostname: a host_network pod has the node's hostname");
}

static void handler_can_be_empty(void **state)
{
        (void)state;
        /* "" selects containerd's default runtime. */
        struct cri_pod_spec *spec = parse_ok("{\"name\":\"w\",\"runtime_handler\":\"\","
                                             "\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}");
        assert_string_equal(spec->runtime_handler, "");
        cri_pod_spec_free(spec);
}

static void structure_errors_name_the_path(void **state)
{
        (void)state;
        BAD("[]", EINVAL, "expected object");
        BAD("{\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", EINVAL, "name: missing");
        BAD("{\"name\":\"w\"}", EINVAL, "containers: missing");
        BAD("{\"name\":\"w\",\"containers\":[]}", EINVAL, "containers: must not be empty");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\"}]}", EINVAL, "containers[0].image");
        BAD("{\"name\":\"w\",\"contianers\":[]}", EINVAL, "contianers: unknown key");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"imagePullPolicy\":1}"
            "]}",
            EINVAL, "containers[0].imagePullPolicy: unknown key");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"resources\":{\"cpu_"
            "quota\":\"1\"}}]}",
            EINVAL, "containers[0].resources.cpu_quota: expected integer");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"resources\":{"
            "\"memory\":1}}]}",
            EINVAL, "containers[0].resources.memory: unknown key");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"resources\":{\"cpu_"
            "period\":10}}]}",
            EINVAL, "cpu_period");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"resources\":{"
            "\"memory_limit_bytes\":-5}}]}",
            EINVAL, "memory_limit_bytes: out of range");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"},{\"name\":\"a\","
            "\"image\":\"j\"}]}",
            EINVAL, "containers[1].name", "duplicate");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"mounts\":[{\"host_"
            "path\":\"rel\",\"container_path\":\"/x\"}]}]}",
            EINVAL, "containers[0].mounts[0].host_path: must be an absolute path");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"mounts\":[{\"host_"
            "path\":\"/h\"}]}]}",
            EINVAL, "containers[0].mounts[0].container_path: missing");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"env\":{\"A=B\":"
            "\"x\"}}]}",
            EINVAL, "env.A=B");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"env\":{\"A\":1}}]}",
            EINVAL, "env.A: expected string");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"command\":\"sh\"}]}",
            EINVAL, "command: expected array");
        BAD("{\"name\":\"w\",\"annotations\":{\"k\":true},\"containers\":[{\"name\":\"a\","
            "\"image\":\"i\"}]}",
            EINVAL, "annotations.k: expected string");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"tty\":\"yes\"}]}",
            EINVAL, "tty: expected boolean");
        BAD("{\"name\":\"w\",\"log_directory\":\"logs\",\"containers\":[{\"name\":\"a\",\"image\":"
            "\"i\"}]}",
            EINVAL, "log_directory: must be an absolute path");
}

static void names_are_checked(void **state)
{
        (void)state;
        BAD("{\"name\":\"Web\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", EINVAL,
            "name: \"Web\" must consist of lower case");
        BAD("{\"name\":\"-w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", EINVAL,
            "must start and end");
        BAD("{\"name\":\"w\",\"namespace\":\"a.b\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}"
            "]}",
            EINVAL, "namespace");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a/b\",\"image\":\"i\"}]}", EINVAL,
            "containers[0].name");
        BAD("{\"name\":\"w\",\"uid\":\"../x\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}",
            EINVAL, "uid");
        BAD("{\"name\":\"w\",\"runtime_handler\":\"a "
            "b\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}",
            EINVAL, "runtime_handler");
        BAD("{\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\",\"working_dir\":\"/"
            "a\\nb\"}]}",
            EINVAL, "working_dir: contains control characters");
        /* An annotation's value may hold lines (cloud-init user-data), not
         * other control characters. */
        BAD("{\"name\":\"w\",\"annotations\":{\"a\":\"x\\u0001\"},\"containers\":[{"
            "\"name\":\"a\",\"image\":\"i\"}]}",
            EINVAL, "annotations.a: contains control characters");
        cri_pod_spec_free(parse_ok("{\"name\":\"w\",\"annotations\":{\"a\":"
                                   "\"#cloud-config\\n\\tx: 1\\r\\n\"},\"containers\":[{"
                                   "\"name\":\"a\",\"image\":\"i\"}]}"));
        char longname[300];
        memset(longname, 'a', sizeof(longname));
        longname[sizeof(longname) - 1] = '\0';
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"name\":\"%s\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", longname);
        BAD(json, EINVAL, "name: longer than 253");
}

static void hostile_documents(void **state)
{
        (void)state;
        BAD("", EINVAL, "pod spec");
        BAD("{\"name\":\"w\",", EINVAL, "pod spec");
        BAD("{\"name\":\"w\"} trailing", EINVAL, "pod spec");
        BAD("{/* c */\"name\":\"w\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", EINVAL,
            "comment");
        BAD("{\"name\":\"w\\u0000x\",\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}", EINVAL,
            "name: string contains a NUL");
        static const char nul[] = "{\"name\":\"w\"\0}";
        parse_bad(nul, sizeof(nul) - 1, EINVAL, "NUL byte", NULL);

        /* Deep nesting is refused before yajl recurses. */
        size_t depth = 100000;
        char *deep = malloc(2 * depth + 64);
        assert_non_null(deep);
        size_t n = (size_t)sprintf(deep, "{\"name\":\"w\",\"annotations\":");
        for (size_t i = 0; i < depth; i++)
                deep[n++] = '[';
        for (size_t i = 0; i < depth; i++)
                deep[n++] = ']';
        deep[n++] = '}';
        parse_bad(deep, n, EINVAL, "nesting", NULL);
        free(deep);

        /* Size limit. */
        size_t big = CRI_POD_SPEC_MAX_SIZE + 1;
        char *huge = malloc(big);
        assert_non_null(huge);
        memset(huge, ' ', big);
        parse_bad(huge, big, E2BIG, "too large", NULL);
        free(huge);
}

static void counts_are_limited(void **state)
{
        (void)state;
        /* 65 containers */
        size_t cap = 65 * 48 + 128;
        char *json = malloc(cap);
        assert_non_null(json);
        size_t n = (size_t)sprintf(json, "{\"name\":\"w\",\"containers\":[");
        for (int i = 0; i < CRI_POD_SPEC_MAX_CONTAINERS + 1; i++)
                n += (size_t)sprintf(json + n, "%s{\"name\":\"c%d\",\"image\":\"i\"}", i ? "," : "",
                                     i);
        n += (size_t)sprintf(json + n, "]}");
        parse_bad(json, n, EINVAL, "more than 64 containers", NULL);
        free(json);

        /* 257 annotations */
        cap = 257 * 32 + 128;
        json = malloc(cap);
        assert_non_null(json);
        n = (size_t)sprintf(json, "{\"name\":\"w\",\"annotations\":{");
        for (int i = 0; i < CRI_POD_SPEC_MAX_MAP + 1; i++)
                n += (size_t)sprintf(json + n, "%s\"k%d\":\"v\"", i ? "," : "", i);
        n += (size_t)sprintf(json + n, "},\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}");
        parse_bad(json, n, EINVAL, "annotations: more than 256 entries", NULL);
        free(json);

        /* One annotation value over 64 KiB */
        size_t vlen = CRI_POD_SPEC_MAX_VALUE + 1;
        json = malloc(vlen + 256);
        assert_non_null(json);
        n = (size_t)sprintf(json, "{\"name\":\"w\",\"annotations\":{\"k\":\"");
        memset(json + n, 'v', vlen);
        n += vlen;
        n += (size_t)sprintf(json + n, "\"},\"containers\":[{\"name\":\"a\",\"image\":\"i\"}]}");
        parse_bad(json, n, EINVAL, "annotations.k: longer than", NULL);
        free(json);

        BAD("{\"name\":\"w\",\"annotations\":{\"k\":\"a\",\"k\":\"b\"},\"containers\":[{\"name\":"
            "\"a\",\"image\":\"i\"}]}",
            EINVAL, "annotations.k: duplicate key");
}

static void load_from_file(void **state)
{
        (void)state;
        struct cri_pod_spec *spec = NULL;
        struct us_error *err = NULL;
        int r = cri_pod_spec_load("/nonexistent/pod.json", &spec, &err);
        assert_int_equal(r, -ENOENT);
        assert_non_null(strstr(us_error_text(err), "/nonexistent/pod.json"));
        err = us_error_free(err);

        char path[] = "/tmp/test-cri-pod-spec-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        FILE *f = fdopen(fd, "w");
        fputs(full_pod, f);
        fclose(f);
        r = cri_pod_spec_load(path, &spec, &err);
        assert_int_equal(r, 0);
        assert_string_equal(spec->sandbox->metadata->name, "vm-pod.1");
        spec = cri_pod_spec_free(spec);

        f = fopen(path, "w");
        fputs("{\"name\":1}", f);
        fclose(f);
        r = cri_pod_spec_load(path, &spec, &err);
        assert_int_equal(r, -EINVAL);
        char want[128];
        snprintf(want, sizeof(want), "%s: pod spec: name: expected string, got number", path);
        assert_string_equal(us_error_text(err), want);
        us_error_free(err);
        unlink(path);
        assert_null(cri_pod_spec_free(NULL));
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(minimal_gets_kubelet_defaults),
                cmocka_unit_test(full_description),
                cmocka_unit_test(host_namespaces_and_propagation),
                cmocka_unit_test(handler_can_be_empty),
                cmocka_unit_test(structure_errors_name_the_path),
                cmocka_unit_test(names_are_checked),
                cmocka_unit_test(hostile_documents),
                cmocka_unit_test(counts_are_limited),
                cmocka_unit_test(load_from_file),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
