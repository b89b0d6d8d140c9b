#!/usr/bin/env bash
# Every accelerator measurement the README reports, in one call (a lent GPU is held for minutes):
#
#   1. bench_mnist.py on the accelerator: the 10,000 MNIST test images into one archive and back,
#      timed by stage; the archive is kept in OUT;
#   2. that archive decoded on the same machine's CPU (JAX_PLATFORMS=cpu): the GPU-encode /
#      CPU-decode check (copy OUT's archive home and decode it there too: bench_mnist.py --decode);
#      and its latents as each backend regenerates them (tools/latents.py: OUT/z-*.npy, compared);
#   3. an archive written elsewhere (FOREIGN, e.g. bench_mnist.py --keep on a CPU machine) decoded
#      on the accelerator: the other direction;
#   4. bench_throughput.py at accelerator sizes (2^24 candidates per single-problem call, chunks of
#      32,768 -- the largest the searches take --, 1,024 lanes x 256, 65,536 problems per batch), one
#      D at a time: D = 5 and 64 first, then
#   5. bench_sp.py's exact part (SP-PFR against PFR at D_inf ~ 16 bits, time per problem), and last
#   6. D = 25 without the paper's-grid SP coders (on an H200 on 2026-12-04 D = 25 took ~150 s so, and
#      over 130 s with them; D = 5 ~110 s, D = 64 ~65 s, steps 1-3 ~140 s).
#
# Each step runs under its own time limit, cut to what is left of BUDGET_S (default 600 s), so a
# slow step cannot take the later ones' time, and a step that overruns loses only its own numbers.
# At the end OUT/results.tgz holds the three benchmarks' latest/ folders (JSON and Markdown per backend).
#
#   experiments/accelerator.sh OUT [PLATFORM [FOREIGN]]     # PLATFORM: gpu (default), tpu or cpu
#
# The data are read from $JAXREC_DATA (the MNIST test files) and jaxrec from the Python path;
# QUICK=1 runs every step at smoke-test sizes (to try the script on a CPU machine).
set -u -o pipefail
out=${1:?usage: experiments/accelerator.sh OUT [PLATFORM [FOREIGN]]}
platform=${2:-gpu}
foreign=${3:-}
py=${PYTHON:-python3}
deadline=$((SECONDS + ${BUDGET_S:-600}))
export PYTHONUNBUFFERED=1
mkdir -p "$out"
cd "$(dirname "$0")/.."

step() {  # step LIMIT_S COMMAND...: run COMMAND under min(LIMIT_S, what is left of the budget)
  local limit=$1 left=$((deadline - SECONDS - 10))
  shift
  ((left < limit)) && limit=$left
  if ((limit < 20)); then echo "== skipped (budget spent): $*"; return; fi
  echo "== $(date -u +%T) limit ${limit} s: $*"
  timeout "$limit" "$@"
  local status=$?
  echo "== $(date -u +%T) exit $status$( ((status == 124)) && echo ' (time limit)')"
}

if [[ -n ${QUICK:-} ]]; then
  mnist=(--num 64 --batch 32); throughput=(--quick); sp=(--quick)
else
  mnist=(); sp=()
  throughput=(--full --log2-candidates 24 --chunk 32768 --lanes 1024 --lane-chunk 256 --batch 65536 --processes 1)
fi
"$py" -c "import jax, jaxrec; print('jax', jax.__version__, '| jaxrec', jaxrec.__version__, '|', jax.devices())"
archive="$out/mnist_test-$platform.jxr"
step 200 "$py" experiments/bench_mnist.py --device "$platform" "${mnist[@]}" --keep "$archive"
[[ -f $archive ]] && step 100 env JAX_PLATFORMS=cpu "$py" experiments/bench_mnist.py --device cpu --decode "$archive" --tag="-from-$platform"
if [[ -f $archive ]]; then  # the latents both backends regenerate for that archive, and how they differ
  step 60 "$py" tools/latents.py record "$archive" "$out/z-$platform.npy" --model mnist-vae
  step 60 env JAX_PLATFORMS=cpu "$py" tools/latents.py record "$archive" "$out/z-cpu.npy" --model mnist-vae
  [[ -f $out/z-cpu.npy && -f $out/z-$platform.npy ]] && "$py" tools/latents.py compare "$out/z-cpu.npy" "$out/z-$platform.npy"
fi
[[ -n $foreign ]] && step 80 "$py" experiments/bench_mnist.py --device "$platform" --decode "$foreign" --tag=-from-elsewhere
for dim in 5 64; do
  step 150 "$py" experiments/bench_throughput.py --device "$platform" --dims "$dim" --tag="-d$dim" "${throughput[@]}"
done
step 90 "$py" experiments/bench_sp.py --device "$platform" --part exact "${sp[@]}"
step 240 "$py" experiments/bench_throughput.py --device "$platform" --dims 25 --tag=-d25 --coders pfr orc sp_pfr sp_orc \
  "${throughput[@]}"
tar czf "$out/results.tgz" experiments/results/bench_{mnist,throughput,sp}/latest
echo "== $(date -u +%T) done; results in $out/results.tgz"
