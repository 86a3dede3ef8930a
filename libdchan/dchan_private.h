/* Private declarations of libdchan; not installed. */
#ifndef DRAGON_DCHAN_PRIVATE_H
#define DRAGON_DCHAN_PRIVATE_H

#include <dragon/dchan.h>

#endif
