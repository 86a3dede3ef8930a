/* Private declarations of libdlaunch; not installed. */
#ifndef DRAGON_DLAUNCH_PRIVATE_H
#define DRAGON_DLAUNCH_PRIVATE_H

#include <dragon/dlaunch.h>

#endif
