/* bench/pci/pci_bench: the VMM's side of the two hot PCI paths, on a real
 * VM (vm_create: KVM, in-kernel irqchip, the machine's host bridge and
 * interrupt plumbing) whose vCPU never runs.
 *
 *   dispatch: a PCI function's memory BAR is enabled the way a guest does
 *     it, then bus_write() on the VM's MMIO bus at a register in the BAR is
 *     timed: what a vCPU thread does for an MMIO exit after decoding it,
 *     down to the device's BAR handler (here an empty one).
 *   notify: the function's one MSI-X vector is programmed and unmasked
 *     (BAR and config writes, as a driver does) and pci_msix_notify() is
 *     timed; each interrupt ends in the LAPIC's IRR through KVM.
 *
 * Usage: bench_pci_pci_bench KERNEL [N [RUNS [THREADS]]]  (default 200000 7 1)
 *   KERNEL: any guest image vm_create accepts (it is loaded, never run).
 *   THREADS > 1: that many threads notify the same vector at once.
 * Output: one line per run, then
 *   RESULT dispatch_ns_median=D notify_ns_median=X notify_ns_min=Y runs=R n=N threads=T
 * Needs /dev/kvm. It uses only pci_* and bus_* calls, vm_create and
 * vm_device_state, so the same file builds against older trees (b3784c9). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "devices/pci/pci.h"
#include "vmm/config.h"
#include "vmm/vm.h"

#define MAX_RUNS 99
#define MAX_THREADS 8

static struct pci_device dev;
static unsigned long n_per_run;
static uint64_t bar_writes;

static void bar_read(struct pci_device *d, unsigned bar, uint64_t off, void *data, unsigned len)
{
	(void)d;
	(void)bar;
	(void)off;
	memset(data, 0, len);
}

static void bar_write(struct pci_device *d, unsigned bar, uint64_t off, const void *data,
		      unsigned len)
{
	(void)d;
	(void)bar;
	(void)off;
	(void)data;
	(void)len;
	bar_writes++;
}

static const struct pci_device_ops ops = { .bar_read = bar_read, .bar_write = bar_write };

static double now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

static void *notifier(void *arg)
{
	double *ns = arg, t0 = now_ns();

	for (unsigned long i = 0; i < n_per_run; i++)
		if (pci_msix_notify(&dev, 0)) {
			fprintf(stderr, "pci_bench: notify failed\n");
			exit(1);
		}
	*ns = (now_ns() - t0) / (double)n_per_run;
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void mmio_wr32(struct pci_host *h, uint64_t addr, uint32_t v)
{
	if (!pci_host_mmio_write(h, addr, &v, 4)) {
		fprintf(stderr, "pci_bench: BAR write at 0x%llx not handled\n",
			(unsigned long long)addr);
		exit(1);
	}
}

static double median(double *v, unsigned n)
{
	qsort(v, n, sizeof(v[0]), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	unsigned runs = argc > 3 ? (unsigned)atoi(argv[3]) : 7;
	unsigned threads = argc > 4 ? (unsigned)atoi(argv[4]) : 1;
	double per_run[MAX_RUNS], dispatch[MAX_RUNS];
	struct vm_config cfg;
	struct pci_host *h;
	static struct vm vm;
	uint64_t table;
	int slot, cap;

	n_per_run = argc > 2 ? strtoul(argv[2], NULL, 0) : 200000;
	if (argc < 2 || !n_per_run || !runs || runs > MAX_RUNS || !threads ||
	    threads > MAX_THREADS) {
		fprintf(stderr, "usage: %s KERNEL [N [RUNS<=%d [THREADS<=%d]]]\n", argv[0],
			MAX_RUNS, MAX_THREADS);
		return 2;
	}
	/* cli's config_defaults(), which the bench does not link, without a console. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.cpus = 1;
	cfg.memory = 128ULL << 20;
	cfg.console = CONSOLE_NONE;
	cfg.on_reboot = REBOOT_RESTART;
	cfg.cpu_model = CPU_MODEL_HOST;
	cfg.api_sock_fd = -1;
	cfg.shutdown_timeout_s = 30;
	cfg.kernel = argv[1];
	if (vm_create(&vm, &cfg)) {
		fprintf(stderr, "pci_bench: cannot create a VM (is /dev/kvm usable?)\n");
		return 1;
	}
	h = vm_device_state(&vm, PCI_HOST_DEVICE_NAME);	/* the state starts with the host */
	if (!h) {
		fprintf(stderr, "pci_bench: no PCI host bridge\n");
		return 1;
	}
	pci_device_init(&dev, "pci-bench", &ops, NULL, 0x1234, 0x0b00, 0xff0000, 0, 0, 0);
	if (pci_device_add_bar(&dev, 0, 0x1000, 0) ||
	    (cap = pci_device_add_msix(&dev, 1, 0, 0, 0, 0x800)) < 0 ||
	    (slot = pci_register_device(h, &dev)) < 0) {
		fprintf(stderr, "pci_bench: cannot register the test function\n");
		return 1;
	}
	/* As a guest driver does: memory decoding, the entry (fixed delivery to
	 * APIC 0, vector 0x40), unmask, MSI-X enable. */
	pci_host_config_write(h, 0, (unsigned)slot, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	table = dev.bars[0].default_addr;
	mmio_wr32(h, table + PCI_MSIX_ENTRY_ADDR_LO, 0xfee00000);
	mmio_wr32(h, table + PCI_MSIX_ENTRY_ADDR_HI, 0);
	mmio_wr32(h, table + PCI_MSIX_ENTRY_DATA, 0x40);
	mmio_wr32(h, table + PCI_MSIX_ENTRY_CTRL, 0);
	pci_host_config_write(h, 0, (unsigned)slot, 0, (unsigned)cap + PCI_MSIX_FLAGS, 2,
			      PCI_MSIX_FLAGS_ENABLE);
	for (unsigned i = 0; i < 1000; i++)
		if (pci_msix_notify(&dev, 0)) {
			fprintf(stderr, "pci_bench: the vector does not fire\n");
			return 1;
		}

	for (unsigned r = 0; r < runs; r++) {
		pthread_t t[MAX_THREADS];
		double ns[MAX_THREADS], sum = 0, t0;
		uint32_t zero = 0;
		uint64_t before = bar_writes;

		/* A register at 0x100 of the BAR (past nothing: no MSI-X there). */
		t0 = now_ns();
		for (unsigned long i = 0; i < n_per_run; i++)
			bus_write(&vm.mmio_bus, table + 0x100, &zero, 4);
		dispatch[r] = (now_ns() - t0) / (double)n_per_run;
		if (bar_writes - before != n_per_run) {
			fprintf(stderr, "pci_bench: %llu of %lu BAR writes reached the device\n",
				(unsigned long long)(bar_writes - before), n_per_run);
			return 1;
		}
		for (unsigned i = 0; i < threads; i++)
			pthread_create(&t[i], NULL, notifier, &ns[i]);
		for (unsigned i = 0; i < threads; i++) {
			pthread_join(t[i], NULL);
			sum += ns[i];
		}
		per_run[r] = sum / threads;
		printf("run %u: %.1f ns per BAR write dispatch, %.1f ns per notify\n", r + 1,
		       dispatch[r], per_run[r]);
	}
	{
		double d = median(dispatch, runs), n = median(per_run, runs);

		printf("RESULT dispatch_ns_median=%.1f notify_ns_median=%.1f notify_ns_min=%.1f "
		       "runs=%u n=%lu threads=%u\n", d, n, per_run[0], runs, n_per_run, threads);
	}
	pci_unregister_device(&dev);
	pci_device_release(&dev);
	vm_destroy(&vm);
	return 0;
}
