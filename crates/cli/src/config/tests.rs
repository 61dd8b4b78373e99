//! Precedence, every error path, unknown keys, redaction, and the shipped
//! example file.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

const KEY_A: &str = "abababababababababababababababababababababababababababababababab";
const KEY_B: &str = "cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd";
const TOKEN: &str = "admin-token-0123456789abcdef";

/// A scratch folder with a configuration file in it.
struct Case {
    dir: tempfile::TempDir,
    env: HashMap<String, String>,
    flags: Flags,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
            env: HashMap::new(),
            flags: Flags::default(),
        }
    }

    /// Writes the configuration file and names it with `--config`.
    fn file(mut self, text: &str) -> Case {
        let path = self.dir.path().join("patchline.toml");
        std::fs::write(&path, text).unwrap();
        self.flags.config = Some(path);
        self
    }

    fn env(mut self, name: &str, value: &str) -> Case {
        self.env.insert(name.to_string(), value.to_string());
        self
    }

    /// Writes a private file in the scratch folder; answers its path.
    fn secret_file(&self, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("patchline.toml")
    }

    fn resolve(&self) -> Result<Settings, ConfigError> {
        let env = self.env.clone();
        resolve(&self.flags, &move |name: &str| env.get(name).cloned())
    }

    fn ok(&self) -> Settings {
        self.resolve()
            .unwrap_or_else(|e| panic!("expected a valid configuration: {e}"))
    }

    /// The errors, one string each.
    fn errors(&self) -> Vec<String> {
        match self.resolve() {
            Ok(s) => panic!("expected an error, got {s:?}"),
            Err(ConfigError(errors)) => errors,
        }
    }

    /// The one error, which must contain every `needle`.
    fn error(&self, needles: &[&str]) -> String {
        let errors = self.errors();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        for n in needles {
            assert!(errors[0].contains(n), "{n:?} not in {:?}", errors[0]);
        }
        errors[0].clone()
    }
}

fn file_source(case: &Case, key: &'static str) -> Source {
    Source::File(case.path(), key)
}

// ----- defaults and precedence -----

#[test]
fn nothing_given_gives_the_server_defaults() {
    let s = Case::new().ok();
    let d = Config::new(PathBuf::new());
    assert_eq!(s.file, None);
    assert_eq!(s.listen.value.to_string(), DEFAULT_LISTEN);
    assert_eq!(s.data_dir.value, PathBuf::from(DEFAULT_DATA_DIR));
    assert!(s.workers.value);
    let c = s.server_config();
    assert_eq!(c.conns_max, d.conns_max);
    assert_eq!(c.streams_max, d.streams_max);
    assert_eq!(c.streams_per_tenant_max, d.streams_per_tenant_max);
    assert_eq!(c.retry, d.retry);
    assert_eq!(c.reminder_interval_ms, d.reminder_interval_ms);
    assert_eq!(c.escalate_after, d.escalate_after);
    assert_eq!(c.secret_overlap_ms, d.secret_overlap_ms);
    assert_eq!(c.webhook_timeout_ms, d.webhook_timeout_ms);
    assert_eq!(c.webhook_policy, d.webhook_policy);
    assert_eq!(c.admin_token_hash, None);
    assert!(!c.secret_keys.is_enabled());
    assert_eq!(s.log_level.value, "info");
    assert_eq!(s.log_format.value, LogFormat::Auto);
    for source in [
        &s.listen.source,
        &s.data_dir.source,
        &s.conns_max.source,
        &s.retry.source,
        &s.admin_token.source,
        &s.log_format.source,
    ] {
        assert_eq!(source, &Source::Default);
    }
    assert!(
        s.warnings.iter().any(|w| w.contains("no admin token")),
        "{:?}",
        s.warnings
    );
}

#[test]
fn flags_beat_the_environment_which_beats_the_file() {
    let text = r#"
[server]
listen = "127.0.0.1:7001"
data_dir = "/from/file"
workers = true
[limits]
conns_max = 10
streams_max = 11
[log]
format = "text"
"#;
    // The file alone.
    let case = Case::new().file(text);
    let s = case.ok();
    assert_eq!(s.file, Some(case.path()));
    assert_eq!(s.listen.value.port(), 7001);
    assert_eq!(s.listen.source, file_source(&case, "server.listen"));
    assert_eq!(s.data_dir.value, PathBuf::from("/from/file"));
    assert_eq!(s.conns_max.value, Some(10));
    assert_eq!(s.streams_max.value, 11);
    assert_eq!(s.log_format.value, LogFormat::Text);
    // The environment over the file.
    let case = Case::new()
        .file(text)
        .env("PATCHLINE_LISTEN", "127.0.0.1:7002")
        .env("PATCHLINE_DATA_DIR", "/from/env")
        .env("PATCHLINE_CONNS_MAX", "20")
        .env("PATCHLINE_LOG_FORMAT", "json");
    let s = case.ok();
    assert_eq!(s.listen.value.port(), 7002);
    assert_eq!(s.listen.source, Source::Env("PATCHLINE_LISTEN"));
    assert_eq!(s.data_dir.value, PathBuf::from("/from/env"));
    assert_eq!(s.conns_max.value, Some(20));
    assert_eq!(s.conns_max.source, Source::Env("PATCHLINE_CONNS_MAX"));
    // Not given by the environment: still the file's.
    assert_eq!(s.streams_max.value, 11);
    assert_eq!(
        s.streams_max.source,
        file_source(&case, "limits.streams_max")
    );
    assert_eq!(s.log_format.value, LogFormat::Json);
    // Flags over both.
    let mut case = case;
    case.flags.listen = Some("127.0.0.1:7003".parse().unwrap());
    case.flags.data_dir = Some(PathBuf::from("/from/flag"));
    case.flags.no_workers = true;
    let s = case.ok();
    assert_eq!(s.listen.value.port(), 7003);
    assert_eq!(s.listen.source, Source::Flag("--listen"));
    assert_eq!(s.data_dir.value, PathBuf::from("/from/flag"));
    assert!(!s.workers.value);
    assert_eq!(s.workers.source, Source::Flag("--no-workers"));
    assert!(!s.server_config().workers);
}

#[test]
fn blank_variables_count_as_unset() {
    let case = Case::new()
        .file("[limits]\nconns_max = 10\n")
        .env("PATCHLINE_CONNS_MAX", "  ")
        .env("PATCHLINE_STORE", "");
    let s = case.ok();
    assert_eq!(s.conns_max.value, Some(10));
}

#[test]
fn the_file_can_be_named_by_the_environment_and_the_flag_wins() {
    let case = Case::new().file("[limits]\nstreams_max = 5\n");
    let other = case.dir.path().join("other.toml");
    std::fs::write(&other, "[limits]\nstreams_max = 6\n").unwrap();
    let mut by_env = Case::new().env("PATCHLINE_CONFIG", other.to_str().unwrap());
    by_env.dir = tempfile::tempdir().unwrap();
    assert_eq!(by_env.ok().streams_max.value, 6);
    let case = case.env("PATCHLINE_CONFIG", other.to_str().unwrap());
    assert_eq!(
        case.ok().streams_max.value,
        5,
        "--config beats PATCHLINE_CONFIG"
    );
}

#[test]
fn every_file_key_reaches_the_server_configuration() {
    let case = Case::new();
    let token = case.secret_file("token", &format!("{TOKEN}\n"), 0o600);
    let keys = case.secret_file("keys", &format!("# current\n{KEY_A}\n{KEY_B}\n"), 0o600);
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:9000"
data_dir = "/var/lib/x"
workers = false
scan_roots = ["/srv/a", "/srv/b"]
[limits]
conns_max = 500
streams_max = 400
streams_per_tenant = 7
[delivery]
retry_schedule = "0s,1s,1m"
reminder_interval = "2h"
escalate_after = 5
[webhook]
allow = ["127.0.0.0/8", "10.1.2.3"]
timeout = "1500ms"
secret_overlap = "0s"
event_source = "/patchline/test"
operator_url = "http://127.0.0.1:9/ops"
[secrets]
admin_token_file = "{}"
key_file = "{}"
[log]
level = "warn,patchline_server=debug"
format = "json"
"#,
        token.display(),
        keys.display()
    );
    let case = case.file(&text);
    let s = case.ok();
    let c = s.server_config();
    assert_eq!(s.listen.value.to_string(), "127.0.0.1:9000");
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/x"));
    assert!(!c.workers);
    assert_eq!(
        c.scan_roots,
        vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
    );
    assert_eq!(c.conns_max, Some(500));
    assert_eq!(c.streams_max, 400);
    assert_eq!(c.streams_per_tenant_max, 7);
    assert_eq!(c.retry.delays_ms, vec![0, 1000, 60_000]);
    assert_eq!(c.reminder_interval_ms, 2 * 3600 * 1000);
    assert_eq!(c.escalate_after, 5);
    let allowed: Vec<String> = c
        .webhook_policy
        .allow_list()
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert_eq!(allowed, ["127.0.0.0/8", "10.1.2.3/32"]);
    assert_eq!(c.webhook_timeout_ms, 1500);
    assert_eq!(c.secret_overlap_ms, 0);
    assert_eq!(c.event_source.as_deref(), Some("/patchline/test"));
    assert_eq!(
        c.operator_webhook.as_deref(),
        Some("http://127.0.0.1:9/ops")
    );
    assert_eq!(
        c.admin_token_hash,
        Some(patchline_server::auth::hash_token(TOKEN))
    );
    assert!(c.secret_keys.is_enabled());
    assert_eq!(
        c.secret_keys.current_id(),
        SecretKeys::new(KEY_A, []).unwrap().current_id()
    );
    assert_eq!(s.log_level.value, "warn,patchline_server=debug");
    assert_eq!(s.log_format.value, LogFormat::Json);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn the_environment_gives_every_setting_it_gave_before() {
    let case = Case::new()
        .env("PATCHLINE_ADMIN_TOKEN", &format!(" {TOKEN} "))
        .env("PATCHLINE_WEBHOOK_ALLOW", "127.0.0.0/8,")
        .env("PATCHLINE_RETRY_SCHEDULE", "0,200ms,1s")
        .env("PATCHLINE_REMINDER_INTERVAL_S", "60")
        .env("PATCHLINE_ESCALATE_AFTER", "2")
        .env("PATCHLINE_SECRET_OVERLAP_S", "0")
        .env("PATCHLINE_WEBHOOK_TIMEOUT_MS", "5000")
        .env("PATCHLINE_CONNS_MAX", "64")
        .env("PATCHLINE_STREAMS_MAX", "9")
        .env("PATCHLINE_STREAMS_PER_TENANT", "3")
        .env("PATCHLINE_EVENT_SOURCE", "/x")
        .env("PATCHLINE_SCAN_ROOTS", "/a:/b")
        .env("PATCHLINE_OPERATOR_WEBHOOK", "http://127.0.0.1:9/e")
        .env("PATCHLINE_SECRET_KEY", KEY_A)
        .env("PATCHLINE_SECRET_KEY_PREVIOUS", KEY_B)
        .env("PATCHLINE_LOG", "debug");
    let c = case.ok().server_config();
    assert_eq!(
        c.admin_token_hash,
        Some(patchline_server::auth::hash_token(TOKEN))
    );
    assert_eq!(c.webhook_policy.allow_list().len(), 1);
    assert_eq!(c.retry.delays_ms, vec![0, 200, 1000]);
    assert_eq!(c.reminder_interval_ms, 60_000);
    assert_eq!(c.escalate_after, 2);
    assert_eq!(c.secret_overlap_ms, 0);
    assert_eq!(c.webhook_timeout_ms, 5000);
    assert_eq!(c.conns_max, Some(64));
    assert_eq!(c.streams_max, 9);
    assert_eq!(c.streams_per_tenant_max, 3);
    assert_eq!(c.event_source.as_deref(), Some("/x"));
    assert_eq!(c.scan_roots, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
    assert_eq!(c.operator_webhook.as_deref(), Some("http://127.0.0.1:9/e"));
    assert!(c.secret_keys.is_enabled());
}

#[test]
fn secrets_from_the_environment_beat_the_files_the_file_names() {
    let case = Case::new();
    let token = case.secret_file("token", "from-the-file-0123456789\n", 0o600);
    let keys = case.secret_file("keys", KEY_B, 0o600);
    let case = case
        .file(&format!(
            "[secrets]\nadmin_token_file = \"{}\"\nkey_file = \"{}\"\n",
            token.display(),
            keys.display()
        ))
        .env("PATCHLINE_ADMIN_TOKEN", TOKEN)
        .env("PATCHLINE_SECRET_KEY", KEY_A);
    let s = case.ok();
    assert_eq!(s.admin_token.source, Source::Env("PATCHLINE_ADMIN_TOKEN"));
    assert_eq!(
        s.admin_token.value.as_ref().map(Redacted::expose),
        Some(TOKEN)
    );
    assert_eq!(s.secret_keys.source, Source::Env("PATCHLINE_SECRET_KEY"));
    assert_eq!(
        s.secret_keys.value.current_id(),
        SecretKeys::new(KEY_A, []).unwrap().current_id()
    );
    // And the variables naming files.
    let other = case.secret_file("token2", "token-from-env-file-0123\n", 0o600);
    let case = Case {
        env: HashMap::new(),
        ..case
    }
    .env("PATCHLINE_ADMIN_TOKEN_FILE", other.to_str().unwrap())
    .env("PATCHLINE_SECRET_KEY_FILE", keys.to_str().unwrap());
    let s = case.ok();
    assert_eq!(
        s.admin_token.source,
        Source::Env("PATCHLINE_ADMIN_TOKEN_FILE")
    );
    assert_eq!(
        s.admin_token.value.as_ref().map(Redacted::expose),
        Some("token-from-env-file-0123")
    );
    assert_eq!(
        s.secret_keys.source,
        Source::Env("PATCHLINE_SECRET_KEY_FILE")
    );
}

// ----- errors -----

#[test]
fn unknown_keys_and_sections_are_refused() {
    let case = Case::new().file("[limits]\nconns_max = 5\nconn_max = 5\n");
    let e = case.error(&["limits.conn_max", "unknown field `conn_max`", "line 3"]);
    assert!(e.starts_with(&case.path().display().to_string()), "{e}");
    Case::new()
        .file("[limit]\nconns_max = 5\n")
        .error(&["unknown field `limit`", "line 1"]);
    Case::new()
        .file("listen = \"127.0.0.1:1\"\n")
        .error(&["listen", "unknown field `listen`"]);
    Case::new()
        .file("[server]\nlisten = \"127.0.0.1:1\"\n[server.extra]\nx = 1\n")
        .error(&["unknown field `extra`"]);
}

#[test]
fn wrong_types_are_refused_naming_the_key() {
    for (text, key) in [
        ("[limits]\nconns_max = \"many\"\n", "limits.conns_max"),
        ("[limits]\nstreams_max = 1.5\n", "limits.streams_max"),
        ("[server]\nworkers = \"yes\"\n", "server.workers"),
        ("[server]\nscan_roots = \"/srv\"\n", "server.scan_roots"),
        ("[webhook]\nallow = \"10.0.0.0/8\"\n", "webhook.allow"),
        ("[webhook]\ntimeout = 10\n", "webhook.timeout"),
        (
            "[delivery]\nescalate_after = true\n",
            "delivery.escalate_after",
        ),
        ("server = 3\n", "server"),
    ] {
        let e = Case::new().file(text).error(&[key, "invalid type"]);
        assert!(e.contains("line "), "{e}");
    }
}

#[test]
fn toml_syntax_errors_are_refused() {
    Case::new()
        .file("[limits\nconns_max = 5\n")
        .error(&["patchline.toml", "line 1"]);
    Case::new()
        .file("[limits]\nconns_max = 5\nconns_max = 6\n")
        .error(&["patchline.toml", "conns_max"]);
}

#[test]
fn numbers_out_of_range_are_refused_not_clamped() {
    for (text, needles) in [
        (
            "[limits]\nconns_max = 0\n",
            [
                "limits.conns_max",
                "0 is out of range: allowed 1 to 1000000",
            ],
        ),
        (
            "[limits]\nstreams_max = -1\n",
            ["limits.streams_max", "allowed 1 to 1000000"],
        ),
        (
            "[limits]\nstreams_per_tenant = 0\n",
            ["limits.streams_per_tenant", "allowed 1 to 1000000"],
        ),
        (
            "[delivery]\nescalate_after = 0\n",
            ["delivery.escalate_after", "allowed 1 to 1000 reminders"],
        ),
        (
            "[delivery]\nreminder_interval = \"0s\"\n",
            ["delivery.reminder_interval", "allowed 1s to 365d"],
        ),
        (
            "[delivery]\nreminder_interval = \"366d\"\n",
            ["delivery.reminder_interval", "allowed 1s to 365d"],
        ),
        (
            "[webhook]\ntimeout = \"50ms\"\n",
            ["webhook.timeout", "allowed 100ms to 5m"],
        ),
        (
            "[webhook]\ntimeout = \"301s\"\n",
            ["webhook.timeout", "allowed 100ms to 5m"],
        ),
        (
            "[webhook]\nsecret_overlap = \"400d\"\n",
            ["webhook.secret_overlap", "allowed 0s to 365d"],
        ),
    ] {
        Case::new().file(text).error(&needles);
    }
    for (name, value, needles) in [
        (
            "PATCHLINE_CONNS_MAX",
            "0",
            ["PATCHLINE_CONNS_MAX", "allowed 1 to 1000000"],
        ),
        (
            "PATCHLINE_STREAMS_MAX",
            "-5",
            ["PATCHLINE_STREAMS_MAX", "allowed 1 to 1000000"],
        ),
        (
            "PATCHLINE_STREAMS_PER_TENANT",
            "0",
            ["PATCHLINE_STREAMS_PER_TENANT", "out of range"],
        ),
        (
            "PATCHLINE_ESCALATE_AFTER",
            "0",
            ["PATCHLINE_ESCALATE_AFTER", "allowed 1 to 1000"],
        ),
        (
            "PATCHLINE_REMINDER_INTERVAL_S",
            "0",
            [
                "PATCHLINE_REMINDER_INTERVAL_S",
                "allowed 1 to 31536000 seconds",
            ],
        ),
        (
            "PATCHLINE_SECRET_OVERLAP_S",
            "-1",
            [
                "PATCHLINE_SECRET_OVERLAP_S",
                "allowed 0 to 31536000 seconds",
            ],
        ),
        (
            "PATCHLINE_WEBHOOK_TIMEOUT_MS",
            "50",
            ["PATCHLINE_WEBHOOK_TIMEOUT_MS", "allowed 100 to 300000 ms"],
        ),
        (
            "PATCHLINE_WEBHOOK_TIMEOUT_MS",
            "999999",
            ["PATCHLINE_WEBHOOK_TIMEOUT_MS", "allowed 100 to 300000 ms"],
        ),
        (
            "PATCHLINE_CONNS_MAX",
            "lots",
            ["PATCHLINE_CONNS_MAX", "\"lots\" is not a whole number"],
        ),
        (
            "PATCHLINE_ESCALATE_AFTER",
            "99999999999999999999",
            ["PATCHLINE_ESCALATE_AFTER", "not a whole number"],
        ),
    ] {
        Case::new().env(name, value).error(&needles);
    }
}

#[test]
fn bad_durations_are_refused() {
    for bad in [
        "5 minutes",
        "10x",
        "",
        "s",
        "-5s",
        "1.5s",
        "99999999999999999d",
    ] {
        let text = format!("[webhook]\ntimeout = \"{bad}\"\n");
        Case::new()
            .file(&text)
            .error(&["webhook.timeout", "duration"]);
    }
    assert_eq!(parse_duration("90s"), Ok(90_000));
    assert_eq!(parse_duration(" 2h "), Ok(7_200_000));
    assert_eq!(human_ms(90_000), "90s");
    assert_eq!(human_ms(86_400_000), "1d");
    assert_eq!(human_ms(1500), "1500ms");
    assert_eq!(human_ms(0), "0s");
}

#[test]
fn bad_cidrs_schedules_addresses_and_log_settings_are_refused() {
    Case::new()
        .file("[webhook]\nallow = [\"10.0.0.0/33\"]\n")
        .error(&["webhook.allow", "10.0.0.0/33", "CIDR"]);
    Case::new()
        .file("[webhook]\nallow = [\"10.0.0.0/8,192.168.0.0/16\"]\n")
        .error(&["webhook.allow", "one CIDR"]);
    Case::new()
        .file("[webhook]\nallow = [\"\"]\n")
        .error(&["webhook.allow"]);
    Case::new()
        .env("PATCHLINE_WEBHOOK_ALLOW", "127.0.0.0/8,nonsense")
        .error(&["PATCHLINE_WEBHOOK_ALLOW", "nonsense"]);
    Case::new()
        .file("[delivery]\nretry_schedule = \"0,5q\"\n")
        .error(&["delivery.retry_schedule", "5q"]);
    Case::new()
        .env("PATCHLINE_RETRY_SCHEDULE", "soon")
        .error(&["PATCHLINE_RETRY_SCHEDULE", "soon"]);
    Case::new()
        .file("[server]\nlisten = \"localhost\"\n")
        .error(&["server.listen", "IP:PORT"]);
    Case::new()
        .env("PATCHLINE_LISTEN", "127.0.0.1")
        .error(&["PATCHLINE_LISTEN", "IP:PORT"]);
    Case::new()
        .file("[server]\ndata_dir = \"\"\n")
        .error(&["server.data_dir", "empty"]);
    Case::new()
        .file("[server]\nscan_roots = [\"\"]\n")
        .error(&["server.scan_roots", "empty"]);
    Case::new()
        .file("[log]\nlevel = \"info,[[[\"\n")
        .error(&["log.level", "not a log filter"]);
    Case::new()
        .env("PATCHLINE_LOG", "=?")
        .error(&["PATCHLINE_LOG", "not a log filter"]);
    Case::new()
        .file("[log]\nformat = \"yaml\"\n")
        .error(&["log.format", "json, text or auto"]);
    Case::new()
        .env("PATCHLINE_LOG_FORMAT", "xml")
        .error(&["PATCHLINE_LOG_FORMAT", "json, text or auto"]);
    Case::new()
        .file("[webhook]\nevent_source = \" \"\n")
        .error(&["webhook.event_source", "empty"]);
}

#[test]
fn the_operator_webhook_is_checked_against_the_allow_list() {
    Case::new()
        .file("[webhook]\noperator_url = \"http://127.0.0.1:9/ops\"\n")
        .error(&["webhook.operator_url", "127.0.0.1"]);
    Case::new()
        .env("PATCHLINE_OPERATOR_WEBHOOK", "ftp://ops.example.com/")
        .error(&["PATCHLINE_OPERATOR_WEBHOOK", "scheme"]);
    // Allowed by the file's list.
    Case::new()
        .file("[webhook]\nallow = [\"127.0.0.0/8\"]\noperator_url = \"http://127.0.0.1:9/ops\"\n")
        .ok();
}

#[test]
fn a_bad_value_is_refused_even_where_another_source_wins() {
    Case::new()
        .file("[limits]\nconns_max = 0\n")
        .env("PATCHLINE_CONNS_MAX", "10")
        .error(&["limits.conns_max", "out of range"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let case = Case::new()
        .file("[limits]\nconns_max = 0\n[webhook]\ntimeout = \"1ms\"\n")
        .env("PATCHLINE_ESCALATE_AFTER", "x");
    let errors = case.errors();
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let shown = ConfigError(errors).to_string();
    assert!(shown.contains("3 problems"), "{shown}");
    assert!(
        shown.contains("limits.conns_max")
            && shown.contains("webhook.timeout")
            && shown.contains("PATCHLINE_ESCALATE_AFTER"),
        "{shown}"
    );
}

#[test]
fn a_missing_configuration_file_is_refused() {
    let mut case = Case::new();
    case.flags.config = Some(case.dir.path().join("absent.toml"));
    case.error(&["--config", "absent.toml", "cannot read"]);
    let case = Case::new().env("PATCHLINE_CONFIG", "/nonexistent/patchline.toml");
    case.error(&["PATCHLINE_CONFIG", "/nonexistent/patchline.toml"]);
}

#[test]
fn secrets_are_never_read_inline() {
    for key in ["admin_token", "key", "key_previous"] {
        let text = format!("[secrets]\n{key} = \"{TOKEN}\"\n");
        let e = Case::new()
            .file(&text)
            .error(&[&format!("secrets.{key}"), "not read inline"]);
        assert!(!e.contains(TOKEN), "{e}");
    }
}

#[test]
fn admin_token_errors() {
    let case = Case::new();
    let empty = case.secret_file("empty", "\n\n", 0o600);
    Case::new()
        .env("PATCHLINE_ADMIN_TOKEN", TOKEN)
        .env("PATCHLINE_ADMIN_TOKEN_FILE", empty.to_str().unwrap())
        .errors()
        .iter()
        .find(|e| e.contains("both set"))
        .expect("both set is refused");
    Case::new()
        .env("PATCHLINE_ADMIN_TOKEN_FILE", empty.to_str().unwrap())
        .error(&["PATCHLINE_ADMIN_TOKEN_FILE", "holds no token"]);
    Case::new()
        .file("[secrets]\nadmin_token_file = \"/nonexistent/token\"\n")
        .error(&["secrets.admin_token_file", "cannot read /nonexistent/token"]);
    // Warnings: short, and readable by others.
    let short = case.secret_file("short", "short\n", 0o644);
    let text = format!("[secrets]\nadmin_token_file = \"{}\"\n", short.display());
    let s = Case::new().file(&text).ok();
    assert!(
        s.warnings.iter().any(|w| w.contains("shorter than 16")),
        "{:?}",
        s.warnings
    );
    assert!(
        s.warnings.iter().any(|w| w.contains("chmod 600")),
        "{:?}",
        s.warnings
    );
    assert!(s.warnings.iter().all(|w| !w.contains("short\n")));
}

#[test]
fn secret_key_errors() {
    let case = Case::new();
    let keys = case.secret_file("keys", KEY_A, 0o600);
    let bad = case.secret_file("bad", "not a key\n", 0o600);
    let empty = case.secret_file("empty", "# nothing\n", 0o600);
    Case::new()
        .env("PATCHLINE_SECRET_KEY", KEY_A)
        .env("PATCHLINE_SECRET_KEY_FILE", keys.to_str().unwrap())
        .error(&["not both"]);
    Case::new()
        .env("PATCHLINE_SECRET_KEY_PREVIOUS", KEY_B)
        .error(&["PATCHLINE_SECRET_KEY_PREVIOUS needs PATCHLINE_SECRET_KEY"]);
    let e = Case::new()
        .env("PATCHLINE_SECRET_KEY", "0123")
        .error(&["PATCHLINE_SECRET_KEY", "32 bytes"]);
    assert!(!e.contains("0123"), "{e}");
    Case::new()
        .env("PATCHLINE_SECRET_KEY_FILE", bad.to_str().unwrap())
        .error(&["PATCHLINE_SECRET_KEY_FILE", "32 bytes"]);
    let text = format!("[secrets]\nkey_file = \"{}\"\n", empty.display());
    Case::new()
        .file(&text)
        .error(&["secrets.key_file", "holds no key"]);
    Case::new()
        .file("[secrets]\nkey_file = \"/nonexistent/keys\"\n")
        .error(&["secrets.key_file", "cannot read"]);
}

#[test]
fn the_bus_joins_nodes_on_one_store_and_its_url_stays_secret() {
    let store = "[backend]\nstore = \"postgres://patchline@db/patchline\"\n";
    // A bus without a PostgreSQL store has nothing to share.
    let e = Case::new()
        .file("[backend]\nbus = \"nats://u:hunter2@b:4222\"\n")
        .error(&["backend.bus", "--store"]);
    assert!(!e.contains("hunter2"), "{e}");
    // With one: the URL is used, never shown.
    let s = Case::new()
        .file(&format!("{store}bus_prefix = \"prod-eu\"\n"))
        .env("PATCHLINE_BUS", "nats://u:hunter2@b:4222")
        .ok();
    assert_eq!(s.bus_prefix.value, "prod-eu");
    let config = s.server_config();
    let bus = config.bus.as_ref().expect("a bus");
    assert_eq!(bus.url, "nats://u:hunter2@b:4222");
    assert_eq!(bus.prefix, "prod-eu");
    for shown in [s.render(), format!("{s:?}"), format!("{config:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
    assert!(
        s.render().contains("bus = \"nats://b:4222\""),
        "{}",
        s.render()
    );
    // Credentials in the file are taken, with a warning.
    let s = Case::new()
        .file(&format!("{store}bus = \"nats://u:pw@b:4222\"\n"))
        .ok();
    assert!(
        s.warnings.iter().any(|w| w.contains("backend.bus")),
        "{:?}",
        s.warnings
    );
    // Bad values are refused with their source.
    Case::new()
        .file(store)
        .env("PATCHLINE_BUS", "http://b:4222")
        .error(&["PATCHLINE_BUS", "scheme"]);
    Case::new()
        .file(store)
        .env("PATCHLINE_BUS", "nats://b:4222")
        .env("PATCHLINE_BUS_PREFIX", "two words")
        .error(&["PATCHLINE_BUS_PREFIX"]);
    Case::new()
        .file(store)
        .env("PATCHLINE_BUS_PREFIX", "p")
        .error(&["PATCHLINE_BUS_PREFIX", "without a bus"]);
}

#[test]
fn a_postgres_store_is_validated_and_never_shown_with_its_password() {
    let url = "postgres://patchline:hunter2@db.internal:5433/patchline?sslmode=disable";
    // From the file, the environment or the flag; the flag wins.
    let s = Case::new()
        .file(&format!("[backend]\nstore = \"{url}\"\n"))
        .ok();
    assert_eq!(s.store.value.as_ref().unwrap().expose(), url);
    assert!(
        s.warnings.iter().any(|w| w.contains("PATCHLINE_STORE")),
        "{:?}",
        s.warnings
    );
    let rendered = s.render();
    assert!(!rendered.contains("hunter2"), "{rendered}");
    assert!(
        rendered.contains("store = \"postgres://patchline@db.internal:5433/patchline\""),
        "{rendered}"
    );
    assert!(parse_file(&rendered).is_ok(), "{rendered}");
    assert!(!format!("{s:?}").contains("hunter2"));
    let mut case = Case::new().env("PATCHLINE_STORE", "postgres://a@h/env");
    case.flags.store = Some("postgres://a@h/flag".into());
    let s = case.ok();
    assert_eq!(
        s.store.value.as_ref().unwrap().expose(),
        "postgres://a@h/flag"
    );
    match s.server_config().store {
        patchline_server::StoreBackend::Postgres { url } => assert_eq!(url, "postgres://a@h/flag"),
        other => panic!("{other:?}"),
    }
    // Not set: the data directory's SQLite.
    assert!(matches!(
        Case::new().ok().server_config().store,
        patchline_server::StoreBackend::Embedded
    ));
    // Wrong: named, never repeated.
    for bad in [
        "postgres://u:hun@ter2@h/db",
        "mysql://u:hunter2@h/db",
        "host=h user=u password=hunter2",
        "postgres://u:hunter2@h:notaport/db",
    ] {
        let e = Case::new()
            .env("PATCHLINE_STORE", bad)
            .error(&["PATCHLINE_STORE", "PostgreSQL URL"]);
        assert!(!e.contains("hunter2"), "{e}");
    }
}

// ----- output -----

#[test]
fn render_redacts_secrets_and_parses_back() {
    let case = Case::new();
    let keys = case.secret_file("keys", KEY_A, 0o600);
    let case = case
        .file(&format!(
            "[secrets]\nkey_file = \"{}\"\n[webhook]\nallow = [\"127.0.0.0/8\"]\noperator_url = \"http://127.0.0.1:9/ops?token=s3cr3t\"\n[limits]\nconns_max = 77\n",
            keys.display()
        ))
        .env("PATCHLINE_ADMIN_TOKEN", TOKEN)
        .env("PATCHLINE_RETRY_SCHEDULE", "0,90s,2h");
    let s = case.ok();
    let text = s.render();
    for secret in [TOKEN, KEY_A, "s3cr3t"] {
        assert!(!text.contains(secret), "{secret} shown:\n{text}");
    }
    for secret in [TOKEN, KEY_A] {
        assert!(!format!("{s:?}").contains(secret), "{secret} in Debug");
    }
    assert!(text.contains("# admin_token: <redacted>"), "{text}");
    assert!(text.contains("PATCHLINE_ADMIN_TOKEN"), "{text}");
    assert!(text.contains("retry_schedule = \"0s,90s,2h\""), "{text}");
    assert!(text.contains("conns_max = 77"), "{text}");
    assert!(text.contains("limits.conns_max"), "{text}");
    // The output is itself a valid configuration file that gives the same
    // values (secrets aside, which it only mentions).
    let again = Case::new().file(&text.replace("?<redacted>", "")).ok();
    assert_eq!(again.conns_max.value, Some(77));
    assert_eq!(again.retry.value, s.retry.value);
    assert_eq!(again.listen.value, s.listen.value);
    assert_eq!(again.webhook_allow.value, s.webhook_allow.value);
    assert_eq!(again.log_format.value, s.log_format.value);
}

// ----- the shipped example -----

const EXAMPLE: &str = include_str!("../../../../deploy/patchline.toml");

/// The keys of a parsed file that are unset. Destructured field by field,
/// so that a key added to the file format fails to compile here until it
/// is added to the check (and so to the example).
fn unset_keys(f: &FileConfig) -> Vec<&'static str> {
    let FileConfig {
        server:
            ServerSection {
                listen,
                data_dir,
                workers,
                scan_roots,
            },
        limits:
            LimitsSection {
                conns_max,
                streams_max,
                streams_per_tenant,
            },
        delivery:
            DeliverySection {
                retry_schedule,
                reminder_interval,
                escalate_after,
            },
        webhook:
            WebhookSection {
                allow,
                timeout,
                secret_overlap,
                event_source,
                operator_url,
            },
        secrets:
            SecretsSection {
                admin_token_file,
                key_file,
                admin_token: _,
                key: _,
                key_previous: _,
            },
        log: LogSection { level, format },
        backend:
            BackendSection {
                store,
                bus,
                bus_prefix,
            },
    } = f;
    [
        ("server.listen", listen.is_some()),
        ("server.data_dir", data_dir.is_some()),
        ("server.workers", workers.is_some()),
        ("server.scan_roots", scan_roots.is_some()),
        ("limits.conns_max", conns_max.is_some()),
        ("limits.streams_max", streams_max.is_some()),
        ("limits.streams_per_tenant", streams_per_tenant.is_some()),
        ("delivery.retry_schedule", retry_schedule.is_some()),
        ("delivery.reminder_interval", reminder_interval.is_some()),
        ("delivery.escalate_after", escalate_after.is_some()),
        ("webhook.allow", allow.is_some()),
        ("webhook.timeout", timeout.is_some()),
        ("webhook.secret_overlap", secret_overlap.is_some()),
        ("webhook.event_source", event_source.is_some()),
        ("webhook.operator_url", operator_url.is_some()),
        ("secrets.admin_token_file", admin_token_file.is_some()),
        ("secrets.key_file", key_file.is_some()),
        ("log.level", level.is_some()),
        ("log.format", format.is_some()),
        ("backend.store", store.is_some()),
        ("backend.bus", bus.is_some()),
        ("backend.bus_prefix", bus_prefix.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| !set)
    .map(|(k, _)| k)
    .collect()
}

/// The example with every `# key = value` line uncommented.
fn uncommented(text: &str) -> String {
    text.lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(k, _)| {
                    k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                }) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_file_parses_as_shipped_and_with_every_key_set() {
    // As shipped: every key commented out, so the defaults.
    let file = parse_file(EXAMPLE).unwrap();
    assert_eq!(unset_keys(&file).len(), 22);
    let s = Case::new().file(EXAMPLE).ok();
    assert_eq!(s.listen.source, Source::Default);

    // Every key uncommented: every key is shown, and all of them validate.
    let case = Case::new();
    let etc = case.dir.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    case.secret_file("etc/admin-token", &format!("{TOKEN}\n"), 0o600);
    case.secret_file("etc/secret-keys", &format!("{KEY_A}\n"), 0o600);
    let full = uncommented(EXAMPLE).replace("/etc/patchline/", &format!("{}/", etc.display()));
    let parsed = parse_file(&full).unwrap();
    assert_eq!(
        unset_keys(&parsed),
        Vec::<&str>::new(),
        "keys missing from the example"
    );
    // The example's operator URL is public; its allow-list is private.
    let s = Case::new().file(&full).ok();
    assert!(s.bus.value.is_some() && s.store.value.is_some());
    assert!(
        matches!(&s.listen.source, Source::File(p, "server.listen") if p.ends_with("patchline.toml")),
        "{:?}",
        s.listen.source
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

/// Found from outside: `--config /dev/zero` read without end (4 GB in
/// 4 s). Only regular files up to 1 MiB are read.
#[test]
fn a_device_or_a_huge_file_is_refused_before_it_is_read() {
    let mut case = Case::new();
    case.flags.config = Some(PathBuf::from("/dev/zero"));
    case.error(&["--config", "/dev/zero", "not a regular file"]);
    let case = Case::new().file(&"#".repeat((1 << 20) + 1));
    case.error(&["patchline.toml", "at most 1048576"]);
}

/// Found by a new user: `PATCHLINE_LOG=inof` was accepted (a bare word is
/// a target to the filter's grammar) and silenced every log line.
#[test]
fn a_misspelt_log_level_is_refused() {
    Case::new()
        .env("PATCHLINE_LOG", "inof")
        .error(&["PATCHLINE_LOG", "\"inof\" is not a log level"]);
    Case::new()
        .file("[log]\nlevel = \"verbose\"\n")
        .error(&["level", "\"verbose\" is not a log level"]);
    for good in [
        "info",
        "WARN",
        "warn,patchline_server=debug",
        "off",
        "patchline::x",
    ] {
        Case::new().env("PATCHLINE_LOG", good).ok();
    }
}
