"""The pilot workbench's pages, for curators: golden sets, configurations, runs with their
progress, and comparisons with plots and a downloadable report.

Golden sets and runs belong to a department and are seen only by its curators
(``appliance.access`` rule 7); anyone else gets the 404 of a page that does not exist.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.http import require_GET, require_POST

from appliance import access
from appliance.accounts.models import Department, Role, User
from appliance.web import pilot_drafts
from appliance.web.guards import only_for
from inference.pilot import actions, goldens, plots, report, runner, workbench
from inference.pilot.measures import DEFAULT_LOCAL_COST, EXAMPLE_API_PRICES, MEASURES
from inference.pilot.models import (
    Backend,
    Configuration,
    GoldenSet,
    GoldenSetVersion,
    RetrievalMode,
    Run,
)

curators_only = only_for(access.is_curator, "pilot page")


def _curated_departments(user: Any) -> Any:
    return Department.objects.filter(
        memberships__user=user, memberships__role=Role.CURATOR
    ).distinct()


@curators_only
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    sets = GoldenSet.objects.visible_to(request.user).select_related("department")
    departments = _curated_departments(request.user)
    people = (
        User.objects.filter(
            is_active=True,
            memberships__department__in=departments,
            memberships__role__in=[Role.EMPLOYEE, Role.CURATOR],
        )
        .distinct()
        .order_by("username")
    )
    return render(
        request,
        "pilot/index.html",
        {
            "golden_sets": sets,
            "versions": GoldenSetVersion.objects.filter(golden_set__in=sets)
            .select_related("golden_set")
            .order_by("golden_set__name", "-number"),
            "configurations": Configuration.objects.all(),
            "runs": Run.objects.visible_to(request.user).select_related(
                "configuration", "golden_version__golden_set", "as_user"
            )[:50],
            "departments": departments,
            "people": people,
            "backends": Backend.choices,
            "modes": RetrievalMode.choices,
            "default_cost": json.dumps(DEFAULT_LOCAL_COST),
            "example_prices": EXAMPLE_API_PRICES,
        },
    )


@curators_only
@require_POST
def upload_golden_set(request: HttpRequest) -> HttpResponse:
    department = _curated_departments(request.user).filter(pk=_int(request.POST.get("department")))
    department = department.first()
    upload = request.FILES.get("file")
    name = (request.POST.get("name") or "").strip()
    if department is None or upload is None or not name:
        messages.error(
            request, _("Give the golden set a name, a department and a CSV or JSONL file.")
        )
        return redirect("pilot")
    parsed = goldens.parse_file(upload.name, upload.read(goldens.MAX_FILE_BYTES + 1))
    if parsed.fatal:
        messages.error(request, f"{upload.name}: {parsed.fatal}")
        return redirect("pilot")
    rows, errors = workbench.usable_rows(parsed, request.user)
    bad_lines = {error.line for error in errors}
    for error in errors[:50]:
        messages.error(request, str(error))
    if len(errors) > 50:
        messages.error(
            request, _("…and %(count)d more rows with problems.") % {"count": len(errors) - 50}
        )
    if not rows:
        messages.error(request, _("No question in the file could be used, so nothing was saved."))
        return redirect("pilot")
    version = actions.create_golden_set(request.user, name, department, rows, note=upload.name)
    messages.success(
        request,
        ngettext(
            "Saved %(version)s with %(count)d question",
            "Saved %(version)s with %(count)d questions",
            len(rows),
        )
        % {"version": version, "count": len(rows)}
        + (
            _("; %(count)d row(s) left out, see above.") % {"count": len(bad_lines)}
            if bad_lines
            else "."
        ),
    )
    return redirect("pilot-golden-set", golden_set_id=version.golden_set_id)


@curators_only
@require_GET
def golden_set(request: HttpRequest, golden_set_id: int) -> HttpResponse:
    found = access.get_or_404(GoldenSet.objects.visible_to(request.user), pk=golden_set_id)
    latest = found.latest
    questions = latest.questions.all() if latest else []
    return render(
        request,
        "pilot/golden_set.html",
        {
            "golden_set": found,
            "latest": latest,
            "questions": questions,
            **pilot_drafts.context(request.user, found),
        },
    )


@curators_only
@require_POST
def save_configuration(request: HttpRequest) -> HttpResponse:
    post = request.POST
    try:
        cost = json.loads(post.get("cost") or "{}")
        fields = {
            "description": post.get("description", ""),
            "backend": post.get("backend", Backend.LOCAL),
            "model": post.get("model", "").strip(),
            "server_url": post.get("server_url", "").strip(),
            "api_key_setting": post.get("api_key_setting", "").strip(),
            "reasoning_effort": post.get("reasoning_effort", "low"),
            "retrieval_mode": post.get("retrieval_mode", RetrievalMode.HYBRID),
            "top_k": int(post.get("top_k") or 8),
            "reranker": post.get("reranker") == "on",
            "context_budget": int(post.get("context_budget") or 1500),
            "max_answer_tokens": int(post.get("max_answer_tokens") or 384),
            "cost": cost,
        }
        if not post.get("name", "").strip() or not fields["model"]:
            raise ValueError(_("A configuration needs a name and a model."))
        config = actions.save_configuration(request.user, post["name"].strip(), **fields)
    except (ValueError, json.JSONDecodeError) as exc:
        messages.error(
            request, _("The configuration was not saved: %(problem)s") % {"problem": exc}
        )
        return redirect("pilot")
    messages.success(request, _("Saved the configuration “%(name)s”.") % {"name": config.name})
    return redirect("pilot")


@curators_only
@require_POST
def start_run(request: HttpRequest) -> HttpResponse:
    sets = GoldenSet.objects.visible_to(request.user)
    version = GoldenSetVersion.objects.filter(
        golden_set__in=sets, pk=_int(request.POST.get("version"))
    ).first()
    config = Configuration.objects.filter(pk=_int(request.POST.get("configuration"))).first()
    judge = Configuration.objects.filter(pk=_int(request.POST.get("judge"))).first()
    person = User.objects.filter(
        is_active=True,
        pk=_int(request.POST.get("as_user")),
        memberships__department__in=_curated_departments(request.user),
    ).first()
    if version is None or config is None or person is None:
        messages.error(request, _("Choose a golden set version, a configuration and a person."))
        return redirect("pilot")
    run = actions.start_run(request.user, version, config, person, judge=judge)
    return redirect("pilot-run", run_id=run.pk)


def _run_for(request: HttpRequest, run_id: int) -> Run:
    runs = Run.objects.visible_to(request.user).select_related(
        "configuration", "judge", "golden_version__golden_set", "as_user"
    )
    return access.get_or_404(runs, pk=run_id)


@curators_only
@require_GET
def run(request: HttpRequest, run_id: int) -> HttpResponse:
    found = _run_for(request, run_id)
    scores = found.measures or (runner.remeasure(found) if found.done else {})
    rows = [(measure, scores.get(name)) for name, measure in MEASURES.items() if name in scores]
    answers = found.answers.select_related("golden").order_by("golden__position")
    return render(
        request,
        "pilot/run.html",
        {"run": found, "rows": rows, "answers": answers, "scores": scores},
    )


@curators_only
@require_GET
def run_progress(request: HttpRequest, run_id: int) -> JsonResponse:
    found = _run_for(request, run_id)
    return JsonResponse(
        {
            "status": found.status,
            "done": found.done,
            "total": found.total,
            "percent": found.progress_percent,
            "final": found.is_final,
        }
    )


@curators_only
@require_POST
def cancel_run(request: HttpRequest, run_id: int) -> HttpResponse:
    found = _run_for(request, run_id)
    if actions.cancel_run(request.user, found):
        messages.success(request, _("The run was stopped; what it answered so far is kept."))
    return redirect("pilot-run", run_id=found.pk)


def _runs_to_compare(request: HttpRequest) -> list[Run]:
    ids = [_int(i) for i in request.GET.getlist("runs") for i in i.split(",")]
    runs = Run.objects.visible_to(request.user).select_related(
        "configuration", "golden_version__golden_set", "as_user"
    )
    found = {run.pk: run for run in runs.filter(pk__in=[i for i in ids if i])}
    return [found[i] for i in ids if i in found]


@curators_only
@require_GET
def compare(request: HttpRequest) -> HttpResponse:
    runs = _runs_to_compare(request)
    if len(runs) < 2:
        messages.error(request, _("Tick two or more runs to compare; the first is the baseline."))
        return redirect("pilot")
    result = workbench.comparison(runs)
    summaries = list(zip(result.runs, result.summaries, strict=False))
    query = "&".join(f"runs={run.pk}" for run in runs)
    return render(
        request,
        "pilot/compare.html",
        {
            "runs": runs,
            "result": result,
            "table": [
                (row.measure, row.values, list(zip(row.differences, row.intervals, strict=False)))
                for row in result.rows
            ],
            "query": query,
            "plot_quality": plots.quality_vs_cost(summaries),
            "plot_latency": plots.latency_distribution(
                list(zip(result.runs, result.records, strict=False))
            ),
            "plot_languages": plots.per_language_bars(summaries),
        },
    )


@curators_only
@require_GET
def compare_download(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in ("html", "csv", "json"):
        raise Http404
    runs = _runs_to_compare(request)
    if len(runs) < 2:
        return redirect("pilot")
    result = workbench.comparison(runs)
    if fmt == "html":
        body, kind, name = (
            report.html_report(result, workbench.runs_meta(runs)),
            "text/html",
            "html",
        )
    elif fmt == "csv":
        body, kind, name = report.questions_csv(result), "text/csv", "csv"
    else:
        body, kind, name = report.questions_json(result), "application/json", "json"
    response = HttpResponse(body, content_type=f"{kind}; charset=utf-8")
    stamp = "-".join(str(run.pk) for run in runs)
    response["Content-Disposition"] = f'attachment; filename="pilot-comparison-{stamp}.{name}"'
    return response


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
