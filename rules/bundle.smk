# The replay bundle (alpacare/bundle.py): `snakemake ... bundle` packs the configuration, the
# cached replies every LLM job used (results/replies/), the environment and a manifest of every table and figure
# into results/bundle/, from which a reviewer without keys rebuilds them byte for byte.
import glob

# the environment's lock files (hashed requirements); a lock file added under requirements/ is picked up
BUNDLE_LOCKS = sorted(glob.glob("requirements/*.txt") + glob.glob("requirements/*.lock"))


rule bundle:
    """The replay bundle: the config, the cached replies every LLM job used, the environment, a manifest of every result."""
    input:
        verdicts=list(VERDICTS.values()),
        results=bundle_results(),
        locks=BUNDLE_LOCKS,
        configfiles=[str(f) for f in workflow.configfiles],
        code=code("bundle"),
    output:
        directory("results/bundle"),
    log:
        "results/logs/bundle.log",
    localrule: True
    conda:
        ENVS["api"]
    params:
        config=config,  # the whole configuration: the bundle records it
        inputs=planning.public_inputs(config, TESTSETS, OUTPUTS, sorted({j for j, _, _, _ in VERDICTS})),
    script:
        "../scripts/bundle.py"
