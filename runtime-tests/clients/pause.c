/* The sandbox ("pause") container of the CRI suite (runtime-tests/tests/client_cri.rs), built
 * by build-pause-image into a one-file image. It holds the pod's namespaces: it sleeps until
 * SIGTERM or SIGINT, and as PID 1 of a pod that shares its PID namespace it reaps the
 * orphans re-parented to it. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void reap(int sig)
{
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
    sigaction(SIGCHLD, &sa, NULL);
    if (getpid() != 1)
        fprintf(stderr, "pause: not PID 1 of its namespace; orphans are not reaped here\n");
    for (;;)
        pause();
}
