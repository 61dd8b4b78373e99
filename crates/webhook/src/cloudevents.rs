//! CloudEvents 1.0 structured-mode JSON envelope for webhook bodies.

use serde_json::{Value, json};

/// Content type of a structured-mode CloudEvent, for receivers that route on
/// it; plain `application/json` is also valid for the same body.
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// A CloudEvents 1.0 event in structured JSON form. `time` is passed through
/// as given (the caller formats RFC 3339); `data` is always JSON here, hence
/// the fixed `datacontenttype`.
#[must_use]
pub fn event(id: &str, source: &str, ty: &str, time_rfc3339: &str, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": ty,
        "time": time_rfc3339,
        "datacontenttype": "application/json",
        "data": data,
    })
}

/// The same event, serialized straight from typed data (no intermediate
/// `Value` tree): what the worker sends, byte for byte the document that
/// [`event`] builds.
pub fn to_vec<D: serde::Serialize>(
    id: &str,
    source: &str,
    ty: &str,
    time_rfc3339: &str,
    data: &D,
) -> serde_json::Result<Vec<u8>> {
    #[derive(serde::Serialize)]
    struct Event<'a, D> {
        specversion: &'static str,
        id: &'a str,
        source: &'a str,
        #[serde(rename = "type")]
        ty: &'a str,
        time: &'a str,
        datacontenttype: &'static str,
        data: &'a D,
    }
    serde_json::to_vec(&Event {
        specversion: "1.0",
        id,
        source,
        ty,
        time: time_rfc3339,
        datacontenttype: "application/json",
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_serialization_is_the_same_document() {
        let data = json!({"purpose": "notice", "notices": [{"notice_id": "n1", "x": "a\"b"}]});
        let bytes = to_vec("msg_1", "/s", "t", "2026-01-02T03:04:05Z", &data).unwrap();
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            back,
            event("msg_1", "/s", "t", "2026-01-02T03:04:05Z", data)
        );
    }

    #[test]
    fn structured_event_has_the_required_attributes() {
        let ev = event(
            "msg_1",
            "/patchline/advisories",
            "dev.patchline.notice.v1",
            "2026-01-02T03:04:05Z",
            json!({"notices": [{"notice_id": "n1"}]}),
        );
        assert_eq!(
            ev,
            json!({
                "specversion": "1.0",
                "id": "msg_1",
                "source": "/patchline/advisories",
                "type": "dev.patchline.notice.v1",
                "time": "2026-01-02T03:04:05Z",
                "datacontenttype": "application/json",
                "data": {"notices": [{"notice_id": "n1"}]},
            })
        );
    }

    #[test]
    fn strings_are_escaped_not_interpolated() {
        let ev = event("a\"b", "s", "t", "2026-01-01T00:00:00Z", Value::Null);
        let text = serde_json::to_string(&ev).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["id"], "a\"b");
        assert_eq!(back["data"], Value::Null);
    }
}
