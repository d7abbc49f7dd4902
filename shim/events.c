/* SPDX-License-Identifier: Apache-2.0 */
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cleanup.h"
#include "containerd/events-service.pb-c.h"
#include "ttrpc.h"

#define PUBLISH_TIMEOUT_MS 5000

struct shim_events {
        char *address;
        char *namespace;
        struct us_ttrpc_client *client;
};

int shim_events_new(const char *ttrpc_address, const char *namespace, struct shim_events **ret,
                    struct us_error **err)
{
        struct shim_events *ev = calloc(1, sizeof(*ev));
        if (!ev)
                return us_errorf(err, ENOMEM, "allocate event publisher");
        if (ttrpc_address && *ttrpc_address) {
                /* containerd passes "unix:///path" or a plain path. */
                const char *path = ttrpc_address;
                if (strncmp(path, "unix://", 7) == 0)
                        path += 7;
                ev->address = strdup(path);
        }
        ev->namespace = strdup(namespace ? namespace : "");
        if ((ttrpc_address && *ttrpc_address && !ev->address) || !ev->namespace) {
                shim_events_free(ev);
                return us_errorf(err, ENOMEM, "allocate event publisher");
        }
        *ret = ev;
        return 0;
}

struct shim_events *shim_events_free(struct shim_events *ev)
{
        if (!ev)
                return NULL;
        us_ttrpc_client_free(ev->client);
        free(ev->address);
        free(ev->namespace);
        free(ev);
        return NULL;
}

static int forward(struct shim_events *ev,
                   const Containerd__Services__Events__Ttrpc__V1__ForwardRequest *req,
                   struct us_error **err)
{
        if (!ev->client) {
                int r = us_ttrpc_client_connect(ev->address, &ev->client, err);
                if (r < 0)
                        return r;
        }
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", ev->namespace}};
        _cleanup_free_ uint8_t *resp = NULL;
        size_t resp_len = 0;
        return us_ttrpc_client_call(ev->client, "containerd.services.events.ttrpc.v1.Events",
                                    "Forward", &req->base, md, US_ELEMENTSOF(md),
                                    PUBLISH_TIMEOUT_MS, &resp, &resp_len, err);
}

Google__Protobuf__Timestamp shim_timestamp(const struct timespec *ts)
{
        struct timespec now;
        if (!ts) {
                clock_gettime(CLOCK_REALTIME, &now);
                ts = &now;
        }
        Google__Protobuf__Timestamp t = GOOGLE__PROTOBUF__TIMESTAMP__INIT;
        t.seconds = ts->tv_sec;
        t.nanos = (int32_t)ts->tv_nsec;
        return t;
}

int shim_events_publish(struct shim_events *ev, const char *topic, const ProtobufCMessage *event,
                        struct us_error **err)
{
        if (!ev->address)
                return 0;

        size_t len = protobuf_c_message_get_packed_size(event);
        _cleanup_free_ uint8_t *buf = malloc(len ? len : 1);
        if (!buf)
                return us_errorf(err, ENOMEM, "pack event %s", topic);
        protobuf_c_message_pack(event, buf);

        Google__Protobuf__Timestamp ts = shim_timestamp(NULL);
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        any.type_url = (char *)event->descriptor->name;
        any.value.data = buf;
        any.value.len = len;
        Containerd__Services__Events__Ttrpc__V1__Envelope env =
                CONTAINERD__SERVICES__EVENTS__TTRPC__V1__ENVELOPE__INIT;
        env.timestamp = &ts;
        env.namespace_ = ev->namespace;
        env.topic = (char *)topic;
        env.event = &any;
        Containerd__Services__Events__Ttrpc__V1__ForwardRequest req =
                CONTAINERD__SERVICES__EVENTS__TTRPC__V1__FORWARD_REQUEST__INIT;
        req.envelope = &env;

        struct us_error *first = NULL;
        int r = forward(ev, &req, &first);
        if (r < 0) {
                /* containerd may have restarted: one fresh connection, then give up. */
                us_error_free(first);
                ev->client = us_ttrpc_client_free(ev->client);
                r = forward(ev, &req, err);
                if (r < 0)
                        return us_error_wrap(err, r, "publish %s", topic);
        }
        return 0;
}
