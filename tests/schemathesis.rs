//! schemathesis (PyPI) against a live server, driven by the server's own `/openapi.json`:
//! generated requests on every REST operation (and, through the links it infers, on the sessions
//! they create), bounded in examples; no answer may be a server error or break its schema or
//! its content type.
//!
//! The tool is the binary `SESSIOND_TEST_SCHEMATHESIS` names (`.ci/run` installs it and sets
//! it: then the test cannot skip), else `schemathesis` on the `PATH`; with neither it skips.

mod common;

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use tokio::process::Command as AsyncCommand;

use common::TestServer;
use sessiond::domain::Permission;

/// Generated cases per operation and phase: enough to reach every field, quick on 2 cores.
const MAX_EXAMPLES: &str = "20";
/// The whole run is given this long before the test fails instead of hanging.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// The schemathesis binary, `None` to skip; panics when the variable names a missing binary.
fn schemathesis() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SESSIOND_TEST_SCHEMATHESIS") {
        let path = PathBuf::from(path);
        let runs = Command::new(&path).arg("--version").output().is_ok_and(|o| o.status.success());
        assert!(runs, "SESSIOND_TEST_SCHEMATHESIS={} does not run `--version`", path.display());
        return Some(path);
    }
    let on_path = Command::new("schemathesis").arg("--version").output().is_ok_and(|o| o.status.success());
    if !on_path {
        eprintln!(
            "skipping: schemathesis is not installed and SESSIOND_TEST_SCHEMATHESIS is unset \
             (.ci/run installs it: python3 -m venv /opt/schemathesis && /opt/schemathesis/bin/pip install schemathesis)"
        );
    }
    on_path.then(|| PathBuf::from("schemathesis"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_requests_get_no_server_error_and_answers_match_the_document() {
    let Some(tool) = schemathesis() else { return };
    let mut server = TestServer::sqlite().await;
    let actor =
        server.actor("alice", &[Permission::SessionRead, Permission::SessionWrite, Permission::SessionDelete]).await;
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schemathesis.toml");
    let work_dir = tempfile::tempdir().unwrap();
    let mut command = AsyncCommand::new(&tool);
    command
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(server.url("/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {}", actor.token)])
        .args(["--checks", "not_a_server_error,response_schema_conformance,content_type_conformance"])
        .args(["--max-examples", MAX_EXAMPLES])
        .args(["--generation-database", "none", "--no-color"])
        // Its report and caches stay out of the repository.
        .current_dir(work_dir.path())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(RUN_TIMEOUT, command.output())
        .await
        .expect("schemathesis finishes within the timeout")
        .expect("schemathesis starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The token never belongs in a failure message.
    let shown = |text: &str| text.replace(&actor.token, "<token>");
    assert!(
        output.status.success(),
        "schemathesis found problems ({}):\n{}\n{}",
        output.status,
        shown(&stdout),
        shown(&stderr)
    );
    // It ran against the document: every operation was selected and tested.
    let count = |label: &str| {
        let line = stdout.lines().find_map(|l| l.trim().strip_prefix(label)).unwrap_or_default();
        line.trim().split('/').map(|n| n.trim().parse::<usize>().unwrap_or(0)).collect::<Vec<_>>()
    };
    let (selected, tested) = (count("Selected:"), count("Tested:"));
    assert!(selected.len() == 2 && selected[0] == selected[1] && selected[0] >= 5, "{}", shown(&stdout));
    assert_eq!(tested, vec![selected[0]], "{}", shown(&stdout));
    server.stop().await;
}
