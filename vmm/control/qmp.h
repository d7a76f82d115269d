/* The control plane: QEMU's QMP wire protocol (docs/interop/qmp-spec.rst)
 * over a unix stream socket. The server and the command dispatcher know
 * nothing about struct vm; they reach the machine through qmp_backend_ops,
 * so both are unit-tested and fuzzed with a fake backend.
 *
 * Layers:
 *   qmp_session  one client's protocol state: input framing (a streaming
 *                JSON splitter), capabilities negotiation, dispatch.
 *   qmp_server   the listening socket, clients on the main evloop, output
 *                buffering, and a thread-safe event queue. */
#ifndef EMBER_CONTROL_QMP_H
#define EMBER_CONTROL_QMP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct evloop;

#define QMP_MAX_MESSAGE  (1u << 20)	/* one input message, bytes; rejected while read */
#define QMP_MAX_BACKLOG  (4u << 20)	/* unsent output per client before it is dropped */
#define QMP_MAX_NESTING  1024
#define QMP_MAX_EVENTS   4096		/* queued, not yet delivered events */

/* Connection limits (defaults; see struct qmp_limits). */
#define QMP_MAX_CLIENTS          16
#define QMP_HANDSHAKE_TIMEOUT_MS 10000		/* connect to qmp_capabilities */
#define QMP_IDLE_TIMEOUT_MS      300000		/* evictable when the server is full */
#define QMP_LIMIT_CLIENTS_MAX    1024		/* upper bound for max_clients */

/* QEMU RunState names, as reported by query-status. */
enum qmp_run_state {
	QMP_RUN_PRELAUNCH,
	QMP_RUN_RUNNING,
	QMP_RUN_PAUSED,
	QMP_RUN_SHUTDOWN,
	QMP_RUN_GUEST_PANICKED,
	QMP_RUN_INTERNAL_ERROR,
};

const char *qmp_run_state_name(enum qmp_run_state st);

struct qmp_cpu_info {
	unsigned index;
	pid_t thread_id;	/* gettid() of the vCPU thread, 0 if not started */
	unsigned socket_id;
	unsigned core_id;
	unsigned thread_in_core;
};

/* How the control plane reaches the machine. Every callback runs on the
 * thread that runs the evloop (the main loop), one at a time.
 *
 * Actions (stop, cont, powerdown, reset, quit) return 0 when done, 1 when
 * there was nothing to do (e.g. stop while already paused: no event is
 * emitted), or a negative errno; on failure they may write a message into
 * err[errlen], which becomes the GenericError desc (strerror otherwise).
 * After a 0 return the dispatcher emits the matching event itself:
 *   stop -> STOP, cont -> RESUME, powerdown -> POWERDOWN,
 *   reset -> RESET {guest:false, reason:"host-qmp-system-reset"},
 *   quit -> SHUTDOWN {guest:false, reason:"host-qmp-quit"}.
 * Guest-initiated changes are the backend's to report (see below).
 *
 * A NULL callback makes its command fail with GenericError "... is not
 * supported" (query-status reports "running" when query_status is NULL). */
struct qmp_backend_ops {
	enum qmp_run_state (*query_status)(void *opaque);
	int (*stop)(void *opaque, char *err, size_t errlen);
	int (*cont)(void *opaque, char *err, size_t errlen);
	int (*powerdown)(void *opaque, char *err, size_t errlen);	/* ACPI power button */
	int (*reset)(void *opaque, char *err, size_t errlen);
	/* Request a clean exit; the reply and SHUTDOWN event are flushed by
	 * qmp_server_destroy, so the main loop should exit, then destroy. */
	int (*quit)(void *opaque, char *err, size_t errlen);
	/* Fill *out for vCPU number `index`; -ENOENT past the last. */
	int (*cpu_info)(void *opaque, unsigned index, struct qmp_cpu_info *out);
	/* x-query-exits: a new JSON object, suggested shape
	 * {"total": N, "reasons": {"io": N, "mmio": N, "hlt": N, ...},
	 *  "devices": {"serial": N, "virtio-blk0": N, ...},
	 *  "disks": [{"device": "virtio0", "rd_bytes": N, ...}, ...]}.
	 * NULL means {}; the dispatcher adds "disks": [] if absent. */
	json_t *(*exit_stats)(void *opaque);
	uint64_t (*memory_size)(void *opaque);	/* guest RAM, bytes */
	/* Commands the machine's devices serve, for names the dispatcher does
	 * not know itself. Returns QMP_NO_SUCH_COMMAND when no device offers
	 * `name`; otherwise the device's result: 0 with *ret set (a new
	 * reference; NULL means {}), or -errno with a one-line reason in err
	 * (GenericError). args is never NULL; the device checks it. */
	int (*device_command)(void *opaque, const char *name, json_t *args, json_t **ret,
			      char *err, size_t errlen);
	/* query-commands: append every device command's name (a JSON string)
	 * to names; duplicates and built-in names are dropped by the caller. */
	void (*device_command_names)(void *opaque, json_t *names);
	/* snapshot-save {"path": DIR}: write a snapshot into DIR. A running VM
	 * stops first and stays stopped (the backend emits STOP itself). 0, or
	 * -errno with a one-line reason in err. */
	int (*snapshot_save)(void *opaque, const char *path, char *err, size_t errlen);
	/* Live migration (migrate, migrate_cancel, migrate-set-parameters:
	 * 0 or -errno with a reason in err; the queries return new objects). */
	int (*migrate)(void *opaque, const char *uri, char *err, size_t errlen);
	int (*migrate_cancel)(void *opaque, char *err, size_t errlen);
	int (*migrate_set_parameters)(void *opaque, json_t *args, char *err, size_t errlen);
	json_t *(*query_migrate)(void *opaque);
	json_t *(*query_migrate_parameters)(void *opaque);
};

#define QMP_NO_SUCH_COMMAND 1

/* ---- Sessions: one client's protocol state (no I/O) ---- */

struct qmp_session;

/* A reply to send; msg is borrowed. */
typedef void (*qmp_send_fn)(void *opaque, json_t *msg);
/* An event raised by a command; data is stolen (may be NULL). */
typedef void (*qmp_event_fn)(void *opaque, const char *name, json_t *data);

struct qmp_session *qmp_session_create(const struct qmp_backend_ops *ops, void *backend,
				       qmp_event_fn event, void *event_opaque);
void qmp_session_destroy(struct qmp_session *s);
bool qmp_session_negotiated(const struct qmp_session *s);
/* The client is gone (dropped for its backlog, say): input already read
 * but not yet executed is discarded, now and in any later feed. */
void qmp_session_close(struct qmp_session *s);
/* A file descriptor arrived with the client's input (SCM_RIGHTS): the
 * session owns it until a getfd names it; a newer one replaces (closes) it,
 * and the session closes it when destroyed. */
void qmp_session_give_fd(struct qmp_session *s, int fd);

/* Framing + dispatch: feed raw bytes as they arrive (objects may be split
 * across calls or several may share one call, with or without newlines).
 * Each complete message, and each framing error, produces one reply through
 * send. Lexical errors reply GenericError and resynchronise at the next
 * '{' or control character (newline); a message over QMP_MAX_MESSAGE
 * replies GenericError at once and the rest of it is discarded. QEMU's
 * 'single-quoted' string extension is accepted. */
void qmp_session_feed(struct qmp_session *s, const void *buf, size_t len,
		      qmp_send_fn send, void *opaque);

/* Dispatch one complete message (standard JSON text); returns the reply
 * (new reference, never NULL). */
json_t *qmp_handle_message(struct qmp_session *s, const char *buf, size_t len);
/* Dispatch an already parsed request (borrowed). */
json_t *qmp_dispatch(struct qmp_session *s, json_t *req);

/* {"QMP": {"version": ..., "capabilities": []}} */
json_t *qmp_greeting(void);
/* {"error": {"class": cls, "desc": ...}} */
json_t *qmp_error_new(const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* {"event": name, "data": data, "timestamp": {...}} stamped now (wall
 * clock); data is stolen and omitted when NULL. */
json_t *qmp_event_new(const char *name, json_t *data);

/* ---- The server ---- */

struct qmp_server;

/* Listen on `path` (created mode 0600, a stale socket file is replaced,
 * unlinked by destroy), or, when path is NULL, on the already listening
 * socket listen_fd (socket activation; the server owns it once created,
 * the caller still does on failure). Returns 0 or -errno: -EADDRINUSE (a
 * server is live on path), -EEXIST (path is not a socket), -EINVAL (fd not
 * listening), -ENAMETOOLONG. */
int qmp_server_create(struct qmp_server **out, struct evloop *loop,
		      const char *path, int listen_fd,
		      const struct qmp_backend_ops *ops, void *backend)
	__attribute__((warn_unused_result));

/* Connection limits; 0 in a timeout disables it.
 *   max_clients           connections served at once. One more is answered
 *                         with a GenericError ("too many QMP clients") and
 *                         closed, unless an idle client can be evicted.
 *   handshake_timeout_ms  a client that has not completed qmp_capabilities
 *                         this long after connecting gets a GenericError
 *                         and is closed.
 *   idle_timeout_ms       a negotiated client that has sent nothing for this
 *                         long is closed only when the server is full and a
 *                         new client needs its slot (the longest idle goes
 *                         first). Event listeners that never send, like
 *                         `ember ctl --events` or libvirt's monitor, are
 *                         never dropped otherwise. */
struct qmp_limits {
	unsigned max_clients;
	unsigned handshake_timeout_ms;
	unsigned idle_timeout_ms;
};

#define QMP_LIMITS_DEFAULT ((struct qmp_limits){ \
	.max_clients = QMP_MAX_CLIENTS, \
	.handshake_timeout_ms = QMP_HANDSHAKE_TIMEOUT_MS, \
	.idle_timeout_ms = QMP_IDLE_TIMEOUT_MS })

/* Replace the limits (a new server starts with QMP_LIMITS_DEFAULT). Call on
 * the thread that runs the evloop, or before it runs. Clients already
 * connected stay; a lower max_clients only refuses new ones. Returns 0 or
 * -EINVAL (max_clients 0 or above QMP_LIMIT_CLIENTS_MAX). */
int qmp_server_set_limits(struct qmp_server *srv, const struct qmp_limits *lim)
	__attribute__((warn_unused_result));

/* Send an event to every negotiated client. Thread-safe (vCPU threads may
 * call it); delivery happens on the main loop. data is stolen (may be
 * NULL). srv may be NULL (no control socket): data is just released.
 * Events for the backend to raise itself, QEMU-style:
 *   SHUTDOWN {guest:true, reason:"guest-shutdown"}   ACPI S5 / poweroff
 *   SHUTDOWN {guest:false, reason:"host-signal"}     SIGTERM/SIGINT quit
 *   RESET    {guest:true, reason:"guest-reset"}      guest-initiated reset
 *   STOP / RESUME                                    pauses not caused by QMP
 *   GUEST_PANICKED {action:"pause"|"poweroff"}
 */
void qmp_server_emit_event(struct qmp_server *srv, const char *name, json_t *data);

/* Deliver queued events, flush pending output (bounded wait), close every
 * client and the listener, unlink the socket file. NULL is a no-op. */
void qmp_server_destroy(struct qmp_server *srv);

/* Connected clients (any thread; for tests and diagnostics). */
unsigned qmp_server_nr_clients(const struct qmp_server *srv);

#endif
