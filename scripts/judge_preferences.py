from alpacare.snake import setup
from alpacare.stages.judgevalidation import write_preferences

setup(snakemake)
p = snakemake.params
write_preferences(
    verdict_files={tuple(key): path for key, path in zip(p.verdict_keys, snakemake.input.verdicts)},
    output_files={tuple(key): path for key, path in zip(p.output_keys, snakemake.input.outputs)},
    testset_files=dict(zip(p.testsets, snakemake.input.testsets)),
    out=dict(snakemake.output.items()),
)
