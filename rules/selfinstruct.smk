# Self-instruct: seed tasks -> generated tasks -> deduplicated tasks -> responses (+ the dataset card).
from alpacare.selfinstruct import OFFICIAL as selfinstruct_official, OFFICIAL_PROMPT, OFFICIAL_SYSTEM

SI = config.get("selfinstruct", {})
SI_DEDUP = SI.get("dedup", {})


def si_prompt():
    """The generation prompt template: the config's, or the default for the prompting mode."""
    return SI.get("prompt") or {"list": "prompts/selfinstruct/list.txt", "fields": "prompts/selfinstruct/fields.txt"}[SI.get("prompting", "list")]


def si_files(**files):
    """Named input files, leaving out the ones a config switched off (null) and AlpaCare's own
    prompts (alpacare-official), which the job downloads: their pins are the rule's params."""
    return {k: v for k, v in files.items() if v and v != selfinstruct_official}


def si_official_pins():
    """The published files behind `alpacare-official` prompts: a new pin reruns generation."""
    wanted = {"prompt": (si_prompt(), OFFICIAL_PROMPT),
              "system": (SI.get("system_prompt") if SI.get("prompting") == "list" else None, OFFICIAL_SYSTEM)}
    return {k: published.params(ref) for k, (value, ref) in wanted.items() if value == selfinstruct_official}


rule generate_tasks:
    input:
        unpack(lambda w: {"seeds": "results/selfinstruct/seeds.jsonl", **llm_inputs(SI["teacher"]),
                          **si_files(prompt=si_prompt(),
                                     system=SI.get("system_prompt") if SI.get("prompting") == "list" else None)}),
        code=code("stages.selfinstruct", "stages.common", "selfinstruct", "llm", "checkpoints", "hardware", "dedup", "rouge", "data"),
    output:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        rejects="results/selfinstruct/rejects.jsonl",
        summary="results/selfinstruct/generation.json",
    params:
        teacher=SI.get("teacher"),
        spec=public(config["llms"][SI["teacher"]]) if SI else None,
        prompting=SI.get("prompting"),
        run_seed=config["run_seed"],
        requests=SI.get("requests"),
        target_tasks=SI.get("target_tasks"),
        # with a target, generation stops on the dedup's count, so the dedup settings decide the output
        dedup=SI_DEDUP if SI.get("target_tasks") else None,
        examples_per_request=SI.get("examples_per_request"),
        tasks_per_request=SI.get("tasks_per_request"),
        sampling=SI.get("sampling"),
        official_prompts=si_official_pins(),
    threads: model_threads("selfinstruct", llm_backbone(SI.get("teacher")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("teacher"))),
    conda:
        llm_env(SI.get("teacher"))
    localrule: calls_api(SI.get("teacher"))
    log:
        "results/logs/selfinstruct/generate_tasks.log",
    script:
        "../scripts/generate_tasks.py"


rule dedup:
    input:
        tasks="results/selfinstruct/tasks.raw.jsonl",
        seeds="results/selfinstruct/seeds.jsonl",
        code=code("stages.selfinstruct", "dedup", "rouge"),
    output:
        tasks="results/selfinstruct/tasks.jsonl",
        report="results/selfinstruct/dedup_report.json",
    params:
        threshold=SI_DEDUP.get("threshold"),
        policy=SI_DEDUP.get("policy"),
        target_tasks=SI.get("target_tasks"),
    localrule: True
    conda:
        ENVS["api"]
    log:
        "results/logs/selfinstruct/dedup.log",
    script:
        "../scripts/dedup.py"


rule respond:
    input:
        unpack(lambda w: {"tasks": "results/selfinstruct/tasks.jsonl", **llm_inputs(SI["responder"]),
                          **si_files(system=SI.get("responder_system_prompt"))}),
        code=code("stages.selfinstruct", "stages.common", "selfinstruct", "data", "llm", "checkpoints", "hardware"),
    output:
        "results/selfinstruct/responses.jsonl",
    params:
        responder=SI.get("responder"),
        spec=public(config["llms"][SI["responder"]]) if SI else None,
        sampling=SI.get("response_sampling"),
        run_seed=config["run_seed"],
    threads: model_threads("selfinstruct", llm_backbone(SI.get("responder")))
    resources:
        **model_resources("selfinstruct", llm_backbone(SI.get("responder"))),
    conda:
        llm_env(SI.get("responder"))
    localrule: calls_api(SI.get("responder"))
    log:
        "results/logs/selfinstruct/respond.log",
    script:
        "../scripts/respond.py"


SI_DATASETS = [n for n, spec in config.get("datasets", {}).items() if spec.get("source") == "selfinstruct"]


rule dataset_card:
    wildcard_constraints:
        dataset="|".join(re.escape(n) for n in SI_DATASETS) or "(?!)",
    input:
        seeds="results/selfinstruct/seeds.jsonl",
        summary="results/selfinstruct/generation.json",
        rejects="results/selfinstruct/rejects.jsonl",
        report="results/selfinstruct/dedup_report.json",
        responses="results/selfinstruct/responses.jsonl",
        code=code("stages.stats", "stats", "data", "seeds", "selfinstruct"),
    output:
        "results/data/{dataset}.card.md",
    params:
        seed_sources=config.get("seeds"),
        responder=lambda w: {"name": SI.get("responder"), **public(config["llms"][SI["responder"]]),
                             "sampling": SI.get("response_sampling"), "system_prompt": SI.get("responder_system_prompt")},
    localrule: True
    conda:
        ENVS["report"]
    log:
        "results/logs/dataset_card/{dataset}.log",
    script:
        "../scripts/dataset_card.py"
