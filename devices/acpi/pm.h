/* ACPI fixed hardware: PM1a event/control blocks and the reset register
 * described by the FADT (ports in vmm/acpi/acpi.h). The host's power
 * button reaches it through the device's power_button hook. */
#ifndef EMBER_ACPI_PM_H
#define EMBER_ACPI_PM_H

#define ACPI_PM_DEVICE_NAME	"acpi-pm"

#endif
