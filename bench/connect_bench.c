// SPDX-License-Identifier: Apache-2.0
// connect() microbenchmark for the capture datapath, run inside a pod's netns by bench/capture.ts.
//   connect_bench serve HOST PORT        accept and close connections until killed
//   connect_bench connect HOST PORT N    N blocking connect()s, each timed; prints one JSON line
//                                        (cpu_us: this process's CPU time per connect, user + system,
//                                        which other load on a shared machine disturbs far less
//                                        than the wall-clock rate)
// Connections are closed with SO_LINGER 0 (RST) so the client never runs out of ports to TIME_WAIT.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int addr_of(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons(port);
		*len = sizeof(*in4);
		return AF_INET;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		*len = sizeof(*in6);
		return AF_INET6;
	}
	fprintf(stderr, "bad address %s\n", host);
	exit(2);
}

static int cmp(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return (x > y) - (x < y);
}

static long cpu_ns(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000000L +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000L;
}

static long now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: %s serve HOST PORT | connect HOST PORT N\n", argv[0]);
		return 2;
	}
	struct sockaddr_storage ss;
	socklen_t len;
	int family = addr_of(argv[2], atoi(argv[3]), &ss, &len);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	int one = 1;

	if (strcmp(argv[1], "serve") == 0) {
		int s = socket(family, SOCK_STREAM, 0);
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(s, (struct sockaddr *)&ss, len) < 0 || listen(s, 4096) < 0) {
			perror("bind/listen");
			return 1;
		}
		printf("ready\n");
		fflush(stdout);
		for (;;) {
			int c = accept(s, NULL, NULL);
			if (c < 0)
				continue;
			setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(c);
		}
	}

	int n = atoi(argv[4]);
	if (n <= 0 || n > 1000000) {
		fprintf(stderr, "N must be in 1..1000000\n");
		return 2;
	}
	long *lat = calloc(n, sizeof(long));
	int failed = 0;
	long start = now_ns();
	long cpu_start = cpu_ns();
	for (int i = 0; i < n; i++) {
		int s = socket(family, SOCK_STREAM, 0);
		long t0 = now_ns();
		int r = connect(s, (struct sockaddr *)&ss, len);
		lat[i] = now_ns() - t0;
		if (r < 0)
			failed++;
		setsockopt(s, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		close(s);
	}
	double secs = (now_ns() - start) / 1e9;
	double cpu_us = (cpu_ns() - cpu_start) / 1e3 / n;
	qsort(lat, n, sizeof(long), cmp);
	double sum = 0;
	for (int i = 0; i < n; i++)
		sum += lat[i];
	printf("{\"n\":%d,\"failed\":%d,\"seconds\":%.4f,\"rate\":%.1f,\"mean_us\":%.2f,\"p50_us\":%.2f,"
	       "\"p90_us\":%.2f,\"p99_us\":%.2f,\"max_us\":%.2f,\"cpu_us\":%.3f}\n",
	       n, failed, secs, n / secs, sum / n / 1e3, lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3,
	       lat[n * 99 / 100] / 1e3, lat[n - 1] / 1e3, cpu_us);
	free(lat);
	return failed ? 1 : 0;
}
