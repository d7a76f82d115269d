/* Capture what the code under test writes to stderr (the log), to count
 * its lines. Not nestable. */
#ifndef EMBER_TEST_STDERR_CAPTURE_H
#define EMBER_TEST_STDERR_CAPTURE_H

void stderr_capture_begin(void);
/* Restore stderr; returns the number of lines written meanwhile. */
unsigned stderr_capture_end(void);

#endif
