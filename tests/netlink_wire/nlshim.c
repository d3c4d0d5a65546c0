// SPDX-License-Identifier: MIT OR Apache-2.0
/*
 * nlshim: an LD_PRELOAD stand-in for the kernel's generic netlink "wireguard" family, so that
 * the requests `wg` sends to a kernel device can be recorded and compared on a machine without
 * the module. Only NETLINK_GENERIC sockets are faked; everything else goes to libc.
 *
 * The fake kernel answers CTRL_CMD_GETFAMILY for "wireguard" with family id NLSHIM_FAMILY (and
 * ENOENT for any other name), and every WG_CMD_SET_DEVICE with an ACK, after appending the
 * request's bytes to the file named by $NLSHIM_OUT. With $NLSHIM_FAIL_AT=N the N-th set request
 * (from 1) is answered with EINVAL instead. WG_CMD_GET_DEVICE is answered with the dump in the
 * file named by $NLSHIM_DUMP: complete netlink messages, each sent as its own datagram with the
 * request's sequence number and port filled in, then NLMSG_DONE carrying the int in
 * $NLSHIM_DONE (default 0); without a dump file, with ENODEV. With $NLSHIM_INTR_ONCE set, the
 * first dump of the process is flagged NLM_F_DUMP_INTR (the device changed under it).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/genetlink.h>
#include <linux/netlink.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

#define NLSHIM_FAMILY 0x25
#define NLSHIM_PORT 4242
#define MAX_FAKES 16
#define MAX_QUEUE 65536

struct reply {
	size_t len;
	unsigned char *data;
};

struct fake {
	int fd;
	struct reply *queue;
	int head, count;
};

static struct fake fakes[MAX_FAKES];
static int sets_seen;

#define REAL(name, ret, ...)                                                                    \
	static ret (*real_##name)(__VA_ARGS__);                                                 \
	if (!real_##name)                                                                       \
		real_##name = (ret(*)(__VA_ARGS__))dlsym(RTLD_NEXT, #name)

static struct fake *find(int fd)
{
	for (int i = 0; i < MAX_FAKES; i++)
		if (fakes[i].fd == fd && fd > 0)
			return &fakes[i];
	return NULL;
}

static void push(struct fake *f, const void *data, size_t len)
{
	if (!f->queue)
		f->queue = calloc(MAX_QUEUE, sizeof(*f->queue));
	if (!f->queue || f->count == MAX_QUEUE)
		abort();
	struct reply *r = &f->queue[(f->head + f->count++) % MAX_QUEUE];
	r->data = malloc(len);
	if (!r->data)
		abort();
	memcpy(r->data, data, len);
	r->len = len;
}

static void put_attr(unsigned char *buf, size_t *len, uint16_t type, const void *data, uint16_t dlen)
{
	struct nlattr a = { .nla_len = NLA_HDRLEN + dlen, .nla_type = type };
	memcpy(buf + *len, &a, sizeof(a));
	memcpy(buf + *len + NLA_HDRLEN, data, dlen);
	*len += NLA_ALIGN(NLA_HDRLEN + dlen);
}

static void ack(struct fake *f, const struct nlmsghdr *req, int error)
{
	unsigned char buf[NLMSG_HDRLEN + sizeof(struct nlmsgerr)] = { 0 };
	struct nlmsghdr *h = (struct nlmsghdr *)buf;
	struct nlmsgerr *e = (struct nlmsgerr *)(buf + NLMSG_HDRLEN);
	h->nlmsg_len = sizeof(buf);
	h->nlmsg_type = NLMSG_ERROR;
	h->nlmsg_flags = error ? 0 : NLM_F_CAPPED;
	h->nlmsg_seq = req->nlmsg_seq;
	h->nlmsg_pid = NLSHIM_PORT;
	e->error = -error;
	e->msg = *req;
	push(f, buf, sizeof(buf));
}

static void handle(struct fake *f, const unsigned char *msg, size_t len)
{
	const struct nlmsghdr *req = (const struct nlmsghdr *)msg;
	if (len < NLMSG_HDRLEN + GENL_HDRLEN || req->nlmsg_len != len)
		abort();
	const struct genlmsghdr *genl = (const struct genlmsghdr *)(msg + NLMSG_HDRLEN);
	if (req->nlmsg_type == GENL_ID_CTRL && genl->cmd == CTRL_CMD_GETFAMILY) {
		const struct nlattr *a = (const struct nlattr *)(msg + NLMSG_HDRLEN + GENL_HDRLEN);
		if (a->nla_type != CTRL_ATTR_FAMILY_NAME || strcmp((const char *)a + NLA_HDRLEN, "wireguard")) {
			ack(f, req, ENOENT);
			return;
		}
		unsigned char buf[128] = { 0 };
		size_t n = NLMSG_HDRLEN + GENL_HDRLEN;
		uint16_t id = NLSHIM_FAMILY;
		uint32_t version = 1;
		put_attr(buf, &n, CTRL_ATTR_FAMILY_NAME, "wireguard", 10);
		put_attr(buf, &n, CTRL_ATTR_FAMILY_ID, &id, sizeof(id));
		put_attr(buf, &n, CTRL_ATTR_VERSION, &version, sizeof(version));
		struct nlmsghdr *h = (struct nlmsghdr *)buf;
		h->nlmsg_len = n;
		h->nlmsg_type = GENL_ID_CTRL;
		h->nlmsg_seq = req->nlmsg_seq;
		h->nlmsg_pid = NLSHIM_PORT;
		struct genlmsghdr *g = (struct genlmsghdr *)(buf + NLMSG_HDRLEN);
		g->cmd = CTRL_CMD_NEWFAMILY;
		g->version = 2;
		push(f, buf, n);
		ack(f, req, 0);
		return;
	}
	if (req->nlmsg_type == NLSHIM_FAMILY && genl->cmd == 1 /* WG_CMD_SET_DEVICE */) {
		const char *out = getenv("NLSHIM_OUT");
		const char *fail_at = getenv("NLSHIM_FAIL_AT");
		if (out) {
			int fd = open(out, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
			if (fd < 0 || write(fd, msg, len) != (ssize_t)len)
				abort();
			close(fd);
		}
		++sets_seen;
		ack(f, req, fail_at && atoi(fail_at) == sets_seen ? EINVAL : 0);
		return;
	}
	const char *dump = getenv("NLSHIM_DUMP");
	if (req->nlmsg_type == NLSHIM_FAMILY && genl->cmd == 0 /* WG_CMD_GET_DEVICE */ && dump) {
		static unsigned char buf[1 << 24];
		int fd = open(dump, O_RDONLY | O_CLOEXEC);
		ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf));
		if (fd < 0 || n < 0 || n == sizeof(buf))
			abort();
		close(fd);
		for (size_t at = 0; at + NLMSG_HDRLEN <= (size_t)n;) {
			struct nlmsghdr *h = (struct nlmsghdr *)(buf + at);
			if (h->nlmsg_len < NLMSG_HDRLEN || at + h->nlmsg_len > (size_t)n)
				abort();
			static int dumps_flagged;
			h->nlmsg_seq = req->nlmsg_seq;
			h->nlmsg_pid = NLSHIM_PORT;
			if (getenv("NLSHIM_INTR_ONCE") && !dumps_flagged++)
				h->nlmsg_flags |= NLM_F_DUMP_INTR;
			push(f, h, h->nlmsg_len);
			at += NLMSG_ALIGN(h->nlmsg_len);
		}
		unsigned char done[NLMSG_HDRLEN + sizeof(int)] = { 0 };
		struct nlmsghdr *h = (struct nlmsghdr *)done;
		int status = getenv("NLSHIM_DONE") ? atoi(getenv("NLSHIM_DONE")) : 0;
		h->nlmsg_len = sizeof(done);
		h->nlmsg_type = NLMSG_DONE;
		h->nlmsg_flags = NLM_F_MULTI;
		h->nlmsg_seq = req->nlmsg_seq;
		h->nlmsg_pid = NLSHIM_PORT;
		memcpy(done + NLMSG_HDRLEN, &status, sizeof(status));
		push(f, done, sizeof(done));
		return;
	}
	ack(f, req, req->nlmsg_type == NLSHIM_FAMILY ? ENODEV : EOPNOTSUPP);
}

static ssize_t deliver(struct fake *f, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
	if (!f->count) {
		errno = EAGAIN;
		return -1;
	}
	struct reply *r = &f->queue[f->head];
	size_t n = r->len < len ? r->len : len;
	memcpy(buf, r->data, n);
	if (!(flags & MSG_PEEK)) {
		free(r->data);
		f->head = (f->head + 1) % MAX_QUEUE;
		f->count--;
	}
	if (from && fromlen) {
		struct sockaddr_nl nl = { .nl_family = AF_NETLINK };
		socklen_t m = *fromlen < sizeof(nl) ? *fromlen : sizeof(nl);
		memcpy(from, &nl, m);
		*fromlen = sizeof(nl);
	}
	return n;
}

int socket(int domain, int type, int protocol)
{
	REAL(socket, int, int, int, int);
	if (domain != AF_NETLINK || protocol != NETLINK_GENERIC)
		return real_socket(domain, type, protocol);
	int fd = real_socket(AF_UNIX, SOCK_DGRAM | (type & SOCK_CLOEXEC), 0);
	for (int i = 0; fd >= 0 && i < MAX_FAKES; i++) {
		if (fakes[i].fd <= 0) {
			memset(&fakes[i], 0, sizeof(fakes[i]));
			fakes[i].fd = fd;
			return fd;
		}
	}
	abort();
}

int close(int fd)
{
	REAL(close, int, int);
	struct fake *f = find(fd);
	if (f) {
		while (f->count) {
			free(f->queue[f->head].data);
			f->head = (f->head + 1) % MAX_QUEUE;
			f->count--;
		}
		free(f->queue);
		f->queue = NULL;
		f->fd = 0;
	}
	return real_close(fd);
}

int bind(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(bind, int, int, const struct sockaddr *, socklen_t);
	return find(fd) ? 0 : real_bind(fd, addr, len);
}

int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
	REAL(connect, int, int, const struct sockaddr *, socklen_t);
	return find(fd) ? 0 : real_connect(fd, addr, len);
}

int getsockname(int fd, struct sockaddr *addr, socklen_t *len)
{
	REAL(getsockname, int, int, struct sockaddr *, socklen_t *);
	if (!find(fd))
		return real_getsockname(fd, addr, len);
	struct sockaddr_nl nl = { .nl_family = AF_NETLINK, .nl_pid = NLSHIM_PORT };
	socklen_t n = *len < sizeof(nl) ? *len : sizeof(nl);
	memcpy(addr, &nl, n);
	*len = sizeof(nl);
	return 0;
}

ssize_t sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *to, socklen_t tolen)
{
	REAL(sendto, ssize_t, int, const void *, size_t, int, const struct sockaddr *, socklen_t);
	struct fake *f = find(fd);
	if (!f)
		return real_sendto(fd, buf, len, flags, to, tolen);
	handle(f, buf, len);
	return len;
}

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	REAL(send, ssize_t, int, const void *, size_t, int);
	struct fake *f = find(fd);
	if (!f)
		return real_send(fd, buf, len, flags);
	handle(f, buf, len);
	return len;
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from, socklen_t *fromlen)
{
	REAL(recvfrom, ssize_t, int, void *, size_t, int, struct sockaddr *, socklen_t *);
	struct fake *f = find(fd);
	return f ? deliver(f, buf, len, flags, from, fromlen) : real_recvfrom(fd, buf, len, flags, from, fromlen);
}

ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	REAL(recv, ssize_t, int, void *, size_t, int);
	struct fake *f = find(fd);
	return f ? deliver(f, buf, len, flags, NULL, NULL) : real_recv(fd, buf, len, flags);
}

ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	REAL(recvmsg, ssize_t, int, struct msghdr *, int);
	struct fake *f = find(fd);
	if (!f)
		return real_recvmsg(fd, msg, flags);
	if (msg->msg_iovlen != 1)
		abort();
	socklen_t namelen = msg->msg_namelen;
	ssize_t n = deliver(f, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, flags, msg->msg_name, &namelen);
	msg->msg_namelen = namelen;
	msg->msg_flags = 0;
	msg->msg_controllen = 0;
	return n;
}
