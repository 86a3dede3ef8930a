/* Endpoints that carry service messages.
 *
 * Everything above this file sees only "an endpoint that receives, named
 * by text that others send to", which is the shape of an infrastructure
 * channel: the receive side is created by its reader, the text form travels
 * in messages and the environment.  This backend uses abstract-namespace
 * Unix datagram sockets (message boundaries, blocking when full, gone when
 * the process is); switching to channels changes only this file.
 */
#define _GNU_SOURCE
#include "config.h"
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include "dlaunch_private.h"

struct dlaunch__ep {
	int fd;
	struct sockaddr_un addr;
	socklen_t addrlen;
};

#define TEXT_PREFIX "unix-dgram:"

int dlaunch__link_init(const char *pool_text)
{
	(void)pool_text;
	return 0;
}

void dlaunch__link_fini(void)
{
}

static int ep_alloc(dlaunch__ep_t **ep_out)
{
	dlaunch__ep_t *ep = calloc(1, sizeof *ep);
	int sz = 4 * (int)DLAUNCH_MSG_MAX;

	if (!ep)
		return -ENOMEM;
	ep->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (ep->fd < 0) {
		free(ep);
		return -errno;
	}
	/* Large enough for the biggest message; capped by the kernel. */
	setsockopt(ep->fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	setsockopt(ep->fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	*ep_out = ep;
	return 0;
}

int dlaunch__ep_create(dlaunch__ep_t **ep_out)
{
	dlaunch__ep_t *ep;
	sa_family_t fam = AF_UNIX;
	int rc = ep_alloc(&ep);

	if (rc)
		return rc;
	/* Autobind: the kernel picks a unique abstract name. */
	if (bind(ep->fd, (struct sockaddr *)&fam, sizeof fam) < 0)
		goto fail;
	ep->addrlen = sizeof ep->addr;
	if (getsockname(ep->fd, (struct sockaddr *)&ep->addr, &ep->addrlen) <
	    0)
		goto fail;
	*ep_out = ep;
	return 0;
fail:
	rc = -errno;
	close(ep->fd);
	free(ep);
	return rc;
}

int dlaunch__ep_text(const dlaunch__ep_t *ep, char *buf, size_t len)
{
	size_t n = ep->addrlen - offsetof(struct sockaddr_un, sun_path);
	size_t need = strlen(TEXT_PREFIX) + 2 * n + 1;
	int w = snprintf(buf, len, "%s", TEXT_PREFIX);

	if (need > len)
		return -ENOSPC;
	for (size_t i = 0; i < n; i++)
		w += snprintf(buf + w, len - (size_t)w, "%02x",
			      (unsigned char)ep->addr.sun_path[i]);
	return w;
}

static int parse_text(const char *text, struct sockaddr_un *a,
		      socklen_t *alen)
{
	size_t pl = strlen(TEXT_PREFIX), hl;
	const char *h;

	if (!text || strncmp(text, TEXT_PREFIX, pl))
		return -DLAUNCH_E_ENV;
	h = text + pl;
	hl = strlen(h);
	if (hl == 0 || hl % 2 || hl / 2 > sizeof a->sun_path)
		return -DLAUNCH_E_ENV;
	memset(a, 0, sizeof *a);
	a->sun_family = AF_UNIX;
	for (size_t i = 0; i < hl / 2; i++) {
		unsigned v;
		if (sscanf(h + 2 * i, "%2x", &v) != 1)
			return -DLAUNCH_E_ENV;
		a->sun_path[i] = (char)v;
	}
	*alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + hl / 2);
	return 0;
}

int dlaunch__ep_open(const char *text, dlaunch__ep_t **ep_out)
{
	dlaunch__ep_t *ep;
	int rc;

	rc = ep_alloc(&ep);
	if (rc)
		return rc;
	rc = parse_text(text, &ep->addr, &ep->addrlen);
	if (rc == 0 && connect(ep->fd, (struct sockaddr *)&ep->addr,
			       ep->addrlen) < 0)
		rc = errno == ECONNREFUSED ? -DLAUNCH_E_SERVICES : -errno;
	if (rc) {
		close(ep->fd);
		free(ep);
		return rc;
	}
	*ep_out = ep;
	return 0;
}

static int wait_fd(int fd, short ev, uint64_t timeout_ns,
		   const struct timespec *start)
{
	struct timespec now;
	uint64_t spent;
	struct pollfd p = {.fd = fd, .events = ev};
	int ms, rc;

	for (;;) {
		ms = -1;
		if (timeout_ns != DLAUNCH_FOREVER) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			spent = (uint64_t)(now.tv_sec - start->tv_sec) *
					1000000000u +
				(uint64_t)(now.tv_nsec - start->tv_nsec);
			if (spent >= timeout_ns)
				return timeout_ns ? -ETIMEDOUT : -EAGAIN;
			ms = (int)((timeout_ns - spent + 999999) / 1000000);
		}
		rc = poll(&p, 1, ms);
		if (rc > 0)
			return 0;
		if (rc < 0 && errno != EINTR)
			return -errno;
	}
}

int dlaunch__ep_send(dlaunch__ep_t *ep, const void *buf, size_t len,
		     uint64_t timeout_ns)
{
	struct timespec start;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		if (send(ep->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno == ECONNREFUSED || errno == ENOTCONN)
			return -DLAUNCH_E_SERVICES;
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		rc = wait_fd(ep->fd, POLLOUT, timeout_ns, &start);
		if (rc)
			return rc;
	}
}

int dlaunch__ep_recv(dlaunch__ep_t *ep, void *buf, size_t cap,
		     uint64_t timeout_ns, size_t *len_out)
{
	struct timespec start;
	ssize_t n;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		n = recv(ep->fd, buf, cap, MSG_DONTWAIT | MSG_TRUNC);
		if (n >= 0) {
			if ((size_t)n > cap)
				return -EMSGSIZE;
			*len_out = (size_t)n;
			return 0;
		}
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		rc = wait_fd(ep->fd, POLLIN, timeout_ns, &start);
		if (rc)
			return rc;
	}
}

void dlaunch__ep_close(dlaunch__ep_t *ep)
{
	if (!ep)
		return;
	close(ep->fd);
	free(ep);
}

void dlaunch__ep_destroy_text(const char *text)
{
	/* A socket endpoint disappears with its process. */
	(void)text;
}
