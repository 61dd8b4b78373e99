"""VEX import and restart timings against a release binary (loopback only).

usage: vex_statements.py PATCHLINE_BIN USN_JSON DOCUMENTS
"""
import json, os, signal, subprocess, sys, time, urllib.request, shutil

BIN = sys.argv[1]
DATA = "/tmp/vex-bench-data"
ADMIN = "bench-admin-token"
shutil.rmtree(DATA, ignore_errors=True)

def start():
    env = dict(os.environ, PATCHLINE_ADMIN_TOKEN=ADMIN, PATCHLINE_LOG="warn")
    t0 = time.monotonic()
    p = subprocess.Popen([BIN, "--data-dir", DATA, "serve", "--listen", "127.0.0.1:0", "--no-workers"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    line = p.stdout.readline().strip()
    addr = line.split()[-1].replace("http://", "")
    base = f"http://{addr}"
    while True:
        try:
            if urllib.request.urlopen(base + "/readyz").status == 200:
                break
        except Exception:
            time.sleep(0.01)
    return p, base, time.monotonic() - t0

def call(base, method, path, token, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read() or b"null")

p, base, _ = start()
pub = call(base, "POST", "/v1/tenants", ADMIN, {"id": "pub", "roles": ["publisher"]})["token"]
acme = call(base, "POST", "/v1/tenants", ADMIN, {"id": "acme", "roles": ["tenant"]})["token"]
purl = "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2&distro=ubuntu-18.04"
call(base, "POST", "/v1/artifacts", pub, {"id": "base", "kind": "image", "visibility": "public", "components": [purl]})
call(base, "POST", "/v1/artifacts", acme, {"id": "tpl", "kind": "template", "parent": "base"})
for i in range(100):
    call(base, "POST", "/v1/artifacts", acme, {"id": f"vm{i}", "kind": "instance", "parent": "tpl"})
usn = json.load(open(sys.argv[2]))
call(base, "POST", "/v1/advisories", pub, usn)
docs = int(sys.argv[3])
for d in range(docs):
    statements = [{"vulnerability": {"name": f"CVE-5000-{d:02d}{i:05d}"}, "products": [{"@id": "tpl"}],
                   "status": "under_investigation"} for i in range(10_000)]
    if d == docs - 1:
        statements[-1] = {"vulnerability": {"name": "USN-4038-1"}, "products": [{"@id": "tpl"}],
                          "status": "not_affected", "justification": "component_not_present"}
    doc = {"@context": "https://openvex.dev/ns/v0.2.0", "@id": f"urn:x:{d}", "author": "a",
           "timestamp": "2026-11-29T00:00:00Z", "version": 1, "statements": statements}
    t0 = time.monotonic()
    out = call(base, "POST", "/v1/vex", acme, doc)
    print(f"import {d + 1}: 10,000 statements in {time.monotonic() - t0:.2f} s (notices {out['notices']})", flush=True)
t0 = time.monotonic()
call(base, "POST", "/v1/artifacts", acme, {"id": "vm-new", "kind": "instance", "parent": "tpl"})
print(f"a new instance under {docs * 10_000} statements: {1000 * (time.monotonic() - t0):.1f} ms", flush=True)
p.send_signal(signal.SIGTERM); p.wait()
p, base, startup = start()
print(f"restart with {docs * 10_000} statements on one artifact: ready in {startup:.2f} s", flush=True)
n = call(base, "GET", "/v1/notices?limit=1000", acme)["notices"]
print("states:", sorted({x["state"] for x in n}))
p.send_signal(signal.SIGTERM); p.wait()
