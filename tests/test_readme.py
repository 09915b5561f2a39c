"""Every fenced bash command in README.md runs, or composes and builds, so the README cannot rot.

Three kinds of command, decided here and nowhere else:
- RUN: the tour's commands, a file-data run and a resume run for real, as one bash script in
  README order (so ``run=$(ls -d ...)`` and ``$run`` work as they do for a reader), in a temp
  directory, with short overrides appended to each ``python`` line (two batches, CPU, tiny).
  ``photos/`` and ``reviews.jsonl`` are small fixture files; the files the README says each
  command writes are checked afterwards.
- NOT_RUN: commands that cannot run here, each with its reason (make would recurse into this
  suite, wandb sync uploads: its path is checked with ``ls`` instead, pytest would run this test,
  benchmarks take minutes).
- everything else (``python train.py|eval.py|predict.py ...`` and the train.py arguments of
  torchrun): composed with Hydra's compose API exactly as written (every job of a ``-m`` sweep),
  so a renamed key, group or option fails; those that build offline (a tiny preset or a local
  checkpoint, synthetic data) are built too (model, data, task, trainer), which checks the task's
  constructor arguments. Hub checkpoints, hub datasets, files under /data, GPUs, DDP, SLURM and
  multi-node commands are composed only.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from conftest import ROOT, make_cfg
from headstart.run.build import build

README = ROOT / "README.md"
SCRIPTS = {"train.py": "train", "eval.py": "eval", "predict.py": "predict", "export.py": "export"}
TASKS = sorted(p.stem for p in (ROOT / "conf" / "task").glob("*.yaml"))
TOUR = "A 5-minute tour"

# Commands the test does not start (by their start), and why; "check": what the tour runs instead.
NOT_RUN = {
    "make ": "make targets install and run this suite or the benchmarks (make test would recurse)",
    "wandb sync ": "uploads to wandb.ai (no network in tests); in the tour its path is checked with ls",
    ".venv/bin/pytest ": "runs this test",
    "python -m scripts.bench ": "a benchmark runs for minutes; tests/test_bench.py covers the harness",
}
CHECK_INSTEAD = {"wandb sync ": "ls -d"}

# Besides every command of the tour, these run for real (whole README commands).
ALSO_RUN = (
    "python train.py task=text_classification model.preset=tiny data.source=jsonl data.path=reviews.jsonl",
    "python train.py model.preset=tiny trainer.max_epochs=4 ckpt_path=$run/checkpoints/last.ckpt",
)

# Appended to real runs unless the command sets the key itself: short, CPU, quiet.
SHORT = {
    "train": {
        "model.preset": "tiny",
        "trainer.max_epochs": "1",
        "trainer.limit_train_batches": "2",
        "trainer.limit_val_batches": "1",
        "trainer.limit_test_batches": "1",
        "trainer.num_sanity_val_steps": "0",
        "trainer.accelerator": "cpu",
        "trainer.enable_progress_bar": "false",
        "trainer.enable_model_summary": "false",
        "data.num_workers": "0",
        "data.batch_size": "4",
        "data.synthetic_sizes": "{train: 16, val: 8, test: 8}",
    },
    "eval": {
        "trainer.accelerator": "cpu",
        "trainer.limit_val_batches": "1",
        "trainer.limit_test_batches": "1",
        "trainer.enable_progress_bar": "false",
        "data.num_workers": "0",
    },
    "predict": {"trainer.accelerator": "cpu", "trainer.enable_progress_bar": "false", "data.num_workers": "0"},
    "export": {"trainer.accelerator": "cpu"},
}
# The first tour run keeps the default loggers (csv + W&B offline), so the wandb sync path exists.
CSV_AFTER_FIRST = "logger=csv"


@dataclass
class Command:
    line: int  # README line where the command starts
    heading: str  # the nearest heading above it
    text: str  # the command as written (continuations joined, comment removed)
    env: dict[str, str] = field(default_factory=dict)
    argv: list[str] = field(default_factory=list)

    @property
    def task(self) -> str | None:
        """The task of the README section the command sits in (``### <task>``), if any."""
        return self.heading if self.heading in TASKS else None

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.argv[:3])[:60]}"


def readme_commands(path: Path = README) -> list[Command]:
    """Every command of every ```bash block, with the heading it is under."""
    commands: list[Command] = []
    heading, in_bash, pending, start = "", False, "", 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        if raw.strip().startswith("```"):
            in_bash = raw.strip() == "```bash" if not in_bash else False
        elif not in_bash and raw.startswith("#"):
            heading = raw.lstrip("#").strip()
        elif in_bash and raw.strip():
            start = start or number
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            words = shlex.split(pending + raw, comments=True)
            text = " ".join(re.sub(r"\s+#.*$", "", pending + raw).split())
            env = {}
            while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):
                key, value = words.pop(0).split("=", 1)
                env[key] = value
            commands.append(Command(start, heading, text, env, words))
            pending, start = "", 0
    return commands


COMMANDS = readme_commands()


def not_run(command: Command) -> str | None:
    """The NOT_RUN key the command starts with, if any."""
    return next((key for key in NOT_RUN if command.text.startswith(key)), None)


def hydra_args(command: Command) -> tuple[str, list[str]] | None:
    """(config name, arguments) of a python train.py|eval.py|predict.py or torchrun train.py command."""
    argv = command.argv
    if argv[:1] == ["torchrun"]:
        scripts = [i for i, word in enumerate(argv) if word in SCRIPTS]
        return (SCRIPTS[argv[scripts[0]]], argv[scripts[0] + 1 :]) if scripts else None
    if argv[:1] == ["python"] and len(argv) > 1 and argv[1] in SCRIPTS:
        return SCRIPTS[argv[1]], argv[2:]
    return None


def is_assignment(command: Command) -> bool:
    """``run=$(ls -d ...)``: a shell variable the later commands use."""
    return bool(re.fullmatch(r"[a-z_]+=\$\(.*\)", command.text))


def is_activation(command: Command) -> bool:
    """``source .venv/bin/activate``: the tour's first command (the test runs it in a shell whose
    ``python`` is not the venv's, so a README without it fails)."""
    return command.text == "source .venv/bin/activate"


def runs_for_real(command: Command) -> bool:
    return command.heading == TOUR or command.text in ALSO_RUN


# ---------------------------------------------------------------------------------------------
# Every command is understood


def test_every_readme_command_is_run_composed_or_listed_with_a_reason() -> None:
    assert len(COMMANDS) > 40, "README parse found too few commands"
    assert [c.argv for c in COMMANDS[:2]] == [["make", "train"], ["make", "test"]], "the README's first two commands"
    for command in COMMANDS:
        understood = hydra_args(command) is not None or not_run(command) is not None
        understood = understood or ((is_assignment(command) or is_activation(command)) and runs_for_real(command))
        assert understood, f"README.md:{command.line}: `{command.text}` is not run, composed or in NOT_RUN"
        if command.heading == TOUR and not_run(command):
            assert not_run(command) in CHECK_INSTEAD, f"README.md:{command.line}: a tour command that is not checked"
    texts = {command.text for command in COMMANDS}
    missing = [text for text in ALSO_RUN if text not in texts]
    assert not missing, f"ALSO_RUN commands no longer in README.md: {missing}"


def test_every_task_has_a_section_with_an_offline_command_and_a_recipe() -> None:
    text = README.read_text()
    for task in TASKS:
        assert f"\n### {task}\n" in text, f"README.md has no section '### {task}'"
        offline = [c for c in COMMANDS if c.task == task and f"task={task}" in c.argv and "model.preset=tiny" in c.argv]
        assert offline, f"README.md section {task}: no offline command (task={task} ... model.preset=tiny)"
        recipes = re.findall(rf"\]\((conf/experiment/{task}_[^)]+\.yaml)\)", text)
        assert recipes, f"README.md section {task}: no link to a conf/experiment/{task}_*.yaml recipe"
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert link.startswith("http") or (ROOT / link).exists(), f"README.md links {link}, which does not exist"


# ---------------------------------------------------------------------------------------------
# Composed (and built where that needs no network and no files)


def sweep_combinations(args: list[str]) -> list[list[str]]:
    """One argument list per job of a ``-m`` sweep (Hydra's own override parser)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(args)
    choices = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] if o.is_sweep_override() else [o.input_line]
        for o in parsed
    ]
    return [list(combo) for combo in itertools.product(*choices)]


def offline_buildable(cfg: DictConfig) -> bool:
    """A tiny preset or a local checkpoint, and synthetic data: building needs no network or files."""
    model = cfg.model
    local = model.get("checkpoint") and Path(str(model.checkpoint)).is_dir()
    return bool(model.get("preset") or local) and cfg.data.get("source") == "synthetic"


def cpu_safe(cfg: DictConfig) -> DictConfig:
    """One CPU device and small synthetic data, so GPU/DDP/multi-node commands build here too."""
    with open_dict(cfg):
        cfg.trainer.update(accelerator="cpu", devices=1, num_nodes=1, strategy="auto", precision="32-true")
        if "synthetic_sizes" in cfg.data:
            cfg.data.synthetic_sizes = {split: 8 for split in cfg.data.synthetic_sizes}
        cfg.data.num_workers = 0
    return cfg


COMPOSED = [c for c in COMMANDS if hydra_args(c) is not None and not runs_for_real(c)]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMPOSED, ids=[c.id for c in COMPOSED])
def test_readme_command_composes(tmp_path: Path, command: Command) -> None:
    config_name, args = hydra_args(command)  # type: ignore[misc]
    args = [a.replace("$run", str(tmp_path / "run")) for a in args if a not in ("-m", "--multirun")]
    if config_name != "train" and command.task and not any(a.startswith("task=") for a in args):
        args.insert(0, f"task={command.task}")  # eval/predict take the task from the checkpoint
    for combo in sweep_combinations(args):
        try:
            # hydra.job.name: set by Hydra's own launch, not by compose (sweep dirs interpolate it)
            cfg = make_cfg(tmp_path, *combo, f"hydra.job.name={config_name}", config_name=config_name, fast=False)
        except Exception as err:  # noqa: BLE001 - the README line is the useful part of the message
            pytest.fail(f"README.md:{command.line}: `{command.text}` does not compose: {err}")
        # a sweeper's config (hydra.mode=MULTIRUN) resolves only inside Hydra's launch: composed only
        if config_name == "train" and offline_buildable(cfg) and HydraConfig.get().mode != RunMode.MULTIRUN:
            build(cpu_safe(cfg))


# ---------------------------------------------------------------------------------------------
# The tour, a file-data run and a resume, for real


def fixtures(root: Path) -> None:
    """``photos/``: a few PNGs to predict on; ``reviews.jsonl``: a small labelled text file;
    the entry-point shims, so ``python train.py`` works in ``root``."""
    from headstart.data.synthetic.shapes import render_shape_image

    (root / "photos").mkdir()
    for i in range(3):
        image, _ = render_shape_image(3, i, 48, ("circle", "square", "triangle"))
        image.save(root / "photos" / f"photo{i}.png")
    words = {"pos": "a fine warm lovely film", "neg": "a dull cold awful film"}
    rows = [{"text": f"{words[label]} number {i}", "label": label} for i in range(24) for label in words]
    (root / "reviews.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    for script in SCRIPTS:
        (root / script).symlink_to(ROOT / script)


def script_line(command: Command, first_python: bool) -> str:
    """The command as bash runs it here: short overrides appended, or its check instead."""
    key = not_run(command)
    if key in CHECK_INSTEAD:
        return " ".join([CHECK_INSTEAD[key], command.text[len(key):], ">/dev/null"])
    parsed = hydra_args(command)
    if parsed is None:  # a shell assignment
        return command.text
    config_name, args = parsed
    given = {a.lstrip("+~").split("=", 1)[0] for a in args}
    if "model.checkpoint" in given:
        given.add("model.preset")
    extra = [f"{key}={value}" for key, value in SHORT[config_name].items() if key not in given]
    if config_name == "train" and not first_python and "logger" not in given:
        extra.append(CSV_AFTER_FIRST)
    return " ".join([command.text, *(shlex.quote(e) for e in extra)])


def one(pattern: str, cwd: Path) -> Path:
    matches = sorted(glob.glob(pattern, root_dir=cwd))
    assert len(matches) == 1, f"expected one {pattern}, found {matches}"
    return cwd / matches[0]


@pytest.mark.slow
def test_readme_tour_runs(tmp_path: Path) -> None:
    fixtures(tmp_path)
    (tmp_path / ".venv").symlink_to(ROOT / ".venv" if (ROOT / ".venv").is_dir() else Path(sys.prefix))  # the venv running this
    # `python` is not the venv's until the tour's `source .venv/bin/activate` (as in a fresh shell)
    lines = ["set -eo pipefail"]
    pythons = 0
    for command in (c for c in COMMANDS if runs_for_real(c)):
        lines += [f'echo "@@ README.md:{command.line}: $(date +%s)" >&2', script_line(command, first_python=pythons == 0)]
        pythons += hydra_args(command) is not None
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if "/.venv" not in p and p != venv_bin)
    env.pop("VIRTUAL_ENV", None)
    env.pop("WANDB_DIR", None)  # W&B writes into the run directory, where the README says
    proc = subprocess.run(["bash", "-c", "\n".join(lines)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    marks = re.findall(r"@@ (README.md:\d+): (\d+)", proc.stderr)
    timing = ", ".join(f"{where} {int(b[1]) - int(a[1])} s" for where, a, b in zip([m[0] for m in marks], marks, marks[1:]))
    failed_at = marks[-1][0] if marks else "?"
    assert proc.returncode == 0, f"{failed_at} failed (script:\n" + "\n".join(lines) + f")\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    print("tour timing:", timing)

    run, resumed_run = sorted(tmp_path.glob("logs/image_classification/runs/*_train"))  # tour, resume
    assert (run / "metrics.json").is_file() and list(run.glob("checkpoints/best-*.ckpt"))
    metrics = json.loads(one("logs/image_classification/runs/*_eval/metrics.json", tmp_path).read_text())
    assert any(name.startswith("test/") for name in metrics), metrics  # no split given: test, as the data has one
    assert re.search(r"split\W+test", proc.stdout + proc.stderr), "eval.py did not say which split it used"
    assert (run / "hf" / "config.json").is_file() and (run / "hf" / "README.md").is_file(), "export.py writes $run/hf"
    predicted = one("logs/image_classification/runs/*_predict", tmp_path)
    assert len((predicted / "predictions.jsonl").read_text().splitlines()) == 3
    assert len(list(predicted.glob("visualizations/*.png"))) == 3, "predict.visualize=true: a picture per input"
    sweep = one("logs/image_classification/multiruns/*_train", tmp_path)
    assert (sweep / "summary.md").is_file() and (sweep / "summary.csv").is_file()
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    one("logs/text_classification/runs/*_train/metrics.json", tmp_path)
    resumed = json.loads((resumed_run / "metrics.json").read_text())
    assert resumed["global_step"] > json.loads((run / "metrics.json").read_text())["global_step"]
