"""The review UI: a thin aiohttp adapter over :class:`gateway.review.ReviewIndex`, the live
status of the line, the exports and the Prometheus endpoint.

It runs on its own asyncio loop thread, apart from the Modbus and MQTT loop, so a slow page or
a large export never delays a result to the PLC. Pages are rendered on the server (Jinja2,
autoescaped); the only script is the status page's one-second refresh.

    /                     live line status              /trends          grade charts and drift
    /rejects              list, filters, thumbnails     /export          CSV, printable report, PDF
    /rejects/<id>         detail, grade report,         /settings        production order (admin)
                          disposition                   /metrics         Prometheus
    /api/status, /api/rejects[/<id>]: the same as JSON
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from vision.report import grade_letter

from .. import exports
from ..config import Config, JobSection, dump_config
from ..exports import PARAMETER_NAMES, local_time, minimums
from ..ioloop import IoLoop
from ..jobs import JobControl, JobError
from ..reasons import REASONS
from ..review import DISPOSITIONS, PAGE_SIZE, Filters, Item, ReviewError, ReviewIndex
from ..trends import drift_warnings
from .auth import Auth, Session

log = logging.getLogger(__name__)

COOKIE = "udigate_session"
SESSION = web.RequestKey("session", Session | None)
PERIODS = {"1h": 1, "8h": 8, "24h": 24, "7d": 24 * 7, "30d": 24 * 30}


def letter(grade: float | None) -> str:
    return "–" if grade is None else grade_letter(grade)


class WebServer:
    def __init__(
        self,
        config: Config,
        index: ReviewIndex,
        status: Callable[[], dict] | None = None,
        jobs: JobControl | None = None,
        metrics: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config
        self.index = index
        self.status = status
        self.jobs = jobs
        self.metrics = metrics
        self.auth = Auth(config.web.all_users(), config.web.session_hours)
        self.url: str | None = None
        self._io = IoLoop(name="web")
        self._runner: web.AppRunner | None = None
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("gateway.web", "templates"),
            autoescape=True,
        )
        self.templates.filters.update(local=local_time, letter=letter)
        self.templates.globals.update(
            reasons=REASONS, dispositions=DISPOSITIONS, line=config.line, parameter_names=PARAMETER_NAMES
        )

    # -- life cycle -----------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on web.host:web.port; returns the address to open (port 0 takes a free one)."""
        self._io.start()
        self.url = self._io.run(self._start())
        return self.url

    def close(self) -> None:
        if self._runner is not None:
            self._io.run(self._runner.cleanup())
        self._io.stop()
        self.index.close()

    async def _start(self) -> str:
        app = web.Application(middlewares=[self._session_middleware], client_max_size=64 * 1024)
        static = resources.files("gateway.web").joinpath("static")
        app.add_routes(
            [
                web.get("/", self.status_page),
                web.get("/api/status", self.api_status),
                web.get("/rejects", self.list_page),
                web.get("/api/rejects", self.api_list),
                web.get(r"/rejects/{id:\d+}", self.detail_page),
                web.get(r"/api/rejects/{id:\d+}", self.api_detail),
                web.post(r"/rejects/{id:\d+}/disposition", self.dispose),
                web.get("/files/{path:rejects/.+}", self.file),
                web.get("/trends", self.trends_page),
                web.get("/export", self.export_page),
                web.get("/export.csv", self.export_csv),
                web.get("/report", self.report_html),
                web.get("/report.pdf", self.report_pdf),
                web.get("/settings", self.settings_page),
                web.post("/settings/job", self.settings_job),
                web.get("/login", self.login_page),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/metrics", self.metrics_page),
                web.static("/static", Path(str(static))),
            ]
        )
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        web_config = self.config.web
        site = web.TCPSite(self._runner, web_config.host, web_config.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise OSError(f"web.port {web_config.port} on {web_config.host}: {exc.strerror or exc}") from None
        sockets = site._server.sockets  # the bound port, when 0 asked for any
        port = sockets[0].getsockname()[1]
        host = web_config.host
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        if shown != "127.0.0.1" and host in ("0.0.0.0", ""):
            shown = socket.gethostname()
        return f"http://{shown}:{port}/"

    # -- sessions and rendering -----------------------------------------------------------------

    @web.middleware
    async def _session_middleware(self, request: web.Request, handler):
        request[SESSION] = self.auth.session(request.cookies.get(COOKIE))
        public = request.path in ("/login", "/metrics") or request.path.startswith("/static/")
        if not public and request[SESSION] is None and not self.config.web.read_only_without_login:
            if request.path.startswith("/api/") or request.path.startswith("/files/"):
                raise web.HTTPUnauthorized(text="log in first")
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.path_qs})}")
        response = await handler(request)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response

    def _render(self, request: web.Request, template: str, http_status: int = 200, **values) -> web.Response:
        session: Session | None = request[SESSION]
        page = self.templates.get_template(template).render(
            session=session,
            users_configured=bool(self.auth.users),
            path=request.path,
            path_qs=request.path_qs,
            **values,
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8", status=http_status)

    def _require(self, request: web.Request, action: str, form: dict | None = None) -> Session:
        session: Session | None = request[SESSION]
        if session is None:
            raise web.HTTPSeeOther(f"/login?{urlencode({'next': request.headers.get('Referer', '/')})}")
        if not session.may(action):
            raise web.HTTPForbidden(text=f"{session.user} ({session.role}) may not change {action}")
        if form is not None and form.get("csrf") != session.csrf:
            raise web.HTTPForbidden(text="the form is stale (CSRF token): reload the page and try again")
        return session

    # -- status ---------------------------------------------------------------------------------

    def live(self) -> dict:
        """The line's live status with the store's latest rejects and the drift warnings."""
        status = self.status() if self.status else {"running": False}
        if status.get("store") is None:  # no line here, or its store is off: what the database holds
            items, size = self.index.store_size()
            status["store"] = {"items": items, "bytes": size, "quota_bytes": int(self.config.rejects.max_disk_mb * 1e6)}
        latest = self.index.search(Filters(verdict="reject"), limit=8).items
        status["latest_rejects"] = [_item_json(item) for item in latest]
        status["drift"] = [asdict(w) for w in self.drift()]
        return status

    def drift(self):
        grading = self.config.grading
        now = datetime.now(UTC)
        since = (now - timedelta(minutes=grading.drift_window_minutes)).strftime("%Y-%m-%dT%H:%M")
        points = self.index.trend(since)
        return drift_warnings(
            points,
            minimums(self.config, {p.parameter for p in points}),
            now.strftime("%Y-%m-%dT%H:%M"),
            window_minutes=grading.drift_window_minutes,
            horizon_minutes=grading.drift_horizon_minutes,
            warn_margin=grading.warn_margin,
        )

    async def status_page(self, request: web.Request) -> web.Response:
        return self._render(request, "status.html", status=self.live())

    async def api_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.live(), headers={"Cache-Control": "no-store"})

    # -- rejects --------------------------------------------------------------------------------

    def _filters(self, request: web.Request) -> Filters:
        q = request.query
        try:
            max_grade = float(q["max_grade"]) if q.get("max_grade") else None
        except ValueError:
            raise web.HTTPBadRequest(text=f"max_grade = {q['max_grade']!r}: expected a grade from 0 to 4") from None
        try:
            return Filters(
                since=q.get("since") or None,
                until=q.get("until") or None,
                job=q["job"] if "job" in q and q["job"] != "*" else None,
                reason=q.get("reason") or None,
                max_grade=max_grade,
                verdict=q.get("verdict", "reject") if q.get("verdict", "reject") != "all" else None,
                disposition=q.get("disposition") or None,
                text=q.get("text") or None,
            )
        except ReviewError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None

    def _before(self, request: web.Request) -> int | None:
        before = request.query.get("before")
        if before is None:
            return None
        if not before.isdigit():
            raise web.HTTPBadRequest(text=f"before = {before!r}: expected an item number")
        return int(before)

    async def list_page(self, request: web.Request) -> web.Response:
        filters = self._filters(request)
        page = self.index.search(filters, self._before(request))
        query = {k: v for k, v in request.query.items() if k != "before" and v != ""}
        return self._render(
            request,
            "rejects.html",
            page=page,
            filters=filters,
            query=query,
            form=dict(request.query),
            jobs=self.index.jobs(),
            reason_codes=self.index.reasons(),
            next_url=f"/rejects?{urlencode({**query, 'before': page.next_before})}" if page.next_before else None,
            newest_url=f"/rejects?{urlencode(query)}" if "before" in request.query else None,
            page_size=PAGE_SIZE,
        )

    async def api_list(self, request: web.Request) -> web.Response:
        page = self.index.search(self._filters(request), self._before(request))
        return web.json_response(
            {"total": page.total, "next_before": page.next_before, "items": [_item_json(i) for i in page.items]}
        )

    def _detail(self, request: web.Request):
        detail = self.index.get(int(request.match_info["id"]))
        if detail is None:
            raise web.HTTPNotFound(text="no such item in the store (deleted by retention?)")
        return detail

    async def detail_page(self, request: web.Request) -> web.Response:
        detail = self._detail(request)
        grade = (detail.record or {}).get("grade") or {}
        limits = minimums(self.config, (grade.get("parameters") or {}).keys())
        return self._render(
            request, "detail.html", d=detail, grade=grade, limits=limits, saved=request.query.get("saved")
        )

    async def api_detail(self, request: web.Request) -> web.Response:
        detail = self._detail(request)
        return web.json_response(
            {
                **_item_json(detail.item),
                "record": detail.record,
                "record_problem": detail.record_problem,
                "history": [asdict(d) for d in detail.history],
            }
        )

    async def dispose(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = self._require(request, "dispose", form)
        item_id = int(request.match_info["id"])
        try:
            self.index.dispose(item_id, form.get("disposition", ""), form.get("comment", ""), session.user)
        except ReviewError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        log.info("item %d: %s by %s", item_id, form.get("disposition"), session.user)
        raise web.HTTPSeeOther(f"/rejects/{item_id}?saved=1")

    async def file(self, request: web.Request) -> web.StreamResponse:
        """A stored picture; only below <data_dir>/rejects."""
        root = (self.config.line.data_dir / "rejects").resolve()
        path = (self.config.line.data_dir / request.match_info["path"]).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise web.HTTPNotFound(text="no such file (deleted by retention?)")
        # files never change once written: the browser may keep them
        return web.FileResponse(path, headers={"Cache-Control": "private, max-age=86400, immutable"})

    # -- trends ---------------------------------------------------------------------------------

    async def trends_page(self, request: web.Request) -> web.Response:
        period = request.query.get("period", "8h")
        if period not in PERIODS:
            raise web.HTTPBadRequest(text=f"period = {period!r}: expected one of {', '.join(PERIODS)}")
        warnings = self.drift()
        since = datetime.now(UTC) - timedelta(hours=PERIODS[period])
        charts = exports.trend_charts(self.index, self.config, since, None, warnings)
        return self._render(request, "trends.html", charts=charts, warnings=warnings, period=period, periods=PERIODS)

    # -- exports --------------------------------------------------------------------------------

    async def export_page(self, request: web.Request) -> web.Response:
        today = date.today()
        return self._render(
            request, "export.html", jobs=self.index.jobs(), since=(today - timedelta(days=1)).isoformat(), until=""
        )

    def _file_name(self, filters: Filters, extension: str) -> str:
        parts = [self.config.line.site, self.config.line.name]
        if filters.job:
            parts.append(filters.job)
        parts.append(datetime.now().strftime("%Y%m%d-%H%M"))
        return "udigate-" + "-".join(exports.safe_name(p) for p in parts) + f".{extension}"

    async def export_csv(self, request: web.Request) -> web.StreamResponse:
        filters = self._filters(request)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/csv; charset=utf-8",
                "Content-Disposition": f'attachment; filename="{self._file_name(filters, "csv")}"',
            }
        )
        await response.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(16)
        loop = asyncio.get_running_loop()

        def produce() -> None:  # reads the records off the loop thread
            try:
                for chunk in exports.csv_chunks(self.index, filters, self.config.line.data_dir):
                    asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        producer = loop.run_in_executor(None, produce)
        while (chunk := await queue.get()) is not None:
            await response.write(chunk)
        await producer
        await response.write_eof()
        return response

    def _report(self, request: web.Request, for_pdf: bool) -> str:
        filters = self._filters(request)
        charts = exports.report_charts(self.index, self.config, filters, self.drift() if not filters.until else ())
        session: Session | None = request[SESSION]
        return exports.report_html(
            self.index,
            filters,
            self.config,
            charts=charts,
            generated_by=session.user if session else "anonymous",
            image_root="" if not for_pdf else self.config.line.data_dir.resolve().as_uri() + "/",
        )

    async def report_html(self, request: web.Request) -> web.Response:
        page = await asyncio.to_thread(self._report, request, False)
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    async def report_pdf(self, request: web.Request) -> web.Response:
        filters = self._filters(request)
        page = await asyncio.to_thread(self._report, request, True)
        try:
            pdf = await asyncio.to_thread(exports.report_pdf, page, self.config.line.data_dir)
        except exports.ExportError as exc:
            raise web.HTTPServiceUnavailable(text=str(exc)) from None
        return web.Response(
            body=pdf,
            content_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{self._file_name(filters, "pdf")}"'},
        )

    # -- settings -------------------------------------------------------------------------------

    async def settings_page(self, request: web.Request) -> web.Response:
        self._require(request, "settings")
        active = self.jobs.describe() if self.jobs else None
        return self._render(
            request,
            "settings.html",
            active=active,
            job_control=self.jobs is not None,
            config_text=dump_config(self.config, hide_secrets=True),
            error=None,
        )

    async def settings_job(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = self._require(request, "settings", form)
        if self.jobs is None:
            raise web.HTTPConflict(text="no line is running here")
        try:
            if form.get("action") == "stop":
                self.jobs.stop(by=f"web:{session.user}")
            else:
                # the configured order's checks (required AIs, windows, serial pattern) stay
                fields = {k: form[k].strip() for k in ("id", "gtin", "lot", "production_date", "expiry") if form.get(k)}
                order = JobSection.model_validate({**self.config.job.model_dump(exclude_none=True), **fields})
                self.jobs.start(order, by=f"web:{session.user}")
        except (JobError, ValueError) as exc:
            return self._render(
                request,
                "settings.html",
                http_status=400,
                active=self.jobs.describe(),
                job_control=True,
                config_text=dump_config(self.config, hide_secrets=True),
                error=str(exc),
            )
        raise web.HTTPSeeOther("/settings")

    # -- login ----------------------------------------------------------------------------------

    async def login_page(self, request: web.Request) -> web.Response:
        return self._render(request, "login.html", next=request.query.get("next", "/"), error=None, user="")

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        target = form.get("next", "/")
        if not target.startswith("/") or target.startswith("//"):
            target = "/"  # only within this site
        result = await asyncio.to_thread(self.auth.login, form.get("user", ""), form.get("password", ""))
        if isinstance(result, str):
            log.warning("web login refused for %r from %s: %s", form.get("user", ""), request.remote, result)
            return self._render(
                request, "login.html", http_status=401, next=target, error=result, user=form.get("user", "")
            )
        token, session = result
        log.info("web login: %s (%s) from %s", session.user, session.role, request.remote)
        response = web.HTTPSeeOther(target)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="Strict", max_age=int(self.config.web.session_hours * 3600)
        )
        raise response

    async def logout(self, request: web.Request) -> web.Response:
        self.auth.logout(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/")
        response.del_cookie(COOKIE)
        raise response

    async def metrics_page(self, request: web.Request) -> web.Response:
        if self.metrics is None or not self.config.web.metrics:
            raise web.HTTPNotFound(text="metrics are off (web.metrics = false)")
        body = await asyncio.to_thread(self.metrics)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})


def _item_json(item: Item) -> dict:
    values = asdict(item)
    values["files"] = {k: f"/files/{v}" for k, v in item.files.items()}
    values["url"] = f"/rejects/{item.id}"
    return values
