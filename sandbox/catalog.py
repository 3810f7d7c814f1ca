"""The fixed facts the sandbox simulates (NOTES.md, openapi.yaml): plans, models, prices, steps."""

from __future__ import annotations

from dataclasses import dataclass

# --- Plans --------------------------------------------------------------------------------------

PLANS = ("free", "creator", "pro", "business", "enterprise")

BUCKET_GENERATE = "generate"
BUCKET_WRITE = "write"
BUCKET_READ = "read"

# Requests per minute (= burst) per account and bucket.
RATE_LIMITS: dict[str, dict[str, int]] = {
    "free": {BUCKET_GENERATE: 4, BUCKET_WRITE: 30, BUCKET_READ: 120},
    "creator": {BUCKET_GENERATE: 10, BUCKET_WRITE: 60, BUCKET_READ: 240},
    "pro": {BUCKET_GENERATE: 30, BUCKET_WRITE: 180, BUCKET_READ: 720},
    "business": {BUCKET_GENERATE: 60, BUCKET_WRITE: 360, BUCKET_READ: 1440},
    "enterprise": {BUCKET_GENERATE: 120, BUCKET_WRITE: 720, BUCKET_READ: 2880},
}

# Concurrent live rooms per account.
CONCURRENCY: dict[str, int] = {
    "free": 1,
    "creator": 3,
    "pro": 10,
    "business": 50,
    "enterprise": 200,
}

# --- Models -------------------------------------------------------------------------------------

# Accepted `model` values, as the real API lists them in its 400 message.
MODEL_CHOICES = (
    "auto",
    "essence",
    "essence-1",
    "essence-2",
    "essence-2-max",
    "expression",
    "expression-1",
    "expression-2",
)
ENGINES = ("essence-1", "expression-1", "essence-2", "expression-2")

# One-time creation cost in credits ($1 = 100 credits).
CREATION_COST: dict[str, int] = {
    "essence-1": 250,
    "expression-1": 250,
    "essence-2": 500,
    "expression-2": 2000,
}

# Nominal creation time in seconds on the real service; the sandbox divides by its time scale.
NOMINAL_DURATION: dict[str, float] = {
    "expression-1": 90.0,  # 1-2 min
    "essence-1": 210.0,  # 2-5 min
    "essence-2": 2400.0,  # 25-45 min typical
    "expression-2": 3600.0,  # 45-90 min
}

# What a ready agent can be launched as (`supported_models`).
SUPPORTED_MODELS: dict[str, list[str]] = {
    "expression-1": ["expression-1"],
    "essence-1": ["essence-1", "essence-2-max"],
    "essence-2": ["essence-2", "essence-2-max"],
    "expression-2": ["expression-2"],
}

# Words that make the sandbox's "classifier" see a non-photorealistic subject.
STYLIZED_WORDS = ("cartoon", "anime", "animal", "creature", "robot", "mascot")

PRICING = {
    "unit": "credits",
    "agent_generation": {
        "unit": "credits",
        "by_model": {
            "essence-1": 250,
            "expression-1": 250,
            "essence-2-max": 500,
            "expression-2": 2000,
            "essence-2": 500,
            "auto": 2000,
        },
        "note": (
            "Priced per model. essence-2 is one 500-credit creation that also delivers "
            "essence-2-max; auto charges the routed model's rate."
        ),
    },
    "talking_video": {
        "unit": "credits_per_minute",
        "billing": "ceil(minutes) * rate, minimum 1 minute",
        "rates": {
            "essence-1": 2,
            "expression-1": 4,
            "expression-2": 4,
            "essence-2-max": 8,
            "essence-2": 4,
        },
    },
    "dynamics_generation": {"flat": 250, "note": "Per gesture set."},
    "notes": "Sandbox prices mirror the live API; sandbox credits are not real money.",
}


# --- Generation steps ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One stretch of a generation: from `start` (share of the duration) to the next phase."""

    start: float
    status: str
    step: str
    progress_from: float
    progress_to: float
    message: str
    event_type: str


# The real pipeline as NOTES.md describes it, including the intermediate `completed` (~5 %) and
# the `success` step markers (~20 % and ~45 %) that clients must not stop on.
PHASES: tuple[Phase, ...] = (
    Phase(0.00, "processing", "payment", 0.02, 0.02, "Processing payment", "payment_pending"),
    Phase(0.03, "completed", "persona", 0.05, 0.05, "Payment completed", "payment_completed"),
    Phase(0.06, "generating", "persona", 0.05, 0.15, "Creating the persona", "persona_started"),
    Phase(
        0.15,
        "generating",
        "voice_image",
        0.20,
        0.20,
        "Generating the voice and face image",
        "voice_image_started",
    ),
    Phase(
        0.22, "success", "voice_image", 0.20, 0.20, "Voice and face image ready", "image_created"
    ),
    Phase(
        0.25, "generating", "video", 0.45, 0.45, "Generating the identity video", "video_started"
    ),
    Phase(0.40, "success", "video", 0.45, 0.45, "Identity video ready", "video_created"),
    Phase(
        0.43,
        "generating",
        "lip_sync",
        0.70,
        0.99,
        "Lip sync: building the identity model",
        "lip_sync_started",
    ),
)
PHASE_READY = len(PHASES)  # status `ready`, step `done`, progress 1.0
PHASE_FAILED = PHASE_READY + 1
TERMINAL_STATUSES = ("ready", "failed")

# Failure scenarios: when they strike (simulated seconds / share of the duration) and what the
# status then says.
FAIL_EARLY_MAX_SECONDS = 15.0
FAIL_EARLY_SHARE = 0.16
FAIL_LATE_SHARE = 0.85
