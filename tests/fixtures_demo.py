"""One built demo workspace per test session, shared by every test file that imports it.

    from tests.fixtures_demo import demo_workspace  # noqa: F401  (session fixture)

Tests that change the workspace must copy it first (see browser_fixtures.browser_workspace).
"""

import json
import os
from pathlib import Path

import pytest

from ff_lib.demo import DEMO_VERSION, DemoResult, build_demo

# A fixture imported into several test modules is registered once per module, so its session
# scope alone would build once per module: the build itself is kept here, once per process.
_BUILT: list[DemoResult] = []


def first_demo_build(base_temp: Path) -> DemoResult:
    """The result of this session's one demo build (made on first call)."""
    if not _BUILT:
        _BUILT.append(build_demo(base_temp / "demo-workspace", progress=print))
    return _BUILT[0]


@pytest.fixture(scope="session")
def demo_workspace(tmp_path_factory) -> Path:
    """Path of the built demo workspace (tiny base, two LoRA adapters, runs in every state).

    FF_TEST_DEMO_WORKSPACE names an already built demo to use instead (a faster dev loop);
    tests that change a workspace copy it first, so it is never written to.
    """
    prebuilt = os.environ.get("FF_TEST_DEMO_WORKSPACE")
    if prebuilt:
        manifest = Path(prebuilt) / "demo.json"
        if not manifest.is_file():
            pytest.fail(f"FF_TEST_DEMO_WORKSPACE={prebuilt} is not a built demo (no demo.json)")
        if json.loads(manifest.read_text()).get("version") != DEMO_VERSION:
            pytest.fail(
                f"FF_TEST_DEMO_WORKSPACE={prebuilt} was built by an older demo recipe: rebuild it "
                f"(python -m ff_lib --workspace {prebuilt} demo --force)"
            )
        return Path(prebuilt)
    return first_demo_build(tmp_path_factory.getbasetemp()).workspace
