"""make_shards under a cluster scheduler: `--part auto` from Slurm's and Kubernetes' variables, workers from the CPU
affinity, and the progress bar only on a terminal (shards.cluster; SIGTERM: tests/test_shards_resume.py)."""
import os
import subprocess
import sys

import pytest

from shards.cluster import SchedulerError, scheduler_part, usable_cpus
from shards.generated.synthetic import make_hmdb51

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(REPO, "tools", "make_shards.py")
SCHEDULER_VARS = ("SLURM_", "JOB_COMPLETION_INDEX", "FROSTLINE_ARRAY", "FROSTLINE_PARTS")


def slurm(task, first, last, step=1, **extra):
    env = {"SLURM_JOB_ID": "77", "SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_MIN": str(first),
           "SLURM_ARRAY_TASK_MAX": str(last), "SLURM_ARRAY_TASK_STEP": str(step),
           "SLURM_ARRAY_TASK_COUNT": str((last - first) // step + 1)}
    return {**env, **extra}


@pytest.mark.parametrize("env,part", [
    (slurm(0, 0, 1), (1, 2)), (slurm(1, 0, 1), (2, 2)),                  # --array=0-1
    (slurm(1, 1, 2), (1, 2)), (slurm(2, 1, 2), (2, 2)),                  # --array=1-2
    (slurm(7, 0, 7), (8, 8)), (slurm(10, 0, 10, step=5), (3, 3)),        # --array=0-10:5
    (slurm(1, 1, 1, FROSTLINE_ARRAY="0-1"), (2, 2)),                     # task 1 of --array=0-1, resubmitted alone
    (slurm(4, 4, 4, FROSTLINE_ARRAY="1-4"), (4, 4)),
    ({"JOB_COMPLETION_INDEX": "0", "FROSTLINE_PARTS": "3"}, (1, 3)),     # Kubernetes indexed Job, completions: 3
    ({"JOB_COMPLETION_INDEX": "2", "FROSTLINE_PARTS": "3"}, (3, 3)),
])
def test_part_auto_takes_the_part_from_the_schedulers_variables(env, part):
    assert scheduler_part(env) == part


@pytest.mark.parametrize("env,message", [
    ({}, "needs a Slurm array task (SLURM_ARRAY_TASK_ID) or a Kubernetes indexed Job (JOB_COMPLETION_INDEX)"),
    ({"SLURM_JOB_ID": "5"}, "Slurm job 5 is not an array task; submit it with sbatch --array=0-N"),
    ({"SLURM_ARRAY_TASK_ID": "0"}, "SLURM_ARRAY_TASK_MIN is not set"),
    ({**slurm(0, 0, 1), "SLURM_ARRAY_TASK_ID": "x"}, "SLURM_ARRAY_TASK_ID must be an integer, got 'x'"),
    ({**slurm(1, 1, 7), "SLURM_ARRAY_TASK_COUNT": "3"}, "the Slurm array is not one evenly spaced range"),  # 1,3,7
    (slurm(1, 1, 1), "array task 1 is an array of one task (sbatch --array=1); to resubmit a task of a bigger "
                     "array, set FROSTLINE_ARRAY"),
    (slurm(5, 5, 5, FROSTLINE_ARRAY="0-3"), "array task 5 is not in the conversion's array (FROSTLINE_ARRAY=0-3)"),
    (slurm(1, 1, 1, FROSTLINE_ARRAY="3-1"), "FROSTLINE_ARRAY must be the conversion's array range, like 0-3"),
    ({"JOB_COMPLETION_INDEX": "1"}, "must set FROSTLINE_PARTS to its completions count"),
    ({"JOB_COMPLETION_INDEX": "3", "FROSTLINE_PARTS": "3"}, "JOB_COMPLETION_INDEX=3 is not below FROSTLINE_PARTS=3"),
])
def test_part_auto_refuses_missing_or_inconsistent_variables(env, message):
    with pytest.raises(SchedulerError) as err:
        scheduler_part(env)
    assert message in str(err.value)


def run_tool(*args, env=None, cpus=None):
    """make_shards in a process of its own (restricted to the CPUs `cpus`, when given)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(SCHEDULER_VARS)}
    preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, timeout=300,
                          env={**base, "PYTHONPATH": REPO, **(env or {})}, preexec_fn=preexec)


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory):
    return make_hmdb51(str(tmp_path_factory.mktemp("hmdb")), num_classes=2, per_class=3, quirks=False)


def test_cli_part_auto_converts_the_array_tasks_part_and_errors_without_a_scheduler(tmp_path, hmdb):
    out = str(tmp_path / "out")
    args = ("--dataset", "hmdb51", "--root", hmdb.root, "--out", out, "--part", "auto")
    res = run_tool(*args)
    assert res.returncode == 2
    assert "--part: --part auto needs a Slurm array task (SLURM_ARRAY_TASK_ID)" in res.stderr
    assert not os.path.exists(out)
    for task in ("1", "2"):                                 # --array=1-2: parts 1/2 and 2/2, then the merge
        res = run_tool(*args, env=slurm(int(task), 1, 2))
        assert res.returncode == 0, res.stderr
        assert f"--part auto: part {task}/2 (SLURM_ARRAY_TASK_ID={task})" in res.stdout
    assert "manifest     written" in res.stdout
    assert sorted(os.listdir(os.path.join(out, "_work")))[-2:] == ["part-2-of-2.done", "settings.json"]


def test_workers_default_to_the_cpus_this_process_may_use_and_no_progress_bar_off_a_terminal(tmp_path, hmdb):
    assert usable_cpus() == len(os.sched_getaffinity(0))
    first_cpu = min(os.sched_getaffinity(0))
    one = run_tool("--dataset", "hmdb51", "--root", hmdb.root, "--out", str(tmp_path / "one"), cpus={first_cpu})
    assert one.returncode == 0, one.stderr
    assert "videos this run, 1 worker)" in one.stdout
    assert "video/s" not in one.stderr          # stderr is a pipe here: no progress bar without --progress
    every = run_tool("--dataset", "hmdb51", "--root", hmdb.root, "--out", str(tmp_path / "all"), "--progress")
    assert every.returncode == 0, every.stderr
    n = usable_cpus()
    assert f"videos this run, {n} worker{'s' if n > 1 else ''})" in every.stdout
    assert "video/s" in every.stderr            # --progress forces the bar
    probe = "import sys; sys.path.insert(0, sys.argv[1]); from shards.cluster import usable_cpus; print(usable_cpus())"
    res = subprocess.run([sys.executable, "-c", probe, REPO], capture_output=True, text=True,
                         preexec_fn=lambda: os.sched_setaffinity(0, {first_cpu}))
    assert res.stdout.strip() == "1"


def test_the_kubernetes_example_is_an_indexed_job_whose_parts_match_its_completions():
    import yaml

    with open(os.path.join(REPO, "tools", "k8s", "make_shards-job.yaml")) as f:
        job = yaml.safe_load(f)
    spec = job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert int(env["FROSTLINE_PARTS"]["value"]) == spec["completions"]
    assert env["WORKERS"]["valueFrom"]["resourceFieldRef"]["resource"] == "limits.cpu"
    command = container["command"]
    assert command[command.index("--part") + 1] == "auto" and command[command.index("--workers") + 1] == "$(WORKERS)"
    index = spec["completions"] - 1           # the last pod's part, as --part auto reads it
    assert scheduler_part({"JOB_COMPLETION_INDEX": str(index), "FROSTLINE_PARTS": env["FROSTLINE_PARTS"]["value"]}) \
        == (spec["completions"], spec["completions"])
