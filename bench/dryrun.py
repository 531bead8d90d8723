"""Time `snakemake -n` on the paper's full grid (configs/paper.yaml), in a fresh copy of the
project, against the default config's dry-run as the baseline of snakemake's own start-up.
The last line is the paper grid's seconds (median of --repeat runs)."""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = ["Snakefile", "config.yaml", "rules", "scripts", "schemas", "configs", "seeds", "testsets", "report", "prompts"]


def dry_run(project: Path, *args) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--quiet", "rules", *args], cwd=project,
                            capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        for name in FILES:
            src = ROOT / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, project / name)
        paper = [dry_run(project, "--configfile", "configs/paper.yaml") for _ in range(args.repeat)]
        default = [dry_run(project) for _ in range(args.repeat)]
    jobs = paper[0][1].split("total")[1].split()[0] if "total" in paper[0][1] else "?"
    paper_s = statistics.median(t for t, _ in paper)
    default_s = statistics.median(t for t, _ in default)
    print(f"default config dry-run: {default_s:.2f} s")
    print(f"paper grid dry-run:     {paper_s:.2f} s for {jobs} jobs")
    print(f"ratio paper/default:    {paper_s / default_s:.2f}x")
    print(f"{paper_s:.2f}")


if __name__ == "__main__":
    main()
