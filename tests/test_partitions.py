"""Jobs no node could ever run are found from sinfo's output before anything is submitted,
each named with the config key that decides its request."""

import pytest

from alpacare.partitions import ImpossibleRequest, Job, check, impossible, parse_gres, parse_minutes, parse_sinfo

# sinfo --noheader --Node --format=%N|%P|%c|%m|%G|%l on a small two-partition cluster
SINFO = """\
node1|main*|2|24105|gpu:fake:2|infinite
node2|main*|2|24105|gpu:fake:2|infinite
gpu1|gpu|32|512000|gpu:a100:4(S:0-1),gpu:v100:2|2-00:00:00
gpu1|long|32|512000|gpu:a100:4(S:0-1),gpu:v100:2|7-00:00:00
"""


def job(rule="generate", threads=2, mem_mb=1000, runtime=60, gpu=0, gpu_model=None, partition=None, name=None):
    return Job(name or f"rule {rule} (generator=g, testset=t)", rule, threads, mem_mb, runtime, gpu, gpu_model, partition)


def test_parse_sinfo_lines():
    nodes = parse_sinfo(SINFO)
    assert [(n.name, n.partition, n.default) for n in nodes] == [
        ("node1", "main", True), ("node2", "main", True), ("gpu1", "gpu", False), ("gpu1", "long", False)]
    assert nodes[0].gpus == {"fake": 2} and nodes[0].time_limit is None and nodes[0].memory_mb == 24105
    assert nodes[2].gpus == {"a100": 4, "v100": 2} and nodes[2].time_limit == 2 * 1440


@pytest.mark.parametrize("text, minutes", [("infinite", None), ("UNLIMITED", None), ("30", 30), ("30:00", 30),
                                           ("2:00:00", 120), ("1-00:00:00", 1440), ("1-12", 2160),
                                           ("3-04:05", 3 * 1440 + 245), ("0:30", 1)])
def test_parse_time_limits(text, minutes):
    assert parse_minutes(text) == minutes


def test_parse_gres():
    assert parse_gres("(null)") == {} and parse_gres("gpu:3") == {"": 3}
    assert parse_gres("gpu:a100:4(S:0-1),mps:100") == {"a100": 4}


def test_jobs_that_fit_pass():
    assert impossible([job(), job(gpu=2, threads=2), job(partition="gpu", gpu=4, gpu_model="a100", threads=32,
                                                         mem_mb=400000, runtime=2880)], parse_sinfo(SINFO)) == []


def test_the_default_four_cpus_on_two_cpu_nodes_names_cluster_cpus():
    """The issue's case: cluster.cpus 4 on 2-CPU nodes sits in the queue forever."""
    jobs = [job(threads=4), job(threads=4, name="rule generate (generator=h, testset=t)"),
            job(rule="judge", threads=4, name="rule judge (judge=j)")]
    tail = "asks for 4 CPUs, the most a node of the default partition (main) has is 2: lower cluster.cpus"
    assert impossible(jobs, parse_sinfo(SINFO)) == [
        f"rule generate (generator=g, testset=t) (and 1 more job(s) of this rule) {tail}",
        f"rule judge (judge=j) {tail}",
    ]


@pytest.mark.parametrize("request_, key", [
    (dict(gpu=1, threads=8), "lower cluster.cpus_per_gpu"),
    (dict(mem_mb=30000), "lower cluster.memory_mb (the job adds its model's weights to it)"),
    (dict(gpu=3), "change cluster.gpu_memory_gb"),
    (dict(rule="finetune", gpu=3), "change the model's `gpus:` (models.<name>.gpus)"),
    (dict(gpu=1, gpu_model="h100", partition="gpu", threads=8), "change cluster.gpu_model"),
    (dict(partition="gpu", runtime=3000), "3000 minutes, the time limit of partition gpu is 2880: set cluster.max_runtime"),
    (dict(partition="gpus"), "partition 'gpus' does not exist (there are: gpu, long, main): set cluster.partition"),
    (dict(partition="gpus", gpu=1), "set cluster.gpu_partition"),
])
def test_each_impossible_request_names_its_key(request_, key):
    (line,) = impossible([job(**request_)], parse_sinfo(SINFO))
    assert key in line, line


def test_check_raises_a_named_error_listing_every_rule():
    with pytest.raises(ImpossibleRequest) as err:
        check([job(threads=4), job(rule="finetune", gpu=8)], SINFO)
    message = str(err.value)
    assert "pending forever" in message and "nothing was submitted" in message
    assert "rule generate" in message and "lower cluster.cpus" in message and "models.<name>.gpus" in message
    check([], "")  # nothing planned: sinfo is not even asked


# What the code calls, as a site with drained, down and maintenance nodes prints it:
# sinfo --noheader --Node --format=%N|%P|%c|%m|%G|%l|%t
SITE = """\
c01|cpu*|64|257000|(null)|1-00:00:00|mix
c02|cpu*|64|257000|(null)|1-00:00:00|drain
c03|cpu*|128|514000|(null)|1-00:00:00|down*
g01|gpu|64|512000|gpu:a100:4(S:0-1)|1-00:00:00|idle
g02|gpu|64|512000|gpu:a100:8(S:0-1)|1-00:00:00|drng
g03|gpu|64|512000|gpu:a100:8(S:0-1)|1-00:00:00|maint
g04|gpu|64|512000|gpu:a100:8(S:0-1)|1-00:00:00|fail
o01|old|16|64000|(null)|4:00:00|drain*
o02|old|16|64000|(null)|4:00:00|down~
"""
# sacctmgr --noheader --parsable2 show qos format=Name,MaxWall,MaxTRESPerJob
QOS = """\
normal||
gpu-long|2-00:00:00|gres/gpu=4
short|04:00:00|cpu=16,gres/gpu:a100=2
"""


def test_drained_down_and_maintenance_nodes_are_no_capacity():
    nodes = parse_sinfo(SITE)
    assert [n.state for n in nodes[:3]] == ["mix", "drain", "down"]
    (line,) = impossible([job(partition="gpu", gpu=8, gpu_model="a100", threads=16)], nodes)
    assert "8 a100 GPUs, the most a node of partition gpu has is 4" in line
    (line,) = impossible([job(threads=100)], nodes)  # only the down node has 128 CPUs
    assert "the most a node of the default partition (cpu) has is 64" in line
    (line,) = impossible([job(partition="old")], nodes)
    assert "every one is drained, down or failed (o01 drain, o02 down)" in line
    assert impossible([job(partition="gpu", gpu=4, gpu_model="a100", threads=16)], nodes) == []


def test_a_partition_list_offers_the_nodes_of_each():
    nodes = parse_sinfo(SITE)
    assert impossible([job(partition="gpu,cpu", gpu=4, threads=16), job(partition="cpu,gpu", threads=64)], nodes) == []
    (line,) = impossible([job(partition="gpu,cpux")], nodes)
    assert "partition 'cpux' does not exist (there are: cpu, gpu, old)" in line


def test_qos_limits_from_sacctmgr_cap_gpus_and_time():
    from alpacare.partitions import parse_qos, read_qos

    assert parse_qos(QOS, "gpu-long").max_wall == 2880 and parse_qos(QOS, "gpu-long").max_gpus == 4
    assert parse_qos(QOS, "short").max_wall == 240 and parse_qos(QOS, "short").max_gpus == 2
    assert parse_qos(QOS, "normal").max_wall is None and parse_qos(QOS, "none") is None
    nodes = parse_sinfo(SITE)
    (line,) = impossible([job(partition="gpu", gpu=4, threads=16)], nodes, read_qos("short", QOS))
    assert "4 GPUs, QOS short allows 2 per job" in line and "cluster.qos" in line
    (line,) = impossible([job(runtime=300)], nodes, read_qos("short", QOS))
    assert "300 minutes, QOS short allows 240 per job" in line
    assert impossible([job(partition="gpu", gpu=4, threads=16)], nodes, read_qos("gpu-long", QOS)) == []


def test_check_returns_the_time_limits_every_retry_is_capped_by(monkeypatch):
    from alpacare import cluster
    from alpacare.partitions import time_limits

    nodes = parse_sinfo(SITE)
    assert time_limits(nodes, [None, "gpu", "gpu,cpu", "old"]) == {None: 1440, "gpu": 1440, "gpu,cpu": 1440, "old": 240}
    assert time_limits(parse_sinfo(SINFO), [None, "long"]) == {"long": 7 * 1440}  # main is unlimited
    monkeypatch.setattr(cluster, "_time_limits", {})
    limits = check([job(partition="gpu", gpu=4, threads=16)], SITE, qos="short", sacctmgr_text=QOS.replace("gres/gpu:a100=2", ""))
    assert limits == {"gpu": 240} and cluster._time_limits == {"gpu": 240}


def test_without_sinfo_the_error_is_named(monkeypatch, tmp_path):
    from alpacare.partitions import SlurmUnavailable

    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SlurmUnavailable, match="`sinfo` is not on this host's PATH"):
        check([job()])
    from alpacare.partitions import read_qos

    assert read_qos("normal") is None  # sacctmgr missing: no QOS limits, not an error
