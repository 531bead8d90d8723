# medAlpaca's USMLE self-assessment: questions -> answers per (method, generator) -> table + figure.
#   results/usmle/questions.jsonl, questions_summary.json   the questions asked, counts per step
#   results/usmle/{generation,loglik}/{generator}.jsonl     one row per question: prediction, correct
#   results/tables/usmle.{csv,md}, results/figures/usmle.png
from alpacare.usmle.plan import generator_kind, generators_by_method
from alpacare.usmle.questions import is_official_layout, official_files, parse_source

USMLE = config.get("usmle")
USMLE_PLAN = generators_by_method(config, CONFIG_SOURCE)
USMLE_TARGETS = ["results/tables/usmle.csv", "results/tables/usmle.md", "results/figures/usmle.png"] if USMLE_PLAN else []


def usmle_source_files():
    """The project files a local questions source reads (none for a URL or the hub)."""
    kind, path = parse_source(USMLE["questions"]["source"])
    if kind != "path":
        return []
    return [f"{path}/{name}" for name in official_files()] if is_official_layout(path) else [path]


def usmle_model(generator):
    """(inputs, spec) of a generator that answers: its model directory and, for an LLM, the
    public part of its spec (the provider and model; never a key or a price)."""
    spec = config["generators"][generator]
    if "model" in spec:
        return {"model": f"results/checkpoints/{spec['model']}"}, {"provider": "local"}
    if "backbone" in spec:
        return {"model": backbone_dir(spec["backbone"])}, {"provider": "local"}
    return llm_inputs(spec["llm"]), public(config["llms"][spec["llm"]])


def usmle_names(method, local_model=True):
    """A wildcard constraint: the generators a method asks whose jobs run a local model
    (SLURM) or call an API (the submit host)."""
    chosen = [g for g in USMLE_PLAN.get(method, []) if placement.runs_on_cluster(config, "generators", g) == local_model]
    return "|".join(map(re.escape, sorted(chosen))) or "(?!)"


def usmle_setting(method, key):
    return USMLE["methods"][method].get(key, USMLE.get(key))


def usmle_answer_inputs(method):
    return lambda w: {
        "questions": "results/usmle/questions.jsonl",
        "template": usmle_setting(method, "prompt"),
        **usmle_model(w.generator)[0],
    }


if USMLE_PLAN:

    rule usmle_questions:
        input:
            files=usmle_source_files(),
            code=code("stages.usmle", "usmle.questions"),
        output:
            questions="results/usmle/questions.jsonl",
            summary="results/usmle/questions_summary.json",
        params:
            source=USMLE["questions"],
        localrule: True
        conda:
            ENVS["api"]
        log:
            "results/logs/usmle/questions.log",
        script:
            "../scripts/usmle_questions.py"

    rule usmle_generation:
        input:
            unpack(usmle_answer_inputs("generation")),
            code=code("stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints", "hardware"),
        output:
            "results/usmle/generation/{generator}.jsonl",
        wildcard_constraints:
            generator=usmle_names("generation"),
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: usmle_model(w.generator)[1],
            max_new_tokens=lambda w: usmle_setting("generation", "max_new_tokens"),
        threads: model_threads("generate", generator_backbone)
        resources:
            **model_resources("generate", generator_backbone),
        conda:
            ENVS["train"]
        log:
            "results/logs/usmle/generation/{generator}.log",
        script:
            "../scripts/usmle_generation.py"

    # API models answer on the submit host (it has the internet): the same rule, run locally
    use rule usmle_generation as usmle_generation_api with:
        wildcard_constraints:
            generator=usmle_names("generation", local_model=False),
        conda:
            ENVS["api"]
        localrule: True

    rule usmle_loglik:
        input:
            unpack(usmle_answer_inputs("loglik")),
            code=code("stages.usmle", "stages.common", "usmle.answers", "template", "data", "llm", "checkpoints", "hardware"),
        output:
            "results/usmle/loglik/{generator}.jsonl",
        wildcard_constraints:
            generator=usmle_names("loglik"),
        params:
            kind=lambda w: generator_kind(config, w.generator),
            spec=lambda w: usmle_model(w.generator)[1],
            normalisation=lambda w: usmle_setting("loglik", "normalisation"),
        threads: model_threads("generate", generator_backbone)
        resources:
            **model_resources("generate", generator_backbone),
        conda:
            ENVS["train"]
        log:
            "results/logs/usmle/loglik/{generator}.log",
        script:
            "../scripts/usmle_loglik.py"

    USMLE_ANSWERS = {(m, g): f"results/usmle/{m}/{g}.jsonl" for m, gs in USMLE_PLAN.items() for g in gs}

    rule usmle_report:
        input:
            answers=list(USMLE_ANSWERS.values()),
            summary="results/usmle/questions_summary.json",
            published=USMLE["published"],
            code=code("stages.usmle", "usmle.scores"),
        output:
            csv=report("results/tables/usmle.csv", caption="../report/usmle_table.rst", category="USMLE"),
            md="results/tables/usmle.md",
            figure=report("results/figures/usmle.png", caption="../report/usmle.rst", category="USMLE"),
        params:
            answer_keys=[list(k) for k in USMLE_ANSWERS],
            published_names=USMLE.get("published_names", {}),
        localrule: True
        conda:
            ENVS["report"]
        log:
            "results/logs/usmle/report.log",
        script:
            "../scripts/usmle_report.py"
