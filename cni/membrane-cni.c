// membrane-cni: the CNI plugin binary. It only transports: the runtime's
// CNI_* variables and stdin go to the node's agent as one HTTP/1.1 request
// over its unix socket, and the agent's answer (exit code + stdout) comes
// back verbatim. All CNI logic lives in the agent (src/cni/handler.ts).
//
// Why C and not a Node script: a runtime execs the plugin for every pod, and
// Node alone needs ~80 ms to start, which would by itself exceed the pod-add
// budget (p50 <= 20 ms). This program starts in well under a millisecond.
//
// Wire format (docs/cni.md):
//   POST /v1/cni HTTP/1.1
//   X-Cni-Command / X-Cni-Containerid / X-Cni-Netns / X-Cni-Ifname /
//   X-Cni-Args / X-Cni-Path: the variable's value, percent-encoded (bytes
//   <= 0x20, >= 0x7f and '%'), sent only when the variable is set.
//   Content-Length + body: stdin, unchanged.
// The agent answers 200 with `X-Cni-Exit-Code: N` and the body to print.
//
// The shim answers some things itself, on stdout with exit 1 (docs/errors.md,
// "Answered by the CNI plugin binary itself"):
//  - VERSION (no agent needed);
//  - what keeps it from sending the request: a config that is not valid JSON
//    (code 6: it must not use an agentSocket read from a malformed text) or
//    has no usable agentSocket (code 7), variables too large to send (code 4),
//    in the agent's words and with the environment checked first, as the
//    agent does; permanent problems, so never "try again later";
//  - "agent not reachable" (connect fails, the exchange times out, or the
//    answer is not a valid response): code 11 ("try again later"), or 50
//    ("plugin not available") for STATUS.
// When it gives up waiting it closes its connection: that tells the agent
// its caller is gone, and an ADD still in flight is not carried out.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "defaults.h" /* DEFAULT_SOCKET, SUPPORTED_VERSIONS, DEFAULT_CNI_VERSION, MAX_STDIN: from the TypeScript */

#define DEFAULT_TIMEOUT_MS 60000L
#define MAX_RESPONSE (64u << 20) /* an agent answer larger than this is a bad response */

static const char *const supported_versions[] = {SUPPORTED_VERSIONS};
#define N_SUPPORTED (sizeof(supported_versions) / sizeof(supported_versions[0]))

/* ---- growable buffer ---------------------------------------------------- */

struct buf {
	char *p;
	size_t len, cap;
};

static void die_oom(void)
{
	static const char m[] = "{\"cniVersion\":\"" DEFAULT_CNI_VERSION "\",\"code\":5,\"msg\":\"membrane-cni: out of memory\"}\n";
	ssize_t r = write(STDOUT_FILENO, m, sizeof(m) - 1);
	(void)r;
	_exit(1);
}

/* Makes room for `extra` more bytes plus a NUL terminator. */
static void buf_reserve(struct buf *b, size_t extra)
{
	if (extra > SIZE_MAX - b->len - 1)
		die_oom();
	size_t need = b->len + extra + 1;
	if (need <= b->cap)
		return;
	size_t cap = b->cap ? b->cap : 4096;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->p, cap);
	if (!p)
		die_oom();
	b->p = p;
	b->cap = cap;
}

static void buf_add(struct buf *b, const void *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void buf_adds(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_addc(struct buf *b, char c) { buf_add(b, &c, 1); }

static void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}

/* Appends `s` as a JSON string literal (with quotes). */
static void buf_add_json_string(struct buf *b, const char *s)
{
	buf_addc(b, '"');
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"': buf_adds(b, "\\\""); break;
		case '\\': buf_adds(b, "\\\\"); break;
		case '\n': buf_adds(b, "\\n"); break;
		case '\r': buf_adds(b, "\\r"); break;
		case '\t': buf_adds(b, "\\t"); break;
		case '\b': buf_adds(b, "\\b"); break;
		case '\f': buf_adds(b, "\\f"); break;
		default:
			if (*p < 0x20)
				buf_printf(b, "\\u%04x", *p);
			else
				buf_addc(b, (char)*p);
		}
	}
	buf_addc(b, '"');
}

/* "no such file or directory (ENOENT)": the project's error style. */
static void buf_add_errno(struct buf *b, int e)
{
	const char *s = strerror(e), *name = strerrorname_np(e);
	size_t at = b->len;
	buf_adds(b, s);
	if (b->len > at && b->p[at] >= 'A' && b->p[at] <= 'Z' && !(b->len > at + 1 && b->p[at + 1] >= 'A' && b->p[at + 1] <= 'Z'))
		b->p[at] = (char)(b->p[at] - 'A' + 'a');
	if (name)
		buf_printf(b, " (%s)", name);
}

/* ---- time --------------------------------------------------------------- */

static long long deadline_ms;
static long timeout_ms = DEFAULT_TIMEOUT_MS;

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Milliseconds left for the whole exchange (0 once expired). */
static int remaining_ms(void)
{
	long long left = deadline_ms - now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits for `events` on fd until the deadline. Returns 1 ready, 0 timed out, -1 error (errno). */
static int wait_fd(int fd, short events, short *revents)
{
	for (;;) {
		int left = remaining_ms();
		if (left == 0)
			return 0;
		struct pollfd pfd = {.fd = fd, .events = events};
		int r = poll(&pfd, 1, left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -1;
		if (r == 0)
			return 0;
		if (revents)
			*revents = pfd.revents;
		return 1;
	}
}

/* ---- output ------------------------------------------------------------- */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd pfd = {.fd = fd, .events = POLLOUT};
			(void)poll(&pfd, 1, 1000);
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Prints a CNI error object on stdout and exits 1. */
static void __attribute__((noreturn)) cni_error(const char *cni_version, int code, const char *msg, const char *details)
{
	struct buf b = {0};
	buf_adds(&b, "{\"cniVersion\":");
	buf_add_json_string(&b, cni_version);
	buf_printf(&b, ",\"code\":%d,\"msg\":", code);
	buf_add_json_string(&b, msg);
	if (details) {
		buf_adds(&b, ",\"details\":");
		buf_add_json_string(&b, details);
	}
	buf_adds(&b, "}\n");
	(void)write_all(STDOUT_FILENO, b.p, b.len);
	exit(1);
}

/* ---- input -------------------------------------------------------------- */

/* Reads fd to EOF, waiting no longer than the deadline (a runtime that never closes
 * stdin must not hang us). Returns 0, -1 on a read error (errno), -2 on timeout, -3 if too large. */
static int read_all(int fd, struct buf *b)
{
	buf_reserve(b, 0);
	for (;;) {
		short rev = 0;
		int w = wait_fd(fd, POLLIN, &rev);
		if (w == 0)
			return -2;
		if (w < 0)
			return -1;
		if (rev & POLLNVAL) /* no stdin at all: same as empty */
			return 0;
		buf_reserve(b, 65536);
		ssize_t r = read(fd, b->p + b->len, b->cap - b->len - 1);
		if (r > 0) {
			b->len += (size_t)r;
			b->p[b->len] = '\0';
			if (b->len > MAX_STDIN)
				return -3;
			continue;
		}
		if (r == 0)
			return 0;
		if (errno == EINTR || errno == EAGAIN)
			continue;
		return -1;
	}
}

/* ---- the network config: RFC 8259 validation, and the keys the shim needs -- */

/* The shim must know the agent's socket before it can ask the agent anything,
 * so it reads `agentSocket` itself, and it may use it only from a config that
 * is valid as a whole: a value read from a truncated or malformed text could be
 * a truncated path. So the whole text is validated first, with the same
 * grammar, limits, reasons and positions as the agent's validator
 * (src/cni/json-error.ts), and a config that fails is answered here (code 6)
 * in the agent's words. One pass, iterative (the depth is bounded by
 * MAX_JSON_DEPTH), no allocation except for the two values kept. */

struct json_error {
	size_t at;          /* byte offset of the first bad byte */
	char reason[160];
};

struct conf_scan {
	const char *top_type;  /* NULL when the text is an object, else "an array", "null", "string", ... */
	int socket_seen;       /* the top-level object has "agentSocket" */
	const char *socket_type; /* NULL when its value is a string, else its JSON type */
	struct buf socket;     /* that string, decoded */
	int version_seen;      /* "cniVersion" is a string */
	struct buf version;
};

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The first byte that is not part of valid UTF-8 (RFC 3629), or len. Same rules as firstInvalidUtf8(). */
static size_t first_invalid_utf8(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len;) {
		unsigned char b = p[i];
		if (b < 0x80) {
			i++;
			continue;
		}
		size_t n;
		unsigned cp, min;
		if ((b & 0xe0) == 0xc0) { n = 2; min = 0x80; cp = b & 0x1f; }
		else if ((b & 0xf0) == 0xe0) { n = 3; min = 0x800; cp = b & 0x0f; }
		else if ((b & 0xf8) == 0xf0) { n = 4; min = 0x10000; cp = b & 0x07; }
		else return i;
		if (i + n > len)
			return i;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return i;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000))
			return i;
		i += n;
	}
	return len;
}

/* JSON.stringify() of the (valid UTF-8) character at p[i], or "end of input". */
static void add_what(struct buf *b, const char *p, size_t len, size_t i)
{
	if (i >= len) {
		buf_adds(b, "unexpected end of input");
		return;
	}
	unsigned char c = (unsigned char)p[i];
	size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
	buf_adds(b, "unexpected \"");
	switch (c) {
	case '"': buf_adds(b, "\\\""); break;
	case '\\': buf_adds(b, "\\\\"); break;
	case '\b': buf_adds(b, "\\b"); break;
	case '\f': buf_adds(b, "\\f"); break;
	case '\n': buf_adds(b, "\\n"); break;
	case '\r': buf_adds(b, "\\r"); break;
	case '\t': buf_adds(b, "\\t"); break;
	default:
		if (c < 0x20)
			buf_printf(b, "\\u%04x", c);
		else
			buf_add(b, p + i, i + n <= len ? n : len - i);
	}
	buf_addc(b, '"');
}

/* Records the first error: at byte `at`, `what` (optional) then the printf'd reason. */
static size_t json_fail(struct json_error *e, const char *p, size_t len, size_t at, int with_what, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static size_t json_fail(struct json_error *e, const char *p, size_t len, size_t at, int with_what, const char *fmt, ...)
{
	struct buf b = {0};
	if (with_what)
		add_what(&b, p, len, at);
	va_list ap;
	va_start(ap, fmt);
	char tail[128];
	vsnprintf(tail, sizeof(tail), fmt, ap);
	va_end(ap);
	buf_adds(&b, tail);
	snprintf(e->reason, sizeof(e->reason), "%s", b.p);
	free(b.p);
	e->at = at;
	return SIZE_MAX;
}

static size_t skip_ws(const char *p, size_t len, size_t i)
{
	while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
		i++;
	return i;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int read_hex4(const char *p, size_t len, size_t i, unsigned *out)
{
	if (i + 4 > len)
		return -1;
	unsigned v = 0;
	for (int k = 0; k < 4; k++) {
		int h = hexval(p[i + k]);
		if (h < 0)
			return -1;
		v = v << 4 | (unsigned)h;
	}
	*out = v;
	return 0;
}

static void buf_add_utf8(struct buf *b, unsigned cp)
{
	if (cp < 0x80) {
		buf_addc(b, (char)cp);
	} else if (cp < 0x800) {
		buf_addc(b, (char)(0xc0 | cp >> 6));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	} else if (cp < 0x10000) {
		buf_addc(b, (char)(0xe0 | cp >> 12));
		buf_addc(b, (char)(0x80 | (cp >> 6 & 0x3f)));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	} else {
		buf_addc(b, (char)(0xf0 | cp >> 18));
		buf_addc(b, (char)(0x80 | (cp >> 12 & 0x3f)));
		buf_addc(b, (char)(0x80 | (cp >> 6 & 0x3f)));
		buf_addc(b, (char)(0x80 | (cp & 0x3f)));
	}
}

/* The string literal at p[i] (its opening quote). Decodes it into out when out != NULL
 * (a lone surrogate becomes U+FFFD). Returns the index after the closing quote, or SIZE_MAX. */
static size_t scan_string(const char *p, size_t len, size_t i, struct buf *out, struct json_error *e)
{
	for (i++; i < len;) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"')
			return i + 1;
		if (c < 0x20)
			return json_fail(e, p, len, i, 0, "control character in string");
		if (c != '\\') {
			if (out)
				buf_addc(out, (char)c);
			i++;
			continue;
		}
		if (i + 1 >= len)
			return json_fail(e, p, len, i, 0, "unexpected end of input in string");
		char x = p[i + 1];
		unsigned cp;
		switch (x) {
		case '"': case '\\': case '/': cp = (unsigned char)x; break;
		case 'b': cp = '\b'; break;
		case 'f': cp = '\f'; break;
		case 'n': cp = '\n'; break;
		case 'r': cp = '\r'; break;
		case 't': cp = '\t'; break;
		case 'u':
			if (read_hex4(p, len, i + 2, &cp) < 0)
				return json_fail(e, p, len, i, 0, "bad \\u escape");
			if (cp >= 0xd800 && cp < 0xdc00) {
				unsigned lo;
				if (i + 12 <= len && p[i + 6] == '\\' && p[i + 7] == 'u' && read_hex4(p, len, i + 8, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					i += 6;
				} else {
					cp = 0xfffd;
				}
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				cp = 0xfffd;
			}
			if (out)
				buf_add_utf8(out, cp);
			i += 6;
			continue;
		default:
			if ((unsigned char)x < 0x20)
				return json_fail(e, p, len, i + 1, 0, "control character in string");
			{
				/* the escaped character as it stands (UTF-8 is valid here) */
				unsigned char xc = (unsigned char)x;
				size_t n = xc < 0x80 ? 1 : (xc & 0xe0) == 0xc0 ? 2 : (xc & 0xf0) == 0xe0 ? 3 : 4;
				return json_fail(e, p, len, i, 0, "bad escape \\%.*s", (int)n, p + i + 1);
			}
		}
		if (out)
			buf_addc(out, (char)cp);
		i += 2;
	}
	return json_fail(e, p, len, i, 0, "unterminated string");
}

static size_t scan_digits(const char *p, size_t len, size_t i, struct json_error *e)
{
	if (i >= len || !is_digit((unsigned char)p[i]))
		return json_fail(e, p, len, i, 1, ", expected a digit");
	while (i < len && is_digit((unsigned char)p[i]))
		i++;
	return i;
}

static size_t scan_number(const char *p, size_t len, size_t i, struct json_error *e)
{
	if (p[i] == '-')
		i++;
	if (i < len && p[i] == '0')
		i++;
	else if ((i = scan_digits(p, len, i, e)) == SIZE_MAX)
		return i;
	if (i < len && p[i] == '.' && (i = scan_digits(p, len, i + 1, e)) == SIZE_MAX)
		return i;
	if (i < len && (p[i] == 'e' || p[i] == 'E')) {
		i++;
		if (i < len && (p[i] == '+' || p[i] == '-'))
			i++;
		if ((i = scan_digits(p, len, i, e)) == SIZE_MAX)
			return i;
	}
	return i;
}

static int starts_with(const char *p, size_t len, size_t i, const char *word)
{
	size_t n = strlen(word);
	return i + n <= len && memcmp(p + i, word, n) == 0;
}

enum member { M_OTHER, M_SOCKET, M_VERSION };

/* After '{' or ',': "name" ':'. Sets *which for the keys the shim reads (top level only). */
static size_t scan_member(const char *p, size_t len, size_t i, int top, enum member *which, struct json_error *e)
{
	i = skip_ws(p, len, i);
	if (i >= len || p[i] != '"')
		return json_fail(e, p, len, i, 1, ", expected a property name");
	*which = M_OTHER;
	if (top) {
		struct buf key = {0};
		i = scan_string(p, len, i, &key, e);
		if (i != SIZE_MAX && key.p && key.len == 11 && memcmp(key.p, "agentSocket", 11) == 0)
			*which = M_SOCKET;
		else if (i != SIZE_MAX && key.p && key.len == 10 && memcmp(key.p, "cniVersion", 10) == 0)
			*which = M_VERSION;
		free(key.p);
	} else {
		i = scan_string(p, len, i, NULL, e);
	}
	if (i == SIZE_MAX)
		return i;
	i = skip_ws(p, len, i);
	if (i >= len || p[i] != ':')
		return json_fail(e, p, len, i, 1, ", expected ':' after property name");
	return i + 1;
}

/* The JSON type of the value starting with c, as the agent's messages name it (typeof, "an array", "null"). */
static const char *json_type(char c)
{
	switch (c) {
	case '{': return "object";
	case '[': return "an array";
	case '"': return "string";
	case 'n': return "null";
	case 't': case 'f': return "boolean";
	default: return "number";
	}
}

/* Validates text[0, len). Returns 0 with `out` filled, or -1 with `e` set. */
static int scan_conf(const char *p, size_t len, struct conf_scan *out, struct json_error *e)
{
	size_t bad = first_invalid_utf8((const unsigned char *)p, len);
	if (bad < len) {
		json_fail(e, p, len, bad, 0, "invalid UTF-8");
		return -1;
	}
	char stack[MAX_JSON_DEPTH]; /* open containers: '{' or '[' */
	size_t depth = 0, i = 0;
	enum member which = M_OTHER; /* the top-level key whose value comes next */
	for (;;) {
		/* Expect a value. */
		i = skip_ws(p, len, i);
		if (i >= len) {
			json_fail(e, p, len, i, 0, "unexpected end of input, expected a value");
			return -1;
		}
		char c = p[i];
		if (depth == 0)
			out->top_type = c == '{' ? NULL : json_type(c);
		int keep = depth == 1 && stack[0] == '{' ? (int)which : M_OTHER;
		if (keep == M_SOCKET) {
			out->socket_seen = 1;
			out->socket_type = c == '"' ? NULL : json_type(c);
			out->socket.len = 0;
		}
		if (c == '{' || c == '[') {
			if (depth >= MAX_JSON_DEPTH) {
				json_fail(e, p, len, i, 0, "nesting deeper than %d levels", MAX_JSON_DEPTH);
				return -1;
			}
			stack[depth++] = c;
			i = skip_ws(p, len, i + 1);
			char close = c == '{' ? '}' : ']';
			if (i >= len || p[i] != close) {
				if (c == '{' && (i = scan_member(p, len, i, depth == 1, &which, e)) == SIZE_MAX)
					return -1;
				continue;
			}
			i++;
			depth--;
		} else if (c == '"') {
			struct buf *into = keep == M_SOCKET ? &out->socket : keep == M_VERSION ? &out->version : NULL;
			if (into) {
				into->len = 0;
				buf_reserve(into, 0);
				into->p[0] = '\0';
			}
			if ((i = scan_string(p, len, i, into, e)) == SIZE_MAX)
				return -1;
			if (keep == M_VERSION)
				out->version_seen = 1;
		} else if (c == '-' || is_digit((unsigned char)c)) {
			if ((i = scan_number(p, len, i, e)) == SIZE_MAX)
				return -1;
		} else if (starts_with(p, len, i, "true")) {
			i += 4;
		} else if (starts_with(p, len, i, "false")) {
			i += 5;
		} else if (starts_with(p, len, i, "null")) {
			i += 4;
		} else {
			json_fail(e, p, len, i, 1, ", expected a value");
			return -1;
		}
		if (keep == M_VERSION && c != '"')
			out->version_seen = 0; /* a later non-string cniVersion replaces an earlier string one */
		/* After a complete value: ',' or the container's closer, or the end of the text. */
		for (;;) {
			i = skip_ws(p, len, i);
			if (depth == 0) {
				if (i < len) {
					json_fail(e, p, len, i, 1, " after the JSON value");
					return -1;
				}
				return 0;
			}
			char top = stack[depth - 1], close = top == '{' ? '}' : ']';
			if (i < len && p[i] == close) {
				i++;
				depth--;
				continue;
			}
			if (i >= len || p[i] != ',') {
				json_fail(e, p, len, i, 1, ", expected ',' or '%c'", close);
				return -1;
			}
			i++;
			if (top == '{' && (i = scan_member(p, len, i, depth == 1, &which, e)) == SIZE_MAX)
				return -1;
			break;
		}
	}
}

/* "decode network config: <reason> at line L, column C (offset O)": the agent's words for the same text. */
static void add_json_error(struct buf *m, const char *p, const struct json_error *e)
{
	size_t line = 1, col = 1;
	for (size_t k = 0; k < e->at; k++) {
		if (p[k] == '\n') {
			line++;
			col = 1;
		} else if (((unsigned char)p[k] & 0xc0) != 0x80) {
			col++; /* a character, counted at its first byte */
		}
	}
	buf_printf(m, "decode network config: %s at line %zu, column %zu (offset %zu)", e->reason, line, col, e->at);
}

/* The error object's cniVersion, as the agent picks it: the config's, when it looks like a version. */
static int looks_like_version(const char *v)
{
	int parts = 0;
	for (;;) {
		if (!is_digit((unsigned char)*v))
			return 0;
		while (is_digit((unsigned char)*v))
			v++;
		parts++;
		if (*v == '\0')
			return parts == 3;
		if (*v != '.' || parts == 3)
			return 0;
		v++;
	}
}

static int is_supported(const char *v)
{
	for (size_t i = 0; i < N_SUPPORTED; i++)
		if (strcmp(v, supported_versions[i]) == 0)
			return 1;
	return 0;
}

/* ---- HTTP exchange ------------------------------------------------------ */

/* The CNI variables the agent receives, as X-Cni-* headers (docs/cni.md, "Wire format"). */
static const char *const cni_vars[][2] = {
	{"X-Cni-Command", "CNI_COMMAND"}, {"X-Cni-Containerid", "CNI_CONTAINERID"}, {"X-Cni-Netns", "CNI_NETNS"},
	{"X-Cni-Ifname", "CNI_IFNAME"}, {"X-Cni-Args", "CNI_ARGS"}, {"X-Cni-Path", "CNI_PATH"},
};
#define N_CNI_VARS (sizeof(cni_vars) / sizeof(cni_vars[0]))

/* Appends "Header: <value percent-encoded>\r\n" when the variable is set; returns the bytes added. */
static size_t add_header(struct buf *req, const char *header, const char *var)
{
	const char *v = getenv(var);
	if (!v)
		return 0;
	size_t at = req->len;
	buf_adds(req, header);
	buf_adds(req, ": ");
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '%')
			buf_printf(req, "%%%02X", *p);
		else
			buf_addc(req, (char)*p);
	}
	buf_adds(req, "\r\n");
	return req->len - at;
}

struct response {
	int status;
	int exit_code;
	struct buf body;
};

/* Case-insensitive header lookup in the header block [hdr, hdr_end). Returns a pointer to
 * the value (leading blanks skipped) and its length, or NULL. */
static const char *find_header(const char *hdr, const char *hdr_end, const char *name, size_t *vlen)
{
	size_t nlen = strlen(name);
	const char *line = memchr(hdr, '\n', (size_t)(hdr_end - hdr)); /* skip the status line */
	while (line && line < hdr_end) {
		line++;
		const char *eol = memchr(line, '\n', (size_t)(hdr_end - line));
		if (!eol)
			eol = hdr_end;
		if ((size_t)(eol - line) > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
				ve--;
			*vlen = (size_t)(ve - v);
			return v;
		}
		line = eol < hdr_end ? eol : NULL;
	}
	return NULL;
}

static int parse_uint(const char *v, size_t n, unsigned long long max, unsigned long long *out)
{
	if (n == 0)
		return -1;
	unsigned long long x = 0;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		x = x * 10 + (unsigned)(v[i] - '0');
		if (x > max)
			return -1;
	}
	*out = x;
	return 0;
}

/* Decodes a chunked body. Returns 1 when complete (out filled), 0 when more data is needed, -1 if malformed. */
static int dechunk(const char *p, const char *end, struct buf *out)
{
	out->len = 0;
	for (;;) {
		const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
		if (!eol)
			return 0;
		unsigned long long size = 0;
		const char *q = p;
		int digits = 0;
		for (; q < eol && hexval(*q) >= 0; q++, digits++) {
			if (size > (MAX_RESPONSE >> 4))
				return -1;
			size = size << 4 | (unsigned)hexval(*q);
		}
		if (digits == 0)
			return -1;
		p = eol + 2;
		if (size == 0) /* last chunk; trailers are not used by the agent */
			return 1;
		if ((unsigned long long)(end - p) < size + 2)
			return 0;
		buf_add(out, p, (size_t)size);
		p += size;
		if (p[0] != '\r' || p[1] != '\n')
			return -1;
		p += 2;
	}
}

/* Checks whether `raw` holds a complete response; fills `res` when it does.
 * Returns 1 complete, 0 incomplete, -1 malformed (why set). */
static int parse_response(struct buf *raw, int eof, struct response *res, const char **why)
{
	if (raw->len == 0)
		return eof ? (*why = "connection closed without a response", -1) : 0;
	const char *hend = memmem(raw->p, raw->len, "\r\n\r\n", 4);
	if (!hend)
		return eof ? (*why = "connection closed in the middle of the response headers", -1) : 0;
	if (raw->len < 12 || strncmp(raw->p, "HTTP/1.", 7) != 0 || raw->p[8] != ' ')
		return *why = "not an HTTP/1.x response", -1;
	unsigned long long status;
	if (parse_uint(raw->p + 9, 3, 999, &status) < 0)
		return *why = "bad HTTP status line", -1;
	res->status = (int)status;
	const char *body = hend + 4, *end = raw->p + raw->len;
	size_t vlen;
	const char *te = find_header(raw->p, hend + 2, "Transfer-Encoding", &vlen);
	const char *cl = find_header(raw->p, hend + 2, "Content-Length", &vlen);
	res->body.len = 0;
	if (te && vlen >= 7 && strncasecmp(te + vlen - 7, "chunked", 7) == 0) {
		int r = dechunk(body, end, &res->body);
		if (r < 0)
			return *why = "malformed chunked body", -1;
		if (r == 0)
			return eof ? (*why = "connection closed in the middle of the body", -1) : 0;
	} else if (cl) {
		unsigned long long n;
		if (parse_uint(cl, vlen, MAX_RESPONSE, &n) < 0)
			return *why = "bad Content-Length", -1;
		if ((unsigned long long)(end - body) < n)
			return eof ? (*why = "connection closed in the middle of the body", -1) : 0;
		buf_add(&res->body, body, (size_t)n);
	} else {
		if (!eof)
			return 0;
		buf_add(&res->body, body, (size_t)(end - body));
	}
	if (res->status != 200)
		return 1; /* the caller reports the status */
	const char *ec = find_header(raw->p, hend + 2, "X-Cni-Exit-Code", &vlen);
	unsigned long long code;
	if (!ec)
		return *why = "no X-Cni-Exit-Code header", -1;
	if (parse_uint(ec, vlen, 255, &code) < 0)
		return *why = "bad X-Cni-Exit-Code header", -1;
	res->exit_code = (int)code;
	return 1;
}

/* Connects to the agent and runs the exchange. Returns 0 with `res` filled, or -1 with
 * `err` describing what failed (an strerror text or a protocol complaint). */
static int exchange(const char *path, const struct buf *req, struct response *res, struct buf *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path)) {
		buf_add_errno(err, ENAMETOOLONG);
		return -1;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		buf_add_errno(err, errno);
		return -1;
	}
	/* A non-blocking unix connect either succeeds at once or fails; EAGAIN means the
	 * listen backlog is full, so retry until the deadline. */
	for (;;) {
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
			break;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && remaining_ms() > 0) {
			(void)poll(NULL, 0, 2);
			continue;
		}
		if (errno == EAGAIN)
			buf_adds(err, "connect timed out (listen backlog full)");
		else
			buf_add_errno(err, errno);
		close(fd);
		return -1;
	}

	size_t sent = 0;
	struct buf raw = {0};
	const char *why = NULL;
	int eof = 0;
	for (;;) {
		int r = parse_response(&raw, eof, res, &why);
		if (r == 1)
			break;
		if (r < 0 || eof) {
			buf_printf(err, "bad response: %s", why ? why : "incomplete");
			goto fail;
		}
		short ev = POLLIN | (sent < req->len ? POLLOUT : 0), rev = 0;
		int w = wait_fd(fd, ev, &rev);
		if (w == 0) {
			/* An answer that arrived just as the deadline passed is still the answer:
			 * read what is there before giving up, so an ADD the agent completed is
			 * not reported as failed. Then close(), below: that is how the agent
			 * learns its caller is gone, and it does not carry out (or undoes) an ADD
			 * still in flight. */
			for (;;) {
				buf_reserve(&raw, 65536);
				ssize_t n = recv(fd, raw.p + raw.len, raw.cap - raw.len - 1, MSG_DONTWAIT);
				if (n <= 0 || raw.len + (size_t)n > MAX_RESPONSE + 65536)
					break;
				raw.len += (size_t)n;
				raw.p[raw.len] = '\0';
			}
			if (parse_response(&raw, 0, res, &why) == 1)
				break;
			buf_printf(err, "no answer within %ld ms", timeout_ms);
			goto fail;
		}
		if (w < 0) {
			buf_add_errno(err, errno);
			goto fail;
		}
		if (sent < req->len && (rev & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = send(fd, req->p + sent, req->len - sent, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
			} else if (n < 0 && errno != EINTR && errno != EAGAIN) {
				/* The agent may have answered and closed early: read what it said. */
				if (errno != EPIPE && errno != ECONNRESET) {
					buf_add_errno(err, errno);
					goto fail;
				}
				sent = req->len;
			}
		}
		if (rev & (POLLIN | POLLHUP | POLLERR)) {
			buf_reserve(&raw, 65536);
			ssize_t n = recv(fd, raw.p + raw.len, raw.cap - raw.len - 1, 0);
			if (n > 0) {
				raw.len += (size_t)n;
				raw.p[raw.len] = '\0';
				if (raw.len > MAX_RESPONSE + 65536) {
					buf_adds(err, "bad response: larger than 64 MiB");
					goto fail;
				}
			} else if (n == 0) {
				eof = 1;
			} else if (errno == ECONNRESET) {
				eof = 1;
			} else if (errno != EINTR && errno != EAGAIN) {
				buf_add_errno(err, errno);
				goto fail;
			}
		}
	}
	close(fd);
	free(raw.p);
	return 0;
fail:
	close(fd);
	free(raw.p);
	return -1;
}

/* ---- main --------------------------------------------------------------- */

/* What libcni's skel (and the agent) check first: CNI_COMMAND and the variables the
 * command requires. Only consulted when the shim answers by itself, so that an
 * invocation wrong in both ways gets the same answer (code 4) as from the agent. */
static int env_problem(const char *command, struct buf *m)
{
	static const char *const required[][2] = {REQUIRED_ENV};
	if (!command || !*command) {
		buf_adds(m, "CNI_COMMAND is not set (want one of " CNI_COMMANDS_TEXT ")");
		return 1;
	}
	const char *need = NULL;
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (strcmp(command, required[i][0]) == 0)
			need = required[i][1];
	if (!need) {
		buf_adds(m, "CNI_COMMAND ");
		buf_add_json_string(m, command);
		buf_adds(m, " is not a CNI command (want one of " CNI_COMMANDS_TEXT ")");
		return 1;
	}
	struct buf missing = {0};
	int n = 0;
	for (const char *p = need; *p;) {
		size_t l = strcspn(p, " ");
		char var[64];
		snprintf(var, sizeof(var), "%.*s", (int)l, p);
		const char *v = getenv(var);
		if (!v || !*v) {
			buf_printf(&missing, "%s%s", n++ ? ", " : "", var);
		}
		p += l;
		p += strspn(p, " ");
	}
	if (n)
		buf_printf(m, "%s %s not set (required for %s)", missing.p, n == 1 ? "is" : "are", command);
	free(missing.p);
	return n > 0;
}

/* Why `conf` names no usable agent socket (code 7), or 0. */
static int socket_problem(const struct conf_scan *conf, struct buf *m, const char **details)
{
	if (!conf->socket_seen) {
		buf_adds(m, "network config has no \"agentSocket\" (the membrane agent's API socket)");
		*details = "set \"agentSocket\" in the membrane-cni plugin's config, e.g. to " DEFAULT_SOCKET
			   " for an agent run with the default stateDir";
		return 1;
	}
	const char *s = conf->socket.p ? conf->socket.p : "";
	struct sockaddr_un sa;
	if (conf->socket_type)
		buf_printf(m, "\"agentSocket\" must be a string, not %s", conf->socket_type);
	else if (conf->socket.len == 0)
		buf_adds(m, "\"agentSocket\" is empty (want the membrane agent's API socket path)");
	else if (strlen(s) != conf->socket.len)
		buf_adds(m, "\"agentSocket\" contains a NUL character");
	else if (s[0] != '/') {
		/* relative to what? the runtime's working directory is nothing the config can rely on */
		buf_adds(m, "\"agentSocket\" ");
		buf_add_json_string(m, s);
		buf_adds(m, " is not an absolute path");
	} else if (conf->socket.len >= sizeof(sa.sun_path))
		buf_printf(m, "\"agentSocket\" is %zu bytes long; a unix socket path has at most %zu", conf->socket.len, sizeof(sa.sun_path) - 1);
	else
		return 0;
	return 1;
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const char *t = getenv("MEMBRANE_CNI_TIMEOUT_MS"); /* tests and debugging */
	if (t && *t) {
		char *e;
		long v = strtol(t, &e, 10);
		if (*e == '\0' && v > 0 && v <= 3600000L)
			timeout_ms = v;
	}
	deadline_ms = now_ms() + timeout_ms;

	const char *command = getenv("CNI_COMMAND");
	struct buf in = {0};
	int rr = read_all(STDIN_FILENO, &in);
	int read_errno = errno;
	if (rr == -3)
		cni_error(DEFAULT_CNI_VERSION, 5, "read network config from stdin: larger than " MAX_STDIN_TEXT, NULL);
	if (rr == -2)
		cni_error(DEFAULT_CNI_VERSION, 5, "read network config from stdin: timed out", NULL);
	if (rr < 0) {
		struct buf m = {0};
		buf_adds(&m, "read network config from stdin: ");
		buf_add_errno(&m, read_errno);
		cni_error(DEFAULT_CNI_VERSION, 5, m.p, NULL);
	}

	struct conf_scan conf = {0};
	struct json_error jerr = {0};
	int empty = skip_ws(in.p, in.len, 0) == in.len;
	int valid = !empty && scan_conf(in.p, in.len, &conf, &jerr) == 0;
	int has_version = valid && conf.version_seen && conf.version.p;

	if (command && strcmp(command, "VERSION") == 0) {
		/* Spec: "cniVersion: the value of cniVersion specified on input" (when we speak it). */
		const char *v = has_version && is_supported(conf.version.p) ? conf.version.p : DEFAULT_CNI_VERSION;
		struct buf out = {0};
		buf_adds(&out, "{\"cniVersion\":");
		buf_add_json_string(&out, v);
		buf_adds(&out, ",\"supportedVersions\":[");
		for (size_t i = 0; i < N_SUPPORTED; i++)
			buf_printf(&out, "%s\"%s\"", i ? "," : "", supported_versions[i]);
		buf_adds(&out, "]}\n");
		return write_all(STDOUT_FILENO, out.p, out.len) == 0 ? 0 : 1;
	}
	/* The error object's cniVersion is the config's, as the agent's is. */
	const char *errv = has_version && looks_like_version(conf.version.p) ? conf.version.p : DEFAULT_CNI_VERSION;

	struct buf req = {0};
	buf_adds(&req, "POST /v1/cni HTTP/1.1\r\nHost: membrane-agent\r\nConnection: close\r\nContent-Type: application/json\r\n");
	size_t env_bytes = 0, largest = 0;
	const char *largest_var = NULL;
	for (size_t i = 0; i < N_CNI_VARS; i++) {
		size_t n = add_header(&req, cni_vars[i][0], cni_vars[i][1]);
		env_bytes += n;
		if (n > largest) {
			largest = n;
			largest_var = cni_vars[i][1];
		}
	}
	buf_printf(&req, "Content-Length: %zu\r\n\r\n", in.len);
	if (in.len)
		buf_add(&req, in.p, in.len);

	/* What keeps the request from reaching the agent: a config without a usable agentSocket
	 * (the shim cannot know where the agent is, and must not guess from a malformed text),
	 * or variables the agent would refuse to read. Permanent problems, so never code 11. */
	struct buf m = {0};
	const char *details = NULL;
	int refuse = 0; /* the CNI code the shim answers with by itself */
	if (empty) {
		refuse = 6;
		buf_adds(&m, "decode network config: stdin is empty");
	} else if (!valid) {
		refuse = 6;
		add_json_error(&m, in.p, &jerr);
	} else if (conf.top_type) {
		refuse = 7;
		buf_printf(&m, "network config must be a JSON object, not %s", conf.top_type);
	} else if (socket_problem(&conf, &m, &details)) {
		refuse = 7;
	} else if (env_bytes > MAX_CNI_HEADER_BYTES) {
		refuse = 4;
		buf_printf(&m, "CNI_* variables too large for the agent: %zu bytes as headers, at most %u (largest: %s, %zu bytes)",
			   env_bytes, MAX_CNI_HEADER_BYTES, largest_var, largest);
	}
	if (refuse) {
		struct buf envm = {0};
		if (env_problem(command, &envm))
			cni_error(errv, 4, envm.p, NULL);
		cni_error(errv, refuse, m.p, details);
	}

	const char *path = conf.socket.p;
	struct response res = {0};
	struct buf err = {0};
	if (exchange(path, &req, &res, &err) < 0 || res.status != 200) {
		if (!err.len && res.status == 431)
			cni_error(errv, 4, "CNI_* variables too large for the agent: it answered HTTP 431 (request header fields too large)", NULL);
		struct buf um = {0};
		if (err.len)
			buf_printf(&um, "membrane agent not reachable at %s: %s", path, err.p);
		else
			buf_printf(&um, "membrane agent not reachable at %s: bad response: HTTP status %d", path, res.status);
		/* STATUS has its own code for "cannot serve ADD"; everything else may retry later. */
		int code = command && strcmp(command, "STATUS") == 0 ? 50 : 11;
		cni_error(errv, code, um.p, "start the agent on this node (membrane agent --config FILE)");
	}
	if (res.body.len && write_all(STDOUT_FILENO, res.body.p, res.body.len) < 0)
		return res.exit_code ? res.exit_code : 1;
	return res.exit_code;
}
