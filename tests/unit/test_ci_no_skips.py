"""Under ``CI=true`` the root conftest (``tests/conftest.py``) reports every skip as a failure
naming the skip's reason; outside CI a skip stays a skip. Runs a small suite with that very
conftest in a pytester sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[1] / "conftest.py"

SKIPS_WHILE_RUNNING = """
import pytest

def test_passes():
    pass

def test_skips_at_run_time():
    pytest.skip("redis is not reachable")

@pytest.mark.skipif(True, reason="model file missing")
def test_skipif_mark():
    pass

@pytest.mark.skip(reason="no GPU")
def test_skip_mark():
    pass

@pytest.mark.xfail(reason="known bug", strict=True)
def test_expected_failure():
    assert False
"""

SKIPS_AT_COLLECTION = """
import pytest

pytest.importorskip("no_such_module_for_vigil_tests")

def test_never_collected():
    pass
"""


@pytest.fixture
def sandbox(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(ROOT_CONFTEST.read_text())
    pytester.makeini(
        "[pytest]\n"
        "addopts = -ra --import-mode=importlib\n"
        "asyncio_default_fixture_loop_scope = function\n"
        "filterwarnings = error\n"
    )
    pytester.makepyfile(test_running=SKIPS_WHILE_RUNNING, test_collection=SKIPS_AT_COLLECTION)
    return pytester


@pytest.mark.parametrize("value", ["true", "1", "yes", "True"])
def test_under_ci_a_skip_while_running_fails_naming_its_reason(
    sandbox: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    result = sandbox.runpytest("test_running.py")
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)  # marks skip in setup: errors
    result.stdout.fnmatch_lines(
        [
            "CI=true: a skipped test counts as a failure",
            "*CI=true allows no skips*test_running.py:7): redis is not reachable",
            "*CI=true allows no skips*model file missing*",
            "*CI=true allows no skips*no GPU*",
        ],
        consecutive=False,
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_under_ci_a_skip_at_collection_is_an_error_naming_its_reason(
    sandbox: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = sandbox.runpytest("test_collection.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*CI=true allows no skips*no_such_module_for_vigil_tests*"])
    assert result.ret != pytest.ExitCode.OK


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_outside_ci_skips_stay_skips(
    sandbox: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    result = sandbox.runpytest()
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    assert "allows no skips" not in result.stdout.str()
    assert result.ret == pytest.ExitCode.OK
