/* QMP input framing and dispatch: arbitrary bytes into a session with a
 * fake backend, as a client would send them over the socket.
 *
 * Byte 0 picks the mode: bit 0 negotiates first, bits 1-7 the chunk size
 * the rest is fed in (0 = all at once), so split messages are covered. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmm/control/qmp.h"
#include "fuzz/fuzz_qmp_backend.h"

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
	s = qmp_session_create(&ops_backend, NULL, on_event, NULL);
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
