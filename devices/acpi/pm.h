/* ACPI fixed hardware: PM1a event/control blocks and the reset register
 * described by the FADT (ports in vmm/acpi/acpi.h). */
#ifndef EMBER_ACPI_PM_H
#define EMBER_ACPI_PM_H

struct vm;

#define ACPI_PM_DEVICE_NAME	"acpi-pm"

/* Press the power button: sets PM1_STS.PWRBTN_STS and, if the guest set
 * PM1_EN.PWRBTN_EN, raises the SCI until the guest clears the status. */
void acpi_pm_press_power_button(struct vm *vm);

#endif
