"""scripts/setup.sh (run by `bash run.sh` and `.ci/run`) says what it installs and how far it is, instead of minutes
of silence: run here with a stand-in `python` that records its calls, so nothing is installed."""
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_setup_names_each_step_and_its_time(tmp_path):
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    log = tmp_path / "calls.txt"
    (bin_ / "python").write_text(f'#!/bin/sh\necho "$@" >> {log}\ncase "$*" in *"tsam env ok"*) echo "tsam env ok";; '
                                 'esac\nexit 0\n')   # `import tsamlib` fails: not installed, so everything runs
    (bin_ / "python").chmod(0o755)
    (bin_ / "activate").write_text(f'PATH="{bin_}:$PATH"\n')
    out = subprocess.run(["bash", "scripts/setup.sh"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    steps = [ln for ln in lines if ln.startswith("[")]
    assert [s.split()[0] for s in steps] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert "torch 2.14.1" in out.stdout and "a few minutes" in out.stdout and lines[-1].startswith("installed in ")
    calls = log.read_text()
    assert "-m pip install -q -e .[dev]" in calls and "-m tsamlib.cli.kernel install" in calls
