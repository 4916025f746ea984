"""The CuPy wheel chosen from the driver's CUDA version and the GPU's compute capability
(deploy/lib/cupy.sh), read from a fake nvidia-smi or from the override variables."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKES = Path(__file__).resolve().parent / "fakes"
# CuPy and only the CUDA components the daemon loads (not [ctk]'s cuBLAS, cuSPARSE, cuSOLVER,
# cuRAND): the same set as pyproject.toml's `gpu` extra.
CUDA12 = ["cupy-cuda12x>=14,<15", "cuda-toolkit[cudart,nvrtc,cufft]==12.*"]
NVRTC128 = "cuda-toolkit[nvrtc]>=12.8,<13"
CUDA13 = ["cupy-cuda13x>=14,<15", "cuda-toolkit[cudart,nvrtc,cufft]==13.*"]


def choose(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "nvidia-smi").exists():
        (bin_dir / "nvidia-smi").symlink_to(FAKES / "nvidia-smi")
    script = f'set -euo pipefail; source "{REPO}/deploy/lib/cupy.sh"; select_cupy_spec'
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": f"{bin_dir}:/usr/bin:/bin", **env},
    )


@pytest.mark.parametrize(
    ("gpu", "driver", "cap", "variant", "expected"),
    [
        ("RTX 5090 on R570", "12.8", "12.0", "auto", [*CUDA12, NVRTC128]),
        ("RTX 5090 on R580", "13.0", "12.0", "auto", [*CUDA12, NVRTC128]),
        ("H100 on R570", "12.8", "9.0", "auto", CUDA12),
        ("A100 on R535", "12.2", "8.0", "auto", CUDA12),
        ("RTX 4090 on R550", "12.4", "8.9", "cuda12x", CUDA12),
        ("H100 on R580, cuda13x asked", "13.0", "9.0", "cuda13x", CUDA13),
        ("B200 on R580, cuda13x asked", "13.1", "10.0", "cuda13x", CUDA13),
    ],
)
def test_wheel_for_driver_and_gpu(tmp_path, gpu, driver, cap, variant, expected) -> None:
    done = choose(tmp_path, FAKE_DRIVER_CUDA=driver, FAKE_CC=cap, CA_CUPY_VARIANT=variant)
    assert done.returncode == 0, f"{gpu}: {done.stderr}"
    assert done.stdout.split() == expected, gpu


@pytest.mark.parametrize(
    ("case", "driver", "cap", "variant", "reason"),
    [
        (
            "Blackwell on a CUDA 12.4 driver",
            "12.4",
            "12.0",
            "auto",
            "needs a driver with CUDA >= 12.8",
        ),
        ("cuda13x forced on R570", "12.8", "9.0", "cuda13x", "needs a driver with CUDA >= 13.0"),
        ("CUDA 11 driver", "11.8", "8.6", "auto", "needs a CUDA 12 driver"),
        ("unknown variant", "12.8", "9.0", "rocm", "is not one of auto, cuda12x, cuda13x"),
    ],
)
def test_refused_combinations_say_why(tmp_path, case, driver, cap, variant, reason) -> None:
    done = choose(tmp_path, FAKE_DRIVER_CUDA=driver, FAKE_CC=cap, CA_CUPY_VARIANT=variant)
    assert done.returncode != 0, case
    assert reason in done.stderr, (case, done.stderr)
    assert done.stdout == ""


def test_overrides_win_over_nvidia_smi(tmp_path) -> None:
    done = choose(
        tmp_path,
        FAKE_DRIVER_CUDA="12.4",
        FAKE_CC="8.0",
        CA_DRIVER_CUDA="13.0",
        CA_COMPUTE_CAP="12.0",
        CA_CUPY_VARIANT="cuda13x",
    )
    assert done.stdout.split() == CUDA13


def test_full_spec_override_is_taken_verbatim(tmp_path) -> None:
    done = choose(tmp_path, FAKE_DRIVER_CUDA="11.0", CA_CUPY_SPEC="cupy-cuda12x==13.6.0 fastrlock")
    assert done.returncode == 0
    assert done.stdout.split() == ["cupy-cuda12x==13.6.0", "fastrlock"]


def test_unreadable_nvidia_smi_names_the_override(tmp_path) -> None:
    done = choose(tmp_path, FAKE_GPU="none")
    assert done.returncode != 0
    assert "CA_DRIVER_CUDA" in done.stderr


def test_deploy_installs_what_the_gpu_extra_names() -> None:
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extra["gpu"] == CUDA12
    assert not any("[ctk]" in requirement for requirement in (*CUDA12, *CUDA13))
