/* SPDX-License-Identifier: Apache-2.0 */
/* One decoder for every Agent request: unpack with protobuf-c, then check ids,
 * paths, sizes and counts before any handler sees the message. */
#include <errno.h>
#include <string.h>

#include "agent.h"
#include "base/cleanup.h"

static int check_none(const ProtobufCMessage *m, struct us_error **err)
{
        (void)m;
        (void)err;
        return 0;
}

static int check_storage(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__AddStorageRequest *r = (const void *)m;
        if (r->n_storages == 0 || r->n_storages > AGENT_MAX_STORAGES)
                return us_error_msg(err, EINVAL, "need 1 to %d storages", AGENT_MAX_STORAGES);
        for (size_t i = 0; i < r->n_storages; i++) {
                const Unishim__Agent__V1__Storage *st = r->storages[i];
                int ret = agent_validate_tag(st->source, err);
                if (ret < 0)
                        return ret;
                if (strcmp(st->fstype, "virtiofs") != 0 && strcmp(st->fstype, "9p") != 0)
                        return us_error_msg(err, EINVAL,
                                            "storage %s: fstype must be virtiofs or 9p",
                                            st->source);
                ret = agent_validate_run_path("mount point", st->mount_point, err);
                if (ret < 0)
                        return ret;
                if (st->n_options > AGENT_MAX_OPTIONS)
                        return us_error_msg(err, EINVAL, "storage %s: more than %d options",
                                            st->source, AGENT_MAX_OPTIONS);
                for (size_t j = 0; j < st->n_options; j++) {
                        const char *o = st->options[j];
                        size_t n = strnlen(o, 257);
                        if (n == 0 || n > 256 || strchr(o, ','))
                                return us_error_msg(err, EINVAL, "storage %s: invalid option",
                                                    st->source);
                }
        }
        return 0;
}

static int check_network(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__UpdateNetworkRequest *r = (const void *)m;
        uint8_t buf[16];
        int af;
        unsigned prefix;
        if (r->n_interfaces > AGENT_MAX_INTERFACES || r->n_routes > AGENT_MAX_ROUTES)
                return us_error_msg(err, EINVAL, "too many interfaces or routes");
        for (size_t i = 0; i < r->n_interfaces; i++) {
                const Unishim__Agent__V1__Interface *itf = r->interfaces[i];
                uint8_t mac[6];
                int ret = agent_validate_ifname(itf->name, err);
                if (ret >= 0)
                        ret = agent_parse_mac(itf->mac, mac, err);
                if (ret >= 0 && itf->device_mac[0])
                        ret = agent_parse_mac(itf->device_mac, mac, err);
                if (ret < 0)
                        return ret;
                if (itf->mtu != 0 && (itf->mtu < 68 || itf->mtu > 65535))
                        return us_error_msg(err, EINVAL, "interface %s: MTU %u out of range",
                                            itf->name, itf->mtu);
                if (itf->n_addresses > AGENT_MAX_ADDRESSES)
                        return us_error_msg(err, EINVAL, "interface %s: too many addresses",
                                            itf->name);
                for (size_t j = 0; j < itf->n_addresses; j++) {
                        const Unishim__Agent__V1__IPAddress *a = itf->addresses[j];
                        ret = agent_parse_ip(a->family, a->address,
                                             a->prefix_len > 128 ? 129 : (int)a->prefix_len, buf,
                                             &af, err);
                        if (ret < 0)
                                return us_error_wrap(err, ret, "interface %s", itf->name);
                }
        }
        for (size_t i = 0; i < r->n_routes; i++) {
                const Unishim__Agent__V1__Route *rt = r->routes[i];
                int ret = agent_parse_cidr(rt->family, rt->destination, buf, &prefix, &af, err);
                if (ret < 0)
                        return ret;
                if (rt->gateway[0]) {
                        ret = agent_parse_ip(rt->family, rt->gateway, -1, buf, &af, err);
                        if (ret < 0)
                                return us_error_wrap(err, ret, "route gateway");
                }
                if (rt->device[0]) {
                        ret = agent_validate_ifname(rt->device, err);
                        if (ret < 0)
                                return us_error_wrap(err, ret, "route device");
                } else if (!rt->gateway[0])
                        return us_error_msg(err, EINVAL, "route needs a gateway or a device");
        }
        if (r->n_sysctls > AGENT_MAX_SYSCTLS)
                return us_error_msg(err, EINVAL, "too many sysctls");
        for (size_t i = 0; i < r->n_sysctls; i++) {
                int ret = agent_validate_sysctl(r->sysctls[i]->key, r->sysctls[i]->value, err);
                if (ret < 0)
                        return ret;
        }
        if (r->hostname[0])
                return agent_validate_hostname(r->hostname, err);
        return 0;
}

static int check_create(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__CreateContainerRequest *r = (const void *)m;
        int ret = agent_validate_id("container id", r->container_id, err);
        if (ret < 0)
                return ret;
        if (r->spec_json.len == 0 || r->spec_json.len > US_OCI_MAX_CONFIG_SIZE)
                return us_error_msg(err, EINVAL, "spec_json is empty or too large");
        if (r->n_local_dirs > GUEST_MAX_LOCAL_DIRS)
                return us_error_msg(err, EINVAL, "more than %d local dirs", GUEST_MAX_LOCAL_DIRS);
        for (size_t i = 0; i < r->n_local_dirs; i++) {
                ret = agent_validate_local_dir(r->local_dirs[i]->name, r->local_dirs[i]->mode, err);
                if (ret < 0)
                        return ret;
        }
        return 0;
}

static int check_container(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__ContainerRequest *r = (const void *)m;
        return agent_validate_id("container id", r->container_id, err);
}

static int check_update(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__UpdateContainerRequest *r = (const void *)m;
        int ret = agent_validate_id("container id", r->container_id, err);
        if (ret < 0)
                return ret;
        if (r->resources_json.len == 0 || r->resources_json.len > (1u << 20))
                return us_error_msg(err, EINVAL, "resources_json is empty or too large");
        return 0;
}

/* container_id + exec_id (empty = init) */
static int check_ids(const char *cid, const char *eid, struct us_error **err)
{
        int ret = agent_validate_id("container id", cid, err);
        if (ret < 0)
                return ret;
        if (eid && eid[0])
                return agent_validate_id("exec id", eid, err);
        return 0;
}

static int check_exec(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__ExecProcessRequest *r = (const void *)m;
        int ret = agent_validate_id("container id", r->container_id, err);
        if (ret >= 0)
                ret = agent_validate_id("exec id", r->exec_id, err);
        if (ret < 0)
                return ret;
        if (r->process_json.len == 0 || r->process_json.len > (1u << 20))
                return us_error_msg(err, EINVAL, "process_json is empty or too large");
        return 0;
}

static int check_signal(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__SignalProcessRequest *r = (const void *)m;
        if (r->signal == 0 || r->signal > 64)
                return us_error_msg(err, EINVAL, "signal %u out of range", r->signal);
        return check_ids(r->container_id, r->exec_id, err);
}

static int check_process(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__ProcessRequest *r = (const void *)m;
        return check_ids(r->container_id, r->exec_id, err);
}

static int check_read(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__ReadStreamRequest *r = (const void *)m;
        if (r->stream != UNISHIM__AGENT__V1__STREAM__STREAM_STDOUT &&
            r->stream != UNISHIM__AGENT__V1__STREAM__STREAM_STDERR)
                return us_error_msg(err, EINVAL, "stream must be stdout or stderr");
        return check_ids(r->container_id, r->exec_id, err);
}

static int check_write(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__WriteStdinRequest *r = (const void *)m;
        if (r->data.len > AGENT_STDIN_MAX)
                return us_error_msg(err, EINVAL, "stdin data larger than %u bytes",
                                    AGENT_STDIN_MAX);
        return check_ids(r->container_id, r->exec_id, err);
}

static int check_resize(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__ResizePtyRequest *r = (const void *)m;
        if (r->width > 65535 || r->height > 65535)
                return us_error_msg(err, EINVAL, "pty size out of range");
        return check_ids(r->container_id, r->exec_id, err);
}

static int check_restore(const ProtobufCMessage *m, struct us_error **err)
{
        const Unishim__Agent__V1__RestoreRequest *r = (const void *)m;
        if (r->entropy.len < AGENT_RESTORE_ENTROPY_MIN ||
            r->entropy.len > AGENT_RESTORE_ENTROPY_MAX)
                return us_error_msg(err, EINVAL, "entropy: %d to %d bytes",
                                    AGENT_RESTORE_ENTROPY_MIN, AGENT_RESTORE_ENTROPY_MAX);
        if (r->realtime_ns < 0)
                return us_error_msg(err, EINVAL, "realtime_ns is negative");
        return 0;
}

static const struct {
        const char *method;
        const ProtobufCMessageDescriptor *desc;
        us_ttrpc_check_fn check;
} requests[] = {
        {"Check", &unishim__agent__v1__check_request__descriptor, check_none},
        {"AddStorage", &unishim__agent__v1__add_storage_request__descriptor, check_storage},
        {"UpdateNetwork", &unishim__agent__v1__update_network_request__descriptor, check_network},
        {"CreateContainer", &unishim__agent__v1__create_container_request__descriptor,
         check_create},
        {"StartContainer", &unishim__agent__v1__container_request__descriptor, check_container},
        {"RemoveContainer", &unishim__agent__v1__container_request__descriptor, check_container},
        {"PauseContainer", &unishim__agent__v1__container_request__descriptor, check_container},
        {"ResumeContainer", &unishim__agent__v1__container_request__descriptor, check_container},
        {"UpdateContainer", &unishim__agent__v1__update_container_request__descriptor,
         check_update},
        {"StatsContainer", &unishim__agent__v1__container_request__descriptor, check_container},
        {"ListPids", &unishim__agent__v1__container_request__descriptor, check_container},
        {"ExecProcess", &unishim__agent__v1__exec_process_request__descriptor, check_exec},
        {"SignalProcess", &unishim__agent__v1__signal_process_request__descriptor, check_signal},
        {"WaitProcess", &unishim__agent__v1__process_request__descriptor, check_process},
        {"ReadStream", &unishim__agent__v1__read_stream_request__descriptor, check_read},
        {"WriteStdin", &unishim__agent__v1__write_stdin_request__descriptor, check_write},
        {"CloseStdin", &unishim__agent__v1__process_request__descriptor, check_process},
        {"ResizePty", &unishim__agent__v1__resize_pty_request__descriptor, check_resize},
        {"GetOOMEvent", &unishim__agent__v1__empty__descriptor, check_none},
        {"Shutdown", &unishim__agent__v1__empty__descriptor, check_none},
        {"Restore", &unishim__agent__v1__restore_request__descriptor, check_restore},
};

int agent_request_find(const char *method, const ProtobufCMessageDescriptor **ret_desc,
                       us_ttrpc_check_fn *ret_check)
{
        for (size_t i = 0; i < US_ELEMENTSOF(requests); i++)
                if (strcmp(requests[i].method, method) == 0) {
                        *ret_desc = requests[i].desc;
                        *ret_check = requests[i].check;
                        return 0;
                }
        return -ENOSYS;
}

int agent_request_decode(const char *method, const uint8_t *payload, size_t len,
                         ProtobufCMessage **ret, struct us_error **err)
{
        const ProtobufCMessageDescriptor *desc;
        us_ttrpc_check_fn check;
        if (agent_request_find(method, &desc, &check) < 0)
                return us_error_msg(err, ENOSYS, "unknown method %s", method);
        return us_ttrpc_request_unpack(method, desc, check, payload, len, ret, err);
}

void *agent_call_decode(struct us_ttrpc_call *call, const uint8_t *payload, size_t len)
{
        const char *method = us_ttrpc_call_method(call);
        const ProtobufCMessageDescriptor *desc;
        us_ttrpc_check_fn check;
        if (agent_request_find(method, &desc, &check) < 0) {
                us_ttrpc_call_fail(call, US_GRPC_INVALID_ARGUMENT, "unknown method %s", method);
                return NULL;
        }
        return us_ttrpc_call_unpack(call, desc, check, payload, len);
}

int agent_request_check(const char *method, const uint8_t *payload, size_t len,
                        struct us_error **err)
{
        ProtobufCMessage *m = NULL;
        int r = agent_request_decode(method, payload, len, &m, err);
        if (r < 0)
                return r;
        protobuf_c_message_free_unpacked(m, NULL);
        return 0;
}
