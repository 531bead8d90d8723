from alpacare.snake import setup
from alpacare.stages.testsets import prepare_testset

setup(snakemake)
spec = snakemake.params.spec
prepare_testset(snakemake.output[0], path=spec.get("path"), url=spec.get("url"), hub=spec.get("hub"), limit=spec.get("limit"),
                fields=spec.get("fields"), instruction=spec.get("instruction"), match=spec.get("match", "instruction"))
