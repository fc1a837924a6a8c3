//! `nightshift.toml` without a network: the shipped example parses (both proposer
//! kinds), and every error names the file, the line and the key.

use std::path::{Path, PathBuf};

use super::*;

fn parse(text: &str) -> Result<Settings, SpecError> {
    Settings::parse(text, Path::new("nightshift.toml"))
}

fn err(text: &str) -> SpecError {
    match parse(text) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(e) => {
            assert_eq!(e.path, PathBuf::from("nightshift.toml"), "{e}");
            e
        }
    }
}

/// The error's line and key, and a word its message must hold.
fn assert_err(text: &str, line: usize, key: &str, word: &str) {
    let e = err(text);
    assert_eq!(e.line, Some(line), "{e}");
    assert_eq!(e.key.as_deref(), Some(key), "{e}");
    assert!(e.message.contains(word), "`{word}` not in: {e}");
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("nightshift.toml:{line}: `{key}`")),
        "{shown}"
    );
}

const OPENAI: &str = r#"[proposer]
kind = "openai"
base_url = "http://127.0.0.1:8000/v1/"
model = "local"
price_input_per_mtok = 0
price_output_per_mtok = 0
"#;

#[test]
fn the_shipped_example_parses_as_an_openai_proposer_with_two_webhooks() {
    let s = parse(EXAMPLE).unwrap_or_else(|e| panic!("{e}"));
    let Some(ProposerSettings::OpenAi(o)) = &s.proposer else {
        panic!("{s:?}");
    };
    assert_eq!(o.base_url, "https://api.openai.com/v1");
    assert_eq!(o.api_key_env.as_deref(), Some("OPENAI_API_KEY"));
    assert_eq!(o.prices.input_per_mtok, 2.0);
    assert_eq!(o.prices.output_per_mtok, 8.0);
    assert_eq!((o.max_tokens, o.retries), (Some(16000), 3));
    assert_eq!(o.timeout, Duration::from_secs(180));
    assert_eq!((o.temperature, o.top_p), (None, None));
    let formats: Vec<WebhookFormat> = s.notify.webhooks.iter().map(|w| w.format).collect();
    assert_eq!(formats, [WebhookFormat::Slack, WebhookFormat::Json]);
}

#[test]
fn the_examples_commented_command_proposer_parses_too() {
    // The lines between the markers, uncommented, in place of the openai table.
    let (_, rest) = EXAMPLE.split_once("# --- a command proposer").unwrap();
    let (block, _) = rest.split_once("# --- end ---").unwrap();
    let table: String = block
        .lines()
        .skip(1)
        .filter(|l| !l.starts_with("# #"))
        .map(|l| l.strip_prefix("# ").unwrap_or(l))
        .map(|l| format!("{l}\n"))
        .collect();
    let s = parse(&table).unwrap_or_else(|e| panic!("{e}\n{table}"));
    let Some(ProposerSettings::Command(c)) = s.proposer else {
        panic!("{table}");
    };
    assert_eq!(c.argv[0], "python3");
    assert_eq!(c.timeout, Duration::from_secs(900));
    assert_eq!(c.price_per_call, 0.05);
}

#[test]
fn defaults_fill_what_the_file_leaves_out() {
    let s = parse(OPENAI).unwrap();
    let Some(ProposerSettings::OpenAi(o)) = s.proposer else {
        panic!()
    };
    assert_eq!(o.base_url, "http://127.0.0.1:8000/v1", "trailing / trimmed");
    assert_eq!(o.api_key_env, None);
    assert_eq!(
        (o.timeout, o.retries),
        (DEFAULT_OPENAI_TIMEOUT, DEFAULT_RETRIES)
    );
    let s = parse("[proposer]\nkind = \"command\"\nargv = [\"agent\"]\n").unwrap();
    let Some(ProposerSettings::Command(c)) = s.proposer else {
        panic!()
    };
    assert_eq!(
        (c.timeout, c.price_per_call),
        (DEFAULT_COMMAND_TIMEOUT, 0.0)
    );
    assert_eq!(parse("").unwrap(), Settings::default());
}

#[test]
fn an_absent_file_is_the_defaults_and_a_present_one_is_read() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(
        Settings::load_optional(d.path()).unwrap(),
        Settings::default()
    );
    std::fs::write(d.path().join(FILE_NAME), "[proposer]\nkind = 1\n").unwrap();
    let e = Settings::load_optional(d.path()).unwrap_err();
    assert_eq!(e.path, d.path().join(FILE_NAME));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("proposer.kind")),
        "{e}"
    );
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    assert_err(
        &format!("{OPENAI}temprature = 0.1\n"),
        7,
        "proposer.temprature",
        "unknown field",
    );
    assert_err("[notfy]\nwebhooks = []\n", 1, "notfy", "unknown field");
    assert_err(
        "[notify]\nwebhooks = [{ url = \"http://h/x\", fromat = \"json\" }]\n",
        2,
        "notify.webhooks",
        "fromat",
    );
}

#[test]
fn a_wrong_type_is_named_with_its_line() {
    assert_err(
        &format!("{OPENAI}retries = 1.5\n"),
        7,
        "proposer.retries",
        "expected i64",
    );
    assert_err(
        &format!("{OPENAI}timeout_s = \"long\"\n"),
        7,
        "proposer.timeout_s",
        "string",
    );
    assert_err(
        "[proposer]\nkind = \"command\"\nargv = \"agent --x\"\n",
        3,
        "proposer.argv",
        "sequence",
    );
}

#[test]
fn a_missing_price_is_an_error_naming_the_price() {
    let text = OPENAI.replace("price_output_per_mtok = 0\n", "");
    assert_err(&text, 1, "proposer.price_output_per_mtok", "required");
    let text = OPENAI.replace("price_input_per_mtok = 0\n", "");
    assert_err(&text, 1, "proposer.price_input_per_mtok", "required");
    let text = OPENAI.replace("price_input_per_mtok = 0", "price_input_per_mtok = -1");
    assert_err(&text, 5, "proposer.price_input_per_mtok", "0 or more");
}

#[test]
fn an_unknown_or_missing_kind_is_an_error() {
    assert_err(
        "[proposer]\nkind = \"claude\"\n",
        2,
        "proposer.kind",
        "not a proposer kind",
    );
    assert_err(
        "[proposer]\nmodel = \"m\"\n",
        1,
        "proposer.kind",
        "required",
    );
}

#[test]
fn a_key_of_the_other_kind_is_named() {
    assert_err(
        &format!("{OPENAI}argv = [\"x\"]\n"),
        7,
        "proposer.argv",
        "not a setting of a `openai`",
    );
    assert_err(
        "[proposer]\nkind = \"command\"\nargv = [\"a\"]\nmodel = \"m\"\n",
        4,
        "proposer.model",
        "not a setting of a `command`",
    );
}

#[test]
fn values_out_of_range_are_refused() {
    let cases = [
        ("temperature = 3", "proposer.temperature", "at most 2"),
        ("top_p = 0", "proposer.top_p", "above 0"),
        ("max_tokens = 0", "proposer.max_tokens", "from 1"),
        ("retries = 11", "proposer.retries", "to 10"),
        ("timeout_s = 0", "proposer.timeout_s", "above 0"),
        ("timeout_s = nan", "proposer.timeout_s", "NaN"),
    ];
    for (line, key, word) in cases {
        assert_err(&format!("{OPENAI}{line}\n"), 7, key, word);
    }
    for (url, word) in [
        ("ftp://h/v1", "http"),
        ("not a url", "not a URL"),
        ("http://h/v1?x=1", "query"),
    ] {
        let text = OPENAI.replace("http://127.0.0.1:8000/v1/", url);
        assert_err(&text, 3, "proposer.base_url", word);
    }
    assert_err(
        "[proposer]\nkind = \"command\"\nargv = []\n",
        3,
        "proposer.argv",
        "empty",
    );
    assert_err(
        "[proposer]\nkind = \"command\"\nargv = [\"a\"]\nprice_per_call = -0.5\n",
        4,
        "proposer.price_per_call",
        "0 or more",
    );
    assert_err(
        "[notify]\nwebhooks = [{ url = \"http://h/x\", format = \"teams\" }]\n",
        2,
        "notify.webhooks[0].format",
        "not a webhook format",
    );
    assert_err(
        "[notify]\nwebhooks = [{ format = \"json\" }]\n",
        2,
        "notify.webhooks[0].url",
        "required",
    );
}

#[test]
fn a_key_pasted_as_api_key_env_is_refused_without_being_repeated() {
    let secret = "sk-proj-Zq8yT3BlbkFJ-do-not-echo";
    let text = format!("{OPENAI}api_key_env = \"{secret}\"\n");
    let e = err(&text);
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(7), Some("proposer.api_key_env")),
        "{e}"
    );
    assert!(e.message.contains("NAME"), "{e}");
    assert!(!format!("{e} {e:?}").contains(secret), "{e:?}");
}

#[test]
fn a_webhook_url_that_is_refused_is_not_repeated() {
    let e = err("[notify]\nwebhooks = [{ url = \"gopher://secret-token@h/x\" }]\n");
    assert_eq!(e.key.as_deref(), Some("notify.webhooks[0].url"), "{e}");
    assert!(!e.to_string().contains("secret-token"), "{e}");
}

#[test]
fn the_worker_launcher_is_read_and_checked() {
    assert!(parse("").unwrap().launcher.is_empty());
    let s = parse("[worker]\nlauncher = [\"srun\", \"--gres=gpu:1\", \"--ntasks=1\"]\n").unwrap();
    assert_eq!(s.launcher, ["srun", "--gres=gpu:1", "--ntasks=1"]);
    assert!(parse("[worker]\nlauncher = []\n")
        .unwrap()
        .launcher
        .is_empty());
    assert_err(
        "[worker]\nlauncher = [\"srun\", \"\"]\n",
        2,
        "worker.launcher",
        "word 2",
    );
    assert_err(
        "[worker]\nlauncher = \"srun\"\n",
        2,
        "worker.launcher",
        "sequence",
    );
    let many = vec!["\"x\""; 65].join(", ");
    assert_err(
        &format!("[worker]\nlauncher = [{many}]\n"),
        2,
        "worker.launcher",
        "65 words",
    );
    let e = err("[worker]\nlaunch = [\"srun\"]\n");
    assert_eq!(e.line, Some(2), "{e}");
    assert!(e.to_string().contains("launch"), "{e}");
}
