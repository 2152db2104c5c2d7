#!/usr/bin/env bash
# Several hosts on one machine: two network namespaces joined by a veth pair, one MPI rank in
# each, so the all-reduces and the vocab gather cross a real TCP link (Open MPI's tcp BTL,
# shared memory off). The tokens must equal the threads backend's and HF's, and the link's
# counters must show the traffic. Skipped (exit 77) where namespaces cannot be made.
set -u
bin=${MESHLLAMA_BIN:?}
fixtures=${MESHLLAMA_FIXTURES:?}
if ! command -v mpirun >/dev/null || ! command -v ip >/dev/null; then echo "SKIP: needs mpirun and ip"; exit 77; fi
if "$bin" run -m "$fixtures/gqa_tied_bf16" --prompt-ids 1 -n 1 --backend mpi 2>&1 | grep -q "not in this build"; then
    echo "SKIP: built without MPI"; exit 77
fi
# Open MPI's tcp components are unloaded before LeakSanitizer runs, so in the sanitizer build
# their process-lifetime allocations show up as leaks of "<unknown module>" that no suppression
# can name. Leak checking of our MPI code stays on in cli_mpi.sh (shared-memory transport).
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
tag=ml$$
ns_a=${tag}a ns_b=${tag}b
subnet=10.231.$(($$ % 200 + 20))
addr_a=$subnet.1 addr_b=$subnet.2
tmp=${MESHLLAMA_TMP:-/tmp}/cli_mpi_netns.$$
cleanup() { ip netns del "$ns_a" 2>/dev/null; ip netns del "$ns_b" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
mkdir -p "$tmp"
if ! ip netns add "$ns_a" 2>/dev/null; then echo "SKIP: this machine does not allow network namespaces"; exit 77; fi
ip netns add "$ns_b" &&
    ip link add "${tag}va" type veth peer name "${tag}vb" &&
    ip link set "${tag}va" netns "$ns_a" && ip link set "${tag}vb" netns "$ns_b" &&
    ip -n "$ns_a" addr add "$addr_a/24" dev "${tag}va" && ip -n "$ns_b" addr add "$addr_b/24" dev "${tag}vb" &&
    ip -n "$ns_a" link set "${tag}va" up && ip -n "$ns_b" link set "${tag}vb" up &&
    ip -n "$ns_a" link set lo up && ip -n "$ns_b" link set lo up || { echo "SKIP: cannot build the veth link"; exit 77; }

# mpirun's remote-shell agent: "host" is a namespace's address; the command runs inside it
cat >"$tmp/agent.sh" <<EOS
#!/usr/bin/env bash
host=\$1; shift
case "\$host" in $addr_a) ns=$ns_a ;; $addr_b) ns=$ns_b ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" env PATH="\$PATH" bash -c "\$*"
EOS
chmod +x "$tmp/agent.sh"
printf '%s slots=1\n%s slots=1\n' "$addr_a" "$addr_b" >"$tmp/hosts"

rx_bytes() { ip -n "$ns_b" -s link show "${tag}vb" | awk '/RX:/ {getline; print $1; exit}'; }
dir=$fixtures/h9kv3_llama3rope_bf16
read -r prompt expected < <(python3 - "$dir/reference.bin" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
_, vocab, n_prompt, n_gen = struct.unpack_from("<4I", d, 8)
ids = struct.unpack_from("<%di" % (n_prompt + n_gen), d, 24)
print(",".join(map(str, ids[:n_prompt])), " ".join(map(str, ids[n_prompt:])))
PY
)
before=$(rx_bytes)
got=$(timeout 120 ip netns exec "$ns_a" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    mpirun --hostfile "$tmp/hosts" -np 2 --mca plm_rsh_agent "$tmp/agent.sh" --mca btl tcp,self \
    --mca btl_tcp_if_include "$subnet.0/24" --mca oob_tcp_if_include "$subnet.0/24" \
    "$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos -t 1 2>"$tmp/err")
rc=$?
after=$(rx_bytes)
threads=$("$bin" run -m "$dir" --prompt-ids "$prompt" -n 16 --ignore-eos --tp 2 2>/dev/null)
passed=0
failed=0
if [ $rc -eq 0 ] && [ "$got" = "$expected" ] && [ "$threads" = "$expected" ]; then passed=$((passed + 1))
else failed=$((failed + 1)); echo "FAIL: two hosts: rc $rc, got '$got', threads '$threads', HF '$expected': $(cat "$tmp/err")" >&2; fi
crossed=$((after - before))
# 16 tokens x 3 layers x 2 all-reduces of 144 floats, plus the prompt's, plus the vocab gathers
if [ "$crossed" -gt 20000 ]; then passed=$((passed + 1))
else failed=$((failed + 1)); echo "FAIL: only $crossed bytes crossed the veth link" >&2; fi
echo "two hosts over veth: $crossed bytes received by the second namespace"
echo "cli_mpi_netns: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
