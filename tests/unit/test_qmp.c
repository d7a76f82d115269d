/* The QMP control plane with a fake backend: the dispatcher and framing
 * driven directly, the socket server on a real unix socket with its evloop
 * on a thread, `ember ctl` against that server, and the sd_notify helpers. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli/ctl.h"
#include "vmm/control/fdstore.h"
#include "vmm/control/qmp.h"
#include "base/evloop.h"
#include "vmm/notify.h"
#include "helpers/ck_run.h"

/* ---- the fake backend ---- */

struct fake {
	int state;		/* enum qmp_run_state */
	int stops, conts, powerdowns, resets, quits;
	int fail;		/* next action fails with -EIO and a message */
	int device_cmds;
	unsigned ncpus;
};

#define LD(x) __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define INC(x) __atomic_add_fetch(&(x), 1, __ATOMIC_SEQ_CST)

static enum qmp_run_state fake_status(void *opaque)
{
	struct fake *f = opaque;

	return (enum qmp_run_state)LD(f->state);
}

static int fake_fail(struct fake *f, char *err, size_t errlen)
{
	if (!__atomic_exchange_n(&f->fail, 0, __ATOMIC_SEQ_CST))
		return 0;
	snprintf(err, errlen, "fake backend says no");
	return -EIO;
}

static int fake_stop(void *opaque, char *err, size_t errlen)
{
	struct fake *f = opaque;

	if (fake_fail(f, err, errlen))
		return -EIO;
	INC(f->stops);
	if (LD(f->state) == QMP_RUN_PAUSED)
		return 1;
	__atomic_store_n(&f->state, QMP_RUN_PAUSED, __ATOMIC_SEQ_CST);
	return 0;
}

static int fake_cont(void *opaque, char *err, size_t errlen)
{
	struct fake *f = opaque;

	if (fake_fail(f, err, errlen))
		return -EIO;
	INC(f->conts);
	if (LD(f->state) == QMP_RUN_RUNNING)
		return 1;
	__atomic_store_n(&f->state, QMP_RUN_RUNNING, __ATOMIC_SEQ_CST);
	return 0;
}

static int fake_powerdown(void *opaque, char *err, size_t errlen)
{
	struct fake *f = opaque;

	(void)err; (void)errlen;
	INC(f->powerdowns);
	return 0;
}

static int fake_reset(void *opaque, char *err, size_t errlen)
{
	struct fake *f = opaque;

	(void)err; (void)errlen;
	INC(f->resets);
	return 0;
}

static int fake_quit(void *opaque, char *err, size_t errlen)
{
	struct fake *f = opaque;

	(void)err; (void)errlen;
	INC(f->quits);
	__atomic_store_n(&f->state, QMP_RUN_SHUTDOWN, __ATOMIC_SEQ_CST);
	return 0;
}

static int fake_cpu(void *opaque, unsigned i, struct qmp_cpu_info *ci)
{
	struct fake *f = opaque;

	if (i >= f->ncpus)
		return -ENOENT;
	ci->index = i;
	ci->thread_id = 1000 + (pid_t)i;
	ci->socket_id = 0;
	ci->core_id = i;
	ci->thread_in_core = 0;
	return 0;
}

static json_t *fake_exits(void *opaque)
{
	(void)opaque;
	return json_pack("{s:i, s:{s:i, s:i}, s:{s:i}, s:[{s:s, s:i, s:i}]}", "total", 42,
			 "reasons", "io", 40, "hlt", 2, "devices", "serial", 17, "disks",
			 "device", "virtio0", "wr_bytes", 512, "rd_operations", 1);
}

static uint64_t fake_mem(void *opaque)
{
	(void)opaque;
	return 256ULL << 20;
}

/* Device commands: echo, fail with a reason, fail with an errno only, and
 * succeed with no return value. query-status is offered too: a built-in
 * always wins over a device. */
static int fake_device_command(void *opaque, const char *name, json_t *args, json_t **ret,
			       char *err, size_t errlen)
{
	struct fake *f = opaque;

	INC(f->device_cmds);
	ck_assert_ptr_nonnull(args);
	ck_assert(json_is_object(args));
	if (!strcmp(name, "x-fake-echo")) {
		*ret = json_pack("{s:O}", "args", args);
		return 0;
	}
	if (!strcmp(name, "x-fake-fail")) {
		snprintf(err, errlen, "fake device says no");
		return -EINVAL;
	}
	if (!strcmp(name, "x-fake-errno"))
		return -EIO;
	if (!strcmp(name, "x-fake-noret"))
		return 0;
	ck_assert_str_ne(name, "query-status");
	return QMP_NO_SUCH_COMMAND;
}

static void fake_device_command_names(void *opaque, json_t *names)
{
	static const char *const n[] = { "x-fake-echo", "x-fake-fail", "x-fake-echo",
					 "query-status", "x-fake-errno", "x-fake-noret" };

	(void)opaque;
	for (size_t i = 0; i < sizeof(n) / sizeof(n[0]); i++)
		json_array_append_new(names, json_string(n[i]));
}

static const struct qmp_backend_ops fake_ops = {
	.query_status = fake_status,
	.stop = fake_stop,
	.cont = fake_cont,
	.powerdown = fake_powerdown,
	.reset = fake_reset,
	.quit = fake_quit,
	.cpu_info = fake_cpu,
	.exit_stats = fake_exits,
	.memory_size = fake_mem,
	.device_command = fake_device_command,
	.device_command_names = fake_device_command_names,
};

static struct fake fake_init(void)
{
	return (struct fake){ .state = QMP_RUN_RUNNING, .ncpus = 2 };
}

/* ---- session helpers ---- */

struct capture {
	json_t *replies;
	json_t *events;
};

static void cap_send(void *opaque, json_t *msg)
{
	struct capture *c = opaque;

	json_array_append(c->replies, msg);
}

static void cap_event(void *opaque, const char *name, json_t *data)
{
	struct capture *c = opaque;

	json_array_append_new(c->events, qmp_event_new(name, data));
}

static struct fake sf;
static struct capture cap;
static struct qmp_session *sess;

static void sess_setup(void)
{
	sf = fake_init();
	cap.replies = json_array();
	cap.events = json_array();
	sess = qmp_session_create(&fake_ops, &sf, cap_event, &cap);
	ck_assert_ptr_nonnull(sess);
}

static void sess_teardown(void)
{
	qmp_session_destroy(sess);
	json_decref(cap.replies);
	json_decref(cap.events);
}

/* Feed raw bytes; return the replies produced (new reference). */
static json_t *feed(const void *buf, size_t len)
{
	json_t *r;

	json_array_clear(cap.replies);
	qmp_session_feed(sess, buf, len, cap_send, &cap);
	r = json_copy(cap.replies);
	json_array_clear(cap.replies);
	return r;
}

static json_t *feed_str(const char *s)
{
	return feed(s, strlen(s));
}

/* Exactly one reply to s; returned (new reference). */
static json_t *cmd1(const char *s)
{
	json_t *r = feed_str(s), *one;

	ck_assert_msg(json_array_size(r) == 1, "%zu replies to %s", json_array_size(r), s);
	one = json_incref(json_array_get(r, 0));
	json_decref(r);
	return one;
}

static const char *err_class(json_t *reply)
{
	return json_string_value(json_object_get(json_object_get(reply, "error"), "class"));
}

static const char *err_desc(json_t *reply)
{
	return json_string_value(json_object_get(json_object_get(reply, "error"), "desc"));
}

static void expect_error(json_t *reply, const char *cls, const char *desc)
{
	ck_assert_msg(err_class(reply), "not an error: %s",
		      json_dumps(reply, JSON_COMPACT));
	ck_assert_str_eq(err_class(reply), cls);
	if (desc)
		ck_assert_str_eq(err_desc(reply), desc);
}

static void expect_cmd_error(const char *s, const char *cls, const char *desc)
{
	json_t *r = cmd1(s);

	expect_error(r, cls, desc);
	json_decref(r);
}

static json_t *expect_return(const char *s)
{
	json_t *r = cmd1(s), *ret = json_object_get(r, "return");

	ck_assert_msg(ret, "no return for %s: %s", s, err_desc(r));
	json_incref(ret);
	json_decref(r);
	return ret;
}

static void negotiate(void)
{
	json_decref(expect_return("{\"execute\": \"qmp_capabilities\"}"));
	ck_assert(qmp_session_negotiated(sess));
}

/* The proof that a session survived bad input. */
static void assert_recovered(void)
{
	expect_cmd_error("{ 'execute': 'no-such-cmd' }", "CommandNotFound", NULL);
}

/* ---- dispatcher and framing ---- */

START_TEST(test_greeting)
{
	json_t *g = qmp_greeting(), *v, *q;

	q = json_object_get(g, "QMP");
	ck_assert_ptr_nonnull(q);
	v = json_object_get(json_object_get(q, "version"), "qemu");
	ck_assert_int_eq(json_integer_value(json_object_get(v, "major")), 7);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "minor")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(v, "micro")), 0);
	ck_assert(!strncmp(json_string_value(json_object_get(
		json_object_get(q, "version"), "package")), "ember ", 6));
	ck_assert(json_is_array(json_object_get(q, "capabilities")));
	ck_assert_int_eq(json_array_size(json_object_get(q, "capabilities")), 0);
	json_decref(g);
}
END_TEST

START_TEST(test_negotiation)
{
	json_t *r;

	expect_cmd_error("{\"execute\": \"query-version\"}", "CommandNotFound",
			 "Expecting capabilities negotiation with 'qmp_capabilities'");
	expect_cmd_error("{\"execute\": \"no-such\"}", "CommandNotFound",
			 "Expecting capabilities negotiation with 'qmp_capabilities'");
	ck_assert(!qmp_session_negotiated(sess));
	/* Argument checking of qmp_capabilities itself. */
	expect_cmd_error("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": \"oob\"}}",
			 "GenericError", "Parameter 'enable' expects array");
	expect_cmd_error("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [1]}}",
			 "GenericError", "Parameter 'enable[0]' expects string");
	expect_cmd_error("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"x\"]}}",
			 "GenericError", "Parameter 'enable[0]' does not accept value 'x'");
	expect_cmd_error("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}",
			 "GenericError", "Capability 'oob' not available");
	expect_cmd_error("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"x\": 1}}",
			 "GenericError", "Parameter 'x' is unexpected");
	ck_assert(!qmp_session_negotiated(sess));

	r = expect_return("{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": []}}");
	ck_assert(json_is_object(r) && json_object_size(r) == 0);
	json_decref(r);
	ck_assert(qmp_session_negotiated(sess));
	expect_cmd_error("{\"execute\": \"qmp_capabilities\"}", "CommandNotFound",
			 "Capabilities negotiation is already complete, command ignored");
	r = expect_return("{\"execute\": \"query-version\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "qemu"), "major")), 7);
	ck_assert_ptr_nonnull(json_string_value(json_object_get(r, "package")));
	json_decref(r);
}
END_TEST

START_TEST(test_id_echo)
{
	static const char *const ids[] = {
		"\"cookie#1\"", "2", "{\"a\": [1, 2]}", "[null]", "null", "3.5", "false",
	};
	char buf[256];
	json_t *r, *want;
	size_t i;

	/* Errors before negotiation carry the id too. */
	r = cmd1("{\"execute\": \"query-status\", \"id\": 7}");
	expect_error(r, "CommandNotFound", NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);
	negotiate();
	for (i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		want = json_loads(ids[i], JSON_DECODE_ANY, NULL);
		snprintf(buf, sizeof(buf), "{\"execute\": \"query-status\", \"id\": %s}", ids[i]);
		r = cmd1(buf);
		ck_assert(json_object_get(r, "return"));
		ck_assert_msg(json_equal(json_object_get(r, "id"), want), "id %s", ids[i]);
		json_decref(r);
		snprintf(buf, sizeof(buf), "{\"execute\": \"nope\", \"id\": %s}", ids[i]);
		r = cmd1(buf);
		expect_error(r, "CommandNotFound", "The command nope has not been found");
		ck_assert(json_equal(json_object_get(r, "id"), want));
		json_decref(r);
		json_decref(want);
	}
	/* No id, no "id" member. */
	r = cmd1("{\"execute\": \"query-status\"}");
	ck_assert_ptr_null(json_object_get(r, "id"));
	json_decref(r);
	/* Parameter errors echo it as well. */
	r = cmd1("{\"execute\": \"stop\", \"arguments\": {\"now\": true}, \"id\": \"p\"}");
	expect_error(r, "GenericError", "Parameter 'now' is unexpected");
	ck_assert_str_eq(json_string_value(json_object_get(r, "id")), "p");
	json_decref(r);
}
END_TEST

static json_t *event_at(size_t i)
{
	return json_array_get(cap.events, i);
}

static void expect_event(size_t i, const char *name)
{
	json_t *ev = event_at(i), *ts;

	ck_assert_msg(ev, "no event %zu", i);
	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), name);
	ts = json_object_get(ev, "timestamp");
	ck_assert(json_integer_value(json_object_get(ts, "seconds")) > 1500000000);
	ck_assert(json_integer_value(json_object_get(ts, "microseconds")) >= 0);
	ck_assert(json_integer_value(json_object_get(ts, "microseconds")) < 1000000);
}

START_TEST(test_status_and_actions)
{
	json_t *r, *d;

	negotiate();
	r = expect_return("{\"execute\": \"query-status\"}");
	ck_assert(json_is_true(json_object_get(r, "running")));
	ck_assert(json_is_false(json_object_get(r, "singlestep")));
	ck_assert_str_eq(json_string_value(json_object_get(r, "status")), "running");
	json_decref(r);

	json_decref(expect_return("{\"execute\": \"stop\"}"));
	ck_assert_int_eq(sf.stops, 1);
	ck_assert_uint_eq(json_array_size(cap.events), 1);
	expect_event(0, "STOP");
	ck_assert_ptr_null(json_object_get(event_at(0), "data"));
	r = expect_return("{\"execute\": \"query-status\"}");
	ck_assert(json_is_false(json_object_get(r, "running")));
	ck_assert_str_eq(json_string_value(json_object_get(r, "status")), "paused");
	json_decref(r);
	/* Stopping a stopped VM succeeds without an event. */
	json_decref(expect_return("{\"execute\": \"stop\"}"));
	ck_assert_uint_eq(json_array_size(cap.events), 1);

	json_decref(expect_return("{\"execute\": \"cont\"}"));
	expect_event(1, "RESUME");
	json_decref(expect_return("{\"execute\": \"system_powerdown\"}"));
	expect_event(2, "POWERDOWN");
	json_decref(expect_return("{\"execute\": \"system_reset\"}"));
	expect_event(3, "RESET");
	d = json_object_get(event_at(3), "data");
	ck_assert(json_is_false(json_object_get(d, "guest")));
	ck_assert_str_eq(json_string_value(json_object_get(d, "reason")), "host-qmp-system-reset");

	/* A failing backend: GenericError with its message, no event. */
	sf.fail = 1;
	expect_cmd_error("{\"execute\": \"stop\"}", "GenericError", "fake backend says no");
	ck_assert_uint_eq(json_array_size(cap.events), 4);

	json_decref(expect_return("{\"execute\": \"quit\"}"));
	ck_assert_int_eq(sf.quits, 1);
	expect_event(4, "SHUTDOWN");
	d = json_object_get(event_at(4), "data");
	ck_assert(json_is_false(json_object_get(d, "guest")));
	ck_assert_str_eq(json_string_value(json_object_get(d, "reason")), "host-qmp-quit");
	r = expect_return("{\"execute\": \"query-status\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "status")), "shutdown");
	json_decref(r);
}
END_TEST

START_TEST(test_run_state_names)
{
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_PRELAUNCH), "prelaunch");
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_RUNNING), "running");
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_PAUSED), "paused");
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_SHUTDOWN), "shutdown");
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_GUEST_PANICKED), "guest-panicked");
	ck_assert_str_eq(qmp_run_state_name(QMP_RUN_INTERNAL_ERROR), "internal-error");
}
END_TEST

START_TEST(test_query_shapes)
{
	json_t *r, *e;
	size_t i;

	negotiate();
	r = expect_return("{\"execute\": \"query-cpus-fast\"}");
	ck_assert_uint_eq(json_array_size(r), 2);
	json_array_foreach(r, i, e) {
		ck_assert_int_eq(json_integer_value(json_object_get(e, "cpu-index")), (long long)i);
		ck_assert_int_eq(json_integer_value(json_object_get(e, "thread-id")), 1000 + (long long)i);
		ck_assert_str_eq(json_string_value(json_object_get(e, "target")), "x86_64");
		ck_assert_ptr_nonnull(json_string_value(json_object_get(e, "qom-path")));
		ck_assert_int_eq(json_integer_value(json_object_get(
			json_object_get(e, "props"), "core-id")), (long long)i);
		ck_assert(json_is_integer(json_object_get(json_object_get(e, "props"), "socket-id")));
		ck_assert(json_is_integer(json_object_get(json_object_get(e, "props"), "thread-id")));
	}
	json_decref(r);

	r = expect_return("{\"execute\": \"x-query-exits\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "total")), 42);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "reasons"), "io")), 40);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "devices"), "serial")), 17);
	e = json_array_get(json_object_get(r, "disks"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(e, "device")), "virtio0");
	ck_assert_int_eq(json_integer_value(json_object_get(e, "wr_bytes")), 512);
	ck_assert_int_eq(json_integer_value(json_object_get(e, "rd_operations")), 1);
	json_decref(r);

	r = expect_return("{\"execute\": \"query-kvm\"}");
	ck_assert(json_is_true(json_object_get(r, "enabled")));
	ck_assert(json_is_true(json_object_get(r, "present")));
	json_decref(r);

	r = expect_return("{\"execute\": \"query-memory-size-summary\"}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "base-memory")), 256 << 20);
	ck_assert_int_eq(json_integer_value(json_object_get(r, "plugged-memory")), 0);
	json_decref(r);

	r = expect_return("{\"execute\": \"query-name\"}");
	ck_assert(json_is_object(r));
	json_decref(r);

	r = expect_return("{\"execute\": \"query-commands\"}");
	{
		static const char *const want[] = {
			"qmp_capabilities", "query-status", "stop", "cont", "system_powerdown",
			"system_reset", "quit", "query-cpus-fast", "query-version", "query-commands", "query-kvm",
			"query-memory-size-summary", "x-query-exits",
		};
		for (size_t w = 0; w < sizeof(want) / sizeof(want[0]); w++) {
			bool found = false;

			json_array_foreach(r, i, e)
				found |= !strcmp(json_string_value(json_object_get(e, "name")), want[w]);
			ck_assert_msg(found, "%s missing from query-commands", want[w]);
		}
	}
	json_decref(r);
}
END_TEST

/* Commands the dispatcher does not know go to the devices, which check
 * their own arguments; failures are GenericErrors with the device's reason;
 * query-commands lists each device command once, built-ins first. */
START_TEST(test_device_commands)
{
	json_t *r, *e;
	size_t i;
	unsigned echo = 0, status = 0;

	/* Not before negotiation. */
	expect_cmd_error("{\"execute\": \"x-fake-echo\"}", "CommandNotFound",
			 "Expecting capabilities negotiation with 'qmp_capabilities'");
	ck_assert_int_eq(sf.device_cmds, 0);
	negotiate();

	r = expect_return("{\"execute\": \"x-fake-echo\", \"arguments\": {\"n\": 3}}");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "args"), "n")), 3);
	json_decref(r);
	r = expect_return("{\"execute\": \"x-fake-echo\"}");	/* args: {} */
	ck_assert_uint_eq(json_object_size(json_object_get(r, "args")), 0);
	json_decref(r);
	r = cmd1("{\"execute\": \"x-fake-echo\", \"id\": 7}");
	ck_assert_int_eq(json_integer_value(json_object_get(r, "id")), 7);
	json_decref(r);
	r = expect_return("{\"execute\": \"x-fake-noret\"}");
	ck_assert(json_is_object(r));
	ck_assert_uint_eq(json_object_size(r), 0);
	json_decref(r);
	expect_cmd_error("{\"execute\": \"x-fake-fail\"}", "GenericError", "fake device says no");
	expect_cmd_error("{\"execute\": \"x-fake-errno\"}", "GenericError", strerror(EIO));
	expect_cmd_error("{\"execute\": \"x-fake-nosuch\"}", "CommandNotFound",
			 "The command x-fake-nosuch has not been found");
	/* Request validation still comes first. */
	expect_cmd_error("{\"execute\": \"x-fake-echo\", \"arguments\": []}", "GenericError",
			 "QMP input member 'arguments' must be an object");
	ck_assert_int_eq(sf.device_cmds, 7);
	/* A built-in is never sent to a device. */
	json_decref(expect_return("{\"execute\": \"query-status\"}"));
	ck_assert_int_eq(sf.device_cmds, 7);

	r = expect_return("{\"execute\": \"query-commands\"}");
	json_array_foreach(r, i, e) {
		const char *n = json_string_value(json_object_get(e, "name"));

		echo += !strcmp(n, "x-fake-echo");
		status += !strcmp(n, "query-status");
	}
	ck_assert_uint_eq(echo, 1);
	ck_assert_uint_eq(status, 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 0), "name")),
			 "qmp_capabilities");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, json_array_size(r) - 1),
							   "name")), "x-fake-noret");
	json_decref(r);
	assert_recovered();
}
END_TEST

START_TEST(test_null_backend)
{
	struct qmp_session *s = qmp_session_create(NULL, NULL, NULL, NULL);
	json_t *r;
	const char *m;

	m = "{\"execute\": \"qmp_capabilities\"}";
	r = qmp_handle_message(s, m, strlen(m));
	ck_assert(json_object_get(r, "return"));
	json_decref(r);
	m = "{\"execute\": \"stop\"}";
	r = qmp_handle_message(s, m, strlen(m));
	expect_error(r, "GenericError", "'stop' is not supported");
	json_decref(r);
	m = "{\"execute\": \"query-cpus-fast\"}";
	r = qmp_handle_message(s, m, strlen(m));
	ck_assert_uint_eq(json_array_size(json_object_get(r, "return")), 0);
	json_decref(r);
	m = "{\"execute\": \"x-query-exits\"}";
	r = qmp_handle_message(s, m, strlen(m));
	ck_assert(json_is_array(json_object_get(json_object_get(r, "return"), "disks")));
	json_decref(r);
	qmp_session_destroy(s);
}
END_TEST

/* QEMU's tests/qtest/qmp-test.c test_malformed(), plus ours. */
static void malformed_cases(void)
{
	static const struct { const char *in; size_t len; } lexical[] = {
		{ "{]\n", 0 },				/* syntax error */
		{ "{\xFF", 0 },				/* impossible byte outside string */
		{ "{\x01", 0 },				/* control character outside string */
		{ "{'bad \xFF", 0 },			/* impossible byte in string */
		{ "{'execute': 'nonexistent', 'id':'\n", 0 },	/* control char in string */
		{ "%%p", 0 },				/* interpolation */
		{ "}", 0 },				/* stray close */
		{ "]]]", 0 },
		{ ":", 0 },
		{ "\x01\x02\x03", 0 },
		{ "{\"a\":\0}", 7 },			/* NUL */
		{ "{\"execute\": \"q\\q\"}", 0 },	/* bad escape (jansson) */
		{ "{\"execute\": \"\xC3\x28\"}", 0 },	/* bad UTF-8 (jansson) */
		{ "{\"execute\" \"x\"}", 0 },		/* missing colon (jansson) */
		{ "[1 2]\n", 0 },			/* whitespace between tokens kept */
		{ "{\"a\": 1e999}", 0 },		/* overflow */
		{ "\"\\u0000\"", 0 },			/* NUL escape */
	};
	json_t *r;
	size_t i;

	for (i = 0; i < sizeof(lexical) / sizeof(lexical[0]); i++) {
		size_t len = lexical[i].len ? lexical[i].len : strlen(lexical[i].in);

		r = feed(lexical[i].in, len);
		ck_assert_msg(json_array_size(r) >= 1, "no reply to case %zu", i);
		expect_error(json_array_get(r, 0), "GenericError", NULL);
		json_decref(r);
		assert_recovered();
	}

	/* Structurally fine, semantically not: one reply each, QEMU's texts. */
	expect_cmd_error("null\n", "GenericError", "QMP input must be a JSON object");
	expect_cmd_error("[]", "GenericError", "QMP input must be a JSON object");
	expect_cmd_error("1 ", "GenericError", "QMP input must be a JSON object");
	expect_cmd_error("\"x\"", "GenericError", "QMP input must be a JSON object");
	expect_cmd_error("true\n", "GenericError", "QMP input must be a JSON object");
	expect_cmd_error("{}", "GenericError", "Expected either 'execute' or 'exec-oob'");
	expect_cmd_error("{ 'execute': true }", "GenericError",
			 "QMP input member 'execute' must be a string");
	expect_cmd_error("{ 'execute': 'no-such-cmd', 'arguments': [] }", "GenericError",
			 "QMP input member 'arguments' must be an object");
	expect_cmd_error("{ 'execute': 'no-such-cmd', 'extra': true }", "GenericError",
			 "QMP input member 'extra' is unexpected");
	expect_cmd_error("{ 'exec-oob': 'query-status' }", "GenericError",
			 "QMP input member 'exec-oob' is unexpected");
	expect_cmd_error("{ 'id': 'err-2' }", "GenericError",
			 "Expected either 'execute' or 'exec-oob'");
	assert_recovered();
}

START_TEST(test_malformed_before_negotiation)
{
	malformed_cases();
	ck_assert(!qmp_session_negotiated(sess));
	negotiate();
}
END_TEST

START_TEST(test_malformed_after_negotiation)
{
	negotiate();
	malformed_cases();
	expect_cmd_error("{\"execute\": \"no-such-cmd\"}", "CommandNotFound",
			 "The command no-such-cmd has not been found");
	expect_cmd_error("{\"execute\": \"query-status\", \"arguments\": {\"x\": 1}}",
			 "GenericError", "Parameter 'x' is unexpected");
	json_decref(expect_return("{\"execute\": \"query-status\", \"arguments\": {}}"));
	/* A desc truncated mid-UTF-8 still makes a reply. */
	{
		char *m = malloc(4096), *p;
		json_t *r;

		p = stpcpy(m, "{\"execute\": \"");
		for (int i = 0; i < 700; i++)
			p = stpcpy(p, "\xC3\xA9");
		strcpy(p, "\"}");
		r = cmd1(m);
		expect_error(r, "CommandNotFound", NULL);
		ck_assert(!strncmp(err_desc(r), "The command ", 12));
		json_decref(r);
		free(m);
	}
}
END_TEST

START_TEST(test_framing)
{
	const char *m = "{\"execute\": \"query-status\", \"id\": \"split\"}";
	json_t *r;
	size_t i;

	negotiate();
	/* One byte at a time: a single reply at the very end. */
	for (i = 0; i < strlen(m); i++) {
		r = feed(m + i, 1);
		ck_assert_uint_eq(json_array_size(r), i + 1 == strlen(m) ? 1 : 0);
		if (json_array_size(r))
			ck_assert_str_eq(json_string_value(json_object_get(
				json_array_get(r, 0), "id")), "split");
		json_decref(r);
	}
	/* Several objects, no separators, braces inside strings. */
	r = feed_str("{\"execute\":\"query-status\",\"id\":1}{\"execute\":\"query-kvm\",\"id\":\"}{\"}"
		     "  \r\n{'execute':'query-name','id':'it''s'}{'execute':'query-name','id':'a\\'b\"c'}");
	ck_assert_uint_eq(json_array_size(r), 4);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(r, 0), "id")), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 1), "id")), "}{");
	/* 'it''s' is two adjacent strings: a syntax error */
	expect_error(json_array_get(r, 2), "GenericError", NULL);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(r, 3), "id")), "a'b\"c");
	json_decref(r);
	/* A top-level scalar ends at the next structural character. */
	r = feed_str("12{\"execute\":\"query-name\"}");
	ck_assert_uint_eq(json_array_size(r), 2);
	expect_error(json_array_get(r, 0), "GenericError", "QMP input must be a JSON object");
	ck_assert(json_object_get(json_array_get(r, 1), "return"));
	json_decref(r);
	/* Resync at '{' after garbage on the same line. */
	r = feed_str("garbage! {\"execute\":\"query-name\"}\n");
	ck_assert_uint_eq(json_array_size(r), 2);
	expect_error(json_array_get(r, 0), "GenericError", NULL);
	ck_assert(json_object_get(json_array_get(r, 1), "return"));
	json_decref(r);
	/* Nesting beyond the limit: one error, then fine. */
	{
		char *deep = malloc(5000);

		memset(deep, '[', 4999);
		deep[4999] = '\0';
		r = feed_str(deep);
		ck_assert_uint_eq(json_array_size(r), 1);
		expect_error(json_array_get(r, 0), "GenericError", NULL);
		json_decref(r);
		free(deep);
		r = feed_str("\n");
		ck_assert_uint_eq(json_array_size(r), 0);
		json_decref(r);
		assert_recovered();
		/* ...while a legitimately nested argument just parses. */
		r = cmd1("{\"execute\": \"query-name\", \"id\": [[[[[[[[[[{}]]]]]]]]]]}");
		ck_assert(json_object_get(r, "return"));
		json_decref(r);
	}
}
END_TEST

static char *big_message(size_t payload, const char *fill)
{
	const char *pre = "{\"execute\": \"query-status\", \"id\": \"";
	const char *post = "\"}\n";
	size_t fl = strlen(fill), n = strlen(pre) + payload + strlen(post);
	char *m = malloc(n + 1), *p;

	ck_assert_ptr_nonnull(m);
	p = stpcpy(m, pre);
	for (size_t i = 0; i < payload; i++)
		*p++ = fill[i % fl];
	strcpy(p, post);
	return m;
}

START_TEST(test_oversized_message)
{
	char *m = big_message(QMP_MAX_MESSAGE + 1024, "ab{c}[d]\\\\'");
	size_t len = strlen(m), off;
	json_t *r, *all = json_array();

	negotiate();
	/* In chunks, as it would arrive from a socket. */
	for (off = 0; off < len; off += 65536) {
		r = feed(m + off, len - off < 65536 ? len - off : 65536);
		json_array_extend(all, r);
		json_decref(r);
	}
	ck_assert_uint_eq(json_array_size(all), 1);
	expect_error(json_array_get(all, 0), "GenericError", NULL);
	ck_assert(strstr(err_desc(json_array_get(all, 0)), "limit"));
	json_decref(all);
	free(m);
	/* The next message on the "connection" is fine. */
	r = cmd1("{\"execute\": \"query-status\", \"id\": 5}");
	ck_assert(json_object_get(r, "return"));
	json_decref(r);
	/* Just under the limit is accepted. */
	m = big_message(QMP_MAX_MESSAGE - 100, "x");
	r = cmd1(m);
	ck_assert(json_object_get(r, "return"));
	ck_assert_uint_eq(strlen(json_string_value(json_object_get(r, "id"))), QMP_MAX_MESSAGE - 100);
	json_decref(r);
	free(m);
}
END_TEST

/* A client dropped in the middle of a read (its reply backlog overflowed):
 * the commands after that point in the same read never run. */
static void close_on_send(void *opaque, json_t *msg)
{
	(void)opaque;
	(void)msg;
	qmp_session_close(sess);
}

START_TEST(test_closed_session_runs_nothing)
{
	static const char two[] = "{\"execute\": \"system_reset\"}\n{\"execute\": \"quit\"}\n";

	json_decref(cmd1("{\"execute\": \"qmp_capabilities\"}"));
	qmp_session_feed(sess, two, sizeof(two) - 1, close_on_send, NULL);
	ck_assert_int_eq(sf.resets, 1);
	ck_assert_int_eq(sf.quits, 0);
	qmp_session_feed(sess, two, sizeof(two) - 1, cap_send, &cap);
	ck_assert_int_eq(sf.resets, 1);
	ck_assert_int_eq(sf.quits, 0);
	ck_assert_uint_eq(json_array_size(cap.replies), 0);
}
END_TEST

START_TEST(test_event_new)
{
	json_t *ev = qmp_event_new("X", NULL);

	ck_assert_str_eq(json_string_value(json_object_get(ev, "event")), "X");
	ck_assert_ptr_null(json_object_get(ev, "data"));
	ck_assert(json_is_object(json_object_get(ev, "timestamp")));
	json_decref(ev);
	ev = qmp_event_new("Y", json_pack("{s:i}", "k", 1));
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ev, "data"), "k")), 1);
	json_decref(ev);
}
END_TEST

/* ---- the socket server ---- */

struct srv_fix {
	char dir[64];
	char path[128];
	struct evloop *loop;
	struct qmp_server *srv;
	struct fake fake;
	pthread_t th;
	int stop;
	bool running;
};

static struct srv_fix fx;

static void *loop_thread(void *arg)
{
	struct srv_fix *f = arg;

	while (!__atomic_load_n(&f->stop, __ATOMIC_SEQ_CST))
		evloop_run_once(f->loop, 10);
	return NULL;
}

static void loop_start(void)
{
	__atomic_store_n(&fx.stop, 0, __ATOMIC_SEQ_CST);
	ck_assert_int_eq(pthread_create(&fx.th, NULL, loop_thread, &fx), 0);
	fx.running = true;
}

static void loop_stop(void)
{
	if (!fx.running)
		return;
	__atomic_store_n(&fx.stop, 1, __ATOMIC_SEQ_CST);
	pthread_join(fx.th, NULL);
	fx.running = false;
}

static void srv_setup(void)
{
	memset(&fx, 0, sizeof(fx));
	strcpy(fx.dir, "/tmp/ember-qmp-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(fx.dir));
	snprintf(fx.path, sizeof(fx.path), "%s/qmp.sock", fx.dir);
	fx.fake = fake_init();
	fx.loop = evloop_create();
	ck_assert_ptr_nonnull(fx.loop);
	ck_assert_int_eq(qmp_server_create(&fx.srv, fx.loop, fx.path, -1, &fake_ops, &fx.fake), 0);
	loop_start();
}

static void srv_teardown(void)
{
	loop_stop();
	qmp_server_destroy(fx.srv);
	evloop_destroy(fx.loop);
	unlink(fx.path);
	rmdir(fx.dir);
}

struct tclient {
	int fd;
	char *buf;
	size_t start, len, cap;	/* unread bytes are buf[start, len) */
};

static int raw_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	strcpy(sa.sun_path, path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void tc_open(struct tclient *c)
{
	memset(c, 0, sizeof(*c));
	c->fd = raw_connect(fx.path);
	ck_assert_int_ge(c->fd, 0);
}

static void tc_close(struct tclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	free(c->buf);
	c->fd = -1;
	c->buf = NULL;
}

static void tc_send(struct tclient *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);

		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

static void tc_sends(struct tclient *c, const char *s)
{
	tc_send(c, s, strlen(s));
}

/* Next message, or NULL on EOF; fails the test after timeout_ms. */
static json_t *tc_recv_t(struct tclient *c, int timeout_ms)
{
	for (;;) {
		char *p = c->buf ? c->buf + c->start : NULL;
		char *nl = c->len > c->start ? memchr(p, '\n', c->len - c->start) : NULL;
		struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
		ssize_t n;

		if (nl) {
			size_t line = (size_t)(nl - p) + 1;
			json_error_t je;
			json_t *m;

			ck_assert_msg(line >= 2 && nl[-1] == '\r', "reply not CRLF-terminated");
			m = json_loadb(p, line, 0, &je);
			ck_assert_msg(m, "bad JSON from the server: %s", je.text);
			c->start += line;
			return m;
		}
		if (c->start) {
			memmove(c->buf, c->buf + c->start, c->len - c->start);
			c->len -= c->start;
			c->start = 0;
		}
		if (c->cap - c->len < 65536) {
			c->cap = c->cap ? c->cap * 2 : 131072;
			c->buf = realloc(c->buf, c->cap);
			ck_assert_ptr_nonnull(c->buf);
		}
		ck_assert_msg(poll(&pfd, 1, timeout_ms) == 1, "timed out waiting for the server");
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n <= 0)
			return NULL;
		c->len += (size_t)n;
	}
}

static json_t *tc_recv(struct tclient *c)
{
	json_t *m = tc_recv_t(c, 10000);

	ck_assert_msg(m, "connection closed");
	return m;
}

/* The reply to the last command, skipping events. */
static json_t *tc_reply(struct tclient *c)
{
	for (;;) {
		json_t *m = tc_recv(c);

		if (!json_object_get(m, "event"))
			return m;
		json_decref(m);
	}
}

static json_t *tc_cmd(struct tclient *c, const char *s)
{
	tc_sends(c, s);
	return tc_reply(c);
}

static void tc_greet(struct tclient *c, bool caps)
{
	json_t *m = tc_recv(c);

	ck_assert(json_object_get(m, "QMP"));
	json_decref(m);
	if (caps) {
		m = tc_cmd(c, "{\"execute\": \"qmp_capabilities\"}");
		ck_assert(json_object_get(m, "return"));
		json_decref(m);
	}
}

static void tc_expect_error(struct tclient *c, const char *cls)
{
	json_t *m = tc_reply(c);

	expect_error(m, cls, NULL);
	json_decref(m);
}

static void tc_recovered(struct tclient *c)
{
	tc_sends(c, "{ 'execute': 'no-such-cmd' }");
	tc_expect_error(c, "CommandNotFound");
}

static void wait_clients(unsigned n)
{
	for (int i = 0; i < 500 && qmp_server_nr_clients(fx.srv) != n; i++)
		usleep(10000);
	ck_assert_uint_eq(qmp_server_nr_clients(fx.srv), n);
}

START_TEST(test_server_basic)
{
	struct tclient c;
	struct stat st;
	json_t *m;

	ck_assert_int_eq(stat(fx.path, &st), 0);
	ck_assert(S_ISSOCK(st.st_mode));
	ck_assert_int_eq(st.st_mode & 0777, 0600);

	tc_open(&c);
	tc_greet(&c, false);
	tc_sends(&c, "{\"execute\": \"query-status\"}");
	tc_expect_error(&c, "CommandNotFound");
	m = tc_cmd(&c, "{\"execute\": \"qmp_capabilities\", \"id\": \"n\"}");
	ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "n");
	json_decref(m);
	m = tc_cmd(&c, "{\"execute\": \"query-status\", \"id\": {\"x\": 1}}");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "return"), "status")),
			 "running");
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(m, "id"), "x")), 1);
	json_decref(m);
	tc_close(&c);
	wait_clients(0);
}
END_TEST

/* Sends s with fds attached (SCM_RIGHTS), as a management layer does for getfd. */
static void tc_send_fds(struct tclient *c, const char *s, const int *fds, unsigned nfds)
{
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(8 * sizeof(int))];
	} control;
	struct iovec iov = { .iov_base = (void *)s, .iov_len = strlen(s) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			     .msg_controllen = CMSG_SPACE(nfds * sizeof(int)) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);

	ck_assert_uint_le(nfds, 8);
	memset(&control, 0, sizeof(control));
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	ck_assert_int_eq(sendmsg(c->fd, &mh, MSG_NOSIGNAL), (ssize_t)strlen(s));
}

/* The fd Ember holds under name (x-query-fds), or -1. */
static int stored_fd(struct tclient *c, const char *name)
{
	json_t *m = tc_cmd(c, "{\"execute\": \"x-query-fds\"}"), *e;
	size_t i;
	int fd = -1;

	json_array_foreach(json_object_get(m, "return"), i, e)
		if (!strcmp(json_string_value(json_object_get(e, "fdname")), name))
			fd = (int)json_integer_value(json_object_get(e, "fd"));
	json_decref(m);
	return fd;
}

START_TEST(test_server_getfd)
{
	struct tclient c;
	int p[2], q[2], extra[3];
	char byte = 0;
	json_t *m;

	fdstore_clear();
	ck_assert_int_eq(pipe(p), 0);
	ck_assert_int_eq(pipe(q), 0);
	tc_open(&c);
	tc_greet(&c, true);
	/* No fd came: QEMU's error. */
	tc_sends(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}");
	tc_expect_error(&c, "GenericError");
	/* The write end of a pipe, stored as "tap0": Ember's copy writes into it. */
	tc_send_fds(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"tap0\"}}", &p[1], 1);
	m = tc_reply(&c);
	ck_assert_msg(json_object_get(m, "return"), "getfd failed");
	json_decref(m);
	close(p[1]);
	int fd = stored_fd(&c, "tap0");
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	ck_assert_int_eq(write(fd, "x", 1), 1);
	ck_assert_int_eq(read(p[0], &byte, 1), 1);
	ck_assert_int_eq(byte, 'x');
	/* A name starting with a digit is refused and the fd closed. */
	tc_send_fds(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"1x\"}}", &q[1], 1);
	tc_expect_error(&c, "GenericError");
	/* Several fds in one message: one is kept, the rest closed (no leak). */
	ck_assert_int_eq(pipe(extra), 0);
	extra[2] = dup(q[1]);
	tc_send_fds(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"b\"}}", extra, 3);
	m = tc_reply(&c);
	ck_assert_msg(json_object_get(m, "return"), "getfd with 3 fds failed");
	json_decref(m);
	close(extra[0]);
	close(extra[1]);
	close(extra[2]);
	/* Same name again replaces (and closes) the old one. */
	tc_send_fds(&c, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"tap0\"}}", &q[1], 1);
	m = tc_reply(&c);
	ck_assert_msg(json_object_get(m, "return"), "getfd replace failed");
	json_decref(m);
	close(q[1]);
	/* The old pipe's only write end was Ember's: now closed, so EOF. */
	ck_assert_int_eq(read(p[0], &byte, 1), 0);
	/* closefd, then closefd again. */
	m = tc_cmd(&c, "{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"tap0\"}}");
	ck_assert_msg(json_object_get(m, "return"), "closefd failed");
	json_decref(m);
	ck_assert_int_eq(read(q[0], &byte, 1), 0);
	tc_sends(&c, "{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"tap0\"}}");
	tc_expect_error(&c, "GenericError");
	/* An fd sent with some other command waits for the next getfd; the
	 * session closes it when the client goes. */
	ck_assert_int_eq(pipe(extra), 0);
	tc_send_fds(&c, "{\"execute\": \"query-status\"}", &extra[1], 1);
	json_decref(tc_reply(&c));
	close(extra[1]);
	tc_close(&c);
	wait_clients(0);
	ck_assert_int_eq(read(extra[0], &byte, 1), 0);
	close(extra[0]);
	close(p[0]);
	close(q[0]);
	fdstore_clear();
}
END_TEST

START_TEST(test_server_events)
{
	struct tclient a, b;
	json_t *m;

	tc_open(&a);
	tc_open(&b);
	tc_greet(&a, true);
	tc_greet(&b, false);

	/* The reply, then the STOP event, to the negotiated client. */
	tc_sends(&a, "{\"execute\": \"stop\", \"id\": 1}");
	m = tc_recv(&a);
	ck_assert_int_eq(json_integer_value(json_object_get(m, "id")), 1);
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	m = tc_recv(&a);
	ck_assert_str_eq(json_string_value(json_object_get(m, "event")), "STOP");
	ck_assert(json_integer_value(json_object_get(json_object_get(m, "timestamp"), "seconds")) > 0);
	json_decref(m);
	ck_assert_int_eq(LD(fx.fake.stops), 1);

	/* From another thread, as a vCPU would. */
	qmp_server_emit_event(fx.srv, "GUEST_PANICKED", json_pack("{s:s}", "action", "pause"));
	m = tc_recv(&a);
	ck_assert_str_eq(json_string_value(json_object_get(m, "event")), "GUEST_PANICKED");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "data"), "action")),
			 "pause");
	json_decref(m);

	/* b is not negotiated: its next message is the reply, not an event. */
	tc_sends(&b, "{\"execute\": \"qmp_capabilities\", \"id\": \"b\"}");
	m = tc_recv(&b);
	ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "b");
	json_decref(m);
	/* Now both get events, in order. */
	for (int i = 0; i < 100; i++)
		qmp_server_emit_event(fx.srv, "TICK", json_pack("{s:i}", "n", i));
	for (int i = 0; i < 100; i++) {
		json_t *ma = tc_recv(&a), *mb = tc_recv(&b);

		ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(ma, "data"), "n")), i);
		ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(mb, "data"), "n")), i);
		json_decref(ma);
		json_decref(mb);
	}
	/* A NULL server swallows events. */
	qmp_server_emit_event(NULL, "X", json_object());
	tc_close(&a);
	tc_close(&b);
}
END_TEST

START_TEST(test_server_bad_input)
{
	static const char *const cases[] = {
		"{]\n", "{\xFF", "{\x01", "{'bad \xFF", "{'execute': 'nonexistent', 'id':'\n",
		"%%p", "null\n", "[]", "1\n", "\"x\"", "{}", "{ 'execute': true }",
		"{ 'execute': 'no-such-cmd', 'arguments': [] }",
		"{ 'execute': 'no-such-cmd', 'extra': true }",
	};
	struct tclient c;
	size_t i;
	json_t *m;

	tc_open(&c);
	tc_greet(&c, false);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc_sends(&c, cases[i]);
		tc_expect_error(&c, "GenericError");
		tc_recovered(&c);
	}
	m = tc_cmd(&c, "{\"execute\": \"qmp_capabilities\"}");
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		tc_sends(&c, cases[i]);
		tc_expect_error(&c, "GenericError");
		tc_recovered(&c);
	}
	tc_sends(&c, "{\"execute\": \"query-status\", \"arguments\": {\"verbose\": 1}}");
	tc_expect_error(&c, "GenericError");
	m = tc_cmd(&c, "{\"execute\": \"query-status\"}");
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	/* Nothing reached the VM. */
	ck_assert_int_eq(LD(fx.fake.stops) + LD(fx.fake.quits) + LD(fx.fake.resets), 0);
	tc_close(&c);
}
END_TEST

START_TEST(test_server_oversized)
{
	char *m = big_message(QMP_MAX_MESSAGE + 4096, "0123456789");
	struct tclient c;
	json_t *r;

	tc_open(&c);
	tc_greet(&c, true);
	tc_sends(&c, m);
	free(m);
	r = tc_reply(&c);
	expect_error(r, "GenericError", NULL);
	json_decref(r);
	r = tc_cmd(&c, "{\"execute\": \"query-status\", \"id\": \"after\"}");
	ck_assert_str_eq(json_string_value(json_object_get(r, "id")), "after");
	ck_assert(json_object_get(r, "return"));
	json_decref(r);
	tc_close(&c);
}
END_TEST

START_TEST(test_server_disconnect_mid_message)
{
	struct tclient c, d;
	json_t *m;

	tc_open(&c);
	tc_greet(&c, true);
	tc_sends(&c, "{\"execute\": \"query-sta");
	usleep(50000);
	tc_close(&c);
	/* A client that never reads its greeting and leaves. */
	tc_open(&c);
	tc_close(&c);
	wait_clients(0);

	tc_open(&d);
	tc_greet(&d, true);
	m = tc_cmd(&d, "{\"execute\": \"query-status\"}");
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	/* Half-close: replies still arrive after the client's EOF. */
	tc_sends(&d, "{\"execute\": \"query-commands\", \"id\": \"last\"}");
	shutdown(d.fd, SHUT_WR);
	m = tc_reply(&d);
	ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "last");
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&d, 5000));
	tc_close(&d);
	wait_clients(0);
}
END_TEST

#define NCLIENTS 50

static void set_limits(unsigned max, unsigned handshake_ms, unsigned idle_ms)
{
	struct qmp_limits lim = { max, handshake_ms, idle_ms };

	loop_stop();
	ck_assert_int_eq(qmp_server_set_limits(fx.srv, &lim), 0);
	loop_start();
}

START_TEST(test_server_many_clients)
{
	static struct tclient c[NCLIENTS];
	static const char *const cmds[] = {
		"query-status", "query-cpus-fast", "x-fake-echo", "query-kvm", "query-version",
	};
	char buf[128];
	int i;

	set_limits(NCLIENTS, QMP_HANDSHAKE_TIMEOUT_MS, QMP_IDLE_TIMEOUT_MS);
	for (i = 0; i < NCLIENTS; i++)
		tc_open(&c[i]);
	wait_clients(NCLIENTS);
	for (i = 0; i < NCLIENTS; i++)
		tc_greet(&c[i], false);
	for (i = 0; i < NCLIENTS; i++)
		tc_sends(&c[i], "{\"execute\": \"qmp_capabilities\"}");
	for (i = 0; i < NCLIENTS; i++) {
		json_t *m = tc_reply(&c[i]);

		ck_assert(json_object_get(m, "return"));
		json_decref(m);
	}
	for (int round = 0; round < 4; round++) {
		for (i = 0; i < NCLIENTS; i++) {
			snprintf(buf, sizeof(buf), "{\"execute\": \"%s\", \"id\": %d}",
				 cmds[(i + round) % 5], i * 100 + round);
			tc_sends(&c[i], buf);
		}
		for (i = NCLIENTS - 1; i >= 0; i--) {
			json_t *m = tc_reply(&c[i]), *ret = json_object_get(m, "return");
			const char *cmd = cmds[(i + round) % 5];

			ck_assert_int_eq(json_integer_value(json_object_get(m, "id")), i * 100 + round);
			ck_assert_ptr_nonnull(ret);
			if (!strcmp(cmd, "query-status"))
				ck_assert_ptr_nonnull(json_object_get(ret, "status"));
			else if (!strcmp(cmd, "query-cpus-fast"))
				ck_assert_uint_eq(json_array_size(ret), 2);
			else if (!strcmp(cmd, "x-fake-echo"))
				ck_assert(json_is_object(json_object_get(ret, "args")));
			else if (!strcmp(cmd, "query-kvm"))
				ck_assert(json_is_true(json_object_get(ret, "present")));
			else
				ck_assert_ptr_nonnull(json_object_get(ret, "qemu"));
			json_decref(m);
		}
	}
	/* An event reaches all of them. */
	qmp_server_emit_event(fx.srv, "HELLO", NULL);
	for (i = 0; i < NCLIENTS; i++) {
		json_t *m = tc_recv(&c[i]);

		ck_assert_str_eq(json_string_value(json_object_get(m, "event")), "HELLO");
		json_decref(m);
	}
	for (i = 0; i < NCLIENTS; i++)
		tc_close(&c[i]);
	wait_clients(0);
}
END_TEST

START_TEST(test_server_client_limit)
{
	static int fds[QMP_MAX_CLIENTS + 1];
	struct tclient c;
	json_t *m;
	int i;

	for (i = 0; i < QMP_MAX_CLIENTS; i++) {
		fds[i] = raw_connect(fx.path);
		ck_assert_int_ge(fds[i], 0);
	}
	wait_clients(QMP_MAX_CLIENTS);
	/* One too many: an error instead of the greeting, then EOF. Nobody
	 * has negotiated, so nobody is evicted. */
	tc_open(&c);
	m = tc_recv(&c);
	expect_error(m, "GenericError", "too many QMP clients (limit 16)");
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&c, 5000));
	tc_close(&c);
	ck_assert_uint_eq(qmp_server_nr_clients(fx.srv), QMP_MAX_CLIENTS);
	close(fds[0]);
	wait_clients(QMP_MAX_CLIENTS - 1);
	tc_open(&c);
	tc_greet(&c, true);
	tc_close(&c);
	for (i = 1; i < QMP_MAX_CLIENTS; i++)
		close(fds[i]);
	wait_clients(0);
}
END_TEST

START_TEST(test_server_limits_validated)
{
	struct qmp_limits lim = QMP_LIMITS_DEFAULT;

	ck_assert_uint_eq(lim.max_clients, 16);
	ck_assert_uint_eq(lim.handshake_timeout_ms, 10000);
	ck_assert_uint_eq(lim.idle_timeout_ms, 300000);
	loop_stop();
	lim.max_clients = 0;
	ck_assert_int_eq(qmp_server_set_limits(fx.srv, &lim), -EINVAL);
	lim.max_clients = QMP_LIMIT_CLIENTS_MAX + 1;
	ck_assert_int_eq(qmp_server_set_limits(fx.srv, &lim), -EINVAL);
	lim.max_clients = QMP_LIMIT_CLIENTS_MAX;
	ck_assert_int_eq(qmp_server_set_limits(fx.srv, &lim), 0);
	loop_start();
}
END_TEST

/* A client that never negotiates is told why and closed; negotiated
 * clients, even silent ones, stay. */
START_TEST(test_server_handshake_timeout)
{
	struct tclient slow, ok, late;
	struct timespec t0, t1;
	json_t *m;
	long ms;

	set_limits(4, 300, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	tc_open(&slow);
	tc_greet(&slow, false);
	tc_open(&ok);
	tc_greet(&ok, true);
	/* Input that is not qmp_capabilities does not extend the deadline. */
	tc_open(&late);
	tc_greet(&late, false);
	tc_sends(&late, "{\"execute\": \"query-status\"}");
	tc_expect_error(&late, "CommandNotFound");
	m = tc_recv(&slow);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	expect_error(m, "GenericError", "no qmp_capabilities within 300 ms of connecting");
	json_decref(m);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	ck_assert_int_ge(ms, 290);
	ck_assert_int_lt(ms, 5000);
	ck_assert_ptr_null(tc_recv_t(&slow, 5000));
	m = tc_recv(&late);
	expect_error(m, "GenericError", NULL);
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&late, 5000));
	wait_clients(1);
	usleep(400000);
	m = tc_cmd(&ok, "{\"execute\": \"query-status\"}");
	ck_assert_ptr_nonnull(json_object_get(m, "return"));
	json_decref(m);
	tc_close(&slow);
	tc_close(&late);
	tc_close(&ok);
	wait_clients(0);
}
END_TEST

/* A full server makes room by closing the longest-idle negotiated client,
 * but only one idle for idle_timeout_ms; otherwise the newcomer is refused. */
START_TEST(test_server_idle_eviction)
{
	struct tclient a, b, c, d;
	json_t *m;

	set_limits(2, 0, 300);
	tc_open(&a);
	tc_greet(&a, true);
	tc_open(&b);
	tc_greet(&b, true);
	/* Nobody idle long enough yet. */
	tc_open(&c);
	m = tc_recv(&c);
	expect_error(m, "GenericError", "too many QMP clients (limit 2)");
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&c, 5000));
	tc_close(&c);
	usleep(200000);
	m = tc_cmd(&b, "{\"execute\": \"query-status\"}");	/* b stays busy */
	json_decref(m);
	usleep(200000);
	/* a: idle 400 ms, b: 200 ms. a makes room. */
	tc_open(&c);
	tc_greet(&c, true);
	m = tc_recv(&a);
	expect_error(m, "GenericError", NULL);
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(
		json_object_get(m, "error"), "desc")), "make room"));
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&a, 5000));
	m = tc_cmd(&b, "{\"execute\": \"query-status\"}");
	ck_assert_ptr_nonnull(json_object_get(m, "return"));
	json_decref(m);
	wait_clients(2);
	/* No timeout: a full server never evicts. */
	set_limits(2, 0, 0);
	usleep(400000);
	tc_open(&d);
	m = tc_recv(&d);
	expect_error(m, "GenericError", "too many QMP clients (limit 2)");
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&d, 5000));
	m = tc_cmd(&c, "{\"execute\": \"query-status\"}");
	ck_assert_ptr_nonnull(json_object_get(m, "return"));
	json_decref(m);
	tc_close(&a);
	tc_close(&b);
	tc_close(&c);
	tc_close(&d);
	wait_clients(0);
}
END_TEST

START_TEST(test_server_out_of_fds)
{
	struct rlimit old, lim;
	struct tclient c;
	int f = dup(0);

	/* The next fd the client gets is f; the server's accept then hits
	 * EMFILE and must shed the connection rather than spin. */
	close(f);
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &old), 0);
	lim = old;
	lim.rlim_cur = (rlim_t)f + 1;
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &lim), 0);
	tc_open(&c);
	ck_assert_int_eq(c.fd, f);
	ck_assert_ptr_null(tc_recv_t(&c, 5000));
	tc_close(&c);
	ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &old), 0);
	ck_assert_uint_eq(qmp_server_nr_clients(fx.srv), 0);
	tc_open(&c);
	tc_greet(&c, true);
	tc_close(&c);
}
END_TEST

START_TEST(test_server_slow_client_dropped)
{
	struct tclient slow, other;
	char *pad = malloc(65536);
	json_t *m;
	int i;

	memset(pad, 'z', 65535);
	pad[65535] = '\0';
	tc_open(&slow);
	tc_open(&other);
	tc_greet(&slow, true);
	tc_greet(&other, false);
	/* ~20 MiB of events; the slow client never reads. */
	for (i = 0; i < 320; i++) {
		qmp_server_emit_event(fx.srv, "BIG", json_pack("{s:s}", "pad", pad));
		if (i % 32 == 0)
			usleep(10000);	/* let the loop drain the queue */
	}
	free(pad);
	wait_clients(1);
	/* The slow client sees what was buffered, then EOF. */
	for (i = 0; (m = tc_recv_t(&slow, 5000)); i++)
		json_decref(m);
	ck_assert_int_lt(i, 320);
	tc_close(&slow);
	/* The other client was unaffected. */
	m = tc_cmd(&other, "{\"execute\": \"qmp_capabilities\"}");
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	tc_close(&other);
}
END_TEST

struct flood {
	int fd;
	int n;
};

static void *flood_writer(void *arg)
{
	struct flood *f = arg;
	const char *cmd = "{\"execute\":\"query-commands\"}";

	for (int i = 0; i < f->n; i++) {
		size_t len = strlen(cmd), off = 0;

		while (off < len) {
			ssize_t n = send(f->fd, cmd + off, len - off, MSG_NOSIGNAL);

			if (n <= 0)
				return NULL;
			off += (size_t)n;
		}
	}
	return NULL;
}

START_TEST(test_server_backpressure)
{
	struct tclient c;
	struct flood f;
	pthread_t th;
	int i;

	tc_open(&c);
	tc_greet(&c, true);
	/* Replies are ~30x the requests: the server must throttle reading
	 * rather than drop a client that does read. */
	f.fd = c.fd;
	f.n = 40000;
	ck_assert_int_eq(pthread_create(&th, NULL, flood_writer, &f), 0);
	for (i = 0; i < f.n; i++) {
		json_t *m = tc_recv(&c);

		ck_assert_msg(json_object_get(m, "return"), "reply %d", i);
		json_decref(m);
	}
	pthread_join(th, NULL);
	wait_clients(1);
	tc_close(&c);
}
END_TEST

START_TEST(test_server_quit_flushes)
{
	struct tclient c;
	struct stat st;
	json_t *m;

	tc_open(&c);
	tc_greet(&c, true);
	/* As the main loop would: see the quit, leave the loop, destroy. */
	tc_sends(&c, "{\"execute\": \"quit\", \"id\": \"q\"}");
	for (int i = 0; i < 500 && !LD(fx.fake.quits); i++)
		usleep(1000);
	loop_stop();
	qmp_server_destroy(fx.srv);
	fx.srv = NULL;
	ck_assert_int_eq(stat(fx.path, &st), -1);
	ck_assert_int_eq(errno, ENOENT);
	m = tc_recv(&c);
	ck_assert_str_eq(json_string_value(json_object_get(m, "id")), "q");
	ck_assert(json_object_get(m, "return"));
	json_decref(m);
	m = tc_recv(&c);
	ck_assert_str_eq(json_string_value(json_object_get(m, "event")), "SHUTDOWN");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(m, "data"), "reason")),
			 "host-qmp-quit");
	json_decref(m);
	ck_assert_ptr_null(tc_recv_t(&c, 5000));
	tc_close(&c);
}
END_TEST

START_TEST(test_server_destroy_with_stuck_client)
{
	struct tclient c;
	char *pad = malloc(1 << 20);

	memset(pad, 'y', (1 << 20) - 1);
	pad[(1 << 20) - 1] = '\0';
	tc_open(&c);
	tc_greet(&c, true);
	for (int i = 0; i < 8; i++)
		qmp_server_emit_event(fx.srv, "BIG", json_pack("{s:s}", "pad", pad));
	free(pad);
	usleep(50000);
	loop_stop();
	/* Bounded: must not wait for a client that doesn't read. */
	qmp_server_destroy(fx.srv);
	fx.srv = NULL;
	tc_close(&c);
}
END_TEST

START_TEST(test_server_socket_file)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct qmp_server *s2 = NULL;
	char p2[160];
	int fd, lfd;

	/* Live socket: refused. */
	ck_assert_int_eq(qmp_server_create(&s2, fx.loop, fx.path, -1, &fake_ops, &fx.fake),
			 -EADDRINUSE);
	ck_assert_ptr_null(s2);
	/* Not a socket: refused, left alone. */
	snprintf(p2, sizeof(p2), "%s/file", fx.dir);
	fd = open(p2, O_CREAT | O_WRONLY, 0600);
	close(fd);
	loop_stop();
	ck_assert_int_eq(qmp_server_create(&s2, fx.loop, p2, -1, &fake_ops, &fx.fake), -EEXIST);
	ck_assert_int_eq(access(p2, F_OK), 0);
	unlink(p2);
	/* A stale socket file (nobody listening) is replaced. */
	snprintf(p2, sizeof(p2), "%s/stale.sock", fx.dir);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, p2);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	ck_assert_int_eq(qmp_server_create(&s2, fx.loop, p2, -1, &fake_ops, &fx.fake), 0);
	qmp_server_destroy(s2);
	ck_assert_int_eq(access(p2, F_OK), -1);
	/* Too long a path. */
	{
		char lp[200];

		memset(lp, 'a', sizeof(lp) - 1);
		lp[0] = '/';
		lp[sizeof(lp) - 1] = '\0';
		ck_assert_int_eq(qmp_server_create(&s2, fx.loop, lp, -1, &fake_ops, &fx.fake),
				 -ENAMETOOLONG);
	}
	/* Socket activation: an already listening fd; a non-listening one is refused. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	ck_assert_int_eq(qmp_server_create(&s2, fx.loop, NULL, fd, &fake_ops, &fx.fake), -EINVAL);
	close(fd);
	snprintf(p2, sizeof(p2), "%s/act.sock", fx.dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, p2);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	ck_assert_int_eq(qmp_server_create(&s2, fx.loop, NULL, lfd, &fake_ops, &fx.fake), 0);
	loop_start();
	{
		struct tclient c = { .fd = raw_connect(p2) };
		json_t *m;

		ck_assert_int_ge(c.fd, 0);
		tc_greet(&c, true);
		m = tc_cmd(&c, "{\"execute\": \"query-kvm\"}");
		ck_assert(json_object_get(m, "return"));
		json_decref(m);
		tc_close(&c);
	}
	loop_stop();
	qmp_server_destroy(s2);
	/* Not created by us: the file stays (systemd owns it). */
	ck_assert_int_eq(access(p2, F_OK), 0);
	unlink(p2);
}
END_TEST

/* ---- ember ctl ---- */

static int run_ctl(const char *outfile, const char *errfile, const char *a0, ...)
{
	char *argv[32];
	int argc = 0, rc, o1, o2, fo, fe;
	va_list ap;

	argv[argc++] = (char *)"ctl";
	va_start(ap, a0);
	for (const char *s = a0; s; s = va_arg(ap, const char *))
		argv[argc++] = (char *)s;
	va_end(ap);
	argv[argc] = NULL;
	fflush(stdout);
	fflush(stderr);
	o1 = dup(1);
	o2 = dup(2);
	fo = open(outfile, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	fe = open(errfile, O_CREAT | O_TRUNC | O_WRONLY, 0600);
	dup2(fo, 1);
	dup2(fe, 2);
	rc = ctl_main(argc, argv);
	fflush(stdout);
	fflush(stderr);
	dup2(o1, 1);
	dup2(o2, 2);
	close(o1);
	close(o2);
	close(fo);
	close(fe);
	return rc;
}

static char *slurp(const char *path)
{
	static char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	ck_assert_ptr_nonnull(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

START_TEST(test_ctl_args)
{
	char *argv[] = {
		(char *)"a=true", (char *)"b=false", (char *)"c=42", (char *)"d=-7",
		(char *)"e=hello", (char *)"f=007", (char *)"g:=[1,{\"x\":null}]",
		(char *)"h=", (char *)"i=x=y", (char *)"j:=\"12\"", (char *)"k=99999999999999999999",
	};
	char err[128];
	json_t *a = ctl_parse_args(11, argv, err, sizeof(err));

	ck_assert_ptr_nonnull(a);
	ck_assert(json_is_true(json_object_get(a, "a")));
	ck_assert(json_is_false(json_object_get(a, "b")));
	ck_assert_int_eq(json_integer_value(json_object_get(a, "c")), 42);
	ck_assert_int_eq(json_integer_value(json_object_get(a, "d")), -7);
	ck_assert_str_eq(json_string_value(json_object_get(a, "e")), "hello");
	ck_assert_str_eq(json_string_value(json_object_get(a, "f")), "007");
	ck_assert(json_is_array(json_object_get(a, "g")));
	ck_assert_str_eq(json_string_value(json_object_get(a, "h")), "");
	ck_assert_str_eq(json_string_value(json_object_get(a, "i")), "x=y");
	ck_assert_str_eq(json_string_value(json_object_get(a, "j")), "12");
	ck_assert_str_eq(json_string_value(json_object_get(a, "k")), "99999999999999999999");
	json_decref(a);

	{
		char *bad1[] = { (char *)"novalue" };
		char *bad2[] = { (char *)"=x" };
		char *bad3[] = { (char *)"k:={" };
		char *bad4[] = { (char *)":=1" };

		ck_assert_ptr_null(ctl_parse_args(1, bad1, err, sizeof(err)));
		ck_assert_ptr_null(ctl_parse_args(1, bad2, err, sizeof(err)));
		ck_assert_ptr_null(ctl_parse_args(1, bad3, err, sizeof(err)));
		ck_assert(strstr(err, "bad JSON"));
		ck_assert_ptr_null(ctl_parse_args(1, bad4, err, sizeof(err)));
	}
}
END_TEST

START_TEST(test_ctl_commands)
{
	char out[160], err[160], *s;
	json_t *j;

	snprintf(out, sizeof(out), "%s/out", fx.dir);
	snprintf(err, sizeof(err), "%s/err", fx.dir);

	ck_assert_int_eq(run_ctl(out, err, fx.path, "query-status", NULL), CTL_EXIT_OK);
	j = json_loads(slurp(out), 0, NULL);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "running");
	json_decref(j);
	/* Indented output. */
	ck_assert(strstr(slurp(out), "\n  \""));

	ck_assert_int_eq(run_ctl(out, err, fx.path, "stop", NULL), CTL_EXIT_OK);
	ck_assert_str_eq(slurp(out), "{}\n");
	ck_assert_int_eq(LD(fx.fake.state), QMP_RUN_PAUSED);

	ck_assert_int_eq(run_ctl(out, err, fx.path, "query-cpus-fast", NULL), CTL_EXIT_OK);
	j = json_loads(slurp(out), 0, NULL);
	ck_assert_uint_eq(json_array_size(j), 2);
	json_decref(j);

	/* Error reply: class and desc on one stderr line, exit 1. */
	ck_assert_int_eq(run_ctl(out, err, fx.path, "no-such", NULL), CTL_EXIT_ERROR);
	s = slurp(err);
	ck_assert(strstr(s, "CommandNotFound: The command no-such has not been found\n"));
	ck_assert_str_eq(slurp(out), "");
	ck_assert_int_eq(run_ctl(out, err, fx.path, "query-status", "x=1", NULL), CTL_EXIT_ERROR);
	ck_assert(strstr(slurp(err), "GenericError: Parameter 'x' is unexpected"));

	/* Usage and connection failures. */
	ck_assert_int_eq(run_ctl(out, err, fx.path, NULL), CTL_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(out, err, fx.path, "stop", "junk", NULL), CTL_EXIT_USAGE);
	ck_assert_int_eq(run_ctl(out, err, "/nonexistent/sock", "query-status", NULL),
			 CTL_EXIT_CONNECT);
	ck_assert(strstr(slurp(err), "/nonexistent/sock"));
	ck_assert_int_eq(run_ctl(out, err, "--help", NULL), CTL_EXIT_OK);
	ck_assert_int_eq(run_ctl(out, err, "--timeout", "x", fx.path, "stop", NULL), CTL_EXIT_USAGE);

	/* quit: the reply, then the server goes away. */
	ck_assert_int_eq(run_ctl(out, err, "--timeout", "5", fx.path, "quit", NULL), CTL_EXIT_OK);
	ck_assert_int_eq(LD(fx.fake.quits), 1);
}
END_TEST

/* A server that accepts and never answers. */
START_TEST(test_ctl_timeout)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char p[160], out[160], err[160];
	int lfd;

	snprintf(p, sizeof(p), "%s/mute.sock", fx.dir);
	snprintf(out, sizeof(out), "%s/out", fx.dir);
	snprintf(err, sizeof(err), "%s/err", fx.dir);
	lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	strcpy(sa.sun_path, p);
	ck_assert_int_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(listen(lfd, 8), 0);
	ck_assert_int_eq(run_ctl(out, err, "--timeout", "1", p, "query-status", NULL),
			 CTL_EXIT_CONNECT);
	ck_assert(strstr(slurp(err), "timed out"));
	close(lfd);
	unlink(p);
}
END_TEST

struct ctl_events_arg {
	char out[160], err[160];
	int rc;
};

static void *ctl_events_thread(void *opaque)
{
	struct ctl_events_arg *a = opaque;

	a->rc = run_ctl(a->out, a->err, fx.path, "--events", NULL);
	return NULL;
}

START_TEST(test_ctl_events)
{
	struct ctl_events_arg a;
	pthread_t th;
	int i;

	snprintf(a.out, sizeof(a.out), "%s/ev.out", fx.dir);
	snprintf(a.err, sizeof(a.err), "%s/ev.err", fx.dir);
	close(creat(a.out, 0600));
	ck_assert_int_eq(pthread_create(&th, NULL, ctl_events_thread, &a), 0);
	/* Emit until the (negotiated) client has printed one. */
	for (i = 0; i < 500 && !strstr(slurp(a.out), "PING"); i++) {
		qmp_server_emit_event(fx.srv, "PING", json_pack("{s:i}", "n", i));
		usleep(10000);
	}
	ck_assert(strstr(slurp(a.out), "\"event\":\"PING\""));
	/* Server goes away: ctl exits 0. */
	loop_stop();
	qmp_server_destroy(fx.srv);
	fx.srv = NULL;
	pthread_join(th, NULL);
	ck_assert_int_eq(a.rc, CTL_EXIT_OK);
	/* One JSON object per line. */
	{
		char *s = slurp(a.out), *line, *save = NULL;

		for (line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
			json_t *j = json_loads(line, 0, NULL);

			ck_assert_msg(j, "not JSON: %s", line);
			ck_assert_str_eq(json_string_value(json_object_get(j, "event")), "PING");
			json_decref(j);
		}
	}
}
END_TEST

/* ---- sd_notify ---- */

static int dgram_listen(const char *name, bool abstract)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	ck_assert_int_ge(fd, 0);
	if (abstract) {
		sa.sun_path[0] = '\0';
		memcpy(sa.sun_path + 1, name, strlen(name));
		len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(name));
	} else {
		strcpy(sa.sun_path, name);
		len = sizeof(sa);
	}
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, len), 0);
	return fd;
}

static void expect_dgram(int fd, const char *want)
{
	char buf[512];
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	ssize_t n;

	ck_assert_int_eq(poll(&pfd, 1, 2000), 1);
	n = recv(fd, buf, sizeof(buf) - 1, 0);
	ck_assert_int_gt(n, 0);
	buf[n] = '\0';
	ck_assert_str_eq(buf, want);
}

START_TEST(test_notify_socket)
{
	char dir[] = "/tmp/ember-notify-XXXXXX", path[128], abs_name[64], env[80];
	int fd;

	unsetenv("NOTIFY_SOCKET");
	ck_assert_int_eq(notify_ready(), 0);

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/notify", dir);
	fd = dgram_listen(path, false);
	setenv("NOTIFY_SOCKET", path, 1);
	ck_assert_int_eq(notify_ready(), 1);
	expect_dgram(fd, "READY=1");
	ck_assert_int_eq(notify_stopping(), 1);
	expect_dgram(fd, "STOPPING=1");
	ck_assert_int_eq(notify_watchdog(), 1);
	expect_dgram(fd, "WATCHDOG=1");
	ck_assert_int_eq(notify_status("booted %d\ncpus", 2), 1);
	expect_dgram(fd, "STATUS=booted 2 cpus");
	ck_assert_int_eq(notify_extend_timeout(5000000), 1);
	expect_dgram(fd, "EXTEND_TIMEOUT_USEC=5000000");
	close(fd);
	unlink(path);
	rmdir(dir);

	snprintf(abs_name, sizeof(abs_name), "ember-test-%d", (int)getpid());
	fd = dgram_listen(abs_name, true);
	snprintf(env, sizeof(env), "@%s", abs_name);
	setenv("NOTIFY_SOCKET", env, 1);
	ck_assert_int_eq(notify_ready(), 1);
	expect_dgram(fd, "READY=1");
	close(fd);

	setenv("NOTIFY_SOCKET", "vsock:2:1234", 1);
	ck_assert_int_lt(notify_ready(), 0);
	setenv("NOTIFY_SOCKET", "/nonexistent/notify", 1);
	ck_assert_int_lt(notify_ready(), 0);
	unsetenv("NOTIFY_SOCKET");
}
END_TEST

START_TEST(test_notify_watchdog)
{
	char pid[32];
	uint64_t exp;
	struct pollfd pfd;
	int fd;

	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	ck_assert_int_eq(notify_watchdog_timerfd(), -ENOENT);
	setenv("WATCHDOG_USEC", "abc", 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 0);
	setenv("WATCHDOG_USEC", "100000", 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 100000);
	setenv("WATCHDOG_PID", "1", 1);
	ck_assert_uint_eq(notify_watchdog_usec(), getpid() == 1 ? 100000 : 0);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	ck_assert_uint_eq(notify_watchdog_usec(), 100000);

	fd = notify_watchdog_timerfd();
	ck_assert_int_ge(fd, 0);
	pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
	ck_assert_int_eq(poll(&pfd, 1, 1000), 1);	/* every 50 ms */
	ck_assert_int_eq(read(fd, &exp, sizeof(exp)), (ssize_t)sizeof(exp));
	ck_assert_uint_ge(exp, 1);
	notify_watchdog_timer_fired(fd);	/* NOTIFY_SOCKET unset: harmless */
	close(fd);
}
END_TEST

START_TEST(test_notify_listen_fds)
{
	char pid[32];

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	ck_assert_int_eq(notify_listen_fd(), -1);
	setenv("LISTEN_PID", "1", 1);
	setenv("LISTEN_FDS", "1", 1);
	if (getpid() != 1)
		ck_assert_int_eq(notify_listen_fd(), -1);
	setenv("LISTEN_PID", pid, 1);
	setenv("LISTEN_FDS", "0", 1);
	ck_assert_int_eq(notify_listen_fd(), -1);
	setenv("LISTEN_FDS", "1", 1);
	setenv("LISTEN_FDNAMES", "qmp", 1);
	ck_assert_int_eq(notify_listen_fd(), 3);
	ck_assert_ptr_null(getenv("LISTEN_PID"));
	ck_assert_ptr_null(getenv("LISTEN_FDS"));
	ck_assert_ptr_null(getenv("LISTEN_FDNAMES"));
	/* Consumed: a second call finds nothing. */
	ck_assert_int_eq(notify_listen_fd(), -1);
}
END_TEST

static Suite *qmp_suite(void)
{
	Suite *s = suite_create("qmp");
	TCase *tc = tcase_create("dispatch");
	TCase *ts = tcase_create("server");
	TCase *tn = tcase_create("notify");

	tcase_add_checked_fixture(tc, sess_setup, sess_teardown);
	tcase_add_test(tc, test_greeting);
	tcase_add_test(tc, test_negotiation);
	tcase_add_test(tc, test_id_echo);
	tcase_add_test(tc, test_status_and_actions);
	tcase_add_test(tc, test_run_state_names);
	tcase_add_test(tc, test_query_shapes);
	tcase_add_test(tc, test_device_commands);
	tcase_add_test(tc, test_null_backend);
	tcase_add_test(tc, test_malformed_before_negotiation);
	tcase_add_test(tc, test_malformed_after_negotiation);
	tcase_add_test(tc, test_framing);
	tcase_add_test(tc, test_oversized_message);
	tcase_add_test(tc, test_closed_session_runs_nothing);
	tcase_add_test(tc, test_event_new);
	tcase_add_test(tc, test_ctl_args);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(ts, srv_setup, srv_teardown);
	tcase_set_timeout(ts, 60);
	tcase_add_test(ts, test_server_basic);
	tcase_add_test(ts, test_server_getfd);
	tcase_add_test(ts, test_server_events);
	tcase_add_test(ts, test_server_bad_input);
	tcase_add_test(ts, test_server_oversized);
	tcase_add_test(ts, test_server_disconnect_mid_message);
	tcase_add_test(ts, test_server_many_clients);
	tcase_add_test(ts, test_server_client_limit);
	tcase_add_test(ts, test_server_limits_validated);
	tcase_add_test(ts, test_server_handshake_timeout);
	tcase_add_test(ts, test_server_idle_eviction);
	tcase_add_test(ts, test_server_out_of_fds);
	tcase_add_test(ts, test_server_slow_client_dropped);
	tcase_add_test(ts, test_server_backpressure);
	tcase_add_test(ts, test_server_quit_flushes);
	tcase_add_test(ts, test_server_destroy_with_stuck_client);
	tcase_add_test(ts, test_server_socket_file);
	tcase_add_test(ts, test_ctl_commands);
	tcase_add_test(ts, test_ctl_timeout);
	tcase_add_test(ts, test_ctl_events);
	suite_add_tcase(s, ts);

	tcase_add_test(tn, test_notify_socket);
	tcase_add_test(tn, test_notify_watchdog);
	tcase_add_test(tn, test_notify_listen_fds);
	suite_add_tcase(s, tn);
	return s;
}

int main(void)
{
	return ck_run_suite(qmp_suite());
}
