# shellcheck shell=bash
# The CuPy wheel for this driver and GPU, as pip requirement strings. A pure function of three
# inputs, each read from nvidia-smi unless overridden: CA_DRIVER_CUDA (the highest CUDA version
# the driver supports, e.g. 12.8), CA_COMPUTE_CAP (e.g. 12.0) and CA_CUPY_VARIANT
# (auto | cuda12x | cuda13x). CA_CUPY_SPEC replaces the whole decision with its own requirements.
# Why these rules (deploy/README.md, "CuPy choice"): runtime image without CUDA headers → CUDA's
# component wheels; Blackwell needs NVRTC >= 12.8; cuda13x needs an R580+ driver. Of the
# components CuPy's [ctk] extra brings, only those the daemon loads: the runtime (with the
# headers NVRTC compiles against), NVRTC and cuFFT, not cuBLAS, cuSPARSE, cuSOLVER or cuRAND
# (≈ 1.9 GB installed; see tests/ca/test_cuda_libraries.py). A spec variable may hold several
# requirements, space-separated.

CA_CUPY_VARIANT="${CA_CUPY_VARIANT:-auto}"
CA_CUPY_CUDA12_SPEC="${CA_CUPY_CUDA12_SPEC:-cupy-cuda12x>=14,<15 cuda-toolkit[cudart,nvrtc,cufft]==12.*}"
CA_CUPY_CUDA13_SPEC="${CA_CUPY_CUDA13_SPEC:-cupy-cuda13x>=14,<15 cuda-toolkit[cudart,nvrtc,cufft]==13.*}"
CA_BLACKWELL_NVRTC_SPEC="${CA_BLACKWELL_NVRTC_SPEC:-cuda-toolkit[nvrtc]>=12.8,<13}"

# "12.8" -> 1208; anything else is an error.
version_code() {
  local major minor
  [[ "$1" =~ ^([0-9]+)\.([0-9]+)$ ]] || return 1
  major="${BASH_REMATCH[1]}"
  minor="${BASH_REMATCH[2]}"
  echo $((10#$major * 100 + 10#$minor))
}

# The driver's CUDA version from the nvidia-smi banner ("CUDA Version: 12.8").
detect_driver_cuda() {
  nvidia-smi 2>/dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p' | head -n 1
}

detect_compute_cap() {
  nvidia-smi --query-gpu=compute_cap --format=csv,noheader -i "${CA_GPU:-0}" 2>/dev/null \
    | head -n 1 | tr -d ' '
}

# Space-separated requirements -> one per line.
one_per_line() {
  tr ' ' '\n' <<<"$1" | sed '/^$/d'
}

# Print the requirement strings (one per line) or fail with a one-line reason on stderr.
select_cupy_spec() {
  if [ -n "${CA_CUPY_SPEC:-}" ]; then
    one_per_line "$CA_CUPY_SPEC"
    return 0
  fi
  local driver="${CA_DRIVER_CUDA:-$(detect_driver_cuda)}"
  local cap="${CA_COMPUTE_CAP:-$(detect_compute_cap)}"
  local driver_code cap_code
  driver_code="$(version_code "$driver")" \
    || { echo "cannot read the driver's CUDA version (got '$driver'); set CA_DRIVER_CUDA, e.g. 12.8" >&2; return 1; }
  cap_code="$(version_code "$cap")" \
    || { echo "cannot read the GPU's compute capability (got '$cap'); set CA_COMPUTE_CAP, e.g. 9.0" >&2; return 1; }
  if [ "$driver_code" -lt 1200 ]; then
    echo "driver supports CUDA $driver; CuPy for this image needs a CUDA 12 driver (R525 or newer)" >&2
    return 1
  fi
  if [ "$cap_code" -ge 1200 ] && [ "$driver_code" -lt 1208 ]; then
    echo "GPU compute capability $cap (Blackwell) needs a driver with CUDA >= 12.8, this one has $driver" >&2
    return 1
  fi
  case "$CA_CUPY_VARIANT" in
    auto | cuda12x)
      one_per_line "$CA_CUPY_CUDA12_SPEC"
      # NVRTC older than 12.8 silently targets sm_90 and fails on sm_120 at the first kernel.
      if [ "$cap_code" -ge 1200 ]; then echo "$CA_BLACKWELL_NVRTC_SPEC"; fi
      ;;
    cuda13x)
      if [ "$driver_code" -lt 1300 ]; then
        echo "CA_CUPY_VARIANT=cuda13x needs a driver with CUDA >= 13.0, this one has $driver; unset it to use cuda12x" >&2
        return 1
      fi
      one_per_line "$CA_CUPY_CUDA13_SPEC"
      ;;
    *)
      echo "CA_CUPY_VARIANT='$CA_CUPY_VARIANT' is not one of auto, cuda12x, cuda13x" >&2
      return 1
      ;;
  esac
}
