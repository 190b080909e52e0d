#!/bin/bash
# Side-by-side figures on a noisy machine: runs each criterion bench binary ROUNDS times, interleaved, and
# prints the median and best throughput per binary (K elements/s), then every run.
#   scripts/bench-ab.sh ROUNDS 'lake/write_mixed' /var/tmp/lake-before /var/tmp/lake-after
# Binaries: copy `target/release/deps/lake-<hash>` after `cargo bench -p tracelake-benches --bench lake --no-run`.
# No pipefail: `grep -m1` stops reading and the bench binary then dies of SIGPIPE, on purpose.
set -eu
rounds=$1 bench=$2
shift 2
declare -A runs
for _ in $(seq "$rounds"); do
    for b in "$@"; do
        v=$("$b" --bench "$bench" --warm-up-time 1 --measurement-time 3 --noplot 2>&1 | grep -m1 thrpt |
            sed -E 's/.*\[[^ ]+ [^ ]+ ([0-9.]+) ([KM])elem.*/\1 \2/' | awk '{print ($2=="M") ? $1*1000 : $1}')
        runs[$b]="${runs[$b]:-} $v"
    done
done
for b in "$@"; do
    echo "$b: $(echo ${runs[$b]} | tr ' ' '\n' | sort -n |
        awk '{a[NR]=$1} END {printf "median %.0f best %.0f; runs:", a[int((NR+1)/2)], a[NR]}') ${runs[$b]}"
done
