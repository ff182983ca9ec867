"""Reed–Solomon error correction of ECC200 blocks over GF(256) (primitive polynomial 301,
generator roots α¹…αᵈ), correcting errors and erasures and reporting how many of each.

A block with ``d`` error correction codewords, ``p`` of them reserved for misdecode protection,
is corrected when ``2·errors + erasures ≤ d − p``; anything beyond is reported as a failure,
never as a wrong correction that the checks can see (syndromes are verified after correcting).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_PRIMITIVE = 0x12D


def _tables() -> tuple[np.ndarray, np.ndarray]:
    exp = np.zeros(512, np.int32)
    log = np.zeros(256, np.int32)
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= _PRIMITIVE
    exp[255:510] = exp[0:255]
    return exp, log


EXP, LOG = _tables()

FAILED = -1


@njit(cache=True, nogil=True)
def _mul(a, b, exp, log):
    if a == 0 or b == 0:
        return 0
    return exp[log[a] + log[b]]


@njit(cache=True, nogil=True)
def _poly_eval(poly, length, x, exp, log):
    """poly[0] + poly[1]·x + … (lowest degree first)."""
    result = 0
    for i in range(length - 1, -1, -1):
        result = _mul(result, x, exp, log) ^ poly[i]
    return result


@njit(cache=True, nogil=True)
def _decode(block, ec, erasures, reserved, exp, log):
    """Correct ``block`` (data then EC codewords, in place). Returns (errors, erasures) or
    (FAILED, 0)."""
    n = block.shape[0]
    e = erasures.shape[0]
    if e > ec - reserved or n > 255:
        return FAILED, 0
    syndromes = np.zeros(ec + 1, np.int32)  # S_1 … S_d at indices 1 … d
    nonzero = False
    for j in range(1, ec + 1):
        x = exp[j]
        s = 0
        for i in range(n):
            s = _mul(s, x, exp, log) ^ block[i]
        syndromes[j] = s
        if s:
            nonzero = True
    if not nonzero:
        return 0, 0

    # Locator of the erasures: Γ(x) = Π (1 − X_k x), X_k = α^(n−1−position)
    size = ec + 2
    locator = np.zeros(size, np.int32)
    locator[0] = 1
    for k in range(e):
        position = erasures[k]
        if position < 0 or position >= n:
            return FAILED, 0
        xk = exp[n - 1 - position]
        for i in range(size - 1, 0, -1):
            locator[i] ^= _mul(locator[i - 1], xk, exp, log)
    previous = locator.copy()
    length = e
    # Berlekamp–Massey, continued from the erasure locator (Blahut)
    for r in range(e + 1, ec + 1):
        delta = 0
        for i in range(length + 1):
            delta ^= _mul(locator[i], syndromes[r - i], exp, log) if r - i >= 1 else 0
        shifted = np.zeros(size, np.int32)
        shifted[1:] = previous[:-1]
        if delta == 0:
            previous = shifted
            continue
        updated = locator.copy()
        for i in range(size):
            updated[i] ^= _mul(delta, shifted[i], exp, log)
        if 2 * length <= r + e - 1:
            inverse = exp[255 - log[delta]]
            for i in range(size):
                previous[i] = _mul(locator[i], inverse, exp, log)
            length = r + e - length
        else:
            previous = shifted
        locator = updated

    degree = 0
    for i in range(size):
        if locator[i]:
            degree = i
    errors = degree - e
    if errors < 0 or 2 * errors + e > ec - reserved:
        return FAILED, 0

    # Chien search: the positions whose inverse location is a root of the locator
    positions = np.empty(degree, np.int32)
    found = 0
    for position in range(n):
        inverse_x = exp[255 - (n - 1 - position) % 255]
        if _poly_eval(locator, degree + 1, inverse_x, exp, log) == 0:
            if found == degree:
                return FAILED, 0
            positions[found] = position
            found += 1
    if found != degree:
        return FAILED, 0

    # Error evaluator Ω(x) = S(x)·Λ(x) mod x^d, with S(x) = S_1 + S_2 x + …
    evaluator = np.zeros(ec, np.int32)
    for i in range(ec):
        v = 0
        for k in range(i + 1):
            if k < size:
                v ^= _mul(locator[k], syndromes[i - k + 1], exp, log)
        evaluator[i] = v
    # Formal derivative Λ'(x): the odd-degree terms shifted down
    derivative = np.zeros(size, np.int32)
    for i in range(1, size, 2):
        derivative[i - 1] = locator[i]
    # Forney: magnitude = Ω(X⁻¹) / Λ'(X⁻¹)  (first generator root α¹)
    for k in range(found):
        position = positions[k]
        inverse_x = exp[255 - (n - 1 - position) % 255]
        numerator = _poly_eval(evaluator, ec, inverse_x, exp, log)
        denominator = _poly_eval(derivative, size, inverse_x, exp, log)
        if denominator == 0:
            return FAILED, 0
        block[position] ^= exp[(log[numerator] + 255 - log[denominator]) % 255] if numerator else 0

    for j in range(1, ec + 1):  # the corrected block must be a codeword
        x = exp[j]
        s = 0
        for i in range(n):
            s = _mul(s, x, exp, log) ^ block[i]
        if s:
            return FAILED, 0
    return errors, e


def correct(block: np.ndarray, ec: int, erasures: np.ndarray | None = None, reserved: int = 0) -> tuple[int, int]:
    """Correct one block in place. ``block`` holds the data codewords then the ``ec`` error
    correction codewords; ``erasures`` the positions known to be unreliable.

    Returns ``(errors, erasures)`` corrected, or ``(FAILED, 0)`` when the block is beyond repair.
    """
    marks = np.zeros(0, np.int32) if erasures is None else np.asarray(erasures, np.int32)
    return _decode(block, ec, marks, reserved, EXP, LOG)


def encode(data: np.ndarray, ec: int) -> np.ndarray:
    """The ``ec`` error correction codewords of ``data`` (for tests and symbol writers)."""
    generator = [1]
    for j in range(1, ec + 1):  # Π (x − αʲ), highest degree first
        root = EXP[j]
        nxt = generator + [0]
        for i in range(1, len(nxt)):
            nxt[i] ^= _gf_mul(generator[i - 1], root)
        generator = nxt
    remainder = [0] * ec
    for value in data:
        factor = int(value) ^ remainder[0]
        remainder = remainder[1:] + [0]
        for i in range(ec):
            remainder[i] ^= _gf_mul(generator[i + 1], factor)
    return np.array(remainder, np.int32)


def _gf_mul(a: int, b: int) -> int:
    return 0 if a == 0 or b == 0 else int(EXP[LOG[a] + LOG[b]])
