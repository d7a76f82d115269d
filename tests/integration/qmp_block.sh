#!/usr/bin/env bash
# query-block and x-query-exits report every --disk with its file, size,
# read-only flag and counters, and the per-device exit counts.
set -e
. "$(dirname "$0")/lib.sh"
require_kvm
truncate -s 64M "$TMPD/a.img"
truncate -s 8M "$TMPD/b.img"
S="$TMPD/s.sock"
"$EMBER" run --debug-exit --kernel "$EMBER_GUEST_DIR/ticker.elf" --console file:"$TMPD/serial" \
	--disk path="$TMPD/a.img",serial=A --disk path="$TMPD/b.img",readonly=on --api-sock "$S" &
PID=$!
for _ in $(seq 100); do [ -S "$S" ] && break; sleep 0.05; done
"$EMBER" ctl "$S" query-block >"$TMPD/qb.json"
"$EMBER" ctl "$S" x-query-exits >"$TMPD/qe.json"
"$EMBER" ctl "$S" quit >/dev/null
wait $PID || fail "ember exited $?"
python3 - "$TMPD" <<'PY'
import json, sys, os
d = sys.argv[1]
qb = json.load(open(os.path.join(d, "qb.json")))
assert [b["device"] for b in qb] == ["virtio0", "virtio1"], qb
assert qb[0]["inserted"]["file"].endswith("/a.img") and qb[0]["inserted"]["ro"] is False
assert qb[0]["inserted"]["image"]["virtual-size"] == 64 << 20
assert qb[1]["inserted"]["ro"] is True and qb[1]["inserted"]["image"]["virtual-size"] == 8 << 20
qe = json.load(open(os.path.join(d, "qe.json")))
assert qe["total"] > 0 and qe["reasons"]["io"] > 0, qe
assert qe["devices"]["serial"] > 0, qe["devices"]
assert len(qe["disks"]) == 2, qe.get("disks")
PY
[ ! -e "$S" ] || fail "socket file left behind"
pass "qmp block and exit stats"
