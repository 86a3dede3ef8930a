/* libFuzzer target: gateway request and completion decoding; whatever
 * decodes must encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "dchan_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	dchan_gw_req_t r;
	dchan_gw_cpl_t c;
	uint8_t *out;
	int64_t n;

	if (dchan_gw_req_decode(data, size, &r) == 0) {
		out = malloc(size);
		n = dchan_gw_req_encode(&r, out, size);
		if (n != (int64_t)size || memcmp(out, data, size) != 0)
			abort();
		free(out);
	}
	if (dchan_gw_cpl_decode(data, size, &c) == 0) {
		out = malloc(size);
		n = dchan_gw_cpl_encode(&c, out, size);
		if (n != (int64_t)size || memcmp(out, data, size) != 0)
			abort();
		free(out);
	}
	return 0;
}
