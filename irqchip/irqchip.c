#include "irqchip/irqchip.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "accel/kvm.h"
#include "base/log.h"

/* Power-on state of the in-kernel chips, restored on VM reset. */
struct irqchip_reset_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
};

int irqchip_create(struct irqchip *ic, struct kvm_vm *kvm)
{
	int ret;

	memset(ic, 0, sizeof(*ic));
	ic->kvm = kvm;
	ret = kvm_create_irqchip(kvm);
	if (ret) {
		log_err("KVM_CREATE_IRQCHIP failed: %s", strerror(-ret));
		return ret;
	}
	ret = kvm_create_pit2(kvm);
	if (ret) {
		log_err("KVM_CREATE_PIT2 failed: %s", strerror(-ret));
		return ret;
	}
	ret = irq_routing_init(&ic->routing, kvm);
	if (!ret)
		ret = irq_routing_commit(&ic->routing);
	if (ret) {
		log_err("cannot set up the GSI routing table: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

void irqchip_destroy(struct irqchip *ic)
{
	irq_routing_destroy(&ic->routing);
	free(ic->saved_state);
	ic->saved_state = NULL;
}

int irqchip_save_reset_state(struct irqchip *ic)
{
	struct irqchip_reset_state *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	s->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	s->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	ret = kvm_get_irqchip(ic->kvm, &s->pic_master);
	if (!ret)
		ret = kvm_get_irqchip(ic->kvm, &s->pic_slave);
	if (!ret)
		ret = kvm_get_irqchip(ic->kvm, &s->ioapic);
	if (!ret)
		ret = kvm_get_pit2(ic->kvm, &s->pit);
	if (ret) {
		free(s);
		return ret;
	}
	free(ic->saved_state);
	ic->saved_state = s;
	return 0;
}

int irqchip_restore_reset_state(struct irqchip *ic)
{
	struct irqchip_reset_state *s = ic->saved_state;
	int ret;

	if (!s)
		return -ENOENT;
	ret = kvm_set_irqchip(ic->kvm, &s->pic_master);
	if (!ret)
		ret = kvm_set_irqchip(ic->kvm, &s->pic_slave);
	if (!ret)
		ret = kvm_set_irqchip(ic->kvm, &s->ioapic);
	if (!ret)
		ret = kvm_set_pit2(ic->kvm, &s->pit);
	return ret;
}

/* Without a VM (unit tests) there is nothing to drive: -ENODEV. */
int irqchip_set_line(struct irqchip *ic, unsigned gsi, bool level)
{
	if (!ic->kvm)
		return -ENODEV;
	return kvm_irq_line(ic->kvm, gsi, level ? 1 : 0);
}

int irqchip_pulse(struct irqchip *ic, unsigned gsi)
{
	int ret;

	if (!ic->kvm)
		return -ENODEV;
	ret = kvm_irq_line(ic->kvm, gsi, 1);
	return ret ? ret : kvm_irq_line(ic->kvm, gsi, 0);
}

int irqchip_signal_msi(struct irqchip *ic, uint64_t addr, uint32_t data)
{
	if (!ic->kvm)
		return -ENODEV;
	return kvm_signal_msi(ic->kvm, addr, data) < 0 ? -EIO : 0;
}
