/* QMP input framing and dispatch: arbitrary bytes into a session with a
 * fake backend, as a client would send them over the socket.
 *
 * Byte 0 picks the mode: bit 0 negotiates first, bits 1-7 the chunk size
 * the rest is fed in (0 = all at once), so split messages are covered. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

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

static int f_block(void *o, unsigned i, struct qmp_block_info *bi)
{
	(void)o;
	if (i >= 1)
		return -1;
	bi->device = "virtio0";
	bi->file = "/dev/null";
	bi->size = 1 << 20;
	return 0;
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

static const struct qmp_backend_ops ops = {
	.query_status = f_status,
	.stop = f_toggle,
	.cont = f_toggle,
	.powerdown = f_ok,
	.reset = f_fail,
	.quit = f_ok,
	.cpu_info = f_cpu,
	.block_info = f_block,
	.exit_stats = f_exits,
	.memory_size = f_mem,
};

static void on_event(void *opaque, const char *name, json_t *data)
{
	json_t *ev = qmp_event_new(name, data);

	(void)opaque;
	json_decref(ev);
}

static void on_reply(void *opaque, json_t *msg)
{
	char *text = json_dumps(msg, JSON_COMPACT | JSON_ENSURE_ASCII);

	(void)opaque;
	if (!text || (!json_object_get(msg, "return") && !json_object_get(msg, "error")))
		abort();	/* every reply is serialisable and well-formed */
	free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char caps[] = "{\"execute\":\"qmp_capabilities\"}";
	struct qmp_session *s;
	size_t chunk, off;

	if (size < 1)
		return 0;
	s = qmp_session_create(&ops, NULL, on_event, NULL);
	if (!s)
		return 0;
	if (data[0] & 1)
		qmp_session_feed(s, caps, sizeof(caps) - 1, on_reply, NULL);
	chunk = data[0] >> 1;
	data++;
	size--;
	if (!chunk)
		chunk = size ? size : 1;
	for (off = 0; off < size; off += chunk)
		qmp_session_feed(s, data + off, size - off < chunk ? size - off : chunk,
				 on_reply, NULL);
	qmp_session_destroy(s);
	return 0;
}
