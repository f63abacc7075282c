/* The floor for the restart benchmark: the least a supervisor can do to restart a
 * service, written directly against the C library.
 *
 * Usage: floor PROGRAM ARG... [--- PROGRAM ARG...]...
 *
 * Each PROGRAM ARG... is a service, started with posix_spawn in its own process group
 * with an empty signal mask (the two things any supervisor that blocks its signals must
 * give a child; bundle-init gives them too). Signals arrive through a signalfd:
 *   SIGUSR1          the first service gets SIGTERM, is waited for, and is spawned again;
 *   SIGCHLD          children are reaped (a service that dies is not restarted);
 *   SIGTERM, SIGINT  every service gets SIGTERM, and floor exits when all are gone.
 * Output is inherited: the services write straight to floor's stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_SERVICES 16

extern char **environ;

struct service {
	char **argv;
	pid_t pid; /* 0 when not running */
};

static struct service services[MAX_SERVICES];
static int service_count;
static sigset_t inherited_mask;

static void die(const char *what)
{
	fprintf(stderr, "floor: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Splits argv at each "---" into services. */
static void parse(int argc, char **argv)
{
	int start = 1;
	for (int i = 1; i <= argc; i++) {
		if (i < argc && strcmp(argv[i], "---") != 0)
			continue;
		if (i > start) {
			if (service_count == MAX_SERVICES) {
				fprintf(stderr, "floor: at most %d services\n", MAX_SERVICES);
				exit(2);
			}
			services[service_count++].argv = &argv[start];
		}
		argv[i < argc ? i : argc] = NULL;
		start = i + 1;
	}
	if (service_count == 0) {
		fprintf(stderr, "usage: floor PROGRAM ARG... [--- PROGRAM ARG...]...\n");
		exit(2);
	}
}

static void start(struct service *s)
{
	posix_spawnattr_t attr;
	int err = posix_spawnattr_init(&attr);
	if (!err)
		err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
	if (!err)
		err = posix_spawnattr_setsigmask(&attr, &inherited_mask);
	if (!err)
		err = posix_spawnattr_setpgroup(&attr, 0);
	if (!err)
		err = posix_spawn(&s->pid, s->argv[0], NULL, &attr, s->argv, environ);
	posix_spawnattr_destroy(&attr);
	if (err) {
		s->pid = 0;
		fprintf(stderr, "floor: cannot start %s: %s\n", s->argv[0], strerror(err));
	}
}

/* Marks the service whose process `pid` was as stopped. */
static void forget(pid_t pid)
{
	for (int i = 0; i < service_count; i++)
		if (services[i].pid == pid)
			services[i].pid = 0;
}

static void restart_first(void)
{
	struct service *s = &services[0];
	if (s->pid > 0) {
		kill(s->pid, SIGTERM);
		int status;
		while (waitpid(s->pid, &status, 0) < 0 && errno == EINTR)
			;
		s->pid = 0;
	}
	start(s);
}

static void reap(void)
{
	int status;
	pid_t pid;
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		forget(pid);
}

static int running(void)
{
	int n = 0;
	for (int i = 0; i < service_count; i++)
		n += services[i].pid > 0;
	return n;
}

int main(int argc, char **argv)
{
	parse(argc, argv);
	sigset_t all;
	sigfillset(&all);
	if (sigprocmask(SIG_SETMASK, &all, &inherited_mask) < 0)
		die("sigprocmask");
	int fd = signalfd(-1, &all, SFD_CLOEXEC);
	if (fd < 0)
		die("signalfd");
	for (int i = 0; i < service_count; i++)
		start(&services[i]);
	int stopping = 0;
	while (!stopping || running() > 0) {
		struct signalfd_siginfo info;
		ssize_t n = read(fd, &info, sizeof info);
		if (n < 0 && errno == EINTR)
			continue;
		if (n != sizeof info)
			die("read signalfd");
		switch (info.ssi_signo) {
		case SIGUSR1:
			if (!stopping)
				restart_first();
			break;
		case SIGCHLD:
			reap();
			break;
		case SIGTERM:
		case SIGINT:
			stopping = 1;
			for (int i = 0; i < service_count; i++)
				if (services[i].pid > 0)
					kill(services[i].pid, SIGTERM);
			break;
		}
	}
	return 0;
}
