"""The README's picture of the workflow: Snakemake's own rule graph of the default config, as a
Mermaid flowchart that GitHub renders, kept in step with the rules by a test.

    python -m alpacare.rulegraph            # print the block
    python -m alpacare.rulegraph --write    # replace the ```mermaid block of README.md
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```mermaid\n.*?```\n", re.DOTALL)


def flowchart(snakemake_mermaid: str) -> str:
    """`snakemake --rulegraph mermaid-js` without its colours and numbered ids: rule names as
    nodes, edges in a stable order, so that the block changes only when the graph does."""
    names = dict(re.findall(r"^\s*(id\d+)\[(\w+)\]", snakemake_mermaid, re.MULTILINE))
    edges = sorted({(names[a], names[b]) for a, b in re.findall(r"^\s*(id\d+) --> (id\d+)", snakemake_mermaid, re.MULTILINE)})
    if not edges:
        raise ValueError("no edges in snakemake's rule graph: is this `snakemake --rulegraph mermaid-js` output?")
    return "```mermaid\nflowchart LR\n" + "".join(f"    {a} --> {b}\n" for a, b in edges) + "```\n"


def current(root: Path = ROOT) -> str:
    """The block for the workflow in `root` with its default config.yaml."""
    result = subprocess.run([sys.executable, "-m", "snakemake", "--rulegraph", "mermaid-js"], cwd=root,
                            capture_output=True, text=True, check=True)
    return flowchart(result.stdout)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.rulegraph", description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="replace the mermaid block of README.md")
    args = parser.parse_args(argv)
    block = current()
    if not args.write:
        print(block, end="")
        return 0
    readme = ROOT / "README.md"
    text = readme.read_text()
    if not BLOCK.search(text):
        print(f"{readme}: no ```mermaid block to replace", file=sys.stderr)
        return 1
    readme.write_text(BLOCK.sub(lambda _: block, text, count=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
