from alpacare.snake import setup
from alpacare.stages.leaderboard import make_leaderboard

setup(snakemake)
w = snakemake.wildcards
make_leaderboard(
    w.judge, w.reference, w.testset,
    verdict_files=dict(zip(snakemake.params.models, snakemake.input.verdicts)),
    output_files=dict(zip([w.reference, *snakemake.params.models], snakemake.input.outputs)),
    out=dict(snakemake.output.items()),
)
