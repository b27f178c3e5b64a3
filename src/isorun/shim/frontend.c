/*
 * The `isorun` command's C front end. Stub: replaced by the cached-launch front end.
 */
#include <stdio.h>

#include "launcher.h"

int isorun_frontend_main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fputs("isorun-launch: front end not built yet\n", stderr);
    return 125;
}
