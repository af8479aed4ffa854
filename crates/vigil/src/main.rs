//! `vigil`: one binary for the server and the command line. This file only wires things up.

mod cli;
mod commands;
mod config;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

// mimalloc: ingest allocates and frees many small strings per span on several threads at once;
// glibc's allocator spent about an eighth of the server's CPU on that under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use crate::config::{env_vars, Config};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env(env_vars::VIGIL_LOG)
        .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn,h2=warn,tonic=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // Do not wait on blocking tasks forever at exit (a read is bounded anyway; this bounds the rest).
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config_path = cli.config.clone().or_else(|| {
        let default = PathBuf::from("vigil.toml");
        default.exists().then_some(default)
    });
    let mut config = Config::load(config_path.as_deref(), std::env::vars())?;
    if let Some(dir) = &cli.data_dir {
        config.storage.data_dir = dir.clone();
    }
    match cli.command {
        Command::Serve(args) => {
            commands::serve::apply_flags(&mut config, &args);
            commands::serve::run(config.resolve()?).await?;
        }
        Command::Demo(args) => {
            commands::serve::apply_flags(&mut config, &args.serve);
            commands::demo::run(config.resolve()?, &args).await?;
        }
        Command::Traces(args) => commands::query::traces(config.resolve()?, *args).await?,
        Command::Trace(args) => return commands::query::trace(config.resolve()?, args).await,
        Command::Import(args) => return commands::import::run(config.resolve()?, args).await,
        Command::Gc(args) => commands::admin::gc(config, args).await?,
        Command::Models(args) => commands::query::models(config.resolve()?, args).await?,
        Command::Projects(cmd) => commands::admin::projects(config.resolve()?, cmd).await?,
        Command::Keys(cmd) => commands::admin::keys(config.resolve()?, cmd).await?,
        Command::Users(cmd) => commands::admin::users(config.resolve()?, cmd).await?,
        Command::GatewayKeys(cmd) => commands::admin::gateway_keys(config.resolve()?, cmd).await?,
        Command::Audit(cmd) => return commands::governance::audit(config, cmd).await,
        Command::Compliance(cmd) => {
            commands::governance::compliance(config.resolve()?, cmd).await?
        }
        Command::Guard(cmd) => commands::governance::guard(config.resolve()?, cmd).await?,
        Command::Erase(args) => commands::governance::erase(config.resolve()?, args).await?,
        Command::Eval(cli::EvalCommand::Run(args)) => return commands::eval::run(args).await,
        Command::Config(_) => commands::admin::config_check(&config)?,
        Command::Bench(cli::BenchCommand::Ingest(args)) => commands::bench::ingest(args).await?,
        Command::Bench(cli::BenchCommand::Redact(args)) => commands::bench::redact(args)?,
        Command::Bench(cli::BenchCommand::Evaluate(args)) => commands::bench::evaluate(args)?,
        Command::Bench(cli::BenchCommand::Guard(args)) => commands::bench::guard(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}
