# Guest side of bench/migrate: a guest that keeps dirtying memory
# (ember.dirty_mb MiB of tmpfs rewritten in a loop, 0 = idle) and prints a
# tick every 0.2 s, until the host kills it.
t_migbench() {
	local mb i=0
	mb=$(arg dirty_mb)
	mb=${mb:-0}
	echo "EMBER-READY migbench"
	if [ "$mb" -gt 0 ]; then
		( while true; do dd if=/dev/zero of=/tmp/dirty bs=1M count="$mb" conv=notrunc 2>/dev/null; done ) &
	fi
	while true; do
		i=$((i + 1))
		echo "EMBER-TICK $i"
		sleep 0.2
	done
}
