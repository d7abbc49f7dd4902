/* SPDX-License-Identifier: Apache-2.0 */
/* shim/manager.c: what `shim delete` cleans up, and what it leaves alone. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "unit.h"

#include "base/cleanup.h"
#include "base/fs-util.h"
#include "shim/manager.h"
#include "shim/vmpod.h"

#define POD_ID     "pod1"
#define SIDECAR_ID "sidecar1"

static void write_file(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

/* path is the file at source, not what was there before (a bind mount). */
static bool bound_to(const char *path, const char *source)
{
        struct stat a, b;
        return stat(path, &a) == 0 && stat(source, &b) == 0 && a.st_dev == b.st_dev &&
               a.st_ino == b.st_ino;
}

/* `shim delete` as containerd runs it; its DeleteResponse on stdout is
 * dropped. */
static int delete_task(const struct shim_args *args)
{
        fflush(stdout);
        int saved = dup(STDOUT_FILENO);
        int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
        assert_true(saved >= 0 && null >= 0);
        assert_int_equal(dup2(null, STDOUT_FILENO), STDOUT_FILENO);
        struct us_error *err = NULL;
        int r = shim_manager_delete(args, &err);
        fflush(stdout);
        assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
        us_close(saved);
        us_close(null);
        if (r < 0)
                print_error("delete: %s\n", us_error_text(err));
        us_error_free(err);
        return r;
}

/* containerd 1.6 runs `delete` for every task whose connection closes,
 * also after a normal Delete while the pod's shim serves on. A mesh
 * sidecar's (or a replaced VM container's) then must not take the pod's
 * running VM with it: its disk stays mounted (and its domain, named after
 * the pod, is not destroyed). Once the pod's shim is gone, the same delete
 * cleans up what the VM left. */
static void container_delete_leaves_a_serving_pod_alone(void **state)
{
        (void)state;
        if (geteuid() != 0)
                unit_skip("needs root (a mount, /run/unishim, /run/containerd/s)");
        /* The disk's mount stays in this process's own mount namespace. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                unit_skip("no private mount namespace: %s", strerror(errno));

        char tmp[] = "/tmp/unishim-manager-XXXXXX";
        assert_non_null(mkdtemp(tmp));
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        char ns[64], state_dir[256], vm_dir[512], base[PATH_MAX], kind[PATH_MAX], bundle[256],
                config[PATH_MAX], disk[PATH_MAX], address[PATH_MAX], sock[sizeof(sa.sun_path)];
        snprintf(ns, sizeof(ns), "unishim-test-%d", (int)getpid());
        snprintf(state_dir, sizeof(state_dir), VMPOD_STATE_ROOT "/%s/" POD_ID, ns);
        snprintf(vm_dir, sizeof(vm_dir), "%s/vm", state_dir);
        snprintf(base, sizeof(base), "%s/base", vm_dir);
        snprintf(kind, sizeof(kind), "%s/kind", state_dir);
        snprintf(bundle, sizeof(bundle), "%s/bundle", tmp);
        snprintf(config, sizeof(config), "%s/config.json", bundle);
        snprintf(disk, sizeof(disk), "%s/disk.qcow2", tmp);
        /* Only hashed into the socket's name: nothing listens there. */
        snprintf(address, sizeof(address), "%s/containerd.sock", tmp);
        struct us_error *err = NULL;
        assert_int_equal(shim_socket_path(address, ns, POD_ID, sock, sizeof(sock), &err), 0);

        /* A vm pod's state dir as its shim made it, the image's disk bound
         * at vm/base. */
        assert_int_equal(us_mkdir_p(vm_dir, 0700, &err), 0);
        write_file(kind, "vm");
        write_file(base, "");
        write_file(disk, "the image's disk");
        assert_int_equal(mount(disk, base, NULL, MS_BIND, NULL), 0);
        assert_true(bound_to(base, disk));
        /* The sidecar's bundle, as containerd's CRI writes it. */
        assert_int_equal(mkdir(bundle, 0700), 0);
        write_file(config,
                   "{\"ociVersion\": \"1.0.2\", \"process\": {\"args\": [\"sh\"], \"cwd\": \"/\"},"
                   " \"root\": {\"path\": \"rootfs\"}, \"annotations\": {"
                   " \"io.kubernetes.cri.container-type\": \"container\","
                   " \"io.kubernetes.cri.container-name\": \"istio-proxy\","
                   " \"io.kubernetes.cri.sandbox-id\": \"" POD_ID "\"}}");

        /* The pod's shim listens where `start` put it. */
        assert_int_equal(us_mkdir_p(SHIM_SOCKET_DIR, 0700, &err), 0);
        int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(lfd >= 0);
        memcpy(sa.sun_path, sock, sizeof(sock));
        assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
        assert_int_equal(listen(lfd, 4), 0);

        const struct shim_args args = {
                .namespace = ns, .address = address, .id = SIDECAR_ID, .bundle = bundle};
        assert_int_equal(delete_task(&args), 0);
        bool kept = bound_to(base, disk);
        bool dir_kept = access(state_dir, F_OK) == 0;

        /* The pod's shim is gone (killed: its socket is left, nobody
         * listens): the sidecar's delete cleans up after the pod's VM. */
        us_close(lfd);
        assert_int_equal(delete_task(&args), 0);
        bool released = !bound_to(base, disk);

        (void)umount2(base, MNT_DETACH);
        (void)unlink(sock);
        (void)unlink(base);
        (void)rmdir(vm_dir);
        (void)unlink(kind);
        (void)rmdir(state_dir);
        snprintf(state_dir, sizeof(state_dir), VMPOD_STATE_ROOT "/%s", ns);
        (void)rmdir(state_dir);
        int tmp_parent = open("/tmp", O_PATH | O_DIRECTORY | O_CLOEXEC);
        assert_int_equal(us_rm_tree_at(tmp_parent, tmp + strlen("/tmp/"), &err), 0);
        us_close(tmp_parent);

        assert_true(kept);
        assert_true(dir_kept);
        assert_true(released);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(container_delete_leaves_a_serving_pod_alone),
        };
        return unit_exit(unit_run_group_tests(tests, NULL, NULL));
}
