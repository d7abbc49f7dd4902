/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Calls to the guest agent that the shim does not wait for: sent on the
 * "unishim.events" port's asynchronous client with the operator's deadline
 * (sandbox.agent_timeout_ms), answered from the loop. A guest that takes a
 * call and never answers costs its own pod that deadline, never the shim's
 * loop: when it passes, the pod's agent is declared dead and the pod goes
 * (sandbox_pod_agent_dead).
 */
#include <errno.h>
#include <stdlib.h>

#include "cleanup.h"
#include "log.h"
#include "sandbox/sandbox.h"

static void unlink_call(struct sandbox_acall *c)
{
        for (struct sandbox_acall **pp = &c->pod->acalls; *pp; pp = &(*pp)->next) {
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
        struct sandbox_pod *pod = c->pod;
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
        if (status == -ETIMEDOUT)
                sandbox_pod_agent_dead(pod, c->method);
        c->fn(c, status, resp, &err);
        us_error_free(err);
        if (resp)
                protobuf_c_message_free_unpacked(resp, NULL);
        free(c);
}

int sandbox_agent_acall(struct sandbox_pod *pod, struct sandbox_task *task, const char *method,
                        const ProtobufCMessage *req, const ProtobufCMessageDescriptor *resp_desc,
                        sandbox_acall_fn fn, struct shim_op *op, struct sandbox_acall **ret,
                        struct us_error **err)
{
        if (!pod->events || pod->dead || pod->agent_dead)
                return us_error_msg(err, ENOTCONN, "guest agent of pod %s is gone", pod->vmpod.id);
        struct sandbox_acall *c = calloc(1, sizeof(*c));
        if (!c)
                return us_errorf(err, ENOMEM, "guest agent %s", method);
        c->pod = pod;
        c->task = task;
        c->method = method;
        c->resp_desc = resp_desc;
        c->fn = fn;
        c->op = op;
        /* A booting guest (TCG on a loaded host) may take longer than
         * a running one is given. */
        unsigned ms = pod->agent_timeout_ms;
        if (pod->booting && ms < AGENT_BOOT_MS)
                ms = AGENT_BOOT_MS;
        int r = us_ttrpc_aclient_call(pod->events, AGENT_SERVICE, method, req, NULL, 0, (int)ms,
                                      acall_reply, c, &c->id, err);
        if (r < 0) {
                free(c);
                return us_error_wrap(err, r, "guest agent %s", method);
        }
        c->next = pod->acalls;
        pod->acalls = c;
        if (ret)
                *ret = c;
        return -EINPROGRESS;
}

void sandbox_agent_cancel_task(struct sandbox_pod *pod, struct sandbox_task *task)
{
        /* Each cancel runs its callback, which unlinks it: start over. */
        for (struct sandbox_acall *c = pod->acalls; c;) {
                if (c->task != task) {
                        c = c->next;
                        continue;
                }
                c->task = NULL; /* its callback must not touch the task any more */
                us_ttrpc_aclient_cancel(pod->events, c->id);
                c = pod->acalls;
        }
}

void sandbox_acall_finish(struct sandbox_acall *c, int r, struct us_error **err)
{
        if (c->op) {
                c->op->done(c->op, r, r < 0 ? TAKE_PTR(*err) : NULL);
                return;
        }
        if (r < 0 && r != -ECANCELED)
                us_log_warn("pod %s: %s", c->pod->vmpod.id, us_error_text(*err));
}

void sandbox_acall_plain(struct sandbox_acall *c, int r, ProtobufCMessage *resp,
                         struct us_error **err)
{
        (void)resp;
        sandbox_acall_finish(c, r, err);
}
