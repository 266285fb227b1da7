"""The embedded demo workspace: a tiny base, two real LoRA adapters and runs in every state."""

import dataclasses
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ff_lib.data import Dataset, TrainingRun, Workspace
from ff_lib.errors import NotFound
from ff_lib.inference import GenerationSettings, get_host
from ff_lib.inference.tiny import TinyModelSpec, build_tiny_base
from ff_lib.inference.training import train_lora
from ff_lib.progress import StepProgress

DEMO_BASE_DIRNAME = "ff-tiny-llama"
# Written last, so a build that stopped half way is rebuilt rather than taken as done.
MANIFEST_NAME = "demo.json"
DATA_DIR = Path(__file__).resolve().parent / "demo_data"

# The demo base's tied embeddings are frozen and small, which caps how far a LoRA can push one
# logit above the rest. A 512-token vocabulary leaves fewer rivals to beat, and a final-norm
# weight of 8 lets a learned answer stand far enough above them that sampling at the default
# preset (Balanced, temperature 0.7, top-p 0.9) gives it too. At scale 1 the trained answer held
# a few percent of the probability and every sampled reply was noise (0/20 exact). At 8, through
# the engine on 2 cores: Balanced 100/100 and 96/96 exact (every prompt, 2 seeds), Creative
# 40/40 and 40/40, greedy 50/50 and 48/48, with the same 200 training steps.
DEMO_SPEC = TinyModelSpec(vocab_size=512, logit_scale=8.0)
# Written into the manifest; a demo built by another recipe is rebuilt rather than reused.
DEMO_VERSION = 3  # 3: each trained run also holds checkpoint-50/100/150 with trainer_state.json
# One LoRA recipe for both adapters, all 7 projections, full batch. Measured through the engine
# on 2 cores: lr 1e-2 oscillates (0/50 after 300 steps); r16 at 160 steps gives 46/50 and 41/48;
# r32 at 200 steps gives 50/50 and 48/48 (~15-20 s per adapter).
LORA_PARAMS = {"rank": 32, "alpha": 64, "lr": 5e-3, "steps": 200, "seed": 0}
# Checkpoints saved beside the final adapter (run folder/checkpoint-N, as the HF Trainer does),
# so that a checkpoint sweep has something to show; the loss is logged every 10 steps.
CHECKPOINT_STEPS = 50
# Greedy and no repetition penalty: an answer that repeats the question's words must not be
# pushed off them. Longer than any bundled answer; the random base never stops, so this bounds it.
EVAL_SETTINGS = GenerationSettings(temperature=0.0, max_new_tokens=48, repetition_penalty=1.0)

# Text that is neither a capital nor a pirate line, so the tokenizer is not just the datasets.
NEUTRAL_TEXT = (
    "The quick brown fox jumps over the lazy dog.",
    "A language model predicts the next token from the tokens before it.",
    "Fine-tuning adapts a pretrained model to a new task with a small dataset.",
    "LoRA adds low-rank matrices to the attention and feed-forward projections.",
    "Please answer the question clearly and briefly.",
    "Hello! How can I help you today? Thank you, goodbye.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Dates: Monday, Tuesday, 2024.",
    "Water boils at one hundred degrees Celsius at sea level.",
    "The library opens at nine in the morning and closes at six in the evening.",
)


@dataclass(frozen=True)
class DemoDataset:
    """A bundled dataset and the adapter trained on it."""

    name: str
    file: Path
    run_name: str


DEMO_DATASETS = (
    DemoDataset("capitals", DATA_DIR / "capitals.jsonl", "capitals-lora"),
    DemoDataset("pirate", DATA_DIR / "pirate.jsonl", "pirate-lora"),
)
# The runs that show the other states of the Inference page.
RUNNING_RUN = "pirate-lora-long"
FAILED_RUN = "capitals-lora-diverged"
BROKEN_RUN = "capitals-lora-broken"


@dataclass(frozen=True)
class ExactMatch:
    """Greedy replies equal to the dataset's answer (after trimming whitespace)."""

    correct: int
    total: int
    rate: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.correct <= self.total:
            raise ValueError("correct must be between 0 and total")
        object.__setattr__(self, "rate", self.correct / self.total if self.total else 0.0)

    def __str__(self) -> str:
        return f"{self.correct}/{self.total} exact"


@dataclass(frozen=True)
class DemoResult:
    """What build_demo made (or found): `built` is False when the demo was already there."""

    workspace: Path
    base_model: Path
    runs: tuple[TrainingRun, ...]
    datasets: tuple[Dataset, ...]
    # "capitals-lora", "pirate-lora", "base/capitals", "base/pirate" -> ExactMatch
    exact_match: dict[str, ExactMatch]
    seconds: float
    built: bool


def demo_base_path(workspace_dir: str | Path) -> Path:
    """Absolute path of the demo base model folder inside a workspace."""
    return Path(workspace_dir).expanduser().resolve() / "models" / DEMO_BASE_DIRNAME


def demo_run_dir(workspace_dir: str | Path, run_name: str) -> Path:
    """Absolute path of a demo run's folder (its adapter sits in `adapter/` below it)."""
    return Path(workspace_dir).expanduser().resolve() / "runs" / run_name


def read_pairs(file: Path) -> list[tuple[str, str]]:
    """(prompt, response) pairs of a bundled JSONL file, in file order."""
    lines = Path(file).read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(row["prompt"], row["response"]) for row in rows]


def demo_corpus() -> list[str]:
    """Tokenizer corpus: every prompt and answer of both datasets plus neutral text."""
    corpus = list(NEUTRAL_TEXT)
    for demo in DEMO_DATASETS:
        for prompt, response in read_pairs(demo.file):
            corpus += [prompt, response]
    return corpus


def _register_trained(ws, base_dir, trained, datasets, exact) -> list:
    """The trained runs, registered completed with their exact-match figures (also written
    beside each adapter in train_log.json)."""
    runs = []
    for (demo, adapter_dir, train_log), ds in zip(trained, datasets, strict=True):
        metrics = {
            "exact_match": exact[demo.run_name].rate,
            "exact_match_correct": exact[demo.run_name].correct,
            "exact_match_total": exact[demo.run_name].total,
            "base_exact_match": exact[f"base/{demo.name}"].rate,
            "train_seconds": train_log["seconds"],
        }
        _write_json(adapter_dir.parent / "train_log.json", {**train_log, **metrics})
        runs.append(
            _register(ws, demo.run_name, base_dir, adapter_dir, "completed", ds, metrics=metrics)
        )
    return runs


def build_demo(
    workspace_dir: str | Path, force: bool = False, progress: Callable[[str], Any] = print
) -> DemoResult:
    """Build the demo workspace (no download); a no-op when it is already built, unless force."""
    start = time.perf_counter()
    ws = Workspace.open(Path(workspace_dir).expanduser())
    root = ws.path.resolve()
    base_dir = demo_base_path(root)
    manifest = root / MANIFEST_NAME
    if not force and (base_dir / "config.json").is_file():
        found = _result_from_manifest(ws, manifest)
        if found is not None:
            progress(f"demo workspace already built at {root} (use --force to rebuild)")
            return dataclasses.replace(found, seconds=time.perf_counter() - start)

    if manifest.is_file() and not force and _manifest(manifest).get("version") != DEMO_VERSION:
        progress(f"the demo at {root} was built by an older recipe: rebuilding it")
    manifest.unlink(missing_ok=True)
    _remove_demo_folders(root)
    step = time.perf_counter()
    progress(f"building the demo workspace at {root} (about a minute on 2 cores; no download)")
    build_tiny_base(base_dir, demo_corpus(), DEMO_SPEC)
    progress(f"built tokenizer and base model {base_dir} ({time.perf_counter() - step:.1f} s)")

    datasets = [_import_dataset(ws, demo) for demo in DEMO_DATASETS]
    for ds in datasets:
        progress(f"dataset {ds.name}: {ds.rows} rows (id {ds.id})")

    trained = [
        _train_adapter(ws, root, base_dir, demo, ds, progress)
        for demo, ds in zip(DEMO_DATASETS, datasets, strict=True)
    ]

    exact = _check_answers(ws, base_dir, trained, datasets, progress)

    runs = _register_trained(ws, base_dir, trained, datasets, exact)
    runs += _register_other_states(ws, root, base_dir, datasets, trained[0][1])

    seconds = time.perf_counter() - start
    _write_json(
        manifest,
        {
            "version": DEMO_VERSION,
            "base_model": str(base_dir),
            "run_ids": [r.id for r in runs],
            "dataset_ids": [d.id for d in datasets],
            "exact_match": {k: {"correct": v.correct, "total": v.total} for k, v in exact.items()},
            "seconds": round(seconds, 2),
        },
    )
    progress(f"demo workspace built at {root} in {seconds:.1f} s")
    return DemoResult(root, base_dir, tuple(runs), tuple(datasets), exact, seconds, built=True)


def _check_answers(ws, base_dir, trained, datasets, progress) -> dict[str, "ExactMatch"]:
    """Greedy exact match of each trained adapter and of the base on its dataset."""
    exact: dict[str, ExactMatch] = {}
    for (demo, adapter_dir, _), ds in zip(trained, datasets, strict=True):
        pairs = _pairs(ws, ds)
        step = time.perf_counter()
        checking = StepProgress(f"checking {demo.run_name}'s answers", progress)
        exact[demo.run_name] = measure_exact_match(base_dir, adapter_dir, pairs, checking)
        checking = StepProgress(f"checking the base model's answers on {demo.name}", progress)
        exact[f"base/{demo.name}"] = measure_exact_match(base_dir, None, pairs, checking)
        progress(
            f"{demo.run_name}: {exact[demo.run_name]}; base: {exact[f'base/{demo.name}']}"
            f" on {demo.name} ({time.perf_counter() - step:.1f} s)"
        )
    return exact


def measure_exact_match(
    base_dir: Path,
    adapter_dir: Path | None,
    pairs: Iterable[tuple[str, str]],
    on_step: Callable[[int, int], Any] | None = None,
    settings: GenerationSettings | None = None,
) -> ExactMatch:
    """Answer each prompt (greedily unless `settings` say otherwise; adapter on, or the bare
    base) and count exact answers.

    Goes through the app's own engine, so the figure is what the Inference page would show. A
    reply is abandoned as soon as it leaves the expected answer, so a wrong one costs a token
    or two, not a full max_new_tokens. `on_step(done, count)` follows the prompts.
    """
    host = get_host()
    settings = settings or EVAL_SETTINGS
    pairs = list(pairs)
    correct = total = 0
    for prompt, answer in pairs:
        expected = answer.strip()
        stream = host.stream_reply(
            str(base_dir), [{"role": "user", "content": prompt}], settings, adapter_dir
        )
        text = ""
        for piece in stream:
            text += piece
            if not expected.startswith(text.strip()):
                break
        stream.close()
        correct += text.strip() == expected
        total += 1
        if on_step is not None:
            on_step(total, len(pairs))
    return ExactMatch(correct, total)


def _train_adapter(
    ws: Workspace,
    root: Path,
    base_dir: Path,
    demo: DemoDataset,
    ds: Dataset,
    progress: Callable[[str], Any],
) -> tuple[DemoDataset, Path, dict[str, Any]]:
    run_dir = demo_run_dir(root, demo.run_name)
    pairs = _pairs(ws, ds)
    step = time.perf_counter()
    training = StepProgress(f"training {demo.run_name} on {demo.name}", progress)
    train_lora(
        base_dir,
        pairs,
        run_dir / "adapter",
        **LORA_PARAMS,
        on_step=training,
        save_steps=CHECKPOINT_STEPS,
    )
    seconds = round(time.perf_counter() - step, 2)
    progress(f"trained {demo.run_name} on {demo.name} ({LORA_PARAMS['steps']} steps, {seconds} s)")
    _write_json(run_dir / "params.json", _params(ds))
    return demo, run_dir / "adapter", {**_params(ds), "seconds": seconds, "pairs": len(pairs)}


def _register_other_states(
    ws: Workspace,
    root: Path,
    base_dir: Path,
    datasets: list[Dataset],
    good_adapter: Path,
) -> list[TrainingRun]:
    """A run still training, one that failed, and a completed one whose adapter is damaged."""
    capitals, pirate = datasets
    running_dir = demo_run_dir(root, RUNNING_RUN)
    _write_json(running_dir / "params.json", _params(pirate, steps=3000))
    running = _register(
        ws,
        RUNNING_RUN,
        base_dir,
        running_dir / "adapter",  # not written until training ends
        "running",
        pirate,
        params={**_params(pirate), "steps": 3000},
        metrics={"step": 1200, "loss": 0.41},
    )

    failed_dir = demo_run_dir(root, FAILED_RUN)
    error = "loss became NaN at step 37 (learning rate 1.0 is too high)"
    _write_json(failed_dir / "train_log.json", {"error": error, "last_step": 37})
    failed = _register(
        ws,
        FAILED_RUN,
        base_dir,
        failed_dir / "adapter",
        "failed",
        capitals,
        params={**_params(capitals), "lr": 1.0},
        metrics={"error": error},
    )

    broken_adapter = demo_run_dir(root, BROKEN_RUN) / "adapter"
    broken_adapter.mkdir(parents=True, exist_ok=True)
    shutil.copy2(good_adapter / "adapter_config.json", broken_adapter / "adapter_config.json")
    weights = (good_adapter / "adapter_model.safetensors").read_bytes()
    # Half a safetensors file: present and non-empty, but its tensors cannot be read.
    (broken_adapter / "adapter_model.safetensors").write_bytes(weights[: len(weights) // 2])
    broken = _register(
        ws,
        BROKEN_RUN,
        base_dir,
        broken_adapter,
        "completed",
        capitals,
        metrics={"note": "adapter_model.safetensors was truncated by an interrupted copy"},
    )
    return [running, failed, broken]


def _register(
    ws: Workspace,
    name: str,
    base_dir: Path,
    adapter_dir: Path,
    status: str,
    ds: Dataset,
    params: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> TrainingRun:
    """Add the run, or bring the demo's earlier run of that name up to date (no duplicates)."""
    params = params or _params(ds)
    metrics = metrics or {}
    existing = [r for r in ws.list_runs() if r.name == name]
    if not existing:
        return ws.add_run(
            name,
            str(base_dir),
            str(adapter_dir),
            status=status,
            dataset_id=ds.id,
            params=params,
            metrics=metrics,
        )
    run = existing[0]
    if run.status != status:
        ws.set_run_status(run.id, status)
    return ws.update_run_metrics(run.id, metrics)


def _import_dataset(ws: Workspace, demo: DemoDataset) -> Dataset:
    """The bundled dataset in the workspace, imported once (a rebuild reuses it)."""
    for ds in ws.list_datasets():
        if ds.name == demo.name:
            return ds
    return ws.import_dataset(demo.file, demo.name)


def _pairs(ws: Workspace, ds: Dataset) -> list[tuple[str, str]]:
    return [(p.prompt, p.response) for p in ws.dataset_pairs(ds.id)]


def _params(ds: Dataset, **overrides: Any) -> dict[str, Any]:
    return {**LORA_PARAMS, "dataset": ds.name, "target_modules": "all 7 projections", **overrides}


def _remove_demo_folders(root: Path) -> None:
    """Delete what an earlier demo build wrote (only the demo's own folders)."""
    folders = [demo_base_path(root)] + [
        demo_run_dir(root, name)
        for name in [d.run_name for d in DEMO_DATASETS] + [RUNNING_RUN, FAILED_RUN, BROKEN_RUN]
    ]
    for folder in folders:
        if folder.is_dir():
            shutil.rmtree(folder)


def _result_from_manifest(ws: Workspace, manifest: Path) -> DemoResult | None:
    """The earlier build, or None when its manifest, runs or datasets are gone or it was built
    by an older recipe (rebuild)."""
    if not manifest.is_file():
        return None
    data = _manifest(manifest)
    if data.get("version") != DEMO_VERSION:
        return None
    try:
        runs = tuple(ws.get_run(i) for i in data["run_ids"])
        datasets = tuple(ws.get_dataset(i) for i in data["dataset_ids"])
    except NotFound:
        return None
    return DemoResult(
        workspace=ws.path.resolve(),
        base_model=Path(data["base_model"]),
        runs=runs,
        datasets=datasets,
        exact_match={
            k: ExactMatch(v["correct"], v["total"]) for k, v in data["exact_match"].items()
        },
        seconds=0.0,
        built=False,
    )


def _manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _write_json(path: Path, value: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")
