# The replay bundle (alpacare/bundle.py): `snakemake ... bundle` packs the configuration, the
# cached replies every verdict used, the environment and a manifest of every table and figure
# into results/bundle/, from which a reviewer without keys rebuilds them byte for byte.
import glob

# the environment's lock files (hashed requirements); a lock file added under requirements/ is picked up
BUNDLE_LOCKS = sorted(glob.glob("requirements/*.txt") + glob.glob("requirements/*.lock"))


def bundle_results():
    """Every table and figure the report, figure and leaderboard rules write for this config."""
    if not VERDICTS:
        return []
    files = [str(f) for f in rules.report.output]
    files += [str(f).format(figure=name) for name in FIGURES for f in rules.figure.output]
    files += [str(f).format(judge=j, reference=r, testset=t) for j, r, t in BOARDS for f in rules.leaderboard.output]
    return files


def public_inputs():
    """What each public input the compared cells read is pinned to."""
    pins = {f"testsets.{t}": published.params(config["testsets"][t]["url"])
            for t in TESTSETS if "url" in config["testsets"][t]}
    for g, t in OUTPUTS:
        where = config["generators"][g].get("import", {}).get(t)
        if where:
            pins[f"generators.{g}.import.{t}"] = published.params(where)
    return pins


rule bundle:
    input:
        verdicts=list(VERDICTS.values()),
        results=bundle_results(),
        locks=BUNDLE_LOCKS,
        configfiles=[str(f) for f in workflow.configfiles],
        code=code("bundle"),
    output:
        directory("results/bundle"),
    params:
        config=config,   # the whole configuration: the bundle records it
        inputs=public_inputs(),
    localrule: True
    conda:
        ENVS["api"]
    log:
        "results/logs/bundle.log",
    script:
        "../scripts/bundle.py"
