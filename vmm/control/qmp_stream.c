/* QMP input framing: a byte-at-a-time splitter that finds where each
 * top-level JSON value ends (brace/bracket depth, string and escape
 * awareness), normalises QEMU's 'single-quoted' strings to standard JSON and
 * hands complete messages to the dispatcher. Parsing proper is jansson's. */
#include "vmm/control/qmp_internal.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct feed_ctx {
	struct qmp_session *s;
	qmp_send_fn send;
	void *opaque;
};

struct qmp_session *qmp_session_create(const struct qmp_backend_ops *ops, void *backend,
				       qmp_event_fn event, void *event_opaque)
{
	struct qmp_session *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ops = ops;
	s->backend = backend;
	s->event = event;
	s->event_opaque = event_opaque;
	s->pending_fd = -1;
	return s;
}

void qmp_session_destroy(struct qmp_session *s)
{
	if (!s)
		return;
	qmp_lexer_free(&s->lx);
	if (s->pending_fd >= 0)
		close(s->pending_fd);
	free(s);
}

bool qmp_session_negotiated(const struct qmp_session *s)
{
	return s->negotiated;
}

void qmp_session_give_fd(struct qmp_session *s, int fd)
{
	if (s->pending_fd >= 0)
		close(s->pending_fd);
	s->pending_fd = fd;
}

void qmp_session_close(struct qmp_session *s)
{
	s->closed = true;
}

void qmp_lexer_reset(struct qmp_lexer *lx)
{
	lx->in_msg = false;
	lx->discard = false;
	lx->braces = 0;
	lx->brackets = 0;
	lx->len = 0;
	/* Don't keep a huge buffer around after a big message. */
	if (lx->cap > 64 * 1024) {
		free(lx->buf);
		lx->buf = NULL;
		lx->cap = 0;
	}
}

void qmp_lexer_free(struct qmp_lexer *lx)
{
	free(lx->buf);
	memset(lx, 0, sizeof(*lx));
}

static void send_reply(struct feed_ctx *fc, json_t *reply)
{
	if (reply)
		fc->send(fc->opaque, reply);
	json_decref(reply);
}

/* A lexical error: one reply per error, then skip to a resync point. */
static void lex_error(struct feed_ctx *fc, const char *fmt, unsigned char c)
{
	struct qmp_lexer *lx = &fc->s->lx;
	bool replied = lx->discard;

	qmp_lexer_reset(lx);
	lx->state = LX_RECOVER;
	if (!replied)
		send_reply(fc, qmp_error_new("GenericError", fmt, c));
}

static void put(struct feed_ctx *fc, const char *p, size_t n)
{
	struct qmp_lexer *lx = &fc->s->lx;

	if (lx->discard)
		return;
	if (lx->len + n > QMP_MAX_MESSAGE) {
		/* Reply now; keep following the structure so the rest of the
		 * message is dropped without a cascade of errors. */
		free(lx->buf);
		lx->buf = NULL;
		lx->cap = 0;
		lx->len = 0;
		lx->discard = true;
		send_reply(fc, qmp_error_new("GenericError",
					     "JSON message exceeds the %u byte limit",
					     QMP_MAX_MESSAGE));
		return;
	}
	if (lx->len + n > lx->cap) {
		size_t cap = lx->cap ? lx->cap : 256;
		char *b;

		while (cap < lx->len + n)
			cap *= 2;
		if (cap > QMP_MAX_MESSAGE)
			cap = QMP_MAX_MESSAGE;
		b = realloc(lx->buf, cap);
		if (!b) {
			lx->discard = true;
			send_reply(fc, qmp_error_new("GenericError", "Out of memory"));
			return;
		}
		lx->buf = b;
		lx->cap = cap;
	}
	memcpy(lx->buf + lx->len, p, n);
	lx->len += n;
}

static void put1(struct feed_ctx *fc, char c)
{
	put(fc, &c, 1);
}

static void complete(struct feed_ctx *fc)
{
	struct qmp_lexer *lx = &fc->s->lx;

	lx->state = LX_NORMAL;
	if (!lx->discard && lx->len && !fc->s->closed)
		send_reply(fc, qmp_handle_message(fc->s, lx->buf, lx->len));
	qmp_lexer_reset(lx);
}

static bool is_scalar_char(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	       (c >= 'A' && c <= 'Z') || c == '+' || c == '-' || c == '.';
}

/* Bytes that can never appear in UTF-8 text. */
static bool is_impossible(unsigned char c)
{
	return c == 0xFE || c == 0xFF;
}

static void open_container(struct feed_ctx *fc, unsigned *count, char c)
{
	struct qmp_lexer *lx = &fc->s->lx;

	if (lx->braces + lx->brackets >= QMP_MAX_NESTING) {
		lex_error(fc, "JSON nesting exceeds the limit at '%c'", (unsigned char)c);
		return;
	}
	(*count)++;
	lx->in_msg = true;
	put1(fc, c);
}

static void close_container(struct feed_ctx *fc, unsigned *count, char c)
{
	struct qmp_lexer *lx = &fc->s->lx;

	if (*count == 0) {
		lex_error(fc, "JSON parse error, stray '%c'", (unsigned char)c);
		return;
	}
	(*count)--;
	put1(fc, c);
	if (lx->braces == 0 && lx->brackets == 0)
		complete(fc);
}

/* Returns false when c must be looked at again in the new state. */
static bool lex_byte(struct feed_ctx *fc, unsigned char c)
{
	struct qmp_lexer *lx = &fc->s->lx;
	bool top = lx->braces == 0 && lx->brackets == 0;

	switch (lx->state) {
	case LX_RECOVER:
		if (c == '{') {
			lx->state = LX_NORMAL;
			return false;
		}
		if (c < 0x20 || is_impossible(c))
			lx->state = LX_NORMAL;
		return true;

	case LX_STRING:
		if (c < 0x20 || is_impossible(c)) {
			lex_error(fc, "JSON parse error, invalid byte 0x%02x in string", c);
		} else if (c == '\\') {
			lx->state = LX_ESCAPE;
		} else if (c == (unsigned char)lx->quote) {
			put1(fc, '"');
			lx->state = LX_NORMAL;
			if (top)
				complete(fc);
		} else if (c == '"') {
			put(fc, "\\\"", 2);	/* in a single-quoted string */
		} else {
			put1(fc, (char)c);
		}
		return true;

	case LX_ESCAPE:
		if (c < 0x20 || is_impossible(c)) {
			lex_error(fc, "JSON parse error, invalid byte 0x%02x in string", c);
			return true;
		}
		if (c == '\'') {
			put1(fc, '\'');
		} else {
			/* jansson validates the escape itself. */
			put1(fc, '\\');
			put1(fc, (char)c);
		}
		lx->state = LX_STRING;
		return true;

	case LX_SCALAR:
		if (is_scalar_char(c)) {
			put1(fc, (char)c);
			return true;
		}
		complete(fc);
		return false;

	case LX_NORMAL:
		break;
	}

	switch (c) {
	case ' ': case '\t': case '\r': case '\n':
		/* Kept inside a message: it separates tokens. */
		if (lx->in_msg)
			put1(fc, (char)c);
		return true;
	case '{':
		open_container(fc, &lx->braces, '{');
		return true;
	case '[':
		open_container(fc, &lx->brackets, '[');
		return true;
	case '}':
		close_container(fc, &lx->braces, '}');
		return true;
	case ']':
		close_container(fc, &lx->brackets, ']');
		return true;
	case '"':
	case '\'':
		lx->quote = (char)c;
		lx->state = LX_STRING;
		lx->in_msg = true;
		put1(fc, '"');
		return true;
	case ':':
	case ',':
		if (top)
			lex_error(fc, "JSON parse error, stray '%c'", c);
		else
			put1(fc, (char)c);
		return true;
	}
	if (is_scalar_char(c)) {
		if (top) {
			/* Only true/false/null and numbers can start a value. */
			if (!strchr("tfn-0123456789", c)) {
				lex_error(fc, "JSON parse error, stray '%c'", c);
				return true;
			}
			lx->state = LX_SCALAR;
			lx->in_msg = true;
		}
		put1(fc, (char)c);
		return true;
	}
	if (c >= 0x20 && c < 0x7f)
		lex_error(fc, "JSON parse error, stray '%c'", c);
	else
		lex_error(fc, "JSON parse error, invalid byte 0x%02x", c);
	return true;
}

void qmp_session_feed(struct qmp_session *s, const void *buf, size_t len,
		      qmp_send_fn send, void *opaque)
{
	struct feed_ctx fc = { .s = s, .send = send, .opaque = opaque };
	const unsigned char *p = buf;
	size_t i = 0;

	while (i < len && !s->closed) {
		if (lex_byte(&fc, p[i]))
			i++;
	}
}
