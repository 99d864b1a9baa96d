"""model/kernels.py: the experiment tools pin torch's CPU kernels to AVX2 on x86-64, so that machines with and
without AVX-512 compute the same numbers; a user's own choice wins."""
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
X86_AVX2 = platform.machine().lower() in ("x86_64", "amd64") and " avx2" in Path("/proc/cpuinfo").read_text()
PROBE = ("import json, sys; sys.argv = ['x']; import {module}; import torch; a = torch.randn(64, 64); "
         "print(json.dumps({{'capability': torch.backends.cpu.get_cpu_capability(), "
         "'env': {{k: __import__('os').environ.get(k) for k in ('ATEN_CPU_CAPABILITY', 'DNNL_MAX_CPU_ISA', "
         "'MKL_CBWR')}}}}))")


def probe(module: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("ATEN_CPU_CAPABILITY", "DNNL_MAX_CPU_ISA", "MKL_CBWR", "FROSTLINE_NATIVE_KERNELS")}
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module)], cwd=REPO, env={**clean, **env},
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(not X86_AVX2, reason="the pinning applies to x86-64 processors with AVX2")
@pytest.mark.parametrize("module", ["tools.bench_fidelity", "tools.pretrain_clip", "tools.demo"])
def test_experiment_tools_run_torch_on_avx2_kernels(module):
    got = probe(module)
    assert got["capability"] == "AVX2"
    assert got["env"] == {"ATEN_CPU_CAPABILITY": "avx2", "DNNL_MAX_CPU_ISA": "AVX2", "MKL_CBWR": "AVX2"}


@pytest.mark.skipif(not X86_AVX2, reason="the pinning applies to x86-64 processors with AVX2")
def test_the_users_choice_wins_and_native_kernels_turn_pinning_off():
    assert probe("tools.bench_fidelity", ATEN_CPU_CAPABILITY="default")["capability"] == "DEFAULT"
    native = probe("tools.bench_fidelity", FROSTLINE_NATIVE_KERNELS="1")
    assert native["env"] == {"ATEN_CPU_CAPABILITY": None, "DNNL_MAX_CPU_ISA": None, "MKL_CBWR": None}
    assert native["capability"] == probe("torch")["capability"]          # whatever this processor offers


def test_an_output_folder_of_other_kernels_is_refused(tmp_path, monkeypatch):
    from tools import bench_fidelity as bf
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    bf.same_kernels(tmp_path)
    bf.same_kernels(tmp_path)                                            # the same kernels: resumes
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    with pytest.raises(SystemExit, match="other CPU kernels"):
        bf.same_kernels(tmp_path)
    assert json.loads((tmp_path / "kernels.json").read_text())["ATEN_CPU_CAPABILITY"] == "avx2"
