"""Grid: from a candidate rectangle to the symbol's module grid.

1. Finder: along each side of the candidate, rays from outside find the symbol's outer edge;
   the two adjacent sides that are solid dark form the finder "L", the other two must alternate
   (clock tracks). Straight lines fitted to the edge points give the four corners.
2. Size: counting the dark modules of each clock track gives rows and columns, checked against
   the ECC200/DMRE table and the clock pattern itself.
3. Module centres: a homography from module coordinates to the image, then a local refinement
   that moves each centre to where the edges around it say it is (warped prints).

The frame is read as "dark modules = low values"; light-on-dark symbols are handled by the
caller passing the inverted image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np
from numba import njit

from .sample import bilinear, sample_modules
from .symbology import SymbolSize, size_for

# Status codes of the finder analysis
FOUND, LOW_CONTRAST, NO_EDGES, NO_FINDER = 0, 1, 2, 3


@dataclass(frozen=True)
class Finder:
    """The finder L and the symbol's outer corners."""

    corner: np.ndarray  # where the two solid sides meet
    end_a: np.ndarray  # far end of one solid side
    end_b: np.ndarray  # far end of the other
    opposite: np.ndarray  # the corner where the two clock tracks meet
    module_px: float  # module size estimated from the finder's thickness
    dark: float  # grey levels of dark and light modules (5th / 95th percentile)
    light: float


@dataclass(frozen=True)
class Grid:
    """The fitted module grid of one symbol (module coordinates: x = column, y = row, row 0 = top clock track)."""

    size: SymbolSize
    homography: np.ndarray  # 3 × 3, module coordinates → frame pixels
    centres: np.ndarray  # rows × cols × 2 module centres in frame pixels, after local refinement
    module_px: float
    mirrored: bool
    inverted: bool = False  # light modules on a dark background
    # rows × cols, True = dark in the symbol's logic: what a perfect print of the decoded
    # codewords looks like (set once the symbol is decoded; printed light when ``inverted``)
    modules: np.ndarray | None = None

    @property
    def corners(self) -> np.ndarray:
        """Outer corners in reading order: top-left, top-right, bottom-right, bottom-left (the L corner)."""
        rows, cols = self.size.rows, self.size.cols
        return project(self.homography, np.array([[0, 0], [cols, 0], [cols, rows], [0, rows]], np.float64))


@njit(cache=True, nogil=True)
def _percentile(values, q):
    s = np.sort(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


@njit(cache=True, nogil=True)
def _otsu(values):
    """The threshold between two classes of values that maximises the between-class variance."""
    s = np.sort(values)
    n = len(s)
    total = s.sum()
    best, threshold = -1.0, 0.5 * (s[0] + s[-1])
    low = 0.0
    for i in range(n - 1):
        low += s[i]
        if s[i + 1] == s[i]:
            continue
        w0 = (i + 1) / n
        m0 = low / (i + 1)
        m1 = (total - low) / (n - i - 1)
        between = w0 * (1 - w0) * (m0 - m1) ** 2
        if between > best:
            best, threshold = between, 0.5 * (s[i] + s[i + 1])
    return threshold


@njit(cache=True, nogil=True)
def _fit_line(points, weights):
    """Total least squares line through weighted points: returns (px, py, dx, dy)."""
    sw = weights.sum()
    mx = (points[:, 0] * weights).sum() / sw
    my = (points[:, 1] * weights).sum() / sw
    sxx = ((points[:, 0] - mx) ** 2 * weights).sum()
    syy = ((points[:, 1] - my) ** 2 * weights).sum()
    sxy = ((points[:, 0] - mx) * (points[:, 1] - my) * weights).sum()
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    return mx, my, np.cos(angle), np.sin(angle)


@njit(cache=True, nogil=True)
def _intersect(l1, l2):
    px, py, dx, dy = l1
    qx, qy, ex, ey = l2
    det = dx * (-ey) - dy * (-ex)
    if abs(det) < 1e-9:
        return np.nan, np.nan
    t = ((qx - px) * (-ey) - (qy - py) * (-ex)) / det
    return px + t * dx, py + t * dy


@njit(cache=True, nogil=True)
def find_finder(image, cx, cy, ux, uy, half_u, half_v, bridge):
    """Analyse a candidate rectangle. Returns (status, values) where values holds, on success:
    corner x, y, end_a x, y, end_b x, y, opposite x, y, module px, dark, light. With ``bridge``,
    short light gaps in the solid sides are taken for damage (see :func:`_arm_end`)."""
    out = np.zeros(11, np.float64)
    vx, vy = -uy, ux
    # Grey levels: percentiles over the rectangle, a little enlarged.
    levels = np.empty(400, np.float64)
    k = 0
    for i in range(20):
        for j in range(20):
            fu = (i + 0.5) / 20 * 2.2 - 1.1
            fv = (j + 0.5) / 20 * 2.2 - 1.1
            levels[k] = bilinear(
                image, cx + fu * half_u * ux + fv * half_v * vx, cy + fu * half_u * uy + fv * half_v * vy
            )
            k += 1
    dark = _percentile(levels, 0.05)
    light = _percentile(levels, 0.95)
    if light - dark < 12:
        return LOW_CONTRAST, out
    # Otsu's threshold: when the rectangle also holds background darker than the ink, the
    # percentiles' midpoint would fall inside the ink
    threshold = _otsu(levels)

    # Rays across each side, from outside inwards: where the first dark begins (the edge) and
    # how long that dark run is (one module or more).
    normals = np.array([[ux, uy], [vx, vy], [-ux, -uy], [-vx, -vy]])
    halves = np.array([half_u, half_v, half_u, half_v])
    rays = 24
    edges = np.full((4, rays, 2), np.nan)
    depths = np.full((4, rays), np.nan)
    runs = np.full(4 * rays, np.nan)
    nr = 0
    reach = 0.5 * min(half_u, half_v)
    outside = 3.0 + 0.12 * min(half_u, half_v)
    for s in range(4):
        nx, ny = normals[s, 0], normals[s, 1]
        tx, ty = -ny, nx
        along = halves[(s + 1) % 4]
        mx, my = cx + nx * halves[s], cy + ny * halves[s]
        for r in range(rays):
            f = (r + 0.5) / rays * 1.8 - 0.9
            ox, oy = mx + tx * f * along, my + ty * f * along
            # march inwards: through anything dark outside, then light (the quiet zone), then
            # the first dark is the symbol's edge; the dark run after it is one module or more
            depth = -outside
            seen_light = False
            previous = 0.0
            start = np.nan
            while depth < reach:
                value = bilinear(image, ox - nx * depth, oy - ny * depth)
                if np.isnan(start):
                    if value >= threshold:
                        seen_light = True
                    elif seen_light:
                        frac = (previous - threshold) / (previous - value) if previous != value else 0.0
                        start = depth - 0.5 + 0.5 * frac
                elif value >= threshold:
                    runs[nr] = depth - start
                    nr += 1
                    break
                previous = value
                depth += 0.5
            if not np.isnan(start):
                edges[s, r, 0] = ox - nx * start
                edges[s, r, 1] = oy - ny * start
                depths[s, r] = start
    if nr < 16:
        return NO_EDGES, out
    module = max(1.5, _percentile(runs[:nr], 0.25))

    # A line along each side, robust to outliers: fit all edge points, keep the closest 70 %,
    # refit, keep those within a third of a module, refit. On a solid side this is the edge;
    # on a clock track (where half the rays go deeper) it lies near the track, which is all the
    # classification below needs: clock tracks are traced separately.
    lines = np.zeros((4, 4), np.float64)
    for s in range(4):
        pts = np.empty((rays, 2), np.float64)
        m = 0
        for r in range(rays):
            if not np.isnan(depths[s, r]):
                pts[m] = edges[s, r]
                m += 1
        if m < 6:
            return NO_EDGES, out
        pts = pts[:m]
        line = _fit_line(pts, np.ones(m))
        for tolerance in (-1.0, 0.35 * module + 0.5):
            resid = np.abs((pts[:, 0] - line[0]) * line[3] - (pts[:, 1] - line[1]) * line[2])
            keep = resid <= (_percentile(resid, 0.7) if tolerance < 0 else tolerance)
            if keep.sum() < 3:
                break  # a clock track with few modules on one line: the trimmed fit will do
            line = _fit_line(pts[keep], np.ones(keep.sum()))
        lines[s] = line

    # Which sides are solid? Sample along each line half a module inside, over the middle of
    # the span of its edge points.
    solid = np.zeros(4, np.float64)
    flips = np.zeros(4, np.int64)
    for s in range(4):
        px, py, dx, dy = lines[s]
        nx, ny = normals[s, 0], normals[s, 1]
        inx, iny = -nx * 0.5 * module, -ny * 0.5 * module
        tmin, tmax = np.inf, -np.inf
        for r in range(rays):
            if not np.isnan(depths[s, r]):
                t = (edges[s, r, 0] - px) * dx + (edges[s, r, 1] - py) * dy
                tmin, tmax = min(tmin, t), max(tmax, t)
        n = max(8, int(4 * (tmax - tmin)))
        dark_count = 0
        last = -1
        for i in range(n):
            t = tmin + (tmax - tmin) * (i + 0.5) / n
            is_dark = 1 if bilinear(image, px + dx * t + inx, py + dy * t + iny) < threshold else 0
            dark_count += is_dark
            if last >= 0 and is_dark != last:
                flips[s] += 1
            last = is_dark
        solid[s] = dark_count / n
    best, pair = -1.0, -1
    for s in range(4):
        a, b = s, (s + 1) % 4
        c, d = (s + 2) % 4, (s + 3) % 4
        # solid sides are dark all along (up to 30 % finder damage allowed); clock tracks change
        # colour, whatever their dark share (a line a little off the track still sees changes)
        if (
            solid[a] >= 0.7
            and solid[b] >= 0.7
            and solid[c] < 0.9
            and solid[d] < 0.9
            and flips[c] >= 3
            and flips[d] >= 3
        ):
            score = solid[a] + solid[b] - solid[c] - solid[d]
            if score > best:
                best, pair = score, s
    if pair < 0:
        out[0:4] = solid  # for diagnosis: dark share and colour changes along each side
        out[4:8] = flips
        out[8], out[9], out[10] = module, dark, light
        return NO_FINDER, out

    # The corner where the solid sides meet; each solid side ends where the symbol ends.
    a, b = pair, (pair + 1) % 4
    cx0, cy0 = _intersect(lines[a], lines[b])
    if np.isnan(cx0):
        return NO_EDGES, out
    ends = np.zeros((2, 2), np.float64)
    for k in range(2):
        s = a if k == 0 else b
        dx, dy = lines[s, 2], lines[s, 3]
        # point along the side away from the corner, towards the rectangle's far end of it
        far = halves[(s + 1) % 4] * 2.0
        mx, my = cx + normals[s, 0] * halves[s], cy + normals[s, 1] * halves[s]
        if (mx - cx0) * dx + (my - cy0) * dy < 0:
            dx, dy = -dx, -dy
        ex, ey = _arm_end(
            image,
            cx0,
            cy0,
            dx,
            dy,
            -normals[s, 0],
            -normals[s, 1],
            threshold,
            module,
            far if bridge else 0.0,
            1.4 * far + 2 * module,
        )
        if np.isnan(ex):
            return NO_EDGES, out
        ends[k, 0], ends[k, 1] = ex, ey
    # The clock tracks: anchored at the ends of the solid sides, fitted to their dark modules.
    # A first trace over 80 % of the parallelogram guess (its far end may lie beyond the
    # symbol, where rays would meet the other clock track), then a second one towards the
    # corner the first traces meet at.
    px, py = ends[0, 0] + ends[1, 0] - cx0, ends[0, 1] + ends[1, 1] - cy0
    reach_share = 0.8
    opx, opy = np.nan, np.nan
    for _ in range(2):
        dirs = np.zeros((2, 2), np.float64)
        for k in range(2):
            ax, ay = ends[k, 0], ends[k, 1]
            ox, oy = ends[k, 0] - cx0, ends[k, 1] - cy0  # outward normal: away from the L corner
            norm = np.hypot(ox, oy)
            gx, gy = ax + (px - ax) * reach_share, ay + (py - ay) * reach_share
            ok, ddx, ddy = _clock_direction(image, ax, ay, gx, gy, ox / norm, oy / norm, threshold, module)
            if not ok:
                return NO_EDGES, out
            dirs[k, 0], dirs[k, 1] = ddx, ddy
        opx, opy = _intersect(
            np.array([ends[0, 0], ends[0, 1], dirs[0, 0], dirs[0, 1]]),
            np.array([ends[1, 0], ends[1, 1], dirs[1, 0], dirs[1, 1]]),
        )
        if np.isnan(opx):
            return NO_EDGES, out
        longest = max(np.hypot(ends[0, 0] - cx0, ends[0, 1] - cy0), np.hypot(ends[1, 0] - cx0, ends[1, 1] - cy0))
        if np.hypot(opx - px, opy - py) > 0.25 * longest:  # a trace that went astray
            return NO_EDGES, out
        px, py = opx, opy
        reach_share = 1.0
    out[0], out[1] = cx0, cy0
    out[2], out[3] = ends[0, 0], ends[0, 1]
    out[4], out[5] = ends[1, 0], ends[1, 1]
    out[6], out[7] = opx, opy
    out[8], out[9], out[10] = module, dark, light
    return FOUND, out


@njit(cache=True, nogil=True)
def _arm_end(image, x0, y0, dx, dy, inx, iny, threshold, module, expected, limit):
    """Walk half a module inside a solid side from its corner (x0, y0) along (dx, dy): the side
    ends where light begins and lasts for over half a module. Well short of the ``expected``
    length (from the locator's rectangle; 0 = no bridging), light gaps of up to two modules are
    bridged: damaged finder modules, not the end. The rectangle may also hold quiet zone or
    clutter, so the reader tries the unbridged finder first.
    Returns the end point on the edge."""
    step = 0.25
    t = 0.5 * module
    light_run = 0.0
    last_dark = -1.0
    previous = 0.0
    crossing = np.nan
    while t < limit:
        value = bilinear(image, x0 + dx * t + inx * 0.5 * module, y0 + dy * t + iny * 0.5 * module)
        if value < threshold:
            last_dark = t
            light_run = 0.0
            crossing = np.nan
        else:
            if light_run == 0.0 and last_dark >= 0:  # dark → light: interpolate the crossing
                crossing = t - step + step * (threshold - previous) / (value - previous) if value != previous else t
            light_run += step
            inside = crossing < expected - 1.5 * module
            if light_run >= (2.0 * module if inside else 0.6 * module):
                break
        previous = value
        t += step
    if last_dark < 0 or np.isnan(crossing) or t >= limit:
        return np.nan, np.nan
    return x0 + dx * crossing, y0 + dy * crossing


@njit(cache=True, nogil=True)
def _anchored_direction(ax, ay, xs, ys, n):
    """Unit direction of the line through (ax, ay) closest to the points (total least squares)."""
    sxx = syy = sxy = 0.0
    for i in range(n):
        dx, dy = xs[i] - ax, ys[i] - ay
        sxx += dx * dx
        syy += dy * dy
        sxy += dx * dy
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)
    return np.cos(angle), np.sin(angle)


@njit(cache=True, nogil=True)
def _clock_direction(image, ax, ay, gx, gy, nx, ny, threshold, module):
    """Direction of the clock side that starts at (ax, ay) and heads roughly to (gx, gy), with
    outward normal (nx, ny). Traced from the anchor outwards: rays across the side find the
    outer edge of each dark clock module; the line through the anchor is refitted to the
    outermost edges as the trace proceeds, so it follows the side under perspective."""
    length = np.hypot(gx - ax, gy - ay)
    dx, dy = (gx - ax) / length, (gy - ay) / length
    count = int((length - 1.5 * module) / (0.5 * module))
    if count < 4:
        return False, dx, dy
    xs = np.empty(count, np.float64)
    ys = np.empty(count, np.float64)
    sel_x = np.empty(count, np.float64)
    sel_y = np.empty(count, np.float64)
    m = 0
    for i in range(count):
        t = module + i * 0.5 * module
        # the outward normal of the current line estimate
        cnx, cny = dy, -dx
        if cnx * nx + cny * ny < 0:
            cnx, cny = -cnx, -cny
        ox, oy = ax + dx * t + cnx * 1.5 * module, ay + dy * t + cny * 1.5 * module
        seen_light = False
        previous = 0.0
        depth = 0.0
        while depth < 3.5 * module:
            value = bilinear(image, ox - cnx * depth, oy - cny * depth)
            if value >= threshold:
                seen_light = True
            elif seen_light:
                frac = (previous - threshold) / (previous - value) if previous != value else 0.0
                edge = depth - 0.25 + 0.25 * frac
                xs[m], ys[m] = ox - cnx * edge, oy - cny * edge
                m += 1
                break
            previous = value
            depth += 0.25
        if m >= 3 and (i % 2 == 1 or i == count - 1):
            # refit through the anchor: outermost points first, then those near that line
            k = 0
            outer = -np.inf
            for j in range(m):
                outer = max(outer, (xs[j] - ax) * cnx + (ys[j] - ay) * cny)
            for j in range(m):
                if (xs[j] - ax) * cnx + (ys[j] - ay) * cny >= outer - 0.6 * module:
                    sel_x[k], sel_y[k] = xs[j], ys[j]
                    k += 1
            ndx, ndy = _anchored_direction(ax, ay, sel_x, sel_y, k)
            if ndx * dx + ndy * dy < 0:
                ndx, ndy = -ndx, -ndy
            k = 0
            for j in range(m):
                if abs((xs[j] - ax) * ndy - (ys[j] - ay) * ndx) <= 0.35 * module + 0.5:
                    sel_x[k], sel_y[k] = xs[j], ys[j]
                    k += 1
            if k >= 2:
                ndx, ndy = _anchored_direction(ax, ay, sel_x, sel_y, k)
                if ndx * dx + ndy * dy < 0:
                    ndx, ndy = -ndx, -ndy
                dx, dy = ndx, ndy
    if m < 3:
        return False, dx, dy
    return True, dx, dy


@njit(cache=True, nogil=True)
def count_clock(image, x0, y0, x1, y1, threshold, module):
    """Modules along a clock track sampled from (x0, y0) to (x1, y1): twice the dark runs,
    ignoring runs shorter than a third of a module (noise)."""
    length = np.hypot(x1 - x0, y1 - y0)
    n = max(8, int(4 * length))
    minimum = module / 3.0
    runs = 0
    current = -1
    run_length = 0.0
    step = length / n
    for i in range(n):
        f = (i + 0.5) / n
        is_dark = 1 if bilinear(image, x0 + f * (x1 - x0), y0 + f * (y1 - y0)) < threshold else 0
        if is_dark == current:
            run_length += step
        else:
            if current == 1 and run_length >= minimum:
                runs += 1
            current = is_dark
            run_length = step
    if current == 1 and run_length >= minimum:
        runs += 1
    return 2 * runs


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3 × 3 projective map taking the 4 points ``src`` to ``dst``."""
    a = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    h = np.linalg.solve(np.array(a, np.float64), dst.reshape(-1).astype(np.float64))
    return np.append(h, 1.0).reshape(3, 3)


def project(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    p = np.c_[points, np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:3]


def find(image: np.ndarray, centre, axis, half, bridge: bool = False) -> Finder | None:
    """The finder of the candidate rectangle, or None; ``bridge``: see :func:`find_finder`."""
    status, v = find_finder(image, centre[0], centre[1], axis[0], axis[1], half[0], half[1], bridge)
    if status != FOUND:
        return None
    return Finder(v[0:2].copy(), v[2:4].copy(), v[4:6].copy(), v[6:8].copy(), float(v[8]), float(v[9]), float(v[10]))


def grids(image: np.ndarray, finder: Finder, size_hint: tuple[int, int] | None = None):
    """Candidate grids for a finder: the normal reading first, then the mirrored one."""
    threshold = 0.5 * (finder.dark + finder.light)
    for mirrored in (False, True):
        # u axis: along the bottom solid side (columns); v axis: the left solid side (rows).
        a, b = finder.end_a - finder.corner, finder.end_b - finder.corner
        bottom_end, left_end = (
            (finder.end_a, finder.end_b)
            if (a[0] * b[1] - a[1] * b[0] < 0) != mirrored
            else (finder.end_b, finder.end_a)
        )
        grid = _grid(image, finder, bottom_end, left_end, threshold, size_hint, mirrored)
        if grid is not None:
            yield grid


def _grid(image, finder, bottom_end, left_end, threshold, size_hint, mirrored) -> Grid | None:
    corner, opposite, m = finder.corner, finder.opposite, finder.module_px
    # The clock tracks, sampled half a module inside the symbol's outer edge.
    left_len = np.linalg.norm(left_end - corner)
    bottom_len = np.linalg.norm(bottom_end - corner)
    if left_len < 4 * m or bottom_len < 4 * m:
        return None
    down = (corner - left_end) / left_len * 0.5 * m  # from the top edge into the symbol
    inward = (corner - bottom_end) / bottom_len * 0.5 * m  # from the right edge into the symbol
    cols = count_clock(image, *(left_end + down), *(opposite + down), threshold, m)
    rows = count_clock(image, *(opposite + inward), *(bottom_end + inward), threshold, m)
    src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float64)
    dst = np.array([left_end, opposite, bottom_end, corner], np.float64)
    for size in _sizes_near(rows, cols, size_hint):
        h = homography(src * [size.cols, size.rows], dst)
        # Where the clock tracks say the module boundaries are, as offsets from the homography:
        # a label curved round a vial squeezes the modules towards its edges.
        du = track_offsets(image, h, size.cols, 0.5, True, threshold)
        dv = track_offsets(image, h, size.rows, size.cols - 0.5, False, threshold)
        centres = _module_centres(h, size, du, dv)
        if _clock_score(image, centres, size, threshold) >= 0.85:
            return Grid(size, h, centres, float(np.sqrt(left_len * bottom_len / (size.rows * size.cols))), mirrored)
    return None


@njit(cache=True, nogil=True)
def track_offsets(image, h, n, fixed, along_u, threshold):
    """Offsets (in modules) of the module boundaries 0 … n along a clock track from where the
    homography ``h`` puts them, measured at the track's colour changes (ideally at 1 … n−1).
    When exactly n−1 changes are seen they are the boundaries in order, however far they have
    moved; otherwise each is matched to the nearest boundary. The two ends stay fixed, missing
    boundaries are interpolated."""
    steps = 8 * n
    offsets = np.full(n + 1, np.nan)
    sums = np.zeros(n + 1)
    counts = np.zeros(n + 1)
    crossings = np.empty(steps, np.float64)
    found = 0
    previous_value = 0.0
    previous_t = 0.0
    for i in range(steps + 1):
        t = 0.25 + (n - 0.5) * i / steps
        u, v = (t, fixed) if along_u else (fixed, t)
        w = h[2, 0] * u + h[2, 1] * v + h[2, 2]
        x = (h[0, 0] * u + h[0, 1] * v + h[0, 2]) / w
        y = (h[1, 0] * u + h[1, 1] * v + h[1, 2]) / w
        value = bilinear(image, x, y)
        if i > 0 and (previous_value < threshold) != (value < threshold) and found < steps:
            crossings[found] = previous_t + (t - previous_t) * (threshold - previous_value) / (value - previous_value)
            found += 1
        previous_value = value
        previous_t = t
    if found == n - 1:
        for k in range(1, n):
            sums[k] = crossings[k - 1] - k
            counts[k] = 1
    else:
        for i in range(found):
            k = int(np.floor(crossings[i] + 0.5))
            if 1 <= k <= n - 1 and abs(crossings[i] - k) <= 0.45:
                sums[k] += crossings[i] - k
                counts[k] += 1
    offsets[0] = 0.0
    offsets[n] = 0.0
    for k in range(1, n):
        if counts[k] > 0:
            offsets[k] = sums[k] / counts[k]
    k = 0
    while k < n:  # linear interpolation over the gaps
        j = k + 1
        while np.isnan(offsets[j]):
            j += 1
        for m in range(k + 1, j):
            offsets[m] = offsets[k] + (offsets[j] - offsets[k]) * (m - k) / (j - k)
        k = j
    return offsets


def _sizes_near(rows: int, cols: int, hint: tuple[int, int] | None) -> list[SymbolSize]:
    if hint is not None:
        size = size_for(*hint)
        return [size] if size is not None else []
    found = []
    for dr in (0, -2, 2):
        for dc in (0, -2, 2):
            size = size_for(rows + dr, cols + dc)
            if size is not None and size not in found:
                found.append(size)
    return found


def _module_centres(
    h: np.ndarray, size: SymbolSize, du: np.ndarray | None = None, dv: np.ndarray | None = None
) -> np.ndarray:
    """Module centres in the frame: the homography, corrected by the boundary offsets measured
    on the clock tracks (each module centre moves by the mean offset of its two boundaries)."""
    u = np.arange(size.cols) + 0.5
    v = np.arange(size.rows) + 0.5
    if du is not None:
        u = u + 0.5 * (du[:-1] + du[1:])
    if dv is not None:
        v = v + 0.5 * (dv[:-1] + dv[1:])
    cols, rows = np.meshgrid(u, v)
    pts = project(h, np.c_[cols.ravel(), rows.ravel()])
    return pts.reshape(size.rows, size.cols, 2)


def _clock_score(image: np.ndarray, centres: np.ndarray, size: SymbolSize, threshold: float) -> float:
    """Share of the outer finder and clock modules that have the colour they must have."""
    rows, cols = size.rows, size.cols
    values = sample_modules(image, centres, 0.0)
    top = values[0] < threshold
    bottom = values[-1] < threshold
    left = values[:, 0] < threshold
    right = values[:, -1] < threshold
    agree = (
        (top == (np.arange(cols) % 2 == 0)).sum()
        + bottom.sum()
        + left.sum()
        + (right == ((rows - 1 - np.arange(rows)) % 2 == 0)).sum()
    )
    return float(agree / (2 * rows + 2 * cols))


@njit(cache=True, nogil=True)
def _crossing(image, p, q, threshold):
    """Where the grey level crosses ``threshold`` between module centres ``p`` and ``q``, as a
    fraction of the way from p (0.5 when the edge is midway), or −1 when it does not between
    0.15 and 0.85 of the way. Steps of 0.1 module and linear interpolation between them: an
    edge seen through a lens is a smooth ramp over about a module."""
    previous = bilinear(image, p[0] + (q[0] - p[0]) * 0.15, p[1] + (q[1] - p[1]) * 0.15)
    for k in range(1, 8):  # t from 0.25 to 0.85 in steps of 0.1
        t = 0.15 + 0.1 * k
        value = bilinear(image, p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t)
        if (previous < threshold) != (value < threshold):
            return t - 0.1 + 0.1 * (threshold - previous) / (value - previous)
        previous = value
    return -1.0


@njit(cache=True, nogil=True)
def edge_offsets(image, centres, dark, threshold):
    """Between each module and each 4-neighbour of the other colour, the edge is found where
    the grey level crosses ``threshold``. Returns per module and grid axis (0: along the row,
    1: along the column) the mean displacement of its edges from the midpoints, in module
    pitches and signed so that the module's centre should move by it, and the number of edges
    found on that axis. Symmetric print growth moves opposite edges apart and cancels."""
    rows, cols = dark.shape
    offsets = np.zeros((rows, cols, 2), np.float64)
    counts = np.zeros((rows, cols, 2), np.float64)
    edges = _grid_edges(image, centres, dark, threshold)
    for e in range(len(edges)):
        axis = int(edges[e, 2])
        for m in (int(edges[e, 0]), int(edges[e, 1])):  # both modules move towards the edge's midpoint
            offsets[m // cols, m % cols, axis] += edges[e, 3]
            counts[m // cols, m % cols, axis] += 1.0
    for r in range(rows):
        for c in range(cols):
            for axis in range(2):
                if counts[r, c, axis] > 0:
                    offsets[r, c, axis] /= counts[r, c, axis]
    return offsets, counts


@njit(cache=True, nogil=True)
def _move(centres, moved, r, c, along_row, along_column):
    """Move module (r, c) by fractions of its local pitch vectors (from its neighbours)."""
    rows, cols = centres.shape[0], centres.shape[1]
    c0, c1 = max(c - 1, 0), min(c + 1, cols - 1)
    r0, r1 = max(r - 1, 0), min(r + 1, rows - 1)
    for k in range(2):
        step_x = (centres[r, c1, k] - centres[r, c0, k]) / max(c1 - c0, 1)
        step_y = (centres[r1, c, k] - centres[r0, c, k]) / max(r1 - r0, 1)
        moved[r, c, k] += along_row * step_x + along_column * step_y


@njit(cache=True, nogil=True)
def refine_centres(image, centres, dark, threshold):
    """Local refinement of module centres: each moves by the mean displacement of the edges
    around it (:func:`edge_offsets`), per axis over its 3 × 3 module neighbourhood so that one
    noisy edge cannot move a module alone."""
    rows, cols = dark.shape
    offsets, counts = edge_offsets(image, centres, dark, threshold)
    refined = centres.copy()
    moves = np.zeros(2)
    for r in range(rows):
        for c in range(cols):
            for axis in range(2):
                total = weight = 0.0
                for nr in range(max(0, r - 1), min(rows, r + 2)):
                    for nc in range(max(0, c - 1), min(cols, c + 2)):
                        total += offsets[nr, nc, axis] * counts[nr, nc, axis]
                        weight += counts[nr, nc, axis]
                moves[axis] = total / weight if weight > 0 else 0.0
            _move(centres, refined, r, c, moves[0], moves[1])
    return refined


def fit_centres(
    image: np.ndarray, centres: np.ndarray, dark: np.ndarray, threshold: float, passes: int = 8
) -> np.ndarray:
    """The actual grid: a smooth displacement field fitted to the edges of all modules.

    The field is bilinear between at most 7 × 7 control points (about every 4 modules on
    small symbols), added to ``centres`` (the ideal grid, the homography through the
    corners). Each pass measures every edge between modules of different colour at the
    current centres and fits the field's increment by weighted least squares, one scalar
    field per grid axis: an edge sits midway when p and q move by its offset on average (a
    light smoothness penalty holds control points without edges; a second fit down-weights
    edges that disagree with the first). Fitting a smooth field instead of moving each module
    on its own keeps single noisy edges from wandering and converges on smooth distortions
    such as a label curved round a vial or a bulge; a clean symbol stops after two passes.
    """
    rows, cols = dark.shape
    index, share, smoothness = _field_basis(rows, cols)
    return _fit_field(
        image, np.ascontiguousarray(centres, np.float64), dark, float(threshold), index, share, smoothness, passes
    )


@njit(cache=True, nogil=True)
def _fit_field(image, centres, dark, threshold, index, share, smoothness, passes):
    rows, cols = dark.shape
    centres = centres.copy()
    for _ in range(passes):
        edges = _grid_edges(image, centres, dark, threshold)
        # each edge sits midway when the field moves p and q by its offset on average: its
        # row of the design matrix is half of p's four control-point shares and half of q's
        touched = np.empty((len(edges), 8), np.int64)
        shares = np.empty((len(edges), 8))
        for e in range(len(edges)):
            p, q = int(edges[e, 0]), int(edges[e, 1])
            for a in range(4):
                touched[e, a], shares[e, a] = index[p, a], 0.5 * share[p, a]
                touched[e, 4 + a], shares[e, 4 + a] = index[q, a], 0.5 * share[q, a]
        along_row = _fit_axis(edges, 0, touched, shares, index, share, smoothness)
        along_column = _fit_axis(edges, 1, touched, shares, index, share, smoothness)
        moved = centres.copy()
        largest = 0.0
        for r in range(rows):
            for c in range(cols):
                m = r * cols + c
                _move(centres, moved, r, c, along_row[m], along_column[m])
                largest = max(largest, abs(along_row[m]), abs(along_column[m]))
        centres = moved
        if largest < 0.02:  # module pitches: GN is graded in steps of 0.12
            break
    return centres


@njit(cache=True, nogil=True)
def _grid_edges(image, centres, dark, threshold):
    """Every edge between 4-neighbours of different colour, once: (module p, module q, axis,
    offset of the crossing from the midpoint in pitches)."""
    rows, cols = dark.shape
    edges = np.empty((2 * rows * cols, 4))
    count = 0
    for r in range(rows):
        for c in range(cols):
            for axis in range(2):
                nr, nc = r + axis, c + 1 - axis
                if nr >= rows or nc >= cols or dark[nr, nc] == dark[r, c]:
                    continue
                crossing = _crossing(image, centres[r, c], centres[nr, nc], threshold)
                if crossing >= 0:
                    edges[count, 0] = r * cols + c
                    edges[count, 1] = nr * cols + nc
                    edges[count, 2] = axis
                    edges[count, 3] = crossing - 0.5
                    count += 1
    return edges[:count]


@njit(cache=True, nogil=True)
def _fit_axis(edges, axis, touched, shares, index, share, smoothness):
    """The field's component along one grid axis at every module, fitted to that axis's edges
    by weighted least squares, then once more with edges that disagree down-weighted."""
    nodes = smoothness.shape[0]
    weight = np.zeros(len(edges))
    for e in range(len(edges)):
        weight[e] = 1.0 if edges[e, 2] == axis else 0.0
    fitted = np.zeros(index.shape[0])
    for _robust in range(2):
        normal = smoothness.copy()
        rhs = np.zeros(nodes)
        for e in range(len(edges)):
            if weight[e] == 0.0:
                continue
            for a in range(8):
                va = shares[e, a] * weight[e]
                rhs[touched[e, a]] += va * edges[e, 3]
                for b in range(8):
                    normal[touched[e, a], touched[e, b]] += va * shares[e, b]
        fitted = _apply_field(index, share, _solve_spd(normal, rhs))
        for e in range(len(edges)):
            if edges[e, 2] == axis:
                p, q = int(edges[e, 0]), int(edges[e, 1])
                residual = edges[e, 3] - 0.5 * (fitted[p] + fitted[q])
                weight[e] = 1.0 / (1.0 + (residual / 0.1) ** 2)
    return fitted


@njit(cache=True, nogil=True)
def _solve_spd(a, b):
    """Solution of a x = b for a symmetric positive definite ``a`` (Cholesky)."""
    n = a.shape[0]
    lower = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1):
            total = a[i, j]
            for k in range(j):
                total -= lower[i, k] * lower[j, k]
            lower[i, j] = np.sqrt(max(total, 1e-12)) if i == j else total / lower[j, j]
    x = b.copy()
    for i in range(n):  # forward: L y = b
        total = x[i]
        for k in range(i):
            total -= lower[i, k] * x[k]
        x[i] = total / lower[i, i]
    for i in range(n - 1, -1, -1):  # back: Lᵀ x = y
        total = x[i]
        for k in range(i + 1, n):
            total -= lower[k, i] * x[k]
        x[i] = total / lower[i, i]
    return x


@cache
def _field_basis(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear interpolation from the control points to every module, as the four control
    points of each module (``index``, n × 4) and their weights (``share``), and the normal
    matrix of a light first-difference smoothness penalty between neighbouring control points
    (it holds control points without edges)."""

    def nodes(n: int) -> np.ndarray:  # evenly spread, about every 4 modules, at most 7
        return np.linspace(0, n - 1, min(7, max(2, round((n - 1) / 4) + 1)))

    node_r, node_c = nodes(rows), nodes(cols)
    nr, nc = len(node_r), len(node_c)
    index = np.zeros((rows * cols, 4), np.int64)
    share = np.zeros((rows * cols, 4), np.float64)
    for r in range(rows):
        i = min(np.searchsorted(node_r, r, side="right") - 1, nr - 2)
        fr = (r - node_r[i]) / (node_r[i + 1] - node_r[i])
        for c in range(cols):
            j = min(np.searchsorted(node_c, c, side="right") - 1, nc - 2)
            fc = (c - node_c[j]) / (node_c[j + 1] - node_c[j])
            corners = [
                ((i + di) * nc + j + dj, wr * wc)
                for di, wr in ((0, 1 - fr), (1, fr))
                for dj, wc in ((0, 1 - fc), (1, fc))
            ]
            index[r * cols + c] = [k for k, _ in corners]
            share[r * cols + c] = [v for _, v in corners]
    penalty = []
    for i in range(nr):
        for j in range(nc):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < nr and j + dj < nc:
                    line = np.zeros(nr * nc)
                    line[i * nc + j], line[(i + di) * nc + j + dj] = 0.1, -0.1
                    penalty.append(line)
    penalty = np.array(penalty)
    return index, share, penalty.T @ penalty


@njit(cache=True, nogil=True)
def _apply_field(index, share, nodes):
    """The field's value at every module from its control points' values."""
    out = np.zeros(index.shape[0])
    for m in range(index.shape[0]):
        for a in range(4):
            out[m] += share[m, a] * nodes[index[m, a]]
    return out
