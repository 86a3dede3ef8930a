/*
 * The public message calls.  A channel of this node is worked on in its
 * own ring (dchan_send.c, dchan_recv.c); one of another node through the
 * gateway (dchan_gw_client.c), which itself sends and receives on local
 * channels.  Dispatching here, above both, keeps the local calls below
 * the gateway client.
 */
#include "config.h"
#include "dchan_private.h"

DCHAN_EXPORT int dchan_send(dchan_t *ch, const void *buf, size_t len,
			    uint64_t timeout_ns)
{
	if (!ch || (!buf && len))
		return dchan__fail(-EINVAL, "NULL channel or buffer");
	if (ch->remote)
		return dchan__gw_send(ch, buf, len, timeout_ns);
	return dchan__send_local(ch, buf, len, timeout_ns);
}

DCHAN_EXPORT int dchan_send_zc(dchan_t *ch, void *ptr, size_t len,
			       uint64_t timeout_ns)
{
	if (!ch || !ptr)
		return dchan__fail(-EINVAL, "NULL channel or allocation");
	if (ch->remote)
		return dchan__fail(-DCHAN_E_REMOTE, "zero-copy send to a "
						    "channel on another node");
	return dchan__send_zc_local(ch, ptr, len, timeout_ns);
}

DCHAN_EXPORT int dchan_recv(dchan_t *ch, void *buf, size_t cap,
			    uint64_t timeout_ns, size_t *len_out)
{
	if (!ch || (!buf && cap) || !len_out)
		return dchan__fail(-EINVAL, "NULL channel, buffer or output");
	if (ch->remote)
		return dchan__gw_recv(ch, DCHAN_GW_RECV, buf, cap, timeout_ns,
				      len_out);
	return dchan__recv_local(ch, buf, cap, timeout_ns, len_out);
}

DCHAN_EXPORT int dchan_recv_zc(dchan_t *ch, uint64_t timeout_ns,
			       dchan_msg_t *msg_out)
{
	if (!ch || !msg_out)
		return dchan__fail(-EINVAL, "NULL channel or output");
	if (ch->remote)
		return dchan__fail(-DCHAN_E_REMOTE, "zero-copy receive from a "
						    "channel on another node");
	return dchan__recv_zc_local(ch, timeout_ns, msg_out);
}

DCHAN_EXPORT int dchan_peek(dchan_t *ch, void *buf, size_t cap,
			    uint64_t timeout_ns, size_t *len_out)
{
	if (!ch || (!buf && cap) || !len_out)
		return dchan__fail(-EINVAL, "NULL channel, buffer or output");
	if (ch->remote)
		return dchan__gw_recv(ch, DCHAN_GW_PEEK, buf, cap, timeout_ns,
				      len_out);
	return dchan__peek_local(ch, buf, cap, timeout_ns, len_out);
}
