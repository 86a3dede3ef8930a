/* A program a user writes against an installed Dragon: it includes the
 * public headers and links through pkg-config, nothing from the tree. */
#include <stdio.h>
#include <dragon/dlaunch.h>

static void show(const char *name, unsigned v)
{
	printf("%s %u.%u.%u\n", name, v >> 16, (v >> 8) & 0xff, v & 0xff);
}

int main(void)
{
	show("libdmem", dmem_version());
	show("libdchan", dchan_version());
	show("libdtransport", dtrans_version());
	show("libdlaunch", dlaunch_version());
	return dmem_version() == DMEM_VERSION_NUMBER &&
			       dlaunch_version() == DLAUNCH_VERSION_NUMBER
		       ? 0
		       : 1;
}
