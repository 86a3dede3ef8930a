/* SPDX-License-Identifier: MIT */
/*
 * segname.c - the names of pool segments: dragon.<user>.<instance>.<name>.
 *
 * The name is the only thing that ties a segment in /dev/shm to its owner
 * and its runtime: dragon-cleanup and the runtime's watchdogs find a
 * runtime's segments by it and by nothing else.  So it is built and
 * recognised here alone, and every program that looks for segments calls
 * these two functions (dragon-cleanup links this file statically).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dmem_private.h"

#define SEG_PREFIX    "dragon."
#define SEG_USER_MAX  32 /* longer user names are cut */
#define SEG_NAME_MAX  64
#define SEG_USER_SIZE (SEG_USER_MAX + 1)

/* 1..max characters of [A-Za-z0-9_-]: no dot, no slash. */
static int valid_token(const char *s, size_t max)
{
	size_t n = 0;

	for (; s[n]; n++)
		if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
			return 0;
	return n > 0 && n <= max;
}

/* This process's user as segment names spell it: the name of the
 * effective uid ($USER if it has none, else uid<N>), with characters
 * outside [A-Za-z0-9_-] replaced by '_'. */
static void user_name(char *buf, size_t len)
{
	struct passwd pw, *res = NULL;
	char tmp[1024];
	const char *name = NULL;

	if (getpwuid_r(geteuid(), &pw, tmp, sizeof(tmp), &res) == 0 && res)
		name = res->pw_name;
	if (!name || !*name)
		name = getenv("USER");
	if (!name || !*name) {
		snprintf(buf, len, "uid%u", (unsigned)geteuid());
		return;
	}
	snprintf(buf, len, "%s", name);
	for (char *c = buf; *c; c++)
		if (!isalnum((unsigned char)*c) && *c != '_' && *c != '-')
			*c = '_';
}

DMEM_EXPORT int dmem_segname_format(const char *user, const char *instance,
				    const char *name, char *buf, size_t len)
{
	char me[SEG_USER_SIZE], inst[DMEM_INSTANCE_MAX + 1];

	if (!buf)
		return dmem__fail(-EINVAL, "segment name buffer is NULL");
	if (!name || !valid_token(name, SEG_NAME_MAX))
		return dmem__fail(-EINVAL,
				  "pool name '%.80s' is invalid: use 1-%d of "
				  "[A-Za-z0-9_-]",
				  name ? name : "(null)", SEG_NAME_MAX);
	if (user && !valid_token(user, SEG_USER_MAX))
		return dmem__fail(-EINVAL,
				  "user '%.80s' is invalid: use 1-%d of "
				  "[A-Za-z0-9_-]",
				  user, SEG_USER_MAX);
	if (!instance)
		instance = getenv("DRAGON_INSTANCE");
	if (instance && !valid_token(instance, DMEM_INSTANCE_MAX))
		return dmem__fail(-DMEM_E_ENV,
				  "instance '%.60s' (argument, attribute or "
				  "DRAGON_INSTANCE) is invalid: use 1-%d of "
				  "[A-Za-z0-9_-]",
				  instance, DMEM_INSTANCE_MAX);
	if (instance)
		snprintf(inst, sizeof(inst), "%s", instance);
	else
		snprintf(inst, sizeof(inst), "p%d", (int)dmem__self_pid());
	if (!user) {
		user_name(me, sizeof(me));
		user = me;
	}
	if ((size_t)snprintf(buf, len, SEG_PREFIX "%s.%s.%s", user, inst,
			     name) >= len)
		return dmem__fail(
			-ENAMETOOLONG,
			"segment name dragon.%s.%s.%s does not fit "
			"%zu bytes (DMEM_SEGNAME_MAX is always enough)",
			user, inst, name, len);
	return 0;
}

/* Copy the dot-free part at *s (at most max chars) into out and step past
 * it and the dot after it (last: the end of the string instead). */
static int take_part(const char **s, size_t max, bool last, char *out)
{
	const char *end = strchr(*s, '.');
	size_t n = end ? (size_t)(end - *s) : strlen(*s);

	if (n == 0 || n > max || (last ? end != NULL : end == NULL))
		return -1;
	memcpy(out, *s, n);
	out[n] = '\0';
	*s += n + (last ? 0 : 1);
	return valid_token(out, max) ? 0 : -1;
}

DMEM_EXPORT int dmem_segname_match(const char *segname, const char *user,
				   const char *instance)
{
	char u[SEG_USER_SIZE], i[DMEM_INSTANCE_MAX + 1], n[SEG_NAME_MAX + 1];
	char me[SEG_USER_SIZE];
	const char *s = segname;

	if (!segname)
		return dmem__fail(-EINVAL, "segment name is NULL");
	if (strncmp(s, SEG_PREFIX, strlen(SEG_PREFIX)))
		return 0;
	s += strlen(SEG_PREFIX);
	if (take_part(&s, SEG_USER_MAX, false, u) ||
	    take_part(&s, DMEM_INSTANCE_MAX, false, i) ||
	    take_part(&s, SEG_NAME_MAX, true, n))
		return 0;
	if (!user) {
		user_name(me, sizeof(me));
		user = me;
	}
	return !strcmp(u, user) && (!instance || !strcmp(i, instance));
}
