"""The review UI's HTTP surface against a real server on loopback and a real store: access rules,
forms, files, exports and the Prometheus endpoint. The browser journey is tests/test_web_e2e.py."""

import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from argon2 import PasswordHasher

from gateway.config import ConfigError, RejectLogSection, parse_config
from gateway.jobs import JobControl, read_job_file
from gateway.rejects import RejectLog
from gateway.review import ReviewIndex
from gateway.web.server import WebServer

from .test_rejects import grade, record

HASH = PasswordHasher().hash("correct horse")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


class Client:
    """A browser-like client: keeps cookies, does not follow redirects (the tests look at them)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), NoRedirect()
        )

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return self._send(urllib.request.Request(self.url + path))

    def post(self, path: str, form: dict) -> tuple[int, dict, bytes]:
        data = urllib.parse.urlencode(form).encode()
        return self._send(urllib.request.Request(self.url + path, data=data, method="POST"))

    def _send(self, request) -> tuple[int, dict, bytes]:
        try:
            with self.opener.open(request, timeout=10) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def login(self, user="qa", password="correct horse") -> None:
        status, headers, _ = self.post("/login", {"user": user, "password": password, "next": "/rejects"})
        assert (status, headers["Location"]) == (303, "/rejects")

    def csrf(self, path: str) -> str:
        return re.search(rb'name="csrf" value="([^"]+)"', self.get(path)[2]).group(1).decode()


def store(data_dir):
    log = RejectLog(data_dir, RejectLogSection(keep_passes_every=1))
    log.start()
    frame = np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8)
    log.observe(record(1, ("wrong_lot",), grade=grade(3.0), data="0106901234567892\x1d10<b>LOT"), frame)
    log.observe(record(2, ("grade_below_min",), grade=grade(1.0, sc=0.0)), frame)
    log.observe(record(3, (), grade=grade(4.0)), frame)  # a kept pass
    log.close()


@pytest.fixture
def serve(tmp_path):
    servers = []

    def start(web: str = "", data_dir=None, jobs=None) -> Client:
        data_dir = data_dir or tmp_path / "data"
        if not (data_dir / "udigate.db").exists():
            store(data_dir)
        users = f'[[web.users]]\nname = "qa"\npassword_hash = "{HASH}"\n'
        users += f'[[web.users]]\nname = "boss"\npassword_hash = "{HASH}"\nrole = "admin"\n'
        job = '[job]\nid = "PO-1"\ngtin = "06901234567892"\nrequired_ais = ["01", "10"]\n'
        config = parse_config(f'[line]\ndata_dir = "{data_dir}"\n{job}[web]\nport = 0\n{web}\n{users}')
        server = WebServer(config, ReviewIndex(data_dir), jobs=jobs, metrics=lambda: b"udigate_test 1\n")
        servers.append(server)
        return Client(server.start())

    yield start
    for server in servers:
        server.close()


def test_pages_answer_read_only_without_login(serve):
    client = serve()
    for path in ("/", "/rejects", "/rejects?verdict=all", "/trends", "/export", "/api/status", "/api/rejects"):
        status, _, body = client.get(path)
        assert status == 200, (path, body[:300])
    listing = json.loads(client.get("/api/rejects?verdict=all")[2])
    assert [i["item_id"] for i in listing["items"]] == [3, 2, 1] and listing["total"] == 3
    item = listing["items"][2]
    page = client.get(item["url"])[2].decode()
    assert "wrong_lot" in page and "&lt;b&gt;LOT" in page and "<b>LOT" not in page  # escaped data
    assert "Log in</a> to record a disposition" in page and 'name="csrf"' not in page
    # an anonymous disposition is turned to the login page, and nothing is stored
    status, headers, _ = client.post(f"/rejects/{item['id']}/disposition", {"disposition": "false_reject"})
    assert status == 303 and headers["Location"].startswith("/login")
    assert json.loads(client.get(f"/api/rejects/{item['id']}")[2])["history"] == []


def test_a_login_is_required_everywhere_when_read_only_is_off(serve):
    client = serve("read_only_without_login = false")
    status, headers, _ = client.get("/rejects?reason=wrong_lot")
    target = urllib.parse.urlsplit(headers["Location"])
    assert status == 303 and target.path == "/login"
    assert urllib.parse.parse_qs(target.query) == {"next": ["/rejects?reason=wrong_lot"]}
    assert client.get("/api/rejects")[0] == 401
    assert client.get("/metrics")[0] == 200  # Prometheus scrapes without a login
    assert client.get("/static/udigate.css")[0] == 200
    status, _, body = client.post("/login", {"user": "qa", "password": "wrong", "next": "/"})
    assert status == 401 and b"wrong user name or password" in body
    client.login()
    assert client.get("/rejects")[0] == 200


def test_a_disposition_needs_the_session_csrf_token(serve):
    client = serve()
    client.login()
    item_id = json.loads(client.get("/api/rejects")[2])["items"][0]["id"]
    form = {"disposition": "confirmed_defect", "comment": "<script>alert(1)</script> nozzle"}
    assert client.post(f"/rejects/{item_id}/disposition", {**form, "csrf": "forged"})[0] == 403
    token = client.csrf(f"/rejects/{item_id}")
    status, headers, _ = client.post(f"/rejects/{item_id}/disposition", {**form, "csrf": token})
    assert (status, headers["Location"]) == (303, f"/rejects/{item_id}?saved=1")
    detail = json.loads(client.get(f"/api/rejects/{item_id}")[2])
    assert [(h["user"], h["disposition"], h["comment"]) for h in detail["history"]] == [
        ("qa", "confirmed_defect", "<script>alert(1)</script> nozzle")
    ]
    page = client.get(f"/rejects/{item_id}")[2].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    bad = client.post(f"/rejects/{item_id}/disposition", {"disposition": "maybe", "csrf": token})
    assert bad[0] == 400 and b"disposition = 'maybe'" in bad[2]


def test_settings_are_for_admins(serve):
    client = serve()
    assert client.get("/settings")[0] == 303  # to the login
    client.login("qa")
    assert client.get("/settings")[0] == 403
    admin = Client(client.url)
    admin.login("boss")
    status, _, body = admin.get("/settings")
    assert status == 200 and b"Configuration in use" in body
    assert HASH.encode() not in body and b"********" in body  # no secrets on the page


def test_only_stored_pictures_are_served(serve):
    client = serve()
    item = json.loads(client.get("/api/rejects")[2])["items"][0]
    status, headers, body = client.get(item["files"]["thumb"])
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and body[:2] == b"\xff\xd8"
    for path in ("/files/rejects/../udigate.db", "/files/rejects/%2e%2e/udigate.db", "/files/rejects/nope.png"):
        assert client.get(path)[0] == 404, path


def test_bad_filters_are_answered_with_the_reason(serve):
    client = serve()
    status, _, body = client.get("/rejects?since=yesterday")
    assert status == 400 and b"since = 'yesterday'" in body
    assert client.get("/rejects?max_grade=x")[0] == 400
    assert client.get("/rejects?before=abc")[0] == 400
    assert client.get("/trends?period=5y")[0] == 400
    assert client.get("/rejects/999")[0] == 404


def test_metrics_are_served(serve):
    client = serve()
    status, headers, body = client.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain") and body == b"udigate_test 1\n"


def test_a_users_file_with_a_bad_entry_names_the_key(tmp_path):
    users = tmp_path / "users.toml"
    users.write_text('[[users]]\nname = "qa"\npassword_hash = "plaintext"\n')
    config = parse_config(f'[web]\nusers_file = "{users}"\n')
    with pytest.raises(ConfigError) as error:
        config.web.all_users()
    assert error.value.source == str(users)
    assert "web.users.0.password_hash = 'plaintext': expected an argon2 hash" in error.value.problems[0]


def test_an_admin_starts_and_stops_the_production_order(serve, tmp_path):
    changes = []
    config = parse_config('[job]\nid = "PO-1"\ngtin = "06901234567892"\nrequired_ais = ["01", "10"]\n')
    jobs = JobControl(config.job, tmp_path / "data", changes.append)
    client = serve(jobs=jobs)
    client.login("boss")
    token = client.csrf("/settings")
    form = {"csrf": token, "action": "start", "id": "PO-2", "gtin": "06901234567892", "lot": "B77"}
    status, headers, _ = client.post("/settings/job", form)
    assert (status, headers["Location"]) == (303, "/settings")
    assert (jobs.active.id, jobs.active.lot, jobs.active.required_ais) == ("PO-2", "B77", ("01", "10"))
    assert changes[-1] is jobs.active and read_job_file(jobs.path)[1].id == "PO-2"  # as udigate job start
    bad = client.post("/settings/job", {**form, "gtin": "06901234567893"})
    assert bad[0] == 400 and b"check digit" in bad[2] and jobs.active.id == "PO-2"
    client.post("/settings/job", {"csrf": token, "action": "stop"})
    assert jobs.active is None and changes[-1] is None
