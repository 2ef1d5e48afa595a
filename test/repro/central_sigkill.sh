#!/usr/bin/env bash
# central_sigkill.sh: the stall after a single central peer's SIGKILL and
# restart (issue 17), with real processes, repeated.
#
#   MESHMON=path/to/meshmon NATS=path/to/nats test/repro/central_sigkill.sh RUNS [DOWN_SECONDS]
#
# Each run, on fresh data dirs: one central peer, one site peer that dials
# it, the stock nats CLI publishing 50 events a second to the site; after
# 5 s central is SIGKILLed, stays down DOWN_SECONDS (default 20), is started
# again on its data dir; the publisher stops 10 s later. It then polls,
# for up to 90 s, until central's EVENTS holds exactly what the site's
# holds, and prints one line per run: the counts, how long after the
# restart central first stored a new event (sampled every 0.2 s or so),
# how long after the publisher stopped central held them all (or STALLED),
# and how many times central's
# source watch set the source again ("set sources again" in its log).
set -u
RUNS=${1:-10}
DOWN=${2:-20}
MESHMON=${MESHMON:-meshmon}
NATS=${NATS:-nats}
PW=repro-secret-pw
LEAFPW=repro-leaf-secret
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
count() { # url: messages in EVENTS, or -1
	"$NATS" --server "$1" --user ops --password "$PW" --timeout 2s stream info EVENTS --json 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["state"]["messages"])' 2>/dev/null || echo -1
}
now() { date +%s.%N; }
for run in $(seq 1 "$RUNS"); do
	dir=$(mktemp -d /tmp/repro-central-kill.XXXXXX)
	cport=$(free_port) lport=$(free_port) sport=$(free_port)
	curl_c=nats://127.0.0.1:$cport curl_s=nats://127.0.0.1:$sport
	central() {
		"$MESHMON" --log-level info peer run --insecure --role central --name c1 --listen 127.0.0.1:$cport \
			--leaf-listen 127.0.0.1:$lport --leaf-password $LEAFPW --data-dir "$dir/central" \
			--auth-user ops --auth-password $PW --events-max-bytes 200MiB --metrics-max-bytes 100MiB >>"$dir/central.log" 2>&1 &
		cpid=$!
		until grep -q "ready on" "$dir/central.log" 2>/dev/null; do kill -0 $cpid || { echo "central failed: $dir"; exit 1; }; sleep 0.05; done
	}
	central
	token=$("$MESHMON" --server $curl_c --user ops --password $PW site add s1 --json 2>>"$dir/cli.log" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
	"$MESHMON" --log-level info peer run --insecure --join "$token" --listen 127.0.0.1:$sport --data-dir "$dir/site" \
		--auth-user ops --auth-password $PW --events-max-bytes 200MiB --metrics-max-bytes 100MiB >"$dir/site.log" 2>&1 &
	spid=$!
	until grep -q "ready on" "$dir/site.log" 2>/dev/null; do kill -0 $spid || { echo "site failed: $dir"; exit 1; }; sleep 0.05; done
	"$NATS" --server $curl_s --user ops --password $PW pub ev.s1.d1.trap 'event {{Count}}' --count 1000000 --sleep 20ms >/dev/null 2>&1 &
	ppid=$!
	sleep 5
	kill -9 $cpid; wait $cpid 2>/dev/null
	sleep "$DOWN"
	echo "--- restart" >>"$dir/central.log"
	central
	restarted=$(now)
	held=$(count $curl_c) resumed=none
	while python3 -c "import sys; sys.exit(0 if $(now) - $restarted < 10 else 1)"; do
		c=$(count $curl_c)
		if [ "$resumed" = none ] && [ "$c" -gt "$held" ]; then
			resumed=$(python3 -c "print('%.2fs' % ($(now) - $restarted))")
		fi
		sleep 0.2
	done
	kill $ppid; wait $ppid 2>/dev/null
	stopped=$(now)
	site=$(count $curl_s)
	deadline=$(( $(date +%s) + 90 ))
	result=STALLED
	while [ "$(date +%s)" -lt $deadline ]; do
		c=$(count $curl_c)
		if [ "$c" = "$site" ]; then
			result=$(python3 -c "print('%.2fs' % ($(now) - $stopped))")
			break
		fi
		sleep 0.2
	done
	c=$(count $curl_c)
	kicks=$(sed -n '/--- restart/,$p' "$dir/central.log" | grep -c "set sources again")
	echo "run $run: site $site central $c first_new_event_after_restart $resumed caught_up_after_publisher_stop $result kicks_after_restart $kicks dir $dir"
	kill $cpid $spid 2>/dev/null; wait $cpid $spid 2>/dev/null
	[ "$result" = STALLED ] || rm -rf "$dir"
done
