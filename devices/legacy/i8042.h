/* The i8042 keyboard controller, reduced to what guests probe and use to
 * reset the machine: no keyboard or mouse behind it. The model is pure;
 * the device glue adds the ports (0x60 data, 0x64 status/command) and a
 * lock. */
#ifndef EMBER_I8042_H
#define EMBER_I8042_H

#include <stdbool.h>
#include <stdint.h>

#define I8042_DATA_PORT		0x60
#define I8042_CMD_PORT		0x64

#define I8042_STR_OBF		0x01	/* output buffer full */
#define I8042_STR_IBF		0x02
#define I8042_STR_SYS		0x04	/* system flag (mirrors CTR bit 2) */
#define I8042_STR_CMD		0x08	/* last write was a command */
#define I8042_STR_UNLOCKED	0x10	/* keyboard not inhibited */

#define I8042_CTR_KBDINT	0x01
#define I8042_CTR_AUXINT	0x02
#define I8042_CTR_SYS		0x04
#define I8042_CTR_KBDDIS	0x10
#define I8042_CTR_AUXDIS	0x20
#define I8042_CTR_XLATE		0x40

#define I8042_CMD_READ_CTR	0x20
#define I8042_CMD_WRITE_CTR	0x60
#define I8042_CMD_AUX_DISABLE	0xA7
#define I8042_CMD_AUX_ENABLE	0xA8
#define I8042_CMD_AUX_TEST	0xA9
#define I8042_CMD_SELF_TEST	0xAA
#define I8042_CMD_KBD_TEST	0xAB
#define I8042_CMD_KBD_DISABLE	0xAD
#define I8042_CMD_KBD_ENABLE	0xAE
#define I8042_CMD_READ_OUTPORT	0xD0
#define I8042_CMD_WRITE_OUTPORT	0xD1
#define I8042_CMD_WRITE_KBD_OUT	0xD2
#define I8042_CMD_WRITE_AUX_OUT	0xD3
#define I8042_CMD_WRITE_AUX	0xD4
#define I8042_CMD_RESET		0xFE

#define I8042_OUT_SIZE 4

typedef void (*i8042_reset_fn)(void *opaque, const char *cause);

struct i8042 {
	uint8_t ctr;		/* controller configuration ("command byte") */
	bool last_was_cmd;
	uint8_t pending;	/* command waiting for its data byte, or 0 */
	uint8_t out[I8042_OUT_SIZE];
	unsigned out_head, out_count;
	uint8_t last_out;	/* what a read of an empty buffer returns */

	i8042_reset_fn request_reset;
	void *opaque;
};

void i8042_init(struct i8042 *k, i8042_reset_fn request_reset, void *opaque);
void i8042_reset(struct i8042 *k);

uint8_t i8042_read_status(const struct i8042 *k);	/* port 0x64 */
uint8_t i8042_read_data(struct i8042 *k);		/* port 0x60 */
/* Port 0x60: a command's data byte, else a byte for the (absent) keyboard. */
void i8042_write_data(struct i8042 *k, uint8_t val);
/* Port 0x64. Returns false for a command the model does not know (it is
 * ignored). */
bool i8042_write_command(struct i8042 *k, uint8_t cmd);

#endif
