//! Every configuration the worker refuses before any network call, and the words of its other
//! stops, as the operator reads them.

use super::credentials::unknown_cached_identity;
use super::*;

const FINGERPRINT: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// A configuration that passes every check, in `dir`.
fn good(dir: &std::path::Path) -> WorkerConfig {
    WorkerConfig {
        url: Some("https://muster.example:7443".into()),
        token: Some("edge-01.secret".into()),
        ca_fingerprint: Some(FINGERPRINT.into()),
        state_dir: dir.to_path_buf(),
        reconnect: true,
        ..Default::default()
    }
}

fn line(error: &WorkerError) -> String {
    format!("(exit {}) {error}", error.exit_code())
}

fn refusal(config: &WorkerConfig) -> String {
    match prepare(config) {
        Ok(_) => panic!("expected a refusal for {config:?}"),
        Err(error) => line(&error),
    }
}

/// Temp paths and process ids differ from run to run.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"/\S*muster-state-[A-Za-z0-9]+", "[STATE_DIR]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    settings
}

fn state_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("muster-state-")
        .tempdir()
        .unwrap()
}

#[test]
fn a_good_configuration_is_accepted() {
    let dir = state_dir();
    let prepared = prepare(&good(dir.path())).unwrap();
    assert!(matches!(prepared.credential, Credential::Token(_)));
}

#[test]
fn each_configuration_error_reads_as_one_line_with_a_hint() {
    let dir = state_dir();
    let with = |change: &dyn Fn(&mut WorkerConfig)| {
        let mut config = good(dir.path());
        change(&mut config);
        config
    };
    let mut lines = vec![];
    let mut case = |what: &str, config: WorkerConfig| {
        lines.push(format!("{what}: {}", refusal(&config)));
    };
    case("no url", with(&|c| c.url = None));
    case(
        "bad fingerprint",
        with(&|c| c.ca_fingerprint = Some("sha256:zz".into())),
    );
    case(
        "bad url",
        with(&|c| c.url = Some("muster.example:7443".into())),
    );
    case(
        "bad label",
        with(&|c| c.labels = vec!["no-equals-sign".into()]),
    );
    case("bad name", with(&|c| c.name = Some("Not A Name!".into())));
    case(
        "half a pre-created worker",
        with(&|c| c.worker_id = Some("w".into())),
    );
    case(
        "two credentials",
        with(&|c| c.enrollment_key = Some("k".into())),
    );
    case(
        "secret without a name",
        with(&|c| {
            c.token = None;
            c.enrollment_key = Some("k".into());
        }),
    );
    case(
        "name without a secret",
        with(&|c| {
            c.token = None;
            c.name = Some("edge-01".into());
        }),
    );
    case("no credential", with(&|c| c.token = None));
    settings().bind(|| insta::assert_snapshot!(lines.join("\n")));
}

#[test]
fn state_dir_problems_read_as_one_line_with_a_hint() {
    let dir = state_dir();
    let config = good(dir.path());
    let held = prepare(&config).unwrap();
    let in_use = refusal(&config);
    std::fs::write(held.state.identity_path(), "{not json").unwrap();
    drop(held);
    let corrupt = refusal(&config);
    let state = StateDir::open(dir.path()).unwrap();
    let lines = [
        format!("in use: {in_use}"),
        format!("corrupt identity: {corrupt}"),
        format!(
            "unknown cached identity: {}",
            line(&unknown_cached_identity(&state))
        ),
        format!(
            "no reconnect: {}",
            line(&channel_closed("the server closed the connection"))
        ),
    ];
    settings().bind(|| insta::assert_snapshot!(lines.join("\n")));
}
