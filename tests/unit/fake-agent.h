/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A fake guest agent for the host side of a sandbox pod: libunishim's ttrpc
 * server on the test's loop, serving unishim.agent.v1.Agent
 * (proto/agent/agent.proto) on one end of a socketpair whose other end the
 * shim's channel (shim/sandbox/agent.h, sandbox_agent_attach) takes. No
 * QEMU, no guest: each method answers as the test tells it to, the way a
 * hostile guest could -- at once, late or never, with an error, with
 * bytes that are no message, or by writing raw frames and closing the
 * connection through `raw`, a dup of the server's end.
 *
 * Header-only (tests/CMakeLists.txt builds each tests/unit/test-*.c alone).
 * Everything runs on the loop's thread. Include unit.h (cmocka) first.
 */
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "agent/agent-contract.h"
#include "agent/agent.pb-c.h"
#include "shim/backend.h"
#include "ttrpc/ttrpc.h"

#define FAKE_MAX_CALLS 256
#define FAKE_MAX_RULES 32

/* A Task API op as the shim's service gives one to the backend
 * (backend.h): what it was finished with, and its result slots. */
struct fake_op {
        struct shim_op op;
        int n; /* times done: must end at exactly 1 */
        int r;
        char msg[512];
        void *impl;
        int pty;
        pid_t pid;
        uint8_t *data;
        size_t len;
        pid_t *pids;
};

static inline void fake_op_done(struct shim_op *op, int r, struct us_error *err)
{
        struct fake_op *t = (struct fake_op *)op;
        t->n++;
        t->r = r;
        snprintf(t->msg, sizeof(t->msg), "%s", err ? us_error_text(err) : "");
        us_error_free(err);
}

static inline void fake_op_init(struct fake_op *op)
{
        *op = (struct fake_op){.op.done = fake_op_done, .pty = -2};
}

/* How the fake answers a method. */
enum fake_mode {
        FAKE_ANSWER,  /* the method's normal answer (fake_answer) */
        FAKE_HOLD,    /* not now: held until fake_release() (or never) */
        FAKE_FAIL,    /* an error status: rule code and "the fake agent refuses" */
        FAKE_GARBAGE, /* status OK with bytes that are no protobuf message */
};

struct fake_rule {
        const char *method;
        enum fake_mode mode;
        enum us_grpc_code code; /* FAKE_FAIL's */
};

/* One request as it arrived. */
struct fake_call {
        char method[32];
        char container_id[96];
        char exec_id[96];
        size_t len;                 /* payload bytes */
        size_t data_len;            /* WriteStdin: the bytes to write */
        char storage[256];          /* AddStorage: "fstype source mount_point opt,opt" */
        char device_mac[32];        /* UpdateNetwork: its interface's device_mac */
        size_t entropy_len;         /* Restore: the host's bytes */
        int64_t realtime_ns;        /* Restore: the host's clock */
        struct us_ttrpc_call *held; /* FAKE_HOLD: not answered yet */
};

struct fake_agent {
        struct us_loop *loop;
        struct us_ttrpc_server *srv;
        int shim_agent_fd;  /* the shim's ends, for sandbox_agent_attach() */
        int shim_events_fd; /* (-1 once handed over) */
        int agent_peer;     /* the "unishim.agent" port's guest end: open, silent */
        int raw;            /* a dup of the server's "unishim.events" end */
        struct fake_rule rules[FAKE_MAX_RULES];
        size_t n_rules;
        struct fake_call calls[FAKE_MAX_CALLS];
        size_t n_calls;
        /* What the normal answers carry. */
        uint32_t exit_status;     /* WaitProcess */
        uint32_t pid;             /* CreateContainer, ExecProcess */
        const char *oom_id;       /* GetOOMEvent answers this once, then holds */
        const uint8_t *read_data; /* ReadStream answers this once, then eof */
        size_t read_len;
        const uint8_t *metrics; /* StatsContainer */
        size_t metrics_len;
        size_t n_pids;      /* ListPids: 1, 2, ... n_pids */
        long stdin_taken;   /* WriteStdin: bytes it says it took; < 0: all */
        size_t stdin_bytes; /* WriteStdin: bytes it took, in all */
};

/* The method's rule (FAKE_ANSWER unless set; GetOOMEvent holds, as a guest
 * without OOM kills does). */
static inline struct fake_rule *fake_rule_of(struct fake_agent *f, const char *method)
{
        for (size_t i = 0; i < f->n_rules; i++)
                if (strcmp(f->rules[i].method, method) == 0)
                        return &f->rules[i];
        return NULL;
}

static inline void fake_set(struct fake_agent *f, const char *method, enum fake_mode mode,
                            enum us_grpc_code code)
{
        struct fake_rule *r = fake_rule_of(f, method);
        if (!r) {
                assert_true(f->n_rules < FAKE_MAX_RULES);
                r = &f->rules[f->n_rules++];
        }
        *r = (struct fake_rule){.method = method, .mode = mode, .code = code};
}

/* Replies OK with a payload no agent message decodes from: field 1 as a
 * varint that never ends. */
static inline void fake_reply_garbage(struct us_ttrpc_call *call)
{
        static uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
        ProtobufCMessageUnknownField u = {.tag = 1,
                                          .wire_type = PROTOBUF_C_WIRE_TYPE_VARINT,
                                          .len = sizeof(junk),
                                          .data = junk};
        Unishim__Agent__V1__Empty m = UNISHIM__AGENT__V1__EMPTY__INIT;
        m.base.n_unknown_fields = 1;
        m.base.unknown_fields = &u;
        us_ttrpc_call_reply(call, &m.base);
}

/* The method's normal answer. */
static inline void fake_answer(struct fake_agent *f, struct us_ttrpc_call *call,
                               const struct fake_call *c)
{
        const char *method = c->method;
        if (strcmp(method, "WaitProcess") == 0) {
                Unishim__Agent__V1__WaitProcessResponse r =
                        UNISHIM__AGENT__V1__WAIT_PROCESS_RESPONSE__INIT;
                r.exit_status = f->exit_status;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "CreateContainer") == 0) {
                Unishim__Agent__V1__CreateContainerResponse r =
                        UNISHIM__AGENT__V1__CREATE_CONTAINER_RESPONSE__INIT;
                r.pid = f->pid;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "ExecProcess") == 0) {
                Unishim__Agent__V1__ExecProcessResponse r =
                        UNISHIM__AGENT__V1__EXEC_PROCESS_RESPONSE__INIT;
                r.pid = f->pid;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "ReadStream") == 0) {
                Unishim__Agent__V1__ReadStreamResponse r =
                        UNISHIM__AGENT__V1__READ_STREAM_RESPONSE__INIT;
                r.data.data = (uint8_t *)f->read_data;
                r.data.len = f->read_len;
                r.eof = !f->read_data;
                f->read_data = NULL;
                f->read_len = 0;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "WriteStdin") == 0) {
                Unishim__Agent__V1__WriteStdinResponse r =
                        UNISHIM__AGENT__V1__WRITE_STDIN_RESPONSE__INIT;
                r.len = f->stdin_taken < 0 ? (uint32_t)c->data_len : (uint32_t)f->stdin_taken;
                f->stdin_bytes += r.len;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "StatsContainer") == 0) {
                Unishim__Agent__V1__StatsContainerResponse r =
                        UNISHIM__AGENT__V1__STATS_CONTAINER_RESPONSE__INIT;
                r.metrics.data = (uint8_t *)f->metrics;
                r.metrics.len = f->metrics_len;
                us_ttrpc_call_reply(call, &r.base);
        } else if (strcmp(method, "ListPids") == 0) {
                Unishim__Agent__V1__ListPidsResponse r =
                        UNISHIM__AGENT__V1__LIST_PIDS_RESPONSE__INIT;
                uint32_t *pids = calloc(f->n_pids + 1, sizeof(*pids));
                assert_non_null(pids);
                for (size_t i = 0; i < f->n_pids; i++)
                        pids[i] = (uint32_t)i + 1;
                r.n_pids = f->n_pids;
                r.pids = pids;
                us_ttrpc_call_reply(call, &r.base);
                free(pids);
        } else if (strcmp(method, "GetOOMEvent") == 0 && f->oom_id) {
                Unishim__Agent__V1__OOMEvent r = UNISHIM__AGENT__V1__OOMEVENT__INIT;
                r.container_id = (char *)f->oom_id;
                f->oom_id = NULL;
                us_ttrpc_call_reply(call, &r.base);
        } else {
                us_ttrpc_call_reply(call, NULL); /* Empty, and the empty answers */
        }
}

static inline void fake_respond(struct fake_agent *f, struct fake_call *c, enum fake_mode mode,
                                enum us_grpc_code code)
{
        struct us_ttrpc_call *call = c->held;
        c->held = NULL;
        switch (mode) {
        case FAKE_HOLD:
                c->held = call;
                return;
        case FAKE_FAIL:
                us_ttrpc_call_fail(call, code, "the fake agent refuses %s", c->method);
                return;
        case FAKE_GARBAGE:
                fake_reply_garbage(call);
                return;
        case FAKE_ANSWER:
                fake_answer(f, call, c);
                return;
        }
}

static inline void fake_method(struct us_ttrpc_call *call, const uint8_t *payload, size_t len,
                               void *ud)
{
        struct fake_agent *f = ud;
        const char *method = us_ttrpc_call_method(call);
        assert_true(f->n_calls < FAKE_MAX_CALLS);
        struct fake_call *c = &f->calls[f->n_calls++];
        memset(c, 0, sizeof(*c));
        snprintf(c->method, sizeof(c->method), "%s", method);
        c->len = len;
        /* Most requests start with container_id and exec_id (fields 1, 2). */
        Unishim__Agent__V1__ProcessRequest *pr =
                unishim__agent__v1__process_request__unpack(NULL, len, payload);
        if (pr) {
                snprintf(c->container_id, sizeof(c->container_id), "%s", pr->container_id);
                snprintf(c->exec_id, sizeof(c->exec_id), "%s", pr->exec_id);
                unishim__agent__v1__process_request__free_unpacked(pr, NULL);
        }
        if (strcmp(method, "WriteStdin") == 0) {
                Unishim__Agent__V1__WriteStdinRequest *w =
                        unishim__agent__v1__write_stdin_request__unpack(NULL, len, payload);
                if (w) {
                        c->data_len = w->data.len;
                        unishim__agent__v1__write_stdin_request__free_unpacked(w, NULL);
                }
        }
        if (strcmp(method, "AddStorage") == 0) {
                Unishim__Agent__V1__AddStorageRequest *a =
                        unishim__agent__v1__add_storage_request__unpack(NULL, len, payload);
                for (size_t i = 0; a && i < a->n_storages && i < 1; i++) {
                        const Unishim__Agent__V1__Storage *st = a->storages[i];
                        size_t n = (size_t)snprintf(c->storage, sizeof(c->storage), "%s %s %s ",
                                                    st->fstype, st->source, st->mount_point);
                        for (size_t j = 0; j < st->n_options && n < sizeof(c->storage); j++)
                                n += (size_t)snprintf(c->storage + n, sizeof(c->storage) - n,
                                                      "%s%s", j ? "," : "", st->options[j]);
                }
                if (a)
                        unishim__agent__v1__add_storage_request__free_unpacked(a, NULL);
        }
        if (strcmp(method, "UpdateNetwork") == 0) {
                Unishim__Agent__V1__UpdateNetworkRequest *u =
                        unishim__agent__v1__update_network_request__unpack(NULL, len, payload);
                if (u && u->n_interfaces > 0 && u->interfaces[0]->device_mac)
                        snprintf(c->device_mac, sizeof(c->device_mac), "%s",
                                 u->interfaces[0]->device_mac);
                if (u)
                        unishim__agent__v1__update_network_request__free_unpacked(u, NULL);
        }
        if (strcmp(method, "Restore") == 0) {
                Unishim__Agent__V1__RestoreRequest *rq =
                        unishim__agent__v1__restore_request__unpack(NULL, len, payload);
                if (rq) {
                        c->entropy_len = rq->entropy.len;
                        c->realtime_ns = rq->realtime_ns;
                        unishim__agent__v1__restore_request__free_unpacked(rq, NULL);
                }
        }
        c->held = call;
        const struct fake_rule *r = fake_rule_of(f, method);
        enum fake_mode mode = r ? r->mode : FAKE_ANSWER;
        if (!r && strcmp(method, "GetOOMEvent") == 0 && !f->oom_id)
                mode = FAKE_HOLD;
        fake_respond(f, c, mode, r ? r->code : US_GRPC_OK);
}

/* The n-th call of method (0: the first), or NULL. */
static inline struct fake_call *fake_call_of(struct fake_agent *f, const char *method, size_t n)
{
        for (size_t i = 0; i < f->n_calls; i++)
                if (strcmp(f->calls[i].method, method) == 0 && n-- == 0)
                        return &f->calls[i];
        return NULL;
}

static inline size_t fake_count(struct fake_agent *f, const char *method)
{
        size_t n = 0;
        for (size_t i = 0; i < f->n_calls; i++)
                n += strcmp(f->calls[i].method, method) == 0;
        return n;
}

/* The oldest held call of method, or NULL. */
static inline struct fake_call *fake_held(struct fake_agent *f, const char *method)
{
        for (size_t i = 0; i < f->n_calls; i++)
                if (f->calls[i].held && strcmp(f->calls[i].method, method) == 0)
                        return &f->calls[i];
        return NULL;
}

/* Answers the oldest held call of method as mode says; false if none. */
static inline bool fake_release(struct fake_agent *f, const char *method, enum fake_mode mode,
                                enum us_grpc_code code)
{
        struct fake_call *c = fake_held(f, method);
        if (!c)
                return false;
        fake_respond(f, c, mode, code);
        return true;
}

static const char *const fake_methods[] = {
        "Check",           "AddStorage",     "UpdateNetwork",   "CreateContainer", "StartContainer",
        "RemoveContainer", "PauseContainer", "ResumeContainer", "UpdateContainer", "StatsContainer",
        "ListPids",        "ExecProcess",    "SignalProcess",   "WaitProcess",     "ReadStream",
        "WriteStdin",      "CloseStdin",     "ResizePty",       "GetOOMEvent",     "Shutdown",
        "Restore",
};

/* A fake agent on loop; its shim ends wait in shim_agent_fd and
 * shim_events_fd. */
static inline struct fake_agent *fake_agent_new(struct us_loop *loop)
{
        struct fake_agent *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        f->loop = loop;
        f->stdin_taken = -1;
        int calls[2], events[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, calls), 0);
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, events), 0);
        f->shim_agent_fd = calls[0];
        f->agent_peer = calls[1];
        f->shim_events_fd = events[0];
        f->raw = fcntl(events[1], F_DUPFD_CLOEXEC, 3);
        assert_true(f->raw >= 0);
        assert_int_equal(us_ttrpc_server_new(loop, -1, &f->srv, NULL), 0);
        for (size_t i = 0; i < sizeof(fake_methods) / sizeof(fake_methods[0]); i++)
                assert_int_equal(us_ttrpc_server_register(f->srv, AGENT_SERVICE, fake_methods[i],
                                                          fake_method, f, NULL),
                                 0);
        assert_int_equal(us_ttrpc_server_add_connection(f->srv, events[1], NULL), 0);
        return f;
}

/* Runs loop until done(arg) (0) or, as a hang guard, unit_wait_ms(10000)
 * passed (-ETIMEDOUT). */
struct fake_wait {
        struct us_loop *loop;
        bool (*done)(void *arg);
        void *arg;
        struct timespec deadline;
};

static inline void fake_wait_tick(struct us_loop_source *src, void *ud)
{
        (void)src;
        struct fake_wait *w = ud;
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (w->done(w->arg))
                us_loop_quit(w->loop, 0);
        else if (now.tv_sec > w->deadline.tv_sec ||
                 (now.tv_sec == w->deadline.tv_sec && now.tv_nsec >= w->deadline.tv_nsec))
                us_loop_quit(w->loop, -ETIMEDOUT);
        else
                assert_int_equal(us_loop_add_timer(w->loop, 1, fake_wait_tick, w, NULL, NULL), 0);
}

static inline int fake_run_until(struct us_loop *loop, bool (*done)(void *arg), void *arg)
{
        if (done(arg))
                return 0;
        struct fake_wait w = {.loop = loop, .done = done, .arg = arg};
        clock_gettime(CLOCK_MONOTONIC, &w.deadline);
        w.deadline.tv_sec += unit_wait_ms(10000) / 1000;
        assert_int_equal(us_loop_add_timer(loop, 0, fake_wait_tick, &w, NULL, NULL), 0);
        return us_loop_run(loop);
}

/* The guest closes its end (both ports): every call in flight is cut. */
static inline void fake_agent_hang_up(struct fake_agent *f)
{
        (void)shutdown(f->raw, SHUT_RDWR);
        (void)shutdown(f->agent_peer, SHUT_RDWR);
}

static inline void fake_agent_free(struct fake_agent *f)
{
        if (!f)
                return;
        /* Held calls outlive their connection: complete them (silently). */
        for (size_t i = 0; i < f->n_calls; i++)
                if (f->calls[i].held)
                        us_ttrpc_call_fail(f->calls[i].held, US_GRPC_CANCELLED, "test over");
        f->srv = us_ttrpc_server_free(f->srv);
        if (f->shim_agent_fd >= 0)
                close(f->shim_agent_fd);
        if (f->shim_events_fd >= 0)
                close(f->shim_events_fd);
        close(f->agent_peer);
        close(f->raw);
        free(f);
}
