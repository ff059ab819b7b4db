//! `--config FILE` (or `SESSIOND_CONFIG`): every flag of `sessiond` and of `sessiond serve` as a key
//! of a TOML file, spelled as the flag (`listen = "0.0.0.0:8080"`, `cors-origin = ["https://a"]`;
//! `_` works for `-`). The command line wins over the environment, which wins over the file, which
//! wins over the defaults. `sessiond config` prints what is in effect, secrets redacted.

use std::{
    ffi::OsString,
    fmt::Write as _,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, parser::ValueSource};

use crate::{cli::Cli, store};

/// The subcommand whose flags the file may set besides the global ones.
const SERVE: &str = "serve";

/// Parses the command line with the configuration file's values filled in where neither a flag nor
/// the environment gave one. Exits with clap's message on a command-line error.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let (_, matches) = effective_matches(args)?;
    Ok(Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit()))
}

/// The command line's own matches, and the same with the file's values filled in.
fn effective_matches(args: Vec<OsString>) -> anyhow::Result<(ArgMatches, ArgMatches)> {
    let given = Cli::command().try_get_matches_from(&args).unwrap_or_else(|e| e.exit());
    let Some(path) = given.get_one::<PathBuf>("config").cloned() else { return Ok((given.clone(), given)) };
    let table = read(&path)?;
    let (global, serve) = from_file(&table, &path, &given)?;
    let mut filled = Vec::with_capacity(args.len() + global.len() + serve.len());
    let mut args = args.into_iter();
    filled.extend(args.next());
    filled.extend(global);
    filled.extend(args);
    filled.extend(serve);
    Ok((given, Cli::command().try_get_matches_from(filled).unwrap_or_else(|e| e.exit())))
}

fn read(path: &Path) -> anyhow::Result<toml::Table> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    text.parse::<toml::Table>().with_context(|| format!("the configuration file {} is not valid TOML", path.display()))
}

/// The flags the file adds: global ones (placed before the subcommand) and `serve`'s (placed
/// after it, only when serving). A key that names no flag is an error, so typos do not pass.
fn from_file(table: &toml::Table, path: &Path, matches: &ArgMatches) -> anyhow::Result<(Vec<OsString>, Vec<OsString>)> {
    let root = Cli::command();
    let serve = root.find_subcommand(SERVE).expect("sessiond has a serve command").clone();
    let serving = matches.subcommand_name() == Some(SERVE);
    let (mut global, mut serve_flags) = (Vec::new(), Vec::new());
    for (key, value) in table {
        let long = key.replace('_', "-");
        let (arg, in_serve) = match root.get_arguments().find(|a| a.get_long() == Some(long.as_str())) {
            Some(arg) => (arg, false),
            None => match serve.get_arguments().find(|a| a.get_long() == Some(long.as_str())) {
                Some(arg) => (arg, true),
                None => anyhow::bail!(
                    "unknown key `{key}` in the configuration file {}: keys are the flags of `sessiond` and `sessiond serve`",
                    path.display()
                ),
            },
        };
        if long == "config" {
            anyhow::bail!("the configuration file {} cannot name another one", path.display());
        }
        if in_serve && !serving {
            continue;
        }
        let id = arg.get_id().as_str();
        let given = if in_serve {
            matches.subcommand_matches(SERVE).and_then(|m| m.value_source(id))
        } else {
            matches.value_source(id)
        };
        if matches!(given, Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue;
        }
        let out = if in_serve { &mut serve_flags } else { &mut global };
        let values = match value {
            toml::Value::Array(items) => {
                items.iter().map(|v| scalar(key, v, path)).collect::<anyhow::Result<Vec<_>>>()?
            }
            other => vec![scalar(key, other, path)?],
        };
        let takes_value = arg.get_num_args().is_none_or(|n| n.takes_values());
        for value in values {
            if takes_value {
                out.push(format!("--{long}={value}").into());
            } else if value == "true" {
                out.push(format!("--{long}").into());
            }
        }
    }
    Ok((global, serve_flags))
}

fn scalar(key: &str, value: &toml::Value, path: &Path) -> anyhow::Result<String> {
    Ok(match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        _ => anyhow::bail!("the key `{key}` in {} must be a string, number, boolean or a list of them", path.display()),
    })
}

/// `sessiond config`: the configuration `serve` would run with, as TOML that `--config` reads
/// back, each value with where it came from; the database password redacted.
pub fn effective(args: Vec<OsString>) -> anyhow::Result<String> {
    // What `serve` would see: the same flags, `serve` in place of `config` (the first such word:
    // a flag's value never precedes the subcommand's name).
    let mut replaced = false;
    let args: Vec<OsString> = args
        .into_iter()
        .map(|a| {
            if !replaced && a == "config" {
                replaced = true;
                SERVE.into()
            } else {
                a
            }
        })
        .collect();
    let (given, matches) = effective_matches(args)?;
    let serve = matches.subcommand_matches(SERVE).expect("parsed as serve");
    let given_serve = given.subcommand_matches(SERVE).expect("parsed as serve");
    let mut out = String::from("# sessiond: the configuration in effect (secrets redacted)\n");
    let root = Cli::command();
    let serve_command = root.find_subcommand(SERVE).expect("sessiond has a serve command").clone();
    for (command, matches, given) in [(&root, &matches, &given), (&serve_command, serve, given_serve)] {
        for arg in command.get_arguments() {
            let (Some(long), id) = (arg.get_long(), arg.get_id().as_str()) else { continue };
            if long == "config" {
                continue;
            }
            let Some(raw) = matches.get_raw(id) else {
                let _ = writeln!(out, "# {long}: not set");
                continue;
            };
            let values: Vec<String> = raw
                .map(|v| {
                    let v = v.to_string_lossy();
                    if long == "database" { store::redact_url(&v) } else { v.into_owned() }
                })
                .collect();
            let source = match (given.value_source(id), matches.value_source(id)) {
                (Some(ValueSource::CommandLine), _) => "command line",
                (Some(ValueSource::EnvVariable), _) => "environment",
                (_, Some(ValueSource::CommandLine)) => "configuration file",
                _ => "default",
            };
            let shown = match (arg.get_action(), values.as_slice()) {
                (clap::ArgAction::Append, many) => {
                    toml::Value::Array(many.iter().cloned().map(toml::Value::String).collect()).to_string()
                }
                (_, [one]) => toml::Value::String(one.clone()).to_string(),
                (_, many) => toml::Value::Array(many.iter().cloned().map(toml::Value::String).collect()).to_string(),
            };
            let _ = writeln!(out, "{long} = {shown}  # {source}");
        }
    }
    Ok(out)
}
