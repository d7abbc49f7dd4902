/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The channel to the guest agent (agent.h): the ports, calls the shim does
 * not wait for, and the agent's death.
 */
#include "agent.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/cleanup.h"
#include "base/log.h"
#include "vmm/qemu.h"

#define AGENT_BOOT_MS 60000 /* TCG on a loaded 2-core host is slow */

static void events_closed(void *userdata, int reason)
{
        struct sandbox_agent *a = userdata;
        /* The guest closed its side or broke the protocol: without the
         * channel nothing of the pod can be observed or done any more. */
        a->dead = true;
        a->lost(a->userdata, reason == -EPROTO ? "the guest agent broke the protocol"
                                               : "the guest agent closed its channel");
}

int sandbox_agent_open(struct sandbox_agent *a, struct us_loop *loop, struct vmm_vm *vm,
                       struct us_error **err)
{
        int agent_fd = -1, events_fd = -1;
        int r = vmm_vm_agent_connect(vm, &agent_fd, err);
        if (r >= 0)
                r = vmm_vm_port_connect(vm, VMM_PORT_EVENTS, &events_fd, err);
        if (r < 0) {
                (void)us_close(agent_fd);
                return r;
        }
        return sandbox_agent_attach(a, loop, agent_fd, events_fd, err);
}

int sandbox_agent_attach(struct sandbox_agent *a, struct us_loop *loop, int agent_fd, int events_fd,
                         struct us_error **err)
{
        int r = us_ttrpc_client_from_fd(agent_fd, &a->agent, err);
        if (r < 0) {
                (void)us_close(events_fd);
                return r;
        }
        r = us_ttrpc_aclient_new(loop, events_fd, &a->events, err);
        if (r < 0)
                return r;
        us_ttrpc_aclient_on_close(a->events, events_closed, a);
        a->booting = true;
        return 0;
}

void sandbox_agent_close(struct sandbox_agent *a)
{
        a->events = us_ttrpc_aclient_free(a->events);
        a->agent = us_ttrpc_client_free(a->agent);
}

static void unlink_call(struct sandbox_acall *c)
{
        for (struct sandbox_acall **pp = &c->agent->acalls; *pp; pp = &(*pp)->next) {
                if (*pp == c) {
                        *pp = c->next;
                        return;
                }
        }
}

static void acall_reply(int status, const uint8_t *payload, size_t len, const struct us_error *cerr,
                        void *userdata)
{
        struct sandbox_acall *c = userdata;
        struct sandbox_agent *a = c->agent;
        unlink_call(c);
        ProtobufCMessage *resp = NULL;
        struct us_error *err = NULL;
        if (status == 0 && c->resp_desc) {
                resp = protobuf_c_message_unpack(c->resp_desc, NULL, len, payload);
                if (!resp)
                        status = us_error_msg(&err, EBADMSG, "guest agent %s: malformed reply",
                                              c->method);
        } else if (status == -ECANCELED) {
                us_error_msg(&err, ECANCELED, "guest agent %s: cancelled: the task or the pod went",
                             c->method);
        } else if (status < 0) {
                us_error_msg(&err, -status, "guest agent %s: %s", c->method, us_error_text(cerr));
        }
        if (status == -ETIMEDOUT && !a->dead) {
                /* The pod is told once; it goes from the loop, after this
                 * call's fn has run. */
                a->dead = true;
                char why[160];
                snprintf(why, sizeof(why), "the guest agent did not answer %s within %u ms%s",
                         c->method, c->timeout_ms,
                         c->timeout_ms == a->timeout_ms ? " (sandbox.agent_timeout_ms)" : "");
                a->lost(a->userdata, why);
        }
        c->fn(c, status, resp, &err);
        us_error_free(err);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        free(c);
}

int sandbox_agent_acall(struct sandbox_agent *a, void *owner, const char *method,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                        sandbox_acall_fn fn, struct shim_op *op, struct sandbox_acall **ret,
                        struct us_error **err)
{
        return sandbox_agent_acall_within(a, owner, method, req, resp_desc, fn, op, ret, 0, err);
}

int sandbox_agent_acall_within(struct sandbox_agent *a, void *owner, const char *method,
                               const ProtobufCMessage *req,
                               const ProtobufCMessageDescriptor *resp_desc, sandbox_acall_fn fn,
                               struct shim_op *op, struct sandbox_acall **ret, unsigned cap_ms,
                               struct us_error **err)
{
        if (!a->events || a->stopped || a->dead)
                return us_error_msg(err, ENOTCONN, "guest agent of pod %s is gone", a->pod_id);
        struct sandbox_acall *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "guest agent %s", method);
        c->agent = a;
        c->owner = owner;
        c->method = method;
        c->resp_desc = resp_desc;
        c->fn = fn;
        c->op = op;
        /* A booting guest (TCG on a loaded host) may take longer than
         * a running one is given, unless the caller capped the call. */
        unsigned ms = a->timeout_ms;
        if (cap_ms > 0) {
                if (ms > cap_ms)
                        ms = cap_ms;
        } else if (a->booting && ms < AGENT_BOOT_MS) {
                ms = AGENT_BOOT_MS;
        }
        c->timeout_ms = ms;
        int r = us_ttrpc_aclient_call(a->events, AGENT_SERVICE, method, req, NULL, 0, (int)ms,
                                      acall_reply, c, &c->id, err);
        if (r < 0) {
                free(c);
                return us_error_wrap(err, r, "guest agent %s", method);
        }
        c->next = a->acalls;
        a->acalls = c;
        if (ret)
                *ret = c;
        return -EINPROGRESS;
}

void sandbox_agent_cancel_owner(struct sandbox_agent *a, void *owner)
{
        /* Each cancel runs its callback, which unlinks it: start over. */
        for (struct sandbox_acall *c = a->acalls; c;) {
                if (c->owner != owner) {
                        c = c->next;
                        continue;
                }
                c->owner = NULL; /* its callback must not touch the owner any more */
                us_ttrpc_aclient_cancel(a->events, c->id);
                c = a->acalls;
        }
}

void sandbox_acall_finish(struct sandbox_acall *c, int r, struct us_error **err)
{
        if (c->op) {
                c->op->done(c->op, r, r < 0 ? TAKE_PTR(*err) : NULL);
                return;
        }
        if (r < 0 && r != -ECANCELED)
                us_log_warn("pod %s: %s", c->agent->pod_id, us_error_text(*err));
}

void sandbox_acall_plain(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                         struct us_error **err)
{
        (void)resp;
        sandbox_acall_finish(c, r, err);
}

int sandbox_agent_poll(struct sandbox_agent *a, const char *method, const ProtobufCMessage *req,
                       unsigned timeout_ms, us_ttrpc_reply_fn fn, void *userdata, uint64_t *ret_id)
{
        if (!a->events)
                return -ENOTCONN;
        return us_ttrpc_aclient_call(a->events, AGENT_SERVICE, method, req, NULL, 0,
                                     (int)timeout_ms, fn, userdata, ret_id, NULL);
}

void sandbox_agent_cancel(struct sandbox_agent *a, uint64_t id)
{
        if (a->events)
                us_ttrpc_aclient_cancel(a->events, id);
}
