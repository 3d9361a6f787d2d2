use super::*;
use crate::store::TurnOutcome;

#[test]
fn answers_are_fenced_and_bounded() {
    struct Case {
        name: &'static str,
        text: String,
        max: usize,
        /// Fragments the answer must hold.
        has: Vec<&'static str>,
        /// Fragments it must not.
        lacks: Vec<&'static str>,
    }
    let long: String = (0..2000).map(|i| format!("line {i}\n")).collect();
    let cases = [
        Case {
            name: "a short text whole",
            text: "one\ntwo\n".into(),
            max: 1024,
            has: vec!["```\none\ntwo\n```"],
            lacks: vec!["bytes before"],
        },
        Case {
            name: "a long text keeps its end, from a line start",
            text: long.clone(),
            max: 1024,
            has: vec!["line 1999\n```", "bytes before this]\nline "],
            lacks: vec!["line 0\n", "ine 19\n"],
        },
        Case {
            name: "backticks inside cannot close the fence",
            text: "a ``` b ```` c".into(),
            max: 1024,
            has: vec!["`````\na ``` b ```` c\n`````"],
            lacks: vec![],
        },
        Case {
            name: "quotes cost what the event spends on them",
            text: "\"".repeat(1000),
            max: 1024,
            has: vec!["bytes before this]\n\"\"\""],
            lacks: vec![],
        },
        Case {
            name: "multibyte text is cut on a character boundary",
            text: "é".repeat(2000),
            max: 1024,
            has: vec!["bytes before this]\né"],
            lacks: vec![],
        },
    ];
    for c in cases {
        let got = fenced(&c.text, c.max);
        assert!(
            event_cost(&got) <= c.max,
            "{}: costs {}",
            c.name,
            event_cost(&got)
        );
        for h in &c.has {
            assert!(got.contains(h), "{}: {h:?} not in {got:?}", c.name);
        }
        for l in &c.lacks {
            assert!(!got.contains(l), "{}: {l:?} in {got:?}", c.name);
        }
    }
}

#[test]
fn what_a_text_costs_in_an_event() {
    assert_eq!(event_cost("ab"), 4);
    assert_eq!(event_cost("\""), 8, "\\\" in the body, &quot; in the HTML");
    assert_eq!(event_cost("<&"), 11);
    assert_eq!(event_cost("é"), 4);
    assert_eq!(event_cost("\u{1}"), 12);
    // The worst text the bound lets through still fits an event, twice over its envelope.
    let worst = fenced(&"\"".repeat(100_000), MAX_ANSWER);
    assert!(event_cost(&worst) <= MAX_ANSWER && MAX_ANSWER + 4096 < 64 * 1024);
}

#[test]
fn a_long_answer_keeps_its_first_lines() {
    let short = "| a | b |\n|---|---|\n| c | d |\n";
    assert_eq!(fit(short, MAX_CONTENT), short);
    // A real table: its HTML (`<tr>`, `<td>`s) costs more than its Markdown.
    let mut long = String::from("| agent | state |\n|---|---|\n");
    long.extend((0..5000).map(|i| format!("| agent{i} | idle |\n")));
    assert!(
        content_len(&long) > 64 * 1024,
        "the table must not fit whole"
    );
    let got = fit(&long, MAX_CONTENT);
    let len = content_len(&got);
    assert!(len <= MAX_CONTENT, "content takes {len}");
    assert!(len > MAX_CONTENT - 1024, "as much as fits is kept: {len}");
    assert!(
        got.starts_with("| agent | state |\n|---|---|\n| agent0 | idle |"),
        "{got}"
    );
    let kept = got.lines().filter(|l| l.starts_with("| agent")).count() - 1;
    assert!(
        got.ends_with(&format!(
            "| agent{} | idle |\n\n… and {} more lines (too long for one message)",
            kept - 1,
            5000 - kept
        )),
        "{}",
        &got[got.len() - 200..]
    );
    // The marker is not a table row.
    let html = crate::matrix::markdown::to_html(&got).unwrap();
    assert!(
        html.contains("</table>\n<p>… and "),
        "{}",
        &html[html.len() - 200..]
    );
}

#[test]
fn durations_read_like_a_person_says_them() {
    for (ms, want) in [
        (0, "0 ms"),
        (850, "850 ms"),
        (1_000, "1.0 s"),
        (12_345, "12.3 s"),
        (245_000, "4 min 5 s"),
    ] {
        assert_eq!(duration(ms), want, "{ms}");
    }
}

fn usage(agent: &str, turns: u64, unfinished: u64, calls: u64, cost_usd: f64) -> AgentUsage {
    AgentUsage {
        agent: agent.into(),
        turns,
        unfinished,
        busy_ms: 1_500,
        usage: Usage {
            calls,
            tokens: calls * 100,
            cost_usd,
            unpriced_calls: 0,
        },
    }
}

#[test]
fn the_usage_table() {
    struct Case {
        name: &'static str,
        today: Vec<AgentUsage>,
        week: Vec<AgentUsage>,
        /// Each line wanted (after the header), or the whole answer when there is no table.
        want: Vec<&'static str>,
    }
    let cases = [
        Case {
            name: "nothing",
            today: vec![],
            week: vec![],
            want: vec!["no turns and no model calls in the last 7 days"],
        },
        Case {
            name: "a scripted agent: turns and time, no cost",
            today: vec![usage("echo", 2, 0, 0, 0.0)],
            week: vec![usage("echo", 5, 1, 0, 0.0)],
            want: vec!["| echo | 2 | 1.5 s | 0 | - | 5 (1 not done) | 0 | - |"],
        },
        Case {
            name: "an agent idle today shows its week, sorted by name",
            today: vec![usage("iris", 1, 0, 2, 0.5)],
            week: vec![usage("iris", 1, 0, 2, 0.5), usage("argus", 3, 0, 4, 1.25)],
            want: vec![
                "| argus | 0 | 0 ms | 0 | - | 3 | 400 | $1.2500 |",
                "| iris | 1 | 1.5 s | 200 | $0.5000 | 1 | 200 | $0.5000 |",
            ],
        },
    ];
    for c in cases {
        let got = render_usage(&c.today, &c.week);
        let lines: Vec<&str> = got.lines().collect();
        if c.want.len() == 1 && !c.want[0].starts_with('|') {
            assert_eq!(got, c.want[0], "{}", c.name);
            continue;
        }
        assert_eq!(&lines[2..], &c.want[..], "{}: {got}", c.name);
    }
}

#[test]
fn a_turn_and_a_link() {
    let t = TurnStat {
        agent: "echo".into(),
        inbox_id: 3,
        attempt: 1,
        started_us: 1_795_521_598_000_000,
        ended_us: 1_795_521_599_250_000,
        outcome: TurnOutcome::Done,
        model: "scripted".into(),
        usage: Usage::default(),
    };
    assert_eq!(turn_line(&t), "done in 1.2 s, 2026-11-24 11:59:59Z");
    assert_eq!(
        event_link("!room:hs", "$ev"),
        "https://matrix.to/#/!room:hs/$ev"
    );
    assert_eq!(linked(None, Some("$e")), "not posted yet");
    assert_eq!(
        linked(Some("!r:hs"), Some("$e")),
        "[message](https://matrix.to/#/!r:hs/$e)"
    );
    assert_eq!(cell("a|b\nc"), "` a b c `");
    assert!(cell(&"x".repeat(300)).ends_with("… `"));
    assert_eq!(cell(""), "-");
    assert_eq!(cell("run `ls` now"), "`` run `ls` now ``");
    // An agent's own link is text, not a link that could stand for the request's.
    let forged = cell("fix — [message](https://matrix.to/#/!appr:hs/$other) <b>x</b>");
    let html = crate::matrix::markdown::to_html(&format!("- #4 — {forged}")).unwrap();
    assert!(!html.contains("<a "), "{html}");
    assert!(html.contains("<code>"), "{html}");
}
