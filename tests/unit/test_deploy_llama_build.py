"""How deploy/ compiles llama.cpp: APPLIANCE_LLAMA_BUILD picks the CMake arguments."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cmake_args(build: str, tmp_path: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "appliance.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in settings.items()))
    script = f'source deploy/lib/common.sh; ENV_FILE="{env_file}"; llama_cmake_args "{build}"'
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "APPLIANCE_DATA_DIR": str(tmp_path)}
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_default_build_is_portable_avx2(tmp_path: Path) -> None:
    args = cmake_args("avx2", tmp_path).stdout.split()
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args


@pytest.mark.parametrize(
    ("settings", "arch"),
    [({}, "native"), ({"APPLIANCE_CUDA_ARCHITECTURES": "90a"}, "90a")],
)
def test_cuda_build_takes_its_architectures_from_the_settings_file(
    tmp_path: Path, settings: dict[str, str], arch: str
) -> None:
    args = cmake_args("cuda", tmp_path, **settings).stdout.split()
    assert args == ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={arch}"]


def test_an_unknown_build_stops_the_install_with_a_clear_message(tmp_path: Path) -> None:
    result = cmake_args("native", tmp_path)  # crashed on both AMX hosts we had: not offered
    assert result.returncode == 2
    assert "APPLIANCE_LLAMA_BUILD must be avx2 or cuda, not 'native'" in result.stderr


def test_a_cuda_build_without_nvcc_stops_before_compiling(tmp_path: Path) -> None:
    script = "source deploy/lib/common.sh; require_cuda_compiler"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "APPLIANCE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "needs NVIDIA's CUDA compiler (nvcc)" in result.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvcc").write_text("#!/bin/sh\n")
    (fake / "nvcc").chmod(0o755)
    env["PATH"] = f"{fake}:/usr/bin:/bin"
    assert subprocess.run(["bash", "-c", script], cwd=ROOT, env=env).returncode == 0
