"""Independent oracle for patchline remedy plans, grouped notices and patch notices.
Derived from README.md and docs/CONTRACT.md only (not from the code), by an
outside tester; see harness.py."""

V = ["1.0-1", "1.0-2", "1.1-1", "1.2-1", "2.0-1"]   # dpkg order == list order
PRIV = "(private)"


class Cloud:
    def __init__(self):
        self.arts = {}      # id -> dict
        self.order = []     # catalog (creation) order
        self.na = set()     # (record, artifact) declared not_affected
        self.records = {}   # id -> {"type": "adv", "pkgs": {name: [(lo, hi)]}} | {"type": "fail", "on": id}

    # ---------- catalog ----------
    def add(self, a):
        a = dict(a)
        a.setdefault("fixes", [])
        a.setdefault("supersedes", None)
        a["seq"] = len(self.order)
        self.arts[a["id"]] = a
        self.order.append(a["id"])

    def live(self):
        return [i for i in self.order if not self.arts[i].get("removed")]

    def eff(self, i):
        a = self.arts[i]
        while a["own"] is None:
            if a["parent"] is None:
                return {}
            a = self.arts[a["parent"]]
        return a["own"]

    def ancestors(self, i):   # [i, parent, grandparent, ...]
        out = []
        while i is not None:
            out.append(i)
            i = self.arts[i]["parent"]
        return out

    def depth(self, i):
        return len(self.ancestors(i)) - 1

    def visible(self, t, i):
        a = self.arts[i]
        return t is None or a["tenant"] == t or a["vis"] == "public"

    def show(self, t, i):
        return i if self.visible(t, i) else PRIV

    def succ_all(self, p):
        """every artifact superseding p directly or through other successors"""
        out, frontier, seen = [], [p], {p}
        while frontier:
            nxt = []
            for x in frontier:
                for j in self.live():
                    if self.arts[j]["supersedes"] == x and j not in seen:
                        seen.add(j); out.append(j); nxt.append(j)
            frontier = nxt
        return out

    def preds(self, s):
        out, x = [], self.arts[s]["supersedes"]
        while x is not None and x not in out and len(out) < 64:
            out.append(x)
            x = self.arts[x]["supersedes"]
        return out

    # ---------- evaluation ----------
    def hits(self, r, i):
        """set of introduced_by of record r at artifact i (empty: not affected)"""
        rec = self.records[r]
        if self.arts[i].get("removed"):
            return set()
        if rec["type"] == "fail":
            anc = self.ancestors(i)
            f = rec["on"]
            if f not in anc or self.arts[f].get("removed"):
                return set()
            for x in anc[:anc.index(f) + 1]:
                if r in self.arts[x]["fixes"]:
                    return set()
            return {f}
        out = set()
        e = self.eff(i)
        for name, ver in e.items():
            if name in rec["pkgs"] and any(lo <= ver < hi for lo, hi in rec["pkgs"][name]):
                x = i
                while True:
                    p = self.arts[x]["parent"]
                    if p is not None and self.eff(p).get(name) == ver:
                        x = p
                    else:
                        break
                out.add(x)
        return out

    def affected(self, r):
        return {i: self.hits(r, i) for i in self.live() if self.hits(r, i)}

    def topmost(self, i, hs):
        return min(hs, key=lambda h: self.depth(h))

    def chain(self, intro, i):
        anc = self.ancestors(i)
        return list(reversed(anc[:anc.index(intro) + 1]))   # intro ... i

    def step_of(self, intro, i):
        t = self.arts[i]["tenant"]
        ch = self.chain(intro, i)
        x = next(c for c in ch if self.arts[c]["tenant"] == t)
        if x == intro:
            return ("rebuild", x, None)
        p = self.arts[x]["parent"]
        if self.arts[x]["kind"] == "instance":
            return ("relaunch", p, p)
        return ("rebase", x, p)

    def pick_onto(self, r, p, t):
        cands = [s for s in self.succ_all(p) if self.visible(t, s) and not self.hits(r, s)]
        if not cands:
            return None
        return max(cands, key=lambda s: self.arts[s]["seq"])

    def plan(self, r, tenant=None, viewer=None):
        """steps (real ids) for tenant (None: all tenants)"""
        aff = self.affected(r)
        steps = {}
        for i in self.order:
            if i not in aff:
                continue
            t = self.arts[i]["tenant"]
            if tenant is not None and t != tenant:
                continue
            for h in aff[i]:
                act, art, p = self.step_of(h, i)
                k = (t, act, art)
                if k not in steps:
                    steps[k] = {"tenant": t, "action": act, "artifact": art, "p": p, "clears": []}
                if i not in steps[k]["clears"]:
                    steps[k]["clears"].append(i)
        out = []
        for k, s in steps.items():
            if s["action"] == "rebuild":
                sb = self.pick_onto(r, s["artifact"], s["tenant"])
                if sb:
                    s["superseded_by"] = sb
            else:
                o = self.pick_onto(r, s["p"], s["tenant"])
                if o:
                    s["onto"] = o
                else:
                    s["waits_for"] = s["p"]
            out.append(s)
        out.sort(key=lambda s: (self.depth(s["artifact"]), s["artifact"], s["action"], s["tenant"]))
        return out

    def render_plan(self, r, tenant):
        """tenant's plan as the tenant reads it"""
        out = []
        for s in self.plan(r, tenant):
            d = {"artifact": self.show(tenant, s["artifact"]), "action": s["action"],
                 "clears": [self.show(tenant, c) for c in s["clears"]]}
            for k in ("onto", "waits_for", "superseded_by"):
                if k in s:
                    d[k] = self.show(tenant, s[k])
            d["_vis"] = self.visible(tenant, s["artifact"])
            d["_depth"] = self.depth(s["artifact"])
            out.append(d)
        # top-down, then ids it may see, then the ones it may not
        out.sort(key=lambda d: (d["_depth"], 0 if d["_vis"] else 1, d["artifact"] if d["_vis"] else ""))
        for d in out:
            del d["_vis"]; del d["_depth"]
        return out

    def groups(self, tenant, open_arts=None):
        """key (record, topmost intro, action, step artifact) -> list of members (catalog order)"""
        g = {}
        for r in self.records:
            aff = self.affected(r)
            for i in self.order:
                if i not in aff or self.arts[i]["tenant"] != tenant or (r, i) in self.na:
                    continue
                top = self.topmost(i, aff[i])
                act, art, p = self.step_of(top, i)
                g.setdefault((r, top, act, art), {"members": [], "p": p})["members"].append(i)
        return g

    def cleared_by(self, r, q, aff=None):
        """affected artifacts strictly below q with every chain through q"""
        aff = aff if aff is not None else self.affected(r)
        out = []
        for i in self.order:
            if i not in aff or i == q:
                continue
            anc = self.ancestors(i)
            if q not in anc:
                continue
            qa = set(self.ancestors(q))
            if all(h in qa for h in aff[i]):
                out.append(i)
        return out
