/* The fake QMP backend shared by fuzz_qmp.c and fuzz_qmp_socket.c: every
 * query answers, stop/cont toggle, system_reset fails with -EIO; device
 * commands: query-block echoes its arguments, x-fuzz-fail fails. */
#ifndef EMBER_FUZZ_QMP_BACKEND_H
#define EMBER_FUZZ_QMP_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/control/qmp.h"

static int state = QMP_RUN_RUNNING;

static enum qmp_run_state f_status(void *o)
{
	(void)o;
	return (enum qmp_run_state)state;
}

static int f_toggle(void *o, char *err, size_t len)
{
	(void)o; (void)err; (void)len;
	state = state == QMP_RUN_RUNNING ? QMP_RUN_PAUSED : QMP_RUN_RUNNING;
	return state == QMP_RUN_PAUSED ? 0 : 1;
}

static int f_fail(void *o, char *err, size_t len)
{
	(void)o; (void)err; (void)len;
	return -5;	/* -EIO */
}

static int f_ok(void *o, char *err, size_t len)
{
	(void)o; (void)err; (void)len;
	return 0;
}

static int f_cpu(void *o, unsigned i, struct qmp_cpu_info *ci)
{
	(void)o;
	if (i >= 2)
		return -1;
	ci->index = i;
	ci->thread_id = 100 + (pid_t)i;
	return 0;
}

static int f_device_command(void *o, const char *name, json_t *args, json_t **ret, char *err,
			    size_t len)
{
	(void)o;
	if (!args)
		abort();	/* the dispatcher always passes an object */
	if (!strcmp(name, "query-block")) {
		*ret = json_pack("[O]", args);
		return 0;
	}
	if (!strcmp(name, "x-fuzz-fail")) {
		snprintf(err, len, "fuzz device says no");
		return -22;	/* -EINVAL */
	}
	return QMP_NO_SUCH_COMMAND;
}

static void f_device_command_names(void *o, json_t *names)
{
	(void)o;
	json_array_append_new(names, json_string("query-block"));
	json_array_append_new(names, json_string("x-fuzz-fail"));
	json_array_append_new(names, json_string("query-status"));	/* a built-in wins */
}

static json_t *f_exits(void *o)
{
	(void)o;
	return json_pack("{s:i}", "total", 1);
}

static uint64_t f_mem(void *o)
{
	(void)o;
	return 1 << 27;
}

static const struct qmp_backend_ops ops_backend = {
	.query_status = f_status,
	.stop = f_toggle,
	.cont = f_toggle,
	.powerdown = f_ok,
	.reset = f_fail,
	.quit = f_ok,
	.cpu_info = f_cpu,
	.exit_stats = f_exits,
	.memory_size = f_mem,
	.device_command = f_device_command,
	.device_command_names = f_device_command_names,
};

#endif
