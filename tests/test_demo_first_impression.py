"""A newcomer who clicks Generate without touching anything sees what the demo adapters learned."""

import dataclasses
import json
import shutil

import pytest

from ff_lib.data import Workspace
from ff_lib.demo import (
    DEMO_DATASETS,
    MANIFEST_NAME,
    _result_from_manifest,
    demo_base_path,
    demo_run_dir,
    measure_exact_match,
    read_pairs,
)
from ff_lib.inference import DEFAULT_PRESET, PRESETS
from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

PROMPTS = 10
SEEDS = (1, 2)


@pytest.mark.parametrize("demo", DEMO_DATASETS, ids=lambda d: d.run_name)
def test_sampling_at_the_default_preset_gives_the_trained_answers(demo, demo_workspace):  # noqa: F811
    # Balanced samples (temperature 0.7, top-p 0.9, repetition penalty 1.15): on the old demo
    # every one of these replies was noise from its first token (0/20 exact).
    pairs = read_pairs(demo.file)[:PROMPTS]
    base = demo_base_path(demo_workspace)
    adapter = demo_run_dir(demo_workspace, demo.run_name) / "adapter"
    correct = total = 0
    for seed in SEEDS:
        settings = dataclasses.replace(PRESETS[DEFAULT_PRESET], seed=seed)
        found = measure_exact_match(base, adapter, pairs, settings=settings)
        correct, total = correct + found.correct, total + found.total
    assert correct >= 0.9 * total, f"{correct}/{total} exact at {DEFAULT_PRESET}"


def test_a_demo_built_by_the_older_recipe_is_rebuilt_not_reused(demo_workspace, tmp_path):  # noqa: F811
    copy = tmp_path / "ws"
    shutil.copytree(demo_workspace, copy)
    manifest = copy / MANIFEST_NAME
    ws = Workspace.open(copy)
    assert _result_from_manifest(ws, manifest) is not None
    old = json.loads(manifest.read_text())
    del old["version"]  # as the first recipe wrote it
    manifest.write_text(json.dumps(old))
    assert _result_from_manifest(ws, manifest) is None
