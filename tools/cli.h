/* Argument parsing shared by the command-line programs. */
#ifndef PORTA_TOOLS_CLI_H
#define PORTA_TOOLS_CLI_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

/* A whole decimal integer in [lo, hi]; 0 when s is not one. */
static inline int cli_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* The exit status after a parse_args result a != 0: 1 (--help) prints the
 * usage on stdout, status 0; -1 (bad usage, message printed) prints it on
 * stderr, status 2. */
static inline int cli_usage_exit(int a, void (*usage)(FILE *))
{
    usage(a > 0 ? stdout : stderr);
    return a > 0 ? 0 : 2;
}

#endif
