/* The device worker thread (devices/worker.h): fd handlers on the worker's
 * own thread, synchronous nesting pause with quiesce/resumed, stop, stale
 * events after a removal, and a multi-threaded pause/resume/stop stress. */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "devices/worker.h"
#include "helpers/ck_run.h"

struct fixture {
	struct dev_worker *w;
	int efd[2];
	unsigned calls[2];		/* handler calls per fd (atomic) */
	unsigned quiesces, finals, resumes;	/* atomic */
	int in_handler;			/* atomic */
	int wrong_thread;		/* a handler ran off the worker (atomic) */
	int after_final;		/* a handler ran after quiesce(final) */
	bool del_other;			/* handler 0 removes fd 1 */
	bool self_pause;		/* handler 0 pauses and resumes its own worker */
	char thread_name[16];		/* as the first handler saw it */
};

static struct fixture fx;

#define LD(x)		__atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define INC(x)		__atomic_fetch_add(&(x), 1, __ATOMIC_SEQ_CST)

static void on_fd(struct fixture *f, unsigned i)
{
	eventfd_t v;

	INC(f->in_handler);
	if (!dev_worker_is_self(f->w))
		INC(f->wrong_thread);
	if (LD(f->finals))
		INC(f->after_final);
	(void)eventfd_read(f->efd[i], &v);
	if (!f->thread_name[0])
		pthread_getname_np(pthread_self(), f->thread_name, sizeof(f->thread_name));
	INC(f->calls[i]);
	if (i == 0 && f->del_other) {
		ck_assert_int_eq(dev_worker_del_fd(f->w, f->efd[1]), 0);
		f->del_other = false;
	}
	if (i == 0 && f->self_pause) {
		dev_worker_pause(f->w);	/* must not wait for itself */
		dev_worker_resume(f->w);
	}
	__atomic_fetch_sub(&f->in_handler, 1, __ATOMIC_SEQ_CST);
}

static void on_fd0(void *opaque, uint32_t events)
{
	(void)events;
	on_fd(opaque, 0);
}

static void on_fd1(void *opaque, uint32_t events)
{
	(void)events;
	on_fd(opaque, 1);
}

static void quiesce(void *opaque, bool final)
{
	struct fixture *f = opaque;

	ck_assert(dev_worker_is_self(f->w));
	ck_assert_int_eq(LD(f->in_handler), 0);
	INC(f->quiesces);
	if (final)
		INC(f->finals);
}

static void resumed(void *opaque)
{
	struct fixture *f = opaque;

	ck_assert(dev_worker_is_self(f->w));
	INC(f->resumes);
}

static const struct dev_worker_ops ops = { .quiesce = quiesce, .resumed = resumed };

static void setup(void)
{
	memset(&fx, 0, sizeof(fx));
	for (unsigned i = 0; i < 2; i++) {
		fx.efd[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		ck_assert_int_ge(fx.efd[i], 0);
	}
	ck_assert_int_eq(dev_worker_create(&fx.w, "test-worker-long-name", &ops, &fx), 0);
	ck_assert_int_eq(dev_worker_add_fd(fx.w, fx.efd[0], 0, on_fd0, &fx), 0);
	ck_assert_int_eq(dev_worker_add_fd(fx.w, fx.efd[1], 0, on_fd1, &fx), 0);
}

static void teardown(void)
{
	dev_worker_destroy(fx.w);
	fx.w = NULL;
	for (unsigned i = 0; i < 2; i++)
		if (fx.efd[i] >= 0)
			close(fx.efd[i]);
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

/* Wait (up to 5 s) until *p reaches want. */
static bool wait_for(unsigned *p, unsigned want)
{
	for (unsigned i = 0; i < 5000; i++) {
		if (LD(*p) >= want)
			return true;
		sleep_ms(1);
	}
	return false;
}

static void kick(unsigned i)
{
	ck_assert_int_eq(eventfd_write(fx.efd[i], 1), 0);
}

START_TEST(test_handlers_run_on_worker)
{
	ck_assert(!dev_worker_is_self(fx.w));
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	ck_assert_int_eq(dev_worker_start(fx.w), 0);	/* already running */
	kick(0);
	ck_assert(wait_for(&fx.calls[0], 1));
	kick(1);
	ck_assert(wait_for(&fx.calls[1], 1));
	ck_assert_uint_eq(LD(fx.wrong_thread), 0);
	ck_assert(!dev_worker_is_self(fx.w));
	/* Removed: no more calls for it. */
	ck_assert_int_eq(dev_worker_del_fd(fx.w, fx.efd[1]), 0);
	kick(1);
	sleep_ms(20);
	ck_assert_uint_eq(LD(fx.calls[1]), 1);
	ck_assert_int_eq(dev_worker_del_fd(fx.w, fx.efd[1]), -ENOENT);
	dev_worker_stop(fx.w);
	ck_assert_uint_eq(LD(fx.finals), 1);
	ck_assert_uint_eq(LD(fx.quiesces), 1);
	dev_worker_stop(fx.w);	/* idempotent */
	ck_assert_uint_eq(LD(fx.finals), 1);
}
END_TEST

START_TEST(test_thread_name)
{
	/* The thread names itself (15 characters kept); read it from a handler. */
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	kick(0);
	ck_assert(wait_for(&fx.calls[0], 1));
	ck_assert_str_eq(fx.thread_name, "test-worker-lon");
}
END_TEST

START_TEST(test_pause_is_synchronous)
{
	unsigned before;

	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	dev_worker_pause(fx.w);
	ck_assert_uint_eq(LD(fx.quiesces), 1);
	ck_assert_uint_eq(LD(fx.finals), 0);
	before = LD(fx.calls[0]);
	kick(0);
	sleep_ms(30);
	ck_assert_uint_eq(LD(fx.calls[0]), before);	/* parked: kicks wait */
	ck_assert_uint_eq(LD(fx.resumes), 0);
	dev_worker_resume(fx.w);
	ck_assert(wait_for(&fx.resumes, 1));
	ck_assert(wait_for(&fx.calls[0], before + 1));	/* the kick that waited */
}
END_TEST

START_TEST(test_pause_nests)
{
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	dev_worker_pause(fx.w);
	dev_worker_pause(fx.w);
	ck_assert_uint_eq(LD(fx.quiesces), 1);	/* one park for both */
	dev_worker_resume(fx.w);
	kick(0);
	sleep_ms(30);
	ck_assert_uint_eq(LD(fx.calls[0]), 0);	/* one pause still held */
	ck_assert_uint_eq(LD(fx.resumes), 0);
	dev_worker_resume(fx.w);
	ck_assert(wait_for(&fx.calls[0], 1));
	ck_assert(wait_for(&fx.resumes, 1));
	dev_worker_resume(fx.w);	/* unbalanced: ignored */
	dev_worker_pause(fx.w);
	ck_assert_uint_eq(LD(fx.quiesces), 2);
	dev_worker_resume(fx.w);
}
END_TEST

START_TEST(test_pause_before_start)
{
	dev_worker_pause(fx.w);	/* not running: only counted */
	kick(0);
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	ck_assert(wait_for(&fx.quiesces, 1));	/* parks at once */
	sleep_ms(20);
	ck_assert_uint_eq(LD(fx.calls[0]), 0);
	dev_worker_resume(fx.w);
	ck_assert(wait_for(&fx.calls[0], 1));
}
END_TEST

START_TEST(test_stop_while_paused)
{
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	dev_worker_pause(fx.w);
	dev_worker_stop(fx.w);
	ck_assert_uint_eq(LD(fx.finals), 1);
	ck_assert_uint_eq(LD(fx.resumes), 0);	/* a stop is not a resume */
	dev_worker_pause(fx.w);	/* stopped: returns at once */
	dev_worker_resume(fx.w);
	dev_worker_resume(fx.w);
	/* It can be started again. */
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	__atomic_store_n(&fx.finals, 0, __ATOMIC_SEQ_CST);
	kick(0);
	ck_assert(wait_for(&fx.calls[0], 1));
}
END_TEST

START_TEST(test_stale_event_dropped)
{
	unsigned before;

	/* Both fds ready before the thread runs, so one epoll_wait returns
	 * both; whichever handler 0 runs, fd 1's event must then be dropped
	 * (or never seen). */
	fx.del_other = true;
	kick(1);
	kick(0);
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	ck_assert(wait_for(&fx.calls[0], 1));
	dev_worker_stop(fx.w);
	/* epoll returns fds in readiness order: fd 1 first means it ran
	 * before fd 0 removed it, which is fine; otherwise never. */
	ck_assert_uint_le(LD(fx.calls[1]), 1);
	/* A new fd reusing the slot is a different subscriber. */
	ck_assert_int_eq(dev_worker_add_fd(fx.w, fx.efd[1], 0, on_fd1, &fx), 0);
	before = LD(fx.calls[1]);
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	kick(1);
	ck_assert(wait_for(&fx.calls[1], before + 1));
}
END_TEST

START_TEST(test_self_pause_does_not_deadlock)
{
	fx.self_pause = true;
	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	kick(0);
	ck_assert(wait_for(&fx.calls[0], 1));
	kick(0);
	ck_assert(wait_for(&fx.calls[0], 2));
}
END_TEST

START_TEST(test_create_errors)
{
	struct dev_worker *w = (void *)1;

	ck_assert_int_eq(dev_worker_create(&w, NULL, NULL, NULL), 0);	/* ops optional */
	ck_assert_int_eq(dev_worker_add_fd(w, -1, 0, on_fd0, &fx), -EINVAL);
	ck_assert_int_eq(dev_worker_add_fd(w, fx.efd[0], 0, NULL, &fx), -EINVAL);
	ck_assert_int_eq(dev_worker_add_fd(w, 12345, 0, on_fd0, &fx), -EBADF);
	ck_assert_int_eq(dev_worker_start(w), 0);
	dev_worker_pause(w);
	dev_worker_resume(w);
	dev_worker_destroy(w);	/* stops it */
	dev_worker_destroy(NULL);
	dev_worker_stop(NULL);
}
END_TEST

/* ---- Stress: pausers, a kicker, a stopper ---- */

#define STRESS_MS	1500
#define PAUSERS		3

static int stress_stop;
static int stress_bad;
static int held;	/* pauses held right now (atomic) */

static bool stress_running(void)
{
	return !LD(stress_stop);
}

static void *pauser(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;

	while (stress_running()) {
		unsigned depth = 1 + rand_r(&seed) % 3;

		for (unsigned i = 0; i < depth; i++) {
			dev_worker_pause(fx.w);
			INC(held);
		}
		/* Paused: nothing runs on the worker. */
		if (LD(fx.in_handler))
			INC(stress_bad);
		for (unsigned i = 0; i < 3; i++) {
			unsigned c = LD(fx.calls[0]);

			sched_yield();
			if (LD(fx.calls[0]) != c)
				INC(stress_bad);
		}
		for (unsigned i = 0; i < depth; i++) {
			__atomic_fetch_sub(&held, 1, __ATOMIC_SEQ_CST);
			dev_worker_resume(fx.w);
		}
		if (rand_r(&seed) % 4 == 0)
			sched_yield();
	}
	return NULL;
}

static void *kicker(void *arg)
{
	(void)arg;
	while (stress_running()) {
		(void)eventfd_write(fx.efd[0], 1);
		(void)eventfd_write(fx.efd[1], 1);
		sched_yield();
	}
	return NULL;
}

START_TEST(test_stress_pause_resume_stop)
{
	pthread_t p[PAUSERS], k;
	struct timespec t0, t;

	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	ck_assert_int_eq(pthread_create(&k, NULL, kicker, NULL), 0);
	for (unsigned i = 0; i < PAUSERS; i++)
		ck_assert_int_eq(pthread_create(&p[i], NULL, pauser, (void *)(uintptr_t)(i + 1)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		unsigned c;

		sleep_ms(50);
		/* The main thread pauses too, as a VM stop would. */
		dev_worker_pause(fx.w);
		c = LD(fx.calls[1]);
		sleep_ms(2);
		ck_assert_uint_eq(LD(fx.calls[1]), c);
		dev_worker_resume(fx.w);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < STRESS_MS);
	/* Stop while the pausers are still at it: they must all return. */
	dev_worker_stop(fx.w);
	__atomic_store_n(&stress_stop, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < PAUSERS; i++)
		pthread_join(p[i], NULL);
	pthread_join(k, NULL);
	ck_assert_uint_eq(LD(stress_bad), 0);
	ck_assert_uint_eq(LD(fx.wrong_thread), 0);
	ck_assert_uint_eq(LD(fx.after_final), 0);
	ck_assert_uint_eq(LD(fx.finals), 1);
	ck_assert_uint_gt(LD(fx.calls[0]), 0);
	ck_assert_uint_gt(LD(fx.quiesces), 1);
	ck_assert_int_eq(LD(held), 0);
}
END_TEST

static void *stopper(void *arg)
{
	(void)arg;
	dev_worker_stop(fx.w);
	return NULL;
}

START_TEST(test_concurrent_stops)
{
	pthread_t s[3];

	ck_assert_int_eq(dev_worker_start(fx.w), 0);
	for (unsigned i = 0; i < 3; i++)
		ck_assert_int_eq(pthread_create(&s[i], NULL, stopper, NULL), 0);
	for (unsigned i = 0; i < 3; i++)
		pthread_join(s[i], NULL);
	dev_worker_stop(fx.w);
	ck_assert_uint_eq(LD(fx.finals), 1);
}
END_TEST

static Suite *worker_suite(void)
{
	Suite *s = suite_create("worker");
	TCase *tc = tcase_create("worker");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_handlers_run_on_worker);
	tcase_add_test(tc, test_thread_name);
	tcase_add_test(tc, test_pause_is_synchronous);
	tcase_add_test(tc, test_pause_nests);
	tcase_add_test(tc, test_pause_before_start);
	tcase_add_test(tc, test_stop_while_paused);
	tcase_add_test(tc, test_stale_event_dropped);
	tcase_add_test(tc, test_self_pause_does_not_deadlock);
	tcase_add_test(tc, test_create_errors);
	tcase_add_test(tc, test_stress_pause_resume_stop);
	tcase_add_test(tc, test_concurrent_stops);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return ck_run_suite(worker_suite());
}
