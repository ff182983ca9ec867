"""Local users and login sessions for the review UI.

Users come from the line configuration (``[[web.users]]`` or ``web.users_file``) with argon2id
password hashes (``udigate user hash`` makes one); nobody's password is stored. A login gives a
random session token in an HttpOnly, SameSite=Strict cookie, kept in memory (a restart logs
everyone out) and a CSRF token that every form repeats. Five wrong passwords for a name lock it
for a minute.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..config import WebUser

LOCK_AFTER = 5
LOCK_S = 60.0
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    """The argon2id hash to put in ``web.users`` (password_hash)."""
    return _hasher.hash(password)


@dataclass(frozen=True, slots=True)
class Session:
    user: str
    role: str
    csrf: str
    expires: float  # time.monotonic()

    def may(self, action: str) -> bool:
        """``dispose`` (engineer, admin) or ``settings`` (admin)."""
        return action == "dispose" or self.role == "admin"


class Auth:
    def __init__(self, users: dict[str, WebUser], session_hours: float) -> None:
        self.users = users
        self._lifetime = session_hours * 3600
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()
        # a wrong name costs as much as a wrong password: no telling which names exist
        self._decoy = _hasher.hash(secrets.token_hex(8))

    def login(self, name: str, password: str) -> tuple[str, Session] | str:
        """A new session (token, session), or why not."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(name, []) if now - t < LOCK_S]
            self._failures[name] = recent
            if len(recent) >= LOCK_AFTER:
                return f"too many wrong passwords for {name!r}: try again in a minute"
        user = self.users.get(name)
        try:
            _hasher.verify(user.password_hash if user else self._decoy, password)
            ok = user is not None
        except (VerificationError, InvalidHashError):
            ok = False
        if not ok:
            with self._lock:
                self._failures[name].append(now)
            return "wrong user name or password"
        token = secrets.token_urlsafe(32)
        session = Session(user.name, user.role, secrets.token_urlsafe(16), now + self._lifetime)
        with self._lock:
            self._failures.pop(name, None)
            self._sessions = {t: s for t, s in self._sessions.items() if s.expires > now}
            self._sessions[token] = session
        return token, session

    def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is not None and session.expires <= time.monotonic():
                del self._sessions[token]
                return None
            return session

    def logout(self, token: str | None) -> None:
        with self._lock:
            self._sessions.pop(token or "", None)
