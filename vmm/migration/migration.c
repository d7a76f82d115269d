/* Live migration: the source's pre-copy thread, the destination's receive
 * loop, and their QMP commands (see migration.h).
 *
 * Threads: the migration thread owns the socket and the pass state; the
 * status and counters QMP reads are under mig->lock. Pausing the VM,
 * capturing its state and resuming it run on the main loop, as every other
 * pause does: the thread asks through an eventfd and waits for the answer. */
#include "vmm/migration/migration.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "base/byteorder.h"
#include "base/evloop.h"
#include "base/guest_mem.h"
#include "base/log.h"
#include "vmm/config.h"
#include "vmm/control/fdstore.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/snapshot/state.h"
#include "vmm/vm.h"

#ifndef EMBER_VERSION
#define EMBER_VERSION "unknown"
#endif

#define MIG_IO_TIMEOUT_S	60	/* a peer that stops reading or writing */
#define MIG_ACK_TIMEOUT_S	60	/* the destination loads the state */
#define MIG_BATCH_PAGES		256	/* between cancel and bandwidth checks */
#define MIG_OUT_BUF		(1u << 20)

enum mig_status {
	MIG_NONE, MIG_SETUP, MIG_ACTIVE, MIG_DEVICE, MIG_COMPLETED, MIG_FAILED,
	MIG_CANCELLING, MIG_CANCELLED,
};

static const char *const mig_status_names[] = {
	[MIG_NONE] = "none", [MIG_SETUP] = "setup", [MIG_ACTIVE] = "active",
	[MIG_DEVICE] = "device", [MIG_COMPLETED] = "completed", [MIG_FAILED] = "failed",
	[MIG_CANCELLING] = "cancelling", [MIG_CANCELLED] = "cancelled",
};

/* A request the thread hands to the main loop. */
enum mig_main_op { MAIN_NONE, MAIN_PAUSE_CAPTURE, MAIN_RESUME };

struct migration {
	struct vm *vm;
	pthread_mutex_t lock;	/* everything QMP reads, and the main-loop handshake */
	pthread_cond_t cond;
	enum mig_status status;
	char error[384];
	uint64_t downtime_limit_ms, max_bandwidth;	/* parameters */
	uint64_t ram_total, transferred, remaining, normal_pages, zero_pages;
	uint64_t dirty_sync_count, dirty_pages_rate, mbps;
	int64_t start_ms, setup_ms, total_ms, downtime_ms;
	bool cancel;		/* atomic */

	pthread_t thread;
	bool thread_running;	/* joinable */
	char uri[256];
	int fd;			/* the connection (the thread's) */

	/* Main-loop handshake. */
	int main_efd;
	bool main_registered;
	enum mig_main_op op;
	bool op_done;
	bool loop_gone;		/* migration_destroy: no main loop answers any more */
	int op_ret;
	bool paused_by_us, was_stopped;
	uint8_t *image;
	size_t image_len;
	char *disks;
	char op_err[384];

	/* Dirty bitmaps, one per region (KVM's, then OR'ed with guest_mem's). */
	uint64_t *bits[GM_MAX_REGIONS];
	uint64_t *dev_bits[GM_MAX_REGIONS];
	size_t words[GM_MAX_REGIONS];
	bool logging;
	uint8_t out[MIG_OUT_BUF];	/* the send buffer (the thread's) */
	size_t out_len;
};

/* ---- I/O ---- */

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Works on sockets and plain fds (the fuzzer feeds a memfd). */
static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		if (n == 0)
			return -EPIPE;	/* truncated */
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void set_timeouts(int fd, int secs)
{
	struct timeval tv = { .tv_sec = secs };

	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* "unix:PATH" / "tcp:HOST:PORT" into an address; -EINVAL with a reason. */
static int parse_uri(const char *uri, struct sockaddr_storage *ss, socklen_t *sl, char *err,
		     size_t errlen)
{
	memset(ss, 0, sizeof(*ss));
	if (!strncmp(uri, "unix:", 5)) {
		struct sockaddr_un *su = (struct sockaddr_un *)ss;

		if (!uri[5] || strlen(uri + 5) >= sizeof(su->sun_path))
			return errf(err, errlen, -EINVAL, "migration URI '%s': bad socket path", uri);
		su->sun_family = AF_UNIX;
		strcpy(su->sun_path, uri + 5);
		*sl = sizeof(*su);
		return 0;
	}
	if (!strncmp(uri, "tcp:", 4)) {
		char host[128];
		const char *colon = strrchr(uri + 4, ':');
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai = NULL;
		size_t hl = colon ? (size_t)(colon - (uri + 4)) : 0;
		int r;

		if (!colon || !colon[1] || hl >= sizeof(host))
			return errf(err, errlen, -EINVAL, "migration URI '%s': expected tcp:HOST:PORT",
				    uri);
		memcpy(host, uri + 4, hl);
		host[hl] = 0;
		if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
			memmove(host, host + 1, hl - 2);
			host[hl - 2] = 0;
		}
		r = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &ai);
		if (r || !ai)
			return errf(err, errlen, -EINVAL, "migration URI '%s': %s", uri,
				    r ? gai_strerror(r) : "no address");
		memcpy(ss, ai->ai_addr, ai->ai_addrlen);
		*sl = ai->ai_addrlen;
		freeaddrinfo(ai);
		return 0;
	}
	return errf(err, errlen, -EINVAL, "migration URI '%s': expected unix:PATH, tcp:HOST:PORT "
		    "or fd:NAME", uri);
}

static int connect_uri(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, ret;

	if (!strncmp(uri, "fd:", 3)) {
		fd = fdstore_take(uri + 3);
		if (fd < 0)
			return errf(err, errlen, -ENOENT, "migrate: no file descriptor named '%s' "
				    "(pass one with getfd first)", uri + 3);
		return fd;
	}
	ret = parse_uri(uri, &ss, &sl, err, errlen);
	if (ret)
		return ret;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errf(err, errlen, -errno, "migrate: socket: %s", strerror(errno));
	set_timeouts(fd, MIG_IO_TIMEOUT_S);
	if (connect(fd, (struct sockaddr *)&ss, sl) < 0) {
		ret = -errno;
		close(fd);
		return errf(err, errlen, ret, "migrate: cannot connect to %s: %s", uri,
			    strerror(-ret));
	}
	return fd;
}

/* ---- status ---- */

static struct migration *mig_get(struct vm *vm)
{
	struct migration *m = vm->migration;

	if (m)
		return m;
	m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->vm = vm;
	m->fd = -1;
	m->main_efd = -1;
	m->downtime_limit_ms = MIG_DEFAULT_DOWNTIME_MS;
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->cond, NULL);
	vm->migration = m;
	return m;
}

static void set_status(struct migration *m, enum mig_status st)
{
	pthread_mutex_lock(&m->lock);
	m->status = st;
	pthread_mutex_unlock(&m->lock);
	vm_emit_event(m->vm, "MIGRATION", json_pack("{s:s}", "status", mig_status_names[st]));
}

static bool cancelled(struct migration *m)
{
	return __atomic_load_n(&m->cancel, __ATOMIC_ACQUIRE);
}

/* ---- dirty logging ---- */

static int log_set(struct migration *m, bool on)
{
	struct vm *vm = m->vm;
	int ret = 0;

	for (unsigned i = 0; i < vm->mem.nr; i++) {
		const struct gm_region *r = &vm->mem.regions[i];
		int r2 = kvm_set_memslot(vm->kvm, vm->mem_slot_base + i, r->gpa, r->size, r->hva,
					 on ? KVM_MEM_LOG_DIRTY_PAGES : 0);

		if (r2 && !ret)
			ret = r2;
	}
	if (on && !ret)
		ret = guest_mem_dirty_log_start(&vm->mem);
	if (!on)
		guest_mem_dirty_log_stop(&vm->mem);
	m->logging = on && !ret;
	return ret;
}

static int bitmaps_alloc(struct migration *m)
{
	struct guest_mem *gm = &m->vm->mem;

	for (unsigned i = 0; i < gm->nr; i++) {
		m->words[i] = guest_mem_dirty_log_words(gm, i);
		m->bits[i] = calloc(m->words[i] ? m->words[i] : 1, sizeof(uint64_t));
		m->dev_bits[i] = calloc(m->words[i] ? m->words[i] : 1, sizeof(uint64_t));
		if (!m->bits[i] || !m->dev_bits[i])
			return -ENOMEM;
	}
	return 0;
}

static void bitmaps_free(struct migration *m)
{
	for (unsigned i = 0; i < GM_MAX_REGIONS; i++) {
		free(m->bits[i]);
		free(m->dev_bits[i]);
		m->bits[i] = m->dev_bits[i] = NULL;
	}
}

/* KVM's bits and the devices' OR'ed into m->bits (pages not yet sent stay
 * set: send_pass clears what it sends); the number of dirty pages. */
static long sync_dirty(struct migration *m)
{
	struct vm *vm = m->vm;
	long total = 0;

	for (unsigned i = 0; i < vm->mem.nr; i++) {
		int ret = kvm_get_dirty_log(vm->kvm, vm->mem_slot_base + i, m->dev_bits[i]);
		long n;

		if (ret)
			return ret;
		for (size_t w = 0; w < m->words[i]; w++)
			m->bits[i][w] |= m->dev_bits[i][w];
		n = guest_mem_dirty_log_fetch(&vm->mem, i, m->dev_bits[i], m->words[i]);
		if (n < 0)
			return n;
		for (size_t w = 0; w < m->words[i]; w++) {
			m->bits[i][w] |= m->dev_bits[i][w];
			total += __builtin_popcountll(m->bits[i][w]);
		}
	}
	pthread_mutex_lock(&m->lock);
	m->dirty_sync_count++;
	m->remaining = (uint64_t)total * MIG_PAGE_SIZE;
	pthread_mutex_unlock(&m->lock);
	return total;
}

/* ---- sending ---- */

static bool page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)p;

	for (size_t i = 0; i < MIG_PAGE_SIZE / 8; i++)
		if (w[i])
			return false;
	return true;
}

static void throttle(struct migration *m, uint64_t sent, int64_t t0)
{
	uint64_t bw = __atomic_load_n(&m->max_bandwidth, __ATOMIC_RELAXED);
	int64_t due;

	if (!bw)
		return;
	due = t0 + (int64_t)(sent * 1000 / bw);
	while (monotonic_ms() < due && !cancelled(m))
		usleep(1000);
}

/* The stream is written through a buffer: one send per MIG_OUT_BUF bytes,
 * not two per page. */
static int out_flush(struct migration *m)
{
	int ret = m->out_len ? write_all(m->fd, m->out, m->out_len) : 0;

	m->out_len = 0;
	return ret;
}

static int out_put(struct migration *m, const void *p, size_t n)
{
	int ret;

	if (m->out_len + n > MIG_OUT_BUF && (ret = out_flush(m)))
		return ret;
	if (n > MIG_OUT_BUF)
		return write_all(m->fd, p, n);
	memcpy(m->out + m->out_len, p, n);
	m->out_len += n;
	return 0;
}

/* Per-page counters: relaxed atomics, no lock on the page path (QMP reads
 * them with atomic loads). */
static void count_page(struct migration *m, uint64_t bytes, bool zero)
{
	__atomic_add_fetch(&m->transferred, bytes, __ATOMIC_RELAXED);
	__atomic_add_fetch(zero ? &m->zero_pages : &m->normal_pages, 1, __ATOMIC_RELAXED);
}

/* One page; zero pages go as ZERO records (skip_zero: not at all). */
static int send_page(struct migration *m, uint64_t gpa, const uint8_t *hva, bool skip_zero)
{
	uint8_t *slot;
	int ret;

	if (m->out_len + 8 + MIG_PAGE_SIZE > MIG_OUT_BUF && (ret = out_flush(m)))
		return ret;
	slot = m->out + m->out_len;
	/* Racy reads are fine: a page written meanwhile is dirty again. Most
	 * pages are zero: look before copying. */
	if (page_is_zero(hva)) {
		count_page(m, skip_zero ? 0 : 8, true);
		if (skip_zero)
			return 0;
		wr64(slot, gpa | MIG_REC_ZERO);
		m->out_len += 8;
		return 0;
	}
	memcpy(slot + 8, hva, MIG_PAGE_SIZE);
	wr64(slot, gpa | MIG_REC_PAGE);
	m->out_len += 8 + MIG_PAGE_SIZE;
	count_page(m, 8 + MIG_PAGE_SIZE, false);
	return 0;
}

/* all: every page (the first pass, zero pages skipped); else the dirty ones. */
static int send_pass(struct migration *m, bool all)
{
	struct guest_mem *gm = &m->vm->mem;
	uint64_t sent0 = m->transferred;
	int64_t t0 = monotonic_ms();
	unsigned batch = 0;

	for (unsigned i = 0; i < gm->nr; i++) {
		const struct gm_region *r = &gm->regions[i];
		uint64_t pages = r->size / MIG_PAGE_SIZE;

		for (uint64_t p = 0; p < pages; p++) {
			int ret;

			if (!all) {
				if (!(m->bits[i][p / 64] & (1ULL << (p % 64))))
					continue;
				m->bits[i][p / 64] &= ~(1ULL << (p % 64));
			}
			ret = send_page(m, r->gpa + p * MIG_PAGE_SIZE, r->hva + p * MIG_PAGE_SIZE, all);
			if (ret)
				return ret;
			if (++batch % MIG_BATCH_PAGES == 0) {
				if (cancelled(m))
					return -ECANCELED;
				throttle(m, m->transferred - sent0, t0);
			}
		}
	}
	return out_flush(m);
}

/* ---- the main-loop side: pause and capture, or resume ---- */

static void on_main_request(void *opaque, uint32_t events)
{
	struct migration *m = opaque;
	struct vm *vm = m->vm;
	eventfd_t v;
	int ret = 0;

	(void)events;
	(void)eventfd_read(m->main_efd, &v);
	pthread_mutex_lock(&m->lock);
	enum mig_main_op op = m->op;
	pthread_mutex_unlock(&m->lock);
	if (op == MAIN_PAUSE_CAPTURE) {
		m->was_stopped = vm->qmp_stopped;
		ret = vm_pause(vm);
		if (!ret) {
			m->paused_by_us = true;
			ret = snapshot_capture(vm, &m->image, &m->image_len, &m->disks, m->op_err,
					       sizeof(m->op_err));
		} else {
			snprintf(m->op_err, sizeof(m->op_err), "the VM is neither running nor paused");
		}
	} else if (op == MAIN_RESUME) {
		if (m->paused_by_us) {
			m->paused_by_us = false;
			ret = vm_resume(vm);
		}
	}
	pthread_mutex_lock(&m->lock);
	m->op_ret = ret;
	m->op_done = true;
	m->op = MAIN_NONE;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
}

static int main_call(struct migration *m, enum mig_main_op op)
{
	int ret;

	pthread_mutex_lock(&m->lock);
	if (m->loop_gone) {
		pthread_mutex_unlock(&m->lock);
		return -ECANCELED;
	}
	m->op = op;
	m->op_done = false;
	pthread_mutex_unlock(&m->lock);
	if (eventfd_write(m->main_efd, 1) < 0)
		return -errno;
	pthread_mutex_lock(&m->lock);
	while (!m->op_done)
		pthread_cond_wait(&m->cond, &m->lock);
	ret = m->op_ret;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* ---- the source thread ---- */

static int send_header(struct migration *m)
{
	uint8_t h[MIG_HEADER_SIZE] = { 0 };
	struct vm *vm = m->vm;

	memcpy(h, MIG_MAGIC, 8);
	wr32(h + 8, MIG_VERSION);
	wr32(h + 12, vm->nr_vcpus);
	wr64(h + 16, vm->mem.ram_size);
	wr32(h + 24, (uint32_t)vm->cfg->cpu_model);
	snprintf((char *)h + 32, 32, "%s", EMBER_VERSION);
	return out_put(m, h, sizeof(h));
}

static int send_state(struct migration *m)
{
	uint8_t rec[8 + 4 + 8 + 8 + 4];
	size_t dl = strlen(m->disks);
	uint32_t crc = snap_crc32(snap_crc32(0, m->image, m->image_len), m->disks, dl);
	int ret;

	wr64(rec, MIG_REC_STATE);
	wr32(rec + 8, m->was_stopped ? MIG_STATE_PAUSED : 0);
	wr64(rec + 12, m->image_len);
	wr64(rec + 20, dl);
	wr32(rec + 28, crc);
	if ((ret = out_put(m, rec, sizeof(rec))) ||
	    (ret = out_put(m, m->image, m->image_len)) ||
	    (ret = out_put(m, m->disks, dl)))
		return ret;
	wr64(rec, MIG_REC_END);
	if ((ret = out_put(m, rec, 8)))
		return ret;
	return out_flush(m);
}

static int precopy(struct migration *m, char *err, size_t errlen)
{
	int64_t t_pass;
	int ret;

	if ((ret = bitmaps_alloc(m)) || (ret = log_set(m, true)))
		return errf(err, errlen, ret, "cannot start dirty logging: %s", strerror(-ret));
	if ((ret = send_header(m)))
		return errf(err, errlen, ret, "sending the header: %s", strerror(-ret));
	pthread_mutex_lock(&m->lock);
	m->setup_ms = monotonic_ms() - m->start_ms;
	pthread_mutex_unlock(&m->lock);
	set_status(m, MIG_ACTIVE);

	t_pass = monotonic_ms();
	uint64_t sent = m->transferred;
	ret = send_pass(m, true);
	for (unsigned pass = 1; !ret; pass++) {
		int64_t took = monotonic_ms() - t_pass;
		uint64_t bytes = m->transferred - sent;
		/* bytes per ms, at least 1 */
		uint64_t bw = took > 0 ? bytes / (uint64_t)took : bytes;
		long dirty = sync_dirty(m);

		if (dirty < 0)
			return errf(err, errlen, (int)dirty, "KVM_GET_DIRTY_LOG: %s",
				    strerror((int)-dirty));
		pthread_mutex_lock(&m->lock);
		m->dirty_pages_rate = took > 0 ? (uint64_t)dirty * 1000 / (uint64_t)took : 0;
		m->mbps = took > 0 ? bytes * 8 / 1000 / (uint64_t)took : 0;
		uint64_t limit = m->downtime_limit_ms;
		pthread_mutex_unlock(&m->lock);
		if (!bw)
			bw = 1;
		if ((uint64_t)dirty * MIG_PAGE_SIZE / bw <= limit || pass >= MIG_MAX_PASSES)
			return 0;
		if (cancelled(m))
			return errf(err, errlen, -ECANCELED, "cancelled");
		t_pass = monotonic_ms();
		sent = m->transferred;
		ret = send_pass(m, false);
	}
	return errf(err, errlen, ret, "%s", ret == -ECANCELED ? "cancelled" :
		    ret == -EPIPE || ret == -ECONNRESET ? "the destination went away" :
		    strerror(-ret));
}

static void *mig_thread(void *arg)
{
	struct migration *m = arg;
	struct vm *vm = m->vm;
	char err[384] = "";
	int64_t t_down = 0;
	uint8_t ack = 0;
	long dirty;
	int ret;

	ret = precopy(m, err, sizeof(err));
	if (ret)
		goto fail;
	/* Stop and copy. */
	set_status(m, MIG_DEVICE);
	t_down = monotonic_ms();
	ret = main_call(m, MAIN_PAUSE_CAPTURE);
	if (ret) {
		errf(err, sizeof(err), ret, "cannot stop the VM for the last pass: %s", m->op_err);
		goto fail;
	}
	dirty = sync_dirty(m);
	if (dirty < 0) {
		ret = errf(err, sizeof(err), (int)dirty, "KVM_GET_DIRTY_LOG: %s",
			   strerror((int)-dirty));
		goto fail;
	}
	if ((ret = send_pass(m, false)) || (ret = send_state(m))) {
		errf(err, sizeof(err), ret, "sending the last pass and the state: %s",
		     ret == -EPIPE || ret == -ECONNRESET ? "the destination went away" :
		     strerror(-ret));
		goto fail;
	}
	set_timeouts(m->fd, MIG_ACK_TIMEOUT_S);
	ret = read_all(m->fd, &ack, 1);
	if (ret || ack != 'A') {
		ret = ret ? ret : -EPROTO;
		errf(err, sizeof(err), ret, "the destination did not take the VM (%s)",
		     ack == 'N' ? "it refused the stream; see its log" :
		     ret == -ETIMEDOUT ? "no answer" : "it went away");
		goto fail;
	}
	pthread_mutex_lock(&m->lock);
	m->downtime_ms = monotonic_ms() - t_down;
	m->total_ms = monotonic_ms() - m->start_ms;
	m->remaining = 0;
	pthread_mutex_unlock(&m->lock);
	log_info("migration to %s completed: %llu MiB sent, %llu passes, downtime %lld ms, "
		 "total %lld ms", m->uri, (unsigned long long)(m->transferred >> 20),
		 (unsigned long long)m->dirty_sync_count, (long long)m->downtime_ms,
		 (long long)m->total_ms);
	set_status(m, MIG_COMPLETED);
	/* The guest runs on the destination now: never here again. QMP clients
	 * get a moment to see "completed" (the event, or query-migrate) before
	 * the socket goes; the VM stays paused meanwhile. */
	usleep(500 * 1000);
	vm_request_quit(vm, "migrated to another Ember");
	goto out;

fail:
	if (m->logging)
		log_set(m, false);
	(void)main_call(m, MAIN_RESUME);
	pthread_mutex_lock(&m->lock);
	snprintf(m->error, sizeof(m->error), "%s", err);
	m->total_ms = monotonic_ms() - m->start_ms;
	pthread_mutex_unlock(&m->lock);
	if (cancelled(m)) {
		log_info("migration to %s cancelled; the VM carries on here", m->uri);
		set_status(m, MIG_CANCELLED);
	} else {
		log_err("migration to %s failed: %s; the VM carries on here", m->uri, err);
		set_status(m, MIG_FAILED);
	}
out:
	free(m->image);
	free(m->disks);
	m->image = NULL;
	m->disks = NULL;
	bitmaps_free(m);
	close(m->fd);
	m->fd = -1;
	return NULL;
}

/* Devices whose rings the kernel or another process serves write guest
 * memory where no dirty log sees it (vhost has its own log, not wired up
 * yet): refuse rather than hand over a guest with stale pages. */
static const char *migration_blocker(const struct vm_config *cfg)
{
	for (unsigned i = 0; i < cfg->nr_devices; i++) {
		const struct device_spec *d = &cfg->devices[i];
		const char *a = d->args ? d->args : "";

		if (!strcmp(d->type, "vsock") && !strstr(a, "uds="))
			return "virtio-vsock on vhost-vsock (the kernel writes guest memory)";
		if (!strcmp(d->type, "net") &&
		    (strstr(a, "vhost=on") || strstr(a, "vhost=auto") || strstr(a, "vhostfds=")))
			return "virtio-net with vhost (the kernel writes guest memory)";
		if (!strncmp(d->type, "vhost-user", 10))
			return "a vhost-user device (its backend writes guest memory)";
	}
	return NULL;
}

int migration_start(struct vm *vm, const char *uri, char *err, size_t errlen)
{
	const char *blocker = migration_blocker(vm->cfg);
	struct migration *m = mig_get(vm);
	int fd, ret;

	if (!m)
		return errf(err, errlen, -ENOMEM, "out of memory");
	if (blocker)
		return errf(err, errlen, -EOPNOTSUPP, "cannot migrate a VM with %s", blocker);
	pthread_mutex_lock(&m->lock);
	bool busy = m->status == MIG_SETUP || m->status == MIG_ACTIVE ||
		    m->status == MIG_DEVICE || m->status == MIG_CANCELLING ||
		    m->status == MIG_COMPLETED;
	pthread_mutex_unlock(&m->lock);
	if (busy)
		return errf(err, errlen, -EBUSY, "There's a migration process in progress");
	if (m->thread_running) {
		pthread_join(m->thread, NULL);
		m->thread_running = false;
	}
	if (vm->state != VM_STATE_RUNNING && vm->state != VM_STATE_PAUSED)
		return errf(err, errlen, -EBUSY, "the VM is not running");
	if (!m->main_registered) {
		m->main_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (m->main_efd < 0 || evloop_add(vm->loop, m->main_efd, EPOLLIN, on_main_request, m))
			return errf(err, errlen, -EIO, "cannot set up the migration's main-loop hook");
		m->main_registered = true;
	}
	fd = connect_uri(uri, err, errlen);
	if (fd < 0)
		return fd;
	snprintf(m->uri, sizeof(m->uri), "%s", uri);
	pthread_mutex_lock(&m->lock);
	m->fd = fd;
	m->out_len = 0;
	m->error[0] = 0;
	m->ram_total = vm->mem.ram_size;
	m->transferred = m->normal_pages = m->zero_pages = 0;
	m->dirty_sync_count = m->dirty_pages_rate = m->mbps = 0;
	m->remaining = vm->mem.ram_size;
	m->downtime_ms = m->total_ms = m->setup_ms = 0;
	m->start_ms = monotonic_ms();
	m->paused_by_us = false;
	__atomic_store_n(&m->cancel, false, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&m->lock);
	set_status(m, MIG_SETUP);
	ret = pthread_create(&m->thread, NULL, mig_thread, m);
	if (ret) {
		close(fd);
		m->fd = -1;
		set_status(m, MIG_FAILED);
		return errf(err, errlen, -ret, "cannot start the migration thread: %s",
			    strerror(ret));
	}
	m->thread_running = true;
	log_info("migrating to %s", uri);
	return 0;
}

int migration_cancel(struct vm *vm, char *err, size_t errlen)
{
	struct migration *m = vm->migration;

	(void)err;
	(void)errlen;
	if (!m)
		return 0;
	pthread_mutex_lock(&m->lock);
	bool active = m->status == MIG_SETUP || m->status == MIG_ACTIVE || m->status == MIG_DEVICE;
	pthread_mutex_unlock(&m->lock);
	if (!active)
		return 0;	/* QEMU: nothing to cancel is not an error */
	__atomic_store_n(&m->cancel, true, __ATOMIC_RELEASE);
	set_status(m, MIG_CANCELLING);
	/* Unblock a send or the wait for the ACK. */
	if (m->fd >= 0)
		shutdown(m->fd, SHUT_RDWR);
	return 0;
}

int migration_set_parameters(struct vm *vm, json_t *args, char *err, size_t errlen)
{
	struct migration *m = mig_get(vm);
	json_t *dl = json_object_get(args, "downtime-limit"), *bw = json_object_get(args, "max-bandwidth");
	const char *key;
	json_t *v;

	if (!m)
		return errf(err, errlen, -ENOMEM, "out of memory");
	/* QMP's argument spec has refused other keys and non-integers. */
	json_object_foreach(args, key, v) {
		if (json_integer_value(v) < 0)
			return errf(err, errlen, -EINVAL, "Parameter '%s' expects a non-negative "
				    "integer", key);
	}
	if (dl && (json_integer_value(dl) < 1 || json_integer_value(dl) > 2000000))
		return errf(err, errlen, -EINVAL, "Parameter 'downtime-limit' expects a value "
			    "between 1 and 2000000 (ms)");
	pthread_mutex_lock(&m->lock);
	if (dl)
		m->downtime_limit_ms = (uint64_t)json_integer_value(dl);
	if (bw)
		__atomic_store_n(&m->max_bandwidth, (uint64_t)json_integer_value(bw), __ATOMIC_RELAXED);
	pthread_mutex_unlock(&m->lock);
	return 0;
}

json_t *migration_query_parameters(struct vm *vm)
{
	struct migration *m = mig_get(vm);

	if (!m)
		return json_object();
	return json_pack("{s:I, s:I}", "downtime-limit", (json_int_t)m->downtime_limit_ms,
			 "max-bandwidth", (json_int_t)m->max_bandwidth);
}

json_t *migration_query(struct vm *vm)
{
	struct migration *m = vm->migration;
	json_t *o;

	if (!m || m->status == MIG_NONE)
		return json_object();
	pthread_mutex_lock(&m->lock);
	int64_t total = m->status == MIG_SETUP || m->status == MIG_ACTIVE || m->status == MIG_DEVICE ?
				monotonic_ms() - m->start_ms : m->total_ms;
	o = json_pack("{s:s, s:I, s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}",
		      "status", mig_status_names[m->status],
		      "total-time", (json_int_t)total,
		      "setup-time", (json_int_t)m->setup_ms,
		      "ram",
		      "transferred", (json_int_t)__atomic_load_n(&m->transferred, __ATOMIC_RELAXED),
		      "remaining", (json_int_t)m->remaining,
		      "total", (json_int_t)m->ram_total,
		      "duplicate", (json_int_t)__atomic_load_n(&m->zero_pages, __ATOMIC_RELAXED),
		      "normal", (json_int_t)__atomic_load_n(&m->normal_pages, __ATOMIC_RELAXED),
		      "dirty-pages-rate", (json_int_t)m->dirty_pages_rate,
		      "dirty-sync-count", (json_int_t)m->dirty_sync_count,
		      "mbps", (json_int_t)m->mbps);
	if (o && m->status == MIG_COMPLETED)
		json_object_set_new(o, "downtime", json_integer(m->downtime_ms));
	if (o && m->error[0])
		json_object_set_new(o, "error-desc", json_string(m->error));
	pthread_mutex_unlock(&m->lock);
	return o;
}

void migration_destroy(struct vm *vm)
{
	struct migration *m = vm->migration;

	if (!m)
		return;
	if (m->thread_running) {
		__atomic_store_n(&m->cancel, true, __ATOMIC_RELEASE);
		if (m->fd >= 0)
			shutdown(m->fd, SHUT_RDWR);
		/* A thread waiting for the main loop: the loop is gone; answer it. */
		pthread_mutex_lock(&m->lock);
		m->loop_gone = true;
		m->op_done = true;
		m->op_ret = -ECANCELED;
		pthread_cond_broadcast(&m->cond);
		pthread_mutex_unlock(&m->lock);
		pthread_join(m->thread, NULL);
	}
	if (m->main_registered && vm->loop)
		evloop_del(vm->loop, m->main_efd);
	if (m->main_efd >= 0)
		close(m->main_efd);
	bitmaps_free(m);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->cond);
	free(m);
	vm->migration = NULL;
}

/* ---- the destination ---- */

int migration_receive(const struct mig_expect *want, struct guest_mem *gm, int fd,
		      mig_state_fn on_state, void *opaque, char *err, size_t errlen)
{
	uint8_t h[MIG_HEADER_SIZE];
	uint8_t *image = NULL;
	char *disks = NULL;
	bool have_state = false;
	int ret;

	if ((ret = read_all(fd, h, sizeof(h))))
		return errf(err, errlen, ret, "migration stream: no header (%s)",
			    ret == -EPIPE ? "the source closed the connection" : strerror(-ret));
	if (memcmp(h, MIG_MAGIC, 8))
		return errf(err, errlen, -EPROTO, "migration stream: not an Ember migration stream");
	if (rd32(h + 8) != MIG_VERSION)
		return errf(err, errlen, -EPROTO, "migration stream: version %u, this Ember reads %u",
			    rd32(h + 8), MIG_VERSION);
	if (rd32(h + 12) != want->cpus)
		return errf(err, errlen, -EINVAL, "migration: the source has %u vCPUs, this VM %u "
			    "(--cpus must match)", rd32(h + 12), want->cpus);
	if (rd64(h + 16) != want->memory)
		return errf(err, errlen, -EINVAL, "migration: the source has %llu MiB of RAM, this "
			    "VM %llu MiB (--memory must match)",
			    (unsigned long long)(rd64(h + 16) >> 20),
			    (unsigned long long)(want->memory >> 20));
	if (rd32(h + 24) != want->cpu_model)
		return errf(err, errlen, -EINVAL, "migration: the source has another --cpu-model");

	for (;;) {
		uint8_t tag_raw[8];
		uint64_t tag, gpa;
		uint8_t *page;

		if ((ret = read_all(fd, tag_raw, sizeof(tag_raw))))
			goto io_err;
		tag = rd64(tag_raw);
		gpa = tag & ~(uint64_t)(MIG_PAGE_SIZE - 1);
		switch (tag & (MIG_PAGE_SIZE - 1)) {
		case MIG_REC_PAGE:
		case MIG_REC_ZERO:
			page = gm_ptr(gm, gpa, MIG_PAGE_SIZE);
			if (!page) {
				ret = errf(err, errlen, -ERANGE, "migration stream: page 0x%llx is "
					   "not guest RAM", (unsigned long long)gpa);
				goto out;
			}
			if ((tag & (MIG_PAGE_SIZE - 1)) == MIG_REC_ZERO)
				memset(page, 0, MIG_PAGE_SIZE);
			else if ((ret = read_all(fd, page, MIG_PAGE_SIZE)))
				goto io_err;
			break;
		case MIG_REC_STATE: {
			uint8_t rec[24];
			uint64_t ilen, dlen;

			if (gpa || have_state) {
				ret = errf(err, errlen, -EPROTO, "migration stream: a bad or second "
					   "state record");
				goto out;
			}
			if ((ret = read_all(fd, rec, sizeof(rec))))
				goto io_err;
			ilen = rd64(rec + 4);
			dlen = rd64(rec + 12);
			if (ilen == 0 || ilen > MIG_MAX_STATE_BYTES || dlen > MIG_MAX_DISKS_BYTES) {
				ret = errf(err, errlen, -EFBIG, "migration stream: state of %llu "
					   "and disk list of %llu bytes (limits %u and %u)",
					   (unsigned long long)ilen, (unsigned long long)dlen,
					   MIG_MAX_STATE_BYTES, MIG_MAX_DISKS_BYTES);
				goto out;
			}
			image = malloc(ilen);
			disks = malloc(dlen + 1);
			if (!image || !disks) {
				ret = errf(err, errlen, -ENOMEM, "out of memory");
				goto out;
			}
			if ((ret = read_all(fd, image, ilen)) || (ret = read_all(fd, disks, dlen)))
				goto io_err;
			disks[dlen] = 0;
			if (snap_crc32(snap_crc32(0, image, ilen), disks, dlen) != rd32(rec + 20)) {
				ret = errf(err, errlen, -EBADMSG, "migration stream: the state's "
					   "checksum is wrong (corrupted in transit)");
				goto out;
			}
			ret = on_state(opaque, rd32(rec), image, ilen, disks, dlen, err, errlen);
			if (ret)
				goto out;
			have_state = true;
			break;
		}
		case MIG_REC_END:
			if (!have_state) {
				ret = errf(err, errlen, -EPROTO, "migration stream: ended without "
					   "the machine state");
				goto out;
			}
			ret = 0;
			goto out;
		default:
			ret = errf(err, errlen, -EPROTO, "migration stream: unknown record type %llu",
				   (unsigned long long)(tag & (MIG_PAGE_SIZE - 1)));
			goto out;
		}
	}
io_err:
	errf(err, errlen, ret, "migration stream: %s", ret == -EPIPE ?
	     "truncated (the source closed the connection)" : ret == -ETIMEDOUT ?
	     "the source stopped sending" : strerror(-ret));
out:
	free(image);
	free(disks);
	return ret;
}

struct incoming {
	struct vm *vm;
	bool paused;
};

static int incoming_state(void *opaque, uint32_t flags, const uint8_t *image, size_t len,
			  const char *disks, size_t disks_len, char *err, size_t errlen)
{
	struct incoming *in = opaque;

	in->paused = flags & MIG_STATE_PAUSED;
	/* Loaded paused: the source must hear our ACK before we run. */
	return snapshot_restore_from_image(in->vm, image, len, disks, disks_len, true, err, errlen);
}

static int listen_uri(const char *uri, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int fd, one = 1, ret;

	ret = parse_uri(uri, &ss, &sl, err, errlen);
	if (ret)
		return ret;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return errf(err, errlen, -errno, "--incoming: socket: %s", strerror(errno));
	if (ss.ss_family == AF_UNIX) {
		struct stat st;
		const char *path = ((struct sockaddr_un *)&ss)->sun_path;

		/* A stale socket from an earlier run, never any other file. */
		if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
	} else {
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 1) < 0) {
		ret = -errno;
		close(fd);
		return errf(err, errlen, ret, "--incoming %s: %s", uri, strerror(-ret));
	}
	return fd;
}

int migration_incoming(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	struct mig_expect want = { .cpus = vm->nr_vcpus, .memory = vm->mem.ram_size,
				   .cpu_model = (uint32_t)cfg->cpu_model };
	struct incoming in = { .vm = vm };
	char err[512] = "";
	int64_t t0;
	int lfd, fd, ret;

	lfd = listen_uri(cfg->incoming, err, sizeof(err));
	if (lfd < 0) {
		log_err("%s", err);
		return lfd;
	}
	log_info("waiting for a migration on %s", cfg->incoming);
	do {
		fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	} while (fd < 0 && errno == EINTR);
	ret = fd < 0 ? -errno : 0;
	close(lfd);
	if (!strncmp(cfg->incoming, "unix:", 5))
		unlink(cfg->incoming + 5);
	if (ret) {
		log_err("--incoming %s: accept: %s", cfg->incoming, strerror(-ret));
		return ret;
	}
	t0 = monotonic_ms();
	set_timeouts(fd, MIG_IO_TIMEOUT_S);
	/* Only the source's memory: whatever set-up wrote here (ACPI tables)
	 * goes, and pages the source never sends read as zeros. */
	(void)gm_zero_all(&vm->mem);
	ret = migration_receive(&want, &vm->mem, fd, incoming_state, &in, err, sizeof(err));
	if (!ret) {
		ret = snapshot_restore_start(vm);	/* logs why not */
		if (ret)
			snprintf(err, sizeof(err), "the received state did not load");
	}
	if (ret) {
		(void)write_all(fd, "N", 1);
		close(fd);
		log_err("%s", err);
		return ret;
	}
	ret = write_all(fd, "A", 1);
	close(fd);
	if (ret) {
		log_err("migration: the source went away before the handover; not running this copy");
		return ret;
	}
	log_info("migration received in %lld ms; %s", (long long)(monotonic_ms() - t0),
		 in.paused ? "paused, as the source was, until cont" : "running");
	vm_emit_event(vm, "MIGRATION", json_pack("{s:s}", "status", "completed"));
	if (!in.paused) {
		vm->qmp_stopped = false;
		ret = vm_resume(vm);
	}
	return ret;
}
