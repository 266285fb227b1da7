"""A run checked for answering (ff_lib.runs): completed runs first; a run that cannot answer is
refused, and marked ✗ in every list, with its reason and its fix."""

from pathlib import Path
from types import SimpleNamespace

from ff_lib.runs import (
    READY_MESSAGE,
    CheckpointOf,
    check_run,
    checkpoint_of,
    latest_usable_run,
    run_choices,
    runs_for_choice,
)


def run(name, status="completed", base="base", path="/a"):
    return SimpleNamespace(
        id=hash(name) % 1000, name=name, status=status, base_model=base, adapter_path=path
    )


def validator(ok_paths=("/a",), warnings=(), missing_bases=()):
    def validate(path, base_model):
        ok = path in ok_paths
        return SimpleNamespace(
            ok=ok,
            reason="ok" if ok else f"No adapter_config.json in {path}",
            adapter_dir=Path(path),
            base_model="adapter-base",
            warnings=warnings,
            base_problem=f"Base model {base_model} is not here."
            if base_model in missing_bases
            else None,
        )

    return validate


def test_completed_run_with_valid_adapter_is_ready():
    check = check_run(run("r"), "", validator(warnings=("base differs",)))
    assert check.ok and check.message == READY_MESSAGE
    assert check.base_model == "base"  # the run's own base when none is typed
    assert check.adapter_dir == "/a"
    assert check.warnings == ("base differs",)
    assert check_run(run("r"), "typed", validator()).base_model == "typed"
    assert check_run(run("r", base=None), None, validator()).base_model == "adapter-base"


def test_incomplete_runs_are_refused_with_their_status():
    for status in ("pending", "running", "failed", "cancelled"):
        check = check_run(run("r", status=status), None, validator())
        assert not check.ok
        assert f"(status: {status})" in check.message


def test_invalid_adapter_gives_the_validation_message():
    check = check_run(run("r", path="/broken"), None, validator())
    assert not check.ok
    assert check.message == "No adapter_config.json in /broken"


def test_runs_are_listed_completed_first_and_latest_usable_is_found():
    runs = [run("new", status="running"), run("broken", path="/b"), run("good"), run("old")]
    assert [r.name for r in runs_for_choice(runs)] == ["broken", "good", "old", "new"]
    assert latest_usable_run(runs, validator()).name == "good"
    assert latest_usable_run(runs[:2], validator()) is None


def test_a_run_whose_base_is_not_here_cannot_answer_and_names_the_fix():
    r = run("moved", base="/old/base")
    check = check_run(r, None, validator(missing_bases=("/old/base",)))
    assert not check.ok
    assert check.message.startswith("Base model /old/base is not here.")
    assert f"python -m ff_lib runs set-base {r.id} BASE" in check.message
    # The user types (or sets) a base that is here: ready.
    assert check_run(r, "/new/base", validator(missing_bases=("/old/base",))).ok


def test_a_chosen_base_that_is_not_here_names_leaving_it_out_not_changing_the_run():
    """The run's own base is fine; the one typed instead is missing: the fix is to give
    another or none, not `runs set-base` (which would change what the run is stored with)."""
    r = run("fine", base="/own/base")
    check = check_run(r, "/typo/base", validator(missing_bases=("/typo/base",)))
    assert not check.ok
    assert "none to answer on the run's own base (/own/base)" in check.message
    assert "set-base" not in check.message


def test_every_list_marks_runs_that_cannot_answer_and_latest_skips_them():
    runs = [
        run("lost", base="/gone"),
        run("broken", path="/b"),
        run("good"),
        run("wip", status="running"),
    ]
    validate = validator(missing_bases=("/gone",))
    choices = {c.id: c for c in run_choices(runs, validate)}
    lost, broken, good, wip = (choices[r.id] for r in runs)
    assert good.ok and good.label == "good · completed"
    assert lost.label.startswith("✗ lost · completed — Base model /gone is not here.")
    assert broken.label == "✗ broken · completed — No adapter_config.json in /b"
    assert wip.label.startswith("✗ wip · running — Run 'wip' is still running")
    assert not (lost.ok or broken.ok or wip.ok)
    assert latest_usable_run(runs, validate).name == "good"


def test_labels_stay_unique_even_when_names_are_not():
    twins = [SimpleNamespace(**{**vars(run("twin")), "id": i}) for i in (2, 1)]
    labels = [c.label for c in run_choices(twins, validator())]
    assert labels == ["twin · completed (run 2)", "twin · completed (run 1)"]


def test_a_checkpoint_run_is_marked_and_latest_usable_skips_it():
    """A checkpoint registered as a run (params.checkpoint_of, or a checkpoint-N folder) is not
    a training run: "Use latest completed run" never picks it, however recent."""
    ckpt = run("lora-checkpoint-50", path="/out/checkpoint-50")
    ckpt.params = {"lr": 1e-4, "checkpoint_of": 3, "step": 50}
    by_hand = run("by-hand", path="/x/checkpoint-7")
    trained = run("lora", path="/out/adapter")
    trained.params = {"lr": 1e-4}
    assert checkpoint_of(ckpt) == CheckpointOf("checkpoint-50", 3)
    assert checkpoint_of(by_hand) == CheckpointOf("checkpoint-7", None)
    assert checkpoint_of(trained) is None
    valid = validator(ok_paths=("/out/checkpoint-50", "/x/checkpoint-7", "/out/adapter"))
    assert latest_usable_run([ckpt, by_hand, trained], valid).name == "lora"
    assert latest_usable_run([ckpt, by_hand], valid) is None
    assert latest_usable_run([trained, by_hand, ckpt], valid, checkpoints=True).name == "by-hand"
