/* Device options tables: the registry, the "key=value,key=value" parser and
 * the --help text. One parser for the CLI, JSON configs (converted to option
 * strings first) and realize, so an error reads the same everywhere:
 * "key: reason", or "unknown option 'x' (valid: a, b, c)". */
#include "devices/options.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static struct dev_option_table *table_head;

/* Sorted by type, so --help and qom-list-types do not depend on link order. */
void dev_option_table_register(struct dev_option_table *t)
{
	struct dev_option_table **pp = &table_head;

	for (struct dev_option_table *p = table_head; p; p = p->next)
		if (p == t)
			return;
	while (*pp && strcmp((*pp)->type, t->type) <= 0)
		pp = &(*pp)->next;
	t->next = *pp;
	*pp = t;
}

struct dev_option_table *dev_option_tables(void)
{
	return table_head;
}

const struct dev_option_table *dev_option_table_find(const char *type)
{
	for (struct dev_option_table *t = table_head; type && t; t = t->next)
		if (!strcmp(t->type, type))
			return t;
	return NULL;
}

const struct dev_option_table *dev_option_table_by_flag(const char *flag)
{
	for (struct dev_option_table *t = table_head; flag && t; t = t->next)
		if (t->flag && !strcmp(t->flag, flag))
			return t;
	return NULL;
}

const struct dev_option_table *dev_option_table_by_json_key(const char *key)
{
	for (struct dev_option_table *t = table_head; key && t; t = t->next)
		if (t->json_key && !strcmp(t->json_key, key))
			return t;
	return NULL;
}

/* ---- parsing ---- */

static int opt_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int opt_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void *field(void *opts, const struct dev_option *o)
{
	return (char *)opts + o->offset;
}

static int parse_bool(const char *v, bool *out)
{
	static const char *const yes[] = { "on", "true", "yes", "1" };
	static const char *const no[] = { "off", "false", "no", "0" };

	for (size_t i = 0; i < DEV_OPT_COUNT(yes); i++) {
		if (!strcmp(v, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcmp(v, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Decimal only: no sign, no spaces, no base prefixes. */
static int parse_u64(const char *v, const char **end, uint64_t *out)
{
	uint64_t n = 0;
	const char *p = v;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');

		if (n > (UINT64_MAX - d) / 10)
			return -ERANGE;
		n = n * 10 + d;
	}
	*end = p;
	*out = n;
	return 0;
}

/* Bytes, with an optional K/M/G/T suffix (binary; "KiB" and "KB" too). */
static int parse_size_bytes(const char *v, uint64_t *out)
{
	const char *end;
	unsigned shift = 0;
	uint64_t n;
	int r = parse_u64(v, &end, &n);

	if (r)
		return r;
	if (*end) {
		switch (*end) {
		case 'k': case 'K': shift = 10; break;
		case 'm': case 'M': shift = 20; break;
		case 'g': case 'G': shift = 30; break;
		case 't': case 'T': shift = 40; break;
		default: return -EINVAL;
		}
		end++;
		if (end[0] == 'i' && end[1] == 'B')
			end += 2;
		else if (end[0] == 'B')
			end++;
		if (*end)
			return -EINVAL;
	}
	if (shift && n > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = n << shift;
	return 0;
}

static const char *type_value_name(const struct dev_option *o)
{
	switch (o->type) {
	case DEV_OPT_STRING: return "STR";
	case DEV_OPT_BOOL: return "on|off";
	case DEV_OPT_UINT: return "N";
	case DEV_OPT_SIZE: return "SIZE";
	case DEV_OPT_ENUM: return "CHOICE";
	}
	return "VALUE";
}

/* "a, b or c" into buf. */
static void choice_list(const char *const *choices, char *buf, size_t len)
{
	size_t n = 0, used = 0;

	buf[0] = '\0';
	while (choices && choices[n])
		n++;
	for (size_t i = 0; i < n && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s",
				 i == 0 ? "" : i + 1 == n ? " or " : ", ", choices[i]);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}

static int range_err(const struct dev_option *o, char *err, size_t errlen, const char *what)
{
	if (o->max)
		return opt_err(err, errlen, "%s: expected %s from %" PRIu64 " to %" PRIu64,
			       o->name, what, o->min, o->max);
	if (o->min)
		return opt_err(err, errlen, "%s: expected %s of at least %" PRIu64, o->name,
			       what, o->min);
	return opt_err(err, errlen, "%s: expected %s", o->name, what);
}

/* Store value v for option o. Strings are replaced, never leaked. */
static int set_value(const struct dev_option *o, const char *v, void *opts, char *err,
		     size_t errlen)
{
	uint64_t n;
	const char *end;
	char *s;

	switch (o->type) {
	case DEV_OPT_STRING:
		if (o->required && !*v)
			return opt_err(err, errlen, "%s: must not be empty", o->name);
		s = strdup(v);
		if (!s)
			return opt_err(err, errlen, "%s: out of memory", o->name);
		free(*(char **)field(opts, o));
		*(char **)field(opts, o) = s;
		return 0;
	case DEV_OPT_BOOL:
		if (parse_bool(v, (bool *)field(opts, o)))
			return opt_err(err, errlen, "%s: expected on or off", o->name);
		return 0;
	case DEV_OPT_UINT:
		if (parse_u64(v, &end, &n) || *end || n < o->min || (o->max && n > o->max))
			return range_err(o, err, errlen, "a number");
		*(uint64_t *)field(opts, o) = n;
		return 0;
	case DEV_OPT_SIZE:
		if (parse_size_bytes(v, &n))
			return opt_err(err, errlen, "%s: expected a size (e.g. 4K, 512M, 2G)",
				       o->name);
		if (n < o->min || (o->max && n > o->max))
			return range_err(o, err, errlen, "a size in bytes");
		*(uint64_t *)field(opts, o) = n;
		return 0;
	case DEV_OPT_ENUM:
		for (unsigned i = 0; o->choices && o->choices[i]; i++) {
			if (!strcmp(v, o->choices[i])) {
				*(unsigned *)field(opts, o) = i;
				return 0;
			}
		}
		{
			char list[256];

			choice_list(o->choices, list, sizeof(list));
			return opt_err(err, errlen, "%s: expected %s", o->name, list);
		}
	}
	return opt_err(err, errlen, "%s: bad option type", o->name);
}

/* User text quoted in an error: at most 64 bytes, control characters as
 * '?', so the message stays one printable line. */
static const char *quote(const char *s, size_t len, char buf[static 65])
{
	size_t n = len > 64 ? 64 : len;

	for (size_t i = 0; i < n; i++)
		buf[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[n] = '\0';
	return buf;
}

static int unknown_option(const struct dev_option_table *t, const char *key, size_t klen,
			  char *err, size_t errlen)
{
	char valid[512], q[65];
	size_t used = 0;

	valid[0] = '\0';
	for (unsigned i = 0; i < t->nr_opts && used < sizeof(valid); i++) {
		int w = snprintf(valid + used, sizeof(valid) - used, "%s%s", i ? ", " : "",
				 t->opts[i].name);

		if (w < 0)
			break;
		used += (size_t)w;
	}
	if (!t->nr_opts)
		return opt_err(err, errlen, "unknown option '%s' (%s takes no options)",
			       quote(key, klen, q), t->type);
	return opt_err(err, errlen, "unknown option '%s' (valid: %s)", quote(key, klen, q),
		       valid);
}

static const struct dev_option *find_opt(const struct dev_option_table *t, const char *key,
					 size_t klen)
{
	for (unsigned i = 0; i < t->nr_opts; i++)
		if (strlen(t->opts[i].name) == klen && !memcmp(t->opts[i].name, key, klen))
			return &t->opts[i];
	return NULL;
}

#define MAX_OPTS 64

int dev_options_parse(const struct dev_option_table *t, const char *s, void *out, char *err,
		      size_t errlen)
{
	bool seen[MAX_OPTS] = { false };
	const char *p = s ? s : "";
	char *val = NULL;
	int r = 0;

	if (err && errlen)
		err[0] = '\0';
	if (t->nr_opts > MAX_OPTS)
		return opt_err(err, errlen, "%s: too many options in its table", t->type);

	for (bool first = true; *p; first = false) {
		size_t ilen = strcspn(p, ","), klen = strcspn(p, "=,");
		const struct dev_option *o;
		const char *key = p, *v;

		if (ilen == 0) {
			r = opt_err(err, errlen, "empty option (stray ',')");
			goto fail;
		}
		if (klen == ilen) {
			/* No '=': the positional value, only as the first item. */
			if (!first || !t->positional) {
				char q[65];

				r = opt_err(err, errlen, "expected key=value, got '%s'",
					    quote(p, ilen, q));
				goto fail;
			}
			o = find_opt(t, t->positional, strlen(t->positional));
			if (!o) {
				r = opt_err(err, errlen, "%s: positional option not in table",
					    t->positional);
				goto fail;
			}
			v = p;
		} else {
			if (klen == 0) {
				r = opt_err(err, errlen, "empty option name before '='");
				goto fail;
			}
			o = find_opt(t, key, klen);
			if (!o) {
				r = unknown_option(t, key, klen, err, errlen);
				goto fail;
			}
			v = p + klen + 1;
		}
		if (seen[o - t->opts]) {
			r = opt_err(err, errlen, "%s: given twice", o->name);
			goto fail;
		}
		seen[o - t->opts] = true;
		val = strndup(v, ilen - (size_t)(v - p));
		if (!val) {
			r = opt_err(err, errlen, "%s: out of memory", o->name);
			goto fail;
		}
		r = set_value(o, val, out, err, errlen);
		free(val);
		val = NULL;
		if (r)
			goto fail;
		p += ilen;
		if (*p == ',') {
			p++;
			if (!*p) {
				r = opt_err(err, errlen, "empty option (trailing ',')");
				goto fail;
			}
		}
	}

	for (unsigned i = 0; i < t->nr_opts; i++) {
		const struct dev_option *o = &t->opts[i];

		if (seen[i])
			continue;
		if (o->required) {
			r = opt_err(err, errlen, "%s: required (%s=%s)", o->name, o->name,
				    type_value_name(o));
			goto fail;
		}
		if (o->def) {
			r = set_value(o, o->def, out, err, errlen);
			if (r)
				goto fail;	/* a bad default: the table's bug */
		}
	}
	if (t->check) {
		r = t->check(out, err, errlen);
		if (r) {
			if (err && errlen && !err[0])
				opt_err(err, errlen, "invalid combination of options");
			/* Checks may quote values: keep the message one line. */
			for (char *c = err; err && errlen && *c; c++)
				if ((unsigned char)*c < 0x20 || *c == 0x7f)
					*c = '?';
			r = -EINVAL;
			goto fail;
		}
	}
	return 0;
fail:
	dev_options_free(t, out);
	return r;
}

void dev_options_free(const struct dev_option_table *t, void *opts)
{
	if (!opts)
		return;
	for (unsigned i = 0; i < t->nr_opts; i++) {
		if (t->opts[i].type == DEV_OPT_STRING) {
			char **s = field(opts, &t->opts[i]);

			free(*s);
			*s = NULL;
		}
	}
}

/* ---- --help ---- */

struct strbuf {
	char *s;
	size_t len, cap;
	bool oom;
};

static void sb_printf(struct strbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct strbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->oom)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		b->oom = true;
		return;
	}
	if (b->len + (size_t)n + 1 > b->cap) {
		size_t cap = (b->len + (size_t)n + 1) * 2;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->oom = true;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(b->s + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* "on|off", "io_uring|native|threads", "N", ... */
static void value_syntax(const struct dev_option *o, char *buf, size_t len)
{
	size_t used = 0;

	if (o->type != DEV_OPT_ENUM || !o->choices) {
		snprintf(buf, len, "%s", type_value_name(o));
		return;
	}
	buf[0] = '\0';
	for (unsigned i = 0; o->choices[i] && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? "|" : "", o->choices[i]);

		if (w < 0)
			break;
		used += (size_t)w;
	}
}

/* Summaries start where the fixed flags' help does (column 27), option
 * help a little further in. */
#define HEAD_WIDTH 24
#define ITEM_WIDTH 26

char *dev_options_help(const struct dev_option_table *t)
{
	struct strbuf b = { 0 };
	char head[256], syn[256];

	if (!t->nr_opts) {
		snprintf(head, sizeof(head), "--%s", t->flag);
	} else {
		char pos[64] = "";

		/* "--virtio-console BACKEND[,key=value...]", "--rng[=key=value,...]" */
		for (size_t i = 0; t->positional && t->positional[i] && i + 1 < sizeof(pos); i++)
			pos[i] = (char)toupper((unsigned char)t->positional[i]);
		snprintf(head, sizeof(head), "--%s%s%s%s%s", t->flag,
			 t->arg_optional ? "[=" : " ", pos,
			 pos[0] ? "[,key=value...]" : "key=value,...",
			 t->arg_optional ? "]" : "");
	}
	sb_printf(&b, "  %-*s %s", HEAD_WIDTH, head, t->summary ? t->summary : t->type);
	if (t->max_instances > 1)
		sb_printf(&b, " (repeatable, up to %u)", t->max_instances);
	sb_printf(&b, "\n");
	for (unsigned i = 0; i < t->nr_opts; i++) {
		const struct dev_option *o = &t->opts[i];
		char item[320];

		value_syntax(o, syn, sizeof(syn));
		snprintf(item, sizeof(item), "%s=%s", o->name, syn);
		/* A long key=VALUE gets its own line; the help lines up below. */
		if (strlen(item) > ITEM_WIDTH)
			sb_printf(&b, "      %s\n%*s", item, 6 + ITEM_WIDTH + 1, "");
		else
			sb_printf(&b, "      %-*s ", ITEM_WIDTH, item);
		sb_printf(&b, "%s", o->help ? o->help : "");
		if (o->required)
			sb_printf(&b, " (required)");
		else if (o->def)
			sb_printf(&b, " (default %s)", o->def);
		if ((o->type == DEV_OPT_UINT || o->type == DEV_OPT_SIZE) && o->max)
			sb_printf(&b, " [%" PRIu64 "..%" PRIu64 "]", o->min, o->max);
		if (t->positional && !strcmp(t->positional, o->name))
			sb_printf(&b, " (the bare first value)");
		sb_printf(&b, "\n");
	}
	if (b.oom) {
		free(b.s);
		return NULL;
	}
	if (!b.s)
		return strdup("");
	return b.s;
}
