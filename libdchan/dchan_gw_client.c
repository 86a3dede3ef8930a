/* Remote channels: operations through the gateway (placeholder). */
#include "config.h"
#include "dchan_private.h"

int dchan__gw_send(dchan_t *ch, const void *buf, size_t len,
		   uint64_t timeout_ns)
{
	return dchan__fail(-DCHAN_E_NOGATEWAY, "no gateway");
}

int dchan__gw_recv(dchan_t *ch, int op, void *buf, size_t cap,
		   uint64_t timeout_ns, size_t *len_out)
{
	return dchan__fail(-DCHAN_E_NOGATEWAY, "no gateway");
}

int dchan__gw_poll(dchan_t *ch, unsigned events, uint64_t timeout_ns,
		   unsigned *revents_out)
{
	return dchan__fail(-DCHAN_E_NOGATEWAY, "no gateway");
}

int dchan__gw_stats(dchan_t *ch, dchan_stats_t *st)
{
	return dchan__fail(-DCHAN_E_NOGATEWAY, "no gateway");
}
