/*
 * The tcp backend: non-blocking sockets, one per link, TCP_NODELAY (the
 * core batches small frames itself while a link is busy, so Nagle's delay
 * would only add latency to a lone message).
 */
#include "config.h"
#include "dtrans_private.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct dtrans__tcp {
	int fd;
};

/* The "host:port" addresses (host may be "[v6]") every backend speaks. */
int dtrans__addr_split(const char *addr, char *host, size_t hlen, char *port,
		       size_t plen)
{
	const char *colon = addr ? strrchr(addr, ':') : NULL;
	size_t hl;

	if (!colon || colon == addr || !colon[1])
		return dtrans__fail(-EINVAL, "address '%s' is not host:port",
				    addr ? addr : "(null)");
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && hl >= 2 && addr[hl - 1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= hlen || strlen(colon + 1) >= plen)
		return dtrans__fail(-EINVAL, "address '%s' is too long", addr);
	memcpy(host, addr, hl);
	host[hl] = 0;
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

int dtrans__addr_format(const struct sockaddr *sa, unsigned sl, char *buf,
			size_t len)
{
	char host[NI_MAXHOST], port[NI_MAXSERV];
	int n;

	if (getnameinfo(sa, sl, host, sizeof host, port, sizeof port,
			NI_NUMERICHOST | NI_NUMERICSERV))
		return -EINVAL;
	n = snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		     host, port);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

int dtrans__addr_resolve(const char *addr, bool passive, struct addrinfo **out)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
				 .ai_flags = passive ? AI_PASSIVE : 0};
	char host[256], port[32];
	int rc = dtrans__addr_split(addr, host, sizeof host, port, sizeof port);

	if (rc < 0)
		return rc;
	rc = getaddrinfo(host, port, &hints, out);
	if (rc)
		return dtrans__fail(-EHOSTUNREACH, "cannot resolve '%s': %s",
				    addr, gai_strerror(rc));
	return 0;
}

/* A tcp link around a connected, non-blocking stream socket (also how
 * the fuzz target feeds a link). */
int dtrans__tcp_adopt(int fd, void **out)
{
	struct dtrans__tcp *t = malloc(sizeof *t);
	int one = 1;

	if (!t) {
		close(fd);
		return -ENOMEM;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	t->fd = fd;
	*out = t;
	return 0;
}

static int dtrans__tcp_listen(const char *addr, void **ep_out)
{
	struct addrinfo *ai, *a;
	int fd = -1, one = 1, rc;

	rc = dtrans__addr_resolve(addr, true, &ai);
	if (rc < 0)
		return rc;
	rc = -EADDRNOTAVAIL;
	for (a = ai; a; a = a->ai_next) {
		fd = socket(a->ai_family,
			    a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, a->ai_addr, a->ai_addrlen) == 0 &&
		    listen(fd, 128) == 0)
			break;
		rc = -errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd < 0)
		return dtrans__fail(rc, "cannot listen on %s: %s", addr,
				    strerror(-rc));
	return dtrans__tcp_adopt(fd, ep_out);
}

static int dtrans__tcp_ep_address(void *ep, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	char host[NI_MAXHOST], port[NI_MAXSERV];
	int n;

	if (getsockname(((struct dtrans__tcp *)ep)->fd, (struct sockaddr *)&ss,
			&sl) < 0)
		return -errno;
	if (getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port,
			sizeof port, NI_NUMERICHOST | NI_NUMERICSERV))
		return -EINVAL;
	n = snprintf(buf, len, ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		     host, port);
	return n < 0 || (size_t)n >= len ? -ENOSPC : n;
}

static int dtrans__tcp_fd(void *x)
{
	return ((struct dtrans__tcp *)x)->fd;
}

static int dtrans__tcp_accept(void *ep, void **link_out)
{
	int fd = accept4(((struct dtrans__tcp *)ep)->fd, NULL, NULL,
			 SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return dtrans__tcp_adopt(fd, link_out);
}

static void dtrans__tcp_close(void *x)
{
	if (x) {
		close(((struct dtrans__tcp *)x)->fd);
		free(x);
	}
}

static int dtrans__tcp_dial(const char *addr, void **link_out)
{
	struct addrinfo *ai;
	int fd, rc;

	rc = dtrans__addr_resolve(addr, false, &ai);
	if (rc < 0)
		return rc;
	fd = socket(ai->ai_family,
		    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		freeaddrinfo(ai);
		return rc;
	}
	if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 &&
	    errno != EINPROGRESS) {
		rc = -errno;
		freeaddrinfo(ai);
		close(fd);
		return rc;
	}
	freeaddrinfo(ai);
	return dtrans__tcp_adopt(fd, link_out);
}

static int dtrans__tcp_connected(void *link)
{
	int err = 0;
	socklen_t l = sizeof err;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof ss;
	int fd = ((struct dtrans__tcp *)link)->fd;

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) < 0)
		return -errno;
	if (err)
		return -err;
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) < 0)
		return errno == ENOTCONN ? -EINPROGRESS : -errno;
	return 0;
}

static ssize_t dtrans__tcp_send(void *link, const struct iovec *iov, int iovcnt)
{
	struct msghdr mh = {.msg_iov = (struct iovec *)iov,
			    .msg_iovlen = (size_t)iovcnt};
	ssize_t n = sendmsg(((struct dtrans__tcp *)link)->fd, &mh,
			    MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

static ssize_t dtrans__tcp_recv(void *link, void *buf, size_t len)
{
	ssize_t n =
		recv(((struct dtrans__tcp *)link)->fd, buf, len, MSG_DONTWAIT);

	if (n < 0)
		return errno == EWOULDBLOCK ? -EAGAIN : -errno;
	return n;
}

const struct dtrans__backend_ops dtrans__tcp_ops = {
	.name = "tcp",
	.listen = dtrans__tcp_listen,
	.ep_address = dtrans__tcp_ep_address,
	.ep_fd = dtrans__tcp_fd,
	.accept = dtrans__tcp_accept,
	.ep_close = dtrans__tcp_close,
	.dial = dtrans__tcp_dial,
	.link_connected = dtrans__tcp_connected,
	.link_fd = dtrans__tcp_fd,
	.send = dtrans__tcp_send,
	.recv = dtrans__tcp_recv,
	.link_close = dtrans__tcp_close,
};
