/*
 * The ofi backend: libfabric's connected message endpoints (FI_EP_MSG)
 * of its tcp provider, opened with dlopen.
 *
 * A link is a connected endpoint with its own event queue (connection
 * events) and completion queue, both with file-descriptor wait objects.
 * The core wants a byte stream behind one pollable descriptor, so each
 * link has an epoll set of its own holding the two queues' descriptors
 * and an eventfd that stays readable while bytes received wait in the
 * link's staging buffer; that epoll descriptor is the link's fd.  A
 * descriptor of an epoll set only ever says "readable": finished sends
 * and the connection's arrival show up as readability, and the core
 * retries a blocked write on any event of its link.
 *
 * Bytes leave in messages of at most SLOT bytes from NTX send buffers
 * and arrive in NRX receive buffers posted ahead; both are copies, which
 * keeps the core's buffers free to move.  Completions come in the order
 * the messages were sent (FI_ORDER_SAS on a connected endpoint), so the
 * staging buffer is the stream.
 *
 * Only a handful of libfabric's functions are real symbols (fi_getinfo,
 * fi_fabric, ...): those go through the table filled with dlsym; the
 * rest are inline wrappers of the objects' operation tables.
 */
#include "config.h"
#include "dtrans_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_RDMA_FABRIC_H

int dtrans__ofi_load(const char *dir, const struct dtrans__backend_ops **out)
{
	(void)dir;
	(void)out;
	return dtrans__fail(-DTRANS_E_BACKEND,
			    "the ofi backend is not built into this "
			    "libdtransport (libfabric's headers were missing "
			    "when it was configured); use \"tcp\"");
}

#else

#include <dlfcn.h>
#include <netdb.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SLOT	(64u << 10)
#define NRX	16
#define NTX	16
#define TX_CTX	0x10000u /* op contexts: rx i + 1, tx TX_CTX + i */
#define OFI_VER FI_VERSION(1, 9)

static struct {
	int (*getinfo)(uint32_t, const char *, const char *, uint64_t,
		       const struct fi_info *, struct fi_info **);
	void (*freeinfo)(struct fi_info *);
	struct fi_info *(*dupinfo)(const struct fi_info *);
	int (*fabric)(struct fi_fabric_attr *, struct fid_fabric **, void *);
	const char *(*strerror)(int);
} fi;
static const char *const fi_names[] = {"fi_getinfo",  "fi_freeinfo",
				       "fi_dupinfo",  "fi_fabric",
				       "fi_strerror", NULL};
static const char *const fi_libs[] = {"libfabric.so.1", "libfabric.so", NULL};

/* A fabric shared by a listener and the links it accepted. */
struct ofi_fab {
	struct fid_fabric *fab;
	int refs;
};

struct ofi_ep {
	struct ofi_fab *fab;
	struct fid_eq *eq;
	struct fid_pep *pep;
	int fd;
};

struct ofi_link {
	struct ofi_fab *fab;
	struct fid_domain *dom;
	struct fid_eq *eq;
	struct fid_cq *cq;
	struct fid_ep *ep;
	int fd, evfd, eqfd, cqfd;
	bool connected, closed;
	int err;
	unsigned char *rx, *tx;
	bool tx_busy[NTX];
	int ntx_busy;
	unsigned char *st; /* received, not yet taken: st[st_off, st_len) */
	size_t st_off, st_len, st_cap;
};

static void fab_unref(struct ofi_fab *f)
{
	if (f && --f->refs == 0) {
		fi_close(&f->fab->fid);
		free(f);
	}
}

static int ofi_err(int rc, const char *what, const char *addr)
{
	int e = rc < 0 ? -rc : rc;

	return dtrans__fail(e < 256 ? -e : -EIO, "libfabric %s (%s): %s", what,
			    addr ? addr : "", fi.strerror(e));
}

/* What we ask of libfabric: connected reliable messages over its tcp
 * provider, no memory registration, no context space in operations. */
static struct fi_info *hints_new(void)
{
	struct fi_info *h = fi.dupinfo(NULL);

	if (!h)
		return NULL;
	h->caps = FI_MSG;
	h->mode = 0;
	h->ep_attr->type = FI_EP_MSG;
	h->domain_attr->mr_mode = 0;
	h->domain_attr->threading = FI_THREAD_DOMAIN;
	h->tx_attr->msg_order = FI_ORDER_SAS;
	h->rx_attr->msg_order = FI_ORDER_SAS;
	h->fabric_attr->prov_name = strdup("tcp");
	if (!h->fabric_attr->prov_name) {
		fi.freeinfo(h);
		return NULL;
	}
	return h;
}

static int getinfo(const char *addr, bool source, struct fi_info **out)
{
	char host[256], port[32];
	struct fi_info *h;
	int rc = dtrans__addr_split(addr, host, sizeof host, port, sizeof port);

	if (rc < 0)
		return rc;
	h = hints_new();
	if (!h)
		return dtrans__fail(-ENOMEM, "no memory for libfabric hints");
	rc = fi.getinfo(OFI_VER, host, port, source ? FI_SOURCE : 0, h, out);
	fi.freeinfo(h);
	if (rc == -FI_ENODATA)
		return dtrans__fail(-DTRANS_E_BACKEND,
				    "libfabric has no tcp provider with "
				    "connected message endpoints for %s "
				    "(fi_info -p tcp -t FI_EP_MSG lists "
				    "them); use another backend",
				    addr);
	return rc ? ofi_err(rc, "fi_getinfo", addr) : 0;
}

static int fab_open(struct fi_info *info, struct ofi_fab **out)
{
	struct ofi_fab *f = calloc(1, sizeof *f);
	int rc;

	if (!f)
		return -ENOMEM;
	rc = fi.fabric(info->fabric_attr, &f->fab, NULL);
	if (rc) {
		free(f);
		return ofi_err(rc, "fi_fabric", info->fabric_attr->name);
	}
	f->refs = 1;
	*out = f;
	return 0;
}

static int wait_fd(struct fid *fid, int *fd)
{
	int rc = fi_control(fid, FI_GETWAIT, fd);

	return rc ? ofi_err(rc, "fi_control(FI_GETWAIT)", NULL) : 0;
}

static void ev_set(int fd, bool on)
{
	uint64_t v = 1;

	if (on) {
		if (write(fd, &v, sizeof v) < 0) { /* already counting */
		}
	} else if (read(fd, &v, sizeof v) < 0) { /* already clear */
	}
}

static int post_rx(struct ofi_link *l, int i)
{
	ssize_t rc = fi_recv(l->ep, l->rx + (size_t)i * SLOT, SLOT, NULL, 0,
			     (void *)(uintptr_t)(i + 1));

	return rc ? ofi_err((int)rc, "fi_recv", NULL) : 0;
}

static void link_free(struct ofi_link *l)
{
	if (l->ep)
		fi_close(&l->ep->fid);
	if (l->cq)
		fi_close(&l->cq->fid);
	if (l->eq)
		fi_close(&l->eq->fid);
	if (l->dom)
		fi_close(&l->dom->fid);
	fab_unref(l->fab);
	if (l->fd >= 0)
		close(l->fd);
	if (l->evfd >= 0)
		close(l->evfd);
	free(l->rx);
	free(l->tx);
	free(l->st);
	free(l);
}

static int epoll_add(int epfd, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN};

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

/* An endpoint of info on fabric f (a reference is taken), with its
 * queues, its descriptors and its receive buffers posted. */
static int link_open(struct ofi_fab *f, struct fi_info *info,
		     struct ofi_link **out)
{
	struct fi_eq_attr eqa = {.size = 16, .wait_obj = FI_WAIT_FD};
	struct fi_cq_attr cqa = {.size = NRX + NTX + 16,
				 .format = FI_CQ_FORMAT_MSG,
				 .wait_obj = FI_WAIT_FD};
	struct ofi_link *l = calloc(1, sizeof *l);
	int rc;

	if (!l)
		return -ENOMEM;
	l->fd = l->evfd = -1;
	l->fab = f;
	f->refs++;
	l->rx = malloc((size_t)NRX * SLOT);
	l->tx = malloc((size_t)NTX * SLOT);
	l->fd = epoll_create1(EPOLL_CLOEXEC);
	l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (!l->rx || !l->tx || l->fd < 0 || l->evfd < 0) {
		link_free(l);
		return dtrans__fail(-ENOMEM, "no memory or descriptors for an "
					     "ofi link");
	}
	if ((rc = fi_domain(f->fab, info, &l->dom, NULL)))
		rc = ofi_err(rc, "fi_domain", info->domain_attr->name);
	else if ((rc = fi_eq_open(f->fab, &eqa, &l->eq, NULL)))
		rc = ofi_err(rc, "fi_eq_open", NULL);
	else if ((rc = fi_cq_open(l->dom, &cqa, &l->cq, NULL)))
		rc = ofi_err(rc, "fi_cq_open", NULL);
	else if ((rc = fi_endpoint(l->dom, info, &l->ep, NULL)))
		rc = ofi_err(rc, "fi_endpoint", NULL);
	else if ((rc = fi_ep_bind(l->ep, &l->eq->fid, 0)) ||
		 (rc = fi_ep_bind(l->ep, &l->cq->fid, FI_TRANSMIT | FI_RECV)))
		rc = ofi_err(rc, "fi_ep_bind", NULL);
	else if ((rc = fi_enable(l->ep)))
		rc = ofi_err(rc, "fi_enable", NULL);
	if (rc == 0 && (rc = wait_fd(&l->eq->fid, &l->eqfd)) == 0 &&
	    (rc = wait_fd(&l->cq->fid, &l->cqfd)) == 0 &&
	    (rc = epoll_add(l->fd, l->eqfd)) == 0 &&
	    (rc = epoll_add(l->fd, l->cqfd)) == 0)
		rc = epoll_add(l->fd, l->evfd);
	for (int i = 0; rc == 0 && i < NRX; i++)
		rc = post_rx(l, i);
	if (rc) {
		link_free(l);
		return rc;
	}
	*out = l;
	return 0;
}

static int stage(struct ofi_link *l, const void *p, size_t n)
{
	if (l->st_off == l->st_len)
		l->st_off = l->st_len = 0;
	if (l->st_len + n > l->st_cap) {
		size_t cap = l->st_cap ? l->st_cap : 2 * SLOT;
		unsigned char *s;

		if (l->st_off) {
			memmove(l->st, l->st + l->st_off,
				l->st_len - l->st_off);
			l->st_len -= l->st_off;
			l->st_off = 0;
		}
		while (cap < l->st_len + n)
			cap *= 2;
		if (cap != l->st_cap) {
			s = realloc(l->st, cap);
			if (!s)
				return -ENOMEM;
			l->st = s;
			l->st_cap = cap;
		}
	}
	memcpy(l->st + l->st_len, p, n);
	l->st_len += n;
	return 0;
}

/* Connection events: established, shut down, failed. */
static void link_eq(struct ofi_link *l)
{
	struct fi_eq_cm_entry e;
	uint32_t ev;
	ssize_t n;

	while ((n = fi_eq_read(l->eq, &ev, &e, sizeof e, 0)) > 0) {
		if (ev == FI_CONNECTED)
			l->connected = true;
		else if (ev == FI_SHUTDOWN)
			l->closed = true;
	}
	if (n == -FI_EAVAIL) {
		struct fi_eq_err_entry ee = {0};

		fi_eq_readerr(l->eq, &ee, 0);
		l->err = ee.err > 0 && ee.err < 256 ? -ee.err : -ECONNREFUSED;
		if (l->err == -EIO || l->err == -ENODATA)
			l->err = -ECONNREFUSED;
		l->closed = true;
	}
}

/* Completions: a send buffer is free again, or a message arrived. */
static void link_cq(struct ofi_link *l)
{
	struct fi_cq_msg_entry ce[16];
	ssize_t n;

	while ((n = fi_cq_read(l->cq, ce, 16)) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			uintptr_t c = (uintptr_t)ce[i].op_context;

			if (c >= TX_CTX) {
				l->tx_busy[c - TX_CTX] = false;
				l->ntx_busy--;
				continue;
			}
			if (stage(l, l->rx + (c - 1) * SLOT, ce[i].len) < 0 ||
			    post_rx(l, (int)c - 1) < 0) {
				l->err = -ENOMEM;
				l->closed = true;
			}
		}
	}
	if (n == -FI_EAVAIL) {
		struct fi_cq_err_entry ee = {0};

		fi_cq_readerr(l->cq, &ee, 0);
		/* buffers flushed by a shutdown are not an error of ours */
		if (!l->closed)
			l->err = ee.err == FI_ECANCELED ? 0 : -ECONNRESET;
		l->closed = true;
	}
}

static void link_progress(struct ofi_link *l)
{
	link_eq(l);
	if (l->connected)
		link_cq(l);
}

static int ofi_listen(const char *addr, void **ep_out)
{
	struct fi_eq_attr eqa = {.size = 64, .wait_obj = FI_WAIT_FD};
	struct fi_info *info;
	struct ofi_ep *e;
	int rc;

	rc = getinfo(addr, true, &info);
	if (rc < 0)
		return rc;
	e = calloc(1, sizeof *e);
	if (!e) {
		fi.freeinfo(info);
		return -ENOMEM;
	}
	rc = fab_open(info, &e->fab);
	if (rc == 0 && (rc = fi_eq_open(e->fab->fab, &eqa, &e->eq, NULL)))
		rc = ofi_err(rc, "fi_eq_open", addr);
	if (rc == 0 && (rc = fi_passive_ep(e->fab->fab, info, &e->pep, NULL)))
		rc = ofi_err(rc, "fi_passive_ep", addr);
	if (rc == 0 && (rc = fi_pep_bind(e->pep, &e->eq->fid, 0)))
		rc = ofi_err(rc, "fi_pep_bind", addr);
	if (rc == 0 && (rc = fi_listen(e->pep)))
		rc = dtrans__fail(rc == -FI_EADDRINUSE ? -EADDRINUSE : -EIO,
				  "cannot listen on %s: %s", addr,
				  fi.strerror(-rc));
	if (rc == 0)
		rc = wait_fd(&e->eq->fid, &e->fd);
	fi.freeinfo(info);
	if (rc) {
		if (e->pep)
			fi_close(&e->pep->fid);
		if (e->eq)
			fi_close(&e->eq->fid);
		fab_unref(e->fab);
		free(e);
		return rc;
	}
	*ep_out = e;
	return 0;
}

static int ofi_ep_address(void *ep, char *buf, size_t len)
{
	struct ofi_ep *e = ep;
	struct sockaddr_storage ss;
	size_t sl = sizeof ss;
	int rc = fi_getname(&e->pep->fid, &ss, &sl);

	if (rc)
		return ofi_err(rc, "fi_getname", NULL);
	return dtrans__addr_format((struct sockaddr *)&ss, (unsigned)sl, buf,
				   len);
}

static int ofi_ep_fd(void *ep)
{
	return ((struct ofi_ep *)ep)->fd;
}

static int ofi_accept(void *ep, void **link_out)
{
	struct ofi_ep *e = ep;
	struct fi_eq_cm_entry ce;
	struct ofi_link *l;
	uint32_t ev;
	ssize_t n;
	int rc;

	for (;;) {
		n = fi_eq_read(e->eq, &ev, &ce, sizeof ce, 0);
		if (n == -FI_EAVAIL) { /* a failed request: not ours to keep */
			struct fi_eq_err_entry ee = {0};

			fi_eq_readerr(e->eq, &ee, 0);
			continue;
		}
		if (n <= 0)
			return -EAGAIN;
		if (ev == FI_CONNREQ)
			break;
	}
	rc = link_open(e->fab, ce.info, &l);
	if (rc == 0 && (rc = fi_accept(l->ep, NULL, 0))) {
		rc = ofi_err(rc, "fi_accept", NULL);
		link_free(l);
	} else if (rc)
		fi_reject(e->pep, ce.info->handle, NULL, 0);
	fi.freeinfo(ce.info);
	if (rc)
		return rc == -EAGAIN ? -EIO : rc;
	*link_out = l;
	return 0;
}

static void ofi_ep_close(void *ep)
{
	struct ofi_ep *e = ep;

	if (!e)
		return;
	fi_close(&e->pep->fid);
	fi_close(&e->eq->fid);
	fab_unref(e->fab);
	free(e);
}

static int ofi_dial(const char *addr, void **link_out)
{
	struct fi_info *info;
	struct ofi_fab *f;
	struct ofi_link *l;
	int rc;

	rc = getinfo(addr, false, &info);
	if (rc < 0)
		return rc;
	rc = fab_open(info, &f);
	if (rc == 0) {
		rc = link_open(f, info, &l);
		fab_unref(f); /* the link holds it */
	}
	if (rc == 0 && (rc = fi_connect(l->ep, info->dest_addr, NULL, 0))) {
		rc = ofi_err(rc, "fi_connect", addr);
		link_free(l);
	}
	fi.freeinfo(info);
	if (rc)
		return rc;
	*link_out = l;
	return 0;
}

static int ofi_connected(void *link)
{
	struct ofi_link *l = link;

	link_progress(l);
	if (l->connected)
		return 0;
	if (l->closed)
		return l->err ? l->err : -ECONNREFUSED;
	return -EINPROGRESS;
}

static int ofi_link_fd(void *link)
{
	return ((struct ofi_link *)link)->fd;
}

static ssize_t ofi_send(void *link, const struct iovec *iov, int iovcnt)
{
	struct ofi_link *l = link;
	size_t done = 0;
	int k = 0;
	size_t off = 0;

	link_progress(l);
	if (l->closed)
		return l->err ? l->err : -EPIPE;
	if (!l->connected)
		return -EAGAIN;
	for (int i = 0; i < NTX && k < iovcnt; i++) {
		unsigned char *b = l->tx + (size_t)i * SLOT;
		size_t n = 0;
		ssize_t rc;

		if (l->tx_busy[i])
			continue;
		while (k < iovcnt && n < SLOT) { /* fill one message */
			size_t m = iov[k].iov_len - off;

			if (m > SLOT - n)
				m = SLOT - n;
			memcpy(b + n, (const char *)iov[k].iov_base + off, m);
			n += m;
			off += m;
			if (off == iov[k].iov_len) {
				k++;
				off = 0;
			}
		}
		if (n == 0)
			break;
		rc = fi_send(l->ep, b, n, NULL, 0,
			     (void *)(uintptr_t)(TX_CTX + (unsigned)i));
		if (rc == -FI_EAGAIN) {
			link_cq(l); /* the provider's queue: let it drain */
			if (!done && !l->ntx_busy)
				ev_set(l->evfd, true); /* nothing to wake us */
			break;
		}
		if (rc)
			return ofi_err((int)rc, "fi_send", NULL);
		l->tx_busy[i] = true;
		l->ntx_busy++;
		done += n;
	}
	return done ? (ssize_t)done : -EAGAIN;
}

static ssize_t ofi_recv(void *link, void *buf, size_t len)
{
	struct ofi_link *l = link;

	for (int tries = 0; tries < 4; tries++) {
		struct fid *fids[2];
		size_t n;

		link_progress(l);
		n = l->st_len - l->st_off;
		if (n) {
			if (n > len)
				n = len;
			memcpy(buf, l->st + l->st_off, n);
			l->st_off += n;
			/* readable while staged bytes remain */
			ev_set(l->evfd, l->st_off < l->st_len);
			return (ssize_t)n;
		}
		ev_set(l->evfd, false);
		if (l->closed)
			return l->err;
		fids[0] = &l->eq->fid;
		fids[1] = &l->cq->fid;
		if (fi_trywait(l->fab->fab, fids, l->connected ? 2 : 1) == 0)
			break;
	}
	return -EAGAIN;
}

static void ofi_link_close(void *link)
{
	if (link)
		link_free(link);
}

static const struct dtrans__backend_ops ofi_ops = {
	.name = "ofi",
	.listen = ofi_listen,
	.ep_address = ofi_ep_address,
	.ep_fd = ofi_ep_fd,
	.accept = ofi_accept,
	.ep_close = ofi_ep_close,
	.dial = ofi_dial,
	.link_connected = ofi_connected,
	.link_fd = ofi_link_fd,
	.send = ofi_send,
	.recv = ofi_recv,
	.link_close = ofi_link_close,
};

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static void *lib;

int dtrans__ofi_load(const char *dir, const struct dtrans__backend_ops **out)
{
	void *h;
	int rc = 0;

	pthread_mutex_lock(&load_mu);
	if (!lib) {
		rc = dtrans__dl_open("ofi", dir, fi_libs, &h);
		if (rc == 0) {
			void *tab[sizeof fi / sizeof(void *)];

			rc = dtrans__dl_syms(h, "ofi", fi_names, tab);
			if (rc == 0) {
				memcpy(&fi, tab, sizeof fi);
				lib = h;
			} else
				dlclose(h);
		}
	}
	pthread_mutex_unlock(&load_mu);
	if (rc == 0)
		*out = &ofi_ops;
	return rc;
}

#endif
