/* Character backends for consoles (the 16550 UART now, virtio-console
 * later): stdio, an output file, or nothing.
 *
 * Output goes straight to the file descriptor with write(2), from whatever
 * thread calls chardev_write; nothing is buffered, so nothing is lost at
 * exit. Input is read on the main thread's event loop and handed to the
 * on_input callback, at most CHARDEV_READ_MAX bytes per call.
 *
 * When stdin is a terminal it is put in raw mode (QEMU-like: no echo, no
 * line editing, no signals; output post-processing stays on) and restored
 * on chardev_destroy, at exit and on fatal signals. Ctrl-A x then asks to
 * quit (on_quit) and Ctrl-A Ctrl-A sends one Ctrl-A. */
#ifndef EMBER_CHARDEV_H
#define EMBER_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/config.h"	/* enum console_kind */

struct evloop;
struct chardev;

#define CHARDEV_READ_MAX 1024
#define CHARDEV_ESCAPE_CHAR 0x01	/* Ctrl-A */

/* Called on the main thread. The callee must take all `len` bytes; to
 * stop more from coming, it calls chardev_pause_input() before returning. */
typedef void (*chardev_input_fn)(void *opaque, const uint8_t *buf, size_t len);
typedef void (*chardev_quit_fn)(void *opaque);

/* A backend of `kind`; path names the output file for CONSOLE_FILE.
 * `loop` may be NULL (output only). Only the first stdio chardev reads
 * stdin; later ones are output only. Returns NULL with *err set to a
 * negative errno on failure. */
struct chardev *chardev_open(enum console_kind kind, const char *path, struct evloop *loop,
			     chardev_input_fn on_input, chardev_quit_fn on_quit, void *opaque,
			     int *err);
/* The same, with the backend chosen by cfg->console / cfg->console_path
 * (the COM1 console). */
struct chardev *chardev_create(const struct vm_config *cfg, struct evloop *loop,
			       chardev_input_fn on_input, chardev_quit_fn on_quit,
			       void *opaque, int *err);
/* Stops reading, restores the terminal, closes what it opened. Call before
 * the event loop is destroyed. NULL is a no-op. */
void chardev_destroy(struct chardev *chr);

/* Write everything (retrying on EINTR, short writes and EAGAIN). Safe from
 * any thread; concurrent callers are not serialised against each other. A
 * dead output (EPIPE, EIO...) is reported once and later output dropped. */
void chardev_write(struct chardev *chr, const void *buf, size_t len);

/* Non-blocking output, for callers on the main loop. Takes what the reader
 * accepts now plus what fits in a CHARDEV_OUT_BUF-byte buffer and returns
 * that count (len when the output is discarded or dead); it never waits.
 * When it returned less than len, the writable callback is called once, on
 * the main loop, after the buffer has drained. Pipes, FIFOs and terminals
 * get this; regular files (never slow to accept) and chardevs without a
 * loop are written as by chardev_write(). Safe from any thread. */
#define CHARDEV_OUT_BUF (64 * 1024)
typedef void (*chardev_writable_fn)(void *opaque);
size_t chardev_write_nb(struct chardev *chr, const void *buf, size_t len);
void chardev_set_writable_cb(struct chardev *chr, chardev_writable_fn cb, void *opaque);
/* Bytes buffered by chardev_write_nb() and not yet written. */
size_t chardev_out_pending(struct chardev *chr);

/* Input flow control, callable from any thread. While paused, stdin is
 * taken off the event loop so a full consumer never busy-loops. */
void chardev_pause_input(struct chardev *chr);
void chardev_resume_input(struct chardev *chr);

/* True when this chardev reads input (stdio backend that owns stdin). */
bool chardev_has_input(const struct chardev *chr);

/* Restore every terminal this process put in raw mode. Async-signal-safe;
 * registered with atexit() on first use, and safe to call again from the
 * other signal handlers or exit paths. */
void chardev_restore_all(void);

/* Input escape filter, exposed for tests: copies `in` to `out` (room for
 * `len` bytes), handling Ctrl-A sequences. *escaped carries a pending
 * Ctrl-A across calls (start at false). Returns the bytes written to out
 * and ORs CHARDEV_ESC_* into *events. After Ctrl-A x the rest of `in` is
 * discarded. */
#define CHARDEV_ESC_QUIT 1u
#define CHARDEV_ESC_HELP 2u
size_t chardev_filter_escapes(bool *escaped, const uint8_t *in, size_t len,
			      uint8_t *out, unsigned *events);

#endif
