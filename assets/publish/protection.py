"""Small-cell protection shared by the reports and the dashboards: every published count is a cell, the sums a
reader can form are equations, and `Protection.solve()` withholds enough further cells that no count of 1-10
can be worked out (see the class)."""

from __future__ import annotations

from assets.publish.statistics import SMALL_CELL_MAX, is_small, rate, show

WITHHELD = "withheld"


class Protection:
    """Small-cell suppression with complementary suppression over linked cells.

    Every count that could leave the warehouse is a cell. A cell is *published*, or *implicit* (never shown,
    but real: the scans *without* an event, the difference between two windows, ...). An equation says that
    a total is the sum of its parts (a row adds up to its total, an event count plus its complement gives its
    denominator, providers add up to the overall row).

    What a reader knows of each cell is an interval: a published count exactly; `<11` means 1 to 10; a
    withheld count is at least 11; an implicit count is at least 0. `solve()` suppresses every cell of 1-10,
    then narrows the intervals through the equations, as a reader could (interval propagation: a total lies
    between the sums of its parts' bounds, a part between the total's bounds less the other parts'). Whenever
    that pins a cell of 1-10 to its exact value (for example a row total of 39 with 37 published and two
    suppressed cells: both must be 1), it withholds one more published cell of the equation responsible: the
    one with the lowest `keep` priority (totals and the figures a page leads with are kept longest), then the
    smallest. It ends when no cell of 1-10 can be pinned; a last pass publishes again any withheld cell that no
    longer protects anything.
    """

    INF = float("inf")

    def __init__(self, zeros_small: bool = False):
        # zeros_small: a count of 0 is shown like one of 1-10 (`<11`), so labels alone never pin a cell (in dense
        # systems a small total that its parts must each reach at least 1 can otherwise be worked out).
        self.zeros_small = zeros_small
        self.values: dict = {}
        self.implicit: set = set()
        self.keep: dict = {}
        self.equations: list[tuple] = []  # (total, part, part, ...)
        self.hidden: set = set()
        self.solved = False
        self._arrays = None  # the equations as numpy arrays for `_settle`, compiled when first needed

    def add(self, key, value, *, implicit: bool = False, keep: int = 0):
        value = int(value or 0)
        if value < 0:
            raise ValueError(f"cell {key!r} is negative ({value})")
        if key in self.values and self.values[key] != value:
            raise ValueError(f"cell {key!r} given two values: {self.values[key]} and {value}")
        self.values[key] = value
        if implicit:
            self.implicit.add(key)
        self.keep[key] = keep
        return key

    def equation(self, total, *parts) -> None:
        """`total` = sum of `parts`."""
        keys = (total, *parts)
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise KeyError(f"equation names unknown cells {missing!r}")
        if not parts:
            return
        remainder = self.values[total] - sum(self.values[k] for k in parts)
        if remainder < 0:  # inconsistent input: the relation does not hold, so a reader cannot use it
            return
        if remainder > 0:  # parts not shown (e.g. scans without a category): an implicit cell completes the sum
            keys += (self.add(("remainder", len(self.equations)), remainder, implicit=True),)
        self.equations.append(keys)

    # -- what a reader can work out ------------------------------------------------------------------

    def _index(self) -> dict:
        of: dict = {}
        for i, eq in enumerate(self.equations):
            for k in eq:
                of.setdefault(k, []).append(i)
        return of

    def _initial(self, key) -> tuple:
        v = self.values[key]
        if key not in self.hidden:
            return (v, v)
        if key in self.implicit:
            return (0, self.INF)
        if self._small(v):
            return (0 if self.zeros_small else 1, SMALL_CELL_MAX)
        return (SMALL_CELL_MAX + 1, self.INF) if v > SMALL_CELL_MAX else (0, self.INF)

    def _small(self, v) -> bool:
        return is_small(v) or (self.zeros_small and v == 0)

    def _tighten(self, i: int, bounds: dict):
        """Narrow the bounds of equation i's cells; yields (cell, old bounds) for each change."""
        total, *parts = self.equations[i]
        los = [bounds[p][0] for p in parts]
        his = [bounds[p][1] for p in parts]
        sum_lo = sum(los)
        n_inf = sum(1 for h in his if h == self.INF)
        sum_hi_finite = sum(h for h in his if h != self.INF)
        sum_hi = self.INF if n_inf else sum_hi_finite
        t_lo, t_hi = bounds[total]
        new = (max(t_lo, sum_lo), min(t_hi, sum_hi))
        if new != (t_lo, t_hi):
            yield total, (t_lo, t_hi)
            bounds[total] = new
            t_lo, t_hi = new
        for p, lo, hi in zip(parts, los, his):
            others_hi = (self.INF if n_inf - (hi == self.INF) > 0 else sum_hi_finite - (0 if hi == self.INF else hi))
            others_lo = sum_lo - lo
            new = (max(lo, t_lo - others_hi), min(hi, t_hi - others_lo))
            if new != (lo, hi):
                yield p, (lo, hi)
                bounds[p] = new

    def _propagate(self, bounds: dict, queue: list, of: dict, via: dict, log: list | None = None,
                   stop_on_leak: bool = False):
        """Tighten until nothing changes; returns the first pinned cell of 1-10 when `stop_on_leak`.

        Short equations (rows) are worked off before long ones (columns of hundreds of providers), so that a
        long equation is revisited once per wave of changes rather than once per changed cell.
        """
        from collections import deque

        short, long_ = deque(), deque()
        queued = set()

        def push(j):
            if j not in queued:
                queued.add(j)
                (short if len(self.equations[j]) <= self.SHORT else long_).append(j)

        for j in queue:
            push(j)
        steps = 0
        limit = 200 * (len(self.equations) + 1)
        while (short or long_) and steps < limit:
            steps += 1
            i = short.popleft() if short else long_.popleft()
            queued.discard(i)
            changes = list(self._tighten(i, bounds))
            # Every change of the equation is logged before any is judged: `_release` undoes a trial from the
            # log, and a change left out of it would stay (too narrow) after the undo.
            for k, old in changes:
                if log is not None:
                    log.append((k, old, via.get(k)))
                via[k] = i
            for k, _ in changes:
                lo, hi = bounds[k]
                if stop_on_leak and lo == hi and self._small(self.values[k]) and k in self.hidden:
                    return k
                for j in of.get(k, ()):
                    push(j)
        return None

    def _settle(self, of: dict) -> tuple[dict, dict]:
        """Every cell's bounds as a reader can narrow them from what is published, and per narrowed cell the
        equation that last narrowed it: `_propagate` over every equation, done for all equations at once with
        numpy (each pass narrows every cell by all its equations from the same bounds; the passes reach the
        same fixed point as narrowing one equation at a time, in a fraction of the time for large systems)."""
        import numpy as np

        arrays = self._arrays
        if arrays is None or arrays["n_equations"] != len(self.equations) or arrays["n_cells"] != len(self.values):
            arrays = self._arrays = _compile(self)
        keys, eq_total, part_cell, part_eq = arrays["keys"], arrays["eq_total"], arrays["part_cell"], arrays["part_eq"]
        order, starts, cell_of_group, eq_sorted = (arrays["order"], arrays["starts"], arrays["cell_of_group"],
                                                   arrays["eq_sorted"])
        n_eq = len(self.equations)
        if not n_eq:
            return {k: self._initial(k) for k in self.values}, {}
        inf = np.inf
        value = arrays["value"]
        hidden = np.fromiter((k in self.hidden for k in keys), bool, len(keys))
        small = arrays["small"]
        lo = np.where(hidden, np.where(arrays["implicit"], 0.0,
                                       np.where(small, 0.0 if self.zeros_small else 1.0,
                                                np.where(value > SMALL_CELL_MAX, SMALL_CELL_MAX + 1.0, 0.0))), value)
        hi = np.where(hidden, np.where(small & ~arrays["implicit"], float(SMALL_CELL_MAX), inf), value)
        via_eq = np.full(len(keys), -1)
        for _ in range(self.PASSES):
            lo_p, hi_p = lo[part_cell], hi[part_cell]
            inf_p = np.isinf(hi_p)
            hi_fin = np.where(inf_p, 0.0, hi_p)
            sum_lo = np.bincount(part_eq, lo_p, n_eq)
            n_inf = np.bincount(part_eq, inf_p, n_eq)
            sum_hi = np.bincount(part_eq, hi_fin, n_eq)
            total_hi = np.where(n_inf > 0, inf, sum_hi)
            others_hi = np.where(n_inf[part_eq] - inf_p > 0, inf, sum_hi[part_eq] - hi_fin)
            others_lo = sum_lo[part_eq] - lo_p
            cand_lo = np.concatenate([sum_lo, lo[eq_total][part_eq] - others_hi])[order]
            cand_hi = np.concatenate([total_hi, hi[eq_total][part_eq] - others_lo])[order]
            best_lo = np.maximum.reduceat(cand_lo, starts)
            best_hi = np.minimum.reduceat(cand_hi, starts)
            old_lo, old_hi = lo[cell_of_group], hi[cell_of_group]
            up, down = best_lo > old_lo, best_hi < old_hi
            if not (up.any() or down.any()):
                break
            lo[cell_of_group] = np.where(up, best_lo, old_lo)
            hi[cell_of_group] = np.where(down, best_hi, old_hi)
            # The equation that narrowed each changed cell (the first of its equations that gives the new bound).
            group = arrays["group"]
            hit = (up[group] & (cand_lo == best_lo[group])) | (down[group] & (cand_hi == best_hi[group]))
            groups, first = np.unique(group[hit], return_index=True)
            via_eq[cell_of_group[groups]] = eq_sorted[np.flatnonzero(hit)[first]]
        else:  # not settled in PASSES passes (bounds creeping through a long cycle): finish one at a time
            bounds = {k: (float(a), float(b)) for k, a, b in zip(keys, lo.tolist(), hi.tolist())}
            via = {keys[i]: int(e) for i, e in enumerate(via_eq.tolist()) if e >= 0}
            self._propagate(bounds, list(range(n_eq)), of, via)
            return bounds, via
        bounds = {k: (a, b) for k, a, b in zip(keys, lo.tolist(), hi.tolist())}
        via = {keys[i]: e for i, e in enumerate(via_eq.tolist()) if e >= 0}
        return bounds, via

    PASSES = 2_000

    CANDIDATE_DEPTH = 6  # how many equations back from a pinned cell its candidates are looked for

    def _reach(self, via: dict) -> tuple[list, list]:
        """For one round (fixed `hidden` and `via`): per equation, its cheapest published cell (None when every
        cell is withheld), and the equations that last narrowed its withheld cells."""
        cheapest, follows = [], []
        for i, eq in enumerate(self.equations):
            published = [c for c in eq if c not in self.hidden]
            cheapest.append(min(published, key=self._cost) if published else None)
            follows.append({via[c] for c in eq if c in self.hidden and c in via} - {i})
        return cheapest, follows

    def _candidate(self, k, via: dict, reach: tuple, chosen_in: set):
        """The published cell to withhold so that `k` is no longer pinned, or None when none is needed or left.

        The candidates are the published cells of the equation that last narrowed `k` and, up to
        CANDIDATE_DEPTH equations back, of the equations that last narrowed that equation's withheld cells. When
        one of them was already chosen this round (`chosen_in`: the equations holding a chosen cell), nothing
        more is needed. Else the cheapest (`_cost`) is returned.

        The walk is breadth-first over equations, each visited once: the same candidates as following every
        path from `k`, without the paths' number, which multiplies at every step when long equations (a column
        of hundreds of small provider counts) share their withheld cells.
        """
        cheapest, follows = reach
        start = via.get(k)
        if start is None:
            return None
        best = None
        seen = {start}
        frontier = [start]
        for depth in range(self.CANDIDATE_DEPTH + 1):
            following = []
            for i in frontier:
                if i in chosen_in:
                    return None  # a cell withheld for an earlier leak of this round may already protect it
                c = cheapest[i]
                if c is not None and (best is None or self._cost(c) < self._cost(best)):
                    best = c
                if depth < self.CANDIDATE_DEPTH:
                    for j in follows[i]:
                        if j not in seen:
                            seen.add(j)
                            following.append(j)
            frontier = following
        return best

    def solve(self) -> Protection:
        of = self._index()
        self.hidden = {k for k, v in self.values.items() if self._small(v)} | set(self.implicit)
        for _ in range(10_000):
            bounds, via = self._settle(of)
            leaks = self._pinned(bounds)
            if not leaks:
                break
            reach = self._reach(via)
            chosen: set = set()
            chosen_in: set = set()
            for k in leaks:
                c = self._candidate(k, via, reach, chosen_in)
                if c is None and chosen_in.isdisjoint(of.get(k, ())):
                    # Pinned through a cycle of withheld cells (each last narrowed by another of the cycle): look
                    # along every equation holding the cell instead.
                    c = self._nearest_published(k, of)
                if c is not None:
                    chosen.add(c)
                    chosen_in.update(of.get(c, ()))
            if not chosen:  # the labels alone pin the cell (nothing published left to withhold): give up
                break
            self.hidden |= chosen
        self._release(of)
        self.solved = True
        return self

    def _cost(self, k):
        v = self.values[k]
        return (self.keep[k], v == 0, v, repr(k))

    def _release(self, of: dict) -> None:
        """Publish again every withheld cell that no longer protects anything (a later choice may have made an
        earlier one unnecessary), most important first."""
        bounds, via = self._settle(of)
        withheld = [k for k in self.hidden if k not in self.implicit and not self._small(self.values[k])]
        withheld.sort(key=lambda k: (-self.keep[k], -self.values[k], repr(k)))
        for k in withheld:
            v = self.values[k]
            log = [(k, bounds[k], via.get(k))]
            bounds[k] = (v, v)
            self.hidden.discard(k)
            leak = self._propagate(bounds, list(of.get(k, ())), of, via, log=log, stop_on_leak=True)
            if leak is not None:
                self.hidden.add(k)
                for cell, old, old_via in reversed(log):
                    bounds[cell] = old
                    if old_via is None:
                        via.pop(cell, None)
                    else:
                        via[cell] = old_via

    def seal(self, rounds: int = 100) -> Protection:
        """After `solve`: while a reader could still pin a cell of 1-10 (dense systems of short and long
        equations, where the solver's candidate search can stop short), withhold the cheapest published cell of
        an equation holding it, and check again."""
        of = self._index()
        before: set = set()
        for _ in range(rounds):
            bounds, via = self._settle(of)
            leaks = self._pinned(bounds)
            if not leaks:
                return self
            reach = self._reach(via) if before & set(leaks) else None
            for k in leaks:
                # A leak still there after a round was not held by its short equations: withhold in the
                # equations that narrowed it instead (as `solve` does), else anywhere near it.
                candidate = self._candidate(k, via, reach, set()) if k in before else None
                if candidate is None:
                    candidate = self._nearest_published(k, of, short_first=k not in before)
                if candidate is not None:
                    self.hidden.add(candidate)
            before = set(leaks)
        if self.leaks(of):
            raise RuntimeError("small-cell protection could not close every leak")
        return self

    SHORT = 8  # equations of at most this many cells are rows (a view's verdicts, regions, quarters)

    def _nearest_published(self, k, of: dict, depth: int = 4, short_first: bool = True):
        """The cheapest published cell of the equations holding `k`; when every cell there is already hidden,
        of the equations holding those cells, and so on up to `depth` steps (a pinned cell can be held by
        bounds that arrive from further away). Short equations are searched first, as deep as that goes: a
        long one (a column of hundreds of providers) rarely pins a cell, and its cheapest cell protects nothing."""
        for short_only in ((True, False) if short_first else (False,)):
            seen_cells, seen_equations = {k}, set()
            frontier = [k]
            for _ in range(depth):
                equations = {i for c in frontier for i in of.get(c, ()) if i not in seen_equations
                             and (not short_only or len(self.equations[i]) <= self.SHORT)}
                seen_equations.update(equations)
                cells = {c for i in equations for c in self.equations[i]} - seen_cells
                published = [c for c in cells if c not in self.hidden and c not in self.implicit]
                if published:
                    return min(published, key=self._cost)
                seen_cells |= cells
                frontier = list(cells)
        return None

    def leaks(self, of: dict | None = None) -> list:
        """Cells of 1-10 a reader could pin down from what is published (empty after `solve`)."""
        of = of or self._index()
        bounds, _ = self._settle(of)
        return self._pinned(bounds)

    def _pinned(self, bounds: dict) -> list:
        """The hidden cells of 1-10 that `bounds` pin to one value, in a fixed order (choices follow it)."""
        return sorted((k for k in self.hidden if self._small(self.values[k]) and bounds[k][0] == bounds[k][1]),
                      key=repr)

    # -- what the pages and files show ---------------------------------------------------------------

    def status(self, key) -> str:
        if key not in self.hidden:
            return "published"
        if key in self.implicit:
            return "implicit"
        return "small" if self._small(self.values[key]) else "withheld"

    def get(self, key):
        """The value when published, else None."""
        return None if key in self.hidden else self.values[key]

    def text(self, key) -> str:
        status = self.status(key)
        if status == "published":
            return show(self.values[key])
        if status == "small":
            return show(None)  # `<11`
        return WITHHELD

    def rate(self, num_key, den_key):
        """num/den when both counts are published (a rate would otherwise reveal them)."""
        num, den = self.get(num_key), self.get(den_key)
        if num is None or den is None:
            return None
        return rate(num, den)

    def counts(self) -> dict:
        shown = [k for k in self.values if k not in self.implicit]
        return {
            "cells": len(shown),
            "suppressed": sum(1 for k in shown if self.status(k) == "small"),
            "withheld": sum(1 for k in shown if self.status(k) == "withheld"),
        }


def _compile(p: Protection) -> dict:
    """The cells and equations of `p` as index arrays: per equation its total, per part its cell and equation,
    and every (cell, equation) entry sorted by cell, for the per-cell reductions of `_settle`."""
    import numpy as np

    keys = list(p.values)
    index = {k: i for i, k in enumerate(keys)}
    eq_total = np.array([index[eq[0]] for eq in p.equations], dtype=np.int64)
    part_cell = np.array([index[c] for eq in p.equations for c in eq[1:]], dtype=np.int64)
    part_eq = np.array([e for e, eq in enumerate(p.equations) for _ in eq[1:]], dtype=np.int64)
    entry_cell = np.concatenate([eq_total, part_cell])
    entry_eq = np.concatenate([np.arange(len(p.equations)), part_eq])
    order = np.argsort(entry_cell, kind="stable")
    sorted_cells = entry_cell[order]
    starts = np.flatnonzero(np.diff(sorted_cells, prepend=-1)) if len(sorted_cells) else np.array([], np.int64)
    return {
        "keys": keys, "n_cells": len(keys), "n_equations": len(p.equations),
        "value": np.array([p.values[k] for k in keys], dtype=float),
        "implicit": np.fromiter((k in p.implicit for k in keys), bool, len(keys)),
        "small": np.fromiter((p._small(p.values[k]) for k in keys), bool, len(keys)),
        "eq_total": eq_total, "part_cell": part_cell, "part_eq": part_eq,
        "order": order, "starts": starts, "cell_of_group": sorted_cells[starts], "eq_sorted": entry_eq[order],
        "group": np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(order)))),
    }
