"""Choosing a run: completed runs first; incomplete or broken ones refused with their reason."""

from pathlib import Path
from types import SimpleNamespace

from ff_lib.chat.selection import READY_MESSAGE, check_run, latest_usable_run, runs_for_choice


def run(name, status="completed", base="base", path="/a"):
    return SimpleNamespace(
        id=hash(name) % 1000, name=name, status=status, base_model=base, adapter_path=path
    )


def validator(ok_paths=("/a",), warnings=()):
    def validate(path, base_model):
        ok = path in ok_paths
        return SimpleNamespace(
            ok=ok,
            reason="ok" if ok else f"No adapter_config.json in {path}",
            adapter_dir=Path(path),
            base_model="adapter-base",
            warnings=warnings,
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
