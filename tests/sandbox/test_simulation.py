"""The generation clock as a pure function: every model walks the documented steps in order."""

import pytest

from sandbox import catalog, simulation
from sandbox.models import SandboxAgent

STEP_ORDER = ["payment", "persona", "voice_image", "video", "lip_sync", "done"]


def _agent(model: str, scenario: str = "") -> SandboxAgent:
    return SandboxAgent(
        code="A12BCD3456",
        model=model,
        duration_seconds=catalog.NOMINAL_DURATION[model],
        time_scale=1.0,
        scenario=scenario,
        failure_message="boom" if scenario else "",
    )


@pytest.mark.parametrize("model", catalog.ENGINES)
def test_every_model_walks_every_state_in_order(model):
    agent = _agent(model)
    states = [
        simulation.state_at(agent=agent, elapsed=agent.duration_seconds * i / 1000)
        for i in range(1001)
    ]
    progress = [s.progress for s in states]
    assert progress == sorted(progress)
    assert all(0 <= p <= 1 for p in progress)
    steps = [s.current_step for s in states]
    assert [STEP_ORDER.index(s) for s in steps] == sorted(STEP_ORDER.index(s) for s in steps)
    statuses = []
    for state in states:
        if not statuses or statuses[-1] != state.status:
            statuses.append(state.status)
    assert statuses == [
        "processing",
        "completed",
        "generating",
        "success",
        "generating",
        "success",
        "generating",
        "ready",
    ]
    assert [s.terminal for s in states].index(True) == 1000  # ready exactly at the duration


def test_failures_absorb():
    early = _agent("expression-2", SandboxAgent.Scenario.FAIL_EARLY)
    failed = simulation.state_at(agent=early, elapsed=catalog.FAIL_EARLY_MAX_SECONDS)
    assert (failed.status, failed.error_message, failed.terminal) == ("failed", "boom", True)
    assert simulation.state_at(agent=early, elapsed=10**6).status == "failed"
    late = _agent("expression-1", SandboxAgent.Scenario.FAIL_LATE)
    assert simulation.state_at(agent=late, elapsed=0.84 * 90).status == "generating"
    assert simulation.state_at(agent=late, elapsed=0.85 * 90).current_step == "lip_sync"
    assert simulation.state_at(agent=late, elapsed=0.85 * 90).status == "failed"
