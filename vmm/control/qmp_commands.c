/* QMP dispatch: request validation in QEMU's order, negotiation, argument
 * checking against a small per-command schema, and the commands, whose
 * return shapes follow QEMU's QAPI schema. */
#include "vmm/control/qmp_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vmm/control/fdstore.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "0.0.0"
#endif

/* The QEMU version whose QMP dialect we speak. */
#define QMP_QEMU_MAJOR 7
#define QMP_QEMU_MINOR 2
#define QMP_QEMU_MICRO 0

enum qmp_arg_type { ARG_BOOL, ARG_INT, ARG_STR, ARG_ARRAY, ARG_OBJECT };

struct qmp_arg {
	const char *name;
	enum qmp_arg_type type;
	bool optional;
};

typedef json_t *(*qmp_cmd_fn)(struct qmp_session *s, json_t *args, json_t **err);

struct qmp_cmd {
	const char *name;
	qmp_cmd_fn fn;
	const struct qmp_arg *args;	/* terminated by a NULL name; NULL: none */
};

static const struct qmp_cmd *cmd_lookup(const char *name);

const char *qmp_run_state_name(enum qmp_run_state st)
{
	switch (st) {
	case QMP_RUN_PRELAUNCH: return "prelaunch";
	case QMP_RUN_RUNNING: return "running";
	case QMP_RUN_PAUSED: return "paused";
	case QMP_RUN_SHUTDOWN: return "shutdown";
	case QMP_RUN_GUEST_PANICKED: return "guest-panicked";
	case QMP_RUN_INTERNAL_ERROR: return "internal-error";
	}
	return "internal-error";
}

json_t *qmp_error_new(const char *cls, const char *fmt, ...)
{
	char desc[1024];
	json_t *d;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(desc, sizeof(desc), fmt, ap);
	va_end(ap);
	d = json_string(desc);
	if (!d) {
		/* Truncation split a UTF-8 sequence: never lose the reply. */
		for (char *p = desc; *p; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		d = json_string(desc);
	}
	return json_pack("{s:{s:s, s:o}}", "error", "class", cls, "desc", d);
}

static json_t *version_info(void)
{
	return json_pack("{s:{s:i, s:i, s:i}, s:s}",
			 "qemu", "micro", QMP_QEMU_MICRO, "minor", QMP_QEMU_MINOR,
			 "major", QMP_QEMU_MAJOR, "package", "ember " EMBER_VERSION);
}

json_t *qmp_greeting(void)
{
	return json_pack("{s:{s:o, s:[]}}", "QMP", "version", version_info(),
			 "capabilities");
}

json_t *qmp_event_new(const char *name, json_t *data)
{
	struct timespec ts;
	json_t *ev;

	clock_gettime(CLOCK_REALTIME, &ts);
	ev = json_pack("{s:s, s:{s:I, s:I}}", "event", name, "timestamp",
		       "seconds", (json_int_t)ts.tv_sec,
		       "microseconds", (json_int_t)(ts.tv_nsec / 1000));
	if (ev && data)
		json_object_set(ev, "data", data);
	json_decref(data);
	return ev;
}

static void emit(struct qmp_session *s, const char *name, json_t *data)
{
	if (s->event)
		s->event(s->event_opaque, name, data);
	else
		json_decref(data);
}

static json_t *generic_error(const char *fmt, const char *arg)
{
	return qmp_error_new("GenericError", fmt, arg);
}

/* ---- argument checking ---- */

static const char *arg_type_name(enum qmp_arg_type t)
{
	switch (t) {
	case ARG_BOOL: return "boolean";
	case ARG_INT: return "integer";
	case ARG_STR: return "string";
	case ARG_ARRAY: return "array";
	case ARG_OBJECT: return "object";
	}
	return "value";
}

static bool arg_type_ok(enum qmp_arg_type t, json_t *v)
{
	switch (t) {
	case ARG_BOOL: return json_is_boolean(v);
	case ARG_INT: return json_is_integer(v);
	case ARG_STR: return json_is_string(v);
	case ARG_ARRAY: return json_is_array(v);
	case ARG_OBJECT: return json_is_object(v);
	}
	return false;
}

static json_t *check_args(const struct qmp_cmd *cmd, json_t *args)
{
	static const struct qmp_arg none[] = { { NULL, 0, false } };
	const struct qmp_arg *spec = cmd->args ? cmd->args : none;
	const struct qmp_arg *a;
	const char *key;
	json_t *val;

	json_object_foreach(args, key, val) {
		for (a = spec; a->name; a++)
			if (!strcmp(a->name, key))
				break;
		if (!a->name)
			return generic_error("Parameter '%s' is unexpected", key);
		if (!arg_type_ok(a->type, val))
			return qmp_error_new("GenericError", "Parameter '%s' expects %s",
					     key, arg_type_name(a->type));
	}
	for (a = spec; a->name; a++)
		if (!a->optional && !json_object_get(args, a->name))
			return generic_error("Parameter '%s' is missing", a->name);
	return NULL;
}

/* ---- commands ---- */

static const struct qmp_arg caps_args[] = {
	{ "enable", ARG_ARRAY, true },
	{ NULL, 0, false },
};

static json_t *cmd_qmp_capabilities(struct qmp_session *s, json_t *args, json_t **err)
{
	json_t *enable = json_object_get(args, "enable"), *cap;
	size_t i;

	/* QEMU's QMPCapability enum is just "oob"; we offer none. */
	json_array_foreach(enable, i, cap) {
		if (!json_is_string(cap)) {
			*err = qmp_error_new("GenericError",
					     "Parameter 'enable[%zu]' expects string", i);
			return NULL;
		}
		if (strcmp(json_string_value(cap), "oob")) {
			*err = qmp_error_new("GenericError",
					     "Parameter 'enable[%zu]' does not accept value '%s'",
					     i, json_string_value(cap));
			return NULL;
		}
		*err = generic_error("Capability '%s' not available", "oob");
		return NULL;
	}
	s->negotiated = true;
	return json_object();
}

static json_t *cmd_query_version(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)s; (void)args; (void)err;
	return version_info();
}

static json_t *cmd_query_name(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)s; (void)args; (void)err;
	return json_object();
}

static json_t *cmd_query_kvm(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)s; (void)args; (void)err;
	return json_pack("{s:b, s:b}", "enabled", 1, "present", 1);
}

static json_t *cmd_query_status(struct qmp_session *s, json_t *args, json_t **err)
{
	enum qmp_run_state st = QMP_RUN_RUNNING;

	(void)args; (void)err;
	if (s->ops && s->ops->query_status)
		st = s->ops->query_status(s->backend);
	return json_pack("{s:b, s:b, s:s}", "running", st == QMP_RUN_RUNNING,
			 "singlestep", 0, "status", qmp_run_state_name(st));
}

static json_t *cmd_query_memory(struct qmp_session *s, json_t *args, json_t **err)
{
	uint64_t base = 0;

	(void)args; (void)err;
	if (s->ops && s->ops->memory_size)
		base = s->ops->memory_size(s->backend);
	return json_pack("{s:I, s:I}", "base-memory", (json_int_t)base,
			 "plugged-memory", (json_int_t)0);
}

static json_t *cmd_query_cpus_fast(struct qmp_session *s, json_t *args, json_t **err)
{
	json_t *list = json_array();
	unsigned i;

	(void)args; (void)err;
	for (i = 0; s->ops && s->ops->cpu_info; i++) {
		struct qmp_cpu_info ci = { 0 };
		char qom[64];

		if (s->ops->cpu_info(s->backend, i, &ci) < 0)
			break;
		snprintf(qom, sizeof(qom), "/machine/unattached/device[%u]", ci.index);
		json_array_append_new(list, json_pack(
			"{s:i, s:I, s:{s:i, s:i, s:i}, s:s, s:s}",
			"cpu-index", (int)ci.index,
			"thread-id", (json_int_t)ci.thread_id,
			"props", "core-id", (int)ci.core_id, "socket-id", (int)ci.socket_id,
			"thread-id", (int)ci.thread_in_core,
			"qom-path", qom, "target", "x86_64"));
	}
	return list;
}

static json_t *cmd_x_query_exits(struct qmp_session *s, json_t *args, json_t **err)
{
	json_t *ret = NULL;

	(void)args; (void)err;
	if (s->ops && s->ops->exit_stats)
		ret = s->ops->exit_stats(s->backend);
	if (!json_is_object(ret)) {
		json_decref(ret);
		ret = json_object();
	}
	if (!json_is_array(json_object_get(ret, "disks")))
		json_object_set_new(ret, "disks", json_array());
	return ret;
}

static json_t *cmd_query_commands(struct qmp_session *s, json_t *args, json_t **err);

/* Run an action; on success emit its event (data stolen either way). */
static json_t *action(struct qmp_session *s, int (*fn)(void *, char *, size_t),
		      const char *what, const char *event, json_t *data, json_t **err)
{
	char msg[256] = "";
	int r;

	if (!fn) {
		json_decref(data);
		*err = generic_error("'%s' is not supported", what);
		return NULL;
	}
	r = fn(s->backend, msg, sizeof(msg));
	if (r < 0) {
		json_decref(data);
		*err = generic_error("%s", msg[0] ? msg : strerror(-r));
		return NULL;
	}
	if (r == 0)
		emit(s, event, data);
	else
		json_decref(data);
	return json_object();
}

#define OP(s, name) ((s)->ops ? (s)->ops->name : NULL)

static json_t *cmd_stop(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	return action(s, OP(s, stop), "stop", "STOP", NULL, err);
}

static json_t *cmd_cont(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	return action(s, OP(s, cont), "cont", "RESUME", NULL, err);
}

static json_t *cmd_system_powerdown(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	return action(s, OP(s, powerdown), "system_powerdown", "POWERDOWN", NULL, err);
}

static json_t *cmd_system_reset(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	return action(s, OP(s, reset), "system_reset", "RESET",
		      json_pack("{s:b, s:s}", "guest", 0, "reason", "host-qmp-system-reset"),
		      err);
}

static json_t *cmd_quit(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	return action(s, OP(s, quit), "quit", "SHUTDOWN",
		      json_pack("{s:b, s:s}", "guest", 0, "reason", "host-qmp-quit"), err);
}

static const struct qmp_arg snapshot_save_args[] = {
	{ "path", ARG_STR, false },
	{ NULL, 0, false },
};

static json_t *cmd_snapshot_save(struct qmp_session *s, json_t *args, json_t **err)
{
	const char *path = json_string_value(json_object_get(args, "path"));
	char msg[512] = "";
	int r;

	if (!OP(s, snapshot_save)) {
		*err = generic_error("'%s' is not supported", "snapshot-save");
		return NULL;
	}
	r = s->ops->snapshot_save(s->backend, path, msg, sizeof(msg));
	if (r < 0) {
		*err = generic_error("%s", msg[0] ? msg : strerror(-r));
		return NULL;
	}
	return json_object();
}

/* Live migration: QEMU's commands; the work is the backend's. */
static const struct qmp_arg migrate_args[] = {
	{ "uri", ARG_STR, false },
	{ "detach", ARG_BOOL, true },	/* QEMU's; migrate never blocks here */
	{ "blk", ARG_BOOL, true },
	{ "inc", ARG_BOOL, true },
	{ "resume", ARG_BOOL, true },
	{ NULL, 0, false },
};

static json_t *cmd_migrate(struct qmp_session *s, json_t *args, json_t **err)
{
	const char *uri = json_string_value(json_object_get(args, "uri"));
	char msg[512] = "";
	int r;

	if (!OP(s, migrate)) {
		*err = generic_error("'%s' is not supported", "migrate");
		return NULL;
	}
	if (json_is_true(json_object_get(args, "blk")) || json_is_true(json_object_get(args, "inc")) ||
	    json_is_true(json_object_get(args, "resume"))) {
		*err = generic_error("%s", "blk, inc and resume are not supported: disks are shared files");
		return NULL;
	}
	r = s->ops->migrate(s->backend, uri, msg, sizeof(msg));
	if (r < 0) {
		*err = generic_error("%s", msg[0] ? msg : strerror(-r));
		return NULL;
	}
	return json_object();
}

static json_t *cmd_migrate_cancel(struct qmp_session *s, json_t *args, json_t **err)
{
	char msg[256] = "";
	int r;

	(void)args;
	if (!OP(s, migrate_cancel)) {
		*err = generic_error("'%s' is not supported", "migrate_cancel");
		return NULL;
	}
	r = s->ops->migrate_cancel(s->backend, msg, sizeof(msg));
	if (r < 0) {
		*err = generic_error("%s", msg[0] ? msg : strerror(-r));
		return NULL;
	}
	return json_object();
}

static const struct qmp_arg migrate_parameters_args[] = {
	{ "downtime-limit", ARG_INT, true },
	{ "max-bandwidth", ARG_INT, true },
	{ NULL, 0, false },
};

static json_t *cmd_migrate_set_parameters(struct qmp_session *s, json_t *args, json_t **err)
{
	char msg[256] = "";
	json_t *empty = NULL;
	int r;

	if (!OP(s, migrate_set_parameters)) {
		*err = generic_error("'%s' is not supported", "migrate-set-parameters");
		return NULL;
	}
	if (!args)
		args = empty = json_object();
	r = s->ops->migrate_set_parameters(s->backend, args, msg, sizeof(msg));
	json_decref(empty);
	if (r < 0) {
		*err = generic_error("%s", msg[0] ? msg : strerror(-r));
		return NULL;
	}
	return json_object();
}

static json_t *cmd_query_migrate(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	(void)err;
	return OP(s, query_migrate) ? s->ops->query_migrate(s->backend) : json_object();
}

static json_t *cmd_query_migrate_parameters(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)args;
	(void)err;
	return OP(s, query_migrate_parameters) ? s->ops->query_migrate_parameters(s->backend) :
						 json_object();
}

/* getfd / closefd: QEMU's names, arguments and messages. */
static const struct qmp_arg fdname_args[] = {
	{ "fdname", ARG_STR, false },
	{ NULL, 0, false },
};

static json_t *cmd_getfd(struct qmp_session *s, json_t *args, json_t **err)
{
	const char *name = json_string_value(json_object_get(args, "fdname"));
	char msg[160] = "";
	int fd = s->pending_fd;

	if (fd < 0) {
		*err = generic_error("%s", "No file descriptor supplied via SCM_RIGHTS");
		return NULL;
	}
	s->pending_fd = -1;
	if (fdstore_put(name, fd, msg, sizeof(msg)) < 0) {
		*err = generic_error("%s", msg);
		return NULL;
	}
	return json_object();
}

static json_t *cmd_closefd(struct qmp_session *s, json_t *args, json_t **err)
{
	const char *name = json_string_value(json_object_get(args, "fdname"));

	(void)s;
	if (fdstore_close(name) < 0) {
		*err = generic_error("File descriptor named '%s' not found", name);
		return NULL;
	}
	return json_object();
}

static json_t *cmd_x_query_fds(struct qmp_session *s, json_t *args, json_t **err)
{
	(void)s;
	(void)args;
	(void)err;
	return fdstore_list();
}

static const struct qmp_arg qom_list_types_args[] = {
	{ "implements", ARG_STR, true },
	{ "abstract", ARG_BOOL, true },
	{ NULL, 0, false },
};

static const struct qmp_arg device_list_properties_args[] = {
	{ "typename", ARG_STR, false },
	{ NULL, 0, false },
};

static const struct qmp_cmd qmp_cmds[] = {
	{ "qmp_capabilities", cmd_qmp_capabilities, caps_args },
	{ "query-version", cmd_query_version, NULL },
	{ "query-commands", cmd_query_commands, NULL },
	{ "query-name", cmd_query_name, NULL },
	{ "query-status", cmd_query_status, NULL },
	{ "query-kvm", cmd_query_kvm, NULL },
	{ "query-cpus-fast", cmd_query_cpus_fast, NULL },
	{ "query-memory-size-summary", cmd_query_memory, NULL },
	{ "x-query-exits", cmd_x_query_exits, NULL },
	{ "stop", cmd_stop, NULL },
	{ "cont", cmd_cont, NULL },
	{ "system_powerdown", cmd_system_powerdown, NULL },
	{ "system_reset", cmd_system_reset, NULL },
	{ "quit", cmd_quit, NULL },
	{ "snapshot-save", cmd_snapshot_save, snapshot_save_args },
	{ "getfd", cmd_getfd, fdname_args },
	{ "migrate", cmd_migrate, migrate_args },
	{ "migrate_cancel", cmd_migrate_cancel, NULL },
	{ "migrate-set-parameters", cmd_migrate_set_parameters, migrate_parameters_args },
	{ "query-migrate", cmd_query_migrate, NULL },
	{ "query-migrate-parameters", cmd_query_migrate_parameters, NULL },
	{ "closefd", cmd_closefd, fdname_args },
	{ "x-query-fds", cmd_x_query_fds, NULL },
	{ "qom-list-types", qmp_cmd_qom_list_types, qom_list_types_args },
	{ "device-list-properties", qmp_cmd_device_list_properties, device_list_properties_args },
};

static json_t *cmd_query_commands(struct qmp_session *s, json_t *args, json_t **err)
{
	json_t *list = json_array(), *names, *name;
	size_t i;

	(void)args; (void)err;
	for (i = 0; i < sizeof(qmp_cmds) / sizeof(qmp_cmds[0]); i++)
		json_array_append_new(list, json_pack("{s:s}", "name", qmp_cmds[i].name));
	if (!s->ops || !s->ops->device_command_names)
		return list;
	names = json_array();
	s->ops->device_command_names(s->backend, names);
	json_array_foreach(names, i, name) {
		const char *n = json_string_value(name);
		size_t j;
		json_t *seen;
		bool dup = false;

		if (!n || cmd_lookup(n))
			continue;
		json_array_foreach(list, j, seen)
			dup = dup || !strcmp(json_string_value(json_object_get(seen, "name")), n);
		if (!dup)
			json_array_append_new(list, json_pack("{s:s}", "name", n));
	}
	json_decref(names);
	return list;
}

static const struct qmp_cmd *cmd_lookup(const char *name)
{
	size_t i;

	for (i = 0; i < sizeof(qmp_cmds) / sizeof(qmp_cmds[0]); i++)
		if (!strcmp(qmp_cmds[i].name, name))
			return &qmp_cmds[i];
	return NULL;
}

/* ---- dispatch ---- */

static json_t *with_id(json_t *reply, json_t *id)
{
	if (reply && id)
		json_object_set(reply, "id", id);
	return reply;
}

/* A command no built-in serves goes to the devices (their own argument
 * checks); a device's failure is a GenericError with its reason. */
static json_t *device_command(struct qmp_session *s, const char *name, json_t *args)
{
	json_t *empty = NULL, *ret = NULL;
	char msg[256] = "";
	int r = QMP_NO_SUCH_COMMAND;

	if (s->ops && s->ops->device_command) {
		if (!args)
			args = empty = json_object();
		r = s->ops->device_command(s->backend, name, args, &ret, msg, sizeof(msg));
		json_decref(empty);
	}
	if (r == QMP_NO_SUCH_COMMAND) {
		json_decref(ret);
		return qmp_error_new("CommandNotFound", "The command %s has not been found",
				     name);
	}
	if (r < 0) {
		json_decref(ret);
		return generic_error("%s", msg[0] ? msg : strerror(-r));
	}
	return json_pack("{s:o}", "return", ret ? ret : json_object());
}

static json_t *dispatch(struct qmp_session *s, json_t *req, json_t **id_out)
{
	const struct qmp_cmd *cmd;
	json_t *exec, *args, *val, *ret, *err = NULL;
	const char *key, *name;

	if (!json_is_object(req))
		return generic_error("%s", "QMP input must be a JSON object");
	*id_out = json_object_get(req, "id");

	exec = json_object_get(req, "execute");
	if (exec && !json_is_string(exec))
		return generic_error("QMP input member '%s' must be a string", "execute");
	args = json_object_get(req, "arguments");
	if (args && !json_is_object(args))
		return generic_error("QMP input member '%s' must be an object", "arguments");
	json_object_foreach(req, key, val) {
		if (strcmp(key, "execute") && strcmp(key, "arguments") && strcmp(key, "id"))
			return generic_error("QMP input member '%s' is unexpected", key);
	}
	if (!exec)
		return generic_error("%s", "Expected either 'execute' or 'exec-oob'");

	name = json_string_value(exec);
	cmd = cmd_lookup(name);
	if (!s->negotiated && (!cmd || cmd->fn != cmd_qmp_capabilities))
		return qmp_error_new("CommandNotFound",
				     "Expecting capabilities negotiation with 'qmp_capabilities'");
	if (!cmd)
		return device_command(s, name, args);
	if (s->negotiated && cmd->fn == cmd_qmp_capabilities)
		return qmp_error_new("CommandNotFound",
				     "Capabilities negotiation is already complete, command ignored");

	/* jansson's object accessors accept NULL: no arguments. */
	err = check_args(cmd, args);
	if (err)
		return err;

	ret = cmd->fn(s, args, &err);
	if (!ret)
		return err ? err : generic_error("%s", "Internal error");
	return json_pack("{s:o}", "return", ret);
}

json_t *qmp_dispatch(struct qmp_session *s, json_t *req)
{
	json_t *id = NULL;
	json_t *reply = dispatch(s, req, &id);

	return with_id(reply, id);
}

json_t *qmp_handle_message(struct qmp_session *s, const char *buf, size_t len)
{
	json_error_t jerr;
	json_t *req, *reply;

	req = json_loadb(buf, len, JSON_DECODE_ANY, &jerr);
	if (!req)
		return generic_error("JSON parse error, %s", jerr.text);
	reply = qmp_dispatch(s, req);
	json_decref(req);
	return reply;
}
