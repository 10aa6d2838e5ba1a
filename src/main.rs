//! The `oplata` command; everything it does is in [`oplata::cli`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match oplata::cli::run(oplata::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One readable line (with causes); a backtrace helps nobody who misconfigured.
            eprintln!("oplata: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
