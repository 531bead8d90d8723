from alpacare.snake import setup
from alpacare.stages.report import make_report

setup(snakemake)
p = snakemake.params
make_report(
    verdict_files={tuple(key): path for key, path in zip(p.verdict_keys, snakemake.input.verdicts)},
    output_files={tuple(key): path for key, path in zip(p.output_keys, snakemake.input.outputs)},
    testset_files=dict(zip(p.testsets, snakemake.input.testsets)),
    out=dict(snakemake.output.items()),
)
