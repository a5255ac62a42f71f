//! `docs/configuration.md` against the code: every settings file key, environment variable
//! and flag of `titan-gate run` is documented, nothing documented is unknown to the code,
//! and the documented defaults are the defaults the code applies.
//!
//! The settings file's keys come from serde's own list of expected fields, which it gives
//! when a file has an unknown key, so a key added to the code without a row here fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use titan_gate::config::{Environment, FlagSettings, Settings};

/// One row of a five-column settings table.
#[derive(Debug)]
struct Row {
    key: Option<String>,
    env: Option<String>,
    flag: Option<String>,
    default: String,
    meaning: String,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn doc() -> String {
    std::fs::read_to_string(repo_root().join("docs/configuration.md")).expect("docs/configuration.md is readable")
}

/// Returns the text between the first pair of backticks, or `None` for a dash.
fn code_span(cell: &str) -> Option<String> {
    let cell = cell.trim();
    if cell == "-" {
        return None;
    }
    let inner = cell.strip_prefix('`').and_then(|rest| rest.split_once('`')).map(|(inner, _)| inner);
    Some(inner.unwrap_or(cell).to_owned())
}

/// Splits a Markdown table row into its trimmed cells.
fn cells(line: &str) -> Vec<&str> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split(" | ").map(str::trim).collect()
}

/// Returns the cells of the body rows of every table whose header row is `header`.
fn table_rows<'d>(doc: &'d str, header: &[&str]) -> Vec<Vec<&'d str>> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        if !line.starts_with('|') {
            in_table = false;
            continue;
        }
        let cells = cells(line);
        if cells == header {
            in_table = true;
        } else if in_table && !line.starts_with("|--") {
            assert_eq!(cells.len(), header.len(), "a row of a {header:?} table has {} cells: {line}", header.len());
            rows.push(cells);
        }
    }
    rows
}

/// Reads the rows of every table headed `Key | Environment | Flag | Default | Meaning`.
fn settings_rows(doc: &str) -> Vec<Row> {
    table_rows(doc, &["Key", "Environment", "Flag", "Default", "Meaning"])
        .into_iter()
        .map(|cells| Row {
            key: code_span(cells[0]),
            env: code_span(cells[1]),
            flag: code_span(cells[2]),
            default: code_span(cells[3]).expect("every row has a default"),
            meaning: cells[4].to_owned(),
        })
        .collect()
}

/// Reads the keys of the keyring table, headed `Key | Meaning`.
fn keyring_keys(doc: &str) -> BTreeSet<String> {
    table_rows(doc, &["Key", "Meaning"])
        .into_iter()
        .map(|cells| code_span(cells[0]).expect("every keyring row names a key"))
        .collect()
}

/// Returns the names serde lists as expected after "unknown field" in `error`.
fn expected_fields(error: &str) -> BTreeSet<String> {
    let (_, expected) =
        error.split_once("expected").unwrap_or_else(|| panic!("no list of expected fields in: {error}"));
    let expected = expected.lines().next().unwrap_or_default();
    expected.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// Loads a settings file with `text` and returns its error message.
fn load_error(text: &str) -> String {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("gate.toml");
    std::fs::write(&path, text).expect("write the settings file");
    match Settings::load(Some(&path), &Environment::new(), &FlagSettings::default()) {
        Ok(_) => panic!("a settings file with an unknown key loaded:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// Returns every key of the settings file as the code defines it, with table keys as `table.key`.
fn code_file_keys() -> BTreeSet<String> {
    const TABLES: [&str; 3] = ["heartbeat", "rate_limit", "security_breaker"];
    let mut keys: BTreeSet<String> = expected_fields(&load_error("zz_unknown_key = 1\n"))
        .into_iter()
        .filter(|key| !TABLES.contains(&key.as_str()))
        .collect();
    for table in TABLES {
        let fields = expected_fields(&load_error(&format!("[{table}]\nzz_unknown_key = 1\n")));
        assert!(!fields.is_empty(), "table {table} lists no fields");
        keys.extend(fields.into_iter().map(|field| format!("{table}.{field}")));
    }
    keys
}

#[test]
fn every_file_key_is_documented() {
    let documented: BTreeSet<String> = settings_rows(&doc()).into_iter().filter_map(|row| row.key).collect();
    let code = code_file_keys();
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&code).collect();
    assert!(undocumented.is_empty(), "settings file keys missing from docs/configuration.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/configuration.md lists keys the code does not know: {unknown:?}");
}

#[test]
fn on_halt_action_fields_are_documented() {
    let fields = expected_fields(&load_error("[[on_halt_action]]\nsubject = \"a.b\"\nzz_unknown_key = 1\n"));
    let rows = settings_rows(&doc());
    let row = rows.iter().find(|row| row.key.as_deref() == Some("on_halt_action")).expect("on_halt_action row");
    for field in fields {
        assert!(row.meaning.contains(&format!("`{field}`")), "the on_halt_action row does not name `{field}`");
    }
}

/// Collects every environment variable name that the gate declares as an `ENV_*` constant.
fn code_env_vars() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut pending = vec![repo_root().join("crates/titan-gate/src")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "rs") {
                let source = std::fs::read_to_string(&path).expect("source file is readable");
                names.extend(env_constants(&source));
            }
        }
    }
    for name in titan_gate::config::ENV_V1_SECRETS {
        names.insert(name.to_owned());
        names.insert(format!("{name}_FILE"));
    }
    names
}

/// Returns the values of lines like `pub const ENV_X: &str = "X";`.
fn env_constants(source: &str) -> Vec<String> {
    source
        .lines()
        .filter_map(|line| {
            let rest = line.trim().strip_prefix("pub const ENV_").or_else(|| line.trim().strip_prefix("const ENV_"))?;
            let (_, value) = rest.split_once(": &str = \"")?;
            value.strip_suffix("\";").map(str::to_owned)
        })
        .collect()
}

#[test]
fn env_constants_are_found() {
    let names = env_constants("pub const ENV_NATS_URL: &str = \"NATS_URL\";\nconst ENV_B: &str = \"B\";\nlet x = 1;");
    assert_eq!(names, ["NATS_URL", "B"]);
}

#[test]
fn every_env_var_is_documented() {
    let documented: BTreeSet<String> = settings_rows(&doc()).into_iter().filter_map(|row| row.env).collect();
    let code = code_env_vars();
    assert!(code.contains("TITAN_GATE_CLOCK_WINDOW_MS"), "the source scan found too little: {code:?}");
    let undocumented: Vec<_> = code.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&code).collect();
    assert!(undocumented.is_empty(), "environment variables missing from docs/configuration.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/configuration.md lists variables the code does not read: {unknown:?}");
}

#[test]
fn every_run_flag_is_documented() {
    let output = Command::new(env!("CARGO_BIN_EXE_titan-gate")).args(["run", "--help"]).output().expect("run --help");
    assert!(output.status.success(), "titan-gate run --help failed");
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    let flags: BTreeSet<String> = help
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| word.trim_end_matches([',', '.']).to_owned())
        .filter(|flag| flag != "--help" && flag != "--config")
        .collect();
    assert!(flags.contains("--nats-url"), "no flags found in:\n{help}");
    let documented: BTreeSet<String> = settings_rows(&doc()).into_iter().filter_map(|row| row.flag).collect();
    let undocumented: Vec<_> = flags.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&flags).collect();
    assert!(undocumented.is_empty(), "flags of `titan-gate run` missing from docs/configuration.md: {undocumented:?}");
    assert!(unknown.is_empty(), "docs/configuration.md lists flags `titan-gate run` lacks: {unknown:?}");
    assert!(doc().contains("--config FILE"), "docs/configuration.md does not explain --config");
}

/// Writes the Default column as TOML: a number, boolean, array, table or quoted string
/// stays as it is, and other text becomes a string.
fn toml_value(default: &str) -> String {
    let literal =
        default.parse::<f64>().is_ok() || ["true", "false"].contains(&default) || default.starts_with(['[', '{', '"']);
    if literal { default.to_owned() } else { format!("{default:?}") }
}

/// Builds a settings file that sets every key with a documented default to it.
fn defaults_file(rows: &[Row]) -> String {
    let mut top = String::new();
    let mut tables: Vec<(String, String)> = Vec::new();
    for row in rows {
        let Some(key) = &row.key else { continue };
        if row.default == "unset" || row.default == "host name" {
            continue;
        }
        let line = |name: &str| format!("{name} = {}\n", toml_value(&row.default));
        match key.split_once('.') {
            None => top.push_str(&line(key)),
            Some((table, name)) => match tables.iter_mut().find(|(known, _)| known == table) {
                Some((_, body)) => body.push_str(&line(name)),
                None => tables.push((table.to_owned(), line(name))),
            },
        }
    }
    for (table, body) in tables {
        top.push_str(&["\n[", &table, "]\n", &body].concat());
    }
    top
}

#[test]
fn documented_defaults_are_the_defaults() {
    let rows = settings_rows(&doc());
    let text = defaults_file(&rows);
    assert!(text.contains("[rate_limit]"), "the defaults file is missing tables:\n{text}");
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("defaults.toml");
    std::fs::write(&path, &text).expect("write the settings file");

    let env = Environment::new();
    let flags = FlagSettings::default();
    let from_doc = Settings::load(Some(&path), &env, &flags)
        .unwrap_or_else(|error| panic!("the documented defaults do not load: {error}\n{text}"));
    let built_in = Settings::load(None, &env, &flags).expect("the built-in defaults load");
    assert_eq!(
        format!("{from_doc:#?}"),
        format!("{built_in:#?}"),
        "documented defaults differ from the code's:\n{text}"
    );
}

#[test]
fn every_keyring_key_is_documented() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("keyring.toml");
    std::fs::write(&path, "[[key]]\nid = \"a\"\nsecret = \"s\"\nzz_unknown_key = 1\n").expect("write the keyring");
    let error = titan_gate::keys::load_keyring(Some(&path), &Environment::new())
        .expect_err("a keyring with an unknown key must not load")
        .to_string();
    let code = expected_fields(&error);
    assert!(code.contains("secret_file"), "no keyring fields found in: {error}");
    assert_eq!(keyring_keys(&doc()), code, "docs/configuration.md keyring table and the code differ");
}
