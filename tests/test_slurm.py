"""The tiny configuration through a real two-node SLURM (tests/slurm/up.sh: Debian's packages,
two `slurmd` on this host, 2 CPUs each, no accounting, fake GPUs), with the test profile
tests/slurm/profile. What each job asked of SLURM, and the node it ran on, are read back from
the controller's own records (`scontrol show job`)."""

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from alpacare import cluster, ledger
from alpacare.config import validate
from alpacare.llm.cache import SHARDS
from conftest import ROOT, copy_project
from test_workflow import snakemake, tiny_config

pytestmark = pytest.mark.workflow

PROFILE = ROOT / "tests" / "slurm" / "profile"
NODES = {"node1", "node2"}  # up.sh's
UP = ROOT / "tests" / "slurm" / "up.sh"
# the rules that run a model on the tiny config (all SmolLM2, a local model) and their job counts
CLUSTER_JOBS = {"generate_tasks": 1, "respond": 1, "finetune": 1, "generate": 3, "judge": 2,
                "usmle_generation": 3, "usmle_loglik": 3}
LOCAL_RULES = {"backbone", "seeds", "testset", "dedup", "dataset", "report", "generate_api", "judge_api",
               "dataset_card", "stats", "verbs", "usmle_questions", "usmle_report", "usmle_generation_api",
               "figure", "leaderboard", "bundle"}
TUNED = "alpacare-smollm2"
STAGE = {"generate_tasks": "selfinstruct", "respond": "selfinstruct", "generate": "generate", "judge": "judge",
         "usmle_generation": "generate", "usmle_loglik": "generate"}  # cluster.runtime key of each model rule


def cluster_is_up():
    try:
        return "UP" in subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False


def unavailable():
    """Why this machine cannot run a SLURM of its own, or None."""
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[slurm]')"
    if os.geteuid() != 0 and not cluster_is_up():
        return "bringing up SLURM needs root (it writes /etc/slurm and starts daemons)"
    if not shutil.which("sbatch") and not shutil.which("apt-get"):
        return "no SLURM binaries and no apt-get to install them"
    return None


@pytest.fixture(scope="session")
def slurm():
    reason = unavailable()
    if reason:
        print(f"SLURM tests cannot run here: {reason}")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the SLURM tests: {reason}")
        pytest.skip(reason)
    if cluster_is_up() and os.geteuid() != 0:
        return
    up = subprocess.run(["bash", str(UP)], capture_output=True, text=True, timeout=900)
    assert up.returncode == 0, f"tests/slurm/up.sh failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"


def cluster_config(project, configfile):
    """The tiny config, with one GPU asked for the fine-tune and the job sizes of a small machine
    (threads as a 2-core local run uses them, so both runs compute alike). The test node's GPUs
    are device files (fake_gpus): the job holds one and trains on the CPU, as the local run does."""
    config = yaml.safe_load((project / configfile).read_text())
    config["models"][TUNED]["gpus"] = 1
    config["cluster"] = {"cpus": 2, "cpus_per_gpu": 2, "memory_mb": 1000, "fake_gpus": True,
                         "runtime": {"selfinstruct": 60, "finetune": 90, "generate": 45, "judge": 30, "default": 5}}
    (project / "slurm.yaml").write_text(yaml.safe_dump(config))
    return "slurm.yaml"


def jobs_of(project):
    """SLURM's records of the jobs submitted from `project`, oldest first (kept for MinJobAge)."""
    out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True, check=True).stdout
    records = []
    for line in out.splitlines():
        fields = dict(re.findall(r"(\S+?)=(\S*)", line))
        if fields.get("WorkDir") == str(project):
            fields["rule"] = re.match(r"rule_(\w+?)(?:_wildcards_.*)?$", fields.get("Comment", "")).group(1)
            records.append(fields)
    return sorted(records, key=lambda r: int(r["JobId"]))


def snakemake_args(configfile, *args):
    # targets before --configfile, which would take them for more config files
    return [sys.executable, "-m", "snakemake", *args, "--profile", str(PROFILE), "--configfile", configfile]


def run_with_profile(project, configfile, *args, check=True):
    return snakemake(project, *args, "--profile", str(PROFILE), "--configfile", configfile, check=check)


@pytest.fixture(scope="session")
def slurm_run_started(slurm, tmp_path_factory):
    """The tiny configuration through SLURM, started in the background so that it overlaps the
    local reference run (SLURM jobs spend much of their time waiting on the scheduler). Session
    scope, like tiny_run, so that it starts first."""
    project = copy_project(tmp_path_factory.mktemp("slurm"))
    configfile = cluster_config(project, tiny_config(project))
    with open(project / "snakemake.out", "w") as out:  # a file, not a pipe nobody reads meanwhile
        run = subprocess.Popen(snakemake_args(configfile), cwd=project, stdout=out, stderr=subprocess.STDOUT)
    return project, configfile, run


@pytest.fixture(scope="module")
def runs(slurm_run_started, tiny_run):
    """(local project, SLURM project, its config file, its snakemake output, its SLURM records)."""
    project, configfile, run = slurm_run_started
    run.wait(timeout=1800)
    output = (project / "snakemake.out").read_text()
    assert run.returncode == 0, f"snakemake --profile tests/slurm/profile failed:\n{output[-6000:]}"
    return tiny_run[0], project, configfile, output, jobs_of(project)


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def minutes(limit):
    """SLURM's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    h, m, s = map(int, clock.split(":"))
    return int(days or 0) * 1440 + h * 60 + m + s / 60


def test_model_rules_go_through_sbatch_with_their_resources(runs):
    _, project, configfile, _, jobs = runs
    submitted = {}
    for job in jobs:
        submitted[job["rule"]] = submitted.get(job["rule"], 0) + 1
    assert submitted == CLUSTER_JOBS
    assert all(job["JobState"] == "COMPLETED" for job in jobs), [(j["rule"], j["JobState"]) for j in jobs]
    config = validate(yaml.safe_load((project / configfile).read_text()))
    for job in jobs:
        if job["rule"] == "finetune":
            expected = cluster.finetune_resources(config, TUNED)
        else:
            expected = cluster.job_resources(config, STAGE[job["rule"]], "smollm2-135m")
        asks_gpu = "gres:gpu" in job.get("TresPerJob", "")
        assert asks_gpu == (job["rule"] == "finetune"), job["rule"]  # only the model whose config says gpus: 1
        if asks_gpu:
            assert job["TresPerJob"] == f"gres:gpu:{expected['gpu']}"
        assert job["MinMemoryNode"] == f"{expected['mem_mb']}M", job["rule"]
        assert minutes(job["TimeLimit"]) == expected["runtime"], job["rule"]
        assert int(job["NumCPUs"]) == expected["threads"], job["rule"]


def test_localrules_never_reach_slurm(runs):
    _, project, _, log, jobs = runs
    assert not LOCAL_RULES & {job["rule"] for job in jobs}
    for rule in ("backbone", "seeds", "testset", "dedup", "dataset", "report"):
        assert f"localrule {rule}:" in log, rule
    # the executor keeps a log per SLURM job, and only SLURM jobs have one
    assert {p.name.removeprefix("rule_") for p in (project / "results/logs/slurm").iterdir()} == set(CLUSTER_JOBS)


def test_win_rates_equal_a_local_runs_byte_for_byte(runs):
    local, project, _, _, _ = runs
    for table in ("winrates.csv", "winrates.md"):
        assert (project / "results/tables" / table).read_bytes() == (local / "results/tables" / table).read_bytes()
    for name in ("tasks.raw.jsonl", "responses.jsonl"):
        assert (project / "results/selfinstruct" / name).read_bytes() == (local / "results/selfinstruct" / name).read_bytes()


def test_jobs_of_one_run_land_on_both_nodes(runs):
    _, _, _, _, jobs = runs
    placed = {job["JobId"]: (job["rule"], job["NodeList"]) for job in jobs}
    print("jobs by node:", placed)  # the evidence, in the test log
    assert {node for _, node in placed.values()} == NODES, placed
    assert all(job["BatchHost"] == job["NodeList"] for job in jobs)


def test_jobs_on_both_nodes_share_the_cache_and_the_ledger(runs):
    """Every job wrote its own shard (named by its node) into the one cache and ledger; a
    rerun of any job reads them all."""
    local, project, _, _, jobs = runs
    cache_shards = sorted(p.name for p in (project / ".cache/llm" / SHARDS).glob("*.jsonl"))
    ledger_shards = sorted(p.name for p in (project / "results/ledger").glob("*.jsonl"))
    print("cache shards:", cache_shards, "ledger shards:", ledger_shards)
    # <time>.<rule>.<node>.<pid>.<random>: jobs on both nodes wrote into the one cache and ledger
    assert {name.split(".")[2] for name in cache_shards} >= NODES
    assert {name.split(".")[2] for name in ledger_shards} >= NODES
    # the ledger counts the same calls as the local run's, whichever node made them
    calls = lambda root: {(r["rule"], r["endpoint"]): r["calls"] + r["cache_hits"]  # noqa: E731
                          for r in ledger.summarize(root / "results/ledger")}
    assert calls(project) == calls(local)


def test_a_job_no_node_can_run_stops_the_run_before_anything_is_submitted(slurm, tmp_path):
    """The issue's case: the default cluster.cpus (4) on 2-CPU nodes would queue forever."""
    project = copy_project(tmp_path)
    config = yaml.safe_load((project / cluster_config(project, tiny_config(project))).read_text())
    config["cluster"]["cpus"] = 4
    (project / "four.yaml").write_text(yaml.safe_dump(config))
    result = run_with_profile(project, "four.yaml", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "ImpossibleRequest" in output, output[-3000:]
    assert "rule generate_tasks asks for 4 CPUs, the most a node of the default partition (main) has is 2: " \
           "lower cluster.cpus" in output, output[-3000:]
    assert jobs_of(project) == []  # nothing reached SLURM


def test_rerun_submits_nothing(runs):
    _, project, configfile, _, jobs = runs
    result = run_with_profile(project, configfile)
    assert "Nothing to be done" in result.stdout + result.stderr
    assert [j["JobId"] for j in jobs_of(project)] == [j["JobId"] for j in jobs]


def test_a_job_killed_by_scancel_is_resubmitted_by_a_rerun_and_finishes(runs):
    _, project, configfile, _, _ = runs
    target = project / "results/outputs/smollm2-base/medical-dozen.json"
    before = target.read_bytes()
    target.unlink()
    known = {j["JobId"] for j in jobs_of(project)}
    args = snakemake_args(configfile, "--retries", "0", str(target.relative_to(project)))
    with open(project / "killed.out", "w") as out:
        run = subprocess.Popen(args, cwd=project, stdout=out, stderr=subprocess.STDOUT)
    killed = None
    deadline = time.monotonic() + 600
    while killed is None and run.poll() is None and time.monotonic() < deadline:
        fresh = [j for j in jobs_of(project) if j["JobId"] not in known]
        if fresh and fresh[0]["JobState"] == "RUNNING" and "rule generate:" in read(fresh[0]["StdOut"]):
            killed = fresh[0]["JobId"]  # the job's snakemake has started the rule
            subprocess.run(["scancel", killed], check=True)
        time.sleep(0.5)
    run.wait(timeout=600)
    output = (project / "killed.out").read_text()
    assert killed, f"the generate job never ran:\n{output[-3000:]}"
    assert run.returncode != 0 and not target.exists(), output[-3000:]
    states = {j["JobId"]: j["JobState"] for j in jobs_of(project)}
    assert states[killed] == "CANCELLED"
    rerun = run_with_profile(project, configfile, str(target.relative_to(project)))
    assert target.read_bytes() == before  # greedy decoding: the same outputs
    resubmitted = [j for j in jobs_of(project) if j["JobId"] not in known | {killed}]
    assert [(j["rule"], j["JobState"]) for j in resubmitted] == [("generate", "COMPLETED")], rerun.stdout[-2000:]
