/*
 * The sandbox ("pause") process of the test cluster's pods: it holds the
 * pod's namespaces open and, as PID 1 of the pod, reaps what gets
 * re-parented to it.  SIGINT and SIGTERM end it (exit 0); nothing else does.
 * Built static by tests/k8s/images.sh into localhost/pause:dev.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
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
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction end = { .sa_handler = stop };
	struct sigaction child = { .sa_handler = reap, .sa_flags = SA_NOCLDSTOP };

	if (argc > 1 && argv[1][0] == '-' && argv[1][1] == 'v') {
		puts("pause (dpdk-cni test cluster)");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "pause: not PID 1; reaping only my own children\n");
	if (sigaction(SIGINT, &end, NULL) || sigaction(SIGTERM, &end, NULL) ||
	    sigaction(SIGCHLD, &child, NULL)) {
		perror("pause: sigaction");
		return 1;
	}
	for (;;)
		pause();
}
