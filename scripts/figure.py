from alpacare.snake import setup
from alpacare.stages.figure import make_figure

setup(snakemake)
p = snakemake.params
make_figure(
    p.spec,
    verdict_files={tuple(key): path for key, path in zip(p.verdict_keys, snakemake.input.verdicts)},
    output_files={tuple(key): path for key, path in zip(p.output_keys, snakemake.input.outputs)},
    published_path=snakemake.input.published[0] if snakemake.input.published else None,
    validation_files=list(snakemake.input.validations),
    out=dict(snakemake.output.items()),
)
