"""The generation clock: an agent's state is a pure function of its simulated elapsed time.

Nothing has to run for a generation to progress. Whoever reads an agent (the API, the periodic
tick) derives its state from the submission time and persists what changed (services.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sandbox import catalog
from sandbox.models import SandboxAccount, SandboxAgent


@dataclass(frozen=True)
class AgentState:
    phase: int
    status: str
    current_step: str
    progress: float
    progress_msg: str
    event_type: str
    error_message: str = ""

    @property
    def terminal(self) -> bool:
        return self.phase >= catalog.PHASE_READY


def elapsed_seconds(*, agent: SandboxAgent, account: SandboxAccount, now: datetime) -> float:
    """Simulated seconds since submission: real time times the scale, plus test-clock advances."""
    real = max((now - agent.created_at).total_seconds(), 0.0)
    advanced = account.clock_offset_seconds - agent.clock_offset_at_submit
    return real * agent.time_scale + max(advanced, 0.0)


def failure_at_seconds(*, agent: SandboxAgent) -> float | None:
    """When the agent's failure scenario strikes, in simulated seconds (None: it never fails)."""
    if agent.scenario == SandboxAgent.Scenario.FAIL_EARLY:
        return min(
            agent.duration_seconds * catalog.FAIL_EARLY_SHARE, catalog.FAIL_EARLY_MAX_SECONDS
        )
    if agent.scenario == SandboxAgent.Scenario.FAIL_LATE:
        return agent.duration_seconds * catalog.FAIL_LATE_SHARE
    return None


def _running_state(share: float) -> AgentState:
    index = 0
    for i, phase in enumerate(catalog.PHASES):
        if share >= phase.start:
            index = i
    phase = catalog.PHASES[index]
    end = catalog.PHASES[index + 1].start if index + 1 < len(catalog.PHASES) else 1.0
    within = min(max((share - phase.start) / (end - phase.start), 0.0), 1.0)
    progress = phase.progress_from + (phase.progress_to - phase.progress_from) * within
    return AgentState(
        phase=index,
        status=phase.status,
        current_step=phase.step,
        progress=round(progress, 4),
        progress_msg=phase.message,
        event_type=phase.event_type,
    )


READY = AgentState(
    phase=catalog.PHASE_READY,
    status="ready",
    current_step="done",
    progress=1.0,
    progress_msg="Agent ready",
    event_type="lip_created",
)


def state_at(*, agent: SandboxAgent, elapsed: float) -> AgentState:
    """The state `elapsed` simulated seconds after submission."""
    fail_at = failure_at_seconds(agent=agent)
    if fail_at is not None and elapsed >= fail_at:
        at_failure = _running_state(fail_at / agent.duration_seconds)
        step = "voice_image" if agent.scenario == SandboxAgent.Scenario.FAIL_EARLY else "lip_sync"
        return AgentState(
            phase=catalog.PHASE_FAILED,
            status="failed",
            current_step=step,
            progress=at_failure.progress,
            progress_msg="Generation failed",
            event_type="failed",
            error_message=agent.failure_message,
        )
    if elapsed >= agent.duration_seconds:
        return READY
    return _running_state(elapsed / agent.duration_seconds)


def persisted_state(*, agent: SandboxAgent) -> AgentState:
    return AgentState(
        phase=agent.phase,
        status=agent.status,
        current_step=agent.current_step,
        progress=agent.progress,
        progress_msg=agent.progress_msg,
        event_type=agent.event_type,
        error_message=agent.error_message,
    )
