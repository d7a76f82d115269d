/* exitcode: exits through isa-debug-exit with the value of `exit=N`. */
#include "rt/rt.h"

int guest_main(const struct hvm_start_info *si)
{
	(void)si;
	int n = (int)rt_cmdline_int("exit", 0);

	rt_printf("exitcode: exiting with %d\n", n);
	rt_exit(n);
}
