/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Events leave through an ordered queue, one Forward in flight at a time, on
 * an asynchronous client in the shim's loop: publishing never blocks the
 * loop, and while containerd is down, paused or restarting the events wait
 * and are delivered in order once it answers again. A Forward that timed
 * out may have reached containerd before it stopped answering: it is sent
 * again, so delivery is at least once (containerd's handlers of task events
 * take a repeat as the same state).
 */
#include "events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

#include "base/cleanup.h"
#include "containerd/events-service.pb-c.h"
#include "base/log.h"
#include "ttrpc/ttrpc.h"

#define EVENTS_SERVICE     "containerd.services.events.ttrpc.v1.Events"
#define PUBLISH_TIMEOUT_MS 5000
#define RETRY_MIN_MS       50
#define RETRY_MAX_MS       2000

struct queued {
        struct queued *next;
        char *topic;
        const char *type_url; /* the event's descriptor name: static */
        Google__Protobuf__Timestamp ts;
        uint8_t *data;
        size_t len;
};

struct shim_events {
        struct us_loop *loop;
        char *address;
        char *namespace;
        size_t max_queued;
        struct us_ttrpc_aclient *client;
        struct queued *head, **tail;
        size_t n;
        uint64_t dropped;
        bool in_flight;
        bool freeing; /* shim_events_free cancels the Forward in flight */
        struct us_loop_source *retry;
        unsigned backoff_ms;
        void (*drained)(void *userdata);
        void *drained_userdata;
};

static void send_head(struct shim_events *ev);

static struct queued *queued_free(struct queued *q)
{
        if (q) {
                free(q->topic);
                free(q->data);
                free(q);
        }
        return NULL;
}

int shim_events_new(struct us_loop *loop, const char *ttrpc_address, const char *namespace,
                    size_t max_queued, struct shim_events **ret, struct us_error **err)
{
        struct shim_events *ev = calloc(1, sizeof(*ev));
        if (!ev)
                return us_errorf(err, ENOMEM, "allocate event publisher");
        ev->loop = loop;
        ev->tail = &ev->head;
        ev->max_queued = max_queued ? max_queued : SHIM_EVENTS_MAX_QUEUED;
        ev->backoff_ms = RETRY_MIN_MS;
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
        ev->drained = NULL;
        ev->freeing = true;
        ev->client = us_ttrpc_aclient_free(ev->client);
        ev->retry = us_loop_source_remove(ev->retry);
        while (ev->head) {
                struct queued *q = ev->head;
                ev->head = q->next;
                queued_free(q);
        }
        free(ev->address);
        free(ev->namespace);
        free(ev);
        return NULL;
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

static void retry_now(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct shim_events *ev = userdata;
        ev->retry = NULL;
        send_head(ev);
}

/* containerd is not there (yet, or again): try later, less often each
 * time, never giving up on what is queued. */
static void retry_later(struct shim_events *ev)
{
        ev->client = us_ttrpc_aclient_free(ev->client);
        if (ev->retry)
                return;
        struct us_error *err = NULL;
        if (us_loop_add_timer(ev->loop, ev->backoff_ms, retry_now, ev, &ev->retry, &err) < 0) {
                us_log_warn("events: schedule a retry: %s", us_error_text(err));
                us_error_free(err);
        }
        ev->backoff_ms = ev->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : ev->backoff_ms * 2;
}

static void connection_closed(void *userdata, int reason)
{
        (void)reason;
        struct shim_events *ev = userdata;
        /* The pending Forward (if any) has failed already and retried. */
        if (!ev->in_flight && ev->head)
                retry_later(ev);
        else if (!ev->head)
                ev->client = us_ttrpc_aclient_free(ev->client);
}

static int connect_client(struct shim_events *ev, struct us_error **err)
{
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(ev->address) >= sizeof(sa.sun_path))
                return us_error_msg(err, ENAMETOOLONG, "events address %s too long", ev->address);
        strcpy(sa.sun_path, ev->address);
        /* Non-blocking: a containerd that accepts nothing (paused, its
         * backlog full) fails the connect instead of stalling us. */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return us_errorf(err, errno, "events socket");
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                int e = errno;
                us_close(fd);
                return us_errorf(err, e, "connect %s", ev->address);
        }
        int r = us_ttrpc_aclient_new(ev->loop, fd, &ev->client, err);
        if (r < 0)
                return r;
        us_ttrpc_aclient_on_close(ev->client, connection_closed, ev);
        return 0;
}

static void drop_head(struct shim_events *ev)
{
        struct queued *q = ev->head;
        ev->head = q->next;
        if (!ev->head)
                ev->tail = &ev->head;
        ev->n--;
        queued_free(q);
}

/* The transport failed (or containerd did not answer in time): the event
 * may be sent again. Anything else is containerd's verdict on the event. */
static bool transport_error(int status)
{
        /* -ECANCELED: containerd's CANCELLED (it is shutting down). */
        return status == -ETIMEDOUT || status == -ECONNRESET || status == -ENOTCONN ||
               status == -EPROTO || status == -ENOMEM || status == -ECONNREFUSED ||
               status == -ECANCELED;
}

static void forwarded(int status, const uint8_t *payload, size_t len, const struct us_error *err,
                      void *userdata)
{
        (void)payload;
        (void)len;
        struct shim_events *ev = userdata;
        ev->in_flight = false;
        if (status == -ECANCELED && ev->freeing)
                return; /* our client went with us */
        if (status < 0 && transport_error(status)) {
                retry_later(ev);
                return;
        }
        if (status < 0)
                us_log_warn("publish %s: %s", ev->head->topic, us_error_text(err));
        drop_head(ev);
        ev->backoff_ms = RETRY_MIN_MS;
        send_head(ev);
        if (!ev->head && ev->drained)
                ev->drained(ev->drained_userdata);
}

static void send_head(struct shim_events *ev)
{
        if (ev->in_flight || !ev->head || ev->retry)
                return;
        struct us_error *err = NULL;
        if (!ev->client && connect_client(ev, &err) < 0) {
                us_log_debug("events: %s: retrying", us_error_text(err));
                us_error_free(err);
                retry_later(ev);
                return;
        }
        struct queued *q = ev->head;
        Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
        any.type_url = (char *)q->type_url;
        any.value.data = q->data;
        any.value.len = q->len;
        Containerd__Services__Events__Ttrpc__V1__Envelope env =
                CONTAINERD__SERVICES__EVENTS__TTRPC__V1__ENVELOPE__INIT;
        env.timestamp = &q->ts;
        env.namespace_ = ev->namespace;
        env.topic = q->topic;
        env.event = &any;
        Containerd__Services__Events__Ttrpc__V1__ForwardRequest req =
                CONTAINERD__SERVICES__EVENTS__TTRPC__V1__FORWARD_REQUEST__INIT;
        req.envelope = &env;
        const struct us_ttrpc_kv md[] = {{"containerd-namespace-ttrpc", ev->namespace}};
        int r = us_ttrpc_aclient_call(ev->client, EVENTS_SERVICE, "Forward", &req.base, md,
                                      US_ELEMENTSOF(md), PUBLISH_TIMEOUT_MS, forwarded, ev, NULL,
                                      &err);
        if (r < 0) {
                us_log_debug("events: %s: retrying", us_error_text(err));
                us_error_free(err);
                retry_later(ev);
                return;
        }
        ev->in_flight = true;
}

int shim_events_publish(struct shim_events *ev, const char *topic, const ProtobufCMessage *event,
                        struct us_error **err)
{
        if (!ev->address)
                return 0;
        struct queued *q = calloc(1, sizeof(*q));
        size_t len = protobuf_c_message_get_packed_size(event);
        if (!q || !(q->topic = strdup(topic)) || !(q->data = malloc(len ? len : 1))) {
                queued_free(q);
                return us_errorf(err, ENOMEM, "queue event %s", topic);
        }
        protobuf_c_message_pack(event, q->data);
        q->len = len;
        q->type_url = event->descriptor->name;
        q->ts = shim_timestamp(NULL);
        if (ev->n >= ev->max_queued) {
                /* containerd has been gone for long: keep memory bounded,
                 * losing the oldest that is not on its way. */
                struct queued **victim = ev->in_flight ? &ev->head->next : &ev->head;
                if (*victim) {
                        struct queued *old = *victim;
                        *victim = old->next;
                        if (ev->tail == &old->next)
                                ev->tail = victim;
                        ev->n--;
                        if (ev->dropped++ == 0)
                                us_log_warn("events: containerd takes none, %zu queued: dropping "
                                            "the oldest (%s first)",
                                            ev->n + 1, old->topic);
                        queued_free(old);
                }
        }
        *ev->tail = q;
        ev->tail = &q->next;
        ev->n++;
        send_head(ev);
        return 0;
}

size_t shim_events_queued(const struct shim_events *ev)
{
        return ev ? ev->n : 0;
}

void shim_events_on_drained(struct shim_events *ev, void (*fn)(void *userdata), void *userdata)
{
        ev->drained = fn;
        ev->drained_userdata = userdata;
}
