/*
 * The ucx backend: UCP stream endpoints connected by socket address (a
 * UCP listener on "host:port"), opened with dlopen.
 *
 * UCP's stream API is the byte stream the core wants; what needs care is
 * the one descriptor per link.  A UCP worker has one wake-up descriptor
 * (armed with ucp_worker_arm) for everything on it.  The listener has a
 * worker, shared by the links it accepted (UCP accepts a connection
 * request on the listener's worker); a dialed link has one of its own.
 * Each link gets an epoll set of its own holding its worker's descriptor
 * and an eventfd of the link; that epoll descriptor is the link's fd.
 * Whoever progresses a worker marks every endpoint with stream data
 * waiting (ucp_stream_worker_poll) by its link's eventfd, so a link that
 * shares the worker wakes even when another link's call consumed the
 * worker's wake-up.  The eventfd also carries "a send finished" and
 * "the endpoint failed"; the core retries a blocked write on any event.
 *
 * Sends are copied (the core's buffer moves) and left to UCP; a link
 * stops taking bytes while more than TX_MAX of them are in flight.
 * All UCP calls come from the agent's thread; the context is the
 * process's, made once.
 */
#include "config.h"
#include "dtrans_private.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef HAVE_UCP_API_UCP_H

int dtrans__ucx_load(const char *dir, const struct dtrans__backend_ops **out)
{
	(void)dir;
	(void)out;
	return dtrans__fail(-DTRANS_E_BACKEND,
			    "the ucx backend is not built into this "
			    "libdtransport (UCX's headers were missing when "
			    "it was configured); use \"tcp\"");
}

#else

#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <ucp/api/ucp.h>
#include <unistd.h>

#define TX_MAX	    (16u << 20)
#define NCONNREQ    64
#define CLOSE_SPINS 100000
#define LINGER_NS   100000000ull /* progress after a close (see ep_close) */

static struct {
	ucs_status_t (*config_read)(const char *, const char *,
				    ucp_config_t **);
	ucs_status_t (*config_modify)(ucp_config_t *, const char *,
				      const char *);
	void (*config_release)(ucp_config_t *);
	ucs_status_t (*init_version)(unsigned, unsigned, const ucp_params_t *,
				     const ucp_config_t *, ucp_context_h *);
	ucs_status_t (*worker_create)(ucp_context_h,
				      const ucp_worker_params_t *,
				      ucp_worker_h *);
	void (*worker_destroy)(ucp_worker_h);
	ucs_status_t (*worker_get_efd)(ucp_worker_h, int *);
	ucs_status_t (*worker_arm)(ucp_worker_h);
	unsigned (*worker_progress)(ucp_worker_h);
	ucs_status_t (*listener_create)(ucp_worker_h,
					const ucp_listener_params_t *,
					ucp_listener_h *);
	void (*listener_destroy)(ucp_listener_h);
	ucs_status_t (*listener_query)(ucp_listener_h, ucp_listener_attr_t *);
	ucs_status_t (*listener_reject)(ucp_listener_h, ucp_conn_request_h);
	ucs_status_t (*ep_create)(ucp_worker_h, const ucp_ep_params_t *,
				  ucp_ep_h *);
	ucs_status_ptr_t (*ep_close_nbx)(ucp_ep_h, const ucp_request_param_t *);
	ucs_status_ptr_t (*stream_send_nbx)(ucp_ep_h, const void *, size_t,
					    const ucp_request_param_t *);
	ucs_status_ptr_t (*stream_recv_data_nb)(ucp_ep_h, size_t *);
	void (*stream_data_release)(ucp_ep_h, void *);
	ssize_t (*stream_worker_poll)(ucp_worker_h, ucp_stream_poll_ep_t *,
				      size_t, unsigned);
	ucs_status_t (*request_check_status)(void *);
	void (*request_free)(void *);
	const char *(*status_string)(ucs_status_t);
} ucx;
static const char *const ucx_names[] = {"ucp_config_read",
					"ucp_config_modify",
					"ucp_config_release",
					"ucp_init_version",
					"ucp_worker_create",
					"ucp_worker_destroy",
					"ucp_worker_get_efd",
					"ucp_worker_arm",
					"ucp_worker_progress",
					"ucp_listener_create",
					"ucp_listener_destroy",
					"ucp_listener_query",
					"ucp_listener_reject",
					"ucp_ep_create",
					"ucp_ep_close_nbx",
					"ucp_stream_send_nbx",
					"ucp_stream_recv_data_nb",
					"ucp_stream_data_release",
					"ucp_stream_worker_poll",
					"ucp_request_check_status",
					"ucp_request_free",
					"ucs_status_string",
					NULL};
static const char *const ucx_libs[] = {"libucp.so.0", "libucp.so", NULL};

static pthread_mutex_t load_mu = PTHREAD_MUTEX_INITIALIZER;
static void *lib;
static ucp_context_h ctx; /* made at the first listen or dial */

static int ctx_init(const char *dev);

/* A worker and the links on it. */
struct ucx_wk {
	ucp_worker_h w;
	int efd;
	int refs;
	int poke;	    /* the listener's eventfd; -1: a dialed link's */
	uint64_t linger_ns; /* progress it until then (0: no need) */
};

struct ucx_tx;

struct ucx_link {
	struct ucx_wk *wk;
	ucp_ep_h ep;
	int fd, evfd;
	int err;	     /* set by the error handler */
	ucs_status_t err_st; /* and UCX's status, for the log */
	char why[96];
	void *rdata; /* UCP's received bytes, [roff, rlen) not yet taken */
	size_t roff, rlen;
	size_t inflight;
	struct ucx_tx *txs;
};

struct ucx_tx {
	struct ucx_link *l; /* NULL once the link is closed */
	size_t len;
	struct ucx_tx *next, *prev;
	unsigned char data[];
};

struct ucx_ep {
	struct ucx_wk *wk;
	ucp_listener_h lst;
	int fd, evfd;
	ucp_conn_request_h req[NCONNREQ];
	int nreq;
};

/* The errno closest to a UCS status. */
static int st_errno(ucs_status_t st)
{
	int e;

	switch (st) {
	case UCS_ERR_NO_MEMORY:
		e = ENOMEM;
		break;
	case UCS_ERR_BUSY:
		e = EADDRINUSE;
		break;
	case UCS_ERR_UNREACHABLE:
		e = EHOSTUNREACH;
		break;
	case UCS_ERR_CONNECTION_RESET:
		e = ECONNRESET;
		break;
	case UCS_ERR_REJECTED:
	case UCS_ERR_NOT_CONNECTED:
		e = ECONNREFUSED;
		break;
	case UCS_ERR_ENDPOINT_TIMEOUT:
		e = ETIMEDOUT;
		break;
	case UCS_ERR_INVALID_ADDR:
		e = EADDRNOTAVAIL;
		break;
	default:
		e = EIO;
	}
	return e;
}

static int ucx_fail(ucs_status_t st, const char *what, const char *addr)
{
	return dtrans__fail(-st_errno(st), "UCX %s%s%s: %s", what,
			    addr ? " " : "", addr ? addr : "",
			    ucx.status_string(st));
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

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The name of the network device that holds address sa (false: none,
 * or a wildcard address). */
static bool dev_of(const struct sockaddr *sa, char *dev, size_t len)
{
	struct ifaddrs *ifs, *i;
	bool found = false;

	if (getifaddrs(&ifs) < 0)
		return false;
	for (i = ifs; i && !found; i = i->ifa_next) {
		const struct sockaddr *a = i->ifa_addr;

		if (!a || a->sa_family != sa->sa_family)
			continue;
		if (a->sa_family == AF_INET)
			found = !memcmp(
				&((const struct sockaddr_in *)a)->sin_addr,
				&((const struct sockaddr_in *)sa)->sin_addr,
				sizeof(struct in_addr));
		else if (a->sa_family == AF_INET6)
			found = !memcmp(
				&((const struct sockaddr_in6 *)a)->sin6_addr,
				&((const struct sockaddr_in6 *)sa)->sin6_addr,
				sizeof(struct in6_addr));
		if (found)
			snprintf(dev, len, "%s", i->ifa_name);
	}
	freeifaddrs(ifs);
	return found;
}

/* The device a link to ai would leave by: the source address the
 * kernel picks for it (a UDP socket's connect sends nothing). */
static bool dev_towards(const struct addrinfo *ai, char *dev, size_t len)
{
	struct sockaddr_storage me;
	socklen_t ml = sizeof me;
	int fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
	     getsockname(fd, (struct sockaddr *)&me, &ml) == 0 &&
	     dev_of((struct sockaddr *)&me, dev, len);
	close(fd);
	return ok;
}

/*
 * The process's UCP context, made for the first address it is asked to
 * listen on or dial.  UCX's tcp transport opens every network device
 * and tells the peer all their addresses; the peer may connect its
 * lanes through any of them.  A device that goes away (a bridge or
 * veth of another runtime or container, removed while the link idles)
 * then resets a healthy link -- and fails every operation parked on
 * it.  Unless UCX_NET_DEVICES says otherwise, the context uses only the
 * device of the agent's own address (all of them for a wildcard).
 */
static int ctx_get(const struct addrinfo *ai, bool passive)
{
	char dev[IF_NAMESIZE + 1];
	bool have;
	int rc = 0;

	pthread_mutex_lock(&load_mu);
	if (!ctx) {
		have = passive ? dev_of(ai->ai_addr, dev, sizeof dev)
			       : dev_towards(ai, dev, sizeof dev);
		rc = ctx_init(have ? dev : NULL);
	}
	pthread_mutex_unlock(&load_mu);
	return rc;
}

static int wk_new(struct ucx_wk **out)
{
	ucp_worker_params_t wp = {.field_mask =
					  UCP_WORKER_PARAM_FIELD_THREAD_MODE,
				  .thread_mode = UCS_THREAD_MODE_SINGLE};
	struct ucx_wk *wk = calloc(1, sizeof *wk);
	ucs_status_t st;

	if (!wk)
		return -ENOMEM;
	pthread_mutex_lock(&load_mu); /* the context is shared */
	st = ucx.worker_create(ctx, &wp, &wk->w);
	pthread_mutex_unlock(&load_mu);
	if (st != UCS_OK) {
		free(wk);
		return ucx_fail(st, "ucp_worker_create", NULL);
	}
	st = ucx.worker_get_efd(wk->w, &wk->efd);
	if (st != UCS_OK) {
		ucx.worker_destroy(wk->w);
		free(wk);
		return ucx_fail(st, "ucp_worker_get_efd", NULL);
	}
	wk->refs = 1;
	wk->poke = -1;
	*out = wk;
	return 0;
}

static void wk_unref(struct ucx_wk *wk)
{
	if (wk && --wk->refs == 0) {
		/* let closed endpoints' connection managers finish first: a
		 * worker destroyed with their handlers armed crashes UCX's
		 * async thread */
		for (int i = 0; i < 64; i++)
			ucx.worker_progress(wk->w);
		ucx.worker_destroy(wk->w);
		free(wk);
	}
}

/* Run the worker; mark every link with stream data waiting. */
static void wk_progress(struct ucx_wk *wk)
{
	ucp_stream_poll_ep_t pe[32];
	ssize_t n;

	while (ucx.worker_progress(wk->w))
		;
	n = ucx.stream_worker_poll(wk->w, pe, 32, 0);
	for (ssize_t i = 0; i < n; i++)
		if (pe[i].user_data)
			ev_set(((struct ucx_link *)pe[i].user_data)->evfd,
			       true);
}

static int fd_pair(int efd, int *fd, int *evfd)
{
	struct epoll_event ev = {.events = EPOLLIN};

	*fd = epoll_create1(EPOLL_CLOEXEC);
	*evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (*fd < 0 || *evfd < 0 ||
	    epoll_ctl(*fd, EPOLL_CTL_ADD, efd, &ev) < 0 ||
	    epoll_ctl(*fd, EPOLL_CTL_ADD, *evfd, &ev) < 0) {
		int rc = -errno;

		if (*fd >= 0)
			close(*fd);
		if (*evfd >= 0)
			close(*evfd);
		*fd = *evfd = -1;
		return dtrans__fail(rc, "no descriptors for a ucx link");
	}
	return 0;
}

/* The link's first failure: the errno the core sees (every status
 * of "the peer or the path is gone" was ECONNRESET; a timeout of UCX's
 * own now reads as one) and UCX's status for the log. */
static void link_failed(struct ucx_link *l, ucs_status_t st)
{
	if (l->err)
		return;
	l->err = -st_errno(st);
	if (st == UCS_ERR_UNREACHABLE) /* nobody listens there */
		l->err = -ECONNREFUSED;
	else if (l->err == -EIO)
		l->err = -ECONNRESET;
	l->err_st = st;
}

static void on_ep_error(void *arg, ucp_ep_h ep, ucs_status_t st)
{
	struct ucx_link *l = arg;

	(void)ep;
	link_failed(l, st);
	ev_set(l->evfd, true);
}

/* A link on wk (a reference is taken) for an endpoint made from p. */
static int link_new(struct ucx_wk *wk, ucp_ep_params_t *p, const char *addr,
		    struct ucx_link **out)
{
	struct ucx_link *l = calloc(1, sizeof *l);
	ucs_status_t st;
	int rc;

	if (!l)
		return -ENOMEM;
	rc = fd_pair(wk->efd, &l->fd, &l->evfd);
	if (rc < 0) {
		free(l);
		return rc;
	}
	p->field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
			 UCP_EP_PARAM_FIELD_ERR_HANDLER |
			 UCP_EP_PARAM_FIELD_USER_DATA;
	p->err_mode = UCP_ERR_HANDLING_MODE_PEER;
	p->err_handler.cb = on_ep_error;
	p->err_handler.arg = l;
	p->user_data = l;
	st = ucx.ep_create(wk->w, p, &l->ep);
	if (st != UCS_OK) {
		close(l->fd);
		close(l->evfd);
		free(l);
		return ucx_fail(st, "ucp_ep_create", addr);
	}
	l->wk = wk;
	wk->refs++;
	*out = l;
	return 0;
}

static void on_conn(ucp_conn_request_h req, void *arg)
{
	struct ucx_ep *e = arg;

	if (e->nreq == NCONNREQ) {
		ucx.listener_reject(e->lst, req);
		return;
	}
	e->req[e->nreq++] = req;
	ev_set(e->evfd, true);
}

static int ucx_listen(const char *addr, void **ep_out)
{
	ucp_listener_params_t lp = {
		.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR |
			      UCP_LISTENER_PARAM_FIELD_CONN_HANDLER};
	struct addrinfo *ai;
	struct ucx_ep *e;
	ucs_status_t st;
	int rc;

	rc = dtrans__addr_resolve(addr, true, &ai);
	if (rc < 0)
		return rc;
	e = calloc(1, sizeof *e);
	if (!e) {
		freeaddrinfo(ai);
		return -ENOMEM;
	}
	e->fd = e->evfd = -1;
	rc = ctx_get(ai, true);
	if (rc == 0)
		rc = wk_new(&e->wk);
	if (rc == 0)
		rc = fd_pair(e->wk->efd, &e->fd, &e->evfd);
	if (rc == 0) {
		e->wk->poke = e->evfd;
		lp.sockaddr.addr = ai->ai_addr;
		lp.sockaddr.addrlen = ai->ai_addrlen;
		lp.conn_handler.cb = on_conn;
		lp.conn_handler.arg = e;
		st = ucx.listener_create(e->wk->w, &lp, &e->lst);
		if (st != UCS_OK)
			rc = ucx_fail(st, "cannot listen on", addr);
	}
	freeaddrinfo(ai);
	if (rc < 0) {
		if (e->fd >= 0) {
			close(e->fd);
			close(e->evfd);
		}
		wk_unref(e->wk);
		free(e);
		return rc;
	}
	*ep_out = e;
	return 0;
}

static int ucx_ep_address(void *ep, char *buf, size_t len)
{
	struct ucx_ep *e = ep;
	ucp_listener_attr_t a = {.field_mask =
					 UCP_LISTENER_ATTR_FIELD_SOCKADDR};
	ucs_status_t st = ucx.listener_query(e->lst, &a);

	if (st != UCS_OK)
		return ucx_fail(st, "ucp_listener_query", NULL);
	return dtrans__addr_format((struct sockaddr *)&a.sockaddr,
				   a.sockaddr.ss_family == AF_INET6
					   ? sizeof(struct sockaddr_in6)
					   : sizeof(struct sockaddr_in),
				   buf, len);
}

static int ucx_ep_fd(void *ep)
{
	return ((struct ucx_ep *)ep)->fd;
}

static int ucx_link_fd(void *link)
{
	return ((struct ucx_link *)link)->fd;
}

/* Arm the worker for sleeping; false if it has news (progress again). */
static bool wk_arm(struct ucx_wk *wk)
{
	return ucx.worker_arm(wk->w) != UCS_ERR_BUSY;
}

static int ucx_accept(void *ep, void **link_out)
{
	struct ucx_ep *e = ep;
	ucp_ep_params_t p = {.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST};
	struct ucx_link *l;
	int rc;

	for (int tries = 0; e->nreq == 0; tries++) {
		wk_progress(e->wk);
		if (e->nreq)
			break;
		if (e->wk->linger_ns && mono_ns() < e->wk->linger_ns)
			return -EAGAIN; /* the descriptor stays ready */
		e->wk->linger_ns = 0;
		ev_set(e->evfd, false);
		if (tries == 4 || wk_arm(e->wk))
			return -EAGAIN;
	}
	p.conn_request = e->req[0];
	memmove(e->req, e->req + 1, (size_t)--e->nreq * sizeof e->req[0]);
	ev_set(e->evfd, e->nreq > 0);
	rc = link_new(e->wk, &p, NULL, &l);
	if (rc < 0)
		return rc == -EAGAIN ? -EIO : rc;
	*link_out = l;
	return 0;
}

/*
 * A forced close completes at once, but UCX tears the endpoint's
 * transport down -- closing the socket whose end tells the peer -- in
 * callbacks that run in the worker's later progress (some registered
 * from UCX's own thread, with no wake-up of the worker's descriptor).
 * A dialed link's worker is destroyed next, which does it; the
 * listener's worker is shared by the links it accepted, and nothing
 * might progress it again until one of their peers sends: a peer
 * dropped for a bad frame then never learns it (until UCX's keepalive,
 * tens of seconds later).  So the worker is progressed now, marking the
 * links whose data it takes in (wk_progress), and the listener's
 * descriptor stays ready for LINGER_NS, so that the agent's calls to
 * accept progress it meanwhile.
 */
static void ep_close(struct ucx_wk *wk, ucp_ep_h ep)
{
	ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS,
				 .flags = UCP_EP_CLOSE_FLAG_FORCE};
	ucs_status_ptr_t r = ucx.ep_close_nbx(ep, &p);

	if (UCS_PTR_IS_PTR(r)) {
		for (int i = 0; i < CLOSE_SPINS &&
				ucx.request_check_status(r) == UCS_INPROGRESS;
		     i++)
			ucx.worker_progress(wk->w);
		ucx.request_free(r);
	}
	wk_progress(wk);
	if (wk->poke >= 0) {
		wk->linger_ns = mono_ns() + LINGER_NS;
		ev_set(wk->poke, true);
	}
}

static void ucx_ep_close(void *ep)
{
	struct ucx_ep *e = ep;

	if (!e)
		return;
	for (int i = 0; i < e->nreq; i++)
		ucx.listener_reject(e->lst, e->req[i]);
	ucx.listener_destroy(e->lst);
	e->wk->poke = -1; /* links it accepted may outlive it */
	close(e->fd);
	close(e->evfd);
	wk_unref(e->wk);
	free(e);
}

static int ucx_dial(const char *addr, void **link_out)
{
	ucp_ep_params_t p = {.field_mask = UCP_EP_PARAM_FIELD_FLAGS |
					   UCP_EP_PARAM_FIELD_SOCK_ADDR,
			     .flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER};
	struct addrinfo *ai;
	struct ucx_wk *wk;
	struct ucx_link *l;
	int rc;

	rc = dtrans__addr_resolve(addr, false, &ai);
	if (rc < 0)
		return rc;
	rc = ctx_get(ai, false);
	if (rc == 0)
		rc = wk_new(&wk);
	if (rc == 0) {
		p.sockaddr.addr = ai->ai_addr;
		p.sockaddr.addrlen = ai->ai_addrlen;
		rc = link_new(wk, &p, addr, &l);
		wk_unref(wk); /* the link holds it */
	}
	freeaddrinfo(ai);
	if (rc < 0)
		return rc;
	*link_out = l;
	return 0;
}

/* UCP queues what is sent before the connection is up; a failure to
 * connect shows as the endpoint's error, on the link's fd. */
static int ucx_connected(void *link)
{
	struct ucx_link *l = link;

	wk_progress(l->wk);
	return l->err;
}

static void on_sent(void *req, ucs_status_t st, void *arg)
{
	struct ucx_tx *t = arg;
	struct ucx_link *l = t->l;

	(void)st;
	if (l) {
		bool was_full = l->inflight > TX_MAX;

		l->inflight -= t->len;
		if (t->prev)
			t->prev->next = t->next;
		else
			l->txs = t->next;
		if (t->next)
			t->next->prev = t->prev;
		if (was_full)
			ev_set(l->evfd, true);
	}
	free(t);
	ucx.request_free(req);
}

static ssize_t ucx_send(void *link, const struct iovec *iov, int iovcnt)
{
	struct ucx_link *l = link;
	ucp_request_param_t p = {.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK |
						 UCP_OP_ATTR_FIELD_USER_DATA,
				 .cb.send = on_sent};
	ucs_status_ptr_t r;
	struct ucx_tx *t;
	size_t n = 0, off = 0;

	wk_progress(l->wk);
	if (l->err)
		return l->err;
	if (l->inflight > TX_MAX)
		return -EAGAIN;
	for (int i = 0; i < iovcnt; i++)
		n += iov[i].iov_len;
	if (n == 0)
		return 0;
	t = malloc(sizeof *t + n);
	if (!t)
		return -ENOMEM;
	for (int i = 0; i < iovcnt; i++) {
		memcpy(t->data + off, iov[i].iov_base, iov[i].iov_len);
		off += iov[i].iov_len;
	}
	t->l = l;
	t->len = n;
	t->prev = NULL;
	t->next = l->txs;
	p.user_data = t;
	r = ucx.stream_send_nbx(l->ep, t->data, n, &p);
	if (r == NULL) { /* done at once */
		free(t);
		return (ssize_t)n;
	}
	if (UCS_PTR_IS_ERR(r)) {
		free(t);
		link_failed(l, UCS_PTR_STATUS(r));
		return ucx_fail(UCS_PTR_STATUS(r), "ucp_stream_send_nbx", NULL);
	}
	if (l->txs)
		l->txs->prev = t;
	l->txs = t;
	l->inflight += n;
	return (ssize_t)n;
}

static ssize_t ucx_recv(void *link, void *buf, size_t len)
{
	struct ucx_link *l = link;

	for (int tries = 0; tries < 4; tries++) {
		wk_progress(l->wk);
		if (!l->rdata) {
			size_t n = 0;
			ucs_status_ptr_t r = ucx.stream_recv_data_nb(l->ep, &n);

			if (UCS_PTR_IS_ERR(r))
				link_failed(l, UCS_PTR_STATUS(r));
			else if (r && !UCS_PTR_IS_ERR(r)) {
				l->rdata = r;
				l->roff = 0;
				l->rlen = n;
			}
		}
		if (l->rdata) {
			size_t n = l->rlen - l->roff;

			if (n > len)
				n = len;
			memcpy(buf, (char *)l->rdata + l->roff, n);
			l->roff += n;
			if (l->roff == l->rlen) {
				ucx.stream_data_release(l->ep, l->rdata);
				l->rdata = NULL;
			}
			/* there may be more: the next call finds out */
			ev_set(l->evfd, true);
			return (ssize_t)n;
		}
		ev_set(l->evfd, false);
		if (l->err)
			return l->err;
		if (wk_arm(l->wk))
			break;
	}
	return -EAGAIN;
}

static const char *ucx_link_error(void *link)
{
	struct ucx_link *l = link;

	if (!l->err || l->err_st == UCS_OK)
		return NULL;
	snprintf(l->why, sizeof l->why, "%s (UCX endpoint: %s)",
		 strerror(-l->err), ucx.status_string(l->err_st));
	return l->why;
}

static void ucx_link_close(void *link)
{
	struct ucx_link *l = link;

	if (!l)
		return;
	for (struct ucx_tx *t = l->txs; t; t = t->next)
		t->l = NULL; /* freed by their callbacks */
	if (l->rdata)
		ucx.stream_data_release(l->ep, l->rdata);
	ep_close(l->wk, l->ep);
	close(l->fd);
	close(l->evfd);
	wk_unref(l->wk);
	free(l);
}

static const struct dtrans__backend_ops ucx_ops = {
	.name = "ucx",
	.listen = ucx_listen,
	.ep_address = ucx_ep_address,
	.ep_fd = ucx_ep_fd,
	.accept = ucx_accept,
	.ep_close = ucx_ep_close,
	.dial = ucx_dial,
	.link_connected = ucx_connected,
	.link_fd = ucx_link_fd,
	.send = ucx_send,
	.recv = ucx_recv,
	.link_close = ucx_link_close,
	.link_error = ucx_link_error,
};

/* The process's UCP context: streams and wake-ups.  An agent talks to
 * other nodes only, so unless UCX_TLS says otherwise shared-memory
 * transports are left out (nodes in containers on one host would
 * otherwise see each other's and share no memory); dev, when known, is
 * the one network device it uses (see ctx_get).  Under load_mu. */
static int ctx_init(const char *dev)
{
	ucp_params_t pp = {.field_mask = UCP_PARAM_FIELD_FEATURES,
			   .features = UCP_FEATURE_STREAM | UCP_FEATURE_WAKEUP};
	ucp_config_t *cfg;
	ucs_status_t st;

	st = ucx.config_read(NULL, NULL, &cfg);
	if (st != UCS_OK)
		return ucx_fail(st, "ucp_config_read", NULL);
	if (!getenv("UCX_TLS"))
		ucx.config_modify(cfg, "TLS", "^sm");
	if (dev && !getenv("UCX_NET_DEVICES"))
		ucx.config_modify(cfg, "NET_DEVICES", dev);
	st = ucx.init_version(UCP_API_MAJOR, UCP_API_MINOR, &pp, cfg, &ctx);
	ucx.config_release(cfg);
	return st == UCS_OK ? 0 : ucx_fail(st, "ucp_init", NULL);
}

int dtrans__ucx_load(const char *dir, const struct dtrans__backend_ops **out)
{
	void *h = NULL, *tab[sizeof ucx / sizeof(void *)];
	int rc = 0;

	pthread_mutex_lock(&load_mu);
	if (!lib) {
		rc = dtrans__dl_open("ucx", dir, ucx_libs, &h);
		if (rc == 0)
			rc = dtrans__dl_syms(h, "ucx", ucx_names, tab);
		if (rc == 0)
			memcpy(&ucx, tab, sizeof ucx);
		if (rc == 0)
			lib = h;
		else if (h)
			dlclose(h);
	}
	pthread_mutex_unlock(&load_mu);
	if (rc == 0)
		*out = &ucx_ops;
	return rc;
}

#endif
