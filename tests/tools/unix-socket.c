/* SPDX-License-Identifier: Apache-2.0 */
/*
 * unix-socket: binds a unix stream socket at PATH, connects to it by PATH
 * from a child process, and passes a line each way, for
 * tests/integration/test-sandbox-9p.sh (the test image's busybox nc has no
 * unix sockets). Linked statically: the test bind-mounts it into a busybox
 * container.
 *
 *   unix-socket PATH
 *
 * Prints "bound", "connected", "ping", "pong" on lines of their own as each
 * step succeeds, and exits 0; else the failed step and errno's text on
 * stderr, exit 1. PATH is left behind (a socket file): the test looks at
 * it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static int die(const char *what)
{
        fprintf(stderr, "unix-socket: %s: %s\n", what, strerror(errno));
        return 1;
}

/* Reads exactly n bytes (a peer's short line). */
static int read_full(int fd, char *buf, size_t n)
{
        size_t got = 0;
        while (got < n) {
                ssize_t r = read(fd, buf + got, n - got);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                got += (size_t)r;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: unix-socket PATH\n");
                return 2;
        }
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        if (strlen(argv[1]) >= sizeof(sa.sun_path)) {
                fprintf(stderr, "unix-socket: %s: path too long\n", argv[1]);
                return 2;
        }
        strcpy(sa.sun_path, argv[1]);
        int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (srv < 0)
                return die("socket");
        if (bind(srv, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                return die("bind");
        if (listen(srv, 1) < 0)
                return die("listen");
        printf("bound\n");
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
                return die("fork");
        if (pid == 0) {
                /* Another process finds the socket by its path alone. */
                close(srv);
                int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (c < 0)
                        _exit(die("socket (client)"));
                if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0)
                        _exit(die("connect"));
                char buf[5];
                if (write(c, "ping\n", 5) != 5)
                        _exit(die("write ping"));
                if (read_full(c, buf, 5) < 0 || memcmp(buf, "pong\n", 5) != 0)
                        _exit(die("read pong"));
                _exit(0);
        }
        int a = accept4(srv, NULL, NULL, SOCK_CLOEXEC);
        if (a < 0)
                return die("accept");
        printf("connected\n");
        char buf[5];
        if (read_full(a, buf, 5) < 0 || memcmp(buf, "ping\n", 5) != 0)
                return die("read ping");
        printf("ping\n");
        if (write(a, "pong\n", 5) != 5)
                return die("write pong");
        int status;
        if (waitpid(pid, &status, 0) < 0)
                return die("waitpid");
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                fprintf(stderr, "unix-socket: the client failed (status %d)\n", status);
                return 1;
        }
        printf("pong\n");
        return 0;
}
