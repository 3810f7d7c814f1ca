"""Pages that read every app: the organization home (the dashboard)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from activity import charts
from interfaces import dashboard
from organizations import connections
from portal.models import Membership
from portal.tenancy import Role, org_view


@org_view({"GET": Role.VIEWER})
def org_home(request: HttpRequest, membership: Membership) -> HttpResponse:
    org = membership.organization
    request.session["last_org"] = org.slug
    counts = dashboard.organization_counts(org=org)
    board = dashboard_context(request, membership)
    return render(request, "portal/org_home.html", {"counts": counts, **board})


# --- The dashboard (the organization home) ------------------------------------------------------

# Tones, not colours: the chart template turns them into CSS classes (portal/app.css).
GREEN, RED, AMBER, BLUE, PURPLE = "ok", "bad", "warn", "blue", "purple"


def dashboard_context(request: HttpRequest, membership: Membership) -> dict[str, Any]:
    """Charts and numbers for the organization home, for the chosen range (7, 30 or 90 days)."""
    org = membership.organization
    try:
        days = int(request.GET.get("days", 7))
    except ValueError:
        days = 7
    board = dashboard.dashboard_get(org=org, days=days)
    labels = [p.day.strftime("%b %d") for p in board.agents_per_day]
    agents_rows = [
        {
            "ready": p.values["ready"],
            "failed": p.values["failed"],
            "other": p.values["total"] - p.values["ready"] - p.values["failed"],
        }
        for p in board.agents_per_day
    ]
    times = board.generation_times
    timing = charts.bar_chart(
        chart_id="generation-time",
        title="Generation time by model",
        axis_label="Minutes",
        labels=[row["model"] for row in times],
        rows=[{"p50": row["p50"] / 60, "p90": row["p90"] / 60} for row in times],
        series=[
            charts.Series("p50", "Median", BLUE),
            charts.Series("p90", "90th percentile", PURPLE),
        ],
        stacked=False,
        unit=" min",
    )
    timing["first_column"] = "Model"
    connection = connections.connection_get(org=org)
    account = connections.connection_account(connection=connection) if connection.is_live else None
    return {
        "board": board,
        "ranges": dashboard.RANGES,
        "connection": connection,
        "account": account,
        "charts": [
            charts.bar_chart(
                chart_id="agents",
                title="Agents generated per day",
                axis_label="Agents",
                integer=True,
                labels=labels,
                rows=agents_rows,
                series=[
                    charts.Series("ready", "Ready", GREEN),
                    charts.Series("failed", "Failed", RED),
                    charts.Series("other", "In progress", AMBER),
                ],
            ),
            timing,
            charts.bar_chart(
                chart_id="sessions",
                title="Sessions and messages per day",
                axis_label="Count",
                integer=True,
                labels=labels,
                rows=[p.values for p in board.sessions_per_day],
                series=[
                    charts.Series("sessions", "Sessions", BLUE),
                    charts.Series("messages", "Messages", PURPLE),
                ],
                stacked=False,
            ),
            charts.bar_chart(
                chart_id="credits",
                title="Estimated credits spent per day",
                axis_label="Credits",
                labels=labels,
                rows=[p.values for p in board.credits_per_day],
                series=[
                    charts.Series("generation", "Generations", AMBER),
                    charts.Series("sessions", "Session minutes", BLUE),
                ],
                unit=" credits",
            ),
        ],
    }
