/* Private to vmm/control: the session layout shared by the framing and
 * dispatch code. */
#ifndef EMBER_CONTROL_QMP_INTERNAL_H
#define EMBER_CONTROL_QMP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "vmm/control/qmp.h"

enum qmp_lex_state {
	LX_NORMAL,	/* outside strings */
	LX_SCALAR,	/* in a top-level number or literal */
	LX_STRING,
	LX_ESCAPE,	/* after a backslash in a string */
	LX_RECOVER,	/* after an error: skip to '{' or a control character */
};

struct qmp_lexer {
	enum qmp_lex_state state;
	char quote;		/* '"' or '\'' while in a string */
	bool in_msg;		/* a top-level value has started */
	bool discard;		/* over QMP_MAX_MESSAGE: track structure, keep nothing */
	unsigned braces, brackets;
	char *buf;		/* the current message, normalised to standard JSON */
	size_t len, cap;
};

struct qmp_session {
	const struct qmp_backend_ops *ops;
	void *backend;
	qmp_event_fn event;
	void *event_opaque;
	bool negotiated;
	bool closed;		/* the client was dropped: run nothing more */
	int pending_fd;		/* the last fd received (SCM_RIGHTS), for getfd; -1 */
	struct qmp_lexer lx;
};

/* Commands served from the device options tables (qmp_introspect.c). */
json_t *qmp_cmd_qom_list_types(struct qmp_session *s, json_t *args, json_t **err);
json_t *qmp_cmd_device_list_properties(struct qmp_session *s, json_t *args, json_t **err);

void qmp_lexer_reset(struct qmp_lexer *lx);
void qmp_lexer_free(struct qmp_lexer *lx);

#endif
