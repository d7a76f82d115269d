/* Run one Check suite and turn its result into a process exit status. */
#ifndef EMBER_CK_RUN_H
#define EMBER_CK_RUN_H

#include <check.h>

int ck_run_suite(Suite *s);

#endif
