use super::*;
use crate::store::{Enqueue, QueueCounts};

fn ev(id: &str, body: &str) -> Enqueue {
    Enqueue {
        event_id: id.into(),
        room_id: "!r:x".into(),
        sender: "@op:x".into(),
        body: body.into(),
        origin_ts: 1,
        agents: vec!["a".into()],
        hive_event: None,
        peer: None,
    }
}

fn ingest(s: &Store, evs: &[Enqueue]) {
    let seen: Vec<_> = evs
        .iter()
        .map(|e| (e.event_id.clone(), e.room_id.clone()))
        .collect();
    s.ingest(&seen, evs, now_us()).unwrap();
}

const LIMITS: PullLimits = PullLimits {
    max: 8,
    max_bytes: 1 << 20,
    max_attempts: 3,
};

fn pulled(p: Pull) -> (Vec<String>, Vec<String>, u64) {
    match p {
        Pull::Pulled {
            taken,
            dead,
            waiting,
        } => (
            taken.into_iter().map(|i| i.event_id).collect(),
            dead.into_iter().map(|i| i.event_id).collect(),
            waiting,
        ),
        Pull::TurnOver => panic!("the turn is over"),
    }
}

/// A pull into the delivery of `turn` running now.
fn pull(s: &Store, agent: &str, turn: i64, limits: &PullLimits) -> anyhow::Result<Pull> {
    match s.turn_attempt(agent, turn)? {
        Some(attempt) => s.pull_into_turn(agent, turn, attempt, limits),
        None => Ok(Pull::TurnOver),
    }
}

fn counts(s: &Store) -> (u64, u64, u64, u64) {
    let QueueCounts {
        pending,
        inflight,
        done,
        dead,
    } = s.counts("a").unwrap();
    (pending, inflight, done, dead)
}

#[test]
fn what_a_pull_takes() {
    struct Case {
        name: &'static str,
        taken: usize,
        bytes: usize,
        attempts: u32,
        size: usize,
        want: PullStep,
    }
    let limits = PullLimits {
        max: 2,
        max_bytes: 100,
        max_attempts: 3,
    };
    let cases = [
        Case {
            name: "the first message",
            taken: 0,
            bytes: 0,
            attempts: 0,
            size: 10,
            want: PullStep::Take,
        },
        Case {
            name: "a message delivered before (a turn that crashed) is delivered again",
            taken: 0,
            bytes: 0,
            attempts: 2,
            size: 10,
            want: PullStep::Take,
        },
        Case {
            name: "a message out of deliveries is dead-lettered, as take_next does",
            taken: 0,
            bytes: 0,
            attempts: 3,
            size: 10,
            want: PullStep::DeadLetter,
        },
        Case {
            name: "max reached: stop",
            taken: 2,
            bytes: 20,
            attempts: 0,
            size: 10,
            want: PullStep::Stop,
        },
        Case {
            name: "max reached: an exhausted message is left for later too",
            taken: 2,
            bytes: 20,
            attempts: 3,
            size: 10,
            want: PullStep::Stop,
        },
        Case {
            name: "the bytes would pass the bound: stop",
            taken: 1,
            bytes: 60,
            attempts: 0,
            size: 41,
            want: PullStep::Stop,
        },
        Case {
            name: "exactly at the bound",
            taken: 1,
            bytes: 60,
            attempts: 0,
            size: 40,
            want: PullStep::Take,
        },
        Case {
            name: "a first message larger than the bound is still taken",
            taken: 0,
            bytes: 0,
            attempts: 0,
            size: 1000,
            want: PullStep::Take,
        },
    ];
    for c in cases {
        assert_eq!(
            pull_step(&limits, c.taken, c.bytes, c.attempts, c.size),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn a_completed_turn_takes_its_pulled_messages_with_it() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &LIMITS).unwrap()),
        (vec!["$2".into(), "$3".into()], vec![], 0)
    );
    assert_eq!(s.pulled_by(turn.id).unwrap().len(), 2);
    assert_eq!(counts(&s), (0, 3, 0, 0));
    // Nothing more to pull; a later message is pulled on its own.
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &LIMITS).unwrap()),
        (vec![], vec![], 0)
    );
    assert_eq!(
        s.last_pulled_done(turn.id, "!r:x").unwrap(),
        None,
        "not done yet"
    );
    assert!(s.ack(turn.id).unwrap());
    assert_eq!(counts(&s), (0, 0, 3, 0), "all three done in the ack");
    let read = s.last_pulled_done(turn.id, "!r:x").unwrap().unwrap();
    assert_eq!(
        read.event_id, "$3",
        "the turn read up to the newest it pulled"
    );
    assert_eq!(s.last_pulled_done(turn.id, "!other:x").unwrap(), None);
    assert!(s.pulled_by(turn.id).unwrap().is_empty());
    // Never delivered again: no turn, and a finished turn pulls nothing.
    assert!(s.take_next("a", 3).unwrap().0.is_none());
    assert_eq!(pull(&s, "a", turn.id, &LIMITS).unwrap(), Pull::TurnOver);
    assert!(!s.ack(turn.id).unwrap(), "a second ack changes nothing");
    assert_eq!(counts(&s), (0, 0, 3, 0));
}

#[test]
fn a_crash_mid_turn_redelivers_what_it_pulled_and_a_completed_rerun_ends_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c0re.db");
    let turn = {
        let s = Store::open(&path).unwrap();
        ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
        let turn = s.take_next("a", 3).unwrap().0.unwrap();
        assert_eq!(
            pulled(pull(&s, "a", turn.id, &LIMITS).unwrap()).0,
            ["$2", "$3"]
        );
        turn.id
        // The core dies here: no ack, no release.
    };
    let s = Store::open(&path).unwrap();
    assert_eq!(s.release_all_inflight().unwrap(), 3, "the turn and its two");
    assert!(s.pulled_by(turn).unwrap().is_empty());
    // The turn's message comes first again; the re-run pulls the same two, second delivery.
    let again = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!((again.id, again.attempts), (turn, 2));
    let Pull::Pulled { taken, .. } = pull(&s, "a", turn, &LIMITS).unwrap() else {
        panic!("the turn is in flight");
    };
    let got: Vec<_> = taken
        .iter()
        .map(|i| (i.body.as_str(), i.attempts))
        .collect();
    assert_eq!(got, [("two", 2), ("three", 2)]);
    assert!(s.ack(turn).unwrap());
    assert_eq!(counts(&s), (0, 0, 3, 0));
    // Another restart after the ack: nothing comes back.
    drop(s);
    let s = Store::open(&path).unwrap();
    assert_eq!(s.release_all_inflight().unwrap(), 0);
    assert!(s.take_next("a", 3).unwrap().0.is_none());
}

#[test]
fn a_harness_gone_mid_turn_puts_the_pulled_back_in_order() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &LIMITS).unwrap()).0,
        ["$2", "$3"]
    );
    s.release(turn.id).unwrap();
    assert_eq!(counts(&s), (3, 0, 0, 0));
    // Redelivered, the turn's message first; this time the pulled ones get turns of their own.
    for want in ["$1", "$2", "$3"] {
        let next = s.take_next("a", 3).unwrap().0.unwrap();
        assert_eq!(next.event_id, want);
        assert!(s.ack(next.id).unwrap());
    }
    assert_eq!(counts(&s), (0, 0, 3, 0));
}

#[test]
fn a_failed_turn_leaves_its_pulled_messages_pending() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    pulled(pull(&s, "a", turn.id, &LIMITS).unwrap());
    assert!(s.fail(turn.id, "the brain gave up").unwrap());
    assert_eq!(counts(&s), (1, 0, 0, 1));
    let next = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!((next.event_id.as_str(), next.attempts), ("$2", 2));
}

#[test]
fn only_a_turn_in_flight_of_the_same_agent_pulls() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let mut other = ev("$b", "for b");
    other.agents = vec!["b".into()];
    ingest(&s, &[other]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    // b's queue is not a's, and a's turn is no turn of b's.
    assert_eq!(
        s.pull_into_turn("b", turn.id, 1, &LIMITS).unwrap(),
        Pull::TurnOver
    );
    // A pending message is no turn; a pulled message is none either.
    assert_eq!(
        s.pull_into_turn("a", 2, 0, &LIMITS).unwrap(),
        Pull::TurnOver
    );
    let one = PullLimits { max: 1, ..LIMITS };
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &one).unwrap()),
        (vec!["$2".into()], vec![], 1),
        "max 1: one taken, one waiting"
    );
    let pulled_id = s.pulled_by(turn.id).unwrap()[0];
    assert_eq!(
        s.pull_into_turn("a", pulled_id, 1, &LIMITS).unwrap(),
        Pull::TurnOver
    );
    assert_eq!(s.counts("b").unwrap().pending, 1);
    // Once a is kept (destroyed), its running turn pulls nothing more, even before its queue
    // is dead-lettered (the kept row alone decides).
    ingest(&s, &[ev("$4", "four")]);
    s.lock()
        .execute(
            "INSERT INTO kept_agents (name, since_us, approval_id, sha) VALUES ('a', 1, 1, 'abc')",
            [],
        )
        .unwrap();
    assert_eq!(
        s.pull_into_turn("a", turn.id, 1, &LIMITS).unwrap(),
        Pull::TurnOver
    );
}

#[test]
fn a_pull_that_outlived_its_attempt_takes_nothing() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two")]);
    let first = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!(s.turn_attempt("a", first.id).unwrap(), Some(1));
    s.release(first.id).unwrap();
    assert_eq!(s.turn_attempt("a", first.id).unwrap(), None, "no turn now");
    let again = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!(again.id, first.id);
    // A recv of the first attempt, still waiting, finds its turn over: the re-run is another.
    assert_eq!(
        s.pull_into_turn("a", first.id, 1, &LIMITS).unwrap(),
        Pull::TurnOver
    );
    assert_eq!(
        pulled(s.pull_into_turn("a", first.id, 2, &LIMITS).unwrap()).0,
        ["$2"]
    );
}

#[test]
fn a_pull_dead_letters_what_used_its_deliveries() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let two = PullLimits {
        max_attempts: 2,
        ..LIMITS
    };
    // Two turns of $1 crash after pulling $2 and $3: each time they are delivered.
    for attempt in 1..=2 {
        let turn = s.take_next("a", 2).unwrap().0.unwrap();
        assert_eq!((turn.event_id.as_str(), turn.attempts), ("$1", attempt));
        let (taken, dead, _) = pulled(pull(&s, "a", turn.id, &two).unwrap());
        assert_eq!((taken.len(), dead.len()), (2, 0), "attempt {attempt}");
        s.release(turn.id).unwrap();
    }
    // $1 is dead at the next take; the turn of a new message finds $2 and $3 used up too.
    ingest(&s, &[ev("$4", "four")]);
    let (turn, dead) = s.take_next("a", 2).unwrap();
    let turn = turn.unwrap();
    assert_eq!(dead.len(), 3, "$1, $2, $3 given up");
    assert_eq!(turn.event_id, "$4");
    assert_eq!(counts(&s), (0, 1, 0, 3));
    // A pull meeting a message out of deliveries dead-letters it on the way and takes the next
    // (the turn's own message allowed more here, to reach that case).
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let one = PullLimits { max: 1, ..two };
    for _ in 0..2 {
        let turn = s.take_next("a", 10).unwrap().0.unwrap();
        assert_eq!(pulled(pull(&s, "a", turn.id, &one).unwrap()).0, ["$2"]);
        s.release(turn.id).unwrap();
    }
    let turn = s.take_next("a", 10).unwrap().0.unwrap();
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &one).unwrap()),
        (vec!["$3".into()], vec!["$2".into()], 0)
    );
    assert!(s.ack(turn.id).unwrap());
    assert_eq!(counts(&s), (0, 0, 2, 1));
}

#[test]
fn a_pull_is_bounded_in_bytes() {
    let s = Store::open_in_memory().unwrap();
    let big = "x".repeat(600);
    ingest(
        &s,
        &[
            ev("$1", "one"),
            ev("$2", &big),
            ev("$3", &big),
            ev("$4", "four"),
        ],
    );
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    let small = PullLimits {
        max_bytes: 1000,
        ..LIMITS
    };
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &small).unwrap()),
        (vec!["$2".into()], vec![], 2),
        "the second big body would pass 1000 bytes: it and what follows wait, in order"
    );
    assert_eq!(
        pulled(pull(&s, "a", turn.id, &small).unwrap()).0,
        ["$3", "$4"]
    );
}

/// The pull's own rows, as `recv` holds them until its answer is written.
fn taken(p: Pull) -> Vec<InboxItem> {
    match p {
        Pull::Pulled { taken, .. } => taken,
        Pull::TurnOver => panic!("the turn is over"),
    }
}

#[test]
fn an_answer_never_written_puts_back_exactly_what_it_pulled() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two"), ev("$3", "three")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    let first = taken(pull(&s, "a", turn.id, &PullLimits { max: 1, ..LIMITS }).unwrap());
    let lost = taken(pull(&s, "a", turn.id, &LIMITS).unwrap());
    assert_eq!(lost.len(), 1, "the second pull took $3");
    // The second answer's caller hung up: only its row goes back; the first stays the turn's.
    assert_eq!(s.put_back(turn.id, &lost).unwrap(), 1);
    assert_eq!(s.pulled_by(turn.id).unwrap(), [first[0].id]);
    assert_eq!(counts(&s), (1, 2, 0, 0));
    assert_eq!(s.put_back(turn.id, &lost).unwrap(), 0, "once is all");
    assert!(s.ack(turn.id).unwrap());
    assert_eq!(counts(&s), (1, 0, 2, 0), "the ack does not take $3");
    // $3 comes as a turn of its own, its lost delivery counted as release counts it.
    let next = s.take_next("a", 3).unwrap().0.unwrap();
    assert_eq!((next.event_id.as_str(), next.attempts), ("$3", 2));
}

#[test]
fn a_put_back_after_the_ack_still_gives_the_rows_back() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    let lost = taken(pull(&s, "a", turn.id, &LIMITS).unwrap());
    // The harness acked between the pull and the failed write: no brain saw $2.
    assert!(s.ack(turn.id).unwrap());
    assert_eq!(counts(&s), (0, 0, 2, 0));
    assert_eq!(s.put_back(turn.id, &lost).unwrap(), 1);
    assert_eq!(counts(&s), (1, 0, 1, 0));
    assert_eq!(s.take_next("a", 3).unwrap().0.unwrap().event_id, "$2");
}

#[test]
fn a_late_put_back_leaves_a_later_delivery_alone() {
    let s = Store::open_in_memory().unwrap();
    ingest(&s, &[ev("$1", "one"), ev("$2", "two")]);
    let turn = s.take_next("a", 3).unwrap().0.unwrap();
    let lost = taken(pull(&s, "a", turn.id, &LIMITS).unwrap());
    // The harness died meanwhile; the re-run of the turn pulled $2 again.
    s.release(turn.id).unwrap();
    assert_eq!(s.take_next("a", 3).unwrap().0.unwrap().id, turn.id);
    let again = taken(pull(&s, "a", turn.id, &LIMITS).unwrap());
    assert_eq!((again[0].id, again[0].attempts), (lost[0].id, 2));
    assert_eq!(
        s.put_back(turn.id, &lost).unwrap(),
        0,
        "the re-run holds it"
    );
    assert_eq!(s.pulled_by(turn.id).unwrap(), [lost[0].id]);
}
