use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hyperhive::cli::Cli::parse();
    hyperhive::logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hive: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(hyperhive::commands::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hive: {e:#}");
            ExitCode::FAILURE
        }
    }
}
