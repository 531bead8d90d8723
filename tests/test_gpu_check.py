"""bench/gpu_check.py, the GPU machine's check, runs end to end on the CPU with the tiny model
(--tiny --cpu): the same code paths, so it is ready the day a GPU is lent."""

import os
import re
import subprocess
import sys

from conftest import ROOT


def test_the_gpu_check_runs_on_the_cpu_with_the_tiny_model():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # alpacare found from the script's own place
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--tiny", "--cpu"],
                            capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(r"train: 4 steps of 2 x <= 96 tokens, fp32 on CPU", line) for line in lines), lines
    assert any(re.fullmatch(r"train: [\d,]+ tokens/s \([\d,]+ tokens in [\d.]+ s\)", line) for line in lines)
    assert any(re.fullmatch(r"train: loss first \d+\.\d{4}, last \d+\.\d{4}", line) for line in lines)
    # the 16-bit against fp32 comparison: on a CPU fp32 twice, the same curve
    assert any(re.fullmatch(r"precision: fp32 against fp32 over 4 steps: last loss (\d+\.\d{4}) vs \1, "
                            r"largest relative difference 0\.00e\+00", line) for line in lines), lines
    assert any(re.fullmatch(r"generate: one at a time [\d,]+ tokens/s, batched [\d,]+ tokens/s \([\d.]+x\)", line)
               for line in lines)
    # fp32 on a CPU: batching must not change a single greedy output
    assert "generate: 0 of 12 outputs differ between batched and one at a time" in lines
    assert "fsdp: skipped: needs 2 GPUs" in lines and re.fullmatch(r"done: \d+ s", lines[-1])
    assert "{'loss'" not in result.stdout  # the Trainer's per-step dicts are replaced by the progress lines


def pypi_reachable() -> bool:
    import socket

    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


def test_the_wheel_script_fetches_installs_offline_and_runs_the_check(tmp_path):
    """bench/gpu_wheels.sh for this interpreter: fetch from PyPI (the only step with network),
    install from the folder with --no-index, run the check with alpacare from the checkout."""
    import shutil

    if not pypi_reachable():
        import pytest

        pytest.skip("PyPI is not reachable from here: the wheel script's fetch needs it")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(GPU_WHEELS_DIR=str(tmp_path / "wheels"), GPU_WHEELS_PYTHON=version, PYTHON=sys.executable)
    fetch = subprocess.run([str(ROOT / "bench" / "gpu_wheels.sh"), "fetch"], capture_output=True, text=True,
                           timeout=900, env=env)
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    wheels = sorted(p.name for p in (tmp_path / "wheels").glob("*.whl"))
    assert any(w.startswith("transformers-") for w in wheels) and any(w.startswith("pyrate_limiter-") for w in wheels)
    assert not any(w.startswith(("torch-", "accelerate-", "numpy-")) for w in wheels)  # the node's own
    run = subprocess.run([str(ROOT / "bench" / "gpu_wheels.sh"), "run", "--tiny", "--cpu"], capture_output=True,
                         text=True, timeout=900, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "wheels" / f"site-{version}" / "transformers").is_dir()
    assert re.fullmatch(r"done: \d+ s", run.stdout.splitlines()[-1])
    shutil.rmtree(tmp_path / "wheels")
