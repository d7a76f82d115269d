#include "helpers/stderr_capture.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int saved_fd = -1;
static FILE *tmp;

void stderr_capture_begin(void)
{
	ck_assert_int_lt(saved_fd, 0);
	fflush(stderr);
	tmp = tmpfile();
	ck_assert_ptr_nonnull(tmp);
	saved_fd = dup(STDERR_FILENO);
	ck_assert_int_ge(saved_fd, 0);
	ck_assert_int_ge(dup2(fileno(tmp), STDERR_FILENO), 0);
}

unsigned stderr_capture_end(void)
{
	unsigned lines = 0;
	int c;

	fflush(stderr);
	ck_assert_int_ge(dup2(saved_fd, STDERR_FILENO), 0);
	close(saved_fd);
	saved_fd = -1;
	rewind(tmp);
	while ((c = fgetc(tmp)) != EOF)
		lines += c == '\n';
	fclose(tmp);
	tmp = NULL;
	return lines;
}
