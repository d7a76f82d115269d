/* libFuzzer target: the ACPI PM1a event/control blocks and the reset
 * register (devices/acpi/pm.c) driven through the PIO bus the way a guest
 * would, with a VM that has no KVM behind it (as tests/unit/test_acpi.c
 * does): SCI changes fail quietly, poweroff/reset requests only land in
 * vm->request, which the fuzzer checks and clears.
 *
 * Input: a sequence of 4-byte operations:
 *   [0] bit 0: write; bits 1-2: width 1/2/4/8 (plus 3 for odd sizes);
 *       bits 3-7: 0-23 plain access, 24-26 power button, 27-28 device
 *       reset, 29-31 clear the pending VM request
 *   [1] port offset from ACPI_PM1A_EVT_PORT - 2 (mod 16: both range edges)
 *   [2..3] value (LE16, repeated to the access width) */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "accel/kvm.h"
#include "devices/acpi/pm.h"
#include "devices/device.h"
#include "vmm/acpi/acpi.h"
#include "base/bus.h"
#include "base/log.h"
#include "vmm/vm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct device_desc *pm_desc;

static void setup(void)
{
	if (pm_desc)
		return;
	log_set_level(LOG_ERR);
	for (pm_desc = device_list(); pm_desc; pm_desc = pm_desc->next)
		if (!strcmp(pm_desc->name, ACPI_PM_DEVICE_NAME))
			break;
	if (!pm_desc)
		abort();
}

static uint16_t rd16(struct vm *vm, uint16_t port)
{
	uint16_t v = 0;

	if (!bus_read(&vm->pio_bus, port, &v, 2))
		abort();
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned widths[4] = { 1, 2, 4, 8 };
	struct kvm_vm kvm;
	struct vm vm;
	struct vm_device_inst inst;
	uint64_t drain;

	setup();
	memset(&vm, 0, sizeof(vm));
	memset(&kvm, 0, sizeof(kvm));
	memset(&inst, 0, sizeof(inst));
	kvm.vm_fd = -1;
	vm.irqchip.kvm = &kvm;
	if (bus_init(&vm.pio_bus, "pio") || pthread_mutex_init(&vm.lock, NULL))
		abort();
	vm.request_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	vm.dev_ctx = (struct device_ctx){ .pio_bus = &vm.pio_bus, .irqchip = &vm.irqchip,
					.ops = &vm_device_machine_ops, .machine = &vm };
	if (vm.request_efd < 0 || pm_desc->realize(pm_desc, &vm.dev_ctx, &inst.state))
		abort();
	inst.desc = pm_desc;
	vm.devices = &inst;
	vm.nr_devices = 1;

	for (size_t i = 0; i + 4 <= size; i += 4) {
		const uint8_t *op = data + i;
		unsigned kind = op[0] >> 3;
		unsigned len = widths[(op[0] >> 1) & 3];
		uint64_t port = ACPI_PM1A_EVT_PORT - 2 + (op[1] & 15);
		uint8_t buf[8];
		enum vm_request before = vm.request;

		if (kind >= 29) {
			vm.request = VM_REQ_NONE;
			continue;
		}
		if (kind >= 27) {
			pm_desc->reset(inst.state);
			if (rd16(&vm, ACPI_PM1A_EVT_PORT) || rd16(&vm, ACPI_PM1A_EVT_PORT + 2) ||
			    rd16(&vm, ACPI_PM1A_CNT_PORT) != 1)
				abort();	/* reset clears everything but SCI_EN */
			continue;
		}
		if (kind >= 24) {
			acpi_pm_press_power_button(&vm);
			if (!(rd16(&vm, ACPI_PM1A_EVT_PORT) & (1u << 8)))
				abort();
			continue;
		}
		if (kind >= 20)
			len = 3 + (kind & 3) * 2;	/* 3, 5, 7, 9: odd sizes */
		if (len > sizeof(buf))
			len = sizeof(buf);
		for (unsigned b = 0; b < len; b++)
			buf[b] = op[2 + (b & 1)];
		if (op[0] & 1) {
			bus_write(&vm.pio_bus, port, buf, len);
			/* Writing the reset value to the reset register asks for a reset. */
			if (port == ACPI_RESET_PORT && len == 1 && buf[0] == ACPI_RESET_VALUE &&
			    before == VM_REQ_NONE && vm.request != VM_REQ_RESET)
				abort();
		} else {
			memset(buf, 0xa5, sizeof(buf));
			bus_read(&vm.pio_bus, port, buf, len);
		}
		/* SCI_EN always reads set; SLP_EN is write-only. */
		{
			uint16_t cnt = rd16(&vm, ACPI_PM1A_CNT_PORT);

			if (!(cnt & 1) || (cnt & (1u << 13)))
				abort();
		}
		if (vm.request != VM_REQ_NONE && vm.request != VM_REQ_RESET &&
		    vm.request != VM_REQ_POWEROFF)
			abort();
	}

	if (read(vm.request_efd, &drain, sizeof(drain)) < 0)
		drain = 0;
	pm_desc->destroy(inst.state);
	close(vm.request_efd);
	pthread_mutex_destroy(&vm.lock);
	bus_destroy(&vm.pio_bus);
	return 0;
}
