/* The VM side of the control plane: the QMP backend over struct vm, the
 * events the machine raises, systemd notifications and graceful shutdown. */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "vmm/control/qmp.h"
#include "base/evloop.h"
#include "base/log.h"
#include "vmm/migration/migration.h"
#include "vmm/notify.h"
#include "vmm/snapshot/snapshot.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

static enum qmp_run_state backend_query_status(void *opaque)
{
	struct vm *vm = opaque;

	if (vm->guest_panicked)
		return QMP_RUN_GUEST_PANICKED;
	if (vm->error_stopped)
		return QMP_RUN_INTERNAL_ERROR;
	switch (__atomic_load_n(&vm->state, __ATOMIC_ACQUIRE)) {
	case VM_STATE_CREATED:
		return QMP_RUN_PRELAUNCH;
	case VM_STATE_RUNNING:
		return QMP_RUN_RUNNING;
	case VM_STATE_PAUSED:
		return QMP_RUN_PAUSED;
	default:
		return QMP_RUN_SHUTDOWN;
	}
}

/* QMP stop holds one pause (vm_pause nests) until cont releases it, so a
 * snapshot's pause in between cannot resume a stopped VM, nor cont one
 * being saved. */
static int backend_stop(void *opaque, char *err, size_t errlen)
{
	struct vm *vm = opaque;
	int ret;

	if (vm->qmp_stopped)
		return 1;
	ret = vm_pause(vm);
	if (ret) {
		snprintf(err, errlen, "cannot pause the VM in its current state");
		return ret;
	}
	vm->qmp_stopped = true;
	return 0;
}

static int backend_cont(void *opaque, char *err, size_t errlen)
{
	struct vm *vm = opaque;
	int ret;

	if (!vm->qmp_stopped)
		return 1;
	ret = vm_resume(vm);
	if (ret) {
		snprintf(err, errlen, "cannot resume the VM in its current state");
		return ret;
	}
	vm->qmp_stopped = false;
	return 0;
}

static int backend_powerdown(void *opaque, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	vm_devices_power_button(opaque);
	return 0;
}

/* A stopped VM stays stopped: vm_reset releases only its own pause. */
static int backend_reset(void *opaque, char *err, size_t errlen)
{
	int ret = vm_reset(opaque);

	if (ret) {
		snprintf(err, errlen, "reset failed: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

static int backend_quit(void *opaque, char *err, size_t errlen)
{
	(void)err;
	(void)errlen;
	vm_request_quit(opaque, "QMP quit");
	return 0;
}

static int backend_cpu_info(void *opaque, unsigned index, struct qmp_cpu_info *out)
{
	struct vm *vm = opaque;

	if (index >= vm->nr_vcpus)
		return -ENOENT;
	*out = (struct qmp_cpu_info){
		.index = index,
		.thread_id = vm->vcpus[index]->tid,
		.socket_id = 0,
		.core_id = index,
		.thread_in_core = 0,
	};
	return 0;
}

/* Bumped by vCPU threads with relaxed atomics. */
static json_int_t bus_unhandled(const struct bus *bus)
{
	return (json_int_t)(__atomic_load_n(&bus->unhandled_reads, __ATOMIC_RELAXED) +
			    __atomic_load_n(&bus->unhandled_writes, __ATOMIC_RELAXED));
}

static void add_bus_counts(const struct bus_range *r, void *arg)
{
	json_t *devs = arg;
	json_t *cur = json_object_get(devs, r->name);
	/* Counted by vCPU threads with relaxed atomics. */
	json_int_t n = (json_int_t)(__atomic_load_n(&r->reads, __ATOMIC_RELAXED) +
				     __atomic_load_n(&r->writes, __ATOMIC_RELAXED));

	if (cur)
		n += json_integer_value(cur);
	json_object_set_new(devs, r->name, json_integer(n));
}

/* x-query-exits "disks": each disk's counters, as the block device
 * reports them (its x-query-disks command); [] without one. */
static json_t *exit_stats_disks(struct vm *vm)
{
	json_t *args = json_object(), *disks = NULL;
	const struct device_qmp_command *cmd;
	char err[256] = "";
	void *state;

	cmd = vm_device_qmp_find(vm, "x-query-disks", &state);
	if (cmd && cmd->fn(state, args, &disks, err, sizeof(err)) == 0 && json_is_array(disks)) {
		json_decref(args);
		return disks;
	}
	json_decref(disks);
	json_decref(args);
	return json_array();
}

static json_t *backend_exit_stats(void *opaque)
{
	static const struct {
		unsigned reason;
		const char *name;
	} names[] = {
		{ KVM_EXIT_IO, "io" }, { KVM_EXIT_MMIO, "mmio" }, { KVM_EXIT_HLT, "hlt" },
		{ KVM_EXIT_SHUTDOWN, "shutdown" }, { KVM_EXIT_INTR, "intr" },
		{ KVM_EXIT_SYSTEM_EVENT, "system-event" },
		{ KVM_EXIT_INTERNAL_ERROR, "internal-error" },
		{ KVM_EXIT_FAIL_ENTRY, "fail-entry" },
	};
	struct vm *vm = opaque;
	json_t *reasons = json_object(), *devs = json_object(), *cpus = json_array();
	uint64_t total = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		uint64_t n = 0;

		for (unsigned c = 0; c < vm->nr_vcpus; c++)
			n += __atomic_load_n(&vm->vcpus[c]->exits[names[i].reason], __ATOMIC_RELAXED);
		json_object_set_new(reasons, names[i].name, json_integer((json_int_t)n));
	}
	for (unsigned c = 0; c < vm->nr_vcpus; c++) {
		uint64_t n = 0;

		for (unsigned r = 0; r < VCPU_EXIT_COUNTERS; r++)
			n += __atomic_load_n(&vm->vcpus[c]->exits[r], __ATOMIC_RELAXED);
		/* KVM_RUN returning EINTR (kicks) are exits to userspace too. */
		n += __atomic_load_n(&vm->vcpus[c]->intr_exits, __ATOMIC_RELAXED);
		total += n;
		json_array_append_new(cpus, json_pack("{s:i, s:I}", "cpu-index", (int)c,
						      "exits", (json_int_t)n));
	}
	bus_for_each(&vm->pio_bus, add_bus_counts, devs);
	bus_for_each(&vm->mmio_bus, add_bus_counts, devs);
	json_object_set_new(devs, "unhandled-pio", json_integer(bus_unhandled(&vm->pio_bus)));
	json_object_set_new(devs, "unhandled-mmio", json_integer(bus_unhandled(&vm->mmio_bus)));
	return json_pack("{s:I, s:o, s:o, s:o, s:o}", "total", (json_int_t)total, "reasons", reasons,
			 "devices", devs, "cpus", cpus, "disks", exit_stats_disks(vm));
}

static uint64_t backend_memory_size(void *opaque)
{
	return ((struct vm *)opaque)->mem.ram_size;
}

/* A negative return from a device becomes a GenericError with its reason;
 * every command is served on the main loop, as the devices' hooks are. */
static int backend_device_command(void *opaque, const char *name, json_t *args, json_t **ret,
				  char *err, size_t errlen)
{
	const struct device_qmp_command *cmd;
	void *state;
	int r;

	cmd = vm_device_qmp_find(opaque, name, &state);
	if (!cmd)
		return QMP_NO_SUCH_COMMAND;
	*ret = NULL;
	r = cmd->fn(state, args, ret, err, errlen);
	if (r < 0 && !err[0])
		snprintf(err, errlen, "%s: %s", name, strerror(-r));
	return r < 0 ? r : 0;
}

static void backend_device_command_names(void *opaque, json_t *names)
{
	struct vm *vm = opaque;

	for (unsigned i = 0; i < vm->nr_devices; i++)
		for (const struct device_qmp_command *c = vm->devices[i].desc->qmp; c && c->name; c++)
			json_array_append_new(names, json_string(c->name));
}

static int backend_snapshot_save(void *opaque, const char *path, char *err, size_t errlen)
{
	return snapshot_save_cmd(opaque, path, err, errlen);
}

static int backend_migrate(void *opaque, const char *uri, char *err, size_t errlen)
{
	return migration_start(opaque, uri, err, errlen);
}

static int backend_migrate_cancel(void *opaque, char *err, size_t errlen)
{
	return migration_cancel(opaque, err, errlen);
}

static int backend_migrate_set_parameters(void *opaque, json_t *args, char *err, size_t errlen)
{
	return migration_set_parameters(opaque, args, err, errlen);
}

static json_t *backend_query_migrate(void *opaque)
{
	return migration_query(opaque);
}

static json_t *backend_query_migrate_parameters(void *opaque)
{
	return migration_query_parameters(opaque);
}

static const struct qmp_backend_ops vm_qmp_ops = {
	.query_status = backend_query_status,
	.stop = backend_stop,
	.cont = backend_cont,
	.powerdown = backend_powerdown,
	.reset = backend_reset,
	.quit = backend_quit,
	.cpu_info = backend_cpu_info,
	.exit_stats = backend_exit_stats,
	.memory_size = backend_memory_size,
	.device_command = backend_device_command,
	.device_command_names = backend_device_command_names,
	.snapshot_save = backend_snapshot_save,
	.migrate = backend_migrate,
	.migrate_cancel = backend_migrate_cancel,
	.migrate_set_parameters = backend_migrate_set_parameters,
	.query_migrate = backend_query_migrate,
	.query_migrate_parameters = backend_query_migrate_parameters,
};

void vm_emit_event(struct vm *vm, const char *name, json_t *data)
{
	qmp_server_emit_event(vm->qmp, name, data);
}

static void on_watchdog(void *opaque, uint32_t events)
{
	(void)events;
	notify_watchdog_timer_fired(((struct vm *)opaque)->watchdog_fd);
}

static void on_shutdown_timeout(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t n;

	(void)events;
	if (read(vm->shutdown_timer_fd, &n, sizeof(n)) < 0)
		return;
	log_warn("guest did not power off within %u s of the power button; quitting",
		 vm->cfg->shutdown_timeout_s);
	vm_emit_event(vm, "SHUTDOWN", json_pack("{s:b, s:s}", "guest", 0, "reason", "host-signal"));
	vm_request_quit(vm, "shutdown timeout");
}

/* The last resort of a shutdown the host asked for: whatever the guest or a
 * device is doing (a stuck main loop, a backend that never completes), the
 * process ends this many seconds after the deadline thread starts. Data
 * already written is in the host's page cache and survives _exit. */
#define EXIT_DEADLINE_GRACE_S	10
#define EXIT_STATUS_STUCK	4

static atomic_bool exit_deadline_armed;

static void *exit_deadline_thread(void *arg)
{
	struct timespec ts = { .tv_sec = (time_t)(uintptr_t)arg };
	char msg[128];
	int n;

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	n = snprintf(msg, sizeof(msg), "ember: shutdown did not finish within %lu s; exiting now\n",
		     (unsigned long)(uintptr_t)arg);
	if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0)
		n = 0;
	_exit(EXIT_STATUS_STUCK);
	return NULL;
}

void vm_arm_exit_deadline(unsigned seconds)
{
	pthread_attr_t attr;
	pthread_t t;
	sigset_t all, old;

	if (atomic_exchange(&exit_deadline_armed, true))
		return;
	/* No signal may interrupt it; it must not delay anything either. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 64 * 1024);
	if (pthread_create(&t, &attr, exit_deadline_thread,
			   (void *)(uintptr_t)(seconds + EXIT_DEADLINE_GRACE_S)))
		log_warn("cannot start the exit deadline thread");
	else
		pthread_setname_np(t, "exit-deadline");
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
}

void vm_graceful_shutdown(struct vm *vm, const char *cause)
{
	struct itimerspec its = { .it_value.tv_sec = vm->cfg->shutdown_timeout_s };

	if (vm->shutdown_timer_fd >= 0) {
		/* A second request: stop waiting for the guest. */
		vm_request_quit(vm, cause);
		return;
	}
	log_info("%s: pressing the ACPI power button (timeout %u s)", cause,
		 vm->cfg->shutdown_timeout_s);
	vm_arm_exit_deadline(vm->cfg->shutdown_timeout_s);
	notify_stopping();
	if (vm->cfg->shutdown_timeout_s == 0 || vm->state != VM_STATE_RUNNING) {
		vm_request_quit(vm, cause);
		return;
	}
	vm_devices_power_button(vm);
	vm_emit_event(vm, "POWERDOWN", NULL);
	vm->shutdown_timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (vm->shutdown_timer_fd < 0 ||
	    timerfd_settime(vm->shutdown_timer_fd, 0, &its, NULL) < 0 ||
	    evloop_add(vm->loop, vm->shutdown_timer_fd, EPOLLIN, on_shutdown_timeout, vm)) {
		log_err("cannot arm the shutdown timer; quitting now");
		vm_request_quit(vm, cause);
	}
}

int vm_control_start(struct vm *vm)
{
	int listen_fd = vm->cfg->api_sock_fd;
	struct qmp_limits lim;
	int ret;

	vm->shutdown_timer_fd = -1;
	vm->watchdog_fd = -1;
	if (listen_fd < 0 && !vm->cfg->api_sock)
		listen_fd = notify_listen_fd();
	if (vm->cfg->api_sock || listen_fd >= 0) {
		ret = qmp_server_create(&vm->qmp, vm->loop, listen_fd >= 0 ? NULL : vm->cfg->api_sock,
					listen_fd, &vm_qmp_ops, vm);
		if (ret) {
			log_err("--api-sock %s: %s", vm->cfg->api_sock ? vm->cfg->api_sock : "(fd)",
				ret == -EADDRINUSE ? "another process is serving this socket"
				: ret == -EEXIST ? "path exists and is not a socket"
				: strerror(-ret));
			return ret;
		}
		lim.max_clients = vm->cfg->qmp_max_clients;
		lim.handshake_timeout_ms = vm->cfg->qmp_handshake_timeout_s * 1000;
		lim.idle_timeout_ms = vm->cfg->qmp_idle_timeout_s * 1000;
		ret = qmp_server_set_limits(vm->qmp, &lim);
		if (ret) {
			log_err("QMP limits: %s", strerror(-ret));
			qmp_server_destroy(vm->qmp);
			vm->qmp = NULL;
			return ret;
		}
	}
	vm->watchdog_fd = notify_watchdog_timerfd();
	if (vm->watchdog_fd >= 0 && evloop_add(vm->loop, vm->watchdog_fd, EPOLLIN, on_watchdog, vm)) {
		close(vm->watchdog_fd);
		vm->watchdog_fd = -1;
	}
	return 0;
}

void vm_control_stop(struct vm *vm)
{
	if (vm->watchdog_fd >= 0) {
		evloop_del(vm->loop, vm->watchdog_fd);
		close(vm->watchdog_fd);
		vm->watchdog_fd = -1;
	}
	if (vm->shutdown_timer_fd >= 0) {
		evloop_del(vm->loop, vm->shutdown_timer_fd);
		close(vm->shutdown_timer_fd);
		vm->shutdown_timer_fd = -1;
	}
	qmp_server_destroy(vm->qmp);
	vm->qmp = NULL;
}
