/* SPDX-License-Identifier: Apache-2.0 */
/* The shim's event publisher against a fake containerd events service: it
 * never blocks, keeps events while containerd is away and delivers them in
 * order once it is back, and bounds what it keeps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "containerd/events-service.pb-c.h"
#include "containerd/events.pb-c.h"
#include "shim/events.h"
#include "base/loop.h"
#include "ttrpc/ttrpc.h"

#define MAX_SEEN 64

struct fake {
        struct us_loop *loop;
        char dir[32], path[96];
        struct us_ttrpc_server *srv;
        bool mute; /* take calls, never answer */
        struct us_ttrpc_call *held[8];
        size_t n_held;
        char seen[MAX_SEEN][32];
        size_t n_seen;
        size_t quit_at; /* quit the loop when this many were seen */
        struct us_loop_source *guard;
        bool guard_fired;
};

static void forward(struct us_ttrpc_call *call, const uint8_t *payload, size_t len, void *userdata)
{
        struct fake *f = userdata;
        Containerd__Services__Events__Ttrpc__V1__ForwardRequest *req =
                containerd__services__events__ttrpc__v1__forward_request__unpack(NULL, len,
                                                                                 payload);
        assert_non_null(req);
        assert_non_null(req->envelope);
        assert_string_equal(req->envelope->namespace_, "ns1");
        assert_string_equal(req->envelope->event->type_url, "containerd.events.TaskExit");
        if (f->n_seen < MAX_SEEN)
                snprintf(f->seen[f->n_seen++], sizeof(f->seen[0]), "%s", req->envelope->topic);
        containerd__services__events__ttrpc__v1__forward_request__free_unpacked(req, NULL);
        if (f->mute && f->n_held < US_ELEMENTSOF(f->held))
                f->held[f->n_held++] = call;
        else
                us_ttrpc_call_reply(call, NULL);
        if (f->quit_at && f->n_seen >= f->quit_at)
                us_loop_quit(f->loop, 0);
}

static void serve(struct fake *f)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
        assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(fd, 16), 0);
        assert_int_equal(us_ttrpc_server_new(f->loop, fd, &f->srv, NULL), 0);
        assert_int_equal(us_ttrpc_server_register(f->srv,
                                                  "containerd.services.events.ttrpc.v1.Events",
                                                  "Forward", forward, f, NULL),
                         0);
}

static void guard_fired(struct us_loop_source *src, void *userdata)
{
        (void)src;
        struct fake *f = userdata;
        f->guard = NULL;
        f->guard_fired = true;
        us_loop_quit(f->loop, 0);
}

/* Runs the loop until n events were seen (or the hang guard fires). */
static void run_until_seen(struct fake *f, size_t n)
{
        f->quit_at = n;
        if (f->n_seen >= n)
                return;
        assert_int_equal(us_loop_add_timer(f->loop, (uint64_t)unit_wait_ms(60000), guard_fired, f,
                                           &f->guard, NULL),
                         0);
        (void)us_loop_run(f->loop);
        us_loop_source_remove(f->guard);
        f->guard = NULL;
        assert_false(f->guard_fired);
}

static int setup(void **state)
{
        struct fake *f = calloc(1, sizeof(*f));
        snprintf(f->dir, sizeof(f->dir), "/tmp/test-events.XXXXXX");
        if (!mkdtemp(f->dir))
                return -1;
        snprintf(f->path, sizeof(f->path), "%s/containerd.sock.ttrpc", f->dir);
        if (us_loop_new(&f->loop, NULL) < 0)
                return -1;
        *state = f;
        return 0;
}

static int teardown(void **state)
{
        struct fake *f = *state;
        for (size_t i = 0; i < f->n_held; i++)
                us_ttrpc_call_fail(f->held[i], US_GRPC_UNAVAILABLE, "test over");
        f->srv = us_ttrpc_server_free(f->srv);
        us_loop_free(f->loop);
        unlink(f->path);
        rmdir(f->dir);
        free(f);
        return 0;
}

static void publish(struct shim_events *ev, const char *topic)
{
        Containerd__Events__TaskExit e = CONTAINERD__EVENTS__TASK_EXIT__INIT;
        e.container_id = (char *)"c1";
        assert_int_equal(shim_events_publish(ev, topic, &e.base, NULL), 0);
}

/* containerd not there yet: publishing returns at once, the events wait,
 * and go out in order once it listens. */
static void delivers_in_order_once_containerd_is_back(void **state)
{
        struct fake *f = *state;
        struct shim_events *ev = NULL;
        assert_int_equal(shim_events_new(f->loop, f->path, "ns1", 0, &ev, NULL), 0);
        char topic[32];
        for (int i = 1; i <= 5; i++) {
                snprintf(topic, sizeof(topic), "/tasks/%d", i);
                publish(ev, topic);
        }
        assert_int_equal(shim_events_queued(ev), 5);
        serve(f);
        run_until_seen(f, 5);
        for (int i = 1; i <= 5; i++) {
                snprintf(topic, sizeof(topic), "/tasks/%d", i);
                assert_string_equal(f->seen[i - 1], topic);
        }
        run_until_seen(f, 5);
        shim_events_free(ev);
}

/* A containerd that takes the call and never answers (paused): the event
 * is sent again on a new connection once it answers, and the next one only
 * after it. */
static void resends_what_was_not_answered(void **state)
{
        struct fake *f = *state;
        serve(f);
        f->mute = true;
        struct shim_events *ev = NULL;
        assert_int_equal(shim_events_new(f->loop, f->path, "ns1", 0, &ev, NULL), 0);
        publish(ev, "/tasks/a");
        publish(ev, "/tasks/b");
        run_until_seen(f, 1);
        assert_string_equal(f->seen[0], "/tasks/a");
        assert_int_equal(shim_events_queued(ev), 2);
        f->mute = false;
        /* After the publisher's deadline: /tasks/a again, then /tasks/b. */
        run_until_seen(f, 3);
        assert_string_equal(f->seen[1], "/tasks/a");
        assert_string_equal(f->seen[2], "/tasks/b");
        shim_events_free(ev);
}

/* containerd gone for long: the oldest events go, memory stays bounded. */
static void bounds_the_queue(void **state)
{
        struct fake *f = *state;
        struct shim_events *ev = NULL;
        assert_int_equal(shim_events_new(f->loop, f->path, "ns1", 3, &ev, NULL), 0);
        publish(ev, "/tasks/1");
        publish(ev, "/tasks/2");
        publish(ev, "/tasks/3");
        publish(ev, "/tasks/4");
        publish(ev, "/tasks/5");
        assert_int_equal(shim_events_queued(ev), 3);
        serve(f);
        run_until_seen(f, 3);
        assert_string_equal(f->seen[0], "/tasks/3");
        assert_string_equal(f->seen[1], "/tasks/4");
        assert_string_equal(f->seen[2], "/tasks/5");
        shim_events_free(ev);
}

/* No address (no containerd to tell): events are dropped, quietly. */
static void no_address_drops(void **state)
{
        struct fake *f = *state;
        struct shim_events *ev = NULL;
        assert_int_equal(shim_events_new(f->loop, NULL, "ns1", 0, &ev, NULL), 0);
        publish(ev, "/tasks/1");
        assert_int_equal(shim_events_queued(ev), 0);
        shim_events_free(ev);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(delivers_in_order_once_containerd_is_back, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(resends_what_was_not_answered, setup, teardown),
                cmocka_unit_test_setup_teardown(bounds_the_queue, setup, teardown),
                cmocka_unit_test_setup_teardown(no_address_drops, setup, teardown),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
