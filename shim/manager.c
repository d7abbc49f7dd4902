/* SPDX-License-Identifier: Apache-2.0 */
#include "manager.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"
#include "base/cleanup.h"
#include "events.h"
#include "containerd/shim.pb-c.h"
#include "engine/engine.h"
#include "oci/oci-spec.h"
#include "rootfs.h"
#include "base/sha256.h"

/* Annotations that put a container into an existing shim: the CRI plugin's
 * sandbox id, so one shim serves all containers of a pod. */
static const char *const group_annotations[] = {
        "io.kubernetes.cri.sandbox-id",
};

int shim_socket_path(const char *address, const char *namespace, const char *group, char *buf,
                     size_t size, struct us_error **err)
{
        _cleanup_free_ char *key = NULL;
        if (asprintf(&key, "%s/%s/%s", address, namespace, group) < 0)
                return us_errorf(err, ENOMEM, "socket address");
        char hex[2 * US_SHA256_DIGEST_SIZE + 1];
        us_sha256_hex(key, strlen(key), hex);
        int n = snprintf(buf, size, "%s/%s", SHIM_SOCKET_DIR, hex);
        if (n < 0 || (size_t)n >= size)
                return us_error_msg(err, ENAMETOOLONG, "socket path too long");
        return 0;
}

static int unix_address(const char *path, struct sockaddr_un *sa, struct us_error **err)
{
        memset(sa, 0, sizeof(*sa));
        sa->sun_family = AF_UNIX;
        if (strlen(path) >= sizeof(sa->sun_path))
                return us_error_msg(err, ENAMETOOLONG, "socket path %s too long", path);
        strcpy(sa->sun_path, path);
        return 0;
}

static bool can_connect(const char *path)
{
        struct sockaddr_un sa;
        if (unix_address(path, &sa, NULL) < 0)
                return false;
        /* Never waits: a listener whose backlog is full (a wedged shim)
         * answers EAGAIN, and it is there all the same. */
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        return fd >= 0 && (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 || errno == EAGAIN);
}

static int listen_on(const char *path, int *ret_fd, struct us_error **err)
{
        struct sockaddr_un sa;
        int r = unix_address(path, &sa, err);
        if (r < 0)
                return r;
        _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return us_errorf(err, errno, "socket");
        if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return -errno; /* the caller decides about EADDRINUSE */
        if (chmod(path, 0600) < 0 || listen(fd, 128) < 0) {
                r = us_errorf(err, errno, "listen on %s", path);
                (void)unlink(path);
                return r;
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* containerd reads the address file of a bundle to reconnect after its own
 * restart; write it atomically. */
static int write_address_file(const char *address, struct us_error **err)
{
        _cleanup_close_ int fd = open(".address", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
                return us_errorf(err, errno, "write address file");
        size_t n = strlen(address);
        if (write(fd, address, n) != (ssize_t)n)
                return us_errorf(err, errno ? errno : EIO, "write address file");
        if (rename(".address", "address") < 0)
                return us_errorf(err, errno, "write address file");
        return 0;
}

static const char *group_of(const struct us_oci_spec *spec, const char *id)
{
        for (size_t i = 0; i < US_ELEMENTSOF(group_annotations); i++) {
                const char *g = us_oci_spec_annotation(spec, group_annotations[i]);
                if (g && *g)
                        return g;
        }
        return id;
}

/* containerd 1.6 runs `delete` whenever a task's connection closes: after
 * every Delete too, while the pod's shim goes on serving the pod's other
 * tasks. That shim owns the pod: a container's task must not take the
 * pod's host side with it (a mesh sidecar's delete destroyed its pod's
 * running VM, whose domain is named after the pod, and unmounted its
 * disk). The pod's own task still cleans up: its Delete has torn the pod
 * down, and what outlives that teardown (a domain still ending, libvirt's
 * log of it) is left to its `delete`. */
static bool pod_shim_serves(const struct shim_args *args, const struct us_oci_spec *spec)
{
        const char *group = group_of(spec, args->id);
        char path[PATH_MAX];
        if (strcmp(group, args->id) == 0 || !args->address ||
            shim_socket_path(args->address, args->namespace, group, path, sizeof(path), NULL) < 0)
                return false;
        return can_connect(path);
}

static void drain_stdin(void)
{
        /* containerd writes the runtime options (an Any) to our stdin; read
         * them so its writer never sees EPIPE. Nothing in them applies yet. */
        char buf[4096];
        for (int i = 0; i < 256; i++) {
                ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
                if (n <= 0 && !(n < 0 && errno == EINTR))
                        return;
        }
}

int shim_manager_start(const struct shim_args *args, int *ret_listen_fd, char **ret_socket_path,
                       struct us_error **err)
{
        struct us_oci_spec *spec = NULL;
        int r = us_oci_spec_load(".", &spec, err);
        if (r < 0)
                return us_error_wrap(err, r, "start shim for %s", args->id);
        char path[PATH_MAX];
        r = shim_socket_path(args->address, args->namespace, group_of(spec, args->id), path,
                             sizeof(path), err);
        us_oci_spec_free(spec);
        if (r < 0)
                return r;
        _cleanup_free_ char *address = NULL;
        if (asprintf(&address, "unix://%s", path) < 0)
                return us_errorf(err, ENOMEM, "address");

        if (mkdir("/run/containerd", 0711) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "create /run/containerd");
        if (mkdir(SHIM_SOCKET_DIR, 0700) < 0 && errno != EEXIST)
                return us_errorf(err, errno, "create %s", SHIM_SOCKET_DIR);

        drain_stdin();

        _cleanup_close_ int lfd = -1;
        r = listen_on(path, &lfd, err);
        if (r == -EADDRINUSE) {
                if (can_connect(path)) {
                        /* The pod's shim is up: this container joins it. */
                        r = write_address_file(address, err);
                        if (r < 0)
                                return r;
                        printf("%s", address);
                        fflush(stdout);
                        return 0;
                }
                (void)unlink(path);
                r = listen_on(path, &lfd, err);
        }
        if (r < 0)
                return us_errorf(err, -r, "listen on %s", path);

        r = write_address_file(address, err);
        if (r < 0) {
                (void)unlink(path);
                return r;
        }

        pid_t pid = fork();
        if (pid < 0) {
                r = us_errorf(err, errno, "fork shim");
                (void)unlink(path);
                return r;
        }
        if (pid == 0) {
                /* The serving shim: its own session, away from containerd's
                 * output pipes (containerd waits for their EOF). */
                (void)setsid();
                int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (devnull >= 0) {
                        (void)dup2(devnull, STDIN_FILENO);
                        (void)dup2(devnull, STDOUT_FILENO);
                        (void)dup2(devnull, STDERR_FILENO);
                        if (devnull > STDERR_FILENO)
                                us_close(devnull);
                }
                *ret_listen_fd = TAKE_FD(lfd);
                *ret_socket_path = strdup(path);
                return 1;
        }
        printf("%s", address);
        fflush(stdout);
        return 0;
}

int shim_manager_delete(const struct shim_args *args, struct us_error **err)
{
        const char *bundle = args->bundle;
        char cwd[PATH_MAX];
        if (!bundle || !*bundle)
                bundle = getcwd(cwd, sizeof(cwd));
        if (!bundle)
                return us_errorf(err, errno, "delete: no bundle");

        struct us_error *e = NULL;
        if (us_container_cleanup_bundle(bundle, args->id, &e) < 0) {
                fprintf(stderr, "cleanup %s: %s\n", args->id, us_error_text(e));
                e = us_error_free(e);
        }
        /* What the backend made outside the bundle: a VM pod's share, binds,
         * network wiring, cgroup. */
        struct us_oci_spec *spec = NULL;
        if (us_oci_spec_load(bundle, &spec, &e) < 0 ||
            (!pod_shim_serves(args, spec) &&
             shim_backends_cleanup_dead(args->namespace, args->id, spec, &e) < 0)) {
                fprintf(stderr, "cleanup %s: %s\n", args->id, us_error_text(e));
                e = us_error_free(e);
        }
        us_oci_spec_free(spec);
        if (shim_rootfs_unmount(bundle, &e) < 0) {
                fprintf(stderr, "%s\n", us_error_text(e));
                e = us_error_free(e);
        }

        pid_t pid = 0;
        char pidfile[PATH_MAX];
        snprintf(pidfile, sizeof(pidfile), "%s/init.pid", bundle);
        _cleanup_fclose_ FILE *f = fopen(pidfile, "re");
        if (f && fscanf(f, "%d", &pid) != 1)
                pid = 0;

        Google__Protobuf__Timestamp ts = shim_timestamp(NULL);
        Containerd__Task__V2__DeleteResponse resp = CONTAINERD__TASK__V2__DELETE_RESPONSE__INIT;
        resp.pid = pid > 0 ? (uint32_t)pid : 0;
        resp.exit_status = 128 + SIGKILL;
        resp.exited_at = &ts;
        size_t n = protobuf_c_message_get_packed_size(&resp.base);
        uint8_t buf[128];
        if (n > sizeof(buf))
                return us_error_msg(err, EOVERFLOW, "delete response too large");
        protobuf_c_message_pack(&resp.base, buf);
        if (fwrite(buf, 1, n, stdout) != n || fflush(stdout) != 0)
                return us_errorf(err, errno ? errno : EIO, "write delete response");
        return 0;
}
