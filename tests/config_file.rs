//! `--config FILE`: every flag of `sessiond` and `sessiond serve` as a TOML key; flags win over the
//! environment, which wins over the file; `sessiond config` prints what is in effect with secrets
//! redacted; a key that names no flag stops the start; `serve` really runs with the file's values.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

fn sessiond(dir: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessiond"));
    command.current_dir(dir).stdin(Stdio::null()).env("RUST_LOG", "warn");
    // The default metrics port may be taken on the machine running the tests.
    command.env("SESSIOND_METRICS_LISTEN", "none");
    for var in ["SESSIOND_DATABASE", "SESSIOND_LISTEN", "SESSIOND_CONFIG", "SESSIOND_SECRETS_KEY_FILE"] {
        command.env_remove(var);
    }
    command
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// The value line `key = ...` of `sessiond config`'s output.
fn line<'a>(printed: &'a str, key: &str) -> &'a str {
    printed.lines().find(|l| l.starts_with(&format!("{key} = "))).unwrap_or_else(|| panic!("no `{key}` in {printed}"))
}

#[test]
fn flags_win_over_the_environment_which_wins_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sessiond.toml"),
        "database = \"postgres://svc:hunter2@db.internal/sessiond\"\n\
         listen = \"0.0.0.0:9000\"\n\
         cors_origin = [\"https://a.example\", \"https://b.example\"]\n\
         webauthn-origin = [\"https://login.example\"]\n\
         max-failed-attempts = 7\n\
         idle-timeout-secs = 30\n",
    )
    .unwrap();
    let out = sessiond(dir.path())
        .args(["--config", "sessiond.toml", "config", "--max-failed-attempts", "3"])
        .env("SESSIOND_LISTEN", "127.0.0.1:9100")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line(&printed, "max-failed-attempts"), "max-failed-attempts = \"3\"  # command line");
    assert_eq!(line(&printed, "listen"), "listen = \"127.0.0.1:9100\"  # environment");
    assert_eq!(line(&printed, "idle-timeout-secs"), "idle-timeout-secs = \"30\"  # configuration file");
    assert_eq!(
        line(&printed, "cors-origin"),
        "cors-origin = [\"https://a.example\", \"https://b.example\"]  # configuration file"
    );
    assert_eq!(
        line(&printed, "webauthn-origin"),
        "webauthn-origin = [\"https://login.example\"]  # configuration file"
    );
    assert_eq!(line(&printed, "max-in-flight"), "max-in-flight = \"1024\"  # default");
    // The database password never appears.
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(
        line(&printed, "database"),
        "database = \"postgres://svc:***@db.internal/sessiond\"  # configuration file"
    );

    // What it printed is a configuration file itself (less the redacted password).
    let reprinted = printed.replace("svc:***@", "svc@");
    std::fs::write(dir.path().join("again.toml"), &reprinted).unwrap();
    let again = sessiond(dir.path()).args(["--config", "again.toml", "config"]).output().unwrap();
    assert!(again.status.success(), "{}", text(&again));
    assert!(String::from_utf8_lossy(&again.stdout).contains("max-failed-attempts = \"3\"  # configuration file"));
}

#[test]
fn a_key_that_names_no_flag_or_bad_toml_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("typo.toml"), "max-failed-atempts = 3\n").unwrap();
    let out = sessiond(dir.path()).args(["--config", "typo.toml", "serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("unknown key `max-failed-atempts`"), "{}", text(&out));

    std::fs::write(dir.path().join("broken.toml"), "listen = \n").unwrap();
    let out = sessiond(dir.path()).args(["--config", "broken.toml", "serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("is not valid TOML"), "{}", text(&out));

    let out = sessiond(dir.path()).args(["--config", "missing.toml", "serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot read the configuration file missing.toml"), "{}", text(&out));

    // A value the flag refuses is refused as the flag would be.
    std::fs::write(dir.path().join("value.toml"), "max-failed-attempts = 0\n").unwrap();
    let out = sessiond(dir.path()).args(["--config", "value.toml", "serve"]).output().unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("--max-failed-attempts"), "{}", text(&out));
}

#[test]
fn serve_runs_with_the_files_values() {
    let dir = tempfile::tempdir().unwrap();
    let addr: SocketAddr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(
        dir.path().join("sessiond.toml"),
        format!("database = \"sqlite:from-file.db\"\nlisten = \"{addr}\"\n"),
    )
    .unwrap();
    let mut server = sessiond(dir.path()).args(["--config", "sessiond.toml", "serve"]).spawn().unwrap();
    let started = Instant::now();
    let answer = loop {
        if let Ok(mut stream) = TcpStream::connect(addr) {
            stream.write_all(b"GET /v2/sessions/x HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "serve never listened on {addr}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = server.kill();
    let _ = server.wait();
    // No token: refused, but by sessiond on the file's address, over the file's database.
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(dir.path().join("from-file.db").exists(), "the file's database was created");
}
