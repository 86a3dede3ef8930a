/* Writing a whole buffer to a pipe or terminal (not installed): shared by
 * the I/O thread (iothread.c) and the programs dragon and dragon-backend,
 * which link libdlaunch but cannot call its hidden functions. */
#ifndef DRAGON_FDIO_H
#define DRAGON_FDIO_H

#include <errno.h>
#include <stddef.h>
#include <unistd.h>

/* Write n bytes of p to fd, again after EINTR; stop without a word when
 * the reader went away (the output is dropped). */
static inline void write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

#endif
