//! The command line, as data (clap derive). Each subcommand's behaviour lives in `commands/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::env;

#[derive(Debug, Parser)]
#[command(
    name = "hive",
    version,
    about = "A Matrix-native hive of LLM agents",
    propagate_version = true
)]
pub struct Cli {
    /// hive.toml to use (default: ./hive.toml if present, else built-in defaults).
    #[arg(long, global = true, env = env::CONFIG)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole hive in the foreground: homeserver, hive-c0re, agents. Ctrl-C stops it.
    Up(HiveDirs),
    /// Run hive-c0re (the appservice) and the agents, against an already running homeserver.
    C0re(HiveDirs),
    /// Prepare the data dir and write the appservice registration for an external homeserver;
    /// prints the registration file's path (a NixOS host runs it before Synapse starts).
    Registration(HiveDirs),
    /// Run one agent's harness (started by the runtime; rarely by hand).
    Agent(AgentArgs),
    /// Show what runs: homeserver, hive-c0re, agents and their queues.
    Status(HiveDirs),
    /// Validate hive.toml and every bots/*/agent.toml; print the resolved configuration.
    Check(HiveDirs),
    /// Measure the hive against its homeserver on a throwaway local Synapse.
    Bench(BenchArgs),
    /// Agents' versioned config.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List approval requests and their state.
    Approvals(ApprovalsArgs),
    /// Print the audit trail: every request, decision, refusal and apply.
    Audit(AuditArgs),
    /// Model usage per agent and day: turns, calls, tokens and cost (from hive.toml's [prices]).
    Usage(UsageArgs),
    /// Print the end of an agent's log (its harness's output), secrets redacted. Reads files only:
    /// the core need not run.
    Logs(LogsArgs),
    /// Serve the hive's tools to one agent's model as a stdio MCP server (for Claude Code and
    /// other MCP clients; each call goes to hive-c0re over the agent's tools socket).
    Mcp(McpArgs),
    /// Ask the operators to destroy, revive or purge an agent (its kept state; docs/approvals.md).
    Kept(KeptArgs),
    /// Print a new one-time login link to the running hive's web console (docs/console.md).
    Console(HiveDirs),
}

#[derive(Debug, Args)]
pub struct KeptArgs {
    /// destroy (stop it, keep its state), revive (bring a kept agent back) or purge (remove a
    /// kept agent's state, after a second confirmation in the request's thread).
    pub action: KeptAction,
    /// The agent.
    pub agent: String,
    /// One line saying why (shown in the request).
    #[arg(long, short = 'm')]
    pub summary: Option<String>,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KeptAction {
    Destroy,
    Revive,
    Purge,
}

#[derive(Debug, Args)]
pub struct McpArgs {
    /// The agent whose tools these are.
    #[arg(long)]
    pub name: String,
    /// The agent's tools socket (`<data>/agents/<name>/sock/tools.sock`).
    #[arg(long)]
    pub socket: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Commit a change to an agent's proposed config and ask the operators to approve it.
    Propose(ProposeArgs),
    /// Ask the operators to roll an agent back to an earlier deploy (its files again, as a new
    /// commit on the applied config).
    Rollback(RollbackArgs),
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    /// The agent.
    pub agent: String,
    /// The deploy to roll back to: N of the tag deploy/N (`hive approvals` shows them).
    pub deploy: u64,
    /// One line saying why (shown in the request after "rollback to deploy/N").
    #[arg(long, short = 'm')]
    pub summary: Option<String>,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The agent.
    pub agent: String,
    /// A new agent.toml. Without --file and --prompt, the agent's directory in bots/ is proposed.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// A new prompt.md.
    #[arg(long)]
    pub prompt: Option<PathBuf>,
    /// One line saying why (shown in the request).
    #[arg(long, short = 'm')]
    pub summary: Option<String>,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// Print the full diff of request ID instead of the list.
    #[arg(long, value_name = "ID")]
    pub diff: Option<i64>,
    /// How many requests to list (newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// How many entries to print (the newest, oldest first).
    #[arg(long, default_value_t = 200)]
    pub limit: usize,
    /// One JSON object per line (ts_us, actor, action, approval_id, agent, sha, outcome,
    /// detail), for scripts.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How many UTC days to show, today included.
    #[arg(long, default_value_t = 7)]
    pub days: u32,
    /// Only this agent.
    #[arg(long)]
    pub agent: Option<String>,
    /// List the newest N turns (one inbound message each) instead of days.
    #[arg(long, value_name = "N")]
    pub turns: Option<usize>,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The agent.
    pub agent: String,
    /// How many lines, from the end.
    #[arg(long, default_value_t = 100)]
    pub lines: usize,
    #[command(flatten)]
    pub dirs: HiveDirs,
}

#[derive(Debug, Clone, Args)]
pub struct HiveDirs {
    /// The hive's data directory (state, secrets, homeserver).
    #[arg(long, env = env::DATA_DIR, default_value = ".hive")]
    pub data_dir: PathBuf,
    /// Directory of bots (`<name>/agent.toml` + `prompt.md`).
    #[arg(long, env = env::BOTS_DIR, default_value = "bots")]
    pub bots: PathBuf,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The bot's directory (its name is the directory name unless --name is given).
    #[arg(long)]
    pub bot: PathBuf,
    /// The agent's name, when the directory is not named after it (a config generation).
    #[arg(long)]
    pub name: Option<String>,
    /// The agent's socket (inside its socket directory).
    #[arg(long)]
    pub socket: PathBuf,
    /// The agent's state directory.
    #[arg(long)]
    pub state: PathBuf,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Agents the messages are spread over.
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// Messages sent one at a time for the latency figures.
    #[arg(long, default_value_t = 200)]
    pub messages: usize,
    /// Messages sent in one burst for the throughput figures.
    #[arg(long, default_value_t = 400)]
    pub burst: usize,
    /// Keep the throwaway hive's directory here instead of a temp dir.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Approval rounds (operator ✅ → apply started) for the approvals figures.
    #[arg(long, default_value_t = 30)]
    pub approvals: usize,
    /// Round trips to one agent for the flood figures, idle and then as many while another
    /// agent floods (0: no flood phase).
    #[arg(long, default_value_t = 50)]
    pub flood_messages: usize,
    /// Kills of one agent's harness for the crash figures (harness killed → the manager has
    /// the `container_crash`), at most 4; 0: no crash phase. The phase restarts the hive on
    /// the default runtime, so that the core starts (and reports) the harnesses.
    #[arg(long, default_value_t = 3)]
    pub crashes: usize,
    /// Messages per setting for the console figures: the homeserver floor with the status
    /// message and presence off, then on (`[console]`), each turn held 400 ms (0: no console
    /// section).
    #[arg(long, default_value_t = 60)]
    pub console_messages: usize,
    /// Messages per setting for the signals figures: the round trip with the hive's read
    /// receipts, typing notices, presence and status message all off, each alone on, and all on,
    /// each turn held 400 ms (0: no signals section).
    #[arg(long, default_value_t = 40)]
    pub signal_messages: usize,
    /// Model calls per brain for the model section: direct to a local streaming server and
    /// through the hive (first token and total time), then the anthropic brain's prompt cache
    /// over a short conversation (0: no model section).
    #[arg(long, default_value_t = 20)]
    pub model_calls: usize,
    /// Skip the federation section (two more hives on their own Synapses, federating on
    /// loopback: the cross-hive hop next to the raw federation hop).
    #[arg(long)]
    pub no_federation: bool,
    /// Samples of each hop in the federation section.
    #[arg(long, default_value_t = 50)]
    pub federation_messages: usize,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Agents of the start-up section's hive (fresh from an empty data dir, warm, and after a
    /// kill -9 of hive-c0re), next to a 1-agent hive from fresh (0: no start-up section).
    #[arg(long, default_value_t = 100)]
    pub startup_agents: usize,
    /// Another build of `hive`, started as the core of one more fresh and warm start in the
    /// start-up section: a before/after in the same run (its log may lack the split).
    #[arg(long)]
    pub startup_before: Option<PathBuf>,
    /// Hive sizes of the scale section, comma-separated (`1,100,500`): one hive each, all
    /// running at once, the operator's round trip with a syncing operator sampled across them in
    /// turn, then idle CPU and memory (an empty list or `--scale-samples 0`: no scale section).
    #[arg(long, value_delimiter = ',', default_value = "1,100")]
    pub scale: Vec<usize>,
    /// Round trips per hive size in the scale section.
    #[arg(long, default_value_t = 50)]
    pub scale_samples: usize,
    /// Seconds of the scale section's idle window (CPU of the cores, Synapses and one idle
    /// harness per size); at least 30.
    #[arg(long, default_value_t = 30)]
    pub scale_idle_secs: u64,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hive_help() {
        // `[env: …]` would show the value of a variable set where the tests run.
        let mut cmd = Cli::command().mut_arg("config", |a| a.hide_env_values(true));
        let help = cmd.render_help().to_string();
        assert!(!help.contains('\u{1b}'), "no ANSI: {help:?}");
        insta::assert_snapshot!("hive_help", help);
    }
}
