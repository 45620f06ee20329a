/*
 * c-deny: a tunnel plugin in C. It drops every occurrence of one byte
 * pattern in what the client sends and answers the client with a reply,
 * like plugins/deny with {"pattern": ..., "reply": ..., "from": "client"}.
 * A pattern split across chunks is found too: the tail of a chunk that could
 * start the pattern is kept in the guest's memory (per connection) until the
 * next chunk decides.
 *
 * Config: {"pattern": "FLUSHALL\r\n", "reply": "-ERR command not allowed\r\n"}
 * Build:  make (see Makefile)
 */
#include <stdlib.h>
#include <string.h>

#include "tunnel.h"

#define CAP (16 << 10)       /* input buffer */
#define MAX_PATTERN 256

static unsigned char input[CAP];
/* work holds a connection's kept tail followed by the chunk. */
static unsigned char work[MAX_PATTERN + CAP];
static char pattern[MAX_PATTERN];
static int32_t plen;
static char reply[1024];
static int32_t rlen;

/* tail is the start of the pattern a connection's last chunk ended with. */
struct tail {
	int64_t conn;
	int32_t len;
	struct tail *next;
	unsigned char b[];
};
static struct tail *tails;

static struct tail **find(int64_t conn) {
	struct tail **p = &tails;
	while (*p && (*p)->conn != conn)
		p = &(*p)->next;
	return p;
}

static void reject(const char *msg) { tunnel_config_error(msg, (int32_t)strlen(msg)); }

/* json_string finds "key": "..." in the config and unescapes its value
 * into out (at most max bytes). Returns its length, -1 when absent, -2 when
 * malformed or too long. Enough for this example's flat object. */
static int32_t json_string(const char *js, int32_t n, const char *key, char *out, int32_t max) {
	int32_t klen = (int32_t)strlen(key);
	for (int32_t i = 0; i + klen + 2 <= n; i++) {
		if (js[i] != '"' || memcmp(js + i + 1, key, klen) != 0 || js[i + 1 + klen] != '"')
			continue;
		int32_t j = i + klen + 2;
		while (j < n && (js[j] == ' ' || js[j] == ':' || js[j] == '\t' || js[j] == '\n' || js[j] == '\r'))
			j++;
		if (j >= n || js[j] != '"')
			return -2;
		int32_t o = 0;
		for (j++; j < n && js[j] != '"'; j++) {
			char c = js[j];
			if (c == '\\') {
				if (++j >= n)
					return -2;
				switch (js[j]) {
				case 'n': c = '\n'; break;
				case 'r': c = '\r'; break;
				case 't': c = '\t'; break;
				case '"': case '\\': case '/': c = js[j]; break;
				case 'u': { /* \u00XX only: bytes 0-255 */
					if (j + 4 >= n || js[j + 1] != '0' || js[j + 2] != '0')
						return -2;
					int v = 0;
					for (int k = 3; k <= 4; k++) {
						char h = js[j + k];
						v = v * 16 + (h >= 'a' ? h - 'a' + 10 : h >= 'A' ? h - 'A' + 10 : h - '0');
					}
					c = (char)v;
					j += 4;
					break;
				}
				default: return -2;
				}
			}
			if (o >= max)
				return -2;
			out[o++] = c;
		}
		return j < n ? o : -2;
	}
	return -1;
}

int32_t tunnel_abi_version(void) { return 1; }

int32_t tunnel_init(void) {
	static char cfg[4096];
	int32_t n = tunnel_config(cfg, sizeof cfg);
	if (n > (int32_t)sizeof cfg) {
		reject("c-deny: config longer than 4 KiB");
		return TUNNEL_REJECT;
	}
	plen = json_string(cfg, n, "pattern", pattern, MAX_PATTERN);
	if (plen == -1 || plen == 0) {
		reject("c-deny: \"pattern\" must be set and not empty");
		return TUNNEL_REJECT;
	}
	if (plen < 0) {
		reject("c-deny: \"pattern\": a JSON string of at most 256 bytes");
		return TUNNEL_REJECT;
	}
	rlen = json_string(cfg, n, "reply", reply, sizeof reply);
	if (rlen == -1)
		rlen = 0;
	if (rlen < 0) {
		reject("c-deny: \"reply\": a JSON string of at most 1024 bytes");
		return TUNNEL_REJECT;
	}
	tunnel_input_buffer(input, CAP);
	return TUNNEL_OK;
}

int32_t tunnel_on_data(int64_t conn, int32_t dir, int32_t len, int32_t end) {
	if (dir != TUNNEL_DIR_CLIENT_TO_SERVER)
		return TUNNEL_ACTION_FORWARD;
	struct tail **tp = find(conn);
	int32_t kept = *tp ? (*tp)->len : 0;
	/* The fast path: no kept tail, no pattern, no possible start of one at
	 * the end. FORWARD passes the host's copy of the chunk. */
	if (kept)
		memcpy(work, (*tp)->b, kept);
	memcpy(work + kept, input, len);
	int32_t n = kept + len, from = 0, matches = 0, i = 0;
	for (; i + plen <= n; i++) {
		if (memcmp(work + i, pattern, plen) == 0) {
			if (i > from)
				tunnel_send(dir, work + from, i - from);
			from = i + plen;
			i += plen - 1;
			matches++;
		}
	}
	/* The longest suffix of work that starts the pattern. */
	int32_t keep = 0;
	if (!end) {
		for (int32_t k = plen - 1 < n - from ? plen - 1 : n - from; k > 0; k--) {
			if (memcmp(work + n - k, pattern, k) == 0) {
				keep = k;
				break;
			}
		}
	}
	if (!kept && !matches && !keep)
		return TUNNEL_ACTION_FORWARD;
	if (n - keep > from)
		tunnel_send(dir, work + from, n - keep - from);
	if (keep) {
		if (!*tp) {
			struct tail *t = malloc(sizeof *t + MAX_PATTERN);
			if (!t)
				__builtin_trap();
			t->conn = conn;
			t->next = NULL;
			*tp = t;
		}
		memcpy((*tp)->b, work + n - keep, keep);
		(*tp)->len = keep;
	} else if (*tp) {
		struct tail *t = *tp;
		*tp = t->next;
		free(t);
	}
	for (int32_t m = 0; m < matches; m++) {
		static const char msg[] = "c-deny: blocked the pattern from the client";
		tunnel_log(TUNNEL_LOG_WARN, msg, sizeof msg - 1);
		if (rlen)
			tunnel_send(TUNNEL_DIR_SERVER_TO_CLIENT, reply, rlen);
	}
	return TUNNEL_ACTION_DROP;
}

void tunnel_on_close(int64_t conn) {
	struct tail **tp = find(conn);
	if (*tp) {
		struct tail *t = *tp;
		*tp = t->next;
		free(t);
	}
}
