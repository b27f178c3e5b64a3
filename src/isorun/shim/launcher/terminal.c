/*
 * The caller's terminal around a sandbox that may take its foreground (exec.c,
 * ISORUN_SESSION_TERMINAL_JOB / _OK): noted before the clone, taken back after each wait.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <unistd.h>

#include "launcher.h"

/* Whether we were the terminal's foreground job when the sandbox started (see below). */
static int launcher_foreground;

int isorun_terminal_note(int may_take) {
    launcher_foreground = may_take && tcgetpgrp(0) > 0 && tcgetpgrp(0) == getpgrp();
    return launcher_foreground;
}

/*
 * A shell in a sandbox that shares our terminal (exec.c, ISORUN_SESSION_TERMINAL_JOB) may
 * have made one of its jobs the foreground group and died without handing it back: take
 * the terminal back, or the caller's next read from it would stop with SIGTTIN. SIGTTOU
 * blocked: we may be in the background then.
 */
void isorun_terminal_reclaim(void) {
    sigset_t ttou, old;

    if (!launcher_foreground || tcgetpgrp(0) == getpgrp())
        return;
    sigemptyset(&ttou);
    sigaddset(&ttou, SIGTTOU);
    sigprocmask(SIG_BLOCK, &ttou, &old);
    (void)tcsetpgrp(0, getpgrp());
    sigprocmask(SIG_SETMASK, &old, NULL);
}
