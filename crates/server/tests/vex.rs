//! VEX in and out through the API: OpenVEX and CycloneDX VEX statements
//! on an artifact cover its subtree (the tenant's artifacts in it) now and
//! later, are matched by alias, never reach another tenant's artifacts;
//! decisions export as OpenVEX and CycloneDX VEX in each format's own words
//! (checked with the official schemas) and read back as the same decisions.

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use axum::http::StatusCode;
use common::{ADMIN, Api, VULNERABLE, usn_4038};
use serde_json::{Value, json};

/// canonical's public base image with the vulnerable bzip2; acme's public
/// template on it with two instances, and an instance straight on the
/// base; beta's instance on acme's template. Then USN-4038-1.
async fn cloud(api: &Api) -> (String, String, String) {
    let canonical = api.tenant("canonical", &["publisher"]).await;
    let acme = api.tenant("acme", &["tenant"]).await;
    let beta = api.tenant("beta", &["tenant"]).await;
    api.artifact(
        &canonical,
        json!({"id": "base", "kind": "image", "visibility": "public", "components": [VULNERABLE]}),
    )
    .await;
    api.artifact(
        &acme,
        json!({"id": "acme-tpl", "kind": "template", "parent": "base", "visibility": "public"}),
    )
    .await;
    for vm in ["acme-vm1", "acme-vm2"] {
        api.artifact(
            &acme,
            json!({"id": vm, "kind": "instance", "parent": "acme-tpl"}),
        )
        .await;
    }
    api.artifact(
        &acme,
        json!({"id": "acme-direct", "kind": "instance", "parent": "base"}),
    )
    .await;
    api.artifact(
        &beta,
        json!({"id": "beta-vm", "kind": "instance", "parent": "acme-tpl"}),
    )
    .await;
    let (s, v) = api.publish(&canonical, &usn_4038()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (canonical, acme, beta)
}

/// artifact -> (state, justification, detail) of a tenant's notices.
async fn states(api: &Api, token: &str) -> BTreeMap<String, (String, Value, Value)> {
    api.notices(token)
        .await
        .iter()
        .map(|n| {
            (
                n["artifact"].as_str().unwrap().to_string(),
                (
                    n["state"].as_str().unwrap().to_string(),
                    n["justification"].clone(),
                    n["detail"].clone(),
                ),
            )
        })
        .collect()
}

fn open(state: &str) -> bool {
    state == "affected" || state == "notified"
}

fn openvex(statements: Value) -> Value {
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/acme-1",
        "author": "acme security",
        "timestamp": "2026-11-29T08:00:00Z",
        "version": 1,
        "statements": statements,
    })
}

async fn import(api: &Api, token: &str, query: &str, doc: &Value) -> (StatusCode, Value) {
    api.call(
        "POST",
        &format!("/v1/vex{query}"),
        Some(token),
        Some(doc.clone()),
    )
    .await
}

const WHY: &str = "bzip2 never reads untrusted input on these machines";

#[tokio::test]
async fn a_statement_covers_the_subtree_now_and_later_and_only_its_tenants() {
    let api = Api::new();
    let (_, acme, beta) = cloud(&api).await;
    // Named by an upstream id of USN-4038-1, not by the record's own id.
    let doc = openvex(json!([{
        "vulnerability": {"name": "UBUNTU-CVE-2019-12900"},
        "products": [{"@id": "acme-tpl"}],
        "status": "not_affected",
        "justification": "vulnerable_code_not_in_execute_path",
        "impact_statement": WHY,
    }]));
    let (s, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["format"], "openvex");
    assert_eq!(v["recorded"], 1, "{v}");
    assert_eq!(v["notices"], 3, "the template and its two instances: {v}");
    assert_eq!(v["skipped"], json!([]));
    assert_eq!(v["no_record"], json!([]));
    let got = states(&api, &acme).await;
    for a in ["acme-tpl", "acme-vm1", "acme-vm2"] {
        assert_eq!(
            got[a],
            (
                "not_affected".to_string(),
                json!("vulnerable_code_not_in_execute_path"),
                json!(WHY)
            ),
            "{a}: {got:?}"
        );
    }
    // (Open: affected, or notified once a page was read.)
    assert!(open(&got["acme-direct"].0), "not under the template");
    // beta's instance under acme's template is beta's business.
    assert!(open(&states(&api, &beta).await["beta-vm"].0));

    // A webhook, then two new instances: under the template (born not
    // affected, never sent) and on the base (sent).
    let (s, sub) = api
        .call(
            "POST",
            "/v1/subscriptions",
            Some(&acme),
            Some(
                json!({"channel": {"type": "webhook", "url": "http://127.0.0.1:9/x"},
                        "grouping": "artifact"}),
            ),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    for (id, parent) in [("acme-vm3", "acme-tpl"), ("acme-vm4", "base")] {
        api.artifact(
            &acme,
            json!({"id": id, "kind": "instance", "parent": parent}),
        )
        .await;
    }
    let got = states(&api, &acme).await;
    assert_eq!(got["acme-vm3"].0, "not_affected", "{got:?}");
    assert_eq!(got["acme-vm3"].2, json!(WHY));
    assert!(open(&got["acme-vm4"].0));
    let notice_of = |artifact: &str| {
        let api = &api;
        let acme = acme.clone();
        let artifact = artifact.to_string();
        async move {
            api.notices(&acme)
                .await
                .into_iter()
                .find(|n| n["artifact"] == artifact.as_str())
                .unwrap()["notice_id"]
                .as_i64()
                .unwrap()
        }
    };
    let (vm3, vm4) = (notice_of("acme-vm3").await, notice_of("acme-vm4").await);
    let (s, d) = api
        .call(
            "GET",
            &format!(
                "/v1/subscriptions/{}/deliveries",
                sub["id"].as_str().unwrap()
            ),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    let sent: Vec<i64> = d["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|x| {
            x["notices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_i64().unwrap())
        })
        .collect();
    assert!(sent.contains(&vm4), "{d}");
    assert!(!sent.contains(&vm3), "a decided notice is not sent: {d}");
    // Moved under the template, vm4's open notice takes the decision too.
    let (s, v) = api
        .call(
            "PUT",
            "/v1/artifacts/acme-vm4",
            Some(&acme),
            Some(json!({"id": "acme-vm4", "kind": "instance", "parent": "acme-tpl"})),
        )
        .await;
    assert!(s.is_success(), "{v}");
    let got = states(&api, &acme).await;
    assert_eq!(got["acme-vm4"].0, "not_affected", "{got:?}");
    assert_eq!(got["acme-vm4"].2, json!(WHY));

    // beta cannot state anything about acme's template, and is told so
    // in the same words as for an artifact that does not exist.
    let (s, v) = import(&api, &beta, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["recorded"], 0);
    let reason = v["skipped"][0]["reason"].as_str().unwrap();
    assert!(reason.contains("names no artifact of yours"), "{v}");
    let mut missing = doc.clone();
    missing["statements"][0]["products"][0]["@id"] = json!("no-such-artifact");
    let (_, w) = import(&api, &beta, "", &missing).await;
    assert_eq!(
        w["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .replace("no-such-artifact", "acme-tpl"),
        reason
    );
    assert!(open(&states(&api, &beta).await["beta-vm"].0));
}

#[tokio::test]
async fn cyclonedx_vex_of_an_image_and_what_cannot_apply() {
    let api = Api::new();
    let (_, acme, _) = cloud(&api).await;
    // A CycloneDX VEX as a scanner writes it for one image: the image is
    // the document's subject, `affects` names packages inside it, and a
    // statement says nothing of the records of other packages.
    let doc = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "metadata": {"component": {"type": "operating-system", "bom-ref": "acme-direct",
                                   "name": "acme-direct"}},
        "vulnerabilities": [
            {"id": "USN-4038-1",
             "analysis": {"state": "false_positive"},
             "affects": [{"ref": "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?arch=amd64&upstream=bzip2"}]},
            {"id": "CVE-2099-0001",
             "analysis": {"state": "not_affected", "justification": "requires_environment",
                          "detail": "not reachable from outside"}},
            {"id": "USN-9999-1", "analysis": {"state": "resolved"}},
            {"id": "USN-9999-2", "analysis": {"state": "not_affected", "justification": "nope"}},
            {"id": "bad id!", "analysis": {"state": "in_triage"}},
            {"id": "USN-4038-1", "analysis": {"state": "not_affected", "justification": "code_not_present"},
             "affects": [{"ref": "pkg:deb/ubuntu/nginx@1.14.0-0ubuntu1?arch=amd64"}]},
            {"id": "USN-4038-1", "analysis": {"state": "not_affected", "justification": "code_not_present"},
             "affects": [{"ref": "does-not-exist"}]}
        ]
    });
    let (s, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["format"], "cyclonedx");
    assert_eq!(v["statements"], 7);
    assert_eq!(v["recorded"], 3, "{v}");
    assert_eq!(v["notices"], 1, "{v}");
    assert_eq!(
        v["no_record"],
        json!(["CVE-2099-0001"]),
        "kept for later: {v}"
    );
    let skipped: Vec<&str> = v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["at"].as_str().unwrap())
        .collect();
    assert_eq!(
        skipped,
        [
            "vulnerabilities[2]",
            "vulnerabilities[3]",
            "vulnerabilities[4]",
            "vulnerabilities[6]"
        ],
        "{v}"
    );
    assert!(
        v["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("inventory")
    );
    assert!(
        v["skipped"][1]["reason"]
            .as_str()
            .unwrap()
            .contains("\"nope\"")
    );
    assert!(
        v["skipped"][3]["reason"]
            .as_str()
            .unwrap()
            .contains("\"does-not-exist\""),
        "an unknown product is not the document's subject: {v}"
    );
    let got = states(&api, &acme).await;
    assert_eq!(got["acme-direct"].0, "not_affected", "{got:?}");
    assert!(
        got["acme-direct"]
            .2
            .as_str()
            .unwrap()
            .contains("false positive")
    );
    assert!(open(&got["acme-tpl"].0));

    // `artifact` says what statements without a product are about.
    let doc = openvex(json!([{
        "vulnerability": {"name": "USN-4038-1"},
        "status": "under_investigation",
        "status_notes": "rebuilding the template this week",
    }]));
    let (s, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        v["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("artifact"),
        "{v}"
    );
    let (s, v) = import(&api, &acme, "?artifact=acme-tpl", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["notices"], 3, "{v}");
    let got = states(&api, &acme).await;
    assert_eq!(
        got["acme-vm1"],
        (
            "acknowledged".to_string(),
            Value::Null,
            json!("rebuilding the template this week")
        )
    );

    // What is not VEX changes nothing, and says why.
    for (body, status) in [
        (json!({"hello": "world"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"@context": "https://openvex.dev/ns/v0.2.0", "statements": [{"status": "fixed"}]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, v) = import(&api, &acme, "", &body).await;
        assert_eq!(s, status, "{v}");
    }
    let (s, v) = api
        .call_raw_json("POST", "/v1/vex", Some(&acme), "[1, 2]")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = import(&api, &acme, "?artifact=nope", &doc).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = import(&api, ADMIN, "", &doc).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api
        .call("GET", "/v1/vex?format=spdx", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn acknowledgements_keep_a_detail_and_either_formats_words() {
    let api = Api::new();
    let (_, acme, _) = cloud(&api).await;
    let notices = api.notices(&acme).await;
    let id = |artifact: &str| {
        notices.iter().find(|n| n["artifact"] == artifact).unwrap()["notice_id"]
            .as_i64()
            .unwrap()
    };
    let ack = |n: i64, body: Value| {
        let api = &api;
        let acme = acme.clone();
        async move {
            api.call(
                "POST",
                &format!("/v1/notices/{n}/ack"),
                Some(&acme),
                Some(body),
            )
            .await
        }
    };
    let (s, v) = ack(
        id("acme-vm1"),
        json!({"state": "not_affected", "justification": "protected_at_perimeter",
               "detail": "behind the proxy"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["justification"], "protected_at_perimeter");
    assert_eq!(v["detail"], "behind the proxy");
    let (s, v) = ack(
        id("acme-vm2"),
        json!({"state": "not_affected", "detail": "the machine is air-gapped"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "a detail alone says why: {v}");
    let (s, v) = ack(id("acme-tpl"), json!({"state": "not_affected"})).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = ack(
        id("acme-tpl"),
        json!({"state": "not_affected", "justification": "because"}),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("code_not_reachable")
    );
    let (s, v) = ack(
        id("acme-direct"),
        json!({"justification": "on Monday's list"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "acknowledged");
    assert_eq!(v["detail"], "on Monday's list", "a note is the detail: {v}");
    assert!(v.get("justification").is_none(), "{v}");
}

/// Runs the schema checks of the exports (see crates/cli/tests/schemas).
fn validate(files: &[(String, std::path::PathBuf)]) -> String {
    let Some(py) = patchline_testkit::require_python(
        "vex exports against the official schemas",
        "cyclonedx.validation.json",
    ) else {
        return String::new();
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = Command::new(py)
        .arg(format!("{root}/crates/cli/tests/schemas/validate.py"))
        .arg(format!("{root}/testdata/schemas/sarif-schema-2.1.0.json"))
        .args(
            files
                .iter()
                .map(|(kind, path)| format!("{kind}:{}", path.display())),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn decisions_export_in_each_formats_words_and_read_back_the_same() {
    let api = Api::new();
    let (_, acme, beta) = cloud(&api).await;
    let doc = openvex(json!([
        {"vulnerability": {"name": "USN-4038-1"}, "products": [{"@id": "acme-tpl"}],
         "status": "not_affected", "justification": "vulnerable_code_cannot_be_controlled_by_adversary",
         "impact_statement": WHY},
        {"vulnerability": {"name": "USN-4038-1"}, "products": [{"@id": "acme-direct"}],
         "status": "affected", "action_statement": "relaunch on the fixed base"}
    ]));
    let (s, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, ov) = api.call("GET", "/v1/vex", Some(&acme), None).await;
    assert_eq!(s, StatusCode::OK, "{ov}");
    let (s, cdx) = api
        .call("GET", "/v1/vex?format=cyclonedx", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{cdx}");

    // OpenVEX's words in OpenVEX, CycloneDX's in CycloneDX.
    let mut st = ov["statements"].as_array().unwrap().clone();
    assert_eq!(st.len(), 2, "{ov}");
    st.sort_by_key(|s| s["status"] != "not_affected");
    assert_eq!(st[0]["status"], "not_affected");
    assert_eq!(
        st[0]["justification"],
        "vulnerable_code_cannot_be_controlled_by_adversary"
    );
    assert_eq!(st[0]["impact_statement"], WHY);
    let products: Vec<&str> = st[0]["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["@id"].as_str().unwrap())
        .collect();
    assert_eq!(
        products,
        [
            "urn:patchline:artifact:acme-tpl",
            "urn:patchline:artifact:acme-vm1",
            "urn:patchline:artifact:acme-vm2"
        ]
    );
    assert_eq!(st[1]["status"], "under_investigation");
    assert_eq!(st[1]["status_notes"], "relaunch on the fixed base");
    assert_eq!(ov["author"], "acme");
    let mut vulns = cdx["vulnerabilities"].as_array().unwrap().clone();
    vulns.sort_by_key(|v| v["analysis"]["state"] != "not_affected");
    assert_eq!(vulns[0]["analysis"]["state"], "not_affected");
    assert_eq!(
        vulns[0]["analysis"]["justification"],
        "requires_environment"
    );
    assert_eq!(vulns[0]["analysis"]["detail"], WHY);
    assert_eq!(vulns[1]["analysis"]["state"], "in_triage");
    assert!(
        !cdx.to_string().contains("vulnerable_code"),
        "no OpenVEX word in CycloneDX: {cdx}"
    );
    // Nothing of beta's, and beta's own export is empty but valid.
    assert!(!ov.to_string().contains("beta"), "{ov}");
    let (_, beta_cdx) = api
        .call("GET", "/v1/vex?format=cyclonedx", Some(&beta), None)
        .await;
    assert_eq!(beta_cdx["vulnerabilities"], json!([]));

    // The official schemas accept them; a broken control is refused.
    let dir = tempfile::tempdir().unwrap();
    let mut broken = cdx.clone();
    broken["vulnerabilities"][0]["analysis"]["state"] = json!("not_affected");
    broken["vulnerabilities"][0]["analysis"]["justification"] =
        json!("vulnerable_code_cannot_be_controlled_by_adversary");
    let mut broken_ov = ov.clone();
    broken_ov["statements"][0]["status"] = json!("resolved");
    let files: Vec<(String, std::path::PathBuf)> = [
        ("openvex", "acme.openvex.json", &ov),
        ("cyclonedx", "acme.cdx.json", &cdx),
        ("cyclonedx", "beta.cdx.json", &beta_cdx),
        ("cyclonedx", "broken.cdx.json", &broken),
        ("openvex", "broken.openvex.json", &broken_ov),
    ]
    .into_iter()
    .map(|(kind, name, doc)| {
        let path = dir.path().join(name);
        std::fs::write(&path, doc.to_string()).unwrap();
        (kind.to_string(), path)
    })
    .collect();
    let out = validate(&files);
    if !out.is_empty() {
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        for line in &lines[..3] {
            assert!(line.starts_with("ok "), "{out}");
        }
        for line in &lines[3..] {
            assert!(line.starts_with("invalid "), "the control must fail: {out}");
        }
    }

    // Each export, imported by the same tenant of another deployment,
    // gives the same decisions.
    let want = states(&api, &acme).await;
    for doc in [&ov, &cdx] {
        let other = Api::new();
        let (_, acme2, _) = cloud(&other).await;
        let (s, v) = import(&other, &acme2, "?scope=artifact", doc).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["skipped"], json!([]), "{v}");
        let got = states(&other, &acme2).await;
        for (artifact, (state, justification, detail)) in &want {
            let (s2, j2, d2) = &got[artifact];
            assert_eq!(s2, state, "{artifact}");
            assert_eq!(d2, detail, "{artifact}");
            if state == "not_affected" {
                // Translated to the format's word and back: the same
                // meaning, in that format's vocabulary.
                let j = j2.as_str().unwrap();
                assert!(
                    j == justification.as_str().unwrap() || j == "requires_environment",
                    "{artifact}: {j}"
                );
            }
        }
    }
}

/// Found from outside: a later statement that names the record by
/// another name (an upstream id) replaces the earlier; a statement's own
/// aliases do not widen it to other records; `scope=artifact` keeps a
/// statement to its artifact; an id that looks like a product name is
/// read as the id it is.
#[tokio::test]
async fn the_latest_statement_decides_by_its_name_on_its_scope() {
    let api = Api::new();
    let (_, acme, _) = cloud(&api).await;
    let say = |name: &str, aliases: Value, product: &str, status: &str| {
        let mut s = json!({"vulnerability": {"name": name, "aliases": aliases},
                           "products": [{"@id": product}], "status": status});
        if status == "not_affected" {
            s["justification"] = json!("component_not_present");
        }
        openvex(json!([s]))
    };
    let (s, v) = import(
        &api,
        &acme,
        "",
        &say(
            "USN-4038-1",
            json!([]),
            "acme-direct",
            "under_investigation",
        ),
    )
    .await;
    assert_eq!((s, v["notices"].clone()), (StatusCode::OK, json!(1)), "{v}");
    let (_, v) = import(
        &api,
        &acme,
        "",
        &say(
            "UBUNTU-CVE-2019-12900",
            json!([]),
            "acme-direct",
            "not_affected",
        ),
    )
    .await;
    assert_eq!(v["notices"], 1, "the later statement decides: {v}");
    assert_eq!(states(&api, &acme).await["acme-direct"].0, "not_affected");

    // Aliases of the statement are kept, not matched.
    let (_, v) = import(
        &api,
        &acme,
        "",
        &say("NOPE-1", json!(["USN-4038-1"]), "acme-tpl", "not_affected"),
    )
    .await;
    assert_eq!(v["notices"], 0, "{v}");
    assert_eq!(v["no_record"], json!(["NOPE-1"]));
    assert!(open(&states(&api, &acme).await["acme-tpl"].0));

    // The artifact alone.
    let (_, v) = import(
        &api,
        &acme,
        "?scope=artifact",
        &say("USN-4038-1", json!([]), "acme-tpl", "not_affected"),
    )
    .await;
    assert_eq!(v["notices"], 1, "{v}");
    let got = states(&api, &acme).await;
    assert_eq!(got["acme-tpl"].0, "not_affected");
    assert!(open(&got["acme-vm1"].0), "{got:?}");
    api.artifact(
        &acme,
        json!({"id": "acme-vm9", "kind": "instance", "parent": "acme-tpl"}),
    )
    .await;
    assert!(open(&states(&api, &acme).await["acme-vm9"].0));

    // A product name's prefix is taken off once: an artifact whose id
    // looks like a product name is named with the prefix once more (what
    // an export writes), so every id round-trips.
    api.artifact(
        &acme,
        json!({"id": "artifact:acme-vm1", "kind": "instance", "parent": "base"}),
    )
    .await;
    let (_, v) = import(
        &api,
        &acme,
        "",
        &say(
            "USN-4038-1",
            json!([]),
            "urn:patchline:artifact:artifact:acme-vm1",
            "not_affected",
        ),
    )
    .await;
    assert_eq!(v["notices"], 1, "{v}");
    let got = states(&api, &acme).await;
    assert_eq!(got["artifact:acme-vm1"].0, "not_affected");
    assert!(open(&got["acme-vm1"].0), "{got:?}");

    let (_, ov) = api.call("GET", "/v1/vex", Some(&acme), None).await;
    assert!(
        ov.to_string()
            .contains("\"urn:patchline:artifact:artifact:acme-vm1\""),
        "{ov}"
    );

    // A statement keeps at most 64 aliases.
    let many: Vec<String> = (0..65).map(|i| format!("CVE-2099-{i:04}")).collect();
    let (_, v) = import(
        &api,
        &acme,
        "",
        &say("USN-4038-1", json!(many), "acme-vm1", "not_affected"),
    )
    .await;
    assert_eq!(v["recorded"], 0, "{v}");
    assert!(
        v["skipped"][0]["reason"].as_str().unwrap().contains("64"),
        "{v}"
    );

    // Nothing decided: OpenVEX has no empty document, CycloneDX has.
    let gamma = api.tenant("gamma", &["tenant"]).await;
    let (s, v) = api.call("GET", "/v1/vex", Some(&gamma), None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let (s, v) = api
        .call("GET", "/v1/vex?format=cyclonedx", Some(&gamma), None)
        .await;
    assert_eq!(
        (s, v["vulnerabilities"].clone()),
        (StatusCode::OK, json!([]))
    );
}

/// Found from outside: a notice born under its owner's statement was not
/// sent to the watchers of the (public) artifact either, whose webhooks
/// then told the owner's decision by its absence.
#[tokio::test]
async fn watchers_hear_of_notices_the_owner_decided() {
    let api = Api::new();
    let (canonical, acme, beta) = cloud(&api).await;
    let (s, v) = api
        .call(
            "POST",
            "/v1/watches",
            Some(&beta),
            Some(json!({"artifact": "acme-tpl"})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut subs = BTreeMap::new();
    for (who, token) in [("acme", &acme), ("beta", &beta)] {
        let (s, v) = api
            .call(
                "POST",
                "/v1/subscriptions",
                Some(token),
                Some(json!({"channel": {"type": "webhook", "url": format!("http://127.0.0.1:9/{who}")},
                            "grouping": "artifact"})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        subs.insert(who, (token.clone(), v["id"].as_str().unwrap().to_string()));
    }
    let doc = openvex(json!([{
        "vulnerability": {"name": "USN-9000-1"}, "products": [{"@id": "acme-tpl"}],
        "status": "not_affected", "justification": "component_not_present",
    }]));
    let (_, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(v["no_record"], json!(["USN-9000-1"]), "{v}");
    let mut record = usn_4038();
    record["id"] = json!("USN-9000-1");
    let (s, v) = api.publish(&canonical, &record).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let tpl = api
        .notices(&acme)
        .await
        .into_iter()
        .find(|n| n["artifact"] == "acme-tpl" && n["advisory"] == "USN-9000-1")
        .unwrap();
    assert_eq!(tpl["state"], "not_affected");
    let id = tpl["notice_id"].as_i64().unwrap();
    let sent_to = |who: &'static str| {
        let (token, sub) = subs[who].clone();
        let api = &api;
        async move {
            let (_, d) = api
                .call(
                    "GET",
                    &format!("/v1/subscriptions/{sub}/deliveries"),
                    Some(&token),
                    None,
                )
                .await;
            d["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["notices"].as_array().unwrap().contains(&json!(id)))
        }
    };
    assert!(!sent_to("acme").await, "the owner decided: not sent to it");
    assert!(sent_to("beta").await, "the watcher hears of it as ever");
}

/// Statements kept are listed and withdrawn by their tenant: a withdrawn
/// one decides no new notice; the decisions it made stay.
#[tokio::test]
async fn statements_are_listed_and_withdrawn() {
    let api = Api::new();
    let (_, acme, beta) = cloud(&api).await;
    let doc = openvex(json!([
        {"vulnerability": {"name": "USN-4038-1", "aliases": ["UBUNTU-CVE-2019-12900"]},
         "products": [{"@id": "acme-tpl",
                       "subcomponents": [{"@id": "pkg:deb/ubuntu/libbz2-1.0@1.0.6-8.1?upstream=bzip2"}]}],
         "status": "not_affected", "justification": "component_not_present", "impact_statement": WHY},
        {"vulnerability": {"name": "CVE-2099-0001"}, "products": [{"@id": "acme-direct"}],
         "status": "under_investigation"}
    ]));
    let (s, v) = import(&api, &acme, "", &doc).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, page) = api
        .call("GET", "/v1/vex/statements?limit=1", Some(&acme), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let first = &page["statements"][0];
    assert_eq!(first["artifact"], "acme-tpl");
    assert_eq!(first["vulnerability"], "USN-4038-1");
    assert_eq!(first["aliases"], json!(["UBUNTU-CVE-2019-12900"]));
    assert_eq!(first["packages"], json!(["bzip2", "libbz2-1.0"]));
    assert_eq!(first["scope"], "subtree");
    assert_eq!(first["state"], "not_affected");
    assert_eq!(first["detail"], WHY);
    let next = page["next"].as_u64().unwrap();
    let (_, page2) = api
        .call(
            "GET",
            &format!("/v1/vex/statements?after={next}"),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(page2["statements"].as_array().unwrap().len(), 1, "{page2}");
    assert_eq!(page2["statements"][0]["vulnerability"], "CVE-2099-0001");
    let (_, end) = api
        .call(
            "GET",
            &format!("/v1/vex/statements?after={}", page2["next"]),
            Some(&acme),
            None,
        )
        .await;
    assert_eq!(end["statements"], json!([]));
    // beta keeps none, and cannot withdraw acme's.
    let (_, b) = api
        .call("GET", "/v1/vex/statements", Some(&beta), None)
        .await;
    assert_eq!(b["statements"], json!([]));
    let body = json!({"artifact": "acme-tpl", "vulnerability": "USN-4038-1",
                      "packages": ["bzip2", "libbz2-1.0"]});
    let (s, v) = api
        .call("POST", "/v1/vex/withdraw", Some(&beta), Some(body.clone()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, v) = api
        .call(
            "POST",
            "/v1/vex/withdraw",
            Some(&acme),
            Some(json!({"artifact": "acme-tpl", "vulnerability": "USN-4038-1"})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "the packages are part of it: {v}");
    let (s, v) = api
        .call("POST", "/v1/vex/withdraw", Some(&acme), Some(body))
        .await;
    assert_eq!((s, v), (StatusCode::OK, json!({"withdrawn": true})));
    // Decided before: still decided; born after: open.
    api.artifact(
        &acme,
        json!({"id": "acme-vm7", "kind": "instance", "parent": "acme-tpl"}),
    )
    .await;
    let got = states(&api, &acme).await;
    assert_eq!(got["acme-vm1"].0, "not_affected");
    assert!(open(&got["acme-vm7"].0), "{got:?}");
    let (_, page) = api
        .call("GET", "/v1/vex/statements", Some(&acme), None)
        .await;
    assert_eq!(page["statements"].as_array().unwrap().len(), 1, "{page}");
}
