/* libFuzzer target: the services' message codec (libdlaunch/msg.c).
 *
 * The header's req_id chooses the fields to read, two bits each (u64,
 * bytes, string, string vector), so every reader meets every kind of
 * input in every order.  Whatever reads cleanly to its last byte must
 * encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dlaunch_private.h"

#define HDR	   sizeof(dlaunch__msg_hdr_t)
#define MAX_FIELDS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dlaunch__msg_hdr_t h;
	dlaunch__msg_t r, w;
	uint64_t plan;
	int nf = 0;

	if (dlaunch__msg_open(&r, data, size, &h))
		return 0;
	if (dlaunch__msg_init(&w, h.type, h.req_id, h.status))
		abort();
	memcpy(w.buf, data, HDR); /* the client field too */
	for (plan = h.req_id; r.pos < r.len && nf < MAX_FIELDS;
	     plan >>= 2, nf++) {
		const void *p;
		const char *s;
		char **v;
		size_t n;
		bool null;

		switch (plan & 3) {
		case 0:
			dlaunch__msg_put_u64(&w, dlaunch__msg_get_u64(&r));
			break;
		case 1:
			p = dlaunch__msg_get_bytes(&r, &n);
			if (p)
				dlaunch__msg_put_bytes(&w, p, n);
			break;
		case 2:
			s = dlaunch__msg_get_str(&r);
			if (!r.err)
				dlaunch__msg_put_str(&w, s);
			break;
		default:
			v = dlaunch__msg_get_strv(&r, &null);
			if (!r.err)
				dlaunch__msg_put_strv(&w, v);
			free(v);
			break;
		}
		if (r.err)
			break;
	}
	if (r.pos > r.len)
		abort();
	if (!r.err && r.pos == r.len &&
	    (w.err || w.len != size || memcmp(w.buf, data, size) != 0))
		abort();
	dlaunch__msg_free(&w);
	return 0;
}
