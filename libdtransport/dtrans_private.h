/* Private declarations of libdtransport; not installed. */
#ifndef DRAGON_DTRANS_PRIVATE_H
#define DRAGON_DTRANS_PRIVATE_H

#include <dragon/dtransport.h>

#endif
