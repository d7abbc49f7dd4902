/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto-sample: wire-compatibility helper for tests/integration/test-proto-wire.sh.
 *
 *   proto-sample list            one line per message: our name, upstream
 *                                type name, upstream .proto file
 *   proto-sample encode NAME     our encoding of a sample of NAME on stdout
 *   proto-sample expect NAME     the text `protoc --decode` must print for it
 *
 * The sample sets every field (recursively, repeated fields twice) to a
 * value unique to that field: strings carry the field name, numbers a
 * running counter. Decoded with upstream's .proto, any field whose number or
 * type differs from upstream shows up under another name, with another
 * value, or as an unknown numbered field -- and the text no longer matches.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "containerd/cgroups-v1-metrics.pb-c.h"
#include "containerd/events-service.pb-c.h"
#include "containerd/events.pb-c.h"
#include "containerd/shim.pb-c.h"
#include "containerd/task-types.pb-c.h"
#include "containerd/types.pb-c.h"
#include "google/protobuf/any.pb-c.h"
#include "google/protobuf/empty.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "ttrpc/ttrpc.pb-c.h"

#define MAX_DEPTH  4
#define N_REPEATED 2

struct sample {
        const ProtobufCMessageDescriptor *desc;
        const char *upstream_name; /* NULL: same as ours */
        const char *upstream_file;
};

static const struct sample samples[] = {
        {&io__containerd__cgroups__v1__metrics__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__hugetlb_stat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__pids_stat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__cpustat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__cpuusage__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__throttle__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__memory_stat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__memory_entry__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__memory_oom_control__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__blk_iostat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__blk_ioentry__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__rdma_stat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__rdma_entry__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__network_stat__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&io__containerd__cgroups__v1__cgroup_stats__descriptor, NULL,
         "github.com/containerd/cgroups/stats/v1/metrics.proto"},
        {&containerd__services__events__ttrpc__v1__forward_request__descriptor, NULL,
         "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto"},
        {&containerd__services__events__ttrpc__v1__envelope__descriptor, NULL,
         "github.com/containerd/containerd/api/services/ttrpc/events/v1/events.proto"},
        {&containerd__events__task_create__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_start__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_delete__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_io__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_exit__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_oom__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_exec_added__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_exec_started__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_paused__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__events__task_resumed__descriptor, NULL,
         "github.com/containerd/containerd/api/events/task.proto"},
        {&containerd__task__v2__create_task_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__create_task_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__delete_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__delete_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__exec_process_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__exec_process_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__resize_pty_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__state_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__state_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__kill_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__close_iorequest__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__pids_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__pids_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__checkpoint_task_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__update_task_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__start_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__start_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__wait_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__wait_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__stats_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__stats_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__connect_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__connect_response__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__shutdown_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__pause_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__task__v2__resume_request__descriptor, NULL,
         "github.com/containerd/containerd/runtime/v2/task/shim.proto"},
        {&containerd__v1__types__process_info__descriptor, NULL,
         "github.com/containerd/containerd/api/types/task/task.proto"},
        {&containerd__types__mount__descriptor, NULL,
         "github.com/containerd/containerd/api/types/mount.proto"},
        {&google__protobuf__any__descriptor, NULL, "google/protobuf/any.proto"},
        {&google__protobuf__empty__descriptor, NULL, "google/protobuf/empty.proto"},
        {&google__protobuf__timestamp__descriptor, NULL, "google/protobuf/timestamp.proto"},
        {&ttrpc__status__descriptor, "google.rpc.Status", "google/rpc/status.proto"},
};

/* Fields we deliberately leave out of the comparison. */
static bool skipped(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f)
{
        /* google.rpc.Status.details is repeated Any; we carry it as opaque bytes. */
        return d == &ttrpc__status__descriptor && strcmp(f->name, "details") == 0;
}

static void *xcalloc(size_t n, size_t size)
{
        void *p = calloc(n ? n : 1, size ? size : 1);
        if (!p) {
                perror("calloc");
                exit(1);
        }
        return p;
}

static unsigned counter = 100;

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, int depth);

static size_t scalar_size(ProtobufCType t)
{
        switch (t) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
        case PROTOBUF_C_TYPE_ENUM:
                return 4;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                return 8;
        case PROTOBUF_C_TYPE_FLOAT:
                return sizeof(float);
        case PROTOBUF_C_TYPE_DOUBLE:
                return sizeof(double);
        case PROTOBUF_C_TYPE_BOOL:
                return sizeof(protobuf_c_boolean);
        case PROTOBUF_C_TYPE_STRING:
                return sizeof(char *);
        case PROTOBUF_C_TYPE_BYTES:
                return sizeof(ProtobufCBinaryData);
        case PROTOBUF_C_TYPE_MESSAGE:
                return sizeof(void *);
        }
        return 0;
}

/* Writes one value of field f at p. Returns false when nothing was set. */
static bool set_value(const ProtobufCFieldDescriptor *f, void *p, int depth)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                *(uint32_t *)p = counter++;
                return true;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                *(uint64_t *)p = counter++;
                return true;
        case PROTOBUF_C_TYPE_FLOAT:
                *(float *)p = (float)counter++;
                return true;
        case PROTOBUF_C_TYPE_DOUBLE:
                *(double *)p = (double)counter++;
                return true;
        case PROTOBUF_C_TYPE_BOOL:
                *(protobuf_c_boolean *)p = 1;
                return true;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumDescriptor *e = f->descriptor;
                *(int *)p = e->values[e->n_values - 1].value;
                return e->values[e->n_values - 1].value != 0;
        }
        case PROTOBUF_C_TYPE_STRING:
                *(char **)p = strdup(f->name);
                return true;
        case PROTOBUF_C_TYPE_BYTES: {
                ProtobufCBinaryData *b = p;
                b->data = (uint8_t *)strdup(f->name);
                b->len = strlen(f->name);
                return true;
        }
        case PROTOBUF_C_TYPE_MESSAGE:
                if (depth >= MAX_DEPTH)
                        return false;
                *(ProtobufCMessage **)p = fill(f->descriptor, depth + 1);
                return true;
        }
        return false;
}

static ProtobufCMessage *fill(const ProtobufCMessageDescriptor *d, int depth)
{
        ProtobufCMessage *m = xcalloc(1, d->sizeof_message);
        d->message_init(m);
        char *base = (char *)m;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = &d->fields[i];
                if (skipped(d, f) || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
                        continue;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        if (f->type == PROTOBUF_C_TYPE_MESSAGE && depth >= MAX_DEPTH)
                                continue;
                        size_t es = scalar_size(f->type);
                        char *arr = xcalloc(N_REPEATED, es);
                        for (size_t k = 0; k < N_REPEATED; k++)
                                (void)set_value(f, arr + k * es, depth);
                        *(size_t *)(base + f->quantifier_offset) = N_REPEATED;
                        *(void **)(base + f->offset) = arr;
                        continue;
                }
                bool set = set_value(f, base + f->offset, depth);
                if (set && f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset &&
                    f->type != PROTOBUF_C_TYPE_STRING && f->type != PROTOBUF_C_TYPE_MESSAGE)
                        *(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
        }
        return m;
}

static void indent(int depth)
{
        for (int i = 0; i < depth; i++)
                fputs("  ", stdout);
}

static void print_message(const ProtobufCMessage *m, int depth);

static void print_value(const ProtobufCFieldDescriptor *f, const void *p, int depth)
{
        switch (f->type) {
        case PROTOBUF_C_TYPE_INT32:
        case PROTOBUF_C_TYPE_SINT32:
        case PROTOBUF_C_TYPE_SFIXED32:
                printf("%s: %d\n", f->name, *(const int32_t *)p);
                return;
        case PROTOBUF_C_TYPE_UINT32:
        case PROTOBUF_C_TYPE_FIXED32:
                printf("%s: %u\n", f->name, *(const uint32_t *)p);
                return;
        case PROTOBUF_C_TYPE_INT64:
        case PROTOBUF_C_TYPE_SINT64:
        case PROTOBUF_C_TYPE_SFIXED64:
        case PROTOBUF_C_TYPE_UINT64:
        case PROTOBUF_C_TYPE_FIXED64:
                printf("%s: %llu\n", f->name, (unsigned long long)*(const uint64_t *)p);
                return;
        case PROTOBUF_C_TYPE_FLOAT:
                printf("%s: %g\n", f->name, (double)*(const float *)p);
                return;
        case PROTOBUF_C_TYPE_DOUBLE:
                printf("%s: %g\n", f->name, *(const double *)p);
                return;
        case PROTOBUF_C_TYPE_BOOL:
                printf("%s: %s\n", f->name, *(const protobuf_c_boolean *)p ? "true" : "false");
                return;
        case PROTOBUF_C_TYPE_ENUM: {
                const ProtobufCEnumValue *v =
                        protobuf_c_enum_descriptor_get_value(f->descriptor, *(const int *)p);
                printf("%s: %s\n", f->name, v ? v->name : "?");
                return;
        }
        case PROTOBUF_C_TYPE_STRING:
                printf("%s: \"%s\"\n", f->name, *(char *const *)p);
                return;
        case PROTOBUF_C_TYPE_BYTES: {
                const ProtobufCBinaryData *b = p;
                printf("%s: \"%.*s\"\n", f->name, (int)b->len, (const char *)b->data);
                return;
        }
        case PROTOBUF_C_TYPE_MESSAGE:
                printf("%s {\n", f->name);
                print_message(*(ProtobufCMessage *const *)p, depth + 1);
                indent(depth);
                puts("}");
                return;
        }
}

static int by_id(const void *a, const void *b)
{
        const ProtobufCFieldDescriptor *const *x = a, *const *y = b;
        return (int)(*x)->id - (int)(*y)->id;
}

/* The text protoc prints: set fields by number, repeated elements in order. */
static void print_message(const ProtobufCMessage *m, int depth)
{
        const ProtobufCMessageDescriptor *d = m->descriptor;
        const ProtobufCFieldDescriptor **fs = xcalloc(d->n_fields, sizeof(*fs));
        for (unsigned i = 0; i < d->n_fields; i++)
                fs[i] = &d->fields[i];
        qsort(fs, d->n_fields, sizeof(*fs), by_id);
        const char *base = (const char *)m;
        for (unsigned i = 0; i < d->n_fields; i++) {
                const ProtobufCFieldDescriptor *f = fs[i];
                const void *p = base + f->offset;
                if (f->label == PROTOBUF_C_LABEL_REPEATED) {
                        size_t n = *(const size_t *)(base + f->quantifier_offset);
                        const char *arr = *(char *const *)p;
                        for (size_t k = 0; k < n; k++) {
                                indent(depth);
                                print_value(f, arr + k * scalar_size(f->type), depth);
                        }
                        continue;
                }
                bool set;
                switch (f->type) {
                case PROTOBUF_C_TYPE_STRING:
                case PROTOBUF_C_TYPE_MESSAGE:
                        set = *(void *const *)p != NULL;
                        break;
                case PROTOBUF_C_TYPE_BYTES:
                        set = ((const ProtobufCBinaryData *)p)->len > 0;
                        break;
                case PROTOBUF_C_TYPE_BOOL:
                        set = *(const protobuf_c_boolean *)p;
                        break;
                case PROTOBUF_C_TYPE_INT64:
                case PROTOBUF_C_TYPE_SINT64:
                case PROTOBUF_C_TYPE_SFIXED64:
                case PROTOBUF_C_TYPE_UINT64:
                case PROTOBUF_C_TYPE_FIXED64:
                case PROTOBUF_C_TYPE_DOUBLE:
                        set = *(const uint64_t *)p != 0;
                        break;
                case PROTOBUF_C_TYPE_INT32:
                case PROTOBUF_C_TYPE_SINT32:
                case PROTOBUF_C_TYPE_SFIXED32:
                case PROTOBUF_C_TYPE_UINT32:
                case PROTOBUF_C_TYPE_FIXED32:
                case PROTOBUF_C_TYPE_ENUM:
                case PROTOBUF_C_TYPE_FLOAT:
                default:
                        set = *(const uint32_t *)p != 0;
                        break;
                }
                if (!set)
                        continue;
                indent(depth);
                print_value(f, p, depth);
        }
        free(fs);
}

static const struct sample *find(const char *name)
{
        for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
                if (strcmp(samples[i].desc->name, name) == 0)
                        return &samples[i];
        return NULL;
}

int main(int argc, char **argv)
{
        if (argc == 2 && strcmp(argv[1], "list") == 0) {
                for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
                        printf("%s\t%s\t%s\n", samples[i].desc->name,
                               samples[i].upstream_name ? samples[i].upstream_name
                                                        : samples[i].desc->name,
                               samples[i].upstream_file);
                return 0;
        }
        if (argc != 3 || (strcmp(argv[1], "encode") != 0 && strcmp(argv[1], "expect") != 0)) {
                fprintf(stderr, "usage: %s list | encode NAME | expect NAME\n", argv[0]);
                return 2;
        }
        const struct sample *s = find(argv[2]);
        if (!s) {
                fprintf(stderr, "unknown message %s\n", argv[2]);
                return 2;
        }
        ProtobufCMessage *m = fill(s->desc, 0);
        if (strcmp(argv[1], "expect") == 0) {
                print_message(m, 0);
        } else {
                size_t n = protobuf_c_message_get_packed_size(m);
                uint8_t *buf = xcalloc(1, n);
                protobuf_c_message_pack(m, buf);
                if (fwrite(buf, 1, n, stdout) != n)
                        return 1;
                free(buf);
        }
        protobuf_c_message_free_unpacked(m, NULL);
        return fflush(stdout) == 0 ? 0 : 1;
}
