"""The web dashboard: server-rendered pages, a little JavaScript for live updates (server-sent
events) and no external asset. Forms carry the session's CSRF token; every page is rendered
through the masker; buttons appear only for what the person may do, and the engine decides
again when they are pressed."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlparse

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from shipline.domain.access import Principal
from shipline.engine.access import may, permissions, require
from shipline.engine.reads import by_environment, took
from shipline.engine.wiring import RunRecord
from shipline.errors import NotAuthenticated, PermissionDenied, ShiplineError
from shipline.server.api import server_of
from shipline.server.app import COOKIE, HERE, Server

router = APIRouter(include_in_schema=False)
Srv = Annotated[Server, Depends(server_of)]
LOGIN_CSRF = "shipline_login"
PHASE_WORDS = {"succeeded": "✓", "failed": "✗", "errored": "!", "cancelled": "⊘",
               "waiting": "⏸", "running": "▶", "pending": "…", "skipped": "○"}  # fmt: skip

_templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters["took"] = took


def _page(
    srv: Server, request: Request, template: str, status: int = 200, **data: Any
) -> HTMLResponse:
    html = _templates.get_template(template).render(
        request=request, project=srv.config.project, phase_words=PHASE_WORDS,
        csrf=getattr(request.state, "csrf", ""), fragment=request.headers.get("X-Fragment") == "1",
        message=request.query_params.get("msg"), message_kind=request.query_params.get("kind"),
        **data,
    )  # fmt: skip
    return HTMLResponse(srv.mask(html), status_code=status)


def error_page(srv: Server, request: Request, exc: ShiplineError, status: int) -> Response:
    """An error as a page (the API answers JSON instead)."""
    return _page(srv, request, "error.html", status, error=exc.message, hint=exc.hint, who=None)


def _who(request: Request) -> Principal:
    return server_of(request).principal(request)


Who = Annotated[Principal, Depends(_who)]


def _check_csrf(request: Request, given: str) -> None:
    expected = getattr(request.state, "csrf", None)
    if not expected or not secrets.compare_digest(given, expected):
        raise PermissionDenied("the form expired or did not come from this site; reload the page")


def _back(path: str, message: str, kind: str = "ok") -> RedirectResponse:
    return RedirectResponse(f"{path}?msg={quote(message)}&kind={kind}", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path on this site (never `//evil.example` or a full address)."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    parsed = urlparse(target)
    return parsed.path if not parsed.netloc else "/"


# sign-in --------------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, srv: Srv, next: str = "/") -> Response:
    token = secrets.token_urlsafe(24)
    response = _page(
        srv, request, "login.html", who=None, next=_safe_next(next), login_csrf=token,
        oidc=srv.config.access.oidc,
    )  # fmt: skip
    response.set_cookie(LOGIN_CSRF, token, httponly=True, samesite="strict",
                        secure=srv.secure_cookies, max_age=900)  # fmt: skip
    return response


def open_session(srv: Server, name: str, target: str) -> Response:
    """Signed in: a new session cookie, and on to `target`."""
    cookie, _ = srv.accounts.open_session(name)
    response = RedirectResponse(_safe_next(target), status_code=303)
    response.set_cookie(COOKIE, cookie, httponly=True, samesite="lax",
                        secure=srv.secure_cookies, max_age=12 * 3600)  # fmt: skip
    response.delete_cookie(LOGIN_CSRF)
    return response


@router.post("/login")
def login(
    request: Request,
    srv: Srv,
    name: Annotated[str, Form(max_length=128)],
    password: Annotated[str, Form(max_length=1000)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=1000)] = "/",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not secrets.compare_digest(csrf, expected):
        raise PermissionDenied("the sign-in form expired; reload it")
    source = request.client.host if request.client else ""
    try:
        who = srv.accounts.check_password(name, password, source=source)
    except NotAuthenticated as exc:
        return _back("/login", exc.message, "error")
    return open_session(srv, who, next)


@router.post("/logout")
def logout(request: Request, srv: Srv, who: Who, csrf: Annotated[str, Form()] = "") -> Response:
    _check_csrf(request, csrf)
    srv.accounts.close_session(request.cookies.get(COOKIE, ""))
    srv.ws.audit.append(who.name, "logout")
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response


# pages ----------------------------------------------------------------------------------------


@router.get("/")
def dashboard(request: Request, srv: Srv, who: Who) -> Response:
    require(srv.config, who, "view")
    envs = [e for e in srv.config.ladder_environments() if may(srv.config, who, "view", e.name)]
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for row in srv.status_rows():
        cells[(row["service"], row["environment"])] = row
    deployable = [e.name for e in envs if may(srv.config, who, "deploy", e.name)]
    ladder = srv.config.ladder
    # where a promotion may start: a rung below one the person may deploy to
    sources = [name for i, name in enumerate(ladder[:-1]) if set(ladder[i + 1 :]) & set(deployable)]
    return _page(
        srv, request, "dashboard.html", who=who, environments=envs,
        services=srv.config.services, cells=cells, deployable=deployable, sources=sources,
    )  # fmt: skip


@router.get("/runs")
def runs_page(request: Request, srv: Srv, who: Who, env: str | None = None) -> Response:
    from shipline.engine.reads import run_summary

    def listed(name: str | None) -> list[RunRecord]:
        return srv.runs.store.list_runs(limit=100, environment=name)

    if env:  # a name or an alias
        env, found = by_environment(env, listed, lambda: srv.config)
    else:
        found = listed(None)
    require(srv.config, who, "view", env)
    rows = [run_summary(r) for r in found if may(srv.config, who, "view", r.environment)]
    return _page(srv, request, "runs.html", who=who, runs=rows, env=env)


@router.get("/runs/{run_id}")
def run_page(request: Request, srv: Srv, who: Who, run_id: int) -> Response:
    from shipline.engine.reports import chart, gather
    from shipline.engine.runs import run_details

    env = srv.runs.get(run_id).environment
    require(srv.config, who, "view", env)
    data = run_details(srv.runs, run_id)
    report = gather(srv.runs.store, run_id, srv.ws.state_dir) or {}
    canaries = [{**c, "chart": chart(c["samples"])} for c in report.get("canaries", [])]
    waiting = [s for s in data["stages"] if s["phase"] == "waiting"]
    deciding = [  # canaries a person may promote or abort now
        {"stage": stage["name"], **step}
        for stage in data["stages"] for step in stage["steps"]
        if step["phase"] == "running" and step.get("canary")
    ] if data["phase"] in ("running", "waiting") else []  # fmt: skip
    logs = srv.runs.store.logs(run_id, 0)[-300:]
    return _page(
        srv, request, "run.html", who=who, run=data, waiting=waiting, deciding=deciding,
        logs=logs,
        tests=report.get("tests", []), canaries=canaries,
        may_approve=may(srv.config, who, "approve", env),
        may_cancel=may(srv.config, who, "deploy", env),
        last_log=logs[-1]["id"] if logs else 0,
    )  # fmt: skip


@router.get("/releases")
def releases_page(request: Request, srv: Srv, who: Who) -> Response:
    from shipline.engine.releases import list_releases

    require(srv.config, who, "view")
    return _page(srv, request, "releases.html", who=who, releases=list_releases(srv.ws))


@router.get("/audit")
def audit_page(
    request: Request,
    srv: Srv,
    who: Who,
    env: str | None = None,
    service: str | None = None,
    actor: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> Response:
    from shipline.domain.audit import details_text, select_records

    require(srv.config, who, "view")
    kept = srv.ws.audit.records()

    def listed(name: str | None) -> list[dict[str, Any]]:
        return select_records(
            kept, environment=name, service=service or None, actor=actor or None,
            since=since or None, until=until or None,
        )  # fmt: skip

    if env:  # a name or an alias
        env, records = by_environment(env, listed, lambda: srv.config)
    else:
        records = listed(None)
    filters = {"env": env or "", "service": service or "", "actor": actor or "",
               "since": since or "", "until": until or ""}  # fmt: skip
    shown = [{**r, "detailsText": details_text(r["details"])} for r in records[:500]]
    return _page(srv, request, "audit.html", who=who, records=shown, filters=filters)


@router.get("/me")
def me_page(request: Request, srv: Srv, who: Who) -> Response:
    return _page(
        srv, request, "me.html", who=who, permissions=permissions(srv.config, who),
        tokens=srv.accounts.tokens(who.name),
    )  # fmt: skip


# actions --------------------------------------------------------------------------------------


@router.post("/deploy")
def deploy(
    request: Request,
    srv: Srv,
    who: Who,
    environment: Annotated[str, Form(max_length=63)],
    services: Annotated[str, Form(max_length=4000)],
    tag: Annotated[str, Form(max_length=128)],
    csrf: Annotated[str, Form()] = "",
) -> Response:
    from shipline.engine.submit import submit_deploy

    _check_csrf(request, csrf)
    require(srv.config, who, "deploy", environment)
    try:
        record = submit_deploy(
            srv.ws, env=environment, services=services.strip() or None, tag=tag.strip(),
            actor=who.name, service=srv.runs,
        )  # fmt: skip
    except ShiplineError as exc:
        return _back("/", exc.message, "error")
    return _back(f"/runs/{record.id}", f"run {record.id} queued")


@router.post("/promote")
def promote(
    request: Request,
    srv: Srv,
    who: Who,
    source: Annotated[str, Form(max_length=63)],
    targets: Annotated[str, Form(max_length=1000)],
    services: Annotated[str, Form(max_length=4000)] = "all",
    tag: Annotated[str, Form(max_length=128)] = "",
    release: Annotated[str, Form(max_length=128)] = "",
    emergency: Annotated[str, Form(max_length=8)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Promote what succeeded in `source` up the ladder, as `promote` does: the person may deploy
    to every environment it reaches, and every promotion rule holds."""
    from shipline.engine.promotion import submit_promotion

    _check_csrf(request, csrf)
    try:
        record = submit_promotion(
            srv.ws, source=source, targets=targets, services=services.strip() or None,
            tag=tag.strip() or None, release=release.strip() or None, actor=who.name,
            emergency=bool(emergency), reason=reason.strip() or None,
            allowed=lambda env: require(srv.config, who, "deploy", env), service=srv.runs,
        )  # fmt: skip
    except ShiplineError as exc:
        return _back("/", exc.message, "error")
    where = ", ".join(record.environments)
    return _back(f"/runs/{record.id}", f"run {record.id} queued: promote {source} -> {where}")


def _vote(
    request: Request, srv: Server, who: Principal, run_id: int, stage: str, comment: str,
    csrf: str, approve: bool,
) -> Response:  # fmt: skip
    _check_csrf(request, csrf)
    try:
        require(srv.config, who, "approve", srv.runs.get(run_id).environment)
        effect = srv.runs.vote(
            run_id, who.name, approve=approve, stage=stage or None, comment=comment or None
        )
    except ShiplineError as exc:
        return _back(f"/runs/{run_id}", exc.message, "error")
    word = "approved" if approve else "rejected"
    still = f"; still needed: {', '.join(effect.waiting_on)}" if effect.waiting_on else ""
    return _back(f"/runs/{run_id}", f"{effect.stage}: {word} by {who.name}{still}")


@router.post("/runs/{run_id}/approve")
def approve(
    request: Request,
    srv: Srv,
    who: Who,
    run_id: int,
    stage: Annotated[str, Form(max_length=100)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _vote(request, srv, who, run_id, stage, comment, csrf, True)


@router.post("/runs/{run_id}/reject")
def reject(
    request: Request,
    srv: Srv,
    who: Who,
    run_id: int,
    stage: Annotated[str, Form(max_length=100)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    return _vote(request, srv, who, run_id, stage, comment, csrf, False)


@router.post("/runs/{run_id}/canary")
def canary(
    request: Request,
    srv: Srv,
    who: Who,
    run_id: int,
    action: Annotated[Literal["promote", "abort"], Form()],
    service: Annotated[str, Form(max_length=63)] = "",
    comment: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    """Promote a running canary past its pause or analysis, or abort it: that of `service`, or
    each one running (the deploy stage's approver rules apply, as to a vote)."""
    _check_csrf(request, csrf)
    try:
        require(srv.config, who, "approve", srv.runs.get(run_id).environment)
        step = srv.runs.canary(
            run_id, who.name, promote=action == "promote", comment=comment or None,
            service=service or None,
        )  # fmt: skip
    except ShiplineError as exc:
        return _back(f"/runs/{run_id}", exc.message, "error")
    word = "promoted" if action == "promote" else "aborted"
    return _back(f"/runs/{run_id}", f"canary of {step} {word} by {who.name}")


@router.post("/runs/{run_id}/cancel")
def cancel(
    request: Request,
    srv: Srv,
    who: Who,
    run_id: int,
    reason: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form()] = "",
) -> Response:
    _check_csrf(request, csrf)
    try:
        require(srv.config, who, "deploy", srv.runs.get(run_id).environment)
        srv.runs.cancel(run_id, who.name, reason or None)
    except ShiplineError as exc:
        return _back(f"/runs/{run_id}", exc.message, "error")
    return _back(f"/runs/{run_id}", "cancellation requested")
