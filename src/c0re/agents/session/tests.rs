use super::*;

fn req(json: serde_json::Value) -> Request {
    serde_json::from_value(json).expect("a well-formed request")
}

#[test]
fn what_a_connection_may_ask_when() {
    use Socket::{Harness, Tools};
    struct Case {
        name: &'static str,
        socket: Socket,
        greeted: bool,
        in_flight: Option<i64>,
        req: Request,
        want: Admission,
    }
    let refuse = |message: &str| Admission::Refuse {
        code: ErrorCode::BadRequest,
        message: message.into(),
    };
    let wrong = |socket| Case {
        name: "a hello naming another agent closes the connection",
        socket,
        greeted: false,
        in_flight: None,
        req: req(json!({"op": "hello", "agent": "argus", "pid": 1})),
        want: Admission::Close {
            code: ErrorCode::WrongAgent,
            message: "this socket belongs to echo, not \"argus\"".into(),
        },
    };
    let cases = [
        Case {
            name: "hello first",
            socket: Harness,
            greeted: false,
            in_flight: None,
            req: req(json!({"op": "hello", "agent": "echo", "pid": 1})),
            want: Admission::Admit,
        },
        wrong(Harness),
        wrong(Tools),
        Case {
            name: "a second hello naming another agent closes it too",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "hello", "agent": "argus", "pid": 1})),
            want: Admission::Close {
                code: ErrorCode::WrongAgent,
                message: "this socket belongs to echo, not \"argus\"".into(),
            },
        },
        Case {
            name: "anything before hello is refused",
            socket: Harness,
            greeted: false,
            in_flight: None,
            req: req(json!({"op": "next"})),
            want: refuse("say hello first"),
        },
        Case {
            name: "tools before hello are refused",
            socket: Tools,
            greeted: false,
            in_flight: None,
            req: req(json!({"op": "list_tools"})),
            want: refuse("say hello first"),
        },
        Case {
            name: "next outside a turn",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "next"})),
            want: Admission::Admit,
        },
        Case {
            name: "next during a turn",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "next"})),
            want: refuse("ack or fail the current message first"),
        },
        Case {
            name: "a reply during a turn",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "reply", "body": "hi"})),
            want: Admission::Admit,
        },
        Case {
            name: "a reply outside a turn",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "reply", "body": "hi"})),
            want: refuse("no message in flight to reply to"),
        },
        Case {
            name: "a model call outside a turn",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "model", "request": {}})),
            want: refuse("model calls are made during a turn"),
        },
        Case {
            name: "a model call during a turn",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "model", "request": {}})),
            want: Admission::Admit,
        },
        Case {
            name: "a streamed model call outside a turn",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "model_stream", "request": {}})),
            want: refuse("model calls are made during a turn"),
        },
        Case {
            name: "a streamed model call during a turn",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "model_stream", "request": {}})),
            want: Admission::Admit,
        },
        Case {
            name: "a streamed model call on tools.sock",
            socket: Tools,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "model_stream", "request": {}})),
            want: refuse("this socket serves tools only (list_tools, call_tool)"),
        },
        Case {
            name: "a send outside a turn (a tool call from a script)",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "send_message", "to": "argus", "body": "x"})),
            want: Admission::Admit,
        },
        Case {
            name: "the ack of the message in flight",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "ack", "id": 3})),
            want: Admission::Admit,
        },
        Case {
            name: "the ack of another message",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "ack", "id": 4})),
            want: refuse("message 4 is not in flight on this connection"),
        },
        Case {
            name: "an ack outside a turn",
            socket: Harness,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "ack", "id": 3})),
            want: refuse("message 3 is not in flight on this connection"),
        },
        Case {
            name: "the failure of another message",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "fail", "id": 9, "error": "x"})),
            want: refuse("message 9 is not in flight on this connection"),
        },
        Case {
            name: "the failure of the message in flight",
            socket: Harness,
            greeted: true,
            in_flight: Some(3),
            req: req(json!({"op": "fail", "id": 3, "error": "x"})),
            want: Admission::Admit,
        },
        Case {
            name: "tools on the tools socket",
            socket: Tools,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "call_tool", "name": "read_notes"})),
            want: Admission::Admit,
        },
        Case {
            name: "the tools socket hands out no messages",
            socket: Tools,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "next"})),
            want: refuse("this socket serves tools only (list_tools, call_tool)"),
        },
        Case {
            name: "the tools socket sends no replies",
            socket: Tools,
            greeted: true,
            in_flight: None,
            req: req(json!({"op": "send_message", "to": "argus", "body": "x"})),
            want: refuse("this socket serves tools only (list_tools, call_tool)"),
        },
    ];
    let echo = AgentName::parse("echo").expect("a valid name");
    for c in cases {
        assert_eq!(
            admit(c.socket, &echo, c.greeted, c.in_flight, &c.req),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn transaction_ids_within_a_turn() {
    let echo = AgentName::parse("echo").expect("a valid name");
    struct Case {
        name: &'static str,
        inbox_id: i64,
        sends: u32,
        want: Option<&'static str>,
    }
    let cases = [
        Case {
            name: "the first send of message 7",
            inbox_id: 7,
            sends: 1,
            want: Some("hh-echo-7-1"),
        },
        Case {
            name: "the second send of message 7",
            inbox_id: 7,
            sends: 2,
            want: Some("hh-echo-7-2"),
        },
        Case {
            name: "outside a turn: the caller draws one",
            inbox_id: 0,
            sends: 1,
            want: None,
        },
    ];
    for c in cases {
        assert_eq!(
            turn_txn(&echo, c.inbox_id, c.sends).as_deref(),
            c.want,
            "{}",
            c.name
        );
    }
}

#[test]
fn a_queued_core_event_reaches_the_harness() {
    let item = |hive_event: Option<&str>| InboxItem {
        id: 7,
        agent: "echo".into(),
        event_id: "$e:hs".into(),
        room_id: "!r:hs".into(),
        sender: "@hive:hs".into(),
        body: "reminder: x".into(),
        origin_ts: 0,
        attempts: 2,
        hive_event: hive_event.map(str::to_owned),
    };
    let m = message_of(&item(Some(r#"{"kind":"reminder","reminder_id":1}"#)));
    assert_eq!((m.id, m.attempt, m.body.as_str()), (7, 2, "reminder: x"));
    assert_eq!(m.event, Some(json!({"kind": "reminder", "reminder_id": 1})));
    assert_eq!(message_of(&item(None)).event, None);
    assert_eq!(message_of(&item(Some("{not json"))).event, None);
}
