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
// The shim answers two things itself: VERSION (no agent needed) and "agent
// not reachable" (connect fails, the exchange times out, or the answer is not
// a valid response): a CNI error object with code 11 ("try again later"),
// or 50 ("plugin not available") for STATUS, on stdout and exit 1.
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

/* ---- a tiny JSON scanner: the top-level string values we need ----------- */

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9') return c - '0';
	if (c >= 'a' && c <= 'f') return c - 'a' + 10;
	if (c >= 'A' && c <= 'F') return c - 'A' + 10;
	return -1;
}

static int read_hex4(const char *p, const char *end, unsigned *out)
{
	if (end - p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(p[i]);
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

/* Parses the string literal at *pp (which points at '"'); decodes it into out when out != NULL.
 * Returns 0 and advances *pp past the closing quote, or -1 on malformed input. */
static int parse_string(const char **pp, const char *end, struct buf *out)
{
	const char *p = *pp + 1;
	while (p < end) {
		char c = *p++;
		if (c == '"') {
			*pp = p;
			return 0;
		}
		if (c != '\\') {
			if (out)
				buf_addc(out, c);
			continue;
		}
		if (p >= end)
			return -1;
		char e = *p++;
		unsigned cp;
		switch (e) {
		case '"': case '\\': case '/': if (out) buf_addc(out, e); break;
		case 'b': if (out) buf_addc(out, '\b'); break;
		case 'f': if (out) buf_addc(out, '\f'); break;
		case 'n': if (out) buf_addc(out, '\n'); break;
		case 'r': if (out) buf_addc(out, '\r'); break;
		case 't': if (out) buf_addc(out, '\t'); break;
		case 'u':
			if (read_hex4(p, end, &cp) < 0)
				return -1;
			p += 4;
			if (cp >= 0xd800 && cp < 0xdc00) {
				unsigned lo;
				if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' && read_hex4(p + 2, end, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
					cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
					p += 6;
				} else {
					cp = 0xfffd;
				}
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				cp = 0xfffd;
			}
			if (out)
				buf_add_utf8(out, cp);
			break;
		default:
			return -1;
		}
	}
	return -1;
}

/* Skips one JSON value without recursion. Returns 0 and advances *pp, or -1. */
static int skip_value(const char **pp, const char *end)
{
	const char *p = *pp;
	if (p >= end)
		return -1;
	if (*p == '"') {
		if (parse_string(&p, end, NULL) < 0)
			return -1;
		*pp = p;
		return 0;
	}
	if (*p == '{' || *p == '[') {
		size_t depth = 0;
		while (p < end) {
			if (*p == '"') {
				if (parse_string(&p, end, NULL) < 0)
					return -1;
				continue;
			}
			if (*p == '{' || *p == '[')
				depth++;
			else if (*p == '}' || *p == ']') {
				if (--depth == 0) {
					*pp = p + 1;
					return 0;
				}
			}
			p++;
		}
		return -1;
	}
	/* number, true, false, null */
	const char *start = p;
	while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
		p++;
	if (p == start)
		return -1;
	*pp = p;
	return 0;
}

/* Finds the top-level keys "agentSocket" and "cniVersion" when their values are strings.
 * Malformed input simply leaves them unset: the agent reports the parse error itself. */
static void scan_conf(const char *text, size_t len, struct buf *socket_path, struct buf *cni_version)
{
	const char *p = text, *end = text + len;
	p = skip_ws(p, end);
	if (p >= end || *p != '{')
		return;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
		return;
	for (;;) {
		if (p >= end || *p != '"')
			return;
		struct buf key = {0};
		if (parse_string(&p, end, &key) < 0) {
			free(key.p);
			return;
		}
		p = skip_ws(p, end);
		if (p >= end || *p != ':') {
			free(key.p);
			return;
		}
		p = skip_ws(p + 1, end);
		struct buf *want = NULL;
		if (key.p && strcmp(key.p, "agentSocket") == 0)
			want = socket_path;
		else if (key.p && strcmp(key.p, "cniVersion") == 0)
			want = cni_version;
		free(key.p);
		if (want && p < end && *p == '"') {
			want->len = 0;
			if (parse_string(&p, end, want) < 0)
				return;
		} else if (skip_value(&p, end) < 0) {
			return;
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p = skip_ws(p + 1, end);
			continue;
		}
		return; /* '}' or garbage: done either way */
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

static void add_header(struct buf *req, const char *header, const char *var)
{
	const char *v = getenv(var);
	if (!v)
		return;
	buf_adds(req, header);
	buf_adds(req, ": ");
	for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
		if (*p <= 0x20 || *p >= 0x7f || *p == '%')
			buf_printf(req, "%%%02X", *p);
		else
			buf_addc(req, (char)*p);
	}
	buf_adds(req, "\r\n");
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
	struct buf sock = {0}, ver = {0};
	if (rr == 0)
		scan_conf(in.p, in.len, &sock, &ver);
	const char *cni_version = ver.p && is_supported(ver.p) ? ver.p : DEFAULT_CNI_VERSION;

	if (rr == -3)
		cni_error(cni_version, 5, "read network config from stdin: larger than 64 MiB", NULL);
	if (rr == -2)
		cni_error(cni_version, 5, "read network config from stdin: timed out", NULL);
	if (rr < 0) {
		struct buf m = {0};
		buf_adds(&m, "read network config from stdin: ");
		buf_add_errno(&m, read_errno);
		cni_error(cni_version, 5, m.p, NULL);
	}

	if (command && strcmp(command, "VERSION") == 0) {
		/* Spec: "cniVersion: the value of cniVersion specified on input". */
		struct buf out = {0};
		buf_adds(&out, "{\"cniVersion\":");
		buf_add_json_string(&out, cni_version);
		buf_adds(&out, ",\"supportedVersions\":[");
		for (size_t i = 0; i < N_SUPPORTED; i++)
			buf_printf(&out, "%s\"%s\"", i ? "," : "", supported_versions[i]);
		buf_adds(&out, "]}\n");
		return write_all(STDOUT_FILENO, out.p, out.len) == 0 ? 0 : 1;
	}

	const char *path = sock.p && *sock.p ? sock.p : DEFAULT_SOCKET;
	struct buf req = {0};
	buf_adds(&req, "POST /v1/cni HTTP/1.1\r\nHost: membrane-agent\r\nConnection: close\r\nContent-Type: application/json\r\n");
	add_header(&req, "X-Cni-Command", "CNI_COMMAND");
	add_header(&req, "X-Cni-Containerid", "CNI_CONTAINERID");
	add_header(&req, "X-Cni-Netns", "CNI_NETNS");
	add_header(&req, "X-Cni-Ifname", "CNI_IFNAME");
	add_header(&req, "X-Cni-Args", "CNI_ARGS");
	add_header(&req, "X-Cni-Path", "CNI_PATH");
	buf_printf(&req, "Content-Length: %zu\r\n\r\n", in.len);
	if (in.len)
		buf_add(&req, in.p, in.len);

	struct response res = {0};
	struct buf err = {0};
	if (exchange(path, &req, &res, &err) < 0 || res.status != 200) {
		struct buf m = {0};
		if (err.len)
			buf_printf(&m, "membrane agent not reachable at %s: %s", path, err.p);
		else
			buf_printf(&m, "membrane agent not reachable at %s: bad response: HTTP status %d", path, res.status);
		/* STATUS has its own code for "cannot serve ADD"; everything else may retry later. */
		int code = command && strcmp(command, "STATUS") == 0 ? 50 : 11;
		cni_error(cni_version, code, m.p, "start the agent on this node (membrane agent --config FILE)");
	}
	if (res.body.len && write_all(STDOUT_FILENO, res.body.p, res.body.len) < 0)
		return res.exit_code ? res.exit_code : 1;
	return res.exit_code;
}
