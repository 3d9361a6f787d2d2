//! `hive usage`: what the agents' models used and cost, per agent and UTC day, from the
//! core's record of every model call (`model_calls`).

use std::process::ExitCode;

use crate::cli::UsageArgs;
use crate::config::Tokens;
use crate::store::{DayUsage, TurnStat, Usage};

pub fn run(args: UsageArgs) -> anyhow::Result<ExitCode> {
    if args.days == 0 {
        anyhow::bail!("--days must be at least 1");
    }
    let store = super::approvals::store(&args.dirs.data_dir)?;
    if let Some(n) = args.turns {
        let turns = store.turn_stats(args.agent.as_deref(), n)?;
        if turns.is_empty() {
            println!("no turns yet");
            return Ok(ExitCode::SUCCESS);
        }
        print!("{}", render_turns(&turns));
        return Ok(ExitCode::SUCCESS);
    }
    let now = crate::store::now_us();
    let today = now - now.rem_euclid(86_400_000_000);
    let since = today - i64::from(args.days - 1) * 86_400_000_000;
    let rows: Vec<DayUsage> = store
        .usage_by_day(since)?
        .into_iter()
        .filter(|r| args.agent.as_deref().is_none_or(|a| a == r.agent))
        .collect();
    if rows.is_empty() {
        println!("no model calls in the last {} day(s)", args.days);
        return Ok(ExitCode::SUCCESS);
    }
    print!("{}", render(&rows));
    Ok(ExitCode::SUCCESS)
}

/// The table, with a total line when there is more than one row.
pub fn render(rows: &[DayUsage]) -> String {
    let mut out = format!(
        "{:<10}  {:<16} {:>6} {:>6} {:>10} {:>10} {:>11} {:>11} {:>12}  {}\n",
        "day",
        "agent",
        "turns",
        "calls",
        "input",
        "output",
        "cache read",
        "cache write",
        "tokens",
        "cost"
    );
    let line = |day: &str, agent: &str, turns: u64, t: &Tokens, u: &Usage| {
        format!(
            "{day:<10}  {agent:<16} {turns:>6} {:>6} {:>10} {:>10} {:>11} {:>11} {:>12}  {}\n",
            u.calls,
            t.input,
            t.output,
            t.cache_read,
            t.cache_write,
            u.tokens,
            cost(u)
        )
    };
    let (mut turns, mut t, mut u) = (0, Tokens::default(), Usage::default());
    for r in rows {
        out.push_str(&line(&r.day, &r.agent, r.turns, &r.tokens, &r.usage));
        turns += r.turns;
        t.input += r.tokens.input;
        t.output += r.tokens.output;
        t.cache_read += r.tokens.cache_read;
        t.cache_write += r.tokens.cache_write;
        u.calls += r.usage.calls;
        u.tokens += r.usage.tokens;
        u.cost_usd += r.usage.cost_usd;
        u.unpriced_calls += r.usage.unpriced_calls;
    }
    if rows.len() > 1 {
        out.push_str(&line("total", "", turns, &t, &u));
    }
    out
}

/// The newest turns, one line per attempt: when it started, how long it took, how it ended,
/// and the model calls it made.
pub fn render_turns(turns: &[TurnStat]) -> String {
    let mut out = format!(
        "{:<20}  {:<16} {:>8} {:>7} {:>10}  {:<11} {:>6} {:>12}  {:<28} cost\n",
        "started", "agent", "message", "attempt", "duration", "outcome", "calls", "tokens", "model"
    );
    for t in turns {
        out.push_str(&format!(
            "{:<20}  {:<16} {:>8} {:>7} {:>10}  {:<11} {:>6} {:>12}  {:<28} {}\n",
            crate::store::utc(t.started_us),
            t.agent,
            t.inbox_id,
            t.attempt,
            format!("{:.3}s", t.duration_ms() as f64 / 1000.0),
            t.outcome.as_str(),
            t.usage.calls,
            t.usage.tokens,
            t.model,
            if t.usage.calls == 0 {
                "-".to_owned()
            } else {
                cost(&t.usage)
            }
        ));
    }
    out
}

/// Dollars, and how many calls had no price (so the figure is a floor).
fn cost(u: &Usage) -> String {
    match (u.unpriced_calls, u.calls) {
        (0, _) => format!("${:.4}", u.cost_usd),
        (n, all) if n == all => "no price in hive.toml".into(),
        (n, _) => format!("${:.4} + {n} unpriced call(s)", u.cost_usd),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_show_their_duration_and_outcome() {
        let t = |outcome, calls| TurnStat {
            agent: "echo".into(),
            inbox_id: 7,
            attempt: 2,
            started_us: 1_795_521_598_000_000,
            ended_us: 1_795_521_598_420_000,
            outcome,
            model: "scripted".into(),
            usage: Usage {
                calls,
                tokens: 10 * calls,
                cost_usd: 0.01 * calls as f64,
                unpriced_calls: 0,
            },
        };
        let out = render_turns(&[
            t(crate::store::TurnOutcome::Done, 0),
            t(crate::store::TurnOutcome::Interrupted, 2),
        ]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].contains("duration") && lines[0].contains("outcome"));
        assert!(lines[1].contains(" 0.420s ") && lines[1].contains(" done "));
        assert!(lines[1].ends_with(" -"), "no calls, no cost: {out}");
        assert!(lines[2].contains(" interrupted ") && lines[2].ends_with("$0.0200"));
    }

    #[test]
    fn a_table_with_totals_and_unpriced_calls() {
        let row = |agent: &str, calls, cost_usd, unpriced_calls| DayUsage {
            agent: agent.into(),
            day: "2026-11-24".into(),
            turns: 1,
            tokens: Tokens {
                input: 10,
                output: 5,
                cache_read: 100,
                cache_write: 0,
            },
            usage: Usage {
                calls,
                tokens: 115,
                cost_usd,
                unpriced_calls,
            },
        };
        let out = render(&[row("argus", 2, 0.5, 0), row("iris", 1, 0.0, 1)]);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 4, "{out}");
        assert!(lines[1].starts_with("2026-11-24  argus") && lines[1].ends_with("$0.5000"));
        assert!(lines[2].ends_with("no price in hive.toml"), "{out}");
        assert!(
            lines[3].starts_with("total") && lines[3].ends_with("$0.5000 + 1 unpriced call(s)")
        );
        assert!(lines[3].contains(" 230 "), "{out}");
    }
}
