/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The pod sandbox ("pause") process of the test environment's sandbox image:
 * holds the pod's namespaces, reaps children (it is PID 1 of its pid
 * namespace) and exits 0 on SIGTERM or SIGINT. Built static by
 * tests/env/build-pause-image.sh: cc -static -Os pause.c.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
        (void)sig;
        stop = 1;
}

static void on_child(int sig)
{
        (void)sig;
        int saved = errno;
        while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
        errno = saved;
}

int main(void)
{
        struct sigaction sa = {.sa_handler = on_stop};
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0)
                return 1;
        sa.sa_handler = on_child;
        sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
        if (sigaction(SIGCHLD, &sa, NULL) < 0)
                return 1;
        while (!stop)
                pause();
        return 0;
}
