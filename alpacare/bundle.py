"""The replay bundle: what a reviewer without API keys needs to rebuild every results table and
figure byte for byte (`snakemake ... bundle` writes it to results/bundle/).

    results/bundle/
      README.md      the three replay commands
      config.yaml    the run's whole configuration as it ran (config files and --config merged)
      configs/       the config files given with --configfile, as they were
      cache.jsonl    every cached reply the results depend on: {"key", "response"}, one a line, by key
      lock/          the environment: the project's lock files and environment.txt (what was installed)
      manifest.json  SHA-256 of every verdict file, table and figure the bundle rebuilds; the
                     published inputs (pinned by checksum, downloaded again on replay): test
                     sets, imported outputs, official seeds and teacher and judge prompts

Which replies the results depend on is read from what the jobs recorded, not from the cache's
storage: the verdict rows (`cache_keys`: each attempt's cache entry) and the list every LLM job
writes beside its output (results/replies/<output>.keys: the teacher's tasks, the responses,
the generations, the judgments), so the bundle holds exactly those, for any config, and works
with any cache that answers `get` and `put` by key. Public inputs are not copied: the replay
downloads them again from their commit-pinned addresses, refused unless their checksums match
(alpacare/published.py; ALPACARE_MIRROR for an offline copy).

Replay (python -m alpacare.bundle --help):
    python -m alpacare.bundle restore results/bundle     # the replies into the config's cache
    snakemake --cores all --configfile results/bundle/config.yaml --config 'llm={replay_only: true}'
    python -m alpacare.bundle verify results/bundle      # every file byte-identical, or the ones that differ
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import shutil
import sys
from pathlib import Path

import yaml

from .io import read_jsonl, write_json, write_text

README = """# Replay bundle

Rebuilds every table and figure of this run without an API key, from the cached replies below.
From the root of an alpacare checkout (the same code; `lock/` lists the environment it ran in):

```bash
python -m alpacare.bundle restore {bundle}
snakemake --cores all --configfile {bundle}/config.yaml --config 'llm={{replay_only: true}}'
python -m alpacare.bundle verify {bundle}
```

`restore` puts the {replies} cached replies into the cache the config names ({cache}); the
run answers every LLM request (teacher, responses, generations, judges) from it (replay-only: a request it lacks stops the run, naming
it); `verify` compares the rebuilt files with the SHA-256 sums in manifest.json. Public inputs
are downloaded again from their commit-pinned addresses and checked (manifest.json: inputs).
"""


class BundleError(ValueError):
    pass


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def used_keys(verdict_files) -> list[str]:
    """Every cache key the verdict rows name, once, sorted."""
    keys = set()
    for path in verdict_files:
        for n, row in enumerate(read_jsonl(path)):
            if "cache_keys" not in row:
                raise BundleError(f"{path}: row {n} names no cache_keys (a verdict written before they were "
                                  "recorded): rerun its judge job to record them, e.g. snakemake -R judge")
            keys.update(row["cache_keys"])
    return sorted(keys)


def reply_lists(root: str | Path = ".") -> list[Path]:
    """The reply lists (alpacare.snake.replies_file) of the outputs that exist under `root`;
    a list whose output is gone (another config's, since removed) is left out."""
    from .snake import REPLIES

    lists = []
    for path in sorted(Path(root, REPLIES).rglob("*.keys")):
        output = Path(root, "results", path.relative_to(Path(root, REPLIES)).as_posix()[: -len(".keys")])
        if output.exists():
            lists.append(path)
    return lists


def listed_keys(lists) -> dict[str, Path]:
    """Every cache key the reply lists name -> the (first) list naming it."""
    keys: dict[str, Path] = {}
    for path in lists:
        for line in Path(path).read_text().splitlines():
            if line.strip():
                keys.setdefault(line.strip(), Path(path))
    return keys


def environment() -> str:
    """name==version of every installed distribution, sorted: what ran, beside the lock files."""
    seen = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return f"# python {sys.version.split()[0]}\n" + "".join(line + "\n" for _, line in sorted(seen.items()))


def write_bundle(out, *, config: dict, configfiles, cache, verdict_files, result_files, lock_files,
                 inputs: dict | None = None, replies=()) -> None:
    """The bundle directory `out` (module docstring); cache: an object with get(key) -> Response
    or None (alpacare.llm.Cache); result_files: the tables and figures to rebuild (paths under
    results/); inputs: what each public input was pinned to (for the record); replies: the
    jobs' reply lists (reply_lists())."""
    out = Path(out)
    needed = {key: None for key in used_keys(verdict_files)} | {k: v for k, v in listed_keys(replies).items()}
    lines, missing = [], []
    for key in sorted(needed):
        response = cache.get(key)
        if response is None:
            missing.append(key)
        else:
            lines.append(json.dumps({"key": key, "response": response.to_json()}, ensure_ascii=False, sort_keys=True))
    if missing:
        where = sorted({str(needed[k]) if needed[k] else "the verdicts" for k in missing})
        raise BundleError(f"{len(missing)} reply(ies) the results depend on are not in the cache ({', '.join(k[:12] for k in missing[:5])}"
                          f"{', ...' if len(missing) > 5 else ''}; named by {', '.join(where[:5])}): failed calls are never "
                          "cached, and a replay would stop there; rerun those jobs with a key until every request has its reply")
    if out.exists():
        shutil.rmtree(out)
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write_text(tmp / "cache.jsonl", "".join(line + "\n" for line in lines))
    write_text(tmp / "config.yaml", "# the run's whole configuration, as it ran (alpacare.bundle)\n"
               + yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    for path in configfiles:
        (tmp / "configs").mkdir(exist_ok=True)
        shutil.copy(path, tmp / "configs" / Path(path).name)
    (tmp / "lock").mkdir()
    for path in lock_files:
        shutil.copy(path, tmp / "lock" / Path(path).name)
    write_text(tmp / "lock" / "environment.txt", environment())
    files = {str(p): sha256(p) for p in [*verdict_files, *result_files]}
    write_json(tmp / "manifest.json", {"replies": len(lines), "files": files, "inputs": inputs or {}})
    write_text(tmp / "README.md", README.format(bundle=out, replies=len(lines), cache=config.get("llm", {}).get("cache")))
    tmp.rename(out)


def restore(bundle, cache) -> int:
    """Put the bundle's replies into `cache` (anything with put(key, request, response)); the
    count. A reply's request is not in the bundle (its key is its identity): it is stored as
    {"restored_from": <bundle>}."""
    from .llm import Response

    path = Path(bundle) / "cache.jsonl"
    if not path.exists():
        raise BundleError(f"{bundle}: no cache.jsonl: not a replay bundle (snakemake ... bundle writes one)")
    entries = read_jsonl(path)
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or "response" not in entry:
            raise BundleError(f"{path}: line {n + 1}: needs 'key' and 'response'")
        cache.put(entry["key"], {"restored_from": str(bundle)}, Response.from_json(entry["response"]))
    return len(entries)


def verify(bundle, root: str | Path = ".") -> list[str]:
    """The files (relative to root) whose bytes differ from the manifest's, or are missing."""
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    bad = []
    for path, digest in manifest["files"].items():
        full = Path(root, path)
        if not full.exists():
            bad.append(f"{path}: missing")
        elif sha256(full) != digest:
            bad.append(f"{path}: differs")
    return bad


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m alpacare.bundle", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    put = sub.add_parser("restore", help="put the bundle's cached replies into the cache its config names")
    put.add_argument("bundle")
    put.add_argument("--cache", help="the cache to fill (default: llm.cache of the bundle's config.yaml)")
    check = sub.add_parser("verify", help="compare the rebuilt results with the bundle's manifest")
    check.add_argument("bundle")
    args = parser.parse_args(argv)
    try:
        if args.command == "restore":
            from .llm import Cache

            where = args.cache or (yaml.safe_load((Path(args.bundle) / "config.yaml").read_text()).get("llm") or {}).get(
                "cache", ".cache/llm.sqlite")
            count = restore(args.bundle, Cache(where))
            print(f"{count} cached replies restored into {where}")
            return 0
        bad = verify(args.bundle)
        files = len(json.loads((Path(args.bundle) / "manifest.json").read_text())["files"])
        if bad:
            print(f"{len(bad)} of {files} files differ from the bundle:\n" + "\n".join(bad), file=sys.stderr)
            return 1
        print(f"all {files} files byte-identical to the bundle")
        return 0
    except (BundleError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
