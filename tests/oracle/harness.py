#!/usr/bin/env python3
"""The outside check of remedy plans, grouped notices and patch notices:
random clouds, one `patchline serve` at a time on 127.0.0.1, every answer
compared with oracle.py (written from the README alone, not from the
code). Standard library only; traffic to 127.0.0.1 only.

    PATCHLINE_BIN=target/release/patchline python3 tests/oracle/harness.py 1 121
    PATCHLINE_BIN=... python3 tests/oracle/harness.py 1001 1006 --big
    SEEDS=38,93 PATCHLINE_BIN=... python3 tests/oracle/harness.py 0 0 --verbose

Disagreements are printed per seed and written as JSON lines to
$ORACLE_DIR/findings.jsonl (ORACLE_DIR: a fresh temporary folder unless
set); the exit code is 1 when there is any. Ports: PATCHLINE_ORACLE_PORT
(18080) for the service, +10 for the webhook receiver.
"""
import http.client, json, os, random, subprocess, sys, time, shutil, tempfile, threading, copy
from http.server import BaseHTTPRequestHandler, HTTPServer
from oracle import Cloud, V, PRIV

BIN = os.environ.get("PATCHLINE_BIN") or sys.exit("set PATCHLINE_BIN to the patchline binary to check")
WORK = os.environ.get("ORACLE_DIR") or tempfile.mkdtemp(prefix="patchline-oracle-")
FINDINGS = os.path.join(WORK, "findings.jsonl")
PORT = int(os.environ.get("PATCHLINE_ORACLE_PORT", "18080"))
HOOKPORT = PORT + 10
ADMIN = "admintoken0123456789abcdef"
VERBOSE = "--verbose" in sys.argv

# ---------------- webhook receiver ----------------
HOOKS = []
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("content-length", 0))
        body = self.rfile.read(n)
        at = time.time()
        meta = {"webhook-id": self.headers.get("webhook-id"), "webhook-timestamp": self.headers.get("webhook-timestamp")}
        try:
            HOOKS.append((self.path, json.loads(body), at, meta))
        except Exception:
            HOOKS.append((self.path, {"_raw": body.decode(errors="replace")}, at, meta))
        self.send_response(204); self.end_headers()
    def log_message(self, *a):
        pass

def start_receiver():
    srv = HTTPServer(("127.0.0.1", HOOKPORT), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()

# ---------------- client ----------------
class Client:
    def __init__(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
        self.log = []
    def req(self, method, path, token, body=None):
        hdr = {"Authorization": "Bearer " + token}
        data = None
        if body is not None:
            data = json.dumps(body); hdr["Content-Type"] = "application/json"
        t0 = time.time()
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=data, headers=hdr)
                r = self.conn.getresponse()
                raw = r.read()
                break
            except (http.client.HTTPException, ConnectionError, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=60)
                time.sleep(0.2)
        try:
            js = json.loads(raw) if raw else None
        except Exception:
            js = {"_raw": raw.decode(errors="replace")}
        self.log.append((method, path, body, r.status, t0, time.time()))
        return r.status, js

# ---------------- server ----------------
class Server:
    def __init__(self, seed):
        self.dir = os.path.join(WORK, "data", f"s{seed}")
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.join(WORK, "data"), exist_ok=True)
        env = dict(os.environ, PATCHLINE_ADMIN_TOKEN=ADMIN, PATCHLINE_WEBHOOK_ALLOW="127.0.0.0/8",
                   PATCHLINE_LOG="warn")
        self.err = open(os.path.join(WORK, "data", f"s{seed}.log"), "w")
        self.p = subprocess.Popen([BIN, "--data-dir", self.dir, "serve", "--listen", f"127.0.0.1:{PORT}"],
                                  env=env, stdout=subprocess.PIPE, stderr=self.err)
        line = self.p.stdout.readline()
        assert b"listening" in line, line
    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill(); self.p.wait()
        self.err.close()

# ---------------- findings ----------------
class Findings:
    def __init__(self, seed):
        self.seed = seed; self.items = []
        self.counts = {}
    def ok(self, what, n=1):
        self.counts[what] = self.counts.get(what, 0) + n
    def bad(self, kind, **kw):
        kw = dict(kind=kind, seed=self.seed, **kw)
        self.items.append(kw)
        if VERBOSE:
            print("  DISAGREE", json.dumps(kw)[:1500])

def walk_strings(x):
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield from walk_strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from walk_strings(v)

# ---------------- generator ----------------
PKGS_ALL = ["libfoo", "libbar", "zlib", "openssl", "curl", "bash"]
KIDS = {"image": ["image", "template", "instance", "instance"], "template": ["replica", "instance", "instance"],
        "replica": ["replica", "instance", "instance"], "instance": ["template"]}

def purl(name, vi):
    return f"pkg:deb/debian/{name}@{V[vi]}?arch=amd64&distro=debian-12"

class Run:
    def __init__(self, seed, big=False):
        self.seed = seed; self.rng = random.Random(seed)
        self.big = big
        self.c = Cloud(); self.F = Findings(seed); self.cl = Client()
        self.tok = {}
        self.groupids = {}   # (tenant, key) -> gid
        self.patch_cursor = {}
        self.seen_patches = {}  # tenant -> list
        self.flip_time = {}
        self.flip_info = {}

    # ----- helpers -----
    def T(self, t):
        return ADMIN if t is None else self.tok[t]

    def new_art(self, creator, parent, kind, own, vis, fixes=(), supersedes=None, aid=None):
        rng = self.rng
        aid = aid or f"{creator}-{kind[:3]}{len(self.c.order)}"
        body = {"id": aid, "kind": kind, "visibility": vis}
        if parent:
            body["parent"] = parent
        if own is not None:
            body["components"] = [purl(n, v) for n, v in sorted(own.items())]
        if fixes:
            body["fixes"] = list(fixes)
        if supersedes:
            body["supersedes"] = supersedes
        st, js = self.cl.req("POST", "/v1/artifacts", self.tok[creator], body)
        if st not in (200, 201):
            self.F.bad("create_refused", body=body, status=st, answer=js)
            return None
        self.c.add({"id": aid, "kind": kind, "tenant": creator, "parent": parent, "vis": vis,
                    "own": None if own is None else dict(own), "fixes": list(fixes), "supersedes": supersedes})
        return aid

    def gen_artifact(self):
        rng, c = self.rng, self.c
        creator = rng.choice(self.tenants) if rng.random() > 0.12 else "pub"
        cands = [i for i in c.live() if c.visible(creator, i)]
        parent = rng.choice(cands)
        kind = rng.choice(KIDS[c.arts[parent]["kind"]])
        if kind == "instance" or creator != "pub" and rng.random() > 0.3:
            vis = "private"
        else:
            vis = "public"
        if creator == "pub" and kind != "instance":
            vis = "public" if rng.random() < 0.85 else "private"
        own = None
        if rng.random() < 0.35:
            own = dict(c.eff(parent))
            for n in list(own):
                x = rng.random()
                if x < 0.3:
                    own[n] = rng.randrange(len(V))
                elif x < 0.4:
                    del own[n]
            for n in self.pkgs:
                if n not in own and rng.random() < 0.2:
                    own[n] = rng.randrange(len(V) - 1)
        fixes = []
        if self.fail_ids and rng.random() < 0.08:
            fixes = [rng.choice(self.fail_ids)]
        return self.new_art(creator, parent, kind, own, vis, fixes)

    # ----- phases -----
    def setup(self):
        rng = self.rng
        nt = rng.randint(2, 5)
        self.tenants = [f"t{k}" for k in range(1, nt + 1)]
        for t in ["pub"] + self.tenants:
            st, js = self.cl.req("POST", "/v1/tenants", ADMIN, {"id": t, "roles": ["publisher"] if t == "pub" else []})
            assert st in (200, 201), (st, js)
            self.tok[t] = js["token"]
            st, js = self.cl.req("POST", "/v1/subscriptions", self.tok[t],
                                 {"channel": {"type": "webhook", "url": f"http://127.0.0.1:{HOOKPORT}/s{self.seed}/{t}"}})
            if st not in (200, 201):
                self.F.bad("subscribe_refused", status=st, answer=js)
        if FLIP_MODE == "markers":   # marker tenant for #3 (no rng use; not part of the oracle's cloud)
            st, js = self.cl.req("POST", "/v1/tenants", ADMIN, {"id": "mk", "roles": []})
            mkt = js["token"]
            self.cl.req("POST", "/v1/subscriptions", mkt,
                        {"channel": {"type": "webhook", "url": f"http://127.0.0.1:{HOOKPORT}/mark{self.seed}/mk"}})
            st, js = self.cl.req("POST", "/v1/artifacts", mkt, {"id": "mk-root", "kind": "image", "visibility": "private"})
            if st not in (200, 201):
                self.F.bad("marker_setup", status=st, answer=js)
        self.pkgs = rng.sample(PKGS_ALL, rng.randint(2, 4))
        self.fail_ids = [f"FAIL-{k}" for k in range(rng.randint(0, 2))]
        self.n_total = rng.randint(120, 220) if self.big else rng.randint(15, 60)
        for k in range(rng.randint(1, 3)):
            own = {n: rng.randrange(len(V) - 1) for n in self.pkgs if rng.random() < 0.85}
            self.new_art("pub", None, "image", own, "public", aid=f"base{k}")
        # a tenant's own private root, sometimes
        for t in self.tenants:
            if rng.random() < 0.3:
                own = {n: rng.randrange(len(V) - 1) for n in self.pkgs if rng.random() < 0.6}
                self.new_art(t, None, "image", own, "private" if rng.random() < 0.6 else "public")

    def publish_records(self):
        rng, c = self.rng, self.c
        for k in range(rng.randint(2, 4)):
            rid = f"ADV-{k}"
            names = rng.sample(self.pkgs, min(len(self.pkgs), rng.randint(1, 2)))
            affected, pk = [], {}
            for n in names:
                ranges = []
                kind = rng.random()
                if kind < 0.5:
                    hi = rng.randint(1, 4); ev = [{"introduced": "0"}, {"fixed": V[hi]}]; ranges.append((0, hi))
                elif kind < 0.85:
                    lo = rng.randint(0, 3); hi = rng.randint(lo + 1, 4)
                    ev = [{"introduced": V[lo]}, {"fixed": V[hi]}]; ranges.append((lo, hi))
                else:
                    lo = rng.randint(0, 3); ev = [{"introduced": V[lo]}]; ranges.append((lo, 99))
                pk[n] = ranges
                affected.append({"package": {"ecosystem": "Debian:12", "name": n},
                                 "ranges": [{"type": "ECOSYSTEM", "events": ev}]})
            body = {"id": rid, "modified": "2024-01-01T00:00:00Z", "summary": f"vuln {rid}", "affected": affected}
            st, js = self.cl.req("POST", "/v1/advisories", self.tok["pub"], body)
            if st not in (200, 201):
                self.F.bad("advisory_refused", status=st, answer=js); continue
            c.records[rid] = {"type": "adv", "pkgs": pk}
        for fid in self.fail_ids:
            cands = [i for i in c.live() if c.arts[i]["kind"] != "instance"]
            on = rng.choice(cands)
            st, js = self.cl.req("POST", f"/v1/artifacts/{on}/failures", ADMIN, {"id": fid, "summary": "broken " + fid})
            if st not in (200, 201):
                self.F.bad("failure_refused", status=st, answer=js); continue
            c.records[fid] = {"type": "fail", "on": on}

    def rec_visible(self, t, r):
        rec = self.c.records[r]
        return rec["type"] == "adv" or self.c.visible(t, rec["on"])

    # ----- isolation -----
    def isolation(self, t, doc, where, at=None):
        c = self.c
        for s in walk_strings(doc):
            if s in c.arts and not c.visible(t, s):
                if at is not None and s in self.flip_info:
                    continue   # webhooks naming a flipped id are judged by classify_flip (#3)
                if at is not None and s in self.flip_time:
                    where += " (arrived %.2fs after the flip; event time %s)" % (at - self.flip_time[s], doc.get("time"))
                self.F.bad("isolation_leak", tenant=t, leaked=s, where=where, doc=doc if at is not None else None)
                return
        self.F.ok("isolation_docs")

    # ----- checks -----
    def check_remedy(self, phase):
        c = self.c
        for r in c.records:
            # admin, all tenants
            st, js = self.cl.req("GET", f"/v1/advisories/{r}/remedy", ADMIN)
            exp = [{k: v for k, v in s.items() if k != "p"} for s in c.plan(r)]
            got = js.get("steps") if st == 200 else None
            if got is not None:
                got = [{k: v for k, v in s.items() if v is not None} for s in got]
            if got != exp:
                self.F.bad("remedy_admin_all", phase=phase, record=r, call=f"GET /v1/advisories/{r}/remedy (admin)",
                           expected=exp, got=js if st == 200 else (st, js))
            else:
                self.F.ok("remedy_admin_all"); self.F.ok("remedy_steps", len(exp))
            for t in ["pub"] + self.tenants:
                st, js = self.cl.req("GET", f"/v1/advisories/{r}/remedy", self.tok[t])
                if not self.rec_visible(t, r):
                    if st != 404:
                        self.F.bad("remedy_failure_visibility", phase=phase, record=r, tenant=t, got=(st, js))
                    continue
                self.isolation(t, js, f"remedy {r}")
                exp = c.render_plan(r, t)
                got = js.get("steps") if st == 200 else None
                if got is not None:
                    got = [{k: v for k, v in s.items() if v is not None and k != "tenant"} for s in got]
                if got != exp:
                    self.F.bad("remedy_tenant", phase=phase, record=r, tenant=t,
                               call=f"GET /v1/advisories/{r}/remedy (token of {t})", expected=exp, got=js if st == 200 else (st, js))
                else:
                    self.F.ok("remedy_tenant")
                st2, js2 = self.cl.req("GET", f"/v1/advisories/{r}/remedy?tenant={t}", ADMIN)
                g2 = js2.get("steps") if st2 == 200 else None
                if g2 is not None:
                    g2 = [{k: v for k, v in s.items() if v is not None and k != "tenant"} for s in g2]
                if g2 != got:
                    self.F.bad("remedy_admin_vs_tenant", phase=phase, record=r, tenant=t,
                               tenant_got=got, admin_got=js2)
                else:
                    self.F.ok("remedy_admin_tenant_same")

    def read_notices(self, t, grouping):
        out, after = [], 0
        for _ in range(100):
            q = f"/v1/notices?after={after}&limit=1000" + (f"&grouping={grouping}" if grouping else "")
            st, js = self.cl.req("GET", q, self.tok[t])
            if st != 200:
                self.F.bad("notices_read", tenant=t, status=st, answer=js); break
            self.isolation(t, js, q)
            if not js["notices"]:
                break
            out.extend(js["notices"])
            after = js["next"]
        return out

    def group_members(self, t, gid, token=None):
        out, after = [], 0
        for _ in range(100):
            st, js = self.cl.req("GET", f"/v1/notices/{gid}/artifacts?after={after}&limit=1000", token or self.tok[t])
            if st != 200:
                return None, (st, js)
            self.isolation(t, js, f"group {gid} artifacts")
            if not js["notices"]:
                break
            out.extend(js["notices"])
            if js["next"] == after:
                break
            after = js["next"]
        return out, None

    def check_groups(self, phase):
        c = self.c
        result = {}
        for t in ["pub"] + self.tenants:
            exp = c.groups(t)
            entries = self.read_notices(t, "grouped")
            got = {}
            for e in entries:
                if e.get("grouping") != "grouped":
                    continue
                key = (e["advisory"], e["introduced_by"], e["action"], e["artifact"])
                got.setdefault(key, []).append(e)
            # render expected keys in tenant view
            exp_view = {}
            for (r, top, act, art), g in exp.items():
                vk = (r, c.show(t, top), act, c.show(t, art))
                exp_view.setdefault(vk, []).append(((r, top, act, art), g))
            for vk, lst in exp_view.items():
                if len(lst) > 1:   # hidden ids collapse in the view: compare by count only
                    self.F.ok("groups_hidden_collapse")
                    continue
                (rk, g) = lst[0]
                if vk not in got:
                    self.F.bad("group_missing", phase=phase, tenant=t, key=vk, expected_members=g["members"],
                               got_keys=sorted(map(list, got.keys())))
                    continue
                es = got[vk]
                gids = {e["notice_id"] for e in es}
                if len(gids) != 1:
                    self.F.bad("group_split", phase=phase, tenant=t, key=vk, gids=sorted(gids))
                gid = es[-1]["notice_id"]
                # stable group id
                prev = self.groupids.get((t, rk))
                if prev is not None and prev != gid:
                    self.F.bad("group_id_changed", phase=phase, tenant=t, key=vk, before=prev, after=gid)
                else:
                    self.F.ok("group_id_stable")
                self.groupids[(t, rk)] = gid
                result[(t, rk)] = gid
                # onto / waits_for
                e = es[-1]
                if act_needs(rk[2]):
                    o = c.pick_onto(rk[0], g["p"], t)
                    exp_o = {"onto": o} if o else {"waits_for": g["p"]}
                    exp_o = {k: v for k, v in exp_o.items() if c.visible(t, v)}   # SECURITY.md: left out
                    got_o = {k: e[k] for k in ("onto", "waits_for") if e.get(k) is not None}
                    if exp_o != got_o:
                        self.F.bad("group_onto", phase=phase, tenant=t, key=vk, gid=gid, expected=exp_o, got=got_o,
                                   entry=e, remedy=c.render_plan(rk[0], t), parent_of_step=c.arts[rk[3]]["parent"])
                    else:
                        self.F.ok("group_onto")
                # artifacts_open on the latest entry
                if e.get("artifacts_open") != len(g["members"]):
                    self.F.bad("group_artifacts_open", phase=phase, tenant=t, key=vk, gid=gid,
                               expected=len(g["members"]), got=e.get("artifacts_open"))
                # members
                mem, err = self.group_members(t, gid)
                if mem is None:
                    self.F.bad("group_members_read", tenant=t, gid=gid, err=err); continue
                openm = [m["artifact"] for m in mem if m.get("state") in ("affected", "notified", "acknowledged")]
                if sorted(openm) != sorted(g["members"]):
                    self.F.bad("group_members", phase=phase, tenant=t, key=vk, gid=gid,
                               call=f"GET /v1/notices/{gid}/artifacts (token of {t})",
                               expected=g["members"], got=[(m["artifact"], m.get("state")) for m in mem])
                else:
                    self.F.ok("groups_compared"); self.F.ok("group_members_compared", len(openm))
                # page members union
                pm = set()
                for e2 in es:
                    pm |= {m["artifact"] for m in e2.get("artifacts", [])}
                if not set(g["members"]) <= pm:
                    self.F.bad("group_page_members", phase=phase, tenant=t, key=vk, expected=g["members"], got=sorted(pm))
            for vk in got:
                if vk not in exp_view:
                    # open groups only matter
                    e = got[vk][-1]
                    if (e.get("artifacts_open") or 0) > 0:
                        self.F.bad("group_unexpected", phase=phase, tenant=t, key=vk, entry=e)
        return result

    def check_all(self, phase):
        self.check_remedy(phase)
        return self.check_groups(phase)

    # ----- mutations -----
    def more_artifacts(self, n):
        for _ in range(n):
            self.gen_artifact()

    def ack_groups(self, gmap):
        rng, c = self.rng, self.c
        for t in self.tenants:
            mine = [(k, g) for (tt, k), g in gmap.items() if tt == t]
            if not mine:
                continue
            k, gid = rng.choice(mine)
            mem_before, _ = self.group_members(t, gid)
            n_open = sum(1 for m in mem_before if m.get("state") in ("affected", "notified"))
            st, js = self.cl.req("POST", f"/v1/notices/{gid}/ack", self.tok[t], {})
            if st != 200:
                self.F.bad("group_ack", tenant=t, gid=gid, status=st, answer=js); continue
            self.isolation(t, js, "group ack")
            if js.get("changed") != n_open:
                self.F.bad("group_ack_changed", tenant=t, gid=gid, expected=n_open, got=js.get("changed"),
                           members_before=[(m["artifact"], m.get("state")) for m in mem_before])
            mem, _ = self.group_members(t, gid)
            bad = [(m["artifact"], m.get("state")) for m in mem if m.get("state") in ("affected", "notified")]
            if bad:
                self.F.bad("group_ack_members", tenant=t, gid=gid, still_open_unacked=bad)
            else:
                self.F.ok("group_acks")
            # other tenant cannot ack it
            other = next(x for x in ["pub"] + self.tenants if x != t)
            st, js = self.cl.req("POST", f"/v1/notices/{gid}/ack", self.tok[other], {})
            if st != 404:
                self.F.bad("group_ack_foreign", tenant=other, gid=gid, status=st, answer=js)
            st, js = self.cl.req("GET", f"/v1/notices/{gid}/artifacts", self.tok[other])
            if st != 404:
                self.F.bad("group_read_foreign", tenant=other, gid=gid, status=st, answer=js)

    def expected_patches(self, s):
        """patch notices expected from publishing s (already added to the oracle)"""
        c = self.c
        exp = {}
        p = c.arts[s]["supersedes"]
        chain = c.preds(s)
        # breaks: records affecting s and not p
        breaks = [r for r in c.records if c.hits(r, s) and not c.hits(r, p)]
        for q in chain:
            for r in c.records:
                aff = c.affected(r)
                if q not in aff or s in aff:
                    continue
                for i in c.cleared_by(r, q, aff):
                    if (r, i) in c.na:
                        continue
                    t = c.arts[i]["tenant"]
                    if not c.visible(t, s):
                        continue
                    rc = c.topmost(i, aff[i])
                    key = (t, r, rc)
                    e = exp.setdefault(key, {"supersedes": q, "clears": [], "tenant": t})
                    if i not in e["clears"]:
                        e["clears"].append(i)
        for (t, r, rc), e in exp.items():
            # README (Patch notices): one notice per (tenant, record, root cause) down the chain, clearing the
            # artifacts under every version; listed in catalog order (as remedy's clears), not per version
            e["clears"].sort(key=lambda i: c.arts[i]["seq"])
            q = e["supersedes"] if os.environ.get("BREAKS_VS") != "direct" else p
            bq = [b for b in c.records if c.hits(b, s) and not c.hits(b, q)]
            e["breaks"] = sorted(b for b in bq if self.rec_visible(t, b))
        return exp

    def read_patches(self, t):
        out, after = [], self.patch_cursor.get(t, 0)
        for _ in range(50):
            st, js = self.cl.req("GET", f"/v1/patches?after={after}&limit=1000", self.tok[t])
            if st != 200:
                self.F.bad("patches_read", tenant=t, status=st, answer=js); break
            self.isolation(t, js, "patches")
            if not js["patches"]:
                break
            out.extend(js["patches"]); after = js["next"]
        self.patch_cursor[t] = after
        return out

    def compare_patches(self, exp, sid, sup, phase, only=None):
        c = self.c
        time.sleep(0.05)
        for t in (only if only is not None else ["pub"] + self.tenants):
            got = self.read_patches(t)
            self.seen_patches.setdefault(t, []).extend(got)
            gotk = {}
            for g in got:
                gotk.setdefault((g["advisory"], g["introduced_by"]), []).append(g)
            expk = {}
            for (tt, r, rc), e in exp.items():
                if tt == t:
                    expk.setdefault((r, c.show(t, rc)), []).append(e)
            for k in set(gotk) | set(expk):
                ge, ee = gotk.get(k, []), expk.get(k, [])
                if len(ge) != len(ee):
                    self.F.bad("patch_notice_set", phase=phase, tenant=t, successor=sid, supersedes=sup,
                               key=k, expected=[dict(e, clears=e["clears"]) for e in ee], got=ge)
                    continue
                if len(ee) != 1:
                    self.F.ok("patch_hidden_collapse"); continue
                e, g = ee[0], ge[0]
                errs = {}
                if g["successor"] != c.show(t, sid):
                    errs["successor"] = (c.show(t, sid), g["successor"])
                if g["supersedes"] != c.show(t, e["supersedes"]):
                    errs["supersedes"] = (c.show(t, e["supersedes"]), g["supersedes"])
                if g["clears"] != e["clears"]:
                    errs["clears"] = (e["clears"], g["clears"])
                if g["clears_total"] != len(e["clears"]):
                    errs["clears_total"] = (len(e["clears"]), g["clears_total"])
                if sorted(g["breaks"]) != e["breaks"]:
                    errs["breaks"] = (e["breaks"], g["breaks"])
                plan = c.render_plan(k[0], t)
                gplan = [{kk: vv for kk, vv in st.items() if vv is not None and kk not in ("clears_total",)} for st in g["plan"]]
                eplan = [{kk: vv for kk, vv in st.items() if kk != "superseded_by"} for st in plan]
                gplan = [{kk: vv for kk, vv in st.items() if kk != "superseded_by"} for st in gplan]
                if gplan != eplan:
                    errs["plan"] = (eplan, g["plan"])
                if g["steps_total"] != len(plan):
                    errs["steps_total"] = (len(plan), g["steps_total"])
                if errs:
                    self.F.bad("patch_notice_content", phase=phase, tenant=t, successor=sid, supersedes=sup,
                               key=k, diffs=errs, got=g)
                else:
                    self.F.ok("patch_notices_compared")

    def publish_successor(self, phase, force_private=False):
        rng, c = self.rng, self.c
        # candidates: P that some step waits for, owned by pub or a tenant
        waits = []
        for r in c.records:
            for s in c.plan(r):
                if s.get("p") and "waits_for" in s:
                    waits.append(s["p"])
                if s["action"] == "rebuild" and "superseded_by" not in s and rng.random() < 0.3:
                    waits.append(s["artifact"])
        if not waits:
            return None
        p = rng.choice(sorted(set(waits)))
        # chain: supersede the newest existing successor sometimes
        succ = c.succ_all(p)
        sup = p
        if succ and rng.random() < 0.5:
            sup = max(succ, key=lambda x: c.arts[x]["seq"])
        pa = c.arts[p]
        owner = pa["tenant"]
        own = dict(c.eff(sup))
        for n in list(own):
            if rng.random() < 0.8:
                own[n] = len(V) - 1      # upgrade to newest
        if rng.random() < 0.2 and self.pkgs:
            n = rng.choice(self.pkgs); own[n] = 0   # regression
        vis = pa["vis"] if rng.random() > 0.15 else "private"
        if force_private:
            vis = "private"
        parent = pa["parent"]
        if parent is not None and not c.visible(owner, parent):
            parent = None
        if rng.random() < 0.3:
            parent = None
        before_open = {r: set(c.affected(r)) for r in c.records}
        aid = f"{p}-v{len(c.order)}"
        sid = self.new_art(owner, parent, pa["kind"], own, vis, supersedes=sup, aid=aid)
        if sid is None:
            return None
        exp = self.expected_patches(sid)
        self.compare_patches(exp, sid, sup, phase)
        return sid

    def remediate(self, phase):
        """tenants move onto successors; check remediated_by"""
        rng, c = self.rng, self.c
        todo = []
        for r in c.records:
            for s in c.plan(r):
                if "onto" in s and s["tenant"] != "pub":
                    todo.append((r, s))
        rng.shuffle(todo)
        done = set()
        for r, s in todo[:4]:
            t = s["tenant"]
            movers = [s["artifact"]] if s["action"] == "rebase" else [i for i in s["clears"] if c.arts[i]["kind"] == "instance" and c.arts[i]["parent"] == s["artifact"]]
            for x in movers:
                if x in done or c.arts[x].get("removed"):
                    continue
                done.add(x)
                a = c.arts[x]
                old_parent = a["parent"]
                onto = s["onto"]
                before = {rr: set(c.affected(rr)) for rr in c.records}
                body = {"id": x, "kind": a["kind"], "parent": onto, "visibility": a["vis"]}
                if a["own"] is not None:
                    body["components"] = [purl(n, v) for n, v in sorted(a["own"].items())]
                if a["fixes"]:
                    body["fixes"] = a["fixes"]
                if a["supersedes"]:
                    body["supersedes"] = a["supersedes"]
                st, js = self.cl.req("PUT", f"/v1/artifacts/{x}", self.tok[t], body)
                if st not in (200, 201):
                    self.F.bad("put_refused", tenant=t, body=body, status=st, answer=js); continue
                a["parent"] = onto
                is_succ = onto in c.succ_all(old_parent)
                exp_rb = {"cause": "successor" if is_succ else "rebase",
                          "action": "relaunch" if a["kind"] == "instance" else "rebase",
                          "artifact": x, "onto": onto}
                gone = [(rr, i) for rr in c.records for i in before[rr] if i not in c.affected(rr)]
                if not gone:
                    continue
                notes = self.read_notices(t, None)
                last = {}
                for n in notes:
                    last[(n["advisory"], n["artifact"])] = n
                for (rr, i) in gone:
                    if c.arts[i]["tenant"] != t:
                        continue
                    n = last.get((rr, i))
                    if n is None:
                        self.F.bad("remediated_missing", tenant=t, record=rr, artifact=i); continue
                    if n.get("state") != "remediated" or n.get("remediated_by") != exp_rb:
                        self.F.bad("remediated_by", phase=phase, tenant=t, record=rr, artifact=i,
                                   call=f"PUT /v1/artifacts/{x} {json.dumps(body)}",
                                   expected={"state": "remediated", "remediated_by": exp_rb},
                                   got={"state": n.get("state"), "remediated_by": n.get("remediated_by")})
                    else:
                        self.F.ok("remediated_by_compared")

    def put_art(self, x, **changes):
        c = self.c; a = c.arts[x]
        a2 = dict(a); a2.update(changes)
        body = {"id": x, "kind": a2["kind"], "visibility": a2["vis"]}
        if a2["parent"]:
            body["parent"] = a2["parent"]
        if a2["own"] is not None:
            body["components"] = [purl(n, v) for n, v in sorted(a2["own"].items())]
        if a2["fixes"]:
            body["fixes"] = a2["fixes"]
        if a2["supersedes"]:
            body["supersedes"] = a2["supersedes"]
        st, js = self.cl.req("PUT", f"/v1/artifacts/{x}", self.tok[a["tenant"]], body)
        if st not in (200, 201):
            self.F.bad("put_refused", body=body, status=st, answer=js)
            return None
        a.update(changes)
        return body

    def check_remediated(self, before, exp_rb, call, phase):
        c = self.c
        gone = [(rr, i) for rr in c.records for i in before[rr] if i not in c.affected(rr)]
        by_t = {}
        for rr, i in gone:
            by_t.setdefault(c.arts[i]["tenant"], []).append((rr, i))
        for t, lst in by_t.items():
            notes = self.read_notices(t, None)
            last = {}
            for n in notes:
                last[(n["advisory"], n["artifact"])] = n
            for rr, i in lst:
                if (rr, i) in c.na:
                    continue
                n = last.get((rr, i))
                if n is None:
                    self.F.bad("remediated_missing", tenant=t, record=rr, artifact=i, call=call); continue
                got_rb = {k: v for k, v in (n.get("remediated_by") or {}).items() if v is not None}
                exp_rb_t = {k: (c.show(t, v) if k in ("artifact", "onto") else v) for k, v in exp_rb.items()}
                if n.get("state") != "remediated" or got_rb != exp_rb_t:
                    self.F.bad("remediated_by", phase=phase, tenant=t, record=rr, artifact=i, call=call,
                               expected={"state": "remediated", "remediated_by": exp_rb_t},
                               got={"state": n.get("state"), "remediated_by": n.get("remediated_by")})
                else:
                    self.F.ok("remediated_by_compared_" + exp_rb["cause"])

    def mark_not_affected(self):
        rng, c = self.rng, self.c
        t = rng.choice(self.tenants)
        notes = self.read_notices(t, None)
        last = {}
        for n in notes:
            last[(n["advisory"], n["artifact"])] = n
        opn = [n for n in last.values() if n.get("state") in ("affected", "notified", "acknowledged")]
        if not opn:
            return
        n = rng.choice(opn)
        st, js = self.cl.req("POST", f"/v1/notices/{n['notice_id']}/ack", self.tok[t],
                             {"state": "not_affected", "justification": "component_not_present"})
        if st != 200:
            self.F.bad("not_affected_refused", status=st, answer=js); return
        c.na.add((n["advisory"], n["artifact"]))
        self.F.ok("not_affected_marked")

    def rebuild(self, phase):
        rng, c = self.rng, self.c
        cands = [(r, s) for r in c.records for s in c.plan(r) if s["action"] == "rebuild" and s["tenant"] != "pub"
                 and c.records[r]["type"] == "adv"]
        if not cands:
            return
        r, s = rng.choice(cands)
        x = s["artifact"]
        own = {n: len(V) - 1 for n in c.eff(x)}
        before = {rr: set(c.affected(rr)) for rr in c.records}
        body = self.put_art(x, own=own)
        if body:
            self.check_remediated(before, {"cause": "rebuild", "action": "rebuild", "artifact": x},
                                  f"PUT /v1/artifacts/{x} {json.dumps(body)}", phase)

    def remove_leaf(self, phase):
        rng, c = self.rng, self.c
        parents = {c.arts[i]["parent"] for i in c.live()}
        cands = sorted({i for r in c.records for i in c.affected(r) if i not in parents and c.arts[i]["tenant"] != "pub"})
        if not cands:
            return
        x = rng.choice(cands)
        before = {rr: set(c.affected(rr)) for rr in c.records}
        st, js = self.cl.req("DELETE", f"/v1/artifacts/{x}", self.tok[c.arts[x]["tenant"]])
        if st not in (200, 204):
            self.F.bad("delete_refused", artifact=x, status=st, answer=js); return
        c.arts[x]["removed"] = True
        self.check_remediated(before, {"cause": "removal", "action": "remove", "artifact": x},
                              f"DELETE /v1/artifacts/{x}", phase)

    def flip_private(self, phase):
        rng, c = self.rng, self.c
        cands = []
        for i in c.live():
            a = c.arts[i]
            if a["vis"] != "public" or a["supersedes"]:
                continue
            below = [j for j in c.live() if i in c.ancestors(j) and c.arts[j]["tenant"] != a["tenant"]]
            if below:
                cands.append(i)
        if not cands:
            return
        x = rng.choice(sorted(cands))
        # #3 instrumentation. FLIP_MODE=drain: drain webhooks in flight before the flip, time the PUT, drain again.
        # FLIP_MODE=markers (original timing, no waiting): a marker write right before and right after the PUT;
        # webhook-ids carry a per-server sequence number, so a message's number tells whether it was created
        # before the flip (< marker before), by the flip write (between) or after it (> marker after).
        markers = FLIP_MODE == "markers"
        pre = quiesce() if not markers else 0
        seen_before = {m.get("webhook-id") for (_, _, _, m) in HOOKS}
        if markers:
            self.marker("MK-before")
        self.flip_time[x] = time.time()
        ok = self.put_art(x, vis="private")
        put_ret = time.time()
        if markers:
            self.marker("MK-after")
        post = quiesce() if not markers else 0
        self.flip_info[x] = {"put_start": self.flip_time[x], "put_return": put_ret, "settled": time.time(),
                             "seen_before": seen_before, "pre_quiet": pre, "post_quiet": post}
        if ok:
            self.F.ok("visibility_flips")

    def staged(self, phase):
        """private successor, then made public: announced then to those who may see it now"""
        c = self.c
        sid = self.publish_successor(phase + ":private", force_private=True)
        if not sid:
            return
        owner = c.arts[sid]["tenant"]
        # withdraw supersedes and declare it again: nothing new
        sup = c.arts[sid]["supersedes"]
        self.put_art(sid, supersedes=None)
        self.put_art(sid, supersedes=sup)
        for t in ["pub"] + self.tenants:
            got = self.read_patches(t)
            if got:
                self.F.bad("patch_redeclare_announced", phase=phase, tenant=t, successor=sid, got=got)
        if not self.put_art(sid, vis="public"):
            return
        exp = self.expected_patches(sid)
        exp = {k: v for k, v in exp.items() if k[0] != owner}
        self.F.ok("staged_releases")
        self.compare_patches(exp, sid, sup, phase + ":made-public", only=[t for t in ["pub"] + self.tenants if t != owner])

    def marker(self, fid):
        st, js = self.cl.req("POST", "/v1/artifacts/mk-root/failures", ADMIN, {"id": f"{fid}-{self.seed}", "summary": "marker"})
        if st not in (200, 201):
            self.F.bad("marker_refused", status=st, answer=js)

    def marker_seqs(self):
        out = {}
        for path, body, at, meta in HOOKS:
            if path == f"/mark{self.seed}/mk":
                for n in (body.get("data") or {}).get("notices", []):
                    out[n.get("advisory")] = wseq(meta.get("webhook-id"))
        return out.get(f"MK-before-{self.seed}"), out.get(f"MK-after-{self.seed}")

    def classify_flip(self, t, body, at, meta):
        """#3: every webhook naming a now-private id to a tenant that may not see it, with timing"""
        c = self.c
        names = set(s for s in walk_strings(body) if s in self.flip_info and not c.visible(t, s))
        for x in names:
            fi = self.flip_info[x]
            writes_after = [(m, p, t0, t1) for (m, p, b, st, t0, t1) in self.cl.log if m != "GET" and t0 >= fi["put_return"] and t0 <= at]
            ws = wseq(meta.get("webhook-id"))
            m1, m2 = self.marker_seqs() if FLIP_MODE == "markers" else (None, None)
            if FLIP_MODE == "markers":
                if m1 is None or m2 is None or ws is None:
                    cls = "UNKNOWN(no marker seq)"
                elif ws < m1:
                    cls = "created_before_flip(seq %d < marker %d)" % (ws, m1)
                elif ws < m2:
                    cls = "from_flip_write_itself(seq %d between markers %d..%d)" % (ws, m1, m2)
                else:
                    cls = "LEAK_created_after_flip(seq %d > marker %d)" % (ws, m2)
            elif at < fi["put_return"]:
                cls = "arrived_before_put_returned"
            elif meta.get("webhook-id") in fi["seen_before"]:
                cls = "retry_of_pre_flip_message"
            elif not writes_after:
                cls = "from_flip_write_itself(arrived after PUT returned, before any later write)"
            else:
                cls = "LEAK_rendered_after_flip(later write %s %s)" % (writes_after[-1][0], writes_after[-1][1])
            rec = dict(kind="flip_webhook", seed=self.seed, tenant=t, private_id=x, cls=cls,
                       arrived_minus_put_return=round(at - fi["put_return"], 3),
                       put_duration=round(fi["put_return"] - fi["put_start"], 3),
                       webhook_id=meta.get("webhook-id"), webhook_timestamp=meta.get("webhook-timestamp"),
                       ce_id=body.get("id"), ce_time=body.get("time"), type=body.get("type"), doc=body)
            FLIPLOG.write(json.dumps(rec) + "\n"); FLIPLOG.flush()
            if cls.startswith("LEAK") or cls.startswith("from_flip") or cls.startswith("UNKNOWN"):
                self.F.bad("flip_webhook_names_private", **{k: v for k, v in rec.items() if k not in ("kind", "seed")})
            else:
                self.F.ok("flip_webhook_in_flight")
        # summary of every webhook after the flip (for the report)
        for x, fi in self.flip_info.items():
            if at >= fi["put_start"]:
                ALLAFTER.write(json.dumps(dict(seed=self.seed, tenant=t, flipped=x, arrived_minus_put_return=round(at - fi["put_return"], 3),
                                               webhook_id=meta.get("webhook-id"), ce_time=body.get("time"), type=body.get("type"),
                                               names_it=x in set(walk_strings(body)), visible_to_tenant=c.visible(t, x))) + "\n")

    def check_hooks(self):
        time.sleep(1.0)
        c = self.c
        prefix = f"/s{self.seed}/"
        known = {}
        for (t, k), gid in self.groupids.items():
            known.setdefault(t, set()).add(gid)
        for path, body, at, meta in HOOKS:
            if not path.startswith(prefix):
                continue
            t = path[len(prefix):]
            self.classify_flip(t, body, at, meta)
            self.isolation(t, body, "webhook " + str(body.get("type")), at=at)
            data = body.get("data") or {}
            if body.get("type") == "dev.patchline.patch":
                ids = {p["notice_id"] for p in data.get("patches", [])}
                pull = {p["notice_id"] for p in self.seen_patches.get(t, [])}
                if not ids <= pull:
                    self.F.bad("webhook_patch_not_in_pull", tenant=t, ids=sorted(ids - pull))
                else:
                    self.F.ok("webhook_patches")
            elif body.get("type") == "dev.patchline.notice":
                for n in data.get("notices", []):
                    if n.get("grouping") != "grouped":
                        self.F.bad("webhook_not_grouped", tenant=t, entry=n); continue
                    self.F.ok("webhook_groups")

    def run(self):
        self.setup()
        n1 = int(self.n_total * 0.7)
        while len(self.c.order) < n1:
            self.gen_artifact()
        self.publish_records()
        self.more_artifacts(self.n_total - n1)
        gmap = self.check_all("A:initial")
        self.ack_groups(gmap)
        for k in range(self.rng.randint(1, 3)):
            sid = self.publish_successor(f"B:successor{k}")
        self.more_artifacts(3)
        self.check_all("C:after-successors")
        self.remediate("D:remediate")
        self.check_all("E:after-remediation")
        self.mark_not_affected()
        self.staged("F:staged")
        self.check_all("G:after-staged")
        self.rebuild("H:rebuild")
        self.remove_leaf("H:remove")
        self.check_all("I:after-rebuild-remove")
        self.flip_private("J:flip")
        self.check_all("K:after-flip")
        self.more_artifacts(3)
        self.publish_successor("L:successor-after-flip")
        self.check_all("M:final")
        self.check_hooks()
        self.F.ok("artifacts", len(self.c.order))
        self.F.ok("records", len(self.c.records))


FLIP_MODE = os.environ.get("FLIP_MODE", "drain")

def wseq(wid):
    try:
        return int(wid.rsplit("_", 1)[1])
    except Exception:
        return None

def quiesce(quiet=1.5, cap=20.0):
    """wait until no webhook arrived for `quiet` seconds (at most cap); returns seconds waited"""
    t0 = time.time()
    while time.time() - t0 < cap:
        last = HOOKS[-1][2] if HOOKS else 0
        if time.time() - last >= quiet:
            break
        time.sleep(0.1)
    return round(time.time() - t0, 2)

FLIPLOG = open(os.path.join(WORK, "flip_webhooks.jsonl"), "a")
ALLAFTER = open(os.path.join(WORK, "flip_all_after.jsonl"), "a")

def act_needs(a):
    return a in ("rebase", "relaunch")


def main():
    a = [x for x in sys.argv[1:] if not x.startswith("--")]
    lo, hi = int(a[0]), int(a[1])
    big = "--big" in sys.argv
    start_receiver()
    tot = {}
    disagreements = 0
    out = open(FINDINGS, "a")
    seeds = list(range(lo, hi))
    if os.environ.get("SEEDS"):
        seeds = [int(x) for x in os.environ["SEEDS"].split(",")]
    for seed in seeds:
        srv = Server(seed)
        try:
            R = Run(seed, big)
            try:
                R.run()
            except Exception as ex:
                import traceback
                R.F.bad("harness_exception", err=traceback.format_exc()[-1500:])
        finally:
            srv.stop()
        for k, v in R.F.counts.items():
            tot[k] = tot.get(k, 0) + v
        kinds = {}
        disagreements += len(R.F.items)
        for it in R.F.items:
            kinds[it["kind"]] = kinds.get(it["kind"], 0) + 1
            out.write(json.dumps(it) + "\n")
        out.flush()
        print(f"seed {seed}: arts={len(R.c.order)} recs={len(R.c.records)} disagreements={kinds}", flush=True)
        shutil.rmtree(srv.dir, ignore_errors=True)
    print("TOTALS", json.dumps(tot))
    if disagreements:
        print(f"{disagreements} disagreements with the oracle: {FINDINGS}", flush=True)
        sys.exit(1)
    print(f"no disagreement ({len(seeds)} seeds)", flush=True)


if __name__ == "__main__":
    main()
