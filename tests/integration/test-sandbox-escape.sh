#!/bin/bash
# Containers in a sandbox pod's VM cannot leave their root for the guest
# agent's (issue 7): the agent leaves the initramfs at boot, so every
# container's root is a real pivot_root with the agent's root unmounted
# from its mount namespace, never the escapable MS_MOVE + chroot.
#  - from a privileged container and from one with the default capabilities
#    (CAP_SYS_CHROOT among them), the classic chroot escape (mkdir x;
#    chroot x; cd ../../..; chroot .) leaves the process in its own root
#  - a privileged container that detaches its / in a private copy of its
#    mount namespace and rejoins it (setns: the root of the namespace)
#    finds an empty directory, not the agent's root
#  - none of the attempts reaches a marker file the pod's other container
#    wrote in its own rootfs, nor the agent's /run/unishim
#  - the containers still work afterwards; nothing of the pod is left
# Not covered: a read-only root (readOnlyRootFilesystem) that stays
# read-only: unishimctl's pod description cannot ask for one (SKIP below).
# A privileged container is root of the guest and can reach the pod's share
# by mounting it (test-sandbox-hostile.sh): these are the escapes through
# the root, which a container without CAP_SYS_ADMIN has too.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
IT_CRI=1
command -v qemu-system-x86_64 >/dev/null || it_skip "qemu-system-x86_64 missing (apt package qemu-system-x86)"
it_setup

# The probe: a static binary the containers run from a read-only volume
# (the test image has no compiler and busybox's chroot changes directory
# into the new root, which the escape must not do).
PROBE_DIR=$IT_TMP/probe
mkdir -p "$PROBE_DIR"
cat >"$IT_TMP/escape-probe.c" <<'EOF'
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

static const char *marker;

static int visit(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
        (void)st;
        if (type == FTW_D && ftw->level == 1 &&
            (!strcmp(path, "/proc") || !strcmp(path, "/sys") || !strcmp(path, "/dev")))
                return FTW_SKIP_SUBTREE;
        if (type == FTW_D && ftw->level >= 12)
                return FTW_SKIP_SUBTREE;
        if (!strcmp(path + ftw->base, marker)) {
                printf("found %s\n", path);
                int fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
                if (fd >= 0) {
                        printf("writable %s\n", path);
                        close(fd);
                }
        }
        return FTW_CONTINUE;
}

/* What the process sees as / now. */
static void report(const struct stat *before)
{
        struct stat st;
        if (stat("/", &st) < 0) {
                printf("error stat /: %s\n", strerror(errno));
                return;
        }
        printf("root %s\n", st.st_dev == before->st_dev && st.st_ino == before->st_ino ? "same" : "changed");
        DIR *d = opendir("/");
        struct dirent *de;
        int n = 0;
        while (d && (de = readdir(d)))
                if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
                        printf("entry %s\n", de->d_name);
                        n++;
                }
        if (d)
                closedir(d);
        printf("entries %d\n", n);
        struct stat rs;
        printf("agent-run %s\n", stat("/run/unishim", &rs) == 0 ? "present" : "absent");
        nftw("/", visit, 16, FTW_PHYS | FTW_ACTIONRETVAL);
}

int main(int argc, char **argv)
{
        if (argc != 3) {
                fprintf(stderr, "usage: escape-probe chroot|setns MARKER\n");
                return 2;
        }
        marker = argv[2];
        struct stat before;
        if (stat("/", &before) < 0)
                return perror("stat /"), 1;
        if (!strcmp(argv[1], "chroot")) {
                /* mkdir x; chroot x; cd ../../..; chroot . */
                char dir[] = "/dev/shm/escape.XXXXXX";
                if (!mkdtemp(dir))
                        return perror("mkdtemp"), 1;
                if (chroot(dir) < 0)
                        return printf("error chroot %s: %s\n", dir, strerror(errno)), 1;
                for (int i = 0; i < 64; i++)
                        if (chdir("..") < 0)
                                return printf("error chdir ..: %s\n", strerror(errno)), 1;
                if (chroot(".") < 0)
                        return printf("error chroot .: %s\n", strerror(errno)), 1;
                (void)chdir("/");
        } else if (!strcmp(argv[1], "setns")) {
                /* In a private copy of our mount namespace (the container's
                 * own stays intact): detach / and rejoin the namespace,
                 * whose root is then what lies under the container's root. */
                if (unshare(CLONE_NEWNS) < 0)
                        return printf("error unshare: %s\n", strerror(errno)), 1;
                if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                        return printf("error make / private: %s\n", strerror(errno)), 1;
                int ns = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
                if (ns < 0)
                        return printf("error open ns: %s\n", strerror(errno)), 1;
                if (umount2("/", MNT_DETACH) < 0)
                        return printf("error detach /: %s\n", strerror(errno)), 1;
                if (setns(ns, CLONE_NEWNS) < 0)
                        return printf("error setns: %s\n", strerror(errno)), 1;
                (void)chdir("/");
        } else {
                return 2;
        }
        report(&before);
        return 0;
}
EOF
cc -static -O1 -o "$PROBE_DIR/escape-probe" "$IT_TMP/escape-probe.c" ||
        it_skip "cannot build a static probe (libc6-dev's libc.a missing?)"

MARKER=escape-marker-$$-$RANDOM
f=$(it_pod escape.json --arg probe "$PROBE_DIR" --arg m "$MARKER" '{name: "escape", runtime_handler: "unishim",
        annotations: {"unishim.io/isolation": "sandbox"}, privileged: true,
        containers: [
          {name: "priv", image: $img, privileged: true, command: ["sleep", "3600"],
           mounts: [{host_path: $probe, container_path: "/probe", readonly: true}]},
          {name: "plain", image: $img, command: ["sleep", "3600"],
           mounts: [{host_path: $probe, container_path: "/probe", readonly: true}]},
          {name: "victim", image: $img, command: ["/bin/sh", "-c"],
           args: ["echo secret > /" + $m + " && exec sleep 3600"]}]}')
out_rc out rc ectl run "$f"
expect_eq "run the sandbox pod with a privileged, a plain and a victim container" 0 "$rc"
[ "$rc" = 0 ] || echo "# $out"
id=$(pod_id escape)
wait_until 10 ectl exec escape -c victim -- test -f "/$MARKER" || true
out_rc out rc ectl exec escape -c victim -- cat "/$MARKER"
expect_eq "the victim wrote its marker in its own rootfs" secret "$out"

# probe CONTAINER MODE: runs the probe, prints its report.
probe() {
        out_rc out rc ectl exec -t 60 escape -c "$1" -- /probe/escape-probe "$2" "$MARKER"
        echo "$out" | grep -v '^entry ' | sed "s/^/# $1 $2: /"
        echo "# $1 $2: / holds: $(grep '^entry ' <<<"$out" | cut -d' ' -f2 | sort | tr '\n' ' ')"
}
# check_escape CONTAINER MODE: the verdicts of the report probe left in $out.
check_escape() {
        local c=$1 mode=$2
        expect_eq "$c: $mode attempt ran (exit 0)" 0 "$rc"
        expect_eq "$c: $mode escape reaches no marker of the victim" "" "$(grep '^found ' <<<"$out" || true)"
        expect_eq "$c: $mode escape reaches no agent /run/unishim" "agent-run absent" "$(grep '^agent-run ' <<<"$out" || true)"
}

for c in priv plain; do
        probe "$c" chroot
        check_escape "$c" chroot
        expect_eq "$c: after the chroot escape / is still the container's" "root same" "$(grep '^root ' <<<"$out" || true)"
done

probe priv setns
check_escape priv setns
# After pivot_root the namespace's root holds nothing: the initramfs was
# emptied at boot and the agent's root is not mounted there.
expect_eq "priv: under the container's root the namespace holds an empty directory" "entries 0" \
        "$(grep '^entries ' <<<"$out" || true)"
out_rc out rc ectl exec escape -c plain -- /probe/escape-probe setns "$MARKER"
[ "$rc" != 0 ] && pass "plain: without CAP_SYS_ADMIN the setns attempt fails (rc $rc)" ||
        fail "plain: setns attempt: rc 0: $out"

echo "SKIP (part): a read-only root staying read-only: unishimctl's pod description has no readOnlyRootFilesystem"

out_rc out rc ectl exec escape -c victim -- cat "/$MARKER"
expect_eq "the victim still reads its marker" secret "$out"
out_rc out rc ectl exec escape -c plain -- sh -c 'echo x > /written && cat /written'
expect_eq "the plain container still writes its own root" x "$out"

out_rc out rc ectl rm --timeout 0 escape
expect_eq "rm escape" 0 "$rc"
wait_until 15 outputs_nothing sandbox_leftovers "$id" || true
expect_eq "nothing of the pod left (shim, QEMU, virtiofsd, dirs, mounts, cgroups)" "" "$(sandbox_leftovers "$id")"

it_finish
